//! Verification of an organisation's hash chain (SPEC §5), online (the store feeds
//! [`Verifier`] its rows) or offline: [`verify_export`] reads an NDJSON export line by line,
//! with no database, in constant memory.
//!
//! Each event is checked against the link before it as stated (the previous row's `chain`, or
//! the previous export line's), so one altered event makes exactly the events whose link it
//! breaks fail, and the checking carries on past it. The report names the smallest position
//! among those failures: a changed event names itself, a deleted one the event after the hole,
//! a swapped pair the first of the two. The head reported is recomputed without ever taking a
//! stated link on trust (after the anchor): it equals the stated head only when nothing failed.
//! docs/audit-chain.md describes the algorithm for auditors.

use std::io::BufRead;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::chain::{Chain, canonical_json};

/// The type of every organisation's first event: an export whose first line has this type
/// claims to begin at the genesis link and is verified from it.
pub const ORG_CREATED: &str = "gatehouse.org.created.v1";

/// One line of an NDJSON export: `{"chain": "<hex>", "event": <envelope>}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportLine<E> {
    pub chain: String,
    pub event: E,
}

/// Where an export that does not begin at the genesis link was anchored: its first event,
/// whose stated link is taken on trust (nothing in the export can prove it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anchor {
    pub position: i64,
    #[serde(serialize_with = "hex_chain")]
    pub chain: Chain,
}

/// The outcome of a verification. As JSON: `{"verified", "events", "head", "first_bad_position"}`
/// and, for an export that does not begin at genesis, `"anchor": {"position", "chain"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub verified: bool,
    /// Events checked (the anchor included).
    pub events: u64,
    /// The link recomputed over every event checked.
    #[serde(serialize_with = "hex_chain")]
    pub head: Chain,
    pub first_bad_position: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Anchor>,
}

fn hex_chain<S: Serializer>(chain: &Chain, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&chain.to_hex())
}

impl Report {
    /// One line for people, the same in `gatehouse audit verify` and scripts/verify_export.py.
    pub fn summary(&self) -> String {
        let from = match &self.anchor {
            Some(a) => format!(
                " from position {} (anchored at that event's stated chain, not from genesis)",
                a.position
            ),
            None => String::new(),
        };
        match self.first_bad_position {
            None if self.verified => format!(
                "verified: {} events{from}, head {}",
                self.events,
                self.head.to_hex()
            ),
            Some(p) => format!(
                "NOT VERIFIED: first bad position {p} ({} events{from}, head {})",
                self.events,
                self.head.to_hex()
            ),
            None => format!(
                "NOT VERIFIED ({} events{from}, head {})",
                self.events,
                self.head.to_hex()
            ),
        }
    }
}

/// How the first event is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From `c_0`, the link before an organisation's first event.
    Genesis,
    /// From `c_0` when the first event is its organisation's creation or links from `c_0`;
    /// otherwise (an export with a `start_time`) anchored at the first event's stated link.
    Auto,
}

/// Checks a chain one event at a time, in position order.
#[derive(Debug)]
pub struct Verifier {
    start: Start,
    /// The link before the next event as stated by the previous one (`None` before the first).
    stated: Option<Chain>,
    /// The link recomputed from the genesis or the anchor.
    computed: Chain,
    events: u64,
    first_bad: Option<i64>,
    anchor: Option<Anchor>,
}

impl Verifier {
    pub fn new(start: Start) -> Verifier {
        Verifier {
            start,
            stated: None,
            computed: Chain::GENESIS,
            events: 0,
            first_bad: None,
            anchor: None,
        }
    }

    fn fail(&mut self, position: i64) {
        self.first_bad = Some(self.first_bad.map_or(position, |p| p.min(position)));
    }

    /// The next event: its position, its envelope as stored or exported, and the link stated
    /// with it. An envelope that cannot be canonicalised (a float) fails at its position.
    pub fn push(&mut self, position: i64, envelope: &Value, stated: Chain) {
        self.events += 1;
        let Ok(canonical) = canonical_json(envelope) else {
            self.fail(position);
            self.stated = Some(stated);
            return;
        };
        let previous = match self.stated {
            Some(previous) => previous,
            None => {
                let from_genesis = Chain::GENESIS.next_canonical(&canonical);
                let claims_genesis =
                    envelope.get("type").and_then(Value::as_str) == Some(ORG_CREATED);
                if self.start == Start::Auto && from_genesis != stated && !claims_genesis {
                    // A partial export: nothing before it is at hand to check its first link.
                    self.anchor = Some(Anchor {
                        position,
                        chain: stated,
                    });
                    self.computed = stated;
                    self.stated = Some(stated);
                    return;
                }
                Chain::GENESIS
            }
        };
        if previous.next_canonical(&canonical) != stated {
            self.fail(position);
        }
        self.computed = self.computed.next_canonical(&canonical);
        self.stated = Some(stated);
    }

    /// Records a failure found outside the events themselves (e.g. the store's recorded head
    /// naming an event that is missing).
    pub fn fail_at(&mut self, position: i64) {
        self.fail(position);
    }

    /// The last link stated (c_0 before any event).
    pub fn stated_head(&self) -> Chain {
        self.stated.unwrap_or(Chain::GENESIS)
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn finish(self) -> Report {
        let stated = self.stated.unwrap_or(Chain::GENESIS);
        Report {
            verified: self.first_bad.is_none() && stated == self.computed,
            events: self.events,
            head: self.computed,
            first_bad_position: self.first_bad,
            anchor: self.anchor,
        }
    }
}

/// Why an export could not be read (as opposed to read and found altered).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("line {line}: {reason}")]
    Malformed { line: u64, reason: String },
    #[error("reading the export: {0}")]
    Io(#[from] std::io::Error),
}

/// Verifies an NDJSON export read from `input` (blank lines are skipped).
pub fn verify_export<R: BufRead>(input: R, start: Start) -> Result<Report, ExportError> {
    let mut verifier = Verifier::new(start);
    for (index, line) in input.lines().enumerate() {
        let line_no = index as u64 + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |reason: String| ExportError::Malformed {
            line: line_no,
            reason,
        };
        let parsed: ExportLine<Value> = serde_json::from_str(&line).map_err(|e| {
            malformed(format!(
                "not an export line {{\"chain\": hex, \"event\": envelope}}: {e}"
            ))
        })?;
        let chain = Chain::from_hex(&parsed.chain)
            .map_err(|_| malformed("chain must be 64 hexadecimal digits".to_owned()))?;
        if !parsed.event.is_object() {
            return Err(malformed("event must be a JSON object".to_owned()));
        }
        let position = parsed
            .event
            .get("position")
            .and_then(Value::as_i64)
            .ok_or_else(|| malformed("the event has no integer position".to_owned()))?;
        verifier.push(position, &parsed.event, chain);
    }
    Ok(verifier.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(position: i64, kind: &str, name: &str) -> Value {
        json!({"type": kind, "position": position, "data": {"name": name}})
    }

    /// An export of `events`, linked from `c_0`.
    fn export(events: &[Value]) -> Vec<(Chain, Value)> {
        let mut chain = Chain::GENESIS;
        events
            .iter()
            .map(|e| {
                chain = chain.next_canonical(&canonical_json(e).expect("no floats"));
                (chain, e.clone())
            })
            .collect()
    }

    fn ndjson(lines: &[(Chain, Value)]) -> String {
        lines
            .iter()
            .map(|(c, e)| json!({"chain": c.to_hex(), "event": e}).to_string() + "\n")
            .collect()
    }

    fn history() -> Vec<(Chain, Value)> {
        let mut events = vec![event(3, ORG_CREATED, "acme")];
        for p in [5, 6, 9, 10, 12] {
            events.push(event(p, "gatehouse.admin.created.v1", &format!("a{p}")));
        }
        export(&events)
    }

    fn check(lines: &[(Chain, Value)]) -> Report {
        verify_export(ndjson(lines).as_bytes(), Start::Auto).expect("a well-formed export")
    }

    #[test]
    fn an_untouched_export_verifies_from_genesis_with_the_last_link_as_head() {
        let lines = history();
        let report = check(&lines);
        assert_eq!(
            report,
            Report {
                verified: true,
                events: 6,
                head: lines[5].0,
                first_bad_position: None,
                anchor: None,
            }
        );
        assert_eq!(
            serde_json::to_value(&report).expect("serialises"),
            json!({"verified": true, "events": 6, "head": lines[5].0.to_hex(), "first_bad_position": null})
        );
    }

    #[test]
    fn a_changed_event_is_named_by_its_position() {
        let mut lines = history();
        lines[2].1["data"]["name"] = json!("mallory");
        let report = check(&lines);
        assert!(!report.verified);
        assert_eq!(report.first_bad_position, Some(6));
    }

    #[test]
    fn a_deleted_event_is_named_by_the_position_after_the_hole() {
        let mut lines = history();
        lines.remove(3);
        assert_eq!(check(&lines).first_bad_position, Some(10));
    }

    #[test]
    fn a_swapped_pair_is_named_by_the_first_of_the_two() {
        let mut lines = history();
        let (a, b) = (lines[1].1.clone(), lines[4].1.clone());
        lines[1].1 = b;
        lines[4].1 = a;
        assert_eq!(check(&lines).first_bad_position, Some(5));
    }

    #[test]
    fn a_changed_first_event_fails_even_though_it_cannot_be_anchored() {
        let mut lines = history();
        lines[0].1["data"]["name"] = json!("globex");
        assert_eq!(check(&lines).first_bad_position, Some(3));
        assert!(
            !verify_export(ndjson(&lines[1..]).as_bytes(), Start::Genesis)
                .expect("well-formed")
                .verified
        );
    }

    #[test]
    fn a_partial_export_is_anchored_at_its_first_line_and_says_so() {
        let lines = history();
        let report = check(&lines[2..]);
        assert!(report.verified);
        assert_eq!(report.events, 4);
        assert_eq!(report.head, lines[5].0);
        assert_eq!(
            report.anchor,
            Some(Anchor {
                position: 6,
                chain: lines[2].0
            })
        );
        assert!(report.summary().contains("not from genesis"));
    }

    /// The worked example of docs/audit-chain.md (computed there with scripts/verify_export.py).
    #[test]
    fn the_documented_example_links_to_the_documented_hash() {
        let envelope = json!({
            "specversion": "1.0", "id": "01937a1e-0000-7000-8000-000000000001",
            "source": "gatehouse/orgs/01937a1e-0000-7000-8000-0000000000aa",
            "type": "gatehouse.org.created.v1",
            "subject": "orgs/01937a1e-0000-7000-8000-0000000000aa",
            "time": "2026-11-28T10:00:00.123Z", "datacontenttype": "application/json",
            "position": 1, "streamversion": 1,
            "orgid": "01937a1e-0000-7000-8000-0000000000aa", "actorid": "system",
            "correlationid": "01937a1e-0000-7000-8000-0000000000cc",
            "data": {"org_id": "01937a1e-0000-7000-8000-0000000000aa", "name": "Acme \"Ltd\"\n\u{e9}"}
        });
        let canonical = canonical_json(&envelope).expect("no floats");
        assert_eq!(
            String::from_utf8(canonical.clone()).expect("UTF-8"),
            concat!(
                r#"{"actorid":"system","correlationid":"01937a1e-0000-7000-8000-0000000000cc","#,
                r#""data":{"name":"Acme \"Ltd\"\né","org_id":"01937a1e-0000-7000-8000-0000000000aa"},"#,
                r#""datacontenttype":"application/json","id":"01937a1e-0000-7000-8000-000000000001","#,
                r#""orgid":"01937a1e-0000-7000-8000-0000000000aa","position":1,"#,
                r#""source":"gatehouse/orgs/01937a1e-0000-7000-8000-0000000000aa","specversion":"1.0","#,
                r#""streamversion":1,"subject":"orgs/01937a1e-0000-7000-8000-0000000000aa","#,
                r#""time":"2026-11-28T10:00:00.123Z","type":"gatehouse.org.created.v1"}"#
            )
        );
        assert_eq!(
            Chain::GENESIS.next_canonical(&canonical).to_hex(),
            "9480e6f39144a0d0cc768bb91790657b5ba064256a031f64c78d1362e9f7453f"
        );
    }

    #[test]
    fn an_empty_export_verifies_with_the_genesis_head() {
        let report = check(&[]);
        assert!(report.verified);
        assert_eq!(report.head, Chain::GENESIS);
    }

    #[test]
    fn malformed_lines_are_named_by_their_number() {
        let good = ndjson(&history()[..2]);
        for (bad, reason) in [
            ("not json", "not an export line"),
            ("{\"chain\": \"zz\", \"event\": {}}", "64 hexadecimal"),
            (
                &format!(
                    "{{\"chain\": \"{}\", \"event\": 1}}",
                    Chain::GENESIS.to_hex()
                ),
                "JSON object",
            ),
            (
                &format!(
                    "{{\"chain\": \"{}\", \"event\": {{}}}}",
                    Chain::GENESIS.to_hex()
                ),
                "position",
            ),
        ] {
            let input = format!("{good}{bad}\n");
            let err = verify_export(input.as_bytes(), Start::Auto).expect_err(bad);
            let message = err.to_string();
            assert!(message.starts_with("line 3: "), "{message}");
            assert!(message.contains(reason), "{message}");
        }
    }
}
