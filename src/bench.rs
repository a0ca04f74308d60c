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
    /// Also boot the BIOS and ESP images (about two minutes on an emulated host).
    pub images: bool,
    /// The QEMU binary.
    pub qemu: std::path::PathBuf,
    /// Extra kernel command-line tokens for every measured run (a test's fault injection).
    pub append: Vec<String>,
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

fn request(mode: Option<&str>, append: &[String]) -> RunRequest {
    RunRequest {
        extra_cmdline: mode
            .map(|m| format!("cvmprobe.mode={m}"))
            .into_iter()
            .chain(append.iter().cloned())
            .collect(),
        timeout: Duration::from_secs(300),
        ..RunRequest::new(PlatformKind::Legacy)
    }
}

/// The built-in VMM's configuration for a benchmark run on `platform`.
fn vm_config(
    kernel: &Path,
    mode: Option<&str>,
    platform: PlatformKind,
    append: &[String],
) -> vmm::VmConfig {
    let req = RunRequest {
        platform,
        ..request(mode, append)
    };
    vmm::VmConfig {
        kernel: kernel.to_path_buf(),
        cmdline: run::kernel_cmdline(&req),
        mem_mib: vmm::DEFAULT_MEM_MIB,
        timeout: req.timeout,
        seed: None,
        platform: req.platform,
        hostile: None,
        phys_bits: None,
        kvm: req.kvm,
        boot: vmm::Boot::Pvh,
    }
}

/// One start-to-verdict run under the built-in VMM; the run must end in the guest's verdict.
fn builtin_once(
    kernel: &Path,
    mode: Option<&str>,
    platform: PlatformKind,
    append: &[String],
) -> Result<Duration, String> {
    let cfg = vm_config(kernel, mode, platform, append);
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
fn qemu_once(
    base: &QemuConfig,
    boot: Boot,
    mode: Option<&str>,
    append: &[String],
) -> Result<Duration, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let req = request(mode, append);
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
pub fn micro(
    kernel: &Path,
    platform: PlatformKind,
    append: &[String],
) -> Result<Vec<Micro>, String> {
    let cfg = vm_config(kernel, Some("bench"), platform, append);
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

/// The machine a bench run measured, for the report's first line: figures from different
/// hosts differ several-fold (the CPU, the address width and above all the KVM flavour, e.g.
/// a software-nested KVM emulating guest ring 0), so they are never compared blindly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineLine {
    /// `vendor_id` of /proc/cpuinfo.
    pub vendor: String,
    /// `model name` of /proc/cpuinfo.
    pub model: String,
    /// The widest vCPU physical-address width KVM supports here.
    pub phys_bits: Option<u8>,
    /// The KVM module loaded: kvm_intel, kvm_amd, kvm_pvm (software nested), ...
    pub kvm: String,
    /// The host kernel release.
    pub kernel: String,
}

/// KVM modules, in the order they are named when several are loaded, with what each is.
const KVM_MODULES: [(&str, &str); 3] = [
    ("kvm_intel", "VMX"),
    ("kvm_amd", "SVM"),
    ("kvm_pvm", "software nested, guest ring 0 emulated"),
];

impl MachineLine {
    /// This machine, read from /proc and /sys (fields that cannot be read say `unknown`).
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == name).then(|| v.trim().to_string())
                })
                .unwrap_or_else(|| "unknown".into())
        };
        let kvm: Vec<String> = KVM_MODULES
            .iter()
            .filter(|(m, _)| Path::new("/sys/module").join(m).exists())
            .map(|(m, what)| format!("{m} ({what})"))
            .collect();
        Self {
            vendor: field("vendor_id"),
            model: field("model name"),
            phys_bits: vmm::host_phys_bits().ok(),
            kvm: if kvm.is_empty() {
                "unknown".into()
            } else {
                kvm.join(", ")
            },
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |s| s.trim().to_string()),
        }
    }
}

impl std::fmt::Display for MachineLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "machine: {} {}, ", self.vendor, self.model)?;
        match self.phys_bits {
            Some(b) => write!(f, "{b}-bit physical addresses")?,
            None => write!(f, "physical-address width unknown")?,
        }
        write!(f, ", KVM {}, host kernel {}", self.kvm, self.kernel)
    }
}

/// A figure, or why it could not be measured.
type Figure<T> = Result<T, String>;

/// What `bench` measured: the report, and the figures that failed (also in the report, in
/// their place). A failed run never hides the others.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// The rendered report.
    pub text: String,
    /// One line per figure that could not be measured.
    pub failures: Vec<String>,
}

/// Runs everything and renders the report. A run that fails is reported as failed in its row
/// (and in [`BenchReport::failures`]); every other figure is still measured and printed.
pub fn run_all(kernel: &Path, opts: &BenchOptions) -> BenchReport {
    let runs = opts.runs.max(5);
    let mut out = String::new();
    let mut failures = Vec::new();
    let _ = writeln!(out, "{}", MachineLine::read());
    let _ = writeln!(
        out,
        "start -> verdict, {runs} runs each (ms)            median      min      max"
    );
    let mut row = |out: &mut String, name: &str, s: &Figure<Stats>| match s {
        Ok(s) => {
            let _ = writeln!(
                out,
                "  {name:<40} {:>8.1} {:>8.1} {:>8.1}",
                ms(s.median),
                ms(s.min),
                ms(s.max)
            );
        }
        Err(why) => {
            let _ = writeln!(out, "  {name:<40}   FAILED: {why}");
            failures.push(format!("{name}: {why}"));
        }
    };
    let legacy = PlatformKind::Legacy;
    let app = &opts.append[..];
    let b_empty = repeat(runs, || builtin_once(kernel, Some("empty"), legacy, app));
    row(&mut out, "built-in VMM, empty kernel", &b_empty);
    let b_full = repeat(runs, || builtin_once(kernel, None, legacy, app));
    row(&mut out, "built-in VMM, full legacy suite", &b_full);
    for p in [PlatformKind::Tdx, PlatformKind::SevEs] {
        let s = repeat(runs, || builtin_once(kernel, None, p, app));
        row(
            &mut out,
            &format!("built-in VMM, full suite on {}", vmm::sim_name(p)),
            &s,
        );
    }
    let base =
        |machine, accel, boot| QemuConfig::new(opts.qemu.clone(), machine, accel, kernel, boot);
    let pvh = base(Machine::Microvm, Accel::Kvm, Boot::Pvh);
    let q_empty = repeat(runs, || qemu_once(&pvh, Boot::Pvh, Some("empty"), app));
    row(&mut out, "QEMU PVH microvm/kvm, empty kernel", &q_empty);
    let q_full = repeat(runs, || qemu_once(&pvh, Boot::Pvh, None, app));
    row(&mut out, "QEMU PVH microvm/kvm, full legacy suite", &q_full);
    if opts.images {
        let made = images::template().map_err(|e| e.to_string());
        let image_run = |cfg: &QemuConfig, boot| {
            made.clone()
                .and_then(|_| repeat(runs, || qemu_once(cfg, boot, None, app)))
        };
        let bios_tcg = base(Machine::Pc, Accel::Tcg, Boot::Bios);
        let s = image_run(&bios_tcg, Boot::Bios);
        row(&mut out, "QEMU BIOS image pc/tcg, full suite", &s);
        let bios_kvm = base(Machine::Pc, Accel::Kvm, Boot::Bios);
        let s = image_run(&bios_kvm, Boot::Bios);
        row(&mut out, "QEMU BIOS image pc/kvm, full suite", &s);
        let esp = base(Machine::Pc, Accel::Tcg, Boot::Esp);
        let s = repeat(runs, || qemu_once(&esp, Boot::Esp, None, app));
        row(
            &mut out,
            "QEMU ESP image (cvmprobe.efi) pc/tcg (OVMF), full suite",
            &s,
        );
    }

    let all_micro: Vec<(PlatformKind, Figure<Vec<Micro>>)> = PlatformKind::ALL
        .into_iter()
        .map(|p| (p, micro(kernel, p, app)))
        .collect();
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
        let ms = match ms {
            Ok(ms) => ms,
            Err(why) => {
                let _ = writeln!(out, "  {:<11} FAILED: {why}", vmm::sim_name(*p));
                failures.push(format!("microbenchmarks on {}: {why}", vmm::sim_name(*p)));
                continue;
            }
        };
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
            .and_then(|(_, ms)| ms.as_ref().ok()?.iter().find(|m| m.id == id).copied())
    };
    let get = |id| find(legacy, id).map(|m| m.wall_ns);
    let size = std::fs::metadata(kernel).map(|m| m.len()).unwrap_or(0);

    let _ = writeln!(out, "\nratios in this run (targets)");
    // A ratio whose figures failed is listed as not measured, so the target list stays whole.
    let target = |out: &mut String, name: &str, v: Option<f64>, limit: f64, unit: &str| {
        let _ = match v {
            Some(v) => {
                let ok = if v <= limit { "met" } else { "MISSED" };
                writeln!(out, "  {name:<48} {v:>7.2}{unit}  (<= {limit}{unit})  {ok}")
            }
            None => writeln!(
                out,
                "  {name:<48} {:>7}{unit}  (<= {limit}{unit})  not measured: a run above failed",
                "-"
            ),
        };
    };
    let both = |a: &Figure<Stats>, b: &Figure<Stats>| match (a, b) {
        (Ok(a), Ok(b)) => Some(ratio(a.median, b.median)),
        _ => None,
    };
    target(
        &mut out,
        "full suite / empty kernel, built-in VMM",
        both(&b_full, &b_empty),
        1.5,
        "x",
    );
    let floor = get(BenchId::RawPioRead);
    for (id, what) in [
        (
            BenchId::ApiMmioRead,
            "MMIO read through the API / raw port-IO floor",
        ),
        (
            BenchId::ApiMmioWrite,
            "MMIO write through the API / raw port-IO floor",
        ),
    ] {
        let v = get(id).zip(floor).map(|(m, f)| m / f);
        target(&mut out, what, v, 1.1, "x");
    }
    for p in [PlatformKind::Tdx, PlatformKind::SevEs] {
        let name = vmm::sim_name(p);
        let floor = find(p, BenchId::TrapFloor);
        for (id, what) in [
            (BenchId::ApiMmioRead, "MMIO read"),
            (BenchId::ApiMmioWrite, "MMIO write"),
        ] {
            let m = find(p, id);
            target(
                &mut out,
                &format!("{name}: exits per {what} through the API"),
                m.map(|m| m.exits_per_op),
                1.0,
                "",
            );
            target(
                &mut out,
                &format!("{name}: {what} / trap-exit floor"),
                m.zip(floor).map(|(m, f)| m.wall_ns / f.wall_ns),
                1.2,
                "x",
            );
        }
    }
    target(
        &mut out,
        "built-in VMM / QEMU PVH, full suite",
        both(&b_full, &q_full),
        0.2,
        "x",
    );
    target(
        &mut out,
        "kernel ELF size",
        Some(size as f64 / 1024.0),
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
    if !failures.is_empty() {
        let _ = writeln!(out, "\nfailed ({}):", failures.len());
        for f in &failures {
            let _ = writeln!(out, "  {f}");
        }
    }
    BenchReport {
        text: out,
        failures,
    }
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
