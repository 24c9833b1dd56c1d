//! The CloudEvents 1.0 envelope (structured JSON mode) of SPEC §4.

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::types::{DecodeError, Event};

/// Who caused an event: an administrator, or Gatehouse itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Admin(Uuid),
    System,
}

impl Actor {
    pub fn as_string(&self) -> String {
        match self {
            Actor::Admin(id) => id.to_string(),
            Actor::System => "system".to_owned(),
        }
    }

    pub fn parse(s: &str) -> Option<Actor> {
        if s == "system" {
            Some(Actor::System)
        } else {
            Uuid::parse_str(s).ok().map(Actor::Admin)
        }
    }
}

/// One published event. Field order follows the SPEC; the chain hashes the canonical form, so
/// order does not matter to verification.
///
/// Invariant: no field is a float, every key is ASCII, and `data` never holds a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    pub specversion: String,
    pub id: Uuid,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub subject: String,
    pub time: String,
    pub datacontenttype: String,
    pub position: i64,
    pub streamversion: i64,
    pub orgid: Uuid,
    pub actorid: String,
    pub correlationid: Uuid,
    /// CloudEvents extension: how the actor proved who they were (`session` or `api-key`), for
    /// the audit's `auth_method`; absent for the system and for the Set Up MFA link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authmethod: Option<String>,
    pub data: serde_json::Value,
}

/// The fields of an envelope that the writer chooses; position and stream version are given by
/// the store when it appends.
#[derive(Debug, Clone)]
pub struct EnvelopeParts {
    pub id: Uuid,
    pub org_id: Uuid,
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub time: DateTime<Utc>,
    /// `session` or `api-key` when an administrator acted through one.
    pub auth_method: Option<&'static str>,
}

/// RFC 3339 UTC with milliseconds, as every envelope and API answer writes time.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Envelope {
    pub fn new(parts: &EnvelopeParts, event: &Event, position: i64, streamversion: i64) -> Self {
        Envelope {
            specversion: "1.0".to_owned(),
            id: parts.id,
            source: format!("gatehouse/orgs/{}", parts.org_id),
            event_type: event.type_name().to_owned(),
            subject: event.subject(),
            time: format_time(parts.time),
            datacontenttype: "application/json".to_owned(),
            position,
            streamversion,
            orgid: parts.org_id,
            actorid: parts.actor.as_string(),
            correlationid: parts.correlation_id,
            authmethod: parts.auth_method.map(str::to_owned),
            data: event.data(),
        }
    }

    /// The typed event, upcast to the current version of its type.
    pub fn event(&self) -> Result<Event, DecodeError> {
        Event::decode(&self.event_type, &self.data)
    }

    pub fn actor(&self) -> Option<Actor> {
        Actor::parse(&self.actorid)
    }

    pub fn occurred_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.time)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}
