//! Components as graphs: a versioned JSON document (`synth-city/component@1`) that describes a
//! backbone block or a head as a small DAG of operations from a fixed vocabulary ([`OPS`]), its strict
//! parsing, its validation (every shape inferred, every problem named by node id and field with
//! the fix) and its size and cost estimates (parameters, FLOPs, activation memory), each bounded.
//! [`compile`] turns a checked graph into a [`super::blocks::Block`] of candle ops.
//!
//! What a bot writes here is data: nothing in a document is ever executed as code. Every op is
//! one of the vocabulary's, every number is bounded, and a document that fails any check is
//! refused whole.
//!
//! A head is the same kind of document ending in a distribution node (`gaussian`, `student_t`)
//! whose inputs are one drift and one scale per window.
//!
//! Does NOT: store or version documents (that is the registry's job, a later slice), loop
//! (repetition is unrolled by the author), or run anything but the vocabulary's candle ops.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod compile;

/// The one format version this build reads.
pub const FORMAT: &str = "synth-city/component@1";
/// The largest document accepted, in bytes of JSON.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The most nodes in a graph.
pub const MAX_NODES: usize = 256;
/// The most declared hyperparameters.
pub const MAX_DECLARED: usize = 32;
/// The most trainable parameters a component may have (at the context it is checked for).
pub const MAX_PARAMS: u64 = 5_000_000;
/// The most forward FLOPs per window.
pub const MAX_FLOPS: u64 = 2_000_000_000;
/// The most forward activation memory per window (f32 outputs of every node and what attention,
/// `ema`, `conv1d` and `moving_average` hold inside), in bytes.
pub const MAX_ACTIVATION_BYTES: u64 = 64 << 20;
/// The largest width any dimension may take (a guard before products are formed).
pub const MAX_DIM: u64 = 65_536;

/// What a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Block,
    Head,
}

/// A component document as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentDoc {
    pub format: String,
    pub kind: Kind,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Declared hyperparameters: defaults and bounds; nodes' attributes may name them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamDecl>,
    /// Input names; a block has exactly one, `(batch, seq, d_model)`.
    pub inputs: Vec<String>,
    pub nodes: Vec<Node>,
    /// The node (or input) whose value the component returns.
    pub output: String,
}

fn yes() -> bool {
    true
}

/// One declared hyperparameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDecl {
    pub default: f64,
    pub min: f64,
    pub max: f64,
    /// Whole numbers only (the default).
    #[serde(default = "yes")]
    pub integer: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub help: String,
}

/// One operation: its id (the stem of its parameters' names), its op, its inputs and the op's
/// attributes (checked against the op's list; an unknown one is refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub op: String,
    #[serde(rename = "in", default)]
    pub inputs: Vec<String>,
    #[serde(flatten)]
    pub attrs: BTreeMap<String, Value>,
}

/// One problem with a document: the node at fault (its id) where there is one, the field (a JSON
/// path into the document), and what is wrong with the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphIssue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for GraphIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node {
            Some(id) => write!(f, "{} (node {id:?}): {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

fn issue(node: Option<&str>, field: impl Into<String>, message: impl Into<String>) -> GraphIssue {
    GraphIssue {
        node: node.map(str::to_string),
        field: field.into(),
        message: message.into(),
    }
}

/// The backbone a component is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ctx {
    pub d_model: usize,
    pub seq_len: usize,
}

impl Default for Ctx {
    /// The presets' backbone (d_model 32, 64 bars).
    fn default() -> Self {
        Ctx {
            d_model: 32,
            seq_len: 64,
        }
    }
}

/// One axis of a tensor's shape: the batch and the time axis stay symbolic, features are
/// concrete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Batch,
    Seq,
    N(usize),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Batch => write!(f, "batch"),
            Dim::Seq => write!(f, "seq"),
            Dim::N(n) => write!(f, "{n}"),
        }
    }
}

/// A rank-3 shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape(pub [Dim; 3]);

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {}, {})", self.0[0], self.0[1], self.0[2])
    }
}

impl Shape {
    fn size(d: Dim, ctx: Ctx) -> usize {
        match d {
            Dim::Batch => 1,
            Dim::Seq => ctx.seq_len,
            Dim::N(n) => n,
        }
    }
    /// The concrete width of axis `i` (the batch counts 1, the time axis `seq_len`).
    pub fn at(&self, i: usize, ctx: Ctx) -> usize {
        Self::size(self.0[i], ctx)
    }
    /// Elements per window.
    pub fn numel(&self, ctx: Ctx) -> u64 {
        self.0.iter().map(|&d| Self::size(d, ctx) as u64).product()
    }
}

/// An op of the vocabulary, with its attributes resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Linear {
        out: Dim,
        bias: bool,
    },
    Conv1d {
        out: usize,
        kernel: usize,
        dilation: usize,
        causal: bool,
        bias: bool,
    },
    LayerNorm {
        eps: f64,
    },
    RmsNorm {
        eps: f64,
    },
    Relu,
    Gelu,
    Silu,
    Tanh,
    Sigmoid,
    Softplus,
    Glu,
    Add,
    Sub,
    Mul,
    Scale {
        factor: f64,
        offset: f64,
    },
    Concat,
    Slice {
        start: usize,
        len: usize,
    },
    Transpose,
    MeanTime,
    Attention {
        heads: usize,
        causal: bool,
    },
    Cumsum,
    Ema,
    MovingAverage {
        kernel: usize,
    },
    LastTime,
    Gaussian,
    StudentT {
        df: f64,
    },
}

impl Op {
    /// A distribution: the last node of a head, read by nothing.
    pub fn is_distribution(&self) -> bool {
        matches!(self, Op::Gaussian | Op::StudentT { .. })
    }
}

/// One op of the vocabulary as documented: its name, how many inputs it takes, its attributes
/// (name, default or `required`) and what it does.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OpInfo {
    pub op: &'static str,
    /// `(min, max)` inputs.
    pub inputs: (usize, usize),
    pub attrs: &'static [(&'static str, &'static str)],
    pub help: &'static str,
}

const REQ: &str = "required";
const MANY: usize = 16;

/// The vocabulary. Tensors are `(batch, a, b)`: ops act on the last axis (features) unless
/// their help says the middle one (time, or whatever `transpose` put there).
pub const OPS: &[OpInfo] = &[
    OpInfo { op: "linear", inputs: (1, 1), attrs: &[("out", REQ), ("bias", "true")], help: "x W^T + b on the last axis; params <id>.weight (out, in), <id>.bias; `out: \"seq_len\"` gives the time axis back" },
    OpInfo { op: "conv1d", inputs: (1, 1), attrs: &[("out", REQ), ("kernel", REQ), ("dilation", "1"), ("causal", "true"), ("bias", "true")], help: "1-D convolution along the middle axis, channels on the last; causal pads (kernel-1)*dilation on the left, else centred; params <id>.weight (out, in, kernel), <id>.bias" },
    OpInfo { op: "layer_norm", inputs: (1, 1), attrs: &[("eps", "1e-5")], help: "layer normalisation over the last axis; params <id>.weight, <id>.bias" },
    OpInfo { op: "rms_norm", inputs: (1, 1), attrs: &[("eps", "1e-6")], help: "RMS normalisation over the last axis; param <id>.weight (ones)" },
    OpInfo { op: "relu", inputs: (1, 1), attrs: &[], help: "max(x, 0)" },
    OpInfo { op: "gelu", inputs: (1, 1), attrs: &[], help: "GELU (tanh form)" },
    OpInfo { op: "silu", inputs: (1, 1), attrs: &[], help: "x sigmoid(x)" },
    OpInfo { op: "tanh", inputs: (1, 1), attrs: &[], help: "tanh" },
    OpInfo { op: "sigmoid", inputs: (1, 1), attrs: &[], help: "logistic sigmoid" },
    OpInfo { op: "softplus", inputs: (1, 1), attrs: &[], help: "ln(1 + e^x), stable" },
    OpInfo { op: "glu", inputs: (1, 1), attrs: &[], help: "gated linear unit: first half of the last axis times sigmoid of the second half (width halves)" },
    OpInfo { op: "add", inputs: (2, MANY), attrs: &[], help: "sum (residual); an axis of width 1 broadcasts" },
    OpInfo { op: "sub", inputs: (2, 2), attrs: &[], help: "first minus second; an axis of width 1 broadcasts" },
    OpInfo { op: "mul", inputs: (2, MANY), attrs: &[], help: "product (gating); an axis of width 1 broadcasts" },
    OpInfo { op: "scale", inputs: (1, 1), attrs: &[("factor", REQ), ("offset", "0")], help: "x * factor + offset (constants)" },
    OpInfo { op: "concat", inputs: (2, MANY), attrs: &[], help: "concatenate on the last axis (split: use `slice`)" },
    OpInfo { op: "slice", inputs: (1, 1), attrs: &[("start", REQ), ("len", REQ)], help: "features start..start+len of the last axis" },
    OpInfo { op: "transpose", inputs: (1, 1), attrs: &[], help: "swap the middle and last axes: (batch, seq, d) <-> (batch, d, seq), for ops along time (N-BEATS) or across channels" },
    OpInfo { op: "mean_time", inputs: (1, 1), attrs: &[], help: "mean over the middle axis, kept as width 1 (pooling; broadcasts back in add/mul)" },
    OpInfo { op: "attention", inputs: (1, 1), attrs: &[("heads", REQ), ("causal", "false")], help: "multi-head self-attention over the middle axis with q, k, v, o projections; causal masks later positions; params <id>.q/.k/.v/.o .weight/.bias" },
    OpInfo { op: "cumsum", inputs: (1, 1), attrs: &[], help: "cumulative sum along the middle axis (a scan)" },
    OpInfo { op: "ema", inputs: (1, 1), attrs: &[], help: "linear recurrence h_t = a h_(t-1) + (1 - a) x_t along the middle axis, a = sigmoid(<id>.decay) learned per channel (starts at 0.88)" },
    OpInfo { op: "last_time", inputs: (1, 1), attrs: &[], help: "the last position of the middle axis, kept as width 1 (a head reads the last step)" },
    OpInfo { op: "gaussian", inputs: (2, 2), attrs: &[], help: "heads only, as the output: increments mu + sigma * eps, eps standard normal; inputs mu and sigma of shape (batch, 1, 1), sigma positive (e.g. softplus then scale with an offset)" },
    OpInfo { op: "student_t", inputs: (2, 2), attrs: &[("df", "5")], help: "heads only, as the output: increments mu + sigma * t, t Student-t with df degrees of freedom (2 < df <= 1000); inputs as gaussian's" },
    OpInfo { op: "moving_average", inputs: (1, 1), attrs: &[("kernel", REQ)], help: "centred moving average along the middle axis with replicate padding (a frequency-free low-pass filter; x minus it is the high-pass)" },
];

/// The sizes of a checked component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Estimate {
    /// Trainable scalars.
    pub params: u64,
    /// Forward FLOPs per window.
    pub flops: u64,
    /// Forward activation memory per window (f32 outputs of every node and the ops' inner
    /// tensors: attention scores, the ema's decay matrix, padded inputs), bytes.
    pub activation_bytes: u64,
    /// The document's size as compact JSON, bytes.
    pub body_bytes: u64,
    pub nodes: usize,
}

/// A node in evaluation order: its op, the value slots it reads (0 is the input, node `k` of
/// the plan writes slot `k + 1`) and its output shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub id: String,
    pub op: Op,
    pub inputs: Vec<usize>,
    pub in_shapes: Vec<Shape>,
    pub shape: Shape,
}

/// A document that passed every check, for one backbone context.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub doc: ComponentDoc,
    pub ctx: Ctx,
    /// Resolved hyperparameters (declared defaults overridden by the given values).
    pub params: BTreeMap<String, f64>,
    pub plan: Vec<Planned>,
    /// The slot the component returns.
    pub output: usize,
    pub estimate: Estimate,
    /// Every trainable parameter's name (relative to the block) and element count.
    pub param_names: Vec<(String, u64)>,
}

/// The report `components check` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    pub kind: Kind,
    pub ctx: Ctx,
    pub params: BTreeMap<String, f64>,
    pub estimate: Estimate,
    pub bounds: Estimate,
    pub output_shape: String,
}

impl Report {
    /// The report as text: `ok`, the context, the resolved params, each estimate with its bound.
    pub fn text(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let e = &self.estimate;
        let b = &self.bounds;
        let mut s = format!(
            "ok: {} {:?} {} -> {} at d_model {}, seq_len {}\n",
            match self.kind {
                Kind::Block => "block",
                Kind::Head => "head",
            },
            self.name,
            Shape([Dim::Batch, Dim::Seq, Dim::N(self.ctx.d_model)]),
            self.output_shape,
            self.ctx.d_model,
            self.ctx.seq_len
        );
        if !self.params.is_empty() {
            let p: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!("  params: {}\n", p.join(", ")));
        }
        s.push_str(&format!(
            "  parameters           {:>14}  (limit {})\n  forward FLOPs/window {:>14}  (limit {})\n  activations/window   {:>11.2} MiB  (limit {:.0} MiB)\n  body                 {:>8} bytes  (limit {})\n  nodes                {:>14}  (limit {})\n",
            e.params, b.params, e.flops, b.flops, mib(e.activation_bytes), mib(b.activation_bytes),
            e.body_bytes, b.body_bytes, e.nodes, b.nodes
        ));
        s
    }
}

impl Checked {
    /// The report of this check.
    pub fn report(&self) -> Report {
        Report {
            name: self.doc.name.clone(),
            kind: self.doc.kind,
            ctx: self.ctx,
            params: self.params.clone(),
            estimate: self.estimate,
            bounds: Estimate {
                params: MAX_PARAMS,
                flops: MAX_FLOPS,
                activation_bytes: MAX_ACTIVATION_BYTES,
                body_bytes: MAX_BODY_BYTES as u64,
                nodes: MAX_NODES,
            },
            output_shape: self
                .plan
                .last()
                .map(|p| p.shape.to_string())
                .unwrap_or_default(),
        }
    }
}

/// 16 hex digits of FNV-1a over the document's compact JSON (fields in a fixed order,
/// attributes and params sorted): the same document gives the same hash on every build, an
/// edited one another (experiment fingerprints name graphs by it).
pub fn content_hash(doc: &ComponentDoc) -> String {
    let text = serde_json::to_string(doc).unwrap_or_default();
    format!("{:016x}", crate::zoo::params::hash_str(&text))
}

/// Parse a document's text strictly (size first, then unknown fields refused by name).
pub fn parse(text: &str) -> Result<ComponentDoc, Vec<GraphIssue>> {
    if text.len() > MAX_BODY_BYTES {
        return Err(vec![issue(
            None,
            "(document)",
            format!(
                "{} bytes is over the {MAX_BODY_BYTES}-byte limit; make the graph smaller",
                text.len()
            ),
        )]);
    }
    serde_json::from_str(text).map_err(|e| {
        vec![issue(
            None,
            format!("(document, line {} column {})", e.line(), e.column()),
            format!("{e}; see docs/components.md for the format"),
        )]
    })
}

/// Parse and check a document's text for `ctx` with the declared defaults.
pub fn check_text(text: &str, ctx: Ctx) -> Result<Checked, Vec<GraphIssue>> {
    check(&parse(text)?, ctx, &Map::new())
}

fn valid_ident(s: &str, dots: bool) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('.').count() <= if dots { 8 } else { 1 }
        && s.split('.').all(|seg| {
            let mut c = seg.chars();
            matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
                && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        })
}

/// An evaluated integer attribute: a number, or `seq_len` alone (the time axis, kept symbolic).
#[derive(Debug, Clone, Copy, PartialEq)]
enum IntVal {
    N(i64),
    Seq(usize),
}

/// Evaluate an integer expression: a whole number, or a string of names (declared params,
/// `d_model`, `seq_len`) and whole numbers joined by `+ - * /` (usual precedence; `/` must divide
/// exactly).
fn eval_int(v: &Value, env: &BTreeMap<String, f64>, ctx: Ctx) -> Result<IntVal, String> {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(IntVal::N(i)),
            None => Err(format!("{n} is not a whole number; write e.g. 8")),
        },
        Value::String(s) if s.trim() == "seq_len" => Ok(IntVal::Seq(ctx.seq_len)),
        Value::String(s) => eval_expr(s, env, ctx).map(IntVal::N),
        other => Err(format!(
            "{other} is neither a whole number nor an expression; write e.g. 8 or \"d_model*ff_mult\""
        )),
    }
}

fn eval_expr(s: &str, env: &BTreeMap<String, f64>, ctx: Ctx) -> Result<i64, String> {
    if s.len() > 200 {
        return Err("the expression is over 200 characters; simplify it".into());
    }
    let lookup = |name: &str| -> Result<i64, String> {
        let name = name.trim();
        if let Ok(n) = name.parse::<i64>() {
            return Ok(n);
        }
        let x = match name {
            "d_model" => ctx.d_model as f64,
            "seq_len" => ctx.seq_len as f64,
            _ => *env.get(name).ok_or_else(|| {
                let known: Vec<&str> = env.keys().map(|k| k.as_str()).collect();
                format!(
                    "{name:?} in {s:?} is not a declared param, d_model or seq_len; declare it under \"params\" or use one of d_model, seq_len{}{}",
                    if known.is_empty() { "" } else { ", " },
                    known.join(", ")
                )
            })?,
        };
        if x.fract() != 0.0 {
            return Err(format!(
                "{name} is {x}, not a whole number; declare it with \"integer\": true"
            ));
        }
        Ok(x as i64)
    };
    let mut total: i64 = 0;
    for (k, term) in split_keep(s, &['+', '-']).into_iter().enumerate() {
        let (sign, body) = term;
        if body.trim().is_empty() {
            return Err(format!("{s:?} has an empty term; write e.g. \"d_model*2\""));
        }
        let mut prod: i64 = 1;
        for (j, (op, f)) in split_keep(body, &['*', '/']).into_iter().enumerate() {
            let v = lookup(f)?;
            prod = if j == 0 || op == '*' {
                prod.checked_mul(v).ok_or("the value overflows")?
            } else {
                if v == 0 || prod % v != 0 {
                    return Err(format!(
                        "{s:?}: {prod} is not divisible by {v}; choose values that divide"
                    ));
                }
                prod / v
            };
        }
        total = if k == 0 || sign == '+' {
            total.checked_add(prod).ok_or("the value overflows")?
        } else {
            total.checked_sub(prod).ok_or("the value overflows")?
        };
    }
    Ok(total)
}

/// Split on any of `seps`, each piece with the separator before it (`'+'` for the first).
fn split_keep<'a>(s: &'a str, seps: &[char]) -> Vec<(char, &'a str)> {
    let mut out = Vec::new();
    let mut last = 0;
    let mut op = seps[0];
    for (i, c) in s.char_indices() {
        if seps.contains(&c) {
            out.push((op, &s[last..i]));
            op = c;
            last = i + c.len_utf8();
        }
    }
    out.push((op, &s[last..]));
    out
}

/// Reads one node's attributes, checking each against the op's list.
struct Attrs<'a> {
    node: &'a Node,
    field: String,
    env: &'a BTreeMap<String, f64>,
    ctx: Ctx,
    issues: Vec<GraphIssue>,
}

impl Attrs<'_> {
    fn fail(&mut self, attr: &str, msg: String) {
        self.issues.push(issue(
            Some(&self.node.id),
            format!("{}.{attr}", self.field),
            msg,
        ));
    }

    /// A positive whole number (or `seq_len`, which `linear`'s `out` keeps as the time axis).
    fn int(&mut self, attr: &str, default: Option<i64>, min: i64) -> Option<IntVal> {
        let v = match (self.node.attrs.get(attr), default) {
            (Some(v), _) => v,
            (None, Some(d)) => return Some(IntVal::N(d)),
            (None, None) => {
                self.fail(
                    attr,
                    format!(
                        "{} needs {attr:?}; add it, e.g. \"{attr}\": 8",
                        self.node.op
                    ),
                );
                return None;
            }
        };
        match eval_int(v, self.env, self.ctx) {
            Ok(IntVal::N(n)) if n < min || n as u64 > MAX_DIM => {
                self.fail(
                    attr,
                    format!("{v} is {n}; use a whole number in [{min}, {MAX_DIM}]"),
                );
                None
            }
            Ok(x) => Some(x),
            Err(e) => {
                self.fail(attr, e);
                None
            }
        }
    }

    fn usize(&mut self, attr: &str, default: Option<i64>, min: i64) -> Option<usize> {
        match self.int(attr, default, min)? {
            IntVal::N(n) => Some(n as usize),
            IntVal::Seq(n) => Some(n),
        }
    }

    fn real(&mut self, attr: &str, default: Option<f64>) -> Option<f64> {
        let v = match (self.node.attrs.get(attr), default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => return Some(d),
            (None, None) => {
                self.fail(
                    attr,
                    format!(
                        "{} needs {attr:?}; add it, e.g. \"{attr}\": 0.5",
                        self.node.op
                    ),
                );
                return None;
            }
        };
        let x = match &v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => self.env.get(s.trim()).copied(),
            _ => None,
        };
        match x {
            Some(x) if x.is_finite() && x.abs() <= 1e6 => Some(x),
            _ => {
                self.fail(
                    attr,
                    format!("{v} must be a finite number within ±1e6 or a declared param's name"),
                );
                None
            }
        }
    }

    fn bool(&mut self, attr: &str, default: bool) -> Option<bool> {
        match self.node.attrs.get(attr) {
            None => Some(default),
            Some(Value::Bool(b)) => Some(*b),
            Some(v) => {
                self.fail(attr, format!("{v} must be true or false"));
                None
            }
        }
    }
}

/// Resolve the declared hyperparameters against given values; problems name `params.<name>`.
fn resolve_params(
    doc: &ComponentDoc,
    given: &Map<String, Value>,
    issues: &mut Vec<GraphIssue>,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if doc.params.len() > MAX_DECLARED {
        issues.push(issue(
            None,
            "params",
            format!(
                "{} params declared; at most {MAX_DECLARED}",
                doc.params.len()
            ),
        ));
    }
    for (name, p) in &doc.params {
        let field = format!("params.{name}");
        if !valid_ident(name, false) || name == "d_model" || name == "seq_len" {
            issues.push(issue(None, &field, format!("{name:?} is not a usable name: use letters, digits and _, starting with a letter, and not d_model or seq_len (which are given)")));
            continue;
        }
        if !(p.min.is_finite() && p.max.is_finite() && p.min <= p.max) {
            issues.push(issue(
                None,
                &field,
                format!(
                    "bounds [{}, {}] must be finite with min <= max",
                    p.min, p.max
                ),
            ));
            continue;
        }
        let ok = |x: f64| x >= p.min && x <= p.max && (!p.integer || x.fract() == 0.0);
        if !ok(p.default) {
            issues.push(issue(
                None,
                format!("{field}.default"),
                format!(
                    "{} is not in [{}, {}]{}; choose a default within the bounds",
                    p.default,
                    p.min,
                    p.max,
                    if p.integer { " as a whole number" } else { "" }
                ),
            ));
            continue;
        }
        out.insert(name.clone(), p.default);
    }
    for (k, v) in given {
        let Some(p) = doc.params.get(k) else {
            let known: Vec<&str> = doc.params.keys().map(|s| s.as_str()).collect();
            issues.push(issue(
                None,
                format!("params.{k}"),
                format!(
                    "{} declares no param {k:?}; remove it (declared: {})",
                    doc.name,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
            continue;
        };
        match v.as_f64() {
            Some(x) if x >= p.min && x <= p.max && (!p.integer || x.fract() == 0.0) => {
                out.insert(k.clone(), x);
            }
            _ => issues.push(issue(
                None,
                format!("params.{k}"),
                format!(
                    "{v} is out of range; use a {} in [{}, {}]",
                    if p.integer { "whole number" } else { "number" },
                    p.min,
                    p.max
                ),
            )),
        }
    }
    out
}

/// Check a document for `ctx`, with `given` overriding declared defaults: strict names, known
/// ops and attributes, inputs that exist, no cycle, no dead node, every shape inferred, the
/// output `(batch, seq, d_model)`, and the bounds. Returns every problem at once.
pub fn check(
    doc: &ComponentDoc,
    ctx: Ctx,
    given: &Map<String, Value>,
) -> Result<Checked, Vec<GraphIssue>> {
    let mut issues = Vec::new();
    if doc.format != FORMAT {
        issues.push(issue(
            None,
            "format",
            format!(
                "{:?} is not a format this build reads; write \"format\": \"{FORMAT}\"",
                doc.format
            ),
        ));
    }
    if !valid_ident(&doc.name, false) {
        issues.push(issue(
            None,
            "name",
            format!(
                "{:?} is not a usable name: use 1 to 64 letters, digits and _, starting with a letter",
                doc.name
            ),
        ));
    }
    let body = serde_json::to_string(doc).map(|s| s.len()).unwrap_or(0);
    if body > MAX_BODY_BYTES {
        issues.push(issue(
            None,
            "(document)",
            format!("{body} bytes is over the {MAX_BODY_BYTES}-byte limit; make the graph smaller"),
        ));
    }
    if doc.nodes.is_empty() || doc.nodes.len() > MAX_NODES {
        issues.push(issue(
            None,
            "nodes",
            format!("{} nodes; a graph has 1 to {MAX_NODES}", doc.nodes.len()),
        ));
    }
    let env = resolve_params(doc, given, &mut issues);
    if doc.inputs.len() != 1 {
        issues.push(issue(
            None,
            "inputs",
            format!(
                "a block or a head has exactly one input, (batch, seq, d_model); found {}: write e.g. [\"x\"]",
                doc.inputs.len()
            ),
        ));
    }
    // names: inputs and node ids, unique
    let mut slot_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, name) in doc.inputs.iter().enumerate() {
        if !valid_ident(name, false) {
            issues.push(issue(
                None,
                format!("inputs[{i}]"),
                format!(
                    "{name:?} is not a usable name: letters, digits and _, starting with a letter"
                ),
            ));
        }
        slot_of.insert(name, 0);
    }
    for (k, n) in doc.nodes.iter().enumerate() {
        let field = format!("nodes[{k}].id");
        if !valid_ident(&n.id, true) {
            issues.push(issue(Some(&n.id), field, format!("{:?} is not a usable id: dot-separated parts of letters, digits and _, each starting with a letter, at most 64 characters", n.id)));
        } else if slot_of.insert(&n.id, k + 1).is_some() {
            issues.push(issue(
                Some(&n.id),
                field,
                format!(
                    "{:?} is used twice (inputs and node ids must be unique); rename one",
                    n.id
                ),
            ));
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    // edges, then a topological order (Kahn); a cycle names its nodes
    let mut deps: Vec<Vec<usize>> = Vec::new();
    for (k, n) in doc.nodes.iter().enumerate() {
        let mut d = Vec::new();
        for (j, src) in n.inputs.iter().enumerate() {
            match slot_of.get(src.as_str()) {
                Some(&s) => d.push(s),
                None => issues.push(issue(
                    Some(&n.id),
                    format!("nodes[{k}].in[{j}]"),
                    format!(
                        "no input or node is named {src:?}; use one of {}",
                        slot_of.keys().copied().collect::<Vec<_>>().join(", ")
                    ),
                )),
            }
        }
        deps.push(d);
    }
    let out_slot = match slot_of.get(doc.output.as_str()) {
        Some(&s) => Some(s),
        None => {
            issues.push(issue(
                None,
                "output",
                format!(
                    "no input or node is named {:?}; name the node whose value the block returns",
                    doc.output
                ),
            ));
            None
        }
    };
    if !issues.is_empty() {
        return Err(issues);
    }
    let n = doc.nodes.len();
    let mut indeg: Vec<usize> = deps
        .iter()
        .map(|d| d.iter().filter(|&&s| s > 0).count())
        .collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (k, d) in deps.iter().enumerate() {
        for &s in d {
            if s > 0 {
                users[s - 1].push(k);
            }
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&k| indeg[k] == 0).rev().collect();
    let mut order = Vec::new();
    while let Some(k) = ready.pop() {
        order.push(k);
        for &u in users[k].iter().rev() {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.push(u);
            }
        }
    }
    if order.len() < n {
        let stuck: Vec<&str> = (0..n)
            .filter(|&k| indeg[k] > 0)
            .map(|k| doc.nodes[k].id.as_str())
            .collect();
        return Err(vec![issue(
            Some(stuck[0]),
            "nodes",
            format!(
                "the graph has a cycle through {}; a node may only read inputs and nodes that do not depend on it",
                stuck.join(", ")
            ),
        )]);
    }
    // dead nodes: not reachable backwards from the output
    let out_slot = out_slot.expect("checked");
    let mut live = vec![false; n + 1];
    let mut stack = vec![out_slot];
    while let Some(s) = stack.pop() {
        if !std::mem::replace(&mut live[s], true) && s > 0 {
            stack.extend(deps[s - 1].iter().copied());
        }
    }
    for (k, node) in doc.nodes.iter().enumerate() {
        if !live[k + 1] {
            issues.push(issue(
                Some(&node.id),
                format!("nodes[{k}]"),
                format!(
                    "{:?} does not reach the output {:?}; remove it or use it",
                    node.id, doc.output
                ),
            ));
        }
    }
    // shapes, ops, sizes, in order
    let d_in = Shape([Dim::Batch, Dim::Seq, Dim::N(ctx.d_model)]);
    let mut shapes: Vec<Option<Shape>> = vec![None; n + 1];
    shapes[0] = Some(d_in);
    let mut plan = Vec::new();
    let mut est = Estimate {
        params: 0,
        flops: 0,
        activation_bytes: 0,
        body_bytes: body as u64,
        nodes: n,
    };
    let mut param_names: Vec<(String, u64)> = Vec::new();
    let mut slot_plan = vec![0usize; n + 1];
    for (pos, &k) in order.iter().enumerate() {
        let node = &doc.nodes[k];
        let field = format!("nodes[{k}]");
        let Some(info) = OPS.iter().find(|o| o.op == node.op) else {
            issues.push(issue(
                Some(&node.id),
                format!("{field}.op"),
                format!(
                    "unknown op {:?}; use one of {}",
                    node.op,
                    OPS.iter().map(|o| o.op).collect::<Vec<_>>().join(", ")
                ),
            ));
            continue;
        };
        for a in node.attrs.keys() {
            if !info.attrs.iter().any(|(n, _)| n == a) {
                issues.push(issue(
                    Some(&node.id),
                    format!("{field}.{a}"),
                    format!(
                        "{} has no attribute {a:?}; remove it (its attributes: {})",
                        info.op,
                        if info.attrs.is_empty() {
                            "none".into()
                        } else {
                            info.attrs
                                .iter()
                                .map(|a| a.0)
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                ));
            }
        }
        let (lo, hi) = info.inputs;
        if node.inputs.len() < lo || node.inputs.len() > hi {
            issues.push(issue(
                Some(&node.id),
                format!("{field}.in"),
                format!(
                    "{} takes {} input{}; found {}",
                    info.op,
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo} to {hi}")
                    },
                    if hi == 1 { "" } else { "s" },
                    node.inputs.len()
                ),
            ));
            continue;
        }
        let ins: Option<Vec<Shape>> = deps[k].iter().map(|&s| shapes[s]).collect();
        let Some(ins) = ins else {
            continue; // an input failed already
        };
        let mut at = Attrs {
            node,
            field: field.clone(),
            env: &env,
            ctx,
            issues: Vec::new(),
        };
        let r = infer(node, info, &ins, &mut at, ctx);
        issues.append(&mut at.issues);
        let Some((op, shape, params, flops)) = r else {
            continue;
        };
        if matches!(shape.0[1], Dim::N(0)) || matches!(shape.0[2], Dim::N(0)) {
            issues.push(issue(
                Some(&node.id),
                field.clone(),
                format!("{} gives an empty shape {shape}", info.op),
            ));
            continue;
        }
        for (pname, count) in params {
            param_names.push((format!("{}.{pname}", node.id), count));
            est.params = est.params.saturating_add(count);
        }
        est.flops = est.flops.saturating_add(flops);
        // outputs, plus what an op holds inside: attention's score matrices, the ema's decay
        // matrix, the convolution's padded input
        let (r, w) = (ins[0].at(1, ctx) as u64, ins[0].at(2, ctx) as u64);
        let inner = match &op {
            Op::Attention { heads, .. } => 2 * *heads as u64 * r * r,
            Op::Ema => 3 * w * r * r,
            Op::Conv1d {
                kernel, dilation, ..
            } => (r + (*kernel as u64 - 1) * *dilation as u64) * w,
            Op::MovingAverage { kernel } => 2 * (r + *kernel as u64) * w,
            _ => 0,
        };
        est.activation_bytes = est
            .activation_bytes
            .saturating_add(4 * (shape.numel(ctx) + inner));
        shapes[k + 1] = Some(shape);
        slot_plan[k + 1] = pos + 1;
        plan.push(Planned {
            id: node.id.clone(),
            op,
            inputs: deps[k].clone(),
            in_shapes: ins,
            shape,
        });
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    // parameter names are unique (dotted ids could collide with another node's parameters)
    let mut seen = BTreeSet::new();
    for (p, _) in &param_names {
        if !seen.insert(p.as_str()) {
            issues.push(issue(
                None,
                "nodes",
                format!("two nodes would both own parameter {p:?}; rename one of them"),
            ));
        }
    }
    let out_shape = shapes[out_slot].expect("inferred");
    for p in &plan {
        for (j, &s) in p.inputs.iter().enumerate() {
            if s > 0 && is_dist_name(&doc.nodes[s - 1].op) {
                issues.push(issue(
                    Some(&p.id),
                    format!("nodes[{}].in[{j}]", doc.nodes.iter().position(|n| n.id == p.id).unwrap_or(0)),
                    format!(
                        "{:?} is a distribution; only a head's output may be one, and nothing reads it",
                        doc.nodes[s - 1].id
                    ),
                ));
            }
        }
    }
    let out_is_dist = out_slot > 0 && is_dist_name(&doc.nodes[out_slot - 1].op);
    if doc.kind == Kind::Head {
        if !out_is_dist {
            issues.push(issue(
                Some(&doc.output),
                "output",
                format!(
                    "a head ends in a distribution node (gaussian or student_t) reading mu and sigma of shape (batch, 1, 1); {:?} is a {}",
                    doc.output,
                    if out_slot == 0 { "input" } else { doc.nodes[out_slot - 1].op.as_str() }
                ),
            ));
        }
    } else if out_is_dist {
        issues.push(issue(
            Some(&doc.output),
            "output",
            "a block returns (batch, seq, d_model), not a distribution; distributions end heads (\"kind\": \"head\")",
        ));
    } else if out_shape != d_in {
        issues.push(issue(
            Some(&doc.output),
            "output",
            format!(
                "a block returns {d_in} but {:?} is {out_shape}; end with a node of that shape (e.g. transpose back, or a linear with \"out\": \"d_model\")",
                doc.output
            ),
        ));
    }
    if out_slot == 0 {
        issues.push(issue(
            None,
            "output",
            "the output is the input itself; name a node",
        ));
    }
    for (what, v, max) in [
        ("parameters", est.params, MAX_PARAMS),
        ("forward FLOPs per window", est.flops, MAX_FLOPS),
        (
            "bytes of activations per window",
            est.activation_bytes,
            MAX_ACTIVATION_BYTES,
        ),
    ] {
        if v > max {
            issues.push(issue(
                None,
                "(estimate)",
                format!(
                    "{v} {what} at d_model {} and seq_len {} is over the limit of {max}; use narrower layers or fewer nodes",
                    ctx.d_model, ctx.seq_len
                ),
            ));
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    // renumber slots to plan order: slot 0 the input, plan node p writes p + 1
    for p in &mut plan {
        for s in &mut p.inputs {
            *s = slot_plan[*s];
        }
    }
    Ok(Checked {
        doc: doc.clone(),
        ctx,
        params: env,
        output: slot_plan[out_slot],
        plan,
        estimate: est,
        param_names,
    })
}

fn is_dist_name(op: &str) -> bool {
    matches!(op, "gaussian" | "student_t")
}

type Inferred = (Op, Shape, Vec<(&'static str, u64)>, u64);

/// Two shapes combined elementwise: equal axes, or one of width 1 (broadcast).
fn broadcast(a: Shape, b: Shape) -> Option<Shape> {
    let mut out = a;
    for i in 0..3 {
        out.0[i] = match (a.0[i], b.0[i]) {
            (x, y) if x == y => x,
            (Dim::N(1), y) => y,
            (x, Dim::N(1)) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// One node's op, output shape, parameters and FLOPs; problems go to `at`.
fn infer(node: &Node, info: &OpInfo, ins: &[Shape], at: &mut Attrs, ctx: Ctx) -> Option<Inferred> {
    let x = ins[0];
    let [b, m, c] = x.0;
    let rows = x.at(1, ctx) as u64; // positions per window
    let width = x.at(2, ctx) as u64;
    let numel = x.numel(ctx);
    let same = |op: Op, per: u64| Some((op, x, vec![], per * numel));
    match info.op {
        "linear" => {
            let out = at.int("out", None, 1);
            let bias = at.bool("bias", true)?;
            let out = match out? {
                IntVal::N(n) => Dim::N(n as usize),
                IntVal::Seq(_) => Dim::Seq,
            };
            let o = Shape::size(out, ctx) as u64;
            let mut p = vec![("weight", o * width)];
            if bias {
                p.push(("bias", o));
            }
            Some((
                Op::Linear { out, bias },
                Shape([b, m, out]),
                p,
                2 * rows * width * o,
            ))
        }
        "conv1d" => {
            let out = at.usize("out", None, 1);
            let kernel = at.usize("kernel", None, 1);
            let dilation = at.usize("dilation", Some(1), 1);
            let causal = at.bool("causal", true);
            let bias = at.bool("bias", true);
            let (out, kernel, dilation, causal, bias) = (out?, kernel?, dilation?, causal?, bias?);
            if kernel > 64 || dilation > 4096 {
                at.fail(
                    "kernel",
                    format!("kernel {kernel} with dilation {dilation}: use a kernel of at most 64 and a dilation of at most 4096"),
                );
                return None;
            }
            let (o, k) = (out as u64, kernel as u64);
            let mut p = vec![("weight", o * width * k)];
            if bias {
                p.push(("bias", o));
            }
            Some((
                Op::Conv1d {
                    out,
                    kernel,
                    dilation,
                    causal,
                    bias,
                },
                Shape([b, m, Dim::N(out)]),
                p,
                2 * rows * width * o * k,
            ))
        }
        "layer_norm" => {
            let eps = at.real("eps", Some(1e-5))?;
            Some((
                Op::LayerNorm { eps },
                x,
                vec![("weight", width), ("bias", width)],
                8 * numel,
            ))
        }
        "rms_norm" => {
            let eps = at.real("eps", Some(1e-6))?;
            Some((Op::RmsNorm { eps }, x, vec![("weight", width)], 5 * numel))
        }
        "relu" => same(Op::Relu, 1),
        "gelu" => same(Op::Gelu, 8),
        "silu" => same(Op::Silu, 4),
        "tanh" => same(Op::Tanh, 4),
        "sigmoid" => same(Op::Sigmoid, 4),
        "softplus" => same(Op::Softplus, 6),
        "glu" => {
            if width % 2 != 0 {
                at.fail("in", format!("glu halves the last axis but {x} has an odd width {width}; give it an even width"));
                return None;
            }
            Some((
                Op::Glu,
                Shape([b, m, Dim::N(width as usize / 2)]),
                vec![],
                3 * numel,
            ))
        }
        "add" | "sub" | "mul" => {
            let mut s = x;
            for (j, &y) in ins.iter().enumerate().skip(1) {
                match broadcast(s, y) {
                    Some(t) => s = t,
                    None => {
                        at.fail(
                            &format!("in[{j}]"),
                            format!("{} of {s} and {y}: the shapes differ; every axis must be equal or of width 1 (`transpose`, `linear` or `mean_time` can make them agree)", info.op),
                        );
                        return None;
                    }
                }
            }
            let op = match info.op {
                "add" => Op::Add,
                "sub" => Op::Sub,
                _ => Op::Mul,
            };
            Some((op, s, vec![], s.numel(ctx) * (ins.len() as u64 - 1)))
        }
        "scale" => {
            let factor = at.real("factor", None);
            let offset = at.real("offset", Some(0.0));
            same(
                Op::Scale {
                    factor: factor?,
                    offset: offset?,
                },
                2,
            )
        }
        "concat" => {
            let mut total = 0usize;
            for (j, y) in ins.iter().enumerate() {
                if y.0[0] != b || y.0[1] != m {
                    at.fail(
                        &format!("in[{j}]"),
                        format!("concat joins the last axis; {y} and {x} differ on the others"),
                    );
                    return None;
                }
                total += y.at(2, ctx);
            }
            let s = Shape([b, m, Dim::N(total)]);
            Some((Op::Concat, s, vec![], s.numel(ctx)))
        }
        "slice" => {
            let start = at.usize("start", None, 0);
            let len = at.usize("len", None, 1);
            let (start, len) = (start?, len?);
            if start + len > width as usize {
                at.fail(
                    "len",
                    format!("features {start}..{} exceed the width {width} of {x}; keep start + len <= {width}", start + len),
                );
                return None;
            }
            Some((
                Op::Slice { start, len },
                Shape([b, m, Dim::N(len)]),
                vec![],
                0,
            ))
        }
        "transpose" => Some((Op::Transpose, Shape([b, c, m]), vec![], numel)),
        "mean_time" => Some((Op::MeanTime, Shape([b, Dim::N(1), c]), vec![], numel)),
        "attention" => {
            let heads = at.usize("heads", None, 1);
            let causal = at.bool("causal", false);
            let (heads, causal) = (heads?, causal?);
            if width as usize % heads != 0 {
                let good: Vec<String> = (1..=(width as usize).min(16))
                    .filter(|h| width as usize % h == 0)
                    .map(|h| h.to_string())
                    .collect();
                at.fail(
                    "heads",
                    format!("the width {width} of {x} is not divisible by {heads} heads; use heads in {{{}}}", good.join(", ")),
                );
                return None;
            }
            let w = width;
            let p = vec![
                ("q.weight", w * w),
                ("q.bias", w),
                ("k.weight", w * w),
                ("k.bias", w),
                ("v.weight", w * w),
                ("v.bias", w),
                ("o.weight", w * w),
                ("o.bias", w),
            ];
            Some((
                Op::Attention { heads, causal },
                x,
                p,
                8 * rows * w * w + 4 * rows * rows * w,
            ))
        }
        "cumsum" => same(Op::Cumsum, 1),
        "last_time" => Some((Op::LastTime, Shape([b, Dim::N(1), c]), vec![], 0)),
        "gaussian" | "student_t" => {
            let one = Shape([Dim::Batch, Dim::N(1), Dim::N(1)]);
            for (j, y) in ins.iter().enumerate() {
                if *y != one {
                    at.fail(
                        &format!("in[{j}]"),
                        format!("{} reads mu and sigma of shape {one}, one per window; {:?} is {y} (`last_time`, then a `linear` with \"out\": 2 and two `slice`s, make them)", info.op, node.inputs[j]),
                    );
                    return None;
                }
            }
            let op = if info.op == "gaussian" {
                Op::Gaussian
            } else {
                let df = at.real("df", Some(5.0))?;
                if !(df > 2.0 && df <= 1000.0) {
                    at.fail(
                        "df",
                        format!("{df} degrees of freedom: use 2 < df <= 1000 (a finite variance)"),
                    );
                    return None;
                }
                Op::StudentT { df }
            };
            Some((op, one, vec![], 0))
        }
        "ema" => Some((Op::Ema, x, vec![("decay", width)], 2 * rows * numel)),
        "moving_average" => {
            let kernel = at.usize("kernel", None, 1)?;
            if kernel > rows as usize {
                at.fail(
                    "kernel",
                    format!(
                        "{kernel} is longer than the {rows} positions of {x}; use at most {rows}"
                    ),
                );
                return None;
            }
            same(Op::MovingAverage { kernel }, 3)
        }
        other => {
            at.fail("op", format!("{other} has no shape rule"));
            None
        }
    }
}

#[cfg(test)]
mod tests;
