//! Folding streams into the states deciders take. Each state comes with the version it was read
//! at, which the append then expects.

use std::collections::HashMap;

use gatehouse_domain::{AdminId, AdminState, OrgId, OrgState};
use gatehouse_events::Envelope;
use gatehouse_events::types::Aggregate;
use gatehouse_store::Db;
pub use gatehouse_store::kept::Loaded;
use gatehouse_store::kept::States;
use gatehouse_store::read::Stream;
use uuid::Uuid;

/// Admins' states by id.
pub type Admins = HashMap<AdminId, Loaded<AdminState>>;

/// The admins' and organisations' states a process keeps (see [`States`]).
pub struct Kept {
    admins: States<AdminState>,
    orgs: States<OrgState>,
}

/// How many admins' states a process keeps (a few hundred bytes each).
pub const KEPT_ADMIN_STATES: usize = 10_000;

/// How many organisations' states a process keeps (a few dozen bytes each).
pub const KEPT_ORG_STATES: usize = 1_000;

impl Default for Kept {
    fn default() -> Self {
        Kept {
            admins: States::new(KEPT_ADMIN_STATES),
            orgs: States::new(KEPT_ORG_STATES),
        }
    }
}

impl Kept {
    /// Folds what this process just appended into the states it keeps, exactly as a read of
    /// those events would (the envelopes' own times), so its next command on them need not read
    /// them back.
    pub fn advance(&self, envelopes: &[Envelope]) {
        for envelope in envelopes {
            let (Ok(event), Some(at)) = (envelope.event(), envelope.occurred_at()) else {
                continue;
            };
            let version = envelope.streamversion;
            match event.aggregate() {
                Aggregate::Admin(id) => self.admins.advance(
                    id,
                    version,
                    || AdminState::absent(AdminId(id), OrgId(envelope.orgid)),
                    |state| state.evolve(&event, at),
                ),
                Aggregate::Org(id) => self
                    .orgs
                    .advance(id, version, OrgState::default, |state| state.evolve(&event)),
            }
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
pub async fn admins(db: &Db, kept: &Kept, org: OrgId, ids: &[AdminId]) -> anyhow::Result<Admins> {
    Ok(read(db, kept, org, ids, false).await?.0)
}

/// Loads admins as [`admins`] does and their organisation beside them, in one read.
pub async fn admins_and_org(
    db: &Db,
    kept: &Kept,
    org: OrgId,
    ids: &[AdminId],
) -> anyhow::Result<(Admins, Loaded<OrgState>)> {
    let (admins, org) = read(db, kept, org, ids, true).await?;
    Ok((admins, org.unwrap_or_else(new_org)))
}

/// The admins and their organisation as this process last knew them, without reading: `None`
/// unless every one is kept. Their streams may have moved since (in another process), so a
/// decision on them must expect every one's version, and only an append may act on it: a
/// refusal or a no-op is answered from states read.
pub fn kept_admins_and_org(
    kept: &Kept,
    org: OrgId,
    ids: &[AdminId],
) -> Option<(Admins, Loaded<OrgState>)> {
    let admins = ids
        .iter()
        .map(|id| Some((*id, kept.admins.get(id.0)?)))
        .collect::<Option<HashMap<_, _>>>()?;
    Some((admins, kept.orgs.get(org.0)?))
}

/// Reads the admins' streams (and the organisation's, when asked) after their kept versions;
/// answers the folded states, now kept.
async fn read(
    db: &Db,
    kept: &Kept,
    org: OrgId,
    ids: &[AdminId],
    with_org: bool,
) -> anyhow::Result<(Admins, Option<Loaded<OrgState>>)> {
    let bases: Vec<Option<Loaded<AdminState>>> =
        ids.iter().map(|id| kept.admins.get(id.0)).collect();
    let org_base = with_org.then(|| kept.orgs.get(org.0)).flatten();
    let mut after: Vec<(Uuid, i64)> = ids
        .iter()
        .zip(&bases)
        .map(|(id, base)| (id.0, base.as_ref().map_or(0, |b| b.version)))
        .collect();
    if with_org {
        after.push((org.0, org_base.as_ref().map_or(0, |b| b.version)));
    }
    let streams = db.read_streams_after(&after).await?;
    let admins = ids
        .iter()
        .zip(bases)
        .map(|(id, base)| {
            let loaded = fold_admin(*id, org, base, streams.get(&id.0));
            kept.admins.keep(id.0, &loaded);
            (*id, loaded)
        })
        .collect();
    let org = with_org.then(|| {
        let loaded = fold_org(org_base, streams.get(&org.0));
        kept.orgs.keep(org.0, &loaded);
        loaded
    });
    Ok((admins, org))
}

pub async fn admin(
    db: &Db,
    kept: &Kept,
    org: OrgId,
    id: AdminId,
) -> anyhow::Result<Loaded<AdminState>> {
    let mut map = admins(db, kept, org, &[id]).await?;
    Ok(map.remove(&id).unwrap_or_else(|| Loaded {
        state: AdminState::absent(id, org),
        version: 0,
    }))
}

/// Loads an organisation from its kept state and what its stream gained since.
pub async fn org(db: &Db, kept: &Kept, id: OrgId) -> anyhow::Result<Loaded<OrgState>> {
    let (_, org) = read(db, kept, id, &[], true).await?;
    Ok(org.unwrap_or_else(new_org))
}

/// An organisation with no event yet.
fn new_org() -> Loaded<OrgState> {
    Loaded {
        state: OrgState::default(),
        version: 0,
    }
}

/// Folds what the organisation's stream gained after `base` (or the whole stream) into its state.
fn fold_org(base: Option<Loaded<OrgState>>, stream: Option<&Stream>) -> Loaded<OrgState> {
    let base = base.unwrap_or_else(new_org);
    let Some(stream) = stream else {
        return base;
    };
    let state = stream
        .events
        .iter()
        .filter_map(|e| e.event().ok())
        .fold(base.state, |s, e| s.evolve(&e));
    Loaded {
        state,
        version: stream.version,
    }
}
