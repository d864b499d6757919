//! The template engine against Flux's documented templates.
//!
//! Each case is a template from Flux's documentation (the ImageUpdateAutomation
//! spec's `.Changed.Objects` loop, its Sprig example, the Gerrit `Change-Id`
//! and Gitea `print`/`println` examples, `messageTemplateValues`, the
//! controller's default message and its `ResultV2` test template), this
//! repository's example, and one exercising the rest of the language. The
//! expected text is what Go's `text/template` printed for the same data
//! (Go 1.19, with `lower`, `upper`, `contains`, `trimPrefix`, `default`,
//! `toString`, `sha256sum`, `trunc` defined as Sprig defines them), including
//! Go's quirks: the blank line a `{{ end -}}` leaves inside a nested range,
//! `Kustomization//` for an object with no name, `<no value>` for a missing
//! key.

use std::collections::BTreeMap;

use tagrelay_proto::event::FileChange;

use super::*;
use crate::message::{render, template_data, MessageChange, ObjectId, TemplateApi};

fn object(api: &str, kind: &str, name: &str, namespace: &str) -> ObjectId {
    ObjectId {
        api_version: api.into(),
        kind: kind.into(),
        name: name.into(),
        namespace: namespace.into(),
    }
}

fn change(file: &str, object: ObjectId, old: &str, new: &str, setter: &str) -> MessageChange {
    MessageChange {
        change: FileChange {
            file: file.into(),
            old: old.into(),
            new: new.into(),
            setter: setter.into(),
        },
        object,
        updated: None,
    }
}

/// The data every case renders: three files, four changes, one object
/// without name or namespace (a kustomization.yaml), given out of order.
fn changes() -> Vec<MessageChange> {
    let kustomization = object("kustomize.config.k8s.io/v1beta1", "Kustomization", "", "");
    vec![
        change(
            "apps/podinfo.yaml",
            object("apps/v1", "Deployment", "podinfo", "apps"),
            "ghcr.io/stefanprodan/podinfo:5.0.0",
            "ghcr.io/stefanprodan/podinfo:5.0.3",
            "flux-system:podinfo",
        ),
        change(
            "apps/kustomization.yaml",
            kustomization.clone(),
            "1.0.0",
            "1.1.0",
            "flux-system:app:tag",
        ),
        change(
            "apps/kustomization.yaml",
            kustomization,
            "5.0.0",
            "5.0.3",
            "flux-system:podinfo:tag",
        ),
        change(
            "apps/app.yaml",
            object("apps/v1", "Deployment", "app", "apps"),
            "registry.example/app:1.0.0",
            "registry.example/app:1.1.0",
            "flux-system:app",
        ),
    ]
}

fn values() -> BTreeMap<String, String> {
    BTreeMap::from([("cluster".to_string(), "prod".to_string())])
}

const CASES: &[(&str, &str, &str)] = &[
    (
        "default",
        r#"Update from image update automation"#,
        r#"Update from image update automation"#,
    ),
    (
        "example",
        r#"Automated image update

{{ range .Changed.Changes -}}
- {{ .OldValue }} -> {{ .NewValue }}
{{ end -}}
"#,
        r#"Automated image update

- registry.example/app:1.0.0 -> registry.example/app:1.1.0
- 1.0.0 -> 1.1.0
- 5.0.0 -> 5.0.3
- ghcr.io/stefanprodan/podinfo:5.0.0 -> ghcr.io/stefanprodan/podinfo:5.0.3
"#,
    ),
    (
        "objects",
        r#"Automated image update

Automation name: {{ .AutomationObject }}

Files:
{{ range $filename, $_ := .Changed.FileChanges -}}
- {{ $filename }}
{{ end -}}

Objects:
{{ range $resource, $changes := .Changed.Objects -}}
- {{ $resource.Kind }} {{ $resource.Name }}
  Changes:
{{- range $_, $change := $changes }}
    - {{ $change.OldValue }} -> {{ $change.NewValue }}
{{ end -}}
{{ end -}}
"#,
        r#"Automated image update

Automation name: flux-system/fleet

Files:
- apps/app.yaml
- apps/kustomization.yaml
- apps/podinfo.yaml
Objects:
- Deployment app
  Changes:
    - registry.example/app:1.0.0 -> registry.example/app:1.1.0
- Deployment podinfo
  Changes:
    - ghcr.io/stefanprodan/podinfo:5.0.0 -> ghcr.io/stefanprodan/podinfo:5.0.3
- Kustomization 
  Changes:
    - 1.0.0 -> 1.1.0

    - 5.0.0 -> 5.0.3
"#,
    ),
    (
        "functions",
        r#"Automated image update

Automation name: {{ .AutomationObject }}

Files:
{{ range $filename, $_ := .Changed.FileChanges -}}
- {{ $filename }}
{{ end -}}

Objects:
{{ range $resource, $changes := .Changed.Objects -}}
- {{ $resource.Kind | lower }} {{ $resource.Name | lower }}
  Changes:
{{- range $_, $change := $changes }}
  {{ if contains "5.0.3" $change.NewValue -}}
    - {{ $change.OldValue }} -> {{ $change.NewValue }}
  {{ else -}}
    [skip ci] wrong image
  {{ end -}}
{{ end -}}
{{ end -}}
"#,
        r#"Automated image update

Automation name: flux-system/fleet

Files:
- apps/app.yaml
- apps/kustomization.yaml
- apps/podinfo.yaml
Objects:
- deployment app
  Changes:
  [skip ci] wrong image
  - deployment podinfo
  Changes:
  - ghcr.io/stefanprodan/podinfo:5.0.0 -> ghcr.io/stefanprodan/podinfo:5.0.3
  - kustomization 
  Changes:
  [skip ci] wrong image
  
  - 5.0.0 -> 5.0.3
  "#,
    ),
    (
        "gerrit",
        r#"Perform automatic image update

Automation name: {{ .AutomationObject }}

{{- $ChangeId := .AutomationObject -}}
{{- $ChangeId = printf "%s%s" $ChangeId ( .Changed.FileChanges | toString ) -}}
{{- $ChangeId = printf "%s%s" $ChangeId ( .Changed.Objects | toString ) -}}
{{- $ChangeId = printf "%s%s" $ChangeId ( .Changed.Changes | toString ) }}
Change-Id: {{ printf "I%s" ( sha256sum $ChangeId | trunc 40 ) }}
"#,
        r#"Perform automatic image update

Automation name: flux-system/fleet
Change-Id: I2f53171be809eb0ecc5831bf89c310c0f1a95ecf
"#,
    ),
    (
        "gitea",
        r#"{{range .Changed.Changes}}{{print .OldValue}} -> {{println .NewValue}}{{end}}"#,
        r#"registry.example/app:1.0.0 -> registry.example/app:1.1.0
1.0.0 -> 1.1.0
5.0.0 -> 5.0.3
ghcr.io/stefanprodan/podinfo:5.0.0 -> ghcr.io/stefanprodan/podinfo:5.0.3
"#,
    ),
    (
        "values",
        r#"Automated image update by Flux for cluster {{ .Values.cluster }}."#,
        r#"Automated image update by Flux for cluster prod."#,
    ),
    (
        "resultv2",
        r#"Commit summary with ResultV2

Automation: {{ .AutomationObject }}

{{ range $filename, $objchange := .Changed.FileChanges -}}
- File: {{ $filename }}
{{- range $obj, $changes := $objchange }}
  - Object: {{ $obj.Kind }}/{{ $obj.Namespace }}/{{ $obj.Name }}
    Changes:
{{- range $_ , $change := $changes }}
    - {{ $change.OldValue }} -> {{ $change.NewValue }}
{{ end -}}
{{ end -}}
{{ end -}}
"#,
        r#"Commit summary with ResultV2

Automation: flux-system/fleet

- File: apps/app.yaml
  - Object: Deployment/apps/app
    Changes:
    - registry.example/app:1.0.0 -> registry.example/app:1.1.0
- File: apps/kustomization.yaml
  - Object: Kustomization//
    Changes:
    - 1.0.0 -> 1.1.0

    - 5.0.0 -> 5.0.3
- File: apps/podinfo.yaml
  - Object: Deployment/apps/podinfo
    Changes:
    - ghcr.io/stefanprodan/podinfo:5.0.0 -> ghcr.io/stefanprodan/podinfo:5.0.3
"#,
    ),
    (
        "misc",
        r#"{{/* a comment */ -}}
{{ len .Changed.Changes }} changes; {{ with .Values.missing }}has{{ else }}none{{ end }} {{ .Values.missing }}
{{ if eq .AutomationObject.Name "fleet" "other" }}fleet{{ else if .Values.cluster }}other{{ end }}
{{ $first := index .Changed.Changes 0 }}{{ $first.Setter | upper }} {{ (index .Changed.Changes 1).NewValue | printf "%q" }}
{{ range $i, $c := .Changed.Changes }}{{ if $i }}, {{ end }}{{ $i }}={{ $c.Setter | trimPrefix "flux-system:" }}{{ end }}
{{ print 1 2 "a" "b" 3 }} {{ println "x" 2 }}{{ .Changed.Changes | len | printf "%d-%v" 7 }}
{{ and 1 0 "x" }} {{ or 0 "" "y" }} {{ not .Values }} {{ default "dflt" .Values.missing }}
{{ range .Values }}{{ . }}{{ end }} {{ .AutomationObject.Namespace }} {{ .Changed }}
"#,
        r#"4 changes; none <no value>
fleet
FLUX-SYSTEM:APP "1.1.0"
0=app, 1=app:tag, 2=podinfo:tag, 3=podinfo
1 2ab3 x 2
7-4
0 y false dflt
prod flux-system {map[apps/app.yaml:map[{{{apps/v1 Deployment} {app apps}}}:[{registry.example/app:1.0.0 registry.example/app:1.1.0 flux-system:app}]] apps/kustomization.yaml:map[{{{kustomize.config.k8s.io/v1beta1 Kustomization} { }}}:[{1.0.0 1.1.0 flux-system:app:tag} {5.0.0 5.0.3 flux-system:podinfo:tag}]] apps/podinfo.yaml:map[{{{apps/v1 Deployment} {podinfo apps}}}:[{ghcr.io/stefanprodan/podinfo:5.0.0 ghcr.io/stefanprodan/podinfo:5.0.3 flux-system:podinfo}]]]}
"#,
    ),
];

#[test]
fn flux_documented_templates_render_as_go_renders_them() {
    for (name, template, expected) in CASES {
        let got = render(
            Some(template),
            "flux-system",
            "fleet",
            &changes(),
            &values(),
            TemplateApi::V1,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, *expected, "{name}");
    }
}

#[test]
fn no_template_is_flux_default_message() {
    let got = render(
        None,
        "flux-system",
        "fleet",
        &changes(),
        &values(),
        TemplateApi::V1,
    )
    .unwrap();
    assert_eq!(got, "Update from image update automation");
    let got = render(
        Some(""),
        "flux-system",
        "fleet",
        &changes(),
        &values(),
        TemplateApi::V1,
    )
    .unwrap();
    assert_eq!(got, "Update from image update automation");
}

#[test]
fn change_order_does_not_depend_on_input_order() {
    // The same changes, files in another order (order within a file is the
    // file's own, and stays).
    let mut reversed = changes();
    reversed.rotate_left(1);
    let data = template_data(
        "flux-system",
        "fleet",
        &changes(),
        &values(),
        TemplateApi::V1,
    );
    assert_eq!(
        data,
        template_data(
            "flux-system",
            "fleet",
            &reversed,
            &values(),
            TemplateApi::V1
        )
    );
}

#[test]
fn errors_name_the_line_and_the_problem_as_go_does() {
    let cases = [
        (
            "a\n{{ .Changed.Nope }}",
            "line 2: can't evaluate field Nope",
        ),
        ("{{ .Updated.Images }}", "can't evaluate field Updated"),
        (
            "{{ sprig_unknown . }}",
            "function \"sprig_unknown\" not defined",
        ),
        ("{{ if .Values }}x", "unexpected EOF in if"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ \"open }}", "unterminated quoted string"),
        ("{{ .Values", "unclosed action"),
        ("{{ $x }}", "undefined variable: $x"),
        ("{{ template \"x\" }}", "not supported"),
        ("{{ range 3 }}{{ end }}", "range can't iterate over 3"),
        ("{{ lower 3 }}", "expected string"),
        ("{{ repeat 100000000000 \"ab\" }}", "result longer than"),
    ];
    for (template, expected) in cases {
        let err = render(
            Some(template),
            "ns",
            "a",
            &changes(),
            &values(),
            TemplateApi::V1,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains(expected),
            "{template:?}: {err} (wanted {expected:?})"
        );
    }
}

#[test]
fn go_syntax_details() {
    let data = Value::record(Struct::default());
    let cases = [
        ("{{- \"a\" -}}  \n  {{ \"b\" }}", "ab"),
        ("x  {{- /* gone */ -}}  y", "xy"),
        ("{{ -1 }} {{ 1 }}", "-1 1"),
        ("{{ `raw\\n` }} {{ \"esc\\t\" }}", "raw\\n esc\t"),
        ("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", "2"),
        ("{{ (print \"ab\" | len | print) }}", "2"),
        ("{{ if false }}a{{ else if true }}b{{ else }}c{{ end }}", "b"),
        ("{{ with \"v\" }}{{ . }}{{ end }}", "v"),
        ("{{ trunc -3 \"abcdef\" }} {{ trunc 2 \"abcdef\" }}", "def ab"),
        ("{{ title \"hello wide world\" }} {{ replace \"l\" \"L\" \"hello\" }}", "Hello Wide World heLLo"),
        ("{{ quote \"a\" 1 }} {{ squote \"b\" }} {{ nospace \" a b \" }}", "\"a\" \"1\" 'b' ab"),
        ("{{ hasPrefix \"ab\" \"abc\" }} {{ hasSuffix \"bc\" \"abc\" }} {{ trimSuffix \".yaml\" \"x.yaml\" }}", "true true x"),
        ("{{ printf \"%d%%\" 5 }} {{ printf \"%s\" }} {{ printf \"%s\" 1 2 }}", "5% %!s(MISSING) 1%!(EXTRA 2)"),
        ("{{ lt 1 2 }} {{ ge \"b\" \"a\" }} {{ ne 1 1 }}", "true true false"),
    ];
    for (template, expected) in cases {
        let got = Template::parse(template)
            .and_then(|t| t.render(&data))
            .unwrap_or_else(|e| panic!("{template:?}: {e}"));
        assert_eq!(got, expected, "{template:?}");
    }
}

#[test]
fn hostile_nesting_is_refused_not_a_stack_overflow() {
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(10_000), ")".repeat(10_000));
    let err = Template::parse(&parens).unwrap_err();
    assert!(err.to_string().contains("nested deeper than"), "{err}");
    let blocks = format!(
        "{}x{}",
        "{{ if 1 }}".repeat(10_000),
        "{{ end }}".repeat(10_000)
    );
    let err = Template::parse(&blocks).unwrap_err();
    assert!(err.to_string().contains("nested deeper than"), "{err}");
    let fine = format!("{}x{}", "{{ if 1 }}".repeat(10), "{{ end }}".repeat(10));
    assert_eq!(
        Template::parse(&fine).unwrap().render(&Value::Nil).unwrap(),
        "x"
    );
}

/// Two Setters changes of two policies in two files, a third marker of the
/// first policy (`:tag`) in the second file, and a Flux v1 change that
/// `.Updated` never saw.
fn updated_changes() -> Vec<MessageChange> {
    let updated = |policy: &str, image: &str| crate::message::UpdatedImage {
        policy_namespace: "flux-system".into(),
        policy_name: policy.into(),
        image: image.into(),
    };
    let deployment = object("apps/v1", "Deployment", "podinfo", "apps");
    let release = object("helm.toolkit.fluxcd.io/v2", "HelmRelease", "myapp", "apps");
    let mut podinfo = change(
        "apps/podinfo.yaml",
        deployment.clone(),
        "ghcr.io/stefanprodan/podinfo:5.0.0",
        "ghcr.io/stefanprodan/podinfo:5.0.3",
        "flux-system:podinfo",
    );
    podinfo.updated = Some(updated("podinfo", "ghcr.io/stefanprodan/podinfo:5.0.3"));
    let mut myapp = change(
        "apps/myapp.yaml",
        release.clone(),
        "3.9.0",
        "4.0.0",
        "flux-system:myapp:tag",
    );
    myapp.updated = Some(updated("myapp", "nginx:4.0.0"));
    let mut podinfo_tag = change(
        "apps/myapp.yaml",
        release,
        "5.0.0",
        "5.0.3",
        "flux-system:podinfo:tag",
    );
    podinfo_tag.updated = Some(updated("podinfo", "ghcr.io/stefanprodan/podinfo:5.0.3"));
    let v1 = change(
        "apps/legacy.yaml",
        deployment,
        "1.0",
        "1.1",
        "v1:deployment/legacy/app",
    );
    vec![podinfo, myapp, podinfo_tag, v1]
}

#[test]
fn flux_v1beta1_updated_images_render_as_flux_guides_show() {
    let changes = updated_changes();
    let none = BTreeMap::new();
    let got = render(
        Some("{{range .Updated.Images}}{{println .}}{{end}}"),
        "flux-system",
        "flux-system",
        &changes,
        &none,
        TemplateApi::Beta,
    )
    .unwrap();
    assert_eq!(
        got, "nginx:4.0.0\nghcr.io/stefanprodan/podinfo:5.0.3\n",
        "each distinct image once, as the policy reported it, one per line"
    );
    let got = render(
        Some("Auto-update images\n{{ range .Updated.Images }}\n- {{.}}\n{{ end }}"),
        "flux-system",
        "flux-system",
        &changes,
        &none,
        TemplateApi::Beta,
    )
    .unwrap();
    assert_eq!(
        got,
        "Auto-update images\n\n- nginx:4.0.0\n\n- ghcr.io/stefanprodan/podinfo:5.0.3\n"
    );
}

#[test]
fn flux_v1beta1_updated_files_objects_and_image_methods() {
    let changes = updated_changes();
    let none = BTreeMap::new();
    let template = "Automated image update

Automation name: {{ .AutomationObject }}

Files:
{{ range $filename, $_ := .Updated.Files -}}
- {{ $filename }}
{{ end -}}

Objects:
{{ range $resource, $_ := .Updated.Objects -}}
- {{ $resource.Kind }} {{ $resource.Name }}
{{ end -}}

Images:
{{ range .Updated.Images -}}
- {{.}}
{{ end -}}
";
    let got = render(
        Some(template),
        "flux-system",
        "fleet",
        &changes,
        &none,
        TemplateApi::Beta,
    )
    .unwrap();
    assert_eq!(
        got,
        "Automated image update

Automation name: flux-system/fleet

Files:
- apps/myapp.yaml
- apps/podinfo.yaml
Objects:
- Deployment podinfo
- HelmRelease myapp
Images:
- nginx:4.0.0
- ghcr.io/stefanprodan/podinfo:5.0.3
"
    );
    let got = render(
        Some("{{range .Updated.Images}}{{.Registry}} {{.Repository}} {{.Identifier}} {{.Name}} {{.Policy}} {{.Policy.Name}};{{end}}"),
        "flux-system",
        "fleet",
        &changes,
        &none,
        TemplateApi::Beta,
    )
    .unwrap();
    assert_eq!(
        got,
        "index.docker.io library/nginx 4.0.0 index.docker.io/library/nginx:4.0.0 flux-system/myapp myapp;\
ghcr.io stefanprodan/podinfo 5.0.3 ghcr.io/stefanprodan/podinfo:5.0.3 flux-system/podinfo podinfo;"
    );
    let got = render(
        Some("{{range $f, $r := .Updated.Files}}{{$f}}:{{range $o, $i := $r.Objects}} {{$o.Kind}}={{len $i}}{{end}};{{end}}"),
        "flux-system",
        "fleet",
        &changes,
        &none,
        TemplateApi::Beta,
    )
    .unwrap();
    assert_eq!(
        got, "apps/myapp.yaml: HelmRelease=2;apps/podinfo.yaml: Deployment=1;",
        "a file's objects list every policy image written in them; Flux v1 changes are not in .Updated"
    );
}
