//! `cpuid`: leaves whose answers the host chose or the architecture fixes.

use super::{Case, Ctx, Suite};
use crate::io::cpuid;
use protocol::catalog::{self, Need};
use protocol::cmdline;

pub static SUITE: Suite = Suite {
    spec: &catalog::CPUID,
    cases: &[
        Case {
            name: "max_leaves",
            run: max_leaves,
        },
        Case {
            name: "hypervisor_bit",
            run: hypervisor_bit,
        },
        Case {
            name: "brand_string",
            run: brand_string,
        },
        Case {
            name: "leaf1_apic_id",
            run: leaf1_apic_id,
        },
    ],
};

fn max_leaves(ctx: &mut Ctx<'_>) {
    let basic = cpuid(0, 0).eax;
    ctx.check(basic >= 1, "leaf 0 EAX (max basic leaf) < 1");
    let ext = cpuid(0x8000_0000, 0).eax;
    if !ctx.check(
        ext >= 0x8000_0004,
        "leaf 0x80000000 EAX (max extended leaf) < 0x80000004",
    ) {
        ctx.diag()
            .str("max extended leaf ")
            .hex(u64::from(ext))
            .emit();
    }
}

fn hypervisor_bit(ctx: &mut Ctx<'_>) {
    let ecx = cpuid(1, 0).ecx;
    ctx.check_eq("CPUID.1:ECX[31]", 1u32, ecx >> 31);
}

fn brand_string(ctx: &mut Ctx<'_>) {
    let Some(want) = ctx.env.brand else {
        ctx.skip(Need::Brand);
        return;
    };
    let mut brand = [0u8; 48];
    for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
        let r = cpuid(leaf, 0);
        for (j, reg) in [r.eax, r.ebx, r.ecx, r.edx].into_iter().enumerate() {
            brand[i * 16 + j * 4..i * 16 + j * 4 + 4].copy_from_slice(&reg.to_le_bytes());
        }
    }
    if !cmdline::brand_matches(want, &brand) {
        ctx.fail("brand string differs from the host's choice");
        ctx.diag()
            .str("expected ")
            .str(want)
            .str(" got ")
            .bytes(&brand)
            .emit();
    }
}

fn leaf1_apic_id(ctx: &mut Ctx<'_>) {
    ctx.check_eq("CPUID.1:EBX[31:24]", 0u32, cpuid(1, 0).ebx >> 24);
}
