//! Boots the real guest kernel on the built-in VMM (needs `/dev/kvm` and the kernel ELF).
//!
//! The kernel comes from `CVMPROBE_KERNEL_ELF`, else from the root build's output
//! (`cargo build` at the workspace root). Without `/dev/kvm` these tests fail and say why,
//! unless `CVMPROBE_NO_KVM=1`, which turns them into skips.

use std::path::PathBuf;
use std::time::Duration;
use vmm::{ExitReason, RunReport, VmConfig};

mod common;

/// The kernel to boot, or `None` when the test is skipped (no KVM, and skipping allowed).
fn setup(test: &str) -> Option<PathBuf> {
    common::kvm_or_skip(test).then(|| common::kernel(test))
}

fn boot(kernel: PathBuf, cmdline: &str, timeout: Duration) -> (RunReport, String) {
    let mut cfg = VmConfig::new(kernel);
    cfg.cmdline = cmdline.to_owned();
    cfg.timeout = timeout;
    let mut live = Vec::new();
    let report = vmm::run(&cfg, &mut |b| live.extend_from_slice(b)).expect("VMM setup");
    assert_eq!(
        live, report.serial,
        "the sink saw every serial byte, in order"
    );
    let serial = String::from_utf8_lossy(&report.serial).into_owned();
    (report, serial)
}

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn full_run_passes() {
    let Some(k) = setup("full_run_passes") else {
        return;
    };
    let (r, serial) = boot(k, "", RUN_TIMEOUT);
    assert_eq!(r.exit, ExitReason::GuestExit(0), "{serial}");
    assert!(serial.contains("KTAP version 1"), "{serial}");
    assert!(!serial.contains("not ok"), "{serial}");
    // The brand string and the APIC timer went through the VMM, not around it.
    assert!(
        serial.lines().any(|l| l.trim_start().starts_with("ok")
            && l.contains("brand_string")
            && !l.contains("SKIP")),
        "{serial}"
    );
    assert!(
        serial
            .lines()
            .any(|l| l.contains("timer_wakeup") && !l.contains("SKIP")),
        "{serial}"
    );
    assert!(
        r.stats.hlt >= 4 && r.stats.irqs_injected >= 4,
        "{:?}",
        r.stats
    );
    assert!(r.stats.io > 0 && r.stats.mmio > 0, "{:?}", r.stats);
    assert!(
        r.cmdline
            .contains(&format!("cvmprobe.brand={}", r.brand.replace(' ', "_")))
    );
    eprintln!(
        "full run: setup {:?}, start->verdict {:?}, {:?}",
        r.setup, r.wall, r.stats
    );
}

#[test]
fn empty_mode_passes() {
    let Some(k) = setup("empty_mode_passes") else {
        return;
    };
    let (r, serial) = boot(k, "cvmprobe.mode=empty", RUN_TIMEOUT);
    assert_eq!(r.exit, ExitReason::GuestExit(0), "{serial}");
    assert!(serial.contains("KTAP version 1"), "{serial}");
    eprintln!(
        "empty run: setup {:?}, start->verdict {:?}, {:?}",
        r.setup, r.wall, r.stats
    );
}

#[test]
fn injected_panic_bails_out() {
    let Some(k) = setup("injected_panic_bails_out") else {
        return;
    };
    let (r, serial) = boot(k, "cvmprobe.inject=panic", RUN_TIMEOUT);
    assert_eq!(r.exit, ExitReason::GuestExit(2), "{serial}");
    assert!(serial.contains("Bail out!"), "{serial}");
}

#[test]
fn injected_exception_bails_out() {
    let Some(k) = setup("injected_exception_bails_out") else {
        return;
    };
    let (r, serial) = boot(k, "cvmprobe.inject=exception", RUN_TIMEOUT);
    assert_eq!(r.exit, ExitReason::GuestExit(2), "{serial}");
    assert!(
        serial.contains("Bail out! unexpected exception"),
        "{serial}"
    );
}

#[test]
fn injected_triple_fault_is_a_shutdown() {
    let Some(k) = setup("injected_triple_fault_is_a_shutdown") else {
        return;
    };
    let (r, serial) = boot(k, "cvmprobe.inject=triple-fault", RUN_TIMEOUT);
    let ExitReason::Shutdown { rip } = r.exit else {
        panic!("expected a triple fault, got {}\n{serial}", r.exit);
    };
    assert!(rip >= 0x10_0000, "RIP {rip:#x} inside the kernel image");
}

#[test]
fn injected_hang_times_out() {
    let Some(k) = setup("injected_hang_times_out") else {
        return;
    };
    let timeout = Duration::from_secs(2);
    let (r, serial) = boot(k, "cvmprobe.inject=hang", timeout);
    let ExitReason::Timeout { rip } = r.exit else {
        panic!("expected a timeout, got {}\n{serial}", r.exit);
    };
    assert!(rip >= 0x10_0000, "RIP {rip:#x} inside the kernel image");
    assert!(r.wall >= timeout, "{:?}", r.wall);
    assert!(
        r.wall < timeout + Duration::from_secs(1),
        "kick too slow: {:?}",
        r.wall
    );
}

#[test]
fn missing_kernel_is_a_setup_error() {
    let Some(_) = setup("missing_kernel_is_a_setup_error") else {
        return;
    };
    let cfg = VmConfig::new("/nonexistent/cvmprobe-kernel");
    let e = vmm::run(&cfg, &mut |_| {}).unwrap_err();
    assert!(matches!(e, vmm::VmmError::KernelOpen { .. }), "{e}");
    assert!(
        e.to_string().contains("/nonexistent/cvmprobe-kernel"),
        "{e}"
    );
}

#[test]
fn kvm_skip_notices_are_visible_through_cargo_capture() {
    // A KVM test in a child that cannot open its KVM device: with CVMPROBE_NO_KVM=1 it passes
    // and says so on stderr although libtest captures a passing test's output; without it,
    // it fails saying KVM is needed.
    let test = "empty_mode_passes";
    let gone = (common::KVM_DEVICE_ENV, "/nonexistent/kvm");
    let o = common::rerun_test(test, &[gone, (common::NO_KVM_ENV, "1")], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("SKIPPED {test}: cannot open /nonexistent/kvm")),
        "{err}"
    );
    let o = common::rerun_test(test, &[gone], &[common::NO_KVM_ENV]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("KVM is needed"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
