//! Folding streams into the states deciders take. Each state comes with the version it was read
//! at, which the append then expects.

use std::collections::HashMap;

use gatehouse_domain::{AdminId, AdminState, OrgId, OrgState};
use gatehouse_store::read::Stream;
use gatehouse_store::{Db, Expected};

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

fn fold_admin(id: AdminId, org: OrgId, stream: Option<&Stream>) -> Loaded<AdminState> {
    let Some(stream) = stream else {
        return Loaded {
            state: AdminState::absent(id, org),
            version: 0,
        };
    };
    // The stream's own organisation, not the caller's: a foreign admin then fails the
    // deciders' same-organisation check.
    let mut state = AdminState::absent(id, OrgId(stream.org_id));
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

/// Loads admins by id (absent ones as [`AdminState::absent`] in `org`).
pub async fn admins(
    db: &Db,
    org: OrgId,
    ids: &[AdminId],
) -> anyhow::Result<HashMap<AdminId, Loaded<AdminState>>> {
    let raw: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    let streams = db.read_streams(&raw).await?;
    Ok(ids
        .iter()
        .map(|id| (*id, fold_admin(*id, org, streams.get(&id.0))))
        .collect())
}

pub async fn admin(db: &Db, org: OrgId, id: AdminId) -> anyhow::Result<Loaded<AdminState>> {
    let mut map = admins(db, org, &[id]).await?;
    Ok(map.remove(&id).unwrap_or_else(|| Loaded {
        state: AdminState::absent(id, org),
        version: 0,
    }))
}

pub async fn org(db: &Db, id: OrgId) -> anyhow::Result<Loaded<OrgState>> {
    let streams = db.read_streams(&[id.0]).await?;
    let Some(stream) = streams.get(&id.0) else {
        return Ok(Loaded {
            state: OrgState::default(),
            version: 0,
        });
    };
    let state = stream
        .events
        .iter()
        .filter_map(|e| e.event().ok())
        .fold(OrgState::default(), |s, e| s.evolve(&e));
    Ok(Loaded {
        state,
        version: stream.version,
    })
}
