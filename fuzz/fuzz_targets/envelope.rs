//! Bytes as an envelope off the wire (NATS, an export, the store): JSON decoding, the typed
//! event with upcasting, and the canonical form and chain link of anything that decodes.
//! Properties: nothing panics; a decoded event re-encodes to data that decodes to itself; the
//! canonical form is JSON equal to the envelope and is what `Chain::next` hashes.
#![no_main]

use gatehouse_events::chain::canonical_json;
use gatehouse_events::{Chain, Envelope, Event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(bytes) else {
        return;
    };
    let _ = envelope.actor();
    let _ = envelope.occurred_at();

    if let Ok(event) = envelope.event() {
        let again = Event::decode(event.type_name(), &event.data())
            .expect("a decoded event's own data decodes");
        assert_eq!(again, event, "decode(data(event)) != event");
        let _ = event.subject();
        let _ = event.stream_id();
    }

    let value = serde_json::to_value(&envelope).expect("an envelope is always a JSON value");
    match canonical_json(&value) {
        Ok(canonical) => {
            let reparsed: serde_json::Value =
                serde_json::from_slice(&canonical).expect("the canonical form is JSON");
            assert_eq!(reparsed, value, "the canonical form changed the envelope");
            assert_eq!(
                Chain::GENESIS.next(&envelope),
                Ok(Chain::GENESIS.next_canonical(&canonical))
            );
        }
        Err(_) => assert!(Chain::GENESIS.next(&envelope).is_err()),
    }
});
