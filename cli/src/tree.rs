//! Reading a directory of manifests the way the committer reads a tree:
//! the same file names, never following a symlink (one that points outside
//! the directory could make us read or write elsewhere), never entering
//! `.git`, and never loading a file larger than a manifest may be.

use std::path::{Path, PathBuf};

use tagrelay_rewrite::screen::Unread;

/// A manifest file: its path shown relative to the root.
pub struct Manifest {
    /// Relative to the root, with `/`.
    pub shown: String,
    /// On disk.
    pub path: PathBuf,
    /// Its bytes.
    pub content: Vec<u8>,
}

/// What a walk found.
#[derive(Default)]
pub struct Tree {
    /// Files whose names `wanted` accepts, sorted by path.
    pub manifests: Vec<Manifest>,
    /// Wanted names skipped unread (symlinks, files too large), with why.
    pub unread: Vec<(String, Unread)>,
}

/// Every file under `root` whose name (relative, with `/`) `wanted`
/// accepts.
pub fn read(root: &Path, wanted: impl Fn(&str) -> bool) -> Result<Tree, String> {
    let mut tree = Tree::default();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for path in entries {
            let shown = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if path.file_name().is_some_and(|n| n != ".git") {
                    pending.push(path);
                }
                continue;
            }
            if !wanted(&shown) {
                continue;
            }
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                tree.unread
                    .push((shown.clone(), Unread::symlink(&shown, &target)));
            } else if let Some(unread) = Unread::by_size(meta.len()) {
                tree.unread.push((shown, unread));
            } else if meta.is_file() {
                let content = std::fs::read(&path).map_err(|e| format!("reading {shown}: {e}"))?;
                tree.manifests.push(Manifest {
                    shown,
                    path,
                    content,
                });
            }
        }
    }
    tree.manifests.sort_by(|a, b| a.shown.cmp(&b.shown));
    tree.unread.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tree)
}
