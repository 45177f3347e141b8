//! History views: what a run's clients did and what went wrong, as a
//! plain-text summary for terminals and as a self-contained HTML timeline
//! (one lane per client, faults as bands, the operations the checkers blamed
//! in red) for a browser. For a linearizability violation the page opens
//! with the blamed key's own view ([`key`]): its operations zoomed to the
//! contradiction, the blamed answer and the operations contradicting it
//! highlighted.

pub mod key;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use crate::check::OpId;
use crate::history::{client_name, describe, Outcome};
use crate::run::Report;

/// One operation as the views show it.
struct Op {
    id: OpId,
    end: Option<Duration>,
    acked: bool,
    label: String,
}

/// Every operation of the report, client by client, in call order.
fn lanes(report: &Report) -> BTreeMap<u32, Vec<Op>> {
    let mut lanes: BTreeMap<u32, Vec<Op>> = BTreeMap::new();
    for w in &report.history.writes {
        let acked = w.outcome == Outcome::Ok;
        let answer = match &w.outcome {
            Outcome::Ok => "ok".to_string(),
            Outcome::Failed(why) => format!("gave up: {why}"),
        };
        lanes.entry(w.client).or_default().push(Op {
            id: OpId {
                client: w.client,
                call: w.start,
            },
            end: Some(w.end),
            acked,
            label: format!(
                "client {} [{:?} .. {:?}] write {} ({} bytes): {answer}",
                client_name(w.client),
                w.start,
                w.end,
                String::from_utf8_lossy(&w.key),
                w.value.len()
            ),
        });
    }
    for op in &report.history.ops {
        lanes.entry(op.client).or_default().push(Op {
            id: OpId {
                client: op.client,
                call: op.call,
            },
            end: op.ret,
            acked: op.ret.is_some(),
            label: format!("{} on {}", describe(op), String::from_utf8_lossy(&op.key)),
        });
    }
    for ops in lanes.values_mut() {
        ops.sort_by_key(|op| op.id);
    }
    lanes
}

fn blamed(report: &Report) -> BTreeSet<OpId> {
    report
        .violations
        .iter()
        .flat_map(|v| v.blamed.iter().copied())
        .collect()
}

/// The plain-text summary: verdict, faults, each client's tally, the
/// violations and the blamed operations.
pub fn text(report: &Report, scenario: &str, seed: u64) -> String {
    let mut out = String::new();
    let checkers: Vec<&str> = report.violations.iter().map(|v| v.checker.name()).collect();
    let _ = writeln!(
        out,
        "scenario {scenario} seed {seed}: {} in {:.3} simulated s",
        if checkers.is_empty() {
            "PASS".to_string()
        } else {
            format!("FAIL ({})", checkers.join(", "))
        },
        report.simulated.as_secs_f64()
    );
    let _ = writeln!(out, "\nfaults ({} applied):", report.schedule.len());
    for event in &report.history.faults {
        let _ = writeln!(out, "  {:>9.3}s  {}", event.at.as_secs_f64(), event.what);
    }
    let _ = writeln!(out, "\nclients:");
    let lanes = lanes(report);
    for (client, ops) in &lanes {
        // A scan is recorded as one read per key: count it once.
        let distinct: BTreeSet<OpId> = ops.iter().map(|op| op.id).collect();
        let acked: BTreeSet<OpId> = ops.iter().filter(|op| op.acked).map(|op| op.id).collect();
        let first = ops.first().map_or(0.0, |op| op.id.call.as_secs_f64());
        let last = ops
            .iter()
            .filter_map(|op| op.end)
            .max()
            .map_or(first, |t| t.as_secs_f64());
        let _ = writeln!(
            out,
            "  client {:>4}: {:>5} operations, {:>5} acknowledged, {:>4} not; {first:.3}s .. {last:.3}s",
            client_name(*client),
            distinct.len(),
            acked.len(),
            distinct.len() - acked.len()
        );
    }
    for violation in &report.violations {
        let _ = writeln!(out, "\nVIOLATION {violation}");
    }
    let blamed = blamed(report);
    if !blamed.is_empty() {
        let _ = writeln!(out, "\nblamed operations:");
        for op in lanes
            .values()
            .flatten()
            .filter(|op| blamed.contains(&op.id))
        {
            let _ = writeln!(out, "  > {}", op.label);
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Pixels per simulated second, and the lanes' geometry.
const PX_PER_S: f64 = 200.0;
const WIDTH_MIN: f64 = 1_000.0;
const LANE_H: f64 = 22.0;
const LABEL_W: f64 = 90.0;
const AXIS_H: f64 = 24.0;

/// One operation's bar in its lane at height `y`, spanning `from` to `to`
/// pixels; blamed operations are red and outlined.
fn op_rect(svg: &mut String, op: &Op, (from, to): (f64, f64), y: f64, marked: &Marked) {
    let (class, fill) = match (marked.blamed.contains(&op.id), op.acked) {
        (true, _) => ("op blamed", "#d0021b"),
        _ if marked.source.contains(&op.id) => ("op source", "#4a90e2"),
        _ if marked.contradicting.contains(&op.id) => ("op contradicting", "#f5a623"),
        (false, true) => ("op", "#7ed321"),
        (false, false) => ("op unacked", "#9b9b9b"),
    };
    let _ = write!(
        svg,
        r#"<rect class="{class}" x="{from:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"{}><title>{}</title></rect>"#,
        y + 3.0,
        // A pixel's gap between one operation and the next.
        (to - from - 1.0).max(1.5),
        LANE_H - 6.0,
        if class != "op" && class != "op unacked" {
            r#" stroke="black" stroke-width="1.5""#
        } else {
            ""
        },
        escape(&op.label)
    );
}

/// The operations the timeline marks.
struct Marked {
    blamed: BTreeSet<OpId>,
    source: BTreeSet<OpId>,
    contradicting: BTreeSet<OpId>,
}

/// The timeline as SVG: a time axis, faults as bands over every lane, and
/// one lane of operations per client.
fn timeline(report: &Report, (source, contradicting): (BTreeSet<OpId>, BTreeSet<OpId>)) -> String {
    let lanes = lanes(report);
    let span = report.simulated.max(Duration::from_millis(1)).as_secs_f64();
    let px_per_s = PX_PER_S.max(WIDTH_MIN / span);
    let x = |t: Duration| LABEL_W + t.as_secs_f64() * px_per_s;
    let width = x(report.simulated) + 20.0;
    let height = AXIS_H + LANE_H * lanes.len() as f64 + 10.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="monospace" font-size="11">"#
    );
    // Time axis, one tick a second (or every ten for long runs).
    let step = if span > 120.0 { 10 } else { 1 };
    for s in (0..=span as u64).step_by(step) {
        let tx = x(Duration::from_secs(s));
        let _ = write!(
            svg,
            r##"<line x1="{tx:.1}" y1="{AXIS_H}" x2="{tx:.1}" y2="{height:.0}" stroke="#eee"/><text x="{tx:.1}" y="14" text-anchor="middle">{s}s</text>"##
        );
    }
    // Faults with a duration as bands over every lane; changes as lines.
    for event in &report.schedule {
        let from = x(Duration::from_millis(event.at_ms));
        let what = escape(&format!(
            "{:.3}s {:?}",
            event.at_ms as f64 / 1000.0,
            event.fault
        ));
        let (w, fill) = if event.fault.duration().is_zero() {
            (2.0, "#6b5bd6")
        } else {
            (
                (event.fault.duration().as_secs_f64() * px_per_s).max(2.0),
                "#f8e71c",
            )
        };
        let _ = write!(
            svg,
            r#"<rect class="fault" x="{from:.1}" y="{AXIS_H}" width="{w:.1}" height="{:.0}" fill="{fill}" fill-opacity="0.25"><title>{what}</title></rect>"#,
            height - AXIS_H
        );
    }
    let marked = Marked {
        blamed: blamed(report),
        source,
        contradicting,
    };
    for (lane, (client, ops)) in lanes.iter().enumerate() {
        let y = AXIS_H + LANE_H * lane as f64;
        let _ = write!(
            svg,
            r#"<text x="4" y="{:.1}">client {}</text>"#,
            y + LANE_H * 0.65,
            escape(&client_name(*client))
        );
        for op in ops {
            op_rect(
                &mut svg,
                op,
                (x(op.id.call), x(op.end.unwrap_or(report.simulated))),
                y,
                &marked,
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The key view's section of the page, if the run broke linearizability.
fn key_section(view: &key::KeyView) -> String {
    format!(
        r#"<h2>Why: key {}</h2>
<p class="caption">{}</p>
<p class="key">Zoomed to the contradiction; one lane per client; time runs left to right in the order of events, not to scale; hover for details.
<span style="background:#d0021b"></span>blamed answer
<span style="background:#f5a623"></span>contradicts it
<span style="background:#4a90e2"></span>wrote the value it saw
<span style="background:#e4e4e4"></span>other operations on the key
&nbsp; dashed bars: indeterminate; dashed lines: when the blamed operation was called and the others returned</p>
<div class="timeline">{}</div>"#,
        escape(&String::from_utf8_lossy(&view.key)),
        escape(&key::caption(view)),
        key::svg(view)
    )
}

/// The HTML timeline, one self-contained page.
pub fn html(report: &Report, scenario: &str, seed: u64) -> String {
    let view = key::key_view(report);
    let svg = timeline(
        report,
        view.as_ref()
            .map(key::KeyView::contradicting_ids)
            .unwrap_or_default(),
    );
    let why = view.as_ref().map(key_section).unwrap_or_default();
    let summary = text(report, scenario, seed);
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Shoal {scenario} seed {seed}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
.timeline {{ overflow-x: auto; border: 1px solid #ccc; }}
.key span {{ display: inline-block; width: 1em; height: 1em; vertical-align: middle; margin: 0 .3em 0 1em; }}
.caption {{ font-size: 1.15em; }}
pre {{ background: #f7f7f7; padding: .5em; overflow-x: auto; }}
</style></head>
<body>
<h1>{scenario}, seed {seed}</h1>
{why}
<h2>Timeline</h2>
<p class="key">One lane per client; hover for details.
<span style="background:#7ed321"></span>acknowledged
<span style="background:#9b9b9b"></span>not acknowledged (indeterminate)
<span style="background:#d0021b"></span>blamed by a checker
<span style="background:#f5a623"></span>contradicts the blamed answer
<span style="background:#4a90e2"></span>wrote the value it saw
<span style="background:#f8e71c;opacity:.4"></span>fault in force
<span style="background:#6b5bd6;opacity:.4"></span>membership change</p>
<div class="timeline">{svg}</div>
<h2>Summary</h2>
<pre>{}</pre>
</body></html>
"#,
        escape(&summary)
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::check::{Checker, Violation};
    use crate::history::{FaultEvent, History, KeyedOp, RegisterOp};
    use crate::schedule::{FaultAction, ScheduledFault};

    fn report() -> Report {
        let op = |client, call_ms, ret_ms: Option<u64>, seen: Option<&'static str>| KeyedOp {
            client,
            key: Bytes::from("k<1>"),
            op: RegisterOp::Read(Some(seen.map(Bytes::from))),
            call: Duration::from_millis(call_ms),
            ret: ret_ms.map(Duration::from_millis),
        };
        Report {
            history: History {
                writes: Vec::new(),
                ops: vec![
                    op(0, 10, Some(20), Some("a")),
                    op(1, 30, Some(40), None),
                    op(1, 50, None, None),
                ],
                faults: vec![FaultEvent {
                    at: Duration::from_millis(25),
                    what: "kill replicas [2]".into(),
                }],
                breaches: Vec::new(),
            },
            violations: vec![Violation {
                checker: Checker::Linearizability,
                detail: "stale".into(),
                blamed: vec![OpId {
                    client: 1,
                    call: Duration::from_millis(30),
                }],
            }],
            simulated: Duration::from_millis(100),
            schedule: vec![ScheduledFault {
                at_ms: 25,
                fault: FaultAction::Kill {
                    replicas: vec![2],
                    down_ms: 10,
                },
            }],
            reached: Default::default(),
        }
    }

    #[test]
    fn text_names_the_verdict_faults_and_blamed_operation() {
        let text = text(&report(), "t", 3);
        assert!(
            text.starts_with("scenario t seed 3: FAIL (linearizability)"),
            "{text}"
        );
        assert!(text.contains("0.025s  kill replicas [2]"), "{text}");
        assert!(
            text.contains("client    1:     2 operations,     1 acknowledged,    1 not"),
            "{text}"
        );
        let blamed: Vec<&str> = text.lines().filter(|l| l.starts_with("  > ")).collect();
        assert_eq!(blamed.len(), 1, "{text}");
        assert!(blamed[0].contains("client    1 [30ms .. 40ms]"), "{text}");
    }

    #[test]
    fn html_marks_exactly_the_blamed_operation_and_escapes_text() {
        let page = html(&report(), "t", 3);
        assert_eq!(page.matches(r#"class="op blamed""#).count(), 1);
        assert_eq!(page.matches(r#"class="op unacked""#).count(), 1);
        assert_eq!(page.matches(r#"class="fault""#).count(), 1);
        assert!(page.contains("k&lt;1&gt;") && !page.contains("k<1>"));
        assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    }
}
