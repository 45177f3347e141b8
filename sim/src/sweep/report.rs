//! What a sweep reports beyond its text: a [`Summary`] with one
//! [`SeedSummary`] per seed, written as JSON (`--json`, read back by
//! `shoal-sim merge`) and as JUnit XML (`--junit`, for CI systems that show
//! test results), and the merge of the summaries of a sweep's slices.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde::{Deserialize, Serialize};

use super::{parse_seeds, Partition};
use shoal::runtime::{FaultSite, Situation};

/// How a seed ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every check held (in every run of it).
    Pass,
    /// A check failed, or a run did not finish.
    Fail,
    /// Two runs of it differed (`--check-determinism`).
    NonDeterministic,
}

/// One seed of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedSummary {
    /// The seed.
    pub seed: u64,
    /// How it ended.
    pub verdict: Verdict,
    /// The checkers that tripped (empty when it passed or did not finish).
    pub checkers: Vec<String>,
    /// History and trace digests, when the run finished.
    pub digest: Option<String>,
    /// The trace digest.
    pub trace: Option<String>,
    /// Simulated seconds the run took.
    pub simulated_s: f64,
    /// Wall seconds its process (processes) took.
    pub wall_s: f64,
    /// Operations acknowledged.
    pub acked: u64,
    /// The command that replays it (failures), or that shows where its two
    /// runs part (non-determinism).
    pub replay: Option<String>,
    /// Its report and last log lines (failures only).
    pub output: Option<String>,
    /// How often it reached each rare situation and fired each fault site.
    #[serde(default)]
    pub reached: BTreeMap<String, u64>,
}

/// A sweep, or the merge of several: the scenario, which seeds ran, and
/// how each ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The scenario's name.
    pub scenario: String,
    /// Its file, as given on the command line.
    pub scenario_file: String,
    /// The whole seed range, as given (`--seeds`).
    pub seeds: String,
    /// The slices of that range this summary covers (`--partition`); empty
    /// for the whole range.
    pub partitions: Vec<String>,
    /// Planted bugs switched on.
    pub planted: Vec<String>,
    /// Whether every seed ran twice and was compared.
    pub check_determinism: bool,
    /// Situations some seed must reach (the scenario's `must_reach`, and
    /// `--must-reach`).
    #[serde(default)]
    pub must_reach: Vec<String>,
    /// Wall seconds (summed over the slices of a merge).
    pub wall_s: f64,
    /// Every seed run, in order.
    pub results: Vec<SeedSummary>,
}

impl Summary {
    /// Seeds that did not pass.
    pub fn failures(&self) -> impl Iterator<Item = &SeedSummary> {
        self.results.iter().filter(|r| r.verdict != Verdict::Pass)
    }

    /// Whether every seed passed.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    fn count(&self, verdict: Verdict) -> usize {
        self.results.iter().filter(|r| r.verdict == verdict).count()
    }

    /// The closing line of a sweep: seeds passed and failed, simulated
    /// against wall time, operations acknowledged.
    pub fn line(&self) -> String {
        let simulated: f64 = self.results.iter().map(|r| r.simulated_s).sum();
        let acked: u64 = self.results.iter().map(|r| r.acked).sum();
        let wall = self.wall_s;
        format!(
            "{}: {} passed, {} failed{} of {} seeds; {:.1} simulated s in {:.1} wall s ({:.1}x); {} operations acknowledged",
            self.scenario,
            self.count(Verdict::Pass),
            self.count(Verdict::Fail),
            if self.check_determinism {
                format!(", {} non-deterministic", self.count(Verdict::NonDeterministic))
            } else {
                String::new()
            },
            self.results.len(),
            simulated,
            wall,
            if wall > 0.0 { simulated / wall } else { 0.0 },
            acked
        )
    }

    /// For each situation and fault site some seed reached: in how many
    /// seeds, and how often in all.
    pub fn reached(&self) -> BTreeMap<&str, (usize, u64)> {
        let mut reached: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
        for (name, count) in self.results.iter().flat_map(|r| &r.reached) {
            let entry = reached.entry(name).or_default();
            entry.0 += 1;
            entry.1 += count;
        }
        reached
    }

    /// The situations this sweep must reach that no seed reached.
    pub fn unreached(&self) -> Vec<&str> {
        let reached = self.reached();
        self.must_reach
            .iter()
            .map(String::as_str)
            .filter(|name| !reached.contains_key(name))
            .collect()
    }

    /// The coverage table: every situation (reached or not) and every
    /// fault site that fired, with the seeds that reached it and its hits.
    pub fn reached_table(&self) -> String {
        let reached = self.reached();
        let seeds = self.results.len();
        let row = |name: &str| {
            let (hit_seeds, hits) = reached.get(name).copied().unwrap_or_default();
            let required = self.must_reach.iter().any(|n| n == name);
            let mark = match (required, hits) {
                (true, 0) => "required, NEVER REACHED",
                (true, _) => "required",
                _ => "",
            };
            format!("  {name:<34} {hit_seeds:>4}/{seeds:<4} {hits:>8}  {mark}\n")
        };
        let mut table = String::from("situations reached (seeds, hits):\n");
        for situation in Situation::ALL {
            table += &row(situation.name());
        }
        let fired: Vec<&str> = FaultSite::ALL
            .iter()
            .map(|site| site.name())
            .filter(|name| reached.contains_key(name))
            .collect();
        if !fired.is_empty() {
            table += "fault sites fired (seeds, times):\n";
            for name in fired {
                table += &row(name);
            }
        }
        table
    }

    /// Writes the summary as pretty JSON.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self).context("encoding the summary")?;
        write(path, &(text + "\n"))
    }

    /// Reads a summary written by [`Summary::write_json`].
    pub fn read_json(path: &Path) -> anyhow::Result<Summary> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The summary as a JUnit test suite: one test case per seed, a failure
    /// carrying the checkers, the replay command and the report.
    pub fn junit_suite(&self) -> TestSuite {
        let mut suite = TestSuite::new(self.scenario.clone());
        for result in &self.results {
            let status = match result.verdict {
                Verdict::Pass => TestCaseStatus::success(),
                verdict => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let what = match verdict {
                        Verdict::NonDeterministic => "non-determinism".to_string(),
                        _ if result.checkers.is_empty() => "did not finish".to_string(),
                        _ => result.checkers.join(","),
                    };
                    let replay = result.replay.clone().unwrap_or_default();
                    status.set_type(what.clone());
                    status.set_message(format!("[{what}] replay: {replay}"));
                    status.set_description(format!(
                        "replay: {replay}\n\n{}",
                        result.output.as_deref().unwrap_or("")
                    ));
                    status
                }
            };
            let mut case = TestCase::new(format!("seed {}", result.seed), status);
            case.set_classname(format!("shoal-sim.{}", self.scenario));
            case.set_time(Duration::from_secs_f64(result.wall_s.max(0.0)));
            suite.add_test_case(case);
        }
        suite.set_time(Duration::from_secs_f64(self.wall_s.max(0.0)));
        suite
    }
}

/// Writes summaries as one JUnit XML report, a test suite each.
pub fn write_junit(path: &Path, summaries: &[&Summary]) -> anyhow::Result<()> {
    let mut report = Report::new("shoal-sim");
    for summary in summaries {
        report.add_test_suite(summary.junit_suite());
    }
    let xml = report.to_string().context("encoding the JUnit report")?;
    write(path, &xml)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// What [`merge`] found about how the slices cover the seed range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Slices of each `N` that no summary holds, as `K/N`.
    pub missing: Vec<String>,
}

/// Merges the summaries of one scenario's slices (or of whole sweeps) into
/// one per scenario: results by seed, wall time summed. A seed that occurs
/// twice, or slices of different seed ranges, are an error.
pub fn merge(parts: Vec<Summary>) -> anyhow::Result<Vec<(Summary, Coverage)>> {
    let mut by_scenario: BTreeMap<String, Vec<Summary>> = BTreeMap::new();
    for part in parts {
        by_scenario
            .entry(part.scenario.clone())
            .or_default()
            .push(part);
    }
    by_scenario.into_values().map(merge_one).collect()
}

fn merge_one(parts: Vec<Summary>) -> anyhow::Result<(Summary, Coverage)> {
    let first = parts[0].clone();
    let mut merged = Summary {
        partitions: Vec::new(),
        wall_s: 0.0,
        results: Vec::new(),
        ..first
    };
    let mut partitions: Vec<Partition> = Vec::new();
    for part in parts {
        if part.seeds != merged.seeds {
            bail!(
                "{}: slices of different seed ranges ({} and {})",
                merged.scenario,
                merged.seeds,
                part.seeds
            );
        }
        for p in &part.partitions {
            partitions.push(p.parse()?);
        }
        merged.wall_s += part.wall_s;
        merged.check_determinism &= part.check_determinism;
        merged.results.extend(part.results);
    }
    merged.results.sort_by_key(|r| r.seed);
    if let Some(pair) = merged.results.windows(2).find(|w| w[0].seed == w[1].seed) {
        bail!(
            "{}: seed {} occurs in two summaries: the slices overlap",
            merged.scenario,
            pair[0].seed
        );
    }
    partitions.sort();
    partitions.dedup();
    merged.partitions = partitions.iter().map(Partition::to_string).collect();
    let coverage = coverage(&merged, &partitions)?;
    Ok((merged, coverage))
}

/// The slices missing from `partitions`, and a check that the seeds run
/// are those the slices hold.
fn coverage(merged: &Summary, partitions: &[Partition]) -> anyhow::Result<Coverage> {
    let range = parse_seeds(&merged.seeds)?;
    let mut counts: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for p in partitions {
        counts.entry(p.count).or_default().push(p.index);
    }
    let mut missing = Vec::new();
    let mut expected: Vec<u64> = Vec::new();
    for (count, indexes) in &counts {
        missing.extend(
            (1..=*count)
                .filter(|k| !indexes.contains(k))
                .map(|k| format!("{k}/{count}")),
        );
        for index in indexes {
            let slice = Partition {
                index: *index,
                count: *count,
            }
            .slice(&range);
            expected.extend(slice.into_iter().flatten());
        }
    }
    if counts.is_empty() {
        return Ok(Coverage { missing });
    }
    expected.sort_unstable();
    let ran: Vec<u64> = merged.results.iter().map(|r| r.seed).collect();
    if ran != expected {
        bail!(
            "{}: the seeds run are not those of slices {}",
            merged.scenario,
            merged.partitions.join(", ")
        );
    }
    Ok(Coverage { missing })
}
