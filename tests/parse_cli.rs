//! `cvmprobe parse` on real-world KTAP: a Linux KUnit log with timestamps and interleaved
//! kernel messages, a truncated guest log, standard input, and JUnit output.

mod common;
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ktap");

#[test]
fn kunit_log_counts_and_verdict() {
    let o = cvmprobe(&["parse", &format!("{FIXTURES}/kunit_example.log")]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "one KUnit case fails\n{}",
        text(&o)
    );
    // example: 2 pass, 1 fail, 2 skip; its parameterised test: 3 pass, 1 skip (leaves);
    // list-kunit-test: 3 pass.
    assert_eq!(verdict_counts(&o), (7, 1, 3, 0, 11), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("FAILED  example.example_failing_test"),
        "{out}"
    );
    assert!(
        out.contains("EXPECTATION FAILED at lib/kunit/kunit-example-test.c:32"),
        "{out}"
    );
    assert!(
        !out.contains("problem:"),
        "a well-formed log has no problems\n{out}"
    );
}

#[test]
fn passing_log_with_printk_levels_exits_zero() {
    let o = cvmprobe(&["parse", &format!("{FIXTURES}/kunit_printk_level.log")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("verdict: PASS"));
}

#[test]
fn truncated_log_names_where_it_breaks() {
    let o = cvmprobe(&["parse", &format!("{FIXTURES}/guest_truncated.log")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("problem: line 6: subtest 'io' never got its result line"),
        "{out}"
    );
    assert!(
        out.contains("problem: line 4: plan 1..5 of the top level but 1 result"),
        "{out}"
    );
    assert_eq!(verdict_counts(&o), (2, 1, 0, 0, 3), "{}", text(&o));
}

#[test]
fn reads_stdin_and_writes_junit() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("k.xml");
    let log = std::fs::read(format!("{FIXTURES}/kunit_example.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cvmprobe"))
        .args(["parse", "-", "--junit", junit.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&log).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 11, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    assert_eq!(xml.matches("<skipped ").count(), 3, "{xml}");
}
