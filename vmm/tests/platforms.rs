//! The real guest on the simulated TDX and SEV-ES platforms: it must pass there with the host
//! checks, reach its host only through the platform's trap (no raw port IO), and the sims
//! must catch a broken backend (KVM's status) and a raw intercepted instruction (the RIP).
//!
//! Needs `/dev/kvm` and the kernel ELF (see `tests/common`); `CVMPROBE_NO_KVM=1` skips.

use object::{Object, ObjectSymbol};
use protocol::platform::PlatformKind;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vmm::sim::address::AddressWidth;
use vmm::{ExitReason, RunReport, VmConfig};

mod common;

const SIMULATED: [PlatformKind; 2] = [PlatformKind::Tdx, PlatformKind::SevEs];

fn setup(test: &str) -> Option<PathBuf> {
    common::kvm_or_skip(test).then(|| common::kernel(test))
}

fn boot(kernel: &Path, platform: PlatformKind, cmdline: &str) -> (RunReport, String) {
    boot_at(kernel, platform, cmdline, None)
}

/// [`boot`] on a vCPU of `phys_bits` physical-address bits (`None`: the host's).
fn boot_at(
    kernel: &Path,
    platform: PlatformKind,
    cmdline: &str,
    phys_bits: Option<u8>,
) -> (RunReport, String) {
    boot_with(kernel, platform, cmdline, |cfg| cfg.phys_bits = phys_bits)
}

/// [`boot`] with `tweak` applied to the configuration last.
fn boot_with(
    kernel: &Path,
    platform: PlatformKind,
    cmdline: &str,
    tweak: impl FnOnce(&mut VmConfig),
) -> (RunReport, String) {
    let mut cfg = VmConfig::new(kernel);
    cfg.platform = platform;
    cfg.cmdline = format!("cvmprobe.platform={} {cmdline}", platform.name());
    cfg.timeout = Duration::from_secs(30);
    tweak(&mut cfg);
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
        // The host's own width decides the bits (47 on a 48-bit host, 45 on a 46-bit one).
        let w = AddressWidth::new(r.phys_bits).expect("a supported width");
        match platform {
            PlatformKind::Tdx => {
                // Raw MSR exits: the PVH entry's EFER read and write, and the x2APIC EOIs the
                // CPU virtualises (no TDVMCALL for those); no MMIO for the APIC.
                assert!(r.stats.msr >= 2 + 4, "{name}: {:?}", r.stats);
                let want = format!("tdx gpaw={} shared_bit={}", w.tdx_gpaw(), w.tdx_gpaw() - 1);
                assert!(line.contains(&want), "{name}: {line}");
            }
            PlatformKind::SevEs => {
                assert!(r.stats.msr > 0, "{name}: {:?}", r.stats);
                let want = format!("sev-es cbit={}", w.sev_cbit());
                assert!(line.contains(&want), "{name}: {line}");
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
fn raw_port_io_raises_what_hardware_raises_and_fails_the_host_verdict() {
    let Some(kernel) = setup("raw_port_io_raises_what_hardware_raises_and_fails_the_host_verdict")
    else {
        return;
    };
    let (start, end) = function_range(&kernel, &["platform::legacy::pio_read"]);
    for (platform, exception) in [
        (
            PlatformKind::Tdx,
            "#VE: #VE for an exit reason other than EPT violation (0x1e)",
        ),
        (
            PlatformKind::SevEs,
            "#VC: #VC for an exit code other than NPF (0x7b)",
        ),
    ] {
        let name = vmm::sim_name(platform);
        let (r, serial) = boot(&kernel, platform, "cvmprobe.inject=raw-port-io@io.u8_lanes");
        // The guest took the #VE/#VC (exit reason 30 / error code 0x7b), refused it four
        // times and bailed out through its backend.
        assert_eq!(
            r.exit,
            ExitReason::GuestExit(protocol::exit::EXIT_BAIL),
            "{name}\n{serial}"
        );
        assert!(serial.contains(exception), "{name}: {exception}\n{serial}");
        // One host finding names the instruction.
        let found: Vec<&String> = r
            .host_problems
            .iter()
            .filter(|p| p.starts_with("raw IN from port 0xf00 (1 byte) under "))
            .collect();
        assert_eq!(found.len(), 1, "{name}: {:?}", r.host_problems);
        let rip = found[0]
            .split("at RIP ")
            .nth(1)
            .and_then(|t| t.split(':').next())
            .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
            .unwrap_or_else(|| panic!("{name}: no RIP in {}", found[0]));
        assert!(
            (start..end).contains(&rip),
            "{name}: RIP {rip:#x} is the legacy backend's IN ({start:#x}..{end:#x})"
        );
        assert!(found[0].contains(name), "{}", found[0]);
        assert!(!r.host_verdict_ok(), "{name}");
        // The cases before it ran and reported.
        assert!(serial.contains("ok 1 u32_roundtrip"), "{name}\n{serial}");
    }
}

/// What detection did before it asked CPUID first: RDMSR of SEV_STATUS under the fault
/// fixup. In a TD that is a #VE (the TDX module's answer for an MSR outside its bitmap); the
/// fixup reads its information with TDG.VP.VEINFO.GET and the run goes on. Without that
/// call the information stays valid and the next #VE (the memslot suite's first access) is
/// a #DF, as the TDX module delivers it. On SEV-ES the read is not intercepted.
#[test]
fn a_ve_swallowed_by_a_fixup_must_be_read_or_the_next_is_a_double_fault() {
    let Some(kernel) =
        setup("a_ve_swallowed_by_a_fixup_must_be_read_or_the_next_is_a_double_fault")
    else {
        return;
    };
    for platform in SIMULATED {
        let name = vmm::sim_name(platform);
        let (r, serial) = boot(
            &kernel,
            platform,
            "cvmprobe.filter=platform,memslot cvmprobe.inject=sev-status-probe@memslot.load_u8",
        );
        assert_eq!(r.exit, ExitReason::GuestExit(0), "{name}\n{serial}");
        assert!(r.host_verdict_ok(), "{name}: {:?}", r.host_problems);
    }
    let (r, serial) = boot(
        &kernel,
        PlatformKind::Tdx,
        "cvmprobe.filter=platform,memslot cvmprobe.inject=ve-fixup-skips-veinfo@memslot.load_u8",
    );
    assert_eq!(
        r.exit,
        ExitReason::GuestExit(protocol::exit::EXIT_BAIL),
        "{serial}"
    );
    assert!(
        serial.contains("unexpected exception #DF (vector 8)"),
        "the first memslot #VE after the unread one is a #DF\n{serial}"
    );
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
            // sev.c sev_handle_vmgexit(): an exit code it does not know (the dispatch's default).
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

/// The widths every machine tests, whatever its own: a laptop's 39 bits, the 46 of many Intel
/// servers, 48 (AMD EPYC, other Intel servers). A host narrower than one of them skips it,
/// saying so; the host's own width runs in the tests above.
const WIDTHS: [u8; 3] = [39, 46, 48];

/// The `# platform:` line and the non-architectural note a sim on `w` must make the guest
/// print.
fn expected_lines(platform: PlatformKind, w: AddressWidth) -> (String, Option<String>) {
    match platform {
        PlatformKind::Tdx => (
            format!(
                "# platform: tdx gpaw={} shared_bit={}",
                w.tdx_gpaw(),
                w.tdx_gpaw() - 1
            ),
            (!w.tdx_gpaw_is_architectural()).then(|| {
                format!(
                    "# tdx-sim: GPAW {}, non-architectural (the TDX module reports 48 or 52): \
                     the host declared a simulated TDX on a vCPU with {} physical address bits",
                    w.bits(),
                    w.bits()
                )
            }),
        ),
        PlatformKind::SevEs => (
            format!("# platform: sev-es cbit={} ", w.sev_cbit()),
            (!w.sev_cbit_is_real()).then(|| {
                format!(
                    "# sev-es-sim: C-bit {} (AMD parts use 47 or 51): the host declared a \
                     simulated SEV-ES on a vCPU with {} physical address bits",
                    w.sev_cbit(),
                    w.bits()
                )
            }),
        ),
        PlatformKind::Legacy => unreachable!(),
    }
}

#[test]
fn both_sims_pass_the_full_suite_at_every_width() {
    let Some(kernel) = setup("both_sims_pass_the_full_suite_at_every_width") else {
        return;
    };
    let host = vmm::host_phys_bits().expect("KVM's supported CPUID");
    let mut counts = Vec::new();
    for bits in WIDTHS {
        if bits > host {
            eprintln!(
                "both_sims_pass_the_full_suite_at_every_width: {bits} bits skipped: this host's \
                 KVM supports {host} physical-address bits"
            );
            continue;
        }
        let w = AddressWidth::new(bits).unwrap();
        for platform in SIMULATED {
            let name = format!("{} at {bits} bits", vmm::sim_name(platform));
            let (r, serial) = boot_at(&kernel, platform, "", Some(bits));
            assert_eq!(r.exit, ExitReason::GuestExit(0), "{name}\n{serial}");
            assert!(
                r.host_verdict_ok(),
                "{name}: {:?} {:?}",
                r.case_checks,
                r.host_problems
            );
            assert_eq!(r.phys_bits, bits, "{name}");
            assert_eq!(r.width_note, w.brief(platform), "{name}");
            let (line, note) = expected_lines(platform, w);
            assert!(
                serial.lines().any(|l| l.starts_with(&line)),
                "{name}: {line}\n{serial}"
            );
            match &note {
                Some(n) => assert!(serial.lines().any(|l| l == n), "{name}: {n}\n{serial}"),
                None => assert!(
                    !serial.contains("non-architectural") && !serial.contains("AMD parts use"),
                    "{name}: a note for real values\n{serial}"
                ),
            }
            // Every memslot cycle ran, converted into #VE/#VC, with the host's count.
            let cycles = serial.lines().filter(|l| l.contains(" -> RAM")).count();
            assert_eq!(cycles, protocol::catalog::MEMSLOT.cases.len(), "{name}");
            assert_eq!(r.stats.mmio, emulated_accesses(&serial), "{name}");
            counts.push((name, ktap_results(&serial)));
        }
    }
    // The same cases ran, with the same results, at every width; and as many cases on both
    // sims.
    let total = |c: &(usize, usize)| c.0 + c.1;
    assert!(counts.len() >= 4, "39 and 46 bits run on every x86-64 host");
    for (name, c) in &counts {
        let platform = name.split(' ').next().unwrap();
        let (first_name, first) = counts
            .iter()
            .find(|(n, _)| n.split(' ').next() == Some(platform))
            .unwrap();
        assert_eq!(c, first, "{name} differs from {first_name}");
        assert_eq!(total(c), total(&counts[0].1), "{name}: case count");
    }
}

/// (ok, skipped) result lines of the run's KTAP, at every depth.
fn ktap_results(serial: &str) -> (usize, usize) {
    let results = serial
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("ok ") || l.starts_with("not ok "));
    let (mut ok, mut skip) = (0, 0);
    for l in results {
        assert!(l.starts_with("ok "), "a failed result: {l}");
        if l.contains("# SKIP") {
            skip += 1;
        } else {
            ok += 1;
        }
    }
    (ok, skip)
}

#[test]
fn a_real_td_reporting_a_narrow_gpaw_is_refused() {
    let Some(kernel) = setup("a_real_td_reporting_a_narrow_gpaw_is_refused") else {
        return;
    };
    // tdx-sim on a 46-bit vCPU reports GPAW 46; the run's own declaration is overridden by a
    // later one for another width, as if no simulated platform had been declared: the guest
    // must refuse the GPAW as a real TD's check does, at platform setup.
    for declared in ["48", "39", "none"] {
        let (r, serial) = boot_at(
            &kernel,
            PlatformKind::Tdx,
            &format!("cvmprobe.sim_phys_bits={declared}"),
            Some(46),
        );
        assert_eq!(
            r.exit,
            ExitReason::GuestExit(protocol::exit::EXIT_BAIL),
            "{declared}\n{serial}"
        );
        assert!(
            serial.contains("Bail out! the host's answers at platform setup are invalid")
                && serial.contains("TDG.VP.INFO GPAW (48 or 52)"),
            "{declared}\n{serial}"
        );
    }
}

#[test]
fn a_width_the_host_cannot_hold_is_refused_before_the_vm_runs() {
    let Some(kernel) = setup("a_width_the_host_cannot_hold_is_refused_before_the_vm_runs") else {
        return;
    };
    let host = vmm::host_phys_bits().unwrap();
    for bits in [host + 1, 35, 53] {
        let mut cfg = VmConfig::new(&kernel);
        cfg.platform = PlatformKind::Tdx;
        cfg.phys_bits = Some(bits);
        let e = vmm::run(&cfg, &mut |_| {})
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains(&format!("{bits} physical-address bits")),
            "{bits}: {e}"
        );
    }
}

/// [`boot`] with the sims playing KVM release `kvm`.
fn boot_kvm(
    kernel: &Path,
    platform: PlatformKind,
    kvm: protocol::kvm::KvmProfile,
    cmdline: &str,
) -> (RunReport, String) {
    boot_with(kernel, platform, cmdline, |cfg| cfg.kvm = kvm)
}

/// The `suite.case` names the KTAP log reports `not ok`.
fn failed_cases(serial: &str) -> Vec<String> {
    let mut suite = "";
    let mut out = Vec::new();
    for l in serial.lines() {
        let t = l.trim_start();
        if let Some(s) = t.strip_prefix("# Subtest: ") {
            suite = s;
        } else if l.starts_with("    not ok ")
            && let Some(name) = t.split_whitespace().nth(3)
        {
            out.push(format!("{suite}.{name}"));
        }
    }
    out
}

#[test]
fn sev_es_sim_answers_as_each_kvm_release_and_a_guest_told_another_fails_the_differing_rows() {
    use protocol::conformance::{CASES, Request};
    use protocol::kvm::KvmProfile::{self, Current, V6_10, V6_11};
    let Some(kernel) = setup("sev_es_sim_answers_as_each_kvm_release") else {
        return;
    };
    for kvm in [V6_10, V6_11, Current] {
        let (r, serial) = boot_kvm(
            &kernel,
            PlatformKind::SevEs,
            kvm,
            "cvmprobe.filter=ghcb_raw",
        );
        assert_eq!(
            r.exit,
            ExitReason::GuestExit(0),
            "KVM {}\n{serial}",
            kvm.name()
        );
        assert!(
            r.cmdline.contains(&format!("cvmprobe.kvm={}", kvm.name())),
            "{}",
            r.cmdline
        );
        // The era-dependent rows say which release the answer matched.
        assert!(
            serial.contains("snp_only_exit_code: kvm: answers as "),
            "KVM {}\n{serial}",
            kvm.name()
        );
        for told in KvmProfile::ALL.into_iter().filter(|&t| t != kvm) {
            let (r, serial) = boot_kvm(
                &kernel,
                PlatformKind::SevEs,
                kvm,
                &format!("cvmprobe.filter=ghcb_raw cvmprobe.kvm={}", told.name()),
            );
            let want: Vec<String> = CASES
                .iter()
                .filter(|c| {
                    c.executed() && matches!(c.request, Request::GhcbPage(_) | Request::GhcbMsr(_))
                })
                .filter(|c| c.expect_for(kvm) != c.expect_for(told))
                .map(|c| format!("ghcb_raw.{}", c.id))
                .collect();
            assert_eq!(
                failed_cases(&serial),
                want,
                "sims play {}, guest told {}\n{serial}",
                kvm.name(),
                told.name()
            );
            let want_exit = if want.is_empty() { 0 } else { 1 };
            assert_eq!(r.exit, ExitReason::GuestExit(want_exit), "{serial}");
        }
    }
}

#[test]
fn tdx_sim_plays_6_16_and_refuses_a_kvm_without_tdx() {
    let Some(kernel) = setup("tdx_sim_plays_6_16_and_refuses_a_kvm_without_tdx") else {
        return;
    };
    use protocol::kvm::KvmProfile;
    // No conformance row of TDX differs between 6.16 and current (MapGPA's EAGAIN needs a VMM
    // that fails the conversion): the guest told either passes.
    for told in [KvmProfile::V6_16, KvmProfile::Current] {
        let (r, serial) = boot_kvm(
            &kernel,
            PlatformKind::Tdx,
            KvmProfile::V6_16,
            &format!("cvmprobe.filter=ghci_raw cvmprobe.kvm={}", told.name()),
        );
        assert_eq!(
            r.exit,
            ExitReason::GuestExit(0),
            "told {}\n{serial}",
            told.name()
        );
    }
    let mut cfg = VmConfig::new(&kernel);
    cfg.platform = PlatformKind::Tdx;
    cfg.kvm = KvmProfile::V6_11;
    let e = vmm::run(&cfg, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("no TDX host support"), "{e}");
}

#[test]
fn a_ghcb_mapped_private_fails_the_run_naming_it() {
    let Some(kernel) = setup("a_ghcb_mapped_private_fails_the_run_naming_it") else {
        return;
    };
    // Honest guest: the host checked the mapping and attaches its verdict to the case.
    let (r, serial) = boot(&kernel, PlatformKind::SevEs, "cvmprobe.filter=platform");
    assert_eq!(r.exit, ExitReason::GuestExit(0), "{serial}");
    let (suite, case) = protocol::ghcb::GHCB_MAPPING_CASE;
    let check = r
        .host_case_checks
        .iter()
        .find(|c| (c.suite, c.case) == (suite, case))
        .expect("the host's check of the GHCB's mapping");
    assert_eq!(check.result, Ok(()));
    assert!(r.host_verdict_ok(), "{:?}", r.host_problems);
    // The guest maps its GHCB private from that case on: the host reads ciphertext, names it,
    // and the run fails.
    let (r, serial) = boot(
        &kernel,
        PlatformKind::SevEs,
        &format!("cvmprobe.inject=ghcb-private@{suite}.{case}"),
    );
    assert_ne!(r.exit, ExitReason::GuestExit(0), "{serial}");
    assert!(!r.host_verdict_ok());
    assert!(
        r.host_problems
            .iter()
            .any(|p| p.contains("mapped private (C-bit") && p.contains(case)),
        "{:?}",
        r.host_problems
    );
    let check = r
        .host_case_checks
        .iter()
        .find(|c| (c.suite, c.case) == (suite, case))
        .unwrap();
    assert!(
        check
            .result
            .as_ref()
            .unwrap_err()
            .contains("mapped private"),
        "{check:?}"
    );
    // Only the private mapping is reported: the host saw ciphertext, not the guest's bytes.
    assert!(r.ghcb_leaks.is_empty(), "{:?}", r.ghcb_leaks);
}
