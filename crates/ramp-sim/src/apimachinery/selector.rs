//! Label and field selectors: parsing the `labelSelector=` / `fieldSelector=` query strings
//! kubectl and kube-rs send, matching them against objects, and the structured
//! `LabelSelector` (matchLabels + matchExpressions) that workloads carry in `spec.selector`.
//! Which fields a kind supports in field selectors is the server's decision, not this module's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// A malformed selector. The message is what a real server puts into the 400 `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectorError {
    /// Human-readable reason, worded like kube-apiserver's.
    pub message: String,
}

impl SelectorError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LabelOperator {
    /// `key=value`
    Equals,
    /// `key==value` (same meaning as `=`, kept so printing round-trips)
    DoubleEquals,
    /// `key!=value` (also true when the label is absent)
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)` (also true when the label is absent)
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>3` (integer comparison; false when absent or not an integer)
    GreaterThan,
    /// `key<3`
    LessThan,
}

/// One `key op values` clause; a selector is the AND of its requirements.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelRequirement {
    /// Label key, validated as a qualified name (`prefix/name`).
    pub key: String,
    /// The operator.
    pub operator: LabelOperator,
    /// Sorted, deduplicated values (one for `=`/`!=`/`>`/`<`, none for exists checks).
    pub values: BTreeSet<String>,
}

impl LabelRequirement {
    /// Whether a label lookup satisfies this requirement.
    fn matches_lookup<'a>(&self, lookup: &dyn Fn(&str) -> Option<&'a str>) -> bool {
        let actual = lookup(&self.key);
        match self.operator {
            LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::In => {
                actual.is_some_and(|v| self.values.contains(v))
            }
            LabelOperator::NotEquals | LabelOperator::NotIn => {
                actual.is_none_or(|v| !self.values.contains(v))
            }
            LabelOperator::Exists => actual.is_some(),
            LabelOperator::DoesNotExist => actual.is_none(),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let (Some(actual), Some(bound)) = (
                    actual.and_then(|v| v.parse::<i64>().ok()),
                    self.values
                        .iter()
                        .next()
                        .and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == LabelOperator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.iter().next().map_or("", String::as_str);
        let joined = self
            .values
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(",");
        match self.operator {
            LabelOperator::Equals => write!(f, "{}={first}", self.key),
            LabelOperator::DoubleEquals => write!(f, "{}=={first}", self.key),
            LabelOperator::NotEquals => write!(f, "{}!={first}", self.key),
            LabelOperator::In => write!(f, "{} in ({joined})", self.key),
            LabelOperator::NotIn => write!(f, "{} notin ({joined})", self.key),
            LabelOperator::Exists => write!(f, "{}", self.key),
            LabelOperator::DoesNotExist => write!(f, "!{}", self.key),
            LabelOperator::GreaterThan => write!(f, "{}>{first}", self.key),
            LabelOperator::LessThan => write!(f, "{}<{first}", self.key),
        }
    }
}

/// A parsed label selector: the AND of its requirements. The empty selector matches
/// everything; [`LabelSelector::nothing`] matches nothing (a workload whose `spec.selector`
/// is null).
///
/// Server use: `LabelSelector::parse(query_value)?` once per request, then
/// `selector.matches_object(&obj)` per object; map `SelectorError` to a 400 `BadRequest`.
/// Workload simulators: `LabelSelector::from_object(&rs["spec"]["selector"])?`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
    matches_nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object (an absent or empty `labelSelector=`).
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object (a null `metav1.LabelSelector`).
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            matches_nothing: true,
        }
    }

    /// The requirements, sorted by key then operator.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// True when this selector matches everything.
    pub fn is_everything(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }

    /// Parses the string form (`app=web,tier!=db,env in (a,b),!legacy`). Whitespace around
    /// tokens is ignored; an empty string yields [`LabelSelector::everything`].
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let tokens = lex(input);
        let mut parser = Parser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        if parser.peek() == &Token::End {
            return Ok(Self::everything());
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                Token::End => break,
                Token::Comma => {
                    if parser.peek() == &Token::End {
                        return Err(SelectorError::new(
                            "found '', expected: identifier after ','",
                        ));
                    }
                }
                other => {
                    return Err(SelectorError::new(format!(
                        "found '{}', expected: ',' or 'end of string'",
                        other.literal()
                    )));
                }
            }
        }
        requirements.sort();
        Ok(Self {
            requirements,
            matches_nothing: false,
        })
    }

    /// Builds a selector from a `metav1.LabelSelector` object (`{matchLabels, matchExpressions}`).
    /// `null` yields [`LabelSelector::nothing`]; `{}` yields [`LabelSelector::everything`],
    /// as for a ReplicaSet's or Service's selector on a real cluster.
    pub fn from_object(selector: &Value) -> Result<Self, SelectorError> {
        let object = match selector {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(map) => map,
            other => {
                return Err(SelectorError::new(format!(
                    "selector must be an object, got {other}"
                )));
            }
        };
        let mut requirements = Vec::new();
        if let Some(labels) = object.get("matchLabels").filter(|v| !v.is_null()) {
            let labels = labels
                .as_object()
                .ok_or_else(|| SelectorError::new("matchLabels must be an object"))?;
            for (key, value) in labels {
                let value = value.as_str().ok_or_else(|| {
                    SelectorError::new(format!("matchLabels.{key}: value must be a string"))
                })?;
                requirements.push(requirement(key, LabelOperator::Equals, [value])?);
            }
        }
        if let Some(expressions) = object.get("matchExpressions").filter(|v| !v.is_null()) {
            let expressions = expressions
                .as_array()
                .ok_or_else(|| SelectorError::new("matchExpressions must be a list"))?;
            for (i, expression) in expressions.iter().enumerate() {
                requirements.push(match_expression(i, expression)?);
            }
        }
        requirements.sort();
        Ok(Self {
            requirements,
            matches_nothing: false,
        })
    }

    /// Builds a selector from a typed `metav1.LabelSelector` (k8s-openapi), for the workload
    /// simulators that hold typed objects. `None` matches nothing, as a null selector.
    pub fn from_k8s(
        selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    ) -> Result<Self, SelectorError> {
        let Some(selector) = selector else {
            return Ok(Self::nothing());
        };
        let value = serde_json::to_value(selector)
            .map_err(|e| SelectorError::new(format!("selector does not serialise: {e}")))?;
        Self::from_object(&value)
    }

    /// Builds the equality selector of a label map (a Service's `spec.selector`).
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Self, SelectorError> {
        let mut requirements = labels
            .iter()
            .map(|(k, v)| requirement(k, LabelOperator::Equals, [v.as_str()]))
            .collect::<Result<Vec<_>, _>>()?;
        requirements.sort();
        Ok(Self {
            requirements,
            matches_nothing: false,
        })
    }

    /// Matches a label map given as a JSON object (`metadata.labels`); `null` or a missing map
    /// means "no labels". Non-string label values are treated as absent.
    pub fn matches_labels(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.matches_with(&|key| labels.and_then(|m| m.get(key)).and_then(Value::as_str))
    }

    /// Matches a label map held as strings.
    pub fn matches_map(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(&|key| labels.get(key).map(String::as_str))
    }

    /// Matches an object by its `metadata.labels`.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches_labels(
            object
                .get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object),
        )
    }

    fn matches_with<'a>(&self, lookup: &dyn Fn(&str) -> Option<&'a str>) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches_lookup(lookup))
    }
}

impl fmt::Display for LabelSelector {
    /// Canonical form: requirements sorted by key, joined by `,`. Parsing it gives back an
    /// equal selector (except [`LabelSelector::nothing`], which has no string form and prints
    /// as the empty string).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

fn match_expression(index: usize, expression: &Value) -> Result<LabelRequirement, SelectorError> {
    let field = |name: &str| expression.get(name).and_then(Value::as_str);
    let key = field("key").ok_or_else(|| {
        SelectorError::new(format!("matchExpressions[{index}].key: Required value"))
    })?;
    let operator = match field("operator") {
        Some("In") => LabelOperator::In,
        Some("NotIn") => LabelOperator::NotIn,
        Some("Exists") => LabelOperator::Exists,
        Some("DoesNotExist") => LabelOperator::DoesNotExist,
        Some(other) => {
            return Err(SelectorError::new(format!(
                "{other:?} is not a valid label selector operator"
            )));
        }
        None => {
            return Err(SelectorError::new(format!(
                "matchExpressions[{index}].operator: Required value"
            )));
        }
    };
    let values: Vec<&str> = match expression.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    SelectorError::new(format!(
                        "matchExpressions[{index}].values: values must be strings"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(SelectorError::new(format!(
                "matchExpressions[{index}].values: must be a list"
            )));
        }
    };
    requirement(key, operator, values)
}

/// Builds and validates one requirement, with the checks a real server applies.
fn requirement<'v>(
    key: &str,
    operator: LabelOperator,
    values: impl IntoIterator<Item = &'v str>,
) -> Result<LabelRequirement, SelectorError> {
    validate_key(key)?;
    let values: BTreeSet<String> = values.into_iter().map(str::to_owned).collect();
    match operator {
        LabelOperator::In | LabelOperator::NotIn if values.is_empty() => {
            return Err(SelectorError::new(
                "for 'in', 'notin' operators, values set can't be empty",
            ));
        }
        LabelOperator::Equals
        | LabelOperator::DoubleEquals
        | LabelOperator::NotEquals
        | LabelOperator::GreaterThan
        | LabelOperator::LessThan
            if values.len() != 1 =>
        {
            return Err(SelectorError::new(
                "exact-match compatibility requires one single value",
            ));
        }
        LabelOperator::Exists | LabelOperator::DoesNotExist if !values.is_empty() => {
            return Err(SelectorError::new(
                "values set must be empty for exists and does not exist",
            ));
        }
        LabelOperator::GreaterThan | LabelOperator::LessThan => {
            if let Some(v) = values.iter().find(|v| v.parse::<i64>().is_err()) {
                return Err(SelectorError::new(format!(
                    "for 'Gt', 'Lt' operators, the value must be an integer: {v:?}"
                )));
            }
        }
        _ => {}
    }
    for value in &values {
        validate_label_value(key, value)?;
    }
    Ok(LabelRequirement {
        key: key.to_owned(),
        operator,
        values,
    })
}

const NAME_RULE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn validate_key(key: &str) -> Result<(), SelectorError> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Err(SelectorError::new(format!(
            "unable to parse requirement: key: Invalid value: {key:?}: prefix part must be a lowercase RFC 1123 subdomain"
        )));
    }
    if !is_label_name(name) {
        return Err(SelectorError::new(format!(
            "unable to parse requirement: key: Invalid value: {key:?}: {NAME_RULE} (e.g. 'MyName',  or 'my.name',  or '123-abc')"
        )));
    }
    Ok(())
}

fn validate_label_value(key: &str, value: &str) -> Result<(), SelectorError> {
    if value.is_empty() || is_label_name(value) {
        return Ok(());
    }
    Err(SelectorError::new(format!(
        "unable to parse requirement: values[0][{key}]: Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
    )))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Identifier(String),
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Bang,
    Greater,
    Less,
    OpenParen,
    CloseParen,
    Comma,
    End,
}

impl Token {
    fn literal(&self) -> &str {
        match self {
            Token::Identifier(s) => s,
            Token::In => "in",
            Token::NotIn => "notin",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Bang => "!",
            Token::Greater => ">",
            Token::Less => "<",
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::Comma => ",",
            Token::End => "",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let token = match (c, chars.peek()) {
                ('=', Some('=')) => {
                    chars.next();
                    Token::DoubleEquals
                }
                ('!', Some('=')) => {
                    chars.next();
                    Token::NotEquals
                }
                ('=', _) => Token::Equals,
                ('!', _) => Token::Bang,
                ('(', _) => Token::OpenParen,
                (')', _) => Token::CloseParen,
                (',', _) => Token::Comma,
                ('>', _) => Token::Greater,
                _ => Token::Less,
            };
            tokens.push(token);
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || is_special(c) {
                break;
            }
            word.push(c);
            chars.next();
        }
        tokens.push(match word.as_str() {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier(word),
        });
    }
    tokens.push(Token::End);
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        self.pos += 1;
        token
    }

    fn requirement(&mut self) -> Result<LabelRequirement, SelectorError> {
        if self.peek() == &Token::Bang {
            self.next();
            let key = self.identifier("identifier after '!'")?;
            return requirement(&key, LabelOperator::DoesNotExist, []);
        }
        let key = self.identifier("identifier")?;
        let operator = match self.peek() {
            Token::Comma | Token::End => return requirement(&key, LabelOperator::Exists, []),
            Token::Equals => LabelOperator::Equals,
            Token::DoubleEquals => LabelOperator::DoubleEquals,
            Token::NotEquals => LabelOperator::NotEquals,
            Token::In => LabelOperator::In,
            Token::NotIn => LabelOperator::NotIn,
            Token::Greater => LabelOperator::GreaterThan,
            Token::Less => LabelOperator::LessThan,
            other => {
                return Err(SelectorError::new(format!(
                    "found '{}', expected: '=', '!=', '==', 'in', notin'",
                    other.literal()
                )));
            }
        };
        self.next();
        if matches!(operator, LabelOperator::In | LabelOperator::NotIn) {
            let values = self.value_set()?;
            return requirement(&key, operator, values.iter().map(String::as_str));
        }
        // `key=` is legal and means "label present with the empty value".
        let value = match self.peek() {
            Token::Identifier(v) => {
                let v = v.clone();
                self.next();
                v
            }
            Token::In | Token::NotIn => self.next().literal().to_owned(),
            Token::Comma | Token::End => String::new(),
            other => {
                return Err(SelectorError::new(format!(
                    "found '{}', expected: identifier for value",
                    other.literal()
                )));
            }
        };
        requirement(&key, operator, [value.as_str()])
    }

    fn identifier(&mut self, expected: &str) -> Result<String, SelectorError> {
        match self.next() {
            Token::Identifier(s) => Ok(s),
            other => Err(SelectorError::new(format!(
                "found '{}', expected: {expected}",
                other.literal()
            ))),
        }
    }

    /// `( v1 , v2 )`; empty elements are allowed (they mean the empty label value), but an
    /// empty set is rejected by [`requirement`].
    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            Token::OpenParen => {}
            other => {
                return Err(SelectorError::new(format!(
                    "found '{}', expected: '('",
                    other.literal()
                )));
            }
        }
        let mut values = Vec::new();
        if self.peek() == &Token::CloseParen {
            self.next();
            return Ok(values);
        }
        let mut current = String::new();
        loop {
            match self.next() {
                Token::Identifier(s) => current = s,
                keyword @ (Token::In | Token::NotIn) => current = keyword.literal().to_owned(),
                Token::Comma => values.push(std::mem::take(&mut current)),
                Token::CloseParen => {
                    values.push(current);
                    return Ok(values);
                }
                other => {
                    return Err(SelectorError::new(format!(
                        "found '{}', expected: ',', ')' or identifier",
                        other.literal()
                    )));
                }
            }
        }
    }
}

/// One `field op value` clause of a field selector.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldRequirement {
    /// Dotted field path, e.g. `metadata.name`, `status.phase`.
    pub field: String,
    /// True for `!=`.
    pub negated: bool,
    /// The value to compare with (unescaped).
    pub value: String,
}

/// A parsed field selector (`metadata.name=web,status.phase!=Running`): the AND of
/// (in)equality requirements over dotted paths.
///
/// Server use: `FieldSelector::parse(q)?`, then check each `requirements()` field against what
/// the kind supports (a real server answers 400 `field label not supported: <field>` for
/// others; `metadata.name` and `metadata.namespace` are supported for every kind), then
/// `matches_object(&obj)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses `field=value`, `field==value` and `field!=value` clauses separated by commas.
    /// Values may escape `\,`, `\=`, `\!` and `\\` as a real client does.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for clause in split_unescaped_commas(input) {
            let clause = clause.trim();
            if clause.is_empty() {
                continue;
            }
            // The field name never holds `=` or `!`, so the first one starts the operator.
            let Some(op_at) = clause.find(['=', '!']) else {
                return Err(SelectorError::new(format!(
                    "invalid selector: '{clause}'; can't understand '{clause}'"
                )));
            };
            let (field, rest) = clause.split_at(op_at);
            let (negated, raw_value) = if let Some(v) = rest.strip_prefix("!=") {
                (true, v)
            } else if let Some(v) = rest.strip_prefix("==") {
                (false, v)
            } else if let Some(v) = rest.strip_prefix('=') {
                (false, v)
            } else {
                return Err(SelectorError::new(format!(
                    "invalid selector: '{clause}'; can't understand '{clause}'"
                )));
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(SelectorError::new(format!(
                    "invalid selector: '{clause}'; field name is empty"
                )));
            }
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                negated,
                value: unescape_field_value(raw_value.trim())?,
            });
        }
        requirements.sort();
        Ok(Self { requirements })
    }

    /// The requirements, sorted by field.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True when this selector matches everything.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Matches an object: the field's value (strings as-is, numbers and booleans in their
    /// JSON form, missing or null as `""`) compared with the requirement's value.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = match super::get_path(object, &r.field) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (actual == r.value) != r.negated
        })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                let op = if r.negated { "!=" } else { "=" };
                format!("{}{op}{}", r.field, escape_field_value(&r.value))
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Whether a real server accepts `field` in a field selector for a built-in `kind`:
/// `metadata.name` and `metadata.namespace` always, plus the kind's own field labels (Pods by
/// node and phase, Events by involved object, Secrets by type...). Custom resources accept
/// only the two metadata fields (plus CRD `selectableFields`, which the server checks). For
/// an unsupported field a real server answers 400 `field label not supported: <field>`.
pub fn builtin_field_label_supported(kind: &super::KindKey, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    let extra: &[&str] = match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "Event") | ("events.k8s.io", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.name",
            "regarding.namespace",
            "regarding.uid",
        ],
        ("", "Secret") => &["type"],
        ("", "Namespace") => &["status.phase"],
        ("", "Node") => &["spec.unschedulable"],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => &["status.replicas"],
        ("batch", "Job") => &["status.successful"],
        _ => &[],
    };
    extra.contains(&field)
}

fn split_unescaped_commas(input: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in input.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if escaped {
        current.push('\\');
    }
    parts.push(current);
    parts
}

fn unescape_field_value(raw: &str) -> Result<String, SelectorError> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('\\' | ',' | '=' | '!')) => out.push(e),
            Some(e) => {
                return Err(SelectorError::new(format!(
                    "invalid field selector value {raw:?}: invalid escape sequence '\\{e}'"
                )));
            }
            None => {
                return Err(SelectorError::new(format!(
                    "invalid field selector value {raw:?}: unterminated escape sequence"
                )));
            }
        }
    }
    Ok(out)
}

fn escape_field_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=' | '!') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_selector_operators_match_like_a_real_server() {
        let web_prod = labels(&[("app", "web"), ("env", "prod"), ("tier", "3")]);
        let table: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("env in (prod,staging)", true),
            ("env in (dev)", false),
            ("missing in (x)", false),
            ("env notin (dev)", true),
            ("env notin (prod)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app=web,env=prod", true),
            ("app=web,env=dev", false),
            ("  app = web , env in ( prod ) ", true),
            ("tier>2", true),
            ("tier<3", false),
            ("app>1", false),
            ("app=", false),
        ];
        for (input, expected) in table {
            let selector = LabelSelector::parse(input).expect(input);
            assert_eq!(selector.matches_map(&web_prod), *expected, "{input}");
        }
    }

    #[test]
    fn empty_value_equality_matches_empty_label() {
        let selector = LabelSelector::parse("flag=").expect("parse");
        assert!(selector.matches_map(&labels(&[("flag", "")])));
        assert!(!selector.matches_map(&labels(&[])));
        let set = LabelSelector::parse("flag in (,x)").expect("parse");
        assert!(set.matches_map(&labels(&[("flag", "")])));
    }

    #[test]
    fn label_selector_parse_errors_read_like_the_api_server() {
        let table: &[(&str, &str)] = &[
            ("app in ()", "values set can't be empty"),
            ("app in x", "found 'x', expected: '('"),
            ("!", "expected: identifier after '!'"),
            ("app=web,", "expected: identifier after ','"),
            (
                "app web",
                "found 'web', expected: '=', '!=', '==', 'in', notin'",
            ),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            ("-bad=x", "key: Invalid value: \"-bad\""),
            (
                "Bad_Prefix/x=y",
                "prefix part must be a lowercase RFC 1123 subdomain",
            ),
            ("app=a b c", "found 'b'"),
            ("app=-x", "a valid label must be an empty string"),
            ("tier>x", "must be an integer"),
            ("=x", "found '=', expected: identifier"),
        ];
        for (input, fragment) in table {
            let err = LabelSelector::parse(input).expect_err(input);
            assert!(
                err.message.contains(fragment),
                "{input}: {} should contain {fragment}",
                err.message
            );
        }
    }

    #[test]
    fn matches_object_reads_metadata_labels() {
        let selector = LabelSelector::parse("app=web").expect("parse");
        assert!(selector.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!selector.matches_object(&json!({"metadata": {"name": "x"}})));
        assert!(LabelSelector::everything().matches_object(&json!({})));
        assert!(!LabelSelector::nothing().matches_object(&json!({})));
    }

    #[test]
    fn structured_selector_combines_match_labels_and_expressions() {
        let selector = LabelSelector::from_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "tier", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]}
            ]
        }))
        .expect("selector");
        let ok = json!({"app": "web", "env": "prod", "tier": "1", "zone": "a"});
        assert!(selector.matches_labels(ok.as_object()));
        let legacy = json!({"app": "web", "env": "prod", "tier": "1", "legacy": "y"});
        assert!(!selector.matches_labels(legacy.as_object()));
        let wrong_env = json!({"app": "web", "env": "dev", "tier": "1"});
        assert!(!selector.matches_labels(wrong_env.as_object()));
        assert_eq!(
            selector.to_string(),
            "app=web,env in (prod,staging),!legacy,tier,zone notin (b)"
        );
    }

    #[test]
    fn structured_selector_null_matches_nothing_and_empty_matches_everything() {
        let none = LabelSelector::from_object(&Value::Null).expect("null");
        assert!(!none.matches_labels(json!({"a": "b"}).as_object()));
        let all = LabelSelector::from_object(&json!({})).expect("empty");
        assert!(all.matches_labels(None));
    }

    #[test]
    fn structured_selector_rejects_invalid_expressions() {
        let cases = [
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
            json!({"matchExpressions": [{"operator": "Exists"}]}),
            json!({"matchLabels": {"a": 1}}),
            json!("app=web"),
        ];
        for case in cases {
            assert!(LabelSelector::from_object(&case).is_err(), "{case}");
        }
    }

    #[test]
    fn field_selectors_compare_dotted_paths() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "prod"},
            "spec": {"nodeName": "n1", "replicas": 3},
            "status": {"phase": "Running"}
        });
        let table: &[(&str, bool)] = &[
            ("", true),
            ("metadata.name=web-1", true),
            ("metadata.name==web-1", true),
            ("metadata.name!=web-1", false),
            ("metadata.namespace=prod,status.phase=Running", true),
            ("metadata.namespace=prod,status.phase!=Running", false),
            ("spec.replicas=3", true),
            ("spec.missing=", true),
            ("spec.missing!=x", true),
        ];
        for (input, expected) in table {
            let selector = FieldSelector::parse(input).expect(input);
            assert_eq!(selector.matches_object(&pod), *expected, "{input}");
        }
        assert!(FieldSelector::parse("metadata.name").is_err());
        assert!(FieldSelector::parse("=x").is_err());
        assert!(FieldSelector::parse("a=b\\q").is_err());
    }

    #[test]
    fn field_labels_follow_the_kind() {
        use crate::apimachinery::KindKey;
        let pod = KindKey::new("", "Pod");
        let rollout = KindKey::new("argoproj.io", "Rollout");
        let event = KindKey::new("", "Event");
        assert!(builtin_field_label_supported(&pod, "metadata.name"));
        assert!(builtin_field_label_supported(&pod, "status.phase"));
        assert!(!builtin_field_label_supported(&pod, "spec.containers"));
        assert!(builtin_field_label_supported(
            &rollout,
            "metadata.namespace"
        ));
        assert!(!builtin_field_label_supported(&rollout, "status.phase"));
        assert!(builtin_field_label_supported(&event, "involvedObject.name"));
    }

    #[test]
    fn typed_selectors_convert() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let typed = meta::LabelSelector {
            match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
            match_expressions: Some(vec![meta::LabelSelectorRequirement {
                key: "track".to_owned(),
                operator: "NotIn".to_owned(),
                values: Some(vec!["canary".to_owned()]),
            }]),
        };
        let selector = LabelSelector::from_k8s(Some(&typed)).expect("converts");
        assert!(selector.matches_map(&labels(&[("app", "web"), ("track", "stable")])));
        assert!(!selector.matches_map(&labels(&[("app", "web"), ("track", "canary")])));
        let none = LabelSelector::from_k8s(None).expect("null selector");
        assert!(!none.matches_map(&labels(&[])));
    }

    #[test]
    fn field_selector_values_unescape() {
        let selector = FieldSelector::parse("metadata.name=a\\,b\\=c").expect("parse");
        assert_eq!(selector.requirements()[0].value, "a,b=c");
        assert!(selector.matches_object(&json!({"metadata": {"name": "a,b=c"}})));
        assert_eq!(
            FieldSelector::parse(&selector.to_string()).expect("round trip"),
            selector
        );
    }

    fn label_name() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9._-]{0,8}[a-z0-9])?"
    }

    fn requirement_strategy() -> impl Strategy<Value = LabelRequirement> {
        let op = prop_oneof![
            Just(LabelOperator::Equals),
            Just(LabelOperator::DoubleEquals),
            Just(LabelOperator::NotEquals),
            Just(LabelOperator::In),
            Just(LabelOperator::NotIn),
            Just(LabelOperator::Exists),
            Just(LabelOperator::DoesNotExist),
        ];
        (
            proptest::option::of("[a-z]{1,5}(\\.[a-z]{1,5})?"),
            label_name(),
            op,
            proptest::collection::btree_set(label_name(), 1..4),
        )
            .prop_map(|(prefix, name, operator, set)| {
                let key = match prefix {
                    Some(p) => format!("{p}/{name}"),
                    None => name,
                };
                let values = match operator {
                    LabelOperator::Exists | LabelOperator::DoesNotExist => BTreeSet::new(),
                    LabelOperator::In | LabelOperator::NotIn => set,
                    _ => set.into_iter().take(1).collect(),
                };
                LabelRequirement {
                    key,
                    operator,
                    values,
                }
            })
            // The string form cannot name these keys: the real lexer reads them as operators.
            .prop_filter("operator keywords are not keys", |r| {
                r.key != "in" && r.key != "notin"
            })
    }

    proptest! {
        #[test]
        fn selector_parsers_never_panic(input in "[a-z0-9=!(),<> .\\/-]{0,24}") {
            let _ = LabelSelector::parse(&input);
            let _ = FieldSelector::parse(&input);
        }

        #[test]
        fn label_selector_print_parse_round_trips(
            mut reqs in proptest::collection::vec(requirement_strategy(), 0..5)
        ) {
            reqs.sort();
            let selector = LabelSelector { requirements: reqs, matches_nothing: false };
            let printed = selector.to_string();
            let parsed = LabelSelector::parse(&printed).expect("printed selector parses");
            prop_assert_eq!(parsed, selector);
        }

        #[test]
        fn field_selector_print_parse_round_trips(
            fields in proptest::collection::vec(("[a-z]{1,6}(\\.[a-z]{1,6}){0,2}", any::<bool>(), "[a-z,=!\\\\ -]{0,8}"), 0..4)
        ) {
            let mut requirements: Vec<FieldRequirement> = fields
                .into_iter()
                .map(|(field, negated, value)| FieldRequirement { field, negated, value: value.trim().to_owned() })
                .collect();
            requirements.sort();
            let selector = FieldSelector { requirements };
            let parsed = FieldSelector::parse(&selector.to_string()).expect("printed selector parses");
            prop_assert_eq!(parsed, selector);
        }
    }
}
