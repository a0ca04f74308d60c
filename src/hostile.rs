//! The verdict of a run under a hostile host (`--hostile SEED`) and `cvmprobe fuzz-host`.
//!
//! Under a hostile host the guest's own verdict is expected to be FAIL: every case the host
//! lied to must say so. The run is *correct* when
//! - every case the host lied to is reported failed or skipped (a lie noticed), or was not
//!   reached because the guest bailed out cleanly in or after a lied-to case;
//! - every case it did not lie to still reports what an honest run reports (passed, or
//!   skipped for its platform): a failure there is a false alarm;
//! - the run ends through the guest's exit port: a hang, a triple fault, a KVM error, a
//!   panic or an unexpected exception is a crash, whatever the cases said;
//! - the host found no other problem (a GHCB leak, a malformed log, an open memslot cycle
//!   outside a bail-out).

use crate::report::{CaseStatus, Summary};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use vmm::ExitReason;
use vmm::sim::hostile::{LieKind, LieLog};

/// How `run::merge_host_checks` words a GHCB leak in the summary's problems (the verdict
/// takes leaks from the VMM's report instead, so a bail-out cannot hide them).
pub const LEAK_PREFIX: &str = "host: private data leak";

/// How the run ended, as far as the hostile verdict cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Through the exit port, with a PASS or FAIL verdict.
    Verdict,
    /// Through the exit port after a `Bail out!` the guest chose (it refused to go on).
    CleanBailOut(String),
    /// A hang (the timeout).
    Hang(String),
    /// Anything else: triple fault, KVM error, panic, unexpected exception, platform stop.
    Crash(String),
}

/// The judgement of one hostile run.
#[derive(Clone, Debug)]
pub struct HostileVerdict {
    /// Answers the hostile layer saw.
    pub answers: u64,
    /// Answers eligible for a lie.
    pub eligible: u64,
    /// Lies told.
    pub lies: usize,
    /// Lies per kind.
    pub by_kind: BTreeMap<LieKind, usize>,
    /// Lies the guest handled right: noticed (their case failed, skipped, or was cut by a
    /// clean bail-out), or, for a GHCB rewritten after the guest read it, not noticed.
    pub caught: usize,
    /// Lies in cases that passed, described.
    pub missed: Vec<String>,
    /// Cases that failed although the host did not lie to them, with their diagnostics.
    pub false_alarms: Vec<String>,
    /// How the run ended.
    pub end: End,
    /// Other problems the host found (GHCB leaks, log problems).
    pub problems: Vec<String>,
    /// Cases not reached after a clean bail-out (not counted against the guest).
    pub not_reached: usize,
}

impl HostileVerdict {
    /// Whether the guest survived the hostile host correctly.
    pub fn passed(&self) -> bool {
        self.missed.is_empty()
            && self.false_alarms.is_empty()
            && self.problems.is_empty()
            && matches!(self.end, End::Verdict | End::CleanBailOut(_))
    }

    /// Whether the run crashed.
    pub fn crashed(&self) -> bool {
        matches!(self.end, End::Crash(_))
    }

    /// Whether the run hung.
    pub fn hung(&self) -> bool {
        matches!(self.end, End::Hang(_))
    }

    /// The report printed after the run's summary.
    pub fn render(&self, log: &LieLog) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "hostile host: {} answers, {} eligible, {} lies",
            self.answers, self.eligible, self.lies
        );
        for l in &log.lies {
            let _ = writeln!(s, "  lie: {l}");
        }
        for m in &self.missed {
            let _ = writeln!(s, "  MISSED: {m}");
        }
        for f in &self.false_alarms {
            let _ = writeln!(s, "  FALSE ALARM: {f}");
        }
        for p in &self.problems {
            let _ = writeln!(s, "  PROBLEM: {p}");
        }
        match &self.end {
            End::Verdict => {}
            End::CleanBailOut(why) => {
                let _ = writeln!(
                    s,
                    "  the guest bailed out cleanly ({why}); {} cases not reached",
                    self.not_reached
                );
            }
            End::Hang(why) => {
                let _ = writeln!(s, "  HANG: {why}");
            }
            End::Crash(why) => {
                let _ = writeln!(s, "  CRASH: {why}");
            }
        }
        let _ = writeln!(
            s,
            "hostile verdict: {} (lies {}, caught {}, missed {}, false alarms {}, crashes {}, hangs {})",
            if self.passed() { "PASS" } else { "FAIL" },
            self.lies,
            self.caught,
            self.missed.len(),
            self.false_alarms.len(),
            u8::from(self.crashed()),
            u8::from(self.hung()),
        );
        s
    }
}

/// Classifies how the run ended.
pub fn classify_end(exit: &ExitReason, summary: &Summary) -> End {
    match exit {
        ExitReason::GuestExit(_) => match &summary.bail_out {
            Some(b) if b.starts_with("panic") || b.starts_with("unexpected exception") => {
                End::Crash(format!("the guest bailed out: {b}"))
            }
            Some(b) => End::CleanBailOut(b.clone()),
            None => End::Verdict,
        },
        ExitReason::Timeout { .. } | ExitReason::HaltedForever { .. } => {
            End::Hang(exit.to_string())
        }
        other => End::Crash(other.to_string()),
    }
}

/// Judges a hostile run: the summary (KTAP merged with the host's checks), how it ended, the
/// lie log and the GHCB leaks the host saw.
pub fn judge(
    summary: &Summary,
    exit: &ExitReason,
    log: &LieLog,
    leaks: &[String],
) -> HostileVerdict {
    let end = classify_end(exit, summary);
    let mut by_case: BTreeMap<&str, Vec<&vmm::sim::hostile::Lie>> = BTreeMap::new();
    let mut by_kind = BTreeMap::new();
    for l in &log.lies {
        by_case.entry(l.case.as_str()).or_default().push(l);
        *by_kind.entry(l.kind).or_insert(0) += 1;
    }
    let mut v = HostileVerdict {
        answers: log.answers,
        eligible: log.eligible,
        lies: log.lies.len(),
        by_kind,
        caught: 0,
        missed: Vec::new(),
        false_alarms: Vec::new(),
        end: end.clone(),
        problems: leaks.iter().map(|l| format!("GHCB leak: {l}")).collect(),
        not_reached: 0,
    };
    let bailed = matches!(end, End::CleanBailOut(_));
    // The case that was running when the guest bailed out: the first one not reported.
    let mut bail_case_seen = false;
    let mut known = std::collections::HashSet::new();
    for c in &summary.cases {
        let name = format!("{}.{}", c.suite, c.case);
        let lies = by_case.get(name.as_str()).map_or(&[][..], |v| v.as_slice());
        known.insert(name.clone());
        // Lies a correct guest must notice, and the harmless ones it must not (a GHCB
        // rewritten after its one read: noticing that is a double fetch).
        let noticeable = lies.iter().filter(|l| l.kind.must_be_noticed()).count();
        let harmless = lies.len() - noticeable;
        match &c.status {
            CaseStatus::Passed => {
                for l in lies.iter().filter(|l| l.kind.must_be_noticed()) {
                    v.missed.push(l.to_string());
                }
                v.caught += harmless;
            }
            CaseStatus::Failed | CaseStatus::Todo(_) | CaseStatus::Skipped(_) if noticeable > 0 => {
                v.caught += lies.len();
            }
            CaseStatus::Skipped(_) => v.caught += harmless,
            CaseStatus::Failed | CaseStatus::Todo(_) if harmless > 0 => {
                v.false_alarms.push(format!(
                    "{name} failed after a GHCB rewrite that happened after the guest read \
                     the answer (a double fetch?): {}",
                    c.diagnostics.join(" | ")
                ));
            }
            CaseStatus::Failed | CaseStatus::Todo(_) => {
                v.false_alarms.push(format!(
                    "{name} failed with no lie told to it: {}",
                    c.diagnostics.join(" | ")
                ));
            }
            CaseStatus::NotRun(_) if bailed => {
                if !bail_case_seen {
                    bail_case_seen = true;
                    if lies.is_empty() && !lied_before(&summary.cases, &by_case, &name) {
                        v.false_alarms.push(format!(
                            "the guest bailed out in {name}, to which no lie was told"
                        ));
                    }
                }
                v.caught += lies.len();
                v.not_reached += 1;
            }
            CaseStatus::NotRun(_) => {
                // A crash or hang: the end says so; the lies in unreached cases are not
                // counted as caught.
            }
        }
    }
    for (case, lies) in &by_case {
        if !known.contains(*case) {
            v.problems.push(format!(
                "{} lie(s) logged for {case}, which the run did not select",
                lies.len()
            ));
        }
    }
    // Problems of the log or the host, except the ones a clean bail-out explains (the
    // guest stopped mid-case, e.g. with a memslot cycle open).
    if !bailed {
        v.problems.extend(
            summary
                .problems
                .iter()
                .filter(|p| !p.starts_with(LEAK_PREFIX))
                .cloned(),
        );
    }
    v
}

/// Whether a lie was told to some case before `name` in report order (a bail-out in an
/// honest case right after a lied-to one can be the lie's late effect, e.g. a refused
/// spurious #VC repeated until the guest gives up).
fn lied_before(
    cases: &[crate::report::CaseReport],
    by_case: &BTreeMap<&str, Vec<&vmm::sim::hostile::Lie>>,
    name: &str,
) -> bool {
    cases
        .iter()
        .map(|c| format!("{}.{}", c.suite, c.case))
        .take_while(|n| n != name)
        .any(|n| by_case.contains_key(n.as_str()))
}

/// One hostile run of `req` under the built-in VMM: the run's result, the VMM's report and
/// the verdict.
pub fn run_once(
    req: &crate::run::RunRequest,
    kernel: &std::path::Path,
    cfg: vmm::sim::hostile::HostileConfig,
) -> Result<(crate::run::RunResult, vmm::RunReport, HostileVerdict), vmm::VmmError> {
    let (result, report) = crate::run::run_builtin_with(req, kernel, Some(cfg))?;
    let log = report.lies.clone().unwrap_or_default();
    let verdict = judge(&result.summary, &report.exit, &log, &report.ghcb_leaks);
    Ok((result, report, verdict))
}

/// What `cvmprobe fuzz-host` runs: run `i` uses seed `first_seed + i` on
/// `platforms[i % platforms.len()]`.
#[derive(Clone, Debug)]
pub struct FuzzPlan {
    /// The simulated platforms, alternating.
    pub platforms: Vec<protocol::platform::PlatformKind>,
    /// Runs (seeds) to do.
    pub runs: u64,
    /// Seed of run 0.
    pub first_seed: u64,
    /// Probability that an eligible answer is a lie.
    pub lie_rate: f64,
    /// Runs at a time.
    pub jobs: usize,
    /// Hang limit per run.
    pub timeout: std::time::Duration,
    /// `--filter`.
    pub filter: String,
    /// `--append` tokens.
    pub append: Vec<String>,
}

impl FuzzPlan {
    /// `200 runs on tdx-sim and sev-es-sim, seeds 7.., lie rate 0.05, 2 at a time`.
    pub fn describe(&self) -> String {
        format!(
            "{} runs on {}, seeds {}.., lie rate {}, {} at a time",
            self.runs,
            self.platforms
                .iter()
                .map(|p| vmm::sim_name(*p))
                .collect::<Vec<_>>()
                .join(" and "),
            self.first_seed,
            self.lie_rate,
            self.jobs
        )
    }

    /// The command that reproduces run `i` alone.
    pub fn reproduce(&self, i: u64) -> String {
        let platform = self.platform(i);
        format!(
            "cvmprobe run --platform {} --hostile {} --lie-rate {}{}",
            vmm::sim_name(platform),
            self.first_seed.wrapping_add(i),
            self.lie_rate,
            self.append
                .iter()
                .map(|t| format!(" --append {t}"))
                .collect::<String>()
        )
    }

    fn platform(&self, i: u64) -> protocol::platform::PlatformKind {
        self.platforms[(i % self.platforms.len() as u64) as usize]
    }
}

/// What `cvmprobe fuzz-host` found.
#[derive(Clone, Debug, Default)]
pub struct FuzzReport {
    /// Over all runs.
    pub totals: FuzzTotals,
    /// Per platform name.
    pub per_platform: BTreeMap<&'static str, FuzzTotals>,
    /// Runs that could not be made (VMM errors).
    pub errors: Vec<String>,
    /// Wall time.
    pub elapsed: std::time::Duration,
}

impl FuzzReport {
    /// Per platform, then the total and the verdict.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (p, t) in &self.per_platform {
            let _ = writeln!(s, "== {p} ==");
            s += &t.render();
        }
        let _ = writeln!(s, "== total ({:.1} s) ==", self.elapsed.as_secs_f64());
        s += &self.totals.render();
        let _ = writeln!(
            s,
            "fuzz-host verdict: {}",
            if self.totals.passed() { "PASS" } else { "FAIL" }
        );
        s
    }
}

/// Runs `plan` with `plan.jobs` threads: `on_failure` gets the text of each failing run (the
/// command that reproduces it, its hostile verdict and serial tail) as it happens,
/// `on_progress` the number of runs done and the seconds elapsed every 50 runs.
pub fn fuzz(
    plan: &FuzzPlan,
    kernel: &std::path::Path,
    on_failure: &(dyn Fn(&str) + Sync),
    on_progress: &(dyn Fn(u64, f64) + Sync),
) -> FuzzReport {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    let next = AtomicU64::new(0);
    let report = Mutex::new(FuzzReport::default());
    let start = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..plan.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= plan.runs {
                        break;
                    }
                    let platform = plan.platform(i);
                    let seed = plan.first_seed.wrapping_add(i);
                    let req = crate::run::RunRequest {
                        platform,
                        filter: plan.filter.clone(),
                        extra_cmdline: plan.append.clone(),
                        timeout: plan.timeout,
                        verbose: false,
                        progress: false,
                    };
                    let cfg = vmm::sim::hostile::HostileConfig {
                        seed,
                        rate: plan.lie_rate,
                    };
                    match run_once(&req, kernel, cfg) {
                        Ok((result, run_report, verdict)) => {
                            if !verdict.passed() {
                                let log = run_report.lies.unwrap_or_default();
                                let mut text =
                                    format!("-- run {i} FAILED: {}\n", plan.reproduce(i));
                                text += &verdict.render(&log);
                                for l in &result.summary.serial_tail {
                                    text += &format!("  | {l}\n");
                                }
                                on_failure(&text);
                            }
                            let mut r = report.lock().expect("fuzz report");
                            r.totals.add(&verdict);
                            r.per_platform
                                .entry(vmm::sim_name(platform))
                                .or_default()
                                .add(&verdict);
                            drop(r);
                            if (i + 1) % 50 == 0 {
                                on_progress(i + 1, start.elapsed().as_secs_f64());
                            }
                        }
                        Err(e) => report
                            .lock()
                            .expect("fuzz report")
                            .errors
                            .push(format!("run {i} (seed {seed}): {e}")),
                    }
                }
            });
        }
    });
    let mut r = report.into_inner().expect("fuzz report");
    r.elapsed = start.elapsed();
    r
}

/// Totals over many hostile runs (`cvmprobe fuzz-host`).
#[derive(Clone, Debug, Default)]
pub struct FuzzTotals {
    /// Runs done.
    pub runs: usize,
    /// Answers the hostile layer saw.
    pub answers: u64,
    /// Eligible answers.
    pub eligible: u64,
    /// Lies told.
    pub lies: usize,
    /// Lies caught.
    pub caught: usize,
    /// Lies missed.
    pub missed: usize,
    /// False alarms.
    pub false_alarms: usize,
    /// Runs that crashed.
    pub crashes: usize,
    /// Runs that hung.
    pub hangs: usize,
    /// Runs with other problems.
    pub problem_runs: usize,
    /// Runs that ended in a clean bail-out.
    pub bail_outs: usize,
    /// Lies per kind.
    pub by_kind: BTreeMap<LieKind, usize>,
}

impl FuzzTotals {
    /// Adds one run.
    pub fn add(&mut self, v: &HostileVerdict) {
        self.runs += 1;
        self.answers += v.answers;
        self.eligible += v.eligible;
        self.lies += v.lies;
        self.caught += v.caught;
        self.missed += v.missed.len();
        self.false_alarms += v.false_alarms.len();
        self.crashes += usize::from(v.crashed());
        self.hangs += usize::from(v.hung());
        self.problem_runs += usize::from(!v.problems.is_empty());
        self.bail_outs += usize::from(matches!(v.end, End::CleanBailOut(_)));
        for (k, n) in &v.by_kind {
            *self.by_kind.entry(*k).or_insert(0) += n;
        }
    }

    /// Whether every run was judged correct.
    pub fn passed(&self) -> bool {
        self.missed == 0
            && self.false_alarms == 0
            && self.crashes == 0
            && self.hangs == 0
            && self.problem_runs == 0
    }

    /// The totals block.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "runs:            {}", self.runs);
        let _ = writeln!(
            s,
            "answers:         {} ({} eligible for a lie)",
            self.answers, self.eligible
        );
        let _ = writeln!(s, "lies told:       {}", self.lies);
        let _ = writeln!(s, "lies caught:     {}", self.caught);
        let _ = writeln!(s, "lies missed:     {}", self.missed);
        let _ = writeln!(s, "false alarms:    {}", self.false_alarms);
        let _ = writeln!(s, "crashes:         {}", self.crashes);
        let _ = writeln!(s, "hangs:           {}", self.hangs);
        let _ = writeln!(s, "other problems:  {} runs", self.problem_runs);
        let _ = writeln!(s, "clean bail-outs: {} runs", self.bail_outs);
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(s, "lies by kind:    {}", kinds.join(", "));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CaseReport;
    use vmm::sim::hostile::Lie;

    fn case(suite: &str, name: &str, status: CaseStatus) -> CaseReport {
        CaseReport {
            suite: suite.into(),
            case: name.into(),
            status,
            diagnostics: vec!["diag".into()],
        }
    }

    fn lie(case: &str) -> Lie {
        Lie {
            case: case.into(),
            kind: LieKind::WideValue,
            request: "TDVMCALL IO read port 0xd104 size 1".into(),
            change: "R11 0x41 -> 0x100000041".into(),
        }
    }

    fn summary(cases: Vec<CaseReport>) -> Summary {
        Summary {
            cases,
            ..Summary::default()
        }
    }

    fn log(lies: Vec<Lie>) -> LieLog {
        LieLog {
            answers: 10,
            eligible: 5,
            lies,
        }
    }

    #[test]
    fn lied_cases_must_fail_and_honest_ones_pass() {
        let s = summary(vec![
            case("io", "a", CaseStatus::Failed),
            case("io", "b", CaseStatus::Passed),
            case(
                "io",
                "c",
                CaseStatus::Skipped("not for platform tdx".into()),
            ),
        ]);
        let v = judge(&s, &ExitReason::GuestExit(1), &log(vec![lie("io.a")]), &[]);
        assert!(v.passed(), "{v:?}");
        assert_eq!((v.lies, v.caught), (1, 1));

        let v = judge(&s, &ExitReason::GuestExit(1), &log(vec![lie("io.b")]), &[]);
        assert!(!v.passed());
        assert_eq!(v.missed.len(), 1);
        assert_eq!(v.false_alarms.len(), 1, "io.a failed with no lie: {v:?}");
    }

    #[test]
    fn crashes_hangs_and_leaks_fail_the_run() {
        let s = summary(vec![case("io", "a", CaseStatus::Failed)]);
        let l = log(vec![lie("io.a")]);
        let v = judge(&s, &ExitReason::Shutdown { rip: 1 }, &l, &[]);
        assert!(v.crashed() && !v.passed());
        let v = judge(&s, &ExitReason::Timeout { rip: 1 }, &l, &[]);
        assert!(v.hung() && !v.passed());
        let mut p = s.clone();
        p.bail_out = Some("panic: boom".into());
        assert!(judge(&p, &ExitReason::GuestExit(2), &l, &[]).crashed());
        let v = judge(&s, &ExitReason::GuestExit(1), &l, &["leak".into()]);
        assert!(!v.passed());
    }

    #[test]
    fn a_clean_bail_out_must_happen_in_or_after_a_lied_case() {
        let nr = || CaseStatus::NotRun("bailed".into());
        let mut s = summary(vec![
            case("io", "a", CaseStatus::Passed),
            case("io", "b", nr()),
            case("io", "c", nr()),
        ]);
        s.bail_out = Some("#VE: refused".into());
        let v = judge(&s, &ExitReason::GuestExit(2), &log(vec![lie("io.b")]), &[]);
        assert!(v.passed(), "{v:?}");
        assert_eq!(v.not_reached, 2);
        let v = judge(&s, &ExitReason::GuestExit(2), &log(vec![lie("io.c")]), &[]);
        assert!(!v.passed(), "bail-out in io.b, lie only in io.c");
    }
}
