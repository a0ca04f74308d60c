//! The TDX backend: every request is a TDG.VP.VMCALL through the one `tdcall` wrapper.
//!
//! GHCI 1.5 register convention (Linux `__tdx_hypercall`): RAX = 0 (TDG.VP.VMCALL), RCX =
//! the exposure bitmap (`ExposeMask::ARGS` = 0xFC00 for the standard requests, R10-R15 only;
//! Linux exposes 0xFFCC), R10 = 0 (standard), R11 = the sub-function, R12-R15 = arguments.
//! Out: RAX = TDX module status, R10 = TDVMCALL status, R11-R15 = results. Every status is checked and every returned value range-checked before
//! use: the host is untrusted. The checks are `protocol::validate`'s, which the host tests and
//! the `validators` fuzz target run too.

use crate::arch::insn::CpuidResult;
use crate::io::{MmioValue, PioValue};
use crate::platform::{HostError, MsrError, read_fits};
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use protocol::access::Width;
use protocol::tdx::{self, ExposeMask, Gpaw, TdcallRegs, leaf, regs_offset as off, status, vmcall};
use protocol::validate::{self, DecodedAccess, TdvmcallError, VeReport};

global_asm!(
    ".pushsection .text.tdcall, \"ax\"",
    // The one TDCALL instruction (66 0F 01 CC, spelled as bytes so any assembler takes it),
    // a function of its own: registers in, registers out, nothing else touched. The
    // simulated host's breakpoint sits on it (`protocol::tdx::TDCALL_SYMBOL`).
    ".global cvmprobe_tdcall_insn",
    ".balign 16",
    "cvmprobe_tdcall_insn:",
    ".byte 0x66, 0x0f, 0x01, 0xcc",
    "ret",
    // Every register from and back to a `TdcallRegs` (TDG.VP.INFO, TDG.VP.VEINFO.GET, the
    // conformance tables' raw TDG.VP.VMCALLs).
    ".global cvmprobe_tdcall",
    ".balign 16",
    "cvmprobe_tdcall:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "mov rax, [rdi + {rax}]",
    "mov rcx, [rdi + {rcx}]",
    "mov rdx, [rdi + {rdx}]",
    "mov rbx, [rdi + {rbx}]",
    "mov rsi, [rdi + {rsi}]",
    "mov r8,  [rdi + {r8}]",
    "mov r9,  [rdi + {r9}]",
    "mov r10, [rdi + {r10}]",
    "mov r11, [rdi + {r11}]",
    "mov r12, [rdi + {r12}]",
    "mov r13, [rdi + {r13}]",
    "mov r14, [rdi + {r14}]",
    "mov r15, [rdi + {r15}]",
    "mov rdi, [rdi + {rdi}]",
    "call cvmprobe_tdcall_insn",
    "xchg rdi, [rsp]",
    "mov [rdi + {rax}], rax",
    "mov [rdi + {rcx}], rcx",
    "mov [rdi + {rdx}], rdx",
    "mov [rdi + {rbx}], rbx",
    "mov [rdi + {rsi}], rsi",
    "mov [rdi + {r8}], r8",
    "mov [rdi + {r9}], r9",
    "mov [rdi + {r10}], r10",
    "mov [rdi + {r11}], r11",
    "mov [rdi + {r12}], r12",
    "mov [rdi + {r13}], r13",
    "mov [rdi + {r14}], r14",
    "mov [rdi + {r15}], r15",
    "pop rax",
    "mov [rdi + {rdi}], rax",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
    ".popsection",
    rax = const off::RAX,
    rcx = const off::RCX,
    rdx = const off::RDX,
    rbx = const off::RBX,
    rsi = const off::RSI,
    rdi = const off::RDI,
    r8 = const off::R8,
    r9 = const off::R9,
    r10 = const off::R10,
    r11 = const off::R11,
    r12 = const off::R12,
    r13 = const off::R13,
    r14 = const off::R14,
    r15 = const off::R15,
);

unsafe extern "C" {
    /// Loads every register of `regs`, executes TDCALL, stores every register back.
    fn cvmprobe_tdcall(regs: *mut TdcallRegs);
}

/// Executes TDCALL with `regs` in and out. Every register is loaded from `regs` (the caller
/// starts from `TdcallRegs::default()`), so no stale guest data reaches the TDX module or host.
pub fn tdcall(regs: &mut TdcallRegs) {
    super::count_request();
    // SAFETY: the wrapper reads and writes only `*regs` and the registers it saves and
    // restores; TDCALL itself does not touch guest memory for the leaves used here.
    unsafe { cvmprobe_tdcall(regs) }
}

/// TDCALL of module leaf `leaf` that takes no input but RAX (TDG.VP.INFO, TDG.VP.VEINFO.GET):
/// RAX (the status), RCX, RDX, R8, R9, R10 as the TDX module left them, with the registers
/// handed over directly (no `TdcallRegs` in memory). The TDX module answers these leaves
/// itself: no register reaches the host, so none needs zeroing.
#[inline(always)]
#[optimize(speed)]
fn tdcall_leaf(leaf: u64) -> [u64; 6] {
    super::count_request();
    let (rax, rcx, rdx, r8, r9, r10);
    // SAFETY: `cvmprobe_tdcall_insn` is TDCALL then RET; these leaves write only the
    // registers declared here (TDX module ABI, TDG.VP.INFO and TDG.VP.VEINFO.GET outputs; R11
    // too, declared clobbered) and no memory.
    unsafe {
        core::arch::asm!(
            "call cvmprobe_tdcall_insn",
            inout("rax") leaf => rax,
            out("rcx") rcx,
            out("rdx") rdx,
            out("r8") r8,
            out("r9") r9,
            out("r10") r10,
            out("r11") _,
            options(nomem),
        );
    }
    [rax, rcx, rdx, r8, r9, r10]
}

/// Results of TDG.VP.VMCALL (after the module status was checked).
#[derive(Clone, Copy, Debug, Default)]
pub struct VmcallOut {
    /// R10: TDVMCALL status.
    pub status: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
}

impl From<&TdcallRegs> for VmcallOut {
    fn from(r: &TdcallRegs) -> Self {
        Self {
            status: r.r10,
            r11: r.r11,
            r12: r.r12,
            r13: r.r13,
            r14: r.r14,
            r15: r.r15,
        }
    }
}

/// TDG.VP.VMCALL with R10 = `r10`, R11 = `sub`, R12-R15 = `args`, exposing `mask`: all
/// registers as the TDCALL left them.
fn vmcall_regs(mask: ExposeMask, r10: u64, sub: u64, args: [u64; 4]) -> TdcallRegs {
    let mut r = TdcallRegs {
        rax: leaf::VP_VMCALL,
        rcx: mask.0,
        r10,
        r11: sub,
        r12: args[0],
        r13: args[1],
        r14: args[2],
        r15: args[3],
        ..TdcallRegs::default()
    };
    super::count_host_call();
    tdcall(&mut r);
    r
}

/// TDG.VP.VMCALL with R10 = `r10`, R11 = `sub`, R12-R15 = `args`, exposing `mask`. The raw
/// form the conformance tables use: no check of the TDVMCALL status.
pub fn vmcall_raw(mask: ExposeMask, r10: u64, sub: u64, args: [u64; 4]) -> Result<VmcallOut, u64> {
    let r = vmcall_regs(mask, r10, sub, args);
    if r.rax != tdx::TDX_SUCCESS {
        return Err(r.rax);
    }
    Ok(VmcallOut::from(&r))
}

/// A standard TDG.VP.VMCALL with R11 = `sub`, R12-R15 = `args`, exposing R10-R15 only
/// (`ExposeMask::ARGS`: the TDX module keeps every other register from the host and restores
/// it), with the registers handed to the one TDCALL instruction directly (no `TdcallRegs` in
/// memory: a request's instructions are emulated one by one on the CI hosts). Returns the TDX
/// module status (RAX) and the results.
#[inline(always)]
#[optimize(speed)]
fn vmcall_fast(sub: u64, args: [u64; 4]) -> (u64, VmcallOut) {
    super::count_host_call();
    super::count_request();
    let (rax, r10, r11, r12, r13, r14, r15);
    // SAFETY: `cvmprobe_tdcall_insn` is TDCALL then RET. TDG.VP.VMCALL changes RAX, RCX and
    // the exposed registers R10-R15 (all declared here); the TDX module restores the others.
    // For sub-functions that name a buffer the host may write guest memory (no `nomem`).
    unsafe {
        core::arch::asm!(
            "call cvmprobe_tdcall_insn",
            inout("rax") leaf::VP_VMCALL => rax,
            inout("rcx") ExposeMask::ARGS.0 => _,
            inout("r10") vmcall::STANDARD => r10,
            inout("r11") sub => r11,
            inout("r12") args[0] => r12,
            inout("r13") args[1] => r13,
            inout("r14") args[2] => r14,
            inout("r15") args[3] => r15,
        );
    }
    let out = VmcallOut {
        status: r10,
        r11,
        r12,
        r13,
        r14,
        r15,
    };
    (rax, out)
}

/// A standard TDVMCALL whose module status and TDVMCALL status must both be SUCCESS
/// (`validate::tdvmcall_status`).
#[inline(always)]
#[optimize(speed)]
fn vmcall(request: &'static str, sub: u64, args: [u64; 4]) -> Result<VmcallOut, HostError> {
    let (rax, out) = vmcall_fast(sub, args);
    match validate::tdvmcall_status(rax, out.status) {
        Ok(()) => Ok(out),
        Err(TdvmcallError::Module(status)) => Err(HostError::refused(
            "TDCALL(TDG.VP.VMCALL) module status",
            status,
        )),
        Err(TdvmcallError::Vmcall(status)) => Err(HostError::refused(request, status)),
    }
}

/// GPAW from TDG.VP.INFO (0 before [`init`]), and the shared bit it implies.
static GPAW: AtomicU32 = AtomicU32::new(0);
static SHARED_BIT: AtomicU64 = AtomicU64::new(0);

/// What TDG.VP.INFO reported.
#[derive(Clone, Copy, Debug)]
pub struct VpInfo {
    /// Guest physical address width: 48 or 52, or the narrower width a simulated TDX
    /// declared (`Gpaw::simulated`).
    pub gpaw: Gpaw,
    /// Number of vCPUs (R8[31:0]).
    pub vcpus: u32,
    /// This vCPU's index (R9[31:0]).
    pub vcpu_index: u32,
}

/// TDG.VP.INFO, validated: GPAW must be 48 or 52, or exactly the width the host declared for
/// a simulated TDX (`validate::vp_info_gpaw`, `super::declared_sim_phys_bits`).
#[optimize(speed)]
pub fn vp_info() -> Result<VpInfo, HostError> {
    let [rax, rcx, _, r8, r9, _] = tdcall_leaf(leaf::VP_INFO);
    if rax != tdx::TDX_SUCCESS {
        return Err(HostError::refused("TDG.VP.INFO", rax));
    }
    let gpaw = validate::vp_info_gpaw(rcx, super::declared_sim_phys_bits())?;
    Ok(VpInfo {
        gpaw,
        vcpus: r8 as u32,
        vcpu_index: r9 as u32,
    })
}

/// Sets up the backend from TDG.VP.INFO.
pub fn init() -> Result<VpInfo, HostError> {
    let info = vp_info()?;
    GPAW.store(info.gpaw.bits(), Ordering::Relaxed);
    SHARED_BIT.store(info.gpaw.shared_bit(), Ordering::Relaxed);
    Ok(info)
}

/// The shared bit (bit GPAW-1).
pub fn shared_bit() -> u64 {
    SHARED_BIT.load(Ordering::Relaxed)
}

/// GPAW as [`init`] fixed it (`None` before).
pub fn gpaw() -> Option<Gpaw> {
    Gpaw::simulated(
        u64::from(GPAW.load(Ordering::Relaxed)),
        super::declared_sim_phys_bits(),
    )
}

/// MMIO read through `#VE.RequestMMIO` on the shared alias of `gpa`.
#[optimize(speed)]
pub fn mmio_read<T: MmioValue>(gpa: u64) -> Result<T, HostError> {
    let w = T::WIDTH;
    let out = vmcall(
        "TDVMCALL MMIO read",
        vmcall::MMIO,
        [w.bytes(), tdx::DIR_READ, gpa | shared_bit(), 0],
    )?;
    read_fits(
        w,
        out.r11,
        "TDVMCALL MMIO read value (R11 wider than the access)",
    )
    .map(T::from_u64)
}

/// MMIO write through `#VE.RequestMMIO`.
#[optimize(speed)]
pub fn mmio_write<T: MmioValue>(gpa: u64, v: T) -> Result<(), HostError> {
    vmcall(
        "TDVMCALL MMIO write",
        vmcall::MMIO,
        [
            T::WIDTH.bytes(),
            tdx::DIR_WRITE,
            gpa | shared_bit(),
            v.to_u64(),
        ],
    )
    .map(|_| ())
}

/// TDG.VP.VEINFO.GET: the information of the #VE being handled (TDX module ABI,
/// TDG.VP.VEINFO.GET; Linux `tdx_get_ve_info()`), unchecked: `validate::ve_report` checks it.
#[optimize(speed)]
pub fn veinfo_get() -> Result<VeReport, HostError> {
    let [rax, rcx, rdx, r8, r9, r10] = tdcall_leaf(leaf::VP_VEINFO_GET);
    if rax != tdx::TDX_SUCCESS {
        return Err(HostError::refused("TDG.VP.VEINFO.GET", rax));
    }
    Ok(VeReport {
        exit_reason: rcx as u32,
        qualification: rdx,
        gla: r8,
        gpa: r9,
        insn_len: r10 as u32,
    })
}

/// Cleared by the `ve-fixup-skips-veinfo` fault injection ([`skip_veinfo_in_fixup`]).
static VEINFO_IN_FIXUP: AtomicBool = AtomicBool::new(true);

/// From now on the fault fixup swallows a #VE without TDG.VP.VEINFO.GET
/// (`cvmprobe.inject=ve-fixup-skips-veinfo`): the #VE information stays valid, and the TD's
/// next #VE becomes a #DF (`tdx_inject_ve()`). The bug the fixup must not have.
pub fn skip_veinfo_in_fixup() {
    VEINFO_IN_FIXUP.store(false, Ordering::Relaxed);
}

/// A #VE the fault fixup takes (an instruction that may fault took one): TDG.VP.VEINFO.GET
/// reads and so clears its information, which otherwise stays valid and turns the next #VE
/// into a #DF. Returns the exit reason for the fixup's record (`u64::MAX` if the call failed
/// or was skipped).
pub fn consume_ve_for_fixup() -> u64 {
    if !VEINFO_IN_FIXUP.load(Ordering::Relaxed) {
        return u64::MAX;
    }
    veinfo_get().map_or(u64::MAX, |ve| u64::from(ve.exit_reason))
}

/// The #VE handler: only an EPT violation on a shared GPA (MMIO the host made of memory the
/// guest used) is emulated, after checking the TDX module's report against the instruction
/// (`validate::ve_report`): its access type must be the instruction's and its GPA the one the
/// accessed address maps to. The reported instruction length is not used: the TDX module
/// leaves it undefined for EPT violations (Linux `ve_instr_len()`), so RIP moves by the
/// decoded length.
pub fn handle_ve(
    f: &mut crate::arch::trap::TrapFrame,
) -> Result<(), super::emulate::EmulationError> {
    use super::emulate::{self, EmulationError};
    let ve = veinfo_get()?;
    let width = gpaw().ok_or(EmulationError::new(
        "#VE before TDG.VP.INFO set the GPAW",
        u64::from(GPAW.load(Ordering::Relaxed)),
    ))?;
    let invalid = |e: validate::Invalid| EmulationError::new(e.what, e.value);
    // Checked before decoding: a #VE that is not MMIO is reported as such, not as an
    // instruction the decoder does not know.
    validate::ve_header(&ve, width).map_err(invalid)?;
    let access = emulate::decode_at(f)?;
    let decoded = DecodedAccess {
        direction: access.insn.direction(),
        linear: access.linear,
        mapped_gpa: crate::arch::paging::virt_to_phys(access.linear),
    };
    let gpa = validate::ve_report(&ve, &decoded, width).map_err(invalid)?;
    emulate::complete(f, &access, gpa)
}

/// Port read through `Instruction.IO`.
#[optimize(speed)]
pub fn pio_read<T: PioValue>(port: u16) -> Result<T, HostError> {
    let w = T::WIDTH;
    let subfn = if super::port_reads_broken() {
        vmcall::IO - 1
    } else {
        vmcall::IO
    };
    let out = vmcall(
        "TDVMCALL IO read",
        subfn,
        [w.bytes(), tdx::DIR_READ, u64::from(port), 0],
    )?;
    read_fits(
        w,
        out.r11,
        "TDVMCALL IO read value (R11 wider than the access)",
    )
    .map(T::from_u64)
}

/// Port write through `Instruction.IO`.
#[optimize(speed)]
pub fn pio_write<T: PioValue>(port: u16, v: T) -> Result<(), HostError> {
    vmcall(
        "TDVMCALL IO write",
        vmcall::IO,
        [
            T::WIDTH.bytes(),
            tdx::DIR_WRITE,
            u64::from(port),
            v.to_u64(),
        ],
    )
    .map(|_| ())
}

/// String port write: the GHCI has no string IO, so one `Instruction.IO` per byte.
pub fn pio_write_bytes(port: u16, bytes: &[u8]) -> Result<(), HostError> {
    for &b in bytes {
        pio_write::<u8>(port, b)?;
    }
    Ok(())
}

/// CPUID through `Instruction.CPUID` (outputs must fit 32 bits).
#[optimize(speed)]
pub fn cpuid(leaf: u32, subleaf: u32) -> Result<CpuidResult, HostError> {
    let out = vmcall(
        "TDVMCALL CPUID",
        vmcall::CPUID,
        [u64::from(leaf), u64::from(subleaf), 0, 0],
    )?;
    let w = Width::B4;
    Ok(CpuidResult {
        eax: read_fits(w, out.r12, "TDVMCALL CPUID EAX (R12 wider than 32 bits)")? as u32,
        ebx: read_fits(w, out.r13, "TDVMCALL CPUID EBX (R13 wider than 32 bits)")? as u32,
        ecx: read_fits(w, out.r14, "TDVMCALL CPUID ECX (R14 wider than 32 bits)")? as u32,
        edx: read_fits(w, out.r15, "TDVMCALL CPUID EDX (R15 wider than 32 bits)")? as u32,
    })
}

/// RDMSR through `Instruction.RDMSR`. KVM refuses MSRs it does not emulate with
/// INVALID_OPERAND, which is what a #GP is on this platform.
#[optimize(speed)]
pub fn rdmsr(msr: u32) -> Result<u64, MsrError> {
    match vmcall("TDVMCALL RDMSR", vmcall::RDMSR, [u64::from(msr), 0, 0, 0]) {
        Ok(out) => Ok(out.r11),
        Err(HostError::Refused { status: s, .. }) if s == status::INVALID_OPERAND => {
            Err(MsrError::Fault(gp()))
        }
        Err(e) => Err(MsrError::Host(e)),
    }
}

/// WRMSR through `Instruction.WRMSR`.
#[optimize(speed)]
pub fn wrmsr(msr: u32, v: u64) -> Result<(), MsrError> {
    match vmcall("TDVMCALL WRMSR", vmcall::WRMSR, [u64::from(msr), v, 0, 0]) {
        Ok(_) => Ok(()),
        Err(HostError::Refused { status: s, .. }) if s == status::INVALID_OPERAND => {
            Err(MsrError::Fault(gp()))
        }
        Err(e) => Err(MsrError::Host(e)),
    }
}

fn gp() -> crate::arch::insn::Fault {
    crate::arch::insn::Fault {
        vector: 13,
        error_code: 0,
    }
}

/// EOI to the x2APIC: a raw WRMSR of 0 to MSR 0x80B. The CPU virtualises it in a TD (the
/// TDX module's MSR table has 0x80B with its bitmap bit fixed to 0: no exit, no #VE), and
/// KVM would refuse it through TDG.VP.VMCALL<Instruction.WRMSR> (`tdx_has_emulated_msr()`:
/// KVM has no access to the virtual-APIC page). The one raw intercepted instruction of the
/// TDX backend, under the fixup table all the same.
#[inline(never)]
pub fn x2apic_eoi() -> Result<(), crate::arch::insn::Fault> {
    let msr = protocol::apic::x2apic_msr(protocol::apic::reg::EOI);
    // SAFETY: EOI only retires the interrupt in service, which the caller just handled.
    unsafe { crate::arch::insn::wrmsr_safe(msr, 0) }
}

/// HLT through `Instruction.HLT` with "interrupts not blocked" (R12 = 0, as Linux's
/// `tdx_safe_halt`), then a one-instruction interrupt window so the interrupt the host
/// queued for the wake-up is taken before returning.
pub fn halt() -> Result<(), HostError> {
    let r = vmcall("TDVMCALL HLT", vmcall::HLT, [0, 0, 0, 0]);
    crate::arch::insn::interrupt_window();
    r.map(|_| ())
}

/// Stops for good: `Instruction.HLT` with interrupts blocked (R12 = 1), forever.
pub fn stop_forever() -> ! {
    loop {
        let _ = vmcall_raw(
            ExposeMask::LINUX,
            vmcall::STANDARD,
            vmcall::HLT,
            [1, 0, 0, 0],
        );
    }
}
