//! The bridge's connection limits, against a real `synth-city bridge` process and a real
//! redis-server: half-open connections closed by the header-read timeout while normal requests
//! are served, idle keep-alive connections closed, JSON bodies only (415), the `/events` cap per
//! bot (429), and client disconnects never logged at ERROR (the bridge's stderr is read).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use common::RedisServer;
use common::{cli_command, free_port, read_log, spawn_logged, stdout_of, wait_listening};

struct Bridge {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bridge {
    fn start(redis: &RedisServer, flags: &[&str]) -> Bridge {
        Self::start_keyed(redis, flags, None)
    }

    /// [`Bridge::start`], with `BRIDGE_API_KEY` set to `key` when given.
    fn start_keyed(redis: &RedisServer, flags: &[&str], key: Option<&str>) -> Bridge {
        stdout_of(cli_command(&redis.url()).arg("migrate"));
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("bridge.log");
        let port = free_port();
        let mut cmd = cli_command(&redis.url());
        cmd.args(["bridge", "--port", &port.to_string()])
            .args(flags)
            .env_remove("BRIDGE_API_KEY")
            .env_remove("BRIDGE_LOOPBACK_OPERATOR")
            // Connection errors are logged at debug: show them, to check their level.
            .env("RUST_LOG", "info,synth_city::http_server=debug");
        match key {
            Some(k) => cmd.env("BRIDGE_API_KEY", k),
            None => cmd.arg("--loopback-operator"),
        };
        let child = spawn_logged(cmd, &log);
        wait_listening(port, 20, "bridge");
        Bridge {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        read_log(&self.log)
    }

    /// Lines of the bridge's log at ERROR.
    fn errors(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("ERROR"))
            .map(String::from)
            .collect()
    }
}

/// One request on its own connection: (status, body).
fn request(port: u16, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {raw:?}"));
    (status, rest.to_string())
}

/// Opens `/events` for `bot` and reads the response head: (status, the open stream).
fn open_events(port: u16, bot: &str) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: localhost\r\nX-Bot-Id: {bot}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "the bridge closed: {head:?}");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, s)
}

/// Whether the server has closed `s` (EOF or reset) before `deadline`.
fn closed_by(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 or the like, then the close
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true, // reset
        }
    }
}

#[test]
fn half_open_connections_are_closed_within_the_header_timeout() {
    let redis = RedisServer::start();
    let b = Bridge::start(&redis, &["--header-timeout-secs", "2"]);
    let opened = Instant::now();
    let mut half_open: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", b.port))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            // A partial request line, never finished.
            s.write_all(b"GET /health HT").unwrap();
            s
        })
        .collect();
    let all_open = opened.elapsed();
    // Meanwhile a normal request is served at once.
    let t = Instant::now();
    let (status, body) = request(b.port, "GET", "/health", &[], "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ok\""), "{body}");
    let health_ms = t.elapsed().as_millis();
    assert!(
        health_ms < 1000,
        "/health took {health_ms} ms beside 1,000 half-open connections"
    );
    // Every half-open one is closed by the server within the 2 s timeout (plus slack for a
    // loaded machine), counted from when the last one was opened.
    let deadline = opened + all_open + Duration::from_secs(2) + Duration::from_secs(3);
    let still_open = half_open
        .iter_mut()
        .filter_map(|s| (!closed_by(s, deadline)).then_some(()))
        .count();
    let all_closed = opened.elapsed();
    assert_eq!(
        still_open, 0,
        "{still_open} of 1000 half-open connections still open"
    );
    eprintln!(
        "1000 half-open connections: opened in {} ms, /health answered in {health_ms} ms, \
         all closed by the server {} ms after the first was opened (header timeout 2 s)",
        all_open.as_millis(),
        all_closed.as_millis()
    );
    // Not closed too early either: the first ones lived about the timeout.
    assert!(
        all_closed >= Duration::from_millis(1900),
        "closed after {all_closed:?}, before the 2 s timeout"
    );

    // An idle keep-alive connection is closed after the same timeout.
    let mut s = TcpStream::connect(("127.0.0.1", b.port)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while !String::from_utf8_lossy(&got).contains("\"ok\"") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    let idle = Instant::now();
    assert!(
        closed_by(&mut s, idle + Duration::from_secs(6)),
        "idle connection kept open"
    );
    assert!(
        idle.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        idle.elapsed()
    );

    // The timeouts were logged at debug; nothing at ERROR.
    let log = b.log();
    assert!(log.contains("header read timeout"), "{log}");
    assert_eq!(b.errors(), Vec::<String>::new());
}

#[test]
fn dropped_clients_are_not_errors() {
    let redis = RedisServer::start();
    let b = Bridge::start(&redis, &[]);
    for i in 0..50 {
        let mut s = TcpStream::connect(("127.0.0.1", b.port)).unwrap();
        match i % 3 {
            // A body cut off mid-way.
            0 => s
                .write_all(
                    b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                      Content-Length: 100\r\n\r\n{\"type\":",
                )
                .unwrap(),
            // An event stream abandoned.
            1 => s
                .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nX-Bot-Id: gone\r\n\r\n")
                .unwrap(),
            // A reset (SO_LINGER 0) right after the request.
            _ => {
                s.write_all(b"GET /queue/stats HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                socket_reset(&s);
            }
        }
        drop(s);
    }
    // The bridge still answers, and has had time to see every disconnect.
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body) = request(b.port, "GET", "/health", &[], "");
    assert_eq!(status, 200, "{body}");
    let log = b.log();
    assert!(
        log.contains("connection ended"),
        "no disconnect logged at debug: {log}"
    );
    assert_eq!(b.errors(), Vec::<String>::new());
}

/// Makes closing `s` send a reset (SO_LINGER with a zero timeout).
fn socket_reset(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a linger struct of the size given.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

#[test]
fn json_bodies_need_the_json_content_type() {
    let redis = RedisServer::start();
    let b = Bridge::start(&redis, &[]);
    let job = r#"{"type": "noop", "payload": {}}"#;
    let bot = "X-Bot-Id: ct";
    let (st, body) = request(
        b.port,
        "POST",
        "/jobs",
        &[bot, "Content-Type: text/plain"],
        job,
    );
    assert_eq!(st, 415, "{body}");
    assert!(body.contains("Content-Type: application/json"), "{body}");
    assert!(body.contains("text/plain"), "{body}");
    let (st, body) = request(b.port, "POST", "/jobs", &[bot], job);
    assert_eq!(st, 415, "{body}");
    assert!(body.contains("no Content-Type"), "{body}");
    let (st, body) = request(
        b.port,
        "POST",
        "/jobs",
        &[bot, "Content-Type: application/json; charset=utf-8"],
        job,
    );
    assert_eq!(st, 201, "{body}");
    // A DELETE with a text body is refused too; a bare DELETE is not.
    let (st, body) = request(
        b.port,
        "DELETE",
        "/schedules/none",
        &[bot, "Content-Type: text/plain"],
        "x",
    );
    assert_eq!(st, 415, "{body}");
    let (st, body) = request(b.port, "DELETE", "/schedules/none", &[bot], "");
    assert_ne!(st, 415, "{body}");
    // The seed's `_method` override still works with a JSON body, and not with another.
    let sched = r#"{"name": "s1", "cron": "0 * * * *", "job_type": "noop", "payload": {}}"#;
    let json = "Content-Type: application/json";
    let (st, body) = request(b.port, "POST", "/schedules", &[bot, json], sched);
    assert_eq!(st, 201, "{body}");
    let del = r#"{"_method": "DELETE"}"#;
    let plain = "Content-Type: text/plain";
    let (st, body) = request(b.port, "POST", "/schedules/s1", &[bot, plain], del);
    assert_eq!(st, 415, "{body}");
    let (st, body) = request(b.port, "POST", "/schedules/s1", &[bot, json], del);
    assert_eq!(st, 200, "{body}");
    let (_, body) = request(b.port, "GET", "/schedules", &[bot], "");
    assert!(!body.contains("\"s1\""), "{body}");
}

#[test]
fn event_streams_are_capped_per_bot() {
    let redis = RedisServer::start();
    let b = Bridge::start(&redis, &["--max-sse-per-bot", "2"]);
    let (st, a1) = open_events(b.port, "a");
    assert_eq!(st, 200);
    let (st, _a2) = open_events(b.port, "a");
    assert_eq!(st, 200);
    let (st, body) = request(b.port, "GET", "/events", &["X-Bot-Id: a"], "");
    assert_eq!(st, 429, "{body}");
    assert!(body.contains("2 open /events streams"), "{body}");
    assert!(body.contains("SYNTH_BRIDGE_MAX_SSE_PER_BOT"), "{body}");
    // Another bot has its own.
    let (st, _b1) = open_events(b.port, "b");
    assert_eq!(st, 200);
    // A closed stream frees its place (once the bridge notices: at its next write).
    drop(a1);
    let t = Instant::now();
    loop {
        let (st, mut s) = open_events(b.port, "a");
        if st == 200 {
            break;
        }
        drop(s.flush());
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "the closed stream's place was not freed"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "a closed stream's place was freed after {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(b.errors(), Vec::<String>::new());
}

#[test]
fn connections_beyond_the_cap_wait_for_a_free_one() {
    let redis = RedisServer::start();
    let b = Bridge::start(
        &redis,
        &["--max-connections", "3", "--header-timeout-secs", "2"],
    );
    // Three half-open connections take every slot.
    let opened = Instant::now();
    let _held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", b.port)).unwrap();
            s.write_all(b"GET /health HT").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A fourth is not refused: it waits in the backlog until the timeout frees a slot.
    let (status, body) = request(b.port, "GET", "/health", &[], "");
    let waited = opened.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        waited >= Duration::from_millis(1800),
        "answered after {waited:?}, before a slot was free"
    );
    assert!(waited < Duration::from_secs(6), "waited {waited:?}");
    eprintln!(
        "at the cap of 3, a fourth connection was served after {} ms",
        waited.as_millis()
    );
}

/// Guessing the key is throttled: past 60 failed authentications a minute (over every
/// caller), a missing or wrong key gets 429 with `Retry-After` instead of 401, while the right
/// key is still served.
#[test]
fn failed_authentications_past_the_budget_get_429() {
    let redis = RedisServer::start();
    let key = "the-bridge-key-0123456789";
    let b = Bridge::start_keyed(&redis, &[], Some(key));
    let mut statuses = Vec::new();
    for i in 0..70 {
        let wrong = format!("X-API-Key: guess-{i}");
        statuses.push(request(b.port, "GET", "/queue/stats", &[&wrong], "").0);
    }
    assert!(statuses[..60].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[60..].iter().all(|s| *s == 429), "{statuses:?}");
    let (st, body) = request(b.port, "GET", "/queue/stats", &[], "");
    assert_eq!(st, 429, "a missing key counts too: {body}");
    assert!(body.contains("X-API-Key"), "{body}");
    let right = format!("X-API-Key: {key}");
    assert_eq!(request(b.port, "GET", "/queue/stats", &[&right], "").0, 200);
}
