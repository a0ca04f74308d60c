//! `memslot`: the host deletes the memslot under a page the guest is using and re-creates it
//! (`protocol::memslot`). Each case is one cycle with one instruction form:
//!
//! - loads: read RAM once, ask for DELETE, read until the marker arrives (the page is MMIO
//!   now: an MMIO exit on a legacy VM, a #VE / #VC the handler emulates on TDX / SEV-ES), ask
//!   for RESTORE, read until RAM is back; every value checked against the host's RAM pattern
//!   or marker, extended by the form's rules;
//! - stores: read RAM once, ask for DELETE, read until the marker arrives, store the agreed
//!   value once, read
//!   back the marker (the store did not stick), ask for RESTORE, read until RAM is back with
//!   its old content (the store never reached RAM).
//!
//! The cycle ends with a REPORT of the accesses the guest made while the page was MMIO; the
//! host fails the run if its own count differs (exactly one host access per guest access).
//! The register values are checked here against the architecture's rules written out per
//! form, not against the decoder the handlers use.

use super::{Case, Ctx, Suite, TestDevice};
use crate::io::{pio_read, pio_write};
use core::arch::asm;
use protocol::access::Width;
use protocol::catalog::{self, Need};
use protocol::memslot::{self, CONTROL_ID, CONTROL_PORT, command};

pub static SUITE: Suite = Suite {
    spec: &catalog::MEMSLOT,
    cases: &[
        Case {
            name: "load_u8",
            run: |c| load(c, &LOAD_U8),
        },
        Case {
            name: "load_u16",
            run: |c| load(c, &LOAD_U16),
        },
        Case {
            name: "load_u32",
            run: |c| load(c, &LOAD_U32),
        },
        Case {
            name: "load_u64",
            run: |c| load(c, &LOAD_U64),
        },
        Case {
            name: "load_high_u8",
            run: |c| load(c, &LOAD_HIGH_U8),
        },
        Case {
            name: "movzx_u8",
            run: |c| load(c, &MOVZX_U8),
        },
        Case {
            name: "movzx_u16",
            run: |c| load(c, &MOVZX_U16),
        },
        Case {
            name: "movsx_u8",
            run: |c| load(c, &MOVSX_U8),
        },
        Case {
            name: "movsx_u16",
            run: |c| load(c, &MOVSX_U16),
        },
        Case {
            name: "movsxd",
            run: |c| load(c, &MOVSXD),
        },
        Case {
            name: "store_u8",
            run: |c| store(c, &STORE_U8),
        },
        Case {
            name: "store_u16",
            run: |c| store(c, &STORE_U16),
        },
        Case {
            name: "store_u32",
            run: |c| store(c, &STORE_U32),
        },
        Case {
            name: "store_u64",
            run: |c| store(c, &STORE_U64),
        },
    ],
};

/// Reads of the page a cycle waits for a change through, at most (the host's memslot thread
/// acts within microseconds; under single-stepping each read costs a few hundred).
const WAIT_READS: u32 = 20_000;
/// The destination register's value before each load: every byte distinct, so kept and
/// cleared bits show.
const BEFORE: u64 = 0x1122_3344_5566_7788;

/// One load form.
struct LoadForm {
    /// Page offset of the access (8-byte aligned, distinct per case).
    offset: u64,
    /// Bytes read.
    width: Width,
    /// Runs the instruction on `va` with the destination holding `before`; returns the
    /// destination afterwards.
    exec: fn(va: u64, before: u64) -> u64,
    /// The destination after the instruction reads `mem` (the architecture's rule).
    expect: fn(before: u64, mem: u64) -> u64,
}

/// One store form.
struct StoreForm {
    offset: u64,
    width: Width,
    /// Stores the low `width` bytes of `v` at `va`.
    exec: fn(va: u64, v: u64),
}

const fn sext(v: u64, bits: u32) -> u64 {
    (((v << (64 - bits)) as i64) >> (64 - bits)) as u64
}

/// A [`LoadForm`] whose instruction is `$insn` with the page address in RDI (less `$bias`,
/// for a displacement) and the destination in `$reg`.
macro_rules! load_form {
    ($offset:expr, $width:expr, $insn:literal, $bias:expr, $reg:tt, $expect:expr) => {
        LoadForm {
            offset: $offset,
            width: $width,
            exec: |va, mut r| {
                // SAFETY: `va` is the memslot page (mapped; RAM or emulated MMIO); the
                // instruction reads there and writes only its destination register.
                unsafe { asm!($insn, in("rdi") va - $bias, inout($reg) r, options(nostack)) };
                r
            },
            expect: $expect,
        }
    };
}

/// A [`StoreForm`] whose instruction is `$insn` with the page address in RDI and the value in
/// `$reg`.
macro_rules! store_form {
    ($offset:expr, $width:expr, $insn:literal, $reg:tt) => {
        StoreForm {
            offset: $offset,
            width: $width,
            exec: |va, v| {
                // SAFETY: `va` is the memslot page; the instruction writes there only.
                unsafe { asm!($insn, in("rdi") va, in($reg) v, options(nostack)) }
            },
        }
    };
}

static LOAD_U8: LoadForm = load_form!(
    0x000,
    Width::B1,
    "mov al, byte ptr [rdi]",
    0,
    "rax",
    |b, m| { (b & !0xff) | m }
);
static LOAD_U16: LoadForm = load_form!(
    0x040,
    Width::B2,
    "mov ax, word ptr [rdi]",
    0,
    "rax",
    |b, m| { (b & !0xffff) | m }
);
static LOAD_U32: LoadForm = load_form!(
    0x080,
    Width::B4,
    "mov r9d, dword ptr [rdi + 4]",
    4,
    "r9",
    |_, m| m
);
static LOAD_U64: LoadForm = load_form!(
    0x0c0,
    Width::B8,
    "mov r10, qword ptr [rdi + 8]",
    8,
    "r10",
    |_, m| m
);
static LOAD_HIGH_U8: LoadForm = load_form!(
    0x100,
    Width::B1,
    "mov ah, byte ptr [rdi]",
    0,
    "rax",
    |b, m| { (b & !0xff00) | (m << 8) }
);
static MOVZX_U8: LoadForm = load_form!(
    0x140,
    Width::B1,
    "movzx eax, byte ptr [rdi]",
    0,
    "rax",
    |_, m| m
);
static MOVZX_U16: LoadForm = load_form!(
    0x180,
    Width::B2,
    "movzx r11d, word ptr [rdi]",
    0,
    "r11",
    |_, m| m
);
static MOVSX_U8: LoadForm = load_form!(
    0x1c0,
    Width::B1,
    "movsx rax, byte ptr [rdi]",
    0,
    "rax",
    |_, m| sext(m, 8)
);
static MOVSX_U16: LoadForm = load_form!(
    0x200,
    Width::B2,
    "movsx eax, word ptr [rdi]",
    0,
    "rax",
    |_, m| { sext(m, 16) & 0xffff_ffff }
);
static MOVSXD: LoadForm = load_form!(
    0x240,
    Width::B4,
    "movsxd rax, dword ptr [rdi]",
    0,
    "rax",
    |_, m| sext(m, 32)
);

static STORE_U8: StoreForm = store_form!(0x280, Width::B1, "mov byte ptr [rdi], cl", "rcx");
static STORE_U16: StoreForm = store_form!(0x2c0, Width::B2, "mov word ptr [rdi], dx", "rdx");
static STORE_U32: StoreForm = StoreForm {
    offset: 0x300,
    width: Width::B4,
    exec: |va, v| {
        // SAFETY: `va` is the memslot page; four bytes at rsi + rdx * 4 = va.
        unsafe {
            asm!(
                "mov dword ptr [rsi + rdx*4], r8d",
                in("rsi") va - 4,
                in("rdx") 1u64,
                in("r8") v,
                options(nostack)
            )
        }
    },
};
static STORE_U64: StoreForm = store_form!(0x340, Width::B8, "mov qword ptr [rdi], r12", "r12");

/// The run's seed and the page's virtual address, or why the suite cannot run.
fn setup(ctx: &mut Ctx<'_>) -> Option<(u64, u64)> {
    let TestDevice::Cvmprobe { seed } = ctx.env.device else {
        ctx.skip(Need::BuiltinTestDevice);
        return None;
    };
    if pio_read::<u32>(CONTROL_PORT) != CONTROL_ID {
        ctx.skip(Need::MemslotControl);
        return None;
    }
    match crate::platform::memslot_va(memslot::GPA) {
        Some(va) => Some((seed, va)),
        None => {
            ctx.skip(Need::IdentityMap);
            None
        }
    }
}

fn control(v: u32) {
    pio_write::<u32>(CONTROL_PORT, v);
}

/// Reads through `read` until it returns `until`, counting the reads that returned
/// `meanwhile`; `Err(value)` on anything else, `Err(None)` on running out of reads.
fn wait(
    read: &mut dyn FnMut() -> u64,
    meanwhile: u64,
    until: u64,
    count: &mut u32,
) -> Result<(), Option<u64>> {
    for _ in 0..WAIT_READS {
        let v = read();
        if v == until {
            return Ok(());
        }
        if v != meanwhile {
            return Err(Some(v));
        }
        *count += 1;
    }
    Err(None)
}

/// After RESTORE: reads until `ram` is back, counting every other read (the marker, or a
/// value the host garbled) as an access to the emulated page. Unlike [`wait`] it does not
/// stop at a garbled value: the slot is re-created by the host asynchronously, and a cycle
/// that ended before RAM was back would leave the page MMIO under the next case's first read.
/// `Err` carries the first garbled value, or `None` when RAM never came back.
fn wait_restored(
    read: &mut dyn FnMut() -> u64,
    marker: u64,
    ram: u64,
    count: &mut u32,
) -> Result<(), Option<u64>> {
    let mut garbled = None;
    for _ in 0..WAIT_READS {
        let v = read();
        if v == ram {
            return garbled.map_or(Ok(()), |g| Err(Some(g)));
        }
        if v != marker && garbled.is_none() {
            garbled = Some(v);
        }
        *count += 1;
    }
    Err(None)
}

fn report_wait(ctx: &mut Ctx<'_>, phase: &str, expected: u64, e: Option<u64>) {
    match e {
        Some(v) => {
            ctx.fail(phase);
            ctx.diag()
                .str("expected ")
                .hex(expected)
                .str(" (or the value before) got ")
                .hex(v)
                .emit();
        }
        None => {
            ctx.fail(phase);
            ctx.diag()
                .str("no change within ")
                .dec(u64::from(WAIT_READS))
                .str(" reads")
                .emit();
        }
    }
}

fn load(ctx: &mut Ctx<'_>, f: &LoadForm) {
    let Some((seed, page)) = setup(ctx) else {
        return;
    };
    let va = page + f.offset;
    let ram = (f.expect)(BEFORE, memslot::ram_value(seed, f.offset, f.width));
    let marker = (f.expect)(BEFORE, memslot::marker_value(seed, f.offset, f.width));
    let mut read = || (f.exec)(va, BEFORE);
    let first = read();
    if !ctx.check(first == ram, "before DELETE: the page does not read as RAM") {
        ctx.diag()
            .str("expected ")
            .hex(ram)
            .str(" got ")
            .hex(first)
            .emit();
        return;
    }
    let emulated_before = crate::platform::emulate::emulated();
    let (mut ram_reads, mut mmio) = (1u32, 0u32);
    control(command::DELETE);
    let deleted = wait(&mut read, ram, marker, &mut ram_reads);
    // A read that returned neither value came from the emulated page (the host failed or
    // garbled it): it counts as an access made, like the marker.
    if let Err(e) = deleted {
        mmio += u32::from(e.is_some());
        report_wait(ctx, "after DELETE: the marker never arrived", marker, e);
    } else {
        mmio += 1;
    }
    control(command::RESTORE);
    let mut back = 0;
    let restored = wait_restored(&mut read, marker, ram, &mut back);
    mmio += back;
    if let Err(e) = restored {
        report_wait(ctx, "after RESTORE: RAM never came back", ram, e);
    }
    control(memslot::report(accesses_made(mmio, emulated_before)));
    finish(ctx, ram_reads, mmio, emulated_before);
}

fn store(ctx: &mut Ctx<'_>, f: &StoreForm) {
    let Some((seed, page)) = setup(ctx) else {
        return;
    };
    let va = page + f.offset;
    let ram = memslot::ram_value(seed, f.offset, Width::B8);
    let marker = memslot::marker_value(seed, f.offset, Width::B8);
    // SAFETY: `va` is 8-byte aligned in the mapped memslot page.
    let mut read = || unsafe { core::ptr::read_volatile(va as *const u64) };
    let first = read();
    if !ctx.check(first == ram, "before DELETE: the page does not read as RAM") {
        ctx.diag()
            .str("expected ")
            .hex(ram)
            .str(" got ")
            .hex(first)
            .emit();
        return;
    }
    let emulated_before = crate::platform::emulate::emulated();
    let (mut ram_reads, mut mmio) = (1u32, 0u32);
    control(command::DELETE);
    match wait(&mut read, ram, marker, &mut ram_reads) {
        Ok(()) => {
            mmio += 1;
            (f.exec)(va, memslot::write_value(seed, f.offset, f.width));
            mmio += 1;
            let after = read();
            mmio += 1;
            if !ctx.check(after == marker, "the store stuck in the emulated page") {
                ctx.diag().str("read back ").hex(after).emit();
            }
        }
        Err(e) => {
            mmio += u32::from(e.is_some());
            report_wait(ctx, "after DELETE: the marker never arrived", marker, e);
        }
    }
    control(command::RESTORE);
    let mut back = 0;
    let restored = wait_restored(&mut read, marker, ram, &mut back);
    mmio += back;
    if let Err(e) = restored {
        report_wait(
            ctx,
            "after RESTORE: RAM did not come back unchanged (did the store reach RAM?)",
            ram,
            e,
        );
    }
    control(memslot::report(accesses_made(mmio, emulated_before)));
    finish(ctx, ram_reads, mmio, emulated_before);
}

/// The cycle's diagnostic, and on TDX / SEV-ES the check that every MMIO access went through
/// the #VE/#VC handler.
/// The accesses to report to the host: on TDX and SEV-ES the #VE/#VC handler's count (it
/// sees every access that reached the host, even one whose value a lying host garbled into
/// looking like RAM); on legacy, where KVM serves them unseen, the count by value.
fn accesses_made(by_value: u32, emulated_before: u64) -> u32 {
    if crate::platform::is_legacy() {
        by_value
    } else {
        (crate::platform::emulate::emulated() - emulated_before) as u32
    }
}

fn finish(ctx: &mut Ctx<'_>, ram_reads: u32, mmio: u32, emulated_before: u64) {
    ctx.diag()
        .str("RAM x")
        .dec(u64::from(ram_reads))
        .str(" -> emulated x")
        .dec(u64::from(mmio))
        .str(" -> RAM")
        .emit();
    if !crate::platform::is_legacy() {
        let emulated = crate::platform::emulate::emulated() - emulated_before;
        ctx.check_eq(
            "accesses emulated by the #VE/#VC handler",
            u64::from(mmio),
            emulated,
        );
    }
}
