//! `cvmprobe parse` on kunit_tool's own `test_data` logs (Linux
//! `tools/testing/kunit/test_data/`, copied in `tests/fixtures/kunit_tool`): our verdict
//! agrees with kunit_tool's on every one, and a log from our own guest is still read
//! strictly.
//!
//! kunit_tool's verdicts come from `kunit_tool_test.py` (which asserts the parser's status,
//! counts and errors for these files) and, for the files it no longer asserts on, from
//! `kunit_parser.py`; `kunit.py parse` exits 0 only for SUCCESS.

mod common;
use common::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kunit_tool");

/// One log: kunit_tool's status, our exit code, our counts `(passed, failed, skipped)`, and
/// whether kunit_tool counts no error (then neither do we: no `problem:` line).
struct Log {
    file: &'static str,
    kunit: &'static str,
    exit: i32,
    counts: Option<(usize, usize, usize)>,
    clean: bool,
}

const fn log(
    file: &'static str,
    kunit: &'static str,
    exit: i32,
    counts: Option<(usize, usize, usize)>,
    clean: bool,
) -> Log {
    Log {
        file,
        kunit,
        exit,
        counts,
        clean,
    }
}

/// Every log with kunit_tool's verdict. Exit 0 is kunit_tool's SUCCESS; every other status
/// exits 1 there, and here too, except a log with no KTAP at all, which is bad input (2).
const LOGS: &[Log] = &[
    log(
        "test_config_printk_time.log",
        "SUCCESS, errors 0",
        0,
        Some((10, 0, 0)),
        true,
    ),
    log(
        "test_interrupted_tap_output.log",
        "SUCCESS, errors 0",
        0,
        Some((10, 0, 0)),
        true,
    ),
    log(
        "test_is_test_passed-all_passed.log",
        "SUCCESS, errors 0",
        0,
        Some((10, 0, 0)),
        true,
    ),
    log(
        "test_is_test_passed-all_passed_nested.log",
        "SUCCESS, errors 0",
        0,
        Some((7, 0, 0)),
        true,
    ),
    log(
        "test_is_test_passed-crash.log",
        "FAILURE (TEST_CRASHED before kunit_tool read crash messages as diagnostics)",
        1,
        Some((9, 1, 0)),
        true,
    ),
    log(
        "test_is_test_passed-failure-nested.log",
        "FAILURE",
        1,
        Some((1, 1, 0)),
        true,
    ),
    log(
        "test_is_test_passed-failure.log",
        "FAILURE, errors 0",
        1,
        Some((9, 1, 0)),
        true,
    ),
    log(
        "test_is_test_passed-kselftest.log",
        "SUCCESS, errors 0",
        0,
        Some((2, 0, 0)),
        true,
    ),
    log(
        "test_is_test_passed-missing_plan.log",
        "SUCCESS, passed 10, errors 0",
        0,
        Some((10, 0, 0)),
        true,
    ),
    log(
        "test_is_test_passed-no_tests_no_plan.log",
        "SUCCESS, passed 1, errors 1 (a subtest with no tests)",
        0,
        Some((1, 0, 0)),
        true,
    ),
    log(
        "test_is_test_passed-no_tests_run_no_header.log",
        "FAILURE_TO_PARSE_TESTS",
        2,
        None,
        false,
    ),
    log(
        "test_is_test_passed-no_tests_run_with_header.log",
        "NO_TESTS, errors 1",
        1,
        Some((0, 0, 0)),
        true,
    ),
    log(
        "test_kernel_panic_interrupt.log",
        "TEST_CRASHED, errors >= 1",
        1,
        None,
        false,
    ),
    log(
        "test_multiple_prefixes.log",
        "SUCCESS, errors 0",
        0,
        Some((10, 0, 0)),
        true,
    ),
    log(
        "test_output_isolated_correctly.log",
        "SUCCESS",
        0,
        Some((2, 0, 0)),
        true,
    ),
    log(
        "test_output_with_prefix_isolated_correctly.log",
        "SUCCESS",
        0,
        Some((10, 0, 0)),
        true,
    ),
    log(
        "test_parse_attributes.log",
        "SUCCESS, passed 1, errors 0",
        0,
        Some((1, 0, 0)),
        true,
    ),
    log(
        "test_parse_subtest_header.log",
        "SUCCESS",
        0,
        Some((1, 0, 0)),
        true,
    ),
    log(
        "test_pound_no_prefix.log",
        "SUCCESS, errors 0",
        0,
        Some((10, 0, 0)),
        true,
    ),
    log(
        "test_pound_sign.log",
        "SUCCESS, errors 0",
        0,
        Some((10, 0, 0)),
        true,
    ),
    log(
        "test_skip_all_tests.log",
        "SKIPPED, skipped 5",
        1,
        Some((0, 0, 5)),
        false,
    ),
    log(
        "test_skip_tests.log",
        "SUCCESS, passed 4, skipped 1",
        0,
        Some((4, 0, 1)),
        true,
    ),
    log("test_strip_hyphen.log", "SUCCESS", 0, Some((2, 0, 0)), true),
];

#[test]
fn parse_agrees_with_kunit_tool_on_its_own_logs() {
    let mut files: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".log"))
        .collect();
    files.sort();
    let mut listed: Vec<&str> = LOGS.iter().map(|l| l.file).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "every copied log has kunit_tool's verdict here"
    );
    let mut disagreements = Vec::new();
    for l in LOGS {
        let o = cvmprobe(&["parse", &format!("{DIR}/{}", l.file)]);
        let out = String::from_utf8_lossy(&o.stdout);
        let mut wrong = Vec::new();
        if o.status.code() != Some(l.exit) {
            wrong.push(format!("exit {:?}, want {}", o.status.code(), l.exit));
        }
        if let Some((p, f, s)) = l.counts {
            let (gp, gf, gs, _, _) = verdict_counts(&o);
            if (gp, gf, gs) != (p, f, s) {
                wrong.push(format!("counts {:?}, want {:?}", (gp, gf, gs), (p, f, s)));
            }
        }
        if l.clean && out.contains("problem:") {
            wrong.push("problems reported where kunit_tool counts no error".into());
        }
        if !wrong.is_empty() {
            disagreements.push(format!(
                "{} (kunit_tool: {}): {}\n{}",
                l.file,
                l.kunit,
                wrong.join("; "),
                text(&o)
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n\n"));
}

#[test]
fn a_log_from_our_guest_stays_strict() {
    // The same departure kunit_tool forgives in its own logs (no top-level plan) is a
    // problem in a log our guest wrote.
    let guest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ktap/guest_legacy.log"
    ))
    .unwrap();
    assert!(guest.contains(protocol::ktap::GUEST_DIAG));
    let plan = guest
        .lines()
        .find(|l| l.starts_with("1.."))
        .expect("a top-level plan");
    let without: String = guest
        .lines()
        .filter(|l| *l != plan)
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("guest_no_plan.log");
    std::fs::write(&p, &without).unwrap();
    let o = cvmprobe(&["parse", p.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no top-level plan (1..N)"),
        "{}",
        text(&o)
    );
    // ... and the same log without the guest's name line is read as kunit_tool reads it.
    let foreign: String = without
        .lines()
        .filter(|l| !l.starts_with(protocol::ktap::GUEST_DIAG))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&p, &foreign).unwrap();
    let o = cvmprobe(&["parse", p.to_str().unwrap()]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("no top-level plan"),
        "{}",
        text(&o)
    );
}
