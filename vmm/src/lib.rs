//! cvmprobe's built-in KVM VMM: boots the guest kernel ELF through its PVH note on one vCPU
//! and runs it to a verdict.
//!
//! Built on rust-vmm crates: kvm-ioctls/kvm-bindings (KVM), vm-memory (guest RAM),
//! linux-loader (ELF + PVH note, `hvm_start_info`, memory map, command line), vm-superio
//! (the 16550 on COM1), vmm-sys-util (signals, ioctl numbers). Written here, because no crate
//! does it: the x86 register state for the PVH entry (`boot.rs`), the CPUID adjustments
//! ([`cpuid`]), a user-space local-APIC timer ([`devices::lapic`]), the exit port, the
//! bus routing, KVM_INTERRUPT injection and the vCPU kick (`vcpu/`, `kick.rs`), and the
//! cvmprobe test device ([`devices::testdev`]) whose access log is the host half of each
//! case's verdict ([`RunReport::case_checks`]).
//!
//! Shape (Firecracker-style), one responsibility per module:
//!
//! | module | what it is | touches KVM |
//! | --- | --- | --- |
//! | [`machine`], [`devices`] | the devices and the one function that turns a decoded [`machine::Exit`] into a [`machine::Control`] (unit-tested with synthetic exits) | no |
//! | [`sim`] | the pure models of the simulated platforms: the TDX module and KVM's TDVMCALL handling ([`sim::tdx`]), KVM's GHCB handling ([`sim::ghcb`]), raw instructions ([`sim::raw`]), KVM hypercalls, versions, address widths, the hostile host | no |
//! | [`platform`] | each simulated platform's KVM glue: breakpoints, MSR filter, sync regs, exception injection, serving the models' requests | yes |
//! | [`memslot`] | the memslot scenario in one place: its device, its page and host thread, the conversion of its MMIO exits into #VE/#VC | its slot and thread |
//! | `vcpu/` | vCPU 0: creation, KVM_RUN, exit routing, ioctl counting, guest-memory decoding, halting | yes |
//! | `kick.rs` | the signal that pulls the vCPU out of KVM_RUN, and the watchdog | signals |
//! | `boot.rs`, [`boot_efi`], [`cpuid`], [`layout`] | the PVH and UEFI hand-off entry states, the CPUID tables, the guest-physical layout | setup only |
//!
//! No in-kernel irqchip: HLT, APIC MMIO and interrupt injection all come to user space,
//! where the simulated platforms need them.
//!
//! ```no_run
//! let cfg = vmm::VmConfig::new("target/kernel/x86_64-unknown-none/release/cvmprobe-kernel");
//! let report = vmm::run(&cfg, &mut |bytes| print!("{}", String::from_utf8_lossy(bytes)))?;
//! assert_eq!(report.exit, vmm::ExitReason::GuestExit(0));
//! assert!(report.host_verdict_ok(), "{:?}", report.case_checks);
//! # Ok::<(), vmm::VmmError>(())
//! ```

mod boot;
pub mod boot_efi;
pub mod cpuid;
pub mod devices;
mod error;
pub mod floor;
mod kick;
pub mod layout;
pub mod machine;
pub mod memslot;
pub mod platform;
pub mod sim;
mod vcpu;

pub use devices::testdev::{BenchSample, CaseCheck, TestdevAccess};
pub use error::{Errno, VmmError};
pub use vcpu::{InstructionCounts, Ioctl, IoctlCounts, NOT_COUNTED};

use cpuid::Brand;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Cap, Kvm, VmFd};
use protocol::exit::GuestExit;
use protocol::platform::PlatformKind;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress,
};

/// Guest RAM when the caller does not choose.
pub const DEFAULT_MEM_MIB: u64 = 64;
/// Hang limit when the caller does not choose.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// GPA of the three-page TSS area KVM needs on Intel hosts without unrestricted guest
/// (KVM_SET_TSS_ADDRESS, Linux Documentation/virt/kvm/api.rst); below 4 GiB, clear of RAM
/// and of the MMIO windows. The same address as Firecracker's `KVM_TSS_ADDRESS`.
const TSS_ADDRESS: usize = 0xfffb_d000;

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct VmConfig {
    /// ELF with a PVH (XEN_ELFNOTE_PHYS32_ENTRY) note.
    pub kernel: PathBuf,
    /// Kernel command line (the PVH start info's); `cvmprobe.brand=` is appended.
    pub cmdline: String,
    /// Guest RAM in MiB, at GPA 0 ([`layout::MIN_MEM_MIB`]..=[`layout::MAX_MEM_MIB`]).
    pub mem_mib: u64,
    /// Hang limit for the whole run, setup included.
    pub timeout: Duration,
    /// Seed of the test device's host values (`protocol::testdev::host_value`); `None`
    /// picks a random one per run ([`RunReport::seed`] says which).
    pub seed: Option<u64>,
    /// The platform the VM presents: plain KVM ([`PlatformKind::Legacy`]) or the simulated
    /// TDX or SEV-ES host ([`platform`]).
    pub platform: PlatformKind,
    /// A hostile host (`sim::hostile`): lies at a seeded random subset of the simulated
    /// platform's answers. Only for tdx-sim and sev-es-sim.
    pub hostile: Option<sim::hostile::HostileConfig>,
    /// The vCPU's physical-address width (CPUID 0x80000008 EAX\[7:0\]); `None` keeps the
    /// host's (KVM_GET_SUPPORTED_CPUID). A narrower width stands in for a narrower host: the
    /// simulated platforms place their shared bit / C-bit from it ([`sim::address`]), and on
    /// hosts with shadow paging KVM makes the bits above it reserved in the guest's page
    /// tables. It must lie in [`protocol::platform::PHYS_BITS_MIN`]..= the host's width.
    pub phys_bits: Option<u8>,
    /// The KVM release the simulated platforms answer as ([`sim::profile`]); the guest is
    /// told it (`cvmprobe.kvm=`) and expects exactly its answers in the conformance suites.
    pub kvm: protocol::kvm::KvmProfile,
    /// How the kernel starts: its PVH entry, or the UEFI firmware's hand-off state
    /// ([`boot_efi`]).
    pub boot: Boot,
    /// Single-step the whole run and count the guest's instructions, per case and per bench
    /// loop ([`RunReport::instructions`], [`BenchSample::instructions`]). Slow (an exit per
    /// instruction): for finding where time goes, never for timing. The `halt` and `memslot`
    /// suites run unstepped ([`NOT_COUNTED`]).
    pub count_instructions: bool,
}

/// How the built-in VMM starts the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Boot {
    /// The PVH entry (32-bit, paging off, `hvm_start_info`).
    #[default]
    Pvh,
    /// The state UEFI firmware and `cvmprobe.efi` leave after ExitBootServices, rebuilt
    /// ([`boot_efi`]): 64-bit mode under firmware identity tables, the hand-off block in RDI,
    /// an empty IDT.
    EfiHandoff(boot_efi::HandoffOptions),
}

impl Boot {
    /// `pvh`, `efi-handoff` or `efi-handoff-la57`.
    pub fn name(self) -> &'static str {
        match self {
            Boot::Pvh => "pvh",
            Boot::EfiHandoff(o) if o.la57 => "efi-handoff-la57",
            Boot::EfiHandoff(_) => "efi-handoff",
        }
    }
}

/// The name of the platform the built-in VMM presents for `p`: `legacy`, `tdx-sim`,
/// `sev-es-sim`.
pub const fn sim_name(p: PlatformKind) -> &'static str {
    match p {
        PlatformKind::Legacy => "legacy",
        PlatformKind::Tdx => "tdx-sim",
        PlatformKind::SevEs => "sev-es-sim",
    }
}

impl VmConfig {
    /// `kernel` with an empty command line, [`DEFAULT_MEM_MIB`] and [`DEFAULT_TIMEOUT`].
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            cmdline: String::new(),
            mem_mib: DEFAULT_MEM_MIB,
            timeout: DEFAULT_TIMEOUT,
            seed: None,
            platform: PlatformKind::Legacy,
            hostile: None,
            phys_bits: None,
            kvm: protocol::kvm::KvmProfile::Current,
            boot: Boot::Pvh,
            count_instructions: false,
        }
    }

    fn validate(&self) -> Result<(), VmmError> {
        if !(layout::MIN_MEM_MIB..=layout::MAX_MEM_MIB).contains(&self.mem_mib) {
            return Err(VmmError::Config(format!(
                "mem_mib {} is outside {}..={}",
                self.mem_mib,
                layout::MIN_MEM_MIB,
                layout::MAX_MEM_MIB
            )));
        }
        if self.timeout.is_zero() {
            return Err(VmmError::Config("timeout is zero".into()));
        }
        if self.platform == PlatformKind::Tdx && !self.kvm.has_tdx() {
            return Err(VmmError::Config(
                sim::profile::ProfileError::NoTdx(self.kvm.name()).to_string(),
            ));
        }
        if let Some(h) = &self.hostile {
            if self.platform == PlatformKind::Legacy {
                return Err(VmmError::Config(
                    "a hostile host needs a simulated platform (tdx-sim or sev-es-sim): on a \
                     legacy VM the CPU itself answers"
                        .into(),
                ));
            }
            if !(0.0..=1.0).contains(&h.rate) {
                return Err(VmmError::Config(format!(
                    "lie rate {} is outside 0..=1",
                    h.rate
                )));
            }
        }
        Ok(())
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// The value the guest wrote to the exit port (`protocol::exit::EXIT_PORT`).
    GuestExit(u32),
    /// KVM_EXIT_SHUTDOWN (triple fault).
    Shutdown {
        /// Guest RIP at the exit.
        rip: u64,
    },
    /// KVM_EXIT_INTERNAL_ERROR (emulation failure etc.).
    InternalError {
        /// `internal.suberror` (1 = emulation failure).
        suberror: u32,
        /// Guest RIP at the exit.
        rip: u64,
        /// `internal.data`.
        data: Vec<u64>,
    },
    /// KVM_EXIT_FAIL_ENTRY.
    FailEntry {
        /// `hardware_entry_failure_reason`.
        reason: u64,
        /// Guest RIP.
        rip: u64,
    },
    /// Any other exit the VMM does not handle.
    Unexpected {
        /// The exit, described.
        exit: String,
        /// Guest RIP.
        rip: u64,
    },
    /// HLT with interrupts disabled, or with nothing armed that could wake the vCPU.
    HaltedForever {
        /// Guest RIP (after the HLT).
        rip: u64,
    },
    /// The run outlived [`VmConfig::timeout`]; the vCPU was kicked out and stopped.
    Timeout {
        /// Guest RIP where it was stopped.
        rip: u64,
    },
    /// On a simulated confidential platform the guest ran an instruction that real hardware
    /// would have turned into a #VE (TDX) or #VC (SEV-ES) and that the sim cannot raise it
    /// for: an access to GPA space with no memslot behind it (outside the memslot scenario,
    /// no single-stepping tells where a store began), or a port-IO / HLT exit whose
    /// instruction the VMM cannot find. (Raw IN/OUT/HLT it can find get the #VE/#VC, and a
    /// host finding: `RunReport::host_problems`.)
    RawInterception {
        /// The platform simulated.
        platform: &'static str,
        /// What the guest did (`IN from port 0x3f8, 1 byte`).
        what: String,
        /// Guest RIP at the exit (at the instruction for reads, after it for port and MMIO
        /// writes, as KVM reports them).
        rip: u64,
    },
    /// The simulated host stopped the VM the way KVM would (a TDX fatal-error report, an
    /// SEV termination request, a KVM_RUN error) or met a request it does not model.
    PlatformStop {
        /// What happened.
        detail: String,
        /// Guest RIP of the TDCALL or VMGEXIT.
        rip: u64,
    },
    /// A device model failed while handling an access.
    DeviceError {
        /// The device.
        device: &'static str,
        /// What went wrong.
        error: String,
        /// Guest RIP of the access.
        rip: u64,
    },
}

impl ExitReason {
    /// Whether the guest reported that every selected case passed.
    pub fn passed(&self) -> bool {
        *self == Self::GuestExit(protocol::exit::EXIT_PASS)
    }

    /// The guest RIP the VMM stopped at, for every ending but the guest's own verdict.
    pub fn rip(&self) -> Option<u64> {
        match *self {
            Self::GuestExit(_) => None,
            Self::Shutdown { rip }
            | Self::InternalError { rip, .. }
            | Self::FailEntry { rip, .. }
            | Self::Unexpected { rip, .. }
            | Self::HaltedForever { rip }
            | Self::Timeout { rip }
            | Self::RawInterception { rip, .. }
            | Self::PlatformStop { rip, .. }
            | Self::DeviceError { rip, .. } => Some(rip),
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GuestExit(v) => {
                let what = match GuestExit::from_port_value(*v) {
                    GuestExit::Pass => "all selected cases passed",
                    GuestExit::Fail => "some cases failed",
                    GuestExit::Bail => "the guest bailed out",
                    GuestExit::Other(_) => "unknown exit code",
                };
                write!(f, "guest exit {v} ({what})")
            }
            Self::Shutdown { rip } => write!(f, "triple fault (KVM_EXIT_SHUTDOWN) at RIP {rip:#x}"),
            Self::InternalError {
                suberror,
                rip,
                data,
            } => {
                let what = if *suberror == kvm_bindings::KVM_INTERNAL_ERROR_EMULATION {
                    " (emulation failure)"
                } else {
                    ""
                };
                write!(
                    f,
                    "KVM internal error, suberror {suberror}{what}, at RIP {rip:#x}, data ["
                )?;
                for (i, d) in data.iter().enumerate() {
                    write!(f, "{}{d:#x}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "]")
            }
            Self::FailEntry { reason, rip } => {
                write!(
                    f,
                    "VM entry failed, hardware reason {reason:#x}, at RIP {rip:#x}"
                )
            }
            Self::Unexpected { exit, rip } => write!(f, "unexpected exit {exit} at RIP {rip:#x}"),
            Self::HaltedForever { rip } => {
                write!(
                    f,
                    "HLT with nothing that can wake the vCPU, at RIP {rip:#x}"
                )
            }
            Self::Timeout { rip } => write!(f, "timed out, vCPU stopped at RIP {rip:#x}"),
            Self::RawInterception {
                platform,
                what,
                rip,
            } => write!(
                f,
                "raw {what} under {platform} at RIP {rip:#x}: on hardware this is a {}, the \
                 guest must go through its {} backend",
                if *platform == "tdx-sim" { "#VE" } else { "#VC" },
                if *platform == "tdx-sim" {
                    "TDG.VP.VMCALL"
                } else {
                    "GHCB"
                }
            ),
            Self::PlatformStop { detail, rip } => {
                write!(
                    f,
                    "the simulated host stopped the VM: {detail} (RIP {rip:#x})"
                )
            }
            Self::DeviceError { device, error, rip } => {
                write!(
                    f,
                    "device {device} failed: {error} (access at RIP {rip:#x})"
                )
            }
        }
    }
}

/// vCPU exits by kind, and a few events around them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitStats {
    /// KVM_EXIT_IO (string IO counts once).
    pub io: u64,
    /// KVM_EXIT_MMIO.
    pub mmio: u64,
    /// KVM_EXIT_HLT.
    pub hlt: u64,
    /// KVM_EXIT_DEBUG: the simulated platforms' TDCALL / VMGEXIT breakpoint.
    pub debug: u64,
    /// KVM_EXIT_X86_RDMSR / KVM_EXIT_X86_WRMSR (sev-es-sim's GHCB MSR and SEV_STATUS).
    pub msr: u64,
    /// KVM_EXIT_IRQ_WINDOW_OPEN.
    pub irq_window: u64,
    /// KVM_RUN interrupted by a signal (EINTR / KVM_EXIT_INTR).
    pub interrupted: u64,
    /// Every other exit (each of them ends the run).
    pub other: u64,
    /// All exits.
    pub total: u64,
    /// Interrupts injected with KVM_INTERRUPT (not exits).
    pub irqs_injected: u64,
    /// Port or MMIO accesses no device claimed (not exits: a string IO exit may hold several).
    pub unassigned: u64,
    /// Serial bytes KVM queued in the coalesced-I/O ring instead of exiting (not exits).
    pub coalesced: u64,
}

/// The outcome of [`run`].
///
/// The run passed only if the guest did (`exit.passed()`) *and* the host's checks did
/// ([`RunReport::host_verdict_ok`]): every announced case's accesses to the test device
/// matched its declaration, and the guest broke none of the device's protocol.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// How the run ended.
    pub exit: ExitReason,
    /// Everything the guest wrote to COM1.
    pub serial: Vec<u8>,
    /// Exit counts.
    pub stats: ExitStats,
    /// The vCPU ioctls the VMM made, by kind (setup included).
    pub ioctls: IoctlCounts,
    /// The guest's instructions, per case, if the run counted them
    /// ([`VmConfig::count_instructions`]).
    pub instructions: Option<InstructionCounts>,
    /// From the call to the verdict (setup included).
    pub wall: Duration,
    /// From the call to the first KVM_RUN.
    pub setup: Duration,
    /// The CPUID brand string chosen for the run.
    pub brand: String,
    /// The command line the guest got.
    pub cmdline: String,
    /// Seed of the test device's host values in this run.
    pub seed: u64,
    /// Every access to the test device, in order, up to
    /// [`devices::testdev::LOG_CAPACITY`].
    pub testdev_log: Vec<TestdevAccess>,
    /// Accesses to the test device after the log was full (counted, not kept).
    pub testdev_log_dropped: u64,
    /// The host half of each announced case's verdict, in announcement order.
    pub case_checks: Vec<CaseCheck>,
    /// Findings that belong to no case: unknown case ids, malformed announcements, unpaired
    /// bench markers.
    pub host_problems: Vec<String>,
    /// Host wall time and exit count of each guest bench loop (`cvmprobe.mode=bench`).
    pub bench: Vec<BenchSample>,
    /// The vCPU's TSC frequency (KVM_GET_TSC_KHZ), to turn the guest's TSC counts into time.
    pub tsc_khz: Option<u32>,
    /// Under a hostile host: what it answered and every lie it told.
    pub lies: Option<sim::hostile::LieLog>,
    /// GHCB bytes the guest left non-zero outside the fields it sent (sev-es-sim): private
    /// data that would have reached the host. One line per request, at most a few.
    pub ghcb_leaks: Vec<String>,
    /// Guest cases whose verdict a check of the host's own decides too (a case passes only
    /// if the guest said `ok` and this is `Ok`): sev-es-sim's check of the GHCB's mapping
    /// for [`protocol::ghcb::GHCB_MAPPING_CASE`].
    pub host_case_checks: Vec<HostCaseCheck>,
    /// The vCPU's physical-address width in this run.
    pub phys_bits: u8,
    /// What the simulated platform chose that no real part has at this width
    /// ([`sim::address::AddressWidth::brief`]), if anything.
    pub width_note: Option<String>,
}

impl RunReport {
    /// Whether every case check passed and the host found no problem.
    pub fn host_verdict_ok(&self) -> bool {
        self.host_problems.is_empty()
            && self.case_checks.iter().all(|c| c.result.is_ok())
            && self.host_case_checks.iter().all(|c| c.result.is_ok())
    }

    /// The check of `suite.case`, if the guest announced it (the last one if it did twice).
    pub fn case_check(&self, suite: &str, case: &str) -> Option<&CaseCheck> {
        self.case_checks
            .iter()
            .rev()
            .find(|c| c.suite == suite && c.case == case)
    }
}

/// A host check attached to one guest case (see [`RunReport::host_case_checks`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCaseCheck {
    /// Suite name.
    pub suite: &'static str,
    /// Case name.
    pub case: &'static str,
    /// `Err` says what the host found.
    pub result: Result<(), String>,
}

/// A seed for one run: std's per-process random keys (`RandomState`, seeded from the OS),
/// hashed with the time and a counter so runs in one process differ too.
fn random_seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::SystemTime;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one((n, t, std::process::id()))
}

/// The widest physical-address width KVM lets a vCPU have on this host (CPUID 0x80000008
/// EAX\[7:0\] of KVM_GET_SUPPORTED_CPUID): what [`VmConfig::phys_bits`] may go up to.
pub fn host_phys_bits() -> Result<u8, VmmError> {
    let kvm = open_kvm()?;
    Ok(cpuid::phys_bits(&supported_cpuid(&kvm)?))
}

/// KVM_CHECK_EXTENSION(`cap`) on /dev/kvm: the raw answer (0 for a capability this KVM does not
/// know). For capabilities kvm-ioctls has no name for, such as KVM_CAP_VM_TYPES.
pub fn check_extension(cap: u32) -> Result<i32, VmmError> {
    Ok(open_kvm()?.check_extension_raw(cap.into()))
}

/// KVM_GET_SUPPORTED_CPUID.
fn supported_cpuid(kvm: &Kvm) -> Result<kvm_bindings::CpuId, VmmError> {
    kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(VmmError::kvm("KVM_GET_SUPPORTED_CPUID"))
}

/// The vCPU width for `requested` on a host whose KVM supports `host_bits`: the host's when
/// nothing is requested, else the request if the sims support it and the host holds it.
fn address_width(
    requested: Option<u8>,
    host_bits: u8,
) -> Result<sim::address::AddressWidth, VmmError> {
    use sim::address::AddressWidth;
    match requested {
        None => AddressWidth::new(host_bits)
            .map_err(|e| VmmError::Config(format!("this host's vCPUs have {e}"))),
        Some(bits) if bits > host_bits => Err(VmmError::Config(format!(
            "a vCPU with {bits} physical-address bits is wider than this host's KVM supports \
             ({host_bits} bits, CPUID 0x80000008 of KVM_GET_SUPPORTED_CPUID)"
        ))),
        Some(bits) => AddressWidth::new(bits).map_err(|e| VmmError::Config(e.to_string())),
    }
}

/// Opens `/dev/kvm` and checks the API version; the error says what is wrong.
pub fn kvm_available() -> Result<(), VmmError> {
    open_kvm().map(drop)
}

fn open_kvm() -> Result<Kvm, VmmError> {
    let kvm = Kvm::new().map_err(|errno| VmmError::KvmUnavailable {
        hint: match errno.errno() {
            libc::ENOENT => {
                "the device does not exist: this host has no KVM (load kvm_intel or kvm_amd, \
                 or enable nested virtualisation for this VM)"
            }
            libc::EACCES | libc::EPERM => {
                "permission denied: run as root or as a member of the group that owns \
                 /dev/kvm (usually 'kvm')"
            }
            libc::ENXIO | libc::ENODEV => {
                "no KVM module answers the device (is virtualisation disabled in firmware?)"
            }
            _ => "unexpected error",
        },
        errno,
    })?;
    let version = kvm.get_api_version();
    if version != kvm_bindings::KVM_API_VERSION as i32 {
        return Err(VmmError::KvmApiVersion(version));
    }
    for (cap, name) in [
        (Cap::SyncRegs, "KVM_CAP_SYNC_REGS"),
        (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(VmmError::MissingCapability(name));
        }
    }
    Ok(kvm)
}

/// Gives the VM its RAM: one memslot per vm-memory region (one here, at GPA 0), mapped again
/// at each GPA offset in `aliases` after the first (the sev-es-sim C-bit alias): the same host
/// memory in another slot.
fn map_memory(vm: &VmFd, mem: &GuestMemoryMmap, aliases: &[u64]) -> Result<(), VmmError> {
    let regions = mem.iter().count();
    for (slot, (alias, region)) in aliases
        .iter()
        .flat_map(|&a| mem.iter().map(move |r| (a, r)))
        .enumerate()
    {
        debug_assert!(alias == 0 || slot >= regions);
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|e| VmmError::GuestMemory {
                mib: region.len() >> 20,
                reason: e.to_string(),
            })?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0 | alias,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the host range is the anonymous mapping vm-memory made for `region`, of
        // exactly `memory_size` bytes; `mem` outlives the VM (in `run`, the VM and vCPU are
        // dropped before the memory), so KVM never sees the range unmapped while it can use it.
        unsafe { vm.set_user_memory_region(r) }
            .map_err(VmmError::kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

/// Guest RAM made of `ranges` (`[start, end)` GPAs), one vm-memory region each.
fn guest_memory(ranges: &[(u64, u64)], mib: u64) -> Result<GuestMemoryMmap, VmmError> {
    let r: Vec<_> = ranges
        .iter()
        .map(|&(s, e)| (GuestAddress(s), (e - s) as usize))
        .collect();
    GuestMemoryMmap::<()>::from_ranges(&r).map_err(|e| VmmError::GuestMemory {
        mib,
        reason: e.to_string(),
    })
}

/// Boots `cfg.kernel` through its PVH entry and runs it until it writes its verdict to the
/// exit port, fails (triple fault, KVM error, unhandled exit), halts for good or exceeds
/// `cfg.timeout`. Serial output reaches `serial_out` as the guest writes it.
///
/// The vCPU runs on the calling thread; a watchdog thread lives for the run. The process
/// keeps a handler for SIGRTMIN (the vCPU kick) installed afterwards, and the calling thread
/// has that signal unblocked. Runs on different threads are independent.
pub fn run(cfg: &VmConfig, serial_out: &mut dyn FnMut(&[u8])) -> Result<RunReport, VmmError> {
    let start = Instant::now();
    cfg.validate()?;
    let kvm = open_kvm()?;

    let mem_size = cfg.mem_mib << 20;
    // The kernel ELF, read once: the sims' symbols, the hand-off boot's segments.
    let elf = std::fs::read(&cfg.kernel).map_err(|source| VmmError::KernelOpen {
        path: cfg.kernel.clone(),
        source,
    })?;
    let trap = platform::trap_sites(&cfg.kernel, &elf, cfg.platform)?;
    let supported = supported_cpuid(&kvm)?;
    let width = address_width(cfg.phys_bits, cpuid::phys_bits(&supported))?;
    let brand = Brand::for_run();
    let sim_bits = (cfg.platform != PlatformKind::Legacy).then_some(width.bits());
    // The sims tell the guest which KVM they play (`cvmprobe.kvm=`), first, so a test can
    // override it from the configured command line (the last occurrence wins).
    let base = match cfg.platform {
        PlatformKind::Legacy => cfg.cmdline.clone(),
        _ => format!(
            "{}={} {}",
            protocol::kvm::KEY_KVM,
            cfg.kvm.name(),
            cfg.cmdline
        ),
    };
    let cmdline = boot::cmdline(&base, &brand, sim_bits)?;
    let (mem, entry, handoff) = match cfg.boot {
        Boot::Pvh => {
            let mem = guest_memory(&[(0, mem_size)], cfg.mem_mib)?;
            let entry = boot::load_kernel(&mem, &cfg.kernel)?;
            boot::write_boot_info(&mem, mem_size, &cmdline)?;
            (mem, entry, None)
        }
        Boot::EfiHandoff(opts) => {
            let (mem, h) =
                boot_efi::prepare(cfg, &elf, &supported, width, mem_size, &cmdline, opts)?;
            (mem, h.rip, Some(h))
        }
    };

    let seed = cfg.seed.unwrap_or_else(random_seed);
    let vm = Arc::new(kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?);
    vm.set_tss_address(TSS_ADDRESS)
        .map_err(VmmError::kvm("KVM_SET_TSS_ADDR"))?;
    map_memory(&vm, &mem, &platform::ram_aliases(cfg.platform, width))?;
    let (page, page_region) =
        memslot::slot::map_page(&vm, seed, memslot::gpa_bits(cfg.platform, width))?;
    platform::prepare_vm(&vm, cfg.platform)?;
    let forced = cfg.phys_bits.map(|_| width);
    let mut vcpu = vcpu::Vcpu::create(
        &vm,
        supported,
        vcpu::VcpuSetup {
            entry,
            brand: &brand,
            platform: cfg.platform,
            width,
            forced_width: forced.is_some(),
            breakpoint: trap,
            handoff: handoff.as_ref(),
        },
    )?;
    if cfg.count_instructions {
        vcpu.count_instructions();
    }
    let (tamper, lie_log): (Box<dyn sim::Tamper>, _) = match cfg.hostile {
        Some(h) => {
            let shared_bit = match cfg.platform {
                PlatformKind::Tdx => width.tdx_shared_bit(),
                _ => 0,
            };
            let (t, log) = sim::hostile::Hostile::new(h, shared_bit);
            (Box::new(t), Some(log))
        }
        None => (Box::new(sim::Honest), None),
    };
    let mut host = platform::Host::for_kvm(cfg.platform, trap, tamper, width, cfg.kvm)
        .map_err(|e| VmmError::Config(e.to_string()))?;
    if let Some(h) = &handoff {
        // The firmware registered its own GHCB: the MSR holds its GPA at the hand-off.
        host.set_firmware_ghcb(h.firmware_ghcb)?;
    }
    // sev-es-sim checks the GHCB's mapping at every GHCB-page request (and the hostile host
    // watches the guest's reads of it).
    host.set_ghcb_va(platform::ghcb_address(&cfg.kernel, &elf, cfg.platform)?);
    let tsc_khz = vcpu.tsc_khz();

    kick::install()?;
    // SAFETY: `page` holds the memslot's memory and lives until the end of this function,
    // after the VM (dropped with `vm`'s last reference, which the thread gives back when it
    // is joined in `Scenario::finish`, before `page`).
    let thread = unsafe { memslot::MemslotThread::start(vm.clone(), page_region)? };
    let mut memslot = memslot::Scenario::new(Some(thread));
    let stop = Arc::new(AtomicBool::new(false));
    let watchdog =
        kick::Watchdog::start(cfg.timeout.saturating_sub(start.elapsed()), stop.clone())?;
    let apic = match cfg.platform {
        PlatformKind::Tdx => machine::ApicAccess::X2apicOnly,
        PlatformKind::Legacy | PlatformKind::SevEs => machine::ApicAccess::Xapic,
    };
    let mut machine = machine::Machine::new(mem.clone(), seed, apic);
    let mut stats = ExitStats::default();
    let setup = start.elapsed();
    let exit = vcpu::run(
        &mut vcpu,
        &mut machine,
        &mut host,
        &mut memslot,
        &mut stats,
        &stop,
        serial_out,
    );
    drop(watchdog);
    let memslot_problems = memslot.finish();
    let ioctls = vcpu.ioctls();
    let instructions = vcpu.instructions().cloned();
    drop(vcpu);
    drop(vm);
    drop(page);
    let exit = exit?;
    let wall = start.elapsed();
    stats.unassigned = machine.unassigned_accesses();
    stats.coalesced = machine.coalesced_writes();
    let mut testdev = machine.finish_testdev();
    testdev.problems.extend(memslot_problems);
    testdev.problems.extend(machine.memslot().take_problems());
    // Raw IN/OUT (and under tdx-sim, HLT): the platform raised #VE/#VC, and the guest broke
    // its rule.
    testdev.problems.extend(host.take_findings());
    if machine.memslot().cycle_open() {
        testdev
            .problems
            .push("memslot: a cycle was left open (DELETE without REPORT)".into());
    }
    // The host's own check of the GHCB's mapping: each finding fails the run, and its verdict
    // decides `platform.sev_es_ghcb_shared` with the guest's.
    let mut host_case_checks = Vec::new();
    if let Some(m) = host.take_ghcb_mapping() {
        testdev
            .problems
            .extend(m.findings.iter().map(|f| format!("GHCB mapping: {f}")));
        let (suite, case) = protocol::ghcb::GHCB_MAPPING_CASE;
        host_case_checks.push(HostCaseCheck {
            suite,
            case,
            result: m.verdict(),
        });
    }
    Ok(RunReport {
        exit,
        serial: machine.into_serial(),
        stats,
        ioctls,
        instructions,
        wall,
        setup,
        brand: brand.as_str().to_owned(),
        cmdline: cmdline
            .as_cstring()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default(),
        seed: testdev.seed,
        testdev_log: testdev.log,
        testdev_log_dropped: testdev.log_dropped,
        case_checks: testdev.case_checks,
        host_problems: testdev.problems,
        bench: testdev.bench,
        tsc_khz,
        lies: lie_log.map(|l| l.lock().map(|l| l.clone()).unwrap_or_default()),
        ghcb_leaks: host.take_ghcb_leaks(),
        host_case_checks,
        phys_bits: width.bits(),
        width_note: width.brief(cfg.platform),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_limits() {
        let mut c = VmConfig::new("k");
        assert!(c.validate().is_ok());
        c.mem_mib = 1;
        assert!(matches!(c.validate(), Err(VmmError::Config(_))));
        c.mem_mib = 4096;
        assert!(c.validate().is_err());
        c.mem_mib = 64;
        c.timeout = Duration::ZERO;
        assert!(c.validate().is_err());
    }

    #[test]
    fn exit_reasons_read_well() {
        assert!(ExitReason::GuestExit(0).passed());
        assert!(!ExitReason::GuestExit(1).passed());
        assert_eq!(
            ExitReason::GuestExit(2).to_string(),
            "guest exit 2 (the guest bailed out)"
        );
        let t = ExitReason::Timeout { rip: 0x10_1234 };
        assert_eq!(t.rip(), Some(0x10_1234));
        assert!(t.to_string().contains("0x101234"), "{t}");
        let e = ExitReason::InternalError {
            suberror: 1,
            rip: 1,
            data: vec![1, 0xcc],
        };
        assert_eq!(
            e.to_string(),
            "KVM internal error, suberror 1 (emulation failure), at RIP 0x1, data [0x1, 0xcc]"
        );
    }
}
