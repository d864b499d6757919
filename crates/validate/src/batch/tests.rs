use super::*;

const REPO: &str = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {name: app, namespace: apps}\nspec: {image: ghcr.io/org/app, interval: 5m}\n";
const POLICY: &str = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata: {name: app, namespace: apps}\nspec:\n  imageRepositoryRef: {name: app}\n  policy: {semver: {range: 1.x}}\n";

fn sources(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect()
}

#[test]
fn a_valid_batch_has_its_objects_in_document_order() {
    let text = format!("{REPO}---\n{POLICY}");
    let mut batch = decode_batch(&sources(&[("a.yaml", &text)]), UnknownKinds::Refuse);
    check_references(&mut batch, &BTreeMap::new());
    assert!(batch.errors.is_empty(), "{:?}", batch.errors);
    let keys: Vec<String> = batch
        .objects
        .iter()
        .map(|c| c.object.key().to_string())
        .collect();
    assert_eq!(keys, ["ImageRepository/apps/app", "ImagePolicy/apps/app"]);
    assert_eq!(batch.objects[1].line, 6);
}

#[test]
fn an_engine_error_names_file_line_and_field() {
    let bad = POLICY.replace("1.x", "'>= 1.0 <<2'");
    let batch = decode_batch(
        &sources(&[("a.yaml", REPO), ("p.yaml", &bad)]),
        UnknownKinds::Refuse,
    );
    assert_eq!(batch.errors.len(), 1, "{:?}", batch.errors);
    let error = &batch.errors[0];
    assert_eq!(error.file, "p.yaml");
    assert_eq!(error.line, 6);
    assert_eq!(error.object.as_deref(), Some("ImagePolicy/apps/app"));
    assert_eq!(error.field, "spec.policy.semver.range");
    assert!(error
        .to_string()
        .starts_with("p.yaml:6: ImagePolicy/apps/app: spec.policy.semver.range: "));
}

#[test]
fn references_resolve_in_the_batch_or_beside_it_and_nowhere_else() {
    let mut batch = decode_batch(&sources(&[("p.yaml", POLICY)]), UnknownKinds::Refuse);
    check_references(&mut batch, &BTreeMap::new());
    assert_eq!(batch.errors.len(), 1);
    assert_eq!(batch.errors[0].field, "spec.imageRepositoryRef.name");

    let repo = decode_batch(&sources(&[("r.yaml", REPO)]), UnknownKinds::Refuse);
    let others: BTreeMap<ObjectKey, Object> = repo
        .objects
        .into_iter()
        .map(|c| (c.object.key(), c.object))
        .collect();
    let mut batch = decode_batch(&sources(&[("p.yaml", POLICY)]), UnknownKinds::Refuse);
    check_references(&mut batch, &others);
    assert!(batch.errors.is_empty(), "{:?}", batch.errors);
}

#[test]
fn duplicates_are_refused_with_both_places() {
    let batch = decode_batch(
        &sources(&[("a.yaml", REPO), ("b.yaml", REPO)]),
        UnknownKinds::Refuse,
    );
    assert_eq!(batch.errors.len(), 1);
    assert_eq!(batch.errors[0].file, "b.yaml");
    assert!(batch.errors[0].reason.contains("a.yaml:1"));
}

#[test]
fn foreign_kinds_are_refused_or_skipped_secrets_always_skipped() {
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n";
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\n";
    let typo = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicyy\nmetadata: {name: x}\n";
    let files = sources(&[("d.yaml", deployment), ("s.yaml", secret)]);
    let refused = decode_batch(&files, UnknownKinds::Refuse);
    assert_eq!(refused.errors.len(), 1);
    assert_eq!(refused.errors[0].file, "d.yaml");
    assert_eq!(refused.notes.len(), 1, "the Secret is skipped either way");

    let skipped = decode_batch(&files, UnknownKinds::Skip);
    assert!(skipped.errors.is_empty());
    assert_eq!(skipped.notes.len(), 2);
    assert!(skipped
        .notes
        .iter()
        .all(|n| matches!(n, Note::Skipped(p) if p.field == "kind")));

    let typo = decode_batch(&sources(&[("t.yaml", typo)]), UnknownKinds::Skip);
    assert_eq!(
        typo.errors.len(),
        1,
        "an image kind tagrelay does not know is a typo"
    );
}

#[test]
fn an_automation_is_resolved_against_its_source_beside_the_batch() {
    let source = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: fleet, namespace: apps}\nspec: {url: 'file:///r.git', interval: 1m, ref: {tag: v1}}\n";
    let automation = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageUpdateAutomation\nmetadata: {name: auto, namespace: apps}\nspec:\n  interval: 5m\n  sourceRef: {kind: GitRepository, name: fleet}\n  git:\n    commit:\n      author: {email: bot@example.com}\n";
    let stored = decode_batch(&sources(&[("s.yaml", source)]), UnknownKinds::Refuse);
    let others: BTreeMap<ObjectKey, Object> = stored
        .objects
        .into_iter()
        .map(|c| (c.object.key(), c.object))
        .collect();
    let mut batch = decode_batch(&sources(&[("a.yaml", automation)]), UnknownKinds::Refuse);
    check_references(&mut batch, &others);
    assert_eq!(batch.errors.len(), 1, "{:?}", batch.errors);
    assert_eq!(batch.errors[0].field, "spec.git.push.branch");
}

#[test]
fn a_load_error_has_no_object() {
    let batch = decode_batch(
        &sources(&[("x.yaml", "a: [unclosed\n")]),
        UnknownKinds::Skip,
    );
    assert_eq!(batch.errors.len(), 1);
    assert_eq!(batch.errors[0].object, None);
    assert!(batch.errors[0].to_string().starts_with("x.yaml:"));
}
