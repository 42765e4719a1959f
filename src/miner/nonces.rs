//! The axon's nonce rules and the store behind them ([`NonceStore`]): the last verified nonce
//! per `hotkey:uuid`, kept in memory and, for a serving miner, in a JSON-lines file
//! (`--nonce-file`) so that a restart does not let a replay through.
//!
//! The rules are bittensor 10.0.1's `default_verify` for dendrites from 7.2.0 on, applied to
//! every request whatever `bt_header_dendrite_version` it claims (the header is not signed, so
//! a replayed request could otherwise lower it to skip the window): a first nonce for its key
//! must be newer than `now - ALLOWED_DELTA - timeout` (`timeout` capped at
//! [`MAX_WINDOW_TIMEOUT_S`]), a later one must exceed the last recorded. With
//! `allow_legacy` (`mine --allow-legacy-nonce`) a dendrite claiming a version below 7.2.0, or
//! none, skips the window as in the Python axon.
//!
//! The file: one `{"key": "<hotkey>:<uuid>", "nonce": N}` line per verified request, appended
//! as it is recorded. At start it is read (the newest nonce per key wins; a torn last line is
//! skipped), entries older than the widest window are dropped (they can no longer pass the
//! window check anyway), and it is rewritten compacted (temporary file, fsync, rename); it is
//! compacted the same way once it holds many more lines than keys. Appends are not fsynced: a
//! crashed process loses nothing, a crashed machine may lose the last lines. With
//! `allow_legacy` nothing is dropped (a legacy request skips the window, so only the record
//! refuses its replay).
//!
//! This module does not parse headers or verify signatures ([`super::auth`]) and does not
//! choose the HTTP status ([`super::server`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::auth::AuthError;

/// `ALLOWED_DELTA`: how old a first nonce may be beyond the request's timeout, in ns.
pub const ALLOWED_DELTA_NS: i128 = 4_000_000_000;
/// `NANOSECONDS_IN_SECOND`.
pub const NANOSECONDS_IN_SECOND: i128 = 1_000_000_000;
/// `V_7_2_0`: in the Python axon (and here with `allow_legacy`), dendrites from this version
/// on get the time-window check.
pub const V_7_2_0: i128 = 7_002_000;
/// The largest header `timeout` the nonce window honours (the header is not signed, so a
/// replayed first request must not buy an unbounded window; validators send 60-120 s).
pub const MAX_WINDOW_TIMEOUT_S: f64 = 600.0;
/// The file is compacted when it has this many appended lines and more than twice as many
/// lines as keys.
pub const COMPACT_AFTER_LINES: usize = 10_000;

/// The widest window: a nonce older than `now - this` fails the window check whatever the
/// request's timeout, so its record can be dropped.
pub fn widest_window_ns() -> i128 {
    ALLOWED_DELTA_NS + (MAX_WINDOW_TIMEOUT_S as i128) * NANOSECONDS_IN_SECOND
}

/// The nonce file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NonceFileError {
    #[error("cannot create the folder of the nonce file {path}: {source} (give --nonce-file a writable path)")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the nonce file {path}: {source} (give --nonce-file a readable path)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the nonce file {path}: {source} (give --nonce-file a writable path)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl super::ErrorText for NonceFileError {}

/// One line of the nonce file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Entry {
    key: String,
    nonce: i128,
}

/// The open nonce file.
#[derive(Debug)]
struct NonceLog {
    path: PathBuf,
    file: File,
    /// Lines in the file.
    lines: usize,
}

#[derive(Debug, Default)]
struct Inner {
    last: HashMap<String, i128>,
    log: Option<NonceLog>,
}

/// The last verified nonce per `hotkey:uuid`, and the rules that use it.
#[derive(Debug, Default)]
pub struct NonceStore {
    inner: Mutex<Inner>,
    allow_legacy: bool,
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> NonceFileError + '_ {
    move |source| NonceFileError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `last` to `path` through a temporary file and a rename; the file opened for appends.
fn rewrite(path: &Path, last: &HashMap<String, i128>) -> Result<NonceLog, NonceFileError> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut out = Vec::with_capacity(last.len() * 96);
    for (key, &nonce) in last {
        let line = serde_json::to_string(&Entry {
            key: key.clone(),
            nonce,
        })
        .expect("a nonce entry is JSON");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    {
        let mut f = File::create(&tmp).map_err(write_err(&tmp))?;
        f.write_all(&out).map_err(write_err(&tmp))?;
        f.sync_all().map_err(write_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(write_err(path))?;
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(write_err(path))?;
    Ok(NonceLog {
        path: path.to_path_buf(),
        file,
        lines: last.len(),
    })
}

impl NonceStore {
    /// A store in memory only (tests, `mine --bench`, `--check`): a restart forgets it.
    pub fn in_memory(allow_legacy: bool) -> Self {
        NonceStore {
            inner: Mutex::default(),
            allow_legacy,
        }
    }

    /// The store kept in `path` (created with its folder when absent): read, pruned of entries
    /// older than the widest window (unless `allow_legacy`), and rewritten compacted.
    pub fn open(path: &Path, allow_legacy: bool, now_ns: i128) -> Result<Self, NonceFileError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| NonceFileError::Folder {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut last: HashMap<String, i128> = HashMap::new();
        match File::open(path) {
            Ok(f) => {
                let mut skipped = 0usize;
                for line in BufReader::new(f).lines() {
                    let line = line.map_err(|source| NonceFileError::Read {
                        path: path.to_path_buf(),
                        source,
                    })?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Entry>(&line) {
                        Ok(e) => {
                            let n = last.entry(e.key).or_insert(e.nonce);
                            *n = (*n).max(e.nonce);
                        }
                        Err(_) => skipped += 1,
                    }
                }
                if skipped > 0 {
                    tracing::warn!(path = %path.display(), lines = skipped,
                        "skipped unreadable lines of the nonce file (a write cut short?)");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(NonceFileError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        if !allow_legacy {
            let horizon = now_ns - widest_window_ns();
            last.retain(|_, n| *n > horizon);
        }
        let log = rewrite(path, &last)?;
        Ok(NonceStore {
            inner: Mutex::new(Inner {
                last,
                log: Some(log),
            }),
            allow_legacy,
        })
    }

    /// Whether a dendrite claiming a version below 7.2.0 (or none) skips the window.
    pub fn allows_legacy(&self) -> bool {
        self.allow_legacy
    }

    /// The nonce rules, before the signature is verified.
    pub fn check(
        &self,
        key: &str,
        nonce: i128,
        version: Option<i128>,
        timeout_s: f64,
        now_ns: i128,
    ) -> Result<(), AuthError> {
        let last = self
            .inner
            .lock()
            .expect("nonce lock")
            .last
            .get(key)
            .copied();
        let legacy = self.allow_legacy && version.is_none_or(|v| v < V_7_2_0);
        if last.is_none() && !legacy {
            let timeout_ns = (timeout_s.min(MAX_WINDOW_TIMEOUT_S) * 1e9) as i128;
            if nonce <= now_ns - ALLOWED_DELTA_NS - timeout_ns {
                let s = |ns: i128| ns as f64 / NANOSECONDS_IN_SECOND as f64;
                return Err(AuthError::StaleNonce {
                    allowed_s: s(ALLOWED_DELTA_NS + timeout_ns),
                    age_s: s(now_ns - nonce),
                });
            }
        }
        if last.is_some_and(|l| nonce <= l) {
            return Err(AuthError::ReplayedNonce);
        }
        Ok(())
    }

    /// Record a verified nonce (and append it to the file). Fails when a concurrent request
    /// with the same or a newer nonce for the key was recorded first (a replay racing the
    /// original). A failed write is logged, not refused: the record in memory still holds.
    pub fn commit(&self, key: &str, nonce: i128, now_ns: i128) -> Result<(), AuthError> {
        let mut guard = self.inner.lock().expect("nonce lock");
        let inner = &mut *guard;
        match inner.last.get(key) {
            Some(&l) if nonce <= l => return Err(AuthError::ReplayedNonce),
            _ => {
                inner.last.insert(key.to_string(), nonce);
            }
        }
        if let Some(log) = inner.log.as_mut() {
            let mut line = serde_json::to_string(&Entry {
                key: key.to_string(),
                nonce,
            })
            .expect("a nonce entry is JSON");
            line.push('\n');
            match log.file.write_all(line.as_bytes()) {
                Ok(()) => log.lines += 1,
                Err(e) => tracing::error!(path = %log.path.display(), error = %e,
                    "could not append to the nonce file: a restart would forget this nonce"),
            }
            if log.lines >= COMPACT_AFTER_LINES && log.lines > 2 * inner.last.len() {
                if !self.allow_legacy {
                    let horizon = now_ns - widest_window_ns();
                    inner.last.retain(|_, n| *n > horizon);
                }
                let path = log.path.clone();
                match rewrite(&path, &inner.last) {
                    Ok(fresh) => *log = fresh,
                    Err(e) => tracing::error!(error = %e, "could not compact the nonce file"),
                }
            }
        }
        Ok(())
    }

    /// Keys recorded.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("nonce lock").last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::miner::ErrorText;

    const NOW: i128 = 1_800_000_000_000_000_000;
    const V: Option<i128> = Some(10_000_001);
    const OLD: Option<i128> = Some(7_001_999);

    #[test]
    fn nonce_rules() {
        let s = NonceStore::in_memory(false);
        // First nonce: within 4 s + timeout of now.
        let e = s.check("k", NOW - 5_000_000_000, V, 0.0, NOW).unwrap_err();
        assert!(e.to_string().starts_with("Nonce is too old: acceptable delta is 4.00 seconds but request was 5.00 seconds old"), "{e}");
        assert!(e.to_string().contains("bt_header_dendrite_nonce"), "{e}");
        s.check("k", NOW - 5_000_000_000, V, 2.0, NOW).unwrap();
        // A lowered or missing version does not skip the window.
        let two_hours = 7_200 * NANOSECONDS_IN_SECOND;
        for version in [OLD, None, Some(0)] {
            assert!(s.check("k", NOW - two_hours, version, 90.0, NOW).is_err());
        }
        s.check("k", NOW, V, 12.0, NOW).unwrap();
        s.commit("k", NOW, NOW).unwrap();
        // Replay and older: refused; newer: fine; other keys are separate.
        let e = s.check("k", NOW, V, 12.0, NOW).unwrap_err();
        assert_eq!(e, "Nonce is too old, a newer one was last processed");
        assert!(s.check("k", NOW - 1, V, 12.0, NOW).is_err());
        assert!(s.commit("k", NOW, NOW).is_err());
        s.check("k", NOW + 1, V, 12.0, NOW).unwrap();
        s.check("k2", NOW, V, 12.0, NOW).unwrap();
        // A huge timeout header does not open an unbounded window.
        assert!(s.check("k3", NOW - 3_600_000_000_000, V, 1e9, NOW).is_err());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn the_legacy_flag_lets_old_versions_skip_the_window() {
        let s = NonceStore::in_memory(true);
        let two_hours = 7_200 * NANOSECONDS_IN_SECOND;
        s.check("k", NOW - two_hours, OLD, 90.0, NOW).unwrap();
        s.check("k", NOW - two_hours, None, 90.0, NOW).unwrap();
        // Versions from 7.2.0 on still get it, and a recorded nonce still refuses its replay.
        assert!(s.check("k", NOW - two_hours, V, 90.0, NOW).is_err());
        s.commit("k", NOW - two_hours, NOW).unwrap();
        assert!(s.check("k", NOW - two_hours, OLD, 90.0, NOW).is_err());
    }

    #[test]
    fn the_file_survives_a_restart_and_is_pruned_and_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/nonces.jsonl");
        let s = NonceStore::open(&path, false, NOW).unwrap();
        s.commit("fresh", NOW, NOW).unwrap();
        s.commit("fresh", NOW + 1, NOW).unwrap();
        s.commit("stale", NOW - widest_window_ns() - 1, NOW)
            .unwrap();
        drop(s);
        // A torn last line is skipped.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"key\":\"torn\",\"no").unwrap();
        drop(f);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 4);
        let s = NonceStore::open(&path, false, NOW).unwrap();
        assert_eq!(s.len(), 1, "the stale entry is dropped");
        let e = s.check("fresh", NOW + 1, V, 12.0, NOW).unwrap_err();
        assert_eq!(e, "Nonce is too old, a newer one was last processed");
        s.check("fresh", NOW + 2, V, 12.0, NOW).unwrap();
        // Compacted: one line per key.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!path.with_extension("jsonl.tmp").exists());
        // With the legacy flag nothing is dropped.
        drop(s);
        let s = NonceStore::open(&path, true, NOW + 10 * widest_window_ns()).unwrap();
        assert_eq!(s.len(), 1);
        // Many appends compact the file.
        let s = NonceStore::open(&path, false, NOW).unwrap();
        for i in 0..COMPACT_AFTER_LINES as i128 + 5 {
            s.commit("busy", NOW + i, NOW).unwrap();
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 10, "{lines} lines after compaction");
        drop(s);
        let s = NonceStore::open(&path, false, NOW).unwrap();
        assert!(s.check("busy", NOW + 4, V, 12.0, NOW).is_err());
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let e = NonceStore::open(&blocker.join("nonces.jsonl"), false, NOW).unwrap_err();
        assert!(e.contains("--nonce-file") && e.contains("file"), "{e}");
    }
}
