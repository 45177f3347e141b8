//! Checks exported histories (`cargo replay ... --export json`) with a
//! checker that is not Shoal's: `todc-utils`' linearizability checker, per
//! key, over the files as read back. CI runs it on histories of passing
//! seeds, which it must accept, and of a planted bug, which it must reject.
//!
//!   outside_check --accept A.jsonl B.jsonl --reject C.jsonl
//!
//! For each rejected history it also says whether a checker that orders
//! calls before returns at equal times, ignoring `index`, would accept it.

#[path = "../tests/outside/mod.rs"]
mod outside;

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let mut expect_accept = true;
    let mut all_as_expected = true;
    let mut files = 0;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--accept" => expect_accept = true,
            "--reject" => expect_accept = false,
            file => {
                files += 1;
                match check_file(file, expect_accept) {
                    Ok(as_expected) => all_as_expected &= as_expected,
                    Err(e) => {
                        println!("{file}: ERROR {e}");
                        all_as_expected = false;
                    }
                }
            }
        }
    }
    if files == 0 {
        eprintln!("usage: outside_check [--accept FILE...] [--reject FILE...]");
        return ExitCode::from(2);
    }
    if all_as_expected {
        println!("outside check: all {files} histories judged as expected");
        ExitCode::SUCCESS
    } else {
        println!("outside check: some histories were NOT judged as expected");
        ExitCode::FAILURE
    }
}

/// Checks one file; whether the verdict is the expected one.
fn check_file(file: &str, expect_accept: bool) -> Result<bool, String> {
    let started = Instant::now();
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let events = outside::read(&text)?;
    let verdicts = outside::check(&events, false)?;
    let rejected: Vec<&String> = verdicts
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(k, _)| k)
        .collect();
    let accepted = rejected.is_empty();
    println!(
        "{file}: {} events, {} keys: {} ({:.1}s){}",
        events.len(),
        verdicts.len(),
        if accepted {
            "linearizable".to_string()
        } else {
            format!("NOT linearizable (keys {rejected:?})")
        },
        started.elapsed().as_secs_f64(),
        if accepted == expect_accept {
            ""
        } else {
            "  <-- unexpected"
        }
    );
    if !accepted {
        let naive = outside::check(&outside::calls_first(&events), true)?;
        let still: Vec<&String> = naive
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|(k, _)| k)
            .collect();
        println!(
            "  ordered by time with calls first at ties (ignoring index): {}",
            if still.is_empty() {
                "accepted: the tie order matters".to_string()
            } else {
                format!("also rejected (keys {still:?})")
            }
        );
    }
    Ok(accepted == expect_accept)
}
