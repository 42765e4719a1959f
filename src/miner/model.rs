//! What the miner serves: `--model` ([`ModelSpec`]), the checkpoints loaded from it
//! ([`LoadedModel`], one per [`Timeframe`], or one per (asset, prompt) for `champions`) and
//! their hot swap ([`ModelHolder`]): `champions` (the default) follows the champion pointers of
//! `publisher::champions` — only models that passed the promotion gate, the GBM (or
//! `--baseline`) for a pair without one — and `latest` (ungated: whatever was published last)
//! follows the publisher's production pointers; either replaces a model when its pointer
//! changes, keeping the previous one when the new one does not load.
//!
//! This module does not answer requests (see [`super::answer`]), does not decide when to look
//! for a publication (the miner's reload loop does), and does not read or copy pointers itself:
//! [`publisher::production`] reads them and mirrors a bucket's into the local store.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use jobs::Timeframe;
use publisher::artifacts::ArtifactCache;
use publisher::champions::{Champion, ChampionError};
use publisher::production::ProductionError;
use publisher::store::Store;
use sn50::constants::Sn50Config;
use sn50::forecast::{Forecaster, Gbm};
use trainer::zoo::ZooError;

use super::error::ErrorText;

/// Why a model is not served.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// `--model` named neither `gbm`, `latest` nor a folder.
    #[error("no checkpoint folder given: name one per timeframe (comma-separated), or use latest or gbm")]
    NoCheckpoint,
    /// A checkpoint folder that does not load (the trainer's error names the path).
    #[error(transparent)]
    Load(#[from] ZooError),
    /// Two checkpoints for one timeframe.
    #[error("{first} and {second} both simulate {} s steps: give one checkpoint per timeframe", .timeframe.step_secs())]
    SameTimeframe {
        first: String,
        second: String,
        timeframe: Timeframe,
    },
    /// A checkpoint whose step size is no SN50 prompt's.
    #[error(
        "{dir} simulates {step_secs} s steps, which no prompt asks for: train it on 5m or 1m bars"
    )]
    UnknownStep { dir: String, step_secs: u64 },
    /// `--baseline` named no classical model.
    #[error("--baseline {0}: {1}")]
    Baseline(String, String),
    /// `--blend` named no classical model.
    #[error("--blend {0}: {1} (or none)")]
    Blend(String, String),
    /// A production pointer that cannot be read.
    #[error(transparent)]
    Pointer(#[from] ProductionError),
    /// The model a production pointer names does not load.
    #[error("the production model {dir} ({file}) does not load: {error}")]
    ProductionLoad {
        dir: String,
        file: String,
        error: Box<ModelError>,
    },
    /// A timeframe's pointer names a model of another step size.
    #[error("{file} points at {dir}, a model of {} s steps, not {want}: publish a {want} model there", .got.step_secs())]
    WrongTimeframe {
        file: String,
        dir: String,
        got: Timeframe,
        want: Timeframe,
    },
    /// The production models could not be copied from the bucket.
    #[error(transparent)]
    Mirror(ProductionError),
    /// The champion pointers could not be read.
    #[error("the champions: {0}")]
    Champions(#[from] ChampionError),
    /// A champion's checkpoint could not be fetched or does not load, or simulates another
    /// step size than its prompt's.
    #[error("the champion {candidate} of {prompt}/{asset}: {error}")]
    ChampionLoad {
        candidate: String,
        prompt: String,
        asset: String,
        error: String,
    },
    /// More than one of the above, from one look at the pointers.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Several(Vec<ModelError>),
}

impl ErrorText for ModelError {}

impl ModelError {
    /// One error for all of `errors` (`None` when there are none).
    fn all(mut errors: Vec<ModelError>) -> Option<ModelError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(ModelError::Several(errors)),
        }
    }
}

/// What `--model` names.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    Gbm,
    /// Follow the publisher's production pointers (one per timeframe), ungated.
    Latest,
    /// Serve each (asset, prompt) pair's champion (`publisher::champions`); the baseline where
    /// a pair has none.
    Champions,
    /// Checkpoint folders, at most one per step size.
    Paths(Vec<PathBuf>),
}

impl ModelSpec {
    /// `gbm`, `latest`, `champions`, or checkpoint folders separated by commas.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            x if x.eq_ignore_ascii_case("gbm") => ModelSpec::Gbm,
            x if x.eq_ignore_ascii_case("champions") => ModelSpec::Champions,
            x if x.eq_ignore_ascii_case("latest") => ModelSpec::Latest,
            x => ModelSpec::Paths(
                x.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .collect(),
            ),
        }
    }
}

/// A model being served.
pub struct LoadedModel {
    pub forecaster: Arc<dyn Forecaster>,
    /// The checkpoint folder, or `gbm`.
    pub label: String,
    pub is_gbm: bool,
    /// The timeframe it simulates (`None`: any step size, as the GBM).
    pub timeframe: Option<Timeframe>,
}

impl LoadedModel {
    fn gbm() -> Self {
        LoadedModel {
            forecaster: Arc::new(Gbm::new(Sn50Config::default())),
            label: "gbm".into(),
            is_gbm: true,
            timeframe: None,
        }
    }
}

fn load_checkpoint(dir: &Path) -> Result<LoadedModel, ModelError> {
    let f = trainer::zoo::forecaster::load_forecaster(
        &dir.display().to_string(),
        &trainer::Device::Cpu,
    )?;
    let timeframe = match f.time_increment() {
        None => None,
        Some(step_secs) => Some(Timeframe::from_step_secs(step_secs as i64).ok_or_else(|| {
            ModelError::UnknownStep {
                dir: dir.display().to_string(),
                step_secs,
            }
        })?),
    };
    Ok(LoadedModel {
        forecaster: Arc::from(f),
        label: dir.display().to_string(),
        is_gbm: false,
        timeframe,
    })
}

/// For `latest` from an object store: copies the production pointers of `store` and the
/// model objects they name into `local` (see [`publisher::production::mirror`]).
pub async fn mirror_production(store: &dyn Store, local: &Path) -> Result<Vec<String>, ModelError> {
    publisher::production::mirror(store, local, trainer::zoo::train::WEIGHTS_FILE)
        .await
        .map_err(ModelError::Mirror)
}

/// The models being served, one per timeframe, each swapped atomically when `latest` sees a
/// new publication. A request whose step size has no trained model gets the GBM baseline.
pub struct ModelHolder {
    pub spec: ModelSpec,
    store_dir: PathBuf,
    models: RwLock<BTreeMap<Timeframe, Arc<LoadedModel>>>,
    /// What answers a step size with no model: a classical baseline (`--baseline`), else the
    /// GBM.
    baseline: Arc<LoadedModel>,
    gbm: Arc<LoadedModel>,
    /// `--blend`: a classical model every trained model answers together with, half the
    /// paths each (`sn50::ensemble`).
    blend: Option<(String, Arc<dyn Forecaster>)>,
    /// `latest`: each production pointer's text last acted on (loaded, or failed to load).
    seen: Mutex<HashMap<String, String>>,
    /// `champions`: the model of each (timeframe, asset) pair that has a champion.
    champions: RwLock<BTreeMap<(Timeframe, String), Arc<LoadedModel>>>,
    /// `champions`: each pair's pointer (as JSON) last acted on.
    champion_seen: Mutex<HashMap<(Timeframe, String), String>>,
}

impl ModelHolder {
    fn empty(spec: ModelSpec, store_dir: &Path) -> Self {
        ModelHolder {
            spec,
            store_dir: store_dir.to_path_buf(),
            models: RwLock::new(Default::default()),
            baseline: Arc::new(LoadedModel::gbm()),
            gbm: Arc::new(LoadedModel::gbm()),
            blend: None,
            seen: Mutex::new(HashMap::new()),
            champions: RwLock::new(BTreeMap::new()),
            champion_seen: Mutex::new(HashMap::new()),
        }
    }

    fn put(&self, m: LoadedModel) {
        let m = Arc::new(self.blended(m));
        let mut models = self.models.write().expect("model lock");
        match m.timeframe {
            Some(tf) => {
                models.insert(tf, m);
            }
            // a forecaster for any step size serves every timeframe
            None => {
                for tf in Timeframe::ALL {
                    models.insert(tf, m.clone());
                }
            }
        }
    }

    /// Serve a forecaster given directly (embedding, tests): for its own timeframe, or for all
    /// of them when it takes any step size. One of a step size no prompt uses serves nothing.
    pub fn fixed(forecaster: Arc<dyn Forecaster>, label: &str) -> Self {
        let h = Self::empty(ModelSpec::Paths(vec![PathBuf::from(label)]), Path::new(""));
        let timeframe = match forecaster.time_increment() {
            None => None,
            Some(s) => match Timeframe::from_step_secs(s as i64) {
                Some(tf) => Some(tf),
                None => return h,
            },
        };
        h.put(LoadedModel {
            forecaster,
            label: label.into(),
            is_gbm: false,
            timeframe,
        });
        h
    }

    /// Load what `spec` names (blocking). A checkpoint path that does not load, or two for
    /// the same step size, is an error; `latest` with nothing published, or with a
    /// publication that does not load, serves the GBM and says why in the second value (the
    /// reload loop picks up the next publication).
    pub fn load(spec: ModelSpec, store_dir: &Path) -> Result<(Self, Option<String>), ModelError> {
        let h = Self::empty(spec.clone(), store_dir);
        match &spec {
            ModelSpec::Gbm => Ok((h, None)),
            // the champions are read from the store, asynchronously: `reload_champions`
            ModelSpec::Champions => Ok((h, None)),
            ModelSpec::Paths(paths) => {
                if paths.is_empty() {
                    return Err(ModelError::NoCheckpoint);
                }
                for p in paths {
                    let m = load_checkpoint(p)?;
                    if let Some(tf) = m.timeframe {
                        if let Some(other) = h.models.read().expect("lock").get(&tf) {
                            return Err(ModelError::SameTimeframe {
                                first: other.label.clone(),
                                second: p.display().to_string(),
                                timeframe: tf,
                            });
                        }
                    }
                    h.put(m);
                }
                Ok((h, None))
            }
            ModelSpec::Latest => {
                let r = h.reload_if_changed();
                let note = match r {
                    Ok(loaded) if !loaded.is_empty() => None,
                    Ok(_) => Some(format!(
                        "nothing is published in {} yet (no models/production*.json): serving the GBM baseline until it is",
                        store_dir.display()
                    )),
                    Err(e) => Some(format!("{e}: serving the GBM baseline where no model loaded")),
                };
                Ok((h, note))
            }
        }
    }

    /// `m` answering together with the `--blend` model, when there is one and `m` is not the
    /// GBM; `m` itself otherwise (or if the two cannot be combined, which a classical model
    /// and one checkpoint always can).
    fn blended(&self, m: LoadedModel) -> LoadedModel {
        let Some((name, blend)) = self.blend.as_ref().filter(|_| !m.is_gbm) else {
            return m;
        };
        match sn50::ensemble::Ensemble::new(vec![m.forecaster.clone(), blend.clone()]) {
            Ok(e) => LoadedModel {
                forecaster: Arc::new(e),
                label: format!("{}{},{name}", sn50::ensemble::PREFIX, m.label),
                ..m
            },
            Err(_) => m,
        }
    }

    /// Answer with every trained model (loaded now or later by `latest`) blended with a
    /// classical model by name (`garch-tod-t`, ...), half the paths each: the ensemble that
    /// scored best on held-out 24 h windows (docs/benchmarks.md). `none` blends nothing.
    pub fn with_blend(mut self, name: &str) -> Result<Self, ModelError> {
        if name == "none" {
            return Ok(self);
        }
        let f = sn50::forecast::model_by_name(name, &Sn50Config::default())
            .map_err(|e| ModelError::Blend(name.into(), e.to_string()))?;
        self.blend = Some((name.to_string(), Arc::from(f)));
        let loaded: Vec<Arc<LoadedModel>> = {
            let mut models = self.models.write().expect("model lock");
            std::mem::take(&mut *models).into_values().collect()
        };
        let mut done: Vec<*const LoadedModel> = Vec::new();
        for m in loaded {
            // a model serving every timeframe sits under each of them: blend it once
            if done.contains(&Arc::as_ptr(&m)) {
                continue;
            }
            done.push(Arc::as_ptr(&m));
            self.put(LoadedModel {
                forecaster: m.forecaster.clone(),
                label: m.label.clone(),
                is_gbm: m.is_gbm,
                timeframe: m.timeframe,
            });
        }
        Ok(self)
    }

    /// Answer the step sizes that have no model with a classical baseline by name
    /// (`garch-tod-t`, `ewma-tod-t`, ...: [`sn50::forecast::MODELS`]), fitted per request on the
    /// bars of the data directory, instead of the GBM.
    pub fn with_baseline(mut self, name: &str) -> Result<Self, ModelError> {
        if name == "gbm" {
            return Ok(self);
        }
        let f = sn50::forecast::model_by_name(name, &Sn50Config::default())
            .map_err(|e| ModelError::Baseline(name.into(), e.to_string()))?;
        self.baseline = Arc::new(LoadedModel {
            forecaster: Arc::from(f),
            label: name.into(),
            is_gbm: false,
            timeframe: None,
        });
        Ok(self)
    }

    /// The model for `asset`'s requests of `increment`-second steps: the pair's champion
    /// (`champions`), else [`ModelHolder::current`].
    pub fn current_for(&self, asset: &str, increment: u64) -> Arc<LoadedModel> {
        if let Some(tf) = Timeframe::from_step_secs(increment as i64) {
            if let Some(m) = self
                .champions
                .read()
                .expect("champion lock")
                .get(&(tf, asset.to_string()))
            {
                return m.clone();
            }
        }
        self.current(increment)
    }

    /// The model for requests of `increment`-second steps: the one of that timeframe, else
    /// the baseline (the GBM for a step size that is no timeframe's).
    pub fn current(&self, increment: u64) -> Arc<LoadedModel> {
        match Timeframe::from_step_secs(increment as i64) {
            Some(tf) => self.serving(tf),
            None => self.gbm.clone(),
        }
    }

    /// The model serving `timeframe` (the baseline when none is loaded).
    pub fn serving(&self, timeframe: Timeframe) -> Arc<LoadedModel> {
        self.models
            .read()
            .expect("model lock")
            .get(&timeframe)
            .cloned()
            .unwrap_or_else(|| self.baseline.clone())
    }

    /// What is served, per timeframe: `5m: runs/a, 1m: gbm`; for `champions`, per pair:
    /// `champions: 5m BTC run/m; otherwise gbm`.
    pub fn describe(&self) -> String {
        if self.spec == ModelSpec::Champions {
            let c = self.champions.read().expect("champion lock");
            let pairs: Vec<String> = c
                .iter()
                .map(|((tf, asset), m)| format!("{tf} {asset} {}", m.label))
                .collect();
            return format!(
                "champions: {}; otherwise {}",
                if pairs.is_empty() {
                    "none yet (no model has passed the promotion gate: synth-city models promote)"
                        .to_string()
                } else {
                    pairs.join(", ")
                },
                self.baseline.label
            );
        }
        Timeframe::ALL
            .iter()
            .map(|tf| format!("{tf}: {}", self.serving(*tf).label))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// For `champions`: load the champion of every pair whose pointer in `store` changed since
    /// last time (its checkpoint fetched by content into `cache`), and drop the pairs that no
    /// longer have one (a rollback to the GBM), so the baseline answers them. Returns what was
    /// loaded; a champion that does not load leaves the pair's previous model served and is
    /// reported in the error (after the others are loaded).
    pub async fn reload_champions(
        &self,
        store: &dyn Store,
        cache: &ArtifactCache,
    ) -> Result<Vec<String>, ModelError> {
        if self.spec != ModelSpec::Champions {
            return Ok(Vec::new());
        }
        let all = publisher::champions::list(store).await?;
        let (mut loaded, mut errors) = (Vec::new(), Vec::new());
        let pairs: Vec<(Timeframe, String)> = all
            .iter()
            .map(|c| (c.prompt.timeframe(), c.asset.clone()))
            .collect();
        for c in all {
            let pair = (c.prompt.timeframe(), c.asset.clone());
            let text = serde_json::to_string(&c).unwrap_or_default();
            {
                let mut seen = self.champion_seen.lock().expect("seen lock");
                if seen.get(&pair) == Some(&text) {
                    continue;
                }
                seen.insert(pair.clone(), text);
            }
            match load_champion(store, cache, &c).await {
                Ok(m) => {
                    loaded.push(format!("{} {} {}", pair.0, pair.1, m.label));
                    let m = Arc::new(self.blended(m));
                    self.champions
                        .write()
                        .expect("champion lock")
                        .insert(pair, m);
                }
                Err(error) => errors.push(ModelError::ChampionLoad {
                    candidate: c.candidate.clone(),
                    prompt: c.prompt.label().to_string(),
                    asset: c.asset.clone(),
                    error,
                }),
            }
        }
        // a pair whose pointer is gone: the baseline serves it again
        self.champions
            .write()
            .expect("champion lock")
            .retain(|k, _| pairs.contains(k));
        self.champion_seen
            .lock()
            .expect("seen lock")
            .retain(|k, _| pairs.contains(k));
        match ModelError::all(errors) {
            None => Ok(loaded),
            Some(e) => Err(e),
        }
    }

    /// For `latest`: load the production models whose pointers changed since last time
    /// (blocking), and return their labels. A pointer per timeframe
    /// (`models/production-5m.json`, `-1m.json`) wins over `models/production.json` (the
    /// newest publication of any timeframe, as older publishers wrote only it) for its step
    /// size. A model that does not load leaves the previous one served and is reported in
    /// the error (after the others are loaded).
    pub fn reload_if_changed(&self) -> Result<Vec<String>, ModelError> {
        if self.spec != ModelSpec::Latest {
            return Ok(Vec::new());
        }
        let (mut loaded, mut errors) = (Vec::new(), Vec::new());
        let mut pointers = vec![None];
        pointers.extend(Timeframe::ALL.into_iter().map(Some));
        let has_timeframe_pointer = |tf: Timeframe| {
            self.store_dir
                .join(publisher::production::key_for(Some(tf)))
                .exists()
        };
        for timeframe in pointers {
            let file = publisher::production::key_for(timeframe);
            let (dir, pointer, text) =
                match publisher::production::read_local(&self.store_dir, timeframe) {
                    Ok(Some(p)) => (p.dir, p.pointer, p.text),
                    Ok(None) => continue,
                    Err(e) => {
                        errors.push(e.into());
                        continue;
                    }
                };
            {
                let mut seen = self.seen.lock().expect("seen lock");
                if seen.get(&file).map(String::as_str) == Some(text.as_str()) {
                    continue;
                }
                seen.insert(file.clone(), text.clone());
            }
            // the newest publication's own timeframe pointer serves it (no second load)
            if timeframe.is_none() && pointer.timeframe.is_some_and(has_timeframe_pointer) {
                continue;
            }
            let m = match load_checkpoint(&dir) {
                Ok(m) => m,
                Err(e) => {
                    errors.push(ModelError::ProductionLoad {
                        dir: dir.display().to_string(),
                        file: file.clone(),
                        error: Box::new(e),
                    });
                    continue;
                }
            };
            if let (Some(want), Some(got)) = (timeframe, m.timeframe) {
                if want != got {
                    errors.push(ModelError::WrongTimeframe {
                        file: file.clone(),
                        dir: dir.display().to_string(),
                        got,
                        want,
                    });
                    continue;
                }
            }
            // an older pointer: its model's timeframe decides, unless that timeframe has its
            // own pointer
            if timeframe.is_none() && m.timeframe.is_some_and(has_timeframe_pointer) {
                continue;
            }
            loaded.push(m.label.clone());
            self.put(m);
        }
        match ModelError::all(errors) {
            None => Ok(loaded),
            Some(e) => Err(e),
        }
    }
}

/// A champion's checkpoint, fetched by content and loaded (on a blocking thread), labelled with
/// its candidate name; refused when it simulates another step size than its prompt's. A
/// classical champion is its model, fitted per request on the bars of the data directory; a
/// champion naming both answers with the two together (half the paths each).
async fn load_champion(
    store: &dyn Store,
    cache: &ArtifactCache,
    c: &Champion,
) -> Result<LoadedModel, String> {
    let artifact = match (&c.artifact, &c.classical) {
        (Some(a), _) => a,
        (None, Some(name)) => {
            let f = sn50::forecast::model_by_name(name, &Sn50Config::default())
                .map_err(|e| e.to_string())?;
            return Ok(LoadedModel {
                forecaster: Arc::from(f),
                label: c.candidate.clone(),
                is_gbm: false,
                timeframe: None,
            });
        }
        (None, None) => return Err("it names neither a checkpoint nor a classical model".into()),
    };
    let dir = cache
        .fetch(store, artifact)
        .await
        .map_err(|e| e.to_string())?;
    let mut m = tokio::task::spawn_blocking(move || load_checkpoint(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if let Some(name) = &c.classical {
        let classical = sn50::forecast::model_by_name(name, &Sn50Config::default())
            .map_err(|e| e.to_string())?;
        let e = sn50::ensemble::Ensemble::new(vec![m.forecaster.clone(), Arc::from(classical)])
            .map_err(|e| e.to_string())?;
        m.forecaster = Arc::new(e);
    }
    let want = c.prompt.timeframe();
    if m.timeframe.is_some_and(|tf| tf != want) {
        return Err(format!(
            "it simulates other steps than the {} prompt's {want}",
            c.prompt.label()
        ));
    }
    m.label = c.candidate.clone();
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trained model blended with a classical one answers as their ensemble (half the paths
    /// each), under a `mix:` label; the GBM is never blended; a bad name is refused naming the
    /// flag.
    #[test]
    fn a_blend_wraps_trained_models_but_not_the_gbm() {
        struct FiveMinute(Gbm);
        impl Forecaster for FiveMinute {
            fn name(&self) -> &str {
                "five"
            }
            fn time_increment(&self) -> Option<u64> {
                Some(300)
            }
            fn forecast(
                &self,
                req: &sn50::forecast::ForecastRequest<'_>,
                rng: &mut dyn rand::RngCore,
            ) -> Result<sn50::crps::Paths, sn50::forecast::ForecastError> {
                self.0.forecast(req, rng)
            }
        }
        let five = Arc::new(FiveMinute(Gbm::new(Sn50Config::default())));
        let h = ModelHolder::fixed(five, "runs/five")
            .with_blend("garch-tod-t")
            .unwrap();
        assert_eq!(h.describe(), "5m: mix:runs/five,garch-tod-t, 1m: gbm");
        assert!(h
            .serving(Timeframe::FiveMinutes)
            .forecaster
            .name()
            .starts_with("mix:five,garch"));
        assert!(!h
            .serving(Timeframe::OneMinute)
            .forecaster
            .name()
            .starts_with("mix:"));
        let e = ModelHolder::fixed(Arc::new(Gbm::new(Sn50Config::default())), "x")
            .with_blend("garch-x")
            .err()
            .expect("an unknown name");
        assert!(e.to_string().contains("--blend garch-x"), "{e}");
        let none = ModelHolder::load(ModelSpec::Gbm, Path::new(""))
            .unwrap()
            .0
            .with_blend("none")
            .unwrap();
        assert_eq!(none.describe(), "5m: gbm, 1m: gbm");
    }

    #[test]
    fn model_specs() {
        assert_eq!(ModelSpec::parse("GBM"), ModelSpec::Gbm);
        assert_eq!(ModelSpec::parse("latest"), ModelSpec::Latest);
        assert_eq!(ModelSpec::parse("Champions"), ModelSpec::Champions);
        assert_eq!(
            ModelSpec::parse("runs/x"),
            ModelSpec::Paths(vec![PathBuf::from("runs/x")])
        );
        assert_eq!(
            ModelSpec::parse(" runs/a , runs/b,"),
            ModelSpec::Paths(vec![PathBuf::from("runs/a"), PathBuf::from("runs/b")])
        );
    }

    #[test]
    fn the_production_pointer() {
        // (reading the pointer itself is tested in publisher::production)
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("models")).unwrap();
        std::fs::write(
            d.path().join("models/production.json"),
            r#"{"model_dir": "/x/y", "run_id": "r"}"#,
        )
        .unwrap();
        // latest with a pointer that does not load: GBM, with the reason.
        let (h, note) = ModelHolder::load(ModelSpec::Latest, d.path()).unwrap();
        assert!(h.current(300).is_gbm && h.current(60).is_gbm);
        assert!(note.unwrap().contains("/x/y"));
        // a timeframe pointer that does not load is named too
        std::fs::write(
            d.path().join("models/production-1m.json"),
            r#"{"model_dir": "/x/one-minute", "timeframe": "1m"}"#,
        )
        .unwrap();
        let (h, note) = ModelHolder::load(ModelSpec::Latest, d.path()).unwrap();
        assert!(h.current(60).is_gbm);
        let note = note.unwrap();
        assert!(
            note.contains("/x/one-minute") && note.contains("production-1m.json"),
            "{note}"
        );
        // A checkpoint path that does not exist is an error, and so is none at all.
        assert!(ModelHolder::load(ModelSpec::Paths(vec!["/no/such".into()]), d.path()).is_err());
        assert!(ModelHolder::load(ModelSpec::Paths(vec![]), d.path()).is_err());
    }
}
