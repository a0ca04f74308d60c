//! The cvmprobe test device of the built-in VMM: register map, host-chosen values, and the
//! access sequence each case declares.
//!
//! The device has a port-IO range and an MMIO window. Both offer the same semantics as QEMU's
//! `pc-testdev` (a 4-byte data register with byte lanes, a byte-wise view of it, a memory-like
//! scratch window), so the `io` and `mmio` suites run unchanged against either device, plus
//! what only a purpose-built host can offer:
//!
//! - **Host-chosen values**: `VALUE` registers answer [`host_value`] of a per-run seed the
//!   host picks; the guest learns the seed only by reading [`mmio::SEED`], so a guest that
//!   hard-codes an answer fails.
//! - **An access log checked on the host**: the device records every access (address, size,
//!   direction, data, guest RIP). Before each case the guest writes the case's [`case_id`] to
//!   [`pio::CASE`] (and 0 after it); the host then compares the accesses made during the case
//!   with the sequence the case declares in [`declared`]. A case passes only when the guest
//!   said `ok` *and* the host's log matches.
//! - **The data, both ways**: after a case's accesses the guest writes each value it exchanged
//!   with the device, in order, to [`mmio::REPORT`]; the host compares each written value with
//!   what its device received and each read value with what its device answered
//!   ([`check_data`]), so a value changed anywhere between the test and the device (a
//!   backend, a simulated host, the device model) fails the case.

use crate::access::{Direction, Width};
use crate::catalog;

/// First port of the device's port-IO range (QEMU x86 machines leave 0xd100-0xd11f unclaimed).
pub const PIO_BASE: u16 = 0xd100;
/// Ports in the range.
pub const PIO_LEN: u16 = 0x20;

/// Port offsets from [`PIO_BASE`].
pub mod pio {
    /// 4-byte read-only identification, [`super::ID_VALUE`].
    pub const ID: u16 = 0x00;
    /// 4-byte data register with byte lanes: an access of N bytes at `DATA + k` reads/writes
    /// lanes k..k+N (as QEMU pc-testdev's port 0xe0).
    pub const DATA: u16 = 0x04;
    /// Byte-wise view of the same data register (as pc-testdev's port 0xe8: wider accesses
    /// behave as a sequence of 1-byte accesses).
    pub const DATA_BYTE: u16 = 0x08;
    /// Read-only: [`super::host_value`] for (port offset, width).
    pub const VALUE: u16 = 0x0c;
    /// Write-only, 4 bytes: the running case's [`super::case_id`] (0 = between cases).
    pub const CASE: u16 = 0x10;
    /// Write-only, 4 bytes: benchmark marker ([`super::bench_marker`]); the host timestamps it.
    pub const BENCH: u16 = 0x14;
}

/// GPA of the device's MMIO window (below 4 GiB, above any RAM the VMM gives the guest).
pub const MMIO_BASE: u64 = 0xd000_0000;
/// Size of the window.
pub const MMIO_LEN: u64 = 0x1_0000;

/// Offsets in the MMIO window.
pub mod mmio {
    /// 4-byte read-only identification, [`super::ID_VALUE`].
    pub const ID: u64 = 0x000;
    /// 8-byte read-only per-run seed of [`super::host_value`].
    pub const SEED: u64 = 0x008;
    /// Write-only, 8 bytes: after its accesses a case writes here each value it exchanged
    /// with the device, in order (the value it wrote, the value it read back), for the host's
    /// [`super::check_data`]. Not part of the case's declared sequence.
    pub const REPORT: u64 = 0x010;
    /// Read-only host-chosen values: an aligned access of any width in
    /// `VALUE..VALUE + VALUE_LEN` answers [`super::host_value`] for (offset, width).
    pub const VALUE: u64 = 0x100;
    /// Length of the value block.
    pub const VALUE_LEN: u64 = 0x40;
    /// Memory-like scratch window: reads return what was written, little-endian, any width
    /// (as pc-testdev's IO memory at 0xff000000).
    pub const SCRATCH: u64 = 0x1000;
    /// Length of the scratch window.
    pub const SCRATCH_LEN: u64 = 0x1000;
}

/// Identification register value: "CVMP" little-endian.
pub const ID_VALUE: u32 = u32::from_le_bytes(*b"CVMP");

/// The registers by name: `(space, offset, length, name)`, for messages about accesses
/// (the built-in VMM's device model decodes the same blocks).
pub const REGISTERS: [(Space, u64, u64, &str); 11] = [
    (Space::Pio, pio::ID as u64, 4, "ID"),
    (Space::Pio, pio::DATA as u64, 4, "DATA"),
    (Space::Pio, pio::DATA_BYTE as u64, 4, "DATA_BYTE"),
    (Space::Pio, pio::VALUE as u64, 4, "VALUE"),
    (Space::Pio, pio::CASE as u64, 4, "CASE"),
    (Space::Pio, pio::BENCH as u64, 4, "BENCH"),
    (Space::Mmio, mmio::ID, 4, "ID"),
    (Space::Mmio, mmio::SEED, 8, "SEED"),
    (Space::Mmio, mmio::REPORT, 8, "REPORT"),
    (Space::Mmio, mmio::VALUE, mmio::VALUE_LEN, "VALUE"),
    (Space::Mmio, mmio::SCRATCH, mmio::SCRATCH_LEN, "SCRATCH"),
];

/// The register holding `offset` in `space` and the offset into it.
pub fn register_name(space: Space, offset: u64) -> Option<(&'static str, u64)> {
    REGISTERS
        .iter()
        .find(|&&(s, base, len, _)| s == space && offset >= base && offset - base < len)
        .map(|&(_, base, _, name)| (name, offset - base))
}

pub mod explain;

/// The two address spaces of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// Port IO (offset from [`PIO_BASE`]).
    Pio,
    /// MMIO (offset from [`MMIO_BASE`]).
    Mmio,
}

/// The value a `VALUE` register answers: a mix of the run's seed, the address space, the
/// offset and the width, truncated to the width. Host and guest compute it with this one
/// function.
pub const fn host_value(seed: u64, space: Space, offset: u64, width: Width) -> u64 {
    let tag = match space {
        Space::Pio => 0x5049_4f00,
        Space::Mmio => 0x4d4d_494f,
    };
    splitmix64(seed ^ (offset << 8) ^ (width.bytes() << 4) ^ (tag << 32)) & width.mask()
}

/// SplitMix64 finaliser (Steele, Lea, Flood: "Fast splittable pseudorandom number
/// generators", OOPSLA 2014).
pub const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The id a case announces through [`pio::CASE`]: `(suite index + 1) << 16 | (case index + 1)`
/// in catalog order; 0 means "no case running".
pub const fn case_id(suite_index: usize, case_index: usize) -> u32 {
    (((suite_index + 1) as u32) << 16) | (case_index + 1) as u32
}

/// The `(suite, case)` names of a [`case_id`].
pub fn case_of_id(id: u32) -> Option<(&'static str, &'static str)> {
    let (s, c) = ((id >> 16) as usize, (id & 0xffff) as usize);
    let suite = catalog::SUITES.get(s.checked_sub(1)?)?;
    let case = suite.cases.get(c.checked_sub(1)?)?;
    Some((suite.name, case.name))
}

/// The [`case_id`] of `suite.case`.
pub fn id_of_case(suite: &str, case: &str) -> Option<u32> {
    let si = catalog::SUITES.iter().position(|s| s.name == suite)?;
    let ci = catalog::SUITES[si]
        .cases
        .iter()
        .position(|c| c.name == case)?;
    Some(case_id(si, ci))
}

/// The guest microbenchmarks (`cvmprobe.mode=bench`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum BenchId {
    /// An empty loop: the cost of guest instructions alone.
    EmptyLoop = 1,
    /// Raw 4-byte `in` from the data port, no API: the port-IO exit floor (legacy only).
    RawPioRead = 2,
    /// `pio_read::<u32>` of the data port through the API.
    ApiPioRead = 3,
    /// `mmio_read::<u32>` of the scratch window through the API.
    ApiMmioRead = 4,
    /// `mmio_write::<u32>` to the scratch window through the API.
    ApiMmioWrite = 5,
    /// One TDCALL / VMGEXIT that the host answers without a device (TDX: TDG.VP.INFO, which
    /// the TDX module answers; SEV-ES: the GHCB HV_FEATURES request, which KVM answers): the
    /// trap-exit floor of the confidential platforms (not run on legacy).
    TrapFloor = 6,
}

impl BenchId {
    /// Every bench.
    pub const ALL: [BenchId; 6] = [
        Self::EmptyLoop,
        Self::RawPioRead,
        Self::ApiPioRead,
        Self::ApiMmioRead,
        Self::ApiMmioWrite,
        Self::TrapFloor,
    ];

    /// Name in the `# bench <name> ...` diagnostic.
    pub const fn name(self) -> &'static str {
        match self {
            Self::EmptyLoop => "empty_loop",
            Self::RawPioRead => "raw_pio_read",
            Self::ApiPioRead => "api_pio_read",
            Self::ApiMmioRead => "api_mmio_read",
            Self::ApiMmioWrite => "api_mmio_write",
            Self::TrapFloor => "trap_floor",
        }
    }

    /// The bench with number `n`.
    pub fn from_u32(n: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|b| *b as u32 == n)
    }
}

/// A benchmark marker: `(bench << 1) | end`. The host timestamps each marker write and counts
/// the exits between the start and end marker of a bench.
pub const fn bench_marker(bench: BenchId, end: bool) -> u32 {
    ((bench as u32) << 1) | end as u32
}

/// Decodes a [`bench_marker`].
pub fn parse_bench_marker(v: u32) -> Option<(BenchId, bool)> {
    Some((BenchId::from_u32(v >> 1)?, v & 1 == 1))
}

/// One declared step: `times` identical accesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Address space.
    pub space: Space,
    /// Offset from the space's base.
    pub offset: u64,
    /// Access size.
    pub width: Width,
    /// Read or write.
    pub dir: Direction,
    /// Repetitions.
    pub times: u16,
}

const fn s(space: Space, offset: u64, width: Width, dir: Direction, times: u16) -> Step {
    Step {
        space,
        offset,
        width,
        dir,
        times,
    }
}

use Direction::{Read as R, Write as W};
use Space::{Mmio as M, Pio as P};
use Width::{B1, B2, B4, B8};

const DATA: u64 = pio::DATA as u64;
const BYTE: u64 = pio::DATA_BYTE as u64;
const VAL: u64 = pio::VALUE as u64;
const SCR: u64 = mmio::SCRATCH;

/// The accesses each case makes to the test device, in order, as the guest's code does them
/// (`guest/src/tests/`). A case that is not listed declares that it makes none.
#[rustfmt::skip]
pub static DECLARED: &[(&str, &str, &[Step])] = &[
    ("io", "u32_roundtrip", &[
        s(P, DATA, B4, W, 1), s(P, DATA, B4, R, 1),
        s(P, DATA, B4, W, 1), s(P, DATA, B4, R, 1),
        s(P, DATA, B4, W, 1), s(P, DATA, B4, R, 1),
        s(P, DATA, B4, W, 1), s(P, DATA, B4, R, 1),
    ]),
    ("io", "u16_lanes", &[
        s(P, DATA, B4, W, 1), s(P, DATA, B2, R, 1), s(P, DATA + 2, B2, R, 1),
        s(P, DATA + 2, B2, W, 1), s(P, DATA, B4, R, 1),
        s(P, DATA, B2, W, 1), s(P, DATA, B4, R, 1),
    ]),
    ("io", "u8_lanes", &[
        s(P, DATA, B4, W, 1),
        s(P, DATA, B1, R, 1), s(P, DATA + 1, B1, R, 1), s(P, DATA + 2, B1, R, 1), s(P, DATA + 3, B1, R, 1),
        s(P, DATA, B1, W, 1), s(P, DATA, B4, R, 1),
        s(P, DATA + 1, B1, W, 1), s(P, DATA, B4, R, 1),
        s(P, DATA + 2, B1, W, 1), s(P, DATA, B4, R, 1),
        s(P, DATA + 3, B1, W, 1), s(P, DATA, B4, R, 1),
    ]),
    ("io", "split_register", &[
        s(P, BYTE, B4, W, 1), s(P, BYTE, B4, R, 1), s(P, DATA, B4, R, 1), s(P, BYTE + 2, B2, R, 1),
        s(P, BYTE, B4, W, 1), s(P, BYTE, B4, R, 1), s(P, DATA, B4, R, 1), s(P, BYTE + 2, B2, R, 1),
    ]),
    ("io", "host_values", &[
        s(P, VAL, B1, R, 1), s(P, VAL, B2, R, 1), s(P, VAL, B4, R, 1),
    ]),
    ("mmio", "u8_roundtrip", &[
        s(M, SCR + 0x10, B1, W, 1), s(M, SCR + 0x10, B1, R, 1),
        s(M, SCR + 0x11, B1, W, 1), s(M, SCR + 0x11, B1, R, 1),
        s(M, SCR + 0x17, B1, W, 1), s(M, SCR + 0x17, B1, R, 1),
        s(M, SCR + 0xfff, B1, W, 1), s(M, SCR + 0xfff, B1, R, 1),
    ]),
    ("mmio", "u16_roundtrip", &[
        s(M, SCR + 0x20, B2, W, 1), s(M, SCR + 0x20, B2, R, 1),
        s(M, SCR + 0x22, B2, W, 1), s(M, SCR + 0x22, B2, R, 1),
        s(M, SCR + 0x2e, B2, W, 1), s(M, SCR + 0x2e, B2, R, 1),
    ]),
    ("mmio", "u32_roundtrip", &[
        s(M, SCR + 0x40, B4, W, 1), s(M, SCR + 0x40, B4, R, 1),
        s(M, SCR + 0x44, B4, W, 1), s(M, SCR + 0x44, B4, R, 1),
        s(M, SCR + 0x7c, B4, W, 1), s(M, SCR + 0x7c, B4, R, 1),
    ]),
    ("mmio", "u64_roundtrip", &[
        s(M, SCR + 0x80, B8, W, 1), s(M, SCR + 0x80, B8, R, 1),
        s(M, SCR + 0x88, B8, W, 1), s(M, SCR + 0x88, B8, R, 1),
        s(M, SCR + 0xf8, B8, W, 1), s(M, SCR + 0xf8, B8, R, 1),
    ]),
    ("mmio", "byte_lanes", &[
        s(M, SCR + 0x100, B8, W, 1),
        s(M, SCR + 0x100, B1, R, 1), s(M, SCR + 0x101, B1, R, 1), s(M, SCR + 0x102, B1, R, 1),
        s(M, SCR + 0x103, B1, R, 1), s(M, SCR + 0x104, B1, R, 1), s(M, SCR + 0x105, B1, R, 1),
        s(M, SCR + 0x106, B1, R, 1), s(M, SCR + 0x107, B1, R, 1),
        s(M, SCR + 0x100, B2, R, 1), s(M, SCR + 0x102, B2, R, 1), s(M, SCR + 0x104, B2, R, 1),
        s(M, SCR + 0x106, B2, R, 1),
        s(M, SCR + 0x100, B4, R, 1), s(M, SCR + 0x104, B4, R, 1),
    ]),
    ("mmio", "narrow_write_merge", &[
        s(M, SCR + 0x200, B8, W, 1),
        s(M, SCR + 0x203, B1, W, 1), s(M, SCR + 0x200, B8, R, 1),
        s(M, SCR + 0x206, B2, W, 1), s(M, SCR + 0x200, B8, R, 1),
        s(M, SCR + 0x200, B4, W, 1), s(M, SCR + 0x200, B8, R, 1),
    ]),
    ("mmio", "host_values", &[
        s(M, mmio::VALUE, B1, R, 1), s(M, mmio::VALUE + 0x8, B2, R, 1),
        s(M, mmio::VALUE + 0x10, B4, R, 1), s(M, mmio::VALUE + 0x18, B8, R, 1),
    ]),
];

/// The steps `suite.case` declares (empty: it makes no access to the device).
pub fn declared(suite: &str, case: &str) -> &'static [Step] {
    DECLARED
        .iter()
        .find(|(s, c, _)| *s == suite && *c == case)
        .map_or(&[], |(_, _, steps)| steps)
}

/// One access as the host logged it (the part the declaration constrains).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Address space.
    pub space: Space,
    /// Offset from the space's base.
    pub offset: u64,
    /// Access size in bytes (any number: a malformed access must still be reported).
    pub size: u64,
    /// Read or write.
    pub dir: Direction,
}

/// Compares the accesses seen during a case with its declaration; `Err` says where they part.
pub fn check(steps: &[Step], seen: &[Seen]) -> Result<(), Mismatch> {
    let mut i = 0usize;
    for (si, st) in steps.iter().enumerate() {
        for rep in 0..st.times {
            let Some(a) = seen.get(i) else {
                return Err(Mismatch::Missing {
                    step: si,
                    repetition: rep,
                    expected: *st,
                    seen: i,
                });
            };
            if a.space != st.space
                || a.offset != st.offset
                || a.size != st.width.bytes()
                || a.dir != st.dir
            {
                return Err(Mismatch::Differs {
                    index: i,
                    expected: *st,
                    seen: *a,
                });
            }
            i += 1;
        }
    }
    match seen.get(i) {
        Some(a) => Err(Mismatch::Extra { index: i, seen: *a }),
        None => Ok(()),
    }
}

/// Most values one case reports through [`mmio::REPORT`] (the longest declaration is 15).
pub const DATA_MAX: usize = 32;

/// Compares the values the host's device saw (`logged`: written values as received, read
/// values as answered, each masked to its width, in access order) with the values the guest
/// says it exchanged (`reported`, through [`mmio::REPORT`]).
pub fn check_data(logged: &[(Direction, u64)], reported: &[u64]) -> Result<(), DataMismatch> {
    for (i, (&(dir, l), &r)) in logged.iter().zip(reported).enumerate() {
        if l != r {
            return Err(DataMismatch::Differs {
                index: i,
                dir,
                logged: l,
                reported: r,
            });
        }
    }
    if logged.len() != reported.len() {
        return Err(DataMismatch::Count {
            logged: logged.len(),
            reported: reported.len(),
        });
    }
    Ok(())
}

/// Where the guest's reported data parts from the host's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataMismatch {
    /// The value of access `index` (0-based) differs.
    Differs {
        /// Position.
        index: usize,
        /// The access's direction.
        dir: Direction,
        /// The value in the host's log.
        logged: u64,
        /// The value the guest reported.
        reported: u64,
    },
    /// The guest reported a different number of values than the device saw accesses.
    Count {
        /// Accesses the device saw.
        logged: usize,
        /// Values the guest reported.
        reported: usize,
    },
}

/// Where a log parts from a declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// Access `index` is not the declared step.
    Differs {
        /// Position in the log.
        index: usize,
        /// The declared step.
        expected: Step,
        /// What the host saw.
        seen: Seen,
    },
    /// The log ended before declared step `step` (repetition `repetition`).
    Missing {
        /// Declared step index.
        step: usize,
        /// Which repetition of it.
        repetition: u16,
        /// The declared step.
        expected: Step,
        /// How many accesses were seen in all.
        seen: usize,
    },
    /// Access `index` was not declared at all.
    Extra {
        /// Position in the log.
        index: usize,
        /// What the host saw.
        seen: Seen,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_cases_exist_in_the_catalog() {
        for (s, c, steps) in DECLARED {
            assert!(id_of_case(s, c).is_some(), "{s}.{c} is not in the catalog");
            assert!(!steps.is_empty());
            for st in *steps {
                let (base_len, _) = match st.space {
                    Space::Pio => (u64::from(PIO_LEN), 0),
                    Space::Mmio => (MMIO_LEN, 0),
                };
                assert!(
                    st.offset + st.width.bytes() <= base_len,
                    "{s}.{c}: {st:?} is outside the device"
                );
                assert!(
                    st.space == Space::Mmio || st.width != Width::B8,
                    "{s}.{c}: 8-byte port IO"
                );
            }
        }
    }

    #[test]
    fn case_ids_round_trip() {
        for (si, s) in catalog::SUITES.iter().enumerate() {
            for (ci, c) in s.cases.iter().enumerate() {
                let id = case_id(si, ci);
                assert_ne!(id, 0);
                assert_eq!(case_of_id(id), Some((s.name, c.name)));
                assert_eq!(id_of_case(s.name, c.name), Some(id));
            }
        }
        assert_eq!(case_of_id(0), None);
        assert_eq!(case_of_id(0xffff_ffff), None);
    }

    #[test]
    fn host_values_depend_on_everything() {
        let a = host_value(1, Space::Pio, 0xc, Width::B4);
        assert_ne!(a, host_value(2, Space::Pio, 0xc, Width::B4));
        assert_ne!(a, host_value(1, Space::Mmio, 0xc, Width::B4));
        assert_ne!(a, host_value(1, Space::Pio, 0xd, Width::B4));
        assert!(Width::B1.fits(host_value(9, Space::Mmio, 0x100, Width::B1)));
    }

    fn seen(st: &Step) -> Seen {
        Seen {
            space: st.space,
            offset: st.offset,
            size: st.width.bytes(),
            dir: st.dir,
        }
    }

    #[test]
    fn data_mismatches_are_found() {
        let logged = [
            (Direction::Write, 0),
            (Direction::Read, 0xffff_ffff),
            (Direction::Write, 0x1f),
            (Direction::Read, 0x1f),
        ];
        let reported = [0, 0xffff_ffff, 0x1f, 0x1f];
        assert_eq!(check_data(&logged, &reported), Ok(()));
        let mut bad = reported;
        bad[3] = 0x1e;
        assert_eq!(
            check_data(&logged, &bad),
            Err(DataMismatch::Differs {
                index: 3,
                dir: Direction::Read,
                logged: 0x1f,
                reported: 0x1e
            })
        );
        assert_eq!(
            check_data(&logged, &reported[..2]),
            Err(DataMismatch::Count {
                logged: 4,
                reported: 2
            })
        );
    }

    #[test]
    fn check_finds_each_kind_of_mismatch() {
        let steps = declared("io", "u16_lanes");
        let log: Vec<Seen> = steps.iter().map(seen).collect();
        assert_eq!(check(steps, &log), Ok(()));
        assert!(matches!(
            check(steps, &log[..3]),
            Err(Mismatch::Missing { step: 3, .. })
        ));
        let mut extra = log.clone();
        extra.push(log[0]);
        assert!(matches!(
            check(steps, &extra),
            Err(Mismatch::Extra { index: 7, .. })
        ));
        let mut wrong = log.clone();
        wrong[2].size = 4;
        assert!(matches!(
            check(steps, &wrong),
            Err(Mismatch::Differs { index: 2, .. })
        ));
        assert_eq!(check(declared("cpuid", "max_leaves"), &[]), Ok(()));
        assert!(check(declared("cpuid", "max_leaves"), &log[..1]).is_err());
    }
}
