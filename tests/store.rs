//! The store against a real S3-compatible server, and Hub publishing against
//! a local server that speaks the Hub's endpoints.
//!
//! S3: moto's server (PyPI `moto[server]`, pinned in ops/requirements-moto.txt)
//! is installed on first use into `target/venvs/moto` under a file lock and
//! started per test on a free 127.0.0.1 port, with IAM authentication on (an
//! IAM user with an S3 policy is created, then `reset-auth` makes every
//! request checked), so wrong credentials are refused as by a real service.
//! When the venv cannot be installed the tests fail, saying why.
//!
//! Hub: an in-test HTTP server implementing `/api/repos/create`,
//! `/api/models/{repo}/preupload/{rev}`, the LFS batch/upload/verify
//! endpoints and `/api/models/{repo}/commit/{rev}` (NDJSON), with 401 for a
//! wrong token and 409 for an existing repo, and the reads: `/api/models`
//! and `/{repo}/resolve/{rev}/{path}` (LFS files by a 302 to their CDN URL);
//! the client code under test is the real one, and the bridge's `/hf/*`
//! routes and `history hf` are tested against it over HTTP.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use publisher::artifacts::ArtifactCache;
use publisher::publish;
use publisher::store::hf::{self, HfClient, HfConfig, HfError, HfFile};
use publisher::store::records;
use publisher::store::{S3Store, Store, StoreError, StoreExt};
use serde_json::{json, Value};
use synth_city::pipeline::RunOptions;
use trainer::experiments::{ExperimentRecord, RunStatus};

use common::s3::Moto;

mod common;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_put_get_list_overwrite_delete_and_the_bucket_is_created() {
    let moto = Moto::start();
    let s = S3Store::new(moto.config("sc-basic")).unwrap();
    let info = s
        .put("experiments/r1/a.json", b"{\"v\":1}".to_vec())
        .await
        .unwrap();
    assert_eq!(info.sha256, publisher::store::sha256_hex(b"{\"v\":1}"));
    assert!(!info.multipart);
    s.put("experiments/r1/b.json", b"[]".to_vec())
        .await
        .unwrap();
    s.put("pipeline_runs/latest.json", b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(
        s.get("experiments/r1/a.json").await.unwrap().unwrap(),
        b"{\"v\":1}"
    );
    assert_eq!(s.get("experiments/r1/none.json").await.unwrap(), None);
    assert_eq!(
        s.list("experiments/").await.unwrap(),
        ["experiments/r1/a.json", "experiments/r1/b.json"]
    );
    assert_eq!(s.list("").await.unwrap().len(), 3);
    // Overwrite: the new content, with its hash.
    s.put("experiments/r1/a.json", b"{\"v\":2}".to_vec())
        .await
        .unwrap();
    assert_eq!(
        s.get("experiments/r1/a.json").await.unwrap().unwrap(),
        b"{\"v\":2}"
    );
    // More keys than one list page (1000).
    let many: Vec<String> = (0..1005).map(|i| format!("many/k{i:05}")).collect();
    let store: Arc<dyn Store> = Arc::new(S3Store::new(moto.config("sc-basic")).unwrap());
    let mut set = tokio::task::JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(8));
    for k in many.clone() {
        let (st, gate) = (store.clone(), gate.clone());
        set.spawn(async move {
            let _p = gate.acquire_owned().await;
            st.put(&k, b"x".to_vec()).await.unwrap()
        });
    }
    while set.join_next().await.is_some() {}
    assert_eq!(s.list("many/").await.unwrap(), many);
    s.delete("experiments/r1/a.json").await.unwrap();
    s.delete("experiments/r1/a.json").await.unwrap();
    assert_eq!(s.get("experiments/r1/a.json").await.unwrap(), None);
    // A bad key never reaches the server.
    assert!(matches!(
        s.put("../x", b"x".to_vec()).await,
        Err(StoreError::InvalidKey { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_reads_verify_the_recorded_hash() {
    let moto = Moto::start();
    let s = S3Store::new(moto.config("sc-hash")).unwrap();
    s.put("a/ok.json", b"{}".to_vec()).await.unwrap();
    // Another tool writes an object whose recorded hash does not match its content,
    // and one with no recorded hash at all.
    moto.python(
        r#"
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="decentralized",
                  aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3],
                  config=Config(s3={"addressing_style": "path"}))
s3.put_object(Bucket="sc-hash", Key="a/bad.json", Body=b"{}", Metadata={"sha256": "00" * 32})
s3.put_object(Bucket="sc-hash", Key="a/foreign.json", Body=b"[1]")
"#,
        &[&moto.endpoint, &moto.access, &moto.secret],
    );
    let err = s.get("a/bad.json").await.unwrap_err();
    assert!(matches!(err, StoreError::Integrity { .. }), "{err}");
    assert!(err.to_string().contains("s3://sc-hash/a/bad.json"), "{err}");
    assert_eq!(s.get("a/foreign.json").await.unwrap().unwrap(), b"[1]");
    assert_eq!(s.get("a/ok.json").await.unwrap().unwrap(), b"{}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_large_objects_go_up_in_parts() {
    let moto = Moto::start();
    let parts = Arc::new(AtomicU32::new(0));
    let p = parts.clone();
    let s = S3Store::new(moto.config("sc-multi"))
        .unwrap()
        .with_part_progress(Arc::new(move |_, total| {
            assert_eq!(total, 4);
            p.fetch_add(1, Ordering::SeqCst);
        }));
    let data = bytes(17 * 1024 * 1024, 1);
    let info = s
        .put("models/r1/m/model.safetensors", data.clone())
        .await
        .unwrap();
    assert!(info.multipart);
    assert_eq!(parts.load(Ordering::SeqCst), 4);
    s.put("models/r1/m/spec.json", b"{}".to_vec())
        .await
        .unwrap();
    // The hash is recorded on the object itself, for single and multipart puts alike.
    let meta = moto.python(
        r#"
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="decentralized",
                  aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3],
                  config=Config(s3={"addressing_style": "path"}))
for k in ["models/r1/m/model.safetensors", "models/r1/m/spec.json"]:
    print(s3.head_object(Bucket="sc-multi", Key=k)["Metadata"].get("sha256"))
"#,
        &[&moto.endpoint, &moto.access, &moto.secret],
    );
    let recorded: Vec<&str> = meta.lines().collect();
    assert_eq!(
        recorded,
        [
            info.sha256.as_str(),
            publisher::store::sha256_hex(b"{}").as_str()
        ]
    );
    let back = s
        .get("models/r1/m/model.safetensors")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "multipart content differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_wrong_credentials_are_a_clear_error() {
    let moto = Moto::start();
    // Make the bucket with the right key first, so the error is about the key.
    S3Store::new(moto.config("sc-auth"))
        .unwrap()
        .put("a/b.json", b"{}".to_vec())
        .await
        .unwrap();
    let mut wrong_secret = moto.config("sc-auth");
    wrong_secret.secret_key = "not-the-secret".into();
    let mut wrong_key = moto.config("sc-auth");
    wrong_key.access_key = "AKIAWRONGWRONGWRONG1".into();
    for (cfg, code) in [
        (wrong_secret, "SignatureDoesNotMatch"),
        (wrong_key, "InvalidAccessKeyId"),
    ] {
        let started = Instant::now();
        let err = S3Store::new(cfg)
            .unwrap()
            .get("a/b.json")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Credentials { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(code), "{msg}");
        assert!(msg.contains("HIPPIUS_ACCESS_KEY"), "{msg}");
        assert!(started.elapsed() < Duration::from_secs(5), "not retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_missing_bucket_is_created_or_reported() {
    let moto = Moto::start();
    let mut cfg = moto.config("sc-missing");
    cfg.create_bucket = false;
    let err = S3Store::new(cfg)
        .unwrap()
        .put("a/b.json", b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BucketMissing { .. }), "{err}");
    assert!(
        err.to_string().contains("\"sc-missing\" does not exist"),
        "{err}"
    );
    // With creation allowed (the default) the same bucket is created and used.
    let s = S3Store::new(moto.config("sc-missing")).unwrap();
    s.put("a/b.json", b"{}".to_vec()).await.unwrap();
    assert_eq!(s.list("").await.unwrap(), ["a/b.json"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_server_that_stops_mid_upload_leaves_nothing_half_visible() {
    let moto = Arc::new(Moto::start());
    let key = "models/r1/m/model.safetensors";
    // A first, small version of the object.
    S3Store::new(moto.config("sc-stop"))
        .unwrap()
        .put(key, b"v1".to_vec())
        .await
        .unwrap();
    let mut cfg = moto.config("sc-stop");
    cfg.timeout = Duration::from_secs(2);
    let stopped = Arc::new(AtomicBool::new(false));
    let (m, st) = (moto.clone(), stopped.clone());
    let s = S3Store::new(cfg)
        .unwrap()
        .with_part_progress(Arc::new(move |n, _| {
            if n == 1 {
                // The server freezes after the first part: no answers, no refusals.
                m.signal("STOP");
                st.store(true, Ordering::SeqCst);
            }
        }));
    let started = Instant::now();
    let err = s.put(key, bytes(16 * 1024 * 1024, 2)).await.unwrap_err();
    assert!(stopped.load(Ordering::SeqCst));
    match &err {
        StoreError::Unavailable { op, attempts, .. } => {
            assert_eq!(*attempts, 3);
            assert!(op.contains("upload part 2/4"), "{op}");
        }
        other => panic!("expected Unavailable, got {other}"),
    }
    assert!(
        err.to_string().contains("did not answer after 3 attempts"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // The server comes back: the old version is what readers see.
    moto.signal("CONT");
    let fresh = S3Store::new(moto.config("sc-stop")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match fresh.get(key).await {
            Ok(v) => {
                assert_eq!(v.unwrap(), b"v1", "a half upload became visible");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "server did not come back: {e}"),
        }
    }
    assert_eq!(fresh.list("models/").await.unwrap(), [key]);
}

fn record(name: &str, crps: f64, lr: f64, ckpt: Option<&Path>) -> ExperimentRecord {
    let mut spec = trainer::zoo::spec::ExperimentSpec::new(&["lstm"], "gbm");
    spec.training.lr = lr;
    ExperimentRecord {
        name: name.into(),
        run_id: Some("run1".into()),
        fingerprint: trainer::experiments::fingerprint(&spec),
        spec,
        status: RunStatus::Ok,
        crps: Some(crps),
        gbm_crps: Some(10.0),
        classical_crps: None,
        param_count: Some(1234),
        epochs: 2,
        diverged: false,
        error: None,
        artifact: None,
        checkpoint: ckpt.map(Path::to_path_buf),
        training_time_s: Some(1.5),
        device: Some("cpu".into()),
        steps_per_sec: Some(20.0),
        recorded_at: 1_700_000_000,
    }
}

/// The artifact cache of a publication in these tests (their records carry the checkpoint
/// folder of this process, which a publication takes as it is).
fn cache(dir: &Path) -> ArtifactCache {
    ArtifactCache::new(dir.join("cache"), 1 << 30)
}

fn checkpoint(dir: &Path, weights: &[u8]) -> PathBuf {
    let ck = dir.join("ckpt");
    std::fs::create_dir_all(&ck).unwrap();
    std::fs::write(ck.join("model.safetensors"), weights).unwrap();
    std::fs::write(ck.join("spec.json"), b"{\"version\":1}").unwrap();
    std::fs::write(ck.join("optimizer.safetensors"), b"not published").unwrap();
    ck
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_publish_then_a_fresh_machine_continues_from_the_bucket() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let ck = checkpoint(dir.path(), &bytes(6 * 1024 * 1024, 3));
    let best = record("lstm-gbm-d16", 5.0, 1e-3, Some(&ck));
    let other = record("lstm-gbm-d16-fast", 7.0, 3e-3, None);
    let store: Arc<dyn Store> = Arc::new(S3Store::new(moto.config("synth-city")).unwrap());
    records::save_experiments(&*store, "run1", &[best.clone(), other.clone()])
        .await
        .unwrap();
    let summary = json!({"run_id": "run1", "success": true, "best_experiment": best.name,
        "best_crps": 5.0, "gbm_crps": 10.0, "experiments": [{"name": best.name}, {"name": other.name}]});
    let p = publish::publish(&*store, &cache(dir.path()), "run1", &best, &summary, None)
        .await
        .unwrap();
    assert_eq!(p.model_dir, "models/run1/lstm-gbm-d16/");
    let keys = store.list("models/").await.unwrap();
    assert_eq!(
        keys,
        [
            "models/production-5m.json",
            "models/production.json",
            "models/run1/lstm-gbm-d16/model.safetensors",
            "models/run1/lstm-gbm-d16/record.json",
            "models/run1/lstm-gbm-d16/spec.json",
        ]
    );
    assert!(
        p.files.iter().any(|f| f.multipart),
        "6 MiB weights go up in parts"
    );
    let prod: Value = store
        .get_json("models/production.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(prod["run_id"], "run1");
    assert_eq!(
        prod["weights_sha256"],
        publisher::store::sha256_hex(&std::fs::read(ck.join("model.safetensors")).unwrap())
    );
    let latest: Value = store.get_json(records::LATEST).await.unwrap().unwrap();
    assert_eq!(latest["run_id"], "run1");

    // A fresh machine: a new client, nothing local, the same bucket.
    let fresh: Arc<dyn Store> = Arc::new(S3Store::new(moto.config("synth-city")).unwrap());
    let h = records::load_history(fresh.clone(), 50).await.unwrap();
    assert_eq!(h.records.len(), 2);
    assert_eq!(h.records[0].name, best.name);
    let plan =
        agents::builtin::planner::plan(&h.records, &trainer::experiments::Budget::default(), 7);
    assert!(!plan.experiments.is_empty());
    let budget = trainer::experiments::Budget::default();
    let known: Vec<String> = h
        .records
        .iter()
        .map(|r| {
            let mut s = r.spec.clone();
            trainer::experiments::apply_budget(&budget, &mut s);
            trainer::experiments::fingerprint(&s)
        })
        .collect();
    for s in &plan.experiments {
        assert!(
            !known.contains(&trainer::experiments::fingerprint(s)),
            "the plan repeats an experiment the bucket already has"
        );
    }
    // The CLI reads the same bucket.
    let out = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args(["history", "runs", "--json", "--store"])
        .arg(dir.path().join("unused"))
        .env("HIPPIUS_ENDPOINT", &moto.endpoint)
        .env("HIPPIUS_ACCESS_KEY", &moto.access)
        .env("HIPPIUS_SECRET_KEY", &moto.secret)
        .env("HIPPIUS_BUCKET", "synth-city")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["run_id"], "run1");
    assert_eq!(runs[0]["latest"], true);
    let out = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args(["history", "experiments", "--json"])
        .env("HIPPIUS_ENDPOINT", &moto.endpoint)
        .env("HIPPIUS_ACCESS_KEY", &moto.access)
        .env("HIPPIUS_SECRET_KEY", &moto.secret)
        .env("HIPPIUS_BUCKET", "synth-city")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(exps[0]["name"], best.name);
    assert_eq!(exps[0]["ratio"], 0.5);
    // Wrong credentials on the command line: a clear error, exit 1.
    let out = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args(["history", "runs"])
        .env("HIPPIUS_ENDPOINT", &moto.endpoint)
        .env("HIPPIUS_ACCESS_KEY", &moto.access)
        .env("HIPPIUS_SECRET_KEY", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rejected the credentials"), "{err}");
}

// ---------------------------------------------------------------------------
// A local Hugging Face Hub.

#[derive(Default)]
struct Hub {
    token: String,
    repos: HashMap<String, bool>,
    /// path -> (bytes, lfs)
    files: HashMap<String, (Vec<u8>, bool)>,
    lfs: HashMap<String, Vec<u8>>,
    commits: Vec<Value>,
    lfs_puts: usize,
    requests: Vec<String>,
}

struct Req {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

async fn read_req(sock: &mut tokio::net::TcpStream) -> Option<Req> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    let head_end = loop {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Some(Req {
        method,
        path,
        headers,
        body,
    })
}

fn b64decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 {c}"),
        }
    };
    let s: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    out
}

fn handle(hub: &Mutex<Hub>, base: &str, r: Req) -> (u16, Value) {
    let mut h = hub.lock().unwrap();
    h.requests.push(format!("{} {}", r.method, r.path));
    let authed = r.headers.get("authorization") == Some(&format!("Bearer {}", h.token));
    let repo_of = |p: &str, pre: &str, post: &str| -> Option<String> {
        p.strip_prefix(pre)?
            .split_once(post)
            .map(|(a, _)| a.to_string())
    };
    if r.method == "PUT" && r.path.starts_with("/lfs-upload/") {
        let oid = r.path.trim_start_matches("/lfs-upload/").to_string();
        if publisher::store::sha256_hex(&r.body) != oid {
            return (400, json!({"error": "content does not match oid"}));
        }
        h.lfs.insert(oid, r.body);
        h.lfs_puts += 1;
        return (200, json!({}));
    }
    if !authed {
        return (
            401,
            json!({"error": "Invalid credentials in Authorization header"}),
        );
    }
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    if r.method == "POST" && r.path == "/api/repos/create" {
        let id = format!(
            "{}/{}",
            body["organization"].as_str().unwrap_or(""),
            body["name"].as_str().unwrap_or("")
        );
        if body["type"] != "model" {
            return (400, json!({"error": "type"}));
        }
        if h.repos.contains_key(&id) {
            return (409, json!({"error": "You already created this model repo"}));
        }
        h.repos.insert(id.clone(), true);
        return (200, json!({"url": format!("{base}/{id}")}));
    }
    if let Some(repo) = repo_of(&r.path, "/api/models/", "/preupload/") {
        if !h.repos.contains_key(&repo) {
            return (404, json!({"error": "Repository not found"}));
        }
        let files: Vec<Value> = body["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let path = f["path"].as_str().unwrap().to_string();
                let lfs = path.ends_with(".safetensors");
                let oid = h.files.get(&path).map(|(b, is_lfs)| {
                    let f = HfFile {
                        path: path.clone(),
                        bytes: b.clone(),
                    };
                    if *is_lfs {
                        f.sha256()
                    } else {
                        f.git_oid()
                    }
                });
                json!({"path": path, "uploadMode": if lfs {"lfs"} else {"regular"},
                       "shouldIgnore": false, "oid": oid})
            })
            .collect();
        return (200, json!({"files": files}));
    }
    if r.method == "POST" && r.path.ends_with(".git/info/lfs/objects/batch") {
        for h in ["accept", "content-type"] {
            assert_eq!(
                r.headers.get(h).map(String::as_str),
                Some("application/vnd.git-lfs+json"),
                "{h}"
            );
        }
        let objects: Vec<Value> = body["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let oid = o["oid"].as_str().unwrap();
                if h.lfs.contains_key(oid) {
                    json!({"oid": oid, "size": o["size"]})
                } else {
                    json!({"oid": oid, "size": o["size"], "actions": {
                        "upload": {"href": format!("{base}/lfs-upload/{oid}"), "header": {"x-upload": "1"}},
                        "verify": {"href": format!("{base}/lfs-verify")}}})
                }
            })
            .collect();
        return (200, json!({"transfer": "basic", "objects": objects}));
    }
    if r.method == "POST" && r.path == "/lfs-verify" {
        let oid = body["oid"].as_str().unwrap_or("");
        return match h.lfs.get(oid) {
            Some(b) if Some(b.len() as u64) == body["size"].as_u64() => (200, json!({})),
            _ => (404, json!({"error": "object not uploaded"})),
        };
    }
    if let Some(repo) = repo_of(&r.path, "/api/models/", "/commit/") {
        if !h.repos.contains_key(&repo) {
            return (404, json!({"error": "Repository not found"}));
        }
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/x-ndjson")
        );
        let text = String::from_utf8(r.body).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.first().map(|l| l["key"].clone()) != Some(json!("header")) {
            return (400, json!({"error": "the first line must be the header"}));
        }
        let mut staged = Vec::new();
        for l in &lines[1..] {
            let v = &l["value"];
            let path = v["path"].as_str().unwrap().to_string();
            match l["key"].as_str() {
                Some("file") => {
                    assert_eq!(v["encoding"], "base64");
                    staged.push((path, (b64decode(v["content"].as_str().unwrap()), false)));
                }
                Some("lfsFile") => {
                    assert_eq!(v["algo"], "sha256");
                    let Some(b) = h.lfs.get(v["oid"].as_str().unwrap()) else {
                        return (
                            422,
                            json!({"error": format!("LFS object of {path} was not uploaded")}),
                        );
                    };
                    staged.push((path, (b.clone(), true)));
                }
                other => return (400, json!({"error": format!("unknown key {other:?}")})),
            }
        }
        for (p, f) in staged {
            h.files.insert(p, f);
        }
        h.commits.push(lines[0]["value"].clone());
        let oid = format!("{:040x}", h.commits.len());
        return (
            200,
            json!({"commitOid": oid, "commitUrl": format!("{base}/{repo}/commit/{oid}")}),
        );
    }
    (
        404,
        json!({"error": format!("no route {} {}", r.method, r.path)}),
    )
}

/// A raw answer: status, headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// The Hub's read endpoints, as its API documents them: `GET /api/models`
/// (`author`, `search`, `limit`, `full`), `GET /{repo}/resolve/{revision}/{path}`
/// (the file's bytes; an LFS file redirects (302) to its CDN URL, here
/// `/lfs-download/{oid}`; 404 with `X-Error-Code` `RepoNotFound`,
/// `RevisionNotFound` or `EntryNotFound`). Reads need no token; a wrong one is
/// a 401. `None` for any other request.
fn serve_read(hub: &Mutex<Hub>, r: &Req) -> Option<Answer> {
    if r.method != "GET" {
        return None;
    }
    let mut h = hub.lock().unwrap();
    h.requests.push(format!("{} {}", r.method, r.path));
    let json_of = |status: u16, v: Value| {
        Some((
            status,
            vec![("content-type".to_string(), "application/json".to_string())],
            v.to_string().into_bytes(),
        ))
    };
    if let Some(auth) = r.headers.get("authorization") {
        if auth != &format!("Bearer {}", h.token) {
            return json_of(
                401,
                json!({"error": "Invalid credentials in Authorization header"}),
            );
        }
    }
    let (path, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
    let decode = |v: &str| -> String {
        let b = v.replace('+', " ");
        let mut out = Vec::new();
        let bytes = b.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&b[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    let q: HashMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect();
    if path == "/api/models" {
        let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(1000);
        let mut ids: Vec<&String> = h
            .repos
            .keys()
            .filter(|id| {
                q.get("author")
                    .is_none_or(|a| id.split('/').next() == Some(a.as_str()))
            })
            .filter(|id| q.get("search").is_none_or(|s| id.contains(s.as_str())))
            .collect();
        ids.sort();
        let full = q.get("full").map(String::as_str) == Some("true");
        let models: Vec<Value> = ids
            .into_iter()
            .take(limit)
            .map(|id| {
                let mut m = json!({"_id": id, "id": id, "modelId": id, "likes": 0, "downloads": 3,
                                   "private": false, "tags": ["synth-city", "sn50"]});
                if full {
                    m["author"] = json!(id.split('/').next());
                    m["lastModified"] = json!("2026-12-06T04:00:00.000Z");
                    m["sha"] = json!(format!("{:040x}", h.commits.len()));
                }
                m
            })
            .collect();
        return json_of(200, json!(models));
    }
    if let Some(oid) = path.strip_prefix("/lfs-download/") {
        return match h.lfs.get(oid) {
            Some(b) => Some((200, vec![], b.clone())),
            None => json_of(404, json!({"error": "no such object"})),
        };
    }
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    if segs.len() < 5 || segs[2] != "resolve" {
        return None;
    }
    let repo = format!("{}/{}", segs[0], segs[1]);
    let not_found = |code: &str, msg: String| {
        Some((
            404,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("x-error-code".to_string(), code.to_string()),
            ],
            json!({"error": msg}).to_string().into_bytes(),
        ))
    };
    if !h.repos.contains_key(&repo) {
        // The Hub does not tell a missing repo from a private one.
        return Some((
            401,
            vec![("x-error-code".to_string(), "RepoNotFound".to_string())],
            json!({"error": "Repository not found"})
                .to_string()
                .into_bytes(),
        ));
    }
    if segs[3] != "main" {
        return not_found("RevisionNotFound", format!("Invalid rev id: {}", segs[3]));
    }
    let file = segs[4..].join("/");
    match h.files.get(&file) {
        Some((b, true)) => {
            let oid = publisher::store::sha256_hex(b);
            Some((
                302,
                vec![("location".to_string(), format!("/lfs-download/{oid}"))],
                vec![],
            ))
        }
        Some((b, false)) => Some((
            200,
            vec![(
                "x-repo-commit".to_string(),
                format!("{:040x}", h.commits.len()),
            )],
            b.clone(),
        )),
        None => not_found("EntryNotFound", format!("Entry not found: {file}")),
    }
}

/// Starts the local Hub; returns its base URL and state.
async fn start_hub(token: &str) -> (String, Arc<Mutex<Hub>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hub = Arc::new(Mutex::new(Hub {
        token: token.into(),
        ..Default::default()
    }));
    let (h, b) = (hub.clone(), base.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (h, b) = (h.clone(), b.clone());
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let Some(req) = read_req(&mut sock).await else {
                    return;
                };
                let (status, headers, body) = match serve_read(&h, &req) {
                    Some(answer) => answer,
                    None => {
                        let (status, body) = handle(&h, &b, req);
                        let ct = ("content-type".to_string(), "application/json".to_string());
                        (status, vec![ct], body.to_string().into_bytes())
                    }
                };
                let mut head = format!("HTTP/1.1 {status} X\r\n");
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str(&format!(
                    "content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                ));
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (base, hub)
}

fn hf_client(base: &str, token: &str) -> HfClient {
    let mut c = HfConfig::new(base, token, "me/SN50-Hub");
    c.attempts = 2;
    c.backoff = Duration::from_millis(20);
    HfClient::new(c).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_publish_commits_once_and_republishing_changes_nothing() {
    let (base, hub) = start_hub("hf_good").await;
    let dir = tempfile::tempdir().unwrap();
    let store = publisher::store::FsStore::new(dir.path().join("store"));
    let weights = bytes(4096, 4);
    let ck = checkpoint(dir.path(), &weights);
    let best = record("lstm-gbm-d16", 5.0, 1e-3, Some(&ck));
    let summary = json!({"run_id": "run1", "success": true, "experiments": []});
    publish::publish(&store, &cache(dir.path()), "run1", &best, &summary, None)
        .await
        .unwrap();
    let client = hf_client(&base, "hf_good");

    let first = hf::publish_run(&client, &store, "run1").await.unwrap();
    assert!(first.outcome.created_repo);
    assert!(!first.unchanged);
    assert_eq!(first.outcome.lfs_uploaded, ["runs/run1/model.safetensors"]);
    {
        let h = hub.lock().unwrap();
        assert_eq!(h.commits.len(), 1);
        assert_eq!(h.lfs_puts, 1);
        assert_eq!(h.files["runs/run1/model.safetensors"].0, weights);
        assert!(
            h.files["runs/run1/model.safetensors"].1,
            "weights go through LFS"
        );
        assert_eq!(h.files["runs/run1/spec.json"].0, b"{\"version\":1}");
        let card = String::from_utf8(h.files["README.md"].0.clone()).unwrap();
        for want in [
            "CRPS vs GBM per asset",
            "| BTC | 5.000000 | 10.000000 | 0.5000 |",
            "## Architecture",
            "lstm",
            "run1",
        ] {
            assert!(card.contains(want), "model card lacks {want:?}:\n{card}");
        }
        assert!(!h.files.contains_key("runs/run1/optimizer.safetensors"));
        assert!(h.commits[0]["summary"].as_str().unwrap().contains("run1"));
    }
    let stored: Value = store
        .get_json(&records::hf_published_key("run1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored["commit_oid"],
        first.outcome.commit_oid.clone().unwrap()
    );

    // The same run again: the repo exists (409), every file is there as is: no commit.
    let again = hf::publish_run(&client, &store, "run1").await.unwrap();
    assert!(again.unchanged);
    assert!(!again.outcome.created_repo);
    assert_eq!(again.outcome.commit_oid, None);
    {
        let h = hub.lock().unwrap();
        assert_eq!(h.commits.len(), 1, "no duplicate commit");
        assert_eq!(h.lfs_puts, 1);
        assert!(
            h.requests
                .iter()
                .filter(|r| r.contains("/api/repos/create"))
                .count()
                == 2
        );
    }

    // New weights for the run: one more commit, only the changed LFS object uploaded.
    std::fs::write(ck.join("model.safetensors"), bytes(4096, 5)).unwrap();
    publish::publish(&store, &cache(dir.path()), "run1", &best, &summary, None)
        .await
        .unwrap();
    let third = hf::publish_run(&client, &store, "run1").await.unwrap();
    assert!(!third.unchanged);
    let h = hub.lock().unwrap();
    assert_eq!(h.commits.len(), 2);
    assert_eq!(h.lfs_puts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_a_wrong_token_is_a_clear_error_and_commits_nothing() {
    let (base, hub) = start_hub("hf_good").await;
    let client = hf_client(&base, "hf_wrong");
    let err = client
        .upload(
            &[HfFile {
                path: "README.md".into(),
                bytes: b"# x".to_vec(),
            }],
            "s",
            "d",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, HfError::Unauthorized { status: 401, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("HF_TOKEN") && msg.contains("me/SN50-Hub"),
        "{msg}"
    );
    let h = hub.lock().unwrap();
    assert!(h.commits.is_empty());
    assert_eq!(h.requests.len(), 1, "a 401 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_an_unreachable_hub_and_a_missing_model_are_clear_errors() {
    let client = hf_client(&format!("http://127.0.0.1:{}", free_port()), "hf_good");
    let err = client
        .upload(
            &[HfFile {
                path: "a.json".into(),
                bytes: b"{}".to_vec(),
            }],
            "s",
            "d",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, HfError::Unavailable { attempts: 2, .. }),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let store = publisher::store::FsStore::new(dir.path());
    let (base, _hub) = start_hub("hf_good").await;
    let err = hf::publish_run(&hf_client(&base, "hf_good"), &store, "nope")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("synth-city publish --run nope"),
        "{err}"
    );
}

#[test]
fn publish_cli_names_missing_hub_settings() {
    let out = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args(["publish", "--run", "r1", "--hf"])
        .env_remove("HF_TOKEN")
        .env("HF_REPO_ID", "me/x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HF_REPO_ID is set but HF_TOKEN is not"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_cli_publishes_a_run_from_redis_and_commits_to_the_hub_once() {
    let redis = common::RedisServer::start();
    let q = common::queue(&redis).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let id = synth_city::pipeline::create_run(&q, RunOptions::default(), "default")
        .await
        .unwrap();
    // What the train stage records: a scored experiment whose checkpoint is in the store
    // (the record names it by artifact; the folder it was trained in is another machine's)
    let store = dir.path().join("store");
    let ck = checkpoint(dir.path(), &bytes(2048, 6));
    let mut rec = record("lstm-gbm-d16", 5.0, 1e-3, None);
    rec.artifact = Some(
        publisher::artifacts::put_dir(
            &publisher::store::FsStore::new(&store),
            &ck,
            &trainer::experiments::ARTIFACT_FILES,
        )
        .await
        .unwrap(),
    );
    std::fs::remove_dir_all(&ck).unwrap();
    let mut c = redis.conn();
    let key = q.keys().run(&id);
    let task: String = redis::cmd("HGET")
        .arg(&key)
        .arg("task")
        .query(&mut c)
        .unwrap();
    let mut task: Value = serde_json::from_str(&task).unwrap();
    task["results"] = json!([rec]);
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("task")
        .arg(task.to_string())
        .query(&mut c)
        .unwrap();
    let (base, hub) = start_hub("hf_good").await;
    let run_cli = |args: Vec<String>| {
        let (url, base) = (redis.url(), base.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_synth-city"))
                .args(["--redis-url", &url, "--prefix", "t"])
                .args(&args)
                .env_remove("HIPPIUS_ENDPOINT")
                .env("HF_TOKEN", "hf_good")
                .env("HF_REPO_ID", "me/SN50-Hub")
                .env("HF_ENDPOINT", base)
                .output()
                .unwrap()
        })
    };
    let (store_arg, work_arg) = (
        store.display().to_string(),
        dir.path().join("work").display().to_string(),
    );
    let publish: Vec<String> = [
        "publish",
        "--run",
        &id,
        "--hf",
        "--json",
        "--store",
        &store_arg,
        "--work-dir",
        &work_arg,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run_cli(publish.clone()).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["hf"]["commit_oid"].is_string(), "{v}");
    assert!(store.join("models/production.json").is_file());
    // the checkpoint came from the artifact, through the publisher's cache
    let cached = dir.path().join("work/cache");
    assert!(cached.join(&rec.artifact.as_ref().unwrap().sha256).is_dir());
    assert!(store
        .join(format!("models/{id}/lstm-gbm-d16/model.safetensors"))
        .is_file());
    let metrics = records::read_metrics(&records::metrics_path(&store), 10).unwrap();
    assert_eq!(metrics.last().unwrap()["event"], "publish");

    // Again: the store is rewritten in place, the Hub gets no second commit.
    let out = run_cli(publish).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["hf"]["commit_oid"].is_null(), "{v}");
    assert_eq!(v["hf"]["unchanged"], true);
    assert_eq!(hub.lock().unwrap().commits.len(), 1);

    // `history run` shows the run and its Hub commit.
    let out = run_cli(vec![
        "history".into(),
        "run".into(),
        id.clone(),
        "--json".into(),
        "--store".into(),
        store.display().to_string(),
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["run_id"], id.as_str());
    assert!(v["hf"]["commit_oid"].is_string(), "{v}");
    assert_eq!(v["experiments"][0]["name"], "lstm-gbm-d16");

    // A run neither in Redis nor in the store: a clear error.
    let out = run_cli(vec!["publish".into(), "--run".into(), "nosuchrun".into()])
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nosuchrun") && err.contains("not in Redis"),
        "{err}"
    );
}

/// A tiny trained BTC checkpoint of `timeframe`, by the CLI; `None` without the shared data.
fn trained_checkpoint(out: &Path, timeframe: &str) -> Option<PathBuf> {
    let data = root().join("../shared/data");
    data.is_dir()
        .then(|| common::tiny_checkpoint(&data, out, timeframe))
}

/// The miner's `latest` on an object store: the publisher puts a model in the bucket, the
/// miner mirrors the pointers and models into its local store directory and serves them, a
/// new publication replaces the old, and an object whose recorded hash does not match is
/// refused while the previous model keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_miner_serves_what_the_publisher_put_in_the_bucket() {
    use synth_city::miner::{mirror_production, ErrorText, ModelHolder, ModelSpec};
    let dir = tempfile::tempdir().unwrap();
    let Some(five) = trained_checkpoint(&dir.path().join("runs"), "5m") else {
        eprintln!("skipped: ../shared/data is absent");
        return;
    };
    let one = trained_checkpoint(&dir.path().join("runs"), "1m").unwrap();
    let moto = Moto::start();
    let store = S3Store::new(moto.config("sc-miner")).unwrap();
    let local = dir.path().join("mirror");
    // nothing published: nothing copied, GBM for both prompts
    assert_eq!(
        mirror_production(&store, &local).await.unwrap(),
        Vec::<String>::new()
    );
    // run1 publishes the 5-minute model, run2 the 1-minute one
    let mut best5 = record("five", 5.0, 1e-3, Some(&five));
    best5.run_id = Some("run1".into());
    let mut best1 = record("one", 4.0, 1e-3, Some(&one));
    best1.spec.data.timeframe = jobs::Timeframe::OneMinute;
    best1.run_id = Some("run2".into());
    let summary = json!({"success": true});
    publish::publish(&store, &cache(dir.path()), "run1", &best5, &summary, None)
        .await
        .unwrap();
    publish::publish(&store, &cache(dir.path()), "run2", &best1, &summary, None)
        .await
        .unwrap();
    let mut changed = mirror_production(&store, &local).await.unwrap();
    changed.sort();
    assert_eq!(
        changed,
        [
            "models/production-1m.json",
            "models/production-5m.json",
            "models/production.json"
        ]
    );
    let (models, note) = ModelHolder::load(ModelSpec::Latest, &local).unwrap();
    assert!(note.is_none(), "{note:?}");
    let served = |m: &ModelHolder, inc: u64| m.current(inc).label.clone();
    assert_eq!(
        served(&models, 300),
        local.join("models/run1/five/").display().to_string()
    );
    assert_eq!(
        served(&models, 60),
        local.join("models/run2/one/").display().to_string()
    );
    // the copy is the published bytes
    assert_eq!(
        std::fs::read(local.join("models/run1/five/model.safetensors")).unwrap(),
        std::fs::read(five.join("model.safetensors")).unwrap()
    );
    // an unchanged bucket copies nothing again
    assert!(mirror_production(&store, &local).await.unwrap().is_empty());
    // a newer 5-minute publication replaces the old one
    let mut again = record("five-b", 3.0, 1e-3, Some(&five));
    again.run_id = Some("run3".into());
    publish::publish(&store, &cache(dir.path()), "run3", &again, &summary, None)
        .await
        .unwrap();
    let changed = mirror_production(&store, &local).await.unwrap();
    assert!(
        changed.contains(&"models/production-5m.json".to_string()),
        "{changed:?}"
    );
    assert_eq!(models.reload_if_changed().unwrap().len(), 1);
    assert_eq!(
        served(&models, 300),
        local.join("models/run3/five-b/").display().to_string()
    );
    // weights changed behind the store's back are refused, whether the object's recorded hash
    // still claims the old content (caught by the store) or the object was replaced without
    // one (caught by the pointer's weights_sha256): the local pointer stays, and so does the
    // served model
    let mut bad = record("five-c", 2.0, 1e-3, Some(&five));
    bad.run_id = Some("run4".into());
    publish::publish(&store, &cache(dir.path()), "run4", &bad, &summary, None)
        .await
        .unwrap();
    for keep_metadata in ["True", "False"] {
        moto.python(
            "import boto3, sys\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                               aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3])\n\
             key = 'models/run4/five-c/model.safetensors'\n\
             meta = s3.head_object(Bucket='sc-miner', Key=key)['Metadata'] if sys.argv[4] == 'True' else {}\n\
             s3.put_object(Bucket='sc-miner', Key=key, Body=b'tampered', Metadata=meta)\n",
            &[&moto.endpoint, &moto.access, &moto.secret, keep_metadata],
        );
        let e = mirror_production(&store, &local).await.unwrap_err();
        assert!(e.contains("model.safetensors"), "{keep_metadata}: {e}");
        assert!(models.reload_if_changed().unwrap().is_empty());
        assert_eq!(
            served(&models, 300),
            local.join("models/run3/five-b/").display().to_string()
        );
    }
}

// ---------------------------------------------------------------------------
// The Hub as a source: reads over HTTP, by the library, the bridge and the CLI.

/// A local Hub holding run1's model as `publish_run` puts it there; returns
/// (base URL, state, the weights).
async fn hub_with_run1(dir: &Path) -> (String, Arc<Mutex<Hub>>, Vec<u8>) {
    let (base, hub) = start_hub("hf_good").await;
    let store = publisher::store::FsStore::new(dir.join("store"));
    let weights = bytes(4096, 7);
    let ck = checkpoint(dir, &weights);
    let best = record("lstm-gbm-d16", 5.0, 1e-3, Some(&ck));
    let summary = json!({"run_id": "run1", "success": true, "experiments": []});
    publish::publish(&store, &cache(dir), "run1", &best, &summary, None)
        .await
        .unwrap();
    hf::publish_run(&hf_client(&base, "hf_good"), &store, "run1")
        .await
        .unwrap();
    hub.lock()
        .unwrap()
        .repos
        .insert("other/unrelated".into(), true);
    (base, hub, weights)
}

fn hf_reader(base: &str, token: &str, repo: &str) -> HfClient {
    let mut c = HfConfig::new(base, token, repo);
    c.attempts = 2;
    c.backoff = Duration::from_millis(20);
    HfClient::reader(c).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_reads_models_the_card_and_files_at_a_revision() {
    let dir = tempfile::tempdir().unwrap();
    let (base, hub, weights) = hub_with_run1(dir.path()).await;
    // No token: public reads; the configured repo is the default.
    let reader = hf_reader(&base, "", "me/SN50-Hub");
    let models = reader
        .list_models(&hf::ModelQuery {
            author: Some("me".into()),
            search: None,
            limit: 10,
        })
        .await
        .unwrap();
    let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["me/SN50-Hub"], "only the author's models");
    assert_eq!(models[0].author.as_deref(), Some("me"));
    assert!(models[0].last_modified.is_some());
    let found = reader
        .list_models(&hf::ModelQuery {
            author: None,
            search: Some("unrel".into()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, "other/unrelated");

    let card = reader.model_card(None, "main").await.unwrap();
    assert_eq!(card.repo_id, "me/SN50-Hub");
    let text = String::from_utf8(card.bytes.clone()).unwrap();
    assert!(text.contains("CRPS vs GBM per asset"), "{text}");
    assert_eq!(card.to_json()["text"], text);

    // An LFS file: the Hub redirects to its CDN; the bytes are the weights.
    let w = reader
        .read_file(
            None,
            "main",
            "runs/run1/model.safetensors",
            hf::ARTIFACT_CAP,
        )
        .await
        .unwrap();
    assert_eq!(w.bytes, weights);
    assert!(w.to_json()["content_base64"].is_string() || w.to_json()["text"].is_string());
    let spec = reader
        .read_file(Some("me/SN50-Hub"), "main", "runs/run1/spec.json", 1000)
        .await
        .unwrap();
    assert_eq!(spec.bytes, b"{\"version\":1}");

    // Over the cap: refused, whatever the Hub sends.
    let err = reader
        .read_file(None, "main", "runs/run1/model.safetensors", 100)
        .await
        .unwrap_err();
    assert!(matches!(err, HfError::TooLarge { cap: 100, .. }), "{err}");

    // Names that leave the repo are refused before any request.
    let before = hub.lock().unwrap().requests.len();
    for bad in ["../secrets", "runs/../../x", "/etc/passwd", "a//b", "a\\b"] {
        let err = reader.read_file(None, "main", bad, 1000).await.unwrap_err();
        assert!(
            matches!(&err, HfError::BadInput { field, .. } if field == "filename"),
            "{bad}: {err}"
        );
    }
    let err = reader
        .read_file(None, "a..b", "README.md", 1000)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HfError::BadInput { field, .. } if field == "revision"),
        "{err}"
    );
    let err = reader
        .model_card(Some("no-slash"), "main")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HfError::BadInput { field, .. } if field == "repo_id"),
        "{err}"
    );
    assert_eq!(
        hub.lock().unwrap().requests.len(),
        before,
        "bad input sends nothing"
    );

    // What the Hub does not have is a NotFound naming it.
    for (repo, rev, file) in [
        ("me/SN50-Hub", "main", "runs/nope/spec.json"),
        ("me/SN50-Hub", "v9", "README.md"),
        ("me/missing", "main", "README.md"),
    ] {
        let err = reader
            .read_file(Some(repo), rev, file, 1000)
            .await
            .unwrap_err();
        assert!(
            matches!(err, HfError::NotFound { .. }),
            "{repo} {rev} {file}: {err}"
        );
        assert!(err.to_string().contains(file), "{err}");
    }
    // A reader without a repo must be told one.
    let bare = hf_reader(&base, "", "");
    let err = bare.model_card(None, "main").await.unwrap_err();
    assert!(err.to_string().contains("HF_REPO_ID"), "{err}");
    // A wrong token is refused by the Hub (401), not retried.
    let err = hf_reader(&base, "hf_wrong", "me/SN50-Hub")
        .list_models(&hf::ModelQuery {
            author: Some("me".into()),
            search: None,
            limit: 5,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, HfError::Unauthorized { status: 401, .. }),
        "{err}"
    );
}

/// GET on the bridge; (status, JSON body).
async fn get_json(http: &reqwest::Client, url: String) -> (u16, Value) {
    let r = http.get(&url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_bridge(redis: &common::RedisServer, envs: &[(&str, &str)]) -> (Kill, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args([
            "--redis-url",
            &redis.url(),
            "--prefix",
            "hub",
            "bridge",
            "--port",
        ])
        .arg(port.to_string())
        .arg("--loopback-operator")
        .env_remove("BRIDGE_API_KEY")
        .env_remove("HF_TOKEN")
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "bridge did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Kill(child), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_hf_routes_read_the_hub_and_refuse_bad_input_by_name() {
    let redis = common::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (base, _hub, _weights) = hub_with_run1(dir.path()).await;
    let (_bridge, port) = start_bridge(
        &redis,
        &[("HF_ENDPOINT", &base), ("HF_REPO_ID", "me/SN50-Hub")],
    );
    let http = reqwest::Client::new();
    let at = |p: &str| format!("http://127.0.0.1:{port}{p}");

    let (st, v) = get_json(&http, at("/hf/models")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["author"], "me");
    assert_eq!(v["models"][0]["id"], "me/SN50-Hub");
    assert_eq!(v["count"], 1);
    let (st, v) = get_json(&http, at("/hf/models?repo_id=other/x")).await;
    assert_eq!(
        (st, v["models"][0]["id"].clone()),
        (200, json!("other/unrelated"))
    );

    let (st, v) = get_json(&http, at("/hf/model-card")).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["text"]
        .as_str()
        .unwrap()
        .contains("CRPS vs GBM per asset"));
    assert_eq!(
        (v["repo_id"].as_str(), v["revision"].as_str()),
        (Some("me/SN50-Hub"), Some("main"))
    );

    let (st, v) = get_json(
        &http,
        at("/hf/artifact?filename=runs/run1/spec.json&revision=main"),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["text"], "{\"version\":1}");
    assert_eq!(v["size"], 13);

    for (path, status, names) in [
        ("/hf/artifact", 400, "filename"),
        ("/hf/artifact?filename=../../etc/passwd", 400, "filename"),
        (
            "/hf/artifact?filename=README.md&repo_id=noslash",
            400,
            "repo_id",
        ),
        ("/hf/model-card?revision=a..b", 400, "revision"),
        ("/hf/models?limit=0", 400, "limit"),
        ("/hf/models?limit=many", 400, "limit"),
        ("/hf/models?author=bad%20name", 400, "author"),
        (
            "/hf/artifact?filename=runs/nope.json",
            404,
            "runs/nope.json",
        ),
        ("/hf/model-card?repo_id=me/missing", 404, "me/missing"),
    ] {
        let (st, v) = get_json(&http, at(path)).await;
        assert_eq!(st, status, "{path}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(names), "{path}: {msg}");
    }

    // A Hub that does not answer is a 502 that says so.
    let (_dead, dead_port) = start_bridge(
        &redis,
        &[
            ("HF_ENDPOINT", &format!("http://127.0.0.1:{}", free_port())),
            ("HF_REPO_ID", "me/SN50-Hub"),
        ],
    );
    let (st, v) = get_json(&http, format!("http://127.0.0.1:{dead_port}/hf/model-card")).await;
    assert_eq!(st, 502, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("did not answer"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_hf_lists_models_prints_the_card_and_saves_an_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _hub, weights) = hub_with_run1(dir.path()).await;
    let cli = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_synth-city"));
        c.args(["history", "hf"])
            .args(args)
            .env("HF_ENDPOINT", &base)
            .env("HF_REPO_ID", "me/SN50-Hub")
            .env_remove("HF_TOKEN");
        c
    };
    let run = |args: &[&str]| {
        let out = cli(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (okay, out, err) = tokio::task::block_in_place(|| run(&[]));
    assert!(okay, "{err}");
    assert!(out.contains("me/SN50-Hub"), "{out}");
    assert!(!out.contains("other/unrelated"), "only the owner's: {out}");
    let (okay, out, err) = tokio::task::block_in_place(|| run(&["--json", "--search", "unrel"]));
    assert!(okay, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["id"], "other/unrelated");

    let (okay, out, err) = tokio::task::block_in_place(|| run(&["--card"]));
    assert!(okay, "{err}");
    assert!(out.contains("## Architecture"), "{out}");

    let dest = dir.path().join("w.safetensors");
    let (okay, _, err) = tokio::task::block_in_place(|| {
        run(&[
            "--artifact",
            "runs/run1/model.safetensors",
            "--out",
            dest.to_str().unwrap(),
        ])
    });
    assert!(okay, "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), weights);
    // A binary file is not printed to the terminal.
    let (okay, _, err) =
        tokio::task::block_in_place(|| run(&["--artifact", "runs/run1/model.safetensors"]));
    assert!(!okay && err.contains("--out"), "{err}");

    let (okay, _, err) = tokio::task::block_in_place(|| run(&["--artifact", "../x"]));
    assert!(!okay && err.contains("filename"), "{err}");
    let (okay, _, err) = tokio::task::block_in_place(|| {
        run(&[
            "--artifact",
            "runs/run1/model.safetensors",
            "--max-bytes",
            "10",
            "--out",
            "/dev/null",
        ])
    });
    assert!(!okay && err.contains("cap of 10 bytes"), "{err}");
    let (okay, _, err) =
        tokio::task::block_in_place(|| run(&["--card", "--repo-id", "me/missing"]));
    assert!(!okay && err.contains("not found"), "{err}");
}

// ---------------------------------------------------------------------------
// Results shared between miners: share, ingest, over the CLI, HTTP and the Hub.

/// A store holding `run_id`'s three experiments (two scored, one failed) and its summary.
async fn store_with_run(dir: &Path, run_id: &str) -> publisher::store::FsStore {
    let store = publisher::store::FsStore::new(dir);
    let mut recs = vec![
        record("lstm-gbm-a", 5.0, 1e-3, Some(Path::new("/home/alice/ckpt"))),
        record("lstm-gbm-b", 8.0, 2e-3, None),
        record("lstm-gbm-c", 1.0, 3e-3, None),
    ];
    recs[2].status = RunStatus::Failed;
    recs[2].crps = None;
    for r in &mut recs {
        r.run_id = Some(run_id.into());
    }
    records::save_experiments(&store, run_id, &recs)
        .await
        .unwrap();
    records::save_run_summary(&store, run_id, &json!({"run_id": run_id, "success": true}))
        .await
        .unwrap();
    store
}

fn results_cli(store: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .arg("results")
        .args(args)
        .arg("--store")
        .arg(store)
        .env_remove("HIPPIUS_ENDPOINT")
        .env_remove("SYNTH_STORE_DIR")
        .env_remove("SYNTH_MINER_NAME")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_share_then_ingest_marks_the_source_and_refuses_bad_documents() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    store_with_run(&alice, "run7").await;

    let (okay, out, err) = tokio::task::block_in_place(|| {
        results_cli(
            &alice,
            &["share", "--run", "latest", "--source", "alice", "--json"],
        )
    });
    assert!(okay, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["run_id"].as_str(), v["experiments"].as_u64()),
        (Some("run7"), Some(2))
    );
    let doc_path = alice.join("shared/results-run7.json");
    let text = std::fs::read_to_string(&doc_path).unwrap();
    assert!(
        !text.contains("/home/alice") && !text.contains(alice.to_str().unwrap()),
        "no local paths: {text}"
    );
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["schema"], "synth-city.results");
    assert_eq!(doc["source"], "alice");
    assert_eq!(
        doc["experiments"][0]["name"], "lstm-gbm-a",
        "best ratio first"
    );
    assert_eq!(doc["experiments"][0]["ratio"], 0.5);
    assert_eq!(doc["experiments"][1]["ratio"], 0.8);
    assert!(alice.join("shared/latest.json").exists());

    // Bob ingests it: the rows are in his history, marked, and are no run of his.
    let (okay, out, err) = tokio::task::block_in_place(|| {
        results_cli(
            &bob,
            &["ingest", "--from", doc_path.to_str().unwrap(), "--json"],
        )
    });
    assert!(okay, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["rows"].as_u64(), v["unchanged"].as_u64()),
        (Some(2), Some(0))
    );
    let bob_store: Arc<dyn Store> = Arc::new(publisher::store::FsStore::new(&bob));
    let rows = records::experiment_rows(bob_store.clone(), None)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.source.as_deref() == Some("alice") && r.run_id == "shared-alice-run7"),
        "{rows:?}"
    );
    let planner = records::load_history(bob_store.clone(), 50).await.unwrap();
    assert_eq!(planner.records.len(), 2, "the planner sees them");
    assert_eq!(
        planner.records[0].run_id.as_deref(),
        Some("shared-alice-run7")
    );
    assert!(
        records::run_rows(bob_store.clone())
            .await
            .unwrap()
            .is_empty(),
        "never our runs"
    );
    // Again: nothing changes; and rows ingested are not shared on as ours.
    let (okay, out, _) = tokio::task::block_in_place(|| {
        results_cli(
            &bob,
            &["ingest", "--from", doc_path.to_str().unwrap(), "--json"],
        )
    });
    assert!(okay);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["unchanged"], 2);
    let (okay, _, err) =
        tokio::task::block_in_place(|| results_cli(&bob, &["share", "--run", "shared-alice-run7"]));
    assert!(!okay && err.contains("no scored experiment"), "{err}");

    // Bad documents are refused, naming the field.
    type Edit = fn(&mut Value);
    let cases: [(Edit, &str); 9] = [
        (|d| d["version"] = json!(2), "version"),
        (|d| d["schema"] = json!("other"), "schema"),
        (
            |d| d["experiments"][0]["crps"] = json!(0.0),
            "experiments[0].crps",
        ),
        (
            |d| d["experiments"][1]["ratio"] = json!(0.1),
            "experiments[1].ratio",
        ),
        (
            |d| d["experiments"][0]["name"] = json!("../x"),
            "experiments[0].name",
        ),
        (
            |d| d["experiments"][0]["spec"]["training"]["lr"] = json!(-1.0),
            "experiments[0].spec.training.lr",
        ),
        (|d| d["experiments"] = json!([]), "experiments"),
        (|d| d["local_path"] = json!("/tmp"), "unknown field"),
        (|d| d["source"] = json!("a b"), "source"),
    ];
    for (i, (edit, names)) in cases.into_iter().enumerate() {
        let mut bad = doc.clone();
        edit(&mut bad);
        let p = dir.path().join(format!("bad{i}.json"));
        std::fs::write(&p, bad.to_string()).unwrap();
        let (okay, _, err) = tokio::task::block_in_place(|| {
            results_cli(&bob, &["ingest", "--from", p.to_str().unwrap()])
        });
        assert!(
            !okay && err.contains(names),
            "case {i} should name {names}: {err}"
        );
    }
    let big = dir.path().join("big.json");
    std::fs::write(
        &big,
        vec![b' '; publisher::store::shared::MAX_DOC_BYTES + 1],
    )
    .unwrap();
    let (okay, _, err) = tokio::task::block_in_place(|| {
        results_cli(&bob, &["ingest", "--from", big.to_str().unwrap()])
    });
    assert!(!okay && err.contains("over the cap"), "{err}");
    let (okay, _, err) =
        tokio::task::block_in_place(|| results_cli(&bob, &["ingest", "--from", "ftp://x/y.json"]));
    assert!(!okay && err.contains("only http and https"), "{err}");
    assert_eq!(
        records::experiment_rows(bob_store, None)
            .await
            .unwrap()
            .len(),
        2,
        "nothing bad was merged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_share_to_the_hub_and_ingest_from_it_and_from_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    store_with_run(&alice, "run8").await;
    let (base, hub) = start_hub("hf_good").await;
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_synth-city"))
            .args([
                "results", "share", "--run", "run8", "--hf", "--source", "alice", "--store",
            ])
            .arg(&alice)
            .env("HF_ENDPOINT", &base)
            .env("HF_TOKEN", "hf_good")
            .env("HF_REPO_ID", "alice/sn50")
            .env_remove("HIPPIUS_ENDPOINT")
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        let h = hub.lock().unwrap();
        assert_eq!(h.commits.len(), 1);
        assert!(
            h.files.contains_key("results/run8.json")
                && h.files.contains_key("results/latest.json")
        );
    }
    // From the Hub by repo, and by its resolve URL (plain HTTP).
    let ingest = |from: String| {
        Command::new(env!("CARGO_BIN_EXE_synth-city"))
            .args(["results", "ingest", "--json", "--from", &from, "--store"])
            .arg(&bob)
            .env("HF_ENDPOINT", &base)
            .env_remove("HF_TOKEN")
            .env_remove("HF_REPO_ID")
            .env_remove("HIPPIUS_ENDPOINT")
            .output()
            .unwrap()
    };
    let out = tokio::task::block_in_place(|| ingest("hf:alice/sn50".into()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["rows"].as_u64(), v["source"].as_str()),
        (Some(2), Some("alice"))
    );
    let out = tokio::task::block_in_place(|| {
        ingest(format!("{base}/alice/sn50/resolve/main/results/run8.json"))
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["unchanged"],
        2
    );
    // A URL that answers 404 is an error naming it.
    let out = tokio::task::block_in_place(|| {
        ingest(format!("{base}/alice/sn50/resolve/main/results/none.json"))
    });
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("HTTP 404"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_results_share_and_ingest_over_http() {
    let redis = common::RedisServer::start();
    let q = common::queue(&redis).await;
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let mine = synth_city::pipeline::create_run(&q, RunOptions::default(), "default")
        .await
        .unwrap();
    let theirs = synth_city::pipeline::create_run(&q, RunOptions::default(), "other-bot")
        .await
        .unwrap();
    store_with_run(&store_dir, &mine).await;
    store_with_run(&store_dir, &theirs).await;
    let (hub_base, hub) = start_hub("hf_good").await;
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_synth-city"))
        .args([
            "--redis-url",
            &redis.url(),
            "--prefix",
            "t",
            "bridge",
            "--port",
        ])
        .arg(port.to_string())
        .arg("--loopback-operator")
        .env_remove("BRIDGE_API_KEY")
        .env("HF_ENDPOINT", &hub_base)
        .env("HF_TOKEN", "hf_good")
        .env("HF_REPO_ID", "alice/sn50")
        .env_remove("HIPPIUS_ENDPOINT")
        .env("SYNTH_STORE_DIR", &store_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _bridge = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "bridge did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let req = http
            .post(format!("http://127.0.0.1:{port}{path}"))
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (st, v) = post(
        "/results/share",
        json!({"run_id": "latest", "source": "alice"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["run_id"], mine.as_str(), "latest is the caller's newest");
    assert_eq!(v["experiments"], 2);
    assert!(store_dir
        .join(format!("shared/results-{mine}.json"))
        .exists());
    let doc = v["document"].clone();
    assert!(v["hf"].is_null(), "no Hub unless asked: {v}");
    // To the Hub too: one commit; then ingest it back by repo.
    let (st, v) = post(
        "/results/share",
        json!({"run_id": mine, "hf": true, "source": "alice"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["hf"]["commit_oid"].is_string(), "{v}");
    assert!(hub
        .lock()
        .unwrap()
        .files
        .contains_key("results/latest.json"));
    let (st, v) = post("/results/ingest", json!({"repo_id": "alice/sn50"})).await;
    assert_eq!(
        (st, v["rows"].as_u64(), v["unchanged"].as_u64()),
        (200, Some(2), Some(0)),
        "{v}"
    );
    // Another bot's run is not the caller's to share.
    let (st, v) = post("/results/share", json!({"run_id": theirs})).await;
    assert_eq!(st, 404, "{v}");

    // Ingest the document itself; again changes nothing.
    let (st, v) = post("/results/ingest", json!({"document": doc})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["rows"].as_u64(), v["source"].as_str()),
        (Some(2), Some("alice"))
    );
    let (_, v) = post("/results/ingest", json!({"document": doc})).await;
    assert_eq!(v["unchanged"], 2);

    let mut bad = doc.clone();
    bad["experiments"][0]["gbm_crps"] = json!(-3.0);
    for (body, status, names) in [
        (json!({"run_id": "latest", "source": "a b"}), 400, "source"),
        (json!({}), 400, "run_id"),
    ] {
        let (st, v) = post("/results/share", body.clone()).await;
        assert_eq!(st, status, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(names), "{v}");
    }
    for (body, status, names) in [
        (
            json!({"document": bad}),
            400,
            "document.experiments[0].gbm_crps",
        ),
        (
            json!({"document": {"schema": "synth-city.results", "version": 9}}),
            400,
            "document",
        ),
        (json!({"url": "file:///etc/passwd"}), 400, "url"),
        (json!({"url": "hf:me/x"}), 400, "url"),
        (json!({"repo_id": "noslash"}), 400, "repo_id"),
        (json!({}), 400, "exactly one"),
        (
            json!({"url": "http://x", "document": {}}),
            400,
            "exactly one",
        ),
        // a bot may not have the bridge reach into its machine or private network
        (
            json!({"url": format!("http://127.0.0.1:{}/r.json", free_port())}),
            403,
            "SYNTH_INGEST_ALLOW_HOSTS",
        ),
        (
            json!({"url": format!("http://localhost:{}/r.json", free_port())}),
            403,
            "url",
        ),
        (
            json!({"url": "http://10.1.2.3/r.json"}),
            403,
            "private network",
        ),
    ] {
        let (st, v) = post("/results/ingest", body.clone()).await;
        assert_eq!(st, status, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(names),
            "{body}: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_metrics_trends_per_family_and_period() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = store_with_run(&store_dir, "run9").await;
    // One more family, a week later.
    let mut later = record("lstm-attn", 3.0, 1e-3, None);
    later.spec = trainer::zoo::spec::ExperimentSpec::new(&["lstm", "attention"], "gbm");
    later.fingerprint = trainer::experiments::fingerprint(&later.spec);
    later.recorded_at += 7 * 86_400;
    records::save_experiments(&store, "run10", &[later])
        .await
        .unwrap();
    // Another miner's rows, ingested: not in our trends unless asked.
    let doc = publisher::store::shared::build(&store, "run9", "bob", 1)
        .await
        .unwrap();
    let mut doc = doc;
    doc.run_id = "theirs".into();
    publisher::store::shared::ingest(&store, &doc)
        .await
        .unwrap();

    let hist = |args: &[&str]| {
        common::stdout_of(
            Command::new(env!("CARGO_BIN_EXE_synth-city"))
                .arg("history")
                .args(args)
                .arg("--store")
                .arg(&store_dir)
                .env_remove("HIPPIUS_ENDPOINT"),
        )
    };
    let v: Value = serde_json::from_str(&tokio::task::block_in_place(|| {
        hist(&["metrics", "--trends", "--json"])
    }))
    .unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert_eq!(rows[0]["family"], "lstm/gbm");
    assert_eq!(rows[0]["period"], "2023-11-14");
    assert_eq!(
        (rows[0]["count"].as_u64(), rows[0]["scored"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(rows[0]["best_ratio"], 0.5);
    assert_eq!(rows[0]["median_ratio"], 0.65);
    assert_eq!(
        (rows[1]["family"].as_str(), rows[1]["period"].as_str()),
        (Some("lstm+attention/gbm"), Some("2023-11-21"))
    );
    let v: Value = serde_json::from_str(&tokio::task::block_in_place(|| {
        hist(&["metrics", "--trends", "--with-shared", "--json"])
    }))
    .unwrap();
    assert_eq!(v[0]["count"], 5, "the shared rows counted: {v}");
    // The seed's name, by week.
    let out = tokio::task::block_in_place(|| hist(&["trackio", "--trends", "--by", "week"]));
    assert!(
        out.contains("week of") && out.contains("2023-11-13") && out.contains("lstm+attention/gbm"),
        "{out}"
    );
}
