use super::*;
use serde_json::json;

fn n(x: f64) -> MetricValue {
    MetricValue::Number(x)
}

fn list(xs: &[f64]) -> MetricValue {
    MetricValue::numbers(xs.iter().copied())
}

fn js(v: serde_json::Value) -> MetricValue {
    MetricValue::from(v)
}

#[track_caller]
fn holds(expr: &str, result: &MetricValue, expected: bool) {
    assert_eq!(
        evaluate(expr, result),
        Ok(expected),
        "{expr} with result {result:?}"
    );
}

// Every form of §3.6, each with a value that makes it true and one that makes it false.

#[test]
fn form_index_of_vector() {
    holds("result[0] >= 0.95", &list(&[0.97]), true);
    holds("result[0] >= 0.95", &list(&[0.90]), false);
}

#[test]
fn form_scalar_comparison() {
    holds("result >= 0.95", &n(0.99), true);
    holds("result >= 0.95", &n(0.5), false);
}

#[test]
fn form_bool_equality() {
    holds("result == true", &MetricValue::Bool(true), true);
    holds("result == true", &MetricValue::Bool(false), false);
}

#[test]
fn form_string_equality() {
    holds(
        "result == 'true'",
        &MetricValue::String("true".into()),
        true,
    );
    holds(
        "result == 'true'",
        &MetricValue::String("false".into()),
        false,
    );
}

#[test]
fn form_member_access() {
    holds("result.major == '1'", &js(json!({"major": "1"})), true);
    holds("result.major == '1'", &js(json!({"major": "2"})), false);
}

#[test]
fn form_members_with_and() {
    let expr = "result.ok && result.successPercent >= 0.90";
    holds(expr, &js(json!({"ok": true, "successPercent": 0.95})), true);
    holds(
        expr,
        &js(json!({"ok": false, "successPercent": 0.95})),
        false,
    );
    holds(expr, &js(json!({"ok": true, "successPercent": 0.5})), false);
}

#[test]
fn form_len_zero_or_index() {
    let expr = "len(result) == 0 || result[0] >= 0.95";
    holds(expr, &list(&[]), true);
    holds(expr, &list(&[0.96]), true);
    holds(expr, &list(&[0.5]), false);
}

#[test]
fn form_len_positive_and_index() {
    let expr = "len(result) > 0 && result[0] >= 0.95";
    holds(expr, &list(&[]), false);
    holds(expr, &list(&[0.96]), true);
}

#[test]
fn form_is_nan_or_threshold() {
    let expr = "isNaN(result) || result >= 0.95";
    holds(expr, &n(f64::NAN), true);
    holds(expr, &n(0.99), true);
    holds(expr, &n(0.5), false);
}

#[test]
fn form_is_inf_either_sign() {
    holds("isInf(result)", &n(f64::INFINITY), true);
    holds("isInf(result)", &n(f64::NEG_INFINITY), true);
    holds("isInf(result)", &n(1.0), false);
}

#[test]
fn form_default_of_nil_result() {
    holds("default(result, 0) < 0.05", &MetricValue::Nil, true);
    holds("default(result, 0) < 0.05", &n(0.01), true);
    holds("default(result, 0) < 0.05", &n(0.5), false);
}

#[test]
fn form_all_with_bare_predicate() {
    holds("all(result, # < 1000)", &list(&[1.0, 999.0]), true);
    holds("all(result, # < 1000)", &list(&[1.0, 1000.0]), false);
}

#[test]
fn form_all_with_closure_and_member_of_element() {
    let expr = "all(result.service_apdex.values.values, {asFloat(.value) >= 9900})";
    let passing = js(json!({"service_apdex": {"values": {"values": [
        {"id": "a", "value": "9950"}, {"id": "b", "value": "10000"}
    ]}}}));
    let failing = js(json!({"service_apdex": {"values": {"values": [
        {"id": "a", "value": "9950"}, {"id": "b", "value": "9800"}
    ]}}}));
    holds(expr, &passing, true);
    holds(expr, &failing, false);
}

#[test]
fn form_len_of_nested_list_and_all() {
    let expr = "len(result[0].Values) >= 5 and all(result[0].Values, {# <= 0.01})";
    holds(
        expr,
        &js(json!([{"Values": [0.0, 0.01, 0.005, 0.0, 0.001]}])),
        true,
    );
    holds(expr, &js(json!([{"Values": [0.0, 0.01]}])), false);
    holds(
        expr,
        &js(json!([{"Values": [0.0, 0.02, 0.005, 0.0, 0.001]}])),
        false,
    );
}

#[test]
fn form_max_of_list() {
    holds("max(result) < 0.05", &list(&[0.01, 0.04]), true);
    holds("max(result) < 0.05", &list(&[0.01, 0.06]), false);
}

#[test]
fn form_templated_string_comparison_after_substitution() {
    // `result == "{{args.success-condition}}"` once the argument "true" is substituted.
    holds(
        r#"result == "true""#,
        &MetricValue::String("true".into()),
        true,
    );
    holds(r#"result == "true""#, &MetricValue::Bool(true), false);
}

#[test]
fn builtins_listed_in_the_reference_are_available() {
    let cases: &[(&str, MetricValue, bool)] = &[
        ("any(result, # > 2)", list(&[1.0, 3.0]), true),
        ("none(result, # > 2)", list(&[1.0, 3.0]), false),
        ("one(result, # > 2)", list(&[1.0, 3.0]), true),
        ("len(filter(result, # > 1)) == 1", list(&[1.0, 3.0]), true),
        ("map(result, # * 2)[1] == 6", list(&[1.0, 3.0]), true),
        ("count(result, # > 0) == 2", list(&[1.0, 3.0]), true),
        ("sum(result) == 4", list(&[1.0, 3.0]), true),
        ("mean(result) == 2", list(&[1.0, 3.0]), true),
        ("min(result) == 1", list(&[1.0, 3.0]), true),
        ("abs(result) == 2", n(-2.0), true),
        ("ceil(result) == 2", n(1.2), true),
        ("floor(result) == 1", n(1.8), true),
        ("round(result) == 2", n(1.5), true),
        ("int(result) == 1", n(1.9), true),
        (
            "float(result) == 1.5",
            MetricValue::String("1.5".into()),
            true,
        ),
        (
            "string(result) == 'ok'",
            MetricValue::String("ok".into()),
            true,
        ),
        (
            "result contains 'err'",
            MetricValue::String("no error".into()),
            true,
        ),
        (
            "result startsWith 'no'",
            MetricValue::String("no error".into()),
            true,
        ),
        (
            "result endsWith 'or'",
            MetricValue::String("no error".into()),
            true,
        ),
        (
            "result matches '^no e'",
            MetricValue::String("no error".into()),
            true,
        ),
        ("result in [1, 2]", n(2.0), true),
        ("'a' in result", js(json!({"a": 1})), true),
        ("not (result > 1) and true or false", n(0.5), true),
        ("!(result > 1) && true || false", n(0.5), true),
        ("result > 1 ? false : true", n(0.5), true),
        ("result ?? 0 > 1", MetricValue::Nil, false),
    ];
    for (expr, result, expected) in cases {
        holds(expr, result, *expected);
    }
}

#[test]
fn as_int_and_as_float_convert_numbers_and_numeric_strings() {
    holds(
        "asInt(result) == 42",
        &MetricValue::String("42".into()),
        true,
    );
    holds("asInt(result) == 3", &n(3.9), true);
    holds(
        "asFloat(result) > 1",
        &MetricValue::String("1.5".into()),
        true,
    );
    holds("asFloat(result) == 2", &n(2.0), true);
    holds(
        "isNaN(asFloat(result))",
        &MetricValue::String("NaN".into()),
        true,
    );
}

#[test]
fn as_int_of_a_non_numeric_string_is_an_error_not_a_panic() {
    let error = evaluate("asInt(result) > 1", &MetricValue::String("abc".into()));
    assert!(
        matches!(&error, Err(ConditionError::Evaluation { message, .. }) if message.contains("asInt")),
        "{error:?}"
    );
    let error = evaluate("asFloat(result) > 1", &js(json!({"a": 1})));
    assert!(
        matches!(error, Err(ConditionError::Evaluation { .. })),
        "{error:?}"
    );
}

#[test]
fn is_nil_tests_the_whole_result_whatever_its_argument() {
    holds("isNil(1)", &MetricValue::Nil, true);
    holds("isNil(result)", &MetricValue::Nil, true);
    holds("isNil(nil)", &n(5.0), false);
    // An empty list is not nil, as upstream's vector results are never nil slices.
    holds("isNil(result)", &list(&[]), false);
}

#[test]
fn default_returns_the_whole_result_whatever_its_first_argument() {
    holds("default(1, 7) == 7", &MetricValue::Nil, true);
    holds("default(1, 7) == 3", &n(3.0), true);
    // The first argument is still evaluated: indexing an empty list fails before `default`.
    assert!(matches!(
        evaluate("default(result[0], 0) < 1", &list(&[])),
        Err(ConditionError::NilOrEmptyResult { .. })
    ));
}

#[test]
fn malformed_expressions_are_syntax_errors_naming_the_expression() {
    for expr in [
        "result >=",
        "result[0 >= 1",
        ")(",
        "result >= 0.95 &&",
        "all(result, {# < 1)",
    ] {
        match evaluate(expr, &n(1.0)) {
            Err(ConditionError::Syntax {
                expr: named,
                message,
            }) => {
                assert_eq!(named, expr);
                assert!(!message.is_empty());
                assert!(!message.contains('\n'), "{message}");
            }
            other => panic!("{expr}: expected a syntax error, got {other:?}"),
        }
        assert!(check_syntax(expr).is_err(), "{expr}");
    }
}

#[test]
fn check_syntax_accepts_every_reference_form() {
    for expr in [
        "result[0] >= 0.95",
        "all(result.service_apdex.values.values, {asFloat(.value) >= 9900})",
        "len(result[0].Values) >= 5 and all(result[0].Values, {# <= 0.01})",
        "default(result, 0) < 0.05",
        "isNaN(result) || result >= 0.95",
    ] {
        assert_eq!(check_syntax(expr), Ok(()), "{expr}");
    }
}

#[test]
fn metric_condition_check_names_the_field_and_skips_placeholders() {
    let metric = ramp_api::analysis::Metric {
        name: "m".into(),
        success_condition: Some("result[0] >=".into()),
        failure_condition: Some("result > {{args.limit}}".into()),
        ..Default::default()
    };
    let problems = check_metric_conditions(&metric);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].0, "successCondition");
}

#[test]
fn non_boolean_results_are_errors() {
    assert_eq!(
        evaluate("result + 1", &n(1.0)),
        Err(ConditionError::NotABool {
            expr: "result + 1".into(),
            type_name: "float64"
        })
    );
    assert!(matches!(
        evaluate("result", &MetricValue::String("x".into())),
        Err(ConditionError::NotABool {
            type_name: "string",
            ..
        })
    ));
}

#[test]
fn invalid_operands_are_evaluation_errors() {
    assert!(matches!(
        evaluate("result > 'x'", &n(1.0)),
        Err(ConditionError::Evaluation { .. })
    ));
}

#[test]
fn errors_on_a_nil_or_empty_result_say_so() {
    let error = evaluate("result.code == 200", &MetricValue::Nil);
    assert!(
        matches!(error, Err(ConditionError::NilOrEmptyResult { .. })),
        "{error:?}"
    );
    let message = error.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.starts_with("metric result is nil or empty"),
        "{message}"
    );
    assert!(matches!(
        evaluate("result[0] > 1", &list(&[])),
        Err(ConditionError::NilOrEmptyResult { .. })
    ));
}

// §3.5 step 5: the measurement verdict.

#[test]
fn verdict_without_conditions_is_successful() {
    let verdict = measurement_verdict(None, None, &MetricValue::Nil);
    assert_eq!(verdict.phase, AnalysisPhase::Successful);
    let verdict = measurement_verdict(Some(""), Some(""), &n(0.0));
    assert_eq!(verdict.phase, AnalysisPhase::Successful);
}

#[test]
fn verdict_with_only_success_condition() {
    let c = Some("result > 1");
    assert_eq!(
        measurement_verdict(c, None, &n(2.0)).phase,
        AnalysisPhase::Successful
    );
    assert_eq!(
        measurement_verdict(c, None, &n(0.0)).phase,
        AnalysisPhase::Failed
    );
}

#[test]
fn verdict_with_only_failure_condition() {
    let c = Some("result > 1");
    assert_eq!(
        measurement_verdict(None, c, &n(2.0)).phase,
        AnalysisPhase::Failed
    );
    assert_eq!(
        measurement_verdict(None, c, &n(0.0)).phase,
        AnalysisPhase::Successful
    );
}

#[test]
fn verdict_with_both_conditions() {
    let success = Some("result > 10");
    let failure = Some("result < 5");
    assert_eq!(
        measurement_verdict(success, failure, &n(1.0)).phase,
        AnalysisPhase::Failed
    );
    assert_eq!(
        measurement_verdict(success, failure, &n(20.0)).phase,
        AnalysisPhase::Successful
    );
    assert_eq!(
        measurement_verdict(success, failure, &n(7.0)).phase,
        AnalysisPhase::Inconclusive
    );
    // The failure condition wins when both hold.
    assert_eq!(
        measurement_verdict(Some("true"), Some("true"), &n(7.0)).phase,
        AnalysisPhase::Failed
    );
}

#[test]
fn verdict_is_error_with_message_when_a_condition_cannot_be_evaluated() {
    let verdict = measurement_verdict(Some("result[0] >= 0.95"), None, &list(&[]));
    assert_eq!(verdict.phase, AnalysisPhase::Error);
    let message = verdict.message.unwrap_or_default();
    assert!(
        message.starts_with("metric result is nil or empty"),
        "{message}"
    );
    let verdict = measurement_verdict(Some("result >="), None, &n(1.0));
    assert_eq!(verdict.phase, AnalysisPhase::Error);
    assert!(
        verdict
            .message
            .is_some_and(|m| m.contains("invalid expression \"result >=\""))
    );
}

#[test]
fn range_time_expressions_evaluate_against_the_given_now() {
    let now = 1_700_000_000.0;
    assert_eq!(evaluate_time("now()", now), Ok(now));
    assert_eq!(
        evaluate_time(r#"now() - duration("5m")"#, now),
        Ok(now - 300.0)
    );
    assert_eq!(
        evaluate_time(r#"now() + duration("1h30m")"#, now),
        Ok(now + 5400.0)
    );
    assert!(matches!(
        evaluate_time(r#"now() - duration("5x")"#, now),
        Err(ConditionError::Evaluation { .. })
    ));
    assert!(matches!(
        evaluate_time("'yesterday'", now),
        Err(ConditionError::Evaluation { .. })
    ));
    assert!(matches!(
        evaluate_time("now(", now),
        Err(ConditionError::Syntax { .. })
    ));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever text a template holds, evaluation returns a value or an error.
        #[test]
        fn arbitrary_text_never_panics(expr in "\\PC{0,40}", x in proptest::num::f64::ANY) {
            let _ = evaluate(&expr, &n(x));
            let _ = check_syntax(&expr);
        }

        #[test]
        fn threshold_conditions_agree_with_float_comparison(x in -1e6f64..1e6, t in -1e6f64..1e6) {
            prop_assert_eq!(evaluate(&format!("result >= {t:?}"), &n(x)), Ok(x >= t));
        }
    }
}
