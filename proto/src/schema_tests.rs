//! The JSON Schemas under `proto/schema/`, checked against the Rust event
//! types they document.
//!
//! Every event is serialised with [`Envelope::to_json`] (never hand-written
//! JSON), so the schemas are compared with what tagrelay really publishes:
//! - every sample validates, with `causation_id` both `null` and set, and so
//!   does every type's minimal shape (each optional field absent);
//! - a schema's `required` lists are exactly the fields serde always writes:
//!   removing one fails validation, removing any other field does not;
//! - an unknown field fails validation anywhere, so a field added to a Rust
//!   type without updating its schema fails here;
//! - there is exactly one schema per [`EventType::ALL`] entry.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::event::{
    samples, Envelope, Event, EventType, FailureReason, ImageMetadata, SelectedImage, TagsRef,
};

/// Every schema file, by file name. Embedded so that the test needs no paths
/// at run time; `there_is_exactly_one_schema_per_event_type` checks this list
/// against both [`EventType::ALL`] and the directory.
const SCHEMAS: [(&str, &str); 16] = [
    (
        "TagsDiscovered.v1.schema.json",
        include_str!("../schema/TagsDiscovered.v1.schema.json"),
    ),
    (
        "PolicyResolved.v1.schema.json",
        include_str!("../schema/PolicyResolved.v1.schema.json"),
    ),
    (
        "CommitPushed.v1.schema.json",
        include_str!("../schema/CommitPushed.v1.schema.json"),
    ),
    (
        "ScanFailed.v1.schema.json",
        include_str!("../schema/ScanFailed.v1.schema.json"),
    ),
    (
        "ResolveFailed.v1.schema.json",
        include_str!("../schema/ResolveFailed.v1.schema.json"),
    ),
    (
        "CommitFailed.v1.schema.json",
        include_str!("../schema/CommitFailed.v1.schema.json"),
    ),
    (
        "PullRequestOpened.v1.schema.json",
        include_str!("../schema/PullRequestOpened.v1.schema.json"),
    ),
    (
        "PullRequestUpdated.v1.schema.json",
        include_str!("../schema/PullRequestUpdated.v1.schema.json"),
    ),
    (
        "ReviewFailed.v1.schema.json",
        include_str!("../schema/ReviewFailed.v1.schema.json"),
    ),
    (
        "PolicyStale.v1.schema.json",
        include_str!("../schema/PolicyStale.v1.schema.json"),
    ),
    (
        "AutomationStalled.v1.schema.json",
        include_str!("../schema/AutomationStalled.v1.schema.json"),
    ),
    (
        "NotificationFailed.v1.schema.json",
        include_str!("../schema/NotificationFailed.v1.schema.json"),
    ),
    (
        "ConfigFailed.v1.schema.json",
        include_str!("../schema/ConfigFailed.v1.schema.json"),
    ),
    (
        "ManifestWarning.v1.schema.json",
        include_str!("../schema/ManifestWarning.v1.schema.json"),
    ),
    (
        "ConfigSynced.v1.schema.json",
        include_str!("../schema/ConfigSynced.v1.schema.json"),
    ),
    (
        "ConfigRejected.v1.schema.json",
        include_str!("../schema/ConfigRejected.v1.schema.json"),
    ),
];

/// Fields serialised as JSON objects with arbitrary keys (Rust maps, not
/// structs), as shape paths (see [`objects`]). A new key in one of them is
/// data, not an unknown field, and none of its keys is required.
const MAPS: [&str; 1] = ["/payload/images"];

fn file_name(event_type: EventType) -> String {
    format!(
        "{}.v{}.schema.json",
        event_type.as_str(),
        event_type.current_version()
    )
}

fn schema(event_type: EventType) -> Value {
    let name = file_name(event_type);
    let (_, text) = SCHEMAS
        .iter()
        .find(|(file, _)| *file == name)
        .unwrap_or_else(|| panic!("{name} is missing from SCHEMAS"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

/// The type's schema, itself checked against the draft 2020-12 meta-schema,
/// with `format` (date-time) asserted rather than only annotated.
fn validator(event_type: EventType) -> jsonschema::Validator {
    let schema = schema(event_type);
    if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
        panic!(
            "{} is not a valid draft 2020-12 schema: {e} at {}",
            file_name(event_type),
            e.instance_path()
        );
    }
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{}: {e}", file_name(event_type)))
}

/// Every error, with where it is, for assertion messages.
fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} (at {:?})", e, e.instance_path().as_str()))
        .collect()
}

/// The sample with every optional field absent and every map empty; lists
/// keep their items so that the items' own minimal shapes are covered.
fn minimal(event: Event) -> Event {
    match event {
        Event::TagsDiscovered(mut e) => {
            e.tags = None;
            e.tags_ref = None;
            e.previous_tag_set_digest = None;
            e.images.clear();
            Event::TagsDiscovered(e)
        }
        Event::PolicyResolved(mut e) => {
            e.previous = None;
            e.current.digest = None;
            Event::PolicyResolved(e)
        }
        Event::CommitPushed(mut e) => {
            e.parent = None;
            e.signed_with = None;
            Event::CommitPushed(e)
        }
        event @ (Event::PullRequestOpened(_) | Event::PullRequestUpdated(_)) => event,
        Event::ReviewFailed(mut f) => {
            f.reason = FailureReason::Other;
            Event::ReviewFailed(f)
        }
        Event::ScanFailed(mut f) => {
            f.reason = FailureReason::Other;
            Event::ScanFailed(f)
        }
        Event::ResolveFailed(mut f) => {
            f.reason = FailureReason::Other;
            Event::ResolveFailed(f)
        }
        Event::CommitFailed(mut f) => {
            f.reason = FailureReason::Other;
            Event::CommitFailed(f)
        }
        Event::NotificationFailed(mut f) => {
            f.reason = FailureReason::Other;
            Event::NotificationFailed(f)
        }
        Event::ConfigFailed(mut f) => {
            f.reason = FailureReason::Other;
            Event::ConfigFailed(f)
        }
        // Every field is required.
        event @ (Event::ManifestWarning(_)
        | Event::PolicyStale(_)
        | Event::AutomationStalled(_)) => event,
        Event::ConfigSynced(mut e) => {
            e.skipped.clear();
            Event::ConfigSynced(e)
        }
        Event::ConfigRejected(mut e) => {
            e.kept_commit = None;
            for error in &mut e.errors {
                error.object = None;
                error.field.clear();
            }
            Event::ConfigRejected(e)
        }
    }
}

/// Other shapes the types can take: one of `tags` / `tags_ref` only, an image
/// whose metadata is unknown, empty lists, a previous selection with a digest
/// and a current one without.
fn variants(event: Event) -> Vec<Event> {
    match event {
        Event::TagsDiscovered(e) => {
            let mut inline = e.clone();
            inline.tags_ref = None;
            inline.images = BTreeMap::from([(
                "1.0.0".to_string(),
                ImageMetadata {
                    digest: None,
                    created: None,
                },
            )]);
            let mut by_ref = e.clone();
            by_ref.tags = None;
            by_ref.tags_ref = Some(TagsRef {
                bucket: crate::names::TAG_SETS_BUCKET.into(),
                key: "flux-system.app".into(),
            });
            let mut empty = e;
            empty.tags = Some(Vec::new());
            empty.tags_ref = None;
            empty.tag_count = 0;
            empty.tag_set_digest = crate::event::tag_set_digest([]);
            empty.images.clear();
            vec![
                Event::TagsDiscovered(inline),
                Event::TagsDiscovered(by_ref),
                Event::TagsDiscovered(empty),
            ]
        }
        Event::PolicyResolved(mut e) => {
            e.previous = Some(SelectedImage {
                tag: "0.9.0".into(),
                digest: Some(format!("sha512:{}", "d".repeat(128))),
            });
            e.current.digest = None;
            e.cause = crate::event::ResolveCause::PolicyChanged;
            vec![Event::PolicyResolved(e)]
        }
        Event::CommitPushed(mut e) => {
            e.changes.clear();
            e.causes.clear();
            e.commit = "e".repeat(64);
            vec![Event::CommitPushed(e)]
        }
        Event::ScanFailed(mut f) => {
            f.will_retry = false;
            f.attempt = 1;
            vec![Event::ScanFailed(f)]
        }
        Event::ResolveFailed(mut f) => {
            f.will_retry = false;
            f.attempt = u32::MAX;
            vec![Event::ResolveFailed(f)]
        }
        Event::CommitFailed(mut f) => {
            f.will_retry = false;
            vec![Event::CommitFailed(f)]
        }
        Event::PullRequestOpened(_) => Vec::new(),
        Event::PullRequestUpdated(mut e) => {
            e.provider = "gitlab".into();
            e.changes.clear();
            e.commit = "e".repeat(64);
            vec![Event::PullRequestUpdated(e)]
        }
        Event::ReviewFailed(mut f) => {
            f.reason = FailureReason::ForgeUnavailable;
            vec![Event::ReviewFailed(f)]
        }
        Event::NotificationFailed(mut f) => {
            f.reason = FailureReason::ReceiverUnavailable;
            f.will_retry = false;
            vec![Event::NotificationFailed(f)]
        }
        Event::ConfigFailed(mut f) => {
            f.reason = FailureReason::AuthenticationFailed;
            vec![Event::ConfigFailed(f)]
        }
        Event::PolicyStale(mut e) => {
            e.reason = crate::event::StallReason::NotScanned;
            vec![Event::PolicyStale(e)]
        }
        Event::AutomationStalled(_) => Vec::new(),
        Event::ManifestWarning(mut w) => {
            w.check = "skipped-file".into();
            w.line = 1;
            w.commit = "e".repeat(64);
            vec![Event::ManifestWarning(w)]
        }
        Event::ConfigSynced(mut e) => {
            e.applied.clear();
            e.deleted.clear();
            e.unchanged.clear();
            e.paths = vec![String::new()];
            e.commit = "e".repeat(64);
            for note in &mut e.skipped {
                note.object = None;
                note.field.clear();
            }
            vec![Event::ConfigSynced(e)]
        }
        Event::ConfigRejected(mut e) => {
            e.commit = "e".repeat(64);
            vec![Event::ConfigRejected(e)]
        }
    }
}

/// The wire JSON of `payload` twice: starting a chain (`causation_id` null)
/// and caused by another event (`causation_id` set).
fn wire(payload: Event) -> [Value; 2] {
    let root = Envelope::new("scanner/host-1", payload.clone());
    let caused = Envelope::caused_by(&root, "resolver/host-2", payload);
    let [root, caused] = [root, caused]
        .map(|envelope| serde_json::from_slice::<Value>(&envelope.to_json().unwrap()).unwrap());
    assert!(root["causation_id"].is_null(), "{root}");
    assert!(caused["causation_id"].is_string(), "{caused}");
    [root, caused]
}

/// Every instance the test knows of, by type: the samples, their minimal
/// shapes and the variants, each with and without a cause.
fn instances() -> BTreeMap<&'static str, Vec<Value>> {
    let mut by_type: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
    for sample in samples::all() {
        let event_type = sample.event_type().as_str();
        let mut payloads = vec![sample.clone(), minimal(sample.clone())];
        payloads.extend(variants(sample));
        for payload in payloads {
            by_type.entry(event_type).or_default().extend(wire(payload));
        }
    }
    by_type
}

/// One JSON object of an instance that is a struct (not a map).
struct Object {
    /// JSON pointer to it.
    pointer: String,
    /// Its place in the type's shape: the pointer with array indices as
    /// `[]` and map keys as `{}`, the same for every instance.
    shape: String,
    keys: Vec<String>,
}

fn objects(value: &Value) -> Vec<Object> {
    fn walk(value: &Value, pointer: String, shape: String, out: &mut Vec<Object>) {
        match value {
            Value::Object(map) => {
                let is_map = MAPS.contains(&shape.as_str());
                if !is_map {
                    out.push(Object {
                        pointer: pointer.clone(),
                        shape: shape.clone(),
                        keys: map.keys().cloned().collect(),
                    });
                }
                for (key, child) in map {
                    let escaped = key.replace('~', "~0").replace('/', "~1");
                    let child_shape = if is_map {
                        format!("{shape}/{{}}")
                    } else {
                        format!("{shape}/{key}")
                    };
                    walk(child, format!("{pointer}/{escaped}"), child_shape, out);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{pointer}/{i}"), format!("{shape}/[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, String::new(), String::new(), &mut out);
    out
}

/// The keys serde wrote at every occurrence of each shape: the fields the
/// Rust types always serialise, which the schema must require.
fn always_written(instances: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut always: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for instance in instances {
        for object in objects(instance) {
            let keys: BTreeSet<String> = object.keys.into_iter().collect();
            always
                .entry(object.shape)
                .and_modify(|seen| seen.retain(|k| keys.contains(k)))
                .or_insert(keys);
        }
    }
    always
}

fn event_type_named(name: &str) -> EventType {
    EventType::ALL
        .into_iter()
        .find(|t| t.as_str() == name)
        .unwrap()
}

#[test]
fn every_sample_validates_with_and_without_a_cause() {
    for sample in samples::all() {
        let event_type = sample.event_type();
        let validator = validator(event_type);
        for instance in wire(sample) {
            let errors = errors(&validator, &instance);
            assert!(errors.is_empty(), "{event_type}: {errors:#?}\n{instance:#}");
        }
    }
}

#[test]
fn minimal_shapes_and_variants_validate() {
    for sample in samples::all() {
        let event_type = sample.event_type();
        let validator = validator(event_type);
        let mut payloads = vec![minimal(sample.clone())];
        payloads.extend(variants(sample));
        for payload in payloads {
            for instance in wire(payload) {
                let errors = errors(&validator, &instance);
                assert!(errors.is_empty(), "{event_type}: {errors:#?}\n{instance:#}");
            }
        }
    }
}

#[test]
fn every_field_a_reader_can_do_without_is_left_out_by_some_instance() {
    // Guards the test itself: a field the Rust reader accepts absent (an
    // `Option` or `#[serde(default)]` field) must be absent from some
    // instance, or `schemas_require_exactly_the_fields_serde_always_writes`
    // would take it for required. `minimal` and `variants` must clear it.
    // These are `Option`s that are always written, as `null` when unset.
    const WRITTEN_AS_NULL: [&str; 1] = ["/causation_id"];
    for (name, instances) in instances() {
        let always = always_written(&instances);
        for instance in &instances {
            let bytes = serde_json::to_vec(instance).unwrap();
            assert!(Envelope::from_json(&bytes).is_ok(), "{name}: {instance}");
            for object in objects(instance) {
                for key in &object.keys {
                    let mut without = instance.clone();
                    without
                        .pointer_mut(&object.pointer)
                        .and_then(Value::as_object_mut)
                        .unwrap()
                        .remove(key);
                    let bytes = serde_json::to_vec(&without).unwrap();
                    let shape = format!("{}/{key}", object.shape);
                    if Envelope::from_json(&bytes).is_ok()
                        && always[&object.shape].contains(key)
                        && !WRITTEN_AS_NULL.contains(&shape.as_str())
                    {
                        panic!("{name}: no instance leaves out {shape}, which may be absent");
                    }
                }
            }
        }
    }
}

#[test]
fn schemas_require_exactly_the_fields_serde_always_writes() {
    for (name, instances) in instances() {
        let event_type = event_type_named(name);
        let validator = validator(event_type);
        let always = always_written(&instances);
        let mut required_checked = 0;
        let mut optional_checked = 0;
        for instance in &instances {
            for object in objects(instance) {
                let required = &always[&object.shape];
                for key in &object.keys {
                    let mut without = instance.clone();
                    without
                        .pointer_mut(&object.pointer)
                        .and_then(Value::as_object_mut)
                        .unwrap()
                        .remove(key);
                    let valid = validator.is_valid(&without);
                    if required.contains(key) {
                        required_checked += 1;
                        assert!(
                            !valid,
                            "{name}: {}/{key} is always serialised but the schema accepts an event without it",
                            object.pointer
                        );
                    } else {
                        optional_checked += 1;
                        assert!(
                            valid,
                            "{name}: {}/{key} is optional in the Rust type but the schema requires it: {:#?}",
                            object.pointer,
                            errors(&validator, &without)
                        );
                    }
                }
            }
        }
        // Every envelope field is required, and every type but the pull
        // request events and `ManifestWarning` (whose fields are all always
        // written) has an optional field (a failure's `reason`), so both
        // checks ran.
        assert!(required_checked >= 8, "{name}: {required_checked}");
        let all_required = matches!(
            event_type_named(name),
            EventType::PullRequestOpened
                | EventType::PullRequestUpdated
                | EventType::ManifestWarning
                | EventType::PolicyStale
                | EventType::AutomationStalled
        );
        assert!(optional_checked > 0 || all_required, "{name}");
    }
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    for (name, instances) in instances() {
        let validator = validator(event_type_named(name));
        for instance in &instances {
            for object in objects(instance) {
                let mut with = instance.clone();
                with.pointer_mut(&object.pointer)
                    .and_then(Value::as_object_mut)
                    .unwrap()
                    .insert("unexpected_field".into(), json!("x"));
                assert!(
                    !validator.is_valid(&with),
                    "{name}: the schema accepts an unknown field in {:?}",
                    object.pointer
                );
            }
        }
    }
}

#[test]
fn values_the_types_never_write_are_refused() {
    let envelope_cases: [(&str, Value); 9] = [
        ("/version", json!(2)),
        ("/id", json!("not-a-ulid")),
        ("/correlation_id", json!("")),
        ("/causation_id", json!(7)),
        ("/occurred_at", json!("2026-11-21T11:00:00+01:00")),
        ("/occurred_at", json!("2026-11-21 10:00:00Z")),
        // Matches the `Z$` pattern: only the asserted `format` refuses it.
        ("/occurred_at", json!("2026-11-31T10:00:00Z")),
        ("/source", json!("scanner")),
        ("/payload", json!(null)),
    ];
    let payload_cases: [(EventType, &str, Value); 10] = [
        (EventType::TagsDiscovered, "/payload/trigger", json!("cron")),
        (EventType::TagsDiscovered, "/payload/tag_count", json!(-1)),
        (
            EventType::TagsDiscovered,
            "/payload/tag_set_digest",
            json!("sha256:ABC"),
        ),
        (
            EventType::TagsDiscovered,
            "/payload/tags",
            json!(["1.0.0", "1.0.0"]),
        ),
        (EventType::TagsDiscovered, "/payload/images", json!({})),
        (
            EventType::TagsDiscovered,
            "/payload/images/1.1.0/digest",
            json!("aaaa"),
        ),
        (EventType::PolicyResolved, "/payload/cause", json!("manual")),
        (
            EventType::PolicyResolved,
            "/payload/current/tag",
            json!(null),
        ),
        (EventType::CommitPushed, "/payload/commit", json!("HEAD")),
        (EventType::ScanFailed, "/payload/attempt", json!(0)),
    ];
    for sample in samples::all() {
        let event_type = sample.event_type();
        let own_schema = validator(event_type);
        let [instance, _] = wire(sample);
        let own = payload_cases
            .iter()
            .filter(|(t, _, _)| *t == event_type)
            .map(|(_, pointer, value)| (*pointer, value));
        for (pointer, value) in envelope_cases.iter().map(|(p, v)| (*p, v)).chain(own) {
            let mut bad = instance.clone();
            *bad.pointer_mut(pointer)
                .unwrap_or_else(|| panic!("{event_type}: no {pointer}")) = value.clone();
            assert!(
                !own_schema.is_valid(&bad),
                "{event_type}: the schema accepts {pointer} = {value}"
            );
        }
        // The type is pinned too: no event validates against another
        // type's schema, even a failure against another stage's.
        for other in EventType::ALL.into_iter().filter(|t| *t != event_type) {
            assert!(
                !validator(other).is_valid(&instance),
                "{event_type} validates against the {other} schema"
            );
        }
    }
}

#[test]
fn there_is_exactly_one_schema_per_event_type() {
    let expected: BTreeSet<String> = EventType::ALL.into_iter().map(file_name).collect();
    assert_eq!(
        expected.len(),
        EventType::ALL.len(),
        "duplicate event types"
    );
    let embedded: BTreeSet<String> = SCHEMAS.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(embedded, expected, "SCHEMAS");
    assert_eq!(embedded.len(), SCHEMAS.len(), "a schema is embedded twice");
    let on_disk: BTreeSet<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schema"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
    assert_eq!(on_disk, expected, "files in proto/schema/");
    for event_type in EventType::ALL {
        let schema = schema(event_type);
        let properties = &schema["properties"];
        assert_eq!(properties["type"]["const"], event_type.as_str());
        assert_eq!(properties["version"]["const"], event_type.current_version());
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
    }
    let sampled: BTreeSet<String> = samples::all()
        .iter()
        .map(|sample| file_name(sample.event_type()))
        .collect();
    assert_eq!(sampled, expected, "samples::all covers every type once");
}

/// Walks every subschema, calling `visit` with its location.
fn subschemas(schema: &Value, location: &str, visit: &mut impl FnMut(&str, &Value)) {
    let Value::Object(map) = schema else { return };
    visit(location, schema);
    for keyword in ["properties", "$defs"] {
        if let Some(Value::Object(children)) = map.get(keyword) {
            for (name, child) in children {
                subschemas(child, &format!("{location}/{keyword}/{name}"), visit);
            }
        }
    }
    for keyword in ["items", "additionalProperties"] {
        if let Some(child) = map.get(keyword) {
            subschemas(child, &format!("{location}/{keyword}"), visit);
        }
    }
}

#[test]
fn every_property_is_documented_and_every_object_closed() {
    for event_type in EventType::ALL {
        let schema = schema(event_type);
        let mut problems = Vec::new();
        subschemas(&schema, "#", &mut |location, subschema| {
            if let Some(Value::Object(properties)) = subschema.get("properties") {
                for (name, property) in properties {
                    let documented = property["description"]
                        .as_str()
                        .is_some_and(|d| !d.trim().is_empty());
                    if !documented {
                        problems.push(format!("{location}/properties/{name} has no description"));
                    }
                }
                if subschema.get("additionalProperties") != Some(&json!(false)) {
                    problems.push(format!(
                        "{location} does not set additionalProperties: false"
                    ));
                }
                for required in subschema["required"].as_array().into_iter().flatten() {
                    let required = required.as_str().unwrap();
                    if !properties.contains_key(required) {
                        problems.push(format!("{location} requires undeclared {required}"));
                    }
                }
            }
            let is_object = subschema.get("type") == Some(&json!("object"));
            if is_object && subschema.get("additionalProperties").is_none() {
                problems.push(format!("{location} is an open object"));
            }
        });
        assert!(
            problems.is_empty(),
            "{}: {problems:#?}",
            file_name(event_type)
        );
    }
}

#[test]
fn shared_shapes_read_the_same_in_every_schema() {
    // The envelope and the shared definitions are written out in each file
    // so that a reader needs only one; they must not drift apart.
    let schemas: Vec<(EventType, Value)> =
        EventType::ALL.into_iter().map(|t| (t, schema(t))).collect();
    let envelope = |schema: &Value| {
        let mut properties = schema["properties"].as_object().unwrap().clone();
        properties.remove("type");
        properties.remove("payload");
        (properties, schema["required"].clone())
    };
    let (first_type, first) = &schemas[0];
    for (event_type, schema) in &schemas[1..] {
        assert_eq!(
            envelope(schema),
            envelope(first),
            "the envelope of {event_type} differs from {first_type}'s"
        );
    }
    let mut definitions: BTreeMap<String, (EventType, Value)> = BTreeMap::new();
    for (event_type, schema) in &schemas {
        for (name, definition) in schema["$defs"].as_object().into_iter().flatten() {
            match definitions.get(name) {
                Some((seen_in, seen)) => assert_eq!(
                    definition, seen,
                    "$defs/{name} differs between {seen_in} and {event_type}"
                ),
                None => {
                    definitions.insert(name.clone(), (*event_type, definition.clone()));
                }
            }
        }
    }
    assert!(definitions.contains_key("ObjectRef"));
}
