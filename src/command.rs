//! What each subcommand does, one function each; `main.rs` only parses the arguments and calls
//! them. `run` is split into a pure decision ([`plan_run`]: which VMM, which platforms, what to
//! say about the choice) and its execution, so the decisions are unit-tested without KVM.

use crate::cli::{
    BenchArgs, FuzzHostArgs, ListArgs, ParseArgs, PlatformArg, RunArgs, SelftestArgs, VmmArg,
};
use crate::qemu::{self, Accel, Boot, Machine, QemuConfig};
use crate::report::{self, Summary};
use crate::run::{self, RunRequest};
use crate::{junit, ktap};
use clap::ValueEnum;
use protocol::catalog::{self, Filter};
use protocol::platform::PlatformKind;
use std::io::{IsTerminal, Read};
use std::path::Path;

/// Why a command could not be carried out (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A flag, or a combination of flags, that cannot be run.
    #[error("{0}")]
    Usage(String),
    /// Something failed while doing `what`.
    #[error("{what}")]
    Context {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The built-in VMM could not run the guest.
    #[error(transparent)]
    Vmm(#[from] vmm::VmmError),
    /// QEMU could not be run.
    #[error(transparent)]
    Qemu(#[from] qemu::QemuError),
    /// A disk image or OVMF could not be prepared.
    #[error(transparent)]
    Image(#[from] crate::images::ImageError),
    /// The host lacks what the run needs (`--confidential` on a host that cannot start such
    /// a guest), named piece by piece.
    #[error("{0}")]
    Host(String),
}

impl CommandError {
    fn context(what: impl Into<String>, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Context {
            what: what.into(),
            source: Box::new(e),
        }
    }
}

fn usage(msg: impl Into<String>) -> CommandError {
    CommandError::Usage(msg.into())
}

/// The guest kernel ELF the build script made.
pub fn kernel_elf() -> Result<&'static Path, CommandError> {
    let kernel = Path::new(env!("CVMPROBE_KERNEL_ELF"));
    if !kernel.exists() {
        return Err(usage(format!(
            "the kernel ELF {} is missing: run `cargo build` to rebuild it",
            kernel.display()
        )));
    }
    Ok(kernel)
}

/// Checks a `--filter` value against the catalog.
pub fn check_filter(f: &str) -> Result<(), CommandError> {
    use protocol::catalog::FilterError::*;
    Filter::parse(f).map(|_| ()).map_err(|e| {
        usage(match e {
            BadCharacter(p) => format!("--filter: `{p}` has a character outside [a-z0-9_.*-]"),
            TooManyDots(p) => {
                format!("--filter: `{p}` has more than one `.` (use suite or suite.case)")
            }
            MatchesNothing(p) => format!("--filter: `{p}` selects no case (see `cvmprobe list`)"),
        })
    })
}

fn check_append(append: &[String]) -> Result<(), CommandError> {
    match append.iter().find(|t| t.split_whitespace().count() != 1) {
        Some(t) => Err(usage(format!(
            "--append `{t}`: one KEY=VALUE token without spaces, please"
        ))),
        None => Ok(()),
    }
}

/// Who runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    /// The built-in KVM VMM, starting the kernel by `boot` (`--boot pvh|efi-handoff`).
    Builtin {
        /// PVH, or the rebuilt UEFI hand-off.
        boot: vmm::Boot,
    },
    /// QEMU booting `cvmprobe.efi` as a real TD or SEV-ES guest on a confidential host
    /// (`--confidential`), with QEMU's documented command line.
    Confidential(crate::confidential::Confidential),
    /// QEMU.
    Qemu {
        /// Machine model.
        machine: Machine,
        /// Accelerator.
        accel: Accel,
        /// Boot path.
        boot: Boot,
        /// Rerun under TCG after a KVM internal error (`--tcg-fallback`).
        tcg_fallback: bool,
    },
}

/// What the host machine offers, probed once ([`Host::probe`]) and passed to [`plan_run`].
#[derive(Clone, Debug)]
pub struct Host {
    /// Whether the built-in VMM can run (`/dev/kvm` opens and answers), or why not.
    pub builtin: Result<(), String>,
    /// Whether QEMU can use `-accel kvm` (`/dev/kvm` opens read-write).
    pub qemu_kvm: bool,
}

impl Host {
    /// Probes `/dev/kvm` (once when the built-in VMM can use it: QEMU then can too).
    pub fn probe() -> Self {
        let builtin = vmm::kvm_available().map_err(|e| e.to_string());
        let qemu_kvm = builtin.is_ok() || qemu::kvm_usable();
        Self { builtin, qemu_kvm }
    }
}

/// A `run` with its decisions made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunPlan {
    /// Who runs the guest.
    pub runner: Runner,
    /// The platforms to run, in order.
    pub platforms: Vec<PlatformKind>,
    /// What the plan chose on its own, to say on stderr (`no /dev/kvm: ...`).
    pub notes: Vec<String>,
}

fn platform_arg_name(p: PlatformArg) -> String {
    p.to_possible_value()
        .map_or("?".into(), |v| v.get_name().to_string())
}

/// Decides who runs the guest and on which platforms: the default is every platform the host
/// can run (the built-in VMM's legacy, tdx-sim and sev-es-sim with /dev/kvm; QEMU's legacy
/// without it, or when QEMU options are given), and what was chosen without being asked is
/// said in [`RunPlan::notes`].
pub fn plan_run(a: &RunArgs, host: &Host) -> Result<RunPlan, CommandError> {
    check_filter(&a.filter)?;
    check_append(&a.append)?;
    if let Some(kind) = a.confidential {
        return plan_confidential(a, kind);
    }
    let mut notes = Vec::new();
    let qemu_flags =
        a.machine.is_some() || a.accel.is_some() || a.boot.needs_qemu() || a.tcg_fallback;
    let asked: Option<Vec<PlatformKind>> = a.platform.map(PlatformArg::kinds);
    let simulated_asked = asked
        .as_ref()
        .is_some_and(|p| p.iter().any(|k| *k != PlatformKind::Legacy));
    if a.hostile.is_some()
        && asked
            .as_ref()
            .is_some_and(|p| p.contains(&PlatformKind::Legacy))
    {
        return Err(usage(
            "--hostile needs --platform tdx-sim or sev-es-sim: on a legacy VM the CPU itself \
             answers, there is no host answer to falsify",
        ));
    }
    if let Some(k) = a.kvm
        && !k.has_tdx()
        && asked
            .as_ref()
            .is_some_and(|p| p.contains(&PlatformKind::Tdx))
    {
        return Err(usage(format!(
            "--kvm {}: that KVM has no TDX host support (it landed in v6.16): use --platform \
             legacy or sev-es-sim, or --kvm 6.16 or current",
            k.name()
        )));
    }
    if simulated_asked && (qemu_flags || a.vmm == Some(VmmArg::Qemu)) {
        return Err(usage(format!(
            "--platform {}: the simulated TDX and SEV-ES hosts live in the built-in VMM; QEMU \
             (--vmm qemu, --machine, --accel, --boot bios|efi|esp, --tcg-fallback) runs the \
             legacy platform only (--boot efi-handoff runs the built-in VMM's UEFI hand-off on \
             any platform)",
            a.platform.map_or("?".into(), platform_arg_name)
        )));
    }
    // Options only the built-in VMM has: asking for one picks it, as QEMU's options pick QEMU.
    let builtin_flags = a.boot == Boot::EfiHandoff || a.kvm.is_some() || a.phys_bits.is_some();
    let builtin = match a.vmm {
        Some(VmmArg::Builtin) => {
            if qemu_flags {
                return Err(usage(
                    "--machine, --accel, --boot bios|efi|esp and --tcg-fallback are QEMU \
                     options: drop them, or use --vmm qemu",
                ));
            }
            true
        }
        Some(VmmArg::Qemu) => false,
        None if qemu_flags => false,
        None if simulated_asked || a.hostile.is_some() || builtin_flags => {
            if let Err(e) = &host.builtin {
                return Err(usage(format!(
                    "{} the built-in VMM, which needs /dev/kvm: {e}",
                    if simulated_asked {
                        "the simulated platforms need"
                    } else if a.hostile.is_some() {
                        "--hostile needs"
                    } else {
                        "--boot efi-handoff, --kvm and --phys-bits need"
                    }
                )));
            }
            true
        }
        None => match &host.builtin {
            Ok(()) => true,
            Err(e) => {
                notes.push(format!(
                    "the built-in VMM cannot run ({e}): using QEMU instead, which runs the \
                     legacy platform only (tdx-sim and sev-es-sim need the built-in VMM on KVM)"
                ));
                false
            }
        },
    };
    if !builtin {
        if a.boot == Boot::EfiHandoff {
            return Err(usage(
                "--boot efi-handoff is the built-in VMM's rebuild of the firmware's hand-off; \
                 under QEMU use --boot efi or --boot esp (cvmprobe.efi through OVMF)",
            ));
        }
        if a.hostile.is_some() {
            return Err(usage("--hostile needs the built-in VMM (drop --vmm qemu)"));
        }
        if a.kvm.is_some() {
            return Err(usage(
                "--kvm picks the answers of the built-in VMM's simulated platforms: drop --vmm \
                 qemu (on a real host, --append cvmprobe.kvm=PROFILE tells the guest what to \
                 expect)",
            ));
        }
        if a.phys_bits.is_some() {
            return Err(usage(
                "--phys-bits sets the built-in VMM's vCPU width; QEMU takes its own \
                 (-cpu ...,phys-bits=N): drop --vmm qemu, or the option",
            ));
        }
    }
    let defaulted = asked.is_none();
    let platforms = match asked {
        Some(p) => p,
        None if a.hostile.is_some() => vec![PlatformKind::Tdx, PlatformKind::SevEs],
        None if builtin => PlatformKind::ALL.to_vec(),
        None => vec![PlatformKind::Legacy],
    };
    // The default leaves out what the asked-for KVM cannot run (an explicit --platform with
    // tdx-sim was refused above).
    let platforms = match a.kvm {
        Some(k) if !k.has_tdx() && defaulted => {
            notes.push(format!(
                "--kvm {}: that KVM has no TDX host support (it landed in v6.16): tdx-sim is \
                 left out",
                k.name()
            ));
            platforms
                .into_iter()
                .filter(|p| *p != PlatformKind::Tdx)
                .collect()
        }
        _ => platforms,
    };
    if !builtin && platforms != [PlatformKind::Legacy] {
        return Err(usage(
            "QEMU runs the legacy platform only: use --platform legacy, or the built-in VMM",
        ));
    }
    if builtin {
        return Ok(RunPlan {
            runner: Runner::Builtin {
                boot: match a.boot {
                    Boot::EfiHandoff => vmm::Boot::EfiHandoff(Default::default()),
                    _ => vmm::Boot::Pvh,
                },
            },
            platforms,
            notes,
        });
    }
    let machine = match (a.machine, a.boot) {
        (Some(Machine::Microvm), Boot::Bios | Boot::Efi | Boot::Esp) => {
            return Err(usage(format!(
                "--boot {} needs firmware and a disk: use --machine pc (the default for disk \
                 images)",
                a.boot.name()
            )));
        }
        (Some(m), _) => m,
        (None, Boot::Pvh | Boot::EfiHandoff) => Machine::Microvm,
        (None, _) => Machine::Pc,
    };
    let accel = match a.accel {
        Some(x) => x,
        None if host.qemu_kvm => Accel::Kvm,
        None => {
            notes.push("/dev/kvm cannot be opened: using QEMU's TCG emulator (slower)".into());
            Accel::Tcg
        }
    };
    if a.boot.uses_ovmf() && accel == Accel::Kvm && !a.tcg_fallback {
        notes.push(
            "OVMF may not run under this host's KVM (it does not on software-nested KVM): if \
             QEMU stops on a KVM internal error, use --accel tcg, or --tcg-fallback to rerun \
             under TCG"
                .into(),
        );
    }
    Ok(RunPlan {
        runner: Runner::Qemu {
            machine,
            accel,
            boot: a.boot,
            tcg_fallback: a.tcg_fallback,
        },
        platforms,
        notes,
    })
}

/// `--confidential`: QEMU's documented machine for a real TD or SEV-ES guest, nothing else;
/// the platform is the confidential one (the host is checked when the plan runs).
fn plan_confidential(
    a: &RunArgs,
    kind: crate::confidential::Confidential,
) -> Result<RunPlan, CommandError> {
    if a.vmm == Some(VmmArg::Builtin) {
        return Err(usage(
            "--confidential boots a real TD or SEV-ES guest under QEMU (the built-in VMM only \
             simulates them: --platform tdx-sim|sev-es-sim): drop --vmm builtin",
        ));
    }
    if a.platform.is_some() {
        return Err(usage(format!(
            "--platform selects the built-in VMM's simulated hosts; on a real host the platform \
             is --confidential {}",
            kind.name()
        )));
    }
    if !matches!(a.boot, Boot::Pvh | Boot::Efi) {
        return Err(usage(format!(
            "--confidential always boots cvmprobe.efi with -kernel (QEMU starts confidential \
             guests only through firmware): drop --boot {}",
            a.boot.name()
        )));
    }
    if a.machine.is_some()
        || a.accel.is_some()
        || a.phys_bits.is_some()
        || a.hostile.is_some()
        || a.tcg_fallback
    {
        return Err(usage(
            "--confidential takes QEMU's documented machine (q35, -accel kvm, -cpu host): drop \
             --machine, --accel, --phys-bits, --hostile and --tcg-fallback",
        ));
    }
    if a.kvm.is_some() {
        return Err(usage(
            "--kvm picks the answers of the built-in VMM's simulated platforms; on a real host \
             --append cvmprobe.kvm=PROFILE tells the guest which KVM to expect",
        ));
    }
    Ok(RunPlan {
        runner: Runner::Confidential(kind),
        platforms: vec![kind.platform()],
        notes: Vec::new(),
    })
}

/// `cvmprobe run`.
pub fn run(a: &RunArgs) -> Result<bool, CommandError> {
    let plan = plan_run(a, &Host::probe())?;
    for n in &plan.notes {
        eprintln!("cvmprobe: {n}");
    }
    let kernel = kernel_elf()?;
    let req = RunRequest {
        filter: a.filter.clone(),
        extra_cmdline: a.append.clone(),
        timeout: a.timeout,
        verbose: a.verbose,
        progress: std::io::stderr().is_terminal(),
        phys_bits: a.phys_bits,
        kvm: a.kvm.unwrap_or(protocol::kvm::KvmProfile::Current),
        builtin_boot: match plan.runner {
            Runner::Builtin { boot } => boot,
            _ => vmm::Boot::Pvh,
        },
        ..RunRequest::new(plan.platforms[0])
    };
    if a.verbose {
        print_artifacts(kernel);
    }
    let results = match plan.runner {
        Runner::Confidential(kind) => {
            let Some(summary) = crate::confidential::run(a, kind, &req)? else {
                return Ok(true); // --dry-run: printed, nothing started
            };
            vec![(kind.platform(), summary)]
        }
        Runner::Builtin { .. } => match a.hostile {
            Some(seed) => {
                let cfg = vmm::sim::hostile::HostileConfig {
                    seed,
                    rate: a.lie_rate,
                };
                return run_hostile(&plan, &req, kernel, cfg);
            }
            None => run_builtin(&plan, &req, kernel)?,
        },
        Runner::Qemu { .. } => vec![(
            PlatformKind::Legacy,
            run_qemu(&plan, &req, kernel, a.qemu.clone(), a.ovmf.as_deref())?,
        )],
    };
    finish(&results, a.junit.as_deref(), a.verbose)
}

/// The paths of the kernel and disk images (`--verbose`).
fn print_artifacts(kernel: &Path) {
    let or_none = |p: &str| {
        if p.is_empty() {
            "(not built: images feature off)".to_string()
        } else {
            p.to_string()
        }
    };
    eprintln!("cvmprobe: kernel ELF: {}", kernel.display());
    eprintln!(
        "cvmprobe: BIOS image: {}",
        or_none(crate::images::BIOS_IMAGE)
    );
    eprintln!(
        "cvmprobe: UEFI application: {} (the ESP image is made per run)",
        crate::efi_images::EFI_APP
    );
}

/// One progress line: `[2/3] tdx-sim     PASS  60 passed, 0 failed, 21 skipped  0.67 s`.
pub fn progress_line(i: usize, n: usize, platform: &str, s: &Summary) -> String {
    let c = s.counts();
    let mut line = format!(
        "[{i}/{n}] {platform:<10}  {}  {} passed, {} failed, {} skipped",
        if s.passed() { "PASS" } else { "FAIL" },
        c.passed,
        c.failed,
        c.skipped
    );
    if c.not_run > 0 {
        line += &format!(", {} not run", c.not_run);
    }
    if let Some(w) = s.wall {
        line += &format!("  {:.2} s", w.as_secs_f64());
    }
    line
}

/// Every platform of the plan under the built-in VMM, with a progress line after each.
fn run_builtin(
    plan: &RunPlan,
    req: &RunRequest,
    kernel: &Path,
) -> Result<Vec<(PlatformKind, Summary)>, CommandError> {
    let names: Vec<&str> = plan.platforms.iter().map(|p| vmm::sim_name(*p)).collect();
    eprintln!(
        "cvmprobe: booting {} under the built-in KVM VMM{}, platform{} {} ({} cases each)",
        kernel.display(),
        match req.builtin_boot {
            vmm::Boot::Pvh => String::new(),
            other => format!(" through the {}", other.name()),
        },
        if names.len() > 1 { "s" } else { "" },
        names.join(", "),
        run::case_count(req)
    );
    let mut results = Vec::new();
    for (i, &platform) in plan.platforms.iter().enumerate() {
        let req = RunRequest {
            platform,
            ..req.clone()
        };
        if req.verbose {
            for l in crate::environment::Environment::builtin(platform, req.builtin_boot).describe()
            {
                eprintln!("cvmprobe: {}: {l}", vmm::sim_name(platform));
            }
        }
        let result = run::run_builtin(&req, kernel)?;
        eprintln!(
            "cvmprobe: {}",
            progress_line(
                i + 1,
                plan.platforms.len(),
                vmm::sim_name(platform),
                &result.summary
            )
        );
        results.push((platform, result.summary));
    }
    Ok(results)
}

/// The plan's platforms under a hostile host: each run's summary and its hostile verdict.
fn run_hostile(
    plan: &RunPlan,
    req: &RunRequest,
    kernel: &Path,
    cfg: vmm::sim::hostile::HostileConfig,
) -> Result<bool, CommandError> {
    let color = std::io::stdout().is_terminal();
    let mut ok = true;
    for &platform in &plan.platforms {
        let req = RunRequest {
            platform,
            ..req.clone()
        };
        eprintln!(
            "cvmprobe: booting {} under the built-in KVM VMM, platform {}, hostile host seed {} ({} cases)",
            kernel.display(),
            vmm::sim_name(platform),
            cfg.seed,
            run::case_count(&req)
        );
        let (result, report, verdict) = crate::hostile::run_once(&req, kernel, cfg)?;
        print!("{}", result.summary.render(color, req.verbose));
        print!("{}", verdict.render(&report.lies.unwrap_or_default()));
        ok &= verdict.passed();
    }
    Ok(ok)
}

/// The legacy platform under QEMU. A KVM internal error is the run's result; with
/// `--tcg-fallback` the run is made again under TCG and its verdict says so.
fn run_qemu(
    plan: &RunPlan,
    req: &RunRequest,
    kernel: &Path,
    binary: std::path::PathBuf,
    ovmf: Option<&Path>,
) -> Result<Summary, CommandError> {
    let Runner::Qemu {
        machine,
        accel,
        boot,
        tcg_fallback,
    } = plan.runner
    else {
        return Err(usage("internal: run_qemu without a QEMU plan"));
    };
    let workdir = tempfile::tempdir()
        .map_err(|e| CommandError::context("cannot create a temporary directory for the run", e))?;
    let once = |accel: Accel| -> Result<run::RunResult, CommandError> {
        let base = QemuConfig::new(binary.clone(), machine, accel, kernel, boot);
        let cfg = run::prepare_qemu(req, base, boot, ovmf, workdir.path())?;
        eprintln!(
            "cvmprobe: booting {} under QEMU {} with {} ({} cases)",
            match &cfg.media {
                qemu::Media::Pvh { kernel } => format!("{} (PVH)", kernel.display()),
                qemu::Media::Bios { .. } => format!("the BIOS image {}", crate::images::BIOS_IMAGE),
                qemu::Media::Efi { app, esp: None, .. } =>
                    format!("{} (-kernel, OVMF)", app.display()),
                qemu::Media::Efi { esp: Some(d), .. } =>
                    format!("the ESP image {} (OVMF)", d.display()),
                qemu::Media::Raw { .. } => "the confidential guest".to_string(),
            },
            cfg.machine.name(),
            accel.name(),
            run::case_count(req)
        );
        eprintln!("cvmprobe: {}", cfg.shell_line());
        if req.verbose {
            for l in cfg.environment(req.platform).describe() {
                eprintln!("cvmprobe: legacy: {l}");
            }
        }
        Ok(run::run_qemu(req, &cfg)?)
    };
    let first = once(accel)?;
    let Some(line) = first.kvm_internal_error.clone() else {
        return Ok(first.summary);
    };
    if accel == Accel::Kvm && tcg_fallback {
        eprintln!(
            "cvmprobe: QEMU stopped on a KVM internal error under KVM ({line}); --tcg-fallback: \
             running again under TCG, and the verdict below is TCG's"
        );
        let mut second = once(Accel::Tcg)?.summary;
        second.environment +=
            &format!(", TCG rerun (--tcg-fallback) after a KVM internal error under KVM: {line}");
        return Ok(second);
    }
    eprintln!("cvmprobe: {}", kvm_internal_error_hint(boot, &line));
    Ok(first.summary)
}

/// What to say when QEMU stops on a KVM internal error and nothing reruns it.
pub fn kvm_internal_error_hint(boot: Boot, line: &str) -> String {
    let what = format!("QEMU stopped on a KVM internal error ({line}): the run fails with it");
    if boot.uses_ovmf() {
        format!(
            "{what}. OVMF does not run under this host's KVM: --boot {} needs --accel tcg \
             here (or --tcg-fallback, which reruns under TCG and labels the verdict TCG's)",
            boot.name()
        )
    } else {
        format!(
            "{what} (a KVM failure is a result, not retried). --tcg-fallback reruns under TCG \
             and labels the verdict TCG's"
        )
    }
}

/// Prints the results (one platform: its report; several: one table) and writes the JUnit
/// file; whether every platform passed.
fn finish(
    results: &[(PlatformKind, Summary)],
    junit_path: Option<&Path>,
    verbose: bool,
) -> Result<bool, CommandError> {
    let runs: Vec<(&str, &Summary)> = results
        .iter()
        .map(|(p, s)| (vmm::sim_name(*p), s))
        .collect();
    finish_labeled(&runs, junit_path, verbose)
}

/// [`finish`] for runs with their own labels (`cvmprobe selftest`: the kvm_util VM types).
fn finish_labeled(
    results: &[(&str, &Summary)],
    junit_path: Option<&Path>,
    verbose: bool,
) -> Result<bool, CommandError> {
    let color = std::io::stdout().is_terminal();
    let mut junit_cases = Vec::new();
    if let [(_, summary)] = results {
        print!("{}", summary.render(color, verbose));
        junit_cases = summary.junit_cases();
    } else {
        print!("{}", report::render_all(results, color, verbose));
        for (label, s) in results {
            for mut c in s.junit_cases() {
                c.suite = format!("{label}.{}", c.suite);
                junit_cases.push(c);
            }
        }
    }
    if let Some(p) = junit_path {
        write_junit(p, &junit_cases)?;
    }
    Ok(results.iter().all(|(_, s)| s.passed()))
}

/// `cvmprobe selftest`: builds the KVM selftest against a kernel tree and runs it once per VM
/// type, with `run`'s summary, JUnit and exit code. VM types the host or the tree lacks are
/// reported skipped, with the test's reason.
pub fn selftest(a: &SelftestArgs) -> Result<bool, CommandError> {
    use crate::cli::SelftestPlatform;
    use crate::selftest::{self, SelftestRequest};
    check_filter(&a.filter)?;
    check_append(&a.append)?;
    let work = selftest::work_dir();
    let step = |e: selftest::SelftestError| CommandError::context("cvmprobe selftest", e);
    if a.ksrc.is_none() {
        eprintln!(
            "cvmprobe: kernel tree: {} (unpacked in part under {})",
            crate::tools::KERNEL_TARBALL,
            work.display()
        );
    }
    let _lock = selftest::lock(&work).map_err(step)?;
    let tree = selftest::prepare_tree(a.ksrc.as_deref(), &work).map_err(step)?;
    let lib = Path::new(env!("CVMPROBE_SELFTEST_LIB"));
    let binary = selftest::build(&tree, lib, &work).map_err(step)?;
    eprintln!("cvmprobe: built {}", binary.display());
    let platforms: Vec<PlatformKind> = match a.platform {
        SelftestPlatform::Legacy => vec![PlatformKind::Legacy],
        SelftestPlatform::SevEs => vec![PlatformKind::SevEs],
        SelftestPlatform::Tdx => vec![PlatformKind::Tdx],
        SelftestPlatform::All => selftest::VM_TYPES.iter().map(|(p, _)| *p).collect(),
    };
    let mut results = Vec::new();
    for (i, &platform) in platforms.iter().enumerate() {
        let req = SelftestRequest {
            platform,
            filter: a.filter.clone(),
            append: a.append.clone(),
            seed: a.seed,
            timeout: a.timeout,
            verbose: a.verbose,
        };
        let run = selftest::run(&binary, &req).map_err(step)?;
        let name = selftest::vm_type_name(platform);
        match &run.skipped {
            Some(why) => eprintln!(
                "cvmprobe: [{}/{}] {name:<10}  SKIP  {why}",
                i + 1,
                platforms.len()
            ),
            None => eprintln!(
                "cvmprobe: {}",
                progress_line(i + 1, platforms.len(), name, &run.summary)
            ),
        }
        results.push((name, run.summary));
    }
    let runs: Vec<(&str, &Summary)> = results.iter().map(|(n, s)| (*n, s)).collect();
    finish_labeled(&runs, a.junit.as_deref(), a.verbose)
}

fn write_junit(path: &Path, cases: &[junit::JunitCase]) -> Result<(), CommandError> {
    let mut f = std::fs::File::create(path).map_err(|e| {
        CommandError::context(
            format!("cannot create the JUnit file {}", path.display()),
            e,
        )
    })?;
    junit::write_junit(&mut f, "cvmprobe", cases).map_err(|e| {
        CommandError::context(format!("cannot write the JUnit file {}", path.display()), e)
    })
}

/// `cvmprobe list` (`markdown`: the README's conformance table instead).
pub fn list(a: &ListArgs, markdown: bool) -> Result<bool, CommandError> {
    if markdown {
        print!("{}", protocol::conformance::markdown());
        return Ok(true);
    }
    check_filter(&a.filter)?;
    let f = Filter::parse(&a.filter).unwrap_or(Filter::ALL);
    let mut n = 0;
    let mut suites = 0;
    for s in catalog::SUITES {
        if !f.selects_suite(s) {
            continue;
        }
        suites += 1;
        if !a.names {
            println!("{}: {}", s.name, s.doc);
        }
        for c in s.cases.iter().filter(|c| f.selects(s.name, c.name)) {
            n += 1;
            if a.names {
                println!("{}.{}", s.name, c.name);
            } else {
                let plats: Vec<&str> = c.platforms.iter().map(|p| p.name()).collect();
                println!("  {:<22} [{}] {}", c.name, plats.join(","), c.doc);
                if !c.needs.is_empty() {
                    let needs: Vec<&str> = c.needs.iter().map(|n| n.name()).collect();
                    println!("  {:<22} needs: {}", "", needs.join(", "));
                }
                println!("  {:<22} source: {}", "", c.source);
            }
        }
        if !a.names {
            list_documented(s.name, &f);
        }
    }
    if !a.names {
        println!("{n} cases in {suites} suites");
    }
    Ok(true)
}

/// The conformance cases of `suite` that are documented but never sent (KVM ends the VM):
/// listed with why, never counted as cases.
fn list_documented(suite: &str, f: &Filter<'_>) {
    use protocol::conformance::{CASES, Expect};
    for c in CASES
        .iter()
        .filter(|c| c.suite() == suite && f.selects(suite, c.id))
    {
        if let Expect::VmEnds { end, why } = c.expect {
            println!(
                "  {:<22} [{}] documented, not executed: {}",
                c.id,
                c.platform().name(),
                c.doc
            );
            println!("  {:<22} not sent ({}): {why}", "", end.name());
            println!("  {:<22} source: {}", "", c.source);
        }
    }
}

/// `cvmprobe parse`: a KTAP log from a file or stdin, with no environment to judge skips by.
pub fn parse(a: &ParseArgs) -> Result<bool, CommandError> {
    let bytes = if a.file == "-" {
        let mut s = Vec::new();
        std::io::stdin()
            .read_to_end(&mut s)
            .map_err(|e| CommandError::context("cannot read standard input", e))?;
        s
    } else {
        std::fs::read(&a.file).map_err(|e| {
            CommandError::context(format!("cannot read the KTAP log `{}`", a.file), e)
        })?
    };
    let text = String::from_utf8_lossy(&bytes);
    let doc = ktap::parse_log(&text);
    if doc.version.is_none() {
        return Err(usage(format!(
            "`{}` is not a KTAP log: no `KTAP version N` or `TAP version N` line in {} lines",
            a.file,
            text.lines().count()
        )));
    }
    let mut summary = Summary::from_document(&doc);
    summary.environment = format!("parsed {}", a.file);
    if summary.bail_out.is_some() || !summary.problems.is_empty() {
        summary.serial_tail = report::tail(&text, report::SERIAL_TAIL_LINES);
    }
    print!(
        "{}",
        summary.render(std::io::stdout().is_terminal(), a.verbose)
    );
    if let Some(p) = &a.junit {
        write_junit(p, &summary.junit_cases())?;
    }
    Ok(summary.passed())
}

/// `cvmprobe bench`.
pub fn bench(a: &BenchArgs) -> Result<bool, CommandError> {
    if a.runs < 5 {
        return Err(usage(format!(
            "--runs {}: at least 5 runs per figure",
            a.runs
        )));
    }
    vmm::kvm_available()
        .map_err(|e| CommandError::context("the benchmarks need the built-in VMM", e))?;
    let kernel = kernel_elf()?;
    check_append(&a.append)?;
    let opts = crate::bench::BenchOptions {
        runs: a.runs,
        images: !a.no_images,
        qemu: a.qemu.clone(),
        append: a.append.clone(),
        count: !a.no_count,
    };
    eprintln!(
        "cvmprobe bench: measuring (about {} s)...",
        20 + if opts.images { 130 } else { 0 } + if opts.count { 60 } else { 0 }
    );
    // Every figure is printed, also when a platform failed; the exit code says whether one did.
    let report = crate::bench::run_all(kernel, &opts);
    print!("{}", report.text);
    Ok(report.failures.is_empty())
}

/// `cvmprobe fuzz-host`: seeds in parallel, a failing run printed with the command that
/// reproduces it, totals per platform and overall.
pub fn fuzz_host(a: &FuzzHostArgs) -> Result<bool, CommandError> {
    check_filter(&a.filter)?;
    check_append(&a.append)?;
    let platforms: Vec<PlatformKind> = match a.platform {
        PlatformArg::Legacy => {
            return Err(usage(
                "--platform legacy: the hostile host needs tdx-sim or sev-es-sim (or all)",
            ));
        }
        PlatformArg::All => vec![PlatformKind::Tdx, PlatformKind::SevEs],
        p => p.kinds(),
    };
    let platforms = match a.kvm {
        Some(k) if !k.has_tdx() => {
            if a.platform == PlatformArg::TdxSim {
                return Err(usage(format!(
                    "--kvm {}: that KVM has no TDX host support (it landed in v6.16): use \
                     --platform sev-es-sim, or --kvm 6.16 or current",
                    k.name()
                )));
            }
            eprintln!(
                "cvmprobe fuzz-host: --kvm {}: that KVM has no TDX host support: tdx-sim is left \
                 out",
                k.name()
            );
            vec![PlatformKind::SevEs]
        }
        _ => platforms,
    };
    if a.runs == 0 {
        return Err(usage("--runs 0: nothing to do"));
    }
    vmm::kvm_available().map_err(|e| {
        CommandError::context(
            "the hostile host lives in the built-in VMM, which needs /dev/kvm",
            e,
        )
    })?;
    let kernel = kernel_elf()?;
    let plan = crate::hostile::FuzzPlan {
        platforms,
        runs: a.runs,
        first_seed: a.seed.unwrap_or_else(|| u64::from(run::run_token())),
        lie_rate: a.lie_rate,
        jobs: a
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .clamp(1, 64),
        timeout: a.timeout,
        filter: a.filter.clone(),
        append: a.append.clone(),
        phys_bits: a.phys_bits,
        kvm: a.kvm,
    };
    eprintln!("cvmprobe fuzz-host: {}", plan.describe());
    let report = crate::hostile::fuzz(
        &plan,
        kernel,
        &|failed: &str| print!("{failed}"),
        &|done, secs| {
            eprintln!(
                "cvmprobe fuzz-host: {done}/{} runs ({secs:.0} s)",
                plan.runs
            )
        },
    );
    for e in &report.errors {
        eprintln!("cvmprobe fuzz-host: {e}");
    }
    if !report.errors.is_empty() {
        return Err(usage(format!(
            "{} runs could not be done",
            report.errors.len()
        )));
    }
    print!("{}", report.render());
    Ok(report.totals.passed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(a: &[&str]) -> RunArgs {
        let mut v = vec!["cvmprobe"];
        v.extend_from_slice(a);
        let cli = crate::cli::Cli::try_parse_from(v).expect("parses");
        match cli.command {
            Some(crate::cli::Command::Run(a)) => a,
            _ => cli.run,
        }
    }

    fn kvm() -> Host {
        Host {
            builtin: Ok(()),
            qemu_kvm: true,
        }
    }

    fn no_kvm() -> Host {
        Host {
            builtin: Err("cannot open /dev/kvm".into()),
            qemu_kvm: false,
        }
    }

    #[test]
    fn default_run_is_every_platform_the_host_can_run() {
        let p = plan_run(&args(&[]), &kvm()).unwrap();
        assert_eq!(
            p.runner,
            Runner::Builtin {
                boot: vmm::Boot::Pvh
            }
        );
        assert_eq!(p.platforms, PlatformKind::ALL);
        assert!(p.notes.is_empty(), "{:?}", p.notes);

        let p = plan_run(&args(&[]), &no_kvm()).unwrap();
        assert_eq!(p.platforms, [PlatformKind::Legacy]);
        assert!(matches!(
            p.runner,
            Runner::Qemu {
                accel: Accel::Tcg,
                machine: Machine::Microvm,
                ..
            }
        ));
        let notes = p.notes.join("\n");
        assert!(notes.contains("legacy platform only"), "{notes}");
        assert!(notes.contains("TCG"), "{notes}");
    }

    #[test]
    fn qemu_options_mean_qemu_and_legacy() {
        let p = plan_run(&args(&["--accel", "kvm"]), &kvm()).unwrap();
        assert_eq!(p.platforms, [PlatformKind::Legacy]);
        assert!(matches!(p.runner, Runner::Qemu { .. }));
        let p = plan_run(&args(&["--tcg-fallback"]), &kvm()).unwrap();
        assert!(matches!(
            p.runner,
            Runner::Qemu {
                tcg_fallback: true,
                accel: Accel::Kvm,
                ..
            }
        ));
        assert!(plan_run(&args(&["--platform", "all", "--accel", "kvm"]), &kvm()).is_err());
        assert!(plan_run(&args(&["--vmm", "builtin", "--tcg-fallback"]), &kvm()).is_err());
        assert!(plan_run(&args(&["--platform", "tdx-sim"]), &no_kvm()).is_err());
        for boot in ["uefi", "esp", "efi"] {
            let p = plan_run(&args(&["--boot", boot]), &kvm()).unwrap();
            assert!(p.notes.join(" ").contains("--accel tcg"), "{:?}", p.notes);
            assert!(matches!(
                p.runner,
                Runner::Qemu {
                    machine: Machine::Pc,
                    ..
                }
            ));
            assert_eq!(p.platforms, [PlatformKind::Legacy]);
        }
        assert!(plan_run(&args(&["--boot", "esp", "--platform", "tdx-sim"]), &kvm()).is_err());
    }

    #[test]
    fn builtin_options_mean_the_builtin_vmm() {
        // The UEFI hand-off, a KVM release or a vCPU width: every platform, built-in VMM.
        let p = plan_run(&args(&["--boot", "efi-handoff"]), &kvm()).unwrap();
        assert_eq!(
            p.runner,
            Runner::Builtin {
                boot: vmm::Boot::EfiHandoff(Default::default())
            }
        );
        assert_eq!(p.platforms, PlatformKind::ALL);
        let p = plan_run(&args(&["--phys-bits", "46"]), &kvm()).unwrap();
        assert_eq!(p.platforms, PlatformKind::ALL);
        // A KVM without TDX: the default leaves tdx-sim out and says so; asking for it fails.
        let p = plan_run(&args(&["--kvm", "6.10"]), &kvm()).unwrap();
        assert_eq!(p.platforms, [PlatformKind::Legacy, PlatformKind::SevEs]);
        assert!(
            p.notes.join(" ").contains("tdx-sim is left out"),
            "{:?}",
            p.notes
        );
        let p = plan_run(&args(&["--kvm", "6.16"]), &kvm()).unwrap();
        assert_eq!(p.platforms, PlatformKind::ALL);
        for a in [
            &["--kvm", "6.11", "--platform", "all"][..],
            &["--kvm", "6.10", "--platform", "tdx-sim"],
            &["--vmm", "qemu", "--boot", "efi-handoff"],
            &["--vmm", "qemu", "--kvm", "6.16"],
            &["--vmm", "qemu", "--phys-bits", "46"],
            &["--accel", "tcg", "--phys-bits", "46"],
            &["--boot", "efi-handoff", "--machine", "pc"],
        ] {
            assert!(
                matches!(plan_run(&args(a), &kvm()), Err(CommandError::Usage(_))),
                "{a:?}"
            );
        }
        // Without /dev/kvm they cannot run: no silent QEMU instead.
        for a in [
            &["--boot", "efi-handoff"][..],
            &["--kvm", "current"],
            &["--phys-bits", "46"],
        ] {
            let e = plan_run(&args(a), &no_kvm()).unwrap_err().to_string();
            assert!(e.contains("/dev/kvm"), "{a:?}: {e}");
        }
    }

    #[test]
    fn confidential_runs_take_qemus_documented_machine() {
        use crate::confidential::Confidential;
        let p = plan_run(
            &args(&["run", "--vmm", "qemu", "--confidential", "tdx", "--dry-run"]),
            &no_kvm(),
        )
        .unwrap();
        assert_eq!(p.runner, Runner::Confidential(Confidential::Tdx));
        assert_eq!(p.platforms, [PlatformKind::Tdx]);
        let p = plan_run(
            &args(&[
                "run",
                "--vmm",
                "qemu",
                "--confidential",
                "sev-es",
                "--boot",
                "efi",
            ]),
            &kvm(),
        )
        .unwrap();
        assert_eq!(p.platforms, [PlatformKind::SevEs]);
        for extra in [
            &["--platform", "legacy"][..],
            &["--boot", "esp"],
            &["--accel", "kvm"],
            &["--machine", "pc"],
            &["--phys-bits", "46"],
            &["--tcg-fallback"],
            &["--kvm", "6.16"],
            &["--filter", "nosuch"],
        ] {
            let mut a = vec!["run", "--vmm", "qemu", "--confidential", "tdx"];
            a.extend_from_slice(extra);
            assert!(
                matches!(plan_run(&args(&a), &kvm()), Err(CommandError::Usage(_))),
                "{extra:?}"
            );
        }
        let e = plan_run(
            &args(&["run", "--vmm", "builtin", "--confidential", "tdx"]),
            &kvm(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("drop --vmm builtin"), "{e}");
        // Without --vmm it is QEMU's, as --accel and --machine imply.
        let p = plan_run(&args(&["run", "--confidential", "tdx"]), &kvm()).unwrap();
        assert!(matches!(p.runner, Runner::Confidential(_)));
    }

    #[test]
    fn hostile_defaults_to_the_simulated_platforms() {
        let p = plan_run(&args(&["--hostile", "7"]), &kvm()).unwrap();
        assert_eq!(p.platforms, [PlatformKind::Tdx, PlatformKind::SevEs]);
        assert!(plan_run(&args(&["--hostile", "7", "--platform", "legacy"]), &kvm()).is_err());
        assert!(plan_run(&args(&["--hostile", "7"]), &no_kvm()).is_err());
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for a in [
            &["--filter", "nosuch"][..],
            &["--append", "a b"],
            &["--boot", "bios", "--machine", "microvm"],
        ] {
            assert!(
                matches!(plan_run(&args(a), &kvm()), Err(CommandError::Usage(_))),
                "{a:?}"
            );
        }
    }

    #[test]
    fn the_kvm_internal_error_hint_names_the_way_out() {
        for boot in [Boot::Efi, Boot::Esp] {
            let h = kvm_internal_error_hint(boot, "KVM internal error. Suberror: 1");
            assert!(
                h.contains(&format!("--boot {} needs --accel tcg", boot.name())),
                "{h}"
            );
            assert!(h.contains("--tcg-fallback"), "{h}");
        }
        let h = kvm_internal_error_hint(Boot::Pvh, "x");
        assert!(
            h.contains("not retried") && h.contains("--tcg-fallback"),
            "{h}"
        );
    }
}
