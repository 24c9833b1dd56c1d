//! Folding streams into the states deciders take. Each state comes with the version it was read
//! at, which the append then expects.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use gatehouse_domain::{AdminId, AdminState, OrgId, OrgState};
use gatehouse_store::read::Stream;
use gatehouse_store::{Db, Expected};
use lru::LruCache;
use uuid::Uuid;

/// A state and the stream version it reflects.
#[derive(Debug, Clone)]
pub struct Loaded<S> {
    pub state: S,
    pub version: i64,
}

impl<S> Loaded<S> {
    pub fn expected(&self) -> Expected {
        if self.version == 0 {
            Expected::NoStream
        } else {
            Expected::Exactly(self.version)
        }
    }
}

/// Admin states already folded, with the version each reflects, so that loading an admin again
/// reads only the events their stream gained since (`Db::read_streams_after`). Streams are
/// append-only, so a state folded up to version v stays right for versions 1..=v whatever
/// other processes append later: the read after v brings those. Bounded: the least recently
/// used are forgotten.
pub struct AdminStates {
    states: Mutex<LruCache<Uuid, Loaded<AdminState>>>,
}

/// How many admins' states a process keeps (a few hundred bytes each).
pub const KEPT_ADMIN_STATES: usize = 10_000;

impl Default for AdminStates {
    fn default() -> Self {
        AdminStates::new(NonZeroUsize::new(KEPT_ADMIN_STATES).unwrap_or(NonZeroUsize::MIN))
    }
}

impl AdminStates {
    pub fn new(capacity: NonZeroUsize) -> AdminStates {
        AdminStates {
            states: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Uuid, Loaded<AdminState>>> {
        // A panic while holding the lock leaves whole entries: the cache stays usable.
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: AdminId) -> Option<Loaded<AdminState>> {
        self.lock().get(&id.0).cloned()
    }

    /// Keeps `loaded` unless a later version is kept already.
    fn keep(&self, id: AdminId, loaded: &Loaded<AdminState>) {
        if loaded.version == 0 {
            return;
        }
        let mut states = self.lock();
        if states
            .peek(&id.0)
            .is_none_or(|kept| kept.version < loaded.version)
        {
            states.put(id.0, loaded.clone());
        }
    }
}

/// Folds what the stream gained after `base` (or the whole stream) into the admin's state.
fn fold_admin(
    id: AdminId,
    org: OrgId,
    base: Option<Loaded<AdminState>>,
    stream: Option<&Stream>,
) -> Loaded<AdminState> {
    let base = match (base, stream) {
        (Some(base), _) => base,
        // The stream's own organisation, not the caller's: a foreign admin then fails the
        // deciders' same-organisation check.
        (None, Some(stream)) => Loaded {
            state: AdminState::absent(id, OrgId(stream.org_id)),
            version: 0,
        },
        (None, None) => {
            return Loaded {
                state: AdminState::absent(id, org),
                version: 0,
            };
        }
    };
    let Some(stream) = stream else {
        return base;
    };
    let mut state = base.state;
    for envelope in &stream.events {
        if let (Ok(event), Some(at)) = (envelope.event(), envelope.occurred_at()) {
            state = state.evolve(&event, at);
        }
    }
    Loaded {
        state,
        version: stream.version,
    }
}

/// Loads admins by id (absent ones as [`AdminState::absent`] in `org`), starting from the
/// states kept in `kept` and reading only what their streams gained since.
pub async fn admins(
    db: &Db,
    kept: &AdminStates,
    org: OrgId,
    ids: &[AdminId],
) -> anyhow::Result<HashMap<AdminId, Loaded<AdminState>>> {
    Ok(read_admins(db, kept, org, ids, false).await?.0)
}

/// Loads admins as [`admins`] does and their organisation beside them, in one read.
pub async fn admins_and_org(
    db: &Db,
    kept: &AdminStates,
    org: OrgId,
    ids: &[AdminId],
) -> anyhow::Result<(HashMap<AdminId, Loaded<AdminState>>, Loaded<OrgState>)> {
    let (admins, streams) = read_admins(db, kept, org, ids, true).await?;
    Ok((admins, fold_org(streams.get(&org.0))))
}

/// Reads the admins' streams after their kept versions, and the organisation's whole stream
/// with them when asked; answers the folded admins and the streams read.
async fn read_admins(
    db: &Db,
    kept: &AdminStates,
    org: OrgId,
    ids: &[AdminId],
    with_org: bool,
) -> anyhow::Result<(HashMap<AdminId, Loaded<AdminState>>, HashMap<Uuid, Stream>)> {
    let bases: Vec<Option<Loaded<AdminState>>> = ids.iter().map(|id| kept.get(*id)).collect();
    let mut after: Vec<(Uuid, i64)> = ids
        .iter()
        .zip(&bases)
        .map(|(id, base)| (id.0, base.as_ref().map_or(0, |b| b.version)))
        .collect();
    if with_org {
        after.push((org.0, 0));
    }
    let streams = db.read_streams_after(&after).await?;
    let admins = ids
        .iter()
        .zip(bases)
        .map(|(id, base)| {
            let loaded = fold_admin(*id, org, base, streams.get(&id.0));
            kept.keep(*id, &loaded);
            (*id, loaded)
        })
        .collect();
    Ok((admins, streams))
}

pub async fn admin(
    db: &Db,
    kept: &AdminStates,
    org: OrgId,
    id: AdminId,
) -> anyhow::Result<Loaded<AdminState>> {
    let mut map = admins(db, kept, org, &[id]).await?;
    Ok(map.remove(&id).unwrap_or_else(|| Loaded {
        state: AdminState::absent(id, org),
        version: 0,
    }))
}

pub async fn org(db: &Db, id: OrgId) -> anyhow::Result<Loaded<OrgState>> {
    let streams = db.read_streams(&[id.0]).await?;
    Ok(fold_org(streams.get(&id.0)))
}

fn fold_org(stream: Option<&Stream>) -> Loaded<OrgState> {
    let Some(stream) = stream else {
        return Loaded {
            state: OrgState::default(),
            version: 0,
        };
    };
    let state = stream
        .events
        .iter()
        .filter_map(|e| e.event().ok())
        .fold(OrgState::default(), |s, e| s.evolve(&e));
    Loaded {
        state,
        version: stream.version,
    }
}
