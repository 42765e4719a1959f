//! The [`Handler`] trait a worker implements, and the [`Registry`] that maps types to handlers.
//!
//! Handlers are written against typed payloads ([`JobHandler`]); the registry
//! erases the type so the engine can dispatch on the stream name alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{JobContext, JobError, JobSpec};

/// A handler over JSON, as the engine sees it.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The job type this handler serves.
    fn job_type(&self) -> &'static str;
    /// Runs one attempt.
    async fn handle(
        &self,
        ctx: JobContext,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, JobError>;
}

/// A handler over a typed payload, as a worker author writes it.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    type Job: JobSpec;
    async fn run(
        &self,
        ctx: &JobContext,
        job: Self::Job,
    ) -> Result<<Self::Job as JobSpec>::Output, JobError>;
}

struct Typed<H>(H);

#[async_trait]
impl<H: JobHandler> Handler for Typed<H> {
    fn job_type(&self) -> &'static str {
        <H::Job as JobSpec>::TYPE
    }

    async fn handle(
        &self,
        ctx: JobContext,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, JobError> {
        let job: H::Job = crate::decode_payload(payload).map_err(|e| JobError::Malformed(e.0))?;
        let out = self.0.run(&ctx, job).await?;
        serde_json::to_value(out).map_err(|e| JobError::permanent(format!("result: {e}")))
    }
}

/// Job type name -> handler.
#[derive(Default, Clone)]
pub struct Registry {
    handlers: BTreeMap<&'static str, Arc<dyn Handler>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a typed handler; a second registration for a type replaces the first.
    pub fn register<H: JobHandler>(&mut self, handler: H) -> &mut Self {
        let h: Arc<dyn Handler> = Arc::new(Typed(handler));
        self.handlers.insert(h.job_type(), h);
        self
    }

    /// Replaces every handler `h` with `f(h)`: a decorator around all of them (e.g. one that
    /// rewrites what handlers write into results and errors).
    pub fn wrap(&mut self, f: impl Fn(Arc<dyn Handler>) -> Arc<dyn Handler>) -> &mut Self {
        for h in self.handlers.values_mut() {
            *h = f(h.clone());
        }
        self
    }

    /// The handler for `job_type`.
    pub fn get(&self, job_type: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(job_type).cloned()
    }

    /// The registered type names, sorted.
    pub fn types(&self) -> Vec<&'static str> {
        self.handlers.keys().copied().collect()
    }
}
