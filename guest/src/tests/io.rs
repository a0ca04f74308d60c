//! `io`: port IO of 1, 2 and 4 bytes through `pio_read` / `pio_write`.
//!
//! Under QEMU the device is `pc-testdev` (hw/misc/pc-testdev.c): a 4-byte data register at
//! 0xe0 whose byte lanes follow the access offset, and a byte-implemented view of it at 0xe8.

use super::{Case, Ctx, Patterns, Suite};
use crate::io::{pio_read, pio_write};
use protocol::access::Width;
use protocol::catalog::{self, Need};
use protocol::qemu_devices::{PC_TESTDEV_IOPORT, UNASSIGNED_PORT};
use protocol::testdev::{self, Space};

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
        Case {
            name: "host_values",
            run: host_values,
        },
    ],
};

/// Whether `pc-testdev` answers: a value written to its data register reads back (an
/// unclaimed port reads all ones and ignores writes).
pub fn probe_pc_testdev() -> bool {
    let probe = 0x5a17_c3e1u32;
    pio_write::<u32>(PC_TESTDEV_IOPORT, probe);
    let ok = pio_read::<u32>(PC_TESTDEV_IOPORT) == probe;
    pio_write::<u32>(PC_TESTDEV_IOPORT, !probe);
    ok && pio_read::<u32>(PC_TESTDEV_IOPORT) == !probe
}

/// The built-in VMM's test device: its ID register, then the run's seed (MMIO).
pub fn probe_cvmprobe_testdev() -> Option<u64> {
    if pio_read::<u32>(testdev::PIO_BASE + testdev::pio::ID) != testdev::ID_VALUE {
        return None;
    }
    let mmio_id = crate::io::mmio_read::<u32>(testdev::MMIO_BASE + testdev::mmio::ID);
    if mmio_id != testdev::ID_VALUE {
        return None;
    }
    Some(crate::io::mmio_read::<u64>(
        testdev::MMIO_BASE + testdev::mmio::SEED,
    ))
}

/// `(data port, byte-wise port)`, or a skip.
fn ports(ctx: &mut Ctx<'_>) -> Option<(u16, u16)> {
    let p = ctx.env.pio_ports();
    if p.is_none() {
        ctx.skip(Need::TestDevice);
    }
    p
}

fn u32_roundtrip(ctx: &mut Ctx<'_>) {
    let Some((data, _)) = ports(ctx) else {
        return;
    };
    let mut p = Patterns::new(0x1032_0001);
    for v in [0u32, u32::MAX, p.next() as u32, p.next() as u32] {
        ctx.dev_pio_write::<u32>(data, v);
        ctx.check_eq(
            "4-byte read after 4-byte write",
            v,
            ctx.dev_pio_read::<u32>(data),
        );
    }
}

fn u16_lanes(ctx: &mut Ctx<'_>) {
    let Some((data, _)) = ports(ctx) else {
        return;
    };
    let mut p = Patterns::new(0x1016_0001);
    let v = p.next() as u32;
    ctx.dev_pio_write::<u32>(data, v);
    ctx.check_eq("low half", v as u16, ctx.dev_pio_read::<u16>(data));
    ctx.check_eq(
        "high half",
        (v >> 16) as u16,
        ctx.dev_pio_read::<u16>(data + 2),
    );
    let hi = p.next() as u16;
    ctx.dev_pio_write::<u16>(data + 2, hi);
    ctx.check_eq(
        "dword after high-half write",
        (u32::from(hi) << 16) | (v & 0xffff),
        ctx.dev_pio_read::<u32>(data),
    );
    let lo = p.next() as u16;
    ctx.dev_pio_write::<u16>(data, lo);
    ctx.check_eq(
        "dword after low-half write",
        (u32::from(hi) << 16) | u32::from(lo),
        ctx.dev_pio_read::<u32>(data),
    );
}

fn u8_lanes(ctx: &mut Ctx<'_>) {
    let Some((data, _)) = ports(ctx) else {
        return;
    };
    let mut p = Patterns::new(0x1008_0001);
    let v = p.next() as u32;
    ctx.dev_pio_write::<u32>(data, v);
    for lane in 0..4u16 {
        ctx.check_eq(
            "byte lane read",
            (v >> (8 * lane)) as u8,
            ctx.dev_pio_read::<u8>(data + lane),
        );
    }
    let mut expect = v;
    for lane in 0..4u16 {
        let b = p.next() as u8;
        ctx.dev_pio_write::<u8>(data + lane, b);
        expect = (expect & !(0xff << (8 * lane))) | (u32::from(b) << (8 * lane));
        ctx.check_eq(
            "dword after byte-lane write",
            expect,
            ctx.dev_pio_read::<u32>(data),
        );
    }
}

fn split_register(ctx: &mut Ctx<'_>) {
    let Some((data, byte)) = ports(ctx) else {
        return;
    };
    let mut p = Patterns::new(0x10e8_0001);
    for _ in 0..2 {
        let v = p.next() as u32;
        ctx.dev_pio_write::<u32>(byte, v);
        ctx.check_eq(
            "4-byte read of the byte-wise register",
            v,
            ctx.dev_pio_read::<u32>(byte),
        );
        ctx.check_eq(
            "same value through the dword register",
            v,
            ctx.dev_pio_read::<u32>(data),
        );
        ctx.check_eq(
            "2-byte read at offset 2",
            (v >> 16) as u16,
            ctx.dev_pio_read::<u16>(byte + 2),
        );
    }
}

fn unassigned_port(ctx: &mut Ctx<'_>) {
    ctx.check_eq("1-byte read", 0xffu8, pio_read::<u8>(UNASSIGNED_PORT));
    ctx.check_eq("2-byte read", 0xffffu16, pio_read::<u16>(UNASSIGNED_PORT));
    ctx.check_eq("4-byte read", u32::MAX, pio_read::<u32>(UNASSIGNED_PORT));
}

fn host_values(ctx: &mut Ctx<'_>) {
    let Some(seed) = ctx.env.seed() else {
        ctx.skip(Need::BuiltinTestDevice);
        return;
    };
    let port = testdev::PIO_BASE + testdev::pio::VALUE;
    let off = u64::from(testdev::pio::VALUE);
    let want = |w| testdev::host_value(seed, Space::Pio, off, w);
    ctx.check_eq(
        "1-byte host value",
        want(Width::B1) as u8,
        ctx.dev_pio_read::<u8>(port),
    );
    ctx.check_eq(
        "2-byte host value",
        want(Width::B2) as u16,
        ctx.dev_pio_read::<u16>(port),
    );
    ctx.check_eq(
        "4-byte host value",
        want(Width::B4) as u32,
        ctx.dev_pio_read::<u32>(port),
    );
}
