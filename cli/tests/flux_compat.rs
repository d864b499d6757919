//! A Flux user's YAML through `tagrelay apply`, against a real nats-server:
//! what Flux accepts applies (deprecated versions and fields with a
//! warning, exit 0), and every field tagrelay cannot honour is refused with
//! `file:line: kind/ns/name: field: reason` (exit 2), never stored and
//! ignored. Examples under `flux-guides/` are Flux's documentation,
//! verbatim, each naming its source on its first line.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

mod common;

use std::process::Output;

use tagrelay_testkit::NatsServer;

/// The GitRepository Flux's bootstrap creates, which the guides' automations
/// refer to.
const FLUX_SYSTEM_SOURCE: &str = "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  url: ssh://git@github.com/org/fleet
  interval: 1m
  ref:
    branch: main
";

fn apply(server: &NatsServer, yaml: &str) -> Output {
    common::tagrelay(&server.url(), &["apply", "-f", "-"], Some(yaml))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stored(server: &NatsServer) -> Vec<String> {
    let out = common::tagrelay(
        &server.url(),
        &["get", "image", "all", "-A", "-o", "json"],
        None,
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            format!(
                "{}/{}",
                item["kind"].as_str().unwrap_or_default(),
                item["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn the_guides_v1beta1_automation_with_updated_images_applies_with_deprecation_warnings() {
    let server = NatsServer::start();
    let guide = include_str!("flux-guides/029-guide-old-configure-image-updates.yaml");
    let out = apply(&server, &format!("{FLUX_SYSTEM_SOURCE}---\n{guide}"));
    let errors = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{errors}");
    assert!(
        errors.contains("warning: <stdin>:13: ImageUpdateAutomation/flux-system/flux-system: apiVersion: image.toolkit.fluxcd.io/v1beta1 is deprecated; use image.toolkit.fluxcd.io/v1"),
        "{errors}"
    );
    assert!(
        errors.contains("spec.git.commit.messageTemplate: '.Updated' is deprecated"),
        "{errors}"
    );
    assert!(stored(&server).contains(&"ImageUpdateAutomation/flux-system".to_string()));
}

#[test]
fn older_git_repository_versions_apply_with_a_warning() {
    let server = NatsServer::start();
    for (version, extra) in [
        ("v1beta2", "  gitImplementation: go-git\n"),
        ("v1beta1", ""),
    ] {
        let yaml = FLUX_SYSTEM_SOURCE.replace(
            "source.toolkit.fluxcd.io/v1\n",
            &format!("source.toolkit.fluxcd.io/{version}\n"),
        ) + extra;
        let out = apply(&server, &yaml);
        let errors = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{version}: {errors}");
        assert!(
            errors.contains(&format!(
                "GitRepository/flux-system/flux-system: apiVersion: source.toolkit.fluxcd.io/{version} is deprecated"
            )),
            "{errors}"
        );
        assert_eq!(
            errors.contains("spec.gitImplementation: deprecated"),
            !extra.is_empty(),
            "{errors}"
        );
    }
}

#[test]
fn a_secret_beside_the_objects_is_skipped_and_said_where_to_mount() {
    let server = NatsServer::start();
    let guide = include_str!("flux-guides/033-irc-v1beta2-repo-secret-reference.yaml");
    let out = apply(&server, guide);
    let errors = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{errors}");
    assert!(
        errors.contains("Secret/default/regcred: kind: Secrets are never stored on the bus; skipped. Mount its keys as files in <secrets-dir>/default/regcred/"),
        "{errors}"
    );
    assert!(
        !errors.contains("eyJhdXRocyI6"),
        "the Secret's data must never be printed"
    );
    assert_eq!(stored(&server), vec!["ImageRepository/podinfo".to_string()]);
}

/// One field tagrelay cannot honour: the YAML, and what `apply` must say.
struct Refused {
    yaml: String,
    expected: &'static str,
}

fn automation(extra_git: &str, extra_spec: &str, api: &str) -> String {
    format!(
        "{FLUX_SYSTEM_SOURCE}---
apiVersion: image.toolkit.fluxcd.io/{api}
kind: ImageUpdateAutomation
metadata:
  name: fleet
  namespace: flux-system
spec:
  interval: 30m
  sourceRef:
    kind: GitRepository
    name: flux-system
  git:
    commit:
      author:
        email: fluxcdbot@users.noreply.github.com
{extra_git}  update:
    path: ./clusters
{extra_spec}"
    )
}

#[test]
fn fields_tagrelay_cannot_honour_are_refused_with_the_field_and_the_reason() {
    let server = NatsServer::start();
    let cases = [
        Refused {
            yaml: automation("      signingKey:\n        type: openpgp\n        secretRef:\n          name: signing-key\n", "", "v1"),
            expected: "ImageUpdateAutomation/flux-system/fleet: spec.git.commit.signingKey.type: \"openpgp\" is not one of gpg, ssh",
        },
        Refused {
            yaml: automation("      messageTemplate: '{{ range .Changed.Changes }}'\n", "", "v1"),
            expected: "ImageUpdateAutomation/flux-system/fleet: spec.git.commit.messageTemplate: ",
        },
        Refused {
            yaml: automation("      messageTemplate: '{{range .Updated.Images}}{{println .}}{{end}}'\n", "", "v1"),
            expected: "ImageUpdateAutomation/flux-system/fleet: spec.git.commit.messageTemplate: template uses the '.Updated' field, removed in image.toolkit.fluxcd.io/v1",
        },
        Refused {
            yaml: automation("", "  policySelector:\n    matchExpressions:\n      - key: team\n        operator: Equals\n        values: [web]\n", "v1"),
            expected: "ImageUpdateAutomation/flux-system/fleet: spec.policySelector.matchExpressions[0].operator: \"Equals\" is not one of In, NotIn, Exists, DoesNotExist",
        },
        Refused {
            yaml: automation("    checkout:\n      ref:\n        semver: '>= 1.0 <<2'\n    push:\n      branch: auto\n", "", "v1"),
            expected: "ImageUpdateAutomation/flux-system/fleet: spec.git.checkout.ref.semver: ",
        },
        Refused {
            yaml: automation("    push:\n      refspec: '+refs/heads/main:refs/heads/auto'\n", "", "v1"),
            expected: "ImageUpdateAutomation/flux-system/fleet: spec.git.push.refspec: force-push refspecs",
        },
        Refused {
            yaml: "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n  interval: 5m\n  serviceAccountName: image-pull\n".to_string(),
            expected: "<stdin>:8: ImageRepository/flux-system/app: spec.serviceAccountName: tagrelay runs without a Kubernetes API",
        },
        Refused {
            yaml: FLUX_SYSTEM_SOURCE.replace("  interval: 1m\n", "  interval: 1m\n  proxySecretRef:\n    name: proxy\n"),
            expected: "GitRepository/flux-system/flux-system: spec.proxySecretRef: a proxy applies to http:// and https:// remotes only",
        },
        Refused {
            yaml: FLUX_SYSTEM_SOURCE.replace("  interval: 1m\n", "  interval: 1m\n  provider: github\n"),
            expected: "GitRepository/flux-system/flux-system: spec.provider: \"github\" credentials are not supported by tagrelay yet",
        },
        Refused {
            yaml: FLUX_SYSTEM_SOURCE.replace("  interval: 1m\n", "  interval: 1m\n  verify:\n    mode: HEAD\n    secretRef:\n      name: pgp-keys\n"),
            expected: "GitRepository/flux-system/flux-system: spec.verify: shapes only Flux source-controller's artifact",
        },
        Refused {
            yaml: FLUX_SYSTEM_SOURCE.replace("  interval: 1m\n", "  interval: 1m\n  ignore: |\n    /*\n    !/deploy\n"),
            expected: "GitRepository/flux-system/flux-system: spec.ignore: shapes only Flux source-controller's artifact",
        },
        Refused {
            yaml: FLUX_SYSTEM_SOURCE.replace("  interval: 1m\n", "  interval: 1m\n  recurseSubmodules: true\n"),
            expected: "GitRepository/flux-system/flux-system: spec.recurseSubmodules: shapes only Flux source-controller's artifact",
        },
        Refused {
            yaml: FLUX_SYSTEM_SOURCE.replace("  interval: 1m\n", "  interval: 1m\n  include:\n    - repository:\n        name: other\n"),
            expected: "GitRepository/flux-system/flux-system: spec.include: shapes only Flux source-controller's artifact",
        },
        Refused {
            yaml: FLUX_SYSTEM_SOURCE.replace("  interval: 1m\n", "  interval: 1m\n  sparseCheckout:\n    - deploy\n"),
            expected: "GitRepository/flux-system/flux-system: spec.sparseCheckout: shapes only Flux source-controller's artifact",
        },
    ];
    for case in cases {
        let out = apply(&server, &case.yaml);
        let errors = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}\n{errors}", case.yaml);
        assert!(errors.contains(case.expected), "{}\n{errors}", case.yaml);
        assert!(errors.contains("nothing was applied"), "{errors}");
    }
    assert!(stored(&server).is_empty(), "a refused batch stores nothing");
}

#[test]
fn suspend_resume_and_export_as_the_flux_cli_types_them() {
    let server = NatsServer::start();
    let objects = format!(
        "{FLUX_SYSTEM_SOURCE}---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata:
  name: podinfo
  namespace: flux-system
spec:
  image: ghcr.io/stefanprodan/podinfo
  interval: 5m
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata:
  name: podinfo
  namespace: flux-system
spec:
  imageRepositoryRef:
    name: podinfo
  policy:
    semver:
      range: 5.0.x
"
    );
    let out = apply(&server, &objects);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let url = server.url();
    let suspended = |kind: &str| {
        let out = common::tagrelay(&url, &["get", "image", kind, "podinfo", "-o", "json"], None);
        let object: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        object["items"][0]["spec"]["suspend"]
            .as_bool()
            .unwrap_or(false)
    };
    for kind in ["repository", "policy"] {
        let out = common::tagrelay(&url, &["suspend", "image", kind, "podinfo"], None);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(suspended(kind), "{kind} not suspended");
        let out = common::tagrelay(&url, &["resume", "image", kind, "podinfo"], None);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(!suspended(kind), "{kind} not resumed");
    }
    let out = common::tagrelay(&url, &["suspend", "image", "policy", "nope"], None);
    assert_eq!(out.status.code(), Some(1), "a missing object is an error");

    let out = common::tagrelay(&url, &["export", "image", "all"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let exported = String::from_utf8(out.stdout).unwrap();
    assert_eq!(exported.matches("---\n").count(), 2, "{exported}");
    assert!(exported.contains("kind: ImagePolicy"), "{exported}");
    let out = apply(&server, &exported);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        said.lines().filter(|l| l.ends_with(" unchanged")).count(),
        2,
        "the export applies back unchanged: {said}"
    );
    let out = common::tagrelay(&url, &["export", "source", "git", "flux-system"], None);
    let exported = String::from_utf8(out.stdout).unwrap();
    assert!(
        exported.starts_with("---\napiVersion: source.toolkit.fluxcd.io/v1\n")
            && exported.contains("ssh://git@github.com/org/fleet"),
        "{exported}"
    );
}

#[test]
fn create_with_the_flux_cli_flags_exports_and_applies_the_same_objects() {
    let server = NatsServer::start();
    let url = server.url();
    let commands: [&[&str]; 4] = [
        &["create", "source", "git", "flux-system", "--url=ssh://git@github.com/org/fleet", "--branch=main", "--interval=1m"],
        &["create", "image", "repository", "podinfo", "--image=ghcr.io/stefanprodan/podinfo", "--interval=5m", "--exclusion-list=^.*\\.sig$,^dev-"],
        &["create", "image", "policy", "podinfo", "--image-ref=podinfo", "--select-semver=5.0.x", "--filter-regex=^(?P<v>[0-9.]+)$", "--filter-extract=$v"],
        &["create", "image", "update", "flux-system", "--interval=30m", "--git-repo-ref=flux-system", "--git-repo-path=./clusters/my-cluster", "--checkout-branch=main", "--push-branch=main", "--author-name=fluxcdbot", "--author-email=fluxcdbot@users.noreply.github.com", "--commit-template={{range .Changed.Changes}}{{print .OldValue}} -> {{println .NewValue}}{{end}}"],
    ];
    let unreachable = "nats://127.0.0.1:1";
    for command in commands {
        let mut export = command.to_vec();
        export.push("--export");
        let exported = common::tagrelay(unreachable, &export, None);
        assert_eq!(
            exported.status.code(),
            Some(0),
            "--export needs no bus: {}",
            stderr(&exported)
        );
        let yaml = String::from_utf8(exported.stdout).unwrap();
        assert!(yaml.starts_with("---\napiVersion: "), "{yaml}");
        let created = common::tagrelay(&url, command, None);
        assert_eq!(created.status.code(), Some(0), "{}", stderr(&created));
        let applied = apply(&server, &yaml);
        let said = String::from_utf8_lossy(&applied.stdout).to_string();
        assert!(
            said.trim_end().ends_with(" unchanged"),
            "create and apply of its export are the same object: {said}{}",
            stderr(&applied)
        );
    }
    let out = common::tagrelay(&url, &["export", "image", "policy", "podinfo"], None);
    let policy = String::from_utf8(out.stdout).unwrap();
    for expected in ["range: 5.0.x", "extract: $v", "name: podinfo"] {
        assert!(policy.contains(expected), "{expected} in {policy}");
    }
    let refused = common::tagrelay(
        &url,
        &[
            "create",
            "image",
            "policy",
            "bad",
            "--image-ref=podinfo",
            "--select-semver=>=1.0 <<2",
        ],
        None,
    );
    assert_eq!(
        refused.status.code(),
        Some(2),
        "validated as apply validates"
    );
    assert!(
        stderr(&refused).contains("spec.policy.semver.range"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn access_from_admits_the_namespaces_it_names_and_no_other_as_in_flux() {
    let server = NatsServer::start();
    let repository = include_str!("flux-guides/037-irc-v1beta2-repo-access-from.yaml");
    let policy = include_str!("flux-guides/038-irc-v1beta2-repo-access-from-2.yaml");
    let out = apply(&server, &format!("{repository}\n{policy}"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let elsewhere = policy.replace("namespace: flux-system", "namespace: team-b");
    let out = apply(&server, &elsewhere);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ImagePolicy/team-b/app1: spec.imageRepositoryRef.namespace: access denied: 'apps/app1' can't be accessed due to ACL labels mismatch on namespace 'team-b'"),
        "{}",
        stderr(&out)
    );

    let by_team = include_str!("flux-guides/037-irc-v1beta2-repo-access-from.yaml")
        .replace("kubernetes.io/metadata.name: flux-system", "team: platform");
    let namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n  labels:\n    team: platform\n";
    let out = apply(
        &server,
        &format!("{by_team}\n---\n{namespace}---\n{elsewhere}"),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "a Namespace object's labels admit it: {}",
        stderr(&out)
    );

    let open = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: open\n  namespace: apps\nspec:\n  image: ghcr.io/org/open\n  interval: 5m\n";
    let reaching = policy
        .replace(
            "name: app1\n    namespace: apps",
            "name: open\n    namespace: apps",
        )
        .replace(
            "  name: app1\n  namespace: flux-system",
            "  name: open\n  namespace: flux-system",
        );
    let out = apply(&server, &format!("{open}---\n{reaching}"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("'apps/open' can't be accessed due to missing ACL labels on 'accessFrom'"),
        "no accessFrom, no cross-namespace use: {}",
        stderr(&out)
    );
}

/// Examples tagrelay refuses, each with the reason it gives; every other
/// complete example must apply.
const REFUSED_EXAMPLES: &[(&str, &str)] = &[
    (
        "081-iac-v1beta1-cross-namespace-references.yaml",
        "spec.git: required: tagrelay only updates Git",
    ),
    (
        "091-iac-v1beta1-example-of-rewriting-a-v1alpha1-object-t.yaml",
        "spec.checkout: unknown field `checkout`",
    ),
];

/// Why an example is a snippet (part of an object, or a placeholder name)
/// rather than an object Flux's API server would accept; `None` for a
/// complete object.
fn snippet(document: &serde_json::Value) -> Option<&'static str> {
    let spec = &document["spec"];
    let name = document["metadata"]["name"].as_str().unwrap_or("");
    if name.is_empty() || name.contains('<') {
        return Some("no name, or a placeholder");
    }
    let required: &[&str] = match document["kind"].as_str()? {
        "ImageRepository" => &["image"],
        "ImagePolicy" => &["imageRepositoryRef"],
        "ImageUpdateAutomation" => &["sourceRef", "interval"],
        "GitRepository" => &["url", "interval"],
        _ => return None,
    };
    required
        .iter()
        .any(|field| spec.get(*field).is_none())
        .then_some("a required field left out")
}

/// What an example refers to but does not define: a stub ImageRepository
/// (open to the referring namespace) or GitRepository per reference.
fn stubs_for(documents: &[serde_json::Value]) -> String {
    let namespace = |d: &serde_json::Value| {
        d["metadata"]["namespace"]
            .as_str()
            .unwrap_or("flux-system")
            .to_string()
    };
    let defined: Vec<(String, String, String)> = documents
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or("").to_string(),
                namespace(d),
                d["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut stubs = Vec::new();
    for document in documents {
        let own = namespace(document);
        let (kind, reference) = match document["kind"].as_str() {
            Some("ImagePolicy") => ("ImageRepository", &document["spec"]["imageRepositoryRef"]),
            Some("ImageUpdateAutomation") => ("GitRepository", &document["spec"]["sourceRef"]),
            _ => continue,
        };
        let name = reference["name"].as_str().unwrap_or("").to_string();
        let ns = reference["namespace"]
            .as_str()
            .map_or(own.clone(), str::to_string);
        if name.is_empty() || defined.contains(&(kind.to_string(), ns.clone(), name.clone())) {
            continue;
        }
        stubs.push(match kind {
            "ImageRepository" => format!("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  image: example.com/stub\n  interval: 1m\n  accessFrom:\n    namespaceSelectors:\n      - matchLabels:\n          kubernetes.io/metadata.name: {own}\n"),
            _ => format!("apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  url: https://example.com/stub.git\n  interval: 1m\n  ref:\n    branch: main\n"),
        });
    }
    stubs.join("---\n")
}

#[test]
fn every_complete_example_of_flux_image_automation_docs_applies_or_is_refused_with_its_reason() {
    let server = NatsServer::start();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flux-guides");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let (mut applied, mut refused, mut snippets) = (0, 0, 0);
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let Ok(documents) = tagrelay_proto::config::load_documents(&text) else {
            snippets += 1;
            continue;
        };
        let ours: Vec<serde_json::Value> = documents
            .into_iter()
            .map(|d| d.value)
            .filter(|v| {
                matches!(
                    v["kind"].as_str(),
                    Some(
                        "ImageRepository"
                            | "ImagePolicy"
                            | "ImageUpdateAutomation"
                            | "GitRepository"
                    )
                )
            })
            .collect();
        let expected_refusal = REFUSED_EXAMPLES.iter().find(|(f, _)| *f == file);
        if expected_refusal.is_none() && ours.iter().any(|d| snippet(d).is_some()) {
            snippets += 1;
            continue;
        }
        let stubs = stubs_for(&ours);
        if !stubs.is_empty() {
            let out = apply(&server, &stubs);
            assert_eq!(out.status.code(), Some(0), "{file} stubs: {}", stderr(&out));
        }
        let out = apply(&server, &text);
        match expected_refusal {
            Some((_, reason)) => {
                assert_eq!(out.status.code(), Some(2), "{file}: {}", stderr(&out));
                assert!(stderr(&out).contains(reason), "{file}: {}", stderr(&out));
                refused += 1;
            }
            None => {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{file} must apply: {}",
                    stderr(&out)
                );
                applied += 1;
            }
        }
    }
    println!("{applied} applied, {refused} refused with their reason, {snippets} snippets");
    assert_eq!(
        (applied, refused),
        (41, REFUSED_EXAMPLES.len()),
        "{snippets} snippets"
    );
}

#[test]
fn the_pull_request_annotation_is_checked_at_apply_with_the_field_and_the_reason() {
    let server = NatsServer::start();
    let with = |annotation: &str, push: &str| {
        automation(push, "", "v1").replace(
            "  name: fleet\n  namespace: flux-system\n",
            &format!(
                "  name: fleet\n  namespace: flux-system\n  annotations:\n    tagrelay.dev/pull-request: {}\n",
                serde_json::to_string(annotation).unwrap()
            ),
        )
    };
    let review = "    push:\n      branch: image-updates\n";
    let field =
        "ImageUpdateAutomation/flux-system/fleet: metadata.annotations[tagrelay.dev/pull-request]";
    for (yaml, expected) in [
        (with("provider: bitbucket\nsecretRef: {name: forge}\n", review), format!("{field}.provider: unknown variant `bitbucket`")),
        (with("provider: gitea\nsecretRef: {name: forge}\n", review), format!("{field}.apiURL: required for gitea")),
        (with("provider: github\nsecretRef: {name: forge}\nreviewer: [alice]\n", review), format!("{field}.reviewer: unknown field `reviewer`")),
        (with("provider: github\nsecretRef: {name: forge}\n", ""), format!("{field}: a pull request needs spec.git.push.branch to differ from the checkout branch")),
        (with("provider: github\nsecretRef: {name: forge}\ntitle: '{{ .Changed'\n", review), format!("{field}.title: ")),
    ] {
        let out = apply(&server, &yaml);
        let errors = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{yaml}\n{errors}");
        assert!(errors.contains(&expected), "{expected}\n{errors}");
    }
    assert!(stored(&server).is_empty());
    let out = apply(
        &server,
        &with(
            "provider: github\nsecretRef: {name: forge}\nlabels: [image-update]\n",
            review,
        ),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
