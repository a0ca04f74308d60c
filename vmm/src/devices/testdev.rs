//! The cvmprobe test device (`protocol::testdev`): QEMU pc-testdev's semantics on a port range
//! and an MMIO window, host-chosen values, and the host half of the two-sided verdict.
//!
//! Registers (offsets and values all from `protocol::testdev`):
//!
//! - port IO at [`PIO_BASE`]: `ID`; `DATA`, a 4-byte register whose byte lanes follow the
//!   access offset (pc-testdev port 0xe0, `test_ioport_read/write`); `DATA_BYTE`, the same
//!   register implemented byte by byte (pc-testdev port 0xe8, `impl.max_access_size = 1`);
//!   `VALUE`, [`testdev::host_value`] of the run's seed; `CASE` and `BENCH`, the guest's
//!   announcements.
//! - MMIO at [`MMIO_BASE`]: `ID`; `SEED`; `REPORT`, where a case writes the values it
//!   exchanged; the `VALUE` block; `SCRATCH`, memory-like like pc-testdev's IO memory
//!   (`test_iomem_read/write`: reads return what was written).
//!
//! Anything else in the two ranges (a register read at the wrong width or alignment, a
//! write to a read-only register, a gap between registers) reads all ones and ignores writes,
//! like an unclaimed bus; it is logged like every other access.
//!
//! **The check.** Every access is logged ([`TestdevAccess`], bounded by [`LOG_CAPACITY`]).
//! The guest writes a case's [`testdev::case_id`] to `CASE` before the case and 0 after it;
//! the accesses in between (the `CASE`, `BENCH` and `REPORT` writes themselves excepted) are
//! compared with [`testdev::declared`] when the case closes, and so is their data with the
//! values the case reported through `REPORT`, giving one [`CaseCheck`]: the check and its
//! sentence are [`explain::check_log`]'s, the ones the KVM selftest's host makes too. The
//! per-case comparison keeps at most the declared count plus one access, so neither the log
//! bound nor a runaway case changes its verdict.
//!
//! **Cost.** An access decodes its register from a fixed table, updates the model and pushes
//! one log entry (the only allocation, amortised); text is made only for findings.

use super::{AccessCtx, RunCounts, fill_unassigned, le_value, put_le};
use protocol::access::{Direction, Width};
use protocol::testdev::explain::{self, CaseLog, Place, declared_len};
use protocol::testdev::{self, BenchId, Seen, Space, Step, mmio, pio};
use std::time::{Duration, Instant};

pub use protocol::testdev::{MMIO_BASE, MMIO_LEN, PIO_BASE, PIO_LEN};

/// Accesses the log keeps; later ones are only counted ([`TestdevReport::log_dropped`]).
pub const LOG_CAPACITY: usize = 100_000;

/// Log entries reserved up front: a full run makes a few hundred accesses, a bench run a few
/// thousand.
const LOG_RESERVE: usize = 4096;

/// Width of each port register (`protocol::testdev::pio`: 4-byte registers, one after another).
const PIO_REG_LEN: u64 = 4;
/// Width of the MMIO ID register (4 bytes), the SEED and REPORT registers (8 bytes).
const MMIO_ID_LEN: u64 = 4;
const MMIO_SEED_LEN: u64 = 8;
const MMIO_REPORT_LEN: u64 = 8;

const _: () = {
    // The port registers are PIO_REG_LEN apart in this order and fit the range.
    let regs = [
        pio::ID,
        pio::DATA,
        pio::DATA_BYTE,
        pio::VALUE,
        pio::CASE,
        pio::BENCH,
    ];
    let mut i = 1;
    while i < regs.len() {
        assert!(regs[i] as u64 >= regs[i - 1] as u64 + PIO_REG_LEN);
        i += 1;
    }
    assert!(pio::BENCH as u64 + PIO_REG_LEN <= PIO_LEN as u64);
    // The MMIO blocks are disjoint, in this order, inside the window.
    assert!(mmio::ID + MMIO_ID_LEN <= mmio::SEED);
    assert!(mmio::SEED + MMIO_SEED_LEN <= mmio::REPORT);
    assert!(mmio::REPORT + MMIO_REPORT_LEN <= mmio::VALUE);
    assert!(mmio::VALUE + mmio::VALUE_LEN <= mmio::SCRATCH);
    assert!(mmio::SCRATCH + mmio::SCRATCH_LEN <= MMIO_LEN);
};

/// The register blocks of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    PioId,
    Data,
    DataByte,
    PioValue,
    Case,
    Bench,
    MmioId,
    Seed,
    Report,
    MmioValue,
    Scratch,
}

/// `(space, offset, length, block, name)`: the register map, for decoding and for messages.
#[rustfmt::skip]
const BLOCKS: [(Space, u64, u64, Block, &str); 11] = [
    (Space::Pio, pio::ID as u64, PIO_REG_LEN, Block::PioId, "ID"),
    (Space::Pio, pio::DATA as u64, PIO_REG_LEN, Block::Data, "DATA"),
    (Space::Pio, pio::DATA_BYTE as u64, PIO_REG_LEN, Block::DataByte, "DATA_BYTE"),
    (Space::Pio, pio::VALUE as u64, PIO_REG_LEN, Block::PioValue, "VALUE"),
    (Space::Pio, pio::CASE as u64, PIO_REG_LEN, Block::Case, "CASE"),
    (Space::Pio, pio::BENCH as u64, PIO_REG_LEN, Block::Bench, "BENCH"),
    (Space::Mmio, mmio::ID, MMIO_ID_LEN, Block::MmioId, "ID"),
    (Space::Mmio, mmio::SEED, MMIO_SEED_LEN, Block::Seed, "SEED"),
    (Space::Mmio, mmio::REPORT, MMIO_REPORT_LEN, Block::Report, "REPORT"),
    (Space::Mmio, mmio::VALUE, mmio::VALUE_LEN, Block::MmioValue, "VALUE"),
    (Space::Mmio, mmio::SCRATCH, mmio::SCRATCH_LEN, Block::Scratch, "SCRATCH"),
];

/// The block holding `offset`: the block, the offset inside it, its length and its name.
fn block_at(space: Space, offset: u64) -> Option<(Block, u64, u64, &'static str)> {
    BLOCKS
        .iter()
        .find(|&&(s, base, len, _, _)| s == space && offset >= base && offset - base < len)
        .map(|&(_, base, len, b, name)| (b, offset - base, len, name))
}

/// What an access of `size` bytes at `offset` reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    /// The ID register, read whole.
    Id,
    /// The data register from byte lane `lane` (either view).
    Data { lane: u64, bytewise: bool },
    /// A host value of this width at the access offset.
    Value(Width),
    /// Bytes of the seed from byte `at`.
    Seed { at: u64 },
    /// The case announcement register, written whole.
    Case,
    /// The bench marker register, written whole.
    Bench,
    /// The data report register, written whole.
    Report,
    /// Scratch memory from byte `at`.
    Scratch { at: usize },
    /// Nothing: wrong width or alignment, or a gap (reads all ones, writes vanish).
    Nothing,
}

fn decode(space: Space, offset: u64, size: usize) -> Reg {
    let size = size as u64;
    let Some((block, at, len, _)) = block_at(space, offset) else {
        return Reg::Nothing;
    };
    if size == 0 || size > 8 || at + size > len {
        return Reg::Nothing;
    }
    let aligned = Width::from_bytes(size).filter(|_| at.is_multiple_of(size));
    match block {
        Block::PioId | Block::MmioId if at == 0 && size == 4 => Reg::Id,
        Block::Data => Reg::Data {
            lane: at,
            bytewise: false,
        },
        Block::DataByte => Reg::Data {
            lane: at,
            bytewise: true,
        },
        Block::PioValue | Block::MmioValue => aligned.map_or(Reg::Nothing, Reg::Value),
        Block::Seed if size == 8 || (size == 4 && at.is_multiple_of(4)) => Reg::Seed { at },
        Block::Case if size == 4 => Reg::Case,
        Block::Bench if size == 4 => Reg::Bench,
        Block::Report if size == 8 => Reg::Report,
        Block::Scratch => Reg::Scratch { at: at as usize },
        _ => Reg::Nothing,
    }
}

/// One access to the device, as the host saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestdevAccess {
    /// Address space.
    pub space: Space,
    /// Offset from [`PIO_BASE`] or [`MMIO_BASE`].
    pub offset: u64,
    /// Bytes moved (1, 2, 4 or 8 from a well-formed guest).
    pub size: u8,
    /// Read or write.
    pub dir: Direction,
    /// The value written, or the value the device answered, little-endian.
    pub data: u64,
    /// Guest RIP from the exit's register snapshot (kvm_run sync regs). For a read it is the
    /// accessing instruction: KVM needs the data before it can finish it. For a write it
    /// may be the *next* instruction: KVM completes stores before it exits (upstream for
    /// MMIO stores; for OUT too on KVMs before Linux 5.x's `complete_fast_pio_out` and on
    /// this project's kvm_pvm hosts, where every logged write is after its instruction).
    pub rip: u64,
    /// The case id announced at the time (0 = none; a `CASE` write carries the id it
    /// replaces).
    pub case: u32,
}

impl TestdevAccess {
    /// The part a declaration constrains.
    pub fn seen(&self) -> Seen {
        Seen {
            space: self.space,
            offset: self.offset,
            size: u64::from(self.size),
            dir: self.dir,
        }
    }
}

/// The host's verdict on one announced case: did its accesses match its declaration?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseCheck {
    /// Suite name (catalog).
    pub suite: &'static str,
    /// Case name (catalog).
    pub case: &'static str,
    /// Accesses the case made (announcements and reports excepted).
    pub accesses: usize,
    /// Values the case reported through `REPORT` (0: it reported none, which the caller,
    /// who sees whether the case ran, judges).
    pub reported: usize,
    /// `Err` says where the accesses part from the declaration, in one sentence; accesses are
    /// numbered from 1 in the case, and their RIPs are [`TestdevAccess::rip`]s. A case that made no access at all passes: the guest
    /// announces skipped cases too. (A case reported `ok` without SKIP that made none of
    /// its declared accesses is for the caller, who sees the KTAP result, to flag.) When the
    /// case reported values, `Err` also says which access's data differs from the report.
    pub result: Result<(), String>,
}

/// Host-side timing of one guest benchmark loop, between its start and end markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchSample {
    /// The bench.
    pub id: BenchId,
    /// Host time from the start marker's exit to the end marker's exit.
    pub wall: Duration,
    /// vCPU exits strictly between the two markers.
    pub exits: u64,
    /// vCPU ioctls between the two markers, by kind (the end marker's KVM_RUN excepted).
    pub ioctls: crate::IoctlCounts,
    /// Guest instructions between the two markers, when the run counts them
    /// (`VmConfig::count_instructions`), else 0.
    pub instructions: u64,
    /// Host time the VMM spent outside KVM_RUN between the two markers (the start marker's
    /// handling included, the end marker's not).
    pub vmm_time: Duration,
}

/// Everything the device learned in a run.
#[derive(Clone, Debug, Default)]
pub struct TestdevReport {
    /// The seed of [`testdev::host_value`] the device answered with.
    pub seed: u64,
    /// Every access, in order, up to [`LOG_CAPACITY`].
    pub log: Vec<TestdevAccess>,
    /// Accesses made after the log was full.
    pub log_dropped: u64,
    /// One entry per case the guest announced, in order.
    pub case_checks: Vec<CaseCheck>,
    /// Protocol breaches that belong to no case: unknown case ids, malformed announcements,
    /// unpaired bench markers.
    pub problems: Vec<String>,
    /// One entry per completed bench loop.
    pub bench: Vec<BenchSample>,
}

/// The case currently announced, if the host knows it.
#[derive(Clone, Copy, Debug)]
struct OpenCase {
    suite: &'static str,
    case: &'static str,
    steps: &'static [Step],
    /// Accesses the declaration lists (repetitions expanded).
    declared: usize,
    /// Accesses made so far.
    count: usize,
}

/// The device: register state, seed, log and the per-case and per-bench bookkeeping.
pub struct Testdev {
    seed: u64,
    data: u32,
    scratch: Box<[u8]>,
    log: Vec<TestdevAccess>,
    log_dropped: u64,
    /// The raw id last written to `CASE`.
    case_id: u32,
    open: Option<OpenCase>,
    /// The open case's first `declared + 1` accesses, their RIPs and data (enough for the
    /// check).
    case_seen: Vec<Seen>,
    case_rips: Vec<u64>,
    case_data: Vec<(Direction, u64)>,
    /// The values the open case reported through `REPORT` (at most `DATA_MAX + 1`).
    case_reported: Vec<u64>,
    /// How many it reported.
    case_reported_count: usize,
    case_checks: Vec<CaseCheck>,
    /// Time, exit count and run counts of each bench's pending start marker, indexed like
    /// `BenchId::ALL`.
    bench_open: [Option<(Instant, u64, RunCounts)>; BenchId::ALL.len()],
    bench: Vec<BenchSample>,
    problems: Vec<String>,
}

impl Testdev {
    /// A device answering with `seed`; data register and scratch start at zero (as
    /// pc-testdev's).
    pub fn new(seed: u64) -> Self {
        let longest = testdev::DECLARED
            .iter()
            .map(|(_, _, steps)| declared_len(steps))
            .max()
            .unwrap_or(0);
        Self {
            seed,
            data: 0,
            scratch: vec![0; mmio::SCRATCH_LEN as usize].into_boxed_slice(),
            log: Vec::with_capacity(LOG_RESERVE),
            log_dropped: 0,
            case_id: 0,
            open: None,
            case_seen: Vec::with_capacity(longest + 1),
            case_rips: Vec::with_capacity(longest + 1),
            case_data: Vec::with_capacity(longest + 1),
            case_reported: Vec::with_capacity(testdev::DATA_MAX + 1),
            case_reported_count: 0,
            case_checks: Vec::new(),
            bench_open: [None; BenchId::ALL.len()],
            bench: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// `suite.case` of the case announced now, or `(no case)`.
    pub fn current_case_name(&self) -> String {
        match self.current_case() {
            Some((suite, case)) => format!("{suite}.{case}"),
            None => "(no case)".into(),
        }
    }

    /// `(suite, case)` of the case announced now, if any.
    pub fn current_case(&self) -> Option<(&'static str, &'static str)> {
        testdev::case_of_id(self.case_id)
    }

    /// The seed the `VALUE` registers answer with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The log so far.
    pub fn log(&self) -> &[TestdevAccess] {
        &self.log
    }

    /// A read of `data.len()` bytes at `offset` in `space`: fills `data` and logs it.
    pub fn read(&mut self, space: Space, offset: u64, data: &mut [u8], ctx: &AccessCtx) {
        match decode(space, offset, data.len()) {
            Reg::Id => put_le(data, u64::from(testdev::ID_VALUE)),
            Reg::Data { lane, bytewise } => {
                if bytewise {
                    // pc-testdev 0xe8: the core splits the access into 1-byte ones.
                    for (i, b) in data.iter_mut().enumerate() {
                        *b = self.lane_read(lane + i as u64, 1) as u8;
                    }
                } else {
                    put_le(data, self.lane_read(lane, data.len() as u64));
                }
            }
            Reg::Value(w) => put_le(data, testdev::host_value(self.seed, space, offset, w)),
            Reg::Seed { at } => put_le(data, self.seed >> (8 * at)),
            Reg::Scratch { at } => data.copy_from_slice(&self.scratch[at..at + data.len()]),
            Reg::Case | Reg::Bench | Reg::Report | Reg::Nothing => fill_unassigned(data),
        }
        let v = le_value(data);
        self.record(space, offset, data.len(), Direction::Read, v, ctx.rip);
        self.track(space, offset, data.len(), Direction::Read, v, ctx.rip);
    }

    /// A write of `data` at `offset` in `space`: applies and logs it.
    pub fn write(&mut self, space: Space, offset: u64, data: &[u8], ctx: &AccessCtx) {
        let v = le_value(data);
        self.record(space, offset, data.len(), Direction::Write, v, ctx.rip);
        match decode(space, offset, data.len()) {
            Reg::Case => return self.announce(v as u32, ctx.rip),
            Reg::Bench => return self.bench_marker(v as u32, ctx),
            Reg::Report => return self.report_value(v),
            Reg::Data { lane, bytewise } => {
                if bytewise {
                    for (i, &b) in data.iter().enumerate() {
                        self.lane_write(lane + i as u64, 1, u64::from(b));
                    }
                } else {
                    self.lane_write(lane, data.len() as u64, v);
                }
            }
            Reg::Scratch { at } => self.scratch[at..at + data.len()].copy_from_slice(data),
            Reg::Id | Reg::Value(_) | Reg::Seed { .. } => {}
            Reg::Nothing => {
                if let Some((Block::Case | Block::Bench | Block::Report, ..)) =
                    block_at(space, offset)
                {
                    self.malformed_announcement(space, offset, data.len(), ctx.rip);
                }
            }
        }
        self.track(space, offset, data.len(), Direction::Write, v, ctx.rip);
    }

    /// A `REPORT` write: one value the open case says it exchanged.
    fn report_value(&mut self, v: u64) {
        if self.open.is_none() {
            return;
        }
        self.case_reported_count += 1;
        if self.case_reported.len() <= testdev::DATA_MAX {
            self.case_reported.push(v);
        }
    }

    /// QEMU pc-testdev `test_ioport_read`: `len` bytes from lane `lane` (lane + len <= 4).
    fn lane_read(&self, lane: u64, len: u64) -> u64 {
        let mask = (u64::MAX >> (64 - 8 * len)) << (8 * lane);
        (u64::from(self.data) & mask) >> (8 * lane)
    }

    /// QEMU pc-testdev `test_ioport_write`.
    fn lane_write(&mut self, lane: u64, len: u64, v: u64) {
        let mask = (u64::MAX >> (64 - 8 * len)) << (8 * lane);
        let d = (u64::from(self.data) & !mask) | ((v << (8 * lane)) & mask);
        self.data = d as u32;
    }

    fn record(
        &mut self,
        space: Space,
        offset: u64,
        size: usize,
        dir: Direction,
        data: u64,
        rip: u64,
    ) {
        if self.log.len() < LOG_CAPACITY {
            self.log.push(TestdevAccess {
                space,
                offset,
                size: size.min(usize::from(u8::MAX)) as u8,
                dir,
                data,
                rip,
                case: self.case_id,
            });
        } else {
            self.log_dropped += 1;
        }
    }

    /// Adds an access to the open case's sequence.
    fn track(
        &mut self,
        space: Space,
        offset: u64,
        size: usize,
        dir: Direction,
        data: u64,
        rip: u64,
    ) {
        let Some(open) = &mut self.open else {
            return;
        };
        open.count += 1;
        if self.case_seen.len() <= open.declared {
            self.case_seen.push(Seen {
                space,
                offset,
                size: size as u64,
                dir,
            });
            self.case_rips.push(rip);
            let mask = if size >= 8 {
                u64::MAX
            } else {
                (1u64 << (8 * size)) - 1
            };
            self.case_data.push((dir, data & mask));
        }
    }

    /// A `CASE` write: closes the open case and opens `id` (0 = none).
    fn announce(&mut self, id: u32, rip: u64) {
        self.close_case();
        self.case_id = id;
        if id == 0 {
            return;
        }
        match testdev::case_of_id(id) {
            Some((suite, case)) => {
                let steps = testdev::declared(suite, case);
                self.open = Some(OpenCase {
                    suite,
                    case,
                    steps,
                    declared: declared_len(steps),
                    count: 0,
                });
            }
            None => self.problems.push(format!(
                "CASE write of {id:#010x} at rip {rip:#x}: no case has that id \
                 (protocol::testdev::case_id); its accesses go unchecked"
            )),
        }
    }

    /// Compares the open case's accesses with its declaration, and their data with the values
    /// it reported ([`explain::check_log`]), and records the verdict.
    fn close_case(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let log = CaseLog {
            seen: &self.case_seen,
            rips: &self.case_rips,
            data: &self.case_data,
            accesses: open.count,
            reported: &self.case_reported,
            reported_count: self.case_reported_count,
        };
        let result = explain::check_log(open.steps, &log).map_err(|f| f.to_string());
        self.case_checks.push(CaseCheck {
            suite: open.suite,
            case: open.case,
            accesses: open.count,
            reported: self.case_reported_count,
            result,
        });
        self.case_seen.clear();
        self.case_rips.clear();
        self.case_data.clear();
        self.case_reported.clear();
        self.case_reported_count = 0;
    }

    fn bench_marker(&mut self, v: u32, ctx: &AccessCtx) {
        let Some((id, end)) = testdev::parse_bench_marker(v) else {
            self.problems.push(format!(
                "BENCH write of {v:#x} at rip {:#x}: not a bench marker \
                 (protocol::testdev::bench_marker)",
                ctx.rip
            ));
            return;
        };
        let i = BenchId::ALL
            .iter()
            .position(|&b| b == id)
            .expect("parse_bench_marker returns a member of BenchId::ALL");
        match (end, self.bench_open[i].take()) {
            (false, None) => self.bench_open[i] = Some((ctx.now, ctx.exits, ctx.counts)),
            (false, Some(start)) => {
                self.bench_open[i] = Some(start);
                self.problems.push(format!(
                    "bench {}: second start marker at rip {:#x} before an end marker",
                    id.name(),
                    ctx.rip
                ));
            }
            (true, Some((t0, e0, c0))) => self.bench.push(BenchSample {
                id,
                wall: ctx.now.saturating_duration_since(t0),
                // Both counts include their own marker's exit (and its KVM_RUN).
                exits: ctx.exits.saturating_sub(e0).saturating_sub(1),
                ioctls: {
                    let mut n = ctx.counts.ioctls.since(&c0.ioctls);
                    n.by_kind[crate::Ioctl::Run as usize] =
                        n.of(crate::Ioctl::Run).saturating_sub(1);
                    n
                },
                instructions: ctx.counts.instructions.saturating_sub(c0.instructions),
                vmm_time: Duration::from_nanos(ctx.counts.vmm_ns.saturating_sub(c0.vmm_ns)),
            }),
            (true, None) => self.problems.push(format!(
                "bench {}: end marker at rip {:#x} without a start marker",
                id.name(),
                ctx.rip
            )),
        }
    }

    #[cold]
    fn malformed_announcement(&mut self, space: Space, offset: u64, size: usize, rip: u64) {
        let (name, width) = block_at(space, offset).map_or(("?", 0), |(_, _, len, n)| (n, len));
        self.problems.push(format!(
            "{size}-byte write to {} at rip {rip:#x}: {name} takes one {width}-byte write at its \
             offset, this one was ignored",
            Place(space, offset)
        ));
    }

    /// Ends the run: closes the open case (its accesses so far are checked), reports benches
    /// left open, and hands over everything recorded. The device starts afresh afterwards.
    pub fn finish(&mut self) -> TestdevReport {
        self.close_case();
        self.case_id = 0;
        for (i, open) in self.bench_open.iter_mut().enumerate() {
            if open.take().is_some() {
                self.problems.push(format!(
                    "bench {}: start marker without an end marker (the run ended first)",
                    BenchId::ALL[i].name()
                ));
            }
        }
        TestdevReport {
            seed: self.seed,
            log: std::mem::take(&mut self.log),
            log_dropped: std::mem::take(&mut self.log_dropped),
            case_checks: std::mem::take(&mut self.case_checks),
            problems: std::mem::take(&mut self.problems),
            bench: std::mem::take(&mut self.bench),
        }
    }
}

/// The register holding `offset`, with the offset into it.
pub fn register(space: Space, offset: u64) -> Option<(&'static str, u64)> {
    block_at(space, offset).map(|(_, at, _, name)| (name, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::testdev::{bench_marker, case_id, host_value, id_of_case};

    const RIP: u64 = 0x10_a2f3;
    const SEED: u64 = 0x0123_4567_89ab_cdef;

    fn ctx() -> AccessCtx {
        AccessCtx {
            rip: RIP,
            now: Instant::now(),
            exits: 0,
            counts: Default::default(),
        }
    }

    fn dev() -> Testdev {
        Testdev::new(SEED)
    }

    fn rd(d: &mut Testdev, space: Space, off: u64, n: usize) -> u64 {
        let mut b = vec![0u8; n];
        d.read(space, off, &mut b, &ctx());
        le_value(&b)
    }

    fn wr(d: &mut Testdev, space: Space, off: u64, n: usize, v: u64) {
        d.write(space, off, &v.to_le_bytes()[..n], &ctx());
    }

    fn pio_r(d: &mut Testdev, off: u16, n: usize) -> u64 {
        rd(d, Space::Pio, u64::from(off), n)
    }

    fn pio_w(d: &mut Testdev, off: u16, n: usize, v: u64) {
        wr(d, Space::Pio, u64::from(off), n, v)
    }

    fn announce(d: &mut Testdev, suite: &str, case: &str) {
        let id = id_of_case(suite, case).unwrap();
        pio_w(d, pio::CASE, 4, u64::from(id));
    }

    /// Replays a declaration against the device (writes carry the access offset as data).
    fn replay(d: &mut Testdev, steps: &[Step]) {
        for s in steps {
            for _ in 0..s.times {
                let n = s.width.bytes() as usize;
                match s.dir {
                    Direction::Read => {
                        rd(d, s.space, s.offset, n);
                    }
                    Direction::Write => wr(d, s.space, s.offset, n, s.offset),
                }
            }
        }
    }

    #[test]
    fn identification_registers() {
        let mut d = dev();
        assert_eq!(pio_r(&mut d, pio::ID, 4), u64::from(testdev::ID_VALUE));
        assert_eq!(
            rd(&mut d, Space::Mmio, mmio::ID, 4),
            u64::from(testdev::ID_VALUE)
        );
        // Only the whole register answers.
        assert_eq!(pio_r(&mut d, pio::ID, 2), 0xffff);
        assert_eq!(pio_r(&mut d, pio::ID + 1, 1), 0xff);
        assert_eq!(rd(&mut d, Space::Mmio, mmio::ID, 8), u64::MAX);
        // Read-only.
        pio_w(&mut d, pio::ID, 4, 0);
        assert_eq!(pio_r(&mut d, pio::ID, 4), u64::from(testdev::ID_VALUE));
    }

    /// QEMU hw/misc/pc-testdev.c `test_ioport_read/write`, transcribed: the reference.
    struct PcTestdev(u32);
    impl PcTestdev {
        fn write(&mut self, addr: u64, data: u64, len: u32) {
            let bits = len * 8;
            let start_bit = (addr & 3) as u32 * 8;
            let mask = ((u32::MAX >> (32 - bits)) as u64) << start_bit;
            self.0 &= !(mask as u32);
            self.0 |= (data << start_bit) as u32;
        }
        fn read(&self, addr: u64, len: u32) -> u64 {
            let bits = len * 8;
            let start_bit = (addr & 3) as u32 * 8;
            let mask = ((u32::MAX >> (32 - bits)) as u64) << start_bit;
            (u64::from(self.0) & mask) >> start_bit
        }
    }

    #[test]
    fn data_lanes_follow_pc_testdev() {
        let mut d = dev();
        let mut q = PcTestdev(0);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        // Every in-register (lane, width) for both views, interleaved, against the reference.
        for round in 0..200u64 {
            x = testdev::splitmix64(x);
            let len = [1u32, 2, 4][(x % 3) as usize];
            let lane = (x >> 8) % u64::from(5 - len);
            let port = if round % 2 == 0 {
                pio::DATA
            } else {
                pio::DATA_BYTE
            };
            let off = u64::from(port) + lane;
            let v = (x >> 16) & (u64::MAX >> (64 - 8 * len));
            if x & (1 << 40) == 0 {
                wr(&mut d, Space::Pio, off, len as usize, v);
                q.write(lane, v, len);
            } else {
                assert_eq!(
                    rd(&mut d, Space::Pio, off, len as usize),
                    q.read(lane, len),
                    "{len}-byte read at {off:#x}"
                );
            }
        }
    }

    #[test]
    fn data_lanes_by_example() {
        let mut d = dev();
        pio_w(&mut d, pio::DATA, 4, 0x4433_2211);
        assert_eq!(pio_r(&mut d, pio::DATA, 2), 0x2211);
        assert_eq!(pio_r(&mut d, pio::DATA + 2, 2), 0x4433);
        assert_eq!(pio_r(&mut d, pio::DATA + 1, 2), 0x3322);
        assert_eq!(pio_r(&mut d, pio::DATA + 3, 1), 0x44);
        pio_w(&mut d, pio::DATA + 2, 2, 0xbbaa);
        assert_eq!(pio_r(&mut d, pio::DATA, 4), 0xbbaa_2211);
        pio_w(&mut d, pio::DATA + 1, 1, 0xcc);
        assert_eq!(pio_r(&mut d, pio::DATA, 4), 0xbbaa_cc11);
        // The byte-wise view is the same register.
        assert_eq!(pio_r(&mut d, pio::DATA_BYTE, 4), 0xbbaa_cc11);
        assert_eq!(pio_r(&mut d, pio::DATA_BYTE + 2, 2), 0xbbaa);
        pio_w(&mut d, pio::DATA_BYTE, 4, 0x8765_4321);
        assert_eq!(pio_r(&mut d, pio::DATA, 4), 0x8765_4321);
        pio_w(&mut d, pio::DATA_BYTE + 3, 1, 0x00);
        assert_eq!(pio_r(&mut d, pio::DATA, 4), 0x0065_4321);
    }

    #[test]
    fn accesses_past_a_register_read_ones_and_write_nothing() {
        let mut d = dev();
        pio_w(&mut d, pio::DATA, 4, 0x4433_2211);
        // 4 bytes at DATA+2 would cross into DATA_BYTE: not a register access.
        assert_eq!(pio_r(&mut d, pio::DATA + 2, 4), 0xffff_ffff);
        pio_w(&mut d, pio::DATA + 2, 4, 0);
        pio_w(&mut d, pio::DATA_BYTE + 3, 2, 0);
        assert_eq!(pio_r(&mut d, pio::DATA, 4), 0x4433_2211);
        // Write-only registers and the gap after BENCH.
        assert_eq!(pio_r(&mut d, pio::CASE, 4), 0xffff_ffff);
        assert_eq!(pio_r(&mut d, pio::BENCH, 4), 0xffff_ffff);
        assert_eq!(pio_r(&mut d, PIO_LEN - 1, 1), 0xff);
        // MMIO gaps.
        assert_eq!(rd(&mut d, Space::Mmio, 0x20, 4), 0xffff_ffff);
        assert_eq!(rd(&mut d, Space::Mmio, MMIO_LEN - 8, 8), u64::MAX);
        wr(&mut d, Space::Mmio, MMIO_LEN - 8, 8, 0);
        // All of them logged.
        assert_eq!(d.log().len(), 11);
        assert!(d.finish().problems.is_empty());
    }

    #[test]
    fn pio_host_values() {
        let mut d = dev();
        let off = u64::from(pio::VALUE);
        for w in [Width::B1, Width::B2, Width::B4] {
            let want = host_value(SEED, Space::Pio, off, w);
            assert_eq!(pio_r(&mut d, pio::VALUE, w.bytes() as usize), want, "{w:?}");
        }
        // Aligned narrower reads inside the register answer for their own offset.
        assert_eq!(
            pio_r(&mut d, pio::VALUE + 2, 2),
            host_value(SEED, Space::Pio, off + 2, Width::B2)
        );
        assert_eq!(pio_r(&mut d, pio::VALUE + 1, 2), 0xffff, "unaligned");
        // Read-only, and a different seed answers differently.
        pio_w(&mut d, pio::VALUE, 4, 0);
        assert_eq!(
            pio_r(&mut d, pio::VALUE, 4),
            host_value(SEED, Space::Pio, off, Width::B4)
        );
        let mut other = Testdev::new(SEED ^ 1);
        assert_ne!(
            pio_r(&mut other, pio::VALUE, 4),
            pio_r(&mut d, pio::VALUE, 4)
        );
    }

    #[test]
    fn mmio_seed_and_host_values() {
        let mut d = dev();
        assert_eq!(rd(&mut d, Space::Mmio, mmio::SEED, 8), SEED);
        assert_eq!(rd(&mut d, Space::Mmio, mmio::SEED, 4), SEED & 0xffff_ffff);
        assert_eq!(rd(&mut d, Space::Mmio, mmio::SEED + 4, 4), SEED >> 32);
        assert_eq!(rd(&mut d, Space::Mmio, mmio::SEED + 2, 4), 0xffff_ffff);
        assert_eq!(rd(&mut d, Space::Mmio, mmio::SEED, 2), 0xffff);
        for w in [Width::B1, Width::B2, Width::B4, Width::B8] {
            let n = w.bytes();
            for off in (mmio::VALUE..mmio::VALUE + mmio::VALUE_LEN).step_by(n as usize) {
                assert_eq!(
                    rd(&mut d, Space::Mmio, off, n as usize),
                    host_value(SEED, Space::Mmio, off, w),
                    "{w:?} at {off:#x}"
                );
            }
        }
        assert_eq!(rd(&mut d, Space::Mmio, mmio::VALUE + 4, 8), u64::MAX);
        assert_eq!(rd(&mut d, Space::Mmio, mmio::VALUE + 1, 2), 0xffff);
        assert_eq!(
            rd(&mut d, Space::Mmio, mmio::VALUE + mmio::VALUE_LEN - 4, 8),
            u64::MAX,
            "crosses the block's end"
        );
    }

    #[test]
    fn scratch_is_memory_like() {
        let mut d = dev();
        let s = mmio::SCRATCH;
        assert_eq!(rd(&mut d, Space::Mmio, s, 8), 0, "starts zeroed");
        wr(&mut d, Space::Mmio, s + 0x100, 8, 0x8877_6655_4433_2211);
        for i in 0..8 {
            assert_eq!(rd(&mut d, Space::Mmio, s + 0x100 + i, 1), 0x11 * (i + 1));
        }
        assert_eq!(
            rd(&mut d, Space::Mmio, s + 0x102, 4),
            0x6655_4433,
            "unaligned"
        );
        wr(&mut d, Space::Mmio, s + 0x103, 1, 0xaa);
        wr(&mut d, Space::Mmio, s + 0x106, 2, 0xccbb);
        assert_eq!(rd(&mut d, Space::Mmio, s + 0x100, 8), 0xccbb_6655_aa33_2211);
        let last = s + mmio::SCRATCH_LEN - 1;
        wr(&mut d, Space::Mmio, last, 1, 0x5a);
        assert_eq!(rd(&mut d, Space::Mmio, last, 1), 0x5a);
        // Crossing the end of the window's scratch block: nothing.
        wr(&mut d, Space::Mmio, last, 2, 0x1234);
        assert_eq!(rd(&mut d, Space::Mmio, last, 2), 0xffff);
        assert_eq!(rd(&mut d, Space::Mmio, last, 1), 0x5a);
    }

    #[test]
    fn log_records_each_access() {
        let mut d = dev();
        pio_w(&mut d, pio::DATA, 4, 0xdead_beef);
        announce(&mut d, "io", "host_values");
        let v = pio_r(&mut d, pio::VALUE, 2);
        let id = id_of_case("io", "host_values").unwrap();
        let log = d.log().to_vec();
        assert_eq!(
            log,
            [
                TestdevAccess {
                    space: Space::Pio,
                    offset: u64::from(pio::DATA),
                    size: 4,
                    dir: Direction::Write,
                    data: 0xdead_beef,
                    rip: RIP,
                    case: 0,
                },
                TestdevAccess {
                    space: Space::Pio,
                    offset: u64::from(pio::CASE),
                    size: 4,
                    dir: Direction::Write,
                    data: u64::from(id),
                    rip: RIP,
                    case: 0,
                },
                TestdevAccess {
                    space: Space::Pio,
                    offset: u64::from(pio::VALUE),
                    size: 2,
                    dir: Direction::Read,
                    data: v,
                    rip: RIP,
                    case: id,
                },
            ]
        );
        assert_eq!(log[2].seen().size, 2);
    }

    #[test]
    fn log_is_bounded() {
        let mut d = dev();
        for _ in 0..LOG_CAPACITY + 7 {
            rd(&mut d, Space::Mmio, mmio::SCRATCH, 4);
        }
        assert_eq!(d.log().len(), LOG_CAPACITY);
        let r = d.finish();
        assert_eq!(r.log.len(), LOG_CAPACITY);
        assert_eq!(r.log_dropped, 7);
    }

    #[test]
    fn every_declaration_replayed_passes() {
        let mut d = dev();
        for (suite, case, steps) in testdev::DECLARED {
            announce(&mut d, suite, case);
            replay(&mut d, steps);
            pio_w(&mut d, pio::CASE, 4, 0);
        }
        let r = d.finish();
        assert_eq!(r.case_checks.len(), testdev::DECLARED.len());
        for c in &r.case_checks {
            assert_eq!(c.result, Ok(()), "{}.{}", c.suite, c.case);
            assert_eq!(c.accesses, declared_len(testdev::declared(c.suite, c.case)));
        }
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }

    #[test]
    fn cases_close_at_the_next_announcement_and_at_the_end() {
        let mut d = dev();
        // Accesses outside cases are free.
        pio_r(&mut d, pio::ID, 4);
        announce(&mut d, "io", "host_values");
        replay(&mut d, testdev::declared("io", "host_values"));
        // A bench marker inside a case is not part of its sequence.
        pio_w(
            &mut d,
            pio::BENCH,
            4,
            u64::from(bench_marker(BenchId::EmptyLoop, false)),
        );
        pio_w(
            &mut d,
            pio::BENCH,
            4,
            u64::from(bench_marker(BenchId::EmptyLoop, true)),
        );
        // Straight to the next case, no 0 in between.
        announce(&mut d, "mmio", "host_values");
        replay(&mut d, testdev::declared("mmio", "host_values"));
        let r = d.finish();
        let names: Vec<_> = r
            .case_checks
            .iter()
            .map(|c| (c.suite, c.case, c.result.is_ok()))
            .collect();
        assert_eq!(
            names,
            [("io", "host_values", true), ("mmio", "host_values", true)]
        );
        assert_eq!(r.bench.len(), 1);
    }

    #[test]
    fn a_case_that_makes_no_access_passes() {
        let mut d = dev();
        // Skipped (announced, then 0 at once), and a case without declaration.
        announce(&mut d, "io", "u32_roundtrip");
        pio_w(&mut d, pio::CASE, 4, 0);
        announce(&mut d, "cpuid", "max_leaves");
        pio_w(&mut d, pio::CASE, 4, 0);
        let r = d.finish();
        assert_eq!(r.case_checks.len(), 2);
        assert!(
            r.case_checks
                .iter()
                .all(|c| c.result.is_ok() && c.accesses == 0)
        );
    }

    #[test]
    fn reported_values_are_compared_with_the_accesses_data() {
        let run = |report: &[u64]| {
            check_of(|d| {
                announce(d, "io", "u32_roundtrip");
                for v in [0u64, 0xffff_ffff, 0x1234_5678, 0x9abc_def0] {
                    pio_w(d, pio::DATA, 4, v);
                    pio_r(d, pio::DATA, 4);
                }
                for &v in report {
                    wr(d, Space::Mmio, mmio::REPORT, 8, v);
                }
                pio_w(d, pio::CASE, 4, 0);
            })
        };
        let honest = [
            0,
            0,
            0xffff_ffff,
            0xffff_ffff,
            0x1234_5678,
            0x1234_5678,
            0x9abc_def0,
            0x9abc_def0,
        ];
        let c = run(&honest);
        assert_eq!((c.accesses, c.reported), (8, 8));
        assert_eq!(c.result, Ok(()));
        // The guest says it read something else than the device answered.
        let mut wrong = honest;
        wrong[5] = 0x1234_5679;
        let e = run(&wrong).result.unwrap_err();
        assert!(
            e.starts_with("data: access 6 (a 4-byte read of PIO+0x4 (DATA)"),
            "{e}"
        );
        assert!(
            e.contains("the device answered 0x12345678, the guest says it read 0x12345679"),
            "{e}"
        );
        // Too few values reported; none reported is the caller's to judge.
        assert!(
            run(&honest[..7])
                .result
                .unwrap_err()
                .contains("reported 7 values for 8")
        );
        let none = run(&[]);
        assert_eq!((none.reported, none.result), (0, Ok(())));
    }

    fn check_of(f: impl FnOnce(&mut Testdev)) -> CaseCheck {
        let mut d = dev();
        f(&mut d);
        let mut r = d.finish();
        assert_eq!(r.case_checks.len(), 1, "{:?}", r.case_checks);
        r.case_checks.remove(0)
    }

    #[test]
    fn a_different_access_is_named_with_its_rip() {
        let c = check_of(|d| {
            announce(d, "io", "u16_lanes");
            pio_w(d, pio::DATA, 4, 1);
            pio_r(d, pio::DATA, 2);
            pio_r(d, pio::DATA + 2, 4);
        });
        assert_eq!(c.accesses, 3);
        assert_eq!(
            c.result.unwrap_err(),
            "access 3: expected a 2-byte read of PIO+0x6 (DATA+0x2), \
             saw a 4-byte read of PIO+0x6 (DATA+0x2) at rip 0x10a2f3"
        );
    }

    #[test]
    fn an_inserted_access_is_called_undeclared() {
        let c = check_of(|d| {
            announce(d, "io", "u32_roundtrip");
            pio_r(d, pio::VALUE, 4);
            replay(d, testdev::declared("io", "u32_roundtrip"));
        });
        assert_eq!(
            c.result.unwrap_err(),
            "undeclared access: a 4-byte read of PIO+0xc (VALUE) at rip 0x10a2f3, made as \
             access 1 of 9 (the other 8 match the declaration)"
        );
    }

    #[test]
    fn an_access_after_the_declared_ones_is_undeclared() {
        let c = check_of(|d| {
            announce(d, "io", "host_values");
            replay(d, testdev::declared("io", "host_values"));
            rd(d, Space::Mmio, mmio::SCRATCH + 0x10, 8);
        });
        assert_eq!(
            c.result.unwrap_err(),
            "undeclared access: a 8-byte read of MMIO+0x1010 (SCRATCH+0x10) at rip 0x10a2f3, \
             access 4 of 4 (after the 3 declared)"
        );
        let c = check_of(|d| {
            announce(d, "msr", "apic_base");
            pio_r(d, pio::ID, 4);
        });
        assert_eq!(
            c.result.unwrap_err(),
            "undeclared access: a 4-byte read of PIO+0x0 (ID) at rip 0x10a2f3, access 1 of 1 \
             (the case declares none)"
        );
    }

    #[test]
    fn missing_accesses_are_counted() {
        let steps = testdev::declared("io", "u32_roundtrip");
        let c = check_of(|d| {
            announce(d, "io", "u32_roundtrip");
            replay(d, &steps[..5]);
        });
        assert_eq!(
            c.result.unwrap_err(),
            "missing: declared 8 accesses, saw 5; the first missing one is a 4-byte read of \
             PIO+0x4 (DATA)"
        );
        // One left out in the middle.
        let c = check_of(|d| {
            announce(d, "io", "u16_lanes");
            let s = testdev::declared("io", "u16_lanes");
            replay(d, &s[..2]);
            replay(d, &s[3..]);
        });
        assert_eq!(
            c.result.unwrap_err(),
            "missing: declared 7 accesses, saw 6; access 3 (a 2-byte read of PIO+0x6 \
             (DATA+0x2)) was not made (the others match the declaration)"
        );
    }

    #[test]
    fn a_runaway_case_is_checked_in_bounded_memory() {
        let c = check_of(|d| {
            announce(d, "io", "host_values");
            replay(d, testdev::declared("io", "host_values"));
            for _ in 0..10_000 {
                pio_r(d, pio::ID, 4);
            }
        });
        assert_eq!(c.accesses, 10_003);
        assert!(c.result.unwrap_err().starts_with(
            "undeclared access: a 4-byte read of PIO+0x0 (ID) at rip 0x10a2f3, access 4 of 10003"
        ));
    }

    #[test]
    fn protocol_breaches_are_problems() {
        let mut d = dev();
        pio_w(&mut d, pio::CASE, 4, 0x00ff_0001);
        pio_r(&mut d, pio::VALUE, 4);
        pio_w(&mut d, pio::CASE, 2, 0x1);
        pio_w(&mut d, pio::BENCH + 1, 1, 0x1);
        wr(&mut d, Space::Mmio, mmio::REPORT, 4, 0x1);
        pio_w(&mut d, pio::BENCH, 4, 0x7f);
        pio_w(
            &mut d,
            pio::BENCH,
            4,
            u64::from(bench_marker(BenchId::ApiPioRead, true)),
        );
        pio_w(
            &mut d,
            pio::BENCH,
            4,
            u64::from(bench_marker(BenchId::ApiMmioRead, false)),
        );
        pio_w(
            &mut d,
            pio::BENCH,
            4,
            u64::from(bench_marker(BenchId::ApiMmioRead, false)),
        );
        let r = d.finish();
        assert!(r.case_checks.is_empty(), "an unknown case is not checked");
        assert_eq!(
            r.problems,
            [
                "CASE write of 0x00ff0001 at rip 0x10a2f3: no case has that id \
                 (protocol::testdev::case_id); its accesses go unchecked",
                "2-byte write to PIO+0x10 (CASE) at rip 0x10a2f3: CASE takes one 4-byte write \
                 at its offset, this one was ignored",
                "1-byte write to PIO+0x15 (BENCH+0x1) at rip 0x10a2f3: BENCH takes one 4-byte \
                 write at its offset, this one was ignored",
                "4-byte write to MMIO+0x10 (REPORT) at rip 0x10a2f3: REPORT takes one 8-byte \
                 write at its offset, this one was ignored",
                "BENCH write of 0x7f at rip 0x10a2f3: not a bench marker \
                 (protocol::testdev::bench_marker)",
                "bench api_pio_read: end marker at rip 0x10a2f3 without a start marker",
                "bench api_mmio_read: second start marker at rip 0x10a2f3 before an end marker",
                "bench api_mmio_read: start marker without an end marker (the run ended first)",
            ]
        );
        // The raw id is still what the log shows.
        assert!(r.log.iter().any(|a| a.case == 0x00ff_0001));
    }

    #[test]
    fn bench_markers_give_wall_time_and_exits_between() {
        let mut d = dev();
        let t0 = Instant::now();
        let at = |ms: u64, exits: u64| AccessCtx {
            rip: RIP,
            now: t0 + Duration::from_millis(ms),
            exits,
            counts: RunCounts {
                ioctls: ioctls(exits, exits / 2),
                instructions: 50 * exits,
                vmm_ns: 1000 * exits,
            },
        };
        // `runs` KVM_RUNs and `translates` KVM_TRANSLATEs.
        fn ioctls(runs: u64, translates: u64) -> crate::IoctlCounts {
            let mut c = crate::IoctlCounts::default();
            c.by_kind[crate::Ioctl::Run as usize] = runs;
            c.by_kind[crate::Ioctl::Translate as usize] = translates;
            c
        }
        let m = |id, end| bench_marker(id, end).to_le_bytes();
        let b = u64::from(pio::BENCH);
        d.write(Space::Pio, b, &m(BenchId::EmptyLoop, false), &at(0, 10));
        d.write(Space::Pio, b, &m(BenchId::EmptyLoop, true), &at(1, 11));
        d.write(Space::Pio, b, &m(BenchId::ApiPioRead, false), &at(2, 12));
        d.write(Space::Pio, b, &m(BenchId::ApiPioRead, true), &at(7, 2013));
        let r = d.finish();
        assert_eq!(
            r.bench,
            [
                BenchSample {
                    id: BenchId::EmptyLoop,
                    wall: Duration::from_millis(1),
                    exits: 0,
                    ioctls: ioctls(0, 0),
                    instructions: 50,
                    vmm_time: Duration::from_micros(1),
                },
                BenchSample {
                    id: BenchId::ApiPioRead,
                    wall: Duration::from_millis(5),
                    exits: 2000,
                    ioctls: ioctls(2000, 1000),
                    instructions: 100_050,
                    vmm_time: Duration::from_micros(2001),
                },
            ]
        );
        assert!(r.problems.is_empty());
    }

    #[test]
    fn messages_name_registers_as_the_device_decodes_them() {
        // The device decodes with `BLOCKS`, its messages name registers with
        // `protocol::testdev::register_name` (`explain::Place`): one map.
        for &(space, base, len, _, _) in &BLOCKS {
            for off in [base, base + 1, base + len - 1, base + len] {
                assert_eq!(
                    register(space, off),
                    testdev::register_name(space, off),
                    "{space:?} {off:#x}"
                );
            }
        }
        let r = {
            let mut d = dev();
            pio_w(&mut d, pio::CASE + 2, 2, 0);
            d.finish()
        };
        assert_eq!(
            r.problems,
            [
                "2-byte write to PIO+0x12 (CASE+0x2) at rip 0x10a2f3: CASE takes one 4-byte \
              write at its offset, this one was ignored"
            ]
        );
        assert_eq!(case_id(0, 0), 0x1_0001);
    }

    #[test]
    fn a_runaway_case_is_not_called_one_access_too_many() {
        // An access in front of the declared ones, then more: the device keeps the first
        // `declared + 1`, which alone would look like one access too many.
        let c = check_of(|d| {
            announce(d, "io", "u32_roundtrip");
            pio_r(d, pio::VALUE, 4);
            replay(d, testdev::declared("io", "u32_roundtrip"));
            pio_r(d, pio::VALUE, 4);
        });
        assert_eq!(c.accesses, 10);
        assert_eq!(
            c.result.unwrap_err(),
            "access 1: expected a 4-byte write of PIO+0x4 (DATA), saw a 4-byte read of PIO+0xc \
             (VALUE) at rip 0x10a2f3"
        );
    }

    #[test]
    fn reported_values_past_the_kept_ones_are_counted() {
        let c = check_of(|d| {
            announce(d, "io", "host_values");
            let vals: Vec<u64> = testdev::declared("io", "host_values")
                .iter()
                .map(|s| rd(d, s.space, s.offset, s.width.bytes() as usize))
                .collect();
            for &v in &vals {
                wr(d, Space::Mmio, mmio::REPORT, 8, v);
            }
            for _ in 0..testdev::DATA_MAX + 10 {
                wr(d, Space::Mmio, mmio::REPORT, 8, 0);
            }
        });
        assert_eq!((c.accesses, c.reported), (3, testdev::DATA_MAX + 13));
        assert_eq!(
            c.result.unwrap_err(),
            format!(
                "data: the case reported {} values for 3 accesses",
                testdev::DATA_MAX + 13
            )
        );
        // Values reported by a case that made no access.
        let c = check_of(|d| {
            announce(d, "io", "u32_roundtrip");
            wr(d, Space::Mmio, mmio::REPORT, 8, 1);
            wr(d, Space::Mmio, mmio::REPORT, 8, 2);
        });
        assert_eq!(
            c.result.unwrap_err(),
            "data: the case reported 2 values for 0 accesses"
        );
    }
}
