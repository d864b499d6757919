//! Output helpers: aligned tables and YAML from JSON values.

use saphyr::{Mapping, Scalar, Yaml, YamlEmitter};
use serde_json::Value;

/// A plain, left-aligned table with three spaces between columns, the way
/// `kubectl` and `flux` print theirs, so existing habits (`awk '{print $1}'`)
/// keep working.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, |cell| cell.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}   ", width = widths[c]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Renders a JSON value as a YAML document.
pub fn json_to_yaml(value: &Value) -> String {
    let mut out = String::new();
    let yaml = to_yaml(value);
    let mut emitter = YamlEmitter::new(&mut out);
    if emitter.dump(&yaml).is_err() {
        return serde_json::to_string_pretty(value).unwrap_or_default();
    }
    out
}

fn to_yaml(value: &Value) -> Yaml<'static> {
    match value {
        Value::Null => Yaml::Value(Scalar::Null),
        Value::Bool(b) => Yaml::Value(Scalar::Boolean(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Value(Scalar::Integer(i)),
            None => Yaml::Value(Scalar::FloatingPoint(n.as_f64().unwrap_or_default().into())),
        },
        Value::String(s) => Yaml::Value(Scalar::String(s.clone().into())),
        Value::Array(items) => Yaml::Sequence(items.iter().map(to_yaml).collect()),
        Value::Object(map) => {
            let mut mapping = Mapping::new();
            for (k, v) in map {
                mapping.insert(Yaml::Value(Scalar::String(k.clone().into())), to_yaml(v));
            }
            Yaml::Mapping(mapping)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&["NAME", "READY"]);
        table.row(vec!["podinfo".into(), "True".into()]);
        assert_eq!(table.render(), "NAME      READY\npodinfo   True\n");
    }

    #[test]
    fn yaml_keeps_strings_that_look_like_numbers_as_strings() {
        let value = serde_json::json!({"tag": "1.10", "n": 3, "ok": true});
        let yaml = json_to_yaml(&value);
        let back = tagrelay_proto::config::load_documents(&yaml).unwrap();
        assert_eq!(back[0].value, value);
    }
}

/// `-o text|json`, for the commands that print lines for people or JSON
/// for programs.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TextOrJson {
    /// Lines for people.
    Text,
    /// JSON for programs.
    Json,
}
