//! How a sweep shows its progress: a progress bar when stderr is a
//! terminal, else (in CI logs) a line every ten seconds. Only the sweep's
//! parent process shows progress, never a simulation.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Seconds between progress lines when there is no terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// A sweep's progress display.
pub enum Progress {
    /// A bar on the terminal.
    Bar(ProgressBar),
    /// Plain lines on stdout.
    Lines {
        /// When the sweep began.
        started: Instant,
        /// When the last line was printed.
        last: Instant,
        /// Runs to do.
        total: u64,
        /// Runs done.
        done: u64,
    },
}

impl Progress {
    /// A display for `total` runs: a bar if stderr is a terminal.
    pub fn new(total: u64) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} runs, {msg} (eta {eta})",
                )
                .expect("a valid progress template")
                .progress_chars("=> "),
            );
            bar.set_message("0 failed");
            Progress::Bar(bar)
        } else {
            let now = Instant::now();
            Progress::Lines {
                started: now,
                last: now,
                total,
                done: 0,
            }
        }
    }

    /// One run finished; `failed` names its seed if it failed, which is
    /// printed at once.
    pub fn finished(&mut self, failed: Option<u64>, failures: usize) {
        match self {
            Progress::Bar(bar) => {
                if let Some(seed) = failed {
                    bar.suspend(|| println!("seed {seed}: FAILED"));
                }
                bar.set_message(format!("{failures} failed"));
                bar.inc(1);
            }
            Progress::Lines { done, .. } => {
                if let Some(seed) = failed {
                    println!("seed {seed}: FAILED");
                }
                *done += 1;
            }
        }
    }

    /// Called about once a second: prints a progress line if one is due.
    pub fn tick(&mut self) {
        if let Progress::Lines {
            started,
            last,
            total,
            done,
        } = self
        {
            if last.elapsed() >= LINE_EVERY {
                println!(
                    "  ... {done}/{total} runs done, {:.0}s",
                    started.elapsed().as_secs_f64()
                );
                *last = Instant::now();
            }
        }
    }

    /// Clears the bar once the sweep is over.
    pub fn finish(self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
