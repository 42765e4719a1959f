//! Results shared between miners, over the bridge: `POST /results/share`
//! (one of the caller's runs, as `runs.rs` finds it: `latest` is the caller's
//! newest, another bot's run is a 404) writes the run's comparison to the
//! store as a public document, and to the Hub with `"hf": true`;
//! `POST /results/ingest` reads another miner's document (`url`: http or
//! https only, size-capped, with timeouts; `repo_id`: that Hub repo's
//! `results/latest.json`; or the `document` itself) and merges its rows into
//! the experiment history marked with their source.
//!
//! The store is `SYNTH_STORE_DIR` (default `store`; the bucket when
//! `HIPPIUS_ENDPOINT` is set), as the workers'. Bad input is a 400 naming the
//! field; a run with nothing scored a 422; a URL or Hub that fails a 502. The
//! document's rules are `publisher::store::shared`'s; this module only maps
//! them to statuses.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Rejection;

use super::error::{internal, reject};
use super::route::{ok, Answer, Call};
use publisher::store::hf::{HfClient, HfConfig, HfError};
use publisher::store::shared::{self, SharedError};
use publisher::store::Store;

/// `POST /results/share`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ShareBody {
    run_id: String,
    #[serde(default)]
    hf: bool,
    #[serde(default)]
    source: Option<String>,
}

impl ShareBody {
    pub fn schema() -> Value {
        json!({"type": "object", "required": ["run_id"], "properties": {
            "run_id": {"type": "string"}, "hf": {"type": "boolean"},
            "source": {"type": "string"}}})
    }
}

/// `POST /results/ingest`'s body: exactly one of `url`, `repo_id`, `document`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IngestBody {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    repo_id: Option<String>,
    #[serde(default)]
    document: Option<Value>,
}

impl IngestBody {
    pub fn schema() -> Value {
        json!({"type": "object", "properties": {
            "url": {"type": "string"}, "repo_id": {"type": "string"},
            "document": {"type": "object"}}})
    }
}

/// The store (`SYNTH_STORE_DIR`, or the bucket when `HIPPIUS_ENDPOINT` is set); 503 when it
/// cannot be opened. Also `models.rs`'s.
pub(super) fn store() -> Result<Arc<dyn Store>, Rejection> {
    let dir = std::env::var_os("SYNTH_STORE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| "store".into());
    publisher::store::open(&dir).map_err(|e| {
        reject(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store cannot be opened: {e}"),
        )
    })
}

fn answer_err(e: SharedError, prefix: &str) -> Rejection {
    match e {
        SharedError::Invalid { field, detail } => reject(
            StatusCode::BAD_REQUEST,
            format!("{prefix}{field}: {detail}"),
        ),
        e @ SharedError::Empty { .. } => reject(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        SharedError::Hf(HfError::BadInput { field, detail }) => {
            reject(StatusCode::BAD_REQUEST, format!("{field}: {detail}"))
        }
        SharedError::Hf(HfError::Config(c)) => reject(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Hugging Face: {c}"),
        ),
        e @ (SharedError::Fetch { .. } | SharedError::Hf(_)) => {
            reject(StatusCode::BAD_GATEWAY, e.to_string())
        }
        SharedError::Store(e) => internal(e),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `POST /results/share`.
pub(super) async fn share(c: Call) -> Answer {
    let b: ShareBody = c.json()?;
    let source = b.source.unwrap_or_else(|| c.bot.clone());
    shared::check_source("source", &source).map_err(|e| answer_err(e, ""))?;
    let hub = if b.hf {
        let cfg = HfConfig::require_from_env().map_err(|e| {
            reject(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("hf: the bridge cannot publish to the Hub: {e}"),
            )
        })?;
        Some(
            HfClient::new(cfg)
                .map_err(|e| reject(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?,
        )
    } else {
        None
    };
    let run = super::runs::own(&c.state, &c.bot, b.run_id.trim()).await?;
    let store = store()?;
    let doc = shared::build(&*store, &run.id, &source, unix_now())
        .await
        .map_err(|e| answer_err(e, ""))?;
    let key = shared::save(&*store, &doc)
        .await
        .map_err(|e| answer_err(e, ""))?;
    let hf = match &hub {
        Some(h) => Some(
            shared::share_to_hub(h, &doc)
                .await
                .map_err(|e| answer_err(e, ""))?,
        ),
        None => None,
    };
    Ok(ok(json!({
        "run_id": run.id, "key": key, "experiments": doc.experiments.len(),
        "best_ratio": doc.experiments[0].ratio, "hf": hf, "document": doc,
    })))
}

/// Hosts a bot may have the bridge fetch although they resolve to this machine or its
/// private network (comma-separated names or addresses).
pub const INGEST_ALLOW_HOSTS: &str = "SYNTH_INGEST_ALLOW_HOSTS";

/// A bot's `url` must not make the bridge reach into the machine or its private network
/// (loopback, private, link-local, unspecified addresses, after resolving the name), unless
/// the operator lists the host in [`INGEST_ALLOW_HOSTS`]: 403 naming `url` and the setting.
/// (The fetch resolves the name again; a name that changes its answer in between is not
/// caught here.)
async fn outside_only(url: &str) -> Result<(), Rejection> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("url: {e}")))?;
    let Some(host) = parsed
        .host_str()
        .map(|h| h.trim_matches(['[', ']']).to_string())
    else {
        return Err(reject(StatusCode::BAD_REQUEST, "url: it names no host"));
    };
    let allowed = std::env::var(INGEST_ALLOW_HOSTS).unwrap_or_default();
    if allowed
        .split(',')
        .map(str::trim)
        .any(|a| !a.is_empty() && a.eq_ignore_ascii_case(&host))
    {
        return Ok(());
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addrs: Vec<std::net::IpAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(a) => a.map(|s| s.ip()).collect(),
        // a name that does not resolve fails at the fetch, with its own message
        Err(_) => return Ok(()),
    };
    let inside = |ip: &std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v) => {
            v.is_loopback() || v.is_private() || v.is_link_local() || v.is_unspecified()
        }
        std::net::IpAddr::V6(v) => {
            v.is_loopback()
                || v.is_unspecified()
                || (v.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v.to_ipv4_mapped().is_some_and(|m| m.is_loopback() || m.is_private())
        }
    };
    if addrs.iter().any(inside) {
        return Err(reject(
            StatusCode::FORBIDDEN,
            format!(
                "url: {host} is this machine or its private network, which a bot may not have the bridge fetch; an operator can allow it with {INGEST_ALLOW_HOSTS}={host}, or use `synth-city results ingest --from URL`"
            ),
        ));
    }
    Ok(())
}

/// `POST /results/ingest`.
pub(super) async fn ingest(c: Call) -> Answer {
    let b: IngestBody = c.json()?;
    let given = [b.url.is_some(), b.repo_id.is_some(), b.document.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "give exactly one of `url` (http or https), `repo_id` (a Hub repo with results/latest.json) or `document`",
        ));
    }
    let doc = if let Some(url) = &b.url {
        if url.trim().starts_with("hf:") {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                "url: only http and https URLs are read; for a Hub repo send `repo_id`",
            ));
        }
        outside_only(url).await?;
        shared::fetch(url).await.map_err(|e| match e {
            SharedError::Invalid { field, detail } if field == "from" => {
                reject(StatusCode::BAD_REQUEST, format!("url: {detail}"))
            }
            e => answer_err(e, ""),
        })?
    } else if let Some(repo) = &b.repo_id {
        shared::fetch(&format!("hf:{}", repo.trim()))
            .await
            .map_err(|e| answer_err(e, ""))?
    } else {
        let bytes = serde_json::to_vec(b.document.as_ref().expect("counted")).map_err(internal)?;
        shared::parse(&bytes).map_err(|e| answer_err(e, "document."))?
    };
    let out = shared::ingest(&*store()?, &doc)
        .await
        .map_err(|e| answer_err(e, ""))?;
    Ok(ok(serde_json::to_value(out).map_err(internal)?))
}
