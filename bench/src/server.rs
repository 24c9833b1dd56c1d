//! Servers the benchmark starts as child processes: `gatehouse serve` (whatever its roles) and
//! the ceiling server, with their resident memory read from `/proc/<pid>/status`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::load::{self, Conn};

/// How long a server may take to answer its first `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process, killed when dropped.
pub struct Process {
    child: Child,
}

impl Process {
    pub fn spawn(mut command: Command, what: &str) -> anyhow::Result<Process> {
        let child = command
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Process { child })
    }

    fn status_field(&self, field: &str) -> anyhow::Result<f64> {
        let pid = self.child.id().context("the server has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("reading the server's /proc status")?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .context("no such field in /proc status")?
            .parse()
            .context("a size in kB")?;
        Ok(kb / 1024.0)
    }

    /// The resident memory now, in MB.
    pub fn rss_mb(&self) -> anyhow::Result<f64> {
        self.status_field("VmRSS:")
    }

    /// The peak resident memory so far, in MB.
    pub fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        self.status_field("VmHWM:")
    }

    /// Fails if the process has exited, saying how.
    pub fn ensure_running(&mut self, what: &str) -> anyhow::Result<()> {
        match self.child.try_wait().context("asking after a child")? {
            Some(status) => bail!("{what} exited ({status})"),
            None => Ok(()),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A child process serving HTTP on a loopback address.
pub struct Server {
    pub process: Process,
    pub addr: SocketAddr,
    pub base: String,
}

/// A free loopback address to listen on.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port")
}

impl Server {
    /// Starts `command`, which listens on `addr`, and waits until it answers `GET /healthz`.
    pub async fn start(command: Command, addr: SocketAddr, what: &str) -> anyhow::Result<Server> {
        let mut process = Process::spawn(command, what)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if healthy(addr).await {
                break;
            }
            process.ensure_running(what)?;
            if Instant::now() > deadline {
                bail!("{what} did not answer /healthz within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Server {
            process,
            addr,
            base: format!("http://{addr}"),
        })
    }

    pub async fn stop(self) {
        self.process.stop().await;
    }
}

async fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut conn) = Conn::open(addr).await else {
        return false;
    };
    let Ok(request) = load::request(hyper::Method::GET, "/healthz", None, None) else {
        return false;
    };
    matches!(conn.send(request).await, Ok(answer) if answer.status.is_success())
}
