//! `[buggify]`: fault sites inside the nodes (see
//! [`FaultSite`](shoal::runtime::FaultSite)) and `checks.must_reach`, the
//! rare situations (see [`Situation`](shoal::runtime::Situation)) a sweep of
//! the scenario must reach.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use shoal::runtime::{FaultSite, Situation};

use super::validate::Invalid;

/// Which fault sites a run enables, and how often they fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuggifySpec {
    /// Chance that each site not in `sites` is enabled for a whole run
    /// (the first stage; the seed decides).
    #[serde(default = "default_rate")]
    pub enable_rate: f64,
    /// Chance that an enabled site fires each time it is reached (the
    /// second stage).
    #[serde(default = "default_rate")]
    pub fire_rate: f64,
    /// Sites enabled in every run. A schedule file records every site a
    /// run enabled here, with `enable_rate = 0`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<String>,
}

/// FoundationDB's choice for both stages.
fn default_rate() -> f64 {
    0.25
}

impl BuggifySpec {
    /// The spec a run of `seed` of the scenario `name` uses: every site it
    /// enables written out, none left to draw. The name varies the draw
    /// between scenarios.
    pub fn for_seed(&self, name: &str, seed: u64) -> BuggifySpec {
        let mut salt = crate::history::Digest::default();
        salt.add(name.as_bytes());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ salt.value());
        let sites = FaultSite::ALL
            .iter()
            .filter(|site| {
                let drawn = rng.gen_bool(self.enable_rate);
                drawn || self.sites.iter().any(|s| s == site.name())
            })
            .map(|site| site.name().to_string())
            .collect();
        BuggifySpec {
            enable_rate: 0.0,
            fire_rate: self.fire_rate,
            sites,
        }
    }

    /// The sites listed to be enabled in every run.
    pub fn enabled(&self) -> Vec<FaultSite> {
        self.sites
            .iter()
            .filter_map(|name| FaultSite::from_name(name))
            .collect()
    }

    /// The line a run prints with its knobs.
    pub fn describe(&self) -> String {
        format!(
            "buggify: fire_rate={} sites=[{}]",
            self.fire_rate,
            self.sites.join(", ")
        )
    }
}

pub(super) fn validate(spec: &BuggifySpec) -> Result<(), Invalid> {
    for (key, rate) in [
        ("buggify.enable_rate", spec.enable_rate),
        ("buggify.fire_rate", spec.fire_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err((key, "must be between 0 and 1".into()));
        }
    }
    for name in &spec.sites {
        if FaultSite::from_name(name).is_none() {
            return Err((
                "buggify.sites",
                format!(
                    "has unknown site {name:?}; known: {}",
                    known(FaultSite::ALL, FaultSite::name)
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn validate_must_reach(names: &[String]) -> Result<(), Invalid> {
    match names.iter().find(|n| Situation::from_name(n).is_none()) {
        Some(name) => Err((
            "checks.must_reach",
            format!(
                "has unknown situation {name:?}; known: {}",
                known(Situation::ALL, Situation::name)
            ),
        )),
        None => Ok(()),
    }
}

fn known<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> String {
    all.iter().map(|&t| name(t)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_draws_the_sites_and_a_recorded_list_is_kept() {
        let spec = BuggifySpec {
            enable_rate: 0.5,
            fire_rate: 0.25,
            sites: Vec::new(),
        };
        let drawn = spec.for_seed("s", 7);
        assert_eq!(drawn, spec.for_seed("s", 7), "the seed decides");
        assert_eq!(drawn.for_seed("s", 8), drawn, "a drawn list is kept");
        let differ = |other: &dyn Fn(u64) -> BuggifySpec| (1..20).any(|seed| other(seed) != drawn);
        assert!(differ(&|seed| spec.for_seed("s", seed)), "seeds differ");
        assert!(differ(&|_| spec.for_seed("t", 7)), "scenarios differ");
        assert_eq!(drawn.enabled().len(), drawn.sites.len());
        let listed = BuggifySpec {
            enable_rate: 0.0,
            sites: vec!["apply-delay".into()],
            ..spec.clone()
        };
        assert_eq!(listed.for_seed("s", 3).enabled(), [FaultSite::ApplyDelay]);
        assert!(spec.for_seed("s", 3).fire_rate == 0.25);
    }

    #[test]
    fn unknown_names_and_bad_rates_are_refused() {
        let spec = BuggifySpec {
            enable_rate: 1.5,
            fire_rate: 0.25,
            sites: Vec::new(),
        };
        assert_eq!(validate(&spec).unwrap_err().0, "buggify.enable_rate");
        let spec = BuggifySpec {
            enable_rate: 0.2,
            sites: vec!["apply-delay".into(), "gremlins".into()],
            ..spec
        };
        let (key, reason) = validate(&spec).unwrap_err();
        assert_eq!(key, "buggify.sites");
        assert!(reason.contains("gremlins") && reason.contains("reply-delay"));
        let (key, reason) =
            validate_must_reach(&["torn-tail-cut".into(), "luck".into()]).unwrap_err();
        assert_eq!(key, "checks.must_reach");
        assert!(reason.contains("luck"), "{reason}");
    }
}
