//! Python float semantics the validator and the reference miner depend on: `repr(float)` (shortest
//! round-trip digits, scientific notation when the exponent is below -4 or at least 16), the
//! validator's `len(str(x).replace(".", "")) <= 8` digit rule, `round(x, ndigits)` (correctly
//! rounded, ties to even) and the reference miner's `round_to_8_significant_digits`.

/// Shortest round-trip decimal digits of a finite non-zero `x`: (negative, digits, exponent), with
/// the value equal to `d.ddd × 10^exponent`.
fn shortest_digits(x: f64) -> (bool, String, i32) {
    // Rust's `{:e}` prints the shortest digits that round-trip, like Python's repr.
    let s = format!("{:e}", x);
    let (mantissa, exp) = s.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let neg = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    // When two shortest candidates are exactly equally close (only possible with 16 or more
    // digits), Rust rounds the last digit half up while Python's dtoa picks the even one.
    if digits.len() >= 16 {
        if let Some(even) = even_tie_digits(x, &digits, exp) {
            return (neg, even, exp);
        }
    }
    (neg, digits, exp)
}

/// If `x` lies exactly halfway between two `digits.len()`-digit decimals, the even one (when it
/// round-trips and differs from `digits`).
fn even_tie_digits(x: f64, digits: &str, exp: i32) -> Option<String> {
    let n = digits.len();
    let exact = format!("{:.*e}", n + 60, x.abs());
    let (mantissa, e) = exact.split_once('e')?;
    if e.parse::<i32>().ok()? != exp {
        return None;
    }
    let all: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    if all[n] != b'5' || all[n + 1..].iter().any(|&d| d != b'0') {
        return None;
    }
    let lower: u64 = std::str::from_utf8(&all[..n]).ok()?.parse().ok()?;
    let even = if lower % 2 == 0 { lower } else { lower + 1 };
    let cand = even.to_string();
    if cand.len() != n || cand == digits {
        return None;
    }
    let back: f64 = format!("{}.{}e{}", &cand[..1], &cand[1..], exp)
        .parse()
        .ok()?;
    (back == x.abs()).then_some(cand)
}

/// Python's `repr(x)` (== `str(x)`) for a float.
pub fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let (neg, digits, exp) = shortest_digits(x);
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
        return out;
    }
    let decpt = exp + 1; // digits before the decimal point
    let n = digits.len() as i32;
    if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..(-decpt) {
            out.push('0');
        }
        out.push_str(&digits);
    } else if decpt >= n {
        out.push_str(&digits);
        for _ in 0..(decpt - n) {
            out.push('0');
        }
        out.push_str(".0");
    } else {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    }
    out
}

/// The validator's digit count: `len(str(x).replace(".", ""))` for a Python float.
pub fn validator_digit_count(x: f64) -> usize {
    py_float_repr(x).chars().filter(|&c| c != '.').count()
}

/// The validator's digit count for a Python int.
pub fn validator_digit_count_int(x: i128) -> usize {
    x.to_string().len()
}

/// Whether a float passes `len(str(x).replace(".", "")) <= 8`.
pub fn passes_digit_rule(x: f64) -> bool {
    validator_digit_count(x) <= 8
}

/// Python's `round(x, ndigits)` for a float: round the exact binary value to `ndigits` decimal
/// places (ties to even) and read the decimal back (correctly rounded).
pub fn py_round(x: f64, ndigits: i32) -> f64 {
    const NDIGITS_MAX: i32 = 323; // (DBL_MANT_DIG - DBL_MIN_EXP) * 0.30103
    const NDIGITS_MIN: i32 = -308; // -(DBL_MAX_EXP + 1) * 0.30103
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    if ndigits > NDIGITS_MAX {
        return x;
    }
    if ndigits < NDIGITS_MIN {
        return 0.0 * x;
    }
    if ndigits >= 0 {
        let s = format!("{:.*}", ndigits as usize, x);
        let v: f64 = s.parse().expect("formatted float parses");
        // Python keeps the sign of a result that rounds to zero.
        return if v == 0.0 { 0.0f64.copysign(x) } else { v };
    }
    // Negative ndigits: keep (exponent + 1 + ndigits) significant digits.
    let exact = format!("{:.40e}", x);
    let exp: i32 = exact
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .expect("exponent");
    let sig = exp + 1 + ndigits;
    if sig <= 0 {
        // The value is below half of 10^-ndigits unless sig == 0 and it rounds up.
        let unit = format!("1e{}", -ndigits)
            .parse::<f64>()
            .unwrap_or(f64::INFINITY);
        let half = unit / 2.0;
        return if sig == 0 && x.abs() > half {
            unit.copysign(x)
        } else {
            0.0f64.copysign(x)
        };
    }
    let s = format!("{:.*e}", (sig - 1) as usize, x);
    s.parse().expect("formatted float parses")
}

/// The reference miner's `round_to_8_significant_digits`:
/// `round(x, 8 - floor(log10(|x|)) - 1)`, with 0 mapped to 0.0. NaN and infinities, on which the
/// Python raises, are returned unchanged.
pub fn round_to_8_significant_digits(x: f64) -> f64 {
    round_to_significant_digits(x, 8)
}

/// `round(x, digits - floor(log10(|x|)) - 1)`.
pub fn round_to_significant_digits(x: f64, digits: i32) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    if !x.is_finite() {
        return x;
    }
    let magnitude = x.abs().log10().floor() as i32;
    py_round(x, digits - magnitude - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_matches_python() {
        let cases: &[(f64, &str)] = &[
            (104523.45, "104523.45"),
            (104523.456, "104523.456"),
            (12345678.0, "12345678.0"),
            (0.00012345, "0.00012345"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1.2345e16, "1.2345e+16"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e15, "1000000000000000.0"),
            (1e100, "1e+100"),
            (-2.5, "-2.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (100.0, "100.0"),
            (-0.0, "-0.0"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            // Exactly halfway between two 16-digit candidates: Python picks the even digit.
            (915757686754852.0 + 0.25, "915757686754852.2"),
            (76143530002827.0 + 0.125, "76143530002827.12"),
        ];
        for (x, want) in cases {
            assert_eq!(py_float_repr(*x), *want, "repr({x:e})");
        }
    }

    #[test]
    fn digit_rule_traps() {
        assert!(passes_digit_rule(104523.45)); // 8
        assert!(!passes_digit_rule(104523.456)); // 9
        assert!(!passes_digit_rule(12345678.0)); // "123456780"
        assert!(!passes_digit_rule(0.00012345)); // "000012345"
        assert!(passes_digit_rule(0.0001234)); // "00001234"
        assert!(!passes_digit_rule(-1234567.5)); // the sign counts
        assert!(passes_digit_rule(f64::NAN)); // "nan": the rule does not reject NaN
        assert!(passes_digit_rule(1e-5)); // "1e-05"
        assert_eq!(validator_digit_count_int(12345678), 8);
        assert_eq!(validator_digit_count_int(-1234567), 8);
    }

    #[test]
    fn round_matches_python() {
        // Values checked with CPython 3.11.
        assert_eq!(py_round(0.125, 2), 0.12);
        assert_eq!(py_round(0.375, 2), 0.38);
        assert_eq!(py_round(2.5, 0), 2.0);
        assert_eq!(py_round(125.0, -1), 120.0);
        assert_eq!(py_round(135.0, -1), 140.0);
        assert_eq!(py_round(2.5e9, -9), 2e9);
        assert_eq!(py_round(3.5e9, -9), 4e9);
        assert_eq!(py_round(4.0, -1), 0.0);
        assert_eq!(py_round(6.0, -1), 10.0);
        assert_eq!(py_round(-0.001, 1).to_bits(), (-0.0f64).to_bits());
        assert_eq!(py_round(1.2345, 400), 1.2345);
        assert_eq!(py_round(1.2345, -400), 0.0);
    }

    #[test]
    fn round_to_8_significant_digits_matches_the_reference_miner() {
        assert_eq!(round_to_8_significant_digits(104523.456789), 104523.46);
        assert_eq!(round_to_8_significant_digits(0.000123456789), 0.00012345679);
        assert_eq!(round_to_8_significant_digits(123456789.0), 123456790.0);
        assert_eq!(round_to_8_significant_digits(-1.23456789123), -1.2345679);
        assert_eq!(round_to_8_significant_digits(0.0), 0.0);
        assert_eq!(round_to_8_significant_digits(2.0), 2.0);
        assert!(round_to_8_significant_digits(f64::NAN).is_nan());
        // Already 8 digits: unchanged.
        assert_eq!(round_to_8_significant_digits(92600.123), 92600.123);
    }
}
