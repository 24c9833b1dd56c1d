//! The JSON Schemas (draft 2020-12) of what Gatehouse publishes, and the AsyncAPI 3 document of
//! the stream, generated from this crate's types. They are committed under `events/schema/`
//! for teams that do not read Rust; `tests/schema.rs` fails when the code and the committed
//! files differ (`GATEHOUSE_BLESS_SCHEMAS=1` rewrites them).
//!
//! - `envelope.json`: any envelope, `data` an object.
//! - `<type>.json` (e.g. `gatehouse.admin.mfa_required.v1.json`): the whole message body of
//!   one event type, self-contained (no `$ref`): the envelope with that `type` and its `data`.
//! - `asyncapi.json`: the stream, its subjects (one channel per type), the headers, and the
//!   messages, whose payloads refer to the files above.
//!
//! The schemas describe exactly what this version publishes: every object lists its fields and
//! allows no others, so a field that should not be there (a secret, say) fails validation.
//! Consumers should still ignore fields and types they do not know (docs/consumers.md): a later
//! version may add them.

use std::borrow::Cow;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};

use crate::{Envelope, Event};

/// Where the committed files live.
pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema");

/// The JSON Schema dialect of every file.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// A UUID (any version; Gatehouse writes v7 ids), unanchored and anchored.
const UUID_BODY: &str = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const UUID: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
/// RFC 3339 UTC with milliseconds, as every time is written.
const TIME: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$";
/// A versioned Gatehouse event type.
const TYPE: &str = r"^gatehouse\.[a-z_]+\.[a-z_]+\.v[1-9][0-9]*$";

/// Times inside `data`, written like the envelope's `time`.
pub(crate) struct Time;

impl JsonSchema for Time {
    fn schema_name() -> Cow<'static, str> {
        "Time".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "date-time", "pattern": TIME })
    }
}

/// Every file of `events/schema/`: its name and its content.
pub fn files() -> Vec<(String, Value)> {
    let types = event_types();
    let mut files = vec![("envelope.json".to_owned(), envelope(None))];
    for (event_type, data) in &types {
        files.push((
            format!("{event_type}.json"),
            envelope(Some((event_type, data.clone()))),
        ));
    }
    files.push(("asyncapi.json".to_owned(), asyncapi(&types)));
    files
}

/// The committed text of a file: pretty JSON and a final newline.
pub fn render(json: &Value) -> String {
    let mut text = serde_json::to_string_pretty(json).unwrap_or_default();
    text.push('\n');
    text
}

fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
}

/// Every event type at its current version, with the schema of its `data`, in the order of
/// [`Event`]'s variants.
pub fn event_types() -> Vec<(String, Value)> {
    let schema = generator().into_root_schema_for::<Event>().to_value();
    let variants = schema
        .get("oneOf")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    variants
        .iter()
        .filter_map(|variant| {
            let properties = variant.get("properties")?;
            let tag = properties.get("type")?;
            let name = tag
                .get("const")
                .or_else(|| tag.get("enum").and_then(|e| e.get(0)))?
                .as_str()?;
            let mut data = properties.get("data")?.clone();
            strict(&mut data);
            Some((name.to_owned(), data))
        })
        .collect()
}

/// The envelope's schema: of one type with its `data`, or of any type.
fn envelope(event: Option<(&str, Value)>) -> Value {
    let mut schema = generator().into_root_schema_for::<Envelope>().to_value();
    let (title, description, type_schema, data) = match event {
        Some((event_type, data)) => (
            event_type.to_owned(),
            format!("A Gatehouse `{event_type}` event: the CloudEvents 1.0 envelope (structured JSON mode) with its data."),
            json!({ "const": event_type }),
            data,
        ),
        None => (
            "Gatehouse envelope".to_owned(),
            "Any Gatehouse event: the CloudEvents 1.0 envelope (structured JSON mode); the schema of each type names its data.".to_owned(),
            json!({ "type": "string", "pattern": TYPE }),
            json!({ "type": "object" }),
        ),
    };
    let fields = [
        ("specversion", json!({ "const": "1.0" })),
        (
            "id",
            json!({ "type": "string", "format": "uuid", "pattern": UUID, "description": "The event's id (UUID v7); also the NATS `Nats-Msg-Id`." }),
        ),
        (
            "source",
            json!({ "type": "string", "pattern": format!("^gatehouse/orgs/{UUID_BODY}$") }),
        ),
        ("type", type_schema),
        (
            "subject",
            json!({ "type": "string", "pattern": format!("^(admins|orgs)/{UUID_BODY}$"), "description": "The aggregate the event belongs to." }),
        ),
        (
            "time",
            json!({ "type": "string", "format": "date-time", "pattern": TIME }),
        ),
        ("datacontenttype", json!({ "const": "application/json" })),
        (
            "position",
            json!({ "type": "integer", "minimum": 1, "description": "Global position in the event store: gapless, increasing; the key to deduplicate and resume by." }),
        ),
        (
            "streamversion",
            json!({ "type": "integer", "minimum": 1, "description": "Version of the aggregate's stream after this event." }),
        ),
        (
            "orgid",
            json!({ "type": "string", "format": "uuid", "pattern": UUID }),
        ),
        (
            "actorid",
            json!({ "type": "string", "pattern": format!("^(system|{UUID_BODY})$"), "description": "The administrator who caused the event, or `system`." }),
        ),
        (
            "correlationid",
            json!({ "type": "string", "format": "uuid", "pattern": UUID, "description": "Shared by the events of one command." }),
        ),
        (
            "authmethod",
            json!({ "enum": ["session", "api-key"], "description": "CloudEvents extension: how the actor authenticated; absent for the system and the Set Up MFA link." }),
        ),
        ("data", data),
    ];
    let properties = schema.get_mut("properties").and_then(Value::as_object_mut);
    if let Some(properties) = properties {
        for (name, replacement) in fields {
            properties.insert(name.to_owned(), replacement);
        }
    }
    if let Some(object) = schema.as_object_mut() {
        object.insert("title".to_owned(), json!(title));
        object.insert("description".to_owned(), json!(description));
        object.insert("additionalProperties".to_owned(), json!(false));
    }
    schema
}

/// Objects with named fields allow no other fields (recursively).
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".to_owned(), json!(false));
            }
            map.values_mut().for_each(strict);
        }
        Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

/// `gatehouse.admin.mfa_required.v1` → (`admin`, `mfa_required`).
fn aggregate_and_name(event_type: &str) -> (&str, &str) {
    let mut parts = event_type.split('.').skip(1);
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

/// The AsyncAPI 3.0 document: one channel (subject) and one receive operation per type.
fn asyncapi(types: &[(String, Value)]) -> Value {
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for (event_type, _) in types {
        let (aggregate, name) = aggregate_and_name(event_type);
        let id = format!("{aggregate}_{name}");
        let message = event_type.replace('.', "_");
        channels.insert(
            id.clone(),
            json!({
                "address": format!("{{prefix}}.{{orgId}}.{aggregate}.{name}"),
                "title": format!("{aggregate}.{name}"),
                "parameters": {
                    "prefix": { "$ref": "#/components/parameters/prefix" },
                    "orgId": { "$ref": "#/components/parameters/orgId" }
                },
                "messages": { message.clone(): { "$ref": format!("#/components/messages/{message}") } }
            }),
        );
        operations.insert(
            format!("receive_{id}"),
            json!({
                "action": "receive",
                "channel": { "$ref": format!("#/channels/{id}") },
                "messages": [{ "$ref": format!("#/channels/{id}/messages/{message}") }]
            }),
        );
        messages.insert(
            message,
            json!({
                "name": event_type,
                "title": event_type,
                "contentType": "application/json",
                "headers": { "$ref": "#/components/schemas/headers" },
                "payload": { "$ref": format!("./{event_type}.json") }
            }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Gatehouse events",
            "version": "1.0.0",
            "description": "Every event Gatehouse appends to its Postgres event store, relayed to NATS JetStream in position order. The body is the CloudEvents 1.0 envelope (SPEC §4). Guarantees, resuming and backfilling: docs/consumers.md. The hash chain: docs/audit-chain.md."
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "NATS with JetStream. The stream (`GATEHOUSE_NATS_STREAM`, GATEHOUSE_EVENTS by default) has file storage and holds the subjects `{prefix}.>`."
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "parameters": {
                "prefix": {
                    "default": "gatehouse",
                    "description": "The first token of every subject (`GATEHOUSE_NATS_PREFIX`)."
                },
                "orgId": {
                    "description": "The organisation's id: subscribe to `{prefix}.{orgId}.>` for all of one organisation's events."
                }
            },
            "messages": messages,
            "schemas": {
                "headers": {
                    "type": "object",
                    "required": ["Nats-Msg-Id", "Gatehouse-Position", "Gatehouse-Chain"],
                    "properties": {
                        "Nats-Msg-Id": { "type": "string", "pattern": UUID, "description": "The event's id: JetStream drops a duplicate within the stream's duplicate window; consumers deduplicate by it or by position." },
                        "Gatehouse-Position": { "type": "string", "pattern": "^[1-9][0-9]*$", "description": "The event's global position, in decimal." },
                        "Gatehouse-Chain": { "type": "string", "pattern": "^[0-9a-f]{64}$", "description": "The organisation's hash-chain link after this event, in hex (docs/audit-chain.md)." },
                        "Nats-Expected-Last-Msg-Id": { "type": "string", "pattern": UUID, "description": "Set by the relay to keep the stream in position order; consumers ignore it." }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_a_schema_of_its_data() {
        let types = event_types();
        assert_eq!(types.len(), 17);
        let (name, data) = types
            .iter()
            .find(|(name, _)| name == "gatehouse.admin.mfa_required.v1")
            .expect("mfa_required");
        assert_eq!(name, "gatehouse.admin.mfa_required.v1");
        assert_eq!(data["required"], json!(["admin_id", "source"]));
        assert_eq!(data["additionalProperties"], json!(false));
    }

    #[test]
    fn patterns_are_anchored_at_both_ends() {
        assert_eq!(UUID, format!("^{UUID_BODY}$"));
        let envelope = envelope(None);
        for field in ["source", "subject", "actorid", "id", "time"] {
            let pattern = envelope["properties"][field]["pattern"]
                .as_str()
                .expect("a pattern");
            assert!(
                pattern.starts_with('^')
                    && pattern.ends_with('$')
                    && !pattern[..pattern.len() - 1].contains('$'),
                "{field}: {pattern}"
            );
        }
    }

    #[test]
    fn subjects_split_into_aggregate_and_name() {
        assert_eq!(
            aggregate_and_name("gatehouse.org.global_mfa_enabled.v1"),
            ("org", "global_mfa_enabled")
        );
    }
}
