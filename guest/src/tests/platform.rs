//! `platform`: what detection found, and the platform backend's own parameters.

use super::{Case, Ctx, Suite};
use crate::platform::{sev_es, tdx};
use protocol::catalog::{self, Need};
use protocol::ghcb::{self, CpuidReg};
use protocol::platform::PlatformKind;

pub static SUITE: Suite = Suite {
    spec: &catalog::PLATFORM,
    cases: &[
        Case {
            name: "detected",
            run: detected,
        },
        Case {
            name: "tdx_vp_info",
            run: tdx_vp_info,
        },
        Case {
            name: "sev_es_cbit",
            run: sev_es_cbit,
        },
        Case {
            name: "sev_es_ghcb_shared",
            run: sev_es_ghcb_shared,
        },
    ],
};

fn detected(ctx: &mut Ctx<'_>) {
    let Some(want) = ctx.env.expected_platform else {
        ctx.skip(Need::PlatformKey);
        return;
    };
    let Some(want_kind) = PlatformKind::from_name(want) else {
        ctx.fail("cvmprobe.platform= names no known platform");
        ctx.diag().str("value ").bytes(want.as_bytes()).emit();
        return;
    };
    if want_kind != ctx.env.platform {
        ctx.fail("detected a different platform than the host set up");
        ctx.diag()
            .str("expected ")
            .str(want_kind.name())
            .str(" got ")
            .str(ctx.env.platform.name())
            .emit();
    }
}

fn tdx_vp_info(ctx: &mut Ctx<'_>) {
    let info = match tdx::vp_info() {
        Ok(i) => i,
        Err(e) => {
            ctx.fail("TDG.VP.INFO failed");
            let mut l = ctx.diag();
            super::describe_host_error(&mut l, &e);
            l.emit();
            return;
        }
    };
    // `vp_info` already refused any other width; a non-architectural one got here only
    // because the host declared a simulated TDX of exactly that width, and the case says so.
    if !info.gpaw.is_architectural() {
        let mut l = ctx.diag();
        if !crate::platform::describe_simulation(&mut l) {
            l.str("GPAW ").dec(u64::from(info.gpaw.bits()));
        }
        l.emit();
    }
    ctx.check(
        info.gpaw.is_architectural()
            || crate::platform::declared_sim_phys_bits() == Some(info.gpaw.bits() as u8),
        "GPAW is 48 or 52 (or the width the host declared for a simulated TDX)",
    );
    ctx.check_eq(
        "shared bit in use",
        info.gpaw.shared_bit(),
        tdx::shared_bit(),
    );
    ctx.check(info.vcpus >= 1, "TDG.VP.INFO reports at least one vCPU");
    if !ctx.check(
        info.vcpu_index < info.vcpus,
        "vCPU index below the vCPU count",
    ) {
        ctx.diag()
            .str("index ")
            .dec(u64::from(info.vcpu_index))
            .str(" count ")
            .dec(u64::from(info.vcpus))
            .emit();
    }
}

fn sev_es_cbit(ctx: &mut Ctx<'_>) {
    let msr_cbit = sev_es::cbit();
    match sev_es::cpuid(ghcb::CPUID_SEV_LEAF, 0) {
        Ok(r) => {
            ctx.check_eq(
                "CPUID 0x8000001F EBX[5:0] via the GHCB",
                u32::from(msr_cbit),
                r.ebx & 0x3f,
            );
            ctx.check_eq(
                "CPUID 0x8000001F EAX SEV|SEV-ES via the GHCB",
                ghcb::CPUID_SEV | ghcb::CPUID_SEV_ES,
                r.eax & (ghcb::CPUID_SEV | ghcb::CPUID_SEV_ES),
            );
        }
        Err(e) => {
            ctx.fail("GHCB CPUID 0x8000001F failed");
            let mut l = ctx.diag();
            super::describe_host_error(&mut l, &e);
            l.emit();
        }
    }
    match sev_es::cpuid_msr(ghcb::CPUID_SEV_LEAF, CpuidReg::Ebx) {
        Ok(ebx) => {
            ctx.check_eq(
                "CPUID 0x8000001F EBX[5:0] via the MSR protocol",
                u32::from(msr_cbit),
                ebx & 0x3f,
            );
        }
        Err(e) => {
            ctx.fail("MSR-protocol CPUID failed");
            let mut l = ctx.diag();
            super::describe_host_error(&mut l, &e);
            l.emit();
        }
    }
}

/// The guest's self-check of its GHCB's mapping. The host is the authority: under the
/// built-in VMM the case passes only if the host's own check (`vmm::platform::GhcbMapping`,
/// `protocol::ghcb::GHCB_MAPPING_CASE`) found the page shared at every GHCB request too.
fn sev_es_ghcb_shared(ctx: &mut Ctx<'_>) {
    let c = 1u64 << sev_es::cbit();
    let ghcb = sev_es::ghcb_gpa();
    ctx.check_eq("GHCB GPA page alignment", 0u64, ghcb & 0xfff);
    match crate::arch::paging::translate(sev_es::ghcb_va()) {
        Some(pte) => {
            ctx.check_eq("C-bit in the GHCB page's mapping", 0u64, pte & c);
        }
        None => ctx.fail("the GHCB page is not mapped"),
    }
    // The kernel's own code is private memory.
    match crate::arch::paging::translate(sev_es_ghcb_shared as *const () as u64) {
        Some(pte) => {
            ctx.check_eq("C-bit in the kernel text's mapping", c, pte & c);
        }
        None => ctx.fail("the kernel text is not mapped"),
    }
}
