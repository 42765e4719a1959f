//! An equal-weight ensemble of forecasters: the request's paths split between the members, each
//! simulating its share from its own random stream, stacked into one response. A mixture of
//! two calibrated forecasts whose errors differ scores a lower CRPS than their average (the
//! score is convex in the forecast distribution), which is why ensembles are a component here.
//!
//! What it does not do: weight members (equal shares; the first members take one path more
//! when the split is uneven), fit anything, or fall back when a member cannot answer (the
//! ensemble's error is the member's, and the caller's fallback applies to the whole request).

use std::sync::Arc;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::crps::Paths;
use super::forecast::{ForecastError, ForecastRequest, Forecaster};

/// The prefix of an ensemble's name: `mix:A,B[,C...]`.
pub const PREFIX: &str = "mix:";

/// The member names of `mix:A,B,...`, or `None` when `name` is not an ensemble.
pub fn member_names(name: &str) -> Option<Vec<&str>> {
    let rest = name.trim().strip_prefix(PREFIX)?;
    Some(rest.split(',').map(str::trim).collect())
}

/// Forecasters answering one request together.
pub struct Ensemble {
    name: String,
    members: Vec<Arc<dyn Forecaster>>,
}

impl Ensemble {
    /// An ensemble of at least two members that agree on their step size (where they have one).
    pub fn new(members: Vec<Arc<dyn Forecaster>>) -> Result<Self, ForecastError> {
        if members.len() < 2 {
            return Err(ForecastError::Model(format!(
                "an ensemble needs at least two members ({PREFIX}A,B), got {}",
                members.len()
            )));
        }
        let steps: Vec<u64> = members.iter().filter_map(|m| m.time_increment()).collect();
        if steps.windows(2).any(|w| w[0] != w[1]) {
            return Err(ForecastError::Model(format!(
                "the ensemble's members simulate different step sizes ({steps:?} s): combine models of one prompt"
            )));
        }
        let names: Vec<&str> = members.iter().map(|m| m.name()).collect();
        Ok(Ensemble {
            name: format!("{PREFIX}{}", names.join(",")),
            members,
        })
    }
}

impl Forecaster for Ensemble {
    fn name(&self) -> &str {
        &self.name
    }

    fn time_increment(&self) -> Option<u64> {
        self.members.iter().find_map(|m| m.time_increment())
    }

    fn forecast(
        &self,
        req: &ForecastRequest<'_>,
        rng: &mut dyn RngCore,
    ) -> Result<Paths, ForecastError> {
        let k = self.members.len();
        let n = req.num_simulations;
        if n < k {
            return Err(ForecastError::Model(format!(
                "{} paths cannot be split among {k} ensemble members",
                n
            )));
        }
        let mut data = Vec::with_capacity(n * req.num_points());
        for (j, m) in self.members.iter().enumerate() {
            let share = n / k + usize::from(j < n % k);
            let sub = ForecastRequest {
                num_simulations: share,
                ..req.clone()
            };
            let mut member_rng = ChaCha8Rng::seed_from_u64(rng.next_u64());
            let p = m.forecast(&sub, &mut member_rng)?;
            data.extend_from_slice(p.as_flat());
        }
        Paths::from_flat(data, n).map_err(|e| ForecastError::Model(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::Sn50Config;
    use crate::forecast::Gbm;

    fn req(n: usize) -> ForecastRequest<'static> {
        ForecastRequest {
            asset: "BTC".into(),
            start_time: 1_700_000_000,
            time_increment: 300,
            time_length: 86_400,
            num_simulations: n,
            spot: 100.0,
            history: None,
            as_of: 1_700_000_000,
        }
    }

    #[test]
    fn paths_are_split_between_members_and_stacked() {
        let cfg = Sn50Config::default();
        let mut wide = Gbm::new(cfg.clone());
        wide.sigma_override = Some(0.05);
        let mut narrow = Gbm::new(cfg);
        narrow.sigma_override = Some(0.0);
        let e = Ensemble::new(vec![Arc::new(wide), Arc::new(narrow)]).unwrap();
        assert_eq!(e.name(), "mix:gbm,gbm");
        let p = e
            .forecast(&req(5), &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap();
        assert_eq!(p.n_paths(), 5);
        let rows: Vec<&[f64]> = p.as_flat().chunks(p.n_points()).collect();
        // the first member (3 paths) moves, the second (2 paths, sigma 0) stays at the spot
        assert!(rows[..3].iter().all(|r| r.iter().any(|&x| x != 100.0)));
        assert!(rows[3..].iter().all(|r| r.iter().all(|&x| x == 100.0)));
        assert!(e
            .forecast(&req(1), &mut ChaCha8Rng::seed_from_u64(1))
            .is_err());
        assert_eq!(member_names("mix:a, b"), Some(vec!["a", "b"]));
        assert_eq!(member_names("garch"), None);
        let one = Ensemble::new(vec![Arc::new(Gbm::new(Sn50Config::default()))]);
        assert!(one.err().unwrap().to_string().contains("at least two"));
    }
}
