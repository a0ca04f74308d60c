//! `mmio`: MMIO of 1, 2, 4 and 8 bytes through `mmio_read` / `mmio_write`.
//!
//! Under QEMU the device is `pc-testdev`'s 64 KiB IO-memory window at 0xff000000
//! (hw/misc/pc-testdev.c `test_iomem_ops`: reads return what was written), and the `edu` PCI
//! device where the machine has PCI.

use super::{Case, Ctx, Patterns, Suite};
use crate::io::{mmio_read, mmio_write, pio_read, pio_write};
use protocol::access::Width;
use protocol::catalog::{self, Need};
use protocol::qemu_devices::{
    EDU_BAR_FALLBACK, EDU_DEVICE, EDU_ID_V1, EDU_REG_ID, EDU_REG_LIVENESS, EDU_VENDOR,
    PCI_CONFIG_ADDRESS, PCI_CONFIG_DATA,
};
use protocol::testdev::{self, Space};

pub static SUITE: Suite = Suite {
    spec: &catalog::MMIO,
    cases: &[
        Case {
            name: "u8_roundtrip",
            run: u8_roundtrip,
        },
        Case {
            name: "u16_roundtrip",
            run: u16_roundtrip,
        },
        Case {
            name: "u32_roundtrip",
            run: u32_roundtrip,
        },
        Case {
            name: "u64_roundtrip",
            run: u64_roundtrip,
        },
        Case {
            name: "byte_lanes",
            run: byte_lanes,
        },
        Case {
            name: "narrow_write_merge",
            run: narrow_write_merge,
        },
        Case {
            name: "host_values",
            run: host_values,
        },
        Case {
            name: "pci_edu",
            run: pci_edu,
        },
    ],
};

/// The memory-like window's GPA, or a skip.
fn window(ctx: &mut Ctx<'_>) -> Option<u64> {
    let w = ctx.env.mmio_window();
    if w.is_none() {
        ctx.skip(Need::TestDevice);
    }
    w
}

fn u8_roundtrip(ctx: &mut Ctx<'_>) {
    let Some(iomem) = window(ctx) else {
        return;
    };
    let mut p = Patterns::new(0x2008_0001);
    for off in [0x10u64, 0x11, 0x17, 0xfff] {
        let v = p.next() as u8;
        ctx.dev_mmio_write::<u8>(iomem + off, v);
        ctx.check_eq(
            "1-byte read after write",
            v,
            ctx.dev_mmio_read::<u8>(iomem + off),
        );
    }
}

fn u16_roundtrip(ctx: &mut Ctx<'_>) {
    let Some(iomem) = window(ctx) else {
        return;
    };
    let mut p = Patterns::new(0x2016_0001);
    for off in [0x20u64, 0x22, 0x2e] {
        let v = p.next() as u16;
        ctx.dev_mmio_write::<u16>(iomem + off, v);
        ctx.check_eq(
            "2-byte read after write",
            v,
            ctx.dev_mmio_read::<u16>(iomem + off),
        );
    }
}

fn u32_roundtrip(ctx: &mut Ctx<'_>) {
    let Some(iomem) = window(ctx) else {
        return;
    };
    let mut p = Patterns::new(0x2032_0001);
    for off in [0x40u64, 0x44, 0x7c] {
        let v = p.next() as u32;
        ctx.dev_mmio_write::<u32>(iomem + off, v);
        ctx.check_eq(
            "4-byte read after write",
            v,
            ctx.dev_mmio_read::<u32>(iomem + off),
        );
    }
}

fn u64_roundtrip(ctx: &mut Ctx<'_>) {
    let Some(iomem) = window(ctx) else {
        return;
    };
    let mut p = Patterns::new(0x2064_0001);
    for off in [0x80u64, 0x88, 0xf8] {
        let v = p.next();
        ctx.dev_mmio_write::<u64>(iomem + off, v);
        ctx.check_eq(
            "8-byte read after write",
            v,
            ctx.dev_mmio_read::<u64>(iomem + off),
        );
    }
}

fn byte_lanes(ctx: &mut Ctx<'_>) {
    let Some(iomem) = window(ctx) else {
        return;
    };
    let base = iomem + 0x100;
    let v = Patterns::new(0x201a_0001).next();
    ctx.dev_mmio_write::<u64>(base, v);
    for i in 0..8 {
        ctx.check_eq(
            "byte lane",
            (v >> (8 * i)) as u8,
            ctx.dev_mmio_read::<u8>(base + i),
        );
    }
    for i in 0..4 {
        ctx.check_eq(
            "2-byte lane",
            (v >> (16 * i)) as u16,
            ctx.dev_mmio_read::<u16>(base + 2 * i),
        );
    }
    for i in 0..2 {
        ctx.check_eq(
            "4-byte lane",
            (v >> (32 * i)) as u32,
            ctx.dev_mmio_read::<u32>(base + 4 * i),
        );
    }
}

fn narrow_write_merge(ctx: &mut Ctx<'_>) {
    let Some(iomem) = window(ctx) else {
        return;
    };
    let base = iomem + 0x200;
    let mut p = Patterns::new(0x203e_0001);
    let mut expect = p.next();
    ctx.dev_mmio_write::<u64>(base, expect);
    let b = p.next() as u8;
    ctx.dev_mmio_write::<u8>(base + 3, b);
    expect = (expect & !(0xff << 24)) | (u64::from(b) << 24);
    ctx.check_eq(
        "after 1-byte write at +3",
        expect,
        ctx.dev_mmio_read::<u64>(base),
    );
    let h = p.next() as u16;
    ctx.dev_mmio_write::<u16>(base + 6, h);
    expect = (expect & !(0xffff << 48)) | (u64::from(h) << 48);
    ctx.check_eq(
        "after 2-byte write at +6",
        expect,
        ctx.dev_mmio_read::<u64>(base),
    );
    let w = p.next() as u32;
    ctx.dev_mmio_write::<u32>(base, w);
    expect = (expect & !0xffff_ffff) | u64::from(w);
    ctx.check_eq(
        "after 4-byte write at +0",
        expect,
        ctx.dev_mmio_read::<u64>(base),
    );
}

/// PCI configuration mechanism #1 address for bus 0.
fn pci_addr(dev: u32, reg: u32) -> u32 {
    0x8000_0000 | (dev << 11) | (reg & 0xfc)
}

fn pci_read32(dev: u32, reg: u32) -> u32 {
    pio_write::<u32>(PCI_CONFIG_ADDRESS, pci_addr(dev, reg));
    pio_read::<u32>(PCI_CONFIG_DATA)
}

fn pci_write32(dev: u32, reg: u32, v: u32) {
    pio_write::<u32>(PCI_CONFIG_ADDRESS, pci_addr(dev, reg));
    pio_write::<u32>(PCI_CONFIG_DATA, v);
}

/// PCI config register offsets (PCI Local Bus Spec 3.0, 6.1).
const PCI_ID: u32 = 0x00;
const PCI_COMMAND: u32 = 0x04;
const PCI_BAR0: u32 = 0x10;
/// Command register bit 1: memory space enable.
const PCI_COMMAND_MEMORY: u32 = 1 << 1;

fn pci_edu(ctx: &mut Ctx<'_>) {
    let want = (u32::from(EDU_DEVICE) << 16) | u32::from(EDU_VENDOR);
    let Some(dev) = (0..32).find(|&d| pci_read32(d, PCI_ID) == want) else {
        ctx.skip(Need::EduPci);
        return;
    };
    let mut bar = u64::from(pci_read32(dev, PCI_BAR0) & !0xf);
    if bar == 0 {
        // No firmware assigned the BAR (PVH boot without a BIOS): give it one ourselves.
        pci_write32(dev, PCI_BAR0, EDU_BAR_FALLBACK as u32);
        bar = u64::from(pci_read32(dev, PCI_BAR0) & !0xf);
        if !ctx.check_eq("BAR0 after assignment", EDU_BAR_FALLBACK, bar) {
            return;
        }
    }
    let cmd = pci_read32(dev, PCI_COMMAND);
    pci_write32(dev, PCI_COMMAND, (cmd & 0xffff) | PCI_COMMAND_MEMORY);
    ctx.check_eq(
        "edu identification register",
        EDU_ID_V1,
        mmio_read::<u32>(bar + EDU_REG_ID),
    );
    let mut p = Patterns::new(0x20ed_0001);
    for _ in 0..2 {
        let v = p.next() as u32;
        mmio_write::<u32>(bar + EDU_REG_LIVENESS, v);
        ctx.check_eq(
            "edu liveness register (inverse of the write)",
            !v,
            mmio_read::<u32>(bar + EDU_REG_LIVENESS),
        );
    }
}

fn host_values(ctx: &mut Ctx<'_>) {
    let Some(seed) = ctx.env.seed() else {
        ctx.skip(Need::BuiltinTestDevice);
        return;
    };
    let base = testdev::MMIO_BASE + testdev::mmio::VALUE;
    let want = |off: u64, w| testdev::host_value(seed, Space::Mmio, testdev::mmio::VALUE + off, w);
    ctx.check_eq(
        "1-byte host value",
        want(0, Width::B1) as u8,
        ctx.dev_mmio_read::<u8>(base),
    );
    ctx.check_eq(
        "2-byte host value",
        want(0x8, Width::B2) as u16,
        ctx.dev_mmio_read::<u16>(base + 0x8),
    );
    ctx.check_eq(
        "4-byte host value",
        want(0x10, Width::B4) as u32,
        ctx.dev_mmio_read::<u32>(base + 0x10),
    );
    ctx.check_eq(
        "8-byte host value",
        want(0x18, Width::B8),
        ctx.dev_mmio_read::<u64>(base + 0x18),
    );
}
