//! The image shapes Flux v1 recognised in a HelmRelease's `spec.values`
//! (`FindHelmReleaseContainers` in fluxcd/flux
//! `pkg/cluster/kubernetes/resource/helmrelease.go`).
//!
//! At the top of `values` (container [`CHART_IMAGE`]) or one mapping down
//! (container = the key):
//!
//! - `image: repo:tag`
//! - `image: repo` with `tag: tag`
//! - `registry: host` with `image: repo:tag` or `image: repo` + `tag: tag`
//! - `image: {repository: repo:tag}`, `image: {repository: repo, tag: tag}`,
//!   either with `registry: host` beside `repository`
//!
//! and, overriding those by name, containers mapped by annotations whose
//! values are dot-separated paths under `values`:
//! `repository.fluxcd.io/<alias>` (required), `tag.fluxcd.io/<alias>`,
//! `registry.fluxcd.io/<alias>`. A container's tag filter is
//! `fluxcd.io/tag.<container>` or `filter.fluxcd.io/<container>`, as for
//! other workloads.

use std::collections::BTreeMap;

use super::v1::{from_parts, from_reference, Annotations, Interpretation};
use super::yaml::{Node, Scalar};

/// The container name Flux v1 gave an image at the top of `values`.
pub const CHART_IMAGE: &str = "chart-image";
/// Annotation prefix mapping an alias to the path of its registry.
pub const REGISTRY_PREFIX: &str = "registry.fluxcd.io/";
/// Annotation prefix mapping an alias to the path of its repository.
pub const REPOSITORY_PREFIX: &str = "repository.fluxcd.io/";
/// Annotation prefix mapping an alias to the path of its tag.
pub const TAG_PREFIX: &str = "tag.fluxcd.io/";

/// The containers of a HelmRelease, `chart-image` first and then by name, as
/// Flux v1 ordered them.
pub(crate) fn containers<'n>(
    annotations: &Annotations<'n>,
    values: &'n Node,
) -> Vec<(String, Interpretation<'n>)> {
    let mut found: BTreeMap<String, Interpretation<'n>> = BTreeMap::new();
    if let Some(i) = as_container(values) {
        found.insert(CHART_IMAGE.to_string(), i);
    }
    if let Node::Map { entries } = values {
        for (key, value) in entries {
            if let (Node::Scalar(key), Node::Map { .. }) = (key, value) {
                if let Some(i) = as_container(value) {
                    found.insert(key.value.clone(), i);
                }
            }
        }
    }
    for (alias, mapping) in mappings(annotations) {
        if let Some(i) = mapping.interpret(values) {
            // A mapping that resolves replaces what was found by shape; one
            // that names a bad image only shows up when nothing else did.
            if i.is_ok() || !found.contains_key(alias) {
                found.insert(alias.to_string(), i);
            }
        }
    }
    let chart = found
        .remove(CHART_IMAGE)
        .map(|i| (CHART_IMAGE.to_string(), i));
    chart.into_iter().chain(found).collect()
}

/// A mapping that holds an `image` (a reference, or a mapping with a
/// `repository`), with `registry` and `tag` beside it.
fn as_container(m: &Node) -> Option<Interpretation<'_>> {
    match m.get("image")? {
        Node::Scalar(image) if !image.is_null() => {
            Some(interpret(m.scalar("registry"), image, m.scalar("tag")))
        }
        image @ Node::Map { .. } => {
            let repository = image.scalar("repository")?;
            Some(interpret(
                image.scalar("registry"),
                repository,
                image.scalar("tag"),
            ))
        }
        _ => None,
    }
}

fn interpret<'n>(
    registry: Option<&'n Scalar>,
    repository: &'n Scalar,
    tag: Option<&'n Scalar>,
) -> Interpretation<'n> {
    match tag {
        Some(tag) => from_parts(repository, registry, tag),
        None => from_reference(repository, registry),
    }
}

/// Every alias annotation (`repository.fluxcd.io/<alias>`,
/// `tag.fluxcd.io/<alias>`, `registry.fluxcd.io/<alias>`) whose path leads
/// to no scalar under `values`, so the container it maps never exists.
pub(crate) fn dangling_aliases<'n>(
    annotations: &Annotations<'n>,
    values: Option<&Node>,
) -> Vec<(&'n str, &'n Scalar)> {
    annotations
        .iter()
        .filter(|(key, _)| {
            [REGISTRY_PREFIX, REPOSITORY_PREFIX, TAG_PREFIX]
                .iter()
                .any(|prefix| key.starts_with(prefix))
        })
        .filter(|(_, path)| values.and_then(|v| resolve(v, &path.value)).is_none())
        .collect()
}

/// The paths an alias's annotations give.
#[derive(Default)]
struct Mapping<'n> {
    registry: Option<&'n str>,
    repository: Option<&'n str>,
    tag: Option<&'n str>,
}

fn mappings<'n>(annotations: &Annotations<'n>) -> BTreeMap<&'n str, Mapping<'n>> {
    let mut out: BTreeMap<&str, Mapping<'_>> = BTreeMap::new();
    for (key, value) in annotations.iter() {
        let path = Some(value.value.as_str()).filter(|p| !p.is_empty());
        if let Some(alias) = key.strip_prefix(REGISTRY_PREFIX) {
            out.entry(alias).or_default().registry = path;
        } else if let Some(alias) = key.strip_prefix(REPOSITORY_PREFIX) {
            out.entry(alias).or_default().repository = path;
        } else if let Some(alias) = key.strip_prefix(TAG_PREFIX) {
            out.entry(alias).or_default().tag = path;
        }
    }
    out
}

impl<'n> Mapping<'n> {
    /// The image the paths point at; `None` when a path leads nowhere or no
    /// repository is mapped (a tag alone is not a container).
    fn interpret<'v>(&self, values: &'v Node) -> Option<Interpretation<'v>> {
        let repository = resolve(values, self.repository?)?;
        let registry = match self.registry {
            Some(path) => Some(resolve(values, path)?),
            None => None,
        };
        let tag = match self.tag {
            Some(path) => Some(resolve(values, path)?),
            None => None,
        };
        Some(interpret(registry, repository, tag))
    }
}

/// The scalar at a dot-separated path under `values`.
fn resolve<'v>(values: &'v Node, path: &str) -> Option<&'v Scalar> {
    let (parents, last) = match path.rsplit_once('.') {
        Some((parents, last)) => (Some(parents), last),
        None => (None, path),
    };
    let mut node = values;
    for key in parents.into_iter().flat_map(|p| p.split('.')) {
        node = node.get(key)?;
    }
    node.scalar(last)
}
