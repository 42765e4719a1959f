//! A fast writer for `simulation_output`, token for token the same as
//! `sn50::response::MinerResponse::from_paths(..).to_json()`.
//!
//! That encoder is exact but formats and re-parses strings for every price (about half a
//! microsecond each, 0.15 s for a 24 h answer of 289,000 prices). Here the common case, a price
//! in `[1, 1e7)`, is rounded to 8 significant digits from its shortest round-trip digits (ryu)
//! with integer arithmetic: Python's `round(x, 7 - floor(log10 x))` rounds the exact binary
//! value, and the shortest digits of `x` lie on the same side of every 9-digit rounding midpoint
//! as the exact value unless they *are* a midpoint (a midpoint strictly between them would be a
//! shorter representation of `x`). Exact midpoints, and every price outside the range, go to
//! the reference encoder. The rounded decimal `K / 10^n` becomes a double by one correctly
//! rounded division of two exactly representable numbers, which is what Python's `round` returns,
//! and whose shortest repr is the 8 rounded digits, inside the validator's digit rule.

use crate::crps::Paths;
use crate::pyfloat::round_to_8_significant_digits;
use crate::response::{encode_price, PriceToken};

/// Exact powers of ten as doubles (all exactly representable).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The reference miner's rounding of a price in `[1, 1e7)`, or None where the slow exact path
/// must decide (a tie in the shortest digits, or a result outside the range).
fn round_fast(x: f64, buf: &mut ryu::Buffer) -> Option<f64> {
    // The reference computes the magnitude with log10, and so must we (near powers of ten the
    // float log10 decides where the rounding happens).
    let mag = x.log10().floor() as i32;
    let nd = 7 - mag; // decimals kept: round(x, 8 - mag - 1)
    if !(0..=22).contains(&nd) {
        return None;
    }
    let s = buf.format_finite(x).as_bytes();
    // Positional for this range: "ddd.ddd" (ryu writes "1234567.0" for integers).
    let dot = s.iter().position(|&c| c == b'.')?;
    let int_digits = &s[..dot];
    let frac = &s[dot + 1..];
    let keep_frac = nd as usize;
    if frac.len() <= keep_frac {
        return Some(x); // already on the grid: round() gives x back
    }
    let mut k: u64 = 0;
    for &c in int_digits.iter().chain(&frac[..keep_frac]) {
        k = k * 10 + (c - b'0') as u64;
    }
    let rest = &frac[keep_frac..];
    if rest == b"5" {
        return None; // the shortest digits are a midpoint: let the exact path decide
    }
    if rest[0] >= b'5' {
        k += 1;
    }
    if k >= 1 << 53 {
        return None;
    }
    let y = k as f64 / POW10[nd as usize];
    (1.0..1e7).contains(&y).then_some(y)
}

/// Paths that cannot be sent: the validator would score them -1.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("unusable output: path {path} point {point} is {value}, not a finite price")]
    NotFinite {
        path: usize,
        point: usize,
        value: f64,
    },
    #[error("unusable output: path {path} point {point} rounds to zero")]
    Zero { path: usize, point: usize },
    #[error(transparent)]
    Price(#[from] super::response::ResponseError),
}

/// The token for one price: the fast path where it applies, else the reference encoder.
fn token(x: f64, buf: &mut ryu::Buffer) -> Result<PriceToken, EncodeError> {
    if x.is_finite() && (1.0..1e7).contains(&x) {
        if let Some(y) = round_fast(x, buf) {
            return Ok(PriceToken::Float(y));
        }
    }
    Ok(encode_price(x)?)
}

/// `simulation_output` as JSON text: `[start, increment, [p, ...], ...]`. Refuses NaN,
/// infinities and zeros (the validator scores them -1) naming the path and point.
pub fn simulation_output_json(
    start: i64,
    increment: i64,
    paths: &Paths,
) -> Result<String, EncodeError> {
    let mut out = String::with_capacity(16 + paths.n_paths() * paths.n_points() * 10);
    let mut buf = ryu::Buffer::new();
    let mut fbuf = ryu::Buffer::new();
    out.push('[');
    out.push_str(&start.to_string());
    out.push(',');
    out.push_str(&increment.to_string());
    for pi in 0..paths.n_paths() {
        out.push_str(",[");
        for (ti, &x) in paths.row(pi).iter().enumerate() {
            if !x.is_finite() {
                return Err(EncodeError::NotFinite {
                    path: pi,
                    point: ti,
                    value: x,
                });
            }
            if ti > 0 {
                out.push(',');
            }
            match token(x, &mut buf)? {
                PriceToken::Int(i) => {
                    if i == 0 {
                        return Err(EncodeError::Zero {
                            path: pi,
                            point: ti,
                        });
                    }
                    out.push_str(&i.to_string());
                }
                PriceToken::Float(f) => {
                    if f == 0.0 {
                        return Err(EncodeError::Zero {
                            path: pi,
                            point: ti,
                        });
                    }
                    out.push_str(fbuf.format_finite(f));
                }
            }
        }
        out.push(']');
    }
    out.push(']');
    Ok(out)
}

/// What the reference rounding gives (for tests of the fast path).
pub fn reference_round(x: f64) -> f64 {
    round_to_8_significant_digits(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::MinerResponse;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_fast_path_agrees_with_the_reference_encoder() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(50);
        let mut buf = ryu::Buffer::new();
        let mut fast = 0usize;
        let mut values: Vec<f64> = (0..400_000)
            .map(|i| {
                let mag = rng.random_range(-6.0..9.0f64);
                let x = 10f64.powf(mag) * if i % 7 == 0 { -1.0 } else { 1.0 };
                // Some already on coarse grids, some exact 9-digit midpoints.
                match i % 5 {
                    0 => (x * 100.0).round() / 100.0,
                    1 => ((x * 1e4).round() + 0.5) / 1e4,
                    _ => x,
                }
            })
            .collect();
        values.extend([
            1.0,
            9.9999999,
            9.99999995,
            99999999.5,
            9999999.5,
            9999999.96,
            999.99999949,
            999.9999995,
            1234567.85,
            1.00000005,
            104523.456,
            104523.455,
            67726.48,
            1e7,
            0.5,
        ]);
        for &x in &values {
            // Equal tokens, or both refused (prices of 1e8 and more have no 8-digit form).
            let want = encode_price(x).ok();
            let got = token(x, &mut buf).ok();
            assert_eq!(got, want, "{x:e}");
            if (1.0..1e7).contains(&x) && round_fast(x, &mut buf).is_some() {
                fast += 1;
                assert_eq!(got, Some(PriceToken::Float(reference_round(x))), "{x:e}");
            }
        }
        assert!(fast > 150_000, "the fast path was taken {fast} times");
    }

    #[test]
    fn the_json_is_the_reference_json() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let rows: Vec<Vec<f64>> = (0..50)
            .map(|_| {
                (0..61)
                    .map(|_| 10f64.powf(rng.random_range(-3.0..7.9)))
                    .collect()
            })
            .collect();
        let paths = Paths::from_rows(&rows).unwrap();
        let want = MinerResponse::from_paths(1_780_315_200, 60, &paths)
            .unwrap()
            .to_json();
        assert_eq!(
            simulation_output_json(1_780_315_200, 60, &paths).unwrap(),
            want
        );
        let bad = Paths::from_rows(&[vec![1.0, f64::NAN]]).unwrap();
        assert!(simulation_output_json(0, 60, &bad)
            .unwrap_err()
            .to_string()
            .contains("path 0 point 1"));
        let zero = Paths::from_rows(&[vec![1.0, 0.0]]).unwrap();
        assert!(simulation_output_json(0, 60, &zero)
            .unwrap_err()
            .to_string()
            .contains("zero"));
    }
}
