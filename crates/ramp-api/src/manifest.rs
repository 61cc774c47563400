//! Reading manifests as users write them: a multi-document YAML (or JSON) stream into JSON
//! values, with the line and column of a syntax error. What JSON cannot hold (a mapping used as
//! a key, e.g. an unquoted `{{args.x}}` placeholder in one of upstream's own examples) becomes a
//! notice naming the field instead of making the whole file unreadable.

use serde_json::Value;
use std::fmt;

/// The documents of one stream, in order, and anything worth telling the author.
#[derive(Debug, Default)]
pub struct ParsedStream {
    pub documents: Vec<Value>,
    pub notices: Vec<ParseNotice>,
}

/// Something the author should fix although the stream could be read.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseNotice {
    /// Index of the document in `ParsedStream::documents`.
    pub document: usize,
    /// Path of the field in that document, e.g. `spec.metrics[0].provider`.
    pub field: String,
    pub message: String,
}

/// The stream is not YAML.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}{message}", position(*line, *column))]
pub struct SyntaxError {
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

fn position(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l} column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}

/// Parses every document of a YAML stream; empty documents are dropped.
///
/// The parser's default budget (1 024 documents, 250 000 nodes) would refuse a large but
/// ordinary stream such as a cluster's export; its limits on documents, nodes and events are
/// raised to what the text itself could hold, so only amplification (aliases, nesting) is
/// refused, in words that say which limit was hit. Callers bound the text's size.
pub fn parse_stream(text: &str) -> Result<ParsedStream, SyntaxError> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: text.len().max(1_024),
            max_nodes: text.len().max(250_000),
            max_events: text.len().saturating_mul(2).max(1_000_000),
            max_total_scalar_bytes: text.len().max(64 * 1024 * 1024),
        },
    };
    let nodes: Vec<YamlNode> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|err| {
            if let Some(breach) = budget_breach(&err) {
                return SyntaxError {
                    line: None,
                    column: None,
                    message: breach,
                };
            }
            let location = err.location();
            let options =
                serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
            let mut message = err.render_with_options(options);
            // The position is reported separately; drop the parser's own copy of it.
            if let Some(location) = location {
                let suffix = format!(" at line {}, column {}", location.line(), location.column());
                if let Some(stripped) = message.strip_suffix(&suffix) {
                    message = stripped.to_owned();
                }
            }
            SyntaxError {
                line: location.map(|l| l.line()),
                column: location.map(|l| l.column()),
                message,
            }
        })?;
    let mut parsed = ParsedStream::default();
    for node in nodes.into_iter().filter(|n| *n != YamlNode::Null) {
        let document = parsed.documents.len();
        let mut notes = Vec::new();
        parsed.documents.push(node.into_json("", &mut notes));
        parsed
            .notices
            .extend(notes.into_iter().map(|(field, message)| ParseNotice {
                document,
                field,
                message,
            }));
    }
    Ok(parsed)
}

/// The limit a stream breached, in plain words; `None` for any other error.
fn budget_breach(mut err: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::budget::BudgetBreach;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = err
    {
        err = error;
    }
    let serde_saphyr::Error::Budget { breach, .. } = err else {
        return None;
    };
    Some(match breach {
        BudgetBreach::Depth { depth } => format!(
            "nests collections more than {} levels deep, deeper than any manifest needs; the parser stops there",
            depth.saturating_sub(1)
        ),
        BudgetBreach::Aliases { .. }
        | BudgetBreach::Anchors { .. }
        | BudgetBreach::AliasAnchorRatio { .. }
        | BudgetBreach::RecordedAnchorEvents { .. }
        | BudgetBreach::RecordedAnchorBytes { .. }
        | BudgetBreach::MergeKeys { .. } => format!(
            "uses YAML anchors and aliases (or merge keys) to expand far beyond its own size ({breach:?}); the parser refuses it as a possible \"billion laughs\" input"
        ),
        other => format!("is too large for the parser ({other:?}); split it into smaller files"),
    })
}

/// A YAML node as written, including what JSON cannot hold (mappings used as keys). Manifests
/// are read into this first so that a key JSON cannot represent becomes a finding instead of
/// making the whole file unreadable.
#[derive(Clone, Debug, PartialEq)]
enum YamlNode {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<YamlNode>),
    Map(Vec<(YamlNode, YamlNode)>),
}

impl<'de> serde::Deserialize<'de> for YamlNode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(YamlNodeVisitor)
    }
}

struct YamlNodeVisitor;

impl<'de> serde::de::Visitor<'de> for YamlNodeVisitor {
    type Value = YamlNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<YamlNode, E> {
        Ok(YamlNode::Null)
    }

    fn visit_none<E>(self) -> Result<YamlNode, E> {
        Ok(YamlNode::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<YamlNode, D::Error> {
        serde::Deserialize::deserialize(deserializer)
    }

    fn visit_newtype_struct<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<YamlNode, D::Error> {
        serde::Deserialize::deserialize(deserializer)
    }

    fn visit_bool<E>(self, value: bool) -> Result<YamlNode, E> {
        Ok(YamlNode::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<YamlNode, E> {
        Ok(YamlNode::Int(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<YamlNode, E> {
        Ok(YamlNode::UInt(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<YamlNode, E> {
        Ok(YamlNode::Float(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<YamlNode, E> {
        Ok(YamlNode::Str(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<YamlNode, E> {
        Ok(YamlNode::Str(value))
    }

    fn visit_bytes<E>(self, value: &[u8]) -> Result<YamlNode, E> {
        Ok(YamlNode::Str(String::from_utf8_lossy(value).into_owned()))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<YamlNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(YamlNode::Seq(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<YamlNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(YamlNode::Map(entries))
    }
}

impl YamlNode {
    /// The `{{args.x}}` placeholder an unquoted `{{args.x}}` stands for: YAML reads it as a
    /// mapping whose only key is a mapping whose only key is `args.x`, both without values.
    fn unquoted_placeholder(&self) -> Option<String> {
        let YamlNode::Map(outer) = self else {
            return None;
        };
        let [(YamlNode::Map(inner), YamlNode::Null)] = outer.as_slice() else {
            return None;
        };
        let [(YamlNode::Str(name), YamlNode::Null)] = inner.as_slice() else {
            return None;
        };
        Some(format!("{{{{{name}}}}}"))
    }

    /// Converts to JSON. Scalar keys become strings (as `kubectl` does); an unquoted
    /// placeholder becomes the string it was meant to be, with a warning in `notes`; any other
    /// non-scalar key is kept as its YAML-ish rendering, also with a warning.
    fn into_json(self, path: &str, notes: &mut Vec<(String, String)>) -> Value {
        if let Some(placeholder) = self.unquoted_placeholder() {
            notes.push((
                path.to_owned(),
                format!(
                    "unquoted {placeholder} is read by YAML as a nested mapping, not as text; quote it (\"{placeholder}\")"
                ),
            ));
            return Value::String(placeholder);
        }
        match self {
            YamlNode::Null => Value::Null,
            YamlNode::Bool(b) => Value::Bool(b),
            YamlNode::Int(n) => Value::from(n),
            YamlNode::UInt(n) => Value::from(n),
            YamlNode::Float(x) => {
                serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
            }
            YamlNode::Str(s) => Value::String(s),
            YamlNode::Seq(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(index, item)| item.into_json(&format!("{path}[{index}]"), notes))
                    .collect(),
            ),
            YamlNode::Map(entries) => {
                let mut object = serde_json::Map::new();
                for (key, value) in entries {
                    let key_text = match key.scalar_text() {
                        Some(text) => text,
                        None => {
                            let rendered = key.render();
                            notes.push((
                                child_path(path, &rendered),
                                "this mapping key is itself a mapping or list (an unquoted `{` or `[`?); Kubernetes only accepts text keys".to_owned(),
                            ));
                            rendered
                        }
                    };
                    let child = child_path(path, &key_text);
                    object.insert(key_text, value.into_json(&child, notes));
                }
                Value::Object(object)
            }
        }
    }

    fn scalar_text(&self) -> Option<String> {
        match self {
            YamlNode::Null => Some("null".to_owned()),
            YamlNode::Bool(b) => Some(b.to_string()),
            YamlNode::Int(n) => Some(n.to_string()),
            YamlNode::UInt(n) => Some(n.to_string()),
            YamlNode::Float(x) => Some(x.to_string()),
            YamlNode::Str(s) => Some(s.clone()),
            YamlNode::Seq(_) | YamlNode::Map(_) => None,
        }
    }

    /// A flow-style rendering, to name a complex key in a message.
    fn render(&self) -> String {
        match self {
            YamlNode::Seq(items) => {
                format!(
                    "[{}]",
                    items
                        .iter()
                        .map(YamlNode::render)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            YamlNode::Map(entries) => {
                let parts: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| match v {
                        YamlNode::Null => k.render(),
                        _ => format!("{}: {}", k.render(), v.render()),
                    })
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
            scalar => scalar.scalar_text().unwrap_or_default(),
        }
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn notices(parsed: &ParsedStream) -> Vec<String> {
        parsed
            .notices
            .iter()
            .map(|n| format!("{}#{}: {}", n.document, n.field, n.message))
            .collect()
    }

    #[test]
    fn many_documents_are_read_but_deep_nesting_is_refused_in_plain_words() {
        let stream = "a: 1\n---\n".repeat(5_000);
        assert_eq!(parse_stream(&stream).map(|p| p.documents.len()), Ok(5_000));
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let err = parse_stream(&deep).expect_err("too deep");
        assert!(
            err.message
                .starts_with("nests collections more than 64 levels deep"),
            "{err}"
        );
    }

    #[test]
    fn reads_every_document_of_a_stream() {
        let parsed = parse_stream("a: 1\n---\n---\nb: [x]\n").expect("valid YAML");
        assert_eq!(parsed.documents, vec![json!({"a": 1}), json!({"b": ["x"]})]);
        assert!(parsed.notices.is_empty());
    }

    #[test]
    fn a_syntax_error_has_line_and_column() {
        let err = parse_stream("a: 1\nb: [unclosed\n").expect_err("broken YAML");
        assert!(err.line.is_some() && err.column.is_some(), "{err:?}");
        assert!(err.to_string().starts_with("line "), "{err}");
    }

    #[test]
    fn unquoted_placeholders_become_text_with_a_notice() {
        let text = "kind: A\n---\nmetadata:\n  annotations:\n    inject: {{args.enabled}}\n";
        let parsed = parse_stream(text).expect("lenient");
        assert_eq!(
            parsed.documents[1],
            json!({"metadata": {"annotations": {"inject": "{{args.enabled}}"}}})
        );
        assert_eq!(
            notices(&parsed),
            vec![
                r#"1#metadata.annotations.inject: unquoted {{args.enabled}} is read by YAML as a nested mapping, not as text; quote it ("{{args.enabled}}")"#
            ]
        );
    }

    #[test]
    fn scalar_keys_become_strings_and_complex_keys_are_reported() {
        let parsed = parse_stream("1: one\ntrue: two\n? [a, b]\n: list\n").expect("valid YAML");
        assert_eq!(
            parsed.documents[0],
            json!({"1": "one", "true": "two", "[a, b]": "list"})
        );
        assert_eq!(
            notices(&parsed),
            vec![
                "0#[a, b]: this mapping key is itself a mapping or list (an unquoted `{` or `[`?); Kubernetes only accepts text keys"
            ]
        );
    }

    #[test]
    fn quoted_placeholders_and_real_flow_mappings_are_left_alone() {
        let parsed = parse_stream("a: \"{{args.x}}\"\nb: {c: {d: 1}}\n").expect("valid YAML");
        assert!(parsed.notices.is_empty());
        assert_eq!(parsed.documents[0]["b"]["c"]["d"], 1);
    }
}
