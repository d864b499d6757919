//! File-level tests: every expected file is spelled out byte for byte.
//!
//! Setters cases that are one file in, one file out live as golden files
//! under `testdata/` (`golden.rs` runs them); what stays here checks more
//! than one file's bytes: batches, screening, Flux v1 discovery alongside
//! its rewrites, and robustness.

use std::collections::BTreeMap;

use tagrelay_reference::ImageReference;

use super::*;

mod golden;

fn image(reference: &str) -> ImageReference {
    ImageReference::parse(reference).unwrap()
}

fn setters(policies: &[(&str, &str)]) -> UpdateSet {
    UpdateSet {
        policies: policies
            .iter()
            .map(|(k, v)| (k.to_string(), image(v)))
            .collect(),
        v1: Vec::new(),
    }
}

fn rewrite(text: &str, updates: &UpdateSet) -> FileRewrite {
    rewrite_file(text.as_bytes(), updates).unwrap()
}

fn text(r: &FileRewrite) -> &str {
    std::str::from_utf8(&r.content).unwrap()
}

// ---------------------------------------------------------------- Setters

#[test]
fn malformed_files_are_reported_and_the_rest_still_updated() {
    let updates = setters(&[("apps:app", "ghcr.io/acme/app:2.0")]);
    let good = "image: ghcr.io/acme/app:1.0 # {\"$imagepolicy\": \"apps:app\"}\n";
    let bad = "image: [ghcr.io/acme/app:1.0 # {\"$imagepolicy\": \"apps:app\"}\n";
    let dup = "image: a # {\"$imagepolicy\": \"apps:app\"}\nimage: b\n";
    let binary: &[u8] = b"\xff\xfe\"$imagepolicy\"";
    assert!(matches!(
        rewrite_file(bad.as_bytes(), &updates),
        Err(RewriteError::Syntax { line: 2, .. })
    ));
    let files: Vec<(&str, &[u8])> = vec![
        ("bad.yaml", bad.as_bytes()),
        ("good.yaml", good.as_bytes()),
        ("dup.yaml", dup.as_bytes()),
        ("bin.yaml", binary),
    ];
    let batch = rewrite_files(files, &updates);
    assert_eq!(batch.files.len(), 1);
    assert_eq!(batch.files[0].0, "good.yaml");
    assert_eq!(
        text(&batch.files[0].1),
        "image: ghcr.io/acme/app:2.0 # {\"$imagepolicy\": \"apps:app\"}\n"
    );
    let errors: Vec<_> = batch.errors.iter().map(|(k, _)| *k).collect();
    assert_eq!(errors, vec!["bad.yaml", "dup.yaml", "bin.yaml"]);
    assert!(matches!(
        batch.errors[1].1,
        RewriteError::DuplicateKey { line: 2, .. }
    ));
    assert_eq!(batch.errors[2].1, RewriteError::NotUtf8 { offset: 0 });
}

#[test]
fn files_without_the_token_are_not_even_parsed() {
    let updates = setters(&[("apps:app", "ghcr.io/acme/app:2.0")]);
    let r = rewrite("image: [broken # {$imagepolicy: apps:app}\n", &updates);
    assert!(!r.is_changed());
    assert!(may_contain_markers(b"x # {\"$imagepolicy\": \"a:b\"}"));
    assert!(!may_contain_markers(b"x # {$imagepolicy: a:b}"));
    assert!(is_setters_candidate("deploy/app.yaml"));
    assert!(is_setters_candidate("k/app.yml"));
    assert!(is_setters_candidate("overlays/prod/Kustomization"));
    assert!(!is_setters_candidate("overlays/prod/kustomization"));
    assert!(!is_setters_candidate("chart/values.json"));
    assert!(!is_setters_candidate("app.YAML"));
}

// ---------------------------------------------------------------- Flux v1

fn workload(kind: &str, namespace: Option<&str>, name: &str) -> WorkloadId {
    WorkloadId {
        kind: kind.into(),
        namespace: namespace.map(str::to_string),
        name: name.into(),
    }
}

fn v1(updates: &[(&WorkloadId, &str, &str)]) -> UpdateSet {
    UpdateSet {
        policies: BTreeMap::new(),
        v1: updates
            .iter()
            .map(|(w, c, t)| V1Update {
                workload: (*w).clone(),
                container: c.to_string(),
                tag: t.to_string(),
            })
            .collect(),
    }
}

/// Workload, container, image, current tag, filter, line.
type Row = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    usize,
);

fn summary(d: &V1Discovery) -> Vec<Row> {
    d.containers
        .iter()
        .map(|c| {
            (
                c.workload.to_string(),
                c.container.clone(),
                c.image.clone(),
                c.current_tag.clone(),
                c.filter.clone(),
                c.line,
            )
        })
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/tag.app: semver:~1.4
    flux.weave.works/tag.migrate: 'glob:1.*'
spec:
  template:
    spec:
      initContainers:
        - name: migrate
          image: ghcr.io/acme/migrate:1.0.0
      containers:
        - name: app
          image: "ghcr.io/acme/web:1.4.1"  # written by hand
        - name: proxy
          image: localhost:5000/proxy
"#;

#[test]
fn v1_discovers_automated_containers_and_init_containers() {
    let d = discover_v1(DEPLOYMENT.as_bytes()).unwrap();
    assert_eq!(
        summary(&d),
        vec![
            (
                "shop:deployment/web".into(),
                "app".into(),
                "ghcr.io/acme/web".into(),
                s("1.4.1"),
                s("semver:~1.4"),
                18
            ),
            (
                "shop:deployment/web".into(),
                "proxy".into(),
                "localhost:5000/proxy".into(),
                None,
                None,
                20
            ),
            (
                "shop:deployment/web".into(),
                "migrate".into(),
                "ghcr.io/acme/migrate".into(),
                s("1.0.0"),
                s("glob:1.*"),
                15
            ),
        ]
    );
    assert!(d.notes.is_empty());
}

#[test]
fn v1_applies_tags_byte_exactly() {
    let web = workload("Deployment", Some("shop"), "web");
    let updates = v1(&[
        (&web, "app", "1.4.2"),
        (&web, "proxy", "2.0"),
        (&web, "migrate", "1.10"),
    ]);
    let r = rewrite(DEPLOYMENT, &updates);
    let expected = DEPLOYMENT
        .replace(
            "\"ghcr.io/acme/web:1.4.1\"  #",
            "\"ghcr.io/acme/web:1.4.2\"  #",
        )
        .replace(
            "image: localhost:5000/proxy\n",
            "image: localhost:5000/proxy:2.0\n",
        )
        .replace("migrate:1.0.0", "migrate:1.10");
    assert_eq!(text(&r), expected);
    let changes: Vec<_> = r
        .changes
        .iter()
        .map(|c| (c.line, c.old.as_str(), c.new.as_str()))
        .collect();
    assert_eq!(
        changes,
        vec![
            (
                15,
                "ghcr.io/acme/migrate:1.0.0",
                "ghcr.io/acme/migrate:1.10"
            ),
            (18, "ghcr.io/acme/web:1.4.1", "ghcr.io/acme/web:1.4.2"),
            (20, "localhost:5000/proxy", "localhost:5000/proxy:2.0"),
        ]
    );
    assert_eq!(
        r.changes[0].cause.to_string(),
        "shop:deployment/web container migrate"
    );
}

#[test]
fn v1_refuses_non_oci_tags_and_ignores_unknown_containers() {
    let web = workload("Deployment", Some("shop"), "web");
    let other = workload("Deployment", Some("elsewhere"), "web");
    let updates = v1(&[
        (&web, "app", "1.5 beta"),
        (&web, "nope", "1.0"),
        (&other, "app", "9.9"),
    ]);
    let r = rewrite(DEPLOYMENT, &updates);
    assert_eq!(text(&r), DEPLOYMENT);
    assert_eq!(
        r.refusals,
        vec![Refusal {
            line: 18,
            cause: Cause::V1 {
                workload: web,
                container: "app".into()
            },
            reason: RefusalReason::InvalidTag("1.5 beta".into()),
        }]
    );
}

const WORKLOADS: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  annotations:
    flux.weave.works/automated: 'true'
spec:
  template:
    spec:
      containers:
      - name: pg
        image: postgres:15.4
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: ops
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/locked: "true"
spec:
  template:
    spec:
      containers:
      - {name: agent, image: "ghcr.io/acme/agent:1.0"}
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: backup
  namespace: ops
  annotations: {fluxcd.io/automated: "true"}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: backup
            image: ghcr.io/acme/backup:2024.01.15
---
kind: Deployment
metadata:
  name: off
  annotations:
    fluxcd.io/automated: "false"
spec: {template: {spec: {containers: [{name: a, image: "ghcr.io/acme/a:1"}]}}}
---
kind: Deployment
metadata:
  name: ignored
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/ignore: "true"
spec: {template: {spec: {containers: [{name: a, image: "ghcr.io/acme/a:1"}]}}}
---
kind: Deployment
metadata:
  name: boolean
  annotations:
    fluxcd.io/automated: true
spec: {template: {spec: {containers: [{name: a, image: "ghcr.io/acme/a:1"}]}}}
---
kind: Service
metadata:
  name: svc
  annotations:
    fluxcd.io/automated: "true"
spec:
  image: ghcr.io/acme/not-a-container:1
---
apiVersion: v1
kind: List
items:
- kind: Deployment
  metadata:
    name: listed
    namespace: apps
    annotations:
      fluxcd.io/automated: "true"
  spec:
    template:
      spec:
        containers:
        - name: main
          image: ghcr.io/acme/listed:3
        - name: pinned
          image: ghcr.io/acme/pinned@sha256:1111111111111111111111111111111111111111111111111111111111111111
        - name: templated
          image: "{{ .Values.image }}"
"#;

#[test]
fn v1_workload_kinds_switches_lists_and_notes() {
    let d = discover_v1(WORKLOADS.as_bytes()).unwrap();
    assert_eq!(
        summary(&d),
        vec![
            (
                "<cluster>:statefulset/db".into(),
                "pg".into(),
                "postgres".into(),
                s("15.4"),
                None,
                12
            ),
            (
                "ops:cronjob/backup".into(),
                "backup".into(),
                "ghcr.io/acme/backup".into(),
                s("2024.01.15"),
                None,
                41
            ),
            (
                "apps:deployment/listed".into(),
                "main".into(),
                "ghcr.io/acme/listed".into(),
                s("3"),
                None,
                87
            ),
        ]
    );
    let notes: Vec<_> = d
        .notes
        .iter()
        .map(|n| {
            (
                n.line,
                n.workload.name.as_str(),
                n.container.as_deref(),
                n.reason.to_string(),
            )
        })
        .collect();
    assert_eq!(notes.len(), 3, "{notes:#?}");
    assert_eq!(notes[0].0, 62);
    assert_eq!(notes[0].1, "boolean");
    assert!(matches!(
        d.notes[0].reason,
        V1NoteReason::BooleanAnnotation { .. }
    ));
    assert_eq!((notes[1].1, notes[1].2), ("listed", Some("pinned")));
    assert!(matches!(
        d.notes[1].reason,
        V1NoteReason::DigestPinned { .. }
    ));
    assert_eq!((notes[2].0, notes[2].2), (91, Some("templated")));
    assert!(matches!(
        d.notes[2].reason,
        V1NoteReason::InvalidImage { .. }
    ));

    // The same file rewritten: only the automated containers move.
    let updates = v1(&[
        (&workload("StatefulSet", None, "db"), "pg", "16.0"),
        (&workload("DaemonSet", Some("ops"), "agent"), "agent", "2.0"),
        (
            &workload("CronJob", Some("ops"), "backup"),
            "backup",
            "2024.02.01",
        ),
        (&workload("Deployment", None, "boolean"), "a", "2"),
        (&workload("Deployment", Some("apps"), "listed"), "main", "4"),
    ]);
    let r = rewrite(WORKLOADS, &updates);
    let expected = WORKLOADS
        .replace("postgres:15.4", "postgres:16.0")
        .replace("backup:2024.01.15", "backup:2024.02.01")
        .replace("listed:3", "listed:4");
    assert_eq!(text(&r), expected);
    assert_eq!(r.changes.len(), 3);
}

#[test]
fn v1_candidates() {
    assert!(is_v1_candidate("apps/web.yaml"));
    assert!(is_v1_candidate("web.yml"));
    assert!(!is_v1_candidate("Kustomization"));
    let batch = discover_v1_files(vec![
        ("a.yaml", DEPLOYMENT),
        ("b.yaml", "a: [\n"),
        ("c.yaml", "kind: Service\n"),
    ]);
    assert_eq!(batch.files.len(), 1);
    assert_eq!(batch.files[0].1.containers.len(), 3);
    assert_eq!(batch.errors.len(), 1);
    assert_eq!(batch.errors[0].0, "b.yaml");
}

// ---------------------------------------------------------------- HelmRelease

const HELM_RELEASE: &str = r#"apiVersion: helm.fluxcd.io/v1
kind: HelmRelease
metadata:
  name: shop
  namespace: apps
  annotations:
    fluxcd.io/automated: "true"
    filter.fluxcd.io/chart-image: semver:^2
    fluxcd.io/tag.worker: regex:^v[0-9]+$
    repository.fluxcd.io/search: search.engine.repo
    tag.fluxcd.io/search: search.engine.version
spec:
  chart:
    repository: https://charts.example.com
    name: shop
    version: 1.0.0
  values:
    image: ghcr.io/acme/shop:2.0.0   # top level
    api:
      image: ghcr.io/acme/api
      tag: "3.1"
    db:
      image:
        repository: bitnami/postgresql
        tag: 15.4.0
    worker:
      registry: registry.example.com
      image: acme/worker
      tag: v7
    cache:
      image:
        registry: quay.io
        repository: acme/cache:6.2
    queue:
      image:
        registry: registry.example.com
        repository: acme/queue
        tag: '0.9'
    search:
      engine:
        repo: docker.elastic.co/elasticsearch/elasticsearch
        version: 8.11.0
    persistence:
      enabled: false
"#;

#[test]
fn helm_release_value_shapes() {
    let d = discover_v1(HELM_RELEASE.as_bytes()).unwrap();
    let w = "apps:helmrelease/shop".to_string();
    assert_eq!(
        summary(&d),
        vec![
            (
                w.clone(),
                "chart-image".into(),
                "ghcr.io/acme/shop".into(),
                s("2.0.0"),
                s("semver:^2"),
                18
            ),
            (
                w.clone(),
                "api".into(),
                "ghcr.io/acme/api".into(),
                s("3.1"),
                None,
                21
            ),
            (
                w.clone(),
                "cache".into(),
                "quay.io/acme/cache".into(),
                s("6.2"),
                None,
                33
            ),
            (
                w.clone(),
                "db".into(),
                "bitnami/postgresql".into(),
                s("15.4.0"),
                None,
                25
            ),
            (
                w.clone(),
                "queue".into(),
                "registry.example.com/acme/queue".into(),
                s("0.9"),
                None,
                38
            ),
            (
                w.clone(),
                "search".into(),
                "docker.elastic.co/elasticsearch/elasticsearch".into(),
                s("8.11.0"),
                None,
                42
            ),
            (
                w.clone(),
                "worker".into(),
                "registry.example.com/acme/worker".into(),
                s("v7"),
                s("regex:^v[0-9]+$"),
                29
            ),
        ]
    );
    assert!(d.notes.is_empty());

    let hr = workload("HelmRelease", Some("apps"), "shop");
    let updates = v1(&[
        (&hr, "chart-image", "2.1.0"),
        (&hr, "api", "3.10"),
        (&hr, "cache", "6.10"),
        (&hr, "db", "15.10"),
        (&hr, "queue", "1.0"),
        (&hr, "search", "8.12.0"),
        (&hr, "worker", "v8"),
    ]);
    let r = rewrite(HELM_RELEASE, &updates);
    let expected = HELM_RELEASE
        .replace("shop:2.0.0   #", "shop:2.1.0   #")
        .replace("tag: \"3.1\"", "tag: \"3.10\"")
        .replace("acme/cache:6.2", "acme/cache:6.10")
        .replace("tag: 15.4.0", "tag: \"15.10\"")
        .replace("tag: '0.9'", "tag: '1.0'")
        .replace("version: 8.11.0", "version: 8.12.0")
        .replace("tag: v7", "tag: v8");
    assert_eq!(text(&r), expected);
    assert_eq!(r.changes.len(), 7);
}

#[test]
fn helm_release_mappings_override_shapes_and_need_a_repository() {
    let input = r#"apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: mapped
  annotations:
    fluxcd.io/automated: "true"
    registry.fluxcd.io/app: app.where.host
    repository.fluxcd.io/app: app.where.name
    tag.fluxcd.io/lonely: lonely.tag
    repository.fluxcd.io/whole: whole
spec:
  values:
    app:
      image: ghcr.io/acme/ignored:1.0
      where: {host: registry.example.com, name: "acme/app:5.0"}
    lonely: {tag: "1"}
    whole: ghcr.io/acme/whole:0.1
"#;
    let d = discover_v1(input.as_bytes()).unwrap();
    let names: Vec<_> = d
        .containers
        .iter()
        .map(|c| {
            (
                c.container.as_str(),
                c.image.as_str(),
                c.current_tag.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("app", "registry.example.com/acme/app", Some("5.0")),
            ("whole", "ghcr.io/acme/whole", Some("0.1")),
        ]
    );
    let hr = workload("HelmRelease", None, "mapped");
    let r = rewrite(input, &v1(&[(&hr, "app", "5.1"), (&hr, "whole", "0.2")]));
    let expected = input
        .replace("name: \"acme/app:5.0\"", "name: \"acme/app:5.1\"")
        .replace("whole:0.1", "whole:0.2");
    assert_eq!(text(&r), expected);
}

// ---------------------------------------------------------------- robustness

/// Any bytes in: no panic, and whatever comes out re-parses (the verifier
/// inside `rewrite_file` guarantees only values changed).
#[test]
fn mutated_inputs_never_panic() {
    let mut updates = setters(&[("apps:app", "ghcr.io/acme/app:1.10")]);
    updates.v1 = v1(&[
        (&workload("Deployment", Some("shop"), "web"), "app", "1e3"),
        (&workload("HelmRelease", Some("apps"), "shop"), "db", "16"),
    ])
    .v1;
    let corpus = [
        DEPLOYMENT.to_string(),
        HELM_RELEASE.to_string(),
        WORKLOADS.to_string(),
        "a: |  # {\"$imagepolicy\": \"apps:app\"}\n  x:1\nb: [x:1, # {\"$imagepolicy\": \"apps:app:tag\"}\n  'y']\n- é\n".to_string(),
    ];
    let alphabet: Vec<char> = " \t\n\r:-#[]{},'\"|>&*!?%@`é☕0aZ\\".chars().collect();
    let mut seed: u64 = 0x5eed;
    let mut next = move |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % n.max(1)
    };
    for round in 0..1500 {
        let mut chars: Vec<char> = corpus[round % corpus.len()].chars().collect();
        for _ in 0..(1 + next(4)) {
            let at = next(chars.len() + 1);
            match next(3) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 if at < chars.len() => chars[at] = alphabet[next(alphabet.len())],
                _ => chars.insert(at, alphabet[next(alphabet.len())]),
            }
        }
        let input: String = chars.into_iter().collect();
        if let Ok(r) = rewrite_file(input.as_bytes(), &updates) {
            let out = std::str::from_utf8(&r.content).unwrap();
            assert!(yaml::parse(out).is_ok() || !r.is_changed());
        }
        let _ = discover_v1(input.as_bytes());
    }
}

/// Found by the `rewrite` fuzz target: a double-quoted scalar folded over two
/// lines, with a marker after its closing quote, was replaced by a one-line
/// value, removing a line. It is now refused as unrewritable, and the file
/// is left byte for byte.
#[test]
fn a_quoted_scalar_folded_over_lines_is_refused_not_reflowed() {
    let file = "images:\r\n  - name: app\r\n    newTag: \"1.m:app:\n     :p0\" # {\"$imagepolicy\": \"flux-system:app:tag\"}\r\n";
    let mut updates = UpdateSet::default();
    updates.policies.insert(
        "flux-system:app".to_string(),
        tagrelay_reference::ImageReference::parse("registry.example/app:1.10").unwrap(),
    );
    let rewrite = super::rewrite_file(file.as_bytes(), &updates).unwrap();
    assert_eq!(rewrite.content, file.as_bytes());
    assert!(rewrite.changes.is_empty());
    assert_eq!(rewrite.refusals.len(), 1, "{:?}", rewrite.refusals);
    assert_eq!(
        rewrite.refusals[0].reason,
        super::RefusalReason::Unrewritable
    );
}
