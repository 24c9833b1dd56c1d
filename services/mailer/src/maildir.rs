//! The Maildir transport: one writer thread that delivers the emails handed to it in batches.
//!
//! A message is written into `tmp/`, flushed, renamed into `new/`, and answered only once `new/`
//! itself is flushed, so a delivery the ledger records as sent survives a crash (a rename is
//! not durable until its directory is). The writer takes whatever is queued, up to
//! [`MAX_BATCH`], writes it all, then flushes and renames each file (the first flush's journal
//! commit carries the others' data, so theirs are cheap) and flushes `new/` once for the batch.
//!
//! One thread rather than one blocking task per email: creating files in one directory from
//! several threads serialises on its lock in the kernel, and the waiting spins; measured on
//! ext4, eight writers spent from 1.1 to 3.3 times the CPU of one for the same 10,000 files. It
//! drains a backlog somewhat slower than eight did (docs/benchmarks.md, "The Maildir's one
//! writer").

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{Context, anyhow};
use tokio::sync::oneshot;

/// Emails written and flushed together, at most.
pub const MAX_BATCH: usize = 64;

/// One email for the writer.
struct Job {
    name: String,
    bytes: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

/// A handle on the writer thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Maildir {
    jobs: mpsc::Sender<Job>,
}

impl Maildir {
    /// Starts the writer thread for the Maildir at `dir` (created, with its `tmp/`, `new/` and
    /// `cur/`, by the first delivery).
    pub fn start(dir: PathBuf) -> anyhow::Result<Maildir> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("gatehouse-maildir".into())
            .spawn(move || writer(&dir, &queue))
            .context("starting the Maildir writer thread")?;
        Ok(Maildir { jobs })
    }

    /// Delivers one message under `name` (unique per email, file-name safe); the same name twice
    /// replaces the file. An error says the message may not be in `new/` (durably).
    pub async fn deliver(&self, name: &str, bytes: Vec<u8>) -> Result<(), String> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                name: name.to_owned(),
                bytes,
                done,
            })
            .map_err(|_| "the Maildir writer has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the Maildir writer stopped before answering".to_owned())?
    }
}

/// The writer thread's loop: a batch of what is queued, written, then answered.
fn writer(dir: &Path, queue: &mpsc::Receiver<Job>) {
    let mut carried: Option<Job> = None;
    while let Some(first) = carried.take().or_else(|| queue.recv().ok()) {
        let mut batch = vec![first];
        let mut names: HashSet<String> = HashSet::from([batch[0].name.clone()]);
        while batch.len() < MAX_BATCH {
            let Ok(job) = queue.try_recv() else { break };
            // The same file twice in one batch would have two writers: it waits for the next.
            if !names.insert(job.name.clone()) {
                carried = Some(job);
                break;
            }
            batch.push(job);
        }
        let messages: Vec<(&str, &[u8])> = batch
            .iter()
            .map(|j| (j.name.as_str(), j.bytes.as_slice()))
            .collect();
        let results = write_batch(dir, &messages);
        for (job, result) in batch.into_iter().zip(results) {
            // The sender may have gone (its task cancelled): the file is written either way.
            let _ = job.done.send(result.map_err(|e| format!("{e:#}")));
        }
    }
}

/// Writes `messages` (distinct names) the Maildir way; answers each one's outcome, in order.
pub fn write_batch(dir: &Path, messages: &[(&str, &[u8])]) -> Vec<anyhow::Result<()>> {
    if let Err(e) = ensure_dirs(dir) {
        let reason = format!("{e:#}");
        return messages.iter().map(|_| Err(anyhow!("{reason}"))).collect();
    }
    let mut results: Vec<anyhow::Result<()>> = Vec::with_capacity(messages.len());
    let mut files = Vec::with_capacity(messages.len());
    for (name, bytes) in messages {
        let tmp = dir.join("tmp").join(name);
        match File::create(&tmp).and_then(|mut f| f.write_all(bytes).map(|()| f)) {
            Ok(file) => {
                files.push(Some(file));
                results.push(Ok(()));
            }
            Err(e) => {
                files.push(None);
                results.push(Err(anyhow!("writing {}: {e}", tmp.display())));
            }
        }
    }
    for ((name, _), (file, result)) in messages.iter().zip(files.into_iter().zip(&mut results)) {
        let Some(file) = file else { continue };
        let tmp = dir.join("tmp").join(name);
        let new = dir.join("new").join(name);
        let moved = file
            .sync_all()
            .with_context(|| format!("flushing {}", tmp.display()))
            .and_then(|()| {
                std::fs::rename(&tmp, &new)
                    .with_context(|| format!("moving the message into {}", new.display()))
            });
        if let Err(e) = moved {
            *result = Err(e);
        }
    }
    if results.iter().any(Result::is_ok)
        && let Err(e) = sync_dir(&dir.join("new"))
    {
        let reason = format!("{e:#}");
        for result in results.iter_mut().filter(|r| r.is_ok()) {
            *result = Err(anyhow!("{reason}"));
        }
    }
    results
}

fn ensure_dirs(dir: &Path) -> anyhow::Result<()> {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    Ok(())
}

/// Flushes a directory, so the renames into it survive a crash.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("flushing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        std::env::temp_dir().join(format!("gh-maildir-{}", uuid::Uuid::new_v4()))
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("a directory")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn the_same_name_twice_leaves_one_file_with_the_last_message() {
        let dir = scratch();
        let maildir = Maildir::start(dir.clone()).expect("a writer");
        let (a, b) = tokio::join!(
            maildir.deliver("a.setup", b"Subject: one\r\n\r\nx\r\n".to_vec()),
            maildir.deliver("a.setup", b"Subject: two\r\n\r\nx\r\n".to_vec()),
        );
        a.expect("delivered");
        b.expect("delivered");
        assert_eq!(names_in(&dir.join("new")), ["a.setup"]);
        let kept = std::fs::read_to_string(dir.join("new").join("a.setup")).expect("the file");
        assert!(kept.starts_with("Subject: two"), "{kept}");
        assert!(dir.join("cur").is_dir());
        assert!(names_in(&dir.join("tmp")).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn many_emails_at_once_each_get_their_file() {
        let dir = scratch();
        let maildir = Maildir::start(dir.clone()).expect("a writer");
        let sends = (0..200).map(|i| {
            let maildir = maildir.clone();
            async move { maildir.deliver(&format!("m{i:03}"), vec![b'x'; 100]).await }
        });
        for result in futures::future::join_all(sends).await {
            result.expect("delivered");
        }
        let expected: Vec<String> = (0..200).map(|i| format!("m{i:03}")).collect();
        assert_eq!(names_in(&dir.join("new")), expected);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_message_that_cannot_be_written_fails_alone() {
        let dir = scratch();
        let results = write_batch(&dir, &[("ok", b"x"), ("no/such/dir", b"y")]);
        assert!(results[0].is_ok());
        let err = results[1].as_ref().expect_err("refused");
        assert!(format!("{err:#}").contains("no/such/dir"), "{err:#}");
        assert_eq!(names_in(&dir.join("new")), ["ok"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_maildir_that_cannot_be_made_fails_every_message() {
        let file = scratch();
        std::fs::write(&file, b"not a directory").expect("a file");
        let results = write_batch(&file, &[("a", b"x"), ("b", b"y")]);
        assert!(results.iter().all(Result::is_err));
        let _ = std::fs::remove_file(&file);
    }
}
