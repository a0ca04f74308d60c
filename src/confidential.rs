//! Real confidential hosts: the QEMU command line that boots the payload in a TD or an SEV-ES
//! guest, and the host check that comes before it.
//!
//! QEMU starts TDX and SEV-ES guests only through firmware (TDVF, the SEV-capable OVMF), so
//! the payload is the UEFI application `cvmprobe.efi`, given with `-kernel` (OVMF runs a
//! PE/COFF EFI application given that way; `-append` reaches it as its load options). The
//! command lines follow QEMU's own documentation:
//! - TDX, `docs/system/i386/tdx.rst` (QEMU 10.1, the first release with TDX): `-object
//!   tdx-guest,id=tdx0`, `-machine ...,confidential-guest-support=tdx0`, `kernel-irqchip=split`
//!   ("kernel-irqchip must be split"), the TDVF firmware with `-bios`, `-cpu host`, `-accel kvm`.
//! - SEV-ES, `docs/system/i386/amd-memory-encryption.rst`: `-machine
//!   ...,confidential-guest-support=sev0`, `-object sev-guest,id=sev0,cbitpos=C,
//!   reduced-phys-bits=R,policy=0x5` (policy bit 2 "SEV-ES required", bit 0 no debug), C and R
//!   from the host's CPUID 0x8000001F EBX\[5:0\] and EBX\[11:6\], an in-kernel irqchip (QEMU's
//!   default), OVMF with `-bios`.
//!
//! Everything here is data in, data out: [`HostFacts`] is read once from the machine
//! ([`HostFacts::read`]), [`check`] names what is missing, [`qemu_args`] builds the line; the
//! tests feed synthetic facts.

use crate::qemu::shell_line;
use std::fmt;
use std::path::{Path, PathBuf};

/// The confidential platform to boot on a real host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Confidential {
    /// Intel TDX: a TD through TDVF.
    Tdx,
    /// AMD SEV-ES: an SEV-ES guest through OVMF.
    SevEs,
}

impl Confidential {
    /// `tdx` / `sev-es`, as `--confidential` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tdx => "tdx",
            Self::SevEs => "sev-es",
        }
    }

    /// The platform the guest must detect (`cvmprobe.platform=`).
    pub fn platform(self) -> protocol::platform::PlatformKind {
        match self {
            Self::Tdx => protocol::platform::PlatformKind::Tdx,
            Self::SevEs => protocol::platform::PlatformKind::SevEs,
        }
    }

    /// The KVM VM type QEMU asks for (Linux `arch/x86/include/uapi/asm/kvm.h`).
    pub fn vm_type(self) -> u32 {
        match self {
            Self::Tdx => KVM_X86_TDX_VM,
            Self::SevEs => KVM_X86_SEV_ES_VM,
        }
    }

    /// The first QEMU release that can start this guest: 10.1.0 for TDX (its
    /// `docs/system/i386/tdx.rst` and `tdx-guest` object arrived then), 6.0.0 for SEV-ES
    /// (policy bit 2 with KVM_SEV_ES_INIT).
    pub fn min_qemu(self) -> (u32, u32, u32) {
        match self {
            Self::Tdx => (10, 1, 0),
            Self::SevEs => (6, 0, 0),
        }
    }

    /// The kvm_intel / kvm_amd module parameter that must read `Y`.
    pub fn module_param(self) -> (&'static str, &'static str) {
        match self {
            Self::Tdx => ("kvm_intel", "tdx"),
            Self::SevEs => ("kvm_amd", "sev_es"),
        }
    }

    /// Where distributions install the firmware, in the order tried.
    pub fn firmware_candidates(self) -> &'static [&'static str] {
        match self {
            // TDVF: OVMF built with the IntelTdx platform (Ubuntu/Debian `ovmf` package,
            // Fedora `edk2-ovmf`).
            Self::Tdx => &[
                "/usr/share/ovmf/OVMF.inteltdx.fd",
                "/usr/share/edk2/ovmf/OVMF.inteltdx.fd",
                "/usr/share/qemu/OVMF.inteltdx.fd",
            ],
            // Any OvmfPkgX64 build since edk2-stable202008 runs SEV-ES guests; `-bios` needs
            // the combined code+vars image.
            Self::SevEs => &[
                "/usr/share/ovmf/OVMF.amdsev.fd",
                "/usr/share/edk2/ovmf/OVMF.amdsev.fd",
                "/usr/share/ovmf/OVMF.fd",
                "/usr/share/edk2/ovmf/OVMF.fd",
                "/usr/share/qemu/OVMF.fd",
            ],
        }
    }
}

/// `KVM_CAP_VM_TYPES` (Linux `include/uapi/linux/kvm.h`, v6.8): KVM_CHECK_EXTENSION returns the
/// bitmask of VM types this KVM can create.
pub const KVM_CAP_VM_TYPES: u32 = 235;
/// `KVM_X86_SEV_ES_VM` (uapi `asm/kvm.h`).
pub const KVM_X86_SEV_ES_VM: u32 = 3;
/// `KVM_X86_TDX_VM` (uapi `asm/kvm.h`, v6.16).
pub const KVM_X86_TDX_VM: u32 = 5;

/// SEV-ES guest policy for `sev-guest,policy=`: bit 0 NODBG, bit 2 ES ("SEV-ES required";
/// AMD SEV API spec, 3 "Guest Policy"; QEMU's example uses 0x5).
pub const SEV_ES_POLICY: u32 = 0x5;

/// CPUID 0x8000001F (AMD APM vol. 3 E.4.17): EAX bit 3 SEV-ES, EBX\[5:0\] C-bit position,
/// EBX\[11:6\] physical-address reduction.
const CPUID_SEV_LEAF: u32 = protocol::ghcb::CPUID_SEV_LEAF;

/// What the host offers a confidential guest, read once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// `/dev/kvm` opens, or why not.
    pub kvm: Result<(), String>,
    /// KVM_CHECK_EXTENSION(KVM_CAP_VM_TYPES): the bitmask, 0 when the capability is unknown.
    pub vm_types: u32,
    /// The KVM modules loaded (`kvm_intel`, `kvm_amd`, `kvm_pvm`, ...).
    pub kvm_modules: Vec<String>,
    /// The value of the platform's module parameter ([`Confidential::module_param`]).
    pub module_param: Option<String>,
    /// `qemu-system-x86_64 --version`, parsed, or why not.
    pub qemu: Result<(u32, u32, u32), String>,
    /// The firmware file to use, if one exists.
    pub firmware: Option<PathBuf>,
    /// CPUID 0x8000001F of the host: (SEV-ES supported, C-bit, reduced physical bits).
    pub sev: Option<(bool, u8, u8)>,
}

impl HostFacts {
    /// Reads the facts of this machine for `kind`, with the QEMU binary `qemu` and the firmware
    /// `firmware` (or the first of [`Confidential::firmware_candidates`] that exists).
    pub fn read(kind: Confidential, qemu: &Path, firmware: Option<&Path>) -> Self {
        let (module, param) = kind.module_param();
        let kvm_modules = ["kvm_intel", "kvm_amd", "kvm_pvm"]
            .into_iter()
            .filter(|m| Path::new("/sys/module").join(m).exists())
            .map(String::from)
            .collect();
        let firmware = match firmware {
            Some(f) => f.exists().then(|| f.to_path_buf()),
            None => kind
                .firmware_candidates()
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists()),
        };
        Self {
            kvm: vmm::kvm_available().map_err(|e| e.to_string()),
            vm_types: vm_types(),
            kvm_modules,
            module_param: std::fs::read_to_string(format!(
                "/sys/module/{module}/parameters/{param}"
            ))
            .ok()
            .map(|s| s.trim().to_string()),
            qemu: qemu_version(qemu),
            firmware,
            sev: host_sev(),
        }
    }
}

/// KVM_CHECK_EXTENSION(KVM_CAP_VM_TYPES) on /dev/kvm (0 if KVM does not open or knows no
/// such capability: KVM before v6.8 creates only the default VM type).
fn vm_types() -> u32 {
    vmm::check_extension(KVM_CAP_VM_TYPES).map_or(0, |v| v.max(0) as u32)
}

/// The host CPU's SEV leaf, if the CPU reports one.
fn host_sev() -> Option<(bool, u8, u8)> {
    use std::arch::x86_64::__cpuid;
    // `cpuid` is unprivileged and has no side effects.
    let max = __cpuid(0x8000_0000).eax;
    if max < CPUID_SEV_LEAF {
        return None;
    }
    let r = __cpuid(CPUID_SEV_LEAF);
    Some((
        r.eax & protocol::ghcb::CPUID_SEV_ES != 0,
        (r.ebx & 0x3f) as u8,
        ((r.ebx >> 6) & 0x3f) as u8,
    ))
}

/// The version `qemu --version` prints (`QEMU emulator version 7.2.22 (Debian ...)`).
pub fn qemu_version(qemu: &Path) -> Result<(u32, u32, u32), String> {
    let out = std::process::Command::new(qemu)
        .arg("--version")
        .output()
        .map_err(|e| format!("{} does not run ({e})", qemu.display()))?;
    parse_qemu_version(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| format!("{} printed no version", qemu.display()))
}

/// `major.minor.micro` after "version" in QEMU's `--version` line.
pub fn parse_qemu_version(text: &str) -> Option<(u32, u32, u32)> {
    let rest = text.split("version ").nth(1)?;
    let v: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut n = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((n.next()??, n.next()??, n.next().flatten().unwrap_or(0)))
}

/// One thing the host lacks, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// What is missing.
    pub what: String,
    /// How to get it.
    pub fix: String,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.what, self.fix)
    }
}

/// Everything `facts` lacks to boot a `kind` guest; empty when the host can.
pub fn check(kind: Confidential, facts: &HostFacts) -> Vec<Missing> {
    let mut m = Vec::new();
    let mut miss = |what: String, fix: &str| {
        m.push(Missing {
            what,
            fix: fix.to_string(),
        })
    };
    if let Err(e) = &facts.kvm {
        miss(format!("KVM: {e}"), "a KVM host is needed");
    }
    let (module, param) = kind.module_param();
    if !facts.kvm_modules.iter().any(|m| m == module) {
        let have = if facts.kvm_modules.is_empty() {
            "no KVM module".to_string()
        } else {
            facts.kvm_modules.join(", ")
        };
        miss(
            format!("{module} is not loaded (this host has {have})"),
            match kind {
                Confidential::Tdx => {
                    "an Intel host with TDX enabled in firmware and kvm_intel.tdx=1"
                }
                Confidential::SevEs => {
                    "an AMD EPYC host with SEV-ES enabled in firmware and kvm_amd.sev_es=1"
                }
            },
        );
    } else if facts.module_param.as_deref() != Some("Y") {
        miss(
            format!(
                "{module}.{param} is {}",
                facts
                    .module_param
                    .as_deref()
                    .map_or("absent".to_string(), |v| format!("`{v}`"))
            ),
            &format!("load {module} with {param}=1, after enabling it in the firmware"),
        );
    }
    if facts.vm_types & (1 << kind.vm_type()) == 0 {
        miss(
            format!(
                "KVM cannot create {} VMs (KVM_CAP_VM_TYPES = {:#x}, bit {} clear)",
                kind.name(),
                facts.vm_types,
                kind.vm_type()
            ),
            match kind {
                Confidential::Tdx => "Linux 6.16 or newer with TDX host support",
                Confidential::SevEs => "Linux 6.10 or newer with SEV-ES host support",
            },
        );
    }
    if kind == Confidential::SevEs && !facts.sev.is_some_and(|(es, _, _)| es) {
        miss(
            "the CPU reports no SEV-ES (CPUID 0x8000001F EAX bit 3)".into(),
            "an AMD EPYC CPU",
        );
    }
    let (a, b, c) = kind.min_qemu();
    match &facts.qemu {
        Ok(v) if *v >= (a, b, c) => {}
        Ok((x, y, z)) => miss(
            format!(
                "QEMU {x}.{y}.{z} cannot start {} guests (needs {a}.{b}.{c} or newer)",
                kind.name()
            ),
            "install a newer QEMU, or pass --qemu PATH",
        ),
        Err(e) => miss(
            format!("QEMU: {e}"),
            "install qemu-system-x86, or pass --qemu PATH",
        ),
    }
    if facts.firmware.is_none() {
        miss(
            format!(
                "no {} firmware (looked for {})",
                match kind {
                    Confidential::Tdx => "TDVF",
                    Confidential::SevEs => "SEV-capable OVMF",
                },
                kind.firmware_candidates().join(", ")
            ),
            "install the distribution's TDX/SEV OVMF build, or pass --ovmf PATH",
        );
    }
    m
}

/// What [`qemu_args`] needs besides the platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuPlan {
    /// The firmware file (`-bios`).
    pub firmware: PathBuf,
    /// The payload (`-kernel`), the UEFI application.
    pub payload: PathBuf,
    /// The payload's command line (`-append`).
    pub cmdline: String,
    /// SEV-ES: `cbitpos` and `reduced-phys-bits`.
    pub sev_bits: (u8, u8),
    /// Guest RAM in MiB.
    pub mem_mib: u64,
}

/// The QEMU arguments (without the binary) that boot `plan.payload` as a `kind` guest with its
/// serial port on stdio and the test devices the suites use.
pub fn qemu_args(kind: Confidential, plan: &QemuPlan) -> Vec<String> {
    let mut a: Vec<String> = vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()];
    match kind {
        Confidential::Tdx => {
            a.extend([
                "-machine".into(),
                "q35,kernel-irqchip=split,confidential-guest-support=tdx0".into(),
                "-object".into(),
                "tdx-guest,id=tdx0".into(),
            ]);
        }
        Confidential::SevEs => {
            let (c, r) = plan.sev_bits;
            a.extend([
                "-machine".into(),
                "q35,confidential-guest-support=sev0".into(),
                "-object".into(),
                format!(
                    "sev-guest,id=sev0,cbitpos={c},reduced-phys-bits={r},policy={SEV_ES_POLICY:#x}"
                ),
            ]);
        }
    }
    a.extend([
        "-bios".into(),
        plan.firmware.display().to_string(),
        "-m".into(),
        format!("{}M", plan.mem_mib),
        "-smp".into(),
        "1".into(),
    ]);
    a.extend(crate::qemu::HEADLESS.iter().map(|s| s.to_string()));
    a.extend([
        "-net".into(),
        "none".into(),
        "-kernel".into(),
        plan.payload.display().to_string(),
        "-append".into(),
        plan.cmdline.clone(),
        "-device".into(),
        format!(
            "isa-debug-exit,iobase={:#x},iosize=0x04",
            protocol::exit::EXIT_PORT
        ),
        "-device".into(),
        "pc-testdev".into(),
    ]);
    a
}

/// The SEV bits to put on the command line: the host's, or (no SEV on this host, for a dry run)
/// Milan's 47 and 1 as QEMU's documentation shows them, with a note saying so.
pub fn sev_bits(facts: &HostFacts) -> ((u8, u8), Option<&'static str>) {
    match facts.sev {
        Some((true, c, r)) => ((c, r), None),
        _ => (
            (protocol::ghcb::CBIT_MILAN, 1),
            Some(
                "this host reports no SEV: cbitpos=47 reduced-phys-bits=1 are QEMU's documented \
                 example (AMD EPYC 7003), not this host's",
            ),
        ),
    }
}

/// Guest RAM for a confidential guest (TDVF and OVMF want more than the kernel).
pub const MEM_MIB: u64 = 256;

/// `cvmprobe run --vmm qemu --confidential KIND` (the flags already checked by
/// `command::plan_run`; `req` is the run: filter, extra tokens, timeout, platform `KIND`):
/// checks the host, then boots `cvmprobe.efi` as a TD or SEV-ES guest with QEMU's documented
/// command line. The verdict is judged, as every run's, against what that command line
/// provides (`QemuConfig::environment` reads it). `None` with `--dry-run`: the command line
/// and the host check are printed, nothing is started. A host that lacks something is an error
/// naming every missing piece (exit 2).
pub fn run(
    a: &crate::cli::RunArgs,
    kind: Confidential,
    req: &crate::run::RunRequest,
) -> Result<Option<crate::report::Summary>, crate::command::CommandError> {
    use crate::command::CommandError;
    let facts = HostFacts::read(kind, &a.qemu, a.ovmf.as_deref());
    let missing = check(kind, &facts);
    let (sev, sev_note) = sev_bits(&facts);
    let firmware = facts
        .firmware
        .clone()
        .or_else(|| a.ovmf.clone())
        .unwrap_or_else(|| PathBuf::from(kind.firmware_candidates()[0]));
    let plan = QemuPlan {
        firmware,
        payload: PathBuf::from(crate::efi_images::EFI_APP),
        // No brand key: with `-cpu host` the brand string is the host's, so
        // cpuid.brand_string skips with the reason (the environment provides no brand).
        cmdline: crate::run::kernel_cmdline(req),
        sev_bits: if kind == Confidential::SevEs {
            sev
        } else {
            (0, 0)
        },
        mem_mib: MEM_MIB,
    };
    let args = qemu_args(kind, &plan);
    if a.dry_run {
        println!("{}", shell_line(&a.qemu, &args));
        if missing.is_empty() {
            println!(
                "# host check: this host has everything a {} guest needs",
                kind.name()
            );
        }
        for m in &missing {
            println!("# host check: missing: {m}");
        }
        if kind == Confidential::SevEs
            && let Some(n) = sev_note
        {
            println!("# note: {n}");
        }
        return Ok(None);
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|m| format!("  - {m}")).collect();
        return Err(CommandError::Host(format!(
            "this host cannot start {}, so nothing was started. Missing:\n{}\n(`--dry-run` \
             prints the QEMU command line anyway)",
            match kind {
                Confidential::Tdx => "a TD (Intel TDX)",
                Confidential::SevEs => "an AMD SEV-ES guest",
            },
            list.join("\n")
        )));
    }
    crate::efi_images::app().map_err(crate::images::ImageError::from)?;
    let cfg = crate::qemu::QemuConfig {
        binary: a.qemu.clone(),
        machine: crate::qemu::Machine::Pc,
        accel: crate::qemu::Accel::Kvm,
        media: crate::qemu::Media::Raw { args },
        cmdline: plan.cmdline.clone(),
        brand: String::new(),
        mem_mib: MEM_MIB,
    };
    eprintln!(
        "cvmprobe: booting cvmprobe.efi as a {} guest: {}",
        kind.name(),
        cfg.shell_line()
    );
    if req.verbose {
        for l in cfg.environment(req.platform).describe() {
            eprintln!("cvmprobe: {}: {l}", kind.name());
        }
    }
    // A KVM internal error is this run's result: no TCG rerun (TCG runs no TD or SEV-ES guest).
    let mut result = crate::run::run_qemu(req, &cfg)?;
    result.summary.environment = format!("qemu q35/kvm, {} guest, cvmprobe.efi", kind.name());
    Ok(Some(result.summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(kind: Confidential) -> HostFacts {
        let (module, _) = kind.module_param();
        HostFacts {
            kvm: Ok(()),
            vm_types: 1 | 1 << kind.vm_type(),
            kvm_modules: vec![module.into()],
            module_param: Some("Y".into()),
            qemu: Ok((10, 1, 2)),
            firmware: Some("/fw.fd".into()),
            sev: Some((true, 51, 1)),
        }
    }

    #[test]
    fn a_ready_host_lacks_nothing() {
        for k in [Confidential::Tdx, Confidential::SevEs] {
            assert_eq!(check(k, &ready(k)), vec![], "{k:?}");
        }
    }

    #[test]
    fn each_missing_piece_is_named() {
        let k = Confidential::Tdx;
        let mut f = ready(k);
        f.vm_types = 1;
        let m = check(k, &f);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].what.contains("cannot create tdx VMs"), "{}", m[0]);
        let mut f = ready(k);
        f.module_param = Some("N".into());
        assert!(check(k, &f)[0].what.contains("kvm_intel.tdx is `N`"));
        let mut f = ready(k);
        f.qemu = Ok((9, 2, 0));
        assert!(
            check(k, &f)[0]
                .what
                .contains("QEMU 9.2.0 cannot start tdx guests (needs 10.1.0")
        );
        let mut f = ready(Confidential::SevEs);
        f.sev = Some((false, 47, 5));
        assert!(check(Confidential::SevEs, &f)[0].what.contains("no SEV-ES"));
        let mut f = ready(Confidential::SevEs);
        f.firmware = None;
        assert!(
            check(Confidential::SevEs, &f)[0]
                .what
                .contains("no SEV-capable OVMF firmware")
        );
    }

    #[test]
    fn a_host_like_this_ci_machine_lacks_everything() {
        // Software-nested KVM (kvm_pvm), Debian's QEMU 7.2 and OVMF 2022.11 without TDVF.
        let f = HostFacts {
            kvm: Ok(()),
            vm_types: 1,
            kvm_modules: vec!["kvm_pvm".into()],
            module_param: None,
            qemu: Ok((7, 2, 22)),
            firmware: None,
            sev: None,
        };
        let m = check(Confidential::Tdx, &f);
        let text: Vec<String> = m.iter().map(ToString::to_string).collect();
        assert_eq!(m.len(), 4, "{text:#?}");
        assert!(text[0].starts_with("kvm_intel is not loaded (this host has kvm_pvm)"));
        // QEMU 7.2 can start SEV-ES guests: everything else is missing.
        let m = check(Confidential::SevEs, &f);
        assert_eq!(m.len(), 4, "{m:#?}");
        assert!(m.iter().all(|m| !m.what.contains("QEMU")), "{m:#?}");
    }

    #[test]
    fn qemu_lines_carry_what_the_docs_require() {
        let plan = QemuPlan {
            firmware: "/fw/OVMF.inteltdx.fd".into(),
            payload: "/p/cvmprobe.efi".into(),
            cmdline: "cvmprobe.platform=tdx".into(),
            sev_bits: (51, 1),
            mem_mib: 256,
        };
        let tdx = qemu_args(Confidential::Tdx, &plan).join(" ");
        for want in [
            "-accel kvm",
            "-cpu host",
            "kernel-irqchip=split",
            "confidential-guest-support=tdx0",
            "-object tdx-guest,id=tdx0",
            "-bios /fw/OVMF.inteltdx.fd",
            "-kernel /p/cvmprobe.efi",
            "-append cvmprobe.platform=tdx",
            "isa-debug-exit,iobase=0xf4",
        ] {
            assert!(tdx.contains(want), "{want}: {tdx}");
        }
        let sev = qemu_args(Confidential::SevEs, &plan).join(" ");
        for want in [
            "confidential-guest-support=sev0",
            "-object sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x5",
        ] {
            assert!(sev.contains(want), "{want}: {sev}");
        }
        assert!(
            !sev.contains("kernel-irqchip=split"),
            "SEV-ES needs the in-kernel irqchip"
        );
    }

    #[test]
    fn versions_and_shell_quoting() {
        assert_eq!(
            parse_qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)\n"),
            Some((7, 2, 22))
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 10.1\n"),
            Some((10, 1, 0))
        );
        assert_eq!(parse_qemu_version("nonsense"), None);
        let l = shell_line(Path::new("qemu"), &["-append".into(), "a=1 b='x'".into()]);
        assert_eq!(l, r"qemu -append 'a=1 b='\''x'\'''");
        let no_sev = HostFacts {
            sev: None,
            ..ready(Confidential::SevEs)
        };
        assert_eq!(sev_bits(&no_sev).0, (47, 1));
        assert!(sev_bits(&no_sev).1.is_some());
    }
}
