//! Fuzzes the KTAP reader (`cvmprobe-ktap`), which `cvmprobe parse` runs on logs from other
//! machines: no input may panic or hang it, and whatever it returns must be consistent:
//!
//! - every line number it reports (results, diagnostics, problems, the bail-out) is a line of
//!   the input (0 for "the whole input");
//! - no tree is deeper than [`MAX_DEPTH`] and the counts add up to the leaves;
//! - a document without a version line has no tests;
//! - the lenient reading (`parse_log`, kunit_tool's rules) finds the same results as the strict
//!   one when the strict one found no problem;
//! - a printk timestamp in front of every line changes nothing: the prefix is stripped the
//!   same way from every line (checked for inputs whose version line starts the line, without
//!   brackets, whose own text could look like a prefix);
//! - the line classifier used for live progress takes every line without panicking.
#![no_main]

use cvmprobe_ktap::{Document, LineClassifier, MAX_DEPTH, TestNode, parse, parse_log};
use libfuzzer_sys::fuzz_target;

fn check_nodes(nodes: &[TestNode], lines: usize, depth: usize) {
    assert!(depth <= MAX_DEPTH + 1, "tree deeper than {MAX_DEPTH}");
    for n in nodes {
        assert!(n.line <= lines, "result line {} of {lines}", n.line);
        for d in &n.diagnostics {
            assert!(d.line >= 1 && d.line <= lines, "diagnostic line {}", d.line);
        }
        check_nodes(&n.subtests, lines, depth + 1);
    }
}

fn check(doc: &Document, lines: usize) {
    check_nodes(&doc.tests, lines, 0);
    for p in &doc.problems {
        assert!(p.line <= lines, "problem line {} of {lines}: {}", p.line, p.message);
    }
    for d in &doc.diagnostics {
        assert!(d.line >= 1 && d.line <= lines, "diagnostic line {}", d.line);
    }
    if let Some(b) = &doc.bail_out {
        assert!(b.line >= 1 && b.line <= lines, "bail-out line {}", b.line);
    }
    if doc.version.is_none() {
        assert!(doc.tests.is_empty(), "tests without a version line");
    }
    assert_eq!(doc.counts().total(), doc.leaves().len(), "counts vs leaves");
}

/// What the verdict is made of: every result with its name, status and place in the tree.
fn results(nodes: &[TestNode], path: &str, out: &mut Vec<String>) {
    for n in nodes {
        let p = format!("{path}/{}#{}", n.name, n.number);
        out.push(format!("{p} {:?}", n.status));
        results(&n.subtests, &p, out);
    }
}

fn shape(doc: &Document) -> Vec<String> {
    let mut v = Vec::new();
    results(&doc.tests, "", &mut v);
    v
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    let strict = parse(&text);
    check(&strict, lines);
    let lenient = parse_log(&text);
    check(&lenient, lines);
    if strict.problems.is_empty() {
        assert_eq!(shape(&strict), shape(&lenient), "lenient reading of a clean log differs");
    }
    let is_version = |l: &str| {
        let n = l
            .strip_prefix("KTAP version ")
            .or_else(|| l.strip_prefix("TAP version "));
        n.is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()) && n.parse::<u32>().is_ok())
    };
    let version_at_column_0 = text
        .lines()
        .find(|l| l.contains("TAP version"))
        .is_some_and(is_version);
    if version_at_column_0 && !text.contains(['[', ']', '\r']) {
        let prefixed: String = text
            .lines()
            .map(|l| format!("[    1.234567] {l}\n"))
            .collect();
        let again = parse(&prefixed);
        assert_eq!(shape(&again), shape(&strict), "a printk prefix changed the results");
        assert_eq!(
            again.problems.len(),
            strict.problems.len(),
            "a printk prefix changed the problems: {:?} vs {:?}",
            again.problems,
            strict.problems
        );
    }
    let mut c = LineClassifier::new();
    for l in text.lines() {
        let _ = c.classify(l);
    }
});
