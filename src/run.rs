//! One run of the guest: build its command line, boot it, follow its KTAP output live, and
//! turn what it printed plus how it ended into a [`Summary`].

use crate::environment::Environment;
use crate::ktap::{self, LineClassifier, LineEvent};
use crate::qemu::{self, QemuConfig, QemuEnd};
use crate::report::{self, Summary};
use indicatif::{ProgressBar, ProgressStyle};
use protocol::catalog::{self, Filter};
use protocol::cmdline;
use protocol::exit::GuestExit;
use protocol::platform::PlatformKind;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// What to run, independent of where.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// Platform the guest should find (and the catalog's skip list).
    pub platform: PlatformKind,
    /// `cvmprobe.filter=` value (validated), empty for all.
    pub filter: String,
    /// Extra kernel command-line tokens (`cvmprobe.inject=panic`, ...).
    pub extra_cmdline: Vec<String>,
    /// Hang limit.
    pub timeout: Duration,
    /// Copy serial output to stdout as it arrives.
    pub verbose: bool,
    /// Show a progress bar on stderr (hidden automatically when stderr is not a terminal).
    pub progress: bool,
    /// Built-in VMM: the vCPU's physical-address width (`None`: the host's), see
    /// `vmm::VmConfig::phys_bits`.
    pub phys_bits: Option<u8>,
    /// `vmm::VmConfig::kvm`.
    pub kvm: protocol::kvm::KvmProfile,
    /// Built-in VMM: how the kernel starts (PVH, or the rebuilt UEFI hand-off).
    pub builtin_boot: vmm::Boot,
}

impl RunRequest {
    /// The default hang limit (`run --timeout`).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    /// A request for `platform` with the defaults: every case, no extra tokens, the default
    /// timeout, quiet, the host's vCPU width, the current KVM's answers, PVH boot. Callers
    /// change what they need (`RunRequest { filter, ..RunRequest::new(p) }`).
    pub fn new(platform: PlatformKind) -> Self {
        Self {
            platform,
            filter: String::new(),
            extra_cmdline: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
            verbose: false,
            progress: false,
            phys_bits: None,
            kvm: protocol::kvm::KvmProfile::Current,
            builtin_boot: vmm::Boot::Pvh,
        }
    }
}

/// Everything a run produced.
#[derive(Debug)]
pub struct RunResult {
    /// The verdict.
    pub summary: Summary,
    /// The guest's serial output.
    pub serial: String,
    /// The guest's exit-port verdict, if it reached the port.
    pub guest_exit: Option<GuestExit>,
    /// QEMU stopped on a KVM internal error: QEMU's line. The run failed with it; only an
    /// explicit `--tcg-fallback` reruns under TCG.
    pub kvm_internal_error: Option<String>,
}

/// A fresh per-run token (hex), used for host-chosen values the guest must read back.
pub fn run_token() -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// The CPUID brand string the host chooses for a run, and its command-line form.
pub fn brand_for(token: u32) -> (String, String) {
    let brand = format!("cvmprobe run {token:08x}");
    let key = format!("{}={}", cmdline::KEY_BRAND, brand.replace(' ', "_"));
    (brand, key)
}

/// The kernel command line for a request (without the brand key): the platform the host set
/// up, the filter, and any extra tokens.
pub fn kernel_cmdline(req: &RunRequest) -> String {
    let mut parts = vec![format!("{}={}", cmdline::KEY_PLATFORM, req.platform.name())];
    if !req.filter.is_empty() {
        parts.push(format!("{}={}", cmdline::KEY_FILTER, req.filter));
    }
    parts.extend(req.extra_cmdline.iter().cloned());
    parts.join(" ")
}

/// The cases a request must report in `env`, in order, with what each must report.
pub fn expected(
    req: &RunRequest,
    env: &Environment,
) -> Vec<(&'static str, &'static str, catalog::Expected)> {
    let filter = Filter::parse(&req.filter).unwrap_or(Filter::ALL);
    catalog::planned(req.platform, env.needs(), filter)
        .map(|(s, c, e)| (s.name, c.name, e))
        .collect()
}

/// How many cases a request must report.
pub fn case_count(req: &RunRequest) -> usize {
    let filter = Filter::parse(&req.filter).unwrap_or(Filter::ALL);
    catalog::planned(req.platform, catalog::Needs::ALL, filter).count()
}

/// Follows serial lines for the progress bar and verbose passthrough.
pub struct Progress {
    bar: ProgressBar,
    classifier: LineClassifier,
    suite: String,
    verbose: bool,
}

impl Progress {
    /// A progress display for `total` cases.
    pub fn new(total: usize, show: bool, verbose: bool) -> Self {
        let bar = if show {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        } else {
            ProgressBar::hidden()
        };
        Self {
            bar,
            classifier: LineClassifier::new(),
            suite: String::new(),
            verbose,
        }
    }

    /// Feeds one serial line.
    pub fn line(&mut self, line: &str) {
        if self.verbose {
            self.bar.suspend(|| println!("{line}"));
        }
        match self.classifier.classify(line) {
            LineEvent::Subtest { depth: 1, name } => self.suite = name.to_string(),
            LineEvent::Result {
                depth: 1, name, ok, ..
            } => {
                self.bar.inc(1);
                let mark = if ok { "" } else { " (failed)" };
                self.bar
                    .set_message(format!("{}.{}{}", self.suite, name, mark));
            }
            LineEvent::BailOut(why) => self.bar.set_message(format!("bail out: {why}")),
            _ => {}
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Turns a finished run's output into the summary: what the guest printed, judged against
/// what the catalog expects in `env` (the environment the runner set up).
pub fn summarize(
    req: &RunRequest,
    env: &Environment,
    serial: &str,
    guest_exit: Option<GuestExit>,
    abnormal_end: Option<String>,
) -> Summary {
    // A guest that died mid-line leaves a half-written last line (`ok 3 u8_la`), which would
    // parse as a result: only complete lines count.
    let complete = match serial.rfind('\n') {
        Some(i) if i + 1 < serial.len() => &serial[..=i],
        Some(_) => serial,
        None => "",
    };
    let doc = ktap::parse(complete);
    let end_reason = match (&abnormal_end, &doc.bail_out) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(b)) => Some(format!("the guest bailed out: {}", b.reason)),
        (None, None) => Some("the guest exited without reporting it".to_string()),
    };
    let exp = expected(req, env);
    let mut s = Summary::from_run(&doc, exp.iter().copied(), env, end_reason.as_deref());
    if let Some(e) = &abnormal_end {
        s.problems.push(e.clone());
    }
    match guest_exit {
        Some(GuestExit::Pass) if s.counts().failed > 0 => {
            s.problems
                .push("the guest wrote PASS to the exit port although cases failed".into());
        }
        Some(GuestExit::Fail) if s.counts().failed == 0 && s.bail_out.is_none() => {
            s.problems
                .push("the guest wrote FAIL to the exit port although no case failed".into());
        }
        Some(GuestExit::Other(v)) => {
            s.problems.push(format!(
                "the guest wrote an unknown value {v:#x} to the exit port"
            ));
        }
        _ => {}
    }
    if abnormal_end.is_some() || s.bail_out.is_some() || !s.problems.is_empty() {
        s.serial_tail = report::tail(serial, report::SERIAL_TAIL_LINES);
    }
    s
}

/// Fills the run-specific parts of a QEMU configuration: the kernel command line, the brand
/// string chosen for this run, and for disk images a private copy carrying that command line
/// (and of the OVMF variable store) in `workdir`.
pub fn prepare_qemu(
    req: &RunRequest,
    mut cfg: QemuConfig,
    boot: qemu::Boot,
    ovmf: Option<&std::path::Path>,
    workdir: &std::path::Path,
) -> Result<QemuConfig, crate::images::ImageError> {
    let (brand, brand_key) = brand_for(run_token());
    let mut c = kernel_cmdline(req);
    if !c.is_empty() {
        c.push(' ');
    }
    c.push_str(&brand_key);
    match boot {
        qemu::Boot::Pvh => {}
        qemu::Boot::Bios => {
            let disk = workdir.join("cvmprobe-bios.img");
            crate::images::patched_copy(&crate::images::template()?, &c, &disk)?;
            cfg.media = qemu::Media::Bios { disk };
        }
        qemu::Boot::Efi | qemu::Boot::Esp => {
            let (code, vars) = crate::images::ovmf(ovmf, workdir)?;
            let app = crate::efi_images::app()?;
            let esp = if boot == qemu::Boot::Esp {
                let disk = workdir.join("cvmprobe-esp.img");
                crate::efi_images::esp_image(&app, &c, &disk)?;
                Some(disk)
            } else {
                None
            };
            cfg.media = qemu::Media::Efi {
                app,
                esp,
                code,
                vars,
            };
        }
        qemu::Boot::EfiHandoff => return Err(crate::images::ImageError::NotQemu(boot.name())),
    }
    cfg.cmdline = c;
    cfg.brand = brand;
    Ok(cfg)
}

/// Runs the request under QEMU with a configuration from [`prepare_qemu`].
pub fn run_qemu(req: &RunRequest, cfg: &QemuConfig) -> Result<RunResult, qemu::QemuError> {
    let env = cfg.environment(req.platform);
    let total = case_count(req);
    let mut progress = Progress::new(total, req.progress, req.verbose);
    let r = qemu::run(cfg, req.timeout, |l| progress.line(l));
    progress.finish();
    let r = r?;
    let kvm_internal_error = match &r.end {
        QemuEnd::KvmInternalError(line) => Some(line.clone()),
        _ => None,
    };
    let (guest_exit, abnormal) = match r.end {
        QemuEnd::KvmInternalError(line) => (
            None,
            Some(format!("QEMU stopped the VM on a KVM internal error ({line}); QEMU was killed")),
        ),
        QemuEnd::TimedOut(d) => (None, Some(format!("hang: no verdict within the {:.1} s timeout (QEMU killed)", d.as_secs_f64()))),
        QemuEnd::Exited(status) => match status.code() {
            Some(code) => match GuestExit::from_qemu_status(code) {
                Some(g) => (Some(g), None),
                None if code == 0 => (
                    None,
                    Some("QEMU exited with status 0 before the guest wrote a verdict: the guest shut down or triple-faulted (-no-reboot)".to_string()),
                ),
                None => (None, Some(format!("QEMU exited with status {code} before the guest wrote a verdict"))),
            },
            None => (None, Some(format!("QEMU was killed by a signal ({status})"))),
        },
    };
    let mut abnormal = abnormal;
    let saw_ktap = r.serial.contains(protocol::ktap::VERSION_LINE);
    if !saw_ktap {
        // Status 1 is also QEMU's own failure status: without any KTAP the guest never ran.
        let stderr = r.stderr.trim();
        let why = if stderr.is_empty() {
            "the guest printed nothing (no KTAP output)".to_string()
        } else {
            format!("the guest printed nothing; QEMU said: {stderr}")
        };
        abnormal = Some(match abnormal {
            Some(a) => format!("{a}; {why}"),
            None => why,
        });
    }
    let guest_exit = if saw_ktap { guest_exit } else { None };
    let mut summary = summarize(req, &env, &r.serial, guest_exit, abnormal);
    let boot = match cfg.media {
        qemu::Media::Pvh { .. } => "pvh",
        qemu::Media::Bios { .. } => "bios",
        qemu::Media::Efi { esp: None, .. } => "efi",
        qemu::Media::Efi { esp: Some(_), .. } => "esp",
        qemu::Media::Raw { .. } => "confidential",
    };
    summary.environment = format!("qemu {}/{}, {boot}", cfg.machine.name(), cfg.accel.name());
    summary.wall = Some(r.wall);
    Ok(RunResult {
        summary,
        serial: r.serial,
        guest_exit,
        kvm_internal_error,
    })
}

/// Runs the request under the built-in VMM.
pub fn run_builtin(req: &RunRequest, kernel: &std::path::Path) -> Result<RunResult, vmm::VmmError> {
    run_builtin_with(req, kernel, None).map(|(r, _)| r)
}

/// Runs the request under the built-in VMM, with a hostile host if `hostile` says so; also
/// returns the VMM's report (the lie log, the GHCB leaks, the exit reason).
pub fn run_builtin_with(
    req: &RunRequest,
    kernel: &std::path::Path,
    hostile: Option<vmm::sim::hostile::HostileConfig>,
) -> Result<(RunResult, vmm::RunReport), vmm::VmmError> {
    let cfg = vmm::VmConfig {
        kernel: kernel.to_path_buf(),
        cmdline: kernel_cmdline(req),
        mem_mib: vmm::DEFAULT_MEM_MIB,
        timeout: req.timeout,
        seed: None,
        platform: req.platform,
        hostile,
        phys_bits: req.phys_bits,
        kvm: req.kvm,
        boot: req.builtin_boot,
    };
    let env = Environment::builtin(req.platform, req.builtin_boot);
    let total = case_count(req);
    let mut progress = Progress::new(total, req.progress, req.verbose);
    let mut pending = Vec::new();
    let r = vmm::run(&cfg, &mut |bytes: &[u8]| {
        pending.extend_from_slice(bytes);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            progress.line(String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']));
        }
    });
    progress.finish();
    let report = r?;
    let serial = String::from_utf8_lossy(&report.serial).into_owned();
    let (guest_exit, abnormal) = match &report.exit {
        vmm::ExitReason::GuestExit(v) => (Some(GuestExit::from_port_value(*v)), None),
        vmm::ExitReason::Timeout { rip } => (
            None,
            Some(format!(
                "hang: no verdict within the {:.1} s timeout (vCPU stopped at RIP {rip:#x})",
                req.timeout.as_secs_f64()
            )),
        ),
        other => (None, Some(format!("the VM ended abnormally: {other}"))),
    };
    let mut summary = summarize(req, &env, &serial, guest_exit, abnormal);
    merge_host_checks(&mut summary, &report);
    summary.environment = format!(
        "built-in VMM, {}, {}-bit vCPU",
        vmm::sim_name(req.platform),
        report.phys_bits
    );
    if req.platform != PlatformKind::Legacy {
        summary.environment += &format!(", answers of KVM {}", req.kvm.name());
    }
    if req.builtin_boot != vmm::Boot::Pvh {
        summary.environment += &format!(", {}", req.builtin_boot.name());
    }
    if let Some(note) = &report.width_note {
        summary.environment += &format!(" ({note})");
    }
    if let Some(h) = hostile {
        summary.environment += &format!(", hostile host seed {} rate {}", h.seed, h.rate);
    }
    summary.wall = Some(report.wall);
    Ok((
        RunResult {
            summary,
            serial,
            guest_exit,
            kvm_internal_error: None,
        },
        report,
    ))
}

/// The host half of the two-sided verdict: a case passes only when the guest said `ok` and
/// the test device's access log matches what the case declares (`protocol::testdev`).
pub fn merge_host_checks(summary: &mut Summary, report: &vmm::RunReport) {
    use crate::report::CaseStatus;
    for c in &report.case_checks {
        if let Err(why) = &c.result {
            summary.fail_case(c.suite, c.case, format!("access log: {why}"));
        }
    }
    // A case that said `ok` (not skipped) but made none of the accesses it declares did not
    // test what it claims.
    for k in &mut summary.cases {
        if k.status != CaseStatus::Passed {
            continue;
        }
        let declared = protocol::testdev::declared(&k.suite, &k.case).len();
        let made = report
            .case_check(&k.suite, &k.case)
            .map_or(0, |c| c.accesses);
        if declared > 0 && made == 0 {
            k.status = CaseStatus::Failed;
            k.diagnostics.push(format!(
                "host: access log: the case reported ok but made none of its {declared} declared device accesses"
            ));
        }
        // The data check needs the case's own account of the values (REPORT): a case that
        // says ok without it went unchecked.
        if made > 0
            && report
                .case_check(&k.suite, &k.case)
                .is_some_and(|c| c.reported == 0)
        {
            k.status = CaseStatus::Failed;
            k.diagnostics.push(format!(
                "host: access log: data: the case made {made} device accesses but reported none \
                 of their values (protocol::testdev::mmio::REPORT)"
            ));
        }
    }
    for c in &report.host_case_checks {
        if let Err(why) = &c.result {
            summary.fail_case(c.suite, c.case, why.clone());
        }
    }
    for p in &report.host_problems {
        summary.problems.push(format!("host: {p}"));
    }
    for l in &report.ghcb_leaks {
        summary
            .problems
            .push(format!("{}: {l}", crate::hostile::LEAK_PREFIX));
    }
    if report.testdev_log_dropped > 0 {
        summary.problems.push(format!(
            "host: the test device's log overflowed ({} accesses not recorded)",
            report.testdev_log_dropped
        ));
    }
}
