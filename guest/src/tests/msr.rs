//! `msr`: RDMSR/WRMSR through the backend, with the fault fixup for a missing MSR.
//!
//! Each case expects what the platform's host answers: on TDX that is KVM's policy for
//! TDG.VP.VMCALL<Instruction.RDMSR/WRMSR> (`tdx_has_emulated_msr()`,
//! `tdx_is_read_only_msr()` in arch/x86/kvm/vmx/tdx.c): only the MSRs KVM emulates for a TD
//! are served, every other MSR (IA32_TSC, IA32_KERNEL_GS_BASE: a TD reads those natively)
//! and any write to the APIC base, EFER or FEAT_CTL is refused with INVALID_OPERAND, which
//! the backend reports as #GP.

use super::{Case, Ctx, Patterns, Suite};
use crate::io::{rdmsr, wrmsr};
use crate::platform::MsrError;
use protocol::catalog::{self, Need};

pub static SUITE: Suite = Suite {
    spec: &catalog::MSR,
    cases: &[
        Case {
            name: "efer_long_mode",
            run: efer_long_mode,
        },
        Case {
            name: "write_read_back",
            run: write_read_back,
        },
        Case {
            name: "tsc_advances",
            run: tsc_advances,
        },
        Case {
            name: "apic_base",
            run: apic_base,
        },
        Case {
            name: "missing_msr_faults",
            run: missing_msr_faults,
        },
    ],
};

use protocol::apic;
use protocol::platform::PlatformKind;
use protocol::x86::{efer, msr};

const IA32_EFER: u32 = msr::EFER;
const EFER_LME: u64 = efer::LME;
const EFER_LMA: u64 = efer::LMA;
const IA32_KERNEL_GS_BASE: u32 = msr::KERNEL_GS_BASE;
const IA32_TSC: u32 = msr::TSC;
const IA32_APIC_BASE: u32 = msr::APIC_BASE;
const APIC_BASE_BSP: u64 = apic::BASE_BSP;
const APIC_BASE_ADDR_MASK: u64 = apic::BASE_ADDR_MASK;
/// An MSR index in no vendor's architectural or model-specific range, which KVM and QEMU
/// TCG both answer with #GP.
const MISSING_MSR: u32 = 0x0bad_0000;
/// #GP.
const VECTOR_GP: u8 = protocol::x86::vector::GP;

/// Whether the host's KVM refuses this access (TDX: INVALID_OPERAND, which the backend
/// reports as #GP) as it must; fails the case otherwise.
fn expect_refused(ctx: &mut Ctx<'_>, r: Result<u64, MsrError>, what: &str) {
    match r {
        Err(MsrError::Fault(f)) => {
            ctx.check_eq(what, VECTOR_GP, f.vector);
        }
        Ok(v) => {
            ctx.fail(what);
            ctx.diag()
                .str("KVM refuses it for a TD (INVALID_OPERAND), the host answered ")
                .hex(v)
                .emit();
        }
        Err(e) => {
            ctx.fail(what);
            describe(ctx, e);
        }
    }
}

fn is_tdx(ctx: &Ctx<'_>) -> bool {
    ctx.env.platform == PlatformKind::Tdx
}

fn read(ctx: &mut Ctx<'_>, msr: u32, name: &str) -> Option<u64> {
    match rdmsr(msr) {
        Ok(v) => Some(v),
        Err(e) => {
            ctx.fail(name);
            describe(ctx, e);
            None
        }
    }
}

fn describe(ctx: &Ctx<'_>, e: MsrError) {
    let mut l = ctx.diag();
    match e {
        MsrError::Fault(f) => {
            l.str("faulted with vector ")
                .dec(u64::from(f.vector))
                .str(" error ")
                .hex(f.error_code);
        }
        MsrError::Host(h) => super::describe_host_error(&mut l, &h),
    }
    l.emit();
}

fn efer_long_mode(ctx: &mut Ctx<'_>) {
    let Some(v) = read(ctx, IA32_EFER, "RDMSR IA32_EFER failed") else {
        return;
    };
    ctx.check_eq(
        "EFER.LME|LMA",
        EFER_LME | EFER_LMA,
        v & (EFER_LME | EFER_LMA),
    );
    if is_tdx(ctx) {
        // EFER is the TDX module's: KVM reads it for a TD but refuses a write
        // (`tdx_is_read_only_msr()`), even of the value it holds.
        // SAFETY: the value read back, so nothing would change if it were written.
        let w = unsafe { wrmsr(IA32_EFER, v) }.map(|()| v);
        expect_refused(ctx, w, "TDVMCALL WRMSR IA32_EFER refused (#GP)");
    }
}

/// TDX: KVM serves neither direction of IA32_KERNEL_GS_BASE for a TD (not in
/// `tdx_has_emulated_msr()`); a TD reads and writes it natively.
fn write_read_back(ctx: &mut Ctx<'_>) {
    if is_tdx(ctx) {
        expect_refused(
            ctx,
            rdmsr(IA32_KERNEL_GS_BASE),
            "TDVMCALL RDMSR IA32_KERNEL_GS_BASE refused (#GP)",
        );
        // SAFETY: refused by the host before anything changes (and KERNEL_GS_BASE only
        // matters to SWAPGS, which this kernel never runs).
        let w = unsafe { wrmsr(IA32_KERNEL_GS_BASE, 0x1000) }.map(|()| 0);
        expect_refused(ctx, w, "TDVMCALL WRMSR IA32_KERNEL_GS_BASE refused (#GP)");
        return;
    }
    let Some(old) = read(ctx, IA32_KERNEL_GS_BASE, "RDMSR IA32_KERNEL_GS_BASE failed") else {
        return;
    };
    // Canonical addresses only (bits 63:47 equal), or WRMSR #GPs.
    let mut p = Patterns::new(0x3002_0001);
    for _ in 0..2 {
        let v = p.next() & 0x0000_7fff_ffff_f000;
        // SAFETY: KERNEL_GS_BASE only matters to SWAPGS, which this kernel never runs.
        if let Err(e) = unsafe { wrmsr(IA32_KERNEL_GS_BASE, v) } {
            ctx.fail("WRMSR IA32_KERNEL_GS_BASE failed");
            describe(ctx, e);
            return;
        }
        if let Some(got) = read(ctx, IA32_KERNEL_GS_BASE, "RDMSR IA32_KERNEL_GS_BASE failed") {
            ctx.check_eq("read back", v, got);
        }
    }
    // SAFETY: as above; restores the value found.
    if let Err(e) = unsafe { wrmsr(IA32_KERNEL_GS_BASE, old) } {
        ctx.fail("WRMSR restoring IA32_KERNEL_GS_BASE failed");
        describe(ctx, e);
    }
}

/// TDX: KVM refuses IA32_TSC through TDG.VP.VMCALL (not in `tdx_has_emulated_msr()`); a TD
/// reads its TSC natively (RDTSC: the TDX module virtualises the TSC, no exit).
fn tsc_advances(ctx: &mut Ctx<'_>) {
    if is_tdx(ctx) {
        expect_refused(
            ctx,
            rdmsr(IA32_TSC),
            "TDVMCALL RDMSR IA32_TSC refused (#GP)",
        );
        let (a, b) = (crate::arch::insn::rdtsc(), crate::arch::insn::rdtsc());
        check_advances(ctx, a, b, "second RDTSC is not larger");
        return;
    }
    // QEMU TCG's RDMSR answers 0 for MSRs it does not model (IA32_TSC among them) instead
    // of raising #GP: target/i386/tcg/sysemu/misc_helper.c, helper_rdmsr, `default:` arm.
    if ctx.env.is_tcg() {
        ctx.skip(Need::ExactMsrs);
        return;
    }
    let (Some(a), Some(b)) = (
        read(ctx, IA32_TSC, "RDMSR TSC failed"),
        read(ctx, IA32_TSC, "RDMSR TSC failed"),
    ) else {
        return;
    };
    check_advances(ctx, a, b, "second TSC read is not larger");
}

/// Fails with `what` and both values unless the second TSC value `b` is larger than `a`.
fn check_advances(ctx: &mut Ctx<'_>, a: u64, b: u64, what: &str) {
    if !ctx.check(b > a, what) {
        ctx.diag()
            .str("first ")
            .hex(a)
            .str(" second ")
            .hex(b)
            .emit();
    }
}

/// TDX: the APIC is enabled in x2APIC mode (EXTD), and the base is read-only
/// (`tdx_is_read_only_msr()`).
fn apic_base(ctx: &mut Ctx<'_>) {
    let Some(v) = read(ctx, IA32_APIC_BASE, "RDMSR IA32_APIC_BASE failed") else {
        return;
    };
    ctx.check_eq(
        "APIC base address",
        protocol::qemu_devices::LAPIC_BASE,
        v & APIC_BASE_ADDR_MASK,
    );
    ctx.check_eq("BSP flag", APIC_BASE_BSP, v & APIC_BASE_BSP);
    if is_tdx(ctx) {
        let mode = apic::BASE_ENABLE | apic::BASE_EXTD;
        ctx.check_eq("x2APIC mode (EN|EXTD)", mode, v & mode);
        // SAFETY: the value read back; refused by the host before anything changes.
        let w = unsafe { wrmsr(IA32_APIC_BASE, v) }.map(|()| v);
        expect_refused(ctx, w, "TDVMCALL WRMSR IA32_APIC_BASE refused (#GP)");
    }
}

fn missing_msr_faults(ctx: &mut Ctx<'_>) {
    if ctx.env.is_tcg() {
        ctx.skip(Need::ExactMsrs);
        return;
    }
    match rdmsr(MISSING_MSR) {
        Ok(v) => {
            ctx.fail("RDMSR of a missing MSR returned a value");
            ctx.diag().str("value ").hex(v).emit();
        }
        Err(MsrError::Fault(f)) => {
            ctx.check_eq("RDMSR fault vector (#GP)", VECTOR_GP, f.vector);
        }
        Err(e) => {
            ctx.fail("RDMSR of a missing MSR failed without a fault");
            describe(ctx, e);
        }
    }
    // SAFETY: the MSR does not exist, so the write cannot change anything; it must #GP.
    match unsafe { wrmsr(MISSING_MSR, 0) } {
        Ok(()) => ctx.fail("WRMSR of a missing MSR succeeded"),
        Err(MsrError::Fault(f)) => {
            ctx.check_eq("WRMSR fault vector (#GP)", VECTOR_GP, f.vector);
        }
        Err(e) => {
            ctx.fail("WRMSR of a missing MSR failed without a fault");
            describe(ctx, e);
        }
    }
}
