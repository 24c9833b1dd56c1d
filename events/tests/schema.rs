//! The committed schemas (`events/schema/`) are the ones the code generates: a change to an
//! event type that is not reflected there fails here. To accept a change on purpose:
//! `GATEHOUSE_BLESS_SCHEMAS=1 cargo test -p gatehouse-events --test schema`, then review the
//! diff (and version the type if the change is not additive: docs/consumers.md).

use std::collections::BTreeSet;
use std::path::Path;

use gatehouse_events::schema;

#[test]
fn the_committed_schemas_are_the_generated_ones() {
    let dir = Path::new(schema::DIR);
    let files = schema::files();
    if std::env::var_os("GATEHOUSE_BLESS_SCHEMAS").is_some() {
        std::fs::create_dir_all(dir).expect("the schema directory");
        for entry in std::fs::read_dir(dir).expect("the schema directory") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                std::fs::remove_file(&path).expect("an old schema is removed");
            }
        }
        for (name, json) in &files {
            std::fs::write(dir.join(name), schema::render(json)).expect("a schema is written");
        }
    }

    let mut stale = Vec::new();
    for (name, json) in &files {
        let committed = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        if committed != schema::render(json) {
            stale.push(name.clone());
        }
    }
    let expected: BTreeSet<String> = files.iter().map(|(name, _)| name.clone()).collect();
    let present: BTreeSet<String> = std::fs::read_dir(dir)
        .expect("events/schema exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect();
    let extra: Vec<&String> = present.difference(&expected).collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "events/schema/ differs from the code: changed or missing {stale:?}, no longer generated {extra:?}; \
         run `GATEHOUSE_BLESS_SCHEMAS=1 cargo test -p gatehouse-events --test schema` and review the diff"
    );
}

#[test]
fn every_event_type_has_its_file_and_its_asyncapi_message() {
    let files = schema::files();
    let asyncapi = &files
        .iter()
        .find(|(name, _)| name == "asyncapi.json")
        .expect("asyncapi.json")
        .1;
    for (event_type, _) in schema::event_types() {
        assert!(
            files
                .iter()
                .any(|(name, _)| *name == format!("{event_type}.json")),
            "{event_type} has a schema"
        );
        let message = &asyncapi["components"]["messages"][event_type.replace('.', "_")];
        assert_eq!(message["payload"]["$ref"], format!("./{event_type}.json"));
    }
}
