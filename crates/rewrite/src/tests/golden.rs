//! Golden files: every directory under `testdata/` is one rewrite case.
//!
//! A case is `input.yaml` (the file as found), `expected.yaml` (the file as
//! it must be written, byte for byte) and `case.json`:
//!
//! ```json
//! {
//!   "about": "why the case exists",
//!   "policies": { "NS:NAME": "latest image reference" },
//!   "v1": [{ "workload": { "kind": "Deployment", "namespace": null, "name": "w" },
//!            "container": "c", "tag": "3.0" }],
//!   "changes": [{ "line": 1, "old": "…", "new": "…", "cause": "NS:NAME:tag" }],
//!   "refusals": [{ "line": 1, "cause": "NS:NAME", "reason": "…" }]
//! }
//! ```
//!
//! `policies` and `v1` may be left out. A policy is a reference, or an object
//! `{ "repository", "tag", "digest" }` for an image the reference grammar
//! would refuse (the engine must refuse it too). Causes and reasons are
//! compared as they print (a setter prints as its marker, `NS:NAME[:field]`),
//! so `changes` and `refusals` list exactly what a commit trailer or the
//! status would say. The files are read at run time, and `.gitattributes`
//! keeps Git from touching their line ends.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};
use tagrelay_reference::{ImageReference, Repository};

use crate::{rewrite_file, FileRewrite, UpdateSet, V1Update, WorkloadId};

/// How many cases there were when the inline tables became files: a missing
/// or unreadable directory must fail, not pass with nothing checked.
const MIN_CASES: usize = 28;

/// Every case directory, sorted by name.
fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    let path = dir.join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn string(value: &Json) -> Option<String> {
    value.as_str().map(str::to_string)
}

/// The updates a case's `policies` and `v1` ask for.
fn updates(case: &Json) -> UpdateSet {
    let mut updates = UpdateSet::default();
    if let Some(policies) = case["policies"].as_object() {
        for (name, latest) in policies {
            let image = match latest {
                Json::String(reference) => ImageReference::parse(reference)
                    .unwrap_or_else(|e| panic!("policy {name}: {reference}: {e}")),
                raw => ImageReference {
                    repository: Repository::parse(raw["repository"].as_str().unwrap()).unwrap(),
                    tag: string(&raw["tag"]),
                    digest: string(&raw["digest"]),
                },
            };
            updates.policies.insert(name.clone(), image);
        }
    }
    for update in case["v1"].as_array().into_iter().flatten() {
        let workload = &update["workload"];
        updates.v1.push(V1Update {
            workload: WorkloadId {
                kind: string(&workload["kind"]).unwrap(),
                namespace: string(&workload["namespace"]),
                name: string(&workload["name"]).unwrap(),
            },
            container: string(&update["container"]).unwrap(),
            tag: string(&update["tag"]).unwrap(),
        });
    }
    updates
}

/// What the rewrite reported, in `case.json`'s shape.
fn outcome(rewrite: &FileRewrite) -> Json {
    json!({
        "changes": rewrite.changes.iter().map(|c| json!({
            "line": c.line,
            "old": c.old,
            "new": c.new,
            "cause": c.cause.to_string(),
        })).collect::<Vec<_>>(),
        "refusals": rewrite.refusals.iter().map(|r| json!({
            "line": r.line,
            "cause": r.cause.to_string(),
            "reason": r.reason.to_string(),
        })).collect::<Vec<_>>(),
    })
}

/// `changes` and `refusals` one entry a line, so a difference shows as the
/// entries that differ.
fn report_lines(report: &Json) -> String {
    let mut out = String::new();
    for list in ["changes", "refusals"] {
        for entry in report[list].as_array().into_iter().flatten() {
            let _ = writeln!(out, "{list}: {entry}");
        }
    }
    out
}

/// A message that shows where two texts part, line by line, with
/// invisible characters (`\r`, trailing blanks) spelled out.
fn text_diff(expected: &[u8], got: &[u8]) -> String {
    let expected = String::from_utf8_lossy(expected);
    let got = String::from_utf8_lossy(got);
    let want: Vec<&str> = expected.split_inclusive('\n').collect();
    let have: Vec<&str> = got.split_inclusive('\n').collect();
    let mut out = String::new();
    for i in 0..want.len().max(have.len()) {
        match (want.get(i), have.get(i)) {
            (Some(w), Some(h)) if w == h => {}
            (w, h) => {
                let show =
                    |l: Option<&&str>| l.map_or("(no line)".to_string(), |l| format!("{l:?}"));
                let _ = writeln!(out, "  line {}:", i + 1);
                let _ = writeln!(out, "  - expected {}", show(w));
                let _ = writeln!(out, "  + got      {}", show(h));
            }
        }
    }
    out
}

/// One case: `None` when it holds, else what differs.
fn check(dir: &Path) -> Option<String> {
    let case: Json = serde_json::from_slice(&read(dir, "case.json"))
        .unwrap_or_else(|e| panic!("{}/case.json: {e}", dir.display()));
    let expected = read(dir, "expected.yaml");
    let rewrite = rewrite_file(&read(dir, "input.yaml"), &updates(&case))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut problems = String::new();
    if rewrite.content != expected {
        let _ = write!(
            problems,
            "expected.yaml differs from what was written:\n{}",
            text_diff(&expected, &rewrite.content)
        );
    }
    let want = report_lines(&json!({ "changes": case["changes"], "refusals": case["refusals"] }));
    let got = report_lines(&outcome(&rewrite));
    if got != want {
        let _ = write!(
            problems,
            "changes / refusals differ from case.json:\n{}",
            text_diff(want.as_bytes(), got.as_bytes())
        );
    }
    (!problems.is_empty()).then_some(problems)
}

#[test]
fn golden_files_are_rewritten_byte_for_byte() {
    let dirs = case_dirs();
    assert!(
        dirs.len() >= MIN_CASES,
        "found {} cases under testdata/, expected at least {MIN_CASES}",
        dirs.len()
    );
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            check(dir).map(|problems| format!("case {name}: {problems}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}
