//! Reading manifests as users write them: a multi-document YAML (or JSON) stream into JSON
//! values, with the line and column of a syntax error, and one leniency that upstream's own
//! examples need (an unquoted `{{args.x}}` placeholder, reported as a notice).

use serde_json::Value;

/// The documents of one stream, in order, and anything worth telling the author.
#[derive(Debug, Default)]
pub struct ParsedStream {
    pub documents: Vec<Value>,
    pub notices: Vec<ParseNotice>,
}

/// Something the author should fix although the stream could be read.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseNotice {
    pub line: u64,
    pub column: u64,
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
pub fn parse_stream(text: &str) -> Result<ParsedStream, SyntaxError> {
    let (text, notices) = quote_bare_placeholders(text);
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|err| {
        let location = err.location();
        SyntaxError {
            line: location.map(|l| l.line()),
            column: location.map(|l| l.column()),
            message: err.to_string(),
        }
    })?;
    let documents = documents.into_iter().filter(|d| !d.is_null()).collect();
    Ok(ParsedStream { documents, notices })
}

/// A value written as `key: {{args.name}}` is, to a YAML parser, a nested flow mapping, and
/// kubectl rejects the file. The author meant the placeholder string, which the analysis
/// controller substitutes later, so Ramp reads it as that string and says it should be quoted.
fn quote_bare_placeholders(text: &str) -> (std::borrow::Cow<'_, str>, Vec<ParseNotice>) {
    let mut notices = Vec::new();
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let body = line.trim_end_matches(['\n', '\r']);
        match bare_placeholder(body) {
            Some(start) => {
                let placeholder = body[start..].trim_end();
                notices.push(ParseNotice {
                    line: index as u64 + 1,
                    column: start as u64 + 1,
                    message: format!(
                        "unquoted placeholder {placeholder} is a YAML mapping, not a string; \
                         kubectl rejects it: write \"{placeholder}\""
                    ),
                });
                out.push_str(&body[..start]);
                out.push('"');
                out.push_str(placeholder);
                out.push('"');
                out.push_str(&line[body.len()..]);
            }
            None => out.push_str(line),
        }
    }
    if notices.is_empty() {
        (text.into(), notices)
    } else {
        (out.into(), notices)
    }
}

/// The byte offset of a `{{...}}` that is a line's whole value (`key: {{x}}` or `- {{x}}`).
fn bare_placeholder(line: &str) -> Option<usize> {
    let trimmed = line.trim_end();
    if !trimmed.ends_with("}}") || trimmed.trim_start().starts_with('#') {
        return None;
    }
    let start = trimmed.rfind("{{")?;
    let before = trimmed[..start].trim_end();
    let inner = &trimmed[start + 2..trimmed.len() - 2];
    let value_position =
        before.ends_with(':') || before.ends_with('-') && before.trim_start() == "-";
    (value_position && !inner.contains(['{', '}'])).then_some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_document_of_a_stream() {
        let parsed = parse_stream("a: 1\n---\n---\nb: [x]\n").expect("valid YAML");
        assert_eq!(
            parsed.documents,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"b": ["x"]})]
        );
        assert!(parsed.notices.is_empty());
    }

    #[test]
    fn a_syntax_error_has_line_and_column() {
        let err = parse_stream("a: 1\nb: [unclosed\n").expect_err("broken YAML");
        assert!(err.line.is_some() && err.column.is_some(), "{err:?}");
        assert!(err.to_string().starts_with("line "), "{err}");
    }

    #[test]
    fn an_unquoted_placeholder_is_read_as_the_string_it_means() {
        let text = "metadata:\n  annotations:\n    linkerd.io/inject: {{args.enabled}}\nitems:\n  - {{ args.x }}\n";
        let parsed = parse_stream(text).expect("lenient");
        assert_eq!(
            parsed.documents[0]["metadata"]["annotations"]["linkerd.io/inject"],
            "{{args.enabled}}"
        );
        assert_eq!(parsed.documents[0]["items"][0], "{{ args.x }}");
        assert_eq!(parsed.notices.len(), 2);
        assert_eq!((parsed.notices[0].line, parsed.notices[0].column), (3, 24));
    }

    #[test]
    fn quoted_placeholders_and_real_flow_mappings_are_left_alone() {
        let text = "a: \"{{args.x}}\"\nb: {c: {d: 1}}\n";
        let parsed = parse_stream(text).expect("valid YAML");
        assert!(parsed.notices.is_empty());
        assert_eq!(parsed.documents[0]["b"]["c"]["d"], 1);
    }
}
