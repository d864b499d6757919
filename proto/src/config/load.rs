//! Reading multi-document YAML into JSON values that remember where each
//! field was written, so errors can say `file:line`.

use std::collections::BTreeMap;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};

/// One YAML document, converted to JSON, with the line of every field.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The 1-based line where the document's content starts.
    pub line: usize,
    /// The document as JSON.
    pub value: Value,
    /// The 1-based line of each field path (`spec.image`, `spec.list[2]`).
    lines: BTreeMap<String, usize>,
}

impl Document {
    /// The line where `path` (or its nearest written ancestor) is, so that an
    /// error about a field points at the field, and an error about a missing
    /// field points at its parent.
    pub fn line_of(&self, path: &str) -> usize {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return *line;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return self.line,
            }
        }
    }
}

/// Why a YAML text could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LoadError {
    /// The 1-based line of the problem.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Splits a multi-document YAML text into documents. Empty documents (a
/// trailing `---`) are dropped; aliases are resolved by the parser; complex
/// keys and duplicate keys are refused, as Kubernetes' strict decoding does.
pub fn load_documents(text: &str) -> Result<Vec<Document>, LoadError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| LoadError {
        line: e.marker().line(),
        reason: e.info().to_string(),
    })?;
    let mut out = Vec::new();
    for doc in &docs {
        if matches!(doc.data, YamlData::Value(Scalar::Null)) {
            continue;
        }
        let mut lines = BTreeMap::new();
        let value = convert(doc, String::new(), &mut lines)?;
        out.push(Document {
            line: doc.span.start.line(),
            value,
            lines,
        });
    }
    Ok(out)
}

fn convert(
    node: &MarkedYaml<'_>,
    path: String,
    lines: &mut BTreeMap<String, usize>,
) -> Result<Value, LoadError> {
    let line = node.span.start.line();
    let refuse = |reason: &str| LoadError {
        line,
        reason: reason.to_string(),
    };
    let value = match &node.data {
        YamlData::Value(scalar) => scalar_to_json(scalar),
        YamlData::Representation(text, _, _) => Value::String(text.to_string()),
        YamlData::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(item, format!("{path}[{i}]"), lines))
                .collect::<Result<_, _>>()?,
        ),
        YamlData::Mapping(entries) => {
            let mut map = Map::new();
            for (key_node, item) in entries {
                let key = match &key_node.data {
                    YamlData::Value(Scalar::String(s)) => s.to_string(),
                    YamlData::Value(other) => scalar_to_json(other).to_string(),
                    _ => return Err(refuse("mapping keys must be scalars")),
                };
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                lines.insert(child.clone(), key_line(key_node, line));
                if map
                    .insert(key.clone(), convert(item, child, lines)?)
                    .is_some()
                {
                    return Err(refuse(&format!("duplicate key {key:?}")));
                }
            }
            Value::Object(map)
        }
        YamlData::Tagged(_, inner) => convert(inner, path.clone(), lines)?,
        YamlData::Alias(_) => return Err(refuse("unresolved YAML alias")),
        YamlData::BadValue => return Err(refuse("unreadable value")),
    };
    lines.entry(path).or_insert(line);
    Ok(value)
}

fn key_line(key: &MarkedYaml<'_>, fallback: usize) -> usize {
    match key.span.start.line() {
        0 => fallback,
        line => line,
    }
}

fn scalar_to_json(scalar: &Scalar<'_>) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Number((*i).into()),
        Scalar::FloatingPoint(f) => Number::from_f64(f.into_inner())
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        Scalar::String(s) => Value::String(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "\
apiVersion: v1
kind: A
metadata:
  name: one
---
# comment
kind: B
spec:
  list:
    - x
    - y
  nested:
    deep: 1.5
---
";

    #[test]
    fn splits_documents_and_remembers_lines() {
        let docs = load_documents(TWO).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].line, 1);
        assert_eq!(docs[0].line_of("metadata.name"), 4);
        assert_eq!(docs[1].line_of("kind"), 7);
        assert_eq!(docs[1].line_of("spec.list[1]"), 11);
        assert_eq!(docs[1].line_of("spec.nested.deep"), 13);
        assert_eq!(docs[1].line_of("spec.nested.missing"), 12);
        assert_eq!(
            docs[1].value["spec"]["nested"]["deep"],
            serde_json::json!(1.5)
        );
    }

    #[test]
    fn reports_syntax_errors_with_a_line() {
        let err = load_documents("a: b\nc: [unclosed\n").unwrap_err();
        assert!(err.line >= 2, "{err}");
    }

    #[test]
    fn refuses_duplicate_keys_and_resolves_aliases() {
        assert!(load_documents("a: 1\na: 2\n").is_err());
        let docs = load_documents("a: &x v1\nb: *x\n").unwrap();
        assert_eq!(docs[0].value["b"], "v1");
    }
}
