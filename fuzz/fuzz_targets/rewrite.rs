//! Any bytes as a manifest: the rewriter never panics, never adds or
//! removes a line, and changes no line it does not report.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tagrelay_rewrite::{rewrite_file, UpdateSet};
use tagrelay_proto::reference::ImageReference;

fuzz_target!(|data: &[u8]| {
    let Ok(reference) = ImageReference::parse("registry.example/app:1.10") else { return };
    let mut policies = BTreeMap::new();
    policies.insert("flux-system:app".to_string(), reference.clone());
    policies.insert("flux-system:other".to_string(), reference);
    let updates = UpdateSet { policies, v1: Vec::new() };
    let Ok(rewrite) = rewrite_file(data, &updates) else { return };
    let before: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let after: Vec<&[u8]> = rewrite.content.split(|b| *b == b'\n').collect();
    assert_eq!(before.len(), after.len(), "a line was added or removed");
    let changed_lines: Vec<usize> = rewrite.changes.iter().map(|c| c.line).collect();
    for (index, (old, new)) in before.iter().zip(&after).enumerate() {
        if old != new {
            assert!(changed_lines.contains(&(index + 1)), "line {} changed unreported", index + 1);
        }
    }
    if rewrite.changes.is_empty() {
        assert_eq!(rewrite.content, data);
    }
});
