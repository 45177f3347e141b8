//! Runs of one seed in a child process. Seeds never share a process (see
//! the crate docs), so the tools that run many seeds, or one seed twice,
//! start a child per run and read what it printed: its report, ending in
//! the [`ResultLine`].

use std::process::{Command, ExitStatus};

use anyhow::Context;

use crate::run::ResultLine;

/// A child process that ran one seed, and what it printed.
#[derive(Debug, Clone)]
pub struct SeedProcess {
    /// Its `RESULT` line, if the run finished: the child exited with 0
    /// (every check held) or 1 (a check failed) and printed one.
    pub result: Option<ResultLine>,
    /// Everything it printed on stdout: the report.
    pub stdout: String,
    /// Everything it printed on stderr: its log.
    pub stderr: String,
    /// How it exited.
    pub status: ExitStatus,
}

impl SeedProcess {
    /// Runs `command` (a tool invocation that runs one seed) to its end,
    /// capturing its output, and reads its `RESULT` line.
    pub fn run(mut command: Command) -> anyhow::Result<SeedProcess> {
        let output = command
            .output()
            .with_context(|| format!("running {:?}", command.get_program()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let finished = output.status.code().is_some_and(|c| c <= 1);
        Ok(SeedProcess {
            result: ResultLine::parse(&stdout).filter(|_| finished),
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            status: output.status,
        })
    }

    /// Whether the run finished and every check held.
    pub fn passed(&self) -> bool {
        self.result.as_ref().is_some_and(|r| r.passed)
    }
}
