//! A local stand-in for the Basilica API, speaking the paths, bodies and status codes our
//! client (`synth_city::basilica`) uses, on 127.0.0.1 and a free port (std threads, one
//! request per connection). Each created deployment's command runs as a real local process
//! (the `synth-city` of this build for the image's `synth-city`) in a directory of its own,
//! with the deployment's environment; its health port is remapped to a free local port (as a
//! container's port would be), and its phase is `Pending` until `GET /health` on that port
//! answers 200, then `Running`, or `Failed` once the process has exited. A delete sends the
//! process SIGTERM (the worker drains) and SIGKILL after a few seconds.
//!
//! Knobs: fail the next creates with 500 (nothing created), delay the answer to the next create
//! (after creating it), the balance, the offerings; counters of create requests and of
//! deployments created, and the most that were live at once.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::{bin, free_port, read_http_request};

struct Pod {
    body: Value,
    child: Child,
    health_port: u16,
    dir: PathBuf,
    created: String,
}

#[derive(Default)]
struct State {
    pods: BTreeMap<String, Pod>,
    offerings: Vec<Value>,
    balance: f64,
    fail_next_creates: u32,
    delay_next_create: Option<Duration>,
    create_requests: u32,
    created: u32,
    peak_live: usize,
    deleted: Vec<String>,
    token: String,
}

/// The stand-in; every pod process is killed when it drops.
pub struct Basilica {
    pub url: String,
    pub token: String,
    state: Arc<Mutex<State>>,
    pub root: tempfile::TempDir,
}

/// An offering as `GET /v2/secure-cloud/gpu-prices` lists it.
pub fn offering(id: &str, gpu_type: &str, hourly_rate: &str) -> Value {
    json!({"id": id, "provider": "standin", "gpu_type": gpu_type, "gpu_count": 1,
           "vcpu_count": 8, "system_memory_gb": 32, "storage_gb": 100, "region": "local",
           "gpu_memory_gb_per_gpu": 16, "hourly_rate": hourly_rate,
           "availability": true, "is_spot": false, "fetched_at": "2026-12-06T00:00:00Z"})
}

fn respond(s: &mut impl Write, status: u16, body: &Value) {
    let text = body.to_string();
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Internal Server Error",
    };
    let _ = write!(
        s,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

/// `GET path` on 127.0.0.1:`port`: the status line and the body (`None`: no answer).
pub fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_millis(2000)));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let (head, body) = buf.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn healthy(port: u16) -> bool {
    http_get(port, "/health").is_some_and(|(status, _)| status.starts_with("HTTP/1.1 200"))
}

impl Pod {
    fn phase(&mut self) -> &'static str {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            "Failed"
        } else if healthy(self.health_port) {
            "Running"
        } else {
            "Pending"
        }
    }

    fn json(&mut self, name: &str) -> Value {
        let phase = self.phase();
        let ready = u32::from(phase == "Running");
        json!({"instanceName": name, "userId": "u-standin", "namespace": "u-standin",
               "image": self.body["image"], "state": "Active", "phase": phase,
               "url": format!("http://127.0.0.1:{}", self.health_port),
               "replicas": {"desired": 1, "ready": ready}, "createdAt": self.created,
               "public": false})
    }
}

fn stop(mut child: Child) {
    std::thread::spawn(move || {
        // SAFETY: signalling a child we spawned and have not reaped.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        for _ in 0..100 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    });
}

impl Basilica {
    /// A stand-in with these offerings and balance, requiring `Bearer <token>`.
    pub fn start(offerings: Vec<Value>, balance: f64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let token = "standin-token".to_string();
        let state = Arc::new(Mutex::new(State {
            offerings,
            balance,
            token: token.clone(),
            ..Default::default()
        }));
        let root = tempfile::tempdir().unwrap();
        let st = state.clone();
        let dir = root.path().to_path_buf();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let st = st.clone();
                let dir = dir.clone();
                std::thread::spawn(move || {
                    if let Some((head, body)) = read_http_request(&mut s) {
                        handle(&st, &dir, &head, &body, &mut s);
                    }
                });
            }
        });
        Basilica {
            url,
            token,
            state,
            root,
        }
    }

    /// The next `n` creates answer 500 without creating anything.
    pub fn fail_next_creates(&self, n: u32) {
        self.state.lock().unwrap().fail_next_creates = n;
    }

    /// The next create is carried out, then answered only after `d`.
    pub fn delay_next_create(&self, d: Duration) {
        self.state.lock().unwrap().delay_next_create = Some(d);
    }

    pub fn set_balance(&self, b: f64) {
        self.state.lock().unwrap().balance = b;
    }

    pub fn set_offerings(&self, o: Vec<Value>) {
        self.state.lock().unwrap().offerings = o;
    }

    /// `POST /deployments` requests received.
    pub fn create_requests(&self) -> u32 {
        self.state.lock().unwrap().create_requests
    }

    /// Deployments created, ever.
    pub fn created(&self) -> u32 {
        self.state.lock().unwrap().created
    }

    /// The most deployments that existed at once.
    pub fn peak_live(&self) -> usize {
        self.state.lock().unwrap().peak_live
    }

    /// The names of the deployments that exist now.
    pub fn live(&self) -> Vec<String> {
        self.state.lock().unwrap().pods.keys().cloned().collect()
    }

    /// Deployments deleted, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.state.lock().unwrap().deleted.clone()
    }

    /// The create body of a live deployment.
    pub fn body(&self, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .pods
            .get(name)
            .map(|p| p.body.clone())
    }

    /// The phase of a live deployment, as `GET /deployments/{name}` would say.
    pub fn phase(&self, name: &str) -> Option<String> {
        let mut st = self.state.lock().unwrap();
        st.pods.get_mut(name).map(|p| p.phase().to_string())
    }

    /// Kills a pod's process outright (a machine lost), leaving the deployment `Failed`.
    pub fn kill_pod(&self, name: &str) {
        if let Some(p) = self.state.lock().unwrap().pods.get_mut(name) {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// What a pod's process wrote.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.path().join(name).join("pod.log")).unwrap_or_default()
    }
}

impl Drop for Basilica {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap();
        for (_, mut p) in std::mem::take(&mut st.pods) {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

fn handle(
    st: &Arc<Mutex<State>>,
    root: &std::path::Path,
    head: &str,
    body: &[u8],
    s: &mut std::net::TcpStream,
) {
    let line = head.lines().next().unwrap_or_default().to_string();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_uppercase();
    let target = parts.next().unwrap_or_default().to_string();
    let path = target.split('?').next().unwrap_or_default().to_string();
    let token = st.lock().unwrap().token.to_ascii_lowercase();
    if !head
        .lines()
        .any(|l| l.trim() == format!("authorization: bearer {token}"))
    {
        return respond(
            s,
            401,
            &error("BASILICA_API_AUTH_MISSING", "missing or wrong bearer token"),
        );
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["billing", "balance"]) => {
            let b = st.lock().unwrap().balance;
            respond(
                s,
                200,
                &json!({"balance": format!("{b:.2}"), "last_updated": "2026-12-06T00:00:00Z"}),
            )
        }
        ("GET", ["v2", "secure-cloud", "gpu-prices"]) => {
            let o = st.lock().unwrap().offerings.clone();
            respond(s, 200, &json!({"nodes": o, "count": o.len()}))
        }
        ("GET", ["deployments"]) => {
            let mut g = st.lock().unwrap();
            let list: Vec<Value> = g.pods.iter_mut().map(|(n, p)| p.json(n)).collect();
            respond(s, 200, &json!({"total": list.len(), "deployments": list}))
        }
        ("GET", ["deployments", name]) => {
            let mut g = st.lock().unwrap();
            match g.pods.get_mut(*name) {
                Some(p) => {
                    let v = p.json(name);
                    drop(g);
                    respond(s, 200, &v)
                }
                None => respond(s, 404, &error("NOT_FOUND", &format!("deployment {name}"))),
            }
        }
        ("GET", ["deployments", name, "logs"]) => {
            let text = std::fs::read_to_string(root.join(name).join("pod.log")).unwrap_or_default();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
        ("DELETE", ["deployments", name]) => {
            let mut g = st.lock().unwrap();
            match g.pods.remove(*name) {
                Some(p) => {
                    g.deleted.push(name.to_string());
                    drop(g);
                    stop(p.child);
                    respond(
                        s,
                        200,
                        &json!({"instanceName": name, "state": "Terminating", "message": "deleting"}),
                    )
                }
                None => respond(s, 404, &error("NOT_FOUND", &format!("deployment {name}"))),
            }
        }
        ("POST", ["deployments"]) => create(st, root, body, s),
        _ => respond(s, 404, &error("NOT_FOUND", &format!("{method} {path}"))),
    }
}

fn create(
    st: &Arc<Mutex<State>>,
    root: &std::path::Path,
    body: &[u8],
    s: &mut std::net::TcpStream,
) {
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return respond(s, 400, &error("BAD_REQUEST", &format!("body: {e}"))),
    };
    let mut g = st.lock().unwrap();
    g.create_requests += 1;
    if g.fail_next_creates > 0 {
        g.fail_next_creates -= 1;
        return respond(s, 500, &error("INTERNAL", "stand-in: injected failure"));
    }
    let Some(name) = req["instanceName"].as_str().map(str::to_string) else {
        return respond(
            s,
            400,
            &error("BAD_REQUEST", "missing field `instanceName`"),
        );
    };
    for field in ["image", "port"] {
        if req.get(field).is_none() {
            return respond(
                s,
                400,
                &error("BAD_REQUEST", &format!("missing field `{field}`")),
            );
        }
    }
    if g.pods.contains_key(&name) {
        return respond(
            s,
            409,
            &error("CONFLICT", &format!("deployment {name} already exists")),
        );
    }
    let want = req["resources"]["gpus"]["model"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let offered = want.is_empty()
        || want.iter().any(|m| {
            g.offerings.iter().any(|o| {
                o["gpu_type"].as_str().map(str::to_lowercase) == m.as_str().map(str::to_lowercase)
            })
        });
    if !offered {
        return respond(
            s,
            400,
            &error("BAD_REQUEST", &format!("no offering of GPU model {want:?}")),
        );
    }
    let command: Vec<String> = req["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(req["args"].as_array().into_iter().flatten())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if command.first().map(String::as_str) != Some("synth-city") {
        return respond(
            s,
            400,
            &error(
                "BAD_REQUEST",
                "the stand-in runs only `synth-city` commands",
            ),
        );
    }
    let dir = root.join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("pod.log")).unwrap();
    let health_port = free_port();
    let mut cmd = Command::new(bin());
    cmd.args(&command[1..])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    if let Some(env) = req["env"].as_object() {
        for (k, v) in env {
            if let Some(v) = v.as_str() {
                cmd.env(k, v);
            }
        }
    }
    cmd.env("SYNTH_HEALTH_PORT", health_port.to_string())
        .env("SYNTH_HEALTH_HOST", "127.0.0.1");
    // not `die_with_parent`: this connection's thread ends at once; the stand-in's drop kills
    // its pods
    let child = cmd.spawn().unwrap();
    let created = chrono_like_now();
    let mut pod = Pod {
        body: req,
        child,
        health_port,
        dir,
        created,
    };
    let answer = pod.json(&name);
    g.pods.insert(name, pod);
    g.created += 1;
    g.peak_live = g.peak_live.max(g.pods.len());
    let delay = g.delay_next_create.take();
    drop(g);
    if let Some(d) = delay {
        std::thread::sleep(d);
    }
    respond(s, 201, &answer)
}

fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("{secs}")
}
