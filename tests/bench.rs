//! `cvmprobe bench`: its first line names the machine, and a platform whose runs fail is
//! reported failed in its row (exit 1) while every other figure is still measured and printed.

mod common;
use common::*;

#[test]
fn a_failing_platform_keeps_the_other_figures() {
    if !kvm_or_skip("a_failing_platform_keeps_the_other_figures") {
        return;
    }
    if !qemu_or_skip("a_failing_platform_keeps_the_other_figures") {
        return;
    }
    // broken-backend breaks the simulated platforms' port reads only: their full-suite runs
    // fail, the legacy and QEMU ones still pass.
    let o = cvmprobe(&[
        "bench",
        "--no-images",
        "--runs",
        "5",
        "--append",
        "cvmprobe.inject=broken-backend",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let first = out.lines().next().unwrap_or("");
    assert!(first.starts_with("machine: "), "{}", text(&o));
    assert!(
        first.contains("physical addresses") && first.contains("KVM "),
        "{first}"
    );
    let row = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no row `{name}`\n{}", text(&o)))
            .to_string()
    };
    for name in [
        "built-in VMM, empty kernel",
        "built-in VMM, full legacy suite",
        "QEMU PVH microvm/kvm, full legacy suite",
    ] {
        let r = row(name);
        let figures: Vec<f64> = r[name.len() + 2..]
            .split_whitespace()
            .map(|f| f.parse().unwrap_or_else(|_| panic!("`{r}`")))
            .collect();
        assert_eq!(figures.len(), 3, "median, min, max: {r}");
        assert!(figures.iter().all(|&f| f > 0.0), "{r}");
    }
    for sim in ["tdx-sim", "sev-es-sim"] {
        let r = row(&format!("built-in VMM, full suite on {sim}"));
        assert!(r.contains("FAILED: "), "{r}");
    }
    // The legacy ratio is still computed; the summary lists exactly the two failures.
    assert!(row("full suite / empty kernel, built-in VMM").contains('x'));
    assert!(out.contains("\nfailed (2):\n"), "{}", text(&o));
}
