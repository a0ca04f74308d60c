//! The verdict: per-case results merged from what the guest printed and what the host expected,
//! a per-suite table, details of failures, and JUnit.
//!
//! A case passes only when the guest reported `ok`. A case the run should have reported but
//! did not (crash, hang, bail-out) is *not run* and counts as a failure, with the reason the
//! run ended; everything the guest printed before that is kept.

use crate::junit::{JunitCase, JunitOutcome};
use crate::ktap::{Document, Status, TestNode};
use console::Style;
use protocol::catalog::Expected;
use std::fmt::Write as _;

/// The result of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaseStatus {
    /// `ok`.
    Passed,
    /// `not ok`, or a host-side check failed.
    Failed,
    /// `# SKIP reason`.
    Skipped(String),
    /// `not ok # TODO reason` (expected failure; not counted as failed).
    Todo(String),
    /// Never reported; the reason is how the run ended.
    NotRun(String),
}

/// One case with its diagnostics.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// Suite name (or the path of parents joined with `.` for deeper KTAP).
    pub suite: String,
    /// Case name.
    pub case: String,
    /// Result.
    pub status: CaseStatus,
    /// Diagnostic lines the guest printed for the case, and host-side findings.
    pub diagnostics: Vec<String>,
}

/// Per-suite counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped (and TODO).
    pub skipped: usize,
    /// Never reported.
    pub not_run: usize,
}

impl Counts {
    /// All cases.
    pub fn total(&self) -> usize {
        self.passed + self.failed + self.skipped + self.not_run
    }

    fn add(&mut self, s: &CaseStatus) {
        match s {
            CaseStatus::Passed => self.passed += 1,
            CaseStatus::Failed => self.failed += 1,
            CaseStatus::Skipped(_) | CaseStatus::Todo(_) => self.skipped += 1,
            CaseStatus::NotRun(_) => self.not_run += 1,
        }
    }
}

/// Everything the final report shows.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Cases in order.
    pub cases: Vec<CaseReport>,
    /// Problems with the run as a whole (malformed KTAP, crash, exit-code disagreement).
    pub problems: Vec<String>,
    /// The guest's `Bail out!` reason.
    pub bail_out: Option<String>,
    /// Where and how it ran (`qemu microvm/kvm`), for the verdict line.
    pub environment: String,
    /// Start to verdict.
    pub wall: Option<std::time::Duration>,
    /// Last serial lines, shown when the run ended abnormally.
    pub serial_tail: Vec<String>,
}

/// Number of serial lines kept for an abnormal end.
pub const SERIAL_TAIL_LINES: usize = 40;

fn status_of(n: &TestNode) -> CaseStatus {
    match &n.status {
        Status::Pass => CaseStatus::Passed,
        Status::Fail => CaseStatus::Failed,
        Status::Skip(r) => CaseStatus::Skipped(r.clone()),
        Status::Todo(r) => CaseStatus::Todo(r.clone()),
    }
}

fn diags_of(n: &TestNode) -> Vec<String> {
    n.diagnostics.iter().map(|d| d.text.clone()).collect()
}

impl Summary {
    /// The summary of a log with no expectations (`cvmprobe parse`): every leaf test is a case.
    pub fn from_document(doc: &Document) -> Summary {
        let mut s = Summary::default();
        for (path, node) in doc.leaves() {
            let (suite, case) = match path.split_last() {
                Some((last, parents)) if !parents.is_empty() => {
                    (parents.join("."), (*last).to_string())
                }
                Some((last, _)) => (String::new(), (*last).to_string()),
                None => continue,
            };
            s.cases.push(CaseReport {
                suite,
                case,
                status: status_of(node),
                diagnostics: diags_of(node),
            });
        }
        s.add_document_problems(doc);
        if doc.version.is_none() {
            s.problems
                .push("no `KTAP version` or `TAP version` line: this is not a KTAP log".into());
        }
        s
    }

    /// The summary of one of our runs: `expected` is what the catalog says the run must
    /// report; `end_reason` says how the run ended if it ended abnormally (used for every
    /// case that did not report).
    pub fn from_run<'a>(
        doc: &Document,
        expected: impl IntoIterator<Item = (&'a str, &'a str, Expected)>,
        end_reason: Option<&str>,
    ) -> Summary {
        let mut s = Summary::default();
        let mut seen = std::collections::HashSet::new();
        for (suite, case, exp) in expected {
            seen.insert((suite.to_string(), case.to_string()));
            let node = doc
                .tests
                .iter()
                .find(|t| t.name == suite)
                .and_then(|t| t.subtests.iter().find(|c| c.name == case));
            let (status, mut diagnostics) = match node {
                Some(n) => (status_of(n), diags_of(n)),
                None => {
                    let why = end_reason.unwrap_or("the guest never reported it");
                    (CaseStatus::NotRun(why.to_string()), Vec::new())
                }
            };
            let status = match (&status, exp) {
                (CaseStatus::Passed | CaseStatus::Failed, Expected::SkippedForPlatform) => {
                    diagnostics.push("host: the catalog says this case is not for this platform, but the guest ran it".into());
                    CaseStatus::Failed
                }
                _ => status,
            };
            s.cases.push(CaseReport {
                suite: suite.to_string(),
                case: case.to_string(),
                status,
                diagnostics,
            });
        }
        for t in &doc.tests {
            for c in &t.subtests {
                if !seen.contains(&(t.name.clone(), c.name.clone())) {
                    s.problems.push(format!(
                        "line {}: the guest reported {}.{}, which this run did not select (guest and host catalogs disagree)",
                        c.line, t.name, c.name
                    ));
                }
            }
        }
        s.add_document_problems(doc);
        s
    }

    fn add_document_problems(&mut self, doc: &Document) {
        for p in &doc.problems {
            self.problems
                .push(format!("line {}: {}", p.line, p.message));
        }
        if let Some(b) = &doc.bail_out {
            self.bail_out = Some(b.reason.clone());
        }
    }

    /// Marks case `suite.case` failed with a host-side finding (e.g. the host's access log
    /// disagrees with what the case declared).
    pub fn fail_case(&mut self, suite: &str, case: &str, why: String) {
        if let Some(c) = self
            .cases
            .iter_mut()
            .find(|c| c.suite == suite && c.case == case)
        {
            if matches!(
                c.status,
                CaseStatus::Passed | CaseStatus::Skipped(_) | CaseStatus::Todo(_)
            ) {
                c.status = CaseStatus::Failed;
            }
            c.diagnostics.push(format!("host: {why}"));
        } else {
            self.problems.push(format!("host: {suite}.{case}: {why}"));
        }
    }

    /// Totals over all cases.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for k in &self.cases {
            c.add(&k.status);
        }
        c
    }

    /// Per-suite counts, in first-seen order.
    pub fn suites(&self) -> Vec<(String, Counts)> {
        let mut v: Vec<(String, Counts)> = Vec::new();
        for k in &self.cases {
            match v.iter_mut().find(|(s, _)| *s == k.suite) {
                Some((_, c)) => c.add(&k.status),
                None => {
                    let mut c = Counts::default();
                    c.add(&k.status);
                    v.push((k.suite.clone(), c));
                }
            }
        }
        v
    }

    /// The verdict: every case passed or was skipped, nothing is missing, the run ended
    /// cleanly and the log was well formed.
    pub fn passed(&self) -> bool {
        let c = self.counts();
        c.failed == 0
            && c.not_run == 0
            && self.problems.is_empty()
            && self.bail_out.is_none()
            && !self.cases.is_empty()
    }

    /// Renders the report (table, failures, problems, serial tail, verdict line).
    pub fn render(&self, color: bool) -> String {
        let st = |s: Style| if color { s } else { Style::new() };
        let green = st(Style::new().green());
        let red = st(Style::new().red().bold());
        let yellow = st(Style::new().yellow());
        let dim = st(Style::new().dim());
        let bold = st(Style::new().bold());
        let mut out = String::new();

        let suites = self.suites();
        let w = suites
            .iter()
            .map(|(s, _)| s.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(
            out,
            "{}",
            bold.apply_to(format!(
                "{:<w$}  {:>6}  {:>6}  {:>7}  {:>7}",
                "suite", "passed", "failed", "skipped", "not run"
            ))
        );
        for (name, c) in &suites {
            let name = if name.is_empty() { "(top level)" } else { name };
            let line = format!(
                "{:<w$}  {:>6}  {:>6}  {:>7}  {:>7}",
                name, c.passed, c.failed, c.skipped, c.not_run
            );
            let style = if c.failed > 0 || c.not_run > 0 {
                &red
            } else if c.passed == 0 {
                &yellow
            } else {
                &green
            };
            let _ = writeln!(out, "{}", style.apply_to(line));
        }

        let bad: Vec<&CaseReport> = self
            .cases
            .iter()
            .filter(|c| matches!(c.status, CaseStatus::Failed | CaseStatus::NotRun(_)))
            .collect();
        if !bad.is_empty() {
            let _ = writeln!(out);
        }
        for c in bad {
            let name = if c.suite.is_empty() {
                c.case.clone()
            } else {
                format!("{}.{}", c.suite, c.case)
            };
            match &c.status {
                CaseStatus::NotRun(why) => {
                    let _ = writeln!(out, "{} {}: {}", red.apply_to("NOT RUN"), name, why);
                }
                _ => {
                    let _ = writeln!(out, "{} {}", red.apply_to("FAILED "), name);
                }
            }
            for d in &c.diagnostics {
                let _ = writeln!(out, "        # {d}");
            }
        }
        let skipped: Vec<&CaseReport> = self
            .cases
            .iter()
            .filter(|c| matches!(c.status, CaseStatus::Skipped(_) | CaseStatus::Todo(_)))
            .collect();
        if !skipped.is_empty() {
            let _ = writeln!(out);
            for c in skipped {
                let (tag, why) = match &c.status {
                    CaseStatus::Skipped(r) => ("SKIPPED", r),
                    CaseStatus::Todo(r) => ("TODO   ", r),
                    _ => continue,
                };
                let _ = writeln!(
                    out,
                    "{} {}.{}: {}",
                    yellow.apply_to(tag),
                    c.suite,
                    c.case,
                    dim.apply_to(why)
                );
            }
        }
        if let Some(b) = &self.bail_out {
            let _ = writeln!(out, "\n{} {}", red.apply_to("guest bailed out:"), b);
        }
        if !self.problems.is_empty() {
            let _ = writeln!(out);
            for p in &self.problems {
                let _ = writeln!(out, "{} {}", red.apply_to("problem:"), p);
            }
        }
        if !self.serial_tail.is_empty() {
            let _ = writeln!(
                out,
                "\n{}",
                dim.apply_to(format!(
                    "--- last {} serial lines ---",
                    self.serial_tail.len()
                ))
            );
            for l in &self.serial_tail {
                let _ = writeln!(out, "{l}");
            }
            let _ = writeln!(out, "{}", dim.apply_to("--- end of serial output ---"));
        }

        let c = self.counts();
        let verdict = if self.passed() {
            green.apply_to("PASS")
        } else {
            red.apply_to("FAIL")
        };
        let mut line = format!(
            "\nverdict: {}  {} passed, {} failed, {} skipped, {} not run (of {})",
            verdict,
            c.passed,
            c.failed,
            c.skipped,
            c.not_run,
            c.total()
        );
        if !self.environment.is_empty() || self.wall.is_some() {
            line.push_str("  [");
            line.push_str(&self.environment);
            if let Some(w) = self.wall {
                if !self.environment.is_empty() {
                    line.push_str(", ");
                }
                let _ = write!(line, "{:.2} s", w.as_secs_f64());
            }
            line.push(']');
        }
        let _ = writeln!(out, "{line}");
        out
    }

    /// The cases as JUnit test cases.
    pub fn junit_cases(&self) -> Vec<JunitCase> {
        self.cases
            .iter()
            .map(|c| {
                let (outcome, message) = match &c.status {
                    CaseStatus::Passed => (JunitOutcome::Passed, String::new()),
                    CaseStatus::Failed => (
                        JunitOutcome::Failed,
                        c.diagnostics
                            .first()
                            .cloned()
                            .unwrap_or_else(|| "not ok".into()),
                    ),
                    CaseStatus::Skipped(r) | CaseStatus::Todo(r) => {
                        (JunitOutcome::Skipped, r.clone())
                    }
                    CaseStatus::NotRun(r) => (JunitOutcome::Error, format!("not run: {r}")),
                };
                JunitCase {
                    suite: if c.suite.is_empty() {
                        "ktap".into()
                    } else {
                        c.suite.clone()
                    },
                    name: c.case.clone(),
                    outcome,
                    message,
                    details: c.diagnostics.join("\n"),
                    time_secs: None,
                }
            })
            .collect()
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
