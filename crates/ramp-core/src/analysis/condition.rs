//! `successCondition` / `failureCondition` evaluation: a small facade over the `expr-lang` crate
//! with upstream's helpers (`asInt`, `asFloat`, `isNaN`, `isInf`, `isNil`, `default`), and the
//! measurement verdict derived from both conditions. Also the range-query time expressions.
//! Pure: no I/O, and `now()` is handed in.

use super::value::MetricValue;
use expr::{Context, ContextProvider, Environment, Program, Value};
use ramp_api::analysis::AnalysisPhase;
use std::panic::AssertUnwindSafe;
use std::sync::LazyLock;

/// Why a condition could not produce a boolean. Every variant names the expression.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// The expression does not parse.
    #[error("invalid expression {expr:?}: {message}")]
    Syntax { expr: String, message: String },
    /// The expression parsed but failed while running (bad operands, member access on nil, a
    /// helper given the wrong type, ...).
    #[error("failed to evaluate {expr:?}: {message}")]
    Evaluation { expr: String, message: String },
    /// As `Evaluation`, when `result` was nil or an empty list: the usual cause is a query
    /// that matched no series, which the message says.
    #[error("metric result is nil or empty: failed to evaluate {expr:?}: {message}")]
    NilOrEmptyResult { expr: String, message: String },
    /// The expression ran but did not yield a boolean.
    #[error("{expr:?}: expected bool, but got {type_name}")]
    NotABool {
        expr: String,
        type_name: &'static str,
    },
}

/// Checks that an expression parses, without running it; for `ramp lint`. Runtime-only
/// problems (wrong operand types, unknown members) cannot be found without a result.
pub fn check_syntax(expr: &str) -> Result<(), ConditionError> {
    expr::compile(expr)
        .map(|_| ())
        .map_err(|e| ConditionError::Syntax {
            expr: expr.to_owned(),
            message: one_line(&e.to_string()),
        })
}

/// Syntax problems of a metric's conditions, by field, for `ramp lint`. Conditions that still
/// hold an `{{args.*}}` placeholder are skipped: only the run knows their text.
pub fn check_metric_conditions(
    metric: &ramp_api::analysis::Metric,
) -> Vec<(&'static str, ConditionError)> {
    [
        ("successCondition", metric.success_condition.as_deref()),
        ("failureCondition", metric.failure_condition.as_deref()),
    ]
    .into_iter()
    .filter_map(|(field, condition)| {
        let condition = condition.filter(|c| !c.is_empty() && !c.contains("{{"))?;
        check_syntax(condition).err().map(|e| (field, e))
    })
    .collect()
}

/// Evaluates a condition with `result` bound to a measurement's value.
pub fn evaluate(expr: &str, result: &MetricValue) -> Result<bool, ConditionError> {
    let program = expr::compile(expr).map_err(|e| ConditionError::Syntax {
        expr: expr.to_owned(),
        message: one_line(&e.to_string()),
    })?;
    let mut context = Context::default();
    context.insert("result", result.to_expr());
    // The engine is written to be panic-free; the guard keeps a bug in it from taking the
    // controller down with one bad template.
    let outcome =
        std::panic::catch_unwind(AssertUnwindSafe(|| CONDITION_ENV.run(&program, &context)));
    let value = match outcome {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => return Err(evaluation_error(expr, result, one_line(&e.to_string()))),
        Err(_) => {
            return Err(evaluation_error(
                expr,
                result,
                "the expression engine panicked".to_owned(),
            ));
        }
    };
    match value {
        Value::Bool(b) => Ok(b),
        other => Err(ConditionError::NotABool {
            expr: expr.to_owned(),
            type_name: type_name(&other),
        }),
    }
}

fn evaluation_error(expr: &str, result: &MetricValue, message: String) -> ConditionError {
    if result.is_nil_or_empty() {
        ConditionError::NilOrEmptyResult {
            expr: expr.to_owned(),
            message,
        }
    } else {
        ConditionError::Evaluation {
            expr: expr.to_owned(),
            message,
        }
    }
}

/// The outcome of one measurement as judged by the metric's conditions (§3.5 step 5).
#[derive(Clone, Debug, PartialEq)]
pub struct MeasurementVerdict {
    /// Successful, Failed, Inconclusive or Error.
    pub phase: AnalysisPhase,
    /// Why, for an Error.
    pub message: Option<String>,
}

/// Judges a measured value: neither condition → Successful; only success → Successful if true
/// else Failed; only failure → Failed if true else Successful; both → Failed if failure holds,
/// else Successful if success holds, else Inconclusive. An evaluation error is an Error. Empty
/// strings count as unset.
pub fn measurement_verdict(
    success_condition: Option<&str>,
    failure_condition: Option<&str>,
    result: &MetricValue,
) -> MeasurementVerdict {
    let success_condition = success_condition.filter(|c| !c.is_empty());
    let failure_condition = failure_condition.filter(|c| !c.is_empty());
    let judged = (|| -> Result<AnalysisPhase, ConditionError> {
        let success = success_condition.map(|c| evaluate(c, result)).transpose()?;
        let failure = failure_condition.map(|c| evaluate(c, result)).transpose()?;
        Ok(match (success, failure) {
            (None, None) => AnalysisPhase::Successful,
            (Some(true), None) | (None, Some(false)) => AnalysisPhase::Successful,
            (Some(false), None) | (None, Some(true)) => AnalysisPhase::Failed,
            (_, Some(true)) => AnalysisPhase::Failed,
            (Some(true), Some(false)) => AnalysisPhase::Successful,
            (Some(false), Some(false)) => AnalysisPhase::Inconclusive,
        })
    })();
    match judged {
        Ok(phase) => MeasurementVerdict {
            phase,
            message: None,
        },
        Err(e) => MeasurementVerdict {
            phase: AnalysisPhase::Error,
            message: Some(e.to_string()),
        },
    }
}

/// Evaluates a range-query `start`/`end` time expression such as `now() - duration("5m")`.
/// Times are seconds since the Unix epoch and durations are seconds, so the arithmetic of
/// upstream's forms works unchanged; the result is the instant in epoch seconds.
pub fn evaluate_time(expr: &str, now_epoch_seconds: f64) -> Result<f64, ConditionError> {
    let program = expr::compile(expr).map_err(|e| ConditionError::Syntax {
        expr: expr.to_owned(),
        message: one_line(&e.to_string()),
    })?;
    let mut env = Environment::new();
    add_number_helpers(&mut env);
    env.add_function("now", move |call| {
        if !call.args.is_empty() {
            return Err("now() takes no arguments".to_owned().into());
        }
        Ok(Value::Float(now_epoch_seconds))
    });
    env.add_function("duration", |call| match call.args.as_slice() {
        [Value::String(text)] => parse_signed_duration(text).map(Value::Float),
        _ => Err("duration() takes one string such as \"5m\""
            .to_owned()
            .into()),
    });
    let context = Context::default();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| env.run(&program, &context)));
    match outcome {
        Ok(Ok(Value::Float(seconds))) if seconds.is_finite() => Ok(seconds),
        #[allow(clippy::cast_precision_loss)]
        Ok(Ok(Value::Integer(seconds))) => Ok(seconds as f64),
        Ok(Ok(other)) => Err(ConditionError::Evaluation {
            expr: expr.to_owned(),
            message: format!("expected a time, but got {}", type_name(&other)),
        }),
        Ok(Err(e)) => Err(ConditionError::Evaluation {
            expr: expr.to_owned(),
            message: one_line(&e.to_string()),
        }),
        Err(_) => Err(ConditionError::Evaluation {
            expr: expr.to_owned(),
            message: "the expression engine panicked".to_owned(),
        }),
    }
}

static CONDITION_ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    add_number_helpers(&mut env);
    // Upstream quirk kept for parity: both helpers ignore their first argument and look at the
    // whole `result`, so `default(result[0], 0)` still fails on an empty list.
    env.add_function("isNil", |call| {
        if call.args.len() != 1 {
            return Err("isNil() takes one argument".to_owned().into());
        }
        Ok(Value::Bool(result_is_nil(call.ctx.get("result"))))
    });
    env.add_function("default", |call| {
        let [_, fallback] = call.args.as_slice() else {
            return Err("default() takes two arguments".to_owned().into());
        };
        let result = call.ctx.get("result");
        if result_is_nil(result) {
            Ok(fallback.clone())
        } else {
            Ok(result.cloned().unwrap_or(Value::Nil))
        }
    });
    env
});

fn result_is_nil(result: Option<&Value>) -> bool {
    result.is_none_or(Value::is_nil)
}

fn add_number_helpers(env: &mut Environment<'_>) {
    env.add_function("asInt", |call| {
        match one_argument(&call.ident, &call.args, call.predicate, call.env, call.ctx)? {
            Value::Integer(n) => Ok(Value::Integer(n)),
            #[allow(clippy::cast_possible_truncation)]
            Value::Float(f) if f.is_finite() => Ok(Value::Integer(f.trunc() as i64)),
            Value::String(s) => s
                .parse::<i64>()
                .map(Value::Integer)
                .map_err(|e| format!("asInt({s:?}): {e}").into()),
            other => Err(format!("asInt() not supported on {}", type_name(&other)).into()),
        }
    });
    env.add_function("asFloat", |call| {
        match one_argument(&call.ident, &call.args, call.predicate, call.env, call.ctx)? {
            #[allow(clippy::cast_precision_loss)]
            Value::Integer(n) => Ok(Value::Float(n as f64)),
            Value::Float(f) => Ok(Value::Float(f)),
            Value::String(s) => parse_go_float(&s)
                .map(Value::Float)
                .ok_or_else(|| format!("asFloat({s:?}): invalid syntax").into()),
            other => Err(format!("asFloat() not supported on {}", type_name(&other)).into()),
        }
    });
    env.add_function("isNaN", |call| {
        match one_argument(&call.ident, &call.args, call.predicate, call.env, call.ctx)? {
            Value::Float(f) => Ok(Value::Bool(f.is_nan())),
            Value::Integer(_) => Ok(Value::Bool(false)),
            other => Err(format!("isNaN() expects a number, got {}", type_name(&other)).into()),
        }
    });
    env.add_function("isInf", |call| {
        match one_argument(&call.ident, &call.args, call.predicate, call.env, call.ctx)? {
            Value::Float(f) => Ok(Value::Bool(f.is_infinite())),
            Value::Integer(_) => Ok(Value::Bool(false)),
            other => Err(format!("isInf() expects a number, got {}", type_name(&other)).into()),
        }
    });
}

/// The single argument of a helper. expr-lang parses a call whose only argument starts with
/// `.` (`asFloat(.value)` inside a closure) as a predicate rather than an argument, so the
/// predicate is evaluated in the caller's scope to get the value upstream would pass.
fn one_argument(
    name: &str,
    args: &[Value],
    predicate: Option<&Program>,
    env: &Environment<'_>,
    ctx: &dyn ContextProvider,
) -> expr::Result<Value> {
    match (args, predicate) {
        ([value], None) => Ok(value.clone()),
        ([], Some(predicate)) => env.run(predicate, ctx),
        _ => Err(format!("{name}() takes one argument").into()),
    }
}

/// A Go duration in seconds; unlike API fields, a time expression may go backwards.
fn parse_signed_duration(text: &str) -> expr::Result<f64> {
    let (sign, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, text),
    };
    ramp_api::duration::parse(magnitude)
        .map(|d| sign * d.as_secs_f64())
        .map_err(|e| format!("duration({text:?}): {e}").into())
}

/// Go's `strconv.ParseFloat` accepts `NaN`, `Inf`, `+Inf`, `-Inf` (any case), which Rust's
/// parser spells differently.
fn parse_go_float(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) => "int",
        Value::Bool(_) => "bool",
        Value::Float(_) => "float64",
        Value::Nil => "nil",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Bytes(_) => "bytes",
        Value::Map(_) | Value::KeyedMap(_) => "map",
    }
}

/// Pest errors span several lines with a caret diagram; status messages are one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[path = "condition_tests.rs"]
mod tests;
