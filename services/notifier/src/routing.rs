//! Which Providers an event goes to: Flux's Alert matching, rule for rule
//! (`eventSources` by kind, namespace, name, `*` and `matchLabels`;
//! `eventSeverity`; `inclusionList` then `exclusionList` on the message;
//! suspended Alerts and Providers skipped), and the metadata an Alert adds.
//!
//! Pure: the configuration is passed in.

use std::collections::BTreeMap;

use regex::Regex;
use tagrelay_proto::config::{Alert, Kind, ObjectKey, Provider, COMMIT_STATUS_PROVIDERS};

use crate::flux_event::{FluxEvent, INFO};

/// One delivery to make: an event, with its Alert's metadata merged in,
/// for one Provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The Provider delivered to.
    pub provider: ObjectKey,
    /// The Alert that routed it (the first by key, when several did).
    pub alert: ObjectKey,
    /// The event as the Provider receives it.
    pub event: FluxEvent,
}

/// The routes of `event`: one per Provider at most, however many Alerts
/// route the event to it. `labels_of` gives the labels of a stored object,
/// for `matchLabels`.
pub fn routes<'a>(
    event: &FluxEvent,
    alerts: impl IntoIterator<Item = &'a Alert>,
    providers: &BTreeMap<ObjectKey, Provider>,
    labels_of: impl Fn(&ObjectKey) -> Option<BTreeMap<String, String>>,
) -> Vec<Route> {
    let mut alerts: Vec<&Alert> = alerts.into_iter().collect();
    alerts.sort_by_key(|a| (a.metadata.namespace.clone(), a.metadata.name.clone()));
    let mut out: Vec<Route> = Vec::new();
    for alert in alerts {
        if alert.spec.suspend || !alert_matches(alert, event, &labels_of) {
            continue;
        }
        let namespace = alert.metadata.namespace.clone().unwrap_or_default();
        let provider_key =
            ObjectKey::new(Kind::Provider, &namespace, &alert.spec.provider_ref.name);
        let Some(provider) = providers.get(&provider_key) else {
            continue;
        };
        if provider.spec.suspend || out.iter().any(|r| r.provider == provider_key) {
            continue;
        }
        let commit_status = COMMIT_STATUS_PROVIDERS.contains(&provider.spec.provider_type.as_str());
        if commit_status && event.commit().is_none() {
            continue;
        }
        out.push(Route {
            provider: provider_key,
            alert: ObjectKey::new(Kind::Alert, &namespace, &alert.metadata.name),
            event: with_alert_metadata(event, alert),
        });
    }
    out
}

/// Whether `alert` routes `event`, before its Provider is looked at.
fn alert_matches(
    alert: &Alert,
    event: &FluxEvent,
    labels_of: &impl Fn(&ObjectKey) -> Option<BTreeMap<String, String>>,
) -> bool {
    let alert_namespace = alert.metadata.namespace.as_deref().unwrap_or_default();
    let object = &event.involved_object;
    let severity = alert.spec.severity();
    if event.severity != severity && severity != INFO {
        return false;
    }
    let source_matches = alert.spec.event_sources.iter().any(|source| {
        let namespace = source.namespace.as_deref().unwrap_or(alert_namespace);
        if object.namespace != namespace || object.kind != source.kind {
            return false;
        }
        if source.name != "*" && source.name != object.name {
            return false;
        }
        let Some(wanted) = &source.match_labels else {
            return true;
        };
        let Some(kind) = Kind::from_kind_name(&object.kind) else {
            return false;
        };
        let labels =
            labels_of(&ObjectKey::new(kind, &object.namespace, &object.name)).unwrap_or_default();
        wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
    });
    if !source_matches {
        return false;
    }
    // Patterns were checked at apply; one that does not compile matches
    // nothing, as in Flux.
    let matches =
        |pattern: &String| Regex::new(pattern).is_ok_and(|re| re.is_match(&event.message));
    let included =
        alert.spec.inclusion_list.is_empty() || alert.spec.inclusion_list.iter().any(matches);
    included && !alert.spec.exclusion_list.iter().any(matches)
}

/// `event` with the Alert's metadata: `eventMetadata`, then `summary`,
/// then the event's own keys, each overriding the one before (Flux's RFC
/// 0008 order).
fn with_alert_metadata(event: &FluxEvent, alert: &Alert) -> FluxEvent {
    let mut metadata = alert.spec.event_metadata.clone();
    if let Some(summary) = &alert.spec.summary {
        metadata.insert("summary".to_string(), summary.clone());
    }
    metadata.extend(event.metadata.clone());
    FluxEvent {
        metadata,
        ..event.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flux_event::{InvolvedObject, ERROR};
    use tagrelay_proto::config::{load_documents, Object};

    fn objects(yaml: &str) -> Vec<Object> {
        load_documents(yaml)
            .unwrap()
            .iter()
            .map(|d| Object::decode(&d.value).unwrap())
            .collect()
    }

    fn config(yaml: &str) -> (Vec<Alert>, BTreeMap<ObjectKey, Provider>) {
        let mut alerts = Vec::new();
        let mut providers = BTreeMap::new();
        for object in objects(yaml) {
            let key = object.key();
            match object {
                Object::Alert(a) => alerts.push(a),
                Object::Provider(p) => {
                    providers.insert(key, p);
                }
                _ => {}
            }
        }
        (alerts, providers)
    }

    fn event(kind: &str, name: &str, severity: &str, message: &str) -> FluxEvent {
        FluxEvent {
            involved_object: InvolvedObject {
                kind: kind.into(),
                namespace: "apps".into(),
                name: name.into(),
                api_version: "image.toolkit.fluxcd.io/v1".into(),
            },
            severity: severity.into(),
            timestamp: "2026-12-05T10:00:00Z".into(),
            message: message.into(),
            reason: "Succeeded".into(),
            metadata: BTreeMap::new(),
            reporting_controller: "tagrelay-resolver".into(),
            reporting_instance: "resolver/a".into(),
        }
    }

    const PROVIDERS: &str = r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: hook, namespace: apps}
spec: {type: generic, address: "http://127.0.0.1:1/hook"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: status, namespace: apps}
spec: {type: github, address: "https://github.com/org/fleet", secretRef: {name: gh}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: paused, namespace: apps}
spec: {type: generic, address: "http://127.0.0.1:1/hook", suspend: true}
"#;

    fn routed(alerts_yaml: &str, event: &FluxEvent) -> Vec<String> {
        let (alerts, providers) = config(&format!("{PROVIDERS}---\n{alerts_yaml}"));
        let labels = |key: &ObjectKey| {
            (key.name == "labelled")
                .then(|| BTreeMap::from([("team".to_string(), "web".to_string())]))
        };
        routes(event, &alerts, &providers, labels)
            .into_iter()
            .map(|r| r.provider.name)
            .collect()
    }

    fn alert(spec: &str) -> String {
        format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: a, namespace: apps}}\nspec: {spec}\n"
        )
    }

    #[test]
    fn sources_match_by_kind_namespace_name_and_wildcard() {
        let info = event("ImagePolicy", "app", INFO, "moved");
        let by_name =
            alert("{providerRef: {name: hook}, eventSources: [{kind: ImagePolicy, name: app}]}");
        assert_eq!(routed(&by_name, &info), ["hook"]);
        let other_name =
            alert("{providerRef: {name: hook}, eventSources: [{kind: ImagePolicy, name: web}]}");
        assert!(routed(&other_name, &info).is_empty());
        let other_kind = alert(
            "{providerRef: {name: hook}, eventSources: [{kind: ImageRepository, name: '*'}]}",
        );
        assert!(routed(&other_kind, &info).is_empty());
        let other_namespace = alert(
            "{providerRef: {name: hook}, eventSources: [{kind: ImagePolicy, name: '*', namespace: prod}]}",
        );
        assert!(routed(&other_namespace, &info).is_empty());
        let wildcard =
            alert("{providerRef: {name: hook}, eventSources: [{kind: ImagePolicy, name: '*'}]}");
        assert_eq!(routed(&wildcard, &info), ["hook"]);
    }

    #[test]
    fn match_labels_need_the_objects_labels() {
        let spec = "{providerRef: {name: hook}, eventSources: [{kind: ImagePolicy, name: '*', matchLabels: {team: web}}]}";
        assert_eq!(
            routed(&alert(spec), &event("ImagePolicy", "labelled", INFO, "m")),
            ["hook"]
        );
        assert!(routed(&alert(spec), &event("ImagePolicy", "bare", INFO, "m")).is_empty());
    }

    #[test]
    fn severity_error_takes_only_errors_and_info_takes_all() {
        let errors_only = alert(
            "{providerRef: {name: hook}, eventSeverity: error, eventSources: [{kind: ImagePolicy, name: '*'}]}",
        );
        assert!(routed(&errors_only, &event("ImagePolicy", "app", INFO, "m")).is_empty());
        assert_eq!(
            routed(&errors_only, &event("ImagePolicy", "app", ERROR, "m")),
            ["hook"]
        );
    }

    #[test]
    fn inclusion_then_exclusion_filter_the_message() {
        let spec = "{providerRef: {name: hook}, eventSources: [{kind: ImagePolicy, name: '*'}], inclusionList: ['^Latest'], exclusionList: ['rc']}";
        let a = alert(spec);
        assert_eq!(
            routed(&a, &event("ImagePolicy", "app", INFO, "Latest 1.0")),
            ["hook"]
        );
        assert!(routed(&a, &event("ImagePolicy", "app", INFO, "other")).is_empty());
        assert!(routed(&a, &event("ImagePolicy", "app", INFO, "Latest 1.0-rc.1")).is_empty());
    }

    #[test]
    fn suspended_alerts_and_providers_and_missing_providers_route_nothing() {
        let info = event("ImagePolicy", "app", INFO, "m");
        let suspended = alert(
            "{providerRef: {name: hook}, suspend: true, eventSources: [{kind: ImagePolicy, name: '*'}]}",
        );
        assert!(routed(&suspended, &info).is_empty());
        let paused =
            alert("{providerRef: {name: paused}, eventSources: [{kind: ImagePolicy, name: '*'}]}");
        assert!(routed(&paused, &info).is_empty());
        let missing =
            alert("{providerRef: {name: nope}, eventSources: [{kind: ImagePolicy, name: '*'}]}");
        assert!(routed(&missing, &info).is_empty());
    }

    #[test]
    fn commit_status_providers_take_only_events_with_a_commit() {
        let spec = "{providerRef: {name: status}, eventSources: [{kind: ImageUpdateAutomation, name: '*'}]}";
        let mut pushed = event("ImageUpdateAutomation", "fleet", INFO, "pushed");
        assert!(routed(&alert(spec), &pushed).is_empty());
        pushed
            .metadata
            .insert("revision".into(), "main@sha1:abc".into());
        assert_eq!(routed(&alert(spec), &pushed), ["status"]);
    }

    #[test]
    fn two_alerts_to_one_provider_deliver_once_with_the_first_alerts_metadata() {
        let yaml = format!(
            "{}---\n{}",
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: b, namespace: apps}\nspec: {providerRef: {name: hook}, eventSources: [{kind: ImagePolicy, name: '*'}], eventMetadata: {env: b}}\n",
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: a, namespace: apps}\nspec: {providerRef: {name: hook}, summary: deploys, eventSources: [{kind: ImagePolicy, name: '*'}], eventMetadata: {env: a, revision: ignored}}\n"
        );
        let (alerts, providers) = config(&format!("{PROVIDERS}---\n{yaml}"));
        let mut moved = event("ImagePolicy", "app", INFO, "m");
        moved
            .metadata
            .insert("revision".into(), "main@sha1:1".into());
        let out = routes(&moved, &alerts, &providers, |_| None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].alert.name, "a");
        let metadata: Vec<(&str, &str)> = out[0]
            .event
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            metadata,
            [
                ("env", "a"),
                ("revision", "main@sha1:1"),
                ("summary", "deploys")
            ]
        );
    }
}
