//! A batch of YAML documents checked in two steps: [`decode_batch`] (each
//! document alone: decoding, Flux's rules, the stages' engines) and
//! [`check_references`] (the batch against the configuration it will stand
//! beside: references, automations resolved against their GitRepository,
//! `accessFrom`). The caller supplies that configuration, so this module
//! never reads the bus: `apply` passes what is stored, the Git source what
//! is stored minus what it is about to delete.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use tagrelay_policy::rules::{compile_policy, error_field};
use tagrelay_proto::config::{
    deprecations, load_documents, namespace_labels, validate, validate_references, Document,
    FieldError, ImagePolicy, ImageUpdateAutomation, Kind, Object, ObjectKey, PullRequestSpec,
    DEFAULT_NAMESPACE, PULL_REQUEST_ANNOTATION,
};
use tagrelay_rewrite::template::Template;

use crate::automation::Automation;

/// What to do with a document whose kind tagrelay does not store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownKinds {
    /// Refuse it: a file handed to `tagrelay apply` is meant for tagrelay,
    /// so a foreign kind is a mistake.
    Refuse,
    /// Skip it with a note: a Git path of a fleet repository holds
    /// Deployments, Kustomizations and Flux's other kinds beside the image
    /// objects. A kind of the image API group is still refused, since that
    /// is a typo rather than someone else's object.
    Skip,
}

/// One problem (or note) about one document, where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or `<stdin>`) the document came from.
    pub file: String,
    /// The 1-based line of the field, or of the document.
    pub line: usize,
    /// `Kind/namespace/name` of the document, when it has got that far.
    pub object: Option<String>,
    /// The field path (`spec.policy.semver.range`); empty for the document.
    pub field: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.reason)
    }
}

/// A document that decoded and passed every check on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The file it came from.
    pub file: String,
    /// The line where the document starts.
    pub line: usize,
    /// The object.
    pub object: Object,
}

/// Something worth saying about a batch that does not refuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A document that is not stored: a `Secret` (mounted as files, never
    /// on the bus) or, with [`UnknownKinds::Skip`], a foreign kind.
    Skipped(Problem),
    /// A deprecated version or field, stored all the same.
    Deprecated(Problem),
}

impl Note {
    /// The document and reason.
    pub fn problem(&self) -> &Problem {
        match self {
            Note::Skipped(p) | Note::Deprecated(p) => p,
        }
    }
}

/// A batch after [`decode_batch`] (and [`check_references`]).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The valid objects, in document order.
    pub objects: Vec<Checked>,
    /// Every problem found; the batch must be refused as a whole when any.
    pub errors: Vec<Problem>,
    /// Skipped documents and deprecations, in document order.
    pub notes: Vec<Note>,
    /// The keys of every document that decoded, valid or not, so that a
    /// reference to an invalid object is not reported a second time as
    /// missing.
    decoded: BTreeSet<ObjectKey>,
}

impl Batch {
    /// The batch's keys: what it will leave in the bucket.
    pub fn keys(&self) -> BTreeSet<ObjectKey> {
        self.objects.iter().map(|c| c.object.key()).collect()
    }

    /// The batch's object under `key`, else `others`' (the configuration it
    /// will stand beside).
    fn lookup<'a>(
        &'a self,
        key: &ObjectKey,
        others: &'a BTreeMap<ObjectKey, Object>,
    ) -> Option<&'a Object> {
        self.objects
            .iter()
            .map(|c| &c.object)
            .find(|o| o.key() == *key)
            .or_else(|| others.get(key))
    }
}

/// Decodes every document of `sources` (`(file, YAML)`) and checks each on
/// its own, and that no object is defined twice.
pub fn decode_batch(sources: &[(String, String)], unknown: UnknownKinds) -> Batch {
    let mut batch = Batch::default();
    for (file, text) in sources {
        match load_documents(text) {
            Ok(documents) => {
                for document in documents {
                    decode_document(file, document, unknown, &mut batch);
                }
            }
            Err(e) => batch.errors.push(Problem {
                file: file.clone(),
                line: e.line,
                object: None,
                field: String::new(),
                reason: e.reason,
            }),
        }
    }
    let mut first: BTreeMap<ObjectKey, (String, usize)> = BTreeMap::new();
    for checked in &batch.objects {
        let key = checked.object.key();
        match first.get(&key) {
            Some((file, line)) => batch.errors.push(Problem {
                file: checked.file.clone(),
                line: checked.line,
                object: Some(key.to_string()),
                field: String::new(),
                reason: format!("defined more than once (also at {file}:{line})"),
            }),
            None => {
                first.insert(key, (checked.file.clone(), checked.line));
            }
        }
    }
    batch
}

/// Checks the batch against `others`, the objects that will be stored
/// beside it: every reference resolves (in the batch or `others`), each
/// automation resolves against its GitRepository as the committer will, and
/// a policy naming another namespace's repository is admitted by its
/// `accessFrom`. Problems are added to `batch.errors`.
pub fn check_references(batch: &mut Batch, others: &BTreeMap<ObjectKey, Object>) {
    let mut known: BTreeSet<ObjectKey> = others.keys().cloned().collect();
    known.extend(batch.decoded.iter().cloned());
    let mut errors = Vec::new();
    for checked in &batch.objects {
        let object = &checked.object;
        let problem = |field: &str, reason: String| Problem {
            file: checked.file.clone(),
            line: checked.line,
            object: Some(object.key().to_string()),
            field: field.to_string(),
            reason,
        };
        for error in validate_references(object, &known) {
            errors.push(problem(&error.path, error.reason));
        }
        match object {
            Object::ImagePolicy(policy) => {
                if let Some(denied) = cross_namespace_denial(policy, batch, others) {
                    errors.push(problem("spec.imageRepositoryRef.namespace", denied));
                }
            }
            Object::ImageUpdateAutomation(automation) => {
                if let Some(error) = resolve_automation(automation, batch, others) {
                    errors.push(problem(&error.path, error.reason));
                }
            }
            _ => {}
        }
    }
    batch.errors.extend(errors);
}

fn decode_document(file: &str, document: Document, unknown: UnknownKinds, batch: &mut Batch) {
    let object = Some(label(&document.value));
    let problem = |error: &FieldError| Problem {
        file: file.to_string(),
        line: document.line_of(&error.path),
        object: object.clone(),
        field: error.path.clone(),
        reason: error.reason.clone(),
    };
    if let Some(reason) = skip_reason(&document.value, unknown) {
        batch
            .notes
            .push(Note::Skipped(problem(&FieldError::new("kind", reason))));
        return;
    }
    match Object::decode(&document.value) {
        Err(error) => batch.errors.push(problem(&error)),
        Ok(decoded) => {
            batch.decoded.insert(decoded.key());
            let mut problems = validate(&decoded);
            if problems.is_empty() {
                problems.extend(engine_problems(&decoded));
            }
            batch.errors.extend(problems.iter().map(problem));
            batch.notes.extend(
                deprecations(&decoded)
                    .iter()
                    .map(|w| Note::Deprecated(problem(w))),
            );
            if problems.is_empty() {
                batch.objects.push(Checked {
                    file: file.to_string(),
                    line: document.line,
                    object: decoded,
                });
            }
        }
    }
}

/// Why a document is skipped rather than decoded: a Kubernetes `Secret`
/// always (its keys are mounted on the services, never put on the bus), a
/// kind tagrelay does not store when foreign kinds are skipped.
fn skip_reason(value: &serde_json::Value, unknown: UnknownKinds) -> Option<String> {
    let kind = value["kind"].as_str().unwrap_or("");
    let api_version = value["apiVersion"].as_str().unwrap_or("");
    if kind == "Secret" && api_version == "v1" {
        let namespace = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or(DEFAULT_NAMESPACE);
        let name = value["metadata"]["name"].as_str().unwrap_or("<name>");
        return Some(format!("Secrets are never stored on the bus; skipped. Mount its keys as files in <secrets-dir>/{namespace}/{name}/ on the services that read it"));
    }
    let image_group = api_version.starts_with("image.toolkit.fluxcd.io/");
    (unknown == UnknownKinds::Skip
        && !kind.is_empty()
        && Kind::from_kind_name(kind).is_none()
        && !image_group)
        .then(|| format!("{api_version} {kind} is not read by tagrelay; skipped"))
}

/// What the stages' own engines refuse: a policy the resolver cannot
/// compile, a message template the committer cannot parse.
fn engine_problems(object: &Object) -> Vec<FieldError> {
    match object {
        Object::ImagePolicy(policy) => compile_policy(&policy.metadata, &policy.spec, None)
            .err()
            .map(|e| {
                let (path, reason) = error_field(&e);
                FieldError::new(path, reason)
            })
            .into_iter()
            .collect(),
        Object::ImageUpdateAutomation(automation) => {
            let message = automation
                .spec
                .git
                .as_ref()
                .and_then(|git| git.commit.message_template.clone())
                .map(|t| ("spec.git.commit.messageTemplate".to_string(), t));
            let review = automation
                .metadata
                .annotations
                .get(PULL_REQUEST_ANNOTATION)
                .and_then(|text| PullRequestSpec::parse(text).ok());
            let field =
                |name: &str| format!("metadata.annotations[{PULL_REQUEST_ANNOTATION}].{name}");
            let review_templates = review.into_iter().flat_map(|spec| {
                [
                    spec.title.map(|t| (field("title"), t)),
                    spec.body.map(|t| (field("body"), t)),
                ]
            });
            message
                .into_iter()
                .chain(review_templates.flatten())
                .filter_map(|(path, template)| {
                    Template::parse(&template)
                        .err()
                        .map(|e| FieldError::new(path, e.to_string()))
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Resolves an automation against its GitRepository exactly as the
/// committer will, so a checkout, push branch or refspec it would refuse is
/// refused now. `None` when it resolves, or when its source is missing
/// (reported by the reference check).
fn resolve_automation(
    automation: &ImageUpdateAutomation,
    batch: &Batch,
    others: &BTreeMap<ObjectKey, Object>,
) -> Option<FieldError> {
    let namespace = automation
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(DEFAULT_NAMESPACE);
    let reference = &automation.spec.source_ref;
    let source_key = ObjectKey::new(
        Kind::GitRepository,
        reference.namespace.as_deref().unwrap_or(namespace),
        &reference.name,
    );
    let Some(Object::GitRepository(source)) = batch.lookup(&source_key, others) else {
        return None;
    };
    Automation::resolve(automation, source)
        .err()
        .map(|e| FieldError::new(e.field, e.reason))
}

/// Why `policy` may not use the ImageRepository of another namespace it
/// names (Flux's `accessFrom` ACL); `None` when it may, or the repository
/// is missing (reported by the reference check).
fn cross_namespace_denial(
    policy: &ImagePolicy,
    batch: &Batch,
    others: &BTreeMap<ObjectKey, Object>,
) -> Option<String> {
    let repository_key = policy.repository_key();
    let namespace = policy
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(DEFAULT_NAMESPACE);
    if repository_key.namespace == namespace {
        return None;
    }
    let Some(Object::ImageRepository(repository)) = batch.lookup(&repository_key, others) else {
        return None;
    };
    let namespace_key = ObjectKey::new(Kind::Namespace, namespace, namespace);
    let labels = match batch.lookup(&namespace_key, others) {
        Some(Object::Namespace(n)) => Some(&n.metadata.labels),
        _ => None,
    };
    let labels = namespace_labels(namespace, labels);
    repository.admits(namespace, &labels).err()
}

/// `kind/namespace/name` of a document that may not even decode.
fn label(value: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let kind = text(&value["kind"]).unwrap_or_else(|| "<no kind>".into());
    let namespace =
        text(&value["metadata"]["namespace"]).unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    let name = text(&value["metadata"]["name"]).unwrap_or_else(|| "<no name>".into());
    format!("{kind}/{namespace}/{name}")
}

#[cfg(test)]
mod tests;
