//! The simulated confidential platforms on plain KVM (DESIGN.md, "Simulated platforms"): how
//! the VM and vCPU are set up for tdx-sim and sev-es-sim, and the trap handler that hands
//! the guest's TDCALL or VMGEXIT to the pure host models in [`crate::sim`].
//!
//! - **tdx-sim**: Intel CPUID with leaf 0x21 = "IntelTDX    " and x2APIC
//!   ([`crate::cpuid::configure_tdx`]); the APIC in x2APIC mode (IA32_APIC_BASE.EXTD) with no
//!   xAPIC page, EFER as the TDX module enters a TD; a hardware breakpoint
//!   (KVM_SET_GUEST_DEBUG, DR0) on the guest's one TDCALL instruction, found by its ELF symbol
//!   ([`protocol::tdx::TDCALL_SYMBOL`]). At the breakpoint the registers come from kvm_run's
//!   sync regs, [`TdxModel`] plays the TDX module and KVM, the answer goes back through the
//!   sync regs and RIP moves past the 4-byte TDCALL.
//! - **sev-es-sim**: AMD CPUID with leaf 0x8000001F ([`crate::cpuid::configure_sev_es`]);
//!   KVM's FIX_HYPERCALL_INSN quirk off (it would rewrite VMGEXIT into VMCALL); a hardware
//!   breakpoint on the one VMGEXIT ([`protocol::ghcb::VMGEXIT_SYMBOL`]), where [`GhcbModel`]
//!   reads the GHCB from guest memory and answers like KVM. The guest maps private RAM with
//!   the C-bit, so the RAM memslot is mapped a second time at GPA | C-bit (same host memory).
//!
//! Both sims also give the raw intercepted instructions the guest runs itself what the real
//! platform gives them ([`crate::sim::raw`] decides, [`Host::raw`] serves): a second hardware
//! breakpoint (DR1) on the guest's one raw CPUID ([`protocol::x86::CPUID_SYMBOL`]: a raw
//! CPUID never leaves KVM by itself); an MSR filter whose default is DENY, with
//! KVM_CAP_X86_USER_SPACE_MSR, so every RDMSR/WRMSR exits (the GHCB MSR and SEV_STATUS to
//! [`GhcbModel::msr_read`] / [`GhcbModel::msr_write`]); raw IN/OUT (and HLT under tdx-sim)
//! exits. The exception hardware raises (#VE with the TDX module's #VE information, #VC with
//! its error code, #GP) is injected at the instruction, after a KVM_RUN with `immediate_exit`
//! completes the exit KVM had started; a raw IN/OUT/HLT, which the guest's design forbids,
//! is also a host finding ([`Host::take_findings`]) naming the RIP.
//!
//! Both the TDX shared bit and the SEV C-bit are ordinary address bits for plain KVM, so
//! they are placed below the vCPU's physical-address width ([`crate::sim::address`]): 47 on a
//! 48-bit vCPU, as on real parts, the top bit on narrower ones.
//!
//! What the models ask for ([`HostRequest`]) is served here exactly where KVM would exit to
//! user space or consult VMM-owned state: port and MMIO accesses go to the legacy devices of
//! [`Machine`]; CPUID comes from the table set with KVM_SET_CPUID2; MSR accesses KVM
//! emulates are done on the vCPU with KVM_GET_MSRS / KVM_SET_MSRS (so the guest sees exactly
//! the MSRs plain KVM keeps, and a missing MSR is refused), the x2APIC registers on the
//! user-space APIC (KVM's in-kernel APIC in a real TD); `TDVMCALL<HLT>` waits for the
//! local-APIC timer like a halted vCPU; MapGPA conversions and KVM_HC_MAP_GPA_RANGE are
//! accepted (the sims keep no private/shared state); every other KVM hypercall the models
//! answer themselves, as KVM does ([`crate::sim::kvm_hypercall`]).
//!
//! A raw MMIO exit outside the memslot scenario ends the run with
//! [`ExitReason::RawInterception`] naming the RIP: on hardware a #VE/#VC, but converting a
//! store needs the single-step bookkeeping only that scenario sets up (a known gap).

use crate::machine::{Control, CpuState, Machine};
use crate::sim::address::AddressWidth;
use crate::sim::ghcb::{GhcbConfig, GhcbModel, GhcbStep, MsrError};
use crate::sim::profile::{self, ProfileError};
use crate::sim::tdx::{TdxConfig, TdxModel, TdxStep, VeInfo};
use crate::sim::{GuestMemory, HostRequest, HostResult, MapGpaResult, MemoryError, Stop, Tamper};
use crate::vcpu::VcpuCtl;
use crate::{ExitReason, VmmError};
use kvm_bindings::{
    KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_USE_HW_BP, KVM_MSR_EXIT_REASON_FILTER,
    KVM_MSR_EXIT_REASON_INVAL, KVM_MSR_EXIT_REASON_UNKNOWN, KVM_X86_QUIRK_FIX_HYPERCALL_INSN,
    kvm_enable_cap, kvm_guest_debug, kvm_regs,
};
use kvm_ioctls::{MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VmFd};
use protocol::ghcb;
use protocol::kvm::KvmProfile;
use protocol::platform::PlatformKind;
use protocol::tdx::{self, TdcallRegs};
use protocol::testdev::Space;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// KVM_CAP_DISABLE_QUIRKS2 (Linux include/uapi/linux/kvm.h; not in kvm-bindings 0.14).
const KVM_CAP_DISABLE_QUIRKS2: u32 = 213;

/// Bytes of TDCALL (66 0F 01 CC) and of VMGEXIT (F3 0F 01 D9): RIP moves this far after the
/// host answered.
const TRAP_INSN_LEN: u64 = 4;

/// DR7 for the execution breakpoints in DR0 and DR1: G0 (bit 1) and G1 (bit 3), R/W = LEN =
/// 0 for both (execute, one byte), and bit 10, which reads as 1 (Intel SDM vol. 3B 18.2.4).
const DR7_EXEC_BP0: u64 = (1 << 1) | (1 << 10);
/// DR7.G1: the DR1 breakpoint (the raw CPUID) enabled.
const DR7_G1: u64 = 1 << 3;
/// DR6.B1: the DR1 breakpoint was hit (Intel SDM vol. 3B 18.2.3).
pub const DR6_B1: u64 = 1 << 1;

/// The function at a confidential platform's one trapping instruction.
fn trap_symbol(platform: PlatformKind) -> Option<&'static str> {
    match platform {
        PlatformKind::Legacy => None,
        PlatformKind::Tdx => Some(tdx::TDCALL_SYMBOL),
        PlatformKind::SevEs => Some(ghcb::VMGEXIT_SYMBOL),
    }
}

/// The guest instructions a simulated platform puts hardware breakpoints on: its one TDCALL
/// or VMGEXIT (DR0), and its one raw CPUID (DR1), which never leaves KVM by itself and must
/// get what the platform gives it (`crate::sim::raw`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapSites {
    /// TDCALL / VMGEXIT ([`tdx::TDCALL_SYMBOL`], [`ghcb::VMGEXIT_SYMBOL`]).
    pub trap: u64,
    /// The raw CPUID ([`protocol::x86::CPUID_SYMBOL`]).
    pub cpuid: u64,
}

/// The addresses of `platform`'s trapping instructions in the kernel ELF (the virtual
/// addresses they run at), or `None` for legacy.
pub fn trap_sites(kernel: &Path, platform: PlatformKind) -> Result<Option<TrapSites>, VmmError> {
    let Some(name) = trap_symbol(platform) else {
        return Ok(None);
    };
    let find = |name: &str, what: &str| {
        symbol_address(kernel, name)?.ok_or_else(|| {
            VmmError::Config(format!(
                "kernel {} has no symbol {name}: the {} simulation needs it to trap the \
                 guest's {what} (is the ELF stripped?)",
                kernel.display(),
                platform.name(),
            ))
        })
    };
    let trap = find(
        name,
        if platform == PlatformKind::Tdx {
            "TDCALL"
        } else {
            "VMGEXIT"
        },
    )?;
    let cpuid = find(protocol::x86::CPUID_SYMBOL, "raw CPUID")?;
    Ok(Some(TrapSites { trap, cpuid }))
}

/// The virtual address of the guest's GHCB page ([`ghcb::GHCB_SYMBOL`]) under sev-es-sim, if
/// the kernel exports it (only the hostile host's rewrite lie needs it).
pub fn ghcb_address(kernel: &Path, platform: PlatformKind) -> Result<Option<u64>, VmmError> {
    if platform != PlatformKind::SevEs {
        return Ok(None);
    }
    symbol_address(kernel, ghcb::GHCB_SYMBOL)
}

/// The address of symbol `name` in the kernel ELF.
fn symbol_address(kernel: &Path, name: &str) -> Result<Option<u64>, VmmError> {
    use object::{Object, ObjectSymbol};
    let bytes = std::fs::read(kernel).map_err(|source| VmmError::KernelOpen {
        path: kernel.to_owned(),
        source,
    })?;
    let file = object::File::parse(&*bytes).map_err(|e| {
        VmmError::Config(format!(
            "cannot read the symbols of {}: {e}",
            kernel.display()
        ))
    })?;
    Ok(file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address()))
}

/// The MSR exits a simulated platform asks for: the MSR filter's, and (for the x2APIC MSRs,
/// which KVM never filters, `kvm_msr_allowed()`) the ones KVM fails without an in-kernel
/// APIC (`kvm_x2apic_msr_read()` returns 1: KVM_MSR_EXIT_REASON_INVAL). Seen on these
/// machines: a raw RDMSR of 0x80B exits with reason INVAL, of EFER with reason FILTER.
const USER_SPACE_MSR_REASONS: u32 =
    KVM_MSR_EXIT_REASON_FILTER | KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_INVAL;

/// VM-wide setup of a simulated `platform` (before the vCPU is created): every raw RDMSR and
/// WRMSR exits to the VMM (KVM_CAP_X86_USER_SPACE_MSR and an MSR filter whose default is
/// DENY; KVM refuses a DENY filter with no range, so one range denies MSR 0 explicitly),
/// where `crate::sim::raw` decides what the platform gives it; for sev-es-sim the
/// FIX_HYPERCALL_INSN quirk off too.
pub fn prepare_vm(vm: &VmFd, platform: PlatformKind) -> Result<(), VmmError> {
    if platform == PlatformKind::Legacy {
        return Ok(());
    }
    let cap = |cap: u32, arg: u64| kvm_enable_cap {
        cap,
        args: [arg, 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&cap(
        kvm_bindings::KVM_CAP_X86_USER_SPACE_MSR,
        u64::from(USER_SPACE_MSR_REASONS),
    ))
    .map_err(VmmError::kvm("KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)"))?;
    // A zero bit denies.
    let deny = [0u8; 1];
    let range = MsrFilterRange {
        flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
        base: 0,
        msr_count: 1,
        bitmap: &deny,
    };
    vm.set_msr_filter(MsrFilterDefaultAction::DENY, &[range])
        .map_err(VmmError::kvm("KVM_X86_SET_MSR_FILTER"))?;
    if platform == PlatformKind::SevEs {
        vm.enable_cap(&cap(
            KVM_CAP_DISABLE_QUIRKS2,
            u64::from(KVM_X86_QUIRK_FIX_HYPERCALL_INSN),
        ))
        .map_err(VmmError::kvm(
            "KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2, FIX_HYPERCALL_INSN)",
        ))?;
    }
    Ok(())
}

/// The GPAs at which guest RAM is mapped for `platform` on a vCPU of `width`: 0, and for
/// sev-es-sim also the C-bit alias.
pub fn ram_aliases(platform: PlatformKind, width: AddressWidth) -> Vec<u64> {
    match platform {
        PlatformKind::SevEs => vec![0, width.platform_bit(platform)],
        PlatformKind::Legacy | PlatformKind::Tdx => vec![0],
    }
}

/// The bits ORed into the memslot page's GPA for `platform`: under tdx-sim the shared bit
/// (the guest maps MMIO shared, so the TDX module reports the EPT violation on a shared GPA),
/// else none.
pub fn memslot_gpa_bits(platform: PlatformKind, width: AddressWidth) -> u64 {
    match platform {
        PlatformKind::Tdx => width.tdx_shared_bit(),
        PlatformKind::Legacy | PlatformKind::SevEs => 0,
    }
}

/// #VE (Intel SDM vol. 3A 6.15, "Virtualization Exception").
pub const VECTOR_VE: u8 = 20;
/// #VC (AMD APM vol. 2 15.35.5, "#VC Exception").
pub const VECTOR_VC: u8 = 29;
/// The #VC error code of a nested page fault: the exit code SVM_EXIT_NPF (GHCB spec 2.0,
/// 4.1.6; Linux `vc_handle_exitcode()` sends it to `vc_handle_mmio()`).
pub const VC_ERROR_NPF: u32 = 0x400;
/// EPT-violation exit qualification (Intel SDM vol. 3C table 28-7): bit 0 data read, bit 1
/// data write, bit 7 guest linear address valid, bit 8 the access was to the translated
/// address (not a paging structure).
const EPT_QUAL_READ: u64 = 1 << 0;
const EPT_QUAL_WRITE: u64 = 1 << 1;
const EPT_QUAL_GLA_VALID: u64 = 1 << 7;
const EPT_QUAL_GLA_TRANSLATED: u64 = 1 << 8;

/// An access the guest made to the deleted memslot page, to be turned into #VE / #VC.
#[derive(Clone, Copy, Debug)]
pub struct EmulatedAccess {
    /// The GPA KVM reported (under tdx-sim with the shared bit).
    pub gpa: u64,
    /// A store.
    pub write: bool,
    /// The guest linear address, if the VMM could decode the instruction.
    pub gla: Option<u64>,
}

/// A raw intercepted instruction the guest executed under a simulated platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawInsn {
    /// CPUID, stopped at its DR1 breakpoint (not executed); leaf and sub-leaf in RAX/RCX.
    Cpuid,
    /// RDMSR (`write` = `None`) or WRMSR of `write`, from an MSR exit (not completed).
    Msr {
        /// ECX.
        index: u32,
        /// EDX:EAX of a WRMSR.
        write: Option<u64>,
    },
    /// IN, OUT, INS or OUTS, decoded at `start`.
    PortIo {
        /// RIP of the instruction.
        start: u64,
        /// The port.
        port: u16,
        /// The instruction.
        io: protocol::x86::PortIo,
    },
    /// HLT at `start`.
    Hlt {
        /// RIP of the instruction.
        start: u64,
    },
}

/// What the VMM does with a [`RawInsn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawOutcome {
    /// CPUID answered: EAX..EDX, RIP moves past it.
    Cpuid([u32; 4]),
    /// RDMSR answered with this value, or WRMSR done: KVM completes it and moves RIP on.
    MsrDone(u64),
    /// The MSR access raises #GP (the MSR exit's error flag: KVM injects it).
    MsrGp,
    /// The exception `vector` (with `error_code`) at the instruction at `start`.
    Inject {
        /// RIP of the instruction.
        start: u64,
        /// Vector.
        vector: u8,
        /// Error code, for vectors that push one.
        error_code: Option<u32>,
    },
}

/// One line for the host verdict about a raw instruction the platform forbids.
fn raw_finding(platform: &str, rip: u64, what: &str, exception: &str) -> String {
    format!(
        "raw {what} under {platform} at RIP {rip:#x}: on hardware this is a {exception}; the \
         guest must go through its {} backend",
        if platform == "tdx-sim" {
            "TDG.VP.VMCALL"
        } else {
            "GHCB"
        }
    )
}

/// Records `finding` once (a guest that takes the exception and runs the instruction again
/// repeats it), and at most [`MAX_LEAK_REPORTS`] different ones.
fn note(findings: &mut Vec<String>, finding: String) {
    if findings.len() < MAX_LEAK_REPORTS && !findings.contains(&finding) {
        findings.push(finding);
    }
}

/// `IN from port 0xf00 (1 byte)`.
fn port_io_text(port: u16, io: &protocol::x86::PortIo) -> String {
    format!(
        "{}{} {} port {port:#x} ({} byte{})",
        if io.rep { "REP " } else { "" },
        match (io.input, io.string) {
            (true, false) => "IN",
            (true, true) => "INS",
            (false, false) => "OUT",
            (false, true) => "OUTS",
        },
        if io.input { "from" } else { "to" },
        io.size,
        if io.size == 1 { "" } else { "s" },
    )
}

/// A raw MSR access the platform lets through to the vCPU's own state (no exit on
/// hardware): the x2APIC registers from the user-space APIC, every other MSR from KVM
/// (KVM_GET_MSRS / KVM_SET_MSRS); a missing MSR or a refused value is a #GP.
fn native_msr(
    vcpu: &mut VcpuCtl<'_>,
    machine: &mut Machine,
    index: u32,
    write: Option<u64>,
    now: Instant,
) -> Result<RawOutcome, VmmError> {
    use protocol::x86::msr;
    let outcome = |ok: bool, v: u64| {
        if ok {
            RawOutcome::MsrDone(v)
        } else {
            RawOutcome::MsrGp
        }
    };
    Ok(match (index, write) {
        (msr::X2APIC_FIRST..=msr::X2APIC_LAST, None) => match machine.x2apic_read(index, now) {
            Ok(v) => RawOutcome::MsrDone(v),
            Err(_) => RawOutcome::MsrGp,
        },
        (msr::X2APIC_FIRST..=msr::X2APIC_LAST, Some(v)) => {
            outcome(machine.x2apic_write(index, v, now).is_ok(), 0)
        }
        (_, None) => match vcpu.read_msr(index)? {
            Some(v) => RawOutcome::MsrDone(v),
            None => RawOutcome::MsrGp,
        },
        (_, Some(v)) => outcome(vcpu.write_msr(index, v)?, 0),
    })
}

/// The KVM_SET_GUEST_DEBUG setting for hardware execution breakpoints at `sites`, and with
/// `step` single-stepping too (to know where an MMIO store began: KVM reports the RIP after
/// it).
pub fn breakpoint(sites: TrapSites, step: bool) -> kvm_guest_debug {
    let mut d = kvm_guest_debug {
        control: KVM_GUESTDBG_ENABLE
            | KVM_GUESTDBG_USE_HW_BP
            | if step {
                kvm_bindings::KVM_GUESTDBG_SINGLESTEP
            } else {
                0
            },
        ..Default::default()
    };
    d.arch.debugreg[0] = sites.trap;
    d.arch.debugreg[1] = sites.cpuid;
    d.arch.debugreg[7] = DR7_EXEC_BP0 | DR7_G1;
    d
}

/// Guest RAM for the GHCB model: vm-memory's mapping (GPAs without the C-bit).
struct Ram<'a>(&'a GuestMemoryMmap);

impl GuestMemory for Ram<'_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| MemoryError {
                gpa,
                len: buf.len(),
            })
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        self.0
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| MemoryError {
                gpa,
                len: data.len(),
            })
    }
}

/// The host side of the platform the guest runs on.
pub enum Host {
    /// Plain KVM: every exit goes to the [`Machine`].
    Legacy,
    /// tdx-sim.
    Tdx {
        /// The TDX module + KVM.
        model: Box<TdxModel<Box<dyn Tamper>>>,
        /// The vCPU's physical-address width (the shared bit's position).
        width: AddressWidth,
        /// Where the TDCALL and the raw CPUID are.
        sites: TrapSites,
        /// What the guest did that the platform forbids (a raw IN, OUT, HLT), for the host
        /// verdict ([`Host::take_findings`]).
        findings: Vec<String>,
        /// A `TDVMCALL<HLT>` was just answered ([`Host::take_wakeup`]).
        woke: bool,
    },
    /// sev-es-sim.
    SevEs {
        /// KVM's GHCB handling.
        model: Box<GhcbModel<Box<dyn Tamper>>>,
        /// The vCPU's physical-address width (the C-bit's position).
        width: AddressWidth,
        /// Where the VMGEXIT and the raw CPUID are.
        sites: TrapSites,
        /// What the guest did that the platform forbids (a raw IN or OUT).
        findings: Vec<String>,
        /// GHCB pages that reached the host with non-zero bytes outside the fields sent
        /// ([`ghcb_leak`]), described (at most [`MAX_LEAK_REPORTS`]).
        leaks: Vec<String>,
        /// Guest virtual address of the GHCB page ([`ghcb_address`]).
        ghcb_va: Option<u64>,
        /// The hostile host watches the guest's reads of the GHCB after an answer
        /// ([`Host::watch_step`]).
        watch: Option<GhcbWatch>,
        /// The host's own check of the GHCB's mapping ([`GhcbMapping`]).
        mapping: Box<GhcbMapping>,
    },
}

/// The host's check that the guest maps its GHCB shared: at every GHCB-page VMGEXIT it
/// translates the GHCB's virtual address ([`ghcb_address`]) with KVM_TRANSLATE on the vCPU.
/// Under sev-es-sim the C-bit is an address bit ([`crate::sim::address`]), so a mapping with
/// it set lands on the private alias. On hardware the guest would then have written the page
/// encrypted: the host hands the model the page as ciphertext ([`sev_ciphertext`]) and the
/// guest reads the answer back through its decryption, as garbage.
#[derive(Clone, Debug, Default)]
pub struct GhcbMapping {
    /// GHCB-page requests whose mapping the host checked.
    pub checked: u64,
    /// What the host found wrong: the first request of each kind of finding.
    pub findings: Vec<String>,
    /// Requests with a finding, the first ones included.
    pub bad: u64,
    /// The kinds of finding described in `findings`.
    kinds: Vec<&'static str>,
}

impl GhcbMapping {
    /// The verdict the host attaches to `platform.sev_es_ghcb_shared`
    /// ([`protocol::ghcb::GHCB_MAPPING_CASE`]).
    pub fn verdict(&self) -> Result<(), String> {
        match self.findings.first() {
            Some(f) => Err(format!(
                "{f} ({} of {} GHCB-page requests had a finding)",
                self.bad, self.checked
            )),
            None if self.checked == 0 => {
                Err("the host saw no GHCB-page request whose mapping it could check".into())
            }
            None => Ok(()),
        }
    }
}

/// What the host reads of a page the guest wrote through a private mapping: each 8-byte word
/// XORed with a keystream of the page's GPA and the word's index (splitmix64). Applying it
/// twice gives the page back, so the host "encrypts" the page before its model reads it and
/// "decrypts" it afterwards: bytes the host did not write come back as the guest wrote them
/// and the host's answer reads as garbage, as on hardware (where the granule is a 16-byte
/// AES block, not a byte). Deterministic, so a failing run replays.
pub fn sev_ciphertext(gpa: u64, page: &mut [u8; 4096]) {
    for (i, w) in page.as_chunks_mut::<8>().0.iter_mut().enumerate() {
        let mut z = gpa.wrapping_add((i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        *w = (u64::from_le_bytes(*w) ^ z).to_le_bytes();
    }
}

/// Applies [`sev_ciphertext`] to the GHCB page at `gpa` in guest memory.
fn toggle_ciphertext(ram: &mut Ram<'_>, gpa: u64) {
    let mut page = [0u8; 4096];
    if ram.read(gpa, &mut page).is_ok() {
        sev_ciphertext(gpa, &mut page);
        let _ = ram.write(gpa, &page);
    }
}

/// The hostile host's watch over the guest's reads of the GHCB after an answer it will
/// rewrite (the `ghcb-rewrite` lie).
#[derive(Clone, Copy, Debug)]
pub struct GhcbWatch {
    /// Steps left before the watch gives up.
    steps_left: u32,
    /// The bytes of the GHCB below the end of the valid bitmap read since the answer (bit
    /// n of word w = byte 64w + n).
    read: [u64; GHCB_WATCHED_BYTES / 64],
}

/// The GHCB bytes the watch covers: the save area and the valid bitmap (the shared buffer
/// holds data the guest may read in pieces).
const GHCB_WATCHED_BYTES: usize = 0x400;

impl GhcbWatch {
    /// How many instructions after an answer the watch follows: the guest copies the answer
    /// within a few dozen and acts on it within a few hundred.
    pub const STEPS: u32 = 400;
}

/// Garbage in every returned field of the GHCB at `gpa`, and a cleared valid bitmap: what a
/// guest that reads the page again after copying the answer would then see.
fn rewrite_ghcb(ram: &mut Ram<'_>, gpa: u64) {
    let garbage = 0xbad0_0000_0000_0000u64;
    for (o, v) in [
        (ghcb::off::SW_EXIT_INFO_1, ghcb::result::ERROR),
        (ghcb::off::SW_EXIT_INFO_2, garbage | 1),
        (ghcb::off::RAX, garbage | 2),
        (ghcb::off::RBX, garbage | 3),
        (ghcb::off::RCX, garbage | 4),
        (ghcb::off::RDX, garbage | 5),
    ] {
        let _ = ram.write(gpa + o as u64, &v.to_le_bytes());
    }
    let _ = ram.write(gpa + ghcb::off::VALID_BITMAP as u64, &[0u8; 16]);
}

/// How many GHCB leaks a run reports in full (the rest are counted in the last line).
pub const MAX_LEAK_REPORTS: usize = 8;

/// The first byte of a GHCB page, as the host receives it, that holds guest data outside
/// what the request sent: a non-zero byte that is not in an 8-byte field marked valid, the
/// valid bitmap, the protocol version and usage fields, or (when SW_SCRATCH is marked valid)
/// the shared buffer. The guest zeroes the page before each request so that no private byte
/// of an earlier request or of its own memory reaches the host; this is the host-side check.
pub fn ghcb_leak(page: &[u8; 4096]) -> Option<(usize, u8)> {
    use protocol::ghcb::{SHARED_BUFFER_LEN, off, valid_bit};
    let bitmap = &page[off::VALID_BITMAP..off::VALID_BITMAP + 16];
    let marked = |o: usize| {
        let b = valid_bit(o & !7);
        o < off::VALID_BITMAP && bitmap[b / 8] & (1 << (b % 8)) != 0
    };
    let scratch = marked(off::SW_SCRATCH);
    let allowed = |o: usize| {
        marked(o)
            || (off::VALID_BITMAP..off::VALID_BITMAP + 16).contains(&o)
            || o >= off::PROTOCOL_VERSION
            || (scratch
                && (off::SHARED_BUFFER..off::SHARED_BUFFER + SHARED_BUFFER_LEN).contains(&o))
    };
    page.iter()
        .enumerate()
        .find(|&(o, &b)| b != 0 && !allowed(o))
        .map(|(o, &b)| (o, b))
}

/// The outcome of serving one [`HostRequest`].
enum Served {
    /// Hand this to the model.
    Result(HostResult),
    /// The run ends (the guest's verdict, a device error, a halt forever, a timeout).
    Stop(ExitReason),
}

impl Host {
    /// The host for `platform` on a vCPU of `width`, trapping at `sites` (from
    /// [`trap_sites`]; ignored for legacy), answering as current KVM.
    pub fn new(
        platform: PlatformKind,
        sites: Option<TrapSites>,
        tamper: Box<dyn Tamper>,
        width: AddressWidth,
    ) -> Self {
        Self::for_kvm(platform, sites, tamper, width, KvmProfile::Current)
            .expect("current KVM plays every platform")
    }

    /// [`Self::new`], answering as the KVM release `kvm` ([`crate::sim::profile`]); fails for
    /// a platform that KVM cannot run (TDX before v6.16).
    pub fn for_kvm(
        platform: PlatformKind,
        sites: Option<TrapSites>,
        tamper: Box<dyn Tamper>,
        width: AddressWidth,
        kvm: KvmProfile,
    ) -> Result<Self, ProfileError> {
        Ok(match (platform, sites) {
            (PlatformKind::Tdx, Some(sites)) => Host::Tdx {
                model: Box::new(TdxModel::with_tamper(
                    profile::tdx_config(
                        kvm,
                        TdxConfig {
                            gpaw: width.tdx_gpaw(),
                            maxphyaddr: u32::from(width.bits()),
                            ..TdxConfig::default()
                        },
                    )?,
                    tamper,
                )),
                width,
                sites,
                findings: Vec::new(),
                woke: false,
            },
            (PlatformKind::SevEs, Some(sites)) => Host::SevEs {
                model: Box::new(GhcbModel::with_tamper(
                    profile::ghcb_config(
                        kvm,
                        GhcbConfig {
                            cbit: width.sev_cbit(),
                            ..GhcbConfig::default()
                        },
                    ),
                    tamper,
                )),
                width,
                sites,
                findings: Vec::new(),
                leaks: Vec::new(),
                ghcb_va: None,
                watch: None,
                mapping: Box::default(),
            },
            _ => Host::Legacy,
        })
    }

    /// The GHCB leaks found so far (sev-es-sim), emptied.
    pub fn take_ghcb_leaks(&mut self) -> Vec<String> {
        match self {
            Host::SevEs { leaks, .. } => std::mem::take(leaks),
            _ => Vec::new(),
        }
    }

    /// The host's check of the GHCB's mapping (sev-es-sim), taken.
    pub fn take_ghcb_mapping(&mut self) -> Option<GhcbMapping> {
        match self {
            Host::SevEs { mapping, .. } => Some(std::mem::take(&mut **mapping)),
            _ => None,
        }
    }

    /// Tells sev-es-sim where the guest's GHCB page is (see [`ghcb_address`]).
    pub fn set_ghcb_va(&mut self, va: Option<u64>) {
        if let Host::SevEs { ghcb_va, .. } = self {
            *ghcb_va = va;
        }
    }

    /// Whether the hostile host single-steps the guest to watch its reads of the GHCB.
    pub fn watching(&self) -> bool {
        matches!(self, Host::SevEs { watch: Some(_), .. })
    }

    /// One single step while watching the GHCB: `reads` is the linear address and size the
    /// next instruction loads, if it is a load. A second load of a GHCB byte since the
    /// answer (a double fetch) is met with the page rewritten first; the watch ends there,
    /// after [`GhcbWatch::STEPS`] steps, before an STI or HLT (`halts`), or at the guest's
    /// next VMGEXIT. `stepping` is the memslot scenario's own single-stepping, restored when
    /// the watch ends.
    pub fn watch_step(
        &mut self,
        vcpu: &mut VcpuCtl<'_>,
        machine: &mut Machine,
        reads: Option<(u64, u64)>,
        halts: bool,
        stepping: bool,
    ) -> Result<Control, VmmError> {
        machine.count_exit();
        let Host::SevEs {
            model,
            sites,
            watch,
            ghcb_va: Some(va),
            ..
        } = self
        else {
            return Ok(Control::Continue);
        };
        let Some(w) = watch else {
            return Ok(Control::Continue);
        };
        let mut done = w.steps_left == 0 || halts;
        w.steps_left = w.steps_left.saturating_sub(1);
        if let Some((addr, size)) = reads
            && let Some(first) = addr.checked_sub(*va)
        {
            let bytes = (first..first + size).filter(|&b| b < GHCB_WATCHED_BYTES as u64);
            let mut again = false;
            for b in bytes {
                let (word, bit) = ((b / 64) as usize, b % 64);
                again |= w.read[word] & (1 << bit) != 0;
                w.read[word] |= 1 << bit;
            }
            if again {
                rewrite_ghcb(&mut Ram(machine.memory()), model.ghcb_msr());
                done = true;
            }
        }
        if done {
            *watch = None;
            vcpu.set_guest_debug(&breakpoint(*sites, stepping))?;
        }
        Ok(Control::Continue)
    }

    /// The platform simulated.
    pub fn platform(&self) -> PlatformKind {
        match self {
            Host::Legacy => PlatformKind::Legacy,
            Host::Tdx { .. } => PlatformKind::Tdx,
            Host::SevEs { .. } => PlatformKind::SevEs,
        }
    }

    /// Whether a raw port-IO exit breaks the platform's rules (tdx-sim, sev-es-sim).
    pub fn forbids_raw_io(&self) -> bool {
        !matches!(self, Host::Legacy)
    }

    /// Whether a raw HLT exit breaks the platform's rules (tdx-sim only: HLT is an automatic
    /// exit under SEV-ES).
    pub fn forbids_raw_hlt(&self) -> bool {
        matches!(self, Host::Tdx { .. })
    }

    /// What the platform gives a raw intercepted instruction the guest executed
    /// (`crate::sim::raw` decides; this serves and records): under tdx-sim the TDX module's
    /// answer, a #VE with its information posted (or #DF while the last #VE is unread) or
    /// #GP; under sev-es-sim a #VC, the GHCB model's MSRs, or the instruction completed as
    /// the CPU would. A raw IN, OUT (and under TDX, HLT) is also a finding against the guest:
    /// it had to use its backend ([`Host::take_findings`]).
    pub fn raw(
        &mut self,
        vcpu: &mut VcpuCtl<'_>,
        machine: &mut Machine,
        cpu: &CpuState,
        insn: RawInsn,
        now: Instant,
    ) -> Result<RawOutcome, VmmError> {
        use crate::sim::raw::{RawMsr, TdxCpuid, sev_es_msr, tdx_cpuid, tdx_msr};
        use protocol::x86::{TWO_BYTE_INSN_LEN, exit_reason, msr as msrs};
        machine.count_exit();
        let rip = cpu.rip();
        let platform = crate::sim_name(self.platform());
        match self {
            Host::Legacy => Err(VmmError::Config(
                "a raw-instruction exit on a legacy VM (a VMM bug)".into(),
            )),
            Host::Tdx {
                model, findings, ..
            } => {
                let ve = |model: &mut TdxModel<Box<dyn Tamper>>, reason, qual, len, start| {
                    let (vector, error_code) = model
                        .raise_ve(VeInfo {
                            exit_reason: reason,
                            exit_qualification: qual,
                            gla: 0,
                            gpa: 0,
                            insn_len: len,
                            insn_info: 0,
                        })
                        .event();
                    RawOutcome::Inject {
                        start,
                        vector,
                        error_code,
                    }
                };
                Ok(match insn {
                    RawInsn::Cpuid => {
                        let (leaf, subleaf) = (cpu.regs.rax as u32, cpu.regs.rcx as u32);
                        let last_base = vcpu.cpuid(0, 0)[0];
                        let last_extended = vcpu.cpuid(0x8000_0000, 0)[0];
                        match tdx_cpuid(leaf, subleaf, last_base, last_extended) {
                            TdxCpuid::Answer { leaf } => {
                                RawOutcome::Cpuid(vcpu.cpuid(leaf, subleaf))
                            }
                            TdxCpuid::Ve => {
                                ve(model, exit_reason::CPUID, 0, TWO_BYTE_INSN_LEN, rip)
                            }
                        }
                    }
                    RawInsn::Msr { index, write } => {
                        let efer = match write {
                            Some(_) if index == msrs::EFER => vcpu.read_msr(index)?.unwrap_or(0),
                            _ => 0,
                        };
                        match tdx_msr(index, write, efer) {
                            RawMsr::Native => native_msr(vcpu, machine, index, write, now)?,
                            RawMsr::Gp => RawOutcome::MsrGp,
                            _ => {
                                let reason = if write.is_some() {
                                    exit_reason::MSR_WRITE
                                } else {
                                    exit_reason::MSR_READ
                                };
                                ve(model, reason, 0, TWO_BYTE_INSN_LEN, rip)
                            }
                        }
                    }
                    RawInsn::PortIo { start, port, io } => {
                        note(
                            findings,
                            raw_finding(
                                platform,
                                start,
                                &port_io_text(port, &io),
                                "#VE (exit reason 30)",
                            ),
                        );
                        ve(
                            model,
                            exit_reason::IO_INSTRUCTION,
                            io.exit_qualification(port),
                            u32::from(io.len),
                            start,
                        )
                    }
                    RawInsn::Hlt { start } => {
                        note(
                            findings,
                            raw_finding(platform, start, "HLT", "#VE (exit reason 12)"),
                        );
                        ve(model, exit_reason::HLT, 0, 1, start)
                    }
                })
            }
            Host::SevEs {
                model, findings, ..
            } => {
                let vc = |code: u64, start| RawOutcome::Inject {
                    start,
                    vector: VECTOR_VC,
                    error_code: Some(code as u32),
                };
                Ok(match insn {
                    RawInsn::Cpuid => vc(ghcb::exit::CPUID, rip),
                    RawInsn::Msr { index, write } => match sev_es_msr(index) {
                        RawMsr::Ghcb => {
                            let r = match write {
                                None => model.msr_read(index),
                                Some(v) => model.msr_write(index, v).map(|()| 0),
                            };
                            match r {
                                Ok(v) => RawOutcome::MsrDone(v),
                                Err(MsrError::Gp | MsrError::NotOwned) => RawOutcome::MsrGp,
                            }
                        }
                        RawMsr::Native => native_msr(vcpu, machine, index, write, now)?,
                        _ => vc(ghcb::exit::MSR, rip),
                    },
                    RawInsn::PortIo { start, port, io } => {
                        note(
                            findings,
                            raw_finding(
                                platform,
                                start,
                                &port_io_text(port, &io),
                                "#VC (error code 0x7b)",
                            ),
                        );
                        vc(ghcb::exit::IOIO, start)
                    }
                    RawInsn::Hlt { .. } => {
                        return Err(VmmError::Config(
                            "a raw HLT sent to sev-es-sim, where it is an automatic exit (a VMM bug)"
                                .into(),
                        ));
                    }
                })
            }
        }
    }

    /// Whether the guest was just woken from `TDVMCALL<HLT>` (then read once): the pending
    /// interrupt goes in at the next entry. Under TDX interrupts are posted: the TDX module
    /// delivers a pending one when the TD sets RFLAGS.IF (the guest's one-instruction window
    /// after HLT), with no exit the VMM could wait for; injecting at the HLT's return stands
    /// for that. Never earlier: KVM_INTERRUPT is injected at the next entry whatever
    /// RFLAGS.IF says, so an interrupt due while the guest runs with IF=0 waits for the HLT.
    pub fn take_wakeup(&mut self) -> bool {
        match self {
            Host::Tdx { woke, .. } => std::mem::take(woke),
            _ => false,
        }
    }

    /// The breakpoint sites, for a simulated platform.
    pub fn trap_sites(&self) -> Option<TrapSites> {
        match self {
            Host::Legacy => None,
            Host::Tdx { sites, .. } | Host::SevEs { sites, .. } => Some(*sites),
        }
    }

    /// What the guest did that the platform forbids (raw IN/OUT, raw HLT under TDX), one
    /// line each, emptied: the host verdict fails on them.
    pub fn take_findings(&mut self) -> Vec<String> {
        match self {
            Host::Legacy => Vec::new(),
            Host::Tdx { findings, .. } | Host::SevEs { findings, .. } => std::mem::take(findings),
        }
    }

    /// The vCPU's physical-address width, for a simulated platform.
    pub fn width(&self) -> Option<AddressWidth> {
        match self {
            Host::Legacy => None,
            Host::Tdx { width, .. } | Host::SevEs { width, .. } => Some(*width),
        }
    }

    /// The GPA bit at which guest RAM is mapped a second time (sev-es-sim's C-bit), 0 if none:
    /// stripped from translated addresses before guest memory is read.
    pub fn ram_alias_bit(&self) -> u64 {
        match self {
            Host::SevEs { width, .. } => width.platform_bit(PlatformKind::SevEs),
            Host::Legacy | Host::Tdx { .. } => 0,
        }
    }

    /// Whether `gpa`, as KVM reports it in an MMIO exit, is the memslot scenario's page.
    pub fn is_memslot_gpa(&self, gpa: u64) -> bool {
        let bits = self
            .width()
            .map_or(0, |w| memslot_gpa_bits(self.platform(), w));
        let plain = gpa & !bits;
        gpa & bits == bits
            && (protocol::memslot::GPA..protocol::memslot::GPA + protocol::memslot::SIZE)
                .contains(&plain)
    }

    /// Prepares the exception that delivers `access` to the guest: under tdx-sim posts the
    /// #VE information TDG.VP.VEINFO.GET will return. Returns the vector and error code, or
    /// why it cannot be delivered.
    pub fn exception_for(&mut self, access: &EmulatedAccess) -> Result<(u8, Option<u32>), String> {
        match self {
            Host::Legacy => Err("no exception converts MMIO on a legacy VM".into()),
            Host::Tdx { model, .. } => {
                let qual = if access.write {
                    EPT_QUAL_WRITE
                } else {
                    EPT_QUAL_READ
                } | if access.gla.is_some() {
                    EPT_QUAL_GLA_VALID | EPT_QUAL_GLA_TRANSLATED
                } else {
                    0
                };
                // The instruction length and information are undefined for EPT violations:
                // tdx-sim reports EPT_VIOLATION_INSN_LEN, never the instruction's length.
                let mut info = crate::sim::tdx::VeInfo {
                    exit_reason: protocol::x86::exit_reason::EPT_VIOLATION,
                    exit_qualification: qual,
                    gla: access.gla.unwrap_or(0),
                    gpa: access.gpa,
                    insn_len: crate::sim::tdx::EPT_VIOLATION_INSN_LEN,
                    insn_info: 0,
                };
                model.tamper_mut().ve_info(&mut info);
                // #DF if the last #VE's information is still unread (tdx_inject_ve()).
                Ok(model.raise_ve(info).event())
            }
            Host::SevEs { .. } => Ok((VECTOR_VC, Some(VC_ERROR_NPF))),
        }
    }

    /// Whether a debug exit at `rip` is the platform's trap.
    pub fn is_trap(&self, rip: u64) -> bool {
        self.trap_sites().is_some_and(|s| s.trap == rip)
    }

    /// Whether a debug exit at `rip` is the guest's raw CPUID.
    pub fn is_cpuid_site(&self, rip: u64) -> bool {
        self.trap_sites().is_some_and(|s| s.cpuid == rip)
    }

    /// The guest stopped at its TDCALL or VMGEXIT (a debug exit at the trap address): plays
    /// the host, writes the answer, moves RIP past the instruction.
    pub fn trap(
        &mut self,
        vcpu: &mut VcpuCtl<'_>,
        machine: &mut Machine,
        cpu: &CpuState,
        stop: &AtomicBool,
    ) -> Result<Control, VmmError> {
        machine.count_exit();
        let case = machine.testdev().current_case();
        let events_allowed = !vcpu.stepping() && !machine.memslot().cycle_open();
        let tamper: &mut dyn Tamper = match self {
            Host::Legacy => &mut crate::sim::Honest,
            Host::Tdx { model, .. } => model.tamper_mut(),
            Host::SevEs { model, .. } => model.tamper_mut(),
        };
        tamper.set_case(case);
        tamper.set_events_allowed(events_allowed);
        let control = self.answer_trap(vcpu, machine, cpu, stop, case)?;
        if !matches!(control, Control::Continue) {
            return Ok(control);
        }
        // A hostile host may follow its answer with an event that has no cause; not while a
        // memslot cycle is open (from DELETE to REPORT): turning that page's MMIO exits into
        // #VE/#VC relies on single-step and exit bookkeeping that a second injected event
        // confuses (a limit of the simulation, not of the guest).
        if !events_allowed {
            return Ok(control);
        }
        let event = match self {
            Host::Legacy => None,
            // A host cannot make the TDX module raise a #VE: this is the hostile layer's own
            // fiction, so it stays away from a #VE whose information is unread (which the
            // module would turn into #DF).
            Host::Tdx { model, .. } => model.tamper_mut().spurious_event().and_then(|ev| {
                if model.ve_pending() {
                    return None;
                }
                if let Some(ve) = ev.ve {
                    model.raise_ve(ve);
                }
                Some((VECTOR_VE, None))
            }),
            Host::SevEs { model, .. } => model
                .tamper_mut()
                .spurious_event()
                .map(|ev| (VECTOR_VC, Some(ev.error_code))),
        };
        if let Some((vector, error_code)) = event {
            vcpu.inject_exception(vector, error_code)?;
        }
        Ok(control)
    }

    /// [`Self::trap`] without the spurious events: the model's answer.
    fn answer_trap(
        &mut self,
        vcpu: &mut VcpuCtl<'_>,
        machine: &mut Machine,
        cpu: &CpuState,
        stop: &AtomicBool,
        case: Option<(&'static str, &'static str)>,
    ) -> Result<Control, VmmError> {
        match self {
            Host::Legacy => Ok(Control::Stop(ExitReason::Unexpected {
                exit: "KVM_EXIT_DEBUG on a legacy VM".into(),
                rip: cpu.rip(),
            })),
            Host::Tdx { model, woke, .. } => {
                let mut step = model.tdcall(&tdcall_regs(&cpu.regs));
                loop {
                    match step {
                        TdxStep::Done(out) => {
                            vcpu.write_regs(|r| {
                                set_tdcall_regs(r, &out);
                                r.rip = cpu.rip() + TRAP_INSN_LEN;
                            });
                            return Ok(Control::Continue);
                        }
                        TdxStep::Host(request) => {
                            *woke |= matches!(request, HostRequest::Hlt { .. });
                            match serve(&request, vcpu, machine, cpu, stop)? {
                                Served::Result(r) => {
                                    step = model.complete(r).map_err(sim_bug)?;
                                }
                                Served::Stop(reason) => return Ok(Control::Stop(reason)),
                            }
                        }
                        TdxStep::Stop(s) => return Ok(Control::Stop(platform_stop(s, cpu))),
                    }
                }
            }
            Host::SevEs {
                model,
                leaks,
                ghcb_va,
                watch,
                sites,
                width,
                mapping,
                ..
            } => {
                if watch.take().is_some() {
                    // The guest's next request: the watched answer was never read twice.
                    vcpu.set_guest_debug(&breakpoint(*sites, vcpu.stepping()))?;
                }
                let mem = machine.memory().clone();
                let mut ram = Ram(&mem);
                let msr = model.ghcb_msr();
                // The raw conformance cases send malformed GHCBs on purpose (fields without
                // their valid bits): their bytes are the test's, not private data.
                let raw_case = case.is_some_and(|(suite, _)| suite == "ghcb_raw");
                // The host's own check of the page's mapping (a GHCB-page request only).
                let private = msr != 0
                    && msr & ghcb::msr::INFO_MASK == 0
                    && ghcb_va.is_some_and(|va| {
                        check_ghcb_mapping(vcpu, va, msr, width.sev_cbit(), mapping, case)
                    });
                // Through a private mapping the host sees ciphertext, not the guest's bytes.
                if msr & ghcb::msr::INFO_MASK == 0 && !raw_case && !private {
                    let mut page = [0u8; 4096];
                    if ram.read(msr, &mut page).is_ok()
                        && let Some((at, byte)) = ghcb_leak(&page)
                    {
                        if leaks.len() < MAX_LEAK_REPORTS {
                            leaks.push(format!(
                                "GHCB at GPA {msr:#x} reached the host with byte {byte:#04x} at \
                                 offset {at:#x}, outside the fields the request sent ({})",
                                case.map_or("no case".into(), |(s, c)| format!("{s}.{c}"))
                            ));
                        } else if leaks.len() == MAX_LEAK_REPORTS {
                            leaks.push("(more GHCB leaks not listed)".into());
                        }
                    }
                }
                if private {
                    toggle_ciphertext(&mut ram, msr);
                }
                let mut step = model.vmgexit(&mut ram);
                let control = loop {
                    match step {
                        GhcbStep::Done => {
                            vcpu.write_regs(|r| r.rip = cpu.rip() + TRAP_INSN_LEN);
                            if model.tamper_mut().rewrite_after_read() && ghcb_va.is_some() {
                                *watch = Some(GhcbWatch {
                                    steps_left: GhcbWatch::STEPS,
                                    read: [0; GHCB_WATCHED_BYTES / 64],
                                });
                                vcpu.set_guest_debug(&breakpoint(*sites, true))?;
                            }
                            break Control::Continue;
                        }
                        GhcbStep::Host(request) => {
                            match serve(&request, vcpu, machine, cpu, stop)? {
                                Served::Result(r) => {
                                    step = model.complete(r, &mut ram).map_err(sim_bug)?;
                                }
                                Served::Stop(reason) => break Control::Stop(reason),
                            }
                        }
                        GhcbStep::Stop(s) => break Control::Stop(platform_stop(s, cpu)),
                    }
                };
                if private {
                    // The guest reads the page back through its decryption.
                    toggle_ciphertext(&mut ram, msr);
                }
                Ok(control)
            }
        }
    }
}

/// Translates the GHCB's virtual address `va` on the vCPU and records in `mapping` whether
/// it reaches the GHCB MSR's GPA `msr` through a shared mapping (C-bit `cbit` clear).
/// Returns whether the mapping is private. A page that is not mapped at `va`, or maps
/// another GPA, is a finding too (the guest told the host one page and uses another).
fn check_ghcb_mapping(
    vcpu: &mut VcpuCtl<'_>,
    va: u64,
    msr: u64,
    cbit: u8,
    mapping: &mut GhcbMapping,
    case: Option<(&'static str, &'static str)>,
) -> bool {
    mapping.checked += 1;
    let c = 1u64 << cbit;
    let at = case.map_or("no case".into(), |(s, k)| format!("{s}.{k}"));
    // (kind, what): the first request of each kind is described.
    let (finding, private) = match vcpu.translate(va) {
        Some(pa) if pa & !c == msr && pa & c != 0 => (
            Some((
                "private",
                format!(
                    "GHCB at GPA {msr:#x} is mapped private (C-bit {cbit} set) at guest VA \
                     {va:#x}, first at {at}: on hardware the host would read ciphertext and \
                     the guest garbage"
                ),
            )),
            true,
        ),
        Some(pa) if pa == msr => (None, false),
        Some(pa) => (
            Some((
                "elsewhere",
                format!(
                    "the GHCB MSR holds GPA {msr:#x} but the guest's GHCB at VA {va:#x} maps \
                     GPA {pa:#x}, first at {at}"
                ),
            )),
            false,
        ),
        None => (
            Some((
                "unmapped",
                format!("the guest's GHCB at VA {va:#x} is not mapped, first at {at}"),
            )),
            false,
        ),
    };
    if let Some((kind, what)) = finding {
        mapping.bad += 1;
        if !mapping.kinds.contains(&kind) {
            mapping.kinds.push(kind);
            mapping.findings.push(what);
        }
    }
    private
}

/// A model called out of order: a VMM bug.
fn sim_bug(e: crate::sim::SimError) -> VmmError {
    VmmError::Config(format!("simulated host used out of order (a VMM bug): {e}"))
}

fn platform_stop(s: Stop, cpu: &CpuState) -> ExitReason {
    ExitReason::PlatformStop {
        detail: s.to_string(),
        rip: cpu.rip(),
    }
}

/// The guest's registers at TDCALL.
fn tdcall_regs(r: &kvm_regs) -> TdcallRegs {
    TdcallRegs {
        rax: r.rax,
        rcx: r.rcx,
        rdx: r.rdx,
        rbx: r.rbx,
        rsi: r.rsi,
        rdi: r.rdi,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
    }
}

/// Writes the TDX module's answer into the vCPU's registers (RSP, RBP, RIP and RFLAGS are
/// not TDCALL outputs).
fn set_tdcall_regs(r: &mut kvm_regs, t: &TdcallRegs) {
    r.rax = t.rax;
    r.rcx = t.rcx;
    r.rdx = t.rdx;
    r.rbx = t.rbx;
    r.rsi = t.rsi;
    r.rdi = t.rdi;
    r.r8 = t.r8;
    r.r9 = t.r9;
    r.r10 = t.r10;
    r.r11 = t.r11;
    r.r12 = t.r12;
    r.r13 = t.r13;
    r.r14 = t.r14;
    r.r15 = t.r15;
}

/// The low `size` bytes of `value`, as a device sees a write of that size.
fn low_bytes(value: u64, size: u8) -> Vec<u8> {
    value.to_le_bytes()[..usize::from(size).min(8)].to_vec()
}

/// Serves one model request where KVM would exit to the VMM (or consult its state).
fn serve(
    request: &HostRequest,
    vcpu: &mut VcpuCtl<'_>,
    machine: &mut Machine,
    cpu: &CpuState,
    stop: &AtomicBool,
) -> Result<Served, VmmError> {
    let now = Instant::now();
    let write = |machine: &mut Machine, space, addr, data: &[u8]| match machine
        .host_write(space, addr, data, cpu, now)
    {
        Control::Stop(reason) => Served::Stop(reason),
        _ => Served::Result(HostResult::Done),
    };
    let read = |machine: &mut Machine, space, addr, size: u8| {
        let mut buf = [0u8; 8];
        let n = usize::from(size).min(8);
        machine.host_read(space, addr, &mut buf[..n], cpu, now);
        Served::Result(HostResult::Value(u64::from_le_bytes(buf)))
    };
    Ok(match *request {
        HostRequest::PortRead { port, size } => read(machine, Space::Pio, u64::from(port), size),
        HostRequest::PortWrite { port, size, value } => write(
            machine,
            Space::Pio,
            u64::from(port),
            &low_bytes(value, size),
        ),
        HostRequest::PortReadString { port, size, count } => {
            let size = usize::from(size.max(1));
            let mut data = vec![0u8; size * count as usize];
            for el in data.chunks_mut(size) {
                machine.host_read(Space::Pio, u64::from(port), el, cpu, now);
            }
            Served::Result(HostResult::Bytes(data))
        }
        HostRequest::PortWriteString {
            port,
            size,
            ref data,
        } => {
            for el in data.chunks(usize::from(size.max(1))) {
                if let Served::Stop(reason) = write(machine, Space::Pio, u64::from(port), el) {
                    return Ok(Served::Stop(reason));
                }
            }
            Served::Result(HostResult::Done)
        }
        HostRequest::MmioRead { gpa, size, .. } => read(machine, Space::Mmio, gpa, size),
        HostRequest::MmioWrite {
            gpa, size, value, ..
        } => write(machine, Space::Mmio, gpa, &low_bytes(value, size)),
        HostRequest::Cpuid { leaf, subleaf, .. } => {
            Served::Result(HostResult::Cpuid(vcpu.cpuid(leaf, subleaf)))
        }
        // KVM's own MSR emulation (`kvm_get_msr_common()`): the x2APIC registers from its
        // APIC, which here is the user-space one; every other MSR from KVM's vCPU.
        HostRequest::Rdmsr { index } => {
            Served::Result(match native_msr(vcpu, machine, index, None, now)? {
                RawOutcome::MsrDone(v) => HostResult::Value(v),
                _ => HostResult::Refused,
            })
        }
        HostRequest::Wrmsr { index, value } => {
            Served::Result(match native_msr(vcpu, machine, index, Some(value), now)? {
                RawOutcome::MsrDone(_) => HostResult::Done,
                _ => HostResult::Refused,
            })
        }
        HostRequest::Hlt { interrupts_blocked } => {
            let halted = CpuState {
                if_flag: !interrupts_blocked,
                ..*cpu
            };
            match crate::vcpu::wait_for_wakeup(machine, &halted, stop, vcpu)? {
                Some(reason) => Served::Stop(reason),
                None => Served::Result(HostResult::Done),
            }
        }
        HostRequest::ApResetHold => Served::Stop(ExitReason::PlatformStop {
            detail: "AP reset hold: this one-vCPU VM has no other vCPU to send the SIPI".into(),
            rip: cpu.rip(),
        }),
        HostRequest::MapGpa { .. } => Served::Result(HostResult::MapGpa(MapGpaResult::Ok {
            event_pending: false,
        })),
        HostRequest::TdVmCallInfo { .. }
        | HostRequest::GetQuote { .. }
        | HostRequest::SetupEventNotify { .. } => Served::Result(HostResult::Done),
        // Accepted, as for TDVMCALL<MapGPA>: the sims keep no private/shared state.
        HostRequest::KvmMapGpaRange { .. } => Served::Result(HostResult::Value(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Breakpoint sites for hosts that never run.
    const SITES: TrapSites = TrapSites { trap: 1, cpuid: 2 };

    #[test]
    fn breakpoints_in_dr0_and_dr1_for_execution() {
        let sites = TrapSites {
            trap: 0xffff_ffff_8010_2340,
            cpuid: 0xffff_ffff_8010_5000,
        };
        let d = breakpoint(sites, false);
        assert_eq!(d.arch.debugreg[0], 0xffff_ffff_8010_2340);
        assert_eq!(d.arch.debugreg[1], 0xffff_ffff_8010_5000);
        assert_eq!(d.arch.debugreg[7] & 0xff, 0b1010, "G0 and G1 only");
        assert_eq!(d.arch.debugreg[7] >> 16, 0, "R/W = LEN = 0: execute");
        assert_ne!(d.control & KVM_GUESTDBG_USE_HW_BP, 0);
        assert_eq!(d.control & kvm_bindings::KVM_GUESTDBG_SINGLESTEP, 0);
        let s = breakpoint(SITES, true);
        assert_ne!(s.control & kvm_bindings::KVM_GUESTDBG_SINGLESTEP, 0);
        assert_eq!((s.arch.debugreg[0], s.arch.debugreg[1]), (1, 2));
    }

    fn width(bits: u8) -> AddressWidth {
        AddressWidth::new(bits).unwrap()
    }

    #[test]
    fn memslot_gpa_carries_the_shared_bit_under_tdx() {
        for (bits, shared) in [
            (48, 1u64 << 47),
            (46, 1 << 45),
            (39, 1 << 38),
            (52, 1 << 51),
        ] {
            let tdx = Host::new(
                PlatformKind::Tdx,
                Some(SITES),
                Box::new(crate::sim::Honest),
                width(bits),
            );
            let gpa = protocol::memslot::GPA;
            assert!(tdx.is_memslot_gpa(gpa | shared), "{bits}");
            assert!(!tdx.is_memslot_gpa(gpa), "private alias: not the page");
            assert!(!tdx.is_memslot_gpa((gpa + protocol::memslot::SIZE) | shared));
            assert!(!tdx.is_memslot_gpa(gpa | shared << 1 >> 2), "another bit");
            assert_eq!(tdx.ram_alias_bit(), 0);
            let sev = Host::new(
                PlatformKind::SevEs,
                Some(SITES),
                Box::new(crate::sim::Honest),
                width(bits),
            );
            assert!(sev.is_memslot_gpa(gpa + 8));
            assert!(!sev.is_memslot_gpa(gpa | sev.ram_alias_bit()));
        }
    }

    #[test]
    fn memslot_ve_reports_no_instruction_length_and_a_second_one_is_a_double_fault() {
        let mut tdx = Host::new(
            PlatformKind::Tdx,
            Some(SITES),
            Box::new(crate::sim::Honest),
            width(48),
        );
        let access = EmulatedAccess {
            gpa: protocol::memslot::GPA | 1 << 47,
            write: false,
            gla: Some(0xffff_8000_0000_0010),
        };
        assert_eq!(tdx.exception_for(&access), Ok((VECTOR_VE, None)));
        // Unread: the TDX module raises #DF (vector 8, error code 0) instead of a second #VE.
        assert_eq!(tdx.exception_for(&access), Ok((8, Some(0))));
        let Host::Tdx { model, .. } = &mut tdx else {
            unreachable!()
        };
        let TdxStep::Done(out) = model.tdcall(&TdcallRegs {
            rax: protocol::tdx::leaf::VP_VEINFO_GET,
            ..TdcallRegs::default()
        }) else {
            panic!("VEINFO.GET answers at once")
        };
        assert_eq!(out.rcx, 48, "the first #VE's information was kept");
        assert_eq!(out.r9, access.gpa);
        assert_eq!(
            out.r10,
            u64::from(crate::sim::tdx::EPT_VIOLATION_INSN_LEN),
            "R10 is undefined for an EPT violation: never the instruction's length"
        );
        assert_eq!(crate::sim::tdx::EPT_VIOLATION_INSN_LEN, 0);
        // Read: the next access raises a #VE again.
        assert_eq!(tdx.exception_for(&access), Ok((VECTOR_VE, None)));
    }

    #[test]
    fn tdcall_registers_round_trip() {
        let r = kvm_regs {
            rax: 0,
            rcx: 0xfc00,
            r10: 0,
            r11: 30,
            r12: 1,
            r13: 1,
            r14: 0xd100,
            r15: 0xff,
            rsp: 0x1234,
            rip: 0x5678,
            ..Default::default()
        };
        let t = tdcall_regs(&r);
        assert_eq!((t.rcx, t.r11, t.r14, t.r15), (0xfc00, 30, 0xd100, 0xff));
        let mut back = kvm_regs {
            rsp: 0x1234,
            rip: 0x5678,
            ..Default::default()
        };
        set_tdcall_regs(&mut back, &t);
        assert_eq!(back, r);
    }

    #[test]
    fn ghcb_leak_finds_bytes_outside_the_fields_sent() {
        use protocol::ghcb::{off, valid_bit};
        let mut page = [0u8; 4096];
        let mark = |page: &mut [u8; 4096], o: usize| {
            let b = valid_bit(o);
            page[off::VALID_BITMAP + b / 8] |= 1 << (b % 8);
        };
        page[off::PROTOCOL_VERSION] = 2;
        page[off::RAX] = 0x41;
        assert_eq!(ghcb_leak(&page), Some((off::RAX, 0x41)), "RAX not marked");
        mark(&mut page, off::RAX);
        assert_eq!(ghcb_leak(&page), None);
        page[off::RBX + 7] = 1;
        assert_eq!(ghcb_leak(&page), Some((off::RBX + 7, 1)));
        page[off::RBX + 7] = 0;
        page[off::SHARED_BUFFER + 5] = 9;
        assert_eq!(
            ghcb_leak(&page),
            Some((off::SHARED_BUFFER + 5, 9)),
            "no SW_SCRATCH"
        );
        mark(&mut page, off::SW_SCRATCH);
        assert_eq!(ghcb_leak(&page), None);
        page[0xff0] = 3;
        assert_eq!(
            ghcb_leak(&page),
            Some((0xff0, 3)),
            "reserved bytes after the buffer"
        );
    }

    #[test]
    fn aliases_only_for_sev_es() {
        assert_eq!(ram_aliases(PlatformKind::Legacy, width(48)), [0]);
        assert_eq!(ram_aliases(PlatformKind::Tdx, width(46)), [0]);
        assert_eq!(ram_aliases(PlatformKind::SevEs, width(48)), [0, 1 << 47]);
        assert_eq!(ram_aliases(PlatformKind::SevEs, width(52)), [0, 1 << 51]);
        assert_eq!(ram_aliases(PlatformKind::SevEs, width(46)), [0, 1 << 45]);
        assert_eq!(ram_aliases(PlatformKind::SevEs, width(39)), [0, 1 << 38]);
        // The alias lies inside the vCPU's address space, above all RAM.
        for bits in 36..=52 {
            let a = ram_aliases(PlatformKind::SevEs, width(bits))[1];
            assert!(a < 1 << bits && a > crate::layout::RAM_LIMIT, "{bits}");
        }
    }

    #[test]
    fn low_bytes_cut_to_size() {
        assert_eq!(low_bytes(0x1122_3344, 2), vec![0x44, 0x33]);
        assert_eq!(low_bytes(u64::MAX, 9).len(), 8);
    }

    #[test]
    fn ciphertext_is_an_involution_that_garbles_the_usage_field() {
        use protocol::ghcb::off;
        let mut page = [0u8; 4096];
        page[off::SW_EXIT_CODE] = 0x72;
        let plain = page;
        sev_ciphertext(0x167000, &mut page);
        assert_ne!(page, plain);
        // What KVM checks first: a zero GHCB usage reads as non-zero, so an honest KVM answers
        // INVALID_USAGE to a request written through a private mapping.
        assert_ne!(&page[off::GHCB_USAGE..off::GHCB_USAGE + 4], &[0; 4]);
        let mut other = plain;
        sev_ciphertext(0x168000, &mut other);
        assert_ne!(page, other, "the keystream depends on the GPA");
        sev_ciphertext(0x167000, &mut page);
        assert_eq!(page, plain);
    }

    #[test]
    fn the_mapping_verdict() {
        let mut m = GhcbMapping::default();
        assert!(m.verdict().unwrap_err().contains("no GHCB-page request"));
        m.checked = 3;
        assert_eq!(m.verdict(), Ok(()));
        m.bad = 2;
        m.findings
            .push("GHCB at GPA 0x1000 is mapped private".into());
        let e = m.verdict().unwrap_err();
        assert!(e.contains("mapped private") && e.contains("2 of 3"), "{e}");
    }
}
