//! Flux v1 annotation-driven automation.
//!
//! Flux v1 read its policies from workload annotations
//! (`pkg/cluster/kubernetes/resource/resource.go`, `pkg/policy/policy.go`,
//! `pkg/daemon/images.go` in fluxcd/flux):
//!
//! - `fluxcd.io/automated: "true"` automates a workload's containers, unless
//!   `fluxcd.io/locked: "true"` or `fluxcd.io/ignore: "true"` holds it back;
//! - `fluxcd.io/tag.<container>: <filter>` picks the tags a container may move
//!   to (`glob:`, `regex:`/`regexp:`, `semver:`; a glob when unprefixed); a
//!   HelmRelease may say `filter.fluxcd.io/<container>` instead;
//! - the older prefix `flux.weave.works/` means the same as `fluxcd.io/`.
//!
//! Workloads are Deployments, DaemonSets, StatefulSets and CronJobs (their pod
//! template's `containers` and `initContainers`), and HelmReleases (see
//! [`super::helm`]), alone, several to a file, or as the items of a `List`
//! kind. The tag to move to is chosen by the resolver; this module finds the
//! automated containers ([`discover_v1`]) and writes the chosen tags
//! ([`V1Update`], applied by [`super::rewrite_file`]).

use std::fmt;

use tagrelay_reference::{is_valid_tag, split_tag, Repository};

use super::lint::{Check, Hit};
use super::yaml::{self, Node, Parsed, Scalar};
use super::{as_text, helm, Batch, Cause, Plan, RefusalReason, RewriteError};

/// The annotation prefix Flux v1 used.
pub const POLICY_PREFIX: &str = "fluxcd.io/";
/// The older prefix Flux v1 still accepted, for manifests written before the
/// rename.
pub const ALTERNATE_POLICY_PREFIX: &str = "flux.weave.works/";
/// The per-container filter prefix (`filter.fluxcd.io/<container>`), the same
/// as `fluxcd.io/tag.<container>`.
pub const FILTER_PREFIX: &str = "filter.fluxcd.io/";

/// Whether Flux v1 would load a file as manifests: its name ends in `.yaml`
/// or `.yml`. (Flux v1 also skipped Helm chart directories, those holding both
/// `Chart.yaml` and `values.yaml`; that is for the caller walking the tree.)
pub fn is_v1_candidate(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// A workload as the file identifies it. Flux v1 matched on these three.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadId {
    /// `kind`, e.g. `Deployment`.
    pub kind: String,
    /// `metadata.namespace`, when the file sets it.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for WorkloadId {
    /// Flux v1's resource ID format, `namespace:kind/name` with the kind in
    /// lower case and `<cluster>` for no namespace, which v1 users know.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.namespace.as_deref().unwrap_or("<cluster>");
        write!(f, "{ns}:{}/{}", self.kind.to_lowercase(), self.name)
    }
}

/// An automated container found in a file, from which the committer derives
/// an ImageRepository and an ImagePolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Container {
    /// Its workload.
    pub workload: WorkloadId,
    /// Its name (for a HelmRelease, see [`super::helm`]).
    pub container: String,
    /// The image repository as written (registry and repository joined when
    /// a HelmRelease writes them apart).
    pub image: String,
    /// The tag currently written, if any.
    pub current_tag: Option<String>,
    /// The raw filter annotation (`glob:…`, `regex:…`, `semver:…` or a bare
    /// glob); `None` means any tag, newest by image creation time.
    pub filter: Option<String>,
    /// 1-based line of the value holding the tag.
    pub line: usize,
}

/// A new tag for a container, chosen by the resolver.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct V1Update {
    /// The workload.
    pub workload: WorkloadId,
    /// The container.
    pub container: String,
    /// The tag to write; refused unless it matches the OCI tag grammar.
    pub tag: String,
}

/// Why a workload or container that looks automated is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V1NoteReason {
    /// `automated: true` written as a YAML boolean: Kubernetes rejects
    /// non-string annotations, so it is not taken as automation.
    #[error("annotation {key} is the boolean true, not the string \"true\"; automation stays off")]
    BooleanAnnotation {
        /// The annotation.
        key: String,
    },
    /// The image is pinned by digest; moving its tag would change nothing.
    #[error("image {image} is pinned by digest")]
    DigestPinned {
        /// The image as written.
        image: String,
    },
    /// The image is not a valid reference.
    #[error("image {image:?} is not a valid image reference: {reason}")]
    InvalidImage {
        /// The image as written.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The value holding the tag is a scalar the engine does not rewrite.
    #[error("the value holding the tag is a multi-line scalar the engine does not rewrite")]
    Unrewritable,
}

/// Something worth telling the operator about an automated workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Note {
    /// 1-based line.
    pub line: usize,
    /// The workload.
    pub workload: WorkloadId,
    /// The container, when the note is about one.
    pub container: Option<String>,
    /// What is wrong.
    pub reason: V1NoteReason,
}

/// The automated containers of one file, and what was skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Discovery {
    /// Automated containers, in file order (HelmRelease containers as Flux
    /// v1 ordered them: `chart-image` first, then by name).
    pub containers: Vec<V1Container>,
    /// Workloads and containers left out, with why.
    pub notes: Vec<V1Note>,
}

/// Finds the containers of the file's automated workloads.
pub fn discover_v1(content: &[u8]) -> Result<V1Discovery, RewriteError> {
    let parsed = yaml::parse(as_text(content)?)?;
    let (found, notes) = find(&parsed);
    let containers = found
        .into_iter()
        .map(|f| V1Container {
            line: parsed.line_of(f.located.slot.scalar().start),
            workload: f.workload,
            container: f.container,
            image: f.located.image,
            current_tag: f.located.current_tag,
            filter: f.filter,
        })
        .collect();
    Ok(V1Discovery { containers, notes })
}

/// [`discover_v1`] over many files; only files with containers or notes are
/// listed, and a file that does not parse does not stop the others.
pub fn discover_v1_files<K, B>(files: impl IntoIterator<Item = (K, B)>) -> Batch<K, V1Discovery>
where
    B: AsRef<[u8]>,
{
    let mut batch = Batch::default();
    for (key, content) in files {
        match discover_v1(content.as_ref()) {
            Ok(d) if d.containers.is_empty() && d.notes.is_empty() => {}
            Ok(d) => batch.files.push((key, d)),
            Err(e) => batch.errors.push((key, e)),
        }
    }
    batch
}

/// Where a container's tag is written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot<'n> {
    /// The scalar is the tag (`tag: 1.2.3`).
    Whole(&'n Scalar),
    /// The scalar is a reference whose tag follows the last colon
    /// (`image: nginx:1.25`, or no tag yet).
    RefSuffix(&'n Scalar),
}

impl<'n> Slot<'n> {
    pub(crate) fn scalar(&self) -> &'n Scalar {
        match self {
            Slot::Whole(s) | Slot::RefSuffix(s) => s,
        }
    }

    /// The scalar's new value for `tag`.
    fn value_with(&self, tag: &str) -> String {
        match self {
            Slot::Whole(_) => tag.to_string(),
            Slot::RefSuffix(s) => format!("{}:{tag}", split_tag(s.content()).0),
        }
    }
}

/// An image found in a file, and where its tag is written.
#[derive(Debug)]
pub(crate) struct Located<'n> {
    pub image: String,
    pub current_tag: Option<String>,
    pub slot: Slot<'n>,
}

/// The result of reading an image: where it is, or which scalar is wrong.
pub(crate) type Interpretation<'n> = Result<Located<'n>, (&'n Scalar, V1NoteReason)>;

/// Reads an image from a reference scalar (`repo[:tag]`), with the registry
/// given apart when a HelmRelease splits it out.
pub(crate) fn from_reference<'n>(
    reference: &'n Scalar,
    registry: Option<&Scalar>,
) -> Interpretation<'n> {
    let written = reference.content();
    if written.contains('@') {
        return Err((
            reference,
            V1NoteReason::DigestPinned {
                image: written.to_string(),
            },
        ));
    }
    let (name, tag) = split_tag(written);
    if let Some(tag) = tag.filter(|t| !is_valid_tag(t)) {
        return Err((
            reference,
            invalid(
                written,
                format!("tag {tag:?} does not match the OCI tag grammar"),
            ),
        ));
    }
    let image = repository(reference, registry, name)?;
    if reference.range.is_none() {
        return Err((reference, V1NoteReason::Unrewritable));
    }
    Ok(Located {
        image,
        current_tag: tag.map(str::to_string),
        slot: Slot::RefSuffix(reference),
    })
}

/// Reads an image written as a repository and a separate tag field.
pub(crate) fn from_parts<'n>(
    repo: &'n Scalar,
    registry: Option<&Scalar>,
    tag: &'n Scalar,
) -> Interpretation<'n> {
    let written = repo.content();
    if written.contains('@') {
        return Err((
            repo,
            V1NoteReason::DigestPinned {
                image: written.to_string(),
            },
        ));
    }
    if split_tag(written).1.is_some() {
        return Err((
            repo,
            invalid(
                written,
                "a tag is written both here and in the tag field".to_string(),
            ),
        ));
    }
    let current = tag.content();
    if !is_valid_tag(current) {
        return Err((
            tag,
            invalid(
                written,
                format!("tag {current:?} does not match the OCI tag grammar"),
            ),
        ));
    }
    let image = repository(repo, registry, written)?;
    if tag.range.is_none() {
        return Err((tag, V1NoteReason::Unrewritable));
    }
    Ok(Located {
        image,
        current_tag: Some(current.to_string()),
        slot: Slot::Whole(tag),
    })
}

/// The repository as written, joined to a separate registry the way Flux v1
/// did (the registry replaces any registry the name starts with).
fn repository<'n>(
    at: &'n Scalar,
    registry: Option<&Scalar>,
    name: &str,
) -> Result<String, (&'n Scalar, V1NoteReason)> {
    let image = match registry.map(Scalar::content).filter(|r| !r.is_empty()) {
        None => name.to_string(),
        Some(registry) => {
            let path = match name.split_once('/') {
                Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
                _ => name,
            };
            format!("{}/{path}", registry.trim_end_matches('/'))
        }
    };
    match Repository::parse(&image) {
        Ok(_) => Ok(image),
        Err(e) => Err((at, invalid(&image, e.to_string()))),
    }
}

fn invalid(image: &str, reason: String) -> V1NoteReason {
    V1NoteReason::InvalidImage {
        image: image.to_string(),
        reason,
    }
}

/// A workload's annotations, in file order.
pub(crate) struct Annotations<'n>(Vec<(&'n str, &'n Scalar)>);

impl<'n> Annotations<'n> {
    fn of(object: &'n Node) -> Self {
        let entries = match object.get("metadata").and_then(|m| m.get("annotations")) {
            Some(Node::Map { entries }) => entries
                .iter()
                .filter_map(|(k, v)| match (k, v) {
                    (Node::Scalar(k), Node::Scalar(v)) => Some((k.value.as_str(), v)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Self(entries)
    }

    /// All annotations, for prefix scans.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'n str, &'n Scalar)> + '_ {
        self.0.iter().copied()
    }

    fn get(&self, key: &str) -> Option<(&'n str, &'n Scalar)> {
        self.0.iter().copied().find(|(k, _)| *k == key)
    }

    /// A policy under `fluxcd.io/`, else under `flux.weave.works/`. (Flux v1
    /// read both into one map in random order; here the current prefix wins.)
    fn policy(&self, name: &str) -> Option<(&'n str, &'n Scalar)> {
        [POLICY_PREFIX, ALTERNATE_POLICY_PREFIX]
            .iter()
            .find_map(|prefix| self.get(&format!("{prefix}{name}")))
    }

    /// The tag filter for a container.
    fn filter(&self, container: &str) -> Option<String> {
        self.policy(&format!("tag.{container}"))
            .or_else(|| self.get(&format!("{FILTER_PREFIX}{container}")))
            .map(|(_, v)| v.content().to_string())
    }
}

/// Flux v1 annotations that cannot take effect: `automated` written as a
/// YAML boolean, a tag filter naming a container the workload lacks or
/// that does not parse (`filter_error` compiles one), and HelmRelease alias
/// paths that lead nowhere.
pub(crate) fn lint(parsed: &Parsed<'_>, filter_error: &dyn Fn(&str) -> Option<String>) -> Vec<Hit> {
    let (_, notes) = find(parsed);
    let mut hits: Vec<Hit> = notes
        .into_iter()
        .filter_map(|note| match note.reason {
            V1NoteReason::BooleanAnnotation { key } => Some(Hit {
                line: note.line,
                check: Check::BooleanAutomated,
                problem: format!(
                    "{}: {key}: true is a YAML boolean, so automation stays off (Kubernetes annotations are strings)",
                    note.workload
                ),
                fix: format!("quote it: {key}: \"true\""),
            }),
            _ => None,
        })
        .collect();
    for doc in &parsed.docs {
        match doc.str("kind") {
            Some(kind) if kind.ends_with("List") => {
                if let Some(Node::Seq { items, .. }) = doc.get("items") {
                    for item in items {
                        lint_workload(parsed, item, filter_error, &mut hits);
                    }
                }
            }
            _ => lint_workload(parsed, doc, filter_error, &mut hits),
        }
    }
    hits
}

fn lint_workload(
    parsed: &Parsed<'_>,
    object: &Node,
    filter_error: &dyn Fn(&str) -> Option<String>,
    hits: &mut Vec<Hit>,
) {
    let (Some(kind), Some(name)) = (
        object.str("kind"),
        object.get("metadata").and_then(|m| m.str("name")),
    ) else {
        return;
    };
    let annotations = Annotations::of(object);
    let spec = object.get("spec");
    let pod_spec = match kind {
        "HelmRelease" | "FluxHelmRelease" => None,
        _ => match pod_template(kind, spec) {
            Some(template) => template.and_then(|t| t.get("spec")),
            None => return,
        },
    };
    let workload = format!("{kind} {name}");
    let containers: Vec<String> = match pod_spec {
        Some(pod_spec) => ["containers", "initContainers"]
            .iter()
            .filter_map(|list| match pod_spec.get(list) {
                Some(Node::Seq { items, .. }) => Some(items),
                _ => None,
            })
            .flatten()
            .filter_map(|c| c.str("name").map(str::to_string))
            .collect(),
        None => {
            let values = spec.and_then(|s| s.get("values"));
            for (key, path) in helm::dangling_aliases(&annotations, values) {
                hits.push(Hit {
                    line: parsed.line_of(path.start),
                    check: Check::DanglingAlias,
                    problem: format!(
                        "{workload}: {key} points at values.{}, which does not exist",
                        path.value
                    ),
                    fix: "point it at the dot-separated path of the image's key under spec.values, or remove it".to_string(),
                });
            }
            values
                .map(|values| {
                    helm::containers(&annotations, values)
                        .into_iter()
                        .map(|(name, _)| name)
                        .collect()
                })
                .unwrap_or_default()
        }
    };
    for (key, value) in annotations.iter() {
        let container = [POLICY_PREFIX, ALTERNATE_POLICY_PREFIX]
            .iter()
            .find_map(|prefix| {
                key.strip_prefix(prefix)
                    .and_then(|k| k.strip_prefix("tag."))
            })
            .or_else(|| key.strip_prefix(FILTER_PREFIX));
        let Some(container) = container else { continue };
        let line = parsed.line_of(value.start);
        if !containers.iter().any(|c| c == container) {
            let fix = if containers.is_empty() {
                "the workload has no container to filter; remove the annotation".to_string()
            } else {
                format!(
                    "name one of its containers: {}",
                    containers
                        .iter()
                        .map(|c| key.replacen(container, c, 1))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            hits.push(Hit {
                line,
                check: Check::UnknownContainer,
                problem: format!(
                    "{workload}: {key} names container {container:?}, which it does not have"
                ),
                fix,
            });
        } else if let Some(error) = filter_error(value.content()) {
            hits.push(Hit {
                line,
                check: Check::InvalidFilter,
                problem: format!(
                    "{workload}: {key}: {:?} does not parse: {error}",
                    value.content()
                ),
                fix: "write glob:PATTERN, regex:PATTERN or semver:RANGE (for example semver:~1.2)"
                    .to_string(),
            });
        }
    }
}

/// The pod template of a workload kind Flux v1 automates (`None` for any
/// other kind; `Some(None)` when the kind's template is missing).
fn pod_template<'n>(kind: &str, spec: Option<&'n Node>) -> Option<Option<&'n Node>> {
    match kind {
        "Deployment" | "DaemonSet" | "StatefulSet" => Some(spec.and_then(|s| s.get("template"))),
        "CronJob" => Some(
            spec.and_then(|s| s.get("jobTemplate"))
                .and_then(|j| j.get("spec"))
                .and_then(|s| s.get("template")),
        ),
        _ => None,
    }
}

/// The lines of every automated container's image: they need no marker.
pub(crate) fn automated_image_lines(parsed: &Parsed<'_>) -> Vec<usize> {
    find(parsed)
        .0
        .iter()
        .map(|f| parsed.line_of(f.located.slot.scalar().start))
        .collect()
}

/// An automated container and where its tag is.
pub(crate) struct Found<'n> {
    workload: WorkloadId,
    container: String,
    filter: Option<String>,
    located: Located<'n>,
}

/// Finds every automated container in the file.
fn find<'n>(parsed: &'n Parsed<'_>) -> (Vec<Found<'n>>, Vec<V1Note>) {
    let mut out = (Vec::new(), Vec::new());
    for doc in &parsed.docs {
        match doc.str("kind") {
            // Flux v1 reads any kind ending in `List` as a list, one level deep.
            Some(kind) if kind.ends_with("List") => {
                if let Some(Node::Seq { items, .. }) = doc.get("items") {
                    for item in items {
                        if !item.str("kind").is_some_and(|k| k.ends_with("List")) {
                            workload(parsed, item, &mut out);
                        }
                    }
                }
            }
            _ => workload(parsed, doc, &mut out),
        }
    }
    out
}

/// Adds the automated containers of one object.
fn workload<'n>(
    parsed: &Parsed<'_>,
    object: &'n Node,
    (found, notes): &mut (Vec<Found<'n>>, Vec<V1Note>),
) {
    let (Some(kind), Some(meta)) = (object.str("kind"), object.get("metadata")) else {
        return;
    };
    let Some(name) = meta.str("name") else {
        return;
    };
    let id = WorkloadId {
        kind: kind.to_string(),
        namespace: meta
            .str("namespace")
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        name: name.to_string(),
    };
    let annotations = Annotations::of(object);
    let is_true = |policy: &str| {
        annotations
            .policy(policy)
            .is_some_and(|(_, v)| v.value == "true")
    };
    let automated = match annotations.policy("automated") {
        Some((_, v)) if v.value == "true" && v.is_string() => true,
        Some((key, v)) if v.value == "true" => {
            notes.push(V1Note {
                line: parsed.line_of(v.start),
                workload: id.clone(),
                container: None,
                reason: V1NoteReason::BooleanAnnotation {
                    key: key.to_string(),
                },
            });
            false
        }
        _ => false,
    };
    // `locked` and `ignore` hold automation back even when written as a
    // boolean: failing safe.
    if !automated || is_true("locked") || is_true("ignore") {
        return;
    }
    let spec = object.get("spec");
    let pod = match kind {
        "HelmRelease" | "FluxHelmRelease" => {
            if let Some(values) = spec.and_then(|s| s.get("values")) {
                for (container, interpretation) in helm::containers(&annotations, values) {
                    record(
                        parsed,
                        &id,
                        &annotations,
                        container,
                        interpretation,
                        found,
                        notes,
                    );
                }
            }
            return;
        }
        _ => match pod_template(kind, spec) {
            Some(template) => template,
            None => return,
        },
    };
    let Some(pod_spec) = pod.and_then(|t| t.get("spec")) else {
        return;
    };
    for list in ["containers", "initContainers"] {
        let Some(Node::Seq { items, .. }) = pod_spec.get(list) else {
            continue;
        };
        for c in items {
            if let (Some(name), Some(image)) = (c.str("name"), c.scalar("image")) {
                let interpretation = from_reference(image, None);
                record(
                    parsed,
                    &id,
                    &annotations,
                    name.to_string(),
                    interpretation,
                    found,
                    notes,
                );
            }
        }
    }
}

fn record<'n>(
    parsed: &Parsed<'_>,
    id: &WorkloadId,
    annotations: &Annotations<'_>,
    container: String,
    interpretation: Interpretation<'n>,
    found: &mut Vec<Found<'n>>,
    notes: &mut Vec<V1Note>,
) {
    match interpretation {
        Ok(located) => found.push(Found {
            workload: id.clone(),
            filter: annotations.filter(&container),
            container,
            located,
        }),
        Err((at, reason)) => notes.push(V1Note {
            line: parsed.line_of(at.start),
            workload: id.clone(),
            container: Some(container),
            reason,
        }),
    }
}

/// Plans writing the chosen tags into the file's automated containers.
pub(crate) fn plan(parsed: &Parsed<'_>, updates: &[V1Update], plan: &mut Plan) {
    let (found, _) = find(parsed);
    for update in updates {
        for f in found
            .iter()
            .filter(|f| f.workload == update.workload && f.container == update.container)
        {
            let cause = Cause::V1 {
                workload: f.workload.clone(),
                container: f.container.clone(),
            };
            let target = f.located.slot.scalar();
            if is_valid_tag(&update.tag) {
                plan.write(
                    parsed,
                    target,
                    &f.located.slot.value_with(&update.tag),
                    cause,
                );
            } else {
                plan.refuse(
                    parsed,
                    target,
                    cause,
                    RefusalReason::InvalidTag(update.tag.clone()),
                );
            }
        }
    }
}
