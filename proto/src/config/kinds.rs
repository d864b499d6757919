//! The configuration kinds, with Flux's field names and shapes (the
//! notification kinds' specs are in `notification.rs`).
//!
//! A Flux user's YAML must apply unchanged, so the structs mirror the CRDs of
//! `image.toolkit.fluxcd.io` (`v1beta2` and `v1`) and
//! `source.toolkit.fluxcd.io/v1` field for field. Every struct refuses unknown
//! fields, as Kubernetes' strict decoding does, so a typo such as `intervall`
//! is an error instead of a silently ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// API group of the image automation kinds.
pub const IMAGE_GROUP: &str = "image.toolkit.fluxcd.io";
/// API group of the Git source kind.
pub const SOURCE_GROUP: &str = "source.toolkit.fluxcd.io";
/// The `apiVersion`s accepted for the image kinds.
pub const IMAGE_API_VERSIONS: [&str; 2] = [
    "image.toolkit.fluxcd.io/v1beta2",
    "image.toolkit.fluxcd.io/v1",
];
/// The `apiVersion`s accepted for `ImageUpdateAutomation`: `v1beta1` is
/// still in many repositories and guides.
pub const AUTOMATION_API_VERSIONS: [&str; 3] = [
    "image.toolkit.fluxcd.io/v1beta1",
    "image.toolkit.fluxcd.io/v1beta2",
    "image.toolkit.fluxcd.io/v1",
];
/// The current `apiVersion` of `GitRepository`.
pub const SOURCE_API_VERSION: &str = "source.toolkit.fluxcd.io/v1";
/// The `apiVersion`s accepted for `GitRepository`.
pub const SOURCE_API_VERSIONS: [&str; 3] = [
    SOURCE_API_VERSION,
    "source.toolkit.fluxcd.io/v1beta2",
    "source.toolkit.fluxcd.io/v1beta1",
];
/// Annotation on an ImagePolicy that makes it a Flux v1 policy: its value is
/// the v1 filter (`semver:~1.0`, `glob:main-*`, `regex:^v`), or empty for
/// "newest image by creation time". The committer writes such policies for
/// workloads carrying `fluxcd.io/automated: "true"`; a user may too.
pub const FLUX_V1_FILTER_ANNOTATION: &str = "tagrelay.io/flux-v1-filter";
/// The default `exclusionList` of an ImageRepository: cosign signature tags.
pub const DEFAULT_EXCLUSION: &str = "^.*\\.sig$";

/// Object metadata: the subset of Kubernetes' ObjectMeta that is meaningful
/// outside a cluster, plus the server-set fields that `kubectl get -o yaml`
/// exports, accepted so such exports apply unchanged (and ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The object's name, a DNS-1123 subdomain.
    #[serde(default)]
    pub name: String,
    /// The namespace; `flux-system` when omitted, as the Flux CLI defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels, matched by an automation's `policySelector`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations, kept as given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Exported by kubectl; ignored.
    #[serde(default, skip_serializing)]
    pub creation_timestamp: Option<serde_json::Value>,
    /// Exported by kubectl; ignored.
    #[serde(default, skip_serializing)]
    pub uid: Option<serde_json::Value>,
    /// Exported by kubectl; ignored.
    #[serde(default, skip_serializing)]
    pub resource_version: Option<serde_json::Value>,
    /// Exported by kubectl; ignored.
    #[serde(default, skip_serializing)]
    pub generation: Option<serde_json::Value>,
    /// Exported by kubectl; ignored.
    #[serde(default, skip_serializing)]
    pub finalizers: Option<serde_json::Value>,
    /// Exported by kubectl; ignored.
    #[serde(default, skip_serializing)]
    pub managed_fields: Option<serde_json::Value>,
}

/// A reference to a Secret (here: a directory of mounted files) in the same
/// namespace. Credentials never travel on the bus, only this name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalObjectReference {
    /// The Secret's name.
    pub name: String,
}

/// A reference to an object that may live in another namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespacedObjectReference {
    /// The object's name.
    pub name: String,
    /// Its namespace; the referring object's own when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Flux's cross-namespace ACL: which namespaces' ImagePolicies may use an
/// ImageRepository of another namespace. Without it, none may, as in Flux.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessFrom {
    /// Namespaces allowed to refer to the object.
    pub namespace_selectors: Vec<NamespaceSelector>,
}

/// One namespace selector of an [`AccessFrom`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Labels the namespace must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// `ImageRepository.spec`: which repository to scan and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageRepositorySpec {
    /// The repository, `[host[:port]/]path`, with no scheme, tag or digest.
    pub image: String,
    /// How often to scan, a Go duration (`5m`, `1h30m`).
    pub interval: String,
    /// Timeout of one scan's registry calls, a Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Secret holding a docker `config.json` for the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Kubernetes service account for cloud registries; refused at apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Secret holding a CA bundle and client certificate for the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,
    /// Secret holding proxy settings; refused at apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
    /// Cross-namespace access rules (see [`ImageRepository::admits`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_from: Option<AccessFrom>,
    /// Stops scanning while true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Regexes of tags to ignore; `["^.*\\.sig$"]` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusion_list: Option<Vec<String>>,
    /// Cloud provider for credentials: `generic` (default), `aws`, `azure`, `gcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Allows plain HTTP to the registry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

impl ImageRepositorySpec {
    /// The exclusion list in force, with Flux's default applied.
    pub fn effective_exclusion_list(&self) -> Vec<String> {
        self.exclusion_list
            .clone()
            .unwrap_or_else(|| vec![DEFAULT_EXCLUSION.to_string()])
    }
}

/// `ImagePolicy.spec`: how to pick the latest tag of a repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImagePolicySpec {
    /// The ImageRepository whose tags are considered.
    pub image_repository_ref: NamespacedObjectReference,
    /// The ordering rule; without one, the newest image by creation time.
    #[serde(default, skip_serializing_if = "ImagePolicyChoice::is_empty")]
    pub policy: ImagePolicyChoice,
    /// Optional tag filter and extraction applied before ordering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_tags: Option<TagFilter>,
    /// Whether the latest image's digest is reflected: `Never` (default),
    /// `IfNotPresent`, `Always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_reflection_policy: Option<String>,
    /// Re-check interval, required by Flux when digests are reflected `Always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Stops resolving while true (Flux `v1`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// The ordering rule of an ImagePolicy; at most one member may be set, and
/// none means "the newest image by creation time".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePolicyChoice {
    /// Highest version within a Masterminds/semver range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<SemVerPolicy>,
    /// Greatest (asc) or least (desc) tag in byte order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabetical: Option<OrderPolicy>,
    /// Greatest (asc) or least (desc) tag read as a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerical: Option<OrderPolicy>,
}

impl ImagePolicyChoice {
    /// Whether no rule is set: the policy selects the newest image.
    pub fn is_empty(&self) -> bool {
        self.semver.is_none() && self.alphabetical.is_none() && self.numerical.is_none()
    }
}

/// `policy.semver`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemVerPolicy {
    /// The version range, in Masterminds/semver syntax.
    pub range: String,
}

/// `policy.alphabetical` and `policy.numerical`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPolicy {
    /// `asc` (default) or `desc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

/// `filterTags`: keep tags matching `pattern`, order by `extract`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagFilter {
    /// An unanchored regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The replacement (`$1`, `${name}`) whose result is ordered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<String>,
}

/// `ImageUpdateAutomation.spec`: where and how to write the latest tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageUpdateAutomationSpec {
    /// The GitRepository to check out and push to.
    pub source_ref: CrossNamespaceSourceReference,
    /// Checkout, commit and push settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSpec>,
    /// How often to reconcile, a Go duration.
    pub interval: String,
    /// Which ImagePolicies (by label) this automation applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_selector: Option<LabelSelector>,
    /// Which files are updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateStrategy>,
    /// Stops committing while true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// `sourceRef` of an automation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CrossNamespaceSourceReference {
    /// API version of the source; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Must be `GitRepository`.
    pub kind: String,
    /// The source's name.
    pub name: String,
    /// The source's namespace; the automation's own when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `spec.git` of an automation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSpec {
    /// Overrides the GitRepository's ref for the checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<GitCheckoutSpec>,
    /// Commit author, signing and message.
    pub commit: CommitSpec,
    /// Where to push; the checkout branch when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushSpec>,
}

/// `spec.git.checkout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitCheckoutSpec {
    /// The ref to check out.
    #[serde(rename = "ref")]
    pub reference: GitRepositoryRef,
}

/// `spec.git.commit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommitSpec {
    /// The commit author.
    pub author: CommitUser,
    /// Secret with a key every commit is signed with; a key that cannot
    /// sign stops the automation rather than push unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SigningKey>,
    /// A Go template for the commit message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_template: Option<String>,
    /// Extra values available to the template as `.Values`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub message_template_values: BTreeMap<String, String>,
}

/// `spec.git.commit.author`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitUser {
    /// Author name; Flux defaults it to `FluxBot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Author email, required.
    pub email: String,
}

/// `spec.git.commit.signingKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SigningKey {
    /// The Secret holding the key.
    pub secret_ref: LocalObjectReference,
    /// `gpg` (the default) or `ssh`, as current Flux takes it.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
}

/// `spec.git.push`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSpec {
    /// Branch to push to, created from the checkout branch when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// An explicit refspec to push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refspec: Option<String>,
    /// Push options (`git push -o`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// `spec.update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateStrategy {
    /// Only `Setters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Directory, relative to the repository root, whose files are updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A Kubernetes label selector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must all be present with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based requirement of a [`LabelSelector`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` / `NotIn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether `labels` satisfy the selector, as Kubernetes decides.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

/// `GitRepository.spec` (`source.toolkit.fluxcd.io/v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitRepositorySpec {
    /// `http://`, `https://`, `ssh://` or (tagrelay) `file://` URL.
    pub url: String,
    /// Secret with SSH key / known_hosts or HTTPS credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Git provider for credentials: `generic` (default), `azure`, `github`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// How often the source is fetched, a Go duration.
    pub interval: String,
    /// Timeout of Git operations, a Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// The ref to check out; `master` branch when omitted, as Flux does.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<GitRepositoryRef>,
    /// Commit verification; refused at apply (source-controller only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<serde_json::Value>,
    /// Proxy secret; refused at apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
    /// `.sourceignore`-style patterns; refused at apply (source-controller
    /// only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<String>,
    /// Stops fetching while true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Whether submodules are cloned; refused at apply when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recurse_submodules: bool,
    /// Included repositories; refused at apply (source-controller only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<serde_json::Value>,
    /// Sparse checkout paths; refused at apply (source-controller only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse_checkout: Option<Vec<String>>,
    /// `v1beta2`'s Git library choice; deprecated, without effect in Flux
    /// 2 and here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_implementation: Option<String>,
    /// `v1beta2`'s cross-namespace access rules; refused at apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_from: Option<AccessFrom>,
}

/// `GitRepository.spec.ref`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitRepositoryRef {
    /// A branch name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A tag name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A semver range over tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// A full reference name (`refs/heads/main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A commit SHA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Generates a Kubernetes-shaped resource struct for one kind.
macro_rules! resource {
    ($(#[$doc:meta])* $name:ident, $spec:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct $name {
            /// `group/version` of the document.
            pub api_version: String,
            /// The kind's name.
            pub kind: String,
            /// Name, namespace, labels, annotations.
            #[serde(default)]
            pub metadata: ObjectMeta,
            /// The desired state.
            pub spec: $spec,
            /// Status as exported by kubectl; ignored, never stored.
            #[serde(default, skip_serializing)]
            pub status: Option<serde_json::Value>,
        }
    };
}

resource!(
    /// A registry repository to scan.
    ImageRepository,
    ImageRepositorySpec
);
resource!(
    /// A rule selecting the latest tag of an ImageRepository.
    ImagePolicy,
    ImagePolicySpec
);
resource!(
    /// A Git location whose manifests follow the ImagePolicies.
    ImageUpdateAutomation,
    ImageUpdateAutomationSpec
);
resource!(
    /// The Git source an automation checks out and pushes to.
    GitRepository,
    GitRepositorySpec
);
resource!(
    /// A receiver of notifications: a chat, a webhook, Alertmanager, a
    /// forge's commit status, a NATS subject.
    Provider,
    super::ProviderSpec
);
resource!(
    /// A route from the events of some objects to a Provider.
    Alert,
    super::AlertSpec
);

/// The label Kubernetes puts on every namespace: its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A Kubernetes Namespace, for its labels: what `accessFrom` namespace
/// selectors match, since tagrelay has no cluster to ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Namespace {
    /// `v1`.
    pub api_version: String,
    /// `Namespace`.
    pub kind: String,
    /// Its name and labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Exported by kubectl (`finalizers`, set by the cluster); ignored.
    #[serde(default, skip_serializing)]
    pub spec: Option<serde_json::Value>,
    /// Exported by kubectl; ignored.
    #[serde(default, skip_serializing)]
    pub status: Option<serde_json::Value>,
}

impl Namespace {
    /// Its labels as Kubernetes sees them: the applied ones and
    /// `kubernetes.io/metadata.name`, which every namespace carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        namespace_labels(&self.metadata.name, Some(&self.metadata.labels))
    }
}

/// The labels of namespace `name`: `applied` (from a Namespace object,
/// when one is stored) and `kubernetes.io/metadata.name`.
pub fn namespace_labels(
    name: &str,
    applied: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut labels = applied.cloned().unwrap_or_default();
    labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
    labels
}

impl ImageRepository {
    /// Whether an ImagePolicy of `namespace` (whose labels are
    /// `labels`, see [`namespace_labels`]) may use this repository, as
    /// Flux's ACL decides: always from the repository's own namespace;
    /// from another only when `accessFrom` has a namespace selector that
    /// namespace's labels match. The error is Flux's message.
    pub fn admits(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Result<(), String> {
        let own = self
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(super::DEFAULT_NAMESPACE);
        if own == namespace {
            return Ok(());
        }
        let Some(access) = &self.spec.access_from else {
            return Err(format!(
                "access denied: '{own}/{}' can't be accessed due to missing ACL labels on 'accessFrom'",
                self.metadata.name
            ));
        };
        let admitted = access.namespace_selectors.iter().any(|selector| {
            selector
                .match_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        });
        if admitted {
            Ok(())
        } else {
            Err(format!(
                "access denied: '{own}/{}' can't be accessed due to ACL labels mismatch on namespace '{namespace}'",
                self.metadata.name
            ))
        }
    }
}

impl ImagePolicy {
    /// The ImageRepository this policy reads: `imageRepositoryRef`, in the
    /// policy's own namespace unless the reference names one.
    pub fn repository_key(&self) -> super::ObjectKey {
        let reference = &self.spec.image_repository_ref;
        let namespace = reference
            .namespace
            .clone()
            .or_else(|| self.metadata.namespace.clone())
            .unwrap_or_else(|| super::DEFAULT_NAMESPACE.to_string());
        super::ObjectKey::new(super::Kind::ImageRepository, namespace, &reference.name)
    }
}
