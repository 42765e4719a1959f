//! Every job type's handler, registered in one place.
//!
//! Each role crate exports its handlers and one `register` function; the run state machine
//! registers `run` and the stage types. A worker process takes the whole set and serves the
//! types its `--roles` name ([`expand_roles`]): role names (`trainer`, `scorer`, ...), type
//! names, or `all`. Every handler that touches files gets the worker's own directories
//! ([`WorkerDirs`], from its settings), and the trainer a sink that puts checkpoints in the
//! store. Every handler is wrapped so that what it writes into a result or an error names
//! none of the worker's directories ([`WorkerDirs::redact`]: `<data-dir>` in place of the
//! path). This module decides nothing else.

use std::sync::Arc;

use async_trait::async_trait;
use engine::Queue;
use jobs::{Catalog, Handler, JobContext, JobError, Registry, Role};
use trainer::WorkerDirs;

/// The handlers of every job type of this build, working in `dirs`.
pub fn registry(queue: &Queue, dirs: &WorkerDirs) -> Registry {
    let mut r = Registry::new();
    engine::builtin::register(&mut r); // noop, sleep
    crate::pipeline::register(&mut r, queue.clone(), dirs.clone()); // run and the stages
    let sink = publisher::artifacts::StoreSink {
        store_dir: dirs.store_dir.clone(),
        cache: publisher::artifacts::ArtifactCache::of(dirs),
    };
    trainer::register(&mut r, dirs.clone(), Arc::new(sink)); // experiment
    scorer::register(&mut r, dirs); // shadow-prompt, shadow-score, data-download
    publisher::register(&mut r, dirs); // promote
    let dirs = dirs.clone();
    r.wrap(|inner| {
        Arc::new(Redacting {
            inner,
            dirs: dirs.clone(),
        })
    });
    r
}

/// A handler whose results and errors name none of the worker's directories.
struct Redacting {
    inner: Arc<dyn Handler>,
    dirs: WorkerDirs,
}

#[async_trait]
impl Handler for Redacting {
    fn job_type(&self) -> &'static str {
        self.inner.job_type()
    }

    async fn handle(
        &self,
        ctx: JobContext,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, JobError> {
        match self.inner.handle(ctx, payload).await {
            Ok(mut v) => {
                self.dirs.redact_json(&mut v);
                Ok(v)
            }
            Err(e) => Err(e.map_message(|m| self.dirs.redact(m))),
        }
    }
}

/// The job types that `roles` names: each entry a role (every type of that role), a job type,
/// or `all`. The error names the entry and lists what would do.
pub fn expand_roles(catalog: &Catalog, roles: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for r in roles {
        let r = r.trim();
        let types: Vec<String> = if r == "all" {
            catalog.types().iter().map(|t| t.name.to_string()).collect()
        } else if let Some(role) = Role::parse(r) {
            catalog
                .of_role(role)
                .into_iter()
                .map(String::from)
                .collect()
        } else if catalog.find(r).is_ok() {
            vec![r.to_string()]
        } else {
            let roles: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
            let types: Vec<_> = catalog.types().iter().map(|t| t.name).collect();
            return Err(format!(
                "--roles: `{r}` is neither a role ({}) nor a job type ({}), nor `all`",
                roles.join(", "),
                types.join(", ")
            ));
        };
        for t in types {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_one_handler_and_roles_expand() {
        let q = Queue::new("redis://127.0.0.1:1", "handlers-test", Default::default()).unwrap();
        let r = registry(&q, &WorkerDirs::default());
        let mut handled = r.types();
        handled.sort_unstable();
        let mut known: Vec<_> = jobs::catalog().iter().map(|t| t.name).collect();
        known.sort_unstable();
        assert_eq!(handled, known);

        let c = Catalog::default();
        let got = expand_roles(&c, &["trainer".into(), "noop".into(), "train".into()]).unwrap();
        assert_eq!(got, ["train", "train-one", "experiment", "noop"]);
        assert_eq!(
            expand_roles(&c, &["all".into()]).unwrap().len(),
            known.len()
        );
        let err = expand_roles(&c, &["gpu".into()]).unwrap_err();
        assert!(err.contains("`gpu`") && err.contains("trainer"), "{err}");
    }
}
