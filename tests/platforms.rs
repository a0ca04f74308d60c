//! `cvmprobe run --platform ...`: the same kernel passes its clean suites on legacy, tdx-sim and
//! sev-es-sim, reporting every case of the catalog on each, with exactly the skips the catalog
//! and the environment explain.

mod common;
use common::*;
use protocol::catalog::{self, Expected, Filter, Needs};
use protocol::platform::PlatformKind;

/// The `--verbose` list of one platform's skipped cases in a `--platform all` run.
fn block<'a>(out: &'a str, name: &str) -> &'a str {
    let head = format!("== skipped on {name} ==");
    let start = out
        .find(&head)
        .unwrap_or_else(|| panic!("no `{head}`\n{out}"));
    let rest = out[start + head.len()..].trim_start_matches('\n');
    let end = rest.find("\n\n").unwrap_or(rest.len());
    &rest[..end]
}

/// The verdict line of one platform.
fn verdict_of<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with("verdict:") && l.contains(&format!("built-in VMM, {name},")))
        .unwrap_or_else(|| panic!("{name}: no verdict\n{out}"))
}

/// The skipped case names of one block (`SKIPPED suite.case: reason`).
fn skipped(block: &str) -> Vec<String> {
    let mut v: Vec<String> = block
        .lines()
        .filter_map(|l| l.strip_prefix("SKIPPED "))
        .map(|l| l.split(':').next().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn all_platforms_pass_with_the_same_cases() {
    if !kvm_or_skip("all_platforms_pass_with_the_same_cases") {
        return;
    }
    let o = cvmprobe(&["run", "--platform", "all", "--timeout", "60s", "--verbose"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("verdict per platform: legacy PASS, tdx-sim PASS, sev-es-sim PASS"),
        "{}",
        text(&o)
    );
    let total = listed_cases("");
    for p in PlatformKind::ALL {
        let name = vmm::sim_name(p);
        let b = block(&out, name);
        let line = verdict_of(&out, name);
        assert!(line.contains(&format!("(of {total})")), "{name}: {line}");
        assert!(line.contains(" 0 failed, "), "{name}: {line}");
        assert!(line.contains(" 0 not run"), "{name}: {line}");
        // Skipped: the cases the catalog keeps off this platform, and the edu PCI device
        // (QEMU only). Nothing else.
        let mut want: Vec<String> = catalog::planned(p, Needs::ALL, Filter::ALL)
            .filter(|(_, _, e)| *e == Expected::SkippedForPlatform)
            .map(|(s, c, _)| format!("{}.{}", s.name, c.name))
            .chain(["mmio.pci_edu".to_string()])
            .collect();
        want.sort();
        assert_eq!(skipped(b), want, "{name}\n{b}");
        for s in skipped(b) {
            assert!(
                b.contains(&format!("SKIPPED {s}: ")),
                "{name}: {s} has a reason"
            );
        }
    }
}

#[test]
fn simulated_platforms_are_builtin_only() {
    let o = cvmprobe(&["run", "--platform", "tdx-sim", "--vmm", "qemu"]);
    let e = error_line(&o);
    assert!(e.contains("--platform tdx-sim"), "{e}");
    assert!(e.contains("runs the legacy platform only"), "{e}");
    let o = cvmprobe(&["run", "--platform", "sev-es-sim", "--accel", "tcg"]);
    assert!(error_line(&o).contains("--platform sev-es-sim"));
    let o = cvmprobe(&["run", "--platform", "sev"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("tdx-sim"),
        "the valid values are listed: {err}"
    );
}

#[test]
fn raw_port_io_fails_the_run_with_its_rip() {
    if !kvm_or_skip("raw_port_io_fails_the_run_with_its_rip") {
        return;
    }
    let o = cvmprobe(&[
        "run",
        "--platform",
        "sev-es-sim",
        "--append",
        "cvmprobe.inject=raw-port-io@mmio.u8_roundtrip",
    ]);
    // The guest takes the #VC hardware raises (error code 0x7b) and bails out; the host
    // names the instruction.
    assert_fault_report(&o, "#VC for an exit code other than NPF (0x7b)");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("host: raw IN from port 0xf00 (1 byte) under sev-es-sim at RIP 0xffffffff80"),
        "{}",
        text(&o)
    );
}

#[test]
fn narrower_vcpus_run_the_same_cases() {
    if !kvm_or_skip("narrower_vcpus_run_the_same_cases") {
        return;
    }
    // The CLI path of the forced width (the VMM's tests cover 39, 46 and 48 bits in depth).
    let o = cvmprobe(&["run", "--platform", "all", "--phys-bits", "39"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let total = listed_cases("");
    for (name, note) in [
        ("legacy", None),
        ("tdx-sim", Some("GPAW 39, non-architectural")),
        ("sev-es-sim", Some("C-bit 38, no real part's")),
    ] {
        let line = verdict_of(&out, name);
        assert!(line.starts_with("verdict: PASS"), "{line}");
        assert!(line.contains(&format!("(of {total})")), "{line}");
        assert!(line.contains(", 39-bit vCPU"), "{line}");
        if let Some(n) = note {
            assert!(line.contains(n), "{line}");
        }
    }
    // A width the host's KVM cannot give a vCPU is refused before anything runs.
    let o = cvmprobe(&["run", "--platform", "tdx-sim", "--phys-bits", "52"]);
    let host = vmm::host_phys_bits().unwrap();
    if host < 52 {
        let e = error_line(&o);
        assert!(
            e.contains("52 physical-address bits is wider than this host"),
            "{e}"
        );
    }
    let o = cvmprobe(&["run", "--vmm", "qemu", "--phys-bits", "46"]);
    assert!(error_line(&o).contains("--phys-bits"));
}
