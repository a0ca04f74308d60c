//! `msr`: RDMSR/WRMSR through the backend, with the fault fixup for a missing MSR.

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

/// IA32_EFER (Intel SDM vol. 4 table 2-2).
const IA32_EFER: u32 = 0xc000_0080;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// IA32_KERNEL_GS_BASE.
const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// IA32_TIME_STAMP_COUNTER.
const IA32_TSC: u32 = 0x10;
/// IA32_APIC_BASE.
const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_ADDR_MASK: u64 = 0xf_ffff_f000;
/// An MSR index in no vendor's architectural or model-specific range, which KVM and QEMU
/// TCG both answer with #GP.
const MISSING_MSR: u32 = 0x0bad_0000;
/// #GP.
const VECTOR_GP: u8 = 13;

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
    if let Some(v) = read(ctx, IA32_EFER, "RDMSR IA32_EFER failed") {
        ctx.check_eq(
            "EFER.LME|LMA",
            EFER_LME | EFER_LMA,
            v & (EFER_LME | EFER_LMA),
        );
    }
}

fn write_read_back(ctx: &mut Ctx<'_>) {
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

fn tsc_advances(ctx: &mut Ctx<'_>) {
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
    if !ctx.check(b > a, "second TSC read is not larger") {
        ctx.diag()
            .str("first ")
            .hex(a)
            .str(" second ")
            .hex(b)
            .emit();
    }
}

fn apic_base(ctx: &mut Ctx<'_>) {
    if let Some(v) = read(ctx, IA32_APIC_BASE, "RDMSR IA32_APIC_BASE failed") {
        ctx.check_eq(
            "APIC base address",
            protocol::qemu_devices::LAPIC_BASE,
            v & APIC_BASE_ADDR_MASK,
        );
        ctx.check_eq("BSP flag", APIC_BASE_BSP, v & APIC_BASE_BSP);
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
