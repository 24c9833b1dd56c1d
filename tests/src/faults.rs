//! Processes of a test's own (a NATS server on a free port), for fault tests that must never stop
//! the shared services.
//!
//! - [`NatsServer`]: `nats-server -js` on a free port with a store directory of its own; `stop`
//!   kills it (as a crash would), `start` brings it back on the same port and directory.
//! - [`NatsCluster`]: three (or more) such servers clustered on loopback (a cluster port each,
//!   routes to the others), ready once the cluster can place a stream with a replica on every
//!   node.
//! - [`PostgresServer`]: a Postgres cluster of its own (`initdb` into a temporary directory, run
//!   by `pg_ctl` on a free port, as the `postgres` OS user when the test runs as root, since
//!   Postgres refuses to run as root); `stop` is `pg_ctl stop -m immediate` (no checkpoint, the
//!   next start recovers from the WAL, as after a crash), `start` brings it back on the same port
//!   and directory.

use std::collections::HashSet;
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
    /// The server's name (`--name`); JetStream in a cluster names its leaders by it.
    name: String,
    /// Arguments after the standard ones (the cluster's, for a node of a [`NatsCluster`]).
    args: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub async fn start_new() -> anyhow::Result<NatsServer> {
        let mut server = NatsServer::new(free_port()?, "gatehouse-test".to_owned(), Vec::new())?;
        server.start().await?;
        Ok(server)
    }

    /// A server that is not started yet, with a store directory of its own.
    fn new(port: u16, name: String, args: Vec<String>) -> anyhow::Result<NatsServer> {
        let store_dir =
            std::env::temp_dir().join(format!("gatehouse-nats-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&store_dir).context("creating the NATS store directory")?;
        Ok(NatsServer {
            port,
            store_dir,
            name,
            args,
            child: None,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn name(&self) -> &str {
        &self.name
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
            .args(["--name", &self.name])
            .args(&self.args)
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

/// `n` distinct free ports.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let mut ports = Vec::with_capacity(n);
    let mut seen = HashSet::new();
    while ports.len() < n {
        let port = free_port()?;
        if seen.insert(port) {
            ports.push(port);
        }
    }
    Ok(ports)
}

/// JetStream servers clustered on loopback, owned by one test: node `i` is named `n{i}`, has a
/// client port and a cluster port of its own, and routes to every other node's cluster port.
/// The cluster's name is unique to the test. Dropping it kills every node.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until the cluster can place a stream with `size` replicas
    /// (every node joined and JetStream elected its meta leader).
    pub async fn start_new(size: usize) -> anyhow::Result<NatsCluster> {
        let ports = free_ports(2 * size)?;
        let (client_ports, cluster_ports) = ports.split_at(size);
        let cluster_name = format!("gatehouse-{}", Uuid::new_v4().simple());
        let mut nodes = Vec::with_capacity(size);
        for (i, (&client, &cluster)) in client_ports.iter().zip(cluster_ports).enumerate() {
            let routes: Vec<String> = cluster_ports
                .iter()
                .filter(|&&p| p != cluster)
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            let args = vec![
                "--cluster_name".to_owned(),
                cluster_name.clone(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{cluster}"),
                "--routes".to_owned(),
                routes.join(","),
            ];
            nodes.push(NatsServer::new(client, format!("n{i}"), args)?);
        }
        let mut cluster = NatsCluster { nodes };
        for node in &mut cluster.nodes {
            node.start().await?;
        }
        cluster.await_replicas(size).await?;
        Ok(cluster)
    }

    /// Every node's client URL, comma-separated (as `NATS_URL` takes them).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node named `name`.
    pub fn node(&mut self, name: &str) -> Option<&mut NatsServer> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }

    /// Waits until a stream with `replicas` replicas can be created (then deletes it).
    async fn await_replicas(&self, replicas: usize) -> anyhow::Result<()> {
        let urls: Vec<String> = self.nodes.iter().map(NatsServer::url).collect();
        let client = async_nats::connect(urls)
            .await
            .context("connecting to the cluster")?;
        let js = async_nats::jetstream::new(client);
        let probe = format!("GH_PROBE_{}", Uuid::new_v4().simple());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let created = js
                .create_stream(async_nats::jetstream::stream::Config {
                    name: probe.clone(),
                    subjects: vec![format!("ghprobe.{}", Uuid::new_v4().simple())],
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await;
            match created {
                Ok(_) => {
                    js.delete_stream(&probe)
                        .await
                        .context("deleting the probe stream")?;
                    return Ok(());
                }
                Err(e) if tokio::time::Instant::now() > deadline => {
                    bail!("the cluster could not place {replicas} replicas within 60 s: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// Where Postgres' programs are; `GATEHOUSE_TEST_PG_BIN` overrides it.
pub fn postgres_bin_dir() -> PathBuf {
    std::env::var_os("GATEHOUSE_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// A Postgres cluster owned by one test, reachable at `127.0.0.1:port` as the superuser
/// `postgres` without a password (`trust`, loopback only). Dropping it stops the server and
/// removes its data directory.
pub struct PostgresServer {
    port: u16,
    /// The data directory; it also holds the Unix socket and the server's log.
    dir: PathBuf,
    running: bool,
}

impl PostgresServer {
    /// Creates a cluster in a fresh temporary directory, starts it on a free port and waits
    /// until it accepts connections.
    pub async fn start_new() -> anyhow::Result<PostgresServer> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("gatehouse-pg-{}", Uuid::new_v4().simple()));
        // The guard removes the directory if anything below fails.
        let mut server = PostgresServer {
            port,
            dir,
            running: false,
        };
        std::fs::create_dir_all(&server.dir).context("creating the Postgres data directory")?;
        if running_as_root()? {
            // initdb and postgres refuse root; the data directory must belong to their user.
            run_to_end(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&server.dir),
                "chown of the Postgres data directory",
            )?;
        }
        let dir = server.dir.clone();
        tokio::task::spawn_blocking(move || {
            run_to_end(
                pg_command("initdb")?
                    .args([
                        "-A",
                        "trust",
                        "-U",
                        "postgres",
                        "-E",
                        "UTF8",
                        "--no-sync",
                        "-D",
                    ])
                    .arg(dir.join("data")),
                "initdb",
            )
        })
        .await
        .context("running initdb")??;
        server.start().await?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// (Re)starts the server on the same port and data directory and waits until it accepts
    /// connections (`pg_ctl -w`); a no-op when it runs.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        if self.running {
            return Ok(());
        }
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let (dir, port) = (self.dir.clone(), self.port);
        tokio::task::spawn_blocking(move || {
            run_to_end(
                pg_command("pg_ctl")?
                    .arg("-D")
                    .arg(dir.join("data"))
                    .arg("-l")
                    .arg(dir.join("postgres.log"))
                    .args(["-o", &options, "-w", "-t", "60", "start"]),
                &format!("pg_ctl start on port {port}"),
            )
        })
        .await
        .context("running pg_ctl start")??;
        self.running = true;
        Ok(())
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: connections are cut, nothing is
    /// flushed, the next start recovers from the WAL) and waits until it is gone.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if !self.running {
            return Ok(());
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || stop_immediately(&dir))
            .await
            .context("running pg_ctl stop")??;
        self.running = false;
        Ok(())
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running {
            let _ = stop_immediately(&self.dir);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stop_immediately(dir: &std::path::Path) -> anyhow::Result<()> {
    run_to_end(
        pg_command("pg_ctl")?.arg("-D").arg(dir.join("data")).args([
            "-m",
            "immediate",
            "-w",
            "stop",
        ]),
        "pg_ctl stop",
    )
}

/// One of Postgres' programs, run as the `postgres` OS user when we are root.
fn pg_command(program: &str) -> anyhow::Result<Command> {
    let path = postgres_bin_dir().join(program);
    let mut cmd = if running_as_root()? {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(path);
        cmd
    } else {
        Command::new(path)
    };
    cmd.stdin(Stdio::null());
    Ok(cmd)
}

fn running_as_root() -> anyhow::Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs `cmd` to its end; a failure carries its output.
fn run_to_end(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
