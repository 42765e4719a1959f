//! Experiments over HTTP: create (validate and store a spec in the bot's
//! session), validate, run (enqueue an `experiment` job, 202 with its id),
//! results by id, compare (own bot) and compare/all (every bot: the one
//! deliberate cross-bot read), and the bot's history (runs and experiments).
//!
//! Specs are `trainer::zoo::spec::ExperimentSpec`; bad ones answer 400 when
//! they do not decode (serde names the field) and 422 with every issue, each
//! naming its field, when they decode but do not validate.
//!
//! A spec naming a registry component (`graph:<name>`, or a bare name that is no
//! built-in) that it does not carry gets the registry's document copied into
//! `model.components` when it is created, validated or run (`authored.rs`), so
//! the job payload carries the graph and the worker looks nothing up.
//!
//! It trains nothing: a run is an `experiment` job for the worker fleet, and
//! the records live in the bot's session (`session.rs`).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Rejection;

use super::error::{internal, reject, reject_with};
use super::route::{ok, reply, Answer, Call};
use super::session::{self, Experiment};
use super::State;
use engine::queue::EnqueueRequest;
use trainer::zoo::registry;
use trainer::zoo::spec::{seed_horizon, ExperimentSpec, Replaced, SpecIssue};

/// `POST /experiment/create`: blocks (or a preset) and optional overrides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    blocks: Option<Vec<String>>,
    head: Option<String>,
    preset: Option<String>,
    name: Option<String>,
    d_model: Option<usize>,
    seq_len: Option<usize>,
    horizon: Option<usize>,
    n_paths: Option<usize>,
    batch_size: Option<usize>,
    lr: Option<f64>,
    epochs: Option<usize>,
    patience: Option<usize>,
    steps_per_epoch: Option<usize>,
    eval_windows: Option<usize>,
    eval_paths: Option<usize>,
    seed: Option<u64>,
    assets: Option<Vec<String>>,
    timeframe: Option<String>,
}

impl CreateBody {
    /// The request body's JSON schema.
    pub fn schema() -> Value {
        let int = json!({"type": "integer", "minimum": 0});
        json!({"type": "object", "properties": {
            "blocks": {"type": "array", "items": {"type": "string"}}, "head": {"type": "string"},
            "preset": {"type": "string"}, "name": {"type": "string"}, "d_model": int,
            "seq_len": int, "horizon": int, "n_paths": int, "batch_size": int,
            "lr": {"type": "number"}, "epochs": int, "patience": int, "steps_per_epoch": int,
            "eval_windows": int, "eval_paths": int, "seed": int,
            "assets": {"type": "array", "items": {"type": "string"}},
            "timeframe": {"type": "string"}}})
    }
}

/// `POST /experiment/validate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ValidateBody {
    experiment: Option<Value>,
}

impl ValidateBody {
    /// The request body's JSON schema.
    pub fn schema() -> Value {
        json!({"type": "object", "required": ["experiment"],
            "properties": {"experiment": {"type": "object"}}})
    }
}

/// `POST /experiment/run`: a stored experiment by `id`, or a spec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunBody {
    id: Option<String>,
    experiment: Option<Value>,
    epochs: Option<usize>,
    name: Option<String>,
    device: Option<String>,
}

impl RunBody {
    /// The request body's JSON schema.
    pub fn schema() -> Value {
        let int = json!({"type": "integer", "minimum": 0});
        json!({"type": "object", "properties": {
            "id": {"type": "string"}, "experiment": {"type": "object"}, "epochs": int,
            "name": {"type": "string"}, "device": {"type": "string"}}})
    }
}

fn bad(field: &str, msg: impl std::fmt::Display) -> Rejection {
    reject(StatusCode::BAD_REQUEST, format!("field `{field}`: {msg}"))
}

/// A spec from a JSON object or a string holding one (400 naming the field).
fn parse_spec(v: Value) -> Result<ExperimentSpec, Rejection> {
    let v = match v {
        Value::String(s) => serde_json::from_str::<Value>(&s)
            .map_err(|e| bad("experiment", format!("not JSON: {e}")))?,
        v => v,
    };
    if !v.is_object() {
        return Err(bad(
            "experiment",
            "must be an experiment spec (a JSON object)",
        ));
    }
    serde_json::from_value(v).map_err(|e| bad("experiment", e))
}

fn issues_json(issues: &[SpecIssue]) -> Value {
    serde_json::to_value(issues).expect("issues serialise")
}

/// 422 with every issue, each naming its field.
fn invalid(issues: &[SpecIssue]) -> Rejection {
    let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
    reject_with(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("experiment is invalid: {}", text.join("; ")),
        json!({"issues": issues_json(issues)}),
    )
}

/// Most blocks a spec may stack over HTTP.
const MAX_BLOCKS: usize = 16;
/// Widest model the bridge sizes itself (sizing builds it on the CPU).
const MAX_SIZED_WIDTH: usize = 256;

/// Validates and sizes a spec (building the model takes a blocking thread;
/// very wide models are left unsized rather than built on the bridge).
async fn check(spec: &ExperimentSpec) -> Result<(Option<usize>, Option<u64>), Vec<SpecIssue>> {
    let n = spec.model.backbone.blocks.len();
    if n > MAX_BLOCKS {
        return Err(vec![SpecIssue {
            field: "model.backbone.blocks".into(),
            message: format!("{n} blocks; the bridge accepts at most {MAX_BLOCKS}"),
        }]);
    }
    spec.validate()?;
    if spec.model.backbone.d_model > MAX_SIZED_WIDTH {
        return Ok((None, spec.flops_estimate().ok()));
    }
    let s = spec.clone();
    let sized =
        tokio::task::spawn_blocking(move || (s.param_count().ok(), s.flops_estimate().ok()))
            .await
            .unwrap_or((None, None));
    Ok(sized)
}

fn new_id() -> String {
    format!(
        "exp-{}",
        &ulid::Ulid::new().to_string().to_lowercase()[..16]
    )
}

async fn record(
    s: &State,
    spec: ExperimentSpec,
    name: Option<String>,
    params: Option<usize>,
) -> Result<Experiment, Rejection> {
    let now = s.queue.time_ms().await.map_err(internal)?;
    Ok(Experiment {
        id: new_id(),
        name: name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| trainer::experiments::experiment_name(&spec)),
        fingerprint: trainer::experiments::fingerprint(&spec),
        spec,
        param_count: params,
        created_at_ms: now,
        state: "created".into(),
        job_id: None,
        crps: None,
        gbm_crps: None,
        crps_ratio: None,
        result: None,
        error: None,
        finished_at_ms: None,
    })
}

fn check_name(name: &Option<String>) -> Result<(), Rejection> {
    match name {
        Some(n) if n.len() > 128 => Err(bad("name", "must be at most 128 characters")),
        _ => Ok(()),
    }
}

/// Builds the spec a create body describes, and the values it replaced (the seed's horizons).
fn spec_from(b: &CreateBody) -> Result<(ExperimentSpec, Vec<Replaced>), Rejection> {
    let mut notes = Vec::new();
    let mut spec = match (&b.preset, &b.blocks) {
        (Some(_), Some(_)) => {
            return Err(bad("preset", "give either `preset` or `blocks`, not both"))
        }
        (Some(p), None) => {
            let given = p;
            let p = registry::resolve_preset(given).map_err(|e| bad("preset", e))?;
            if let Some(a) = registry::find_alias(given) {
                notes.push(Replaced {
                    field: "preset".into(),
                    given: given.as_str().into(),
                    used: p.name.into(),
                    message: format!("preset {given} is {} here ({})", p.name, a.note),
                });
            }
            let mut s = ExperimentSpec::new(p.blocks, b.head.as_deref().unwrap_or(p.head));
            s.model.backbone.d_model = p.d_model;
            s.model.backbone.seq_len = p.seq_len;
            s
        }
        (None, Some(blocks)) => {
            if blocks.is_empty() {
                return Err(bad("blocks", "must list at least one block"));
            }
            let names: Vec<&str> = blocks.iter().map(String::as_str).collect();
            ExperimentSpec::new(&names, b.head.as_deref().unwrap_or("GBMHead"))
        }
        (None, None) => {
            return Err(bad(
                "blocks",
                "is required: a non-empty list of block names (or give `preset`)",
            ))
        }
    };
    let m = &mut spec.model.backbone;
    if let Some(v) = b.d_model {
        m.d_model = v;
    }
    if let Some(v) = b.seq_len {
        m.seq_len = v;
    }
    let t = &mut spec.training;
    macro_rules! set {
        ($($f:ident),*) => { $(if let Some(v) = b.$f { t.$f = v; })* };
    }
    set!(
        n_paths,
        batch_size,
        lr,
        epochs,
        patience,
        steps_per_epoch,
        eval_windows,
        eval_paths,
        seed
    );
    if let Some(a) = &b.assets {
        spec.data.assets = a.clone();
    }
    let timeframe = b
        .timeframe
        .as_deref()
        .map(|tf| tf.parse::<jobs::Timeframe>())
        .transpose()
        .map_err(|e| bad("timeframe", format!("{e}")))?;
    // the seed's horizons: replaced by the timeframe's (noted), or refused naming the fix
    let (timeframe, replaced) =
        seed_horizon("horizon", b.horizon, timeframe).map_err(|i| invalid(&[i]))?;
    if let Some(tf) = timeframe {
        spec.set_timeframe(tf);
    }
    notes.extend(replaced);
    Ok((spec, notes))
}

/// `POST /experiment/create`.
pub(super) async fn create(c: Call) -> Answer {
    let b: CreateBody = c.json()?;
    let s = &c.state;
    check_name(&b.name)?;
    let (mut spec, notes) = spec_from(&b)?;
    let used = super::authored::resolve(&c, &mut spec).await?;
    let (params, flops) = check(&spec).await.map_err(|i| invalid(&i))?;
    let e = record(s, spec, b.name.clone(), params).await?;
    session::put_experiment(s, &c.bot, &e, None)
        .await
        .map_err(internal)?;
    Ok(reply(
        StatusCode::CREATED,
        json!({"id": e.id, "name": e.name, "fingerprint": e.fingerprint, "state": e.state,
               "param_count": params, "flops_estimate": flops, "spec": e.spec,
               "notes": notes, "registry_components": used}),
    ))
}

/// `POST /experiment/validate`: 200 with `valid` and every issue.
pub(super) async fn validate(c: Call) -> Answer {
    let b: ValidateBody = c.json()?;
    let v = b
        .experiment
        .ok_or_else(|| bad("experiment", "is required: an experiment spec"))?;
    let mut spec = parse_spec(v)?;
    let used = super::authored::resolve(&c, &mut spec).await?;
    Ok(match check(&spec).await {
        Ok((params, flops)) => ok(
            json!({"valid": true, "issues": [], "param_count": params, "flops_estimate": flops,
                   "name": trainer::experiments::experiment_name(&spec),
                   "fingerprint": trainer::experiments::fingerprint(&spec),
                   "registry_components": used}),
        ),
        Err(issues) => ok(json!({"valid": false, "issues": issues_json(&issues)})),
    })
}

/// `POST /experiment/run`: enqueue an `experiment` job; 202 with its ids.
pub(super) async fn run(c: Call) -> Answer {
    let b: RunBody = c.json()?;
    let s = &c.state;
    check_name(&b.name)?;
    if b.epochs == Some(0) {
        return Err(bad("epochs", "must be at least 1"));
    }
    if let Some(d) = &b.device {
        if !(d == "cpu" || d == "cuda" || d.starts_with("cuda:")) {
            return Err(bad("device", format!("{d:?}: use cpu, cuda or cuda:N")));
        }
    }
    let mut used = Vec::new();
    let mut e = match (b.id, b.experiment) {
        (Some(_), Some(_)) => return Err(bad("id", "give either `id` or `experiment`, not both")),
        (None, None) => {
            return Err(bad(
                "experiment",
                "is required: an experiment spec, or `id` of one made by /experiment/create",
            ))
        }
        (Some(id), None) => {
            let e = session::experiment(s, &c.bot, &id)
                .await
                .map_err(internal)?
                .ok_or_else(|| reject(StatusCode::NOT_FOUND, format!("no experiment {id:?}")))?;
            if e.in_flight() {
                return Err(reject(
                    StatusCode::CONFLICT,
                    format!("experiment {id} is already {}", e.state),
                ));
            }
            e
        }
        (None, Some(v)) => {
            let mut spec = parse_spec(v)?;
            used = super::authored::resolve(&c, &mut spec).await?;
            record(s, spec, b.name.clone(), None).await?
        }
    };
    if let Some(n) = b.epochs {
        e.spec.training.epochs = n;
    }
    if let Some(n) = b.name.filter(|n| !n.trim().is_empty()) {
        e.name = n;
    }
    let (params, _) = check(&e.spec).await.map_err(|i| invalid(&i))?;
    e.param_count = params;
    let job_id = ulid::Ulid::new().to_string().to_lowercase();
    e.job_id = Some(job_id.clone());
    e.state = "queued".into();
    e.crps = None;
    e.gbm_crps = None;
    e.crps_ratio = None;
    e.result = None;
    e.error = None;
    e.finished_at_ms = None;
    // no directories: the worker trains on its own bars, in its own work directory, and the
    // result names the checkpoint by its artifact in the store
    let payload = json!({
        "experiment_id": e.id,
        "spec": e.spec,
        "device": b.device,
    });
    // The record first (with the job's id), then the job, then the mark that
    // keeps the session alive: a job never runs without its record, and a
    // record whose job never landed reads as "lost".
    session::put_experiment(s, &c.bot, &e, None)
        .await
        .map_err(internal)?;
    let req = EnqueueRequest {
        id: Some(job_id.clone()),
        bot_id: Some(c.bot.clone()),
        ..EnqueueRequest::new("experiment", payload)
    };
    match s.queue.enqueue(req).await {
        Ok(_) => {}
        Err(err) if err.is_transient() => return Err(internal(err)),
        Err(err) => return Err(reject(StatusCode::UNPROCESSABLE_ENTITY, err.to_string())),
    }
    // In flight from now on: the session persists until the job ends.
    session::add_active(s, &c.bot, &format!("job:{job_id}"))
        .await
        .map_err(internal)?;
    Ok(reply(
        StatusCode::ACCEPTED,
        json!({"id": e.id, "job_id": job_id, "state": "queued", "name": e.name,
               "param_count": params, "results": format!("/experiment/results/{}", e.id),
               "registry_components": used}),
    ))
}

/// `GET /experiment/results/{id}`.
pub(super) async fn results(c: Call) -> Answer {
    let id = c.param("id")?;
    match session::experiment(&c.state, &c.bot, id)
        .await
        .map_err(internal)?
    {
        Some(e) => Ok(ok(serde_json::to_value(e).expect("experiments serialise"))),
        None => Err(reject(
            StatusCode::NOT_FOUND,
            format!("no experiment {id:?}"),
        )),
    }
}

/// One ranked entry: from the session's experiments or a run's results.
fn entry_of_experiment(bot: &str, e: &Experiment) -> Value {
    json!({"bot_id": bot, "source": "experiment", "id": e.id, "name": e.name,
           "fingerprint": e.fingerprint, "crps": e.crps, "gbm_crps": e.gbm_crps,
           "crps_ratio": e.crps_ratio, "param_count": e.param_count,
           "recorded_at_ms": e.finished_at_ms.unwrap_or(e.created_at_ms)})
}

/// Everything a bot has scored, best CRPS first.
pub(super) async fn ranking(s: &State, bot: &str) -> Result<Vec<Value>, Rejection> {
    let mut out: Vec<Value> = session::experiments(s, bot)
        .await
        .map_err(internal)?
        .iter()
        .filter(|e| e.crps.is_some_and(f64::is_finite))
        .map(|e| entry_of_experiment(bot, e))
        .collect();
    for r in session::own_runs(s, bot, 50).await.map_err(internal)? {
        let Some(full) = crate::pipeline::get_run(&s.queue, &r.id)
            .await
            .map_err(internal)?
        else {
            continue;
        };
        for rec in full.task.map(|t| t.results).unwrap_or_default() {
            if !rec.scored() {
                continue;
            }
            out.push(json!({"bot_id": bot, "source": format!("run:{}", r.id),
                "id": rec.fingerprint, "name": rec.name, "fingerprint": rec.fingerprint,
                "crps": rec.crps, "gbm_crps": rec.gbm_crps, "crps_ratio": rec.crps_ratio(),
                "param_count": rec.param_count, "recorded_at_ms": rec.recorded_at * 1000}));
        }
    }
    sort_by_crps(&mut out);
    Ok(out)
}

fn sort_by_crps(v: &mut [Value]) {
    v.sort_by(|a, b| {
        let f = |x: &Value| x["crps"].as_f64().unwrap_or(f64::INFINITY);
        f(a).total_cmp(&f(b))
    });
}

/// `GET /experiment/compare`: the caller's ranking.
pub(super) async fn compare(c: Call) -> Answer {
    let r = ranking(&c.state, &c.bot).await?;
    let n = r.len();
    Ok(ok(json!({"bot_id": c.bot, "ranking": r, "total": n})))
}

/// The merged ranking of every bot with a session.
pub(super) async fn ranking_all(s: &State) -> Result<(Vec<Value>, Vec<String>), Rejection> {
    let bots = session::bots(s).await.map_err(internal)?;
    let mut all = Vec::new();
    for b in &bots {
        all.extend(ranking(s, b).await?);
    }
    sort_by_crps(&mut all);
    Ok((all, bots))
}

/// `GET /experiment/compare/all`: every bot's scored experiments, tagged.
pub(super) async fn compare_all(c: Call) -> Answer {
    let (all, bots) = ranking_all(&c.state).await?;
    let n = all.len();
    Ok(ok(json!({"ranking": all, "total": n, "bots": bots})))
}

/// `?limit=` of the history routes: 1..=1000.
fn limit(q: &HashMap<String, String>, default: usize) -> Result<usize, Rejection> {
    match q.get("limit") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(reject(
                StatusCode::BAD_REQUEST,
                format!("query parameter `limit` must be a whole number from 1 to 1000, got {v:?}"),
            )),
        },
    }
}

/// `GET /history/runs`.
pub(super) async fn history_runs(c: Call) -> Answer {
    let n = limit(&c.query, 50)?;
    let mut runs = session::own_runs(&c.state, &c.bot, 1000)
        .await
        .map_err(internal)?;
    runs.truncate(n);
    let total = runs.len();
    Ok(ok(json!({"bot_id": c.bot, "runs": runs, "total": total})))
}

/// `GET /history/experiments`: the caller's experiments, best first.
pub(super) async fn history_experiments(c: Call) -> Answer {
    let n = limit(&c.query, 50)?;
    let mut exps = session::experiments(&c.state, &c.bot)
        .await
        .map_err(internal)?;
    exps.sort_by(|a, b| {
        a.crps
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.crps.unwrap_or(f64::INFINITY))
    });
    exps.truncate(n);
    let total = exps.len();
    Ok(ok(
        json!({"bot_id": c.bot, "experiments": exps, "total": total}),
    ))
}
