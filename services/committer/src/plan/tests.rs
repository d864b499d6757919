//! The committer's decision with plain values: no Git, no NATS.

use super::*;
use crate::git::Screen;
use gix::ObjectId;
use tagrelay_proto::config::{load_documents, Kind, Object};
use tagrelay_proto::event::{Event, ObjectRef, PolicyResolved, ResolveCause, SelectedImage};
use tagrelay_proto::reference::ImageReference;

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: apps
spec:
  template:
    spec:
      containers:
        - name: app
          image: registry.example/app:1.0.0 # {\"$imagepolicy\": \"flux-system:app\"}
";

fn automation(template: Option<&str>) -> Automation {
    let template = template
        .map(|t| format!("      messageTemplate: {t:?}\n"))
        .unwrap_or_default();
    let yaml = format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: fleet, namespace: flux-system}}
spec: {{url: 'file:///nowhere', interval: 1m, ref: {{branch: main}}}}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageUpdateAutomation
metadata: {{name: fleet, namespace: flux-system}}
spec:
  interval: 1h
  sourceRef: {{kind: GitRepository, name: fleet}}
  update: {{path: apps}}
  git:
    commit:
      author: {{name: bot, email: bot@example.com}}
{template}"
    );
    let objects: Vec<Object> = load_documents(&yaml)
        .unwrap()
        .iter()
        .map(|d| Object::decode(&d.value).unwrap())
        .collect();
    match (&objects[0], &objects[1]) {
        (Object::GitRepository(source), Object::ImageUpdateAutomation(automation)) => {
            Automation::resolve(automation, source).unwrap()
        }
        other => panic!("unexpected objects {other:?}"),
    }
}

fn file(path: &str, content: &str) -> (FileEntry, Screen, Vec<u8>) {
    (
        FileEntry {
            path: path.to_string(),
            blob: ObjectId::null(gix::hash::Kind::Sha1),
            executable: false,
        },
        Screen::of(content.as_bytes()),
        content.as_bytes().to_vec(),
    )
}

fn policy_key() -> ObjectKey {
    ObjectKey::new(Kind::ImagePolicy, "flux-system", "app")
}

fn to(tag: &str) -> (UpdateSet, BTreeMap<String, (ObjectKey, PolicySelection)>) {
    let mut updates = UpdateSet::default();
    updates.policies.insert(
        "flux-system:app".to_string(),
        ImageReference::parse(&format!("registry.example/app:{tag}")).unwrap(),
    );
    let selection = PolicySelection {
        image: "registry.example/app".into(),
        selected: SelectedImage {
            tag: tag.into(),
            digest: None,
        },
        source_sequence: 1,
        rules_hash: String::new(),
        resolved_sequence: 2,
        updated_at: Utc::now(),
        held_back: None,
        recheck_at: None,
    };
    let mut selections = BTreeMap::new();
    selections.insert("flux-system:app".to_string(), (policy_key(), selection));
    (updates, selections)
}

fn cause(tag: &str) -> Envelope {
    Envelope::new(
        "resolver/test",
        Event::PolicyResolved(PolicyResolved {
            policy: ObjectRef::new("flux-system", "app"),
            repository: ObjectRef::new("flux-system", "app"),
            image: "registry.example/app".into(),
            previous: None,
            current: SelectedImage {
                tag: tag.into(),
                digest: None,
            },
            tag_set_digest: "sha256:x".into(),
            cause: ResolveCause::TagsChanged,
        }),
    )
}

#[test]
fn a_moved_policy_rewrites_its_file_and_names_its_cause() {
    let scan = Scan {
        files: vec![file("apps/app.yaml", DEPLOYMENT)],
        ..Scan::default()
    };
    let (updates, selections) = to("1.1.0");
    let Plan::Rewrite(rewrite) = plan(&scan, &updates, &selections) else {
        panic!("nothing to change")
    };
    assert_eq!(rewrite.rewritten.len(), 1);
    let content = String::from_utf8(rewrite.rewritten[0].content.clone()).unwrap();
    assert_eq!(
        content,
        DEPLOYMENT.replace("app:1.0.0", "app:1.1.0"),
        "only the tag's bytes change"
    );
    assert_eq!(
        rewrite.cause_policies(),
        BTreeSet::from([policy_key()]),
        "the change is traced to its policy"
    );
    assert!(rewrite.problems.is_empty());
}

#[test]
fn files_already_at_the_selection_are_up_to_date_and_problems_are_kept_once() {
    let scan = Scan {
        files: vec![file("apps/app.yaml", DEPLOYMENT)],
        problems: vec![
            "apps/bad.yaml: skipped: not YAML".into(),
            "apps/bad.yaml: skipped: not YAML".into(),
        ],
        ..Scan::default()
    };
    let (updates, selections) = to("1.0.0");
    assert_eq!(
        plan(&scan, &updates, &selections),
        Plan::UpToDate {
            problems: vec!["apps/bad.yaml: skipped: not YAML".into()]
        }
    );
    assert_eq!(
        plan(&scan, &UpdateSet::default(), &BTreeMap::new()),
        Plan::UpToDate {
            problems: vec!["apps/bad.yaml: skipped: not YAML".into()]
        },
        "no policies: nothing is even parsed"
    );
}

#[test]
fn a_refused_value_and_an_unparseable_file_are_problems_while_others_change() {
    let broken = "apiVersion: v1\nkind: ConfigMap\ndata: [unclosed # {\"$imagepolicy\": \"flux-system:app\"}\n";
    let scan = Scan {
        files: vec![
            file("apps/app.yaml", DEPLOYMENT),
            file("apps/broken.yaml", broken),
        ],
        ..Scan::default()
    };
    let (updates, selections) = to("1.1.0");
    let Plan::Rewrite(rewrite) = plan(&scan, &updates, &selections) else {
        panic!("the good file was not changed")
    };
    assert_eq!(rewrite.rewritten.len(), 1);
    assert_eq!(rewrite.rewritten[0].entry.path, "apps/app.yaml");
    assert_eq!(rewrite.problems.len(), 1, "{:?}", rewrite.problems);
    assert!(
        rewrite.problems[0].starts_with("apps/broken.yaml: skipped: "),
        "{:?}",
        rewrite.problems
    );
}

#[test]
fn the_commit_carries_the_template_the_changes_and_the_causes() {
    let scan = Scan {
        files: vec![file("apps/app.yaml", DEPLOYMENT)],
        ..Scan::default()
    };
    let (updates, selections) = to("1.1.0");
    let Plan::Rewrite(rewrite) = plan(&scan, &updates, &selections) else {
        panic!("nothing to change")
    };
    let cause = cause("1.1.0");
    let planned = rewrite
        .commit(
            &automation(Some(
                "{{range .Changed.Changes}}{{.OldValue}} -> {{.NewValue}}{{end}}",
            )),
            std::slice::from_ref(&cause),
        )
        .unwrap();
    assert!(
        planned
            .message
            .starts_with("registry.example/app:1.0.0 -> registry.example/app:1.1.0"),
        "{}",
        planned.message
    );
    assert!(planned
        .message
        .contains("Tagrelay-Automation: flux-system/fleet"));
    assert!(planned
        .message
        .contains(&format!("Tagrelay-Cause: {}", cause.id)));
    assert_eq!(planned.causes, vec![cause.id.clone()]);
    assert_eq!(planned.cause_times, vec![cause.occurred_at]);
    assert_eq!(planned.changes.len(), 1);
    assert_eq!(planned.changes[0].file, "apps/app.yaml");
    assert_eq!(planned.files.len(), 1);
    assert_eq!(planned.files[0].content, rewrite.rewritten[0].content);
}

#[test]
fn a_template_that_cannot_render_fails_for_good_with_its_field() {
    let scan = Scan {
        files: vec![file("apps/app.yaml", DEPLOYMENT)],
        ..Scan::default()
    };
    let (updates, selections) = to("1.1.0");
    let Plan::Rewrite(rewrite) = plan(&scan, &updates, &selections) else {
        panic!("nothing to change")
    };
    let failed = rewrite
        .commit(&automation(Some("{{ .NoSuchField }}")), &[])
        .unwrap_err();
    assert_eq!(failed.reason, FailureReason::InvalidSpec);
    assert!(!failed.will_retry);
    assert!(
        failed
            .error
            .starts_with("spec.git.commit.messageTemplate: "),
        "{failed}"
    );
}

#[test]
fn a_time_ordered_container_whose_tag_the_registry_does_not_list_is_left_alone() {
    let container = |filter: Option<&str>, current: Option<&str>| V1Container {
        workload: tagrelay_rewrite::WorkloadId {
            kind: "Deployment".into(),
            namespace: Some("apps".into()),
            name: "web".into(),
        },
        container: "web".into(),
        image: "registry.example/web".into(),
        current_tag: current.map(str::to_string),
        filter: filter.map(str::to_string),
        line: 9,
    };
    let listed = vec!["1.0.0".to_string(), "2.0.0".to_string()];
    for filter in [None, Some("glob:main-*"), Some("regex:^v"), Some("main-*")] {
        let problem = unlisted_current_tag(&container(filter, Some("hotfix")), &listed)
            .unwrap_or_else(|| panic!("{filter:?}: an unlisted tag was moved"));
        assert!(
            problem.starts_with("apps:deployment/web container web: current tag hotfix is not listed by the registry; left alone"),
            "{problem}"
        );
        assert_eq!(
            unlisted_current_tag(&container(filter, Some("1.0.0")), &listed),
            None,
            "{filter:?}: a listed tag moves"
        );
    }
    assert_eq!(
        unlisted_current_tag(&container(Some("semver:~1.0"), Some("hotfix")), &listed),
        None,
        "versions order themselves: semver filters may move from any tag"
    );
    assert_eq!(
        unlisted_current_tag(&container(None, None), &listed),
        None,
        "no tag written: nothing to go back from"
    );
}
