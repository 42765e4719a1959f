//! Settings end to end: the binary run in a temp dir holding a `.env` (and a `synth-city.toml`),
//! with a cleared environment. `.env` values reach `agent` (a local chat-completions stand-in),
//! `mine --check` (the wallet), `migrate`, `bridge` and `client` (a real bridge on a real
//! redis-server); precedence is env > .env > config file, and a flag beats the environment;
//! `config show` names each value's source and redacts secrets; a bad config file is a clear
//! error.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, free_port, ChatServer, RedisServer};
use serde_json::Value;

const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
const BOB: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";

/// A temp dir holding `files` (name, content).
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

/// The binary with `dir` as its working directory and only `env` in its environment.
fn cmd(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir)
        .args(args)
        .env_clear()
        .envs(env.iter().copied());
    c
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    cmd(dir, args, env).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn by_name<'a>(show: &'a Value, name: &str) -> &'a Value {
    show["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in config show"))
}

#[test]
fn config_show_gives_each_value_its_source_and_redacts_secrets() {
    let d = dir_with(&[
        (
            "synth-city.toml",
            "# this deployment's defaults\n\
             REDIS_URL = \"redis://:filepass@127.0.0.1:6390/0\"\n\
             SYNTH_BOT_ID = \"from-file\"\n\
             HIPPIUS_BUCKET = \"file-bucket\"\n\
             LLM_RETRIES = 7\n",
        ),
        (
            ".env",
            "CHUTES_API_KEY=sk-dotenv-0123456789xy\n\
             SYNTH_BOT_ID=from-dotenv\n\
             HIPPIUS_BUCKET=dotenv-bucket\n\
             NOT_A_SETTING=1\n",
        ),
    ]);
    let env = [
        ("HIPPIUS_BUCKET", "env-bucket"),
        ("SYNTH_CITY_PREFIX", "envprefix"),
        ("HF_TOKEN", "hf_abcdefghijklmnop"),
    ];
    let o = run(
        d.path(),
        &["--prefix", "flagprefix", "config", "show", "--json"],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for secret in ["filepass", "sk-dotenv", "hf_abcdef"] {
        assert!(!out.contains(secret), "{secret} shown: {out}");
    }
    let v: Value = serde_json::from_str(&out).unwrap();
    let cases = [
        // (name, value, source)
        (
            "REDIS_URL",
            Value::from("redis://:****@127.0.0.1:6390/0"),
            "config_file",
        ),
        ("LLM_RETRIES", Value::from("7"), "config_file"),
        ("SYNTH_BOT_ID", Value::from("from-dotenv"), "dotenv"),
        ("CHUTES_API_KEY", Value::from("****xy"), "dotenv"),
        ("HIPPIUS_BUCKET", Value::from("env-bucket"), "environment"),
        ("HF_TOKEN", Value::from("****op"), "environment"),
        ("SYNTH_CITY_PREFIX", Value::from("flagprefix"), "flag"),
        (
            "PYTH_HERMES_URL",
            Value::from("https://hermes.pyth.network"),
            "default",
        ),
        ("HF_REPO_ID", Value::Null, "unset"),
    ];
    for (name, value, source) in cases {
        let s = by_name(&v, name);
        assert_eq!(
            (&s["value"], s["source"].as_str()),
            (&value, Some(source)),
            "{s}"
        );
    }
    let file = by_name(&v, "REDIS_URL")["source_detail"].as_str().unwrap();
    assert!(file.ends_with("synth-city.toml"), "{file}");
    assert_eq!(by_name(&v, "CHUTES_API_KEY")["secret"], true);
    assert_eq!(v["ignored_dotenv"], serde_json::json!(["NOT_A_SETTING"]));

    // The table: a global flag named as the source, URL credentials hidden, the stray key noted.
    let o = run(
        d.path(),
        &["config", "show", "--redis-url", "redis://u:flagpass@h:1"],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        !out.contains("flagpass") && !out.contains("sk-dotenv"),
        "{out}"
    );
    let row = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row: {out}"))
            .to_string()
    };
    assert!(row("REDIS_URL").contains("redis://u:****@h:1"), "{out}");
    assert!(row("REDIS_URL").ends_with("flag --redis-url"), "{out}");
    assert!(row("SYNTH_CITY_PREFIX").ends_with("environment"), "{out}");
    assert!(row("SYNTH_BOT_ID").contains(".env"), "{out}");
    assert!(out.contains("note: .env sets NOT_A_SETTING"), "{out}");
}

#[test]
fn a_bad_config_file_is_a_clear_error() {
    // An unknown key: the file, the line, the key and the nearest known name.
    let d = dir_with(&[(
        "synth-city.toml",
        "REDIS_URL = \"redis://127.0.0.1:1\"\n\nREDIS_ULR = \"redis://typo\"\n",
    )]);
    let o = run(d.path(), &["config", "show"], &[]);
    assert!(!o.status.success());
    let e = text(&o.stderr);
    assert!(e.contains("synth-city.toml:3:"), "{e}");
    assert!(
        e.contains("REDIS_ULR") && e.contains("nearest known name is REDIS_URL"),
        "{e}"
    );
    // The file is read before any command runs.
    assert!(!run(d.path(), &["components"], &[]).status.success());

    // Malformed TOML, from --config and from SYNTH_CITY_CONFIG: file and line.
    let d = dir_with(&[("conf/other.toml", "SYNTH_BOT_ID = \"a\"\nSYNTH_BOT_ID =\n")]);
    for (args, env) in [
        (
            vec!["--config", "conf/other.toml", "config", "show"],
            vec![],
        ),
        (
            vec!["config", "show"],
            vec![("SYNTH_CITY_CONFIG", "conf/other.toml")],
        ),
    ] {
        let o = run(d.path(), &args, &env);
        assert!(!o.status.success());
        let e = text(&o.stderr);
        assert!(e.contains("other.toml:2:"), "{e}");
    }
    // A named file must exist.
    let o = run(
        d.path(),
        &["--config", "missing.toml", "config", "show"],
        &[],
    );
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("missing.toml"));
}

#[test]
fn agent_takes_its_endpoint_key_and_model_from_dotenv() {
    let llm = ChatServer::start();
    let d = dir_with(&[
        // the config file's endpoint is dead: .env must win over it
        (
            "synth-city.toml",
            "CHUTES_BASE_URL = \"http://127.0.0.1:9/v1\"\nLLM_RETRIES = 0\n",
        ),
        (
            ".env",
            &format!(
                "CHUTES_API_KEY=dotenv-key-0123456789\nCHUTES_BASE_URL={}\nPLANNER_MODEL=dotenv-model\n",
                llm.base_url
            ),
        ),
    ]);
    let o = run(
        d.path(),
        &[
            "agent",
            "--name",
            "planner",
            "--json",
            "--message",
            "Plan one experiment.",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["model"], "dotenv-model");
    assert_eq!(v["success"], true);
    let heads = llm.heads.lock().unwrap();
    assert!(!heads.is_empty(), "the agent never called the server");
    assert!(
        heads
            .iter()
            .all(|h| h.contains("authorization: bearer dotenv-key-0123456789")),
        "{heads:?}"
    );
}

#[test]
fn mine_check_uses_the_wallet_named_in_dotenv() {
    let d = dir_with(&[
        (
            "dotenv-wallets/dw/hotkeys/dh",
            &format!("{{\"ss58Address\": \"{BOB}\"}}"),
        ),
        (
            ".env",
            "BT_WALLET_PATH=dotenv-wallets\nBT_WALLET_NAME=dw\nBT_HOTKEY_NAME=dh\n\
             PYTH_HERMES_URL=http://127.0.0.1:9\nBINANCE_API_URL=http://127.0.0.1:9\n",
        ),
    ]);
    let port = free_port().to_string();
    // Bars for the check's answers (their last close is the spot when no venue answers).
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sample");
    let args = [
        "mine",
        "--check",
        "--json",
        "--model",
        "gbm",
        "--allow-hotkeys",
        ALICE,
        "--port",
        &port,
        "--data-dir",
        sample,
    ];
    let o = run(d.path(), &args, &[]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(o.status.success(), "{v} {}", text(&o.stderr));
    let wallet = v["checks"]["wallet"]["detail"].as_str().unwrap();
    assert!(
        wallet.contains(BOB) && wallet.contains("dotenv-wallets/dw/hotkeys/dh"),
        "{wallet}"
    );
    // The environment beats .env (a wallet that is not there), and a flag beats both.
    let o = run(d.path(), &args, &[("BT_HOTKEY_NAME", "env-hotkey")]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(!o.status.success());
    let wallet = v["checks"]["wallet"]["detail"].as_str().unwrap();
    assert!(wallet.contains("dw/hotkeys/env-hotkey"), "{wallet}");
    let mut flagged = args.to_vec();
    flagged.extend(["--wallet-hotkey", "dh"]);
    let o = run(d.path(), &flagged, &[("BT_HOTKEY_NAME", "env-hotkey")]);
    assert!(o.status.success(), "{}", text(&o.stdout));
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bridge_and_client_take_url_and_key_from_dotenv() {
    let redis = RedisServer::start();
    // The bridge's side: Redis, prefix and API key only in its .env.
    let server = dir_with(&[(
        ".env",
        &format!(
            "REDIS_URL={}\nSYNTH_CITY_PREFIX=st\nBRIDGE_API_KEY=sekret\n",
            redis.url()
        ),
    )]);
    let o = run(server.path(), &["migrate"], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let port = free_port();
    let _bridge = Killed(
        cmd(
            server.path(),
            &["bridge", "--port", &port.to_string()],
            &[("RUST_LOG", "warn")],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the bridge did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The client's side: the config file points at nothing; .env at the bridge, with the key.
    let client = dir_with(&[
        (
            "synth-city.toml",
            "SYNTH_BRIDGE_URL = \"http://127.0.0.1:9\"\nBRIDGE_API_KEY = \"from-file\"\n",
        ),
        (
            ".env",
            &format!("SYNTH_BRIDGE_URL=http://127.0.0.1:{port}\nBRIDGE_API_KEY=sekret\n"),
        ),
    ]);
    let o = run(client.path(), &["client", "health"], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let h: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(h["redis"], "ok", "the bridge's details need the key: {h}");
    // The environment beats .env; a flag beats the environment.
    let wrong = [("BRIDGE_API_KEY", "wrong")];
    let o = run(client.path(), &["client", "workers"], &wrong);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("X-API-Key is wrong"),
        "{}",
        text(&o.stderr)
    );
    let o = run(
        client.path(),
        &["client", "--key", "sekret", "workers"],
        &wrong,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
}
