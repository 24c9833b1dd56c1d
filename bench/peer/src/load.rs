//! The workload both sides run: [`TASKS`] tasks, each flipping the MFA requirement of its own
//! administrators in turn, so every command changes something and no two tasks touch the same
//! admin. Admin `a` belongs to task `a % TASKS` and to organisation `a % ORGS`, so the admins
//! are spread over the 16 organisations and every task works in two of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Concurrent tasks (issue 7, scenario 2).
pub const TASKS: usize = 8;

/// Organisations the admins are spread over (as in scenario 1).
pub const ORGS: usize = 16;

/// Admins each task flips in turn (512 in all, as many as scenario 1's fleet).
pub const PER_TASK: usize = 64;

/// Admins of each side.
pub const ADMINS: usize = TASKS * PER_TASK;

/// The organisation of admin `a` (an index into a side's organisations).
pub fn org_of(a: usize) -> usize {
    a % ORGS
}

/// One side of the comparison: sets admin `a`'s requirement through its command path.
pub trait Side: Send + Sync + 'static {
    fn flip(&self, a: usize, required: bool) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Each task's admins with the requirement they have now (all start without).
pub struct Fleet {
    tasks: Vec<Vec<(usize, bool)>>,
}

impl Default for Fleet {
    fn default() -> Fleet {
        Fleet {
            tasks: (0..TASKS)
                .map(|t| (0..PER_TASK).map(|k| (t + TASKS * k, false)).collect())
                .collect(),
        }
    }
}

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Every task goes this many times through its admins (the warm-up).
    Passes(usize),
    Elapsed(Duration),
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct Run {
    pub commands: usize,
    pub secs: f64,
    /// Latencies of the commands that succeeded, in milliseconds.
    pub latencies: Vec<f64>,
    pub failures: usize,
    pub first_failure: Option<String>,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.commands as f64 / self.secs
    }
}

/// Runs the workload on `side` until `until`, every task at once; the clock runs from the
/// tasks' start until the last one ended.
pub async fn run<S: Side>(side: &Arc<S>, fleet: &mut Fleet, until: Until) -> anyhow::Result<Run> {
    let started = Instant::now();
    let deadline = match until {
        Until::Elapsed(d) => Some(started + d),
        Until::Passes(_) => None,
    };
    let limit = match until {
        Until::Passes(n) => n * PER_TASK,
        Until::Elapsed(_) => usize::MAX,
    };
    let mut handles = Vec::with_capacity(TASKS);
    for admins in fleet.tasks.drain(..) {
        let side = side.clone();
        handles.push(tokio::spawn(task(side, admins, deadline, limit)));
    }
    let mut run = Run::default();
    for handle in handles {
        let (admins, task) = handle.await.context("a load task panicked")?;
        fleet.tasks.push(admins);
        run.commands += task.commands;
        run.latencies.extend(task.latencies);
        run.failures += task.failures;
        run.first_failure = run.first_failure.or(task.first_failure);
    }
    run.secs = started.elapsed().as_secs_f64();
    Ok(run)
}

async fn task<S: Side>(
    side: Arc<S>,
    mut admins: Vec<(usize, bool)>,
    deadline: Option<Instant>,
    limit: usize,
) -> (Vec<(usize, bool)>, Run) {
    let mut run = Run::default();
    for i in 0..limit {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let (a, required) = &mut admins[i % PER_TASK];
        let wanted = !*required;
        let started = Instant::now();
        match side.flip(*a, wanted).await {
            Ok(()) => {
                run.latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                run.commands += 1;
                *required = wanted;
            }
            // The admin's requirement is unknown now; the next turn asks for the same again.
            Err(e) => {
                run.failures += 1;
                run.first_failure.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    (admins, run)
}
