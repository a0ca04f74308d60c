//! The guest library's C ABI (`selftest/cvmprobe.h`): the operations table an environment
//! hands to `cvmprobe_run`, the register frame of `cvmprobe_trap`, and the access record of
//! `cvmprobe_check_case`.
//!
//! The guest library (`guest/`) runs in two environments: cvmprobe's own kernel (`kernel/`),
//! which fills an [`Ops`] in Rust, and a KVM selftest (`selftest/cvmprobe_test.c`), which
//! fills `struct cvmprobe_ops` in C. Every `#[repr(C)]` layout here is pinned by
//! `offset_of!` checks below, and `tests/selftest_abi.rs` compiles the header against the
//! same numbers, so the two definitions cannot drift apart.

use core::ffi::{c_char, c_void};
use core::mem::{offset_of, size_of};

/// `CVMPROBE_ABI_VERSION`: raised on any change to [`Ops`].
pub const ABI_VERSION: u32 = 1;

/// `CVMPROBE_PASS`: a case's result, as [`Ops::result`] gets it.
pub const RESULT_PASS: u32 = 0;
/// `CVMPROBE_FAIL`.
pub const RESULT_FAIL: u32 = 1;
/// `CVMPROBE_SKIP`.
pub const RESULT_SKIP: u32 = 2;
/// `CVMPROBE_TODO`: `not ok` with a TODO directive (only the `todo` fault injection).
pub const RESULT_TODO: u32 = 3;

/// `CVMPROBE_WRITE_EMERGENCY`: [`Ops::write`] is called from a fault or panic context (an
/// interrupted writer may hold the console).
pub const WRITE_EMERGENCY: u32 = 1;

/// `CVMPROBE_SPACE_PIO` / `CVMPROBE_SPACE_MMIO`: [`Access::space`].
pub const SPACE_PIO: u8 = 0;
/// See [`SPACE_PIO`].
pub const SPACE_MMIO: u8 = 1;

/// `CVMPROBE_MEMSLOT_RAM` / `_MARKER` / `_WRITE`: which memslot value
/// `cvmprobe_memslot_value` computes.
pub const MEMSLOT_RAM: u32 = 0;
/// See [`MEMSLOT_RAM`].
pub const MEMSLOT_MARKER: u32 = 1;
/// See [`MEMSLOT_RAM`].
pub const MEMSLOT_WRITE: u32 = 2;

/// Writes one output line of `len` bytes, its newline included; `flags` holds
/// [`WRITE_EMERGENCY`].
pub type WriteFn =
    unsafe extern "C" fn(ctx: *mut c_void, line: *const c_char, len: u64, flags: u32);
/// Ends the run with an `exit` code (`protocol::exit::EXIT_*`).
pub type ExitFn = unsafe extern "C" fn(ctx: *mut c_void, code: u32) -> !;
/// The platform is fixed: the environment finishes its setup; NULL or why the run stops.
pub type ReadyFn = unsafe extern "C" fn(ctx: *mut c_void) -> *const c_char;
/// The virtual address for plain accesses to `[gpa, gpa + len)`, 0 if unmapped.
pub type MapMmioFn = unsafe extern "C" fn(ctx: *mut c_void, gpa: u64, len: u64) -> u64;
/// SEV-ES: map private memory with C-bit `cbit`, the shared page (at `ghcb_gpa`) without;
/// NULL, or why not with the value concerned in `*value`.
pub type SevEsMemoryFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    cbit: u32,
    ghcb_gpa: u64,
    value: *mut u64,
) -> *const c_char;
/// The number of cases selected, before the first runs.
pub type PlanFn = unsafe extern "C" fn(ctx: *mut c_void, cases: u32);
/// One case's result: its id (`protocol::testdev::case_id`), [`RESULT_PASS`]/`FAIL`/`SKIP`/
/// `TODO`, a skip's or TODO's reason.
pub type ResultFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    id: u32,
    result: u32,
    reason: *const c_char,
    reason_len: u64,
);

/// `struct cvmprobe_ops`: what the guest library needs from the place it runs in. The header
/// documents each field; `write` and `exit` are required, the rest may be absent.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Ops {
    /// `size_of::<Ops>()` as the environment was built.
    pub size: u32,
    /// [`ABI_VERSION`] as the environment was built.
    pub version: u32,
    /// Handed back to every callback.
    pub ctx: *mut c_void,
    /// The guest reaches GPA `g` at virtual address `g + phys_offset`.
    pub phys_offset: u64,
    /// RAM below 4 GiB is `[0, ram_end)`.
    pub ram_end: u64,
    /// RAM above 4 GiB is `[4 GiB, ram_end_high)` (0: none).
    pub ram_end_high: u64,
    /// A 4 KiB page the environment keeps shared with the host (the SEV-ES GHCB); 0: none.
    pub shared_page: u64,
    /// 4 or 5.
    pub paging_levels: u32,
    /// Zero.
    pub reserved: u32,
    /// See [`WriteFn`].
    pub write: Option<WriteFn>,
    /// See [`ExitFn`].
    pub exit: Option<ExitFn>,
    /// See [`ReadyFn`].
    pub ready: Option<ReadyFn>,
    /// See [`MapMmioFn`].
    pub map_mmio: Option<MapMmioFn>,
    /// See [`SevEsMemoryFn`].
    pub sev_es_memory: Option<SevEsMemoryFn>,
    /// See [`PlanFn`]; with [`Ops::result`], the environment prints the results.
    pub plan: Option<PlanFn>,
    /// See [`ResultFn`].
    pub result: Option<ResultFn>,
}

/// Byte offsets of [`Ops`]' fields, as `cvmprobe.h` must have them (`tests/selftest_abi.rs`).
pub const OPS_FIELDS: [(&str, usize); 17] = [
    ("size", offset_of!(Ops, size)),
    ("version", offset_of!(Ops, version)),
    ("ctx", offset_of!(Ops, ctx)),
    ("phys_offset", offset_of!(Ops, phys_offset)),
    ("ram_end", offset_of!(Ops, ram_end)),
    ("ram_end_high", offset_of!(Ops, ram_end_high)),
    ("shared_page", offset_of!(Ops, shared_page)),
    ("paging_levels", offset_of!(Ops, paging_levels)),
    ("reserved", offset_of!(Ops, reserved)),
    ("write", offset_of!(Ops, write)),
    ("exit", offset_of!(Ops, exit)),
    ("ready", offset_of!(Ops, ready)),
    ("map_mmio", offset_of!(Ops, map_mmio)),
    ("sev_es_memory", offset_of!(Ops, sev_es_memory)),
    ("plan", offset_of!(Ops, plan)),
    ("result", offset_of!(Ops, result)),
    ("(size)", size_of::<Ops>()),
];

const _: () = {
    assert!(offset_of!(Ops, ctx) == 8);
    assert!(offset_of!(Ops, phys_offset) == 16);
    assert!(offset_of!(Ops, shared_page) == 40);
    assert!(offset_of!(Ops, paging_levels) == 48);
    assert!(offset_of!(Ops, write) == 56);
    assert!(offset_of!(Ops, result) == 104);
    assert!(size_of::<Ops>() == 112);
    // A callback is one pointer: `None` is NULL.
    assert!(size_of::<Option<WriteFn>>() == 8);
};

/// `struct cvmprobe_frame`: the interrupted code's registers, as a trap entry saves them.
/// The first twenty fields are kvm_util's `struct ex_regs` in its order (its
/// `route_exception` passes a pointer to them), and `rsp`, `ss` follow as the CPU pushed
/// them; cvmprobe's kernel pushes the same layout (`kernel/src/arch/idt.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbx: u64,
    pub rbp: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    /// Pushed by the entry stub.
    pub vector: u64,
    /// Pushed by the CPU, or 0 by the stub for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Byte offsets of [`TrapFrame`]'s fields, as `cvmprobe.h` must have them.
pub const FRAME_FIELDS: [(&str, usize); 23] = [
    ("rax", offset_of!(TrapFrame, rax)),
    ("rcx", offset_of!(TrapFrame, rcx)),
    ("rdx", offset_of!(TrapFrame, rdx)),
    ("rbx", offset_of!(TrapFrame, rbx)),
    ("rbp", offset_of!(TrapFrame, rbp)),
    ("rsi", offset_of!(TrapFrame, rsi)),
    ("rdi", offset_of!(TrapFrame, rdi)),
    ("r8", offset_of!(TrapFrame, r8)),
    ("r9", offset_of!(TrapFrame, r9)),
    ("r10", offset_of!(TrapFrame, r10)),
    ("r11", offset_of!(TrapFrame, r11)),
    ("r12", offset_of!(TrapFrame, r12)),
    ("r13", offset_of!(TrapFrame, r13)),
    ("r14", offset_of!(TrapFrame, r14)),
    ("r15", offset_of!(TrapFrame, r15)),
    ("vector", offset_of!(TrapFrame, vector)),
    ("error_code", offset_of!(TrapFrame, error_code)),
    ("rip", offset_of!(TrapFrame, rip)),
    ("cs", offset_of!(TrapFrame, cs)),
    ("rflags", offset_of!(TrapFrame, rflags)),
    ("rsp", offset_of!(TrapFrame, rsp)),
    ("ss", offset_of!(TrapFrame, ss)),
    ("(size)", size_of::<TrapFrame>()),
];

const _: () = {
    // kvm_util's struct ex_regs: rax..r15, vector, error_code, rip, cs, rflags (20 u64s).
    assert!(offset_of!(TrapFrame, vector) == 15 * 8);
    assert!(offset_of!(TrapFrame, rip) == 17 * 8);
    assert!(offset_of!(TrapFrame, rsp) == 20 * 8);
    assert!(size_of::<TrapFrame>() == 22 * 8);
};

/// `struct cvmprobe_access`: one access to the test device as the host saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Offset from the space's base.
    pub offset: u64,
    /// The value written, or the value answered.
    pub data: u64,
    /// Guest RIP, 0 if unknown.
    pub rip: u64,
    /// [`SPACE_PIO`] or [`SPACE_MMIO`].
    pub space: u8,
    /// 1: write, 0: read.
    pub write: u8,
    /// Bytes moved.
    pub size: u8,
    /// Zero.
    pub reserved: [u8; 5],
}

/// Byte offsets of [`Access`]' fields, as `cvmprobe.h` must have them.
pub const ACCESS_FIELDS: [(&str, usize); 8] = [
    ("offset", offset_of!(Access, offset)),
    ("data", offset_of!(Access, data)),
    ("rip", offset_of!(Access, rip)),
    ("space", offset_of!(Access, space)),
    ("write", offset_of!(Access, write)),
    ("size", offset_of!(Access, size)),
    ("reserved", offset_of!(Access, reserved)),
    ("(size)", size_of::<Access>()),
];

const _: () = {
    assert!(offset_of!(Access, space) == 24);
    assert!(size_of::<Access>() == 32);
};

/// The header's `#define`s and the Rust values they must equal (`tests/selftest_abi.rs`).
pub const HEADER_CONSTANTS: &[(&str, u64)] = {
    use crate::{exit, memslot, testdev};
    &[
        ("CVMPROBE_ABI_VERSION", ABI_VERSION as u64),
        ("CVMPROBE_PASS", RESULT_PASS as u64),
        ("CVMPROBE_FAIL", RESULT_FAIL as u64),
        ("CVMPROBE_SKIP", RESULT_SKIP as u64),
        ("CVMPROBE_TODO", RESULT_TODO as u64),
        ("CVMPROBE_EXIT_PASS", exit::EXIT_PASS as u64),
        ("CVMPROBE_EXIT_FAIL", exit::EXIT_FAIL as u64),
        ("CVMPROBE_EXIT_BAIL", exit::EXIT_BAIL as u64),
        ("CVMPROBE_WRITE_EMERGENCY", WRITE_EMERGENCY as u64),
        ("CVMPROBE_IRQ_BASE", crate::x86::IRQ_BASE as u64),
        ("CVMPROBE_IRQ_COUNT", crate::x86::IRQ_COUNT as u64),
        (
            "CVMPROBE_SPURIOUS_VECTOR",
            crate::x86::SPURIOUS_VECTOR as u64,
        ),
        ("CVMPROBE_TESTDEV_PIO_BASE", testdev::PIO_BASE as u64),
        ("CVMPROBE_TESTDEV_PIO_LEN", testdev::PIO_LEN as u64),
        ("CVMPROBE_TESTDEV_PIO_ID", testdev::pio::ID as u64),
        ("CVMPROBE_TESTDEV_PIO_DATA", testdev::pio::DATA as u64),
        (
            "CVMPROBE_TESTDEV_PIO_DATA_BYTE",
            testdev::pio::DATA_BYTE as u64,
        ),
        ("CVMPROBE_TESTDEV_PIO_VALUE", testdev::pio::VALUE as u64),
        ("CVMPROBE_TESTDEV_PIO_CASE", testdev::pio::CASE as u64),
        ("CVMPROBE_TESTDEV_PIO_BENCH", testdev::pio::BENCH as u64),
        ("CVMPROBE_TESTDEV_MMIO_BASE", testdev::MMIO_BASE),
        ("CVMPROBE_TESTDEV_MMIO_LEN", testdev::MMIO_LEN),
        ("CVMPROBE_TESTDEV_MMIO_ID", testdev::mmio::ID),
        ("CVMPROBE_TESTDEV_MMIO_SEED", testdev::mmio::SEED),
        ("CVMPROBE_TESTDEV_MMIO_REPORT", testdev::mmio::REPORT),
        ("CVMPROBE_TESTDEV_MMIO_VALUE", testdev::mmio::VALUE),
        ("CVMPROBE_TESTDEV_MMIO_VALUE_LEN", testdev::mmio::VALUE_LEN),
        ("CVMPROBE_TESTDEV_MMIO_SCRATCH", testdev::mmio::SCRATCH),
        (
            "CVMPROBE_TESTDEV_MMIO_SCRATCH_LEN",
            testdev::mmio::SCRATCH_LEN,
        ),
        ("CVMPROBE_TESTDEV_ID", testdev::ID_VALUE as u64),
        ("CVMPROBE_MEMSLOT_GPA", memslot::GPA),
        ("CVMPROBE_MEMSLOT_SIZE", memslot::SIZE),
        (
            "CVMPROBE_MEMSLOT_CONTROL_PORT",
            memslot::CONTROL_PORT as u64,
        ),
        ("CVMPROBE_MEMSLOT_CONTROL_ID", memslot::CONTROL_ID as u64),
        ("CVMPROBE_MEMSLOT_DELETE", memslot::command::DELETE as u64),
        ("CVMPROBE_MEMSLOT_RESTORE", memslot::command::RESTORE as u64),
        ("CVMPROBE_MEMSLOT_REPORT", memslot::command::REPORT as u64),
        ("CVMPROBE_SPACE_PIO", SPACE_PIO as u64),
        ("CVMPROBE_SPACE_MMIO", SPACE_MMIO as u64),
        ("CVMPROBE_MEMSLOT_RAM", MEMSLOT_RAM as u64),
        ("CVMPROBE_MEMSLOT_MARKER", MEMSLOT_MARKER as u64),
        ("CVMPROBE_MEMSLOT_WRITE", MEMSLOT_WRITE as u64),
    ]
};
