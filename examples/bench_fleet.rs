//! The fleet's numbers (docs/benchmarks.md), a program rather than a test:
//!
//! 1. time from a backlog to the first pod running, on the Basilica stand-in of the tests
//!    (tests/common/basilica.rs: a real Redis, a real `synth-city fleet run` process, the pod a
//!    real `synth-city worker` process; "running" is the stand-in's phase, its health probe
//!    answered), over `RUNS` runs (default 5) at a fleet tick of `TICK_MS` (default 1000);
//! 2. decisions per second of `fleet::decide::decide` on a fleet of 20 pods and 30 offerings.
//!
//! `cargo build && cargo run --example bench_fleet [RUNS] [TICK_MS]` (the binary must be
//! built: the fleet and the pods run it). It measures; it asserts nothing beyond progress.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::basilica::{offering, Basilica};
use common::{cli_command, stdout_of, Killed, RedisServer};
use synth_city::basilica::Offering;
use synth_city::fleet::decide::{decide, Backlog, Inputs, PodView, Policy};

/// (backlog to the pod's create, backlog to the pod running).
fn first_pod_running(tick_ms: u64) -> (Duration, Duration) {
    let redis = RedisServer::start();
    stdout_of(cli_command(&redis.url()).arg("migrate"));
    let b = Basilica::start(vec![offering("o1", "A4000", "0.50")], 100.0);
    stdout_of(cli_command(&redis.url()).args([
        "jobs",
        "enqueue",
        "--type",
        "sleep",
        "--payload",
        "{\"ms\": 60000}",
    ]));
    let t0 = Instant::now();
    let mut cmd = cli_command(&redis.url());
    cmd.args([
        "fleet",
        "run",
        "--job-types",
        "sleep",
        "--pod-roles",
        "sleep",
    ])
    .args(["--pod-device", "cpu", "--tick-ms", &tick_ms.to_string()])
    .env("BASILICA_API_URL", &b.url)
    .env("BASILICA_API_TOKEN", &b.token)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _fleet = Killed(cmd.spawn().unwrap());
    let created = loop {
        if !b.live().is_empty() {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no pod rented");
        std::thread::sleep(Duration::from_millis(5));
    };
    let pod = b.live()[0].clone();
    loop {
        if b.phase(&pod).as_deref() == Some("Running") {
            return (created, t0.elapsed());
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "pod never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (decisions per second, pods rented per decision).
fn decisions_per_sec() -> (f64, usize) {
    let policy = Policy {
        allowed_gpu_types: vec!["A4000".into(), "RTX4090".into(), "A100".into()],
        max_rate_per_gpu: 2.0,
        budget_per_hour: 30.0,
        budget_per_day: 500.0,
        gpus_per_pod: 1,
        jobs_per_pod: 2,
        max_pods: 40,
        idle_ms: 600_000,
        startup_grace_ms: 900_000,
    };
    let types = ["A4000", "RTX4090", "A100", "H100", "B200", "L40S"];
    let offerings: Vec<Offering> = (0..30)
        .map(|i| Offering {
            id: format!("o{i}"),
            provider: "p".into(),
            gpu_type: types[i % types.len()].into(),
            gpu_count: 1 + (i % 2) as u32,
            gpu_memory_gb_per_gpu: Some(24),
            hourly_rate: 0.3 + i as f64 * 0.1,
            hourly_rate_per_gpu: None,
            availability: i % 7 != 0,
            region: "eu".into(),
        })
        .collect();
    let pods: Vec<PodView> = (0..20)
        .map(|i| PodView {
            name: format!("sc-{i}"),
            gpu_type: "A4000".into(),
            rate: 0.5,
            phase: if i % 5 == 0 { "Pending" } else { "Running" }.into(),
            created_ms: 0,
            last_busy_ms: (i as u64) * 60_000,
            worker_live: i % 9 != 0,
            in_flight: (i % 3) as u32,
            manual: i == 3,
        })
        .collect();
    let input = Inputs {
        now_ms: 1_000_000,
        backlog: Backlog {
            waiting: 57,
            in_flight: 18,
            oldest_ms: 90_000,
        },
        pods: &pods,
        offerings: &offerings,
        balance: Some(250.0),
        spent_today: 120.0,
    };
    let start = Instant::now();
    let mut n = 0usize;
    let mut rented = 0usize;
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..1000 {
            let d = decide(&policy, std::hint::black_box(&input));
            rented += std::hint::black_box(d).rent.len();
        }
        n += 1000;
    }
    (n as f64 / start.elapsed().as_secs_f64(), rented / n)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let tick: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let mut created = Vec::new();
    let mut running = Vec::new();
    for _ in 0..runs.max(1) {
        let (c, r) = first_pod_running(tick);
        created.push(c.as_secs_f64() * 1000.0);
        running.push(r.as_secs_f64() * 1000.0);
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2], v[v.len() - 1])
    };
    let (cmin, cmed, cmax) = stats(&mut created);
    let (rmin, rmed, rmax) = stats(&mut running);
    println!(
        "backlog -> pod created (ms, tick {tick} ms, {runs} runs): min {cmin:.0} median {cmed:.0} max {cmax:.0}"
    );
    println!(
        "backlog -> pod running (ms, tick {tick} ms, {runs} runs): min {rmin:.0} median {rmed:.0} max {rmax:.0}"
    );
    let (dps, rented) = decisions_per_sec();
    println!("decide: {dps:.0} decisions/s (20 pods, 30 offerings; {rented} rentals per decision)");
}
