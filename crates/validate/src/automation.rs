//! What one ImageUpdateAutomation asks of Git, resolved from its spec and
//! its GitRepository with Flux's defaults and precedence, and checked again
//! (objects can reach the bucket without `tagrelay apply`).

use std::collections::BTreeMap;
use std::time::Duration;

use tagrelay_policy::{compile, Candidate, Choice, PolicyRules};
use tagrelay_rewrite::message::TemplateApi;

use tagrelay_proto::config::{
    parse_go_duration, repository_path, GitRepository, GitRepositoryRef, ImageUpdateAutomation,
    LabelSelector, PullRequestSpec, DEFAULT_NAMESPACE, PULL_REQUEST_ANNOTATION,
};

/// Flux's commit author name when the spec gives only an email.
pub const DEFAULT_AUTHOR_NAME: &str = "FluxBot";
/// Flux's default branch when neither the automation nor the GitRepository
/// names a ref.
pub const DEFAULT_BRANCH: &str = "master";
/// Timeout of Git operations when the GitRepository sets none (Flux's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an automation cannot be carried out as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    /// The field at fault.
    pub field: String,
    /// Why.
    pub reason: String,
}

fn spec_err(field: &str, reason: impl Into<String>) -> SpecError {
    SpecError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// The highest tag within `range` among `tags` (names without
/// `refs/tags/`), as a semver checkout picks it; `None` when none is in
/// range.
pub fn highest_tag_in_range<'a>(
    range: &str,
    tags: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let policy = compile(&PolicyRules::new(Choice::Semver {
        range: range.to_string(),
    }))
    .ok()?;
    let tags: Vec<&'a str> = tags.collect();
    let selected = policy
        .select(tags.iter().map(|tag| Candidate { tag, created: None }))
        .ok()?;
    tags.into_iter().find(|tag| *tag == selected.tag)
}

/// What to check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkout {
    /// A branch (`refs/heads/<name>`).
    Branch(String),
    /// A tag (`refs/tags/<name>`).
    Tag(String),
    /// A commit id.
    Commit(String),
    /// The highest tag within a semver range (Masterminds syntax), as
    /// Flux's GitRepository `ref.semver` picks it at each fetch.
    Semver(String),
}

impl Checkout {
    /// The remote ref to read the checkout from, when it is a ref.
    pub fn remote_ref(&self) -> Option<String> {
        match self {
            Checkout::Branch(b) => Some(format!("refs/heads/{b}")),
            Checkout::Tag(t) => Some(format!("refs/tags/{t}")),
            Checkout::Commit(_) | Checkout::Semver(_) => None,
        }
    }
}

/// One automation, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Automation {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The remote URL as configured.
    pub url: String,
    /// The GitRepository's Secret, `(namespace, name)`.
    pub secret: Option<(String, String)>,
    /// The GitRepository's proxy Secret, `(namespace, name)`.
    pub proxy_secret: Option<(String, String)>,
    /// What to check out.
    pub checkout: Checkout,
    /// The branch commits are pushed to.
    pub push_branch: String,
    /// An extra refspec to push the new commit to (`<src>:<dst>`, the source
    /// already resolved to the push branch).
    pub refspec_target: Option<String>,
    /// `git push -o` options.
    pub push_options: BTreeMap<String, String>,
    /// `update.path`, normalized: `/`-separated, no `.`, "" for the root.
    pub path: String,
    /// Author name.
    pub author_name: String,
    /// Author email.
    pub author_email: String,
    /// The signing key's Secret and type (`spec.git.commit.signingKey`):
    /// every commit is signed with it, or none is made.
    pub signing_key: Option<SigningKeyRef>,
    /// The message template, if any.
    pub message_template: Option<String>,
    /// `.Values` of the template.
    pub message_values: BTreeMap<String, String>,
    /// The template data its API version gets (`.Updated` up to `v1beta2`).
    pub template_api: TemplateApi,
    /// Which policies apply.
    pub selector: LabelSelector,
    /// How often to reconcile.
    pub interval: Duration,
    /// Git operation timeout.
    pub timeout: Duration,
    /// Whether reconciliation is suspended.
    pub suspend: bool,
    /// The pull request to keep open from the push branch to the checkout
    /// branch (`tagrelay.dev/pull-request`), if asked for.
    pub pull_request: Option<Review>,
}

/// An automation's pull request, resolved: where, as whom, and between
/// which branches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// The annotation as written.
    pub spec: PullRequestSpec,
    /// The API base, without a trailing slash.
    pub api_url: String,
    /// `owner/name` (GitLab: the project path).
    pub repository: String,
    /// The Secret `(namespace, name)` with the forge's credentials.
    pub secret: (String, String),
    /// The review branch (the push branch).
    pub head: String,
    /// The branch to merge into (the checkout branch).
    pub base: String,
}

/// Where an automation's signing key is mounted: the Secret in the
/// automation's own namespace (Flux's rule) and the key's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRef {
    /// The Secret's namespace (the automation's).
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// `gpg` (the default) or `ssh`.
    pub key_type: Option<String>,
}

/// Normalizes `update.path`, refusing anything that could leave the
/// repository or enter `.git`.
pub fn normalize_path(path: &str) -> Result<String, SpecError> {
    let field = "spec.update.path";
    if path.starts_with('/') || path.starts_with('\\') {
        return Err(spec_err(
            field,
            format!("{path:?} must be relative to the repository root"),
        ));
    }
    let mut parts = Vec::new();
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err(spec_err(field, format!("{path:?} must not contain '..'"))),
            ".git" => return Err(spec_err(field, format!("{path:?} must not enter .git"))),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn checkout_of(reference: &GitRepositoryRef, field: &str) -> Result<Checkout, SpecError> {
    if let Some(commit) = &reference.commit {
        return Ok(Checkout::Commit(commit.clone()));
    }
    if let Some(name) = &reference.name {
        return if let Some(branch) = name.strip_prefix("refs/heads/") {
            Ok(Checkout::Branch(branch.to_string()))
        } else if let Some(tag) = name.strip_prefix("refs/tags/") {
            Ok(Checkout::Tag(tag.to_string()))
        } else {
            Err(spec_err(
                &format!("{field}.name"),
                format!("{name:?}: only refs/heads/… and refs/tags/… can be checked out"),
            ))
        };
    }
    if let Some(range) = &reference.semver {
        compile(&PolicyRules::new(Choice::Semver {
            range: range.clone(),
        }))
        .map_err(|e| spec_err(&format!("{field}.semver"), e.to_string()))?;
        return Ok(Checkout::Semver(range.clone()));
    }
    if let Some(tag) = &reference.tag {
        return Ok(Checkout::Tag(tag.clone()));
    }
    Ok(Checkout::Branch(
        reference
            .branch
            .clone()
            .unwrap_or_else(|| DEFAULT_BRANCH.to_string()),
    ))
}

impl Automation {
    /// Resolves `automation` against its `source`.
    pub fn resolve(
        automation: &ImageUpdateAutomation,
        source: &GitRepository,
    ) -> Result<Self, SpecError> {
        let spec = &automation.spec;
        let namespace = automation
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let git = spec
            .git
            .as_ref()
            .ok_or_else(|| spec_err("spec.git", "required"))?;
        let checkout = match &git.checkout {
            Some(c) => checkout_of(&c.reference, "spec.git.checkout.ref")?,
            None => checkout_of(
                &source.spec.reference.clone().unwrap_or_default(),
                "GitRepository spec.ref",
            )?,
        };
        let push = git.push.as_ref();
        let push_branch = match (push.and_then(|p| p.branch.clone()), &checkout) {
            (Some(branch), _) => branch,
            (None, Checkout::Branch(b)) => b.clone(),
            (None, _) => {
                return Err(spec_err(
                    "spec.git.push.branch",
                    "required when the checkout is a tag or a commit",
                ))
            }
        };
        let refspec_target = match push.and_then(|p| p.refspec.as_deref()) {
            None => None,
            Some(refspec) => Some(refspec_target(refspec, &push_branch, &checkout)?),
        };
        let interval = parse_go_duration(&spec.interval)
            .map_err(|e| spec_err("spec.interval", e.to_string()))?;
        let timeout = match &source.spec.timeout {
            Some(t) => parse_go_duration(t)
                .map_err(|e| spec_err("GitRepository spec.timeout", e.to_string()))?,
            None => DEFAULT_TIMEOUT,
        };
        let source_namespace = source
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let author = &git.commit.author;
        if author.email.trim().is_empty() {
            return Err(spec_err("spec.git.commit.author.email", "required"));
        }
        let pull_request = match automation.metadata.annotations.get(PULL_REQUEST_ANNOTATION) {
            Some(text) => Some(review_of(
                text,
                &source.spec.url,
                &namespace,
                &checkout,
                &push_branch,
            )?),
            None => None,
        };
        Ok(Self {
            name: automation.metadata.name.clone(),
            url: source.spec.url.clone(),
            secret: source
                .spec
                .secret_ref
                .as_ref()
                .map(|s| (source_namespace.clone(), s.name.clone())),
            proxy_secret: source
                .spec
                .proxy_secret_ref
                .as_ref()
                .map(|s| (source_namespace, s.name.clone())),
            checkout,
            push_branch,
            refspec_target,
            push_options: push.map(|p| p.options.clone()).unwrap_or_default(),
            path: normalize_path(
                spec.update
                    .as_ref()
                    .and_then(|u| u.path.as_deref())
                    .unwrap_or(""),
            )?,
            author_name: author
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| DEFAULT_AUTHOR_NAME.to_string()),
            author_email: author.email.clone(),
            signing_key: git.commit.signing_key.as_ref().map(|key| SigningKeyRef {
                namespace: namespace.clone(),
                name: key.secret_ref.name.clone(),
                key_type: key.key_type.clone(),
            }),
            message_template: git.commit.message_template.clone(),
            message_values: git.commit.message_template_values.clone(),
            template_api: TemplateApi::of(&automation.api_version),
            selector: spec.policy_selector.clone().unwrap_or_default(),
            interval: interval.max(Duration::from_secs(1)),
            timeout,
            suspend: spec.suspend || source.spec.suspend,
            pull_request,
            namespace,
        })
    }
}

/// The pull request of `tagrelay.dev/pull-request`: it needs a review
/// branch, a push branch other than the checkout branch (a request from a
/// branch to itself cannot exist).
fn review_of(
    text: &str,
    url: &str,
    namespace: &str,
    checkout: &Checkout,
    push_branch: &str,
) -> Result<Review, SpecError> {
    let spec = PullRequestSpec::parse(text).map_err(|e| spec_err(&e.path, e.reason))?;
    let field = format!("metadata.annotations[{PULL_REQUEST_ANNOTATION}]");
    let Checkout::Branch(base) = checkout else {
        return Err(spec_err(
            &field,
            "a pull request needs a checkout branch to merge into",
        ));
    };
    if base == push_branch {
        return Err(spec_err(
            &field,
            format!("a pull request needs spec.git.push.branch to differ from the checkout branch {base:?}"),
        ));
    }
    let repository = match spec.repository.clone().or_else(|| repository_path(url)) {
        Some(repository) => repository,
        None => {
            return Err(spec_err(
                &format!("{field}.repository"),
                format!("required: {url:?} does not name owner/name"),
            ))
        }
    };
    let api_url = spec
        .api_url
        .clone()
        .or_else(|| spec.provider.default_api_url().map(str::to_string))
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    Ok(Review {
        api_url,
        repository,
        secret: (namespace.to_string(), spec.secret_ref.name.clone()),
        head: push_branch.to_string(),
        base: base.clone(),
        spec,
    })
}

/// The destination of `push.refspec`, whose source must be the commit the
/// automation makes (`HEAD`, or the push or checkout branch by short or
/// full name). Forced and deleting refspecs are refused, as Flux refuses
/// them.
fn refspec_target(
    refspec: &str,
    push_branch: &str,
    checkout: &Checkout,
) -> Result<String, SpecError> {
    let field = "spec.git.push.refspec";
    if refspec.starts_with('+') {
        return Err(spec_err(
            field,
            "force-push refspecs (+…) are not supported",
        ));
    }
    let (src, dst) = refspec
        .split_once(':')
        .ok_or_else(|| spec_err(field, format!("{refspec:?} is not <src>:<dst>")))?;
    if src.is_empty() {
        return Err(spec_err(field, "deleting refspecs are not supported"));
    }
    let mut ours = vec![
        "HEAD".to_string(),
        push_branch.to_string(),
        format!("refs/heads/{push_branch}"),
    ];
    if let Checkout::Branch(b) = checkout {
        ours.push(b.clone());
        ours.push(format!("refs/heads/{b}"));
    }
    if !ours.iter().any(|o| o == src) {
        return Err(spec_err(
            field,
            format!("source {src:?} must be HEAD or the push branch {push_branch:?}"),
        ));
    }
    if dst.is_empty() || dst.contains("..") || dst.contains(' ') {
        return Err(spec_err(
            field,
            format!("destination {dst:?} is not a valid ref"),
        ));
    }
    Ok(if dst.starts_with("refs/") {
        dst.to_string()
    } else {
        format!("refs/heads/{dst}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tagrelay_proto::config::{load_documents, Object};

    fn resolve(automation_git: &str, source_ref: &str) -> Result<Automation, SpecError> {
        let yaml = format!(
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: repo, namespace: src}}\nspec:\n  url: file:///r.git\n  interval: 1m\n  secretRef: {{name: creds}}\n{source_ref}---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageUpdateAutomation\nmetadata: {{name: auto, namespace: apps}}\nspec:\n  interval: 5m\n  sourceRef: {{kind: GitRepository, name: repo, namespace: src}}\n  update: {{path: ./clusters/./prod/}}\n  git:\n{automation_git}"
        );
        let docs = load_documents(&yaml).unwrap();
        let Object::GitRepository(source) = Object::decode(&docs[0].value).unwrap() else {
            unreachable!()
        };
        let Object::ImageUpdateAutomation(automation) = Object::decode(&docs[1].value).unwrap()
        else {
            unreachable!()
        };
        Automation::resolve(&automation, &source)
    }

    const COMMIT: &str = "    commit:\n      author: {email: bot@example.com}\n";

    #[test]
    fn a_semver_checkout_picks_the_highest_tag_in_range_and_a_bad_range_is_refused() {
        let tags = ["v1.0.0", "v1.4.2", "1.10.0-rc.1", "2.0.0", "latest"];
        assert_eq!(
            highest_tag_in_range("1.x", tags.iter().copied()),
            Some("v1.4.2")
        );
        assert_eq!(
            highest_tag_in_range(">=2.0.0", tags.iter().copied()),
            Some("2.0.0")
        );
        assert_eq!(highest_tag_in_range("3.x", tags.iter().copied()), None);
        let reference = GitRepositoryRef {
            semver: Some(">= 1.0 <<2".into()),
            tag: Some("ignored".into()),
            ..Default::default()
        };
        let err = checkout_of(&reference, "spec.git.checkout.ref").unwrap_err();
        assert_eq!(err.field, "spec.git.checkout.ref.semver");
        let reference = GitRepositoryRef {
            semver: Some("1.x".into()),
            tag: Some("v1.0.0".into()),
            ..Default::default()
        };
        assert_eq!(
            checkout_of(&reference, "spec.ref").unwrap(),
            Checkout::Semver("1.x".into()),
            "semver takes precedence over tag, as in Flux"
        );
    }

    #[test]
    fn flux_precedence_and_defaults() {
        let a = resolve(COMMIT, "").unwrap();
        assert_eq!(a.checkout, Checkout::Branch("master".into()));
        assert_eq!(a.push_branch, "master");
        assert_eq!(a.author_name, "FluxBot");
        assert_eq!(a.path, "clusters/prod");
        assert_eq!(a.secret, Some(("src".into(), "creds".into())));
        assert_eq!(a.interval, Duration::from_secs(300));

        let a = resolve(COMMIT, "  ref: {branch: main}\n").unwrap();
        assert_eq!(a.checkout, Checkout::Branch("main".into()));
        let git = format!("    checkout:\n      ref: {{branch: dev}}\n{COMMIT}    push:\n      branch: auto\n      refspec: refs/heads/auto:refs/for/main\n      options: {{topic: x}}\n");
        let a = resolve(&git, "  ref: {branch: main}\n").unwrap();
        assert_eq!(a.checkout, Checkout::Branch("dev".into()));
        assert_eq!(a.push_branch, "auto");
        assert_eq!(a.refspec_target.as_deref(), Some("refs/for/main"));
        assert_eq!(a.push_options.get("topic").map(String::as_str), Some("x"));
    }

    #[test]
    fn unsafe_or_impossible_settings_are_refused() {
        let err = resolve(COMMIT, "  ref: {tag: v1}\n").unwrap_err();
        assert_eq!(err.field, "spec.git.push.branch");
        let forced = format!("{COMMIT}    push:\n      refspec: +refs/heads/master:refs/heads/x\n");
        assert!(resolve(&forced, "").unwrap_err().reason.contains("force"));
        let other = format!("{COMMIT}    push:\n      refspec: refs/heads/other:refs/heads/x\n");
        assert!(resolve(&other, "").is_err());
        assert!(normalize_path("../x").is_err());
        assert!(normalize_path("a/../../x").is_err());
        assert!(normalize_path("/etc").is_err());
        assert!(normalize_path("a/.git/hooks").is_err());
        assert_eq!(normalize_path("./").unwrap(), "");
    }
}
