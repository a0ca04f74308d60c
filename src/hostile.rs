//! The verdict of a run under a hostile host (`--hostile SEED`) and `cvmprobe fuzz-host`.
//!
//! Under a hostile host the guest's own verdict is expected to be FAIL: every lie must be
//! rejected by name. The run is *correct* when
//! - every lie is named by a rejection in its case: a diagnostic whose note
//!   (`protocol::ktap::parse_reject_note`) covers the lie's request number, from a validator
//!   (the answer itself is malformed, refused or out of range) or from a test's expectation
//!   (a well-formed answer with the wrong outcome: the only way to catch `success-garbage`),
//!   counted apart; a lie in a case that failed without naming it is missed; lies in a case a
//!   clean bail-out cut short are counted apart too;
//! - a GHCB rewritten after the guest's one read (harmless) is named by no rejection;
//! - every case it did not lie to still reports what an honest run reports (passed, or
//!   skipped for its platform): a failure there is a false alarm;
//! - the run ends through the guest's exit port: a hang, a triple fault, a KVM error, a
//!   panic or an unexpected exception is a crash, whatever the cases said;
//! - the host found no other problem (a GHCB leak, a malformed log, an open memslot cycle
//!   outside a bail-out).

use crate::report::{CaseStatus, Summary};
use protocol::ktap::RejectedBy;
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
    /// Lies a validator's rejection named (the answer itself was wrong).
    pub caught_by_validator: usize,
    /// Lies a test expectation's rejection named (a well-formed answer, wrong outcome).
    pub caught_by_expectation: usize,
    /// Harmless lies (a GHCB rewritten after the guest read it) that no rejection named, as
    /// it must be.
    pub harmless: usize,
    /// Lies in the case a clean bail-out cut short, not named by the bail-out itself.
    pub cut_by_bail_out: usize,
    /// Lies no rejection named, described.
    pub missed: Vec<String>,
    /// Cases that failed although the host did not lie to them, and rejections of harmless
    /// lies, with their diagnostics.
    pub false_alarms: Vec<String>,
    /// How the run ended.
    pub end: End,
    /// Other problems the host found (GHCB leaks, log problems).
    pub problems: Vec<String>,
    /// Cases not reached after a clean bail-out (not counted against the guest).
    pub not_reached: usize,
}

impl HostileVerdict {
    /// Lies named by a rejection.
    pub fn caught(&self) -> usize {
        self.caught_by_validator + self.caught_by_expectation
    }

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
            "hostile host: {} answers, {} eligible, {} requests, {} lies",
            self.answers, self.eligible, log.requests, self.lies
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
            "hostile verdict: {} (lies {}, caught {}: by a validator {}, by a test's expectation {}; harmless {}, cut by a bail-out {}, missed {}, false alarms {}, crashes {}, hangs {})",
            if self.passed() { "PASS" } else { "FAIL" },
            self.lies,
            self.caught(),
            self.caught_by_validator,
            self.caught_by_expectation,
            self.harmless,
            self.cut_by_bail_out,
            self.missed.len(),
            self.false_alarms.len(),
            u8::from(self.crashed()),
            u8::from(self.hung()),
        );
        s
    }
}

/// The rejection notes of a case's diagnostics (and of the run's bail-out reason when `bail`
/// is given): who rejected which requests.
fn rejections<'a>(diagnostics: &'a [String], bail: Option<&'a str>) -> Vec<(RejectedBy, u64, u64)> {
    diagnostics
        .iter()
        .map(String::as_str)
        .chain(bail)
        .filter_map(protocol::ktap::parse_reject_note)
        .collect()
}

/// Who named request `seq`, if anyone (a validator before an expectation).
fn named_by(rejections: &[(RejectedBy, u64, u64)], seq: u64) -> Option<RejectedBy> {
    rejections
        .iter()
        .filter(|(_, first, last)| (*first..=*last).contains(&seq))
        .map(|(by, _, _)| *by)
        .min()
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
        caught_by_validator: 0,
        caught_by_expectation: 0,
        harmless: 0,
        cut_by_bail_out: 0,
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
        let bail_case = bailed && !bail_case_seen && matches!(c.status, CaseStatus::NotRun(_));
        if bail_case {
            bail_case_seen = true;
        }
        if matches!(c.status, CaseStatus::NotRun(_)) {
            if !bailed {
                // A crash or hang: the end says so; these lies are not counted as caught.
                continue;
            }
            v.not_reached += 1;
            if bail_case && lies.is_empty() && !lied_before(&summary.cases, &by_case, &name) {
                v.false_alarms.push(format!(
                    "the guest bailed out in {name}, to which no lie was told"
                ));
            }
        }
        let rej = rejections(
            &c.diagnostics,
            summary.bail_out.as_deref().filter(|_| bail_case),
        );
        if lies.is_empty() {
            if matches!(c.status, CaseStatus::Failed | CaseStatus::Todo(_)) {
                v.false_alarms.push(format!(
                    "{name} failed with no lie told to it: {}",
                    c.diagnostics.join(" | ")
                ));
            }
            continue;
        }
        for l in lies {
            let named = named_by(&rej, l.seq);
            if !l.kind.must_be_noticed() {
                // Acting on a harmless lie is a double fetch; a rejection whose requests
                // also hold a lie that must be noticed is that lie's (a spurious #VC right
                // after a rewritten answer, or an expectation's window spanning both).
                let own = rej.iter().find(|(_, first, last)| {
                    (*first..=*last).contains(&l.seq)
                        && !lies
                            .iter()
                            .any(|o| o.kind.must_be_noticed() && (*first..=*last).contains(&o.seq))
                });
                match own {
                    Some((by, _, _)) => v.false_alarms.push(format!(
                        "{name}: the {} rejected the answer to request {} after a GHCB rewrite \
                         that came after the guest's one read (a double fetch?): {}",
                        by.name(),
                        l.seq,
                        c.diagnostics.join(" | ")
                    )),
                    None => v.harmless += 1,
                }
                continue;
            }
            match named {
                Some(RejectedBy::Validator) => v.caught_by_validator += 1,
                Some(RejectedBy::Expectation) => v.caught_by_expectation += 1,
                None if matches!(c.status, CaseStatus::NotRun(_)) => v.cut_by_bail_out += 1,
                None if c.status == CaseStatus::Passed => {
                    v.missed.push(format!("{l} (the case passed)"));
                }
                None => v.missed.push(format!(
                    "{l} (the case failed, but no rejection names request {}: {})",
                    l.seq,
                    c.diagnostics.join(" | ")
                )),
            }
        }
        // A failure in a lied-to case that names no lie is the lies' consequence (a refused
        // write leaves the device unset for the next read): not a false alarm.
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
    /// `--phys-bits`: the vCPU's physical-address width (`None`: the host's).
    pub phys_bits: Option<u8>,
    /// `--kvm`: the KVM release the simulated platforms answer as (`None`: current, not
    /// named on the guest's command line).
    pub kvm: Option<protocol::kvm::KvmProfile>,
}

impl FuzzPlan {
    /// `200 runs on tdx-sim and sev-es-sim, seeds 7.., lie rate 0.05, 2 at a time`.
    pub fn describe(&self) -> String {
        let mut s = format!(
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
        );
        if let Some(b) = self.phys_bits {
            s += &format!(", {b}-bit vCPU");
        }
        if let Some(k) = self.kvm {
            s += &format!(", answers of KVM {}", k.name());
        }
        s
    }

    /// The command that reproduces run `i` alone.
    pub fn reproduce(&self, i: u64) -> String {
        let platform = self.platform(i);
        let mut line = format!(
            "cvmprobe run --platform {} --hostile {} --lie-rate {}",
            vmm::sim_name(platform),
            self.first_seed.wrapping_add(i),
            self.lie_rate,
        );
        if !self.filter.is_empty() {
            line += &format!(" --filter {}", self.filter);
        }
        if let Some(b) = self.phys_bits {
            line += &format!(" --phys-bits {b}");
        }
        if let Some(k) = self.kvm {
            line += &format!(" --kvm {}", k.name());
        }
        for t in &self.append {
            line += &format!(" --append {t}");
        }
        line
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
                        filter: plan.filter.clone(),
                        extra_cmdline: plan.append.clone(),
                        timeout: plan.timeout,
                        phys_bits: plan.phys_bits,
                        kvm: plan.kvm.unwrap_or(protocol::kvm::KvmProfile::Current),
                        ..crate::run::RunRequest::new(platform)
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
    /// Lies a validator named.
    pub caught_by_validator: usize,
    /// Lies a test's expectation named.
    pub caught_by_expectation: usize,
    /// Harmless lies rightly not acted on.
    pub harmless: usize,
    /// Lies in cases a clean bail-out cut short.
    pub cut_by_bail_out: usize,
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
        self.caught_by_validator += v.caught_by_validator;
        self.caught_by_expectation += v.caught_by_expectation;
        self.harmless += v.harmless;
        self.cut_by_bail_out += v.cut_by_bail_out;
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
        let _ = writeln!(
            s,
            "lies caught:     {} (by a validator {}, by a test's expectation {})",
            self.caught_by_validator + self.caught_by_expectation,
            self.caught_by_validator,
            self.caught_by_expectation
        );
        let _ = writeln!(
            s,
            "harmless lies:   {} (GHCB rewritten after the one read: rightly not acted on)",
            self.harmless
        );
        let _ = writeln!(s, "cut by bail-out: {}", self.cut_by_bail_out);
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

    fn case(suite: &str, name: &str, status: CaseStatus, diags: &[&str]) -> CaseReport {
        CaseReport {
            suite: suite.into(),
            case: name.into(),
            status,
            diagnostics: diags.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn lie(case: &str, seq: u64, kind: LieKind) -> Lie {
        Lie {
            case: case.into(),
            seq,
            kind,
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
            requests: 100,
            lies,
        }
    }

    const VALIDATOR_12: &str =
        "a: host error: TDVMCALL IO read refused with status 0x1 [validator rejects request 12]";
    const EXPECT_10_13: &str =
        "a: lane: expected 0x41 got 0x0 [expectation rejects requests 10-13]";

    #[test]
    fn a_lie_counts_as_caught_only_when_a_rejection_names_its_request() {
        let wide = LieKind::WideValue;
        let s = summary(vec![
            case("io", "a", CaseStatus::Failed, &[VALIDATOR_12, EXPECT_10_13]),
            case("io", "b", CaseStatus::Passed, &[]),
            case(
                "io",
                "c",
                CaseStatus::Skipped("not for platform tdx".into()),
                &[],
            ),
        ]);
        let v = judge(
            &s,
            &ExitReason::GuestExit(1),
            &log(vec![lie("io.a", 12, wide)]),
            &[],
        );
        assert!(v.passed(), "{v:?}");
        assert_eq!((v.caught_by_validator, v.caught_by_expectation), (1, 0));
        // Named only by the expectation's window: caught by the expectation.
        let v = judge(
            &s,
            &ExitReason::GuestExit(1),
            &log(vec![lie("io.a", 11, wide)]),
            &[],
        );
        assert!(v.passed(), "{v:?}");
        assert_eq!((v.caught_by_validator, v.caught_by_expectation), (0, 1));
        // The case failed, but nothing names request 20: missed, however it failed.
        let v = judge(
            &s,
            &ExitReason::GuestExit(1),
            &log(vec![lie("io.a", 20, wide)]),
            &[],
        );
        assert!(!v.passed());
        assert_eq!(v.missed.len(), 1, "{v:?}");
        assert!(
            v.missed[0].contains("no rejection names request 20"),
            "{v:?}"
        );
        // A lie in a passing case is missed; a failing case with no lie is a false alarm.
        let v = judge(
            &s,
            &ExitReason::GuestExit(1),
            &log(vec![lie("io.b", 5, wide)]),
            &[],
        );
        assert_eq!(v.missed.len(), 1);
        assert_eq!(v.false_alarms.len(), 1, "io.a failed with no lie: {v:?}");
    }

    #[test]
    fn a_harmless_lie_must_not_be_named() {
        let s = summary(vec![case("cpuid", "a", CaseStatus::Passed, &[])]);
        let l = log(vec![lie("cpuid.a", 12, LieKind::GhcbRewrite)]);
        let v = judge(&s, &ExitReason::GuestExit(0), &l, &[]);
        assert!(v.passed() && v.harmless == 1, "{v:?}");
        let s = summary(vec![case(
            "cpuid",
            "a",
            CaseStatus::Failed,
            &[VALIDATOR_12],
        )]);
        let v = judge(&s, &ExitReason::GuestExit(1), &l, &[]);
        assert!(!v.passed(), "{v:?}");
        assert!(v.false_alarms[0].contains("double fetch"), "{v:?}");
        // The same rejection also names a lie that must be noticed: it is that lie's.
        let mut both = l.clone();
        both.lies.push(lie("cpuid.a", 12, LieKind::SpuriousEvent));
        let v = judge(&s, &ExitReason::GuestExit(1), &both, &[]);
        assert!(v.passed(), "{v:?}");
        assert_eq!((v.harmless, v.caught_by_validator), (1, 1), "{v:?}");
    }

    #[test]
    fn crashes_hangs_and_leaks_fail_the_run() {
        let s = summary(vec![case("io", "a", CaseStatus::Failed, &[VALIDATOR_12])]);
        let l = log(vec![lie("io.a", 12, LieKind::WideValue)]);
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
            case("io", "a", CaseStatus::Passed, &[]),
            case("io", "b", nr(), &[]),
            case("io", "c", nr(), &[]),
        ]);
        s.bail_out = Some("#VE: refused (0x0) at rip=0x1 [validator rejects requests 7-8]".into());
        let spurious = LieKind::SpuriousEvent;
        let v = judge(
            &s,
            &ExitReason::GuestExit(2),
            &log(vec![lie("io.b", 7, spurious)]),
            &[],
        );
        assert!(v.passed(), "{v:?}");
        assert_eq!((v.not_reached, v.caught_by_validator), (2, 1));
        let v = judge(
            &s,
            &ExitReason::GuestExit(2),
            &log(vec![lie("io.b", 3, spurious)]),
            &[],
        );
        assert!(v.passed(), "{v:?}");
        assert_eq!(v.cut_by_bail_out, 1, "{v:?}");
        let v = judge(
            &s,
            &ExitReason::GuestExit(2),
            &log(vec![lie("io.c", 9, spurious)]),
            &[],
        );
        assert!(!v.passed(), "bail-out in io.b, lie only in io.c");
    }
}
