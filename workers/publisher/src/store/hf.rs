//! Publishing a run's model to the Hugging Face Hub over its HTTP API.
//!
//! The path is the one the Hub documents and `huggingface_hub` follows:
//! 1. `POST /api/repos/create` (`{"name", "organization", "type": "model", "private"}`;
//!    409 = the repo exists, which is fine);
//! 2. `POST /api/models/{repo}/preupload/{revision}` with each file's path,
//!    size and a base64 sample: the Hub answers each file's upload mode
//!    (`regular` or `lfs`) and the object id it holds at that path now;
//! 3. files whose id already matches (sha256 for LFS files, the git blob sha1
//!    for regular ones) are unchanged; when every file is unchanged nothing is
//!    committed, so publishing the same run twice makes no duplicate commit;
//! 4. LFS files go through the LFS batch API
//!    (`POST {repo}.git/info/lfs/objects/batch`, `basic` transfer: `PUT` to the
//!    returned `href`, then `POST` to the `verify` action when there is one);
//! 5. `POST /api/models/{repo}/commit/{revision}` with NDJSON lines: a
//!    `header` (summary, description), then `file` (base64 content) or
//!    `lfsFile` (path, `algo: sha256`, oid, size) operations.
//!
//! It also reads the Hub as a source (the seed's `list_hf_models`,
//! `fetch_hf_model_card`, `fetch_hf_artifact`): `GET /api/models?author=&search=`
//! lists models, `GET /{repo}/resolve/{revision}/{file}` reads a file at a
//! revision (the model card is `README.md`), following the Hub's redirect to
//! its CDN for LFS files, with a size cap and the file name checked (no `..`,
//! no absolute path). Reads need no token; `HF_TOKEN`, when set, is sent so a
//! private repo can be read.
//!
//! `HF_TOKEN` and `HF_REPO_ID` configure it; `HF_ENDPOINT` points it at
//! another server (the tests' local Hub). Requests are retried with backoff
//! on connection errors, 429 and 5xx; 401/403 are reported at once.
//!
//! It does not clone repos, resolve git history or cache what it reads.

use std::time::Duration;

use jobs::retry::{Failure, RetryPolicy};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::records::{self, hf_published_key};
use super::{Store, StoreError, StoreExt};
use trainer::experiments::ExperimentRecord;

/// The git-lfs batch API's media type (request and answer).
const LFS_JSON: &str = "application/vnd.git-lfs+json";

/// The most bytes read of an API answer (JSON, error bodies).
const ANSWER_CAP: usize = 16 << 20;

/// The default cap on a file read from the Hub (`artifact`).
pub const ARTIFACT_CAP: usize = 10 << 20;

/// Reads a response's body, at most `cap` bytes: `Err(None)` past the cap,
/// `Err(Some(e))` when the body breaks off.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, Option<String>> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(None);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| Some(e.to_string()))? {
        if out.len() + chunk.len() > cap {
            return Err(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A Hub operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HfError {
    #[error("Hugging Face configuration: {0}")]
    Config(String),
    #[error("{op}: the Hub refused the token (HTTP {status}: {detail}); check HF_TOKEN has write access to {repo}")]
    Unauthorized {
        op: String,
        repo: String,
        status: u16,
        detail: String,
    },
    #[error("{op}: HTTP {status}: {detail}")]
    Http {
        op: String,
        status: u16,
        detail: String,
    },
    #[error("{op}: the Hub did not answer after {attempts} attempts (last error: {last})")]
    Unavailable {
        op: String,
        attempts: u32,
        last: String,
    },
    #[error("{op}: unexpected answer: {detail}")]
    Protocol { op: String, detail: String },
    /// A request the caller got wrong (a repo id, revision or file name);
    /// `field` names what to fix.
    #[error("{field}: {detail}")]
    BadInput { field: String, detail: String },
    /// The Hub answered 404: no such repo, revision or file.
    #[error("{op}: not found on the Hub ({detail})")]
    NotFound { op: String, detail: String },
    /// The file is larger than the cap the caller set.
    #[error("{op}: the file is larger than the cap of {cap} bytes; raise the cap or download it from the Hub directly")]
    TooLarge { op: String, cap: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where and how to publish.
#[derive(Clone)]
pub struct HfConfig {
    /// `https://huggingface.co` unless `HF_ENDPOINT` says otherwise.
    pub endpoint: String,
    pub token: String,
    /// `namespace/name`.
    pub repo_id: String,
    pub revision: String,
    /// Create the repo private (`HF_PRIVATE=1`).
    pub private: bool,
    pub attempts: u32,
    pub backoff: Duration,
    pub timeout: Duration,
}

impl std::fmt::Debug for HfConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfConfig")
            .field("endpoint", &self.endpoint)
            .field("repo_id", &self.repo_id)
            .field("revision", &self.revision)
            .field("token", &"<hidden>")
            .finish_non_exhaustive()
    }
}

impl HfConfig {
    pub fn new(endpoint: &str, token: &str, repo_id: &str) -> Self {
        HfConfig {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: token.to_string(),
            repo_id: repo_id.to_string(),
            revision: "main".into(),
            private: false,
            attempts: 4,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(300),
        }
    }

    /// `HF_TOKEN`, `HF_REPO_ID`, optional `HF_ENDPOINT` and `HF_PRIVATE`.
    /// `None` when neither token nor repo is set; an error naming the missing
    /// one when only one is.
    pub fn from_env() -> Result<Option<Self>, HfError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let (token, repo) = (var("HF_TOKEN"), var("HF_REPO_ID"));
        let (token, repo) = match (token, repo) {
            (None, None) => return Ok(None),
            (Some(t), Some(r)) => (t, r),
            (None, Some(_)) => {
                return Err(HfError::Config(
                    "HF_REPO_ID is set but HF_TOKEN is not".into(),
                ))
            }
            (Some(_), None) => {
                return Err(HfError::Config(
                    "HF_TOKEN is set but HF_REPO_ID is not".into(),
                ))
            }
        };
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into());
        let mut cfg = HfConfig::new(&endpoint, token.trim(), repo.trim());
        cfg.private = var("HF_PRIVATE").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
        cfg.validate()?;
        Ok(Some(cfg))
    }

    /// Like [`from_env`](Self::from_env) but both variables are required.
    pub fn require_from_env() -> Result<Self, HfError> {
        Self::from_env()?.ok_or_else(|| {
            HfError::Config("publishing to the Hub needs HF_TOKEN and HF_REPO_ID".into())
        })
    }

    /// For reading the Hub: `HF_ENDPOINT` (default `https://huggingface.co`),
    /// and `HF_TOKEN` and `HF_REPO_ID` when set (neither is required: a public
    /// repo reads without a token; the repo is the default for reads that
    /// name none).
    pub fn reader_from_env() -> Result<Self, HfError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into());
        let cfg = HfConfig::new(
            &endpoint,
            var("HF_TOKEN").unwrap_or_default().trim(),
            var("HF_REPO_ID").unwrap_or_default().trim(),
        );
        if !cfg.repo_id.is_empty() {
            check_repo_id("HF_REPO_ID", &cfg.repo_id)
                .map_err(|e| HfError::Config(e.to_string()))?;
        }
        cfg.validate_endpoint_and_token()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), HfError> {
        check_repo_id("HF_REPO_ID", &self.repo_id).map_err(|e| HfError::Config(e.to_string()))?;
        self.validate_endpoint_and_token()
    }

    fn validate_endpoint_and_token(&self) -> Result<(), HfError> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(HfError::Config(format!(
                "HF_ENDPOINT must be an http(s) URL, got {:?}",
                self.endpoint
            )));
        }
        if self
            .token
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(HfError::Config("HF_TOKEN contains whitespace".into()));
        }
        Ok(())
    }
}

/// A name part of a repo id (namespace or name) or an author.
fn ok_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with(['-', '.'])
        && !s.contains("..")
}

/// Checks a repo id is `namespace/name`; the error names `field`.
pub fn check_repo_id(field: &str, repo_id: &str) -> Result<(), HfError> {
    match repo_id.split_once('/') {
        Some((ns, name)) if ok_name(ns) && ok_name(name) => Ok(()),
        _ => Err(HfError::BadInput {
            field: field.into(),
            detail: format!(
                "must be namespace/name (letters, digits, '-', '_', '.'), got {repo_id:?}"
            ),
        }),
    }
}

/// Checks a revision (a branch, tag or commit): letters, digits, `-_./`, no
/// `..`, at most 255 characters.
pub fn check_revision(revision: &str) -> Result<(), HfError> {
    let ok = !revision.is_empty()
        && revision.len() <= 255
        && !revision.starts_with(['/', '.', '-'])
        && !revision.contains("..")
        && revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(HfError::BadInput {
            field: "revision".into(),
            detail: format!(
                "must be a branch, tag or commit (letters, digits, '-', '_', '.', '/', no '..'), got {revision:?}"
            ),
        })
    }
}

/// Checks a file name in a repo: a relative path, no `..` or `.` segment, no
/// empty segment, no backslash or control character, at most 1000 characters.
pub fn check_filename(filename: &str) -> Result<(), HfError> {
    let bad = |why: &str| {
        HfError::BadInput {
        field: "filename".into(),
        detail: format!("{why}, got {filename:?}; give a path inside the repo such as README.md or runs/ID/spec.json"),
    }
    };
    if filename.is_empty() || filename.len() > 1000 {
        return Err(bad("must be 1 to 1000 characters"));
    }
    if filename.starts_with('/') {
        return Err(bad("must be relative (no leading '/')"));
    }
    if filename.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(bad("must not hold a backslash or control character"));
    }
    if filename
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad("must not hold '..', '.' or empty segments"));
    }
    Ok(())
}

/// Which models to list (`GET /api/models`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelQuery {
    /// The models of this user or organisation.
    pub author: Option<String>,
    /// Models whose id contains this.
    pub search: Option<String>,
    /// At most this many (1 to 1000).
    pub limit: usize,
}

impl ModelQuery {
    /// Checks the query; the error names the field.
    pub fn validate(&self) -> Result<(), HfError> {
        if let Some(a) = &self.author {
            if !ok_name(a) {
                return Err(HfError::BadInput {
                    field: "author".into(),
                    detail: format!("must be a user or organisation name (letters, digits, '-', '_', '.'), got {a:?}"),
                });
            }
        }
        if let Some(q) = &self.search {
            if q.is_empty() || q.len() > 200 || q.chars().any(char::is_control) {
                return Err(HfError::BadInput {
                    field: "search".into(),
                    detail: "must be 1 to 200 characters without control characters".into(),
                });
            }
        }
        if self.author.is_none() && self.search.is_none() {
            return Err(HfError::BadInput {
                field: "author".into(),
                detail: "give an author, a search, a repo_id or set HF_REPO_ID (its owner is the default author)".into(),
            });
        }
        if !(1..=1000).contains(&self.limit) {
            return Err(HfError::BadInput {
                field: "limit".into(),
                detail: format!("must be 1 to 1000, got {}", self.limit),
            });
        }
        Ok(())
    }
}

/// A model the Hub lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubModel {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    #[serde(
        default,
        rename(deserialize = "lastModified"),
        skip_serializing_if = "Option::is_none"
    )]
    pub last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloads: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub likes: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A file read from a repo at a revision.
#[derive(Debug, Clone, PartialEq)]
pub struct HubFile {
    pub repo_id: String,
    pub revision: String,
    pub filename: String,
    pub bytes: Vec<u8>,
}

impl HubFile {
    /// What the bridge and `--json` show: the file's name, size, sha256, and
    /// its content as `text` when it is UTF-8, else as `content_base64`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "repo_id": self.repo_id, "revision": self.revision, "filename": self.filename,
            "size": self.bytes.len(), "sha256": hex::encode(Sha256::digest(&self.bytes)),
        });
        match std::str::from_utf8(&self.bytes) {
            Ok(t) => v["text"] = json!(t),
            Err(_) => {
                v["content_base64"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(&self.bytes))
            }
        }
        v
    }
}

/// One file to put in the repo.
#[derive(Debug, Clone, PartialEq)]
pub struct HfFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

impl HfFile {
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.bytes))
    }

    /// The git blob id (what the Hub reports for a regular file).
    pub fn git_oid(&self) -> String {
        let mut h = Sha1::new();
        h.update(format!("blob {}\0", self.bytes.len()).as_bytes());
        h.update(&self.bytes);
        hex::encode(h.finalize())
    }
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HfOutcome {
    pub repo_id: String,
    /// The repo did not exist and was created.
    pub created_repo: bool,
    /// The commit made; `None` when every file was already there as is.
    pub commit_oid: Option<String>,
    pub commit_url: Option<String>,
    /// Files uploaded through LFS (not those the Hub already had).
    pub lfs_uploaded: Vec<String>,
    pub files: Vec<String>,
}

/// A client for one repo.
#[derive(Debug, Clone)]
pub struct HfClient {
    cfg: HfConfig,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct PreuploadFile {
    path: String,
    #[serde(rename = "uploadMode")]
    upload_mode: String,
    #[serde(default, rename = "shouldIgnore")]
    should_ignore: bool,
    #[serde(default)]
    oid: Option<String>,
}

enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>, &'static str),
}

impl HfClient {
    pub fn new(cfg: HfConfig) -> Result<Self, HfError> {
        cfg.validate()?;
        Self::build(cfg)
    }

    /// A client for reads ([`HfConfig::reader_from_env`]): the repo may be
    /// unset, and then every read names its repo.
    pub fn reader(cfg: HfConfig) -> Result<Self, HfError> {
        if !cfg.repo_id.is_empty() {
            cfg.validate()?;
        }
        cfg.validate_endpoint_and_token()?;
        Self::build(cfg)
    }

    /// The configured repo (`HF_REPO_ID`), when there is one.
    pub fn default_repo(&self) -> Option<&str> {
        Some(self.cfg.repo_id.as_str()).filter(|r| !r.is_empty())
    }

    /// `repo_id` when given (checked), else the configured repo; the error
    /// names `repo_id`.
    pub fn repo_or_default(&self, repo_id: Option<&str>) -> Result<String, HfError> {
        match repo_id.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => {
                check_repo_id("repo_id", r)?;
                Ok(r.to_string())
            }
            None => self
                .default_repo()
                .map(str::to_string)
                .ok_or_else(|| HfError::BadInput {
                    field: "repo_id".into(),
                    detail: "no repo given and HF_REPO_ID is not set; pass repo_id=namespace/name"
                        .into(),
                }),
        }
    }

    fn url(&self, segments: &[&str]) -> Result<reqwest::Url, HfError> {
        let mut url = reqwest::Url::parse(&self.cfg.endpoint)
            .map_err(|e| HfError::Config(format!("HF_ENDPOINT {:?}: {e}", self.cfg.endpoint)))?;
        url.path_segments_mut()
            .map_err(|_| {
                HfError::Config(format!(
                    "HF_ENDPOINT {:?} cannot be a base",
                    self.cfg.endpoint
                ))
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Lists models (`GET /api/models?author=&search=&limit=&full=true`).
    pub async fn list_models(&self, q: &ModelQuery) -> Result<Vec<HubModel>, HfError> {
        q.validate()?;
        let mut url = self.url(&["api", "models"])?;
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(a) = &q.author {
                pairs.append_pair("author", a);
            }
            if let Some(s) = &q.search {
                pairs.append_pair("search", s);
            }
            pairs.append_pair("limit", &q.limit.to_string());
            pairs.append_pair("full", "true");
        }
        let op = "list models on the Hub";
        let auth = !self.cfg.token.is_empty();
        let (status, text) = self
            .send(
                op,
                reqwest::Method::GET,
                url.as_str(),
                &Body::None,
                &[],
                auth,
            )
            .await?;
        Self::expect_ok(op, status, &text)?;
        serde_json::from_str(&text).map_err(|e| HfError::Protocol {
            op: op.into(),
            detail: format!("{e}: {}", brief(&text)),
        })
    }

    /// Reads `filename` of `repo_id` (or the configured repo) at `revision`
    /// (`GET /{repo}/resolve/{revision}/{filename}`), at most `cap` bytes.
    pub async fn read_file(
        &self,
        repo_id: Option<&str>,
        revision: &str,
        filename: &str,
        cap: usize,
    ) -> Result<HubFile, HfError> {
        let repo = self.repo_or_default(repo_id)?;
        check_revision(revision)?;
        check_filename(filename)?;
        let (ns, name) = repo.split_once('/').expect("checked");
        let mut segs = vec![ns, name, "resolve", revision];
        segs.extend(filename.split('/'));
        let url = self.url(&segs)?;
        let op = format!("read {filename} of {repo} at {revision}");
        let auth = !self.cfg.token.is_empty();
        let (status, bytes) = self
            .send_raw(&op, reqwest::Method::GET, url.as_str(), &Body::None, &[], auth, cap)
            .await
            .map_err(|e| match e {
                // The Hub answers 401 for a repo that does not exist or is private.
                HfError::Unauthorized { status, detail, .. } => HfError::NotFound {
                    op: op.clone(),
                    detail: format!(
                        "HTTP {status}: {detail}; the repo does not exist or is private (a private one needs HF_TOKEN with read access)"
                    ),
                },
                e => e,
            })?;
        if status == 404 {
            return Err(HfError::NotFound {
                op,
                detail: brief(&String::from_utf8_lossy(&bytes)),
            });
        }
        Self::expect_ok(&op, status, &String::from_utf8_lossy(&bytes))?;
        Ok(HubFile {
            repo_id: repo,
            revision: revision.to_string(),
            filename: filename.to_string(),
            bytes,
        })
    }

    /// The model card (`README.md`) of a repo at a revision.
    pub async fn model_card(
        &self,
        repo_id: Option<&str>,
        revision: &str,
    ) -> Result<HubFile, HfError> {
        self.read_file(repo_id, revision, "README.md", ARTIFACT_CAP)
            .await
    }

    fn build(cfg: HfConfig) -> Result<Self, HfError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("synth-city/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HfError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(HfClient { cfg, http })
    }

    pub fn config(&self) -> &HfConfig {
        &self.cfg
    }

    /// Sends one request with retries; returns (status, body) for any answer
    /// that is not retried. 401/403 become [`HfError::Unauthorized`].
    async fn send(
        &self,
        op: &str,
        method: reqwest::Method,
        url: &str,
        body: &Body,
        headers: &[(String, String)],
        auth: bool,
    ) -> Result<(u16, String), HfError> {
        let (status, bytes) = self
            .send_raw(op, method, url, body, headers, auth, ANSWER_CAP)
            .await?;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// As [`send`](Self::send), the answer as bytes, at most `cap` of them
    /// ([`HfError::TooLarge`] past it).
    #[allow(clippy::too_many_arguments)]
    async fn send_raw(
        &self,
        op: &str,
        method: reqwest::Method,
        url: &str,
        body: &Body,
        headers: &[(String, String)],
        auth: bool,
        cap: usize,
    ) -> Result<(u16, Vec<u8>), HfError> {
        let policy = RetryPolicy {
            attempts: self.cfg.attempts.max(1),
            base: self.cfg.backoff,
            max_delay: Duration::from_secs(30),
            ..RetryPolicy::default()
        };
        let attempt_once = |attempt: u32| {
            let method = method.clone();
            async move {
                let mut req = self.http.request(method, url);
                if auth {
                    req = req.bearer_auth(&self.cfg.token);
                }
                for (k, v) in headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                req = match body {
                    Body::None => req,
                    Body::Json(v) => req.json(v),
                    Body::Bytes(b, ct) => req.header("content-type", *ct).body(b.clone()),
                };
                let failure = match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let bytes = match read_capped(resp, cap).await {
                            Ok(b) => b,
                            Err(None) => {
                                return Err(Failure::Permanent(HfError::TooLarge {
                                    op: op.into(),
                                    cap,
                                }))
                            }
                            Err(Some(e)) => Vec::from(format!("(body unread: {e})")),
                        };
                        let text = || String::from_utf8_lossy(&bytes).into_owned();
                        match status {
                            401 | 403 => {
                                return Err(Failure::Permanent(HfError::Unauthorized {
                                    op: op.into(),
                                    repo: self.cfg.repo_id.clone(),
                                    status,
                                    detail: brief(&text()),
                                }))
                            }
                            429 | 500..=599 => format!("HTTP {status}: {}", brief(&text())),
                            _ => return Ok((status, bytes)),
                        }
                    }
                    Err(e) => {
                        let mut msg = e.to_string();
                        let mut src = std::error::Error::source(&e);
                        while let Some(s) = src {
                            msg = format!("{msg}: {s}");
                            src = s.source();
                        }
                        msg
                    }
                };
                Err(Failure::transient(HfError::Unavailable {
                    op: op.into(),
                    attempts: attempt,
                    last: failure,
                }))
            }
        };
        policy.run(op, attempt_once).await.map_err(|e| e.error)
    }

    fn expect_ok(op: &str, status: u16, text: &str) -> Result<(), HfError> {
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(HfError::Http {
                op: op.into(),
                status,
                detail: brief(text),
            })
        }
    }

    /// Creates the model repo; `Ok(false)` when it already exists (409).
    pub async fn create_repo(&self) -> Result<bool, HfError> {
        let (ns, name) = self.cfg.repo_id.split_once('/').expect("validated");
        let url = format!("{}/api/repos/create", self.cfg.endpoint);
        let body =
            json!({"name": name, "organization": ns, "type": "model", "private": self.cfg.private});
        let op = format!("create repo {}", self.cfg.repo_id);
        let (status, text) = self
            .send(
                &op,
                reqwest::Method::POST,
                &url,
                &Body::Json(body),
                &[],
                true,
            )
            .await?;
        if status == 409 {
            return Ok(false);
        }
        Self::expect_ok(&op, status, &text)?;
        Ok(true)
    }

    async fn preupload(&self, files: &[HfFile]) -> Result<Vec<PreuploadFile>, HfError> {
        let url = format!(
            "{}/api/models/{}/preupload/{}",
            self.cfg.endpoint, self.cfg.repo_id, self.cfg.revision
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = json!({"files": files.iter().map(|f| json!({
            "path": f.path, "size": f.bytes.len(),
            "sample": b64.encode(&f.bytes[..f.bytes.len().min(512)]),
        })).collect::<Vec<_>>()});
        let op = format!("preupload to {}", self.cfg.repo_id);
        let (status, text) = self
            .send(
                &op,
                reqwest::Method::POST,
                &url,
                &Body::Json(body),
                &[],
                true,
            )
            .await?;
        Self::expect_ok(&op, status, &text)?;
        #[derive(Deserialize)]
        struct Resp {
            files: Vec<PreuploadFile>,
        }
        let r: Resp = serde_json::from_str(&text).map_err(|e| HfError::Protocol {
            op: op.clone(),
            detail: format!("{e}: {}", brief(&text)),
        })?;
        for f in files {
            match r.files.iter().find(|p| p.path == f.path) {
                Some(p) if p.upload_mode == "lfs" || p.upload_mode == "regular" => {}
                Some(p) => {
                    return Err(HfError::Protocol {
                        op,
                        detail: format!("upload mode {:?} for {}", p.upload_mode, f.path),
                    })
                }
                None => {
                    return Err(HfError::Protocol {
                        op,
                        detail: format!("no upload mode for {}", f.path),
                    })
                }
            }
        }
        Ok(r.files)
    }

    async fn lfs_upload(&self, files: &[&HfFile]) -> Result<Vec<String>, HfError> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let url = format!(
            "{}/{}.git/info/lfs/objects/batch",
            self.cfg.endpoint, self.cfg.repo_id
        );
        let body = json!({
            "operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
            "ref": {"name": self.cfg.revision},
            "objects": files.iter().map(|f| json!({"oid": f.sha256(), "size": f.bytes.len()})).collect::<Vec<_>>(),
        });
        let lfs_headers = [("accept".to_string(), LFS_JSON.to_string())];
        let op = format!("LFS batch for {}", self.cfg.repo_id);
        let (status, text) = self
            .send(
                &op,
                reqwest::Method::POST,
                &url,
                &Body::Bytes(body.to_string().into_bytes(), LFS_JSON),
                &lfs_headers,
                true,
            )
            .await?;
        Self::expect_ok(&op, status, &text)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| HfError::Protocol {
            op: op.clone(),
            detail: format!("{e}: {}", brief(&text)),
        })?;
        let mut uploaded = Vec::new();
        for f in files {
            let oid = f.sha256();
            let obj = v["objects"]
                .as_array()
                .and_then(|a| a.iter().find(|o| o["oid"] == oid))
                .ok_or_else(|| HfError::Protocol {
                    op: op.clone(),
                    detail: format!("no answer for {}", f.path),
                })?;
            if let Some(err) = obj.get("error") {
                return Err(HfError::Protocol {
                    op: op.clone(),
                    detail: format!("{}: {err}", f.path),
                });
            }
            let headers_of = |a: &Value| -> Vec<(String, String)> {
                a["header"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let Some(upload) = obj["actions"].get("upload") else {
                continue; // the Hub has this content already
            };
            let href = upload["href"].as_str().ok_or_else(|| HfError::Protocol {
                op: op.clone(),
                detail: format!("upload action without href for {}", f.path),
            })?;
            let put_op = format!("upload {} (LFS)", f.path);
            let (status, text) = self
                .send(
                    &put_op,
                    reqwest::Method::PUT,
                    href,
                    &Body::Bytes(f.bytes.clone(), "application/octet-stream"),
                    &headers_of(upload),
                    false,
                )
                .await?;
            Self::expect_ok(&put_op, status, &text)?;
            if let Some(verify) = obj["actions"].get("verify") {
                let href = verify["href"].as_str().ok_or_else(|| HfError::Protocol {
                    op: op.clone(),
                    detail: format!("verify action without href for {}", f.path),
                })?;
                let vop = format!("verify {} (LFS)", f.path);
                let (status, text) = self
                    .send(
                        &vop,
                        reqwest::Method::POST,
                        href,
                        &Body::Json(json!({"oid": oid, "size": f.bytes.len()})),
                        &headers_of(verify),
                        true,
                    )
                    .await?;
                Self::expect_ok(&vop, status, &text)?;
            }
            uploaded.push(f.path.clone());
        }
        Ok(uploaded)
    }

    /// Puts `files` in the repo in one commit (creating the repo if needed);
    /// commits nothing when the repo already holds every file as is.
    pub async fn upload(
        &self,
        files: &[HfFile],
        summary: &str,
        description: &str,
    ) -> Result<HfOutcome, HfError> {
        if files.is_empty() {
            return Err(HfError::Config("nothing to upload".into()));
        }
        for f in files {
            if f.path.is_empty()
                || f.path.starts_with('/')
                || f.path
                    .split('/')
                    .any(|s| s.is_empty() || s == "." || s == ".." || s == ".git")
            {
                return Err(HfError::Config(format!(
                    "invalid path in repo {:?}",
                    f.path
                )));
            }
        }
        let created_repo = self.create_repo().await?;
        let modes = self.preupload(files).await?;
        let mode_of = |f: &HfFile| modes.iter().find(|p| p.path == f.path).expect("checked");
        let mut out = HfOutcome {
            repo_id: self.cfg.repo_id.clone(),
            created_repo,
            commit_oid: None,
            commit_url: None,
            lfs_uploaded: Vec::new(),
            files: files.iter().map(|f| f.path.clone()).collect(),
        };
        let lfs = |f: &HfFile| mode_of(f).upload_mode == "lfs" && !f.bytes.is_empty();
        let changed: Vec<&HfFile> = files
            .iter()
            .filter(|f| !mode_of(f).should_ignore)
            .filter(|f| {
                let local = if lfs(f) { f.sha256() } else { f.git_oid() };
                mode_of(f).oid.as_deref() != Some(local.as_str())
            })
            .collect();
        if changed.is_empty() {
            return Ok(out);
        }
        let lfs_files: Vec<&HfFile> = changed.iter().copied().filter(|f| lfs(f)).collect();
        out.lfs_uploaded = self.lfs_upload(&lfs_files).await?;

        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ndjson =
            json!({"key": "header", "value": {"summary": summary, "description": description}})
                .to_string();
        for f in &changed {
            ndjson.push('\n');
            let line = if lfs(f) {
                json!({"key": "lfsFile", "value": {"path": f.path, "algo": "sha256",
                        "oid": f.sha256(), "size": f.bytes.len()}})
            } else {
                json!({"key": "file", "value": {"path": f.path, "encoding": "base64",
                        "content": b64.encode(&f.bytes)}})
            };
            ndjson.push_str(&line.to_string());
        }
        ndjson.push('\n');
        let url = format!(
            "{}/api/models/{}/commit/{}",
            self.cfg.endpoint, self.cfg.repo_id, self.cfg.revision
        );
        let op = format!("commit to {}", self.cfg.repo_id);
        let (status, text) = self
            .send(
                &op,
                reqwest::Method::POST,
                &url,
                &Body::Bytes(ndjson.into_bytes(), "application/x-ndjson"),
                &[],
                true,
            )
            .await?;
        Self::expect_ok(&op, status, &text)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| HfError::Protocol {
            op: op.clone(),
            detail: format!("{e}: {}", brief(&text)),
        })?;
        out.commit_oid = v["commitOid"].as_str().map(str::to_string);
        out.commit_url = v["commitUrl"].as_str().map(str::to_string);
        if out.commit_oid.is_none() {
            return Err(HfError::Protocol {
                op,
                detail: format!("no commitOid in {}", brief(&text)),
            });
        }
        Ok(out)
    }
}

fn brief(text: &str) -> String {
    let t = text.trim();
    let s: String = t.chars().take(300).collect();
    if s.is_empty() {
        "(empty body)".into()
    } else {
        s
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// The model card (README.md) of a published model: metrics, CRPS vs GBM
/// per asset, data ranges and architecture. Deterministic for a given
/// manifest, so republishing the same run changes nothing.
pub fn model_card(repo_id: &str, run_id: &str, rec: &ExperimentRecord, data: &Value) -> String {
    let s = &rec.spec;
    let b = &s.model.backbone;
    let t = &s.training;
    let mut md = String::new();
    md.push_str("---\nlibrary_name: candle\ntags:\n- time-series-forecasting\n- bittensor\n- sn50\n- synth-city\n");
    md.push_str(&format!(
        "model-index:\n- name: {}\n  results:\n  - task:\n      type: time-series-forecasting\n    metrics:\n    - type: crps\n      value: {}\n",
        rec.name,
        fmt_opt(rec.crps, 6)
    ));
    md.push_str("---\n\n");
    md.push_str(&format!("# {} — {}\n\n", repo_id, rec.name));
    md.push_str(&format!(
        "A probabilistic price-path model for Bittensor Subnet 50 (Synth), trained and published by \
         synth-city (pipeline run `{run_id}`). Files: `runs/{run_id}/model.safetensors` (weights), \
         `runs/{run_id}/spec.json` (the experiment spec to rebuild it).\n\n"
    ));
    md.push_str("## Metrics\n\n| metric | value |\n|---|---|\n");
    md.push_str(&format!(
        "| SN50 CRPS (validation, mean) | {} |\n",
        fmt_opt(rec.crps, 6)
    ));
    md.push_str(&format!(
        "| GBM baseline CRPS (same windows) | {} |\n",
        fmt_opt(rec.gbm_crps, 6)
    ));
    md.push_str(&format!(
        "| CRPS / GBM (< 1 beats the baseline) | {} |\n",
        fmt_opt(rec.crps_ratio(), 4)
    ));
    md.push_str(&format!("| epochs | {} |\n", rec.epochs));
    md.push_str(&format!(
        "| parameters | {} |\n",
        rec.param_count.map(|p| p.to_string()).unwrap_or("-".into())
    ));
    md.push_str(&format!(
        "| validation windows x paths | {} x {} |\n\n",
        t.eval_windows, t.eval_paths
    ));
    md.push_str(
        "## CRPS vs GBM per asset\n\n| asset | CRPS | GBM CRPS | ratio |\n|---|---|---|---|\n",
    );
    if s.data.assets.len() == 1 {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n\n",
            s.data.assets[0],
            fmt_opt(rec.crps, 6),
            fmt_opt(rec.gbm_crps, 6),
            fmt_opt(rec.crps_ratio(), 4)
        ));
    } else {
        md.push_str(&format!(
            "| all ({}; the run records the mean over assets) | {} | {} | {} |\n\n",
            s.data.assets.join(", "),
            fmt_opt(rec.crps, 6),
            fmt_opt(rec.gbm_crps, 6),
            fmt_opt(rec.crps_ratio(), 4)
        ));
    }
    md.push_str("## Data\n\n");
    md.push_str(&format!(
        "Timeframe {}, assets {}, validation fraction {}.\n\n",
        s.data.timeframe,
        s.data.assets.join(", "),
        s.data.val_fraction
    ));
    match data.as_array().filter(|a| !a.is_empty()) {
        Some(rows) => {
            md.push_str("| asset | first bar (UTC) | last bar (UTC) | bars | validation from (UTC) |\n|---|---|---|---|---|\n");
            for r in rows {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    r["asset"].as_str().unwrap_or("?"),
                    r["first_utc"].as_str().unwrap_or("?"),
                    r["last_utc"].as_str().unwrap_or("?"),
                    r["bars"],
                    r["validation_from_utc"].as_str().unwrap_or("?"),
                ));
            }
            md.push('\n');
        }
        None => md.push_str("Data ranges were not recorded for this run.\n\n"),
    }
    md.push_str("## Architecture\n\n");
    md.push_str(&format!(
        "- backbone blocks: {}\n- head: {}\n- d_model: {}, context (seq_len): {} bars\n- features: {}\n",
        b.blocks.join(" -> "),
        s.model.head.kind,
        b.d_model,
        b.seq_len,
        if b.features.is_empty() {
            "default".to_string()
        } else {
            b.features.join(", ")
        }
    ));
    md.push_str(&format!(
        "- training: horizon {} steps, {} paths, lr {:e}, batch {}, {} epochs x {} steps, loss {:?}\n",
        t.horizon, t.n_paths, t.lr, t.batch_size, t.epochs, t.steps_per_epoch, t.loss
    ));
    md.push_str(&format!("- spec fingerprint: `{}`\n", rec.fingerprint));
    md
}

/// What [`publish_run`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HfPublication {
    pub run_id: String,
    pub model: String,
    #[serde(flatten)]
    pub outcome: HfOutcome,
    /// True when the repo already held this run as is (no commit made).
    pub unchanged: bool,
}

/// Publishes run `run_id`'s model, as the store holds it
/// (`models/{run_id}/{name}/record.json` and its files), to the Hub; records
/// the result under `published/hf/{run_id}.json`.
pub async fn publish_run(
    client: &HfClient,
    store: &dyn Store,
    run_id: &str,
) -> Result<HfPublication, HfError> {
    records::check_run_id(run_id)?;
    let prefix = format!("models/{run_id}/");
    let manifests: Vec<String> = store
        .list(&prefix)
        .await?
        .into_iter()
        .filter(|k| k.ends_with("/record.json"))
        .collect();
    let Some(mkey) = manifests.first() else {
        return Err(HfError::Config(format!(
            "run {run_id} has no published model in {} (publish it to the store first: `synth-city publish --run {run_id}`)",
            store.describe()
        )));
    };
    let manifest: super::records::Manifest = store
        .get_json(mkey)
        .await?
        .ok_or_else(|| HfError::Config(format!("{} disappeared", store.location(mkey))))?;
    let rec = &manifest.record;
    let mut files = Vec::new();
    for f in &manifest.files {
        let name = f.key.rsplit('/').next().unwrap_or(&f.key);
        if name == "record.json" {
            continue;
        }
        let bytes = store.get(&f.key).await?.ok_or_else(|| {
            HfError::Config(format!(
                "{} is missing from the store",
                store.location(&f.key)
            ))
        })?;
        files.push(HfFile {
            path: format!("runs/{run_id}/{name}"),
            bytes,
        });
    }
    let card = model_card(&client.cfg.repo_id, run_id, rec, &manifest.data);
    files.push(HfFile {
        path: format!("runs/{run_id}/README.md"),
        bytes: card.clone().into_bytes(),
    });
    files.push(HfFile {
        path: "README.md".into(),
        bytes: card.into_bytes(),
    });
    let summary = format!(
        "synth-city run {run_id}: {} (CRPS {}, GBM {})",
        rec.name,
        fmt_opt(rec.crps, 4),
        fmt_opt(rec.gbm_crps, 4)
    );
    let outcome = client
        .upload(
            &files,
            &summary,
            &format!("Published by synth-city from {}", store.describe()),
        )
        .await?;
    let publication = HfPublication {
        run_id: run_id.to_string(),
        model: rec.name.clone(),
        unchanged: outcome.commit_oid.is_none(),
        outcome,
    };
    if !publication.unchanged {
        store
            .put_json(&hf_published_key(run_id), &publication)
            .await?;
    }
    Ok(publication)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_oid_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        let f = HfFile {
            path: "a".into(),
            bytes: b"hello\n".to_vec(),
        };
        assert_eq!(f.git_oid(), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(
            f.sha256(),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
    }

    #[test]
    fn config_names_what_is_wrong() {
        let mut c = HfConfig::new("https://huggingface.co", "hf_x", "no-slash");
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("namespace/name"));
        c.repo_id = "me/SN50-Hub".into();
        c.validate().unwrap();
        c.endpoint = "ftp://x".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("HF_ENDPOINT"));
        assert!(!format!("{c:?}").contains("hf_x"));
    }
}
