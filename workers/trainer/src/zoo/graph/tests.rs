//! Tests of component graphs: the shipped documents check; the graph forms of TCN, Transformer
//! and N-BEATS and of the GBM head have the built-ins' parameter counts and train to the
//! built-ins' losses on real bars (same seed, same data); a Student-t head learns; invalid documents are refused naming the node, the field and the
//! fix; a spec carrying a graph trains, checkpoints and simulates.

use std::path::Path;

use candle_core::Device;
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use serde_json::{json, Map, Value};

use super::*;
use crate::zoo::features::AssetWindows;
use crate::zoo::model::ZooModel;
use crate::zoo::params::{Noise, SeededVarMap};
use crate::zoo::spec::{ExperimentSpec, LossKind};
use crate::zoo::tests::{btc, tiny_spec};
use crate::zoo::train::{batch_loss, make_batch};

fn component(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("components")
        .join(format!("{name}.json"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn doc(name: &str) -> ComponentDoc {
    parse(&component(name)).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

/// `tiny_spec` for `builtin`, and the same spec with the graph `graph` in its place (the same
/// kwargs: the graphs declare the built-ins' parameter names).
fn pair(builtin: &str, graph: &str) -> (ExperimentSpec, ExperimentSpec) {
    let a = tiny_spec(&[builtin], "GBMHead");
    let mut b = a.clone();
    b.model.backbone.blocks = vec![format!("graph:{graph}")];
    b.model.components = vec![doc(graph)];
    (a, b)
}

#[test]
fn graph_shipped_components_check_with_estimates() {
    for name in [
        "tcn",
        "transformer",
        "nbeats",
        "gated_conv",
        "gaussian",
        "student_t",
    ] {
        let c = check_text(&component(name), Ctx::default()).unwrap_or_else(|e| {
            panic!(
                "{name}: {}",
                e.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        });
        let e = c.estimate;
        assert!(
            e.params > 0 && e.flops > 0 && e.activation_bytes > 0,
            "{name}: {e:?}"
        );
        assert!(e.body_bytes > 0 && e.nodes == c.doc.nodes.len());
        let out = if c.doc.kind == Kind::Head {
            "(batch, 1, 1)"
        } else {
            "(batch, seq, 32)"
        };
        assert_eq!(c.report().output_shape, out, "{name}");
    }
}

#[test]
fn graph_blocks_have_the_builtins_parameter_counts() {
    for (builtin, graph) in [
        ("TCNBlock", "tcn"),
        ("TransformerBlock", "transformer"),
        ("NBeatsBlock", "nbeats"),
    ] {
        let (a, b) = pair(builtin, graph);
        let (pa, pb) = (a.param_breakdown().unwrap(), b.param_breakdown().unwrap());
        assert_eq!(pa, pb, "{builtin} vs graph:{graph}");
        // the check's own count (no candle) agrees with what was built
        let r = b.validate().unwrap();
        let g = &r.graphs[&0];
        let built = pb.iter().find(|(k, _)| k == "blocks.0").unwrap().1 as u64;
        assert_eq!(g.estimate.params, built, "graph:{graph} estimate");
        // and so do the names: the same checkpoint keys as the built-in
        let names = |s: &ExperimentSpec| {
            let r = s.validate().unwrap();
            let vm = SeededVarMap::new(1);
            ZooModel::build(s, &r, vm.builder(&Device::Cpu)).unwrap();
            vm.named_vars()
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&a), names(&b), "{builtin} vs graph:{graph} names");
    }
    // at the presets' width too, with the defaults
    for (builtin, graph) in [("TCNBlock", "tcn"), ("TransformerBlock", "transformer")] {
        let a = ExperimentSpec::new(&[builtin], "GBMHead");
        let mut b = a.clone();
        b.model.backbone.blocks = vec![format!("graph:{graph}")];
        b.model.components = vec![doc(graph)];
        assert_eq!(
            a.param_count().unwrap(),
            b.param_count().unwrap(),
            "{builtin}"
        );
    }
}

/// 30 AdamW steps on a fixed batch of real windows; the losses of every step.
fn losses(spec: &ExperimentSpec, steps: usize) -> Option<Vec<f64>> {
    let bars = btc()?;
    let r = spec.validate().unwrap();
    let t = &spec.training;
    let w = AssetWindows::new(
        "BTC",
        bars.clone(),
        spec.model.backbone.seq_len,
        t.horizon,
        0.2,
        12,
    )
    .unwrap();
    let dev = Device::Cpu;
    let vm = SeededVarMap::new(7);
    let model = ZooModel::build(spec, &r, vm.builder(&dev)).unwrap();
    let items: Vec<(usize, usize)> = w.train.iter().rev().take(8).map(|&i| (0, i)).collect();
    let data = [w];
    let (x, y) = make_batch(spec, &data, &items, &dev).unwrap();
    let mut opt = AdamW::new(
        vm.vars(),
        ParamsAdamW {
            lr: 1e-2,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut noise = Noise::new(1, &dev);
    let mut out = Vec::new();
    for _ in 0..steps {
        let loss = batch_loss(&model, &x, &y, 16, LossKind::Crps, 0.95, &mut noise).unwrap();
        out.push(loss.to_scalar::<f32>().unwrap() as f64);
        opt.backward_step(&loss).unwrap();
    }
    Some(out)
}

#[test]
fn graph_blocks_train_to_the_builtins_losses() {
    for (builtin, graph) in [
        ("TCNBlock", "tcn"),
        ("TransformerBlock", "transformer"),
        ("NBeatsBlock", "nbeats"),
    ] {
        let (a, b) = pair(builtin, graph);
        let Some(la) = losses(&a, 30) else { return };
        let lb = losses(&b, 30).unwrap();
        let worst = la
            .iter()
            .zip(&lb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "{builtin}: {:.5} -> {:.5}; graph:{graph}: {:.5} -> {:.5}; largest step difference {worst:e}",
            la[0], la[29], lb[0], lb[29]
        );
        assert!(la[29] < la[0], "{builtin} learns: {la:?}");
        for (k, (x, y)) in la.iter().zip(&lb).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * x.abs().max(1.0),
                "{builtin} vs graph:{graph} step {k}: {x} vs {y}"
            );
        }
    }
}

/// `tiny_spec` with the GBM head, and the same with the graph `graph` as its head.
fn head_pair(block: &str, graph: &str) -> (ExperimentSpec, ExperimentSpec) {
    let a = tiny_spec(&[block], "GBMHead");
    let mut b = a.clone();
    b.model.head.kind = format!("graph:{graph}");
    b.model.components = vec![doc(graph)];
    (a, b)
}

#[test]
fn graph_heads_match_the_gbm_head_and_student_t_learns() {
    let (a, b) = head_pair("TCNBlock", "gaussian");
    assert_eq!(a.param_breakdown().unwrap(), b.param_breakdown().unwrap());
    let r = b.validate().unwrap();
    let built = b.param_breakdown().unwrap();
    assert_eq!(
        r.head_graph.as_ref().unwrap().estimate.params,
        built.iter().find(|(k, _)| k == "head").unwrap().1 as u64
    );
    let Some(la) = losses(&a, 30) else { return };
    let lb = losses(&b, 30).unwrap();
    let worst = la
        .iter()
        .zip(&lb)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "GBMHead: {:.5} -> {:.5}; graph:gaussian: {:.5} -> {:.5}; largest step difference {worst:e}",
        la[0], la[29], lb[0], lb[29]
    );
    assert!(worst <= 1e-4 * la[0].abs().max(1.0), "{la:?} vs {lb:?}");
    // Student-t increments: the same parameters, other noise; it learns
    let (_, t) = head_pair("TCNBlock", "student_t");
    assert_eq!(t.param_count().unwrap(), a.param_count().unwrap());
    let lt = losses(&t, 30).unwrap();
    eprintln!("graph:student_t: {:.5} -> {:.5}", lt[0], lt[29]);
    assert!(lt.iter().all(|x| x.is_finite()) && lt[29] < lt[0], "{lt:?}");
    assert_ne!(lt, lb, "t noise is not Gaussian noise");
    // the head's declared df is a head kwarg, bounded
    let mut bad = t.clone();
    bad.model.head.kwargs.insert("df".into(), json!(1.5));
    let e = bad.validate().unwrap_err();
    assert!(
        e.iter()
            .any(|i| i.field == "model.head.df" && i.message.contains("[2.5, 100]")),
        "{e:?}"
    );
    // a head graph named as a block, and a block graph as the head
    let mut swap = t.clone();
    swap.model.backbone.blocks = vec!["graph:student_t".into()];
    swap.model.head.kind = "GBMHead".into();
    let e = swap.validate().unwrap_err();
    assert!(
        e.iter()
            .any(|i| i.field == "model.backbone.blocks[0]" && i.message.contains("is not a block")),
        "{e:?}"
    );
}

#[test]
fn graph_vocabulary_beyond_the_builtins_learns() {
    // the gated convolution uses rms_norm, slice, tanh, sigmoid, mul and the ema scan; a second
    // graph covers the rest of the vocabulary
    let extra = json!({
        "format": FORMAT, "kind": "block", "name": "mix",
        "inputs": ["x"],
        "nodes": [
            {"id": "a", "op": "attention", "in": ["x"], "heads": 2, "causal": true},
            {"id": "g", "op": "linear", "in": ["a"], "out": "2*d_model"},
            {"id": "glu", "op": "glu", "in": ["g"]},
            {"id": "s", "op": "silu", "in": ["glu"]},
            {"id": "sp", "op": "softplus", "in": ["s"]},
            {"id": "c", "op": "cumsum", "in": ["sp"]},
            {"id": "cs", "op": "scale", "in": ["c"], "factor": 0.05},
            {"id": "ma", "op": "moving_average", "in": ["x"], "kernel": 3},
            {"id": "hp", "op": "sub", "in": ["x", "ma"]},
            {"id": "pool", "op": "mean_time", "in": ["hp"]},
            {"id": "cat", "op": "concat", "in": ["cs", "hp"]},
            {"id": "proj", "op": "conv1d", "in": ["cat"], "out": "d_model", "kernel": 3, "causal": false},
            {"id": "gel", "op": "gelu", "in": ["proj"]},
            {"id": "ln", "op": "layer_norm", "in": ["gel"]},
            {"id": "out", "op": "add", "in": ["x", "ln", "pool"]}
        ],
        "output": "out"
    });
    for d in [doc("gated_conv"), serde_json::from_value(extra).unwrap()] {
        let mut s = tiny_spec(&["TCNBlock"], "GBMHead");
        s.model.backbone.blocks = vec![format!("graph:{}", d.name)];
        s.model.backbone.block_kwargs = vec![];
        s.model.components = vec![d.clone()];
        let r = s.validate().unwrap_or_else(|e| panic!("{}: {e:?}", d.name));
        let vm = SeededVarMap::new(1);
        ZooModel::build(&s, &r, vm.builder(&Device::Cpu)).unwrap();
        assert_eq!(
            vm.param_count() as u64,
            r.graphs[&0].estimate.params
                + s.param_breakdown()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| k != "blocks.0")
                    .map(|p| p.1 as u64)
                    .sum::<u64>(),
            "{}: the estimate counts what is built",
            d.name
        );
        let Some(l) = losses(&s, 25) else { return };
        assert!(l.iter().all(|x| x.is_finite()), "{}: {l:?}", d.name);
        assert!(l[24] < l[0], "{} learns: {l:?}", d.name);
    }
}

/// Check a JSON value as a document; the issues.
fn refuse(v: Value) -> Vec<GraphIssue> {
    match parse(&v.to_string()) {
        Err(e) => e,
        Ok(d) => check(
            &d,
            Ctx {
                d_model: 8,
                seq_len: 16,
            },
            &Map::new(),
        )
        .err()
        .unwrap_or_else(|| panic!("accepted: {v}")),
    }
}

fn base(nodes: Value, output: &str) -> Value {
    json!({"format": FORMAT, "kind": "block", "name": "t", "inputs": ["x"], "nodes": nodes, "output": output,
           "params": {"k": {"default": 3, "min": 2, "max": 5}}})
}

fn has(issues: &[GraphIssue], node: Option<&str>, field: &str, words: &[&str]) {
    assert!(
        issues.iter().any(|i| i.node.as_deref() == node
            && i.field == field
            && words.iter().all(|w| i.message.contains(w))),
        "no issue at {node:?} {field} with {words:?} in {issues:#?}"
    );
}

#[test]
fn graph_invalid_documents_name_the_node_field_and_fix() {
    // a cycle
    let e = refuse(base(
        json!([{"id": "a", "op": "relu", "in": ["b"]}, {"id": "b", "op": "relu", "in": ["a"]}]),
        "b",
    ));
    has(&e, Some("a"), "nodes", &["cycle", "a, b"]);
    // an unknown op
    let e = refuse(base(json!([{"id": "a", "op": "fft", "in": ["x"]}]), "a"));
    has(
        &e,
        Some("a"),
        "nodes[0].op",
        &["unknown op \"fft\"", "linear"],
    );
    // a missing input
    let e = refuse(base(json!([{"id": "a", "op": "relu", "in": ["y"]}]), "a"));
    has(&e, Some("a"), "nodes[0].in[0]", &["\"y\"", "x"]);
    // a shape mismatch
    let e = refuse(base(
        json!([{"id": "a", "op": "linear", "in": ["x"], "out": 4}, {"id": "b", "op": "add", "in": ["x", "a"]}]),
        "b",
    ));
    has(
        &e,
        Some("b"),
        "nodes[1].in[1]",
        &["(batch, seq, 8)", "(batch, seq, 4)"],
    );
    // the output has the wrong shape
    let e = refuse(base(
        json!([{"id": "a", "op": "linear", "in": ["x"], "out": 4}]),
        "a",
    ));
    has(
        &e,
        Some("a"),
        "output",
        &["(batch, seq, 8)", "(batch, seq, 4)"],
    );
    // an unknown attribute, and a field the format does not have
    let e = refuse(base(
        json!([{"id": "a", "op": "conv1d", "in": ["x"], "out": "d_model", "kernal": 3}]),
        "a",
    ));
    has(
        &e,
        Some("a"),
        "nodes[0].kernal",
        &["no attribute", "kernel"],
    );
    has(&e, Some("a"), "nodes[0].kernel", &["needs"]);
    let mut v = base(json!([{"id": "a", "op": "relu", "in": ["x"]}]), "a");
    v["code"] = json!("import os");
    let e = refuse(v);
    assert!(e[0].message.contains("unknown field `code`"), "{e:?}");
    // a parameter reference that is not declared, and a declared bound
    let e = refuse(base(
        json!([{"id": "a", "op": "conv1d", "in": ["x"], "out": "d_model", "kernel": "kk"}]),
        "a",
    ));
    has(&e, Some("a"), "nodes[0].kernel", &["\"kk\"", "declare"]);
    let d: ComponentDoc = serde_json::from_value(base(
        json!([{"id": "a", "op": "conv1d", "in": ["x"], "out": "d_model", "kernel": "k"}]),
        "a",
    ))
    .unwrap();
    let mut over = Map::new();
    over.insert("k".into(), json!(9));
    let e = check(
        &d,
        Ctx {
            d_model: 8,
            seq_len: 16,
        },
        &over,
    )
    .unwrap_err();
    has(&e, None, "params.k", &["[2, 5]"]);
    // heads that do not divide the width
    let e = refuse(base(
        json!([{"id": "a", "op": "attention", "in": ["x"], "heads": 3}]),
        "a",
    ));
    has(
        &e,
        Some("a"),
        "nodes[0].heads",
        &["not divisible", "{1, 2, 4, 8}"],
    );
    // 10^9 parameters, and FLOPs
    let e = refuse(base(
        json!([{"id": "a", "op": "linear", "in": ["x"], "out": 65536},
               {"id": "b", "op": "linear", "in": ["a"], "out": 16384},
               {"id": "c", "op": "linear", "in": ["b"], "out": "d_model"}]),
        "c",
    ));
    has(&e, None, "(estimate)", &["parameters", "5000000"]);
    has(&e, None, "(estimate)", &["FLOPs"]);
    // an ema over a long window holds a (width, seq, seq) matrix: refused on memory
    let d: ComponentDoc =
        serde_json::from_value(base(json!([{"id": "a", "op": "ema", "in": ["x"]}]), "a")).unwrap();
    let e = check(
        &d,
        Ctx {
            d_model: 256,
            seq_len: 4096,
        },
        &Map::new(),
    )
    .unwrap_err();
    has(
        &e,
        None,
        "(estimate)",
        &["bytes of activations", "seq_len 4096"],
    );
    // a body over 256 KiB
    let nodes: Vec<Value> = (0..5000)
        .map(|i| json!({"id": format!("n{i}_with_a_long_name_to_grow_the_body"), "op": "relu", "in": ["x"]}))
        .collect();
    let e = refuse(base(Value::Array(nodes), "n0"));
    has(&e, None, "(document)", &["byte limit"]);
    // a dead node, a duplicate id, a head
    let e = refuse(base(
        json!([{"id": "a", "op": "relu", "in": ["x"]}, {"id": "z", "op": "relu", "in": ["x"]}]),
        "a",
    ));
    has(&e, Some("z"), "nodes[1]", &["does not reach the output"]);
    let e = refuse(base(
        json!([{"id": "a", "op": "relu", "in": ["x"]}, {"id": "a", "op": "relu", "in": ["x"]}]),
        "a",
    ));
    has(&e, Some("a"), "nodes[1].id", &["used twice"]);
    // a head that does not end in a distribution; a block that does, or reads one
    let mut v = base(json!([{"id": "a", "op": "relu", "in": ["x"]}]), "a");
    v["kind"] = json!("head");
    has(
        &refuse(v),
        Some("a"),
        "output",
        &["a head ends in a distribution", "relu"],
    );
    let dist = json!([{"id": "l", "op": "last_time", "in": ["x"]},
                      {"id": "m", "op": "slice", "in": ["l"], "start": 0, "len": 1},
                      {"id": "d", "op": "gaussian", "in": ["m", "m"]},
                      {"id": "r", "op": "relu", "in": ["d"]}]);
    let e = refuse(base(dist.clone(), "r"));
    has(&e, Some("r"), "nodes[3].in[0]", &["is a distribution"]);
    let e = refuse(base(
        json!([{"id": "l", "op": "last_time", "in": ["x"]},
                               {"id": "m", "op": "slice", "in": ["l"], "start": 0, "len": 1},
                               {"id": "d", "op": "student_t", "in": ["m", "l"], "df": 1}]),
        "d",
    ));
    has(
        &e,
        Some("d"),
        "nodes[2].in[1]",
        &["(batch, 1, 1)", "(batch, 1, 8)"],
    );
}

#[test]
fn graph_spec_errors_point_into_the_spec() {
    let (_, mut b) = pair("TCNBlock", "tcn");
    b.model.backbone.blocks = vec!["graph:nope".into()];
    let e = b.validate().unwrap_err();
    assert!(
        e.iter().any(|i| i.field == "model.backbone.blocks[0]"
            && i.message.contains("no component graph named \"nope\"")
            && i.message.contains("tcn")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|i| i.field == "model.components[0]" && i.message.contains("not used")),
        "{e:?}"
    );
    let (_, mut b) = pair("TCNBlock", "tcn");
    b.model.backbone.block_kwargs = vec![Map::from_iter([("kernel_size".to_string(), json!(20))])];
    let e = b.validate().unwrap_err();
    assert!(
        e.iter()
            .any(|i| i.field == "model.backbone.block_kwargs[0].kernel_size"
                && i.message.contains("[2, 9]")),
        "{e:?}"
    );
    let (_, mut b) = pair("TCNBlock", "tcn");
    b.model.components[0].nodes[1].op = "relux".into();
    let e = b.validate().unwrap_err();
    assert!(
        e.iter()
            .any(|i| i.field == "model.components[0].nodes[1].op"
                && i.message.contains("node \"l0a_relu\"")),
        "{e:?}"
    );
    // the spec JSON round-trips with the graph inline
    let (_, b) = pair("TransformerBlock", "transformer");
    let text = serde_json::to_string(&b).unwrap();
    assert_eq!(ExperimentSpec::from_json(&text).unwrap(), b);
    // experiment fingerprints name a graph by its content: an edit is a new experiment
    let fp = crate::experiments::fingerprint;
    let (plain, b) = pair("TransformerBlock", "transformer");
    let mut edited = b.clone();
    edited.model.components[0].nodes[5].op = "relu".into();
    assert_eq!(fp(&b), fp(&b.clone()));
    assert_ne!(fp(&b), fp(&edited));
    assert_ne!(fp(&b), fp(&plain));
    // a spec without components serialises as before (no `components` key)
    let a = tiny_spec(&["TCNBlock"], "GBMHead");
    assert!(!serde_json::to_string(&a).unwrap().contains("components"));
}

#[test]
fn graph_checkpoint_keeps_its_graph_and_simulates() {
    use crate::zoo::train::{load_checkpoint, simulate, train, TrainOptions};
    let Some(dir) = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .canonicalize()
        .ok()
    else {
        return;
    };
    let (_, mut spec) = pair("TCNBlock", "gated_conv");
    spec.model.backbone.block_kwargs = vec![];
    spec.model.head.kind = "graph:student_t".into();
    spec.model.components.push(doc("student_t"));
    spec.training.epochs = 1;
    spec.training.steps_per_epoch = 3;
    spec.training.batch_size = 4;
    spec.training.eval_windows = 4;
    let tmp = std::env::temp_dir().join(format!("zoo-graph-test-{}", std::process::id()));
    let opts = TrainOptions {
        data_dir: dir,
        out_dir: tmp.clone(),
        device: Device::Cpu,
        resume: false,
    };
    let res = train(&spec, &opts, &mut |_| {}).unwrap();
    assert!(res.step_losses.iter().all(|l| l.is_finite()));
    // the checkpoint's spec carries the graph: the author's later edits do not reach it
    let saved = std::fs::read_to_string(tmp.join("spec.json")).unwrap();
    assert!(saved.contains("\"graph:gated_conv\"") && saved.contains("\"op\": \"ema\""));
    assert!(saved.contains("\"graph:student_t\"") && saved.contains("\"op\": \"student_t\""));
    let ck = load_checkpoint(&tmp, &Device::Cpu).unwrap();
    assert_eq!(ck.spec.model.components, spec.model.components);
    let w = AssetWindows::new("BTC", btc().unwrap().clone(), 16, 288, 0.2, 12).unwrap();
    let i = *w.val.last().unwrap();
    let data = [w];
    let (x, _) = make_batch(&ck.spec, &data, &[(0, i)], &Device::Cpu).unwrap();
    let paths = simulate(
        &ck.model,
        &x,
        data[0].bars.close[i],
        1000,
        &data[0].step_scales(i, 288),
        3,
    )
    .unwrap();
    assert_eq!((paths.n_paths(), paths.n_points()), (1000, 289));
    crate::zoo::tests::assert_response_ok(&paths, 1_730_000_100, 300, 86_400);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn graph_time_axis_ops_compute_what_they_say_in_either_layout() {
    use crate::zoo::blocks::Block;
    let d: ComponentDoc = serde_json::from_value(base(
        json!([
            {"id": "c", "op": "cumsum", "in": ["x"]},
            {"id": "s", "op": "scale", "in": ["c"], "factor": 2.0, "offset": 0.5},
            {"id": "r", "op": "relu", "in": ["s"]},
            {"id": "e", "op": "ema", "in": ["x"]},
            {"id": "out", "op": "add", "in": ["r", "x", "e"]}
        ]),
        "out",
    ))
    .unwrap();
    let ctx = Ctx {
        d_model: 3,
        seq_len: 5,
    };
    let c = check(&d, ctx, &Map::new()).unwrap();
    let vm = SeededVarMap::new(1);
    let g = compile::GraphBlock::new(&c, vm.builder(&Device::Cpu)).unwrap();
    let xs: Vec<f32> = (0..2 * 5 * 3)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0)
        .collect();
    let x = candle_core::Tensor::from_vec(xs.clone(), (2, 5, 3), &Device::Cpu).unwrap();
    let y: Vec<f32> = g
        .forward(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let a = 1.0 / (1.0 + (-2.0f32).exp()); // the ema's starting decay
    for b in 0..2 {
        for ch in 0..3 {
            let (mut cum, mut h) = (0f32, 0f32);
            for t in 0..5 {
                let v = xs[(b * 5 + t) * 3 + ch];
                cum += v;
                h = a * h + (1.0 - a) * v;
                let want = (2.0 * cum + 0.5).max(0.0) + v + h;
                let got = y[(b * 5 + t) * 3 + ch];
                assert!(
                    (got - want).abs() < 1e-5,
                    "b {b} t {t} c {ch}: {got} vs {want}"
                );
            }
        }
    }
}
