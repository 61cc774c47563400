//! Duration strings as the Argo Rollouts API writes them (`30s`, `5m`, `1h30m`, `500ms`, `1.5h`):
//! Go's `time.ParseDuration` syntax, plus the "bare integer means seconds" form that pause
//! durations accept. Pure parsing; what a duration means is decided by the callers.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::time::Duration;

/// Why a duration string was rejected. The text is written to follow a field path, e.g.
/// `spec.metrics[0].interval: "5x" is not a duration: unknown unit "x"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("{input:?} is not a duration: a number must precede each unit")]
    MissingNumber { input: String },
    #[error(
        "{input:?} is not a duration: missing unit after {number:?} (use ns, us, ms, s, m or h)"
    )]
    MissingUnit { input: String, number: String },
    #[error("{input:?} is not a duration: unknown unit {unit:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit { input: String, unit: String },
    #[error("{input:?} is negative")]
    Negative { input: String },
    #[error("{input:?} is too large")]
    Overflow { input: String },
}

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Parses Go's `time.ParseDuration` syntax: an optional sign, then one or more `<number><unit>`
/// parts where the number may have a fraction (`1.5h`, `1h30m`, `250ms`). `"0"` alone is zero.
/// Negative durations are rejected: no duration in the API may be negative.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let trimmed = input.trim();
    let (negative, body) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        Some(_) => (false, trimmed),
        None => return Err(DurationError::Empty),
    };
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err(DurationError::MissingNumber {
            input: input.to_owned(),
        });
    }
    let total = parse_parts(input, body)?;
    if negative && total > 0 {
        return Err(DurationError::Negative {
            input: input.to_owned(),
        });
    }
    nanos_to_duration(input, total)
}

/// Parses a pause-style duration: a bare integer is a number of seconds (`"30"`), anything
/// else goes through [`parse`].
pub fn parse_seconds_or_duration(input: &str) -> Result<Duration, DurationError> {
    let trimmed = input.trim();
    match trimmed.parse::<i64>() {
        Ok(seconds) => seconds_to_duration(input, seconds),
        Err(_) => parse(input),
    }
}

/// Reads an int-or-string pause duration: an integer is seconds, a string is
/// [`parse_seconds_or_duration`].
pub fn from_int_or_string(value: &IntOrString) -> Result<Duration, DurationError> {
    match value {
        IntOrString::Int(seconds) => seconds_to_duration(&seconds.to_string(), i64::from(*seconds)),
        IntOrString::String(text) => parse_seconds_or_duration(text),
    }
}

fn seconds_to_duration(input: &str, seconds: i64) -> Result<Duration, DurationError> {
    u64::try_from(seconds)
        .map(Duration::from_secs)
        .map_err(|_| DurationError::Negative {
            input: input.to_owned(),
        })
}

fn nanos_to_duration(input: &str, nanos: u128) -> Result<Duration, DurationError> {
    let seconds = u64::try_from(nanos / NANOS_PER_SECOND).map_err(|_| DurationError::Overflow {
        input: input.to_owned(),
    })?;
    // The remainder is below one billion, so it always fits.
    let sub_nanos = u32::try_from(nanos % NANOS_PER_SECOND).unwrap_or(0);
    Ok(Duration::new(seconds, sub_nanos))
}

/// Sums the `<number><unit>` parts of `body`, in nanoseconds.
fn parse_parts(input: &str, body: &str) -> Result<u128, DurationError> {
    let overflow = || DurationError::Overflow {
        input: input.to_owned(),
    };
    let mut rest = body;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        let (whole, fraction) = match number.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (number, ""),
        };
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(DurationError::MissingNumber {
                input: input.to_owned(),
            });
        }
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                input: input.to_owned(),
                number: number.to_owned(),
            });
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SECOND,
            "m" => 60 * NANOS_PER_SECOND,
            "h" => 3_600 * NANOS_PER_SECOND,
            other => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_owned(),
                    unit: other.to_owned(),
                });
            }
        };
        let whole_value: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| overflow())?
        };
        let mut part = whole_value.checked_mul(unit_nanos).ok_or_else(overflow)?;
        // Fractions finer than a nanosecond are dropped, as Go does.
        let mut scale = unit_nanos;
        for digit in fraction.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            part += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(part).ok_or_else(overflow)?;
        if total > u128::from(u64::MAX) * NANOS_PER_SECOND {
            return Err(overflow());
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_units() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("7µs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("9ns"), Ok(Duration::from_nanos(9)));
    }

    #[test]
    fn parses_compound_and_fractional_durations() {
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2m0.5s"), Ok(Duration::from_millis(120_500)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse("+10s"), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn zero_needs_no_unit_but_other_numbers_do() {
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("-0"), Ok(Duration::ZERO));
        assert_eq!(
            parse("30"),
            Err(DurationError::MissingUnit {
                input: "30".into(),
                number: "30".into()
            })
        );
    }

    #[test]
    fn rejects_malformed_input_with_the_reason() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(
            parse("5x"),
            Err(DurationError::UnknownUnit {
                input: "5x".into(),
                unit: "x".into()
            })
        );
        assert_eq!(
            parse("s"),
            Err(DurationError::MissingNumber { input: "s".into() })
        );
        assert_eq!(
            parse("1..5s"),
            Err(DurationError::MissingNumber {
                input: "1..5s".into()
            })
        );
        assert_eq!(
            parse("-5s"),
            Err(DurationError::Negative {
                input: "-5s".into()
            })
        );
        assert_eq!(
            parse("5 s"),
            Err(DurationError::UnknownUnit {
                input: "5 s".into(),
                unit: " s".into()
            })
        );
        assert!(matches!(
            parse("99999999999999999999999h"),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn error_messages_say_why() {
        let message = parse("5x").map_err(|e| e.to_string());
        assert_eq!(
            message,
            Err(r#""5x" is not a duration: unknown unit "x" (use ns, us, ms, s, m or h)"#.into())
        );
    }

    #[test]
    fn bare_integers_are_seconds_where_allowed() {
        assert_eq!(parse_seconds_or_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_seconds_or_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(
            parse_seconds_or_duration("-3"),
            Err(DurationError::Negative { input: "-3".into() })
        );
        assert_eq!(
            from_int_or_string(&IntOrString::Int(45)),
            Ok(Duration::from_secs(45))
        );
        assert_eq!(
            from_int_or_string(&IntOrString::String("2h".into())),
            Ok(Duration::from_secs(7200))
        );
        assert_eq!(
            from_int_or_string(&IntOrString::Int(-1)),
            Err(DurationError::Negative { input: "-1".into() })
        );
    }

    proptest::proptest! {
        #[test]
        fn compound_durations_sum_their_parts(h in 0u64..10_000, m in 0u64..600, sec in 0u64..600, ms in 0u64..5_000) {
            let text = format!("{h}h{m}m{sec}s{ms}ms");
            let expected = Duration::from_secs(h * 3600 + m * 60 + sec) + Duration::from_millis(ms);
            proptest::prop_assert_eq!(parse(&text), Ok(expected));
        }

        #[test]
        fn bare_seconds_equal_the_seconds_unit(sec in 0u32..1_000_000) {
            proptest::prop_assert_eq!(parse_seconds_or_duration(&sec.to_string()), parse(&format!("{sec}s")));
        }
    }
}
