//! `cvmprobe bench`: start-to-verdict times and guest microbenchmarks, printed as figures.
//!
//! Timings on shared machines are noisy: every figure is the median (with min and max) of
//! several runs made in the same invocation, and the targets are checked as ratios between
//! figures of the same invocation, never as absolute times.

use crate::images;
use crate::qemu::{self, Accel, Boot, Machine, QemuConfig, QemuEnd};
use crate::run::{self, RunRequest};
use protocol::platform::PlatformKind;
use protocol::testdev::BenchId;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Runs per start-to-verdict figure (at least 5).
    pub runs: usize,
    /// Also boot the BIOS and UEFI images (about two minutes on an emulated host).
    pub images: bool,
    /// The QEMU binary.
    pub qemu: std::path::PathBuf,
}

/// Median, min, max of a set of durations.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Median.
    pub median: Duration,
    /// Minimum.
    pub min: Duration,
    /// Maximum.
    pub max: Duration,
}

impl Stats {
    /// Of a non-empty sample.
    pub fn of(mut v: Vec<Duration>) -> Stats {
        v.sort();
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
        };
        Stats {
            median,
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn request(mode: Option<&str>) -> RunRequest {
    RunRequest {
        platform: PlatformKind::Legacy,
        filter: String::new(),
        extra_cmdline: mode
            .map(|m| vec![format!("cvmprobe.mode={m}")])
            .unwrap_or_default(),
        timeout: Duration::from_secs(300),
        verbose: false,
        progress: false,
    }
}

/// The built-in VMM's configuration for a benchmark run on `platform`.
fn vm_config(kernel: &Path, mode: Option<&str>, platform: PlatformKind) -> vmm::VmConfig {
    let req = RunRequest {
        platform,
        ..request(mode)
    };
    vmm::VmConfig {
        kernel: kernel.to_path_buf(),
        cmdline: run::kernel_cmdline(&req),
        mem_mib: vmm::DEFAULT_MEM_MIB,
        timeout: req.timeout,
        seed: None,
        platform: req.platform,
        hostile: None,
    }
}

/// One start-to-verdict run under the built-in VMM; the run must end in the guest's verdict.
fn builtin_once(
    kernel: &Path,
    mode: Option<&str>,
    platform: PlatformKind,
) -> Result<Duration, String> {
    let cfg = vm_config(kernel, mode, platform);
    let r = vmm::run(&cfg, &mut |_| {}).map_err(|e| e.to_string())?;
    // From the call to the guest's verdict (VM creation included; the teardown after the
    // verdict, ~10 ms of KVM VM destruction on this host, is not part of start->verdict).
    let d = r.wall;
    if !r.exit.passed() || !r.host_verdict_ok() {
        return Err(format!("the built-in VMM run did not pass: {}", r.exit));
    }
    Ok(d)
}

/// One start-to-verdict run under QEMU (process start to exit).
fn qemu_once(base: &QemuConfig, boot: Boot, mode: Option<&str>) -> Result<Duration, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let req = request(mode);
    let cfg =
        run::prepare_qemu(&req, base.clone(), boot, None, dir.path()).map_err(|e| e.to_string())?;
    let r = qemu::run(&cfg, req.timeout, |_| {}).map_err(|e| e.to_string())?;
    match r.end {
        QemuEnd::Exited(s) if s.code() == Some(1) => Ok(r.wall),
        other => Err(format!("QEMU {} run did not pass: {other:?}", boot.name())),
    }
}

fn repeat(n: usize, mut f: impl FnMut() -> Result<Duration, String>) -> Result<Stats, String> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(f()?);
    }
    Ok(Stats::of(v))
}

/// One guest microbenchmark, combined from the guest's TSC count and the host's markers.
#[derive(Clone, Copy, Debug)]
pub struct Micro {
    /// Which loop.
    pub id: BenchId,
    /// Iterations.
    pub n: u64,
    /// Exits per iteration (host count).
    pub exits_per_op: f64,
    /// Host wall time per iteration, ns.
    pub wall_ns: f64,
    /// Guest TSC time per iteration, ns.
    pub tsc_ns: Option<f64>,
}

/// Runs `cvmprobe.mode=bench` under the built-in VMM on `platform`.
pub fn micro(kernel: &Path, platform: PlatformKind) -> Result<Vec<Micro>, String> {
    let cfg = vm_config(kernel, Some("bench"), platform);
    let r = vmm::run(&cfg, &mut |_| {}).map_err(|e| e.to_string())?;
    if !r.exit.passed() {
        return Err(format!("the bench run did not pass: {}", r.exit));
    }
    let serial = String::from_utf8_lossy(&r.serial);
    let mut out = Vec::new();
    for s in &r.bench {
        let (n, tsc) = guest_figures(&serial, s.id.name())
            .ok_or_else(|| format!("the guest printed no `# bench {}` line", s.id.name()))?;
        let nf = n as f64;
        out.push(Micro {
            id: s.id,
            n,
            exits_per_op: s.exits as f64 / nf,
            wall_ns: s.wall.as_secs_f64() * 1e9 / nf,
            tsc_ns: r.tsc_khz.map(|k| tsc as f64 * 1e6 / f64::from(k) / nf),
        });
    }
    Ok(out)
}

/// `n` and `tsc` from the guest's `# bench <name> n=<N> tsc=<cycles>` line.
fn guest_figures(serial: &str, name: &str) -> Option<(u64, u64)> {
    let prefix = format!("# bench {name} ");
    let line = serial
        .lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))?;
    let mut n = None;
    let mut tsc = None;
    for kv in line.split_whitespace() {
        match kv.split_once('=') {
            Some(("n", v)) => n = v.parse().ok(),
            Some(("tsc", v)) => tsc = v.parse().ok(),
            _ => {}
        }
    }
    Some((n?, tsc?))
}

/// Runs everything and renders the report; `Err` if a measured run did not pass.
pub fn run_all(kernel: &Path, opts: &BenchOptions) -> Result<String, String> {
    let runs = opts.runs.max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "start -> verdict, {runs} runs each (ms)            median      min      max"
    );
    let row = |out: &mut String, name: &str, s: &Stats| {
        let _ = writeln!(
            out,
            "  {name:<40} {:>8.1} {:>8.1} {:>8.1}",
            ms(s.median),
            ms(s.min),
            ms(s.max)
        );
    };
    let legacy = PlatformKind::Legacy;
    let b_empty = repeat(runs, || builtin_once(kernel, Some("empty"), legacy))?;
    row(&mut out, "built-in VMM, empty kernel", &b_empty);
    let b_full = repeat(runs, || builtin_once(kernel, None, legacy))?;
    row(&mut out, "built-in VMM, full legacy suite", &b_full);
    for p in [PlatformKind::Tdx, PlatformKind::SevEs] {
        let s = repeat(runs, || builtin_once(kernel, None, p))?;
        row(
            &mut out,
            &format!("built-in VMM, full suite on {}", vmm::sim_name(p)),
            &s,
        );
    }
    let base =
        |machine, accel, boot| QemuConfig::new(opts.qemu.clone(), machine, accel, kernel, boot);
    let pvh = base(Machine::Microvm, Accel::Kvm, Boot::Pvh);
    let q_empty = repeat(runs, || qemu_once(&pvh, Boot::Pvh, Some("empty")))?;
    row(&mut out, "QEMU PVH microvm/kvm, empty kernel", &q_empty);
    let q_full = repeat(runs, || qemu_once(&pvh, Boot::Pvh, None))?;
    row(&mut out, "QEMU PVH microvm/kvm, full legacy suite", &q_full);
    if opts.images {
        images::template(false).map_err(|e| e.to_string())?;
        let bios_tcg = base(Machine::Pc, Accel::Tcg, Boot::Bios);
        let s = repeat(runs, || qemu_once(&bios_tcg, Boot::Bios, None))?;
        row(&mut out, "QEMU BIOS image pc/tcg, full suite", &s);
        let bios_kvm = base(Machine::Pc, Accel::Kvm, Boot::Bios);
        let s = repeat(runs, || qemu_once(&bios_kvm, Boot::Bios, None))?;
        row(&mut out, "QEMU BIOS image pc/kvm, full suite", &s);
        let uefi = base(Machine::Pc, Accel::Tcg, Boot::Uefi);
        let s = repeat(runs, || qemu_once(&uefi, Boot::Uefi, None))?;
        row(&mut out, "QEMU UEFI image pc/tcg (OVMF), full suite", &s);
    }

    let mut all_micro = Vec::new();
    for p in PlatformKind::ALL {
        all_micro.push((p, micro(kernel, p)?));
    }
    let _ = writeln!(
        out,
        "\nguest microbenchmarks, built-in VMM (one run per platform, N iterations each)"
    );
    let _ = writeln!(
        out,
        "  {:<11} {:<16} {:>6} {:>9} {:>14} {:>14}",
        "platform", "loop", "N", "exits/op", "ns/op (host)", "ns/op (TSC)"
    );
    for (p, ms) in &all_micro {
        for m in ms {
            let tsc = m.tsc_ns.map_or("-".to_string(), |t| format!("{t:.0}"));
            let _ = writeln!(
                out,
                "  {:<11} {:<16} {:>6} {:>9.2} {:>14.0} {:>14}",
                vmm::sim_name(*p),
                m.id.name(),
                m.n,
                m.exits_per_op,
                m.wall_ns,
                tsc
            );
        }
    }
    let find = |p: PlatformKind, id| {
        all_micro
            .iter()
            .find(|(q, _)| *q == p)
            .and_then(|(_, ms)| ms.iter().find(|m| m.id == id).copied())
    };
    let get = |id| find(legacy, id).map(|m| m.wall_ns);
    let size = std::fs::metadata(kernel).map(|m| m.len()).unwrap_or(0);

    let _ = writeln!(out, "\nratios in this run (targets)");
    let target = |out: &mut String, name: &str, v: f64, limit: f64, unit: &str| {
        let ok = if v <= limit { "met" } else { "MISSED" };
        let _ = writeln!(out, "  {name:<48} {v:>7.2}{unit}  (<= {limit}{unit})  {ok}");
    };
    target(
        &mut out,
        "full suite / empty kernel, built-in VMM",
        ratio(b_full.median, b_empty.median),
        1.5,
        "x",
    );
    if let (Some(mr), Some(mw), Some(floor)) = (
        get(BenchId::ApiMmioRead),
        get(BenchId::ApiMmioWrite),
        get(BenchId::RawPioRead),
    ) {
        target(
            &mut out,
            "MMIO read through the API / raw port-IO floor",
            mr / floor,
            1.1,
            "x",
        );
        target(
            &mut out,
            "MMIO write through the API / raw port-IO floor",
            mw / floor,
            1.1,
            "x",
        );
    }
    for p in [PlatformKind::Tdx, PlatformKind::SevEs] {
        let name = vmm::sim_name(p);
        let floor = find(p, BenchId::TrapFloor);
        for (id, what) in [
            (BenchId::ApiMmioRead, "MMIO read"),
            (BenchId::ApiMmioWrite, "MMIO write"),
        ] {
            let Some(m) = find(p, id) else { continue };
            target(
                &mut out,
                &format!("{name}: exits per {what} through the API"),
                m.exits_per_op,
                1.0,
                "",
            );
            if let Some(f) = floor {
                target(
                    &mut out,
                    &format!("{name}: {what} / trap-exit floor"),
                    m.wall_ns / f.wall_ns,
                    1.2,
                    "x",
                );
            }
        }
    }
    target(
        &mut out,
        "built-in VMM / QEMU PVH, full suite",
        ratio(b_full.median, q_full.median),
        0.2,
        "x",
    );
    target(
        &mut out,
        "kernel ELF size",
        size as f64 / 1024.0,
        256.0,
        " KiB",
    );
    if let (Some(e), Some(floor)) = (get(BenchId::EmptyLoop), get(BenchId::RawPioRead)) {
        let _ = writeln!(
            out,
            "\n  context: one empty-loop iteration costs {:.0} ns of guest time ({:.0}% of a raw port-IO round trip):\n  guest ring-0 instructions are emulated on this host, so API instructions count, not just exits.",
            e,
            100.0 * e / floor
        );
    }
    Ok(out)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        let s = Stats::of(vec![
            Duration::from_millis(3),
            Duration::from_millis(1),
            Duration::from_millis(2),
        ]);
        assert_eq!(
            (s.median, s.min, s.max),
            (
                Duration::from_millis(2),
                Duration::from_millis(1),
                Duration::from_millis(3)
            )
        );
        let s = Stats::of(vec![Duration::from_millis(4), Duration::from_millis(2)]);
        assert_eq!(s.median, Duration::from_millis(3));
    }

    #[test]
    fn parses_guest_lines() {
        let serial = "KTAP version 1\n# bench raw_pio_read n=2000 tsc=5000000\n# bench api_pio_read n=2000 tsc=7\n";
        assert_eq!(
            guest_figures(serial, "raw_pio_read"),
            Some((2000, 5_000_000))
        );
        assert_eq!(guest_figures(serial, "api_mmio_read"), None);
    }
}
