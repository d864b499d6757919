//! Flux v1 annotations in the pipeline: the ImageRepository and ImagePolicy
//! the committer derives for each automated container it finds under
//! `update.path`.
//!
//! Names are deterministic (a readable slug plus a hash of the automation
//! and what the object stands for), so every committer instance derives the
//! same objects and a re-run rewrites nothing. Each object carries the
//! owning automation in [`OWNER_ANNOTATION`], which is how objects whose
//! workload lost its annotation are found and deleted. The policy carries
//! the v1 filter in `FLUX_V1_FILTER_ANNOTATION` ("" for newest by creation
//! time), which the resolver reads instead of `spec.policy`.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use tagrelay_proto::config::{LocalObjectReference, Object, FLUX_V1_FILTER_ANNOTATION};
use tagrelay_proto::reference::Repository;

use tagrelay_rewrite::{V1Container, WorkloadId};
use tagrelay_validate::automation::Automation;

/// Annotation naming the automation that derived an object:
/// `ImageUpdateAutomation/<namespace>/<name>`.
pub const OWNER_ANNOTATION: &str = "tagrelay.io/owned-by";
/// Annotation of a derived policy naming its workload (Flux v1's
/// `namespace:kind/name`).
pub const WORKLOAD_ANNOTATION: &str = "tagrelay.io/flux-v1-workload";
/// Annotation of a derived policy naming its container.
pub const CONTAINER_ANNOTATION: &str = "tagrelay.io/flux-v1-container";

/// The owner value of an automation's derived objects.
pub fn owner(automation: &Automation) -> String {
    format!(
        "ImageUpdateAutomation/{}/{}",
        automation.namespace, automation.name
    )
}

fn slug(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(max).collect();
    out.trim_end_matches('-').to_string()
}

fn name(kind: &str, readable: &str, identity: &str) -> String {
    let digest = Sha256::digest(identity.as_bytes());
    let hash = hex::encode(&digest[..5]);
    let readable = slug(readable, 40);
    if readable.is_empty() {
        format!("fluxv1-{kind}-{hash}")
    } else {
        format!("fluxv1-{readable}-{hash}")
    }
}

/// The derived ImageRepository's name for `image`.
pub fn repository_name(automation: &Automation, image: &str) -> String {
    let tail = image.rsplit('/').next().unwrap_or(image);
    name("repo", tail, &format!("{}|{image}", owner(automation)))
}

/// The derived ImagePolicy's name for one container of one workload.
pub fn policy_name(automation: &Automation, workload: &WorkloadId, container: &str) -> String {
    name(
        "policy",
        &format!("{}-{container}", workload.name),
        &format!("{}|{workload}|{container}", owner(automation)),
    )
}

/// The objects derived from `containers`, keyed by bucket key, plus the
/// policy name of each container (in input order). Containers whose image
/// is not a valid repository get no objects.
pub fn derive(
    automation: &Automation,
    containers: &[V1Container],
    access: &BTreeMap<String, RegistryAccess>,
) -> (BTreeMap<String, Object>, Vec<Option<String>>) {
    let owner = owner(automation);
    let mut objects = BTreeMap::new();
    let mut names = Vec::new();
    for container in containers {
        let Ok(parsed) = Repository::parse(&container.image) else {
            names.push(None);
            continue;
        };
        let registry = access.get(parsed.registry()).cloned().unwrap_or_default();
        let repository = repository_name(automation, &container.image);
        let policy = policy_name(automation, &container.workload, &container.container);
        let repo_json = serde_json::json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1beta2",
            "kind": "ImageRepository",
            "metadata": {
                "name": repository,
                "namespace": automation.namespace,
                "annotations": {OWNER_ANNOTATION: owner},
            },
            "spec": {
                "image": container.image,
                "interval": format!("{}s", automation.interval.as_secs().max(60)),
                "insecure": registry.insecure,
                "secretRef": registry.secret_ref,
                "certSecretRef": registry.cert_secret_ref,
            },
        });
        let policy_json = serde_json::json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1beta2",
            "kind": "ImagePolicy",
            "metadata": {
                "name": policy,
                "namespace": automation.namespace,
                "annotations": {
                    OWNER_ANNOTATION: owner,
                    FLUX_V1_FILTER_ANNOTATION: container.filter.clone().unwrap_or_default(),
                    WORKLOAD_ANNOTATION: container.workload.to_string(),
                    CONTAINER_ANNOTATION: container.container,
                },
            },
            "spec": {
                "imageRepositoryRef": {"name": repository},
                "policy": {"alphabetical": {}},
            },
        });
        for json in [repo_json, policy_json] {
            if let Ok(object) = Object::decode(&json) {
                objects.insert(object.key().bucket_key(), object);
            }
        }
        names.push(Some(policy));
    }
    (objects, names)
}

/// How to reach one registry host, as the user configured it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAccess {
    /// Plain HTTP allowed.
    pub insecure: bool,
    /// Docker `config.json` Secret.
    pub secret_ref: Option<LocalObjectReference>,
    /// CA / client certificate Secret.
    pub cert_secret_ref: Option<LocalObjectReference>,
}

/// Flux v1 workloads name only an image, so a derived ImageRepository takes
/// its registry access (plain HTTP, credentials, certificates) from an
/// ImageRepository the user applied for the same registry host in the
/// automation's namespace. The first such repository by key wins.
pub fn registry_access(
    automation: &Automation,
    objects: &[Object],
) -> BTreeMap<String, RegistryAccess> {
    let mut access = BTreeMap::new();
    for object in objects {
        let Object::ImageRepository(repository) = object else {
            continue;
        };
        if object.namespace() != automation.namespace
            || repository
                .metadata
                .annotations
                .contains_key(OWNER_ANNOTATION)
        {
            continue;
        }
        if let Ok(parsed) = Repository::parse(&repository.spec.image) {
            access
                .entry(parsed.registry().to_string())
                .or_insert_with(|| RegistryAccess {
                    insecure: repository.spec.insecure,
                    secret_ref: repository.spec.secret_ref.clone(),
                    cert_secret_ref: repository.spec.cert_secret_ref.clone(),
                });
        }
    }
    access
}

/// Whether `object` was derived by the automation owning `owner`.
pub fn is_owned_by(object: &Object, owner: &str) -> bool {
    object
        .metadata()
        .annotations
        .get(OWNER_ANNOTATION)
        .is_some_and(|o| o == owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tagrelay_proto::config::{validate, Kind};

    fn automation() -> Automation {
        Automation {
            namespace: "flux-system".into(),
            name: "fleet".into(),
            url: "file:///r.git".into(),
            secret: None,
            proxy_secret: None,
            checkout: tagrelay_validate::automation::Checkout::Branch("main".into()),
            push_branch: "main".into(),
            refspec_target: None,
            push_options: BTreeMap::new(),
            path: String::new(),
            author_name: "bot".into(),
            author_email: "bot@example.com".into(),
            signing_key: None,
            pull_request: None,
            message_template: None,
            message_values: BTreeMap::new(),
            template_api: tagrelay_rewrite::message::TemplateApi::V1,
            selector: Default::default(),
            interval: std::time::Duration::from_secs(60),
            timeout: std::time::Duration::from_secs(60),
            suspend: false,
        }
    }

    fn container(name: &str, image: &str, filter: Option<&str>) -> V1Container {
        V1Container {
            workload: WorkloadId {
                kind: "Deployment".into(),
                namespace: Some("apps".into()),
                name: "Web.App".into(),
            },
            container: name.into(),
            image: image.into(),
            current_tag: Some("1.0".into()),
            filter: filter.map(str::to_string),
            line: 10,
        }
    }

    #[test]
    fn derived_objects_are_valid_deterministic_and_carry_filter_and_owner() {
        let a = automation();
        let containers = [
            container("web", "registry.example/org/web", Some("semver:~1.0")),
            container("sidecar", "registry.example/org/web", None),
            container("bad", "UPPER/Case:x:y", None),
        ];
        let (objects, names) = derive(&a, &containers, &BTreeMap::new());
        assert_eq!(
            derive(&a, &containers, &BTreeMap::new()),
            (objects.clone(), names.clone())
        );
        assert_eq!(names[2], None);
        let kinds: Vec<Kind> = objects.values().map(Object::kind).collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == Kind::ImageRepository)
                .count(),
            1,
            "one repository per image"
        );
        assert_eq!(kinds.iter().filter(|k| **k == Kind::ImagePolicy).count(), 2);
        for object in objects.values() {
            assert!(validate(object).is_empty(), "{:?}", validate(object));
            assert!(is_owned_by(
                object,
                "ImageUpdateAutomation/flux-system/fleet"
            ));
            assert!(object.metadata().name.starts_with("fluxv1-"));
        }
        let Some(Object::ImagePolicy(web)) = objects
            .values()
            .find(|o| o.metadata().name == names[0].clone().unwrap_or_default())
        else {
            panic!("web policy missing")
        };
        assert_eq!(
            web.metadata.annotations[FLUX_V1_FILTER_ANNOTATION],
            "semver:~1.0"
        );
        assert_eq!(
            web.metadata.annotations[WORKLOAD_ANNOTATION],
            "apps:deployment/Web.App"
        );
        let Some(Object::ImagePolicy(sidecar)) = objects
            .values()
            .find(|o| o.metadata().name == names[1].clone().unwrap_or_default())
        else {
            panic!("sidecar policy missing")
        };
        assert_eq!(sidecar.metadata.annotations[FLUX_V1_FILTER_ANNOTATION], "");
    }

    #[test]
    fn derived_repositories_inherit_the_registry_access_the_user_configured() {
        let a = automation();
        let applied = tagrelay_proto::config::load_documents(
            "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: mine\n  namespace: flux-system\nspec:\n  image: 127.0.0.1:5000/demo/app\n  interval: 1m\n  insecure: true\n  secretRef:\n    name: pull\n",
        )
        .unwrap();
        let objects = vec![Object::decode(&applied[0].value).unwrap()];
        let access = registry_access(&a, &objects);
        let containers = [
            container("web", "127.0.0.1:5000/demo/legacy", None),
            container("other", "registry.example/org/web", None),
        ];
        let (derived, _) = derive(&a, &containers, &access);
        let repositories: Vec<_> = derived
            .values()
            .filter_map(|o| match o {
                Object::ImageRepository(r) => Some(r),
                _ => None,
            })
            .collect();
        let local = repositories
            .iter()
            .find(|r| r.spec.image.starts_with("127.0.0.1"))
            .unwrap();
        assert!(local.spec.insecure);
        assert_eq!(local.spec.secret_ref.as_ref().unwrap().name, "pull");
        let remote = repositories
            .iter()
            .find(|r| r.spec.image.starts_with("registry"))
            .unwrap();
        assert!(!remote.spec.insecure && remote.spec.secret_ref.is_none());
    }
}
