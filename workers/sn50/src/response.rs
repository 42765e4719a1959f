//! The miner response `[start_ts, time_increment, path_1, ..., path_S]`: a serializer that rounds
//! prices the way the reference miner does and keeps every price inside the validator's digit
//! rule, and a validator that reproduces what the SN50 validator does to a response, in its
//! order and with its exact error strings:
//!
//! 1. the response JSON is parsed by Python `json` (which accepts `NaN`/`Infinity`);
//! 2. pydantic validates `simulation_output` against `tuple[int | list[int | float], ...] | None`
//!    in lax mode, keeping the raw value when that fails (`invalid_to_none` returns it);
//! 3. `response_validation_v2.validate_responses` runs its checks; an exception inside becomes
//!    `"error during validation"` (`forward.py`);
//! 4. at scoring time a zero price gives -1, and so does a NaN total.
//!
//! The value rules are the December 2026 validator's: int or float but not bool, finite, inside
//! float32's range, at most 8 significant digits (`float(format(v, ".7e")) == v`), every path's
//! shape checked before any value. (The May 2026 rule counted the characters of `str(v)`.)

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::Value;

use super::crps::Paths;
use super::pyfloat::{py_float_repr, round_to_8_significant_digits};

/// The validator's success string.
pub const CORRECT: &str = "CORRECT";
/// What `forward.py` stores when `validate_responses` raises.
pub const VALIDATION_EXCEPTION: &str = "error during validation";
/// The message when no process time came back (timeout, HTTP error, unparsable body).
pub const TIMEOUT: &str = "time out or internal server error (process time is None)";

/// Errors building or reading a response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResponseError {
    #[error("path {path} point {point} is {value}: a miner response must hold finite prices")]
    NonFinite {
        path: usize,
        point: usize,
        value: f64,
    },
    #[error("path {path} point {point} is zero: the validator scores any zero price -1")]
    Zero { path: usize, point: usize },
    #[error("cannot encode {value} as a price the validator accepts (8 significant digits, inside float32's range)")]
    Unencodable { value: f64 },
    #[error("the response is not JSON (even with Python's NaN/Infinity extensions): {0}")]
    Json(String),
    #[error("simulation_input is invalid: {0}")]
    Input(String),
}

/// A Python value as `json.loads` produces it.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<PyValue>),
    Dict,
}

/// Sentinel strings standing for Python's non-standard JSON tokens after [`parse_python_json`]
/// rewrote them.
const NAN_SENTINEL: &str = "\u{0}sn50:NaN";
const INF_SENTINEL: &str = "\u{0}sn50:Infinity";
const NEG_INF_SENTINEL: &str = "\u{0}sn50:-Infinity";

impl PyValue {
    /// `type(x)` as an f-string prints it.
    pub fn type_repr(&self) -> &'static str {
        match self {
            PyValue::None => "<class 'NoneType'>",
            PyValue::Bool(_) => "<class 'bool'>",
            PyValue::Int(_) => "<class 'int'>",
            PyValue::Float(_) => "<class 'float'>",
            PyValue::Str(_) => "<class 'str'>",
            PyValue::List(_) => "<class 'list'>",
            PyValue::Dict => "<class 'dict'>",
        }
    }

    /// `str(x)` for the scalar types (what the validator's messages and digit rule see).
    pub fn py_str(&self) -> String {
        match self {
            PyValue::None => "None".into(),
            PyValue::Bool(true) => "True".into(),
            PyValue::Bool(false) => "False".into(),
            PyValue::Int(i) => i.to_string(),
            PyValue::Float(f) => py_float_repr(*f),
            PyValue::Str(s) => s.clone(),
            PyValue::List(_) => "[...]".into(),
            PyValue::Dict => "{...}".into(),
        }
    }

    /// `isinstance(x, int)` (bool is an int in Python).
    fn is_int(&self) -> bool {
        matches!(self, PyValue::Int(_) | PyValue::Bool(_))
    }

    /// The integer value of an int or bool.
    fn as_int(&self) -> Option<i128> {
        match self {
            PyValue::Int(i) => Some(*i),
            PyValue::Bool(b) => Some(*b as i128),
            _ => None,
        }
    }

    /// `float(x)` for numbers (what `np.array(...).astype(float)` does).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            PyValue::Int(i) => Some(*i as f64),
            PyValue::Bool(b) => Some(*b as u8 as f64),
            PyValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Convert from serde_json, turning the sentinels back into floats.
    pub fn from_json(v: &Value) -> PyValue {
        match v {
            Value::Null => PyValue::None,
            Value::Bool(b) => PyValue::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    PyValue::Int(i as i128)
                } else if let Some(u) = n.as_u64() {
                    PyValue::Int(u as i128)
                } else {
                    PyValue::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => match s.as_str() {
                NAN_SENTINEL => PyValue::Float(f64::NAN),
                INF_SENTINEL => PyValue::Float(f64::INFINITY),
                NEG_INF_SENTINEL => PyValue::Float(f64::NEG_INFINITY),
                _ => PyValue::Str(s.clone()),
            },
            Value::Array(a) => PyValue::List(a.iter().map(PyValue::from_json).collect()),
            Value::Object(_) => PyValue::Dict,
        }
    }
}

/// Parse JSON text as Python's `json.loads` would, including the `NaN`, `Infinity` and
/// `-Infinity` tokens that Python writes and reads (they become sentinel strings that
/// [`PyValue::from_json`] maps back to floats).
pub fn parse_python_json(text: &str) -> Result<Value, ResponseError> {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    let mut start = 0;
    while i < b.len() {
        let c = b[i];
        if in_string {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        let token = [
            ("-Infinity", NEG_INF_SENTINEL),
            ("Infinity", INF_SENTINEL),
            ("NaN", NAN_SENTINEL),
        ]
        .into_iter()
        .find(|(t, _)| b[i..].starts_with(t.as_bytes()));
        if let Some((t, sentinel)) = token {
            out.push_str(&text[start..i]);
            out.push_str(&serde_json::to_string(sentinel).expect("string serializes"));
            i += t.len();
            start = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&text[start..]);
    serde_json::from_str(&out).map_err(|e| ResponseError::Json(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// pydantic's lax coercion of `tuple[int | list[int | float], ...] | None`
// ---------------------------------------------------------------------------------------------

/// pydantic's lax str -> int: surrounding whitespace, an optional sign, digits with single
/// underscores between them, or a decimal with only zeros after the point ("1.0").
fn lax_str_to_int(s: &str) -> Option<i128> {
    let t = s.trim();
    let (sign, body) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => (1, t),
    };
    let (int_part, frac) = match body.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (body, None),
    };
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|c| c == b'0') {
            return None;
        }
    }
    if int_part.is_empty()
        || int_part.starts_with('_')
        || int_part.ends_with('_')
        || int_part.contains("__")
        || !int_part.bytes().all(|c| c.is_ascii_digit() || c == b'_')
    {
        return None;
    }
    let digits: String = int_part.chars().filter(|&c| c != '_').collect();
    digits.parse::<i128>().ok().map(|v| sign * v)
}

/// pydantic's lax str -> float (pydantic-core parses with Rust after trimming).
fn lax_str_to_float(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok()
}

/// `int` in lax mode: ints, bools, floats without a fractional part (within i64), numeric strings.
fn lax_int(v: &PyValue) -> Option<PyValue> {
    match v {
        PyValue::Int(i) => Some(PyValue::Int(*i)),
        PyValue::Bool(b) => Some(PyValue::Int(*b as i128)),
        PyValue::Float(f) => {
            if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18 {
                Some(PyValue::Int(*f as i128))
            } else {
                None
            }
        }
        PyValue::Str(s) => lax_str_to_int(s).map(PyValue::Int),
        _ => None,
    }
}

/// `int | float` (smart union): exact types win, then lax int, then lax float.
fn lax_point(v: &PyValue) -> Option<PyValue> {
    match v {
        PyValue::Int(_) | PyValue::Float(_) => Some(v.clone()),
        PyValue::Bool(b) => Some(PyValue::Int(*b as i128)),
        PyValue::Str(s) => lax_str_to_int(s)
            .map(PyValue::Int)
            .or_else(|| lax_str_to_float(s).map(PyValue::Float)),
        _ => None,
    }
}

/// `int | list[int | float]`.
fn lax_element(v: &PyValue) -> Option<PyValue> {
    match v {
        PyValue::List(points) => points
            .iter()
            .map(lax_point)
            .collect::<Option<Vec<_>>>()
            .map(PyValue::List),
        other => lax_int(other),
    }
}

/// What the validator's `Simulation(**json)` leaves in `simulation_output`: the coerced value
/// when the whole thing validates, the raw value otherwise.
pub fn pydantic_simulation_output(raw: &PyValue) -> PyValue {
    match raw {
        PyValue::None => PyValue::None,
        PyValue::List(items) => items
            .iter()
            .map(lax_element)
            .collect::<Option<Vec<_>>>()
            .map(PyValue::List)
            .unwrap_or_else(|| raw.clone()),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// validate_responses
// ---------------------------------------------------------------------------------------------

/// The request's `SimulationInput`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct SimulationInput {
    #[serde(default = "default_asset")]
    pub asset: String,
    pub start_time: String,
    #[serde(default = "default_increment")]
    pub time_increment: i64,
    #[serde(default = "default_length")]
    pub time_length: i64,
    #[serde(default = "default_simulations")]
    pub num_simulations: i64,
}

fn default_asset() -> String {
    "BTC".into()
}
fn default_increment() -> i64 {
    300
}
fn default_length() -> i64 {
    86400
}
fn default_simulations() -> i64 {
    1
}

/// `int(datetime.fromisoformat(s).timestamp())`. Naive times are read as UTC (the validator's
/// machines run in UTC). Returns None where Python would raise.
pub fn iso_start_timestamp(s: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M%:z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt.timestamp());
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp())
}

/// Python's `a // b` for ints (floor division); None for division by zero.
fn py_floordiv(a: i64, b: i64) -> Option<i64> {
    if b == 0 {
        return None;
    }
    let q = a / b;
    Some(if (a % b != 0) && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    })
}

/// The shape half of `validate_path(path, expected_time_points)`: a list of the right length.
/// Every path's shape is checked before any value.
fn validate_path_shape(path: &PyValue, expected_points: i64) -> Option<String> {
    let PyValue::List(points) = path else {
        return Some(format!(
            "Path format is incorrect: expected list, got {}",
            path.type_repr()
        ));
    };
    if points.len() as i64 != expected_points {
        return Some(format!(
            "Number of time points is incorrect: expected {expected_points}, got {}",
            points.len()
        ));
    }
    None
}

/// `float(format(value, ".7e")) == value`: the value has at most 8 significant digits (Python
/// compares an int and a float exactly; an int goes through `float()` first).
pub fn has_at_most_8_significant_digits(value: f64) -> bool {
    format!("{value:.7e}").parse::<f64>() == Ok(value)
}

/// `np.float32(value)` neither overflows nor underflows to zero (zero itself is fine).
pub fn fits_float32(value: f64) -> bool {
    let f = value as f32;
    f.is_finite() && (f != 0.0 || value == 0.0)
}

/// The value half of `validate_path`: each point an int or a float but not a bool, finite, in
/// float32's range and with at most 8 significant digits. The rules are the December 2026
/// validator's; the messages for the checks it added (finite, float32, significant digits) are
/// this port's wording, as the validator's own strings were not available (anything but
/// `CORRECT` scores as a miss either way).
fn validate_path_values(path: &PyValue) -> Option<String> {
    let PyValue::List(points) = path else {
        return None; // shapes were checked first
    };
    for p in points {
        let value = match p {
            PyValue::Float(f) => *f,
            PyValue::Int(i) => *i as f64,
            other => {
                return Some(format!(
                    "Price format is incorrect: expected int or float, got {}",
                    other.type_repr()
                ))
            }
        };
        let s = p.py_str();
        if !value.is_finite() {
            return Some(format!("Price is not finite: {s}"));
        }
        if !fits_float32(value) {
            return Some(format!("Price is outside the float32 range: {s}"));
        }
        let exact = match p {
            PyValue::Int(i) => has_at_most_8_significant_digits(value) && value as i128 == *i,
            _ => has_at_most_8_significant_digits(value),
        };
        if !exact {
            return Some(format!(
                "Price format is incorrect: more than 8 significant digits {s}"
            ));
        }
    }
    None
}

/// `validate_response_type(response)`; `Err(())` where Python raises.
fn validate_response_type(response: &PyValue) -> Result<Option<String>, ()> {
    let items = match response {
        PyValue::None => return Ok(Some("Response is empty".into())),
        PyValue::List(items) => items,
        other => {
            return Ok(Some(format!(
                "Response format is incorrect: expected tuple or list, got {}",
                other.type_repr()
            )))
        }
    };
    if items.is_empty() {
        return Ok(Some("Response is empty".into()));
    }
    if !items[0].is_int() {
        return Ok(Some(format!(
            "Start time format is incorrect: expected int, got {}",
            items[0].type_repr()
        )));
    }
    let second = items.get(1).ok_or(())?; // IndexError in Python
    if !second.is_int() {
        return Ok(Some(format!(
            "Time increment format is incorrect: expected int, got {}",
            second.type_repr()
        )));
    }
    Ok(None)
}

/// `validate_responses(response, simulation_input, process_time_str)` on the value pydantic left
/// (see [`pydantic_simulation_output`]), with exceptions mapped as `forward.py` maps them.
pub fn validate_responses(
    response: &PyValue,
    input: &SimulationInput,
    process_time_present: bool,
) -> String {
    if !process_time_present {
        return TIMEOUT.into();
    }
    validate_inner(response, input).unwrap_or_else(|()| VALIDATION_EXCEPTION.into())
}

fn validate_inner(response: &PyValue, input: &SimulationInput) -> Result<String, ()> {
    let expected_ts = iso_start_timestamp(&input.start_time).ok_or(())?;
    if let Some(e) = validate_response_type(response)? {
        return Ok(e);
    }
    let PyValue::List(items) = response else {
        return Err(());
    };
    let first = items[0].as_int().ok_or(())?;
    if first != expected_ts as i128 {
        return Ok(format!(
            "Start time timestamp is incorrect: expected {expected_ts}, got {}",
            items[0].py_str()
        ));
    }
    let inc = items[1].as_int().ok_or(())?;
    if inc != input.time_increment as i128 {
        return Ok(format!(
            "Time increment is incorrect: expected {}, got {}",
            input.time_increment,
            items[1].py_str()
        ));
    }
    let paths = &items[2..];
    if paths.len() as i64 != input.num_simulations {
        return Ok(format!(
            "Number of paths is incorrect: expected {}, got {}",
            input.num_simulations,
            paths.len()
        ));
    }
    let expected_points = py_floordiv(input.time_length, input.time_increment).ok_or(())? + 1;
    for p in paths {
        if let Some(e) = validate_path_shape(p, expected_points) {
            return Ok(e);
        }
    }
    for p in paths {
        if let Some(e) = validate_path_values(p) {
            return Ok(e);
        }
    }
    Ok(CORRECT.into())
}

/// What happens to a format-correct response at scoring time, before any CRPS.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScoringIssue {
    /// A zero price: `calculate_crps_for_miner` returns -1.
    ZeroPrice { path: usize, point: usize },
    /// A NaN or infinite price: members are skipped or the total turns NaN (then -1).
    NonFinite {
        path: usize,
        point: usize,
        value: String,
    },
}

impl std::fmt::Display for ScoringIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScoringIssue::ZeroPrice { path, point } => write!(
                f,
                "path {path} point {point} is zero: the validator scores the whole response -1"
            ),
            ScoringIssue::NonFinite { path, point, value } => write!(
                f,
                "path {path} point {point} is {value}: the format check passes it, but the CRPS \
                 skips that member or turns NaN (scored -1)"
            ),
        }
    }
}

/// The first zero or non-finite price of a format-correct response (paths start at element 2).
pub fn scoring_issue(response: &PyValue) -> Option<ScoringIssue> {
    let PyValue::List(items) = response else {
        return None;
    };
    for (pi, path) in items.iter().skip(2).enumerate() {
        let PyValue::List(points) = path else {
            continue;
        };
        for (ti, p) in points.iter().enumerate() {
            let Some(v) = p.as_f64() else {
                continue;
            };
            if v == 0.0 {
                return Some(ScoringIssue::ZeroPrice {
                    path: pi,
                    point: ti,
                });
            }
            if !v.is_finite() {
                return Some(ScoringIssue::NonFinite {
                    path: pi,
                    point: ti,
                    value: py_float_repr(v),
                });
            }
        }
    }
    None
}

/// The verdict of [`check_response`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShapeReport {
    /// The validator's `format_validation` string (`"CORRECT"` on success).
    pub format_validation: String,
    /// A problem that makes a format-correct response score -1 (or lose members).
    pub scoring_issue: Option<ScoringIssue>,
    /// Whether pydantic's lax coercion changed or kept the raw value.
    pub coerced: bool,
    /// True when the validator would score this response normally.
    pub ok: bool,
}

/// Run the whole validator pipeline on a raw `simulation_output` value.
pub fn check_response(
    raw_output: &PyValue,
    input: &SimulationInput,
    process_time_present: bool,
) -> ShapeReport {
    let coerced_value = pydantic_simulation_output(raw_output);
    let coerced = coerced_value != *raw_output;
    let format_validation = validate_responses(&coerced_value, input, process_time_present);
    let scoring_issue = if format_validation == CORRECT {
        scoring_issue(&coerced_value)
    } else {
        None
    };
    let ok = format_validation == CORRECT && scoring_issue.is_none();
    ShapeReport {
        format_validation,
        scoring_issue,
        coerced,
        ok,
    }
}

// ---------------------------------------------------------------------------------------------
// Serializer
// ---------------------------------------------------------------------------------------------

/// One price as written to JSON: an integer or a float token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PriceToken {
    Int(i64),
    Float(f64),
}

impl Serialize for PriceToken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PriceToken::Int(i) => s.serialize_i64(*i),
            PriceToken::Float(f) => s.serialize_f64(*f),
        }
    }
}

impl PriceToken {
    /// The value the validator will see.
    pub fn value(self) -> f64 {
        match self {
            PriceToken::Int(i) => i as f64,
            PriceToken::Float(f) => f,
        }
    }
}

/// Encode a price as the reference miner rounds it (8 significant digits) and make sure the
/// validator's rules hold for it: at most 8 significant digits (`float(format(y, ".7e")) == y`;
/// where the reference rounding misses by its `log10` near a power of ten, the 8-digit
/// scientific rounding is used) and inside float32's range. An integral price of 1e7 or more
/// goes out as a JSON integer, the shorter token.
pub fn encode_price(x: f64) -> Result<PriceToken, ResponseError> {
    if !x.is_finite() {
        return Err(ResponseError::Unencodable { value: x });
    }
    let mut y = round_to_8_significant_digits(x);
    if !has_at_most_8_significant_digits(y) {
        y = format!("{x:.7e}").parse().unwrap_or(f64::NAN);
    }
    if !(y.is_finite() && fits_float32(y) && has_at_most_8_significant_digits(y)) {
        return Err(ResponseError::Unencodable { value: x });
    }
    if y.fract() == 0.0 && y.abs() >= 1e7 && y.abs() < 1e15 {
        return Ok(PriceToken::Int(y as i64));
    }
    Ok(PriceToken::Float(y))
}

/// A miner response ready to serialize: `[start_ts, time_increment, [prices], ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MinerResponse {
    pub start_timestamp: i64,
    pub time_increment: i64,
    pub paths: Vec<Vec<PriceToken>>,
}

impl MinerResponse {
    /// Round and encode every price; rejects NaN, infinities and zeros (which the validator
    /// scores -1) with the path and point that hold them.
    pub fn from_paths(
        start_timestamp: i64,
        time_increment: i64,
        paths: &Paths,
    ) -> Result<Self, ResponseError> {
        let mut out = Vec::with_capacity(paths.n_paths());
        for pi in 0..paths.n_paths() {
            let row = paths.row(pi);
            let mut enc = Vec::with_capacity(row.len());
            for (ti, &x) in row.iter().enumerate() {
                if !x.is_finite() {
                    return Err(ResponseError::NonFinite {
                        path: pi,
                        point: ti,
                        value: x,
                    });
                }
                let t = encode_price(x)?;
                if t.value() == 0.0 {
                    return Err(ResponseError::Zero {
                        path: pi,
                        point: ti,
                    });
                }
                enc.push(t);
            }
            out.push(enc);
        }
        Ok(MinerResponse {
            start_timestamp,
            time_increment,
            paths: out,
        })
    }

    /// The JSON text of `simulation_output`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a miner response always serializes")
    }

    /// The response as the validator would parse it.
    pub fn to_py(&self) -> PyValue {
        let mut items = vec![
            PyValue::Int(self.start_timestamp as i128),
            PyValue::Int(self.time_increment as i128),
        ];
        for p in &self.paths {
            items.push(PyValue::List(
                p.iter()
                    .map(|t| match t {
                        PriceToken::Int(i) => PyValue::Int(*i as i128),
                        PriceToken::Float(f) => PyValue::Float(*f),
                    })
                    .collect(),
            ));
        }
        PyValue::List(items)
    }
}

impl Serialize for MinerResponse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(2 + self.paths.len()))?;
        seq.serialize_element(&self.start_timestamp)?;
        seq.serialize_element(&self.time_increment)?;
        for p in &self.paths {
            seq.serialize_element(p)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(n: i64) -> SimulationInput {
        SimulationInput {
            asset: "BTC".into(),
            start_time: "2026-06-01T12:00:00+00:00".into(),
            time_increment: 60,
            time_length: 180,
            num_simulations: n,
        }
    }

    const TS: i64 = 1780315200;

    fn check(json: &str, n: i64) -> ShapeReport {
        let v = PyValue::from_json(&parse_python_json(json).unwrap());
        check_response(&v, &input(n), true)
    }

    #[test]
    fn start_time_parsing() {
        assert_eq!(iso_start_timestamp("2026-06-01T12:00:00+00:00"), Some(TS));
        assert_eq!(iso_start_timestamp("2026-06-01T12:00:00Z"), Some(TS));
        assert_eq!(iso_start_timestamp("2026-06-01 12:00:00"), Some(TS));
        assert_eq!(iso_start_timestamp("2026-06-01T14:00:00+02:00"), Some(TS));
        assert_eq!(iso_start_timestamp("2026-06-01T12:00:00.5+00:00"), Some(TS));
        assert_eq!(iso_start_timestamp("2026-06-01"), Some(TS - 12 * 3600));
        assert_eq!(iso_start_timestamp("yesterday"), None);
    }

    #[test]
    fn correct_response_passes() {
        let r = check(
            &format!("[{TS}, 60, [1.5, 2, 3, 4], [1, 2, 3, 104523.45]]"),
            2,
        );
        assert_eq!(r.format_validation, CORRECT);
        assert!(r.ok && r.scoring_issue.is_none());
    }

    #[test]
    fn validator_messages_in_order() {
        let cases: Vec<(String, i64, &str)> = vec![
            ("null".into(), 1, "Response is empty"),
            ("[]".into(), 1, "Response is empty"),
            (
                "\"abc\"".into(),
                1,
                "Response format is incorrect: expected tuple or list, got <class 'str'>",
            ),
            (
                "{\"a\": 1}".into(),
                1,
                "Response format is incorrect: expected tuple or list, got <class 'dict'>",
            ),
            (
                "5".into(),
                1,
                "Response format is incorrect: expected tuple or list, got <class 'int'>",
            ),
            // A non-integral float start time fails pydantic, so the raw float reaches the check.
            (
                format!("[{TS}.5, 60, [1, 2, 3, 4]]"),
                1,
                "Start time format is incorrect: expected int, got <class 'float'>",
            ),
            (
                format!("[{TS}, \"x\", [1, 2, 3, 4]]"),
                1,
                "Time increment format is incorrect: expected int, got <class 'str'>",
            ),
            (
                format!("[{}, 60, [1, 2, 3, 4]]", TS + 60),
                1,
                "Start time timestamp is incorrect: expected 1780315200, got 1780315260",
            ),
            (
                format!("[{TS}, 300, [1, 2, 3, 4]]"),
                1,
                "Time increment is incorrect: expected 60, got 300",
            ),
            (
                format!("[{TS}, 60, [1, 2, 3, 4]]"),
                2,
                "Number of paths is incorrect: expected 2, got 1",
            ),
            (
                format!("[{TS}, 60, [1, 2, 3]]"),
                1,
                "Number of time points is incorrect: expected 4, got 3",
            ),
            (
                format!("[{TS}, 60, 7]"),
                1,
                "Path format is incorrect: expected list, got <class 'int'>",
            ),
            (
                format!("[{TS}, 60, [1, 2, 3, \"abc\"]]"),
                1,
                "Price format is incorrect: expected int or float, got <class 'str'>",
            ),
            (
                format!("[{TS}, 60, [1, 2, null, 4]]"),
                1,
                "Price format is incorrect: expected int or float, got <class 'NoneType'>",
            ),
            (
                format!("[{TS}, 60, [1, 2, 3, 104523.456]]"),
                1,
                "Price format is incorrect: more than 8 significant digits 104523.456",
            ),
            (
                format!("[{TS}, 60, [1, 2, 3, 123456789.0]]"),
                1,
                "Price format is incorrect: more than 8 significant digits 123456789.0",
            ),
            (
                format!("[{TS}, 60, [1, 2, 3, 123456789]]"),
                1,
                "Price format is incorrect: more than 8 significant digits 123456789",
            ),
            (
                format!("[{TS}, 60, [1, 2, 3, NaN]]"),
                1,
                "Price is not finite: nan",
            ),
            (
                format!("[{TS}, 60, [1, 2, 3, 1e39]]"),
                1,
                "Price is outside the float32 range: 1e+39",
            ),
            (
                format!("[{TS}, 60, [1, 2, 3, 1e-50]]"),
                1,
                "Price is outside the float32 range: 1e-50",
            ),
            // Every shape before any value: path 2's length is reported, not path 1's digits.
            (
                format!("[{TS}, 60, [1, 2, 3, 104523.456], [1, 2, 3]]"),
                2,
                "Number of time points is incorrect: expected 4, got 3",
            ),
            (format!("[{TS}]"), 1, VALIDATION_EXCEPTION),
        ];
        for (json, n, want) in cases {
            let r = check(&json, n);
            assert_eq!(r.format_validation, want, "{json}");
            assert!(!r.ok);
        }
    }

    #[test]
    fn path_that_is_not_a_list_when_raw() {
        // A dict among the paths defeats pydantic, so the raw dict reaches validate_path.
        let r = check(&format!("[{TS}, 60, {{\"a\": 1}}]"), 1);
        assert_eq!(
            r.format_validation,
            "Path format is incorrect: expected list, got <class 'dict'>"
        );
    }

    #[test]
    fn pydantic_coercion_traps() {
        // An integral float start time is coerced to int when everything else validates.
        let r = check(&format!("[{TS}.0, 60, [1, 2, 3, 4]]"), 1);
        assert_eq!(r.format_validation, CORRECT);
        assert!(r.coerced);
        // ...but not when another element fails validation.
        let r = check(&format!("[{TS}.0, 60, [1, 2, 3, \"x\"]]"), 1);
        assert_eq!(
            r.format_validation,
            "Start time format is incorrect: expected int, got <class 'float'>"
        );
        // Numeric strings and bools are coerced (bool -> int).
        let r = check(
            &format!("[\"{TS}\", \"60\", [\"1.5\", true, \" 3 \", 4]]"),
            1,
        );
        assert_eq!(r.format_validation, CORRECT);
        // 12345678 passes as an int and as a float; so do 0.00012345 and -1234.5678, which
        // the May 2026 character count refused.
        for ok in [
            "12345678",
            "12345678.0",
            "0.00012345",
            "-1234.5678",
            "1.2345678e-20",
        ] {
            let r = check(&format!("[{TS}, 60, [{ok}, 2, 3, 4]]"), 1);
            assert_eq!(r.format_validation, CORRECT, "{ok}");
        }
        // A bool that pydantic could not coerce (another element fails it) is refused.
        let r = check(&format!("[{TS}, 60, [true, 2, 3, 4], 7]"), 1);
        assert!(
            r.format_validation.contains("expected"),
            "{}",
            r.format_validation
        );
    }

    #[test]
    fn nan_fails_the_format_check_and_zero_fails_scoring() {
        let r = check(&format!("[{TS}, 60, [1, NaN, 3, 4]]"), 1);
        assert_eq!(r.format_validation, "Price is not finite: nan");
        assert!(!r.ok);
        let r = check(&format!("[{TS}, 60, [1, 2, 3, 4], [1, 2, 0.0, 4]]"), 2);
        assert_eq!(r.format_validation, CORRECT);
        assert_eq!(
            r.scoring_issue,
            Some(ScoringIssue::ZeroPrice { path: 1, point: 2 })
        );
        // NaN inside a JSON string stays a string.
        let v = parse_python_json(r#"["NaN", NaN]"#).unwrap();
        let p = PyValue::from_json(&v);
        let PyValue::List(items) = p else { panic!() };
        assert_eq!(items[0], PyValue::Str("NaN".into()));
        assert!(matches!(items[1], PyValue::Float(f) if f.is_nan()));
    }

    #[test]
    fn timeout_and_bad_start_time() {
        let v = PyValue::from_json(&serde_json::json!([TS, 60, [1, 2, 3, 4]]));
        assert_eq!(
            check_response(&v, &input(1), false).format_validation,
            TIMEOUT
        );
        let mut i = input(1);
        i.start_time = "not a time".into();
        assert_eq!(
            check_response(&v, &i, true).format_validation,
            VALIDATION_EXCEPTION
        );
        // Floor division by a zero increment raises in Python.
        i = input(1);
        i.time_increment = 0;
        let v = PyValue::from_json(&serde_json::json!([TS, 0, [1]]));
        assert_eq!(
            check_response(&v, &i, true).format_validation,
            VALIDATION_EXCEPTION
        );
    }

    #[test]
    fn encoder_keeps_every_price_valid() {
        assert_eq!(
            encode_price(104523.456789).unwrap(),
            PriceToken::Float(104523.46)
        );
        assert_eq!(encode_price(12345678.4).unwrap(), PriceToken::Int(12345678));
        // Small prices keep all 8 significant digits now.
        assert_eq!(
            encode_price(0.000123456789).unwrap(),
            PriceToken::Float(0.00012345679)
        );
        assert_eq!(encode_price(2.0).unwrap(), PriceToken::Float(2.0));
        assert_eq!(
            encode_price(1.23456789e-7).unwrap(),
            PriceToken::Float(1.2345679e-7)
        );
        assert!(encode_price(f64::NAN).is_err());
        assert!(encode_price(1e39).is_err(), "beyond float32");
        for x in [
            1.0,
            0.1,
            3.3333333333,
            99999999.0,
            1234567.89,
            5e-9,
            0.000999999995,
            87654.321,
        ] {
            let t = encode_price(x).unwrap();
            let s = PyValue::from_json(&serde_json::to_value(t).unwrap()).py_str();
            assert!(has_at_most_8_significant_digits(t.value()), "{x} -> {s}");
            assert!((t.value() - x).abs() <= x.abs() * 1e-7, "{x} -> {s}");
        }
    }

    #[test]
    fn serialized_response_round_trips_through_the_validator() {
        let paths = Paths::from_rows(&[
            vec![104523.456789, 104600.1, 12345678.9, 0.000123456789],
            vec![3.33333333333, 2.0, 1e-9, 65000.0],
        ])
        .unwrap();
        let r = MinerResponse::from_paths(TS, 60, &paths).unwrap();
        let json = r.to_json();
        assert!(
            json.starts_with("[1780315200,60,[104523.46,104600.1,12345679,0.00012345679]"),
            "{json}"
        );
        let parsed = PyValue::from_json(&parse_python_json(&json).unwrap());
        assert_eq!(parsed, r.to_py());
        let rep = check_response(&parsed, &input(2), true);
        assert_eq!(rep.format_validation, CORRECT);
        assert!(rep.ok);
        // Zeros and NaNs are refused with their position.
        let bad = Paths::from_rows(&[vec![1.0, 0.0]]).unwrap();
        assert_eq!(
            MinerResponse::from_paths(TS, 60, &bad).unwrap_err(),
            ResponseError::Zero { path: 0, point: 1 }
        );
    }
}

/// The `check-shapes` input: a JSON object
/// `{"simulation_input": {...}, "simulation_output": [...], "process_time": "0.8"}`, i.e. the
/// body a miner returns (`response` is accepted as another name for `simulation_output`;
/// `"process_time": null` stands for a timed-out request). Python's `NaN`/`Infinity` tokens
/// are accepted.
pub fn check_shapes_text(text: &str) -> Result<ShapeReport, ResponseError> {
    let v = parse_python_json(text)?;
    let obj = v.as_object().ok_or_else(|| {
        ResponseError::Input(
            "the input must be a JSON object with simulation_input and simulation_output".into(),
        )
    })?;
    let si = obj
        .get("simulation_input")
        .ok_or_else(|| ResponseError::Input("missing simulation_input".into()))?;
    let input: SimulationInput =
        serde_json::from_value(si.clone()).map_err(|e| ResponseError::Input(e.to_string()))?;
    let raw = obj
        .get("simulation_output")
        .or_else(|| obj.get("response"))
        .ok_or_else(|| ResponseError::Input("missing simulation_output (or response)".into()))?;
    let process_time_present = !matches!(obj.get("process_time"), Some(Value::Null));
    Ok(check_response(
        &PyValue::from_json(raw),
        &input,
        process_time_present,
    ))
}

#[cfg(test)]
mod check_shapes_tests {
    use super::*;

    #[test]
    fn input_file_shape() {
        let ok = r#"{"simulation_input": {"asset": "BTC", "start_time": "2026-06-01T12:00:00+00:00",
            "time_increment": 60, "time_length": 120, "num_simulations": 1},
            "simulation_output": [1780315200, 60, [1.5, 2, 3]]}"#;
        assert_eq!(check_shapes_text(ok).unwrap().format_validation, CORRECT);
        let renamed = ok.replace("simulation_output", "response");
        assert!(check_shapes_text(&renamed).unwrap().ok);
        let t = r#"{"simulation_input": {"start_time": "2026-06-01T12:00:00+00:00"}, "simulation_output": null, "process_time": null}"#;
        assert_eq!(check_shapes_text(t).unwrap().format_validation, TIMEOUT);
        let e = check_shapes_text("[1, 2]").unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
        let e = check_shapes_text(r#"{"simulation_output": []}"#).unwrap_err();
        assert!(e.to_string().contains("simulation_input"), "{e}");
        let e = check_shapes_text(r#"{"simulation_input": {"start_time": "x"}}"#).unwrap_err();
        assert!(e.to_string().contains("simulation_output"), "{e}");
        let e = check_shapes_text("{not json").unwrap_err();
        assert!(matches!(e, ResponseError::Json(_)));
    }
}
