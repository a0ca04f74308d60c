//! The real guest on the simulated TDX and SEV-ES platforms: it must pass there with the host
//! checks, reach its host only through the platform's trap (no raw port IO), and the sims
//! must catch a broken backend (KVM's status) and a raw intercepted instruction (the RIP).
//!
//! Needs `/dev/kvm` and the kernel ELF (see `tests/common`); `CVMPROBE_NO_KVM=1` skips.

use object::{Object, ObjectSymbol};
use protocol::platform::PlatformKind;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vmm::{ExitReason, RunReport, VmConfig};

mod common;

const SIMULATED: [PlatformKind; 2] = [PlatformKind::Tdx, PlatformKind::SevEs];

fn setup(test: &str) -> Option<PathBuf> {
    common::kvm_or_skip(test).then(|| common::kernel(test))
}

fn boot(kernel: &Path, platform: PlatformKind, cmdline: &str) -> (RunReport, String) {
    let mut cfg = VmConfig::new(kernel);
    cfg.platform = platform;
    cfg.cmdline = format!("cvmprobe.platform={} {cmdline}", platform.name());
    cfg.timeout = Duration::from_secs(30);
    let report = vmm::run(&cfg, &mut |_| {}).expect("VMM setup");
    let serial = String::from_utf8_lossy(&report.serial).into_owned();
    (report, serial)
}

/// The `# platform: ...` diagnostic the guest prints after detection.
fn platform_line(serial: &str) -> &str {
    serial
        .lines()
        .find(|l| l.starts_with(protocol::ktap::PLATFORM_DIAG))
        .unwrap_or_else(|| panic!("no platform line\n{serial}"))
}

#[test]
fn full_run_passes_on_each_simulated_platform() {
    let Some(kernel) = setup("full_run_passes_on_each_simulated_platform") else {
        return;
    };
    for platform in SIMULATED {
        let (r, serial) = boot(&kernel, platform, "");
        let name = vmm::sim_name(platform);
        assert_eq!(r.exit, ExitReason::GuestExit(0), "{name}\n{serial}");
        assert!(
            r.host_verdict_ok(),
            "{name}: {:?} {:?}",
            r.case_checks,
            r.host_problems
        );
        // Every case announced itself and was checked on the host side (skipped ones too),
        // and every case that declares device accesses made exactly those, through the
        // simulated host.
        let cases: usize = protocol::catalog::SUITES
            .iter()
            .map(|s| s.cases.len())
            .sum();
        assert_eq!(r.case_checks.len(), cases, "{name}");
        for (suite, case, steps) in protocol::testdev::DECLARED {
            let declared: usize = steps.iter().map(|s| usize::from(s.times)).sum();
            let check = r
                .case_check(suite, case)
                .unwrap_or_else(|| panic!("{name}: {suite}.{case} was never announced"));
            assert_eq!(check.accesses, declared, "{name}: {suite}.{case}");
            // ... and reported the value of each, which the device compared.
            assert_eq!(check.reported, declared, "{name}: {suite}.{case}");
            assert_eq!(check.result, Ok(()), "{name}: {suite}.{case}");
        }
        // The guest reached its host only through the trap (and, for SEV-ES, the two
        // filtered MSRs): no raw port-IO exit and no coalesced serial byte. Its only MMIO
        // exits are the memslot suite's, each turned into a #VE/#VC (a raw one elsewhere
        // would have ended the run); the memslot device's count agreed with the guest's.
        assert_eq!(r.stats.io, 0, "{name}: {:?}", r.stats);
        let emulated = emulated_accesses(&serial);
        assert!(emulated >= 14, "{name}: {emulated}\n{serial}");
        assert_eq!(r.stats.mmio, emulated, "{name}: {:?}", r.stats);
        assert_eq!(r.stats.coalesced, 0, "{name}");
        assert!(r.stats.debug > 100, "{name}: {:?}", r.stats);
        let line = platform_line(&serial);
        match platform {
            PlatformKind::Tdx => {
                assert_eq!(r.stats.msr, 0, "{name}: {:?}", r.stats);
                assert!(line.contains("tdx gpaw=48 shared_bit=47"), "{name}: {line}");
            }
            PlatformKind::SevEs => {
                assert!(r.stats.msr > 0, "{name}: {:?}", r.stats);
                assert!(line.contains("sev-es cbit=47"), "{name}: {line}");
                // HLT is an automatic exit under SEV-ES: the halt suite uses plain HLT.
                assert!(r.stats.hlt >= 4, "{name}: {:?}", r.stats);
                // Every GHCB reached the host with nothing but the fields sent.
                assert!(r.ghcb_leaks.is_empty(), "{name}: {:?}", r.ghcb_leaks);
            }
            PlatformKind::Legacy => unreachable!(),
        }
        assert!(r.lies.is_none(), "{name}: an honest host keeps no lie log");
    }
}

#[test]
fn a_ghcb_left_dirty_is_reported_as_a_leak() {
    let Some(kernel) = setup("a_ghcb_left_dirty_is_reported_as_a_leak") else {
        return;
    };
    // The guest clears only the valid bitmap: the values of earlier requests stay in the
    // page, and the host sees them outside the fields a request sends.
    let (r, serial) = boot(
        &kernel,
        PlatformKind::SevEs,
        "cvmprobe.inject=ghcb-not-zeroed cvmprobe.filter=platform,io,cpuid",
    );
    assert_eq!(r.exit, ExitReason::GuestExit(0), "{serial}");
    assert!(!r.ghcb_leaks.is_empty(), "no leak reported\n{serial}");
    assert!(
        r.ghcb_leaks
            .iter()
            .all(|l| l.contains("outside the fields the request sent") || l.starts_with("(more")),
        "{:?}",
        r.ghcb_leaks
    );
    // The fault starts at the second suite's first case (io): the first suite's requests
    // were clean.
    assert!(
        r.ghcb_leaks.iter().all(|l| !l.contains("(platform.")),
        "{:?}",
        r.ghcb_leaks
    );
}

/// The sum of the memslot cases' `emulated xN` counts.
fn emulated_accesses(serial: &str) -> u64 {
    serial
        .lines()
        .filter_map(|l| l.split(" -> emulated x").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The `(start, end)` of the kernel function whose demangled name contains every one of
/// `parts`.
fn function_range(kernel: &Path, parts: &[&str]) -> (u64, u64) {
    let bytes = std::fs::read(kernel).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    let found: Vec<(u64, u64)> = file
        .symbols()
        .filter(|s| s.size() > 0)
        .filter(|s| {
            let name = format!("{:#}", rustc_demangle::demangle(s.name().unwrap_or("")));
            parts.iter().all(|p| name.contains(p))
        })
        .map(|s| (s.address(), s.address() + s.size()))
        .collect();
    assert!(!found.is_empty(), "no function named with {parts:?}");
    (
        found.iter().map(|r| r.0).min().unwrap(),
        found.iter().map(|r| r.1).max().unwrap(),
    )
}

#[test]
fn raw_port_io_ends_the_run_at_its_rip() {
    let Some(kernel) = setup("raw_port_io_ends_the_run_at_its_rip") else {
        return;
    };
    let (start, end) = function_range(&kernel, &["platform::legacy::pio_read"]);
    for platform in SIMULATED {
        let name = vmm::sim_name(platform);
        let (r, serial) = boot(&kernel, platform, "cvmprobe.inject=raw-port-io@io.u8_lanes");
        let ExitReason::RawInterception {
            platform: p,
            what,
            rip,
        } = &r.exit
        else {
            panic!("{name}: {:?}\n{serial}", r.exit);
        };
        assert_eq!(*p, name);
        assert!(what.contains("IN from port 0xf00"), "{what}");
        assert!(
            (start..end).contains(rip),
            "{name}: RIP {rip:#x} is the legacy backend's IN ({start:#x}..{end:#x})"
        );
        // The cases before it ran and reported.
        assert!(serial.contains("ok 1 u32_roundtrip"), "{name}\n{serial}");
    }
}

#[test]
fn memslot_cycles_on_every_platform() {
    let Some(kernel) = setup("memslot_cycles_on_every_platform") else {
        return;
    };
    for platform in PlatformKind::ALL {
        let name = vmm::sim_name(platform);
        let (r, serial) = boot(&kernel, platform, "cvmprobe.filter=memslot");
        assert_eq!(r.exit, ExitReason::GuestExit(0), "{name}\n{serial}");
        assert!(r.host_problems.is_empty(), "{name}: {:?}", r.host_problems);
        let cycles = serial.lines().filter(|l| l.contains(" -> RAM")).count();
        assert_eq!(
            cycles,
            protocol::catalog::MEMSLOT.cases.len(),
            "{name}\n{serial}"
        );
        // Legacy: every emulated access is a plain MMIO exit served by the device (besides
        // the test-device probe's). TDX / SEV-ES: every raw MMIO exit is one turned into
        // #VE/#VC (the access re-issued through the backend, counted once by the device: the
        // REPORT check passed).
        let emulated = emulated_accesses(&serial);
        if platform == PlatformKind::Legacy {
            assert!(r.stats.mmio >= emulated, "{name}: {:?}", r.stats);
        } else {
            assert_eq!(r.stats.mmio, emulated, "{name}: {:?}", r.stats);
            assert!(
                r.stats.debug > r.stats.mmio,
                "{name}: stepped: {:?}",
                r.stats
            );
        }
    }
}

#[test]
fn broken_backend_is_refused_with_kvms_status() {
    let Some(kernel) = setup("broken_backend_is_refused_with_kvms_status") else {
        return;
    };
    for (platform, status) in [
        (
            PlatformKind::Tdx,
            // tdx.c handle_tdvmcall(): an unknown sub-function.
            format!(
                "TDVMCALL IO read refused with status {:#x}",
                protocol::tdx::status::SUBFUNC_UNSUPPORTED
            ),
        ),
        (
            PlatformKind::SevEs,
            // sev.c sev_es_validate_vmgexit(): an exit code it does not know.
            format!(
                "GHCB IOIO read refused with status {:#x}",
                protocol::ghcb::error::INVALID_EVENT
            ),
        ),
    ] {
        let name = vmm::sim_name(platform);
        let (r, serial) = boot(
            &kernel,
            platform,
            "cvmprobe.inject=broken-backend@io.u32_roundtrip",
        );
        assert_eq!(r.exit, ExitReason::GuestExit(1), "{name}\n{serial}");
        assert!(serial.contains(&status), "{name}: `{status}`\n{serial}");
        assert!(
            serial.contains("not ok 1 u32_roundtrip"),
            "{name}\n{serial}"
        );
        // Writes still work: the MMIO suite after it passes.
        assert!(serial.contains("ok 1 u8_roundtrip"), "{name}\n{serial}");
    }
}
