//! The outcome of running one suite, and the checked-in list of expected deviations.

use std::fmt;

/// The checked-in expected deviations of every suite (`expectations/deviations.txt`).
const DEVIATIONS: &str = include_str!("../expectations/deviations.txt");

/// Counts and failure descriptions for one suite run.
///
/// Every case ends in one of four outcomes: passed, failed, skipped (the case cannot be
/// decided at all, e.g. a string a Rust `String` cannot hold) or an *expected deviation*: a
/// named difference listed with its reason in `expectations/deviations.txt`. A listed
/// deviation whose check passes, or whose observed result changes, is a failure.
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
    /// Cases that differ exactly as `expectations/deviations.txt` records; each is described
    /// by a `notes` line starting with `expected deviation`.
    pub deviated: usize,
    /// One line per failed case: which case, what was expected, what happened.
    pub failures: Vec<String>,
    /// One line per skipped case (or group of cases): which and why.
    pub skips: Vec<String>,
    /// Extra lines worth printing (not counted): sub-totals, and one `expected deviation ...`
    /// line per deviation with its reason.
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

    /// Records `count` skips sharing one reason line.
    pub fn skip_many(&mut self, count: usize, reason: impl Into<String>) {
        if count > 0 {
            self.skipped += count;
            self.skips.push(format!("{count} cases: {}", reason.into()));
        }
    }

    /// Records a pass when `ok`, else a failure described by `describe()`.
    pub fn check(&mut self, ok: bool, describe: impl FnOnce() -> String) {
        if ok {
            self.pass();
        } else {
            self.fail(describe());
        }
    }

    /// Records one check that may be a listed deviation. `outcome` is `Ok(())` when the check
    /// passed, else `Err((observed, description))`: `observed` is the short, stable form of
    /// what wirecall did (compared with the list), `description` the full failure line.
    ///
    /// * passed, not listed: a pass;
    /// * failed, listed with the same `observed`: an expected deviation;
    /// * failed, not listed: a failure;
    /// * failed, listed with another `observed`: a failure (the deviation changed);
    /// * passed, listed: a failure (the deviation is gone; remove it from the list).
    pub fn check_case(
        &mut self,
        list: &mut Deviations,
        case: &str,
        outcome: Result<(), (String, String)>,
    ) {
        let entry = list.take(case);
        match (outcome, entry) {
            (Ok(()), None) => self.pass(),
            (Ok(()), Some(d)) => self.fail(format!(
                "{case}: listed in expectations/deviations.txt as an expected deviation ({}), but it now \
                 passes; remove the entry",
                d.observed
            )),
            (Err((observed, _)), Some(d)) if observed == d.observed => {
                self.deviated += 1;
                self.notes.push(format!(
                    "expected deviation {case}: {observed}: {}",
                    d.reason
                ));
            }
            (Err((observed, description)), Some(d)) => self.fail(format!(
                "{description} [listed in expectations/deviations.txt as {:?}, now {observed:?}: the expected \
                 deviation changed]",
                d.observed
            )),
            (Err((_, description)), None) => self.fail(description),
        }
    }

    /// Fails every entry of `list` that no check of this run consumed (a case that is not in
    /// the suite any more, or was renamed), and any malformed line of the list.
    pub fn finish_deviations(&mut self, list: Deviations) {
        for e in list.errors {
            self.fail(format!("expectations/deviations.txt: {e}"));
        }
        for d in list.entries.into_iter().filter(|d| !d.used) {
            self.fail(format!(
                "expectations/deviations.txt: {} | {} is not a case of this run any more; remove the entry",
                self.suite, d.case
            ));
        }
    }

    /// Adds another report's counts and lines into this one.
    pub fn merge(&mut self, other: SuiteReport) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.deviated += other.deviated;
        self.failures.extend(other.failures);
        self.skips.extend(other.skips);
        self.notes.extend(other.notes);
    }

    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// The one summary line: `<suite>: N passed, N failed, N skipped`, with
    /// `N expected deviation(s)` before the skips when there are any
    /// (`<suite>: N passed, N failed, N expected deviations, N skipped`).
    pub fn summary(&self) -> String {
        let deviations = match self.deviated {
            0 => String::new(),
            1 => ", 1 expected deviation".to_owned(),
            n => format!(", {n} expected deviations"),
        };
        format!(
            "{}: {} passed, {} failed{deviations}, {} skipped",
            self.suite, self.passed, self.failed, self.skipped
        )
    }
}

impl fmt::Display for SuiteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// One entry of the expected-deviation list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Deviation {
    case: String,
    observed: String,
    reason: String,
    used: bool,
}

/// The expected deviations of one suite, read from the checked-in list
/// (`expectations/deviations.txt`: `suite | case | observed | reason` lines).
#[derive(Debug, Clone, Default)]
pub struct Deviations {
    entries: Vec<Deviation>,
    errors: Vec<String>,
}

impl Deviations {
    /// The checked-in entries for `suite`.
    pub fn for_suite(suite: &str) -> Deviations {
        Deviations::parse(DEVIATIONS, suite)
    }

    /// The entries of `text` for `suite`; malformed lines and duplicate cases are kept as
    /// errors and reported by [`SuiteReport::finish_deviations`].
    pub fn parse(text: &str, suite: &str) -> Deviations {
        let mut out = Deviations::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.splitn(4, " | ").map(str::trim).collect();
            let [s, case, observed, reason] = fields.as_slice() else {
                out.errors.push(format!(
                    "line {}: expected `suite | case | observed | reason`: {line}",
                    n + 1
                ));
                continue;
            };
            if *s != suite {
                continue;
            }
            if reason.is_empty() {
                out.errors
                    .push(format!("line {}: {case}: the reason is empty", n + 1));
            }
            if out.entries.iter().any(|d| d.case == *case) {
                out.errors
                    .push(format!("line {}: {case} is listed twice", n + 1));
                continue;
            }
            out.entries.push(Deviation {
                case: (*case).to_owned(),
                observed: (*observed).to_owned(),
                reason: (*reason).to_owned(),
                used: false,
            });
        }
        out
    }

    /// Marks the entry for `case`, if any, as consumed without judging it: for a check that
    /// could not run this time (its verdict is then neither a pass nor a stale entry).
    pub fn not_run(&mut self, case: &str) {
        self.take(case);
    }

    /// The entry for `case`, marked as consumed.
    fn take(&mut self, case: &str) -> Option<Deviation> {
        let d = self.entries.iter_mut().find(|d| d.case == case)?;
        d.used = true;
        Some(d.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "# comment\n\
        s | a decode | got 1 | the reason\n\
        other | a decode | got 9 | another suite\n\
        s | gone | x | no such case any more\n";

    fn fail(observed: &str) -> Result<(), (String, String)> {
        Err((observed.to_owned(), format!("case failed with {observed}")))
    }

    #[test]
    fn a_listed_difference_is_a_deviation_and_anything_else_fails() {
        let mut r = SuiteReport::new("s");
        let mut list = Deviations::parse(LIST, "s");
        r.check_case(&mut list, "a decode", fail("got 1"));
        r.check_case(&mut list, "b decode", Ok(()));
        r.check_case(&mut list, "c decode", fail("got 3"));
        assert_eq!((r.passed, r.failed, r.deviated), (1, 1, 1));
        assert!(r.notes[0].contains("the reason"), "{:?}", r.notes);
        // `gone` was never checked: the stale entry fails the run.
        r.finish_deviations(list);
        assert_eq!(r.failed, 2, "{:?}", r.failures);
        assert!(r.failures[1].contains("gone"));
        assert_eq!(
            r.summary(),
            "s: 1 passed, 2 failed, 1 expected deviation, 0 skipped"
        );
    }

    #[test]
    fn a_deviation_that_passes_or_changes_fails() {
        let mut r = SuiteReport::new("s");
        let mut list = Deviations::parse(LIST, "s");
        r.check_case(&mut list, "a decode", Ok(()));
        assert_eq!((r.passed, r.failed, r.deviated), (0, 1, 0));
        assert!(r.failures[0].contains("now passes"));
        let mut list = Deviations::parse(LIST, "s");
        r.check_case(&mut list, "a decode", fail("got 2"));
        assert_eq!((r.failed, r.deviated), (2, 0));
        assert!(r.failures[1].contains("changed"), "{}", r.failures[1]);
    }

    #[test]
    fn malformed_and_duplicate_lines_fail() {
        let mut r = SuiteReport::new("s");
        let list = Deviations::parse("s | only two\ns | x | y | z\ns | x | y | z\n", "s");
        r.finish_deviations(list);
        // the malformed line, the duplicate, and the unused `x`
        assert_eq!(r.failed, 3, "{:?}", r.failures);
    }

    #[test]
    fn summary_keeps_the_passed_failed_skipped_shape() {
        let mut r = SuiteReport::new("s");
        r.pass();
        assert_eq!(r.summary(), "s: 1 passed, 0 failed, 0 skipped");
        r.deviated = 2;
        assert_eq!(
            r.summary(),
            "s: 1 passed, 0 failed, 2 expected deviations, 0 skipped"
        );
    }
}
