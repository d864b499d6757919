//! Pull request titles and bodies: the commit message's template data
//! (Flux's `.AutomationObject`, `.Changed`, `.Values`) plus `.Causes`, the
//! chain `tagrelay why` prints for each change, so a reviewer sees why the
//! bot proposes it without leaving the forge.

use std::collections::BTreeMap;

use crate::message::{template_data, text_struct, MessageChange, TemplateApi};
use crate::template::{Struct, Template, TemplateError, Value};

/// The title when the annotation sets none.
pub const DEFAULT_TITLE: &str = "Update images from {{ .AutomationObject }}";

/// The body when the annotation sets none: every cause, then every change.
pub const DEFAULT_BODY: &str = "\
Image updates by tagrelay for `{{ .AutomationObject }}`.

{{ range .Causes }}- `{{ .Policy }}` selected `{{ .New }}` (was `{{ .Old }}`) at {{ .Resolved }}, after the scan of {{ .Discovered }} ({{ .Trigger }})
{{ end }}
Changes:
{{ range .Changed.Changes }}- `{{ .OldValue }}` -> `{{ .NewValue }}` ({{ .Setter }})
{{ end }}";

/// One policy move behind a request, as `why` shows it; kept by the review
/// stage between updates of the request.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CauseLink {
    /// `namespace/name` of the ImagePolicy.
    pub policy: String,
    /// The image repository.
    pub image: String,
    /// The previous selection (`(none)` for the first).
    pub old: String,
    /// The new selection.
    pub new: String,
    /// When the scan that found the tag happened, RFC 3339.
    pub discovered: String,
    /// What made the scanner look (`a registry webhook`, …).
    pub trigger: String,
    /// When the policy selected it, RFC 3339.
    pub resolved: String,
}

/// The value both templates get.
pub fn review_data(
    namespace: &str,
    name: &str,
    changes: &[MessageChange],
    values: &BTreeMap<String, String>,
    causes: &[CauseLink],
) -> Value {
    let mut data = template_data(namespace, name, changes, values, TemplateApi::V1);
    let causes = Value::List(
        causes
            .iter()
            .map(|c| {
                text_struct(&[
                    ("Policy", &c.policy),
                    ("Image", &c.image),
                    ("Old", &c.old),
                    ("New", &c.new),
                    ("Discovered", &c.discovered),
                    ("Trigger", &c.trigger),
                    ("Resolved", &c.resolved),
                ])
            })
            .collect(),
    );
    if let Value::Struct(record) = &mut data {
        let mut fields = record.fields.clone();
        fields.push(("Causes".into(), causes, false));
        data = Value::record(Struct {
            fields,
            methods: record.methods.clone(),
            stringer: record.stringer.clone(),
        });
    }
    data
}

/// Renders the title and body templates (the defaults when `None`) over
/// `data`; the title is cut to its first line, as forges show one.
pub fn render(
    title: Option<&str>,
    body: Option<&str>,
    data: &Value,
) -> Result<(String, String), TemplateError> {
    let title = Template::parse(title.unwrap_or(DEFAULT_TITLE))?.render(data)?;
    let body = Template::parse(body.unwrap_or(DEFAULT_BODY))?.render(data)?;
    let title = title.lines().next().unwrap_or_default().trim().to_string();
    Ok((title, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ObjectId;
    use tagrelay_proto::event::FileChange;

    #[test]
    fn the_default_body_names_every_cause_and_change_and_templates_see_the_commit_data() {
        let changes = [MessageChange {
            change: FileChange {
                file: "apps/app.yaml".into(),
                old: "reg/app:1.0.0".into(),
                new: "reg/app:1.1.0".into(),
                setter: "flux-system:app".into(),
            },
            object: ObjectId::default(),
            updated: None,
        }];
        let causes = [CauseLink {
            policy: "flux-system/app".into(),
            image: "reg/app".into(),
            old: "1.0.0".into(),
            new: "1.1.0".into(),
            discovered: "2026-12-04T10:00:00Z".into(),
            trigger: "a registry webhook".into(),
            resolved: "2026-12-04T10:00:01Z".into(),
        }];
        let values = BTreeMap::from([("team".to_string(), "platform".to_string())]);
        let data = review_data("flux-system", "fleet", &changes, &values, &causes);
        let (title, body) = render(None, None, &data).unwrap();
        assert_eq!(title, "Update images from flux-system/fleet");
        assert!(body.contains("- `flux-system/app` selected `1.1.0` (was `1.0.0`) at 2026-12-04T10:00:01Z, after the scan of 2026-12-04T10:00:00Z (a registry webhook)"), "{body}");
        assert!(
            body.contains("- `reg/app:1.0.0` -> `reg/app:1.1.0` (flux-system:app)"),
            "{body}"
        );
        let (title, body) = render(
            Some("{{ .Values.team }}: {{ len .Causes }} update\nsecond line"),
            Some("{{ range .Causes }}{{ .Image }}{{ end }}"),
            &data,
        )
        .unwrap();
        assert_eq!(title, "platform: 1 update");
        assert_eq!(body, "reg/app");
        assert!(render(Some("{{ .Nope.Field }}"), None, &data).is_err());
    }
}
