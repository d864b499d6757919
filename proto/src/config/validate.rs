//! Flux's admission rules, applied before anything is stored.
//!
//! These are the checks Flux's CRD schemas and CEL rules make (patterns,
//! enums, sizes, required fields), plus the ones its controllers only make
//! later (regexes compile, references resolve), moved to apply time so a bad
//! object is refused with its field and reason instead of failing at runtime.
//! Checks that need a stage's engine (a semver range, a message template) are
//! made by the caller, which owns that engine.

use std::collections::BTreeSet;

use super::{
    parse_go_duration, Alert, FieldError, GitRepository, ImagePolicy, ImageRepository,
    ImageUpdateAutomation, Kind, LocalObjectReference, Object, ObjectKey, Provider,
    PullRequestSpec, COMMIT_STATUS_PROVIDERS, PROVIDER_TYPES, PULL_REQUEST_ANNOTATION,
};
use crate::reference::Repository;

/// Flux's limit on `exclusionList` entries.
pub const MAX_EXCLUSIONS: usize = 25;

/// Why a `proxySecretRef` on a non-HTTP Git remote is refused rather than
/// ignored.
const UNSUPPORTED_PROXY: &str =
    "a proxy applies to http:// and https:// remotes only; it would not be used for this URL";

/// Why a GitRepository's `accessFrom` is refused rather than ignored.
/// Why a GitRepository field that only shapes source-controller's artifact
/// is refused: the committer works on the whole checkout of the branch, so
/// honouring the field would need a second meaning tagrelay does not give it.
const ARTIFACT_ONLY: &str = "shapes only Flux source-controller's artifact; tagrelay's committer works on the whole branch and would not honour it, so remove it from the copy applied to tagrelay";
const UNSUPPORTED_ACCESS_FROM: &str = "cross-namespace access to Git sources is not enforced by tagrelay yet; it refuses the rules rather than ignore them";

/// What a Flux user should change but that still works as Flux's own
/// deprecation promises: a deprecated `apiVersion`, `.Updated` in a
/// `v1beta1`/`v1beta2` template, `gitImplementation`. `apply` prints them
/// as warnings and stores the object.
pub fn deprecations(object: &Object) -> Vec<FieldError> {
    let kind = object.kind();
    let api_version = object.api_version();
    let mut warnings = Vec::new();
    if kind.api_versions().contains(&api_version) && api_version != kind.current_api_version() {
        warnings.push(FieldError::new(
            "apiVersion",
            format!(
                "{api_version} is deprecated; use {}",
                kind.current_api_version()
            ),
        ));
    }
    match object {
        Object::ImageUpdateAutomation(o) => {
            let template = o
                .spec
                .git
                .as_ref()
                .and_then(|g| g.commit.message_template.as_deref());
            if template.is_some_and(|t| t.contains(".Updated")) && !api_version.ends_with("/v1") {
                warnings.push(FieldError::new(
                    "spec.git.commit.messageTemplate",
                    "'.Updated' is deprecated (Flux removed it in image.toolkit.fluxcd.io/v1); use '.Changed'",
                ));
            }
        }
        Object::GitRepository(o) if o.spec.git_implementation.is_some() => {
            warnings.push(FieldError::new(
                "spec.gitImplementation",
                "deprecated and without effect, as in Flux 2",
            ));
        }
        Object::Provider(o) if o.spec.interval.is_some() => {
            warnings.push(FieldError::new(
                "spec.interval",
                "deprecated and without effect, as in Flux's notification-controller",
            ));
        }
        Object::Alert(o) if o.spec.summary.is_some() => {
            warnings.push(FieldError::new(
                "spec.summary",
                "deprecated; use spec.eventMetadata.summary (still sent as metadata 'summary')",
            ));
        }
        _ => {}
    }
    warnings
}

/// Every rule violation of one object, each with its field path.
pub fn validate(object: &Object) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let kind = object.kind();
    let meta = object.metadata();
    let api_version = object.api_version();
    if !kind.api_versions().contains(&api_version) {
        errors.push(
            "apiVersion",
            format!(
                "{api_version:?} is not supported for {kind}; use one of {}",
                kind.api_versions().join(", ")
            ),
        );
    }
    if meta.name.is_empty() {
        errors.push("metadata.name", "required");
    } else {
        errors.dns_subdomain("metadata.name", &meta.name);
    }
    if let Some(namespace) = &meta.namespace {
        errors.dns_label("metadata.namespace", namespace);
    }
    match object {
        Object::ImageRepository(o) => image_repository(o, &mut errors),
        Object::ImagePolicy(o) => image_policy(o, &mut errors),
        Object::ImageUpdateAutomation(o) => image_update_automation(o, &mut errors),
        Object::GitRepository(o) => git_repository(o, &mut errors),
        Object::Provider(o) => provider(o, &mut errors),
        Object::Alert(o) => alert(o, &mut errors),
        // Its name is checked as its namespace above: a DNS label.
        Object::Namespace(_) => {}
    }
    errors.0
}

/// Checks that every object a batch refers to exists in the batch or among
/// the already stored keys, so that a typo in a reference is refused at apply
/// time rather than leaving an object that can never become ready.
pub fn validate_references(object: &Object, known: &BTreeSet<ObjectKey>) -> Vec<FieldError> {
    let namespace = object.namespace();
    let check = |kind: Kind, ns: Option<&String>, name: &str, path: &str| {
        let key = ObjectKey::new(kind, ns.map_or(namespace, |n| n.as_str()), name);
        (!known.contains(&key)).then(|| {
            FieldError::new(
                path,
                format!("refers to {key}, which is neither in this batch nor stored"),
            )
        })
    };
    match object {
        Object::ImagePolicy(o) => {
            let r = &o.spec.image_repository_ref;
            check(
                Kind::ImageRepository,
                r.namespace.as_ref(),
                &r.name,
                "spec.imageRepositoryRef.name",
            )
            .into_iter()
            .collect()
        }
        Object::Alert(o) => check(
            Kind::Provider,
            None,
            &o.spec.provider_ref.name,
            "spec.providerRef.name",
        )
        .into_iter()
        .collect(),
        Object::ImageUpdateAutomation(o) => {
            let r = &o.spec.source_ref;
            check(
                Kind::GitRepository,
                r.namespace.as_ref(),
                &r.name,
                "spec.sourceRef.name",
            )
            .into_iter()
            .collect()
        }
        _ => Vec::new(),
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError::new(path, reason));
    }

    fn duration(&mut self, path: &str, value: &str) {
        if let Err(e) = parse_go_duration(value) {
            self.push(path, e.to_string());
        }
    }

    fn one_of(&mut self, path: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.push(
                path,
                format!("{value:?} is not one of {}", allowed.join(", ")),
            );
        }
    }

    fn regex(&mut self, path: &str, pattern: &str) {
        if let Err(e) = regex::Regex::new(pattern) {
            let detail = e.to_string().replace('\n', " ");
            self.push(path, format!("invalid regular expression: {detail}"));
        }
    }

    fn dns_subdomain(&mut self, path: &str, value: &str) {
        let ok = value.len() <= 253 && value.split('.').all(is_dns_label);
        if !ok {
            self.push(path, format!("{value:?} is not a valid name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"));
        }
    }

    fn dns_label(&mut self, path: &str, value: &str) {
        if !is_dns_label(value) {
            self.push(path, format!("{value:?} is not a valid namespace: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"));
        }
    }

    fn secret_ref(&mut self, path: &str, reference: Option<&LocalObjectReference>) {
        if let Some(r) = reference {
            self.dns_subdomain(&format!("{path}.name"), &r.name);
        }
    }
}

fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
}

fn image_repository(o: &ImageRepository, errors: &mut Errors) {
    let spec = &o.spec;
    if let Err(e) = Repository::parse(&spec.image) {
        errors.push("spec.image", e.to_string());
    }
    errors.duration("spec.interval", &spec.interval);
    if let Some(timeout) = &spec.timeout {
        errors.duration("spec.timeout", timeout);
    }
    errors.secret_ref("spec.secretRef", spec.secret_ref.as_ref());
    errors.secret_ref("spec.certSecretRef", spec.cert_secret_ref.as_ref());
    if let Some(list) = &spec.exclusion_list {
        if list.len() > MAX_EXCLUSIONS {
            errors.push(
                "spec.exclusionList",
                format!(
                    "has {} items, at most {MAX_EXCLUSIONS} are allowed",
                    list.len()
                ),
            );
        }
        for (i, pattern) in list.iter().enumerate() {
            errors.regex(&format!("spec.exclusionList[{i}]"), pattern);
        }
    }
    if spec.service_account_name.is_some() {
        errors.push(
            "spec.serviceAccountName",
            "tagrelay runs without a Kubernetes API, so it has no service accounts to take image pull secrets from; mount the docker config.json and name it in secretRef",
        );
    }
    errors.secret_ref("spec.proxySecretRef", spec.proxy_secret_ref.as_ref());
    if let Some(provider) = &spec.provider {
        errors.one_of(
            "spec.provider",
            provider,
            &["generic", "aws", "azure", "gcp"],
        );
        if let Some(cloud) = crate::reference::cloud::CloudProvider::from_spec(provider) {
            if let Ok(repository) = crate::reference::Repository::parse(&spec.image) {
                if !cloud.serves(repository.registry()) {
                    errors.push(
                        "spec.provider",
                        format!("{provider:?} credentials are only sent to {}, not to {} (the cloud's token is the scanner's own identity)", cloud.expected_hosts(), repository.registry()),
                    );
                }
            }
            if spec.secret_ref.is_some() {
                errors.push(
                    "spec.provider",
                    format!("{provider:?} takes its credentials from the cloud; remove spec.secretRef or use provider: generic"),
                );
            }
        }
    }
}

fn image_policy(o: &ImagePolicy, errors: &mut Errors) {
    if let Err(gate_errors) = o.age_gate() {
        errors.0.extend(gate_errors);
    }
    let spec = &o.spec;
    let r = &spec.image_repository_ref;
    if r.name.is_empty() {
        errors.push("spec.imageRepositoryRef.name", "required");
    } else {
        errors.dns_subdomain("spec.imageRepositoryRef.name", &r.name);
    }
    if let Some(ns) = &r.namespace {
        errors.dns_label("spec.imageRepositoryRef.namespace", ns);
    }
    let choice = &spec.policy;
    let set = [
        choice.semver.is_some(),
        choice.alphabetical.is_some(),
        choice.numerical.is_some(),
    ]
    .into_iter()
    .filter(|b| *b)
    .count();
    if set > 1 {
        errors.push(
            "spec.policy",
            format!("at most one of semver, alphabetical or numerical may be set ({set} are)"),
        );
    }
    if let Some(semver) = &choice.semver {
        if semver.range.trim().is_empty() {
            errors.push("spec.policy.semver.range", "required");
        }
    }
    for (field, order) in [
        ("alphabetical", &choice.alphabetical),
        ("numerical", &choice.numerical),
    ] {
        if let Some(order) = order.as_ref().and_then(|o| o.order.as_deref()) {
            errors.one_of(
                &format!("spec.policy.{field}.order"),
                order,
                &["asc", "desc"],
            );
        }
    }
    if let Some(filter) = &spec.filter_tags {
        if let Some(pattern) = &filter.pattern {
            errors.regex("spec.filterTags.pattern", pattern);
        }
    }
    if let Some(policy) = &spec.digest_reflection_policy {
        errors.one_of(
            "spec.digestReflectionPolicy",
            policy,
            &["Never", "IfNotPresent", "Always"],
        );
        if policy == "Always" && spec.interval.is_none() {
            errors.push(
                "spec.interval",
                "required when digestReflectionPolicy is Always",
            );
        }
    }
    if let Some(interval) = &spec.interval {
        errors.duration("spec.interval", interval);
    }
}

fn image_update_automation(o: &ImageUpdateAutomation, errors: &mut Errors) {
    let spec = &o.spec;
    if let Some(text) = o.metadata.annotations.get(PULL_REQUEST_ANNOTATION) {
        if let Err(e) = PullRequestSpec::parse(text) {
            errors.push(e.path, e.reason);
        }
    }
    errors.duration("spec.interval", &spec.interval);
    errors.one_of(
        "spec.sourceRef.kind",
        &spec.source_ref.kind,
        &["GitRepository"],
    );
    if spec.source_ref.name.is_empty() {
        errors.push("spec.sourceRef.name", "required");
    } else {
        errors.dns_subdomain("spec.sourceRef.name", &spec.source_ref.name);
    }
    if let Some(selector) = &spec.policy_selector {
        for (i, requirement) in selector.match_expressions.iter().enumerate() {
            let path = format!("spec.policySelector.matchExpressions[{i}]");
            match requirement.operator.as_str() {
                "In" | "NotIn" if requirement.values.is_empty() => errors.push(
                    format!("{path}.values"),
                    format!("must not be empty for operator {}", requirement.operator),
                ),
                "Exists" | "DoesNotExist" if !requirement.values.is_empty() => errors.push(
                    format!("{path}.values"),
                    format!("must be empty for operator {}", requirement.operator),
                ),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                other => errors.push(
                    format!("{path}.operator"),
                    format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
                ),
            }
        }
    }
    if let Some(git) = &spec.git {
        if git.commit.author.email.trim().is_empty() {
            errors.push("spec.git.commit.author.email", "required");
        }
        if let Some(key) = &git.commit.signing_key {
            if let Some(key_type) = &key.key_type {
                errors.one_of("spec.git.commit.signingKey.type", key_type, &["gpg", "ssh"]);
            }
            if key.secret_ref.name.trim().is_empty() {
                errors.push("spec.git.commit.signingKey.secretRef.name", "required");
            }
        }
        if let Some(template) = &git.commit.message_template {
            if o.api_version.ends_with("/v1") && template.contains(".Updated") {
                errors.push(
                    "spec.git.commit.messageTemplate",
                    "template uses the '.Updated' field, removed in image.toolkit.fluxcd.io/v1; use '.Changed' instead (or apiVersion v1beta2, where it is deprecated)",
                );
            }
        }
        if let Some(push) = &git.push {
            if let Some(branch) = &push.branch {
                check_branch(errors, "spec.git.push.branch", branch);
            }
        }
        if let Some(checkout) = &git.checkout {
            if let Some(branch) = &checkout.reference.branch {
                check_branch(errors, "spec.git.checkout.ref.branch", branch);
            }
        }
    } else {
        errors.push(
            "spec.git",
            "required: tagrelay only updates Git (set git.commit.author.email)",
        );
    }
    if let Some(update) = &spec.update {
        if let Some(strategy) = &update.strategy {
            errors.one_of("spec.update.strategy", strategy, &["Setters"]);
        }
        if let Some(path) = &update.path {
            if path.starts_with('/') || path.split(['/', '\\']).any(|segment| segment == "..") {
                errors.push(
                    "spec.update.path",
                    format!("{path:?} must be relative to the repository root and must not contain '..'"),
                );
            }
        }
    }
}

fn check_branch(errors: &mut Errors, path: &str, branch: &str) {
    let bad = branch.is_empty()
        || branch.starts_with('-')
        || branch.contains("..")
        || branch.ends_with('/')
        || branch.ends_with(".lock")
        || branch
            .bytes()
            .any(|b| b.is_ascii_control() || b" ~^:?*[\\".contains(&b));
    if bad {
        errors.push(path, format!("{branch:?} is not a valid Git branch name"));
    }
}

/// The kinds whose events an Alert can route: the ones tagrelay's stages
/// report on.
const EVENT_SOURCE_KINDS: [&str; 3] = ["ImageRepository", "ImagePolicy", "ImageUpdateAutomation"];

fn provider(o: &Provider, errors: &mut Errors) {
    let spec = &o.spec;
    errors.one_of("spec.type", &spec.provider_type, &PROVIDER_TYPES);
    if let Some(timeout) = &spec.timeout {
        errors.duration("spec.timeout", timeout);
    }
    errors.secret_ref("spec.secretRef", spec.secret_ref.as_ref());
    if let Some(address) = &spec.address {
        if address.len() > 2048 {
            errors.push("spec.address", "longer than 2048 characters");
        }
        let scheme_ok = match spec.provider_type.as_str() {
            "nats" => address.starts_with("nats://") || address.starts_with("tls://"),
            _ => address.starts_with("http://") || address.starts_with("https://"),
        };
        if !scheme_ok {
            errors.push(
                "spec.address",
                format!(
                    "{address:?} is not a URL the {} provider can use",
                    spec.provider_type
                ),
            );
        }
    }
    if spec.address.is_none() && spec.secret_ref.is_none() {
        errors.push(
            "spec.address",
            "required: set it, or a secretRef whose Secret holds 'address'",
        );
    }
    if spec.provider_type == "nats" && spec.channel.as_deref().unwrap_or("").is_empty() {
        errors.push(
            "spec.channel",
            "required by the nats provider: the subject to publish to",
        );
    }
    if spec.provider_type == "generic-hmac" && spec.secret_ref.is_none() {
        errors.push(
            "spec.secretRef",
            "required by generic-hmac: its Secret's 'token' is the HMAC key",
        );
    }
    if COMMIT_STATUS_PROVIDERS.contains(&spec.provider_type.as_str()) && spec.secret_ref.is_none() {
        errors.push(
            "spec.secretRef",
            format!(
                "required by {}: its Secret's 'token' authenticates to the forge",
                spec.provider_type
            ),
        );
    }
    let refused = [
        ("spec.proxy", spec.proxy.is_some(), "not supported; the notifier honours HTTPS_PROXY / NO_PROXY in its environment"),
        ("spec.proxySecretRef", spec.proxy_secret_ref.is_some(), "not supported; the notifier honours HTTPS_PROXY / NO_PROXY in its environment"),
        ("spec.certSecretRef", spec.cert_secret_ref.is_some(), "custom CAs for receivers are not supported yet; the notifier trusts the system's roots"),
        ("spec.serviceAccountName", spec.service_account_name.is_some(), "workload identity is for cloud providers tagrelay does not deliver to"),
        ("spec.commitStatusExpr", spec.commit_status_expr.is_some(), "CEL expressions are not evaluated by tagrelay; the commit status is named <kind>/<name>/<provider>"),
    ];
    for (field, _, reason) in refused.into_iter().filter(|(_, set, _)| *set) {
        errors.push(field, reason);
    }
}

fn alert(o: &Alert, errors: &mut Errors) {
    let spec = &o.spec;
    errors.dns_subdomain("spec.providerRef.name", &spec.provider_ref.name);
    if let Some(severity) = &spec.event_severity {
        errors.one_of("spec.eventSeverity", severity, &["info", "error"]);
    }
    if spec.event_sources.is_empty() {
        errors.push("spec.eventSources", "at least one source is required");
    }
    for (i, source) in spec.event_sources.iter().enumerate() {
        let path = format!("spec.eventSources[{i}]");
        errors.one_of(&format!("{path}.kind"), &source.kind, &EVENT_SOURCE_KINDS);
        if source.name != "*" {
            errors.dns_subdomain(&format!("{path}.name"), &source.name);
            if source.match_labels.is_some() {
                errors.push(
                    format!("{path}.matchLabels"),
                    "only allowed with name: '*', as in Flux",
                );
            }
        }
        if let Some(namespace) = &source.namespace {
            errors.dns_label(&format!("{path}.namespace"), namespace);
        }
    }
    for (i, pattern) in spec.inclusion_list.iter().enumerate() {
        errors.regex(&format!("spec.inclusionList[{i}]"), pattern);
    }
    for (i, pattern) in spec.exclusion_list.iter().enumerate() {
        errors.regex(&format!("spec.exclusionList[{i}]"), pattern);
    }
}

fn git_repository(o: &GitRepository, errors: &mut Errors) {
    let spec = &o.spec;
    let schemes = ["http://", "https://", "ssh://", "file://"];
    if !schemes.iter().any(|s| spec.url.starts_with(s)) {
        errors.push(
            "spec.url",
            format!(
                "{:?} must start with http://, https://, ssh:// or file://",
                spec.url
            ),
        );
    }
    errors.duration("spec.interval", &spec.interval);
    if let Some(timeout) = &spec.timeout {
        errors.duration("spec.timeout", timeout);
    }
    errors.secret_ref("spec.secretRef", spec.secret_ref.as_ref());
    if let Some(provider) = &spec.provider {
        errors.one_of("spec.provider", provider, &["generic", "azure", "github"]);
        if provider != "generic" {
            errors.push(
                "spec.provider",
                format!("{provider:?} credentials are not supported by tagrelay yet; use provider: generic with a secretRef"),
            );
        }
    }
    errors.secret_ref("spec.proxySecretRef", spec.proxy_secret_ref.as_ref());
    if spec.proxy_secret_ref.is_some() && !spec.url.starts_with("http") {
        errors.push("spec.proxySecretRef", UNSUPPORTED_PROXY);
    }
    if spec.access_from.is_some() {
        errors.push("spec.accessFrom", UNSUPPORTED_ACCESS_FROM);
    }
    let artifact_only = [
        ("spec.verify", spec.verify.is_some()),
        ("spec.ignore", spec.ignore.is_some()),
        ("spec.recurseSubmodules", spec.recurse_submodules),
        ("spec.include", spec.include.is_some()),
        ("spec.sparseCheckout", spec.sparse_checkout.is_some()),
    ];
    for (field, _) in artifact_only.into_iter().filter(|(_, set)| *set) {
        errors.push(field, ARTIFACT_ONLY);
    }
    if let Some(branch) = spec.reference.as_ref().and_then(|r| r.branch.as_ref()) {
        check_branch(errors, "spec.ref.branch", branch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_documents, namespace_labels};
    use std::collections::BTreeMap;

    fn errors_of(yaml: &str) -> Vec<String> {
        let docs = load_documents(yaml).unwrap();
        let object = Object::decode(&docs[0].value).unwrap();
        validate(&object).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_valid_flux_object_has_no_errors() {
        let yaml = "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: podinfo\n  namespace: flux-system\nspec:\n  image: ghcr.io/stefanprodan/podinfo\n  interval: 5m\n";
        assert_eq!(errors_of(yaml), Vec::<String>::new());
    }

    #[test]
    fn a_cloud_provider_is_taken_only_for_its_own_registry_and_without_a_secret_ref() {
        let repository = |image: &str, extra: &str| {
            format!("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: app\nspec:\n  image: {image}\n  interval: 5m\n{extra}")
        };
        for (provider, image) in [
            ("aws", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app"),
            ("gcp", "europe-docker.pkg.dev/project/repo/app"),
            ("gcp", "gcr.io/project/app"),
            ("azure", "myreg.azurecr.io/app"),
        ] {
            let yaml = repository(image, &format!("  provider: {provider}\n"));
            assert_eq!(errors_of(&yaml), Vec::<String>::new(), "{provider} {image}");
            let with_secret = repository(
                image,
                &format!("  provider: {provider}\n  secretRef:\n    name: regcred\n"),
            );
            let errors = errors_of(&with_secret);
            assert!(
                errors.iter().any(|e| e.starts_with("spec.provider:") && e.contains("remove spec.secretRef")),
                "{errors:?}"
            );
        }
        for (provider, image) in [
            ("aws", "ghcr.io/org/app"),
            ("gcp", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app"),
            ("azure", "gcr.io/project/app"),
        ] {
            let errors = errors_of(&repository(image, &format!("  provider: {provider}\n")));
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with("spec.provider:") && e.contains("only sent to")),
                "{provider} {image}: {errors:?}"
            );
        }
    }

    #[test]
    fn image_repository_rules() {
        let mut yaml = String::from("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: Bad_Name\nspec:\n  image: https://ghcr.io/app:1.0\n  interval: 5 minutes\n  timeout: 1d\n  provider: alibaba\n  exclusionList:\n");
        for _ in 0..26 {
            yaml.push_str("    - ok\n");
        }
        yaml.push_str("    - '(unclosed'\n");
        let errors = errors_of(&yaml);
        let paths: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        for expected in [
            "metadata.name",
            "spec.image",
            "spec.interval",
            "spec.timeout",
            "spec.exclusionList",
            "spec.exclusionList[26]",
            "spec.provider",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing in {errors:#?}"
            );
        }
    }

    #[test]
    fn image_policy_rules() {
        let yaml = "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    alphabetical:\n      order: up\n    numerical: {}\n  filterTags:\n    pattern: '[z-a]'\n  digestReflectionPolicy: Always\n";
        let errors = errors_of(yaml);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.policy: at most one")),
            "{errors:?}"
        );
        assert!(errors
            .iter()
            .any(|e| e.starts_with("spec.policy.alphabetical.order")));
        assert!(errors
            .iter()
            .any(|e| e.starts_with("spec.filterTags.pattern")));
        assert!(errors
            .iter()
            .any(|e| e.starts_with("spec.interval: required")));
    }

    #[test]
    fn a_release_age_gate_is_checked_at_apply() {
        let policy = |annotations: &str| {
            format!("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: app\n  annotations:\n{annotations}spec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    semver:\n      range: '>=1.0.0'\n")
        };
        assert!(errors_of(&policy(
            "    tagrelay.dev/minimum-age: 2h\n    tagrelay.dev/minimum-age-from: created\n"
        ))
        .is_empty());
        let errors = errors_of(&policy("    tagrelay.dev/minimum-age: two hours\n"));
        assert!(
            errors[0]
                .starts_with("metadata.annotations[tagrelay.dev/minimum-age]: invalid duration"),
            "{errors:?}"
        );
        let errors = errors_of(&policy("    tagrelay.dev/minimum-age: 0s\n"));
        assert!(errors[0].contains("longer than zero"), "{errors:?}");
        let errors = errors_of(&policy(
            "    tagrelay.dev/minimum-age: 1h\n    tagrelay.dev/minimum-age-from: pushed\n",
        ));
        assert!(
            errors[0].starts_with(
                "metadata.annotations[tagrelay.dev/minimum-age-from]: \"pushed\" is not one of"
            ),
            "{errors:?}"
        );
        let errors = errors_of(&policy("    tagrelay.dev/minimum-age-from: created\n"));
        assert!(errors[0].contains("no effect without"), "{errors:?}");
    }

    #[test]
    fn automation_and_source_rules() {
        let yaml = "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageUpdateAutomation\nmetadata:\n  name: a\nspec:\n  interval: 1m\n  sourceRef:\n    kind: Bucket\n    name: repo\n  git:\n    commit:\n      author:\n        email: ''\n    push:\n      branch: 'bad..branch'\n  update:\n    strategy: Magic\n    path: ../outside\n";
        let errors = errors_of(yaml);
        for expected in [
            "spec.sourceRef.kind",
            "spec.git.commit.author.email",
            "spec.git.push.branch",
            "spec.update.strategy",
            "spec.update.path",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{expected} missing in {errors:#?}"
            );
        }
        let yaml = "apiVersion: source.toolkit.fluxcd.io/v1alpha1\nkind: GitRepository\nmetadata:\n  name: r\nspec:\n  url: git@github.com:org/repo\n  interval: 1m\n";
        let errors = errors_of(yaml);
        assert!(
            errors.iter().any(|e| e.starts_with("apiVersion")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("spec.url")),
            "{errors:?}"
        );
    }

    #[test]
    fn deprecated_versions_and_fields_are_warnings_not_errors() {
        let yaml = "apiVersion: source.toolkit.fluxcd.io/v1beta2\nkind: GitRepository\nmetadata:\n  name: r\nspec:\n  url: https://git.example/r\n  interval: 1m\n  gitImplementation: libgit2\n";
        assert!(errors_of(yaml).is_empty(), "{:?}", errors_of(yaml));
        let docs = load_documents(yaml).unwrap();
        let warnings: Vec<String> = deprecations(&Object::decode(&docs[0].value).unwrap())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("apiVersion: source.toolkit.fluxcd.io/v1beta2 is deprecated")
        );
        assert!(warnings[1].starts_with("spec.gitImplementation: deprecated"));
        let current = yaml
            .replace("v1beta2", "v1")
            .replace("  gitImplementation: libgit2\n", "");
        let docs = load_documents(&current).unwrap();
        assert!(deprecations(&Object::decode(&docs[0].value).unwrap()).is_empty());
    }

    #[test]
    fn access_from_admits_the_namespaces_its_selectors_match() {
        let repository = |access: &str| {
            let yaml = format!("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: app\n  namespace: apps\nspec:\n  image: ghcr.io/org/app\n  interval: 1m\n{access}");
            match Object::decode(&load_documents(&yaml).unwrap()[0].value).unwrap() {
                Object::ImageRepository(r) => r,
                other => panic!("{other:?}"),
            }
        };
        let plain = |ns: &str| namespace_labels(ns, None);
        let closed = repository("");
        assert_eq!(
            closed.admits("apps", &plain("apps")),
            Ok(()),
            "its own namespace"
        );
        assert!(closed
            .admits("team-b", &plain("team-b"))
            .unwrap_err()
            .contains("missing ACL labels"));
        let named = repository("  accessFrom:\n    namespaceSelectors:\n      - matchLabels:\n          kubernetes.io/metadata.name: team-b\n");
        assert_eq!(named.admits("team-b", &plain("team-b")), Ok(()));
        assert!(named
            .admits("team-c", &plain("team-c"))
            .unwrap_err()
            .contains("ACL labels mismatch on namespace 'team-c'"));
        let everyone =
            repository("  accessFrom:\n    namespaceSelectors:\n      - matchLabels: {}\n");
        assert_eq!(everyone.admits("team-c", &plain("team-c")), Ok(()));
        let team = repository(
            "  accessFrom:\n    namespaceSelectors:\n      - matchLabels:\n          team: b\n",
        );
        assert!(team.admits("team-b", &plain("team-b")).is_err());
        let labelled = BTreeMap::from([("team".to_string(), "b".to_string())]);
        assert_eq!(
            team.admits("team-b", &namespace_labels("team-b", Some(&labelled))),
            Ok(()),
            "a Namespace object's labels count"
        );
    }

    #[test]
    fn a_namespace_is_cluster_scoped() {
        let docs = load_documents(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n  labels: {team: b}\n",
        )
        .unwrap();
        let namespace = Object::decode(&docs[0].value).unwrap();
        assert_eq!(namespace.key().to_string(), "Namespace/team-b/team-b");
        assert!(validate(&namespace).is_empty());
        let docs = load_documents(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n  namespace: x\n",
        )
        .unwrap();
        assert_eq!(
            Object::decode(&docs[0].value).unwrap_err().path,
            "metadata.namespace"
        );
    }

    #[test]
    fn references_must_resolve() {
        let docs = load_documents("apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: app\n  namespace: apps\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    semver:\n      range: 1.x\n").unwrap();
        let policy = Object::decode(&docs[0].value).unwrap();
        let mut known = BTreeSet::new();
        let errors = validate_references(&policy, &known);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].reason.contains("ImageRepository/apps/app"));
        known.insert(ObjectKey::new(Kind::ImageRepository, "apps", "app"));
        assert!(validate_references(&policy, &known).is_empty());
    }
}
