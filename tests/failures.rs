//! Failure handling: guest panic, unexpected exception, triple fault, hang past --timeout, a
//! missing QEMU, bad flags and unreadable KTAP. Each failure keeps every result the guest
//! reported before it, lists the others as not run with the reason, and prints the serial tail.

mod common;
use common::*;

/// Runs with a fault injected at the first case of `mmio` (so the `io` suite reported first).
fn inject(fault: &str, timeout: &str) -> std::process::Output {
    let key = format!("cvmprobe.inject={fault}@mmio.u8_roundtrip");
    cvmprobe(&[
        "run",
        "--machine",
        "microvm",
        "--accel",
        "tcg",
        "--timeout",
        timeout,
        "--append",
        &key,
    ])
}

#[test]
fn guest_panic() {
    if !qemu_or_skip("guest_panic") {
        return;
    }
    let o = inject("panic", "60s");
    assert_fault_report(&o, "panic: injected by cvmprobe.inject=panic");
}

#[test]
fn unexpected_exception() {
    if !qemu_or_skip("unexpected_exception") {
        return;
    }
    let o = inject("exception", "60s");
    assert_fault_report(&o, "unexpected exception #UD (vector 6)");
}

#[test]
fn triple_fault() {
    if !qemu_or_skip("triple_fault") {
        return;
    }
    let o = inject("triple-fault", "60s");
    assert_fault_report(&o, "triple-faulted");
}

#[test]
fn hang_past_timeout() {
    if !qemu_or_skip("hang_past_timeout") {
        return;
    }
    let t = std::time::Instant::now();
    let o = inject("hang", "3s");
    assert_fault_report(&o, "no verdict within the 3.0 s timeout");
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn missing_qemu() {
    let o = cvmprobe(&[
        "run",
        "--qemu",
        "/nonexistent/qemu-system-x86_64",
        "--accel",
        "tcg",
    ]);
    let line = error_line(&o);
    assert!(
        line.contains("cannot find QEMU") && line.contains("apt-get install qemu-system-x86"),
        "{line}"
    );
}

#[test]
fn bad_flag_values() {
    for args in [
        &["run", "--accel", "hvf"][..],
        &["run", "--machine", "q35x"],
        &["run", "--timeout", "soon"],
        &["run", "--platform", "sev"],
    ] {
        let o = cvmprobe(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}\n{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("error:"),
            "{}",
            text(&o)
        );
    }
    let o = cvmprobe(&["run", "--filter", "nosuch"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("`nosuch` selects no case"),
        "{}",
        text(&o)
    );
}

#[test]
fn unreadable_ktap() {
    let o = cvmprobe(&["parse", "/nonexistent/log.txt"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot read the KTAP log"),
        "{}",
        text(&o)
    );

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("noise.txt");
    std::fs::write(&p, "hello\nthis is not a test log\n").unwrap();
    let o = cvmprobe(&["parse", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not a KTAP log"),
        "{}",
        text(&o)
    );
}
