//! The test device and the host half of the verdict, with the real guest kernel (needs
//! `/dev/kvm` and the kernel ELF; `CVMPROBE_NO_KVM=1` turns a missing KVM into skips).

use protocol::access::{Direction, Width};
use protocol::catalog;
use protocol::testdev::{self, BenchId, Space, mmio, pio};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vmm::{ExitReason, RunReport, TestdevAccess, VmConfig};

mod common;

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

fn setup(test: &str) -> Option<PathBuf> {
    common::kvm_or_skip(test).then(|| common::kernel(test))
}

fn boot(kernel: &Path, cmdline: &str, seed: Option<u64>) -> (RunReport, String) {
    let mut cfg = VmConfig::new(kernel);
    cfg.cmdline = cmdline.to_owned();
    cfg.timeout = RUN_TIMEOUT;
    cfg.seed = seed;
    let report = vmm::run(&cfg, &mut |_| {}).expect("VMM setup");
    let serial = String::from_utf8_lossy(&report.serial).into_owned();
    (report, serial)
}

/// The KTAP result line of `case` inside the `suite` block.
fn result_line<'a>(serial: &'a str, suite: &str, case: &str) -> Option<&'a str> {
    let start = serial.find(&format!("# Subtest: {suite}\n"))?;
    serial[start..]
        .lines()
        // The block ends with the suite's own result, at depth 0.
        .take_while(|l| !(l.starts_with("ok ") || l.starts_with("not ok ")))
        .map(str::trim_start)
        .find(|l| {
            let rest = l.strip_prefix("ok ").or_else(|| l.strip_prefix("not ok "));
            rest.and_then(|r| r.split_whitespace().nth(1)) == Some(case)
        })
}

fn ran_ok(serial: &str, suite: &str, case: &str) -> bool {
    result_line(serial, suite, case).is_some_and(|l| l.starts_with("ok ") && !l.contains("# SKIP"))
}

/// The bytes of the kernel ELF at virtual address `va` (through its PT_LOAD segments).
fn elf_bytes_at(elf: &[u8], va: u64, n: usize) -> Option<&[u8]> {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (u64_at(32) as usize, u16_at(54) as usize, u16_at(56));
    (0..usize::from(phnum)).find_map(|i| {
        let p = phoff + i * phentsize;
        let (offset, vaddr, filesz) = (u64_at(p + 8), u64_at(p + 16), u64_at(p + 32));
        (u32_at(p) == 1 && va >= vaddr && va + n as u64 <= vaddr + filesz).then(|| {
            let at = (offset + va - vaddr) as usize;
            &elf[at..at + n]
        })
    })
}

/// Skips operand-size and REX prefixes.
fn skip_prefixes(code: &[u8]) -> usize {
    code.iter()
        .take_while(|&&b| b == 0x66 || (0x40..=0x4f).contains(&b))
        .count()
}

/// Whether `code` starts with a port-IO (PIO) or memory-operand MOV/MOVZX (MMIO) instruction.
fn is_access_insn(code: &[u8], space: Space) -> bool {
    let i = skip_prefixes(code);
    let op = code.get(i).copied();
    match space {
        // IN/OUT imm8 and DX forms, and their string forms.
        Space::Pio => matches!(op, Some(0xe4..=0xe7 | 0xec..=0xef | 0x6c..=0x6f)),
        Space::Mmio => {
            matches!(op, Some(0x88..=0x8b | 0xa0..=0xa3 | 0xc6 | 0xc7))
                || (op == Some(0x0f) && matches!(code.get(i + 1), Some(0xb6 | 0xb7)))
        }
    }
}

/// The length of the store at the start of `code`, if it is one: OUT DX (the device's ports
/// are above 0xff, so no imm8 form) or MOV r/m, r / MOV r/m, imm (64-bit mode ModRM/SIB).
fn store_len(code: &[u8], space: Space) -> Option<usize> {
    let mut i = skip_prefixes(code);
    let opsize16 = code[..i].contains(&0x66);
    let op = *code.get(i)?;
    i += 1;
    match (space, op) {
        (Space::Pio, 0xee | 0xef) => return Some(i),
        (Space::Mmio, 0x88 | 0x89 | 0xc6 | 0xc7) => {}
        _ => return None,
    }
    let modrm = *code.get(i)?;
    i += 1;
    let (md, rm) = (modrm >> 6, modrm & 7);
    if md == 3 {
        return None; // register destination: not a store
    }
    let mut disp = match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = *code.get(i)?;
        i += 1;
        if md == 0 && sib & 7 == 5 {
            disp = 4;
        }
    } else if md == 0 && rm == 5 {
        disp = 4; // RIP-relative
    }
    let imm = match op {
        0xc6 => 1,
        0xc7 if opsize16 => 2,
        0xc7 => 4,
        _ => 0,
    };
    Some(i + disp + imm)
}

/// Whether a store of the logged kind ends exactly at `rip` (KVM completed it before the
/// exit).
fn store_ends_at(elf: &[u8], rip: u64, space: Space) -> bool {
    (1..=15u64).any(|len| {
        elf_bytes_at(elf, rip - len, len as usize + 1)
            .is_some_and(|code| store_len(code, space) == Some(len as usize))
    })
}

fn value_reads(r: &RunReport) -> Vec<TestdevAccess> {
    r.testdev_log
        .iter()
        .filter(|a| {
            a.dir == Direction::Read
                && match a.space {
                    Space::Pio => a.offset == u64::from(pio::VALUE),
                    Space::Mmio => (mmio::VALUE..mmio::VALUE + mmio::VALUE_LEN).contains(&a.offset),
                }
        })
        .copied()
        .collect()
}

#[test]
fn full_run_passes_both_halves() {
    let Some(k) = setup("full_run_passes_both_halves") else {
        return;
    };
    let (r, serial) = boot(&k, "", None);
    assert_eq!(r.exit, ExitReason::GuestExit(0), "{serial}");
    assert!(r.host_problems.is_empty(), "{:?}", r.host_problems);
    for c in &r.case_checks {
        assert_eq!(c.result, Ok(()), "{}.{}", c.suite, c.case);
    }
    assert!(r.host_verdict_ok());

    // The guest announced every case of the catalog, skipped ones included, in order.
    let announced: Vec<_> = r.case_checks.iter().map(|c| (c.suite, c.case)).collect();
    let all: Vec<_> = catalog::SUITES
        .iter()
        .flat_map(|s| s.cases.iter().map(move |c| (s.name, c.name)))
        .collect();
    assert_eq!(announced, all);

    // The io and mmio suites ran against the device: every declared access was made, and the
    // cases that need the built-in VMM ran (they SKIP under QEMU).
    for (suite, case, steps) in testdev::DECLARED {
        let want: usize = steps.iter().map(|s| usize::from(s.times)).sum();
        let c = r.case_check(suite, case).expect("announced");
        assert_eq!(c.accesses, want, "{suite}.{case}");
        assert!(ran_ok(&serial, suite, case), "{suite}.{case}\n{serial}");
    }
    assert!(ran_ok(&serial, "io", "host_values"), "{serial}");
    assert!(ran_ok(&serial, "mmio", "host_values"), "{serial}");

    // The log holds the suites' accesses, tagged with their cases.
    let io_u32 = testdev::id_of_case("io", "u32_roundtrip").unwrap();
    let mmio_u64 = testdev::id_of_case("mmio", "u64_roundtrip").unwrap();
    let data_writes = r
        .testdev_log
        .iter()
        .filter(|a| {
            a.case == io_u32
                && a.space == Space::Pio
                && a.offset == u64::from(pio::DATA)
                && a.dir == Direction::Write
        })
        .count();
    assert_eq!(data_writes, 4);
    let scratch: Vec<_> = r
        .testdev_log
        .iter()
        .filter(|a| a.case == mmio_u64 && a.space == Space::Mmio && a.offset >= mmio::SCRATCH)
        .collect();
    assert_eq!(scratch.len(), 6);
    for pair in scratch.chunks(2) {
        assert_eq!(
            (pair[0].dir, pair[1].dir, pair[0].size),
            (Direction::Write, Direction::Read, 8)
        );
        assert_eq!(pair[0].data, pair[1].data, "read back what was written");
    }
    // The boot-time probe (outside any case): ID, MMIO ID, SEED.
    let probe: Vec<_> = r.testdev_log.iter().take_while(|a| a.case == 0).collect();
    assert!(
        probe
            .iter()
            .any(|a| a.space == Space::Mmio && a.offset == mmio::SEED && a.data == r.seed),
        "{probe:#x?}"
    );
    // Each VALUE read answered the run's host value.
    let values = value_reads(&r);
    assert_eq!(values.len(), 7);
    for a in values {
        let w = Width::from_bytes(u64::from(a.size)).unwrap();
        assert_eq!(a.data, testdev::host_value(r.seed, a.space, a.offset, w));
    }

    // The RIP of a read is the accessing instruction; a write is completed before its exit
    // on this KVM, so its RIP is the next instruction (checked both ways, as KVMs differ: see
    // `TestdevAccess::rip`).
    let elf = std::fs::read(&k).unwrap();
    let (mut writes_at, mut writes_after) = (0, 0);
    for a in &r.testdev_log {
        let code = elf_bytes_at(&elf, a.rip, 4)
            .unwrap_or_else(|| panic!("rip {:#x} is outside the kernel image: {a:?}", a.rip));
        match a.dir {
            Direction::Read => assert!(
                is_access_insn(code, a.space),
                "rip {:#x}: {code:02x?} is not a {:?} read ({a:?})",
                a.rip,
                a.space
            ),
            Direction::Write if store_ends_at(&elf, a.rip, a.space) => writes_after += 1,
            Direction::Write if is_access_insn(code, a.space) => writes_at += 1,
            Direction::Write => panic!("rip {:#x}: no {:?} store at or before it", a.rip, a.space),
        }
    }
    eprintln!("write RIPs: {writes_after} after the store, {writes_at} at an access instruction");
    assert_eq!(r.testdev_log_dropped, 0);
    assert!(r.bench.is_empty());
    eprintln!(
        "full run with the device: setup {:?}, start->verdict {:?}, {} device accesses, {} case \
         checks, {:?}",
        r.setup,
        r.wall,
        r.testdev_log.len(),
        r.case_checks.len(),
        r.stats
    );
}

#[test]
fn undeclared_access_fails_the_host_check_only() {
    let Some(k) = setup("undeclared_access_fails_the_host_check_only") else {
        return;
    };
    let (r, serial) = boot(
        &k,
        "cvmprobe.inject=undeclared-access@io.u32_roundtrip",
        None,
    );
    // The guest cannot tell: its own half passes.
    assert_eq!(r.exit, ExitReason::GuestExit(0), "{serial}");
    assert!(ran_ok(&serial, "io", "u32_roundtrip"), "{serial}");
    // The host can.
    let c = r.case_check("io", "u32_roundtrip").unwrap();
    let e = c.result.as_ref().expect_err("the host check must fail");
    assert!(
        e.starts_with("undeclared access: a 4-byte read of PIO+0xc (VALUE) at rip 0x"),
        "{e}"
    );
    assert_eq!(c.accesses, 9);
    for c in &r.case_checks {
        if (c.suite, c.case) != ("io", "u32_roundtrip") {
            assert_eq!(c.result, Ok(()), "{}.{}", c.suite, c.case);
        }
    }
    assert!(r.host_problems.is_empty(), "{:?}", r.host_problems);
    assert!(!r.host_verdict_ok());
    // The message names the RIP of the injected read, which the log has too.
    let id = testdev::id_of_case("io", "u32_roundtrip").unwrap();
    let first = r.testdev_log.iter().find(|a| a.case == id).unwrap();
    assert_eq!(first.offset, u64::from(pio::VALUE));
    assert!(e.contains(&format!("at rip {:#x}", first.rip)), "{e}");
}

#[test]
fn host_values_follow_the_seed() {
    let Some(k) = setup("host_values_follow_the_seed") else {
        return;
    };
    let only = "cvmprobe.filter=io.host_values,mmio.host_values";
    let mut answers = Vec::new();
    for seed in [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210] {
        let (r, serial) = boot(&k, only, Some(seed));
        assert_eq!(r.exit, ExitReason::GuestExit(0), "{serial}");
        assert_eq!(r.seed, seed);
        assert!(ran_ok(&serial, "io", "host_values"), "{serial}");
        assert!(ran_ok(&serial, "mmio", "host_values"), "{serial}");
        assert!(
            r.host_verdict_ok(),
            "{:?} {:?}",
            r.case_checks,
            r.host_problems
        );
        assert_eq!(
            r.case_checks.len(),
            2,
            "only the selected cases are announced"
        );
        let values = value_reads(&r);
        assert_eq!(values.len(), 7);
        for a in &values {
            let w = Width::from_bytes(u64::from(a.size)).unwrap();
            assert_eq!(a.data, testdev::host_value(seed, a.space, a.offset, w));
        }
        answers.push(values.iter().map(|a| a.data).collect::<Vec<_>>());
    }
    // Different seeds, different answers (a guest that hard-coded them would fail one run).
    assert_eq!(answers[0].len(), answers[1].len());
    for (a, b) in answers[0].iter().zip(&answers[1]) {
        assert_ne!(a, b);
    }
    // Without a fixed seed, each run picks its own.
    let (a, _) = boot(&k, "cvmprobe.mode=empty", None);
    let (b, _) = boot(&k, "cvmprobe.mode=empty", None);
    assert_ne!(a.seed, b.seed);
}

#[test]
fn bench_markers_time_each_loop() {
    let Some(k) = setup("bench_markers_time_each_loop") else {
        return;
    };
    let (r, serial) = boot(&k, "cvmprobe.mode=bench", None);
    assert_eq!(r.exit, ExitReason::GuestExit(0), "{serial}");
    assert!(r.host_problems.is_empty(), "{:?}", r.host_problems);
    assert!(r.case_checks.is_empty());
    let ids: Vec<_> = r.bench.iter().map(|b| b.id).collect();
    // On a legacy VM the raw port-IO floor runs; the trap floor is the confidential
    // platforms' (tests/platforms.rs).
    let legacy: Vec<_> = BenchId::ALL
        .into_iter()
        .filter(|&b| b != BenchId::TrapFloor)
        .collect();
    assert_eq!(ids, legacy);
    // The guest's loop count, from its own report line.
    let n: u64 = serial
        .lines()
        .find_map(|l| l.strip_prefix("# bench empty_loop n="))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("bench line");
    for b in &r.bench {
        let want = if b.id == BenchId::EmptyLoop { 0 } else { n };
        assert_eq!(b.exits, want, "{b:?}");
        assert!(b.wall > Duration::ZERO);
    }
    let khz = r.tsc_khz.expect("KVM_GET_TSC_KHZ");
    assert!((100_000..20_000_000).contains(&khz), "{khz} kHz");
    for b in &r.bench {
        let per_exit = (b.exits > 0).then(|| b.wall / b.exits as u32);
        eprintln!(
            "bench {:<15} host wall {:>10.3?}  exits {:>5}  per exit {:?}",
            b.id.name(),
            b.wall,
            b.exits,
            per_exit
        );
    }
    eprintln!("TSC {khz} kHz, run {:?}, {:?}", r.wall, r.stats);
}
