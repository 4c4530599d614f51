/*!
Go's `time.Duration` text forms: `String()` (used in clone-log.txt and entrypoint's log lines) and
`ParseDuration` (used by flags and by `prowapi.Duration` in JOB_SPEC). Durations are signed
nanoseconds, as in Go.
*/

use std::fmt::Write as _;

pub const NANOSECOND: i64 = 1;
pub const MICROSECOND: i64 = 1_000;
pub const MILLISECOND: i64 = 1_000_000;
pub const SECOND: i64 = 1_000_000_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;

/// Formats nanoseconds exactly as Go's `time.Duration.String()`: `0s`, `7ns`, `1.5µs`, `250ms`,
/// `1.5s`, `1m30s`, `2h0m0s`.
pub fn format(d: i64) -> String {
    if d == 0 {
        return "0s".to_string();
    }
    let neg = d < 0;
    let mut u = d.unsigned_abs();
    let mut out = String::new();
    if u < SECOND as u64 {
        let (prec, unit) = if u < MICROSECOND as u64 {
            (0, "ns")
        } else if u < MILLISECOND as u64 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let (int, frac) = split_frac(u, prec);
        let _ = write!(out, "{int}{frac}{unit}");
    } else {
        let (secs, frac) = split_frac(u, 9);
        u = secs;
        let s = u % 60;
        u /= 60;
        if u > 0 {
            let m = u % 60;
            u /= 60;
            if u > 0 {
                let _ = write!(out, "{u}h");
            }
            let _ = write!(out, "{m}m");
        }
        let _ = write!(out, "{s}{frac}s");
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

/// Splits `v` into its integer part and a `.ddd` fraction of `prec` digits with trailing zeros
/// dropped (empty when the fraction is zero), like Go's `fmtFrac`.
fn split_frac(v: u64, prec: u32) -> (u64, String) {
    let scale = 10u64.pow(prec);
    let (int, mut frac) = (v / scale, v % scale);
    if frac == 0 {
        return (int, String::new());
    }
    let mut digits = prec as usize;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    (int, format!(".{frac:0digits$}"))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time: {0}")]
pub struct ParseError(String);

impl ParseError {
    fn new(kind: &'static str, s: &str) -> Self {
        ParseError(format!("{kind} duration {s:?}"))
    }
}

/// Parses a Go duration string (`"1h"`, `"90s"`, `"1.5h"`, `"100ms"`, `"-2m3s"`, `"0"`) into
/// nanoseconds, with Go's grammar, unit table and overflow errors.
pub fn parse(s: &str) -> Result<i64, ParseError> {
    let orig = s;
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(ParseError::new("invalid", orig));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let b = rest.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(ParseError::new("invalid", orig));
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let int_digits = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_digits = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_digits = &r[..n];
            rest = &r[n..];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(ParseError::new("invalid", orig));
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u128 = match unit {
            "" => return Err(ParseError::new("missing unit in", orig)),
            "ns" => 1,
            "us" | "µs" | "μs" => MICROSECOND as u128,
            "ms" => MILLISECOND as u128,
            "s" => SECOND as u128,
            "m" => MINUTE as u128,
            "h" => HOUR as u128,
            _ => {
                return Err(ParseError(format!(
                    "unknown unit {unit:?} in duration {orig:?}"
                )));
            }
        };
        let int: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits
                .parse()
                .map_err(|_| ParseError::new("invalid", orig))?
        };
        let mut value = int
            .checked_mul(scale)
            .ok_or_else(|| ParseError::new("invalid", orig))?;
        // Fractions are truncated to whole nanoseconds, as Go does.
        let mut place = scale;
        for d in frac_digits.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            value += u128::from(d - b'0') * place;
        }
        total += value;
        if total > i64::MAX as u128 + u128::from(neg) {
            return Err(ParseError::new("invalid", orig));
        }
    }
    Ok(if neg {
        (total as i128).wrapping_neg() as i64
    } else {
        total as i64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (4 * MINUTE + 5 * SECOND, "4m5s"),
            (4 * MINUTE + 5_001 * MILLISECOND, "4m5.001s"),
            (5 * HOUR + 6 * MINUTE + 7_001 * MILLISECOND, "5h6m7.001s"),
            (8 * MINUTE + 1, "8m0.000000001s"),
            (2 * HOUR, "2h0m0s"),
            (15 * SECOND, "15s"),
            (12 * SECOND, "12s"),
            (-SECOND, "-1s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (d, want) in cases {
            assert_eq!(format(d), want, "{d}");
        }
    }

    #[test]
    fn parses_like_go() {
        let cases = [
            ("0", 0),
            ("5s", 5 * SECOND),
            ("30s", 30 * SECOND),
            ("1478s", 1478 * SECOND),
            ("-5s", -5 * SECOND),
            ("+5s", 5 * SECOND),
            ("-0", 0),
            ("5.0s", 5 * SECOND),
            ("5.6s", 5 * SECOND + 600 * MILLISECOND),
            (".5s", 500 * MILLISECOND),
            ("1.s", SECOND),
            ("1.004s", SECOND + 4 * MILLISECOND),
            ("100.00100s", 100 * SECOND + MILLISECOND),
            ("10ns", 10),
            ("11us", 11 * MICROSECOND),
            ("12µs", 12 * MICROSECOND),
            ("12μs", 12 * MICROSECOND),
            ("13ms", 13 * MILLISECOND),
            ("15m", 15 * MINUTE),
            ("16h", 16 * HOUR),
            ("3h30m", 3 * HOUR + 30 * MINUTE),
            ("2h0m0s", 2 * HOUR),
            ("1.5h", 90 * MINUTE),
            ("9223372036854775807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
        ];
        for (s, want) in cases {
            assert_eq!(parse(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_like_go() {
        for s in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "9223372036854775808ns",
        ] {
            assert!(parse(s).is_err(), "{s:?} should fail");
        }
        assert_eq!(
            parse("3").unwrap_err().to_string(),
            r#"time: missing unit in duration "3""#
        );
        assert_eq!(
            parse("1d").unwrap_err().to_string(),
            r#"time: unknown unit "d" in duration "1d""#
        );
        assert_eq!(
            parse("x").unwrap_err().to_string(),
            r#"time: invalid duration "x""#
        );
    }

    #[test]
    fn round_trips() {
        for d in [
            1,
            999,
            1_000_001,
            59 * SECOND,
            HOUR + 1,
            7 * HOUR + 3 * MILLISECOND,
        ] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
