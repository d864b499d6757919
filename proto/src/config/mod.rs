//! Configuration: the Flux kinds, how they are read from YAML, validated, and
//! keyed in the configuration bucket.
//!
//! The flow is `load` (YAML text → documents with line numbers) → `decode`
//! (strict, typed) → `validate` (Flux's rules). Each step reports every error
//! it finds with the document, the field path and the reason, so that `tagrelay
//! apply` can refuse a whole batch at once with a complete list.

mod age;
mod duration;
mod kinds;
mod load;
mod notification;
mod pull_request;
mod validate;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use age::{AgeClock, AgeGate, MINIMUM_AGE_ANNOTATION, MINIMUM_AGE_FROM_ANNOTATION};
pub use duration::{parse_go_duration, DurationError};
pub use kinds::*;
pub use load::{load_documents, Document, LoadError};
pub use notification::*;
pub use pull_request::{
    repository_path, ForgeProvider, MergeMethod, PullRequestSpec, PULL_REQUEST_ANNOTATION,
};
pub use validate::{deprecations, validate, validate_references};

use crate::names::subject_token;

/// The namespace an object lands in when its metadata names none, as the Flux
/// CLI defaults.
pub const DEFAULT_NAMESPACE: &str = "flux-system";

/// The kinds tagrelay stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// `image.toolkit.fluxcd.io` ImageRepository.
    ImageRepository,
    /// `image.toolkit.fluxcd.io` ImagePolicy.
    ImagePolicy,
    /// `image.toolkit.fluxcd.io` ImageUpdateAutomation.
    ImageUpdateAutomation,
    /// `source.toolkit.fluxcd.io` GitRepository.
    GitRepository,
    /// A Kubernetes Namespace (`v1`): only its labels, which `accessFrom`
    /// selectors match.
    Namespace,
    /// `notification.toolkit.fluxcd.io` Provider.
    Provider,
    /// `notification.toolkit.fluxcd.io` Alert.
    Alert,
}

impl Kind {
    /// Every kind, in the order `apply` stores them (sources before the
    /// objects referring to them).
    pub const ALL: [Kind; 7] = [
        Kind::Namespace,
        Kind::GitRepository,
        Kind::ImageRepository,
        Kind::ImagePolicy,
        Kind::ImageUpdateAutomation,
        Kind::Provider,
        Kind::Alert,
    ];

    /// The kind's name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ImageRepository => "ImageRepository",
            Kind::ImagePolicy => "ImagePolicy",
            Kind::ImageUpdateAutomation => "ImageUpdateAutomation",
            Kind::GitRepository => "GitRepository",
            Kind::Namespace => "Namespace",
            Kind::Provider => "Provider",
            Kind::Alert => "Alert",
        }
    }

    /// The first token of the kind's keys in the configuration bucket.
    pub fn key_token(self) -> &'static str {
        match self {
            Kind::ImageRepository => "imagerepository",
            Kind::ImagePolicy => "imagepolicy",
            Kind::ImageUpdateAutomation => "imageupdateautomation",
            Kind::GitRepository => "gitrepository",
            Kind::Namespace => "namespace",
            Kind::Provider => "provider",
            Kind::Alert => "alert",
        }
    }

    /// Looks a kind up by its `kind:` name.
    pub fn from_kind_name(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// Looks a kind up by its key token.
    pub fn from_key_token(token: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.key_token() == token)
    }

    /// The `apiVersion`s accepted for this kind.
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Kind::GitRepository => &SOURCE_API_VERSIONS,
            Kind::ImageUpdateAutomation => &AUTOMATION_API_VERSIONS,
            Kind::Namespace => &["v1"],
            Kind::Provider | Kind::Alert => &NOTIFICATION_API_VERSIONS,
            _ => &IMAGE_API_VERSIONS,
        }
    }

    /// The version Flux serves as current; the others are deprecated.
    pub fn current_api_version(self) -> &'static str {
        match self {
            Kind::GitRepository => SOURCE_API_VERSION,
            Kind::Namespace => "v1",
            Kind::Provider | Kind::Alert => NOTIFICATION_API_VERSIONS[0],
            _ => "image.toolkit.fluxcd.io/v1",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one stored object: what services key their state by and what
/// events name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// The object's kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key in a KV bucket: `<kind>.<namespace>.<name>`, with dots in
    /// names encoded so that the key always has exactly three tokens.
    pub fn bucket_key(&self) -> String {
        format!(
            "{}.{}.{}",
            self.kind.key_token(),
            subject_token(&self.namespace),
            subject_token(&self.name)
        )
    }

    /// Parses a key written by [`ObjectKey::bucket_key`].
    pub fn from_bucket_key(key: &str) -> Option<Self> {
        let mut parts = key.splitn(3, '.');
        let kind = Kind::from_key_token(parts.next()?)?;
        let namespace = parts.next()?.replace('_', ".");
        let name = parts.next()?.replace('_', ".");
        Some(Self::new(kind, namespace, name))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// One decoded configuration object of any kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    /// An ImageRepository.
    ImageRepository(ImageRepository),
    /// An ImagePolicy.
    ImagePolicy(ImagePolicy),
    /// An ImageUpdateAutomation.
    ImageUpdateAutomation(ImageUpdateAutomation),
    /// A GitRepository.
    GitRepository(GitRepository),
    /// A Namespace's labels.
    Namespace(Namespace),
    /// A notification Provider.
    Provider(Provider),
    /// A notification Alert.
    Alert(Alert),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::ImageRepository(_) => Kind::ImageRepository,
            Object::ImagePolicy(_) => Kind::ImagePolicy,
            Object::ImageUpdateAutomation(_) => Kind::ImageUpdateAutomation,
            Object::GitRepository(_) => Kind::GitRepository,
            Object::Namespace(_) => Kind::Namespace,
            Object::Provider(_) => Kind::Provider,
            Object::Alert(_) => Kind::Alert,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::ImageRepository(o) => &o.metadata,
            Object::ImagePolicy(o) => &o.metadata,
            Object::ImageUpdateAutomation(o) => &o.metadata,
            Object::GitRepository(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::Provider(o) => &o.metadata,
            Object::Alert(o) => &o.metadata,
        }
    }

    /// The object's metadata, to change (an annotation, a default).
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::ImageRepository(o) => &mut o.metadata,
            Object::ImagePolicy(o) => &mut o.metadata,
            Object::ImageUpdateAutomation(o) => &mut o.metadata,
            Object::GitRepository(o) => &mut o.metadata,
            Object::Namespace(o) => &mut o.metadata,
            Object::Provider(o) => &mut o.metadata,
            Object::Alert(o) => &mut o.metadata,
        }
    }

    /// The namespace, defaulted.
    pub fn namespace(&self) -> &str {
        self.metadata()
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE)
    }

    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(self.kind(), self.namespace(), &self.metadata().name)
    }

    /// Decodes a JSON value strictly into the kind its `kind:` names. Unknown
    /// fields fail with their path, as Kubernetes' strict decoding does. The
    /// namespace is filled in when omitted, so stored objects are explicit.
    pub fn decode(value: &serde_json::Value) -> Result<Object, FieldError> {
        let kind_name = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let kind = Kind::from_kind_name(kind_name).ok_or_else(|| {
            FieldError::new(
                "kind",
                if kind_name.is_empty() {
                    "missing; expected one of ImageRepository, ImagePolicy, ImageUpdateAutomation, GitRepository, Namespace, Provider, Alert".to_string()
                } else {
                    format!("unsupported kind {kind_name:?}; expected one of ImageRepository, ImagePolicy, ImageUpdateAutomation, GitRepository, Namespace, Provider, Alert")
                },
            )
        })?;
        let mut object = match kind {
            Kind::ImageRepository => Object::ImageRepository(strict(value)?),
            Kind::ImagePolicy => Object::ImagePolicy(strict(value)?),
            Kind::ImageUpdateAutomation => Object::ImageUpdateAutomation(strict(value)?),
            Kind::GitRepository => Object::GitRepository(strict(value)?),
            Kind::Namespace => Object::Namespace(strict(value)?),
            Kind::Provider => Object::Provider(strict(value)?),
            Kind::Alert => Object::Alert(strict(value)?),
        };
        let meta = object.metadata_mut();
        if kind == Kind::Namespace {
            // Cluster-scoped: keyed under its own name (which is how it is
            // stored, so a stored Namespace decodes again).
            if meta.namespace.as_ref().is_some_and(|ns| *ns != meta.name) {
                return Err(FieldError::new(
                    "metadata.namespace",
                    "a Namespace is cluster-scoped and has none",
                ));
            }
            meta.namespace = Some(meta.name.clone());
        } else if meta.namespace.is_none() {
            meta.namespace = Some(DEFAULT_NAMESPACE.to_string());
        }
        Ok(object)
    }

    /// Suspends or resumes the object (`spec.suspend`), as `flux suspend`
    /// and `flux resume` do.
    pub fn set_suspend(&mut self, suspend: bool) {
        match self {
            Object::ImageRepository(o) => o.spec.suspend = suspend,
            Object::ImagePolicy(o) => o.spec.suspend = suspend,
            Object::ImageUpdateAutomation(o) => o.spec.suspend = suspend,
            Object::GitRepository(o) => o.spec.suspend = suspend,
            Object::Provider(o) => o.spec.suspend = suspend,
            Object::Alert(o) => o.spec.suspend = suspend,
            Object::Namespace(_) => {}
        }
    }

    /// The object's `apiVersion`.
    pub fn api_version(&self) -> &str {
        match self {
            Object::ImageRepository(o) => &o.api_version,
            Object::ImagePolicy(o) => &o.api_version,
            Object::ImageUpdateAutomation(o) => &o.api_version,
            Object::GitRepository(o) => &o.api_version,
            Object::Namespace(o) => &o.api_version,
            Object::Provider(o) => &o.api_version,
            Object::Alert(o) => &o.api_version,
        }
    }

    /// Serialises the object as stored in the configuration bucket.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

fn strict<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        FieldError::new(path, err.into_inner().to_string())
    })
}

/// One problem with one field of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, `spec.policy.semver.range`; empty for the document.
    pub path: String,
    /// Why the value was refused.
    pub reason: String,
}

impl FieldError {
    /// Builds an error.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_round_trip_with_dotted_names() {
        let key = ObjectKey::new(Kind::ImagePolicy, "apps", "my.app.v2");
        assert_eq!(key.bucket_key(), "imagepolicy.apps.my_app_v2");
        assert_eq!(ObjectKey::from_bucket_key(&key.bucket_key()), Some(key));
        assert_eq!(ObjectKey::from_bucket_key("nope.a.b"), None);
        assert_eq!(ObjectKey::from_bucket_key("imagepolicy.a"), None);
    }

    #[test]
    fn decode_refuses_unknown_fields_with_their_path() {
        let value = serde_json::json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1beta2",
            "kind": "ImagePolicy",
            "metadata": {"name": "app"},
            "spec": {
                "imageRepositoryRef": {"name": "app"},
                "policy": {"semver": {"range": "1.x", "ranges": "oops"}}
            }
        });
        let err = Object::decode(&value).unwrap_err();
        assert_eq!(err.path, "spec.policy.semver.ranges");
        assert!(err.reason.contains("unknown field"), "{}", err.reason);
    }

    #[test]
    fn decode_defaults_namespace_and_refuses_foreign_kinds() {
        let value = serde_json::json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "repo"},
            "spec": {"url": "https://example.invalid/x.git", "interval": "1m"}
        });
        let object = Object::decode(&value).unwrap();
        assert_eq!(object.key().to_string(), "GitRepository/flux-system/repo");
        let err = Object::decode(&serde_json::json!({"kind": "Deployment"})).unwrap_err();
        assert_eq!(err.path, "kind");
        assert!(err.reason.contains("Deployment"));
    }
}
