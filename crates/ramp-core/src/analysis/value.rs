//! The value a provider measured: what conditions see as `result` and what status records as
//! a measurement's `value`. Numbers are always 64-bit floats, as upstream's JSON decoding and
//! Prometheus client give them, and NaN/±Inf are kept (JSON alone could not hold them).

use std::collections::BTreeMap;
use std::fmt;

/// A measured value.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum MetricValue {
    /// No value (a JSON `null`, a provider that found nothing).
    #[default]
    Nil,
    Bool(bool),
    Number(f64),
    String(String),
    List(Vec<MetricValue>),
    Map(BTreeMap<String, MetricValue>),
}

impl MetricValue {
    /// A list of numbers, e.g. one per series of a Prometheus vector.
    pub fn numbers(values: impl IntoIterator<Item = f64>) -> Self {
        Self::List(values.into_iter().map(Self::Number).collect())
    }

    /// Whether conditions would find nothing to look at: nil, or an empty list, map or string.
    pub fn is_nil_or_empty(&self) -> bool {
        match self {
            Self::Nil => true,
            Self::List(items) => items.is_empty(),
            Self::Map(entries) => entries.is_empty(),
            Self::String(text) => text.is_empty(),
            Self::Bool(_) | Self::Number(_) => false,
        }
    }

    pub(crate) fn to_expr(&self) -> expr::Value {
        match self {
            Self::Nil => expr::Value::Nil,
            Self::Bool(b) => expr::Value::Bool(*b),
            Self::Number(n) => expr::Value::Float(*n),
            Self::String(s) => expr::Value::String(s.clone()),
            Self::List(items) => expr::Value::Array(items.iter().map(Self::to_expr).collect()),
            Self::Map(entries) => expr::Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_expr()))
                    .collect(),
            ),
        }
    }

    /// The value as JSON; NaN and infinities, which JSON cannot hold, become their Go spelling
    /// as strings.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Nil => serde_json::Value::Null,
            Self::Bool(b) => serde_json::Value::Bool(*b),
            Self::Number(n) => serde_json::Number::from_f64(*n)
                .map_or_else(|| serde_json::Value::String(go_float(*n)), Into::into),
            Self::String(s) => serde_json::Value::String(s.clone()),
            Self::List(items) => {
                serde_json::Value::Array(items.iter().map(Self::to_json).collect())
            }
            Self::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl From<serde_json::Value> for MetricValue {
    fn from(value: serde_json::Value) -> Self {
        match value {
            serde_json::Value::Null => Self::Nil,
            serde_json::Value::Bool(b) => Self::Bool(b),
            // Upstream decodes every JSON number to float64; integers above 2^53 lose precision
            // there too.
            serde_json::Value::Number(n) => Self::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Self::String(s),
            serde_json::Value::Array(items) => {
                Self::List(items.into_iter().map(Self::from).collect())
            }
            serde_json::Value::Object(entries) => {
                Self::Map(entries.into_iter().map(|(k, v)| (k, v.into())).collect())
            }
        }
    }
}

/// The rendering stored in `measurements[].value`: numbers as Go prints them (`0.99`, `NaN`,
/// `+Inf`), number lists as `[0.99,0.98]`, strings raw, anything else as JSON.
impl fmt::Display for MetricValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => f.write_str(&go_float(*n)),
            Self::String(s) => f.write_str(s),
            Self::List(items) if items.iter().all(|i| matches!(i, Self::Number(_))) => {
                f.write_str("[")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            other => write!(f, "{}", other.to_json()),
        }
    }
}

fn go_float(n: f64) -> String {
    if n.is_nan() {
        "NaN".to_owned()
    } else if n == f64::INFINITY {
        "+Inf".to_owned()
    } else if n == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_numbers_become_floats_as_upstream_decodes_them() {
        assert_eq!(MetricValue::from(json!(200)), MetricValue::Number(200.0));
        assert_eq!(
            MetricValue::from(json!({"ok": true, "n": [1, 2.5]})),
            MetricValue::Map(BTreeMap::from([
                ("n".to_owned(), MetricValue::numbers([1.0, 2.5])),
                ("ok".to_owned(), MetricValue::Bool(true)),
            ]))
        );
    }

    #[test]
    fn rendering_matches_upstream_value_strings() {
        assert_eq!(MetricValue::numbers([0.99, 1.0]).to_string(), "[0.99,1]");
        assert_eq!(MetricValue::numbers([]).to_string(), "[]");
        assert_eq!(MetricValue::Number(f64::NAN).to_string(), "NaN");
        assert_eq!(MetricValue::Number(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(MetricValue::Number(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(MetricValue::String("up".into()).to_string(), "up");
        assert_eq!(
            MetricValue::from(json!({"a": "b"})).to_string(),
            r#"{"a":"b"}"#
        );
        assert_eq!(MetricValue::Nil.to_string(), "null");
    }

    #[test]
    fn nil_or_empty_covers_what_a_query_without_data_returns() {
        assert!(MetricValue::Nil.is_nil_or_empty());
        assert!(MetricValue::numbers([]).is_nil_or_empty());
        assert!(!MetricValue::numbers([0.0]).is_nil_or_empty());
        assert!(!MetricValue::Number(0.0).is_nil_or_empty());
    }
}
