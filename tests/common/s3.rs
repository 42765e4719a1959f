//! An S3-compatible server for tests: moto's server (PyPI `moto[server]`, pinned in
//! ops/requirements-moto.txt), installed on first use into `target/venvs/moto` under a file lock
//! and started per test on a free 127.0.0.1 port with IAM authentication on ([`Moto`]); the
//! `HIPPIUS_*` settings a synth-city process needs to use it as its store; every object of a
//! bucket read back with boto3 (not with our client) to check it against its key's hash.
//!
//! Does not: start Redis or any synth-city process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use publisher::store::S3Config;

use super::free_port;

/// The moto venv, installed once (under `flock`) from ops/requirements-moto.txt.
pub fn moto_venv() -> PathBuf {
    let req = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ops/requirements-moto.txt");
    super::python_venv("moto", &format!("-r '{}'", req.display()))
}

/// A moto server with authentication on; killed on drop.
pub struct Moto {
    pub child: Child,
    pub endpoint: String,
    pub access: String,
    pub secret: String,
    pub venv: PathBuf,
    /// moto's own log (werkzeug's line per answered request: `"PUT /bucket/key HTTP/1.1" 200`).
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

pub const IAM_SETUP: &str = r#"
import json, sys, urllib.request, boto3
ep = sys.argv[1]
iam = boto3.client("iam", endpoint_url=ep, region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="synth-city")
pol = iam.create_policy(PolicyName="s3-all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
iam.attach_user_policy(UserName="synth-city", PolicyArn=pol["Policy"]["Arn"])
k = iam.create_access_key(UserName="synth-city")["AccessKey"]
req = urllib.request.Request(ep + "/moto-api/reset-auth", data=b"0", method="POST",
                             headers={"Content-Type": "text/plain"})
urllib.request.urlopen(req).read()
print(k["AccessKeyId"], k["SecretAccessKey"])
"#;

impl Moto {
    pub fn start() -> Moto {
        let venv = moto_venv();
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        super::wait_listening(port, 60, "moto_server");
        let mut m = Moto {
            child,
            endpoint,
            access: String::new(),
            secret: String::new(),
            venv,
            log,
            _dir: dir,
        };
        let out = m.python(IAM_SETUP, &[&m.endpoint.clone()]);
        let mut it = out.split_whitespace();
        m.access = it.next().expect("access key").to_string();
        m.secret = it.next().expect("secret key").to_string();
        m
    }

    /// Runs a Python snippet in the venv (boto3 is there); returns stdout.
    pub fn python(&self, code: &str, args: &[&str]) -> String {
        let out = Command::new(self.venv.join("bin/python"))
            .arg("-c")
            .arg(code)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn config(&self, bucket: &str) -> S3Config {
        let mut c = S3Config::new(&self.endpoint, &self.access, &self.secret, bucket);
        c.attempts = 3;
        c.backoff = Duration::from_millis(50);
        c.timeout = Duration::from_secs(20);
        c.part_size = 5 * 1024 * 1024;
        c
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// The settings of a synth-city process whose store is `bucket` on this server, with
    /// `timeout_secs` per request and `retries` retries.
    pub fn env(&self, bucket: &str, timeout_secs: u32, retries: u32) -> Vec<(String, String)> {
        [
            ("HIPPIUS_ENDPOINT", self.endpoint.clone()),
            ("HIPPIUS_ACCESS_KEY", self.access.clone()),
            ("HIPPIUS_SECRET_KEY", self.secret.clone()),
            ("HIPPIUS_BUCKET", bucket.to_string()),
            ("HIPPIUS_TIMEOUT_SECS", timeout_secs.to_string()),
            ("HIPPIUS_RETRIES", retries.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Every object of `bucket` under `prefix`, read with boto3: key -> (size, SHA-256 of its
    /// bytes, the SHA-256 recorded in its metadata when there is one). Empty when the bucket
    /// does not exist.
    pub fn objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> std::collections::BTreeMap<String, Object> {
        let out = self.python(
            OBJECTS,
            &[&self.endpoint, &self.access, &self.secret, bucket, prefix],
        );
        serde_json::from_str(&out).unwrap()
    }

    /// The bytes of one object, read with boto3.
    pub fn object_bytes(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self.python(
            GET_HEX,
            &[&self.endpoint, &self.access, &self.secret, bucket, key],
        );
        hex::decode(out.trim()).unwrap()
    }

    /// The request lines moto has logged so far (`PUT /bucket/key ...`).
    pub fn requests(&self) -> Vec<String> {
        super::read_log(&self.log)
            .lines()
            .filter_map(|l| {
                l.split_once('"')
                    .map(|(_, r)| r.split('"').next().unwrap_or("").to_string())
            })
            .collect()
    }
}

/// One object as [`Moto::objects`] reads it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Object {
    pub size: u64,
    pub sha256: String,
    pub recorded: Option<String>,
}

const OBJECTS: &str = r#"
import hashlib, json, sys, boto3
ep, ak, sk, bucket, prefix = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                  aws_access_key_id=ak, aws_secret_access_key=sk)
out = {}
try:
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix))
except s3.exceptions.NoSuchBucket:
    pages = []
for page in pages:
    for o in page.get("Contents", []):
        r = s3.get_object(Bucket=bucket, Key=o["Key"])
        body = r["Body"].read()
        out[o["Key"]] = {"size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                         "recorded": r.get("Metadata", {}).get("sha256")}
print(json.dumps(out))
"#;

const GET_HEX: &str = r#"
import sys, boto3
ep, ak, sk, bucket, key = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                  aws_access_key_id=ak, aws_secret_access_key=sk)
print(s3.get_object(Bucket=bucket, Key=key)["Body"].read().hex())
"#;
