//! The LLM agents' history and publisher over a [`Store`]: with these, the
//! agents' `load_hippius_history`-style tools and their publisher read and
//! write the same bucket (or directory) as the built-in pipeline, in the same
//! key layout (`experiments/{run_id}/…`, `models/{run_id}/{name}/…`).

use std::sync::Arc;

use crate::history::{
    safe_name, ExperimentHistory, HistoryError, PublishFailed, PublishReceipt, PublishRequest,
    Publisher,
};
use trainer::experiments::ExperimentRecord;
use trainer::zoo::train::WEIGHTS_FILE;

use publisher::store::records::{self, model_prefix};
use publisher::store::{Store, StoreExt};

/// An [`ExperimentHistory`] kept in the store. Records without a run id are
/// saved under `session`.
#[derive(Debug, Clone)]
pub struct StoreHistory {
    pub store: Arc<dyn Store>,
    pub session: String,
}

#[async_trait::async_trait]
impl ExperimentHistory for StoreHistory {
    async fn load(&self, limit: usize) -> Result<Vec<ExperimentRecord>, HistoryError> {
        let h = records::load_history(self.store.clone(), usize::MAX)
            .await
            .map_err(|e| HistoryError(e.to_string()))?;
        let mut recs = h.records;
        recs.sort_by_key(|r| r.recorded_at);
        Ok(recs.split_off(recs.len().saturating_sub(limit)))
    }

    async fn save(&self, record: &ExperimentRecord) -> Result<(), HistoryError> {
        let run = safe_name(record.run_id.as_deref().unwrap_or(&self.session));
        records::save_experiments(&*self.store, &run, std::slice::from_ref(record))
            .await
            .map(|_| ())
            .map_err(|e| HistoryError(e.to_string()))
    }
}

/// A [`Publisher`] into the store: the checkpoint's files under
/// `models/{session}/{name}/`, then `metrics.json` (written last).
#[derive(Debug, Clone)]
pub struct StorePublisher {
    pub store: Arc<dyn Store>,
    pub session: String,
}

#[async_trait::async_trait]
impl Publisher for StorePublisher {
    fn describe(&self) -> String {
        self.store.describe()
    }

    async fn publish(&self, request: &PublishRequest) -> Result<PublishReceipt, PublishFailed> {
        let prefix = model_prefix(&self.session, &request.name);
        let mut names: Vec<String> = std::fs::read_dir(&request.checkpoint)
            .map_err(|e| {
                format!(
                    "cannot read checkpoint {}: {e}",
                    request.checkpoint.display()
                )
            })?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        if !names.iter().any(|f| f == WEIGHTS_FILE) {
            return Err(format!(
                "{} has no {WEIGHTS_FILE}: not a trained checkpoint",
                request.checkpoint.display()
            )
            .into());
        }
        let mut files = Vec::new();
        for n in &names {
            if safe_name(n) != *n {
                continue;
            }
            self.store
                .put_file(&format!("{prefix}{n}"), &request.checkpoint.join(n))
                .await
                .map_err(|e| e.to_string())?;
            files.push(n.clone());
        }
        self.store
            .put_json(&format!("{prefix}metrics.json"), &request.metrics)
            .await
            .map_err(|e| e.to_string())?;
        files.push("metrics.json".into());
        files.sort();
        Ok(PublishReceipt {
            location: self.store.location(&prefix),
            files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use publisher::store::FsStore;

    #[tokio::test]
    async fn the_agents_history_and_publisher_use_the_store_layout() {
        let dir = std::env::temp_dir().join(format!("sc-agents-store-{}", rand::random::<u64>()));
        let store: Arc<dyn Store> = Arc::new(FsStore::new(&dir));
        let h = StoreHistory {
            store: store.clone(),
            session: "sess".into(),
        };
        let mut spec = trainer::zoo::spec::ExperimentSpec::new(&["lstm"], "gbm");
        let mut recs = Vec::new();
        for (i, lr) in [1e-3, 3e-3, 1e-2].into_iter().enumerate() {
            spec.training.lr = lr;
            recs.push(ExperimentRecord {
                name: format!("e{i}"),
                run_id: None,
                fingerprint: trainer::experiments::fingerprint(&spec),
                spec: spec.clone(),
                status: trainer::experiments::RunStatus::Ok,
                crps: Some(10.0 - i as f64),
                gbm_crps: Some(10.0),
                classical_crps: None,
                param_count: None,
                epochs: 1,
                diverged: false,
                error: None,
                artifact: None,
                checkpoint: None,
                training_time_s: None,
                device: None,
                steps_per_sec: None,
                recorded_at: 100 + i as i64,
            });
        }
        for r in &recs {
            h.save(r).await.unwrap();
        }
        let loaded = h.load(2).await.unwrap();
        assert_eq!(
            loaded.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["e1", "e2"],
            "the most recent, oldest first"
        );
        assert_eq!(store.list("experiments/sess/").await.unwrap().len(), 3);

        let ck = dir.join("ck");
        std::fs::create_dir_all(&ck).unwrap();
        let p = StorePublisher {
            store: store.clone(),
            session: "sess".into(),
        };
        let req = PublishRequest {
            name: "best one".into(),
            checkpoint: ck.clone(),
            spec: spec.clone(),
            metrics: serde_json::json!({"crps": 1.0}),
        };
        assert!(p
            .publish(&req)
            .await
            .unwrap_err()
            .0
            .contains("not a trained checkpoint"));
        std::fs::write(ck.join(WEIGHTS_FILE), b"w").unwrap();
        let receipt = p.publish(&req).await.unwrap();
        assert_eq!(receipt.files, ["metrics.json", WEIGHTS_FILE]);
        assert!(
            receipt.location.ends_with("models/sess/best_one/"),
            "{}",
            receipt.location
        );
        assert_eq!(
            store
                .get(&format!("models/sess/best_one/{WEIGHTS_FILE}"))
                .await
                .unwrap()
                .unwrap(),
            b"w"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
