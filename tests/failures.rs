//! Failure handling: guest panic, unexpected exception, triple fault, hang past --timeout, a
//! missing QEMU, bad flags and unreadable KTAP. Each failure keeps every result the guest
//! reported before it, lists the others as not run with the reason, and prints the serial tail.

mod common;
use common::*;

/// Runs with a fault injected at the first case of `mmio` (so the `io` suite reported first).
fn inject(fault: &str, timeout: &str) -> std::process::Output {
    need_qemu();
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

fn assert_partial(o: &std::process::Output, reason: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    let out = String::from_utf8_lossy(&o.stdout);
    let (passed, failed, skipped, not_run, total) = verdict_counts(o);
    assert_eq!(total, listed_cases(""), "{}", text(o));
    // platform and io ran before the fault in mmio.
    let before = protocol::catalog::PLATFORM.cases.len() + protocol::catalog::IO.cases.len();
    assert_eq!(
        passed + skipped,
        before,
        "the results before the fault are kept\n{}",
        text(o)
    );
    assert_eq!(failed, 0, "{}", text(o));
    assert_eq!(
        not_run,
        total - before,
        "every case from mmio.u8_roundtrip on is not run\n{}",
        text(o)
    );
    assert!(out.contains("NOT RUN mmio.u8_roundtrip"), "{}", text(o));
    assert!(out.contains(reason), "reason `{reason}` shown\n{}", text(o));
    assert!(
        out.contains("serial lines ---"),
        "serial tail printed\n{}",
        text(o)
    );
    assert!(out.contains("verdict: FAIL"), "{}", text(o));
}

#[test]
fn guest_panic() {
    let o = inject("panic", "60s");
    assert_partial(&o, "panic: injected by cvmprobe.inject=panic");
}

#[test]
fn unexpected_exception() {
    let o = inject("exception", "60s");
    assert_partial(&o, "unexpected exception #UD (vector 6)");
}

#[test]
fn triple_fault() {
    let o = inject("triple-fault", "60s");
    assert_partial(&o, "triple-faulted");
}

#[test]
fn hang_past_timeout() {
    let t = std::time::Instant::now();
    let o = inject("hang", "3s");
    assert_partial(&o, "no verdict within the 3.0 s timeout");
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
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("cvmprobe: error:"))
        .expect("error line");
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
