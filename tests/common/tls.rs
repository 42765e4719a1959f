//! Redis over TLS for tests: a PKI made with the `openssl` CLI (a CA, a server certificate for
//! 127.0.0.1, a client certificate, an unrelated CA), a `redis-server` listening only with TLS
//! and the ACL users `synth-city ops redis-acl` prints ([`TlsRedis`]), each role's URL with the
//! test's passwords, and the checks on Redis's ACL LOG.
//!
//! Does not: start plain Redis (see [`super::RedisServer`]) or any synth-city process.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use engine::config::RedisTls;
use sha2::Digest;

use super::{bin, free_port};

pub const PW: [(&str, &str); 4] = [
    ("worker", "worker-password-0123456789"),
    ("scheduler", "scheduler-password-0123456"),
    ("bridge", "bridge-password-0123456789"),
    ("operator", "operator-password-01234567"),
];

pub fn pw(role: &str) -> &'static str {
    PW.iter().find(|(r, _)| *r == role).unwrap().1
}

/// Runs openssl with `args` in `dir`; fails the test with its stderr.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (ops/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl req` with a new unencrypted P-256 key `<name>.key`, and `args`.
pub fn req_with_new_key(dir: &Path, name: &str, args: &[&str]) {
    let key = format!("{name}.key");
    let mut all = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
    ];
    all.extend_from_slice(args);
    openssl(dir, &all);
}

/// A CA (`<name>.crt`, `<name>.key`) made in `dir`.
pub fn make_ca(dir: &Path, name: &str) {
    req_with_new_key(
        dir,
        name,
        &[
            "-x509",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=synth-city test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A leaf certificate `<name>.crt` + `<name>.key` signed by the CA `ca`, with `ext` (its
/// subjectAltName and extendedKeyUsage).
pub fn make_leaf(dir: &Path, ca: &str, name: &str, ext: &str) {
    fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    req_with_new_key(
        dir,
        name,
        &[
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// The test's PKI in `dir`: `ca`, a server certificate for 127.0.0.1 and localhost, a client
/// certificate, and an unrelated CA `other-ca`.
pub fn make_pki(dir: &Path) {
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    make_leaf(
        dir,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    make_leaf(dir, "ca", "client", "extendedKeyUsage=clientAuth\n");
}

/// A `synth-city` command with prefix `t`, over `url`, trusting `ca`.
pub fn sc(url: &str, ca: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["--redis-url", url, "--prefix", "t"])
        .env("RUST_LOG", "warn")
        .env("SYNTH_REDIS_CA", ca)
        .env_remove("REDIS_URL")
        .env_remove("SYNTH_REDIS_CLIENT_CERT")
        .env_remove("SYNTH_REDIS_CLIENT_KEY");
    cmd
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Enqueues one `sleep` job of `ms` milliseconds as `url`'s user; its id.
pub fn enqueue_sleep(url: &str, ca: &Path, ms: u64) -> String {
    let out = ok(sc(url, ca).args([
        "jobs",
        "enqueue",
        "--type",
        "sleep",
        "--payload",
        &format!(r#"{{"ms":{ms}}}"#),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["id"].as_str().unwrap().to_string()
}

/// The ACL file `synth-city ops redis-acl` prints for `prefix` with the test's passwords.
pub fn acl_file(prefix: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new(bin());
    cmd.args(["--prefix", prefix, "ops", "redis-acl"])
        .args(extra);
    for (role, p) in PW {
        cmd.env(format!("SYNTH_REDIS_{}_PASSWORD", role.to_uppercase()), p);
    }
    let file = super::stdout_of(&mut cmd);
    // Each user's line holds the SHA-256 of the password given, never the password.
    for line in file.lines().filter(|l| !l.starts_with("user default ")) {
        let (role, p) = PW
            .iter()
            .find(|(r, _)| line.contains(&format!("{r} reset on ")))
            .unwrap_or_else(|| panic!("a user of no role: {line}"));
        let hash = hex::encode(sha2::Sha256::digest(p.as_bytes()));
        assert!(line.contains(&format!(" #{hash} ")), "{role}: {line}");
        assert!(!line.contains(p), "{line}");
    }
    file
}

/// A `redis-server` listening only with TLS on a free port, with ACL users.
pub struct TlsRedis {
    pub child: Child,
    pub port: u16,
    /// The CA that signed the server's certificate (and the client's).
    pub ca: PathBuf,
}

impl TlsRedis {
    /// Makes the test's PKI in `dir` ([`make_pki`]) and starts the server with the ACL users
    /// `users` and the test's [`ADMIN`]; with `auth_clients`, clients need a certificate.
    pub fn start(dir: &Path, users: &str, auth_clients: bool) -> Self {
        make_pki(dir);
        let aclfile = dir.join("users.acl");
        fs::write(&aclfile, format!("{users}{ADMIN}")).unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--tls-port")
            .arg(port.to_string())
            .arg("--tls-cert-file")
            .arg(dir.join("server.crt"))
            .arg("--tls-key-file")
            .arg(dir.join("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(dir.join("ca.crt"))
            .args([
                "--tls-auth-clients",
                if auth_clients { "yes" } else { "no" },
            ])
            .arg("--aclfile")
            .arg(&aclfile)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (ops/test.sh installs it)");
        super::wait_listening(port, 10, "redis-server");
        TlsRedis {
            child,
            port,
            ca: dir.join("ca.crt"),
        }
    }

    /// The TLS files of a client trusting the test's CA.
    pub fn tls(&self) -> RedisTls {
        RedisTls {
            ca: Some(self.ca.clone()),
            client: None,
        }
    }

    pub fn url(&self, role: &str) -> String {
        format!("rediss://{role}:{}@127.0.0.1:{}/", pw(role), self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A synchronous connection as `url` trusting `tls`'s files (through the project's one
/// client constructor).
pub fn connect(url: &str, tls: &RedisTls) -> redis::RedisResult<redis::Connection> {
    let client = tls.client(url).expect("client");
    client.get_connection_with_timeout(Duration::from_secs(3))
}

/// The test's own administrator, added to the printed file: it reads ACL LOG (no role may).
pub const ADMIN: &str = "user admin on >admin-password-0123456789 ~* &* +@all\n";

/// Fails the test unless Redis's ACL LOG is empty: no command or key was refused to anyone.
pub fn assert_nothing_refused(redis: &TlsRedis, tls: &RedisTls) {
    let mut adm = connect(
        &format!(
            "rediss://admin:admin-password-0123456789@127.0.0.1:{}/",
            redis.port
        ),
        tls,
    )
    .unwrap();
    let refused: redis::Value = redis::cmd("ACL").arg("LOG").query(&mut adm).unwrap();
    assert!(
        matches!(&refused, redis::Value::Array(a) if a.is_empty()),
        "ACL LOG: {refused:?}"
    );
}
