//! The S3-compatible backend of [`Store`](super::Store) (Hippius by default),
//! over rust-s3 with path-style URLs and region `decentralized`.
//!
//! Every request is retried with exponential backoff when the service is
//! unreachable or answers 5xx/408/429; wrong credentials and a missing bucket
//! are reported at once with what to check. Objects of at least
//! [`S3Config::part_size`] bytes go up as multipart uploads, each part retried
//! on its own; an upload that fails is aborted, and since S3 shows a multipart
//! object only once it is completed, nothing half-written is ever visible.
//! The SHA-256 of the content travels as `x-amz-meta-sha256` and is checked on
//! every read.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::{Bucket, BucketConfiguration, Region};
use tokio::sync::OnceCell;

use super::{check_key, check_prefix, sha256_hex, ObjectInfo, Store, StoreError};

/// The metadata header that carries the content hash.
pub const SHA_HEADER: &str = "x-amz-meta-sha256";
/// S3's smallest part (except the last).
const MIN_PART: usize = 5 * 1024 * 1024;

/// How to reach the bucket and how hard to try.
#[derive(Clone)]
pub struct S3Config {
    /// `https://s3.hippius.com`, or any S3-compatible endpoint.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    /// `decentralized` for Hippius.
    pub region: String,
    /// Create the bucket when it is missing (the default), else report it.
    pub create_bucket: bool,
    /// Tries per request (1 = no retry).
    pub attempts: u32,
    /// The first retry's delay; doubled each time (with jitter), capped at 30 s.
    pub backoff: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Multipart part size; objects at least this big go up in parts.
    pub part_size: usize,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &"<set>")
            .field("secret_key", &"<hidden>")
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// A configuration with the defaults: region `decentralized`, bucket
    /// created when missing, 5 attempts from 500 ms, 60 s per request, 8 MiB parts.
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str, bucket: &str) -> Self {
        S3Config {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            bucket: bucket.to_string(),
            region: "decentralized".into(),
            create_bucket: true,
            attempts: 5,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(60),
            part_size: 8 * 1024 * 1024,
        }
    }

    /// Reads `HIPPIUS_ENDPOINT`, `HIPPIUS_ACCESS_KEY`, `HIPPIUS_SECRET_KEY`,
    /// `HIPPIUS_BUCKET` (default `synth-city`) and the optional
    /// `HIPPIUS_REGION`, `HIPPIUS_CREATE_BUCKET` (`0`/`false` to refuse a
    /// missing bucket), `HIPPIUS_TIMEOUT_SECS`, `HIPPIUS_RETRIES`.
    /// `None` when `HIPPIUS_ENDPOINT` is unset or empty.
    pub fn from_env() -> Result<Option<Self>, StoreError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let Some(endpoint) = var("HIPPIUS_ENDPOINT") else {
            return Ok(None);
        };
        let mut missing = Vec::new();
        let access = var("HIPPIUS_ACCESS_KEY").unwrap_or_else(|| {
            missing.push("HIPPIUS_ACCESS_KEY");
            String::new()
        });
        let secret = var("HIPPIUS_SECRET_KEY").unwrap_or_else(|| {
            missing.push("HIPPIUS_SECRET_KEY");
            String::new()
        });
        if !missing.is_empty() {
            return Err(StoreError::Config(format!(
                "HIPPIUS_ENDPOINT is set but {} {} not",
                missing.join(" and "),
                if missing.len() == 1 { "is" } else { "are" }
            )));
        }
        let bucket = var("HIPPIUS_BUCKET").unwrap_or_else(|| "synth-city".into());
        let mut cfg = S3Config::new(&endpoint, &access, &secret, &bucket);
        if let Some(r) = var("HIPPIUS_REGION") {
            cfg.region = r;
        }
        if let Some(v) = var("HIPPIUS_CREATE_BUCKET") {
            cfg.create_bucket = !matches!(v.to_ascii_lowercase().as_str(), "0" | "false" | "no");
        }
        let num = |k: &str, lo: u64, hi: u64| -> Result<Option<u64>, StoreError> {
            match var(k) {
                None => Ok(None),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
                    _ => Err(StoreError::Config(format!(
                        "{k} must be a whole number within {lo}..={hi}, got {v:?}"
                    ))),
                },
            }
        };
        if let Some(t) = num("HIPPIUS_TIMEOUT_SECS", 1, 3600)? {
            cfg.timeout = Duration::from_secs(t);
        }
        if let Some(r) = num("HIPPIUS_RETRIES", 0, 20)? {
            cfg.attempts = r as u32 + 1;
        }
        cfg.validate()?;
        Ok(Some(cfg))
    }

    /// Checks the configuration, naming what is wrong.
    pub fn validate(&self) -> Result<(), StoreError> {
        let mut errs = Vec::new();
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            errs.push(format!(
                "HIPPIUS_ENDPOINT must be an http:// or https:// URL, got {:?}",
                self.endpoint
            ));
        }
        let b = &self.bucket;
        if b.len() < 3
            || b.len() > 63
            || !b
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            || b.starts_with(['-', '.'])
            || b.ends_with(['-', '.'])
        {
            errs.push(format!(
                "HIPPIUS_BUCKET {b:?} is not a valid bucket name (3-63 lowercase letters, digits, '-' or '.')"
            ));
        }
        if self.attempts == 0 {
            errs.push("attempts must be at least 1".into());
        }
        if self.part_size < MIN_PART {
            errs.push(format!(
                "the multipart part size must be at least {MIN_PART} bytes (S3's minimum)"
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Config(errs.join("; ")))
        }
    }
}

/// Called after each multipart part: (part number, parts in all).
pub type PartProgress = Arc<dyn Fn(u32, u32) + Send + Sync>;

/// A bucket of an S3-compatible service.
pub struct S3Store {
    cfg: S3Config,
    bucket: Box<Bucket>,
    ready: OnceCell<()>,
    on_part: Option<PartProgress>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store").field("cfg", &self.cfg).finish()
    }
}

/// What a failed request means.
enum Kind {
    /// Worth another try (unreachable, timed out, 5xx, 408, 429).
    Retry(String),
    /// 404 NoSuchKey.
    NotFound,
    Fatal(StoreError),
}

fn xml_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(&body[start..end])
}

impl S3Store {
    /// A store for `cfg` (nothing is sent until the first request).
    pub fn new(cfg: S3Config) -> Result<Self, StoreError> {
        cfg.validate()?;
        // Retries are ours (with backoff and a clear final error), not rust-s3's.
        s3::set_retries(0);
        let bucket = Self::bucket_for(&cfg)?;
        Ok(S3Store {
            cfg,
            bucket,
            ready: OnceCell::new(),
            on_part: None,
        })
    }

    /// Calls `f` after each uploaded multipart part.
    pub fn with_part_progress(mut self, f: PartProgress) -> Self {
        self.on_part = Some(f);
        self
    }

    pub fn config(&self) -> &S3Config {
        &self.cfg
    }

    fn region(cfg: &S3Config) -> Region {
        Region::Custom {
            region: cfg.region.clone(),
            endpoint: cfg.endpoint.clone(),
        }
    }

    fn credentials(cfg: &S3Config) -> Result<Credentials, StoreError> {
        Credentials::new(
            Some(&cfg.access_key),
            Some(&cfg.secret_key),
            None,
            None,
            None,
        )
        .map_err(|e| StoreError::Config(format!("bad credentials: {e}")))
    }

    fn bucket_for(cfg: &S3Config) -> Result<Box<Bucket>, StoreError> {
        let b = Bucket::new(&cfg.bucket, Self::region(cfg), Self::credentials(cfg)?)
            .map_err(|e| StoreError::Config(format!("cannot set up bucket {}: {e}", cfg.bucket)))?
            .with_path_style();
        b.with_request_timeout(cfg.timeout)
            .map_err(|e| StoreError::Config(format!("cannot set the request timeout: {e}")))
    }

    fn classify(&self, e: S3Error) -> Kind {
        match e {
            S3Error::HttpFailWithBody(code, body) => {
                let c = xml_code(&body).unwrap_or("").to_string();
                let brief = if c.is_empty() {
                    format!("HTTP {code}")
                } else {
                    format!("HTTP {code} {c}")
                };
                match (code, c.as_str()) {
                    (404, "NoSuchKey") => Kind::NotFound,
                    (404, "NoSuchBucket") => Kind::Fatal(StoreError::BucketMissing {
                        bucket: self.cfg.bucket.clone(),
                        endpoint: self.cfg.endpoint.clone(),
                    }),
                    (401 | 403, _)
                        if c.is_empty()
                            || matches!(
                                c.as_str(),
                                "InvalidAccessKeyId"
                                    | "SignatureDoesNotMatch"
                                    | "AccessDenied"
                                    | "InvalidToken"
                                    | "AuthorizationHeaderMalformed"
                                    | "InvalidClientTokenId"
                            ) =>
                    {
                        Kind::Fatal(StoreError::Credentials {
                            endpoint: self.cfg.endpoint.clone(),
                            detail: brief,
                        })
                    }
                    (408 | 429 | 500..=599, _) => Kind::Retry(brief),
                    _ => Kind::Fatal(StoreError::Failed {
                        op: String::new(),
                        location: String::new(),
                        detail: format!("{brief}: {}", body.chars().take(300).collect::<String>()),
                    }),
                }
            }
            S3Error::Reqwest(e) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                Kind::Retry(msg)
            }
            S3Error::Io(e) => Kind::Retry(e.to_string()),
            other => Kind::Fatal(StoreError::Failed {
                op: String::new(),
                location: String::new(),
                detail: other.to_string(),
            }),
        }
    }

    /// Runs `f` until it succeeds, fails for good, or the attempts run out.
    /// `Ok(None)` is a 404 NoSuchKey.
    async fn retry<T, F, Fut>(&self, op: &str, key: &str, mut f: F) -> Result<Option<T>, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, S3Error>>,
    {
        let mut delay = self.cfg.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match f().await {
                Ok(v) => return Ok(Some(v)),
                Err(e) => e,
            };
            match self.classify(err) {
                Kind::NotFound => return Ok(None),
                Kind::Fatal(StoreError::Failed { detail, .. }) => {
                    return Err(StoreError::Failed {
                        op: op.into(),
                        location: self.location(key),
                        detail,
                    })
                }
                Kind::Fatal(e) => return Err(e),
                Kind::Retry(msg) if attempt >= self.cfg.attempts => {
                    return Err(StoreError::Unavailable {
                        op: op.into(),
                        location: self.location(key),
                        attempts: attempt,
                        last: msg,
                    })
                }
                Kind::Retry(msg) => {
                    tracing::warn!(op, key, attempt, error = %msg, "object store request failed; retrying");
                    let jitter = rand::random::<f64>() * 0.25 + 1.0;
                    tokio::time::sleep(delay.mul_f64(jitter)).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Checks once that the bucket exists, creating it when allowed.
    async fn ensure_bucket(&self) -> Result<(), StoreError> {
        self.ready
            .get_or_try_init(|| async {
                let probe = self
                    .retry("open bucket", "", || {
                        self.bucket
                            .list_page(String::new(), None, None, None, Some(1))
                    })
                    .await;
                match probe {
                    Ok(_) => Ok(()),
                    Err(StoreError::BucketMissing { .. }) if self.cfg.create_bucket => {
                        self.create_bucket().await
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .map(|_| ())
    }

    async fn create_bucket(&self) -> Result<(), StoreError> {
        let creds = Self::credentials(&self.cfg)?;
        let resp = self
            .retry("create bucket", "", || {
                Bucket::create_with_path_style(
                    &self.cfg.bucket,
                    Self::region(&self.cfg),
                    creds.clone(),
                    BucketConfiguration::default(),
                )
            })
            .await;
        let resp = match resp {
            // Created meanwhile by someone else: fine.
            Err(StoreError::Failed { detail, .. })
                if detail.contains("BucketAlreadyOwnedByYou") =>
            {
                return Ok(())
            }
            other => other?,
        };
        match resp {
            Some(r) if r.success() => {
                tracing::info!(bucket = %self.cfg.bucket, "created the bucket");
                Ok(())
            }
            // Created meanwhile by someone else: fine.
            Some(r) if r.response_text.contains("BucketAlreadyOwnedByYou") => Ok(()),
            Some(r) => Err(StoreError::Failed {
                op: "create bucket".into(),
                location: self.location(""),
                detail: format!("HTTP {}: {}", r.response_code, r.response_text),
            }),
            None => Err(StoreError::BucketMissing {
                bucket: self.cfg.bucket.clone(),
                endpoint: self.cfg.endpoint.clone(),
            }),
        }
    }

    fn sha_headers(sha: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static(SHA_HEADER),
            HeaderValue::from_str(sha).expect("hex is a valid header value"),
        );
        h
    }

    async fn put_multipart(&self, key: &str, bytes: &[u8], sha: &str) -> Result<(), StoreError> {
        let init_bucket = self
            .bucket
            .with_extra_headers(Self::sha_headers(sha))
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let init = self
            .retry("start multipart upload", key, || {
                init_bucket.initiate_multipart_upload(key, "application/octet-stream")
            })
            .await?
            .ok_or_else(|| StoreError::Failed {
                op: "start multipart upload".into(),
                location: self.location(key),
                detail: "the service answered 404".into(),
            })?;
        let upload_id = init.upload_id;
        let total = bytes.len().div_ceil(self.cfg.part_size) as u32;
        let outcome = async {
            let mut parts = Vec::with_capacity(total as usize);
            for (i, chunk) in bytes.chunks(self.cfg.part_size).enumerate() {
                let n = i as u32 + 1;
                let part = self
                    .retry(&format!("upload part {n}/{total} of"), key, || {
                        self.bucket.put_multipart_chunk(
                            chunk.to_vec(),
                            key,
                            n,
                            &upload_id,
                            "application/octet-stream",
                        )
                    })
                    .await?
                    .ok_or_else(|| StoreError::Failed {
                        op: format!("upload part {n}/{total} of"),
                        location: self.location(key),
                        detail: "the upload disappeared (404)".into(),
                    })?;
                parts.push(part);
                if let Some(cb) = &self.on_part {
                    cb(n, total);
                }
            }
            self.retry("complete multipart upload", key, || {
                self.bucket
                    .complete_multipart_upload(key, &upload_id, parts.clone())
            })
            .await?
            .ok_or_else(|| StoreError::Failed {
                op: "complete multipart upload".into(),
                location: self.location(key),
                detail: "the upload disappeared (404)".into(),
            })?;
            Ok::<(), StoreError>(())
        }
        .await;
        if outcome.is_err() {
            // Best effort: parts of an unfinished upload are never visible as the
            // object, but they take space until aborted.
            if let Err(e) = self.bucket.abort_upload(key, &upload_id).await {
                tracing::warn!(key, upload_id, error = %e, "could not abort the failed multipart upload");
            }
        }
        outcome
    }
}

#[async_trait::async_trait]
impl Store for S3Store {
    fn describe(&self) -> String {
        format!("s3://{} at {}", self.cfg.bucket, self.cfg.endpoint)
    }

    fn location(&self, key: &str) -> String {
        format!("s3://{}/{}", self.cfg.bucket, key)
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<ObjectInfo, StoreError> {
        check_key(key)?;
        self.ensure_bucket().await?;
        let sha = sha256_hex(&bytes);
        let multipart = bytes.len() >= self.cfg.part_size;
        if multipart {
            self.put_multipart(key, &bytes, &sha).await?;
        } else {
            let headers = Self::sha_headers(&sha);
            self.retry("put", key, || {
                self.bucket
                    .put_object_with_headers(key, &bytes, Some(headers.clone()))
            })
            .await?
            .ok_or_else(|| StoreError::Failed {
                op: "put".into(),
                location: self.location(key),
                detail: "the service answered 404".into(),
            })?;
        }
        Ok(ObjectInfo {
            key: key.to_string(),
            size: bytes.len() as u64,
            sha256: sha,
            multipart,
        })
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        self.ensure_bucket().await?;
        let Some(resp) = self
            .retry("get", key, || self.bucket.get_object(key))
            .await?
        else {
            return Ok(None);
        };
        let recorded = resp
            .headers()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(SHA_HEADER))
            .map(|(_, v)| v.trim().to_string());
        let bytes = resp.to_vec();
        if let Some(expected) = recorded {
            let actual = sha256_hex(&bytes);
            if actual != expected {
                return Err(StoreError::Integrity {
                    location: self.location(key),
                    expected,
                    actual,
                });
            }
        }
        Ok(Some(bytes))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        check_prefix(prefix)?;
        self.ensure_bucket().await?;
        let pages = self
            .retry("list", prefix, || {
                self.bucket.list(prefix.to_string(), None)
            })
            .await?
            .unwrap_or_default();
        let mut keys: Vec<String> = pages
            .into_iter()
            .flat_map(|p| p.contents.into_iter().map(|o| o.key))
            .filter(|k| check_key(k).is_ok())
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        self.ensure_bucket().await?;
        self.retry("delete", key, || self.bucket.delete_object(key))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked_with_clear_messages() {
        let mut c = S3Config::new("s3.example.com", "a", "b", "Bad_Bucket");
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("http:// or https://"), "{err}");
        assert!(err.contains("not a valid bucket name"), "{err}");
        c.endpoint = "http://127.0.0.1:9".into();
        c.bucket = "synth-city".into();
        c.validate().unwrap();
        c.part_size = 1024;
        assert!(c.validate().unwrap_err().to_string().contains("part size"));
        assert!(
            !format!("{c:?}").contains("\"b\""),
            "the secret stays out of Debug"
        );
    }

    #[test]
    fn xml_error_codes_are_read() {
        let body =
            "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>x</Message></Error>";
        assert_eq!(xml_code(body), Some("NoSuchBucket"));
        assert_eq!(xml_code("no xml"), None);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_fails_after_the_retries() {
        // A port nothing listens on: connection refused, retried, then a clear error.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = S3Config::new(&format!("http://127.0.0.1:{port}"), "a", "b", "synth-city");
        c.attempts = 3;
        c.backoff = Duration::from_millis(10);
        c.timeout = Duration::from_secs(2);
        let s = S3Store::new(c).unwrap();
        let err = s.put("a/b.json", b"{}".to_vec()).await.unwrap_err();
        match &err {
            StoreError::Unavailable { attempts, .. } => assert_eq!(*attempts, 3),
            other => panic!("expected Unavailable, got {other}"),
        }
        assert!(
            err.to_string().contains("did not answer after 3 attempts"),
            "{err}"
        );
    }
}
