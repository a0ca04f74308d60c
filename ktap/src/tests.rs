//! Parser and classifier tests over the logs in `tests/fixtures/ktap/` and small inline ones.

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../tests/fixtures/ktap/", $name))
    };
}

/// Every fixture, for the whole-corpus properties.
const FIXTURES: &[(&str, &str)] = &[
    ("guest_legacy.log", fixture!("guest_legacy.log")),
    ("guest_ci_prefix.log", fixture!("guest_ci_prefix.log")),
    ("guest_bail_out.log", fixture!("guest_bail_out.log")),
    ("guest_truncated.log", fixture!("guest_truncated.log")),
    ("kunit_example.log", fixture!("kunit_example.log")),
    ("kunit_dmesg_x.log", fixture!("kunit_dmesg_x.log")),
    ("kunit_printk_level.log", fixture!("kunit_printk_level.log")),
    ("kunit_tap14_tabs.log", fixture!("kunit_tap14_tabs.log")),
    ("ktap_spec_example.log", fixture!("ktap_spec_example.log")),
    ("tap13.log", fixture!("tap13.log")),
    ("bad_number.log", fixture!("bad_number.log")),
    ("plan_mismatch.log", fixture!("plan_mismatch.log")),
    ("duplicate_plan.log", fixture!("duplicate_plan.log")),
    ("name_mismatch.log", fixture!("name_mismatch.log")),
    ("truncated_nested.log", fixture!("truncated_nested.log")),
    ("not_ktap.log", fixture!("not_ktap.log")),
    ("second_document.log", fixture!("second_document.log")),
];

fn counts(pass: usize, fail: usize, skip: usize, todo: usize) -> Counts {
    Counts {
        pass,
        fail,
        skip,
        todo,
    }
}

/// Problems as (line, message) pairs.
fn problems(d: &Document) -> Vec<(usize, &str)> {
    d.problems
        .iter()
        .map(|p| (p.line, p.message.as_str()))
        .collect()
}

fn diags(ds: &[Diagnostic]) -> Vec<(usize, &str)> {
    ds.iter().map(|d| (d.line, d.text.as_str())).collect()
}

/// Leaves as "path/joined STATUS line".
fn leaf_lines(d: &Document) -> Vec<String> {
    d.leaves()
        .iter()
        .map(|(path, t)| format!("{} {} {}", path.join("/"), t.status.label(), t.line))
        .collect()
}

fn skip(reason: &str) -> Status {
    Status::Skip(reason.to_owned())
}

#[test]
fn ktap_guest_output() {
    let d = parse(fixture!("guest_legacy.log"));
    assert_eq!(d.version, Some((Flavor::Ktap, 1)));
    assert_eq!(d.plan, Some(2));
    assert_eq!(problems(&d), []);
    assert_eq!(d.bail_out, None);
    assert_eq!((d.unknown_lines, d.noise_lines), (0, 0));
    assert_eq!(
        diags(&d.diagnostics),
        [
            (2, "cvmprobe-guest 0.1.0"),
            (
                3,
                "platform: legacy (no confidential-computing extensions detected)"
            ),
        ]
    );
    assert_eq!(d.tests.len(), 2);

    let io = &d.tests[0];
    assert_eq!((io.number, io.name.as_str(), io.line), (1, "io", 12));
    assert_eq!((&io.status, io.plan), (&Status::Fail, Some(3)));
    assert_eq!(io.diagnostics, []);
    let names: Vec<_> = io
        .subtests
        .iter()
        .map(|t| (t.number, t.name.as_str(), t.line))
        .collect();
    assert_eq!(
        names,
        [
            (1, "u32_roundtrip", 8),
            (2, "u16_lanes", 10),
            (3, "unassigned_port", 11)
        ]
    );
    assert_eq!(io.subtests[0].status, Status::Pass);
    assert_eq!(io.subtests[1].status, Status::Fail);
    assert_eq!(
        diags(&io.subtests[1].diagnostics),
        [(9, "u16_lanes: low half: expected 0x1234 got 0x0")]
    );
    assert_eq!(
        io.subtests[2].status,
        skip("no port-IO test device (QEMU: -device pc-testdev)")
    );

    let msr = &d.tests[1];
    assert_eq!((msr.number, msr.name.as_str(), msr.line), (2, "msr", 17));
    assert_eq!((&msr.status, msr.plan), (&Status::Pass, Some(1)));

    assert_eq!(
        leaf_lines(&d),
        [
            "io/u32_roundtrip PASS 8",
            "io/u16_lanes FAIL 10",
            "io/unassigned_port SKIP 11",
            "msr/efer_long_mode PASS 16",
        ]
    );
    let leaves = d.leaves();
    assert_eq!(leaves[1].0, ["io", "u16_lanes"]);
    assert_eq!(d.counts(), counts(2, 1, 1, 0));
    assert_eq!(
        d.counts().to_string(),
        "pass:2 fail:1 skip:1 todo:0 total:4"
    );
    assert!(!d.passed());
}

#[test]
fn ktap_guest_output_with_ci_prefix_and_noise() {
    let d = parse(fixture!("guest_ci_prefix.log"));
    assert_eq!(problems(&d), []);
    assert_eq!(d.plan, Some(5));
    // The QEMU warning inside the run is unknown; firmware lines before and QEMU's exit
    // message after are noise.
    assert_eq!((d.unknown_lines, d.noise_lines), (1, 3));
    assert_eq!(d.counts(), counts(21, 1, 1, 0));
    assert_eq!(d.leaves().len(), 23);
    let suites: Vec<_> = d
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.status.label()))
        .collect();
    assert_eq!(
        suites,
        [
            ("io", "PASS"),
            ("mmio", "PASS"),
            ("cpuid", "PASS"),
            ("msr", "FAIL"),
            ("halt", "PASS")
        ]
    );
    let tsc = &d.tests[3].subtests[2];
    assert_eq!((tsc.name.as_str(), tsc.line), ("tsc_advances", 43));
    assert_eq!(
        diags(&tsc.diagnostics),
        [(42, "tsc_advances: TSC went backwards: 0x1d2c3 then 0x1d2c0")]
    );
    assert_eq!(d.diagnostics.len(), 3);
    assert_eq!(d.diagnostics[2].text, "hypervisor: TCGTCGTCGTCG");
}

#[test]
fn ktap_guest_bail_out_keeps_printed_cases() {
    let d = parse(fixture!("guest_bail_out.log"));
    let bail = d.bail_out.as_ref().expect("bail out");
    assert_eq!(bail.line, 18);
    assert!(
        bail.reason
            .starts_with("unexpected exception #PF (vector 14)")
    );
    assert_eq!(
        problems(&d),
        [
            (5, "plan 1..5 of the top level but 2 results: 3 missing"),
            (
                13,
                "subtest 'mmio' never got its result line (Bail out! at line 18)"
            ),
            (14, "plan 1..7 of subtest 'mmio' but 2 results: 5 missing"),
        ]
    );
    assert_eq!(d.tests.len(), 2);
    let mmio = &d.tests[1];
    assert_eq!(
        (
            mmio.number,
            mmio.name.as_str(),
            &mmio.status,
            mmio.line,
            mmio.plan
        ),
        (2, "mmio", &Status::Fail, 13, Some(7))
    );
    assert_eq!(
        diags(&mmio.diagnostics),
        [(17, "u32_roundtrip: #VE for GPA 0xfee00000 reported size 0")]
    );
    assert_eq!(
        leaf_lines(&d),
        [
            "io/u32_roundtrip PASS 9",
            "io/u16_lanes PASS 10",
            "mmio/u8_roundtrip PASS 15",
            "mmio/u16_roundtrip PASS 16",
        ]
    );
    assert!(!d.passed());
}

#[test]
fn ktap_guest_truncated_mid_suite() {
    let d = parse(fixture!("guest_truncated.log"));
    assert_eq!(d.bail_out, None);
    assert_eq!(
        problems(&d),
        [
            (4, "plan 1..5 of the top level but 1 result: 4 missing"),
            (
                6,
                "subtest 'io' never got its result line (the log ends at line 11)"
            ),
            (7, "plan 1..5 of subtest 'io' but 3 results: 2 missing"),
        ]
    );
    let io = &d.tests[0];
    assert_eq!((io.number, io.line, &io.status), (1, 6, &Status::Fail));
    assert_eq!(
        leaf_lines(&d),
        [
            "io/u32_roundtrip PASS 8",
            "io/u16_lanes PASS 9",
            "io/u8_lanes FAIL 11"
        ]
    );
    assert_eq!(
        diags(&io.subtests[2].diagnostics),
        [(
            10,
            "u8_lanes: GHCB exit code 0x7b: sw_exit_info_1 = 0x1 (invalid)"
        )]
    );
}

#[test]
fn ktap_kunit_modern_output() {
    let d = parse(fixture!("kunit_example.log"));
    assert_eq!(problems(&d), []);
    assert_eq!(d.plan, Some(2));
    // crng message + 3 continuation lines of the assertion report.
    assert_eq!(d.unknown_lines, 4);
    // 3 boot lines before, 2 lines after the top level completed.
    assert_eq!(d.noise_lines, 5);
    assert_eq!(d.counts(), counts(7, 1, 3, 0));

    let example = &d.tests[0];
    assert_eq!(
        (example.name.as_str(), &example.status, example.line),
        ("example", &Status::Fail, 37)
    );
    assert_eq!(example.plan, Some(5));
    assert_eq!(
        diags(&example.diagnostics),
        [
            (8, "module: kunit_example_test"),
            (35, "example: pass:2 fail:1 skip:2 total:5"),
            (36, "Totals: pass:5 fail:1 skip:3 total:9"),
        ]
    );
    let failing = &example.subtests[3];
    assert_eq!(
        (failing.name.as_str(), &failing.status),
        ("example_failing_test", &Status::Fail)
    );
    assert_eq!(
        diags(&failing.diagnostics),
        [
            (19, "example_failing_test: initializing"),
            (
                20,
                "example_failing_test: EXPECTATION FAILED at lib/kunit/kunit-example-test.c:32"
            ),
            (24, "example_failing_test: cleaning up"),
        ]
    );
    let params = &example.subtests[4];
    assert_eq!(
        (params.name.as_str(), params.plan, params.line),
        ("example_params_test", None, 34)
    );
    assert_eq!(
        diags(&params.diagnostics),
        [(33, "example_params_test: pass:3 fail:0 skip:1 total:4")]
    );
    let values: Vec<_> = params
        .subtests
        .iter()
        .map(|t| (t.name.as_str(), t.status.label()))
        .collect();
    assert_eq!(
        values,
        [
            ("example value 3", "PASS"),
            ("example value 2", "PASS"),
            ("example value 1", "PASS"),
            ("example value 0", "SKIP"),
        ]
    );
    assert_eq!(
        diags(&params.subtests[0].diagnostics),
        [(28, "example_params_test.speed: slow")]
    );
    assert_eq!(
        d.leaves()[5].0,
        ["example", "example_params_test", "example value 2"]
    );

    // Older kernels print the suite stats at the top level, before the suite's result.
    let list = &d.tests[1];
    assert_eq!(
        (list.name.as_str(), &list.status, list.line),
        ("list-kunit-test", &Status::Pass, 48)
    );
    assert_eq!(
        diags(&list.diagnostics),
        [
            (41, "module: list_test"),
            (46, "list-kunit-test: pass:3 fail:0 skip:0 total:3"),
            (47, "Totals: pass:3 fail:0 skip:0 total:3"),
        ]
    );
}

#[test]
fn ktap_kunit_dmesg_x_prefix_with_varying_levels() {
    let d = parse(fixture!("kunit_dmesg_x.log"));
    assert_eq!(problems(&d), []);
    assert_eq!((d.unknown_lines, d.noise_lines), (3, 2));
    assert_eq!(d.counts(), counts(1, 1, 1, 0));
    assert_eq!(
        leaf_lines(&d),
        [
            "tdx-guest/tdx_report_has_valid_td_info PASS 8",
            "tdx-guest/tdx_get_quote FAIL 12",
            "tdx-guest/tdx_extend_rtmr SKIP 14",
        ]
    );
    assert_eq!(
        d.tests[0].subtests[1].diagnostics[0].text,
        "tdx_get_quote: EXPECTATION FAILED at drivers/virt/coco/tdx-guest/tdx-guest-test.c:81"
    );
}

#[test]
fn ktap_kunit_printk_levels() {
    let d = parse(fixture!("kunit_printk_level.log"));
    assert_eq!(problems(&d), []);
    assert_eq!((d.unknown_lines, d.noise_lines), (1, 1));
    assert_eq!(d.counts(), counts(2, 0, 0, 0));
    assert!(d.passed());
}

#[test]
fn ktap_kunit_tap14_with_tabs() {
    let d = parse(fixture!("kunit_tap14_tabs.log"));
    assert_eq!(d.version, Some((Flavor::Tap, 14)));
    assert_eq!(problems(&d), []);
    assert_eq!(d.counts(), counts(3, 1, 0, 0));
    assert_eq!(
        leaf_lines(&d),
        [
            "kunit-resource-test/kunit_resource_test_init_resources PASS 5",
            "kunit-resource-test/kunit_resource_test_alloc_resource PASS 6",
            "kunit-try-catch-test/kunit_test_try_catch_successful_try_no_catch PASS 10",
            "kunit-try-catch-test/kunit_test_try_catch_unsuccessful_try_does_catch FAIL 12",
        ]
    );
    assert_eq!(d.tests[1].subtests[1].diagnostics[0].line, 11);
}

#[test]
fn ktap_spec_example_two_space_indentation() {
    let d = parse(fixture!("ktap_spec_example.log"));
    assert_eq!(problems(&d), []);
    assert_eq!(d.counts(), counts(3, 1, 2, 0));
    assert_eq!(
        leaf_lines(&d),
        [
            "main_test/example_test_1/test_1 PASS 8",
            "main_test/example_test_2/test_1 SKIP 12",
            "main_test/example_test_2/test_2 PASS 13",
            "main_test/example_test_3/test_1 PASS 17",
            "main_test/example_test_3/test_2 FAIL 19",
            "main_test/example_test_3/test_3 SKIP 20",
        ]
    );
    let main = &d.tests[0];
    assert_eq!(
        (main.plan, main.subtests.len(), main.line),
        (Some(3), 3, 22)
    );
    assert_eq!(main.subtests[0].plan, Some(1));
}

#[test]
fn ktap_tap13_trailing_plan_todo_and_skip() {
    let d = parse(fixture!("tap13.log"));
    assert_eq!(d.version, Some((Flavor::Tap, 13)));
    assert_eq!(problems(&d), []);
    assert_eq!(d.plan, Some(5));
    assert_eq!(d.counts(), counts(1, 1, 2, 1));
    let statuses: Vec<_> = d
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.status.clone()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("posix_timers", Status::Pass),
            ("nanosleep", Status::Todo("flaky on VMs".to_owned())),
            ("set-timer-lat", skip("no CAP_WAKE_ALARM")),
            ("inconsistency-check", Status::Fail),
            ("raw_skew", skip("not enough time")),
        ]
    );
    assert_eq!(diags(&d.tests[0].diagnostics), [(2, "selftests: timers")]);
    assert_eq!(
        diags(&d.diagnostics),
        [(10, "Totals: pass:1 fail:1 xfail:0 xpass:0 skip:2 error:0")]
    );
}

#[test]
fn ktap_bad_number() {
    let d = parse(fixture!("bad_number.log"));
    assert_eq!(
        problems(&d),
        [(4, "test number 3 ('third') out of order: expected 2")]
    );
    let numbers: Vec<_> = d.tests.iter().map(|t| t.number).collect();
    assert_eq!(numbers, [1, 3, 4]);
}

#[test]
fn ktap_plan_mismatch() {
    let d = parse(fixture!("plan_mismatch.log"));
    assert_eq!(
        problems(&d),
        [
            (2, "plan 1..3 of the top level but 2 results: 1 missing"),
            (5, "plan 1..4 of subtest 'io' but 3 results: 1 missing"),
            (
                12,
                "plan 1..1 of subtest 'msr' but 2 results: 1 more than planned"
            ),
        ]
    );
    assert_eq!(d.counts(), counts(5, 0, 0, 0));
}

#[test]
fn ktap_duplicate_plan() {
    let d = parse(fixture!("duplicate_plan.log"));
    assert_eq!(
        problems(&d),
        [
            (6, "duplicate plan 1..2 (the plan 1..1 at line 5 counts)"),
            (9, "duplicate plan 1..2 (the plan 1..2 at line 2 counts)"),
        ]
    );
    assert_eq!(d.tests[0].plan, Some(1));
}

#[test]
fn ktap_subtest_name_mismatch() {
    let d = parse(fixture!("name_mismatch.log"));
    assert_eq!(
        problems(&d),
        [(7, "result 'mmio' closes the block of subtest 'io' (line 4)")]
    );
    assert_eq!(d.tests[0].name, "mmio");
    assert_eq!(d.tests[0].subtests.len(), 1);
}

#[test]
fn ktap_truncated_inside_parameterized_test() {
    let d = parse(fixture!("truncated_nested.log"));
    assert_eq!(
        problems(&d),
        [
            (2, "plan 1..2 of the top level but 1 result: 1 missing"),
            (
                4,
                "subtest 'example' never got its result line (the log ends at line 13)"
            ),
            (5, "plan 1..5 of subtest 'example' but 2 results: 3 missing"),
            (
                8,
                "subtest 'example_params_test' never got its result line (the log ends at line 13)"
            ),
        ]
    );
    assert_eq!(d.unknown_lines, 2);
    let example = &d.tests[0];
    assert_eq!(
        (example.number, &example.status, example.line),
        (1, &Status::Fail, 4)
    );
    let params = &example.subtests[1];
    assert_eq!(
        (params.number, &params.status, params.line),
        (2, &Status::Fail, 8)
    );
    assert_eq!(
        leaf_lines(&d),
        [
            "example/example_simple_test PASS 6",
            "example/example_params_test/example value 3 PASS 9",
            "example/example_params_test/example value 2 FAIL 11",
        ]
    );
}

#[test]
fn ktap_not_ktap() {
    let d = parse(fixture!("not_ktap.log"));
    assert!(!d.is_ktap());
    assert_eq!(
        problems(&d),
        [(
            0,
            "no 'KTAP version N' or 'TAP version N' line: not a KTAP document"
        )]
    );
    assert_eq!((d.noise_lines, d.unknown_lines), (4, 0));
    assert_eq!(d.tests, []);
    assert!(!d.passed());
    assert_eq!(
        d.problems[0].to_string(),
        "no 'KTAP version N' or 'TAP version N' line: not a KTAP document"
    );

    let empty = parse("");
    assert!(!empty.is_ktap());
    assert_eq!(empty.problems.len(), 1);
}

#[test]
fn ktap_second_document_after_reboot() {
    let d = parse(fixture!("second_document.log"));
    assert_eq!(
        problems(&d),
        [
            (3, "plan 1..2 of the top level but 1 result: 1 missing"),
            (
                5,
                "subtest 'io' never got its result line (another document starts at line 9)"
            ),
            (6, "plan 1..3 of subtest 'io' but 1 result: 2 missing"),
            (
                9,
                "another KTAP document starts here; only the one from line 1 is read"
            ),
        ]
    );
    assert_eq!((d.unknown_lines, d.noise_lines), (1, 2));
    assert_eq!(leaf_lines(&d), ["io/u32_roundtrip PASS 7"]);
    assert_eq!(
        d.problems[3].to_string(),
        "line 9: another KTAP document starts here; only the one from line 1 is read"
    );
}

#[test]
fn ktap_all_passing_guest_run_passes() {
    let d = parse(
        "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: msr\n    1..1\n    ok 1 efer_long_mode\nok 1 msr\n",
    );
    assert!(d.passed());
    // A suite that fails with passing cases still fails the verdict.
    let d = parse(
        "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: msr\n    1..1\n    ok 1 efer_long_mode\nnot ok 1 msr\n",
    );
    assert_eq!(d.counts(), counts(1, 0, 0, 0));
    assert!(!d.passed());
    // An empty run (the guest's bench mode) is complete and passes.
    let d = parse("KTAP version 1\n# cvmprobe-guest 0.1.0\n1..0\nqemu: exit\n");
    assert!(d.passed());
    assert_eq!((d.plan, d.noise_lines), (Some(0), 1));
}

#[test]
fn ktap_new_block_at_same_depth_interrupts_the_previous_one() {
    let input = "\
KTAP version 1
1..2
    KTAP version 1
    # Subtest: io
    1..2
    ok 1 a
    KTAP version 1
    # Subtest: msr
    1..1
    ok 1 x
ok 2 msr
";
    let d = parse(input);
    assert_eq!(
        problems(&d),
        [
            (
                4,
                "subtest 'io' never got its result line (another block starts at line 7)"
            ),
            (5, "plan 1..2 of subtest 'io' but 1 result: 1 missing"),
        ]
    );
    assert_eq!(leaf_lines(&d), ["io/a PASS 6", "msr/x PASS 10"]);
    assert_eq!(d.tests[0].number, 1);

    // Old-style blocks that start with `# Subtest:` alone interrupt the same way.
    let d = parse(
        "TAP version 14\n1..2\n\t# Subtest: a\n\t1..1\n\t# Subtest: b\n\t1..1\n\tok 1 y\nok 2 b\n",
    );
    assert_eq!(
        problems(&d),
        [
            (
                3,
                "subtest 'a' never got its result line (another block starts at line 5)"
            ),
            (4, "plan 1..1 of subtest 'a' but 0 results: 1 missing"),
        ]
    );
}

#[test]
fn ktap_over_indented_diagnostic_is_not_a_block() {
    let input = "\
KTAP version 1
1..1
    KTAP version 1
    # Subtest: io
    1..1
        # io: extra detail, indented deeper
    ok 1 a
ok 1 io
";
    let d = parse(input);
    assert_eq!(problems(&d), []);
    assert_eq!(leaf_lines(&d), ["io/a PASS 7"]);
    assert_eq!(
        diags(&d.tests[0].subtests[0].diagnostics),
        [(6, "io: extra detail, indented deeper")]
    );
}

#[test]
fn ktap_block_continues_after_outer_diagnostic() {
    // A top-level diagnostic printed from elsewhere in the middle of a suite does not end it.
    let input = "\
KTAP version 1
1..1
    KTAP version 1
    # Subtest: io
    1..2
    ok 1 a
# interleaved top-level note
    ok 2 b
ok 1 io
";
    let d = parse(input);
    assert_eq!(problems(&d), []);
    assert_eq!(leaf_lines(&d), ["io/a PASS 6", "io/b PASS 8"]);
    assert_eq!(
        diags(&d.tests[0].diagnostics),
        [(7, "interleaved top-level note")]
    );
}

#[test]
fn ktap_indented_bail_out() {
    let input = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: io\n    1..2\n    ok 1 a\n    Bail out! device vanished\n    ok 2 b\nok 1 io\n";
    let d = parse(input);
    assert_eq!(
        d.bail_out,
        Some(BailOut {
            reason: "device vanished".to_owned(),
            line: 7
        })
    );
    assert_eq!(d.noise_lines, 2);
    assert_eq!(leaf_lines(&d), ["io/a PASS 6"]);
    assert_eq!(
        problems(&d),
        [
            (
                4,
                "subtest 'io' never got its result line (Bail out! at line 7)"
            ),
            (5, "plan 1..2 of subtest 'io' but 1 result: 1 missing"),
        ]
    );
}

#[test]
fn ktap_version_and_plan_problems() {
    let d = parse("KTAP version 2\n1..1\nok 1 a\n");
    assert_eq!(
        problems(&d),
        [(
            1,
            "unsupported KTAP version 2 (KTAP 1 and TAP 13/14 are known); read as KTAP 1"
        )]
    );
    assert_eq!(d.counts(), counts(1, 0, 0, 0));

    let d = parse("KTAP version 1\nok 1 a\nnot ok 2 b\n");
    assert_eq!(problems(&d), [(1, "no top-level plan (1..N)")]);
    assert_eq!(d.counts(), counts(1, 1, 0, 0));

    // Results after the plan is satisfied are still read, and counted against it.
    let d = parse("KTAP version 1\n1..1\nok 1 a\nok 2 b\nrandom noise\n");
    assert_eq!(
        problems(&d),
        [(
            2,
            "plan 1..1 of the top level but 2 results: 1 more than planned"
        )]
    );
    assert_eq!(d.noise_lines, 1);
}

#[test]
fn ktap_glued_firmware_output_and_crlf() {
    // OVMF's screen control codes glued in front of the version line; the guest's lines do
    // not have them, and the serial log has CRLF line ends.
    let input = "\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HKTAP version 1\r\n1..1\r\n    KTAP version 1\r\n    # Subtest: io\r\n    1..1\r\n    ok 1 a # SKIP no device\r\nok 1 io # SKIP all cases skipped\r\n";
    let d = parse(input);
    assert_eq!(problems(&d), []);
    assert_eq!(d.counts(), counts(0, 0, 1, 0));
    assert_eq!(d.tests[0].status, skip("all cases skipped"));
    assert_eq!(d.tests[0].subtests[0].status, skip("no device"));
}

#[test]
fn ktap_log_starting_inside_a_nested_block() {
    let input = "    KTAP version 1\n    # Subtest: io\n    1..2\n    ok 1 a\n    ok 2 b\n";
    let d = parse(input);
    assert_eq!(problems(&d), []);
    assert_eq!(d.diagnostics[0].text, "Subtest: io");
    assert_eq!(d.counts(), counts(2, 0, 0, 0));
}

#[test]
fn ktap_nesting_depth_is_bounded() {
    let mut input = String::from("KTAP version 1\n1..1\n");
    for depth in 1..5000 {
        input.push_str(&" ".repeat(depth * 4));
        input.push_str("KTAP version 1\n");
    }
    let d = parse(&input);
    assert!(
        d.problems
            .iter()
            .any(|p| p.message.contains("nested deeper than")),
        "{:?}",
        d.problems.first()
    );
    assert!(d.unknown_lines > 4000);
    // Tree walks and drops stay shallow.
    assert_eq!(d.leaves().len(), 1);
    let mut c = LineClassifier::new();
    for l in input.lines() {
        c.classify(l);
    }
}

#[test]
fn ktap_display() {
    assert_eq!(Status::Pass.to_string(), "PASS");
    assert_eq!(skip("why").to_string(), "SKIP (why)");
    assert_eq!(Status::Todo(String::new()).to_string(), "TODO");
    assert_eq!(skip("x").reason(), Some("x"));
    let p = Problem {
        line: 3,
        message: "bad".to_owned(),
    };
    assert_eq!(p.to_string(), "line 3: bad");
}

// --- robustness -------------------------------------------------------------------------

/// Structural invariants every parse must keep, whatever the input.
fn check_invariants(name: &str, input: &str, d: &Document) {
    let lines = input.lines().count();
    assert!(
        d.problems.windows(2).all(|w| w[0].line <= w[1].line),
        "{name}: problems not sorted"
    );
    assert!(
        d.problems.iter().all(|p| p.line <= lines),
        "{name}: problem beyond the input"
    );
    assert_eq!(d.counts().total(), d.leaves().len(), "{name}");
    if d.version.is_none() {
        assert!(d.tests.is_empty() && !d.problems.is_empty(), "{name}");
    }
    let _ = d.passed();
}

#[test]
fn ktap_every_prefix_of_every_fixture_parses() {
    for (name, text) in FIXTURES {
        for (cut, _) in text.char_indices().chain([(text.len(), ' ')]) {
            let input = &text[..cut];
            let d = parse(input);
            check_invariants(name, input, &d);
            let mut c = LineClassifier::new();
            for l in input.lines() {
                c.classify(l);
            }
        }
    }
}

/// Cut anywhere at a line boundary, the guest's log still yields every case result it
/// contains, at its line: what the host reports after a crash.
#[test]
fn ktap_truncated_guest_log_keeps_every_printed_case() {
    for text in [
        fixture!("guest_ci_prefix.log"),
        fixture!("guest_legacy.log"),
    ] {
        let lines: Vec<&str> = text.lines().collect();
        for cut in 0..=lines.len() {
            let input = lines[..cut].join("\n");
            let d = parse(&input);
            let found: Vec<usize> = d
                .tests
                .iter()
                .flat_map(|t| t.subtests.iter().map(|s| s.line))
                .collect();
            let printed: Vec<usize> = lines[..cut]
                .iter()
                .enumerate()
                .filter(|(_, l)| l.contains("    ok ") || l.contains("    not ok "))
                .map(|(i, _)| i + 1)
                .collect();
            assert_eq!(found, printed, "cut after line {cut}");
            if cut < lines.len() && !printed.is_empty() {
                assert!(!d.passed(), "cut after line {cut} must not pass");
            }
        }
    }
}

/// A small deterministic generator (xorshift64*), so the test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

#[test]
fn ktap_random_mutations_never_panic() {
    const PIECES: &[&str] = &[
        "KTAP version 1",
        "TAP version 13",
        "1..3",
        "1..0",
        "1..",
        "ok",
        "ok 1",
        "not ok 2 x",
        "ok 1 - y # SKIP",
        "# Subtest: s",
        "#",
        "# d",
        "Bail out!",
        "    ",
        "\t",
        "  ",
        "[  1.0] ",
        "<6>",
        "#SKIP",
        " # TODO",
        "\u{1b}[0m",
        "é",
        "\u{0}",
        "ok 18446744073709551616 big",
        "99999999999999999999",
        "- ",
        "\r",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..3000 {
        let (name, base) = FIXTURES[round % FIXTURES.len()];
        let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(lines.len() + 1);
            match rng.below(6) {
                0 if at < lines.len() => {
                    lines.remove(at);
                }
                1 if at < lines.len() => {
                    let l = lines[at].clone();
                    lines.insert(at, l);
                }
                2 if at < lines.len() => {
                    let other = rng.below(lines.len());
                    lines.swap(at, other);
                }
                3 => {
                    let piece = PIECES[rng.below(PIECES.len())];
                    let tail = PIECES[rng.below(PIECES.len())];
                    lines.insert(at, format!("{piece}{tail}"));
                }
                4 if at < lines.len() => {
                    // Change the indentation.
                    let l = lines[at].trim_start().to_owned();
                    lines[at] = format!("{}{l}", " ".repeat(rng.below(13)));
                }
                _ if at < lines.len() => {
                    // Cut the line at a random character.
                    let l = &lines[at];
                    let cut = l
                        .char_indices()
                        .nth(rng.below(l.len() + 1))
                        .map_or(l.len(), |(i, _)| i);
                    lines[at] = l[..cut].to_owned();
                }
                _ => {}
            }
        }
        let input = lines.join("\n");
        let d = parse(&input);
        check_invariants(name, &input, &d);
        let mut c = LineClassifier::new();
        for l in input.lines() {
            c.classify(l);
        }
    }
}

// --- classifier --------------------------------------------------------------------------

#[test]
fn ktap_classifier_guest_lines() {
    let mut c = LineClassifier::new();
    let events: Vec<LineEvent<'_>> = fixture!("guest_legacy.log")
        .lines()
        .map(|l| c.classify(l))
        .collect();
    assert_eq!(
        events,
        [
            LineEvent::Version,
            LineEvent::Diagnostic {
                depth: 0,
                text: "cvmprobe-guest 0.1.0"
            },
            LineEvent::Diagnostic {
                depth: 0,
                text: "platform: legacy (no confidential-computing extensions detected)"
            },
            LineEvent::Plan { depth: 0, count: 2 },
            LineEvent::Version,
            LineEvent::Subtest {
                depth: 1,
                name: "io"
            },
            LineEvent::Plan { depth: 1, count: 3 },
            LineEvent::Result {
                depth: 1,
                ok: true,
                skip: false,
                name: "u32_roundtrip"
            },
            LineEvent::Diagnostic {
                depth: 1,
                text: "u16_lanes: low half: expected 0x1234 got 0x0"
            },
            LineEvent::Result {
                depth: 1,
                ok: false,
                skip: false,
                name: "u16_lanes"
            },
            LineEvent::Result {
                depth: 1,
                ok: true,
                skip: true,
                name: "unassigned_port"
            },
            LineEvent::Result {
                depth: 0,
                ok: false,
                skip: false,
                name: "io"
            },
            LineEvent::Version,
            LineEvent::Subtest {
                depth: 1,
                name: "msr"
            },
            LineEvent::Plan { depth: 1, count: 1 },
            LineEvent::Result {
                depth: 1,
                ok: true,
                skip: false,
                name: "efer_long_mode"
            },
            LineEvent::Result {
                depth: 0,
                ok: true,
                skip: false,
                name: "msr"
            },
        ]
    );
}

#[test]
fn ktap_classifier_prefixes_noise_and_depths() {
    let mut c = LineClassifier::new();
    // Before the version line everything is Other, even KTAP-looking lines.
    assert_eq!(c.classify("[    0.1] ok 1 early"), LineEvent::Other);
    assert_eq!(c.classify("[    0.2] KTAP version 1\n"), LineEvent::Version);
    assert_eq!(
        c.classify("[   10.3] 1..1"),
        LineEvent::Plan { depth: 0, count: 1 }
    );
    assert_eq!(
        c.classify("[   10.4]     # Subtest: example"),
        LineEvent::Subtest {
            depth: 1,
            name: "example"
        }
    );
    assert_eq!(
        c.classify("[   10.5]         ok 1 example value 3"),
        LineEvent::Result {
            depth: 2,
            ok: true,
            skip: false,
            name: "example value 3"
        }
    );
    assert_eq!(
        c.classify("[   10.6] random: crng init done"),
        LineEvent::Other
    );
    assert_eq!(
        c.classify("[   10.7]     ok 1 example_params_test"),
        LineEvent::Result {
            depth: 1,
            ok: true,
            skip: false,
            name: "example_params_test"
        }
    );
    assert_eq!(
        c.classify("[   10.8] Bail out! oops"),
        LineEvent::BailOut("oops")
    );
    assert_eq!(c.classify(""), LineEvent::Other);
    // A rebooted guest starts over at depth 0.
    assert_eq!(c.classify("[    0.1] KTAP version 1"), LineEvent::Version);
    assert_eq!(
        c.classify("[    0.2] 1..5"),
        LineEvent::Plan { depth: 0, count: 5 }
    );
}
