//! The outcome of running one suite.

use std::fmt;

/// Counts and failure descriptions for one suite run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuiteReport {
    /// The suite name, as printed in the summary line.
    pub suite: String,
    /// Cases that behaved as required.
    pub passed: usize,
    /// Cases that did not; one entry per case in `failures`.
    pub failed: usize,
    /// Cases not run, each for a reason recorded in `skips`.
    pub skipped: usize,
    /// One line per failed case: which case, what was expected, what happened.
    pub failures: Vec<String>,
    /// One line per skipped case (or group of cases): which and why.
    pub skips: Vec<String>,
    /// Extra figures worth printing (not counted), e.g. sub-totals.
    pub notes: Vec<String>,
}

impl SuiteReport {
    /// An empty report for `suite`.
    pub fn new(suite: impl Into<String>) -> SuiteReport {
        SuiteReport {
            suite: suite.into(),
            ..SuiteReport::default()
        }
    }

    /// Records a pass.
    pub fn pass(&mut self) {
        self.passed += 1;
    }

    /// Records a failure with its description.
    pub fn fail(&mut self, description: impl Into<String>) {
        self.failed += 1;
        self.failures.push(description.into());
    }

    /// Records a skip with its reason.
    pub fn skip(&mut self, reason: impl Into<String>) {
        self.skipped += 1;
        self.skips.push(reason.into());
    }

    /// Records a pass when `ok`, else a failure described by `describe()`.
    pub fn check(&mut self, ok: bool, describe: impl FnOnce() -> String) {
        if ok {
            self.pass();
        } else {
            self.fail(describe());
        }
    }

    /// Adds another report's counts and lines into this one.
    pub fn merge(&mut self, other: SuiteReport) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.failures.extend(other.failures);
        self.skips.extend(other.skips);
        self.notes.extend(other.notes);
    }

    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// The one summary line: `<suite>: N passed, N failed, N skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} passed, {} failed, {} skipped",
            self.suite, self.passed, self.failed, self.skipped
        )
    }
}

impl fmt::Display for SuiteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}
