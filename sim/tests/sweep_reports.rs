//! A sweep's reports for other machines: the JUnit XML read back with an
//! XML parser, slice summaries merged, and the shipped fan-outs (the GitHub
//! Actions matrix and the Kubernetes Indexed Job) checked to cover their
//! seed range exactly once.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use shoal_sim::sweep::report::{merge, write_junit};
use shoal_sim::sweep::{parse_seeds, Partition, SeedSummary, Summary, Verdict};
use yaml_rust2::{Yaml, YamlLoader};

fn seed(seed: u64, verdict: Verdict) -> SeedSummary {
    let failed = verdict != Verdict::Pass;
    SeedSummary {
        seed,
        verdict,
        checkers: if verdict == Verdict::Fail {
            vec!["linearizability".into()]
        } else {
            Vec::new()
        },
        digest: Some("00ff".into()),
        trace: Some("ff00".into()),
        simulated_s: 10.0,
        wall_s: 0.5,
        acked: 100,
        replay: failed.then(|| format!("cargo replay scenarios/x.toml --seed {seed}")),
        output: failed.then(|| "  VIOLATION <a & b>\n".into()),
        // Even seeds cut a torn tail; every seed fires apply-delay twice.
        reached: [("torn-tail-cut", (seed + 1) % 2), ("apply-delay", 2)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| (name.to_string(), n))
            .collect(),
    }
}

fn summary(partition: Option<&str>, seeds: &[(u64, Verdict)]) -> Summary {
    Summary {
        scenario: "x".into(),
        scenario_file: "scenarios/x.toml".into(),
        seeds: "1..=10".into(),
        partitions: partition.into_iter().map(str::to_string).collect(),
        planted: Vec::new(),
        check_determinism: true,
        must_reach: vec!["torn-tail-cut".into()],
        wall_s: 2.0,
        results: seeds.iter().map(|(s, v)| seed(*s, *v)).collect(),
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shoal-sweep-reports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The five entities XML predefines.
fn entity(name: &str) -> &'static str {
    match name {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "quot" => "\"",
        "apos" => "'",
        other => panic!("unexpected entity &{other};"),
    }
}

/// Per element name, the attribute maps of every such element, and the
/// text of every `failure` element.
fn parse_xml(xml: &str) -> (BTreeMap<String, Vec<BTreeMap<String, String>>>, Vec<String>) {
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut elements, mut texts) = (BTreeMap::new(), Vec::<String>::new());
    let mut in_failure = false;
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                in_failure = name == "failure";
                if in_failure {
                    texts.push(String::new());
                }
                let attributes = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap();
                        let key = String::from_utf8(a.key.as_ref().to_vec()).unwrap();
                        let value = a.normalized_value(quick_xml::XmlVersion::Explicit1_0);
                        (key, value.unwrap().into_owned())
                    })
                    .collect();
                elements
                    .entry(name)
                    .or_insert_with(Vec::new)
                    .push(attributes);
            }
            Event::Text(t) if in_failure => {
                texts.last_mut().unwrap().push_str(&t.decode().unwrap());
            }
            Event::GeneralRef(r) if in_failure => {
                texts
                    .last_mut()
                    .unwrap()
                    .push_str(entity(&r.decode().unwrap()));
            }
            Event::End(_) => in_failure = false,
            Event::Eof => break,
            _ => {}
        }
    }
    (elements, texts)
}

#[test]
fn junit_xml_names_every_seed_and_each_failure_with_its_replay_command() {
    let sweep = summary(
        None,
        &[
            (1, Verdict::Pass),
            (2, Verdict::Fail),
            (3, Verdict::NonDeterministic),
        ],
    );
    let path = temp("junit.xml");
    write_junit(&path, &[&sweep]).unwrap();
    let (elements, texts) = parse_xml(&std::fs::read_to_string(&path).unwrap());
    let suites = &elements["testsuite"];
    assert_eq!(suites.len(), 1);
    assert_eq!(suites[0]["name"], "x");
    assert_eq!(suites[0]["tests"], "3");
    assert_eq!(suites[0]["failures"], "2");
    let cases: Vec<&str> = elements["testcase"]
        .iter()
        .map(|c| c["name"].as_str())
        .collect();
    assert_eq!(cases, ["seed 1", "seed 2", "seed 3"]);
    let failures = &elements["failure"];
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0]["type"], "linearizability");
    assert_eq!(
        failures[0]["message"],
        "[linearizability] replay: cargo replay scenarios/x.toml --seed 2"
    );
    assert_eq!(failures[1]["type"], "non-determinism");
    assert!(texts[0].contains("VIOLATION <a & b>"), "{texts:?}");
}

#[test]
fn slices_merge_into_one_summary_and_gaps_and_overlaps_are_found() {
    use Verdict::*;
    let slices = vec![
        summary(Some("1/3"), &[(1, Pass), (2, Pass), (3, Fail)]),
        summary(Some("3/3"), &[(7, Pass), (8, Pass), (9, Pass), (10, Pass)]),
        summary(Some("2/3"), &[(4, Pass), (5, Pass), (6, Pass)]),
    ];
    // Through files, as the merge subcommand reads them.
    let read: Vec<Summary> = slices
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let path = temp(&format!("slice-{i}.json"));
            s.write_json(&path).unwrap();
            Summary::read_json(&path).unwrap()
        })
        .collect();
    assert_eq!(read, slices);
    let merged = merge(read).unwrap();
    assert_eq!(merged.len(), 1);
    let (all, coverage) = &merged[0];
    assert!(coverage.missing.is_empty());
    assert_eq!(all.partitions, ["1/3", "2/3", "3/3"]);
    let seeds: Vec<u64> = all.results.iter().map(|r| r.seed).collect();
    assert_eq!(seeds, (1..=10).collect::<Vec<_>>());
    assert_eq!(all.wall_s, 6.0);
    assert!(!all.passed());
    assert!(all
        .line()
        .starts_with("x: 9 passed, 1 failed, 0 non-deterministic of 10 seeds"));

    let (_, gap) = &merge(slices[..2].to_vec()).unwrap()[0];
    assert_eq!(gap.missing, ["2/3"]);
    let overlapping = vec![slices[0].clone(), slices[0].clone()];
    assert!(merge(overlapping).is_err());
}

fn repo_file(path: &str) -> Yaml {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let text = std::fs::read_to_string(&file).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// The token after `flag` in a command line, quotes removed.
fn argument<'a>(command: &'a str, flag: &str) -> &'a str {
    let at = command
        .find(flag)
        .unwrap_or_else(|| panic!("no {flag} in {command}"));
    command[at + flag.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
}

/// The slices `1/n ..= n/n` of `seeds`, given as the K of each job,
/// cover the range exactly once.
fn covers_exactly_once(seeds: &str, ks: &[u64], n: u64) {
    let range = parse_seeds(seeds).unwrap();
    let mut ks = ks.to_vec();
    ks.sort_unstable();
    assert_eq!(ks, (1..=n).collect::<Vec<_>>(), "every slice once");
    let mut ran: Vec<u64> = ks
        .iter()
        .flat_map(|&index| {
            Partition { index, count: n }
                .slice(&range)
                .into_iter()
                .flatten()
        })
        .collect();
    ran.sort_unstable();
    assert_eq!(ran, range.collect::<Vec<_>>());
}

#[test]
fn the_github_actions_matrix_covers_the_seed_range_once() {
    let workflow = repo_file(".github/workflows/sim-sweep.yml");
    let job = &workflow["jobs"]["sweep"];
    let ks: Vec<u64> = job["strategy"]["matrix"]["partition"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|k| k.as_i64().unwrap() as u64)
        .collect();
    let command = job["steps"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str())
        .find(|r| r.contains("cargo sim run"))
        .unwrap();
    let n: u64 = argument(command, "--partition ${{ matrix.partition }}/")
        .parse()
        .unwrap();
    let seeds = workflow["env"]["SEEDS"].as_str().unwrap();
    covers_exactly_once(seeds, &ks, n);
    let merge = workflow["jobs"]["merge"]["steps"].as_vec().unwrap();
    assert!(merge
        .iter()
        .filter_map(|s| s["run"].as_str())
        .any(|r| r.contains("cargo sim merge")));
}

#[test]
fn the_kubernetes_indexed_job_covers_the_seed_range_once() {
    let job = repo_file("deploy/sim-sweep-job.yaml");
    assert_eq!(job["kind"].as_str(), Some("Job"));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_i64().unwrap() as u64;
    let container = &spec["template"]["spec"]["containers"][0];
    let command = container["args"][0].as_str().unwrap();
    assert!(
        command.contains("k=$((JOB_COMPLETION_INDEX + 1))"),
        "{command}"
    );
    let (k, n) = argument(command, "--partition ").split_once('/').unwrap();
    assert_eq!(k, "$k");
    let n: u64 = n.parse().unwrap();
    let env = container["env"].as_vec().unwrap();
    let seeds = env
        .iter()
        .find(|e| e["name"].as_str() == Some("SEEDS"))
        .and_then(|e| e["value"].as_str())
        .unwrap();
    // Pod i runs K = i + 1.
    let ks: Vec<u64> = (0..completions).map(|i| i + 1).collect();
    covers_exactly_once(seeds, &ks, n);
}

#[test]
fn the_coverage_table_counts_seeds_and_hits_and_names_what_was_never_reached() {
    let odd_only = summary(None, &[(1, Verdict::Pass), (3, Verdict::Pass)]);
    assert_eq!(odd_only.unreached(), ["torn-tail-cut"]);
    let table = odd_only.reached_table();
    assert!(
        table.contains("torn-tail-cut") && table.contains("NEVER REACHED"),
        "{table}"
    );
    assert!(
        table.contains("log-suffix-truncated"),
        "every situation has a row: {table}"
    );
    let apply = table.lines().find(|l| l.contains("apply-delay")).unwrap();
    assert!(apply.contains("2/2") && apply.contains(" 4 "), "{apply}");

    let mixed = summary(
        None,
        &[(1, Verdict::Pass), (2, Verdict::Pass), (4, Verdict::Pass)],
    );
    assert!(mixed.unreached().is_empty());
    assert_eq!(mixed.reached()["torn-tail-cut"], (2, 2));
    // A merge of slices counts across them.
    let merged = shoal_sim::sweep::report::merge(vec![
        summary(
            Some("1/2"),
            &[
                (1, Verdict::Pass),
                (2, Verdict::Pass),
                (3, Verdict::Pass),
                (4, Verdict::Pass),
                (5, Verdict::Pass),
            ],
        ),
        summary(
            Some("2/2"),
            &[
                (6, Verdict::Pass),
                (7, Verdict::Pass),
                (8, Verdict::Pass),
                (9, Verdict::Pass),
                (10, Verdict::Pass),
            ],
        ),
    ])
    .unwrap();
    assert_eq!(merged[0].0.reached()["torn-tail-cut"], (5, 5));
}
