//! Which Kubernetes object each line of a manifest belongs to, for the
//! message template's `.Changed.Objects` (Flux's `ObjectIdentifier`:
//! `apiVersion`, `kind`, `metadata.name`, `metadata.namespace` of the
//! document holding the changed value).

use saphyr_parser::{Event, Parser};

use crate::message::ObjectId;

/// The objects of a multi-document file, each with the line its document
/// starts on, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Documents {
    starts: Vec<(usize, ObjectId)>,
}

impl Documents {
    /// Reads the identity of every document in `text`. A file the parser
    /// rejects part-way keeps the documents read before the error; the
    /// rewriting engine has already refused such files, so this only names
    /// objects of files that parse.
    pub fn read(text: &str) -> Self {
        struct Frame {
            map: bool,
            key: Option<String>,
            under: Option<String>,
        }
        let mut docs = Documents::default();
        let mut current: Option<(usize, ObjectId)> = None;
        let mut stack: Vec<Frame> = Vec::new();
        for event in Parser::new_from_str(text) {
            let Ok((event, span)) = event else { break };
            match event {
                Event::DocumentStart(_) => {
                    current = Some((span.start.line(), ObjectId::default()));
                    stack.clear();
                }
                Event::DocumentEnd => docs.starts.extend(current.take()),
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let under = stack.last_mut().and_then(|f| f.key.take());
                    stack.push(Frame {
                        map: matches!(event, Event::MappingStart(..)),
                        key: None,
                        under,
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::Alias(_) => {
                    if let Some(frame) = stack.last_mut() {
                        frame.key = None;
                    }
                }
                Event::Scalar(value, ..) => {
                    let depth = stack.len();
                    let in_metadata = depth == 2
                        && stack.get(1).and_then(|f| f.under.as_deref()) == Some("metadata");
                    let Some(frame) = stack.last_mut().filter(|f| f.map) else {
                        continue;
                    };
                    let Some(key) = frame.key.take() else {
                        frame.key = Some(value.into_owned());
                        continue;
                    };
                    let Some((_, id)) = current.as_mut() else {
                        continue;
                    };
                    match (depth, in_metadata, key.as_str()) {
                        (1, _, "apiVersion") => id.api_version = value.into_owned(),
                        (1, _, "kind") => id.kind = value.into_owned(),
                        (2, true, "name") => id.name = value.into_owned(),
                        (2, true, "namespace") => id.namespace = value.into_owned(),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        docs.starts.extend(current.take());
        docs
    }

    /// The object holding 1-based `line`: the last document starting at or
    /// before it.
    pub fn at(&self, line: usize) -> ObjectId {
        self.starts
            .iter()
            .rev()
            .find(|(start, _)| *start <= line)
            .or(self.starts.first())
            .map(|(_, id)| id.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_maps_to_its_document_object() {
        let text = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps
  labels: {name: not-this}
spec:
  template:
    metadata:
      name: nor-this
    spec:
      containers:
      - image: a:1
---
# a kustomization
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
images:
- name: a
  newTag: '1'
";
        let docs = Documents::read(text);
        let web = docs.at(13);
        assert_eq!(
            web,
            ObjectId {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                namespace: "apps".into(),
            }
        );
        let k = docs.at(20);
        assert_eq!(k.kind, "Kustomization");
        assert_eq!(k.name, "");
        assert_eq!(docs.at(1), web);
    }
}
