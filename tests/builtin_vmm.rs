//! The built-in KVM VMM through the CLI: the default runner, its two-sided verdict (a
//! host-side access-log mismatch fails a case the guest called `ok`), and every failure exit
//! ending in the same report as under QEMU (results kept, the rest not run with the reason,
//! the serial tail printed).

mod common;
use common::*;

/// A built-in VMM run, on the legacy platform unless `extra` names one.
fn run(extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--vmm", "builtin", "--timeout", "60s"];
    if !extra.contains(&"--platform") {
        args.extend(["--platform", "legacy"]);
    }
    args.extend_from_slice(extra);
    cvmprobe(&args)
}

#[test]
fn default_runner_is_the_builtin_vmm_and_passes() {
    if !kvm_or_skip("default_runner_is_the_builtin_vmm_and_passes") {
        return;
    }
    // `cargo run --release` with no argument: every platform this host can run, one
    // progress line each, one table, skips grouped by reason.
    let o = cvmprobe(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("under the built-in KVM VMM"), "{}", text(&o));
    for (i, p) in ["legacy", "tdx-sim", "sev-es-sim"].iter().enumerate() {
        assert!(
            err.contains(&format!("[{}/3] {p:<10}  PASS", i + 1)),
            "progress line for {p}\n{}",
            text(&o)
        );
    }
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("verdict per platform: legacy PASS, tdx-sim PASS, sev-es-sim PASS"),
        "{}",
        text(&o)
    );
    assert_eq!(
        out.matches("\nsuite ").count(),
        1,
        "one table for all platforms\n{}",
        text(&o)
    );
    // The legacy verdict comes first: under the built-in VMM the host-value and memslot
    // cases run; only the cases the catalog keeps off legacy and the edu PCI device (QEMU
    // only) skip.
    let (passed, failed, skipped, not_run, total) = verdict_counts(&o);
    assert_eq!(total, listed_cases(""), "{}", text(&o));
    assert_eq!((failed, not_run), (0, 0), "{}", text(&o));
    let not_for_legacy = protocol::catalog::planned(
        protocol::platform::PlatformKind::Legacy,
        protocol::catalog::Needs::ALL,
        protocol::catalog::Filter::ALL,
    )
    .filter(|(_, _, e)| *e == protocol::catalog::Expected::SkippedForPlatform)
    .count();
    assert_eq!(
        (passed, skipped),
        (total - not_for_legacy - 1, not_for_legacy + 1),
        "{}",
        text(&o)
    );
    // Skips: one line per reason with its count, not one per case (that is --verbose).
    assert!(!out.contains("SKIPPED "), "{}", text(&o));
    assert!(
        out.lines().any(|l| l
            .trim_start()
            .starts_with(&format!("{not_for_legacy}  not for platform legacy"))),
        "{}",
        text(&o)
    );
    // The edu skips of all three runs, on one line with their count per suite.
    let edu = protocol::catalog::Need::EduPci;
    let edu_skips: Vec<&str> = protocol::platform::PlatformKind::ALL
        .into_iter()
        .flat_map(|p| {
            let provided = cvmprobe::environment::Environment::builtin(p, vmm::Boot::Pvh).needs();
            protocol::catalog::planned(p, provided, protocol::catalog::Filter::ALL)
        })
        .filter(|(_, _, e)| {
            *e == protocol::catalog::Expected::MaySkip(protocol::catalog::Needs::of(&[edu]))
        })
        .map(|(s, _, _)| s.name)
        .collect();
    let (all, mmio) = (
        edu_skips.len(),
        edu_skips.iter().filter(|s| **s == "mmio").count(),
    );
    assert!(
        out.lines().any(|l| l
            .trim_start()
            .starts_with(&format!("{all}  {}", edu.reason()))
            && l.contains(&format!("mmio {mmio}"))),
        "{}",
        text(&o)
    );
}

#[test]
fn a_case_the_environment_runs_must_not_skip() {
    if !kvm_or_skip("a_case_the_environment_runs_must_not_skip") {
        return;
    }
    // The guest skips (or marks TODO) a case the built-in VMM provides everything for.
    let o = run(&[
        "--platform",
        "legacy",
        "--append",
        "cvmprobe.inject=skip@io.u8_lanes",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FAILED  io.u8_lanes"), "{}", text(&o));
    assert!(
        out.contains(&format!(
            "host: the host provides test-device (the built-in VMM's test device (port-IO \
             0xd100, MMIO 0xd0000000); the built-in VMM (legacy)), but the guest reported SKIP: {}",
            protocol::catalog::Need::TestDevice.reason()
        )),
        "{}",
        text(&o)
    );
    assert_eq!(verdict_counts(&o).1, 1, "{}", text(&o));
    let o = run(&[
        "--platform",
        "tdx-sim",
        "--append",
        "cvmprobe.inject=todo@cpuid.max_leaves",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FAILED  cpuid.max_leaves"), "{}", text(&o));
    assert!(
        out.contains("the guest reported not ok # TODO (injected by cvmprobe.inject=todo)"),
        "{}",
        text(&o)
    );
}

#[test]
fn kvm_skip_notices_are_visible_through_cargo_capture() {
    // Runs a KVM test in a child that cannot open its KVM device: with CVMPROBE_NO_KVM=1 it
    // passes and says so on stderr even though libtest captures the output of passing tests;
    // without it, it fails naming the device.
    let test = "default_runner_is_the_builtin_vmm_and_passes";
    let gone = ("CVMPROBE_KVM_DEVICE", "/nonexistent/kvm");
    let o = rerun_test(test, &[gone, ("CVMPROBE_NO_KVM", "1")], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains(&format!("SKIPPED {test}: /nonexistent/kvm is not usable")),
        "{}",
        text(&o)
    );
    let o = rerun_test(test, &[gone], &["CVMPROBE_NO_KVM"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("needs /nonexistent/kvm"),
        "{}",
        text(&o)
    );
}

#[test]
fn undeclared_access_fails_the_case_on_the_host_side() {
    if !kvm_or_skip("undeclared_access_fails_the_case_on_the_host_side") {
        return;
    }
    let o = run(&[
        "--append",
        "cvmprobe.inject=undeclared-access@io.u32_roundtrip",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FAILED  io.u32_roundtrip"), "{}", text(&o));
    assert!(
        out.contains("host: access log: undeclared access: a 4-byte read of PIO+0xc (VALUE)"),
        "{}",
        text(&o)
    );
    // Only that case: the guest itself said ok everywhere.
    assert_eq!(verdict_counts(&o).1, 1, "{}", text(&o));
}

fn inject(fault: &str, timeout: &str) -> std::process::Output {
    let key = format!("cvmprobe.inject={fault}@mmio.u8_roundtrip");
    cvmprobe(&[
        "run",
        "--vmm",
        "builtin",
        "--platform",
        "legacy",
        "--timeout",
        timeout,
        "--append",
        &key,
    ])
}

#[test]
fn panic_exception_triple_fault_emulation_failure_hang() {
    if !kvm_or_skip("panic_exception_triple_fault_emulation_failure_hang") {
        return;
    }
    assert_fault_report(
        &inject("panic", "60s"),
        "the guest bailed out: panic: injected",
    );
    assert_fault_report(
        &inject("exception", "60s"),
        "unexpected exception #UD (vector 6)",
    );
    assert_fault_report(
        &inject("triple-fault", "60s"),
        "triple fault (KVM_EXIT_SHUTDOWN) at RIP 0xffffffff80",
    );
    assert_fault_report(
        &inject("emulation-failure", "60s"),
        "KVM internal error, suberror 1 (emulation failure), at RIP 0xffffffff80",
    );
    let t = std::time::Instant::now();
    assert_fault_report(
        &inject("hang", "2s"),
        "hang: no verdict within the 2.0 s timeout (vCPU stopped at RIP 0xffffffff80",
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn qemu_options_conflict_with_builtin() {
    let o = run(&["--machine", "pc"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("are QEMU options"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_access_log_compares_the_data_both_ways() {
    if !kvm_or_skip("the_access_log_compares_the_data_both_ways") {
        return;
    }
    // The case's first device write leaves the guest with bit 0 flipped while the case
    // reports the value it meant: the host finds the access and both values.
    for (platform, case, access) in [
        (
            "legacy",
            "io.u32_roundtrip",
            "a 4-byte write of PIO+0x4 (DATA)",
        ),
        (
            "tdx-sim",
            "mmio.u8_roundtrip",
            "a 1-byte write of MMIO+0x1010 (SCRATCH+0x10)",
        ),
    ] {
        let key = format!("cvmprobe.inject=corrupt-data@{case}");
        let o = run(&["--platform", platform, "--append", &key]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        let line = out
            .lines()
            .find(|l| l.contains("host: access log: data: access 1 ("))
            .unwrap_or_else(|| panic!("{platform}: no data finding\n{}", text(&o)));
        assert!(line.contains(access), "{line}");
        let (device, guest) = line
            .split_once("the device received ")
            .and_then(|(_, r)| r.split_once(", the guest says it wrote "))
            .unwrap_or_else(|| panic!("{line}"));
        let parse = |s: &str| u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).unwrap();
        assert_eq!(parse(device) ^ parse(guest), 1, "{line}");
    }
}
