//! The `tagrelay.dev/pull-request` annotation: the opt-in extension of
//! ImageUpdateAutomation that asks for a pull (merge) request from the
//! review branch to the checkout branch.
//!
//! An annotation rather than a new field keeps a Flux user's YAML valid for
//! Flux and for Kubernetes' strict decoding; its value is a small YAML (or
//! JSON) document, decoded as strictly as the objects themselves:
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     tagrelay.dev/pull-request: |
//!       provider: github            # github | gitlab | gitea (Forgejo too)
//!       secretRef: {name: forge}    # token, or githubAppID + githubAppInstallationID + githubAppPrivateKey
//!       apiURL: https://api.github.com   # optional for github and gitlab
//!       repository: org/fleet       # optional: from the GitRepository URL
//!       title: "Update {{ len .Changed.Changes }} images"   # Go templates,
//!       body: "..."                 # the commit message's data plus .Causes
//!       labels: [image-update]
//!       reviewers: [alice]
//!       autoMerge: squash           # merge | squash | rebase
//! ```

use serde::{Deserialize, Serialize};

use super::kinds::LocalObjectReference;
use super::{load_documents, FieldError};

/// The annotation holding the document.
pub const PULL_REQUEST_ANNOTATION: &str = "tagrelay.dev/pull-request";

/// The forges tagrelay opens requests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeProvider {
    /// GitHub and GitHub Enterprise Server (REST v3, GraphQL for auto-merge).
    Github,
    /// GitLab (REST v4).
    Gitlab,
    /// Gitea and Forgejo (REST v1).
    Gitea,
}

impl ForgeProvider {
    /// The name on the wire and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeProvider::Github => "github",
            ForgeProvider::Gitlab => "gitlab",
            ForgeProvider::Gitea => "gitea",
        }
    }

    /// The API base when none is configured; Gitea has no public default.
    pub fn default_api_url(self) -> Option<&'static str> {
        match self {
            ForgeProvider::Github => Some("https://api.github.com"),
            ForgeProvider::Gitlab => Some("https://gitlab.com/api/v4"),
            ForgeProvider::Gitea => None,
        }
    }
}

/// How an approved request is merged when the forge merges it by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMethod {
    /// A merge commit.
    Merge,
    /// One squashed commit.
    Squash,
    /// The commits rebased onto the base.
    Rebase,
}

impl MergeMethod {
    /// The forge's word for it (GitHub GraphQL upper-cases it).
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

/// The decoded annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PullRequestSpec {
    /// The forge.
    pub provider: ForgeProvider,
    /// The Secret (in the automation's namespace) with the forge token
    /// (`token`) or a GitHub App (`githubAppID`, `githubAppInstallationID`,
    /// `githubAppPrivateKey`).
    pub secret_ref: LocalObjectReference,
    /// The API's base URL, e.g. `https://git.example/api/v1` for Gitea.
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// `owner/name` (GitLab: the project path); taken from the
    /// GitRepository's URL when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Go template of the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Go template of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Labels to put on the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// User names whose review is requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewers: Vec<String>,
    /// Let the forge merge the request once its checks pass and it is
    /// approved, with this method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_merge: Option<MergeMethod>,
}

impl PullRequestSpec {
    /// Decodes the annotation's value; errors name the field under
    /// `metadata.annotations[tagrelay.dev/pull-request]`.
    pub fn parse(text: &str) -> Result<PullRequestSpec, FieldError> {
        let field = |path: &str| {
            if path.is_empty() {
                format!("metadata.annotations[{PULL_REQUEST_ANNOTATION}]")
            } else {
                format!("metadata.annotations[{PULL_REQUEST_ANNOTATION}].{path}")
            }
        };
        let documents =
            load_documents(text).map_err(|e| FieldError::new(field(""), e.to_string()))?;
        let [document] = documents.as_slice() else {
            return Err(FieldError::new(
                field(""),
                "must be one YAML or JSON document",
            ));
        };
        let spec: PullRequestSpec =
            serde_path_to_error::deserialize(&document.value).map_err(|e| {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                FieldError::new(field(&path), e.into_inner().to_string())
            })?;
        let mut errors = Vec::new();
        if spec.secret_ref.name.trim().is_empty() {
            errors.push(FieldError::new(field("secretRef.name"), "required"));
        }
        match (&spec.api_url, spec.provider.default_api_url()) {
            (Some(url), _) => match url::Url::parse(url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                Ok(_) => errors.push(FieldError::new(field("apiURL"), "must be an http(s) URL")),
                Err(e) => errors.push(FieldError::new(field("apiURL"), format!("not a URL: {e}"))),
            },
            (None, None) => errors.push(FieldError::new(
                field("apiURL"),
                "required for gitea (e.g. https://git.example/api/v1)",
            )),
            (None, Some(_)) => {}
        }
        if let Some(repository) = &spec.repository {
            let parts: Vec<&str> = repository.split('/').collect();
            if parts.len() < 2 || parts.iter().any(|p| p.is_empty() || *p == "..") {
                errors.push(FieldError::new(
                    field("repository"),
                    format!("{repository:?} is not owner/name"),
                ));
            }
        }
        for (i, label) in spec.labels.iter().enumerate() {
            if label.trim().is_empty() || label.contains(',') {
                errors.push(FieldError::new(
                    field(&format!("labels[{i}]")),
                    "must be a non-empty label without commas",
                ));
            }
        }
        for (i, reviewer) in spec.reviewers.iter().enumerate() {
            if reviewer.trim().is_empty() || reviewer.contains(['/', ' ']) {
                errors.push(FieldError::new(
                    field(&format!("reviewers[{i}]")),
                    "must be a user name",
                ));
            }
        }
        match errors.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(spec),
        }
    }
}

/// The `owner/name` (or GitLab `group/…/project`) path of a Git remote URL,
/// without `.git`: what a forge API calls the repository.
pub fn repository_path(url: &str) -> Option<String> {
    let path = match url::Url::parse(url) {
        Ok(parsed) if parsed.has_host() => parsed.path().to_string(),
        // scp-like `git@host:owner/name.git`
        _ => url.split_once(':').map(|(_, path)| path.to_string())?,
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    (path.split('/').filter(|p| !p.is_empty()).count() >= 2).then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_document_decodes_and_mistakes_name_their_field() {
        let spec = PullRequestSpec::parse(
            "provider: gitea\nsecretRef: {name: forge}\napiURL: https://git.example/api/v1\nlabels: [a]\nautoMerge: squash\n",
        )
        .unwrap();
        assert_eq!(spec.provider, ForgeProvider::Gitea);
        assert_eq!(spec.auto_merge, Some(MergeMethod::Squash));
        for (text, field) in [
            ("provider: bitbucket\nsecretRef: {name: f}\n", "provider"),
            (
                "provider: github\nsecretRef: {name: f}\nreviewer: [a]\n",
                "reviewer: unknown field `reviewer`",
            ),
            (
                "provider: gitea\nsecretRef: {name: f}\n",
                "apiURL: required for gitea",
            ),
            (
                "provider: github\nsecretRef: {name: f}\napiURL: ftp://x\n",
                "apiURL: must be an http(s) URL",
            ),
            (
                "provider: github\nsecretRef: {name: f}\nrepository: fleet\n",
                "repository:",
            ),
            (
                "provider: github\nsecretRef: {name: f}\nautoMerge: fast-forward\n",
                "autoMerge",
            ),
            (
                "provider: github\nsecretRef: {name: ''}\n",
                "secretRef.name: required",
            ),
            ("provider: github\n", "missing field `secretRef`"),
            (
                "[unclosed\n",
                "metadata.annotations[tagrelay.dev/pull-request]",
            ),
        ] {
            let error = PullRequestSpec::parse(text).expect_err(text).to_string();
            assert!(error.contains(field), "{text:?}: {error}");
            assert!(
                error.starts_with("metadata.annotations[tagrelay.dev/pull-request]"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_repository_comes_from_any_remote_url() {
        for (url, path) in [
            ("https://github.com/org/fleet.git", Some("org/fleet")),
            (
                "ssh://git@gitlab.com/group/sub/fleet",
                Some("group/sub/fleet"),
            ),
            ("git@github.com:org/fleet.git", Some("org/fleet")),
            ("file:///srv/git/fleet.git", Some("srv/git/fleet")),
            ("https://github.com/fleet", None),
        ] {
            assert_eq!(repository_path(url).as_deref(), path, "{url}");
        }
    }
}
