//! API keys' principals kept in memory, so a request with a key seen before costs no query.
//!
//! A kept principal is trusted only while the process LISTENs on [`CHANNEL`]: triggers
//! (`migrations/V6__credentials_changed.sql`) notify it whenever a statement revokes a key or
//! removes an admin, and each notification empties the cache. Until the listener is up (at
//! start, after its connection is lost) every look-up goes to Postgres and nothing is kept.
//!
//! - The process that revokes a key or removes an admin refuses the key at once: the command
//!   service calls [`ApiKeyCache::forget_all`] after the append commits, before it answers.
//! - Other processes refuse it as soon as Postgres delivers the notification (it is sent at the
//!   commit; a local socket's round trip).
//! - A look-up that read a key before a revocation committed cannot keep what it read after the
//!   cache was emptied: it keeps its answer only if the cache's generation is the one it started
//!   with.
//! - An entry is trusted for at most [`MAX_AGE`], a bound on any staleness this reasoning
//!   missed, and the cache holds at most [`CAPACITY`] keys (it empties when full).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use gatehouse_store::Db;
use tokio_util::task::AbortOnDropHandle;

use crate::Principal;

/// The channel the credential triggers notify (`migrations/V6__credentials_changed.sql`).
pub const CHANNEL: &str = "gatehouse_credentials";

/// How many keys the cache holds before it empties.
pub const CAPACITY: usize = 10_000;

/// How long a kept principal is trusted without looking again.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// The longest pause between attempts to listen again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A cache of principals by API key hash, for one database; clones share it. Its listener starts
/// with the first look-up and stops when the last clone is dropped.
#[derive(Clone)]
pub struct ApiKeyCache {
    shared: Arc<Shared>,
}

struct Shared {
    db: Db,
    cache: Arc<Mutex<Cache>>,
    listener: OnceLock<AbortOnDropHandle<()>>,
}

#[derive(Default)]
struct Cache {
    /// Whether the listener is subscribed: nothing is kept or trusted otherwise.
    listening: bool,
    /// Moves on whenever the cache empties, so a look-up begun before keeps nothing.
    generation: u64,
    entries: HashMap<Vec<u8>, (Principal, Instant)>,
}

impl Cache {
    fn forget_all(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.entries.clear();
    }
}

fn lock(cache: &Mutex<Cache>) -> MutexGuard<'_, Cache> {
    cache.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ApiKeyCache {
    /// An empty cache of `db`'s keys.
    pub fn new(db: Db) -> ApiKeyCache {
        ApiKeyCache {
            shared: Arc::new(Shared {
                db,
                cache: Arc::default(),
                listener: OnceLock::new(),
            }),
        }
    }

    /// The live admin holding the live key `plaintext`, if any: from the cache when it may be
    /// trusted, else from Postgres.
    pub async fn principal(&self, plaintext: &str) -> anyhow::Result<Option<crate::Principal>> {
        if !crate::api_key::well_formed(plaintext) {
            return Ok(None);
        }
        self.listen();
        let db = &self.shared.db;
        let hash = crate::api_key::hash(plaintext);
        let generation = {
            let cache = lock(&self.shared.cache);
            if !cache.listening {
                None
            } else {
                if let Some((principal, at)) = cache.entries.get(&hash)
                    && at.elapsed() < MAX_AGE
                {
                    metrics::counter!("gatehouse_api_key_lookups_total", "source" => "cache")
                        .increment(1);
                    return Ok(Some(principal.clone()));
                }
                Some(cache.generation)
            }
        };
        let found = crate::principal::by_hash(db, &hash).await?;
        metrics::counter!("gatehouse_api_key_lookups_total", "source" => "postgres").increment(1);
        if let (Some(generation), Some(principal)) = (generation, &found) {
            let mut cache = lock(&self.shared.cache);
            if cache.listening && cache.generation == generation {
                if cache.entries.len() >= CAPACITY {
                    cache.entries.clear();
                }
                cache
                    .entries
                    .insert(hash, (principal.clone(), Instant::now()));
            }
        }
        Ok(found)
    }

    /// Empties the cache: called after this process revoked a key or removed an admin, so its
    /// next request with that key is refused without waiting for the notification.
    pub fn forget_all(&self) {
        lock(&self.shared.cache).forget_all();
    }

    fn listen(&self) {
        self.shared.listener.get_or_init(|| {
            AbortOnDropHandle::new(tokio::spawn(follow(
                self.shared.db.clone(),
                self.shared.cache.clone(),
            )))
        });
    }
}

/// Listens on [`CHANNEL`] for as long as the cache lives, emptying the cache on every
/// notification and whenever it starts or stops listening.
async fn follow(db: Db, cache: Arc<Mutex<Cache>>) {
    let mut failures = 0u32;
    loop {
        match db.listen(CHANNEL).await {
            Ok(mut listener) => {
                failures = 0;
                {
                    let mut cache = lock(&cache);
                    cache.forget_all();
                    cache.listening = true;
                }
                while listener.notifications.recv().await.is_some() {
                    lock(&cache).forget_all();
                }
                {
                    let mut cache = lock(&cache);
                    cache.listening = false;
                    cache.forget_all();
                }
                tracing::warn!(
                    "the API key cache's listener lost its connection; looking every key up until it is back"
                );
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %format!("{e:#}"), attempt = failures, "cannot listen for credential changes; looking every API key up meanwhile");
            }
        }
        tokio::time::sleep(gatehouse_store::retry::backoff(
            failures.max(1),
            MAX_BACKOFF,
        ))
        .await;
    }
}
