//! The key view of a linearizability violation: the blamed key's
//! operations, one lane per client, zoomed to the stretch of time where the
//! contradiction lies. The blamed answer is red; the operations that, with
//! it, admit no valid order ([`contradicting`]) are orange, and among them
//! the writes of the value the blamed operation saw are blue; other
//! operations on the key are grey. Dashed lines mark when the blamed
//! operation was called and when each contradicting operation returned.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;

use super::escape;
use crate::check::linearizability::{check_key, contradicting, Verdict};
use crate::check::{Checker, OpId};
use crate::history::{client_name, KeyedOp, RegisterOp};
use crate::run::Report;

/// The blamed key's operations and the roles the view gives them.
pub struct KeyView {
    /// The key.
    pub key: Bytes,
    /// Its operations in order of call.
    pub ops: Vec<KeyedOp>,
    /// Index of the blamed operation in `ops`.
    pub blamed: usize,
    /// Indexes of the operations contradicting it.
    pub contradicting: Vec<usize>,
}

impl KeyView {
    /// The contradicting operations' identities, for the client timeline:
    /// the writes of the value the blamed operation saw, then the others.
    pub fn contradicting_ids(&self) -> (BTreeSet<OpId>, BTreeSet<OpId>) {
        let roles = roles(self);
        let ids = |role: Role| {
            self.contradicting
                .iter()
                .filter(|&&i| roles[i] == role)
                .map(|&i| id(&self.ops[i]))
                .collect()
        };
        (ids(Role::Source), ids(Role::Contradicting))
    }
}

fn id(op: &KeyedOp) -> OpId {
    OpId {
        client: op.client,
        call: op.call,
    }
}

/// The key view of the report's first linearizability violation that
/// blames an operation; `None` if there is none.
pub fn key_view(report: &Report) -> Option<KeyView> {
    let violation = report
        .violations
        .iter()
        .find(|v| v.checker == Checker::Linearizability && !v.blamed.is_empty())?;
    let blamed = violation.blamed[0];
    // A scan's reads share one identity: the blamed key is the one among
    // them whose history fails.
    let keys: BTreeSet<&Bytes> = report
        .history
        .ops
        .iter()
        .filter(|op| id(op) == blamed)
        .map(|op| &op.key)
        .collect();
    keys.into_iter().find_map(|key| {
        let mut ops: Vec<KeyedOp> = report
            .history
            .ops
            .iter()
            .filter(|op| &op.key == key)
            .cloned()
            .collect();
        if check_key(&ops) != Verdict::NotLinearizable {
            return None;
        }
        ops.sort_by_key(|op| op.call);
        let b = ops.iter().position(|op| id(op) == blamed)?;
        Some(KeyView {
            key: key.clone(),
            contradicting: contradicting(&ops, b),
            blamed: b,
            ops,
        })
    })
}

/// How the view draws one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Blamed,
    /// Wrote the value the blamed operation saw.
    Source,
    Contradicting,
    Other,
}

impl Role {
    fn colours(self) -> (&'static str, &'static str, &'static str) {
        // (class, fill, text)
        match self {
            Role::Blamed => ("blamed", "#d0021b", "#fff"),
            Role::Source => ("source", "#4a90e2", "#fff"),
            Role::Contradicting => ("contradicting", "#f5a623", "#000"),
            Role::Other => ("other", "#e4e4e4", "#777"),
        }
    }
}

fn short(value: &Option<Bytes>) -> String {
    match value {
        None => "∅".to_string(),
        Some(v) if v.len() <= 12 => String::from_utf8_lossy(v).into_owned(),
        Some(v) => format!("{}…", String::from_utf8_lossy(&v[..10])),
    }
}

/// The words on an operation's bar.
fn label(op: &KeyedOp) -> String {
    match &op.op {
        RegisterOp::Read(Some(seen)) => format!("read → {}", short(seen)),
        RegisterOp::Read(None) => "read → ?".to_string(),
        RegisterOp::Write(None) | RegisterOp::Delete { existed: None } => "delete".to_string(),
        RegisterOp::Delete {
            existed: Some(existed),
        } => format!("delete {}", if *existed { "✓" } else { "✗" }),
        RegisterOp::Write(v) => format!("write {}", short(v)),
        RegisterOp::Cas {
            expected,
            new,
            swapped,
            ..
        } => format!(
            "cas {}→{} {}",
            short(expected),
            short(new),
            match swapped {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "?",
            }
        ),
    }
}

/// The value the blamed operation saw, if it saw one.
fn seen_by(op: &KeyedOp) -> Option<&Bytes> {
    match &op.op {
        RegisterOp::Read(Some(Some(v))) => Some(v),
        RegisterOp::Cas {
            expected: Some(v),
            swapped: Some(true),
            ..
        } => Some(v),
        _ => None,
    }
}

fn roles(view: &KeyView) -> Vec<Role> {
    let seen = seen_by(&view.ops[view.blamed]);
    (0..view.ops.len())
        .map(|i| {
            if i == view.blamed {
                Role::Blamed
            } else if view.contradicting.contains(&i) {
                let writes = match &view.ops[i].op {
                    RegisterOp::Write(Some(v)) | RegisterOp::Cas { new: Some(v), .. } => Some(v),
                    _ => None,
                };
                if seen.is_some() && writes == seen {
                    Role::Source
                } else {
                    Role::Contradicting
                }
            } else {
                Role::Other
            }
        })
        .collect()
}

/// Geometry of the key view.
const VIEW_W: f64 = 1_100.0;
const LANE_H: f64 = 34.0;
const LABEL_W: f64 = 90.0;
const TOP: f64 = 30.0;

/// The time window shown: from a little before the first contradicting or
/// blamed call to a little after the blamed operation returned.
fn window(view: &KeyView) -> (Duration, Duration) {
    let involved = view.contradicting.iter().chain([&view.blamed]);
    let from = involved.clone().map(|&i| view.ops[i].call).min();
    let to = involved
        .map(|&i| view.ops[i].ret.unwrap_or(view.ops[i].call))
        .max();
    let (from, to) = (from.unwrap_or_default(), to.unwrap_or_default());
    let pad = (to.saturating_sub(from) / 8).max(Duration::from_millis(5));
    (from.saturating_sub(pad), to + pad)
}

/// Pixels a bar needs for its words (about 7 a character at this size).
fn words_px(text: &str) -> f64 {
    7.0 * text.chars().count() as f64 + 12.0
}

/// Where instants go along the view: in order, but not to scale. Each
/// call and return of a shown operation is a step; steps are stretched
/// until every highlighted operation is wide enough for its words, so that
/// a short operation next to long ones still reads (porcupine, too, lays
/// operations out by order rather than by time).
struct Scale {
    instants: Vec<Duration>,
    xs: Vec<f64>,
}

impl Scale {
    fn new(view: &KeyView, shown: &[usize], roles: &[Role], end: Duration) -> Scale {
        let ends = |i: usize| (view.ops[i].call, view.ops[i].ret.unwrap_or(end).min(end));
        let mut instants: Vec<Duration> = shown
            .iter()
            .flat_map(|&i| <[Duration; 2]>::from(ends(i)))
            .collect();
        instants.sort_unstable();
        instants.dedup();
        let mut weights = vec![1.0f64; instants.len().saturating_sub(1)];
        let position = |t: Duration| instants.binary_search(&t).unwrap_or_else(|i| i);
        for _ in 0..STRETCH_ROUNDS {
            let px = VIEW_W / weights.iter().sum::<f64>().max(1.0);
            for &i in shown.iter().filter(|&&i| roles[i] != Role::Other) {
                let (a, b) = ends(i);
                let gaps = position(a)..position(b);
                let width: f64 = weights[gaps.clone()].iter().sum::<f64>() * px;
                let needed = words_px(&label(&view.ops[i])).min(VIEW_W / 3.0);
                if width > 0.0 && width < needed {
                    weights[gaps].iter_mut().for_each(|w| *w *= needed / width);
                }
            }
        }
        let px = VIEW_W / weights.iter().sum::<f64>().max(1.0);
        let mut xs = vec![LABEL_W];
        for w in &weights {
            xs.push(xs.last().expect("one x at least") + w * px);
        }
        Scale { instants, xs }
    }

    fn x(&self, t: Duration) -> f64 {
        match self.instants.binary_search(&t) {
            Ok(i) => self.xs[i],
            Err(0) => LABEL_W,
            Err(i) if i >= self.instants.len() => LABEL_W + VIEW_W,
            Err(i) => (self.xs[i - 1] + self.xs[i]) / 2.0,
        }
    }
}

/// Rounds of stretching the steps under short highlighted operations.
const STRETCH_ROUNDS: usize = 4;

/// The key view as SVG.
pub fn svg(view: &KeyView) -> String {
    let roles = roles(view);
    let (from, to) = window(view);
    let shown: Vec<usize> = (0..view.ops.len())
        .filter(|&i| {
            let op = &view.ops[i];
            op.call <= to && op.ret.is_none_or(|r| r >= from)
        })
        .collect();
    let scale = Scale::new(view, &shown, &roles, to);
    let x = |t: Duration| scale.x(t.clamp(from, to));
    let mut lanes: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for &i in &shown {
        lanes.entry(view.ops[i].client).or_default().push(i);
    }
    let height = TOP + LANE_H * lanes.len() as f64 + 24.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#,
        LABEL_W + VIEW_W + 20.0
    );
    axis(&mut svg, view, &roles, &x, height);
    for (lane, (client, ops)) in lanes.iter().enumerate() {
        let y = TOP + LANE_H * lane as f64;
        let _ = write!(
            svg,
            r##"<rect x="0" y="{y:.1}" width="{:.0}" height="{LANE_H}" fill="{}"/><text x="6" y="{:.1}" font-family="monospace">client {}</text>"##,
            LABEL_W + VIEW_W + 20.0,
            if lane % 2 == 0 { "#fafafa" } else { "#f0f0f0" },
            y + LANE_H * 0.6,
            escape(&client_name(*client))
        );
        for &i in ops {
            bar(&mut svg, &view.ops[i], roles[i], (&x, to), y);
        }
    }
    guides(&mut svg, view, &roles, &x, height);
    svg.push_str("</svg>");
    svg
}

/// The times of the highlighted operations' calls and returns along the
/// top (the axis is in order of events, not to scale).
fn axis(svg: &mut String, view: &KeyView, roles: &[Role], x: &dyn Fn(Duration) -> f64, h: f64) {
    let mut instants: Vec<Duration> = (0..view.ops.len())
        .filter(|&i| roles[i] != Role::Other)
        .flat_map(|i| [Some(view.ops[i].call), view.ops[i].ret])
        .flatten()
        .collect();
    instants.sort_unstable();
    instants.dedup();
    let mut last_x = f64::MIN;
    for t in instants {
        let tx = x(t);
        // Skip a time whose words would run into the previous one's.
        if tx - last_x < 64.0 {
            continue;
        }
        last_x = tx;
        let _ = write!(
            svg,
            r##"<line x1="{tx:.1}" y1="{:.0}" x2="{tx:.1}" y2="{h:.0}" stroke="#ddd"/><text x="{tx:.1}" y="16" text-anchor="middle" fill="#555">{:.3}s</text>"##,
            TOP - 6.0,
            t.as_secs_f64()
        );
    }
}

/// One operation's bar, its words inside it when they fit.
fn bar(
    svg: &mut String,
    op: &KeyedOp,
    role: Role,
    (x, to): (&dyn Fn(Duration) -> f64, Duration),
    y: f64,
) {
    let (class, fill, ink) = role.colours();
    let (x0, x1) = (x(op.call), x(op.ret.unwrap_or(to)));
    let w = (x1 - x0 - 2.0).max(3.0);
    let stroke = match (role, op.ret) {
        (Role::Other, Some(_)) => String::new(),
        (Role::Other, None) => r##" stroke="#999" stroke-dasharray="4 3""##.to_string(),
        (_, None) => r##" stroke="#000" stroke-width="2.5" stroke-dasharray="6 3""##.to_string(),
        _ => r##" stroke="#000" stroke-width="2.5""##.to_string(),
    };
    let text = label(op);
    let title = format!(
        "{}{}",
        crate::history::describe(op),
        if op.ret.is_none() {
            " (indeterminate: may take effect any time after its call)"
        } else {
            ""
        }
    );
    let _ = write!(
        svg,
        r#"<g class="keyop {class}"><rect x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" rx="3" fill="{fill}"{stroke}/><title>{}</title>"#,
        y + 4.0,
        LANE_H - 8.0,
        escape(&title)
    );
    // About 7 pixels a character at this size. Words that do not fit go
    // beside the bar, on a white ground, for the operations that matter.
    let fits = w >= words_px(&text) - 4.0;
    let weight = if role == Role::Other {
        "normal"
    } else {
        "bold"
    };
    if fits {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" fill="{ink}" font-weight="{weight}">{}</text>"#,
            x0 + 5.0,
            y + LANE_H * 0.62,
            escape(&text)
        );
    } else if role != Role::Other {
        let tx = x0 + w + 5.0;
        let beside = match role {
            Role::Blamed => "#b00018",
            Role::Source => "#1f5fa8",
            _ => "#9a5b00",
        };
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="16" fill="white" fill-opacity="0.9"/><text x="{tx:.1}" y="{:.1}" fill="{beside}" font-weight="bold">{}</text>"#,
            tx - 2.0,
            y + LANE_H * 0.62 - 12.0,
            7.0 * text.chars().count() as f64 + 4.0,
            y + LANE_H * 0.62,
            escape(&text)
        );
    }
    svg.push_str("</g>");
}

/// Dashed lines: the blamed operation's call (red) and each contradicting
/// operation's return (orange, blue for the source of the seen value).
fn guides(svg: &mut String, view: &KeyView, roles: &[Role], x: &dyn Fn(Duration) -> f64, h: f64) {
    let mut line = |t: Duration, colour: &str| {
        let tx = x(t);
        let _ = write!(
            svg,
            r#"<line class="guide" x1="{tx:.1}" y1="{:.0}" x2="{tx:.1}" y2="{:.0}" stroke="{colour}" stroke-width="2" stroke-dasharray="5 4"/>"#,
            TOP - 4.0,
            h - 20.0
        );
    };
    for &i in &view.contradicting {
        if let Some(ret) = view.ops[i].ret {
            let (_, fill, _) = roles[i].colours();
            line(ret, fill);
        }
    }
    line(view.ops[view.blamed].call, "#d0021b");
}

/// One sentence on what the view shows.
pub fn caption(view: &KeyView) -> String {
    let blamed = &view.ops[view.blamed];
    format!(
        "Key {}: client {}'s {} cannot be placed in any order with the {} highlighted operation{}.",
        String::from_utf8_lossy(&view.key),
        client_name(blamed.client),
        label(blamed),
        view.contradicting.len(),
        if view.contradicting.len() == 1 {
            ""
        } else {
            "s"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Violation;
    use crate::history::History;

    fn op(client: u32, (call, ret): (u64, u64), op: RegisterOp) -> KeyedOp {
        KeyedOp {
            client,
            key: Bytes::from("k"),
            op,
            call: Duration::from_millis(call),
            ret: Some(Duration::from_millis(ret)),
        }
    }

    #[test]
    fn a_stale_read_shows_its_source_and_the_write_that_overtook_it() {
        let write = |v: &'static str| RegisterOp::Write(Some(Bytes::from(v)));
        let ops = vec![
            op(0, (0, 10), write("a")),
            op(1, (20, 30), write("b")),
            op(3, (22, 24), RegisterOp::Read(Some(Some(Bytes::from("b"))))),
            op(2, (40, 50), RegisterOp::Read(Some(Some(Bytes::from("a"))))),
        ];
        let blamed = OpId {
            client: 2,
            call: Duration::from_millis(40),
        };
        let report = Report {
            history: History {
                ops,
                ..History::default()
            },
            violations: vec![Violation {
                checker: Checker::Linearizability,
                detail: String::new(),
                blamed: vec![blamed],
            }],
            simulated: Duration::from_millis(60),
            schedule: Vec::new(),
            reached: Default::default(),
        };
        let view = key_view(&report).expect("a key view");
        assert_eq!(view.ops[view.blamed].client, 2);
        assert_eq!(view.contradicting, [0, 1]);
        let svg = svg(&view);
        for (class, count) in [
            ("blamed", 1),
            ("source", 1),
            ("contradicting", 1),
            ("other", 1),
        ] {
            let found = svg.matches(&format!(r#"class="keyop {class}""#)).count();
            assert_eq!(found, count, "{class}: {svg}");
        }
        assert!(svg.contains("read → a") && svg.contains("write b"), "{svg}");
        assert_eq!(
            caption(&view),
            "Key k: client 2's read → a cannot be placed in any order with the 2 highlighted operations."
        );
    }
}
