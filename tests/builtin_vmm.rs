//! The built-in KVM VMM through the CLI: the default runner, its two-sided verdict (a
//! host-side access-log mismatch fails a case the guest called `ok`), and every failure exit
//! ending in the same report as under QEMU (results kept, the rest not run with the reason,
//! the serial tail printed).

mod common;
use common::*;

fn run(extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--vmm", "builtin", "--timeout", "60s"];
    args.extend_from_slice(extra);
    cvmprobe(&args)
}

#[test]
fn default_runner_is_the_builtin_vmm_and_passes() {
    if !kvm_or_skip("default_runner_is_the_builtin_vmm_and_passes") {
        return;
    }
    let o = cvmprobe(&["run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("under the built-in KVM VMM"), "{}", text(&o));
    let (passed, failed, skipped, not_run, total) = verdict_counts(&o);
    assert_eq!(total, listed_cases(""), "{}", text(&o));
    assert_eq!((failed, not_run), (0, 0), "{}", text(&o));
    // Under the built-in VMM the host-value cases run; only the cases the catalog keeps off
    // legacy and the edu PCI device (QEMU only) skip.
    let not_for_legacy = protocol::catalog::planned(
        protocol::platform::PlatformKind::Legacy,
        protocol::catalog::Filter::ALL,
    )
    .filter(|(_, _, e)| *e == protocol::catalog::Expected::SkippedForPlatform)
    .count();
    assert_eq!(skipped, not_for_legacy + 1, "{}", text(&o));
    assert_eq!(passed + skipped, total);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("SKIPPED io.host_values"), "{}", text(&o));
    assert!(!out.contains("SKIPPED mmio.host_values"), "{}", text(&o));
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
