//! States folded from streams, kept in memory with the version each reflects, so that loading
//! one again reads only the events its stream gained since (`Db::read_streams_after`).
//!
//! Streams are append-only, so a state folded up to version v stays right for versions 1..=v
//! whatever other processes append later: the read after v brings those. Bounded: the least
//! recently used are forgotten.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use uuid::Uuid;

use crate::Expected;

/// A state and the stream version it reflects.
#[derive(Debug, Clone)]
pub struct Loaded<S> {
    pub state: S,
    pub version: i64,
}

impl<S> Loaded<S> {
    /// The version an append after this state expects.
    pub fn expected(&self) -> Expected {
        if self.version == 0 {
            Expected::NoStream
        } else {
            Expected::Exactly(self.version)
        }
    }
}

/// States by stream id (see the module documentation).
pub struct States<S> {
    states: Mutex<LruCache<Uuid, Loaded<S>>>,
}

impl<S: Clone> States<S> {
    /// Keeps at most `capacity` states.
    pub fn new(capacity: usize) -> States<S> {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        States {
            states: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Uuid, Loaded<S>>> {
        // A panic while holding the lock leaves whole entries: the cache stays usable.
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept state of stream `id`, if any.
    pub fn get(&self, id: Uuid) -> Option<Loaded<S>> {
        self.lock().get(&id).cloned()
    }

    /// Keeps `loaded` unless a later version is kept already.
    pub fn keep(&self, id: Uuid, loaded: &Loaded<S>) {
        if loaded.version == 0 {
            return;
        }
        let mut states = self.lock();
        if states
            .peek(&id)
            .is_none_or(|kept| kept.version < loaded.version)
        {
            states.put(id, loaded.clone());
        }
    }

    /// Moves the kept state to `version` with `evolve` when it is kept at the version just
    /// before (or, for a stream's first event, starts it from `new`); otherwise leaves it, and
    /// the next read brings what is missing.
    pub fn advance(
        &self,
        id: Uuid,
        version: i64,
        new: impl FnOnce() -> S,
        evolve: impl FnOnce(S) -> S,
    ) {
        let mut states = self.lock();
        let base = match states.peek(&id) {
            Some(kept) if kept.version == version - 1 => kept.state.clone(),
            None if version == 1 => new(),
            _ => return,
        };
        let state = evolve(base);
        states.put(id, Loaded { state, version });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_version_is_never_replaced_by_an_earlier_one() {
        let states = States::new(4);
        let id = Uuid::now_v7();
        states.keep(
            id,
            &Loaded {
                state: "v3",
                version: 3,
            },
        );
        states.keep(
            id,
            &Loaded {
                state: "v2",
                version: 2,
            },
        );
        assert_eq!(states.get(id).map(|l| l.state), Some("v3"));
        states.keep(
            id,
            &Loaded {
                state: "v4",
                version: 4,
            },
        );
        assert_eq!(states.get(id).map(|l| l.state), Some("v4"));
    }

    #[test]
    fn advancing_needs_the_version_just_before() {
        let states = States::new(4);
        let id = Uuid::now_v7();
        states.advance(id, 2, || 0, |n| n + 1);
        assert!(states.get(id).is_none(), "nothing kept at version 1");
        states.advance(id, 1, || 10, |n| n + 1);
        states.advance(id, 2, || 0, |n| n + 1);
        states.advance(id, 4, || 0, |n| n + 100);
        let kept = states.get(id).expect("kept");
        assert_eq!((kept.state, kept.version), (12, 2));
    }

    #[test]
    fn the_least_recently_used_is_forgotten() {
        let states = States::new(1);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        states.keep(
            a,
            &Loaded {
                state: (),
                version: 1,
            },
        );
        states.keep(
            b,
            &Loaded {
                state: (),
                version: 1,
            },
        );
        assert!(states.get(a).is_none());
        assert!(states.get(b).is_some());
    }
}
