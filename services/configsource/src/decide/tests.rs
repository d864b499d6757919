use super::*;

const REPO: &str = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {name: app, namespace: apps}\nspec: {image: ghcr.io/org/app, interval: 5m}\n";
const POLICY: &str = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata: {name: app, namespace: apps}\nspec:\n  imageRepositoryRef: {name: app}\n  policy: {semver: {range: 1.x}}\n";
const SOURCE: &str = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: fleet, namespace: apps}\nspec: {url: 'file:///fleet.git', interval: 1m, ref: {branch: main}}\n";
const AUTOMATION: &str = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageUpdateAutomation\nmetadata: {name: auto, namespace: apps}\nspec:\n  interval: 5m\n  sourceRef: {kind: GitRepository, name: fleet}\n  git:\n    commit:\n      author: {email: bot@example.com}\n  update: {path: ./apps}\n";
const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: apps}\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: ghcr.io/org/app:1.0.0 # {\"$imagepolicy\": \"apps:app\"}\n";

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect()
}

fn key(kind: Kind, name: &str) -> ObjectKey {
    ObjectKey::new(kind, "apps", name)
}

/// The bucket and ownership after carrying `plan` out over `stored`.
fn carry_out(plan: &Plan, stored: &mut BTreeMap<ObjectKey, Object>) -> BTreeSet<ObjectKey> {
    for object in &plan.puts {
        stored.insert(object.key(), object.clone());
    }
    for key in &plan.deletes {
        stored.remove(key);
    }
    plan.owned()
}

/// The bucket and ownership after a first sync of `list` into an empty
/// bucket.
fn synced(list: &[(&str, &str)]) -> (BTreeMap<ObjectKey, Object>, BTreeSet<ObjectKey>) {
    let mut stored = BTreeMap::new();
    let owned = carry_out(
        &plan(decide(&files(list), &BTreeSet::new(), &stored)),
        &mut stored,
    );
    (stored, owned)
}

fn plan(decision: Decision) -> Plan {
    match decision {
        Decision::Sync(plan) => plan,
        Decision::Reject(problems) => panic!("refused: {problems:?}"),
    }
}

fn keys_of(objects: &[Object]) -> Vec<ObjectKey> {
    objects.iter().map(Object::key).collect()
}

#[test]
fn a_first_sync_puts_everything_sources_first() {
    let commit = files(&[
        ("a/automation.yaml", AUTOMATION),
        ("a/policy.yaml", POLICY),
        ("a/repo.yaml", REPO),
        ("a/source.yaml", SOURCE),
    ]);
    let plan = plan(decide(&commit, &BTreeSet::new(), &BTreeMap::new()));
    assert_eq!(
        keys_of(&plan.puts),
        [
            key(Kind::GitRepository, "fleet"),
            key(Kind::ImageRepository, "app"),
            key(Kind::ImagePolicy, "app"),
            key(Kind::ImageUpdateAutomation, "auto"),
        ]
    );
    assert!(plan.deletes.is_empty() && plan.unchanged.is_empty());
    assert!(!plan.is_noop(&BTreeSet::new()));
}

#[test]
fn the_same_documents_again_change_nothing() {
    let commit = files(&[("repo.yaml", REPO), ("policy.yaml", POLICY)]);
    let mut stored = BTreeMap::new();
    let owned = carry_out(
        &plan(decide(&commit, &BTreeSet::new(), &stored)),
        &mut stored,
    );
    let again = plan(decide(&commit, &owned, &stored));
    assert!(again.puts.is_empty());
    assert_eq!(again.unchanged.len(), 2);
    assert!(again.is_noop(&owned));
}

#[test]
fn an_image_update_commit_to_manifests_in_the_path_changes_nothing() {
    let before = files(&[(
        "apps/app.yaml",
        &format!("{REPO}---\n{POLICY}---\n{DEPLOYMENT}"),
    )]);
    let mut stored = BTreeMap::new();
    let first = plan(decide(&before, &BTreeSet::new(), &stored));
    assert_eq!(first.skipped.len(), 1, "the Deployment is skipped");
    assert!(first.skipped[0].reason.contains("apps/v1 Deployment"));
    let owned = carry_out(&first, &mut stored);
    let updated = DEPLOYMENT.replace("app:1.0.0", "app:1.1.0");
    let after = files(&[(
        "apps/app.yaml",
        &format!("{REPO}---\n{POLICY}---\n{updated}"),
    )]);
    assert!(plan(decide(&after, &owned, &stored)).is_noop(&owned));
}

#[test]
fn objects_stored_as_written_are_adopted_without_a_write() {
    let commit = files(&[("repo.yaml", REPO)]);
    let mut stored = BTreeMap::new();
    carry_out(
        &plan(decide(&commit, &BTreeSet::new(), &BTreeMap::new())),
        &mut stored,
    );
    let adopted = plan(decide(&commit, &BTreeSet::new(), &stored));
    assert!(adopted.puts.is_empty());
    assert_eq!(adopted.unchanged, [key(Kind::ImageRepository, "app")]);
    assert!(
        !adopted.is_noop(&BTreeSet::new()),
        "owning it is a change worth announcing"
    );
}

#[test]
fn a_changed_document_is_put_and_only_it() {
    let (stored, owned) = synced(&[("repo.yaml", REPO), ("policy.yaml", POLICY)]);
    let changed = POLICY.replace("1.x", "2.x");
    let plan = plan(decide(
        &files(&[("repo.yaml", REPO), ("policy.yaml", &changed)]),
        &owned,
        &stored,
    ));
    assert_eq!(keys_of(&plan.puts), [key(Kind::ImagePolicy, "app")]);
    assert_eq!(plan.unchanged, [key(Kind::ImageRepository, "app")]);
    assert!(plan.deletes.is_empty());
}

#[test]
fn only_owned_objects_gone_from_git_are_deleted() {
    let (mut stored, owned) = synced(&[("repo.yaml", REPO), ("policy.yaml", POLICY)]);
    // Applied by hand: never the source's to delete.
    let by_hand = POLICY.replace("name: app, namespace", "name: manual, namespace");
    let manual = plan(decide(
        &files(&[("m.yaml", &by_hand)]),
        &BTreeSet::new(),
        &stored,
    ));
    carry_out(&manual, &mut stored);

    let plan = plan(decide(&files(&[("repo.yaml", REPO)]), &owned, &stored));
    assert_eq!(plan.deletes, [key(Kind::ImagePolicy, "app")]);
    assert!(plan.puts.is_empty());
    assert_eq!(
        plan.owned(),
        BTreeSet::from([key(Kind::ImageRepository, "app")])
    );
}

#[test]
fn an_owned_object_deleted_by_hand_is_released_not_deleted_again() {
    let (mut stored, owned) = synced(&[("repo.yaml", REPO), ("policy.yaml", POLICY)]);
    stored.remove(&key(Kind::ImagePolicy, "app"));
    let plan = plan(decide(&files(&[("repo.yaml", REPO)]), &owned, &stored));
    assert!(plan.deletes.is_empty());
    assert_eq!(plan.released, [key(Kind::ImagePolicy, "app")]);
    assert!(!plan.is_noop(&owned));
}

#[test]
fn deletions_go_referring_objects_first() {
    let all = files(&[
        ("source.yaml", SOURCE),
        ("automation.yaml", AUTOMATION),
        ("repo.yaml", REPO),
        ("policy.yaml", POLICY),
    ]);
    let mut stored = BTreeMap::new();
    let owned = carry_out(&plan(decide(&all, &BTreeSet::new(), &stored)), &mut stored);
    let plan = plan(decide(&[], &owned, &stored));
    assert_eq!(
        plan.deletes,
        [
            key(Kind::ImageUpdateAutomation, "auto"),
            key(Kind::ImagePolicy, "app"),
            key(Kind::ImageRepository, "app"),
            key(Kind::GitRepository, "fleet"),
        ]
    );
}

#[test]
fn one_invalid_document_refuses_the_whole_commit_with_file_line_and_field() {
    let bad = POLICY.replace("1.x", "'>= 1.0 <<2'");
    let decision = decide(
        &files(&[("repo.yaml", REPO), ("apps/policy.yaml", &bad)]),
        &BTreeSet::new(),
        &BTreeMap::new(),
    );
    let Decision::Reject(problems) = decision else {
        panic!("accepted {decision:?}")
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].file, "apps/policy.yaml");
    assert_eq!(problems[0].line, 6);
    assert_eq!(problems[0].field, "spec.policy.semver.range");
}

#[test]
fn references_resolve_against_what_stays_beside_the_commit() {
    // A repository applied by hand stays: a policy in Git may use it.
    let mut stored = BTreeMap::new();
    carry_out(
        &plan(decide(
            &files(&[("repo.yaml", REPO)]),
            &BTreeSet::new(),
            &stored,
        )),
        &mut stored,
    );
    let uses_hand_applied = decide(
        &files(&[("policy.yaml", POLICY)]),
        &BTreeSet::new(),
        &stored,
    );
    assert!(matches!(uses_hand_applied, Decision::Sync(_)));

    // A repository the source is about to delete does not.
    let owned = BTreeSet::from([key(Kind::ImageRepository, "app")]);
    let Decision::Reject(problems) = decide(&files(&[("policy.yaml", POLICY)]), &owned, &stored)
    else {
        panic!("a policy whose repository leaves Git with it was accepted")
    };
    assert_eq!(problems[0].field, "spec.imageRepositoryRef.name");
}

#[test]
fn an_automation_its_committer_would_refuse_is_refused() {
    let tag_checkout = SOURCE.replace("{branch: main}", "{tag: v1}");
    let decision = decide(
        &files(&[
            ("source.yaml", &tag_checkout),
            ("automation.yaml", AUTOMATION),
        ]),
        &BTreeSet::new(),
        &BTreeMap::new(),
    );
    let Decision::Reject(problems) = decision else {
        panic!("accepted")
    };
    assert_eq!(problems[0].field, "spec.git.push.branch");
}

#[test]
fn secrets_and_duplicates() {
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: apps}\nstringData: {password: hunter2}\n";
    let plan = plan(decide(
        &files(&[("secret.yaml", secret), ("repo.yaml", REPO)]),
        &BTreeSet::new(),
        &BTreeMap::new(),
    ));
    assert_eq!(plan.skipped.len(), 1);
    assert!(!format!("{plan:?}").contains("hunter2"));

    let twice = decide(
        &files(&[("a.yaml", REPO), ("b.yaml", REPO)]),
        &BTreeSet::new(),
        &BTreeMap::new(),
    );
    assert!(matches!(twice, Decision::Reject(p) if p[0].file == "b.yaml"));
}

#[test]
fn an_empty_commit_over_an_empty_source_is_a_noop() {
    let plan = plan(decide(&[], &BTreeSet::new(), &BTreeMap::new()));
    assert!(plan.is_noop(&BTreeSet::new()));
}
