//! Which files the committer reads, and which it skips without reading:
//! the rules the committer's tree walk applies and `tagrelay lint` reports,
//! kept here so both say the same thing.

use std::fmt;

use super::{is_setters_candidate, is_v1_candidate, may_contain_markers};

/// The largest file read as a manifest. Kubernetes refuses objects above
/// about 1.5 MB (etcd's request limit), so a candidate file of many times
/// that is not a manifest anyone applies; reading and parsing it would cost
/// memory in proportion (the YAML parser holds several times the file), so it
/// is skipped and reported without its content ever being loaded.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Whether a file name is one the committer reads at all (`*.yaml`,
/// `*.yml`, `Kustomization`). `path` uses `/`.
pub fn is_manifest_name(path: &str) -> bool {
    is_setters_candidate(path) || is_v1_candidate(path)
}

/// What a file may hold, decided from its bytes before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Screen {
    /// It contains the Setters token.
    pub setters: bool,
    /// It contains a Flux v1 automation annotation.
    pub v1: bool,
    /// It mentions `imagepolicy` in any case, as a marker or a near miss:
    /// worth reading for the lint checks, not for rewriting.
    pub mentions_marker: bool,
}

impl Screen {
    /// Screens bytes the way the committer decides whether to parse a file.
    pub fn of(content: &[u8]) -> Self {
        let has = |needle: &[u8]| content.windows(needle.len()).any(|w| w == needle);
        Screen {
            setters: may_contain_markers(content),
            v1: has(b"fluxcd.io/automated") || has(b"flux.weave.works/automated"),
            mentions_marker: content
                .windows(b"imagepolicy".len())
                .any(|w| w.eq_ignore_ascii_case(b"imagepolicy")),
        }
    }

    /// Whether the file needs parsing at all.
    pub fn interesting(self) -> bool {
        self.setters || self.v1
    }

    /// Whether the file is read at all: to rewrite, or to lint.
    pub fn readable(self) -> bool {
        self.interesting() || self.mentions_marker
    }
}

/// Why a manifest is skipped unread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unread {
    /// Larger than [`MAX_MANIFEST_BYTES`].
    TooLarge {
        /// Its size in bytes.
        size: u64,
    },
    /// A symlink: never followed.
    Symlink {
        /// Where it points, as stored.
        target: String,
        /// Whether that is outside the repository.
        escapes: bool,
    },
}

impl Unread {
    /// Whether a file of `size` bytes is skipped for its size.
    pub fn by_size(size: u64) -> Option<Self> {
        (size > MAX_MANIFEST_BYTES).then_some(Unread::TooLarge { size })
    }

    /// The verdict on a symlink at `path` (from the repository root).
    pub fn symlink(path: &str, target: &str) -> Self {
        Unread::Symlink {
            target: target.to_string(),
            escapes: escapes(path, target),
        }
    }
}

impl fmt::Display for Unread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unread::TooLarge { size } => write!(
                f,
                "{size} bytes, more than the {} MiB a manifest may be; skipped unread",
                MAX_MANIFEST_BYTES >> 20
            ),
            Unread::Symlink {
                target,
                escapes: true,
            } => write!(
                f,
                "symlink to {target:?} points outside the repository; skipped"
            ),
            Unread::Symlink { target, .. } => {
                write!(f, "symlink to {target:?}; symlinks are never followed")
            }
        }
    }
}

/// Whether the symlink at `path` (from the repository root) pointing to
/// `target` resolves outside the repository.
pub fn escapes(path: &str, target: &str) -> bool {
    if target.starts_with('/') || target.starts_with('\\') {
        return true;
    }
    let mut depth: Vec<&str> = path.split('/').collect();
    depth.pop();
    for part in target.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return true;
                }
            }
            p => depth.push(p),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_are_judged_lexically_against_the_root() {
        assert!(escapes("apps/a.yaml", "../../etc/passwd"));
        assert!(escapes("a.yaml", "../x.yaml"));
        assert!(escapes("apps/a.yaml", "/etc/passwd"));
        assert!(!escapes("apps/a.yaml", "../base/a.yaml"));
        assert!(!escapes("apps/a.yaml", "./b.yaml"));
        assert!(escapes("apps/x/a.yaml", "../../../a.yaml"));
    }

    #[test]
    fn size_and_names() {
        assert_eq!(Unread::by_size(MAX_MANIFEST_BYTES), None);
        assert!(Unread::by_size(MAX_MANIFEST_BYTES + 1).is_some());
        assert!(is_manifest_name("a/b.yml") && is_manifest_name("x/Kustomization"));
        assert!(!is_manifest_name("a/b.json"));
    }
}
