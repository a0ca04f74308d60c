//! `io`: port IO of 1, 2 and 4 bytes through `pio_read` / `pio_write`.
//!
//! Under QEMU the device is `pc-testdev` (hw/misc/pc-testdev.c): a 4-byte data register at
//! 0xe0 whose byte lanes follow the access offset, and a byte-implemented view of it at 0xe8.

use super::{Case, Ctx, Patterns, Suite};
use crate::io::{pio_read, pio_write};
use protocol::catalog;
use protocol::qemu_devices::{
    PC_TESTDEV_IOPORT as DATA, PC_TESTDEV_IOPORT_BYTE as DATA_BYTE, UNASSIGNED_PORT,
};

pub static SUITE: Suite = Suite {
    spec: &catalog::IO,
    cases: &[
        Case {
            name: "u32_roundtrip",
            run: u32_roundtrip,
        },
        Case {
            name: "u16_lanes",
            run: u16_lanes,
        },
        Case {
            name: "u8_lanes",
            run: u8_lanes,
        },
        Case {
            name: "split_register",
            run: split_register,
        },
        Case {
            name: "unassigned_port",
            run: unassigned_port,
        },
    ],
};

/// Whether `pc-testdev` answers: a value written to its data register reads back (an
/// unclaimed port reads all ones and ignores writes).
pub fn probe_pc_testdev() -> bool {
    let probe = 0x5a17_c3e1u32;
    pio_write::<u32>(DATA, probe);
    let ok = pio_read::<u32>(DATA) == probe;
    pio_write::<u32>(DATA, !probe);
    ok && pio_read::<u32>(DATA) == !probe
}

fn need_testdev(ctx: &mut Ctx<'_>) -> bool {
    if !ctx.env.pc_testdev {
        ctx.skip("no port-IO test device (QEMU: -device pc-testdev)");
        return false;
    }
    true
}

fn u32_roundtrip(ctx: &mut Ctx<'_>) {
    if !need_testdev(ctx) {
        return;
    }
    let mut p = Patterns::new(0x10_32);
    for v in [0u32, u32::MAX, p.next() as u32, p.next() as u32] {
        pio_write::<u32>(DATA, v);
        ctx.check_eq("4-byte read after 4-byte write", v, pio_read::<u32>(DATA));
    }
}

fn u16_lanes(ctx: &mut Ctx<'_>) {
    if !need_testdev(ctx) {
        return;
    }
    let mut p = Patterns::new(0x10_16);
    let v = p.next() as u32;
    pio_write::<u32>(DATA, v);
    ctx.check_eq("low half", v as u16, pio_read::<u16>(DATA));
    ctx.check_eq("high half", (v >> 16) as u16, pio_read::<u16>(DATA + 2));
    let hi = p.next() as u16;
    pio_write::<u16>(DATA + 2, hi);
    ctx.check_eq(
        "dword after high-half write",
        (u32::from(hi) << 16) | (v & 0xffff),
        pio_read::<u32>(DATA),
    );
    let lo = p.next() as u16;
    pio_write::<u16>(DATA, lo);
    ctx.check_eq(
        "dword after low-half write",
        (u32::from(hi) << 16) | u32::from(lo),
        pio_read::<u32>(DATA),
    );
}

fn u8_lanes(ctx: &mut Ctx<'_>) {
    if !need_testdev(ctx) {
        return;
    }
    let mut p = Patterns::new(0x10_08);
    let v = p.next() as u32;
    pio_write::<u32>(DATA, v);
    for lane in 0..4u16 {
        ctx.check_eq(
            "byte lane read",
            (v >> (8 * lane)) as u8,
            pio_read::<u8>(DATA + lane),
        );
    }
    let mut expect = v;
    for lane in 0..4u16 {
        let b = p.next() as u8;
        pio_write::<u8>(DATA + lane, b);
        expect = (expect & !(0xff << (8 * lane))) | (u32::from(b) << (8 * lane));
        ctx.check_eq("dword after byte-lane write", expect, pio_read::<u32>(DATA));
    }
}

fn split_register(ctx: &mut Ctx<'_>) {
    if !need_testdev(ctx) {
        return;
    }
    let mut p = Patterns::new(0x10_e8);
    for _ in 0..2 {
        let v = p.next() as u32;
        pio_write::<u32>(DATA_BYTE, v);
        ctx.check_eq(
            "4-byte read of the byte-wise register",
            v,
            pio_read::<u32>(DATA_BYTE),
        );
        ctx.check_eq(
            "same value through the dword register",
            v,
            pio_read::<u32>(DATA),
        );
        ctx.check_eq(
            "2-byte read at offset 2",
            (v >> 16) as u16,
            pio_read::<u16>(DATA_BYTE + 2),
        );
    }
}

fn unassigned_port(ctx: &mut Ctx<'_>) {
    ctx.check_eq("1-byte read", 0xffu8, pio_read::<u8>(UNASSIGNED_PORT));
    ctx.check_eq("2-byte read", 0xffffu16, pio_read::<u16>(UNASSIGNED_PORT));
    ctx.check_eq("4-byte read", u32::MAX, pio_read::<u32>(UNASSIGNED_PORT));
}
