//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the `cvmprobe` binary built for these tests.
pub fn cvmprobe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cvmprobe"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("cvmprobe binary runs")
}

/// stdout + stderr as text, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "--- status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether KVM tests should run: `true` when /dev/kvm opens; `false` (with a message) when it
/// does not and `CVMPROBE_NO_KVM=1` asks to skip them; otherwise the test fails, so a missing
/// /dev/kvm never passes silently.
pub fn kvm_or_skip(test: &str) -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if ok {
        return true;
    }
    if std::env::var("CVMPROBE_NO_KVM").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED {test}: /dev/kvm is not usable and CVMPROBE_NO_KVM=1 asks to skip KVM tests"
        );
        return false;
    }
    panic!(
        "{test} needs /dev/kvm (cannot open it read-write); set CVMPROBE_NO_KVM=1 to skip KVM tests explicitly"
    );
}

/// Fails clearly when QEMU is not installed.
pub fn need_qemu() {
    let ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "qemu-system-x86_64 is not installed: `sudo apt-get install qemu-system-x86` (.ci/run does this)"
    );
}

/// The number of cases `cvmprobe list` shows for `filter`.
pub fn listed_cases(filter: &str) -> usize {
    let o = cvmprobe(&["list", "--names", "--filter", filter]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .count()
}

/// Counts from the verdict line: (passed, failed, skipped, not run, total).
pub fn verdict_counts(o: &Output) -> (usize, usize, usize, usize, usize) {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.starts_with("verdict:"))
        .unwrap_or_else(|| panic!("no verdict line\n{}", text(o)));
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("number"))
        .collect();
    assert!(nums.len() >= 5, "verdict line: {line}");
    (nums[0], nums[1], nums[2], nums[3], nums[4])
}

/// The one `cvmprobe: error:` line of a run that could not be made (exit code 2).
pub fn error_line(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(2), "{}", text(o));
    let err = String::from_utf8_lossy(&o.stderr);
    err.lines()
        .find(|l| l.starts_with("cvmprobe: error:"))
        .unwrap_or_else(|| panic!("no error line\n{}", text(o)))
        .to_string()
}

/// A run where a fault struck at the first case of `mmio`: the `platform` and `io` results are
/// kept, every later case is not run with `reason` shown, and the serial tail is printed.
pub fn assert_fault_report(o: &Output, reason: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    let out = String::from_utf8_lossy(&o.stdout);
    let (passed, failed, skipped, not_run, total) = verdict_counts(o);
    assert_eq!(total, listed_cases(""), "{}", text(o));
    let before = protocol::catalog::PLATFORM.cases.len() + protocol::catalog::IO.cases.len();
    assert_eq!(
        passed + skipped,
        before,
        "the results before the fault are kept\n{}",
        text(o)
    );
    assert_eq!((failed, not_run), (0, total - before), "{}", text(o));
    assert!(out.contains("NOT RUN mmio.u8_roundtrip"), "{}", text(o));
    assert!(out.contains(reason), "reason `{reason}` shown\n{}", text(o));
    assert!(
        out.contains("serial lines ---"),
        "serial tail printed\n{}",
        text(o)
    );
    assert!(out.contains("verdict: FAIL"), "{}", text(o));
}
