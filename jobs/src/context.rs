//! What a handler gets besides its payload: identity, cancellation and a progress channel.
//!
//! The context holds no connection. Progress goes into a channel that the
//! engine drains into Redis; cancellation is a token that the engine trips when
//! an operator cancels the job, its lease is lost, or the worker shuts down.

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// A progress report from a running job.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    pub job_id: String,
    pub job_type: String,
    pub progress: serde_json::Value,
}

/// The per-attempt context passed to [`crate::Handler::handle`].
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job's id.
    pub job_id: String,
    /// The job's type.
    pub job_type: String,
    /// Failed attempts before this one.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// A fencing token unique to this delivery (`<stream id>/<delivery>`):
    /// pass it to side effects that must reject a stale attempt.
    pub fence: String,
    /// The pipeline run, if any.
    pub run_id: Option<String>,
    /// The bot, if any.
    pub bot_id: Option<String>,
    cancel: CancellationToken,
    progress: Option<UnboundedSender<ProgressUpdate>>,
}

impl JobContext {
    /// Builds a context. The engine calls this; tests may too.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        job_id: impl Into<String>,
        job_type: impl Into<String>,
        attempt: u32,
        max_attempts: u32,
        fence: impl Into<String>,
        run_id: Option<String>,
        bot_id: Option<String>,
        cancel: CancellationToken,
        progress: Option<UnboundedSender<ProgressUpdate>>,
    ) -> Self {
        Self {
            job_id: job_id.into(),
            job_type: job_type.into(),
            attempt,
            max_attempts,
            fence: fence.into(),
            run_id,
            bot_id,
            cancel,
            progress,
        }
    }

    /// A context with no engine behind it, for unit tests of handlers.
    pub fn detached(job_type: &str) -> Self {
        Self::new(
            "test",
            job_type,
            0,
            1,
            "0-0/1",
            None,
            None,
            CancellationToken::new(),
            None,
        )
    }

    /// Reports progress (any JSON: a percentage, a step name, a metric).
    pub fn progress(&self, progress: serde_json::Value) {
        if let Some(tx) = &self.progress {
            // A closed channel means the worker is going away; progress is best-effort.
            let _ = tx.send(ProgressUpdate {
                job_id: self.job_id.clone(),
                job_type: self.job_type.clone(),
                progress,
            });
        }
    }

    /// True once the job should stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the job should stop; use it in `tokio::select!`.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// The token itself, for handing to blocking work.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }
}
