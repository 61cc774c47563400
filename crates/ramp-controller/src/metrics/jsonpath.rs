//! The part of Kubernetes JSONPath the web provider's `jsonPath` uses: one `{...}` expression
//! of member names and array indexes from the root (`{$}`, `{$.data.ok}`, `{.items[0]}`,
//! `{$.a['b-c']}`). Filters, wildcards, slices and recursive descent are refused by name
//! rather than guessed at.

/// Selects the value `path` points at in `document`.
pub fn select<'a>(
    document: &'a serde_json::Value,
    path: &str,
) -> Result<&'a serde_json::Value, String> {
    let mut current = document;
    for step in parse(path)? {
        current = match (&step, current) {
            (Step::Member(name), serde_json::Value::Object(map)) => map
                .get(name)
                .ok_or_else(|| format!("jsonPath {path:?}: {name} is not found"))?,
            (Step::Index(index), serde_json::Value::Array(items)) => {
                items.get(*index).ok_or_else(|| {
                    format!(
                        "jsonPath {path:?}: index {index} is out of range (length {})",
                        items.len()
                    )
                })?
            }
            (Step::Member(name), other) => {
                return Err(format!(
                    "jsonPath {path:?}: cannot read {name} of {}",
                    kind(other)
                ));
            }
            (Step::Index(index), other) => {
                return Err(format!(
                    "jsonPath {path:?}: cannot index {} with [{index}]",
                    kind(other)
                ));
            }
        };
    }
    Ok(current)
}

#[derive(Debug, PartialEq)]
enum Step {
    Member(String),
    Index(usize),
}

fn parse(path: &str) -> Result<Vec<Step>, String> {
    let trimmed = path.trim();
    let inner = trimmed
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(trimmed)
        .trim();
    let mut rest = inner.strip_prefix('$').unwrap_or(inner);
    let unsupported = |what: &str| Err(format!("jsonPath {path:?}: {what} is not supported"));
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if rest.starts_with("..") {
            return unsupported("recursive descent (..)");
        }
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() {
                return Err(format!("jsonPath {path:?}: empty member name"));
            }
            if name == "*" {
                return unsupported("the wildcard *");
            }
            steps.push(Step::Member(name.to_owned()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let close = after
                .find(']')
                .ok_or_else(|| format!("jsonPath {path:?}: unclosed ["))?;
            let inside = after[..close].trim();
            if let Some(key) = inside
                .strip_prefix('\'')
                .and_then(|k| k.strip_suffix('\''))
                .or_else(|| inside.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
            {
                steps.push(Step::Member(key.to_owned()));
            } else if let Ok(index) = inside.parse::<usize>() {
                steps.push(Step::Index(index));
            } else if inside.starts_with('?') {
                return unsupported("a filter");
            } else {
                return unsupported(&format!("[{inside}]"));
            }
            rest = &after[close + 1..];
        } else {
            return Err(format!("jsonPath {path:?}: expected . or [ at {rest:?}"));
        }
    }
    Ok(steps)
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn root_members_indexes_and_quoted_keys() {
        let doc = json!({"data": {"ok": true, "rates": [0.9, 0.99], "a-b": 1}});
        assert_eq!(select(&doc, "{$}"), Ok(&doc));
        assert_eq!(select(&doc, "{$.data.ok}"), Ok(&json!(true)));
        assert_eq!(select(&doc, "{.data.rates[1]}"), Ok(&json!(0.99)));
        assert_eq!(select(&doc, "{$.data['a-b']}"), Ok(&json!(1)));
        assert_eq!(select(&doc, "$.data.ok"), Ok(&json!(true)));
    }

    #[test]
    fn missing_members_and_unsupported_forms_are_errors() {
        let doc = json!({"data": {"items": [1]}});
        assert_eq!(
            select(&doc, "{$.data.missing}"),
            Err(r#"jsonPath "{$.data.missing}": missing is not found"#.to_owned())
        );
        assert!(select(&doc, "{$.data.items[3]}").is_err());
        assert!(select(&doc, "{$.data.items[0].x}").is_err());
        for unsupported in [
            "{$..items}",
            "{$.data.*}",
            "{$.data.items[?(@ > 0)]}",
            "{$.data.items[0:1]}",
        ] {
            let error = select(&doc, unsupported).err().unwrap_or_default();
            assert!(error.contains("not supported"), "{unsupported}: {error}");
        }
    }
}
