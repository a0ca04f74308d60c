//! The hostile host (`--hostile SEED`, `cvmprobe fuzz-host`): the simulated TDX and SEV-ES
//! hosts lie at a seeded subset of answers, and the guest must reject every lie by naming its
//! request (from a validator or a test's expectation), report no other failure, never crash
//! or hang. This is CI's bounded hostile slice; the long run and
//! its figures are in the README ("Hostile host").

mod common;
use common::*;

/// The value of a `name: N` line of the fuzz-host totals block (the last one: the total).
fn total(out: &str, name: &str) -> u64 {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no `{name}:` line\n{out}"));
    line[name.len() + 1..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad `{name}:` line: {line}"))
}

/// Seeds of the CI slice: fixed, so a failure reproduces with the printed command.
const SLICE_SEED: &str = "1000";
const SLICE_RUNS: u64 = 24;

/// `cvmprobe fuzz-host` over `runs` seeds from [`SLICE_SEED`] on `platform`, two at a time,
/// with `extra` arguments: the exit code and stdout, and the whole output for messages.
fn fuzz_host(platform: &str, runs: u64, extra: &[&str]) -> (Option<i32>, String, String) {
    let runs = runs.to_string();
    let mut args = vec![
        "fuzz-host",
        "--platform",
        platform,
        "--runs",
        &runs,
        "--seed",
        SLICE_SEED,
        "--jobs",
        "2",
    ];
    args.extend_from_slice(extra);
    let o = cvmprobe(&args);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        text(&o),
    )
}

#[test]
fn fuzz_host_slice_catches_every_lie_on_both_sims() {
    if !kvm_or_skip("fuzz_host_slice_catches_every_lie_on_both_sims") {
        return;
    }
    let (code, out, all) = fuzz_host("all", SLICE_RUNS, &[]);
    assert_eq!(code, Some(0), "{all}");
    assert!(
        out.contains("== tdx-sim ==") && out.contains("== sev-es-sim =="),
        "{out}"
    );
    assert_eq!(total(&out, "runs"), SLICE_RUNS);
    let lies = total(&out, "lies told");
    assert!(
        lies >= 100,
        "a slice this size tells at least 100 lies: {lies}\n{out}"
    );
    // Every lie is accounted for: named by a rejection, harmless and rightly ignored, or cut
    // short by a clean bail-out; none missed.
    let caught = total(&out, "lies caught");
    let accounted = caught + total(&out, "harmless lies") + total(&out, "cut by bail-out");
    assert_eq!(accounted, lies, "{out}");
    for zero in ["lies missed", "false alarms", "crashes", "hangs"] {
        assert_eq!(total(&out, zero), 0, "{zero}\n{out}");
    }
    // Both kinds of rejection are at work: validators catch malformed answers, and only a
    // test's expectation can catch a refused request answered "success".
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("lies caught:"))
        .unwrap();
    let by = |what: &str| -> u64 {
        line.split(what)
            .nth(1)
            .and_then(|r| r.trim_start().split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"))
    };
    let (validator, expectation) = (by("by a validator"), by("by a test's expectation"));
    assert_eq!(validator + expectation, caught, "{line}");
    assert!(validator > 0 && expectation > 0, "{line}");
    assert!(out.contains("fuzz-host verdict: PASS"), "{out}");
}

#[test]
fn a_removed_guest_validation_is_caught_by_the_slice() {
    if !kvm_or_skip("a_removed_guest_validation_is_caught_by_the_slice") {
        return;
    }
    // The guest stops checking that read answers fit their width: lies of that kind now
    // pass unnoticed, and the slice must say so.
    let (code, out, all) = fuzz_host(
        "all",
        SLICE_RUNS,
        &["--append", "cvmprobe.inject=no-width-check"],
    );
    assert_eq!(code, Some(1), "{all}");
    assert!(total(&out, "lies missed") > 0, "{out}");
    assert!(out.contains("fuzz-host verdict: FAIL"), "{out}");
    let missed: Vec<&str> = out.lines().filter(|l| l.contains("MISSED:")).collect();
    assert!(!missed.is_empty(), "{out}");
    assert!(
        missed.iter().all(|l| l.contains(": wide-value to ")),
        "only wide-value lies go unnoticed without the width check:\n{}",
        missed.join("\n")
    );
    // The failing run is named with the command that reproduces it.
    assert!(
        out.contains("-- run ") && out.contains(" --hostile "),
        "{out}"
    );
}

#[test]
fn a_ghcb_double_fetch_is_caught_by_the_rewrite_lie() {
    if !kvm_or_skip("a_ghcb_double_fetch_is_caught_by_the_rewrite_lie") {
        return;
    }
    // The guest reads SW_EXITINFO1 and the valid bitmap a second time after copying the
    // answer; the host rewrites the page just before such a second read, so the guest acts
    // on garbage and the case fails although only harmless lies were told to it.
    let rate = ["--lie-rate", "0.2"];
    let inject = ["--append", "cvmprobe.inject=ghcb-double-fetch"];
    let (code, out, all) = fuzz_host("sev-es-sim", 6, &[&rate[..], &inject[..]].concat());
    assert_eq!(code, Some(1), "{all}");
    assert!(total(&out, "false alarms") > 0, "{out}");
    assert!(out.contains("(a double fetch?)"), "{out}");
    // The same seeds without the double fetch: every rewrite goes unnoticed, as it must.
    let (code, out, all) = fuzz_host("sev-es-sim", 6, &rate);
    assert_eq!(code, Some(0), "{all}");
    assert!(
        out.contains("ghcb-rewrite "),
        "the slice tells rewrite lies: {out}"
    );
}

#[test]
fn run_hostile_prints_each_lie_and_its_own_verdict() {
    if !kvm_or_skip("run_hostile_prints_each_lie_and_its_own_verdict") {
        return;
    }
    for platform in ["tdx-sim", "sev-es-sim"] {
        let o = cvmprobe(&[
            "run",
            "--platform",
            platform,
            "--hostile",
            "7",
            "--lie-rate",
            "0.1",
        ]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        // Lied-to cases fail, so the guest's verdict is FAIL; the run's is the hostile one.
        assert_eq!(o.status.code(), Some(0), "{platform}\n{}", text(&o));
        assert!(out.contains("verdict: FAIL"), "{platform}\n{out}");
        assert!(out.contains("hostile verdict: PASS"), "{platform}\n{out}");
        let lies: Vec<&str> = out.lines().filter(|l| l.starts_with("  lie: ")).collect();
        assert!(!lies.is_empty(), "{platform}\n{out}");
        // Every lied-to case is reported failed (or not reached after a clean bail-out),
        // except where the only lie is a GHCB rewritten after the guest read it, and its
        // report names the lie's request in a rejection note.
        for l in lies.iter().filter(|l| !l.contains(": ghcb-rewrite to ")) {
            let case = l["  lie: ".len()..].split(':').next().unwrap();
            if out.contains(&format!("NOT RUN {case}:")) {
                continue;
            }
            assert!(
                out.contains(&format!("FAILED  {case}")),
                "{platform}: {case} was lied to but is not reported failed\n{out}"
            );
            let seq: u64 = l
                .split(" to request ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no request number: {l}"));
            let named = out.lines().any(|d| {
                protocol::ktap::parse_reject_note(d.trim_start())
                    .is_some_and(|(_, first, last)| (first..=last).contains(&seq))
            });
            assert!(named, "{platform}: no rejection names request {seq}\n{out}");
        }
    }
}

#[test]
fn hostile_needs_a_simulated_platform() {
    let o = cvmprobe(&["run", "--platform", "legacy", "--hostile", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("--hostile needs --platform tdx-sim or sev-es-sim"),
        "{}",
        text(&o)
    );
    let o = cvmprobe(&["fuzz-host", "--platform", "legacy", "--runs", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = cvmprobe(&["run", "--lie-rate", "0.5"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--lie-rate without --hostile: {}",
        text(&o)
    );
}
