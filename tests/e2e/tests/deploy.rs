//! The Kubernetes manifests and the Helm chart, checked with the real tools
//! these machines have (no API server runs here): `kubectl kustomize`
//! builds each overlay, `kubernetes-validate --strict` checks every object
//! against Kubernetes 1.37's schemas (unknown fields refused), the Helm
//! library's lint (PyPI `helm-sdkpy`) renders and checks the chart with its
//! default values and with the "existing NATS" values; and the built
//! objects are read to check what the issue asks of them (probes, security,
//! disruption budgets, network policy, metrics scraping, the NATS users).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The Kubernetes version the manifests are validated against.
const KUBERNETES: &str = "1.37.0";

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn output(command: &mut Command, stdin: Option<&str>) -> (bool, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (scripts/install-deps installs it)"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn kustomize(dir: &str) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repository_root().join(dir))
        .output()
        .expect("kubectl (scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn validate_strict(manifests: &str) -> (bool, String) {
    output(
        Command::new("kubernetes-validate").args(["-k", KUBERNETES, "--strict", "-"]),
        Some(manifests),
    )
}

/// Every YAML document as JSON (PyYAML, which kubernetes-validate brings).
fn documents(manifests: &str) -> Vec<Value> {
    let (ok, text) = output(
        Command::new("python3").args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ]),
        Some(manifests),
    );
    assert!(ok, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// What every tagrelay Deployment must hold, whichever way it was built.
fn check_deployments(objects: &[Value]) {
    let deployments = of_kind(objects, "Deployment");
    let names: Vec<&str> = deployments
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    for service in [
        "tagrelay-scanner",
        "tagrelay-resolver",
        "tagrelay-committer",
        "tagrelay-notifier",
    ] {
        assert!(names.contains(&service), "{service} in {names:?}");
    }
    for deployment in deployments {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        let container = &pod["containers"][0];
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(security["privileged"], false, "{name}");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(container["resources"]["requests"]["memory"].is_string());
        assert!(container["resources"]["limits"]["memory"].is_string());
        // The HTTP server must listen on the pod's address, not loopback.
        let listen = if name == "tagrelay-scanner" {
            "TAGRELAY_LISTEN"
        } else {
            "TAGRELAY_HTTP_ADDR"
        };
        assert_eq!(
            env_value(container, listen).map(|e| &e["value"]),
            Some(&Value::from("0.0.0.0:8080")),
            "{name}"
        );
        assert_eq!(
            env_value(container, "NATS_PASSWORD").map(|e| &e["valueFrom"]["secretKeyRef"]["key"]),
            Some(&Value::from("password")),
            "{name} reads its NATS password from a Secret"
        );
        let mounts = container["volumeMounts"].as_array().unwrap();
        assert!(mounts.iter().any(|m| m["mountPath"] == "/tmp"), "{name}");
        if name == "tagrelay-committer" || name == "tagrelay-configsource" {
            assert!(
                mounts
                    .iter()
                    .any(|m| m["mountPath"] == "/var/cache/tagrelay"),
                "{name}'s Git cache is writable"
            );
        }
        let budgets = of_kind(objects, "PodDisruptionBudget");
        assert!(
            budgets.iter().any(|b| b["spec"]["selector"]["matchLabels"]
                == deployment["spec"]["selector"]["matchLabels"]),
            "{name} has a PodDisruptionBudget"
        );
        let services = of_kind(objects, "Service");
        assert!(
            services
                .iter()
                .any(|s| s["metadata"]["name"] == name && s["spec"]["ports"][0]["name"] == "http"),
            "{name} has a Service on its HTTP port"
        );
    }
    let policies = of_kind(objects, "NetworkPolicy");
    assert!(!policies.is_empty(), "a NetworkPolicy");
}

fn check_service_monitor(objects: &[Value]) {
    let monitors = of_kind(objects, "ServiceMonitor");
    assert_eq!(monitors.len(), 1, "one ServiceMonitor");
    let endpoint = &monitors[0]["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "http");
    assert_eq!(endpoint["path"], "/metrics");
}

#[test]
fn the_kustomize_overlays_build_and_validate_strictly() {
    for overlay in [
        "deploy/kubernetes/base",
        "deploy/kubernetes/overlays/single-nats",
        "deploy/kubernetes/overlays/existing-nats",
        "deploy/kubernetes/overlays/single-nats-gitops",
    ] {
        let manifests = kustomize(overlay);
        let (ok, report) = validate_strict(&manifests);
        assert!(ok, "{overlay}:\n{report}");
        let objects = documents(&manifests);
        check_deployments(&objects);
        if overlay.contains("overlays") {
            check_service_monitor(&objects);
        }
    }

    let single = documents(&kustomize("deploy/kubernetes/overlays/single-nats"));
    let nats = of_kind(&single, "StatefulSet");
    assert_eq!(nats.len(), 1, "single NATS runs its own server");
    let config = of_kind(&single, "ConfigMap")
        .into_iter()
        .find(|c| c["data"]["nats.conf"].is_string())
        .expect("the NATS configuration");
    assert!(config["data"]["nats.conf"]
        .as_str()
        .unwrap()
        .contains("include permissions.conf"));
    assert_eq!(
        config["data"]["permissions.conf"].as_str().unwrap(),
        std::fs::read_to_string(repository_root().join("deploy/nats/permissions.conf")).unwrap(),
        "overlays/single-nats/permissions.conf is a copy of deploy/nats/permissions.conf"
    );
    for secret in of_kind(&single, "Secret") {
        assert!(
            secret["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("tagrelay-nats-"),
            "{secret}"
        );
    }

    let deployment_names = |objects: &[Value]| -> Vec<String> {
        of_kind(objects, "Deployment")
            .iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!deployment_names(&single).contains(&"tagrelay-configsource".to_string()));
    let gitops = documents(&kustomize("deploy/kubernetes/overlays/single-nats-gitops"));
    assert!(deployment_names(&gitops).contains(&"tagrelay-configsource".to_string()));
    let source = of_kind(&gitops, "ConfigMap")
        .into_iter()
        .find(|c| c["data"]["TAGRELAY_CONFIG_GIT_URL"].is_string())
        .expect("the configuration source's repository");
    assert!(source["data"]["TAGRELAY_CONFIG_GIT_PATHS"].is_string());
    assert!(
        of_kind(&single, "Secret")
            .iter()
            .any(|s| s["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("tagrelay-nats-configsource")),
        "the configsource user's Secret exists for the NATS server's configuration"
    );

    let existing = documents(&kustomize("deploy/kubernetes/overlays/existing-nats"));
    assert!(of_kind(&existing, "StatefulSet").is_empty());
    let bus = of_kind(&existing, "ConfigMap")
        .into_iter()
        .find(|c| c["data"]["NATS_URL"].is_string())
        .expect("tagrelay-bus");
    assert_eq!(
        bus["data"]["NATS_URL"].as_str().unwrap().split(',').count(),
        3
    );
    assert_eq!(bus["data"]["TAGRELAY_REPLICAS"], "3");
    let policy = of_kind(&existing, "NetworkPolicy")
        .into_iter()
        .find(|p| p["metadata"]["name"] == "tagrelay")
        .unwrap();
    assert_eq!(
        policy["spec"]["egress"][1]["to"][0]["namespaceSelector"]["matchLabels"]
            ["kubernetes.io/metadata.name"],
        "nats",
        "NATS is reached in its own namespace"
    );
}

#[test]
fn a_manifest_with_an_unknown_field_is_refused_by_the_strict_validation() {
    let manifests = kustomize("deploy/kubernetes/base").replacen(
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: true\n          readOnlyRootFileSystem: true",
        1,
    );
    let (ok, report) = validate_strict(&manifests);
    assert!(!ok, "a misspelt field must fail:\n{report}");
}

/// The users and their permissions in a NATS configuration file, as
/// (user, publish allow, subscribe allow).
fn nats_users(conf: &str) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut users = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut section = "";
    for line in conf.lines().map(str::trim) {
        if let Some(user) = line.strip_prefix("user:") {
            let user = user.trim().to_string();
            users.insert(user.clone(), (Vec::new(), Vec::new()));
            current = Some(user);
        } else if line.starts_with("publish") {
            section = "publish";
        } else if line.starts_with("subscribe") {
            section = "subscribe";
            if let (Some(user), Some(list)) = (&current, line.split_once('[')) {
                let entry = users.get_mut(user).unwrap();
                for subject in list.1.split('"').skip(1).step_by(2) {
                    entry.1.push(subject.to_string());
                }
            }
        } else if line.starts_with('"') && section == "publish" {
            if let Some(user) = &current {
                users
                    .get_mut(user)
                    .unwrap()
                    .0
                    .push(line.trim_matches('"').to_string());
            }
        }
    }
    users
}

#[test]
fn the_charts_nats_users_are_deploy_nats_permissions() {
    let root = repository_root();
    let conf = std::fs::read_to_string(root.join("deploy/nats/permissions.conf")).unwrap();
    let expected = nats_users(&conf);
    assert!(expected.len() >= 4, "{expected:?}");
    let values = std::fs::read_to_string(root.join("deploy/helm/tagrelay/values.yaml")).unwrap();
    let values = &documents(&values)[0];
    let mut chart = BTreeMap::new();
    for user in values["nats"]["config"]["merge"]["authorization"]["users"]
        .as_array()
        .unwrap()
    {
        let list = |key: &str| -> Vec<String> {
            user["permissions"][key]["allow"]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        let name = user["user"].as_str().unwrap().to_string();
        assert_eq!(
            user["password"],
            format!("<< ${}_PASSWORD >>", name.to_uppercase()),
            "passwords come from the environment"
        );
        chart.insert(name, (list("publish"), list("subscribe")));
    }
    assert_eq!(
        chart, expected,
        "deploy/helm/tagrelay/values.yaml nats.config.merge.authorization must list deploy/nats/permissions.conf's users"
    );
}

/// Lints the chart with `values` (YAML) in place of its values.yaml, with the
/// Helm library: the messages of error severity (3 and above), or an empty list.
fn helm_lint(values: Option<&str>) -> Vec<Value> {
    helm_lint_with(values, None)
}

/// [`helm_lint`], with `template` (name, text) added to the chart's templates.
fn helm_lint_with(values: Option<&str>, template: Option<(&str, &str)>) -> Vec<Value> {
    let source = repository_root().join("deploy/helm/tagrelay");
    let work = tempfile::tempdir().unwrap();
    let chart = work.path().join("tagrelay");
    let (ok, text) = output(Command::new("cp").arg("-r").arg(&source).arg(&chart), None);
    assert!(ok, "{text}");
    if let Some(values) = values {
        std::fs::write(chart.join("values.yaml"), values).unwrap();
    }
    if let Some((name, text)) = template {
        std::fs::write(chart.join("templates").join(name), text).unwrap();
    }
    let (ok, text) = output(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import asyncio, json, sys, helm_sdkpy\n\
             result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(sys.argv[1]))\n\
             print(json.dumps(result))",
            )
            .arg(&chart),
        None,
    );
    assert!(ok, "helm-sdkpy (scripts/install-deps installs it): {text}");
    // The result is stdout's one line; Helm may log after it on stderr.
    let line = text.lines().next().unwrap_or_default();
    let result: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(result["TotalChartsLinted"], 1, "{result}");
    result["Messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Severity"].as_u64().unwrap_or(0) >= 3)
        .cloned()
        .collect()
}

#[test]
fn the_helm_chart_lints_with_bundled_and_with_existing_nats() {
    let errors = helm_lint(None);
    assert!(errors.is_empty(), "default values: {errors:?}");

    let defaults =
        std::fs::read_to_string(repository_root().join("deploy/helm/tagrelay/values.yaml"))
            .unwrap();
    let existing = defaults
        .replace(
            "nats:\n  enabled: true",
            "nats:\n  enabled: false",
        )
        .replace(
            "  url: \"\"",
            "  url: nats://nats-0.nats:4222,nats://nats-1.nats:4222,nats://nats-2.nats:4222",
        )
        .replace(
            "    secretMounts: []\n    #  - {namespace: flux-system, name: fleet-git}",
            "    secretMounts:\n      - {namespace: flux-system, name: fleet-git}\n      - {namespace: flux-system, name: signing-key, secretName: fleet-signing}",
        )
        .replace("    webhookSecret: \"\"", "    webhookSecret: tagrelay-webhook")
        .replace(
            "serviceMonitor:\n  # Needs the Prometheus Operator's CRDs.\n  enabled: false",
            "serviceMonitor:\n  enabled: true",
        );
    for changed in [
        "enabled: false",
        "url: nats://",
        "signing-key",
        "webhookSecret: tagrelay",
        "serviceMonitor:\n  enabled: true",
    ] {
        assert!(existing.contains(changed), "the variant sets {changed}");
    }
    let errors = helm_lint(Some(&existing));
    assert!(errors.is_empty(), "existing NATS values: {errors:?}");

    // The values are checked against values.schema.json: without a URL for
    // an existing NATS, or with a misspelt key, the lint fails.
    let no_url = existing.replace(
        "  url: nats://nats-0.nats:4222,nats://nats-1.nats:4222,nats://nats-2.nats:4222",
        "  url: \"\"",
    );
    assert!(
        !helm_lint(Some(&no_url)).is_empty(),
        "externalNats.url is required"
    );
    let misspelt = defaults.replacen("    replicas: 2", "    replica: 2", 1);
    assert!(
        !helm_lint(Some(&misspelt)).is_empty(),
        "unknown keys are refused"
    );
    let wrong_variable = defaults.replacen(
        "    httpAddrEnv: TAGRELAY_LISTEN",
        "    httpAddrEnv: TAGRELAY_LISTEN_ADDR",
        1,
    );
    assert!(
        !helm_lint(Some(&wrong_variable)).is_empty(),
        "only the services' own variables"
    );
    // And the templates are rendered: one whose output is not YAML fails.
    let broken = "{{ range $name, $s := .Values.services }}\n{{ $name }}: [\n{{ end }}\n";
    assert!(
        !helm_lint_with(None, Some(("broken.yaml", broken))).is_empty(),
        "a rendered template that is not YAML fails the lint"
    );
}
