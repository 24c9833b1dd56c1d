//! Processes of a test's own (a NATS server on a free port), for fault tests that must never stop
//! the shared services.
//!
//! - [`NatsServer`]: `nats-server -js` on a free port with a store directory of its own; `stop`
//!   kills it (as a crash would), `start` brings it back on the same port and directory.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use uuid::Uuid;

/// Where the server binary is; `GATEHOUSE_TEST_NATS_SERVER` overrides it.
pub fn nats_server_binary() -> String {
    std::env::var("GATEHOUSE_TEST_NATS_SERVER")
        .unwrap_or_else(|_| "/usr/sbin/nats-server".to_owned())
}

/// A JetStream-enabled NATS server owned by one test. Dropping it kills the server and removes
/// its store directory.
pub struct NatsServer {
    port: u16,
    store_dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub async fn start_new() -> anyhow::Result<NatsServer> {
        let port = free_port()?;
        let store_dir =
            std::env::temp_dir().join(format!("gatehouse-nats-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&store_dir).context("creating the NATS store directory")?;
        let mut server = NatsServer {
            port,
            store_dir,
            child: None,
        };
        server.start().await?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// (Re)starts the server on the same port and store directory; a no-op when it runs.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let mut child = Command::new(nats_server_binary())
            .arg("-js")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(&self.store_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", nats_server_binary()))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().context("watching nats-server")? {
                bail!(
                    "nats-server exited at start ({status}); is port {} taken?",
                    self.port
                );
            }
            // The server listens for clients only once JetStream (and its recovered streams) is up.
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                kill(child);
                bail!(
                    "nats-server did not accept connections on port {} within 10 s",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    /// Kills the server (SIGKILL, like a crash) and waits until it is gone.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.take() {
            tokio::task::spawn_blocking(move || kill(child))
                .await
                .context("killing nats-server")?;
        }
        Ok(())
    }
}

/// Kills and reaps the server, so its port and files are released when this returns.
fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            kill(child);
        }
        let _ = std::fs::remove_dir_all(&self.store_dir);
    }
}

/// A port nobody listens on right now (the OS picks it; it is free again once we close it).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
