//! `cvmprobe`: boots the guest kernel, reads its KTAP verdict, and reads KTAP logs.

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use cvmprobe::cli::{
    BenchArgs, Cli, Command, FuzzHostArgs, ListArgs, ParseArgs, PlatformArg, RunArgs, VmmArg,
};
use cvmprobe::qemu::{self, Accel, Boot, Machine, QemuConfig};
use cvmprobe::report::Summary;
use cvmprobe::run::{self, RunRequest};
use cvmprobe::sim_call::SimCallArgs;
use cvmprobe::{junit, ktap};
use protocol::catalog::{self, Filter};
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

/// `list --conformance-markdown`: print the README's "Conformance cases" table.
const CONFORMANCE_MARKDOWN: &str = "conformance-markdown";

/// The command line: [`Cli`] plus `sim-call` and `list --conformance-markdown`, which live
/// beside the derived definitions (`cvmprobe::sim_call`).
fn command() -> clap::Command {
    use clap::{Arg, ArgAction, Args, CommandFactory};
    Cli::command()
        .subcommand(SimCallArgs::augment_args(clap::Command::new("sim-call")))
        .mut_subcommand("list", |c| {
            c.arg(
                Arg::new(CONFORMANCE_MARKDOWN)
                    .long(CONFORMANCE_MARKDOWN)
                    .action(ArgAction::SetTrue)
                    .help(
                        "Print the conformance table (protocol::conformance) as the README's \
                         Markdown section",
                    ),
            )
        })
}

fn main() -> ExitCode {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    let r = if let Some(m) = matches.subcommand_matches("sim-call") {
        let a = SimCallArgs::from_arg_matches(m).unwrap_or_else(|e| e.exit());
        cvmprobe::sim_call::run(&a)
    } else {
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let markdown = matches
            .subcommand_matches("list")
            .is_some_and(|m| m.get_flag(CONFORMANCE_MARKDOWN));
        match cli.command {
            None => cmd_run(&cli.run),
            Some(Command::Run(a)) => cmd_run(&a),
            Some(Command::List(_)) if markdown => {
                print!("{}", protocol::conformance::markdown());
                Ok(true)
            }
            Some(Command::List(a)) => cmd_list(&a),
            Some(Command::Parse(a)) => cmd_parse(&a),
            Some(Command::Bench(a)) => cmd_bench(&a),
            Some(Command::FuzzHost(a)) => cmd_fuzz_host(&a),
        }
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cvmprobe: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check_filter(f: &str) -> Result<()> {
    Filter::parse(f).map(|_| ()).map_err(|e| {
        use protocol::catalog::FilterError::*;
        match e {
            BadCharacter(p) => {
                anyhow::anyhow!("--filter: `{p}` has a character outside [a-z0-9_.*-]")
            }
            TooManyDots(p) => {
                anyhow::anyhow!("--filter: `{p}` has more than one `.` (use suite or suite.case)")
            }
            MatchesNothing(p) => {
                anyhow::anyhow!("--filter: `{p}` selects no case (see `cvmprobe list`)")
            }
        }
    })
}

fn cmd_run(a: &RunArgs) -> Result<bool> {
    check_filter(&a.filter)?;
    if let Some(kind) = a.confidential {
        return cvmprobe::confidential::cmd_run(a, kind);
    }
    for t in &a.append {
        if t.split_whitespace().count() != 1 {
            bail!("--append `{t}`: one KEY=VALUE token without spaces, please");
        }
    }
    let platforms = a.platform.kinds();
    if a.hostile.is_some() && platforms.contains(&protocol::platform::PlatformKind::Legacy) {
        bail!(
            "--hostile needs --platform tdx-sim or sev-es-sim: on a legacy VM the CPU itself \
             answers, there is no host answer to falsify"
        );
    }
    let req = RunRequest {
        platform: platforms[0],
        filter: a.filter.clone(),
        extra_cmdline: a.append.clone(),
        timeout: a.timeout,
        verbose: a.verbose,
        progress: std::io::stderr().is_terminal(),
        phys_bits: a.phys_bits,
        kvm: a.kvm.unwrap_or(protocol::kvm::KvmProfile::Current),
        builtin_boot: match a.boot {
            Boot::EfiHandoff => vmm::Boot::EfiHandoff(Default::default()),
            _ => vmm::Boot::Pvh,
        },
    };
    if let Some(k) = a.kvm
        && !k.has_tdx()
        && platforms.contains(&protocol::platform::PlatformKind::Tdx)
    {
        bail!(
            "--kvm {}: that KVM has no TDX host support (it landed in v6.16): use --platform \
             legacy or sev-es-sim, or --kvm 6.16 or current",
            k.name()
        );
    }
    let kernel = Path::new(env!("CVMPROBE_KERNEL_ELF"));
    if !kernel.exists() {
        bail!(
            "the kernel ELF {} is missing: run `cargo build` to rebuild it",
            kernel.display()
        );
    }
    if a.verbose {
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
            or_none(cvmprobe::images::BIOS_IMAGE)
        );
        eprintln!(
            "cvmprobe: UEFI application: {} (the ESP image is made per run)",
            cvmprobe::efi_images::EFI_APP
        );
    }
    let qemu_flags = a.machine.is_some() || a.accel.is_some() || a.boot.needs_qemu();
    let simulated = a.platform != PlatformArg::Legacy;
    if simulated && (qemu_flags || a.vmm == Some(VmmArg::Qemu)) {
        bail!(
            "--platform {}: the simulated TDX and SEV-ES hosts live in the built-in VMM; QEMU \
             (--vmm qemu, --machine, --accel, --boot bios|efi|esp) runs the legacy platform \
             only (--boot efi-handoff runs the built-in VMM's UEFI hand-off on any platform)",
            a.platform
                .to_possible_value()
                .map_or("?".into(), |v| v.get_name().to_string())
        );
    }
    if simulated && a.vmm.is_none() {
        vmm::kvm_available()
            .context("the simulated platforms need the built-in VMM, which needs /dev/kvm")?;
    }
    let use_builtin = match a.vmm {
        Some(VmmArg::Builtin) => {
            if qemu_flags {
                bail!(
                    "--machine, --accel and --boot bios|efi|esp are QEMU options: drop them, or use --vmm qemu"
                );
            }
            true
        }
        Some(VmmArg::Qemu) => false,
        None if qemu_flags => false,
        None => match vmm::kvm_available() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("cvmprobe: the built-in VMM cannot run ({e}): using QEMU instead");
                false
            }
        },
    };
    if a.boot == Boot::EfiHandoff && !use_builtin {
        bail!(
            "--boot efi-handoff is the built-in VMM's rebuild of the firmware's hand-off; under \
             QEMU use --boot efi or --boot esp (cvmprobe.efi through OVMF)"
        );
    }
    if a.hostile.is_some() && !use_builtin {
        bail!("--hostile needs the built-in VMM (drop --vmm qemu)");
    }
    if a.kvm.is_some() && !use_builtin {
        bail!(
            "--kvm picks the answers of the built-in VMM's simulated platforms: drop --vmm \
             qemu (on a real host, --append cvmprobe.kvm=PROFILE tells the guest what to expect)"
        );
    }
    if a.phys_bits.is_some() && !use_builtin {
        bail!(
            "--phys-bits sets the built-in VMM's vCPU width; QEMU takes its own \
             (-cpu ...,phys-bits=N): drop --vmm qemu, or the option"
        );
    }
    if use_builtin {
        let mut results = Vec::new();
        let mut hostile_ok = true;
        for &platform in &platforms {
            let req = RunRequest {
                platform,
                ..req.clone()
            };
            eprintln!(
                "cvmprobe: booting {} under the built-in KVM VMM, platform {} ({} cases)",
                kernel.display(),
                vmm::sim_name(platform),
                run::expected(&req).len()
            );
            if let Some(seed) = a.hostile {
                let cfg = vmm::sim::hostile::HostileConfig {
                    seed,
                    rate: a.lie_rate,
                };
                let (result, report, verdict) = cvmprobe::hostile::run_once(&req, kernel, cfg)?;
                print!("{}", result.summary.render(std::io::stdout().is_terminal()));
                print!("{}", verdict.render(&report.lies.unwrap_or_default()));
                hostile_ok &= verdict.passed();
                continue;
            }
            let result = run::run_builtin(&req, kernel)?;
            results.push((platform, result.summary));
        }
        if a.hostile.is_some() {
            return Ok(hostile_ok);
        }
        return finish_all(&results, a.junit.as_deref());
    }
    let machine = match (a.machine, a.boot) {
        (Some(Machine::Microvm), Boot::Bios | Boot::Efi | Boot::Esp) => bail!(
            "--boot {} needs firmware and a disk: use --machine pc (the default for disk images)",
            a.boot.name()
        ),
        (Some(m), _) => m,
        (None, Boot::Pvh | Boot::EfiHandoff) => Machine::Microvm,
        (None, _) => Machine::Pc,
    };
    let auto_accel = a.accel.is_none();
    let mut accel = match a.accel {
        Some(x) => x,
        None if qemu::kvm_usable() => Accel::Kvm,
        None => {
            eprintln!("cvmprobe: /dev/kvm cannot be opened: using QEMU's TCG emulator (slower)");
            Accel::Tcg
        }
    };
    let workdir = tempfile::tempdir().context("cannot create a temporary directory for the run")?;
    loop {
        let base = QemuConfig::new(a.qemu.clone(), machine, accel, kernel, a.boot);
        let cfg = run::prepare_qemu(&req, base, a.boot, a.ovmf.as_deref(), workdir.path())?;
        eprintln!(
            "cvmprobe: booting {} under QEMU {} with {} ({} cases)",
            match &cfg.media {
                qemu::Media::Pvh { kernel } => format!("{} (PVH)", kernel.display()),
                qemu::Media::Bios { .. } =>
                    format!("the BIOS image {}", cvmprobe::images::BIOS_IMAGE),
                qemu::Media::Efi { app, esp: None, .. } =>
                    format!("{} (-kernel, OVMF)", app.display()),
                qemu::Media::Efi { esp: Some(d), .. } =>
                    format!("the ESP image {} (OVMF)", d.display()),
                qemu::Media::Raw { .. } => "the confidential guest".to_string(),
            },
            cfg.machine.name(),
            accel.name(),
            run::expected(&req).len()
        );
        eprintln!("cvmprobe: {}", cfg.shell_line());
        let result = run::run_qemu(&req, &cfg)?;
        if result.kvm_internal_error && accel == Accel::Kvm && auto_accel {
            eprintln!(
                "cvmprobe: QEMU stopped on a KVM internal error under KVM (OVMF uses an instruction \
                 this host's KVM does not emulate): running again under TCG"
            );
            accel = Accel::Tcg;
            continue;
        }
        return finish(&result.summary, a.junit.as_deref());
    }
}

/// Prints each platform's verdict (a header per platform when there are several, then one
/// line with all verdicts) and writes one JUnit file whose suites carry the platform name.
fn finish_all(
    results: &[(protocol::platform::PlatformKind, Summary)],
    junit_path: Option<&Path>,
) -> Result<bool> {
    if let [(_, summary)] = results {
        return finish(summary, junit_path);
    }
    let color = std::io::stdout().is_terminal();
    let mut junit_cases = Vec::new();
    for (platform, summary) in results {
        println!("== platform {} ==", vmm::sim_name(*platform));
        print!("{}", summary.render(color));
        for mut c in summary.junit_cases() {
            c.suite = format!("{}.{}", vmm::sim_name(*platform), c.suite);
            junit_cases.push(c);
        }
    }
    let verdicts: Vec<String> = results
        .iter()
        .map(|(p, s)| {
            format!(
                "{} {}",
                vmm::sim_name(*p),
                if s.passed() { "PASS" } else { "FAIL" }
            )
        })
        .collect();
    println!("verdict per platform: {}", verdicts.join(", "));
    if let Some(p) = junit_path {
        let mut f = std::fs::File::create(p)
            .with_context(|| format!("cannot create the JUnit file {}", p.display()))?;
        junit::write_junit(&mut f, "cvmprobe", &junit_cases)
            .with_context(|| format!("cannot write the JUnit file {}", p.display()))?;
    }
    Ok(results.iter().all(|(_, s)| s.passed()))
}

fn finish(summary: &Summary, junit_path: Option<&Path>) -> Result<bool> {
    print!("{}", summary.render(std::io::stdout().is_terminal()));
    if let Some(p) = junit_path {
        let mut f = std::fs::File::create(p)
            .with_context(|| format!("cannot create the JUnit file {}", p.display()))?;
        junit::write_junit(&mut f, "cvmprobe", &summary.junit_cases())
            .with_context(|| format!("cannot write the JUnit file {}", p.display()))?;
    }
    Ok(summary.passed())
}

fn cmd_list(a: &ListArgs) -> Result<bool> {
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

fn cmd_parse(a: &ParseArgs) -> Result<bool> {
    let text = if a.file == "-" {
        let mut s = Vec::new();
        std::io::stdin()
            .read_to_end(&mut s)
            .context("cannot read standard input")?;
        String::from_utf8_lossy(&s).into_owned()
    } else {
        let bytes = std::fs::read(&a.file)
            .with_context(|| format!("cannot read the KTAP log `{}`", a.file))?;
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let doc = ktap::parse(&text);
    if doc.version.is_none() {
        bail!(
            "`{}` is not a KTAP log: no `KTAP version N` or `TAP version N` line in {} lines",
            a.file,
            text.lines().count()
        );
    }
    let mut summary = Summary::from_document(&doc);
    summary.environment = format!("parsed {}", a.file);
    if summary.bail_out.is_some() || !summary.problems.is_empty() {
        summary.serial_tail = cvmprobe::report::tail(&text, cvmprobe::report::SERIAL_TAIL_LINES);
    }
    finish(&summary, a.junit.as_deref())
}

fn cmd_bench(a: &BenchArgs) -> Result<bool> {
    if a.runs < 5 {
        bail!("--runs {}: at least 5 runs per figure", a.runs);
    }
    vmm::kvm_available().context("the benchmarks need the built-in VMM")?;
    let kernel = Path::new(env!("CVMPROBE_KERNEL_ELF"));
    let opts = cvmprobe::bench::BenchOptions {
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
    let report = cvmprobe::bench::run_all(kernel, &opts);
    print!("{}", report.text);
    Ok(report.failures.is_empty())
}

fn cmd_fuzz_host(a: &FuzzHostArgs) -> Result<bool> {
    use cvmprobe::hostile::FuzzTotals;
    use protocol::platform::PlatformKind;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    check_filter(&a.filter)?;
    let platforms: Vec<PlatformKind> = match a.platform {
        PlatformArg::Legacy => {
            bail!("--platform legacy: the hostile host needs tdx-sim or sev-es-sim (or all)")
        }
        PlatformArg::All => vec![PlatformKind::Tdx, PlatformKind::SevEs],
        p => p.kinds(),
    };
    if a.runs == 0 {
        bail!("--runs 0: nothing to do");
    }
    vmm::kvm_available()
        .context("the hostile host lives in the built-in VMM, which needs /dev/kvm")?;
    let kernel = Path::new(env!("CVMPROBE_KERNEL_ELF"));
    let first = a.seed.unwrap_or_else(|| u64::from(run::run_token()));
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    eprintln!(
        "cvmprobe fuzz-host: {} runs on {}, seeds {first}.., lie rate {}, {jobs} at a time",
        a.runs,
        platforms
            .iter()
            .map(|p| vmm::sim_name(*p))
            .collect::<Vec<_>>()
            .join(" and "),
        a.lie_rate
    );
    let next = AtomicU64::new(0);
    let totals = Mutex::new(FuzzTotals::default());
    let per_platform = Mutex::new(std::collections::BTreeMap::<&str, FuzzTotals>::new());
    let errors = Mutex::new(Vec::new());
    let start = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= a.runs {
                        break;
                    }
                    let platform = platforms[(i % platforms.len() as u64) as usize];
                    let seed = first.wrapping_add(i);
                    let req = RunRequest {
                        platform,
                        filter: a.filter.clone(),
                        extra_cmdline: a.append.clone(),
                        timeout: a.timeout,
                        verbose: false,
                        progress: false,
                        phys_bits: a.phys_bits,
                        kvm: a.kvm.unwrap_or(protocol::kvm::KvmProfile::Current),
                        builtin_boot: vmm::Boot::Pvh,
                    };
                    let cfg = vmm::sim::hostile::HostileConfig {
                        seed,
                        rate: a.lie_rate,
                    };
                    match cvmprobe::hostile::run_once(&req, kernel, cfg) {
                        Ok((result, report, verdict)) => {
                            if !verdict.passed() {
                                let log = report.lies.unwrap_or_default();
                                let mut text = format!(
                                    "-- run {i} FAILED: cvmprobe run --platform {} --hostile {seed} --lie-rate {}{}\n",
                                    vmm::sim_name(platform),
                                    a.lie_rate,
                                    a.append
                                        .iter()
                                        .map(|t| format!(" --append {t}"))
                                        .collect::<String>()
                                );
                                text += &verdict.render(&log);
                                for l in &result.summary.serial_tail {
                                    text += &format!("  | {l}\n");
                                }
                                print!("{text}");
                            }
                            totals.lock().expect("totals").add(&verdict);
                            per_platform
                                .lock()
                                .expect("totals")
                                .entry(vmm::sim_name(platform))
                                .or_default()
                                .add(&verdict);
                            let done = i + 1;
                            if done % 50 == 0 {
                                eprintln!(
                                    "cvmprobe fuzz-host: {done}/{} runs ({:.0} s)",
                                    a.runs,
                                    start.elapsed().as_secs_f64()
                                );
                            }
                        }
                        Err(e) => errors
                            .lock()
                            .expect("errors")
                            .push(format!("run {i} (seed {seed}): {e}")),
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().expect("errors");
    for e in &errors {
        eprintln!("cvmprobe fuzz-host: {e}");
    }
    if !errors.is_empty() {
        bail!("{} runs could not be done", errors.len());
    }
    let totals = totals.into_inner().expect("totals");
    for (p, t) in per_platform.into_inner().expect("totals") {
        println!("== {p} ==");
        print!("{}", t.render());
    }
    println!("== total ({:.1} s) ==", start.elapsed().as_secs_f64());
    print!("{}", totals.render());
    println!(
        "fuzz-host verdict: {}",
        if totals.passed() { "PASS" } else { "FAIL" }
    );
    Ok(totals.passed())
}
