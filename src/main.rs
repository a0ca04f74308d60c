//! `cvmprobe`: boots the guest kernel, reads its KTAP verdict, and reads KTAP logs.

use anyhow::{Context, Result, bail};
use clap::Parser;
use cvmprobe::cli::{Cli, Command, ListArgs, ParseArgs, RunArgs, VmmArg};
use cvmprobe::qemu::{self, Accel, Machine, QemuConfig};
use cvmprobe::report::Summary;
use cvmprobe::run::{self, RunRequest};
use cvmprobe::{junit, ktap};
use protocol::catalog::{self, Filter};
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        None => cmd_run(&cli.run),
        Some(Command::Run(a)) => cmd_run(&a),
        Some(Command::List(a)) => cmd_list(&a),
        Some(Command::Parse(a)) => cmd_parse(&a),
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
    for t in &a.append {
        if t.split_whitespace().count() != 1 {
            bail!("--append `{t}`: one KEY=VALUE token without spaces, please");
        }
    }
    let req = RunRequest {
        platform: a.platform.kind(),
        filter: a.filter.clone(),
        extra_cmdline: a.append.clone(),
        timeout: a.timeout,
        verbose: a.verbose,
        progress: std::io::stderr().is_terminal(),
    };
    let kernel = Path::new(env!("CVMPROBE_KERNEL_ELF"));
    if !kernel.exists() {
        bail!(
            "the kernel ELF {} is missing: run `cargo build` to rebuild it",
            kernel.display()
        );
    }
    let qemu_flags = a.machine.is_some() || a.accel.is_some();
    let use_builtin = match a.vmm {
        Some(VmmArg::Builtin) => {
            if qemu_flags {
                bail!("--machine and --accel are QEMU options: drop them, or use --vmm qemu");
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
    if use_builtin {
        eprintln!(
            "cvmprobe: booting {} under the built-in KVM VMM ({} cases)",
            kernel.display(),
            run::expected(&req).len()
        );
        let result = run::run_builtin(&req, kernel)?;
        return finish(&result.summary, a.junit.as_deref());
    }
    let accel = match a.accel {
        Some(x) => x,
        None if qemu::kvm_usable() => Accel::Kvm,
        None => {
            eprintln!("cvmprobe: /dev/kvm cannot be opened: using QEMU's TCG emulator (slower)");
            Accel::Tcg
        }
    };
    let cfg = QemuConfig {
        binary: a.qemu.clone(),
        machine: a.machine.unwrap_or(Machine::Microvm),
        accel,
        kernel: kernel.to_path_buf(),
        cmdline: String::new(),
        brand: String::new(),
        mem_mib: 64,
    };
    eprintln!(
        "cvmprobe: booting {} under QEMU {} with {} ({} cases)",
        kernel.display(),
        cfg.machine.name(),
        accel.name(),
        run::expected(&req).len()
    );
    let cfg = run::prepare_qemu(&req, cfg);
    eprintln!("cvmprobe: {}", cfg.shell_line());
    let result = run::run_qemu(&req, &cfg)?;
    finish(&result.summary, a.junit.as_deref())
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
    }
    if !a.names {
        println!("{n} cases in {suites} suites");
    }
    Ok(true)
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
