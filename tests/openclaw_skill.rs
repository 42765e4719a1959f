//! The OpenClaw skill (`integrations/openclaw/`) against a live fleet: a real redis-server,
//! the real bridge and a real worker (the built binary), and every runnable example of
//! `SKILL.md` and `references/*.md` executed with `bash`, as a bot would run it.
//!
//! A runnable example is a fenced block whose info string is exactly `bash`; one that must
//! not run says why (`bash not-run: <reason>`). Each page runs as its own bot
//! (`SYNTH_BOT_ID=oc-<page>`) with `SYNTH_BRIDGE_URL`, `BRIDGE_API_KEY` and the built binary
//! on `PATH`; an UPPER_CASE shell variable an example assigns (`RUN_ID=$(...)`) is passed to
//! the page's later examples. Every example must exit 0 under `set -euo pipefail` (curl with
//! `-f`, so any non-2xx fails it). The bridge's market venue is a loopback stand-in (this
//! machine has no internet) that quotes Binance tickers.
//!
//! Also checked: the front matter (name, version, OpenClaw's single-line `metadata`), that
//! each section of SKILL.md shows both `synth-city client` and `curl`, that the reference
//! files document exactly the routes of `/openapi.json`, and the install and publish scripts
//! (installing into a temp workspace twice; publishing through a stand-in `clawhub` that
//! fails twice, and without any `clawhub`).
//!
//! `OPENCLAW_SKILL_SHOW=1` prints every example's output. It does not test OpenClaw itself
//! or reach ClawHub.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, free_port, RedisServer};
use serde_json::Value;

const KEY: &str = "oc-sekret";

fn integration() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("integrations/openclaw")
}

fn skill_dir() -> PathBuf {
    integration().join("skill")
}

fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A stand-in for the price venues on loopback: answers Binance's
/// `/api/v3/ticker/price?symbol=S` with a price for `S`, and 404 to anything else.
fn venue_stand_in() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let Some((head, _)) = common::read_http_request(&mut s) else {
                continue;
            };
            let line = head.lines().next().unwrap_or_default();
            let symbol = line
                .strip_prefix("get /api/v3/ticker/price?symbol=")
                .and_then(|rest| rest.split([' ', '&']).next())
                .map(str::to_ascii_uppercase);
            let (status, body) = match symbol {
                Some(sym) => (
                    "200 OK",
                    serde_json::json!({"symbol": sym, "price": "97123.45"}).to_string(),
                ),
                None => (
                    "404 Not Found",
                    serde_json::json!({"msg": format!("no route: {line}")}).to_string(),
                ),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Redis, the bridge (with a key) and one worker serving every job type, under prefix `oc`.
struct Fleet {
    _worker: Proc,
    _bridge: Proc,
    port: u16,
    _work: tempfile::TempDir,
    _redis: RedisServer,
}

impl Fleet {
    fn start() -> Fleet {
        let redis = RedisServer::start();
        let base = |c: &mut Command| {
            c.arg("--redis-url")
                .arg(redis.url())
                .args(["--prefix", "oc"])
                .env("RUST_LOG", "warn")
                .env_remove("CHUTES_API_KEY")
                .env_remove("HIPPIUS_ENDPOINT")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        };
        let mut m = Command::new(bin());
        base(&mut m);
        assert!(m.arg("migrate").status().unwrap().success());

        let work = tempfile::tempdir().unwrap();
        let mut w = Command::new(bin());
        base(&mut w);
        w.args(["worker", "--roles", "all", "--data-dir"])
            .arg(shared_data())
            .args(["--work-dir", "work", "--store", "store"])
            .current_dir(work.path());
        let worker = Proc(w.spawn().unwrap());

        let venue = format!("http://127.0.0.1:{}", venue_stand_in());
        let port = free_port();
        let mut b = Command::new(bin());
        base(&mut b);
        b.args(["bridge", "--port", &port.to_string()])
            .env("BRIDGE_API_KEY", KEY)
            .env("SYNTH_DATA_DIR", shared_data())
            .env("BINANCE_API_URL", &venue)
            .env("HYPERLIQUID_API_URL", &venue)
            .env("PYTH_HERMES_URL", &venue)
            .current_dir(work.path());
        let bridge = Proc(b.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the bridge did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Fleet {
            _worker: worker,
            _bridge: bridge,
            port,
            _work: work,
            _redis: redis,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A fenced code block of a page.
#[derive(Debug, Clone)]
struct Block {
    /// The info string after the opening fence.
    info: String,
    code: String,
    /// The line of the opening fence (1-based).
    line: usize,
    /// The `## ` section it is in.
    section: String,
}

/// Every fenced block of `text`; an unclosed fence is an error.
fn blocks(text: &str) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    let mut section = String::new();
    for (i, line) in text.lines().enumerate() {
        match &mut open {
            None => {
                if let Some(h) = line.strip_prefix("## ") {
                    section = h.trim().to_string();
                } else if let Some(info) = line.strip_prefix("```") {
                    open = Some(Block {
                        info: info.trim().to_string(),
                        code: String::new(),
                        line: i + 1,
                        section: section.clone(),
                    });
                }
            }
            Some(b) => {
                if line.trim_end() == "```" {
                    out.push(open.take().unwrap());
                } else {
                    b.code.push_str(line);
                    b.code.push('\n');
                }
            }
        }
    }
    match open {
        Some(b) => Err(format!("the fence at line {} is never closed", b.line)),
        None => Ok(out),
    }
}

/// What to do with a block: run it, skip it (with the reason), or refuse the page.
enum Kind {
    Run,
    Skip(String),
    Other,
}

fn kind(b: &Block) -> Result<Kind, String> {
    let info = b.info.as_str();
    if info == "bash" {
        return Ok(Kind::Run);
    }
    if let Some(rest) = info.strip_prefix("bash not-run:") {
        let why = rest.trim();
        return if why.is_empty() {
            Err(format!(
                "line {}: `bash not-run:` needs a reason after the colon",
                b.line
            ))
        } else {
            Ok(Kind::Skip(why.to_string()))
        };
    }
    if info.is_empty()
        || info.starts_with("bash")
        || ["sh", "shell", "console", "zsh"].contains(&info)
    {
        return Err(format!(
            "line {}: fence info {info:?}: mark commands `bash` (run by this test) or \
             `bash not-run: <reason>`, and output or data `json`/`text`",
            b.line
        ));
    }
    Ok(Kind::Other)
}

/// What a runnable block must not do: a curl without `-f` (a 4xx would pass) or `| head`
/// (under pipefail, the writer's SIGPIPE fails the example at random).
fn lint(b: &Block) -> Vec<String> {
    let mut bad = Vec::new();
    let code = b.code.replace("\\\n", " ");
    for (i, _) in code.match_indices("curl ") {
        let args = &code[i + 5..];
        let until = args.find("$SYNTH_BRIDGE_URL").unwrap_or(args.len());
        let fails = args[..until].split_whitespace().any(|a| {
            a.starts_with("--fail")
                || (a.starts_with('-') && !a.starts_with("--") && a[1..].contains('f'))
        });
        if !fails {
            bad.push(format!(
                "line {}: a curl without -f/--fail: {}",
                b.line,
                args.lines().next().unwrap_or_default()
            ));
        }
    }
    if code.contains("| head") {
        bad.push(format!(
            "line {}: `| head` under pipefail fails at random (SIGPIPE); use `sed -n 1,Np`",
            b.line
        ));
    }
    bad
}

/// The UPPER_CASE variables a block assigns (`NAME=...` at the start of a line).
fn assigned(code: &str) -> BTreeSet<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let name: String = l
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let starts = name.chars().next().is_some_and(|c| c.is_ascii_uppercase());
            (starts && l[name.len()..].starts_with('=')).then_some(name)
        })
        .collect()
}

/// The pages: SKILL.md first, then the reference files by name.
fn pages() -> Vec<PathBuf> {
    let mut refs: Vec<PathBuf> = std::fs::read_dir(skill_dir().join("references"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    refs.sort();
    let mut all = vec![skill_dir().join("SKILL.md")];
    all.extend(refs);
    all
}

fn page_name(p: &Path) -> String {
    p.strip_prefix(skill_dir()).unwrap().display().to_string()
}

/// One example's outcome.
struct Ran {
    ok: bool,
    code: Option<i32>,
    secs: f64,
    output: String,
}

/// Runs `code` with `bash` as bot `bot`, in `dir`, with the page's variables from `state`
/// (a file of `declare -p` lines it appends its own assignments to).
fn run_example(fleet: &Fleet, bot: &str, dir: &Path, state: &Path, code: &str) -> Ran {
    let vars: Vec<String> = assigned(code).into_iter().collect();
    let script = format!(
        "set -euo pipefail\nsource \"$SKILL_STATE\"\n{code}\nfor v in {}; do declare -p \"$v\" \
         2>/dev/null || true; done >> \"$SKILL_STATE\"\n",
        if vars.is_empty() {
            "__none".to_string()
        } else {
            vars.join(" ")
        }
    );
    let bin_dir = bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let out = Command::new("timeout")
        .args(["--kill-after=5", "120", "bash", "-c", &script])
        .current_dir(dir)
        .env("PATH", path)
        .env("SYNTH_BRIDGE_URL", fleet.url())
        .env("BRIDGE_API_KEY", KEY)
        .env("SYNTH_BOT_ID", bot)
        .env("SKILL_STATE", state)
        .env("RUST_LOG", "warn")
        .env_remove("SYNTH_BRIDGE_TIMEOUT")
        .stdin(Stdio::null())
        .output()
        .expect("bash and coreutils' timeout must be installed");
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b).to_string();
        let cut = s.len().saturating_sub(1500);
        let cut = (cut..=s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(s.len());
        s[cut..].to_string()
    };
    Ran {
        ok: out.status.success(),
        code: out.status.code(),
        secs: started.elapsed().as_secs_f64(),
        output: format!(
            "stdout: {}\nstderr: {}",
            tail(&out.stdout),
            tail(&out.stderr)
        ),
    }
}

/// `(method, path)` of every `` `METHOD /path` `` mention in `text` (a query string dropped).
fn route_mentions(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for part in text.split('`').skip(1).step_by(2) {
        let Some((method, path)) = part.split_once(' ') else {
            continue;
        };
        if !["GET", "POST", "DELETE"].contains(&method) || !path.starts_with('/') {
            continue;
        }
        let path = path.split('?').next().unwrap();
        if path.contains(char::is_whitespace) {
            continue;
        }
        out.insert((method.to_string(), path.to_string()));
    }
    out
}

/// The front matter's `key: value` lines (OpenClaw's parser reads single-line keys only).
fn front_matter(text: &str) -> BTreeMap<String, String> {
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("---"),
        "SKILL.md must open with YAML front matter"
    );
    let mut out = BTreeMap::new();
    for l in lines {
        if l == "---" {
            return out;
        }
        let (k, v) = l.split_once(": ").unwrap_or_else(|| {
            panic!("front matter line {l:?}: keys are single-line `key: value`")
        });
        out.insert(k.to_string(), v.to_string());
    }
    panic!("the front matter is never closed with ---");
}

#[test]
fn the_front_matter_declares_what_openclaw_gates_on() {
    let text = std::fs::read_to_string(skill_dir().join("SKILL.md")).unwrap();
    let fm = front_matter(&text);
    assert_eq!(fm["name"], "synth-city");
    let d = &fm["description"];
    assert!(
        (100..=1024).contains(&d.len()) && !d.contains('<') && !d.contains('>'),
        "the description is what a bot matches on: 100 to 1024 characters, no angle brackets"
    );
    let v = &fm["version"];
    let parts: Vec<&str> = v.split('.').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
        "version {v:?} must be X.Y.Z (publish.sh sends it to ClawHub)"
    );
    let meta: Value = serde_json::from_str(&fm["metadata"])
        .expect("metadata must be a single-line JSON object (OpenClaw's parser)");
    let oc = &meta["openclaw"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        strings(&oc["requires"]["anyBins"]),
        ["synth-city", "curl"],
        "{oc}"
    );
    assert_eq!(strings(&oc["requires"]["bins"]), ["jq"], "{oc}");
    assert_eq!(
        strings(&oc["requires"]["env"]),
        ["SYNTH_BRIDGE_URL", "BRIDGE_API_KEY", "SYNTH_BOT_ID"],
        "{oc}"
    );
    assert_eq!(oc["primaryEnv"], "BRIDGE_API_KEY");
    // the header the skill teaches is the one the bridge reads
    let auth =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bridge/auth.rs"))
            .unwrap();
    for h in ["x-api-key", "x-bot-id"] {
        assert!(auth.contains(&format!("\"{h}\"")), "auth.rs reads {h}");
    }
    assert!(
        text.contains("X-API-Key: $BRIDGE_API_KEY") && text.contains("X-Bot-Id: $SYNTH_BOT_ID")
    );
    // every reference file is linked from SKILL.md
    for p in pages().iter().skip(1) {
        let rel = page_name(p);
        assert!(
            text.contains(&format!("]({rel})")),
            "SKILL.md does not link {rel}"
        );
    }
}

#[test]
fn every_example_of_the_skill_runs_against_a_live_bridge() {
    let started = Instant::now();
    let fleet = Fleet::start();
    let mut problems: Vec<String> = Vec::new();
    let mut ran = 0usize;
    let mut skipped = Vec::new();
    let mut report = Vec::new();

    // The references document exactly the routes the bridge serves.
    let doc: Value = serde_json::from_str(&common::stdout_of(
        Command::new(bin())
            .args(["client", "call", "GET", "/openapi.json"])
            .env("SYNTH_BRIDGE_URL", fleet.url())
            .env("BRIDGE_API_KEY", KEY),
    ))
    .unwrap();
    let served: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_ascii_uppercase(), p.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut documented = BTreeSet::new();
    for p in pages().iter().skip(1) {
        documented.extend(route_mentions(&std::fs::read_to_string(p).unwrap()));
    }
    let skill_routes =
        route_mentions(&std::fs::read_to_string(skill_dir().join("SKILL.md")).unwrap());
    for r in served.difference(&documented) {
        problems.push(format!(
            "{} {} is served but no reference file documents it",
            r.0, r.1
        ));
    }
    for r in documented.union(&skill_routes) {
        if !served.contains(r) {
            problems.push(format!(
                "{} {} is documented but not served (see /openapi.json)",
                r.0, r.1
            ));
        }
    }

    for page in pages() {
        let name = page_name(&page);
        let text = std::fs::read_to_string(&page).unwrap();
        let bs = match blocks(&text) {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mut runnable = Vec::new();
        for b in &bs {
            match kind(b) {
                Ok(Kind::Run) => {
                    problems.extend(lint(b).into_iter().map(|e| format!("{name}: {e}")));
                    runnable.push(b.clone());
                }
                Ok(Kind::Skip(why)) => skipped.push(format!("{name}:{} ({why})", b.line)),
                Ok(Kind::Other) => {}
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        if runnable.is_empty() {
            problems.push(format!("{name}: no runnable example"));
        }
        if name == "SKILL.md" {
            // each task is shown both ways
            let mut by_section: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
            for b in &runnable {
                let e = by_section.entry(b.section.as_str()).or_default();
                e.0 |= b.code.contains("synth-city client");
                e.1 |= b.code.contains("curl ");
            }
            for (section, (client, curl)) in by_section {
                if !(client && curl) {
                    problems.push(format!(
                        "SKILL.md, section {section:?}: show it through `synth-city client` and `curl`"
                    ));
                }
            }
        }

        let stem = page
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_ascii_lowercase();
        let bot = format!("oc-{stem}");
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".skill-state");
        std::fs::write(&state, "").unwrap();
        for b in &runnable {
            let r = run_example(&fleet, &bot, dir.path(), &state, &b.code);
            ran += 1;
            report.push(format!("{name}:{} {:.1}s", b.line, r.secs));
            if std::env::var_os("OPENCLAW_SKILL_SHOW").is_some() {
                eprintln!("--- {name}:{}\n{}", b.line, r.output);
            }
            if !r.ok {
                problems.push(format!(
                    "{name}:{} (section {:?}) exited {:?} after {:.1}s:\n{}\n{}",
                    b.line, b.section, r.code, r.secs, b.code, r.output
                ));
            }
        }
    }
    eprintln!(
        "ran {ran} examples in {:.1}s; not run: {skipped:?}\n{}",
        started.elapsed().as_secs_f64(),
        report.join("\n")
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
    assert!(ran >= 50, "only {ran} runnable examples");
    assert!(
        skipped.len() * 10 <= ran,
        "most examples must run; not run: {skipped:?}"
    );
}

/// Every file under `dir`, relative, with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn script(name: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(integration().join(name));
    c
}

fn output_of(c: &mut Command) -> (bool, String) {
    let o = c.output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn install_puts_the_skill_in_a_workspace_and_is_idempotent() {
    let ws = tempfile::tempdir().unwrap();
    let dest = ws.path().join("skills/synth-city");
    let want = tree(&skill_dir());
    assert!(want.contains_key("SKILL.md") && want.contains_key("references/runs.md"));

    // OPENCLAW_WORKSPACE names the workspace
    let (ok, out) = output_of(script("install.sh").env("OPENCLAW_WORKSPACE", ws.path()));
    assert!(ok, "{out}");
    assert_eq!(tree(&dest), want, "the skill's files land unchanged");
    assert!(
        out.contains(&format!(
            "installed: {} added, 0 updated, 0 removed",
            want.len()
        )),
        "{out}"
    );

    // a second run changes nothing and says so
    let before: Vec<_> = want
        .keys()
        .map(|k| std::fs::metadata(dest.join(k)).unwrap().modified().unwrap())
        .collect();
    let (ok, out) = output_of(script("install.sh").env("OPENCLAW_WORKSPACE", ws.path()));
    assert!(ok && out.contains("already up to date"), "{out}");
    let after: Vec<_> = want
        .keys()
        .map(|k| std::fs::metadata(dest.join(k)).unwrap().modified().unwrap())
        .collect();
    assert_eq!(before, after, "unchanged files are not rewritten");

    // --workspace wins; an edited file is restored, a stray one removed, ClawHub's kept
    std::fs::write(dest.join("SKILL.md"), "edited").unwrap();
    std::fs::write(dest.join("references/old.md"), "stale").unwrap();
    std::fs::create_dir_all(dest.join(".clawhub")).unwrap();
    std::fs::write(dest.join(".clawhub/origin.json"), "{}").unwrap();
    let (ok, out) = output_of(
        script("install.sh")
            .arg("--workspace")
            .arg(ws.path())
            .env("OPENCLAW_WORKSPACE", "/nonexistent/elsewhere"),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("update SKILL.md") && out.contains("remove references/old.md"),
        "{out}"
    );
    let mut got = tree(&dest);
    assert_eq!(
        got.remove(".clawhub/origin.json").as_deref(),
        Some(&b"{}"[..])
    );
    assert_eq!(got, want);

    // a dry run changes nothing; a bad flag is named
    let other = tempfile::tempdir().unwrap();
    let (ok, out) = output_of(
        script("install.sh")
            .args(["--dry-run", "--workspace"])
            .arg(other.path()),
    );
    assert!(ok && out.contains("would add SKILL.md"), "{out}");
    assert!(!other.path().join("skills").exists());
    let (ok, out) = output_of(script("install.sh").arg("--colour"));
    assert!(!ok && out.contains("unknown argument '--colour'"), "{out}");
}

#[test]
fn publish_retries_with_backoff_and_refuses_without_clawhub() {
    let text = std::fs::read_to_string(skill_dir().join("SKILL.md")).unwrap();
    let version = front_matter(&text)["version"].clone();
    let system_path = "/usr/local/bin:/usr/bin:/bin";
    for d in system_path.split(':') {
        assert!(
            !Path::new(d).join("clawhub").exists(),
            "this test needs a PATH without clawhub; {d} has one"
        );
    }

    // No clawhub: a clear refusal that says how to get it.
    let (ok, out) = output_of(script("publish.sh").env("PATH", system_path));
    assert!(!ok, "{out}");
    assert!(
        out.contains("clawhub CLI is not installed") && out.contains("npm i -g clawhub"),
        "{out}"
    );

    // A stand-in clawhub that fails twice, then succeeds, logging its arguments.
    let stub = tempfile::tempdir().unwrap();
    let log = stub.path().join("calls");
    let count = stub.path().join("count");
    let clawhub = stub.path().join("clawhub");
    std::fs::write(
        &clawhub,
        format!(
            "#!/bin/bash\nn=$(($(cat {c} 2>/dev/null || echo 0) + 1))\necho $n > {c}\n\
             printf '%s\\n' \"$*\" >> {l}\n[ $n -ge 3 ]\n",
            c = count.display(),
            l = log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&clawhub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{system_path}", stub.path().display());
    let (ok, out) = output_of(
        script("publish.sh")
            .args(["--changelog", "first release", "--tags", "latest,sn50"])
            .env("PATH", &path)
            .env("CLAWHUB_RETRY_DELAY", "0"),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("attempt 1 of 5") && out.contains("attempt 2 of 5"),
        "{out}"
    );
    assert!(
        out.contains(&format!("published synth-city {version} (attempt 3 of 5)")),
        "{out}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let want = format!(
        "publish {} --slug synth-city --name synth-city --version {version} --changelog first \
         release --tags latest,sn50",
        skill_dir().display()
    );
    assert!(calls.iter().all(|c| *c == want), "{calls:?} vs {want}");

    // Out of attempts: a non-zero exit that says what to check.
    std::fs::write(&count, "-100").unwrap();
    let (ok, out) = output_of(
        script("publish.sh")
            .env("PATH", &path)
            .env("CLAWHUB_RETRY_DELAY", "0")
            .env("CLAWHUB_PUBLISH_ATTEMPTS", "2"),
    );
    assert!(!ok && out.contains("failed 2 times"), "{out}");
}
