//! `docs/events.md` is the contract for readers of the stream: every example
//! there must decode with the real structs and encode back to the same JSON,
//! and every type nodai writes must have an example.

use ingest::{Envelope, Event};
use std::collections::HashSet;

fn examples() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.md")).unwrap();
    doc.split("```json\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim().to_owned())
        .collect()
}

#[test]
fn every_documented_example_round_trips_exactly() {
    let mut documented = HashSet::new();
    for example in examples() {
        let envelope: Envelope = serde_json::from_str(&example).unwrap_or_else(|e| panic!("{e}: {example}"));
        if envelope.data.get() == "{}" {
            continue; // the bare envelope at the top
        }
        let event = envelope.event().unwrap_or_else(|e| panic!("{e}: {example}"));
        assert!(!matches!(event, Event::Unknown(_)), "undocumented type in {example}");
        let rebuilt = Envelope {
            data: serde_json::value::to_raw_value(&reencode(&event)).unwrap(),
            ..envelope.clone()
        };
        let original: serde_json::Value = serde_json::from_str(&example).unwrap();
        let again: serde_json::Value = serde_json::to_value(&rebuilt).unwrap();
        assert_eq!(original, again, "{} does not round-trip", envelope.event_type);
        documented.insert((envelope.event_type, envelope.version));
    }
    for (event_type, version) in Event::TYPES {
        assert!(
            documented.contains(&(event_type.to_string(), *version)),
            "{event_type} v{version} has no example in docs/events.md"
        );
    }
}

/// Encodes the event's data through a fresh envelope, the way producers do.
fn reencode(event: &Event) -> serde_json::Value {
    let envelope = Envelope::new(event, chrono::Utc::now()).unwrap();
    serde_json::from_str(envelope.data.get()).unwrap()
}

#[test]
fn unknown_types_and_versions_are_readable_not_fatal() {
    for (event_type, version) in [("invoice.paid", 1), ("key.created", 99)] {
        let json = format!(
            r#"{{"id":"0193a6f0-7c1e-7b3a-9c55-2f1d0e4b8a10","type":"{event_type}","version":{version},"ts":"2026-11-25T04:15:22Z","data":{{"anything":[1,2]}}}}"#
        );
        let envelope = Envelope::from_json(json.as_bytes()).unwrap();
        match envelope.event().unwrap() {
            Event::Unknown(u) => {
                assert_eq!((u.event_type.as_str(), u.version), (event_type, version))
            }
            other => panic!("decoded {other:?}"),
        }
    }
}
