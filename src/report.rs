//! The verdict: per-case results merged from what the guest printed and what the host expected,
//! a per-suite table, details of failures, and JUnit.
//!
//! A case passes only when the guest reported `ok`. A case the run should have reported but
//! did not (crash, hang, bail-out) is *not run* and counts as a failure, with the reason the
//! run ended; everything the guest printed before that is kept.

use crate::environment::Environment;
use crate::junit::{JunitCase, JunitOutcome};
use crate::ktap::{Document, Status, TestNode};
use console::Style;
use protocol::catalog::{Expected, Need, Needs};
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
        let c = s.counts();
        if c.skipped > 0 && c.skipped == c.total() {
            // kunit_tool reports such a log SKIPPED, not SUCCESS, and exits 1.
            s.problems
                .push("every test was skipped: nothing ran (kunit_tool: SKIPPED)".into());
        }
        s
    }

    /// The summary of one of our runs: `expected` is what the catalog says the run must
    /// report in `env` (`protocol::catalog::planned`); `end_reason` says how the run ended if
    /// it ended abnormally (used for every case that did not report).
    ///
    /// The host decides the verdict: a case the environment provides everything for must run
    /// (a `# SKIP` or a `not ok # TODO` fails it, naming what the host set up and what the
    /// guest said), a case may skip only for a missing need of its own (with that need's
    /// reason), and a case not meant for the platform must skip.
    pub fn from_run<'a>(
        doc: &Document,
        expected: impl IntoIterator<Item = (&'a str, &'a str, Expected)>,
        env: &Environment,
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
            let status = match judge_skip(&status, exp, env) {
                Some(why) => {
                    diagnostics.push(format!("host: {why}"));
                    CaseStatus::Failed
                }
                None => status,
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

    /// Renders the report (table, failures, skips grouped by reason, problems, serial tail,
    /// verdict line); `verbose` lists every skipped case instead of the groups.
    pub fn render(&self, color: bool, verbose: bool) -> String {
        let st = Styles::new(color);
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
            st.bold.apply_to(format!(
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
            let _ = writeln!(out, "{}", st.for_counts(c).apply_to(line));
        }
        self.render_failures(&mut out, &st, None);
        if verbose {
            self.render_skip_list(&mut out, &st);
        } else {
            render_skip_groups(&mut out, &st, &[(None, self)]);
        }
        self.render_end(&mut out, &st);
        let _ = writeln!(out, "\n{}", self.verdict_line(&st));
        out
    }

    /// `FAILED` / `NOT RUN` lines with their diagnostics (`[platform]` in front when given).
    fn render_failures(&self, out: &mut String, st: &Styles, platform: Option<&str>) {
        let bad: Vec<&CaseReport> = self
            .cases
            .iter()
            .filter(|c| matches!(c.status, CaseStatus::Failed | CaseStatus::NotRun(_)))
            .collect();
        if !bad.is_empty() {
            let _ = writeln!(out);
        }
        let tag = platform.map_or(String::new(), |p| format!("[{p}] "));
        for c in bad {
            let name = c.full_name();
            match &c.status {
                CaseStatus::NotRun(why) => {
                    let _ = writeln!(out, "{} {tag}{}: {}", st.red.apply_to("NOT RUN"), name, why);
                }
                _ => {
                    let _ = writeln!(out, "{} {tag}{}", st.red.apply_to("FAILED "), name);
                }
            }
            for d in &c.diagnostics {
                let _ = writeln!(out, "        # {d}");
            }
        }
    }

    /// One `SKIPPED suite.case: reason` line per skipped case (`--verbose`).
    fn render_skip_list(&self, out: &mut String, st: &Styles) {
        let skipped: Vec<&CaseReport> = self
            .cases
            .iter()
            .filter(|c| matches!(c.status, CaseStatus::Skipped(_) | CaseStatus::Todo(_)))
            .collect();
        if skipped.is_empty() {
            return;
        }
        let _ = writeln!(out);
        for c in skipped {
            let (tag, why) = match &c.status {
                CaseStatus::Skipped(r) => ("SKIPPED", r),
                CaseStatus::Todo(r) => ("TODO   ", r),
                _ => continue,
            };
            let _ = writeln!(
                out,
                "{} {}: {}",
                st.yellow.apply_to(tag),
                c.full_name(),
                st.dim.apply_to(why)
            );
        }
    }

    /// Bail-out, problems and the serial tail.
    fn render_end(&self, out: &mut String, st: &Styles) {
        if let Some(b) = &self.bail_out {
            let _ = writeln!(out, "\n{} {}", st.red.apply_to("guest bailed out:"), b);
        }
        if !self.problems.is_empty() {
            let _ = writeln!(out);
            for p in &self.problems {
                let _ = writeln!(out, "{} {}", st.red.apply_to("problem:"), p);
            }
        }
        if !self.serial_tail.is_empty() {
            let _ = writeln!(
                out,
                "\n{}",
                st.dim.apply_to(format!(
                    "--- last {} serial lines ---",
                    self.serial_tail.len()
                ))
            );
            for l in &self.serial_tail {
                let _ = writeln!(out, "{l}");
            }
            let _ = writeln!(out, "{}", st.dim.apply_to("--- end of serial output ---"));
        }
    }

    /// `verdict: PASS  39 passed, 0 failed, 42 skipped, 0 not run (of 81)  [where, 0.07 s]`.
    fn verdict_line(&self, st: &Styles) -> String {
        let c = self.counts();
        let verdict = if self.passed() {
            st.green.apply_to("PASS")
        } else {
            st.red.apply_to("FAIL")
        };
        let mut line = format!(
            "verdict: {}  {} passed, {} failed, {} skipped, {} not run (of {})",
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
        line
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

impl CaseReport {
    /// `suite.case` (just `case` at the top level).
    pub fn full_name(&self) -> String {
        if self.suite.is_empty() {
            self.case.clone()
        } else {
            format!("{}.{}", self.suite, self.case)
        }
    }
}

/// The report's colours (plain when `color` is off).
struct Styles {
    green: Style,
    red: Style,
    yellow: Style,
    dim: Style,
    bold: Style,
}

impl Styles {
    fn new(color: bool) -> Self {
        let st = |s: Style| if color { s } else { Style::new() };
        Self {
            green: st(Style::new().green()),
            red: st(Style::new().red().bold()),
            yellow: st(Style::new().yellow()),
            dim: st(Style::new().dim()),
            bold: st(Style::new().bold()),
        }
    }

    /// Red with a failure, yellow with nothing passed, else green.
    fn for_counts(&self, c: &Counts) -> &Style {
        if c.failed > 0 || c.not_run > 0 {
            &self.red
        } else if c.passed == 0 {
            &self.yellow
        } else {
            &self.green
        }
    }
}

/// One skip reason: how many cases, in which suites, on which platforms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkipGroup {
    /// The reason, as the guest printed it (`not for platform legacy`).
    pub reason: String,
    /// Cases skipped for it.
    pub count: usize,
    /// Per suite, in first-seen order.
    pub suites: Vec<(String, usize)>,
    /// Platforms it happened on (multi-platform runs), in run order.
    pub platforms: Vec<String>,
}

/// The skips of `runs` grouped by reason, in first-seen order.
pub fn skip_groups(runs: &[(Option<&str>, &Summary)]) -> Vec<SkipGroup> {
    let mut groups: Vec<SkipGroup> = Vec::new();
    for (platform, s) in runs {
        for c in &s.cases {
            let reason = match &c.status {
                CaseStatus::Skipped(r) => r.clone(),
                CaseStatus::Todo(r) => format!("TODO: {r}"),
                _ => continue,
            };
            let i = match groups.iter().position(|g| g.reason == reason) {
                Some(i) => i,
                None => {
                    groups.push(SkipGroup {
                        reason,
                        ..SkipGroup::default()
                    });
                    groups.len() - 1
                }
            };
            let g = &mut groups[i];
            g.count += 1;
            match g.suites.iter_mut().find(|(n, _)| *n == c.suite) {
                Some((_, n)) => *n += 1,
                None => g.suites.push((c.suite.clone(), 1)),
            }
            if let Some(p) = platform
                && !g.platforms.iter().any(|x| x == p)
            {
                g.platforms.push((*p).to_string());
            }
        }
    }
    groups
}

/// `skipped, by reason` with one line per reason: count, reason, suites (and platforms).
fn render_skip_groups(out: &mut String, st: &Styles, runs: &[(Option<&str>, &Summary)]) {
    let groups = skip_groups(runs);
    if groups.is_empty() {
        return;
    }
    let total: usize = groups.iter().map(|g| g.count).sum();
    let _ = writeln!(
        out,
        "\n{} skipped, by reason (--verbose lists each case):",
        total
    );
    for g in groups {
        let suites: Vec<String> = g
            .suites
            .iter()
            .map(|(s, n)| format!("{} {n}", if s.is_empty() { "(top level)" } else { s }))
            .collect();
        let mut where_ = suites.join(", ");
        if !g.platforms.is_empty() {
            let _ = write!(where_, "; {}", g.platforms.join(", "));
        }
        let _ = writeln!(
            out,
            "  {:>4}  {}  {}",
            st.yellow.apply_to(g.count),
            g.reason,
            st.dim.apply_to(format!("[{where_}]"))
        );
    }
}

/// The report of a run over several platforms: one compact table (suites by platform, each
/// cell `pass skip fail`), the failures, the skips grouped by reason (or every skipped case
/// with `verbose`), each platform's problems, its verdict line, and one line with every
/// platform's verdict.
pub fn render_all(runs: &[(&str, &Summary)], color: bool, verbose: bool) -> String {
    let st = Styles::new(color);
    let mut out = String::new();
    let mut suites: Vec<String> = Vec::new();
    for (_, s) in runs {
        for (name, _) in s.suites() {
            if !suites.contains(&name) {
                suites.push(name);
            }
        }
    }
    let w = suites.iter().map(String::len).max().unwrap_or(5).max(5);
    const CELL: usize = 14;
    let mut head1 = format!("{:<w$}", "");
    let mut head2 = format!("{:<w$}", "suite");
    for (p, _) in runs {
        let _ = write!(head1, "  {p:^CELL$}");
        let _ = write!(head2, "  {:>4} {:>4} {:>4}", "pass", "skip", "fail");
    }
    let _ = writeln!(out, "{}", st.bold.apply_to(head1.trim_end()));
    let _ = writeln!(out, "{}", st.bold.apply_to(head2.trim_end()));
    for name in &suites {
        let _ = write!(
            out,
            "{:<w$}",
            if name.is_empty() { "(top level)" } else { name }
        );
        for (_, s) in runs {
            let c = s
                .suites()
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c)
                .unwrap_or_default();
            let cell = format!(
                "{:>4} {:>4} {:>4}",
                c.passed,
                c.skipped,
                c.failed + c.not_run
            );
            let _ = write!(out, "  {}", st.for_counts(&c).apply_to(cell));
        }
        let _ = writeln!(out);
    }
    for (p, s) in runs {
        s.render_failures(&mut out, &st, Some(p));
    }
    if verbose {
        for (p, s) in runs {
            let _ = write!(out, "\n== skipped on {p} ==");
            s.render_skip_list(&mut out, &st);
        }
    } else {
        let tagged: Vec<(Option<&str>, &Summary)> =
            runs.iter().map(|(p, s)| (Some(*p), *s)).collect();
        render_skip_groups(&mut out, &st, &tagged);
    }
    for (p, s) in runs {
        if s.bail_out.is_some() || !s.problems.is_empty() || !s.serial_tail.is_empty() {
            let _ = write!(out, "\n== {p} ==");
            s.render_end(&mut out, &st);
        }
    }
    let _ = writeln!(out);
    for (_, s) in runs {
        let _ = writeln!(out, "{}", s.verdict_line(&st));
    }
    let verdicts: Vec<String> = runs
        .iter()
        .map(|(p, s)| format!("{p} {}", if s.passed() { "PASS" } else { "FAIL" }))
        .collect();
    let _ = writeln!(out, "verdict per platform: {}", verdicts.join(", "));
    out
}

/// Why a case's reported status is wrong for what the catalog expects in `env`, if it is:
/// the environment's verdict on skips (see [`Summary::from_run`]).
pub fn judge_skip(status: &CaseStatus, exp: Expected, env: &Environment) -> Option<String> {
    match (status, exp) {
        (CaseStatus::Passed | CaseStatus::Failed, Expected::SkippedForPlatform) => {
            Some("the catalog says this case is not for this platform, but the guest ran it".into())
        }
        (CaseStatus::Todo(r), Expected::Runs | Expected::MaySkip(_)) => Some(format!(
            "the guest reported not ok # TODO ({r}) for a case {} runs: a TODO is not a result",
            env.runner
        )),
        (CaseStatus::Todo(r), Expected::SkippedForPlatform) => Some(format!(
            "the catalog says this case is not for this platform, but the guest reported not \
             ok # TODO ({r}) instead of skipping it"
        )),
        (CaseStatus::Skipped(r), Expected::Runs | Expected::MaySkip(_)) => {
            let missing = match exp {
                Expected::MaySkip(m) => m,
                _ => Needs::NONE,
            };
            match Need::from_reason(r) {
                Some(n) if missing.contains(n) => None,
                Some(n) => match env.how(n) {
                    Some(how) => Some(format!(
                        "the host provides {} ({how}; {}), but the guest reported SKIP: {r}",
                        n.name(),
                        env.runner
                    )),
                    None => Some(format!(
                        "the guest reported SKIP: {r}, but the catalog does not say this case \
                         needs {}",
                        n.name()
                    )),
                },
                None if missing.is_empty() => Some(format!(
                    "{} provides everything this case needs, but the guest reported SKIP: {r}",
                    env.runner
                )),
                None => Some(format!(
                    "the guest reported SKIP with a reason the catalog does not give this case: \
                     {r} (this run lacks: {})",
                    missing
                        .iter()
                        .map(Need::name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::platform::PlatformKind;

    fn skipped(n: Need) -> CaseStatus {
        CaseStatus::Skipped(n.reason().into())
    }

    #[test]
    fn the_environment_decides_which_skips_are_allowed() {
        let env = Environment::builtin(PlatformKind::Legacy, vmm::Boot::Pvh);
        let missing_edu = Expected::MaySkip(Needs::of(&[Need::EduPci]));
        // A skip for a need the case lacks here: allowed.
        assert_eq!(judge_skip(&skipped(Need::EduPci), missing_edu, &env), None);
        // A skip for a need the host provided: fails, naming how it was provided.
        let why = judge_skip(&skipped(Need::TestDevice), Expected::Runs, &env).unwrap();
        assert!(why.contains("the host provides test-device"), "{why}");
        assert!(why.contains("the built-in VMM's test device"), "{why}");
        assert!(why.contains(Need::TestDevice.reason()), "{why}");
        // A skip with a reason no need has, where the case may skip for another one.
        let odd = CaseStatus::Skipped("felt like it".into());
        let why = judge_skip(&odd, missing_edu, &env).unwrap();
        assert!(why.contains("this run lacks: edu-pci"), "{why}");
        assert!(judge_skip(&odd, Expected::Runs, &env).is_some());
        // TODO is never a skip.
        let todo = CaseStatus::Todo("later".into());
        assert!(judge_skip(&todo, Expected::Runs, &env).is_some());
        assert!(judge_skip(&todo, missing_edu, &env).is_some());
        assert!(judge_skip(&todo, Expected::SkippedForPlatform, &env).is_some());
        // Not for the platform: must skip, with any reason.
        assert!(judge_skip(&CaseStatus::Passed, Expected::SkippedForPlatform, &env).is_some());
        let other = CaseStatus::Skipped("not for platform legacy".into());
        assert_eq!(judge_skip(&other, Expected::SkippedForPlatform, &env), None);
        assert_eq!(judge_skip(&CaseStatus::Failed, Expected::Runs, &env), None);
    }

    #[test]
    fn skips_are_grouped_by_reason_with_counts_and_suites() {
        let case = |suite: &str, reason: &str| CaseReport {
            suite: suite.into(),
            case: "c".into(),
            status: CaseStatus::Skipped(reason.into()),
            diagnostics: Vec::new(),
        };
        let a = Summary {
            cases: vec![case("io", "r1"), case("io", "r1"), case("mmio", "r2")],
            ..Summary::default()
        };
        let b = Summary {
            cases: vec![case("mmio", "r2")],
            ..Summary::default()
        };
        let g = skip_groups(&[(Some("legacy"), &a), (Some("tdx-sim"), &b)]);
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].reason.as_str(), g[0].count), ("r1", 2));
        assert_eq!(g[0].suites, [("io".to_string(), 2)]);
        assert_eq!((g[1].count, g[1].platforms.len()), (2, 2));
        let text = a.render(false, false);
        assert!(text.contains("3 skipped, by reason"), "{text}");
        assert!(!text.contains("SKIPPED io.c"), "{text}");
        assert!(a.render(false, true).contains("SKIPPED io.c: r1"));
    }
}
