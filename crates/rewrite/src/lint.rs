//! `tagrelay lint`'s checks, shared with the committer: an automation that
//! silently does nothing. Each check reads one file's bytes (and, when
//! given, the ImagePolicies that exist) and says where the problem is and
//! how to fix it:
//!
//! - a near-miss marker: a comment that mentions `imagepolicy` but that
//!   Flux does not read as a Setters marker (`{"imagepolicy": …}` without
//!   the `$`, single quotes, a name that is not `NAMESPACE:POLICY`);
//! - a marker naming a policy that does not exist;
//! - an image an ImagePolicy covers (same repository) written without a
//!   marker (`image:` values and Kustomize `images:` entries' `newTag`);
//! - Flux v1 annotations that cannot take effect (see [`super::v1`]);
//! - files the committer skips: too large, symlinks ([`lint_unread`]),
//!   and files with markers or annotations that do not parse.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};
use tagrelay_policy::{compile, Choice, PolicyRules, V1Filter};
use tagrelay_proto::config::Object;
use tagrelay_reference::{ImageReference, Repository};

use super::screen::{Screen, Unread};
use super::setters::{has_marker, marker_value, split_setter, visit};
use super::yaml::{self, Node, Parsed};
use super::{as_text, v1};

/// What a finding is about; its name is stable, for CI and alert routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// A comment that looks like a Setters marker but is not read as one.
    NearMissMarker,
    /// A marker naming a policy that does not exist.
    UnknownPolicy,
    /// An image a policy covers, without a marker.
    UnmarkedImage,
    /// `fluxcd.io/automated: true` as a YAML boolean.
    BooleanAutomated,
    /// A `fluxcd.io/tag.<container>` naming no container of the workload.
    UnknownContainer,
    /// A Flux v1 tag filter that does not parse.
    InvalidFilter,
    /// A `repository.fluxcd.io/<alias>` (or `tag.`, `registry.`) path that
    /// leads nowhere in the HelmRelease's values.
    DanglingAlias,
    /// A file the committer skips: too large, a symlink, or unparseable.
    SkippedFile,
}

impl Check {
    /// The check's stable name (`near-miss-marker`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Check::NearMissMarker => "near-miss-marker",
            Check::UnknownPolicy => "unknown-policy",
            Check::UnmarkedImage => "unmarked-image",
            Check::BooleanAutomated => "boolean-automated",
            Check::UnknownContainer => "unknown-container",
            Check::InvalidFilter => "invalid-filter",
            Check::DanglingAlias => "dangling-alias",
            Check::SkippedFile => "skipped-file",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A finding within a file, before the file's path is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    pub line: usize,
    pub check: Check,
    pub problem: String,
    pub fix: String,
}

/// One problem, where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The file, relative to the linted directory, with `/`.
    pub file: String,
    /// 1-based line (1 for a file skipped as a whole).
    pub line: usize,
    /// Which check found it.
    pub check: Check,
    /// What is wrong, in one sentence.
    pub problem: String,
    /// What to write instead, or what to do.
    pub fix: String,
}

impl Finding {
    /// A stable identity: the file, the check and the problem, not the line
    /// (a line added above does not make it a new finding). The committer
    /// reports each identity once.
    pub fn id(&self) -> String {
        let mut hash = Sha256::new();
        for part in [&self.file, self.check.as_str(), &self.problem] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hex::encode(&hash.finalize()[..16])
    }

    fn at(file: &str, hit: Hit) -> Self {
        Finding {
            file: file.to_string(),
            line: hit.line,
            check: hit.check,
            problem: hit.problem,
            fix: hit.fix,
        }
    }
}

impl fmt::Display for Finding {
    /// `file:line: check: problem (fix: …)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {} (fix: {})",
            self.file, self.line, self.check, self.problem, self.fix
        )
    }
}

/// The ImagePolicies that exist, by setter name (`NS:NAME`), with the
/// repository each reads.
#[derive(Debug, Clone, Default)]
pub struct KnownPolicies {
    by_setter: BTreeMap<String, Option<Repository>>,
}

impl KnownPolicies {
    /// Records policy `namespace/name` reading `image` (its
    /// ImageRepository's `spec.image`, when known).
    pub fn insert(&mut self, namespace: &str, name: &str, image: Option<&str>) {
        let repository = image.and_then(|i| Repository::parse(i).ok());
        self.by_setter
            .insert(format!("{namespace}:{name}"), repository);
    }

    /// The policies among configuration `objects`, each with the image of
    /// the ImageRepository it reads (when that is among them too).
    pub fn from_objects(objects: &[Object]) -> Self {
        let images: std::collections::HashMap<_, &str> = objects
            .iter()
            .filter_map(|o| match o {
                Object::ImageRepository(r) => Some((o.key(), r.spec.image.as_str())),
                _ => None,
            })
            .collect();
        let mut known = Self::default();
        for object in objects {
            if let Object::ImagePolicy(policy) = object {
                let image = images.get(&policy.repository_key()).copied();
                let key = object.key();
                known.insert(&key.namespace, &key.name, image);
            }
        }
        known
    }

    fn covering(&self, repository: &Repository) -> Vec<&str> {
        let canonical = repository.canonical();
        self.by_setter
            .iter()
            .filter(|(_, r)| r.as_ref().is_some_and(|r| r.canonical() == canonical))
            .map(|(setter, _)| setter.as_str())
            .collect()
    }

    fn in_namespace(&self, namespace: &str) -> Vec<&str> {
        self.by_setter
            .keys()
            .filter(|s| s.split(':').next() == Some(namespace))
            .map(String::as_str)
            .collect()
    }
}

/// Every finding in one file. `known`: the policies that exist, when the
/// caller knows them (without it, unknown-policy and unmarked-image are
/// not checked).
pub fn lint_file(file: &str, content: &[u8], known: Option<&KnownPolicies>) -> Vec<Finding> {
    let interesting = Screen::of(content).interesting();
    let text = match as_text(content) {
        Ok(text) => text,
        Err(e) if interesting => {
            return vec![skipped(file, 1, &e.to_string())];
        }
        Err(_) => return Vec::new(),
    };
    let mut hits = comment_hits(text, known);
    let marker_lines: Vec<usize> = hits.iter().map(|h| h.line).collect();
    match yaml::parse(text) {
        Ok(parsed) => {
            hits.extend(v1::lint(&parsed, &filter_error));
            if let Some(known) = known {
                hits.extend(unmarked(&parsed, known, &marker_lines));
            }
        }
        Err(e) if interesting => hits.push(Hit {
            line: error_line(&e),
            check: Check::SkippedFile,
            problem: format!("the committer skips this file: {e}"),
            fix: "fix the YAML so that it parses (yamllint shows where)".to_string(),
        }),
        Err(_) => {}
    }
    let mut findings: Vec<Finding> = hits.into_iter().map(|h| Finding::at(file, h)).collect();
    findings.sort();
    findings
}

/// The finding for a file the committer does not even read.
pub fn lint_unread(file: &str, unread: &Unread) -> Finding {
    let fix = match unread {
        Unread::TooLarge { .. } => "split it, or move it out of the automation's path",
        Unread::Symlink { .. } => "replace the symlink with the file itself",
    };
    Finding {
        file: file.to_string(),
        line: 1,
        check: Check::SkippedFile,
        problem: format!("the committer skips this file: {unread}"),
        fix: fix.to_string(),
    }
}

fn skipped(file: &str, line: usize, why: &str) -> Finding {
    Finding {
        file: file.to_string(),
        line,
        check: Check::SkippedFile,
        problem: format!("the committer skips this file: {why}"),
        fix: "save it as UTF-8 YAML".to_string(),
    }
}

fn error_line(error: &super::RewriteError) -> usize {
    match error {
        super::RewriteError::Syntax { line, .. }
        | super::RewriteError::DuplicateKey { line, .. }
        | super::RewriteError::TooDeep { line, .. } => *line,
        _ => 1,
    }
}

/// Why a Flux v1 filter does not compile, if it does not.
fn filter_error(filter: &str) -> Option<String> {
    compile(&PolicyRules::new(Choice::FluxV1(V1Filter::parse(filter))))
        .err()
        .map(|e| e.to_string())
}

/// Near-miss markers and markers naming unknown policies, from every
/// comment that mentions `imagepolicy`.
fn comment_hits(text: &str, known: Option<&KnownPolicies>) -> Vec<Hit> {
    let mut hits = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let Some(comment) = comment_of(line) else {
            continue;
        };
        if !comment.to_ascii_lowercase().contains("imagepolicy") {
            continue;
        }
        let line = index + 1;
        let guess = guess_setter(comment);
        let suggested = format!("# {{\"$imagepolicy\": \"{guess}\"}}");
        let Some(name) = marker_value(comment) else {
            let why = if !comment.contains("$imagepolicy") {
                "the key must be \"$imagepolicy\", with the $"
            } else if comment.contains('\'') {
                "a marker is JSON: double quotes, not single"
            } else {
                "a marker is a JSON object of strings and nothing else"
            };
            hits.push(Hit {
                line,
                check: Check::NearMissMarker,
                problem: format!("{} is not read as a marker: {why}", comment.trim()),
                fix: format!("write {suggested}"),
            });
            continue;
        };
        let Some(setter) = split_setter(&name) else {
            hits.push(Hit {
                line,
                check: Check::NearMissMarker,
                problem: format!(
                    "marker names {name:?}, which is not NAMESPACE:POLICY[:tag|:name|:digest]"
                ),
                fix: format!("write {suggested}"),
            });
            continue;
        };
        if let Some(known) = known {
            if !known.by_setter.contains_key(&setter.policy) {
                let namespace = setter.policy.split(':').next().unwrap_or_default();
                let others = known.in_namespace(namespace);
                let fix = if others.is_empty() {
                    format!(
                        "apply ImagePolicy {}, or name an existing one",
                        setter.policy.replacen(':', "/", 1)
                    )
                } else {
                    format!("name one of {}", others.join(", "))
                };
                hits.push(Hit {
                    line,
                    check: Check::UnknownPolicy,
                    problem: format!(
                        "marker names policy {}, which does not exist",
                        setter.policy
                    ),
                    fix,
                });
            }
        }
    }
    hits
}

/// The comment of a line (from its `#`), when one starts outside quotes
/// after a blank or at the start.
fn comment_of(line: &str) -> Option<&str> {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '#' && (previous == ' ' || previous == '\t') => return Some(&line[i..]),
            None if (c == '"' || c == '\'') && (previous == ' ' || previous == ':') => {
                quote = Some(c)
            }
            None => {}
        }
        previous = c;
    }
    None
}

/// The setter a near-miss seems to mean: the first quoted or bare word
/// after `imagepolicy`.
fn guess_setter(comment: &str) -> String {
    let lower = comment.to_ascii_lowercase();
    let after = lower
        .find("imagepolicy")
        .map(|at| &comment[at + "imagepolicy".len()..])
        .unwrap_or_default();
    let value: String = after
        .trim_start_matches(['"', '\'', ':', ' ', '\t'])
        .chars()
        .take_while(|c| !matches!(c, '"' | '\'' | '}' | ' ' | ',' | '\t'))
        .collect();
    if value.contains(':') {
        value
    } else if value.is_empty() {
        "NAMESPACE:POLICY".to_string()
    } else {
        format!("NAMESPACE:{value}")
    }
}

/// Images a known policy covers that carry no marker.
fn unmarked(parsed: &Parsed<'_>, known: &KnownPolicies, marker_lines: &[usize]) -> Vec<Hit> {
    let automated = v1::automated_image_lines(parsed);
    let mut marked = Vec::new();
    for doc in &parsed.docs {
        visit(doc, false, &mut |scalar, seq_entry| {
            if has_marker(parsed, scalar, seq_entry) {
                marked.push(scalar.start);
            }
        });
    }
    let mut hits = Vec::new();
    let mut check = |scalar: &yaml::Scalar, reference: &str, suffix: &str| {
        let line = parsed.line_of(scalar.start);
        if marked.contains(&scalar.start)
            || automated.contains(&line)
            || marker_lines.contains(&line)
        {
            return;
        }
        let repository = match ImageReference::parse(reference) {
            Ok(image) => image.repository,
            Err(_) => return,
        };
        let covering = known.covering(&repository);
        let Some(first) = covering.first() else {
            return;
        };
        let mut fix = format!("end the line with # {{\"$imagepolicy\": \"{first}{suffix}\"}}");
        if covering.len() > 1 {
            fix.push_str(&format!(" (or name {})", covering[1..].join(", ")));
        }
        hits.push(Hit {
            line,
            check: Check::UnmarkedImage,
            problem: format!(
                "image {} is covered by ImagePolicy {} but has no marker, so it is never updated",
                repository,
                first.replacen(':', "/", 1)
            ),
            fix,
        });
    };
    // Flux's own image objects name repositories, not images to update.
    let flux_image_object = |doc: &Node| {
        doc.str("apiVersion")
            .is_some_and(|api| api.starts_with("image.toolkit.fluxcd.io/"))
    };
    for doc in parsed.docs.iter().filter(|doc| !flux_image_object(doc)) {
        maps(doc, &mut |map| {
            if let Some(image) = map.scalar("image") {
                if image.is_string() {
                    check(image, &image.value, "");
                }
            }
            if let (Some(tag), Some(name)) = (
                map.scalar("newTag"),
                map.str("newName").or_else(|| map.str("name")),
            ) {
                check(tag, name, ":tag");
            }
        });
    }
    hits
}

/// Calls `f` with every mapping under `node`, itself included.
fn maps<'n>(node: &'n Node, f: &mut impl FnMut(&'n Node)) {
    match node {
        Node::Map { entries } => {
            f(node);
            entries.iter().for_each(|(_, v)| maps(v, f));
        }
        Node::Seq { items, .. } => items.iter().for_each(|i| maps(i, f)),
        Node::Scalar(_) | Node::Alias => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> KnownPolicies {
        let mut known = KnownPolicies::default();
        known.insert("apps", "app", Some("ghcr.io/org/app"));
        known.insert("apps", "web", Some("nginx"));
        known
    }

    fn checks(yaml: &str) -> Vec<(usize, Check)> {
        lint_file("f.yaml", yaml.as_bytes(), Some(&known()))
            .into_iter()
            .map(|f| (f.line, f.check))
            .collect()
    }

    #[test]
    fn near_miss_markers_are_found_with_the_marker_they_mean() {
        let findings = lint_file(
            "f.yaml",
            b"a:\n  image: ghcr.io/org/app:1.0 # {\"imagepolicy\": \"apps:app\"}\n  b: x # {'$imagepolicy': 'apps:app:tag'}\n  c: y # {\"$imagepolicy\": \"app\"}\n",
            Some(&known()),
        );
        let got: Vec<(usize, Check)> = findings.iter().map(|f| (f.line, f.check)).collect();
        assert_eq!(
            got,
            [
                (2, Check::NearMissMarker),
                (3, Check::NearMissMarker),
                (4, Check::NearMissMarker)
            ]
        );
        assert!(
            findings[0].problem.contains("with the $"),
            "{}",
            findings[0]
        );
        assert_eq!(findings[0].fix, "write # {\"$imagepolicy\": \"apps:app\"}");
        assert!(findings[1].problem.contains("double quotes"));
        assert_eq!(
            findings[1].fix,
            "write # {\"$imagepolicy\": \"apps:app:tag\"}"
        );
        assert!(findings[2].problem.contains("not NAMESPACE:POLICY"));
    }

    #[test]
    fn markers_naming_unknown_policies_and_unmarked_covered_images() {
        let yaml = "spec:\n  containers:\n  - image: ghcr.io/org/app:1.0 # {\"$imagepolicy\": \"apps:nope\"}\n  - image: ghcr.io/org/app:1.0\n  - image: nginx:1.25\n  - image: other.io/x:1\n  - image: nginx:1.25 # {\"$imagepolicy\": \"apps:web\"}\nimages:\n- name: ghcr.io/org/app\n  newTag: 1.0\n- name: ghcr.io/org/app\n  newTag: 1.0 # {\"$imagepolicy\": \"apps:app:tag\"}\n";
        assert_eq!(
            checks(yaml),
            [
                (3, Check::UnknownPolicy),
                (4, Check::UnmarkedImage),
                (5, Check::UnmarkedImage),
                (10, Check::UnmarkedImage)
            ]
        );
        let findings = lint_file("f.yaml", yaml.as_bytes(), Some(&known()));
        assert_eq!(findings[0].fix, "name one of apps:app, apps:web");
        assert_eq!(
            findings[3].fix,
            "end the line with # {\"$imagepolicy\": \"apps:app:tag\"}"
        );
        assert!(
            lint_file("f.yaml", yaml.as_bytes(), None).is_empty(),
            "without the policies, neither is checked"
        );
    }

    #[test]
    fn flux_v1_annotations_that_cannot_take_effect() {
        let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  annotations:\n    fluxcd.io/automated: true\n    fluxcd.io/tag.sidecar: semver:~1.0\n    fluxcd.io/tag.app: 'regex:^(1'\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: other.io/app:1.0\n---\napiVersion: helm.fluxcd.io/v1\nkind: HelmRelease\nmetadata:\n  name: h\n  annotations:\n    fluxcd.io/automated: 'true'\n    repository.fluxcd.io/api: api.image.repo\nspec:\n  values:\n    api:\n      image:\n        repository: other.io/api\n        tag: '1.0'\n";
        let findings = lint_file("f.yaml", yaml.as_bytes(), Some(&known()));
        let got: Vec<(usize, Check)> = findings.iter().map(|f| (f.line, f.check)).collect();
        assert_eq!(
            got,
            [
                (6, Check::BooleanAutomated),
                (7, Check::UnknownContainer),
                (8, Check::InvalidFilter),
                (22, Check::DanglingAlias)
            ],
            "{findings:#?}"
        );
        assert_eq!(findings[0].fix, "quote it: fluxcd.io/automated: \"true\"");
        assert_eq!(
            findings[1].fix,
            "name one of its containers: fluxcd.io/tag.app"
        );
    }

    #[test]
    fn files_the_committer_skips() {
        let broken = lint_file(
            "f.yaml",
            b"a: [\nb: x # {\"$imagepolicy\": \"apps:app\"}\n",
            None,
        );
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].check, Check::SkippedFile);
        assert!(
            lint_file("f.yaml", b"{{ template }}: [\n", None).is_empty(),
            "a file the committer never parses is not its problem"
        );
        let symlink = lint_unread("a/f.yaml", &Unread::symlink("a/f.yaml", "../../x.yaml"));
        assert!(
            symlink.problem.contains("outside the repository"),
            "{symlink}"
        );
        assert!(symlink
            .to_string()
            .starts_with("a/f.yaml:1: skipped-file: "));
    }

    #[test]
    fn a_clean_file_has_no_findings_and_identities_ignore_lines() {
        let clean = "spec:\n  containers:\n  - image: ghcr.io/org/app:1.0 # {\"$imagepolicy\": \"apps:app\"}\n  - image: other.io/x:1\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n";
        assert_eq!(checks(clean), []);
        let once = lint_file("f.yaml", b"image: nginx:1\n", Some(&known()));
        let moved = lint_file("f.yaml", b"# a comment\nimage: nginx:1\n", Some(&known()));
        assert_ne!(once[0].line, moved[0].line);
        assert_eq!(once[0].id(), moved[0].id());
    }
}
