//! Commit messages: Flux's template data, the default message, and the
//! trailers that carry the event chain into Git.
//!
//! Flux gives the template a `TemplateData { AutomationObject, Changed,
//! Values }` (and, up to its `v1beta2` API, `Updated`, the `v1beta1` data);
//! [`template_data`] builds the same shape, `.Updated` included (see
//! [`crate::template`] for how it is rendered). Where Flux's order is Go map
//! order (random: `.Changed.Changes`, and which file wins in
//! `.Changed.Objects`), ours is fixed (files, then objects, in sorted order),
//! so the same changes always give the same message, which is what makes the
//! commit itself deterministic.
//!
//! Every commit also ends with trailers (`Tagrelay-Automation`,
//! `Tagrelay-Change`, `Tagrelay-Cause`), so the chain from a commit back to
//! the `PolicyResolved` events survives outside the bus, and a committer that
//! died between pushing and announcing can announce the commit from Git
//! alone.

use std::collections::BTreeMap;

use tagrelay_proto::event::FileChange;
use tagrelay_reference::{ImageReference, DEFAULT_REGISTRY};

use crate::template::{string_map, Struct, Template, TemplateError, Value};

/// Flux's message when the automation sets no template.
pub const DEFAULT_MESSAGE: &str = "Update from image update automation";

/// Trailer naming the automation that made the commit (`ns/name`).
pub const AUTOMATION_TRAILER: &str = "Tagrelay-Automation";
/// Trailer describing one change: `file old -> new (setter)`, each part
/// percent-escaped.
pub const CHANGE_TRAILER: &str = "Tagrelay-Change";
/// Trailer holding the id of one causing `PolicyResolved` event.
pub const CAUSE_TRAILER: &str = "Tagrelay-Cause";

/// The Kubernetes object a change was made in, as Flux's `ObjectIdentifier`
/// names it (fields empty when the document does not set them).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
}

/// One change as the message sees it: the event's [`FileChange`] plus the
/// object it was made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageChange {
    /// The change.
    pub change: FileChange,
    /// The object holding the value.
    pub object: ObjectId,
    /// The policy whose selection made a Setters change, for `.Updated`.
    pub updated: Option<UpdatedImage>,
}

/// What Flux's `v1beta1` template data (`.Updated`) knew of a Setters
/// change: the policy and its whole latest image, whichever part of it
/// (`:tag`, `:name`) the marker wrote.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UpdatedImage {
    /// The policy's namespace.
    pub policy_namespace: String,
    /// The policy's name.
    pub policy_name: String,
    /// The policy's latest image, `repository:tag[@digest]`, as written.
    pub image: String,
}

pub(crate) fn text_struct(fields: &[(&str, &str)]) -> Value {
    Value::record(Struct {
        fields: fields
            .iter()
            .map(|(n, v)| (n.to_string(), Value::str(*v), false))
            .collect(),
        ..Default::default()
    })
}

fn object_value(id: &ObjectId) -> Value {
    let type_meta = text_struct(&[("APIVersion", &id.api_version), ("Kind", &id.kind)]);
    let name_meta = text_struct(&[("Name", &id.name), ("Namespace", &id.namespace)]);
    let resource = Value::record(Struct {
        fields: vec![
            ("TypeMeta".into(), type_meta, true),
            ("NameMeta".into(), name_meta, true),
        ],
        ..Default::default()
    });
    Value::record(Struct {
        fields: vec![("ResourceIdentifier".into(), resource, true)],
        ..Default::default()
    })
}

fn change_value(change: &FileChange) -> Value {
    text_struct(&[
        ("OldValue", &change.old),
        ("NewValue", &change.new),
        ("Setter", &change.setter),
    ])
}

/// The registry go-containerregistry names Docker Hub by, which Flux's
/// `ImageRef.Registry` and `.Name` print.
const DOCKER_HUB_INDEX: &str = "index.docker.io";

/// Flux's `v1beta1` `ImageRef`: prints as the image exactly as the policy
/// reported it, and has go-containerregistry's methods.
fn image_ref_value(updated: &UpdatedImage) -> Value {
    let reference = ImageReference::parse(&updated.image).ok();
    let (registry, repository, identifier) = match &reference {
        Some(r) => {
            let registry = match r.repository.registry() {
                DEFAULT_REGISTRY => DOCKER_HUB_INDEX.to_string(),
                other => other.to_string(),
            };
            let identifier = r
                .digest
                .clone()
                .or_else(|| r.tag.clone())
                .unwrap_or_else(|| "latest".to_string());
            (registry, r.repository.path().to_string(), identifier)
        }
        None => (String::new(), String::new(), String::new()),
    };
    let context = format!("{registry}/{repository}");
    let separator = if identifier.contains(':') { "@" } else { ":" };
    let policy = Value::record(Struct {
        fields: vec![
            (
                "Namespace".into(),
                Value::str(&updated.policy_namespace),
                false,
            ),
            ("Name".into(), Value::str(&updated.policy_name), false),
        ],
        methods: Vec::new(),
        stringer: Some(format!(
            "{}/{}",
            updated.policy_namespace, updated.policy_name
        )),
    });
    Value::record(Struct {
        fields: Vec::new(),
        methods: vec![
            ("String".into(), Value::str(&updated.image)),
            ("Identifier".into(), Value::str(&identifier)),
            ("Repository".into(), Value::str(&repository)),
            ("Registry".into(), Value::str(&registry)),
            (
                "Name".into(),
                Value::str(format!("{context}{separator}{identifier}")),
            ),
            ("Context".into(), Value::str(context)),
            ("Policy".into(), policy),
        ],
        stringer: Some(updated.image.clone()),
    })
}

/// Flux's `v1beta1` `.Updated`: `Files` (file → `Objects` → images),
/// `Objects()` (object → images, over all files) and `Images()` (every
/// distinct image). Where Flux walks Go maps (random order), ours is files,
/// then objects, in sorted order. Only Setters changes appear, as in Flux.
fn updated_value(changes: &[MessageChange]) -> Value {
    let mut by_file: BTreeMap<&str, BTreeMap<&ObjectId, Vec<&UpdatedImage>>> = BTreeMap::new();
    for c in changes {
        if let Some(updated) = &c.updated {
            let images = by_file
                .entry(c.change.file.as_str())
                .or_default()
                .entry(&c.object)
                .or_default();
            if !images.contains(&updated) {
                images.push(updated);
            }
        }
    }
    let mut files = Vec::new();
    let mut objects: BTreeMap<&ObjectId, Vec<&UpdatedImage>> = BTreeMap::new();
    let mut images: Vec<&UpdatedImage> = Vec::new();
    for (file, per_object) in &by_file {
        let mut entries = Vec::new();
        for (object, list) in per_object {
            entries.push((
                object_value(object),
                Value::List(list.iter().map(|u| image_ref_value(u)).collect()),
            ));
            objects
                .entry(object)
                .or_default()
                .extend(list.iter().copied());
            for updated in list {
                if !images.contains(updated) {
                    images.push(updated);
                }
            }
        }
        let file_result = Value::record(Struct {
            fields: vec![("Objects".into(), Value::map(entries), false)],
            ..Default::default()
        });
        files.push((Value::str(*file), file_result));
    }
    Value::record(Struct {
        fields: vec![("Files".into(), Value::map(files), false)],
        methods: vec![
            (
                "Images".into(),
                Value::List(images.into_iter().map(image_ref_value).collect()),
            ),
            (
                "Objects".into(),
                Value::map(
                    objects
                        .into_iter()
                        .map(|(id, list)| {
                            (
                                object_value(id),
                                Value::List(list.into_iter().map(image_ref_value).collect()),
                            )
                        })
                        .collect(),
                ),
            ),
        ],
        stringer: None,
    })
}

/// Which template data an automation's API version gets: Flux gave
/// `.Updated` (the `v1beta1` data) up to `image.toolkit.fluxcd.io/v1beta2`
/// and removed it in `v1`, where a template using it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateApi {
    /// `v1beta1` and `v1beta2`: `.Updated` as well as `.Changed`.
    Beta,
    /// `v1`: `.Changed` only.
    V1,
}

impl TemplateApi {
    /// The data an ImageUpdateAutomation of `api_version` gets.
    pub fn of(api_version: &str) -> Self {
        if api_version.ends_with("/v1beta1") || api_version.ends_with("/v1beta2") {
            TemplateApi::Beta
        } else {
            TemplateApi::V1
        }
    }
}

/// The value Flux passes to the message template.
pub fn template_data(
    namespace: &str,
    name: &str,
    changes: &[MessageChange],
    values: &BTreeMap<String, String>,
    api: TemplateApi,
) -> Value {
    let mut by_file: BTreeMap<&str, BTreeMap<&ObjectId, Vec<&FileChange>>> = BTreeMap::new();
    for c in changes {
        by_file
            .entry(c.change.file.as_str())
            .or_default()
            .entry(&c.object)
            .or_default()
            .push(&c.change);
    }
    let mut file_changes = Vec::new();
    let mut objects: BTreeMap<&ObjectId, Value> = BTreeMap::new();
    let mut all: Vec<Value> = Vec::new();
    for (file, per_object) in &by_file {
        let mut entries = Vec::new();
        for (object, list) in per_object {
            let list = Value::List(list.iter().map(|c| change_value(c)).collect());
            entries.push((object_value(object), list.clone()));
            objects.insert(object, list);
        }
        file_changes.push((Value::str(*file), Value::map(entries)));
    }
    // Flux's `Changes()`: every distinct change, in file and object order.
    for per_object in by_file.values() {
        for list in per_object.values() {
            for change in list {
                let value = change_value(change);
                if !all.contains(&value) {
                    all.push(value);
                }
            }
        }
    }
    let changed = Value::record(Struct {
        fields: vec![("FileChanges".into(), Value::map(file_changes), false)],
        methods: vec![
            ("Changes".into(), Value::List(all)),
            (
                "Objects".into(),
                Value::map(
                    objects
                        .into_iter()
                        .map(|(id, list)| (object_value(id), list))
                        .collect(),
                ),
            ),
        ],
        stringer: None,
    });
    let automation = Value::record(Struct {
        fields: vec![
            ("Namespace".into(), Value::str(namespace), false),
            ("Name".into(), Value::str(name), false),
        ],
        methods: Vec::new(),
        stringer: Some(format!("{namespace}/{name}")),
    });
    let mut fields = vec![("AutomationObject".into(), automation, false)];
    if api == TemplateApi::Beta {
        fields.push(("Updated".into(), updated_value(changes), false));
    }
    fields.push(("Changed".into(), changed, false));
    fields.push(("Values".into(), string_map(values), false));
    Value::record(Struct {
        fields,
        ..Default::default()
    })
}

/// Renders the automation's template (Flux's default when none) over the
/// changes.
pub fn render(
    template: Option<&str>,
    namespace: &str,
    name: &str,
    changes: &[MessageChange],
    values: &BTreeMap<String, String>,
    api: TemplateApi,
) -> Result<String, TemplateError> {
    let text = template
        .filter(|t| !t.is_empty())
        .unwrap_or(DEFAULT_MESSAGE);
    Template::parse(text)?.render(&template_data(namespace, name, changes, values, api))
}

/// What the trailers of a commit say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trailers {
    /// The automation, `ns/name`.
    pub automation: String,
    /// Every change.
    pub changes: Vec<FileChange>,
    /// Ids of the causing `PolicyResolved` events.
    pub causes: Vec<String>,
}

/// `message` followed by a blank line and the trailers, so that
/// `git interpret-trailers` and forges read them.
pub fn with_trailers(message: &str, trailers: &Trailers) -> String {
    let mut out = message
        .trim_end_matches(['\n', ' ', '\t', '\r'])
        .to_string();
    out.push_str("\n\n");
    out.push_str(&format!(
        "{AUTOMATION_TRAILER}: {}\n",
        escape(&trailers.automation)
    ));
    for c in &trailers.changes {
        out.push_str(&format!(
            "{CHANGE_TRAILER}: {} {} -> {} ({})\n",
            escape(&c.file),
            escape(&c.old),
            escape(&c.new),
            escape(&c.setter)
        ));
    }
    for cause in &trailers.causes {
        out.push_str(&format!("{CAUSE_TRAILER}: {}\n", escape(cause)));
    }
    out
}

/// Reads the trailers [`with_trailers`] wrote; `None` when the message has
/// no automation trailer (a commit tagrelay did not make).
pub fn parse_trailers(message: &str) -> Option<Trailers> {
    let block = message.trim_end().rsplit("\n\n").next()?;
    let mut trailers = Trailers::default();
    let mut found = false;
    for line in block.lines() {
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        match key {
            AUTOMATION_TRAILER => {
                trailers.automation = unescape(value)?;
                found = true;
            }
            CHANGE_TRAILER => {
                let mut parts = value.split(' ');
                let file = unescape(parts.next()?)?;
                let old = unescape(parts.next()?)?;
                if parts.next()? != "->" {
                    return None;
                }
                let new = unescape(parts.next()?)?;
                let setter = parts.next()?.strip_prefix('(')?.strip_suffix(')')?;
                trailers.changes.push(FileChange {
                    file,
                    old,
                    new,
                    setter: unescape(setter)?,
                });
            }
            CAUSE_TRAILER => trailers.causes.push(unescape(value)?),
            _ => {}
        }
    }
    found.then_some(trailers)
}

/// Percent-escapes what would break a trailer's single line or its fields.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' | ' ' | '(' | ')' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut iter = text.bytes();
    while let Some(b) = iter.next() {
        if b == b'%' {
            let hi = iter.next()?;
            let lo = iter.next()?;
            let hex = [hi, lo];
            let s = std::str::from_utf8(&hex).ok()?;
            bytes.push(u8::from_str_radix(s, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(file: &str, old: &str, new: &str, setter: &str) -> FileChange {
        FileChange {
            file: file.into(),
            old: old.into(),
            new: new.into(),
            setter: setter.into(),
        }
    }

    #[test]
    fn trailers_round_trip_through_the_message_even_with_odd_paths() {
        let trailers = Trailers {
            automation: "flux-system/fleet".into(),
            changes: vec![
                change("apps/my app (1).yaml", "a:1", "a:2", "flux-system:a"),
                change("b.yaml", "1%", "2", "Deployment web container x"),
            ],
            causes: vec!["01JA".into(), "01JB".into()],
        };
        let message = with_trailers("Subject\n\nBody line\n\n\n", &trailers);
        assert!(
            message.starts_with("Subject\n\nBody line\n\nTagrelay-Automation: flux-system/fleet\n")
        );
        assert!(message.contains(
            "Tagrelay-Change: apps/my%20app%20%281%29.yaml a:1 -> a:2 (flux-system:a)\n"
        ));
        assert_eq!(parse_trailers(&message), Some(trailers));
        assert_eq!(
            parse_trailers("human commit\n\nSigned-off-by: x <y>\n"),
            None
        );
    }
}
