//! Scenario 2: the same command workload as scenario 1 without HTTP, through the command
//! service in-process and through cqrs-es + postgres-es, 8 tasks, alternated in rounds.
//!
//! It is measured by `gatehouse-peer-bench` (`bench/peer/`, its own workspace so that
//! postgres-es's sqlx stays out of the product's lock file), run here as a child process with
//! databases of its own on the same Postgres; it prints its row as JSON, which is kept as it
//! is (`ceiling` holds the peer's rate, `ratio` ours ÷ peer). Its progress goes to stderr.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::env::Env;
use crate::report::Row;

/// Rounds of each side (ours then the peer, then the peer then ours, …).
const ROUNDS: usize = 3;

pub async fn measure(env: &Env<'_>, binary: &Path) -> anyhow::Result<Vec<Row>> {
    let args = env.args;
    // Each side's time in a round: the harness's load duration.
    let seconds = super::duration(args.quick).as_secs();
    let mut child = Command::new(binary)
        .arg("--postgres")
        .arg(&args.postgres)
        .arg("--seconds")
        .arg(seconds.to_string())
        .arg("--rounds")
        .arg(ROUNDS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    // Not killed when dropped: interrupted, the harness asks it to stop (SIGTERM) so that it
    // drops its databases itself.
    let mut guard = Terminate(child.id());
    let mut out = String::new();
    child
        .stdout
        .take()
        .context("the peer benchmark's output")?
        .read_to_string(&mut out)
        .await
        .context("reading the peer benchmark's output")?;
    let status = child
        .wait()
        .await
        .context("waiting for the peer benchmark")?;
    guard.0 = None;
    if !status.success() {
        bail!("the peer benchmark failed ({status}); its errors are above");
    }
    let line = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("the peer benchmark printed no row")?;
    let row: Row = serde_json::from_str(line).context("reading the peer benchmark's row")?;
    Ok(vec![row])
}

/// Sends SIGTERM to the child when dropped before it was waited for.
struct Terminate(Option<u32>);

impl Drop for Terminate {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
}
