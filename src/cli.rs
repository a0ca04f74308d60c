//! Command-line interface definitions (clap).

use crate::qemu::{Accel, Boot, Machine};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Runs the cvmprobe guest kernel and reads its KTAP verdict.
#[derive(Debug, Parser)]
#[command(name = "cvmprobe", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (`run` when omitted).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `run`, accepted without the subcommand name.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot the guest, run its test tables, print the verdict (the default).
    Run(RunArgs),
    /// List every suite and case, with the platforms that run them.
    List(ListArgs),
    /// Read a KTAP log (file or `-` for stdin) and print the same summary and exit code.
    Parse(ParseArgs),
    /// Measure start-to-verdict times and guest microbenchmarks (prints figures).
    Bench(BenchArgs),
    /// Run the guest under hostile simulated hosts, seed after seed, and count lies told,
    /// caught and missed, crashes and hangs.
    FuzzHost(FuzzHostArgs),
    /// Build the KVM selftest that runs the test tables as kvm_util guest code
    /// (selftest/cvmprobe_test.c) against a kernel tree, run it, print the verdict.
    Selftest(SelftestArgs),
}

/// Which kvm_util VM type the selftest creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SelftestPlatform {
    /// A normal VM.
    Legacy,
    /// An SEV-ES VM (`vm_sev_create_with_one_vcpu`): needs SEV-ES hardware.
    SevEs,
    /// A TD: needs a tree with the TDX selftests and TDX hardware.
    Tdx,
    /// The three in turn; those the host or the tree lacks are reported skipped.
    All,
}

/// Options of `selftest`.
#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// The kernel tree to build against (default: Debian's linux-source-6.12 package,
    /// /usr/src/linux-source-6.12.tar.xz, unpacked in part under target/selftest/).
    #[arg(long, value_name = "DIR", env = "CVMPROBE_KSRC")]
    pub ksrc: Option<PathBuf>,
    /// The VM type(s).
    #[arg(long, value_enum, default_value = "all")]
    pub platform: SelftestPlatform,
    /// Cases to run (as `run --filter`).
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Extra guest command-line token, repeatable (as `run --append`, e.g.
    /// `cvmprobe.inject=undeclared-access@io.u32_roundtrip`).
    #[arg(long, value_name = "KEY=VALUE")]
    pub append: Vec<String>,
    /// The test device's seed (default: random, printed by the test).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Hang limit for each run of the test.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Show the test's output as it runs, and list every skipped case.
    #[arg(long, short)]
    pub verbose: bool,
}

/// Options of `fuzz-host`.
#[derive(Debug, Args)]
pub struct FuzzHostArgs {
    /// The simulated platform: tdx-sim, sev-es-sim, or all (both, alternating).
    #[arg(long, value_enum, default_value = "all")]
    pub platform: PlatformArg,
    /// Runs (seeds) to do.
    #[arg(long, default_value_t = 20)]
    pub runs: u64,
    /// First seed; run i uses seed + i (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Probability that an eligible answer is a lie.
    #[arg(long, default_value_t = vmm::sim::hostile::HostileConfig::DEFAULT_RATE, value_parser = parse_probability)]
    pub lie_rate: f64,
    /// Runs at a time (default: the number of CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Hang limit per run.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Cases to run (as `run --filter`).
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Extra kernel command-line token, repeatable (as `run --append`).
    #[arg(long, value_name = "KEY=VALUE")]
    pub append: Vec<String>,
    /// The vCPU's physical-address width (as `run --phys-bits`).
    #[arg(long, value_name = "N", value_parser = parse_phys_bits)]
    pub phys_bits: Option<u8>,
    /// The KVM release the simulated platforms answer as (as `run --kvm`).
    #[arg(long, value_name = "PROFILE", value_parser = parse_kvm)]
    pub kvm: Option<protocol::kvm::KvmProfile>,
}

/// Options of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Runs per start-to-verdict figure (at least 5).
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Skip the BIOS and UEFI image boots (the slowest part: about two minutes).
    #[arg(long)]
    pub no_images: bool,
    /// Skip the single-stepped runs that count the guest's instructions per request and per
    /// suite (about a minute).
    #[arg(long)]
    pub no_count: bool,
    /// The QEMU binary.
    #[arg(
        long,
        value_name = "PATH",
        env = "CVMPROBE_QEMU",
        default_value = "qemu-system-x86_64"
    )]
    pub qemu: PathBuf,
    /// Extra kernel command-line token for every measured run, repeatable (as `run
    /// --append`; the tests use it to make one platform fail).
    #[arg(long, value_name = "KEY=VALUE")]
    pub append: Vec<String>,
}

/// Which platform the guest runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlatformArg {
    /// A plain VM (built-in VMM or QEMU).
    Legacy,
    /// Intel TDX simulated on plain KVM by the built-in VMM.
    TdxSim,
    /// AMD SEV-ES simulated on plain KVM by the built-in VMM.
    SevEsSim,
    /// legacy, tdx-sim and sev-es-sim one after the other, one verdict each.
    All,
}

impl PlatformArg {
    /// The platforms to run, in order.
    pub fn kinds(self) -> Vec<protocol::platform::PlatformKind> {
        use protocol::platform::PlatformKind;
        match self {
            PlatformArg::Legacy => vec![PlatformKind::Legacy],
            PlatformArg::TdxSim => vec![PlatformKind::Tdx],
            PlatformArg::SevEsSim => vec![PlatformKind::SevEs],
            PlatformArg::All => PlatformKind::ALL.to_vec(),
        }
    }
}

/// Which virtual machine monitor runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VmmArg {
    /// cvmprobe's own KVM VMM: starts in milliseconds, checks every test-device access.
    Builtin,
    /// QEMU (`--machine`, `--accel`, `--qemu` apply).
    Qemu,
}

/// Options of `run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// The VMM (default: builtin when /dev/kvm opens, else QEMU with TCG).
    #[arg(long, value_enum)]
    pub vmm: Option<VmmArg>,
    /// Platform the guest runs as: tdx-sim and sev-es-sim are the built-in VMM's simulated
    /// TDX and SEV-ES hosts; `all` runs the three in turn. Default: every platform this host
    /// can run (all three with /dev/kvm; legacy under QEMU without it or with QEMU options).
    #[arg(long, value_enum)]
    pub platform: Option<PlatformArg>,
    /// How the guest boots: the ELF through PVH; the BIOS/UEFI disk image through firmware
    /// (QEMU `-M pc`); cvmprobe.efi through OVMF with -kernel (efi) or from an ESP image (esp);
    /// or the built-in VMM's rebuild of the firmware's UEFI hand-off (efi-handoff).
    #[arg(long, value_enum, default_value = "pvh")]
    pub boot: Boot,
    /// OVMF code file for --boot uefi|efi|esp (the variable store is the sibling OVMF_VARS
    /// file); with --confidential the firmware given to `-bios` (TDVF, the SEV OVMF).
    #[arg(long, value_name = "PATH", env = "CVMPROBE_OVMF")]
    pub ovmf: Option<PathBuf>,
    /// Accelerator for QEMU (default: kvm when /dev/kvm opens, else tcg). Implies --vmm qemu.
    #[arg(long, value_enum)]
    pub accel: Option<Accel>,
    /// QEMU machine model (default: microvm for PVH, pc for disk images). Implies --vmm qemu.
    #[arg(long, value_enum)]
    pub machine: Option<Machine>,
    /// When QEMU stops on a KVM internal error, run again under TCG (the verdict is then
    /// TCG's, and says so). Without it a KVM internal error is the run's result. Implies
    /// --vmm qemu.
    #[arg(long)]
    pub tcg_fallback: bool,
    /// Cases to run: comma-separated `suite` or `suite.case` patterns, `*` as wildcard
    /// (e.g. `mmio,io.u8_*`). Default: all.
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Hang limit for the whole run (`30`, `30s`, `500ms`, `2m`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Copy the guest's serial output to stdout as it arrives, list every skipped case (not
    /// only the reasons), and say what the host set up.
    #[arg(long, short)]
    pub verbose: bool,
    /// The QEMU binary.
    #[arg(
        long,
        value_name = "PATH",
        env = "CVMPROBE_QEMU",
        default_value = "qemu-system-x86_64"
    )]
    pub qemu: PathBuf,
    /// Extra kernel command-line token, repeatable (e.g. `--append cvmprobe.inject=panic`,
    /// the test-only fault injection).
    #[arg(long, value_name = "KEY=VALUE")]
    pub append: Vec<String>,
    /// Run under a hostile host that lies at a seeded random subset of answers (tdx-sim and
    /// sev-es-sim); the verdict is then whether the guest caught every lie and nothing else.
    #[arg(long, value_name = "SEED")]
    pub hostile: Option<u64>,
    /// With --hostile: probability that an eligible answer is a lie.
    #[arg(long, default_value_t = vmm::sim::hostile::HostileConfig::DEFAULT_RATE, requires = "hostile", value_parser = parse_probability)]
    pub lie_rate: f64,
    /// Built-in VMM: the KVM release the simulated platforms answer as (6.10, 6.11, 6.16,
    /// current; see README "KVM versions"); the guest is told it and expects exactly its
    /// answers. TDX needs 6.16 or current.
    #[arg(long, value_name = "PROFILE", value_parser = parse_kvm)]
    pub kvm: Option<protocol::kvm::KvmProfile>,
    /// Built-in VMM: give the vCPU N physical-address bits (36-52, at most the host's)
    /// instead of the host's, as a narrower host would. The simulated platforms place their
    /// shared bit / C-bit below it (tdx-sim GPAW = N below 48, non-architectural).
    #[arg(long, value_name = "N", value_parser = parse_phys_bits)]
    pub phys_bits: Option<u8>,
    /// Boot cvmprobe.efi as a real TD (tdx) or SEV-ES guest with QEMU's documented command
    /// line; the host is checked first and what it lacks is named (exit 2). Implies --vmm qemu.
    #[arg(long, value_enum)]
    pub confidential: Option<crate::confidential::Confidential>,
    /// With --confidential: print the QEMU command line and the host check, start nothing.
    #[arg(long, requires = "confidential")]
    pub dry_run: bool,
}

/// Options of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only cases selected by this filter.
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Print only `suite.case` names, one per line.
    #[arg(long)]
    pub names: bool,
}

/// Options of `parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The KTAP log, or `-` for standard input.
    pub file: String,
    /// Write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// List every skipped test (not only the reasons).
    #[arg(long, short)]
    pub verbose: bool,
}

/// Parses a probability, 0 to 1 (`--lie-rate`).
pub fn parse_probability(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "`{s}` is not a probability: use a number from 0 to 1"
        )),
    }
}

/// Parses a KVM profile name (`--kvm`).
pub fn parse_kvm(s: &str) -> Result<protocol::kvm::KvmProfile, String> {
    use protocol::kvm::KvmProfile;
    KvmProfile::parse(s.trim()).ok_or_else(|| {
        format!(
            "`{s}` is not a KVM profile: use one of {}",
            KvmProfile::ALL.map(|p| p.name()).join(", ")
        )
    })
}

/// Parses a vCPU physical-address width the simulated platforms support (36-52). Whether the
/// host holds it is checked when the VM is made.
pub fn parse_phys_bits(s: &str) -> Result<u8, String> {
    use protocol::platform::{PHYS_BITS_MAX, PHYS_BITS_MIN};
    match s.trim().parse::<u8>() {
        Ok(b) if (PHYS_BITS_MIN..=PHYS_BITS_MAX).contains(&b) => Ok(b),
        _ => Err(format!(
            "`{s}` is not a physical-address width: use a number from {PHYS_BITS_MIN} to \
             {PHYS_BITS_MAX}"
        )),
    }
}

/// Parses `30`, `30s`, `1.5s`, `500ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: use e.g. 30, 30s, 500ms or 2m"))?;
    let secs = match unit {
        "s" => v,
        "ms" => v / 1000.0,
        "m" => v * 60.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s or m)")),
    };
    if !(secs > 0.0 && secs < 86_400.0) {
        return Err(format!("`{s}`: the timeout must be between 0 and 24 hours"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_probability("0.05"), Ok(0.05));
        assert_eq!(parse_probability("1"), Ok(1.0));
        assert!(parse_probability("1.5").is_err());
        assert!(parse_probability("-0.1").is_err());
        assert!(parse_probability("NaN").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["cvmprobe", "--filter", "io", "--accel", "tcg"]).unwrap();
        assert!(c.command.is_none());
        assert_eq!(c.run.filter, "io");
        assert!(Cli::try_parse_from(["cvmprobe", "--accel", "hvf"]).is_err());
        let c = Cli::try_parse_from(["cvmprobe", "--platform", "all"]).unwrap();
        assert_eq!(c.run.platform.map(PlatformArg::kinds).unwrap().len(), 3);
        let c = Cli::try_parse_from(["cvmprobe", "--platform", "sev-es-sim"]).unwrap();
        assert_eq!(
            c.run.platform.map(PlatformArg::kinds).unwrap(),
            [protocol::platform::PlatformKind::SevEs]
        );
        let c = Cli::try_parse_from(["cvmprobe"]).unwrap();
        assert_eq!(
            c.run.platform, None,
            "no default: every platform the host can run"
        );
        assert!(!c.run.tcg_fallback);
        assert!(Cli::try_parse_from(["cvmprobe", "--platform", "sev"]).is_err());
        let c = Cli::try_parse_from(["cvmprobe", "--phys-bits", "46"]).unwrap();
        assert_eq!(c.run.phys_bits, Some(46));
        for bad in ["35", "53", "x", "-1"] {
            assert!(
                Cli::try_parse_from(["cvmprobe", "--phys-bits", bad]).is_err(),
                "{bad}"
            );
        }
        let c = Cli::try_parse_from(["cvmprobe", "--boot", "uefi"]).unwrap();
        assert_eq!(
            c.run.boot,
            crate::qemu::Boot::Esp,
            "uefi is the ESP image's older name"
        );
        let c = Cli::try_parse_from(["cvmprobe", "--boot", "efi-handoff"]).unwrap();
        assert_eq!(c.run.boot, crate::qemu::Boot::EfiHandoff);
        let c = Cli::try_parse_from([
            "cvmprobe",
            "run",
            "--vmm",
            "qemu",
            "--confidential",
            "sev-es",
            "--dry-run",
        ])
        .unwrap();
        let Some(Command::Run(r)) = c.command else {
            panic!("run")
        };
        assert_eq!(
            (r.confidential, r.dry_run),
            (Some(crate::confidential::Confidential::SevEs), true)
        );
        assert!(Cli::try_parse_from(["cvmprobe", "--confidential", "tdx"]).is_ok());
        assert!(Cli::try_parse_from(["cvmprobe", "--dry-run"]).is_err());
        let c = Cli::try_parse_from(["cvmprobe", "parse", "-"]).unwrap();
        assert!(matches!(c.command, Some(Command::Parse(_))));
    }
}
