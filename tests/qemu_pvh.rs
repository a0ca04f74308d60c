//! Boots the real kernel under QEMU PVH (microvm and pc, KVM and TCG) and checks the verdict
//! and the exact case count against `cvmprobe list`.

mod common;
use common::*;

fn boot(machine: &str, accel: &str, extra: &[&str]) -> std::process::Output {
    need_qemu();
    let mut args = vec![
        "run",
        "--machine",
        machine,
        "--accel",
        accel,
        "--timeout",
        "120s",
    ];
    args.extend_from_slice(extra);
    cvmprobe(&args)
}

/// The cases QEMU cannot run, and why: the cases the catalog keeps for TDX or SEV-ES (the
/// platform cases and the raw `ghci_raw` / `ghcb_raw` suites); the host-value cases need the
/// built-in VMM's test device, the memslot suite its memslot scenario; microvm has no PCI
/// bus for edu; TCG's RDMSR returns 0 instead of #GP.
fn expected_skips(machine: &str, accel: &str) -> Vec<String> {
    use protocol::catalog::{Expected, Filter, planned};
    use protocol::platform::PlatformKind;
    let mut v: Vec<String> = planned(PlatformKind::Legacy, Filter::ALL)
        .filter(|(_, _, e)| *e == Expected::SkippedForPlatform)
        .map(|(s, c, _)| format!("{}.{}", s.name, c.name))
        .collect();
    v.extend(["io.host_values".into(), "mmio.host_values".into()]);
    // The memslot scenario is the built-in VMM's (its memslot thread and control port).
    v.extend(
        protocol::catalog::MEMSLOT
            .cases
            .iter()
            .map(|c| format!("memslot.{}", c.name)),
    );
    if machine == "microvm" {
        v.push("mmio.pci_edu".into());
    }
    if accel == "tcg" {
        v.extend(["msr.tsc_advances".into(), "msr.missing_msr_faults".into()]);
    }
    v.sort();
    v
}

fn skipped_names(o: &std::process::Output) -> Vec<String> {
    let out = String::from_utf8_lossy(&o.stdout);
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("SKIPPED "))
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn assert_passes(machine: &str, accel: &str) {
    let o = boot(machine, accel, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (passed, failed, skipped, not_run, total) = verdict_counts(&o);
    assert_eq!(
        total,
        listed_cases(""),
        "case count differs from `cvmprobe list`\n{}",
        text(&o)
    );
    assert_eq!((failed, not_run), (0, 0), "{}", text(&o));
    assert_eq!(passed + skipped, total);
    assert_eq!(
        skipped_names(&o),
        expected_skips(machine, accel),
        "{}",
        text(&o)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("verdict: PASS"), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("-M {machine} -accel {accel}")),
        "QEMU command line is printed\n{}",
        text(&o)
    );
}

#[test]
fn microvm_kvm_passes() {
    if kvm_or_skip("microvm_kvm_passes") {
        assert_passes("microvm", "kvm");
    }
}

#[test]
fn microvm_tcg_passes() {
    assert_passes("microvm", "tcg");
}

#[test]
fn pc_kvm_passes() {
    if kvm_or_skip("pc_kvm_passes") {
        assert_passes("pc", "kvm");
    }
}

#[test]
fn pc_tcg_passes() {
    assert_passes("pc", "tcg");
    // On `pc` the edu PCI device is present, so the PCI case runs instead of skipping.
    let o = boot("pc", "tcg", &["--filter", "mmio.pci_edu"]);
    assert_eq!(verdict_counts(&o), (1, 0, 0, 0, 1), "{}", text(&o));
}

#[test]
fn filter_selects_exactly() {
    let o = boot("microvm", "tcg", &["--filter", "io.u8_*,cpuid"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (_, _, _, _, total) = verdict_counts(&o);
    assert_eq!(total, listed_cases("io.u8_*,cpuid"));
    assert_eq!(total, 1 + protocol::catalog::CPUID.cases.len());
}

#[test]
fn junit_has_every_case() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.xml");
    let o = boot("microvm", "tcg", &["--junit", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let xml = std::fs::read_to_string(&path).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), listed_cases(""), "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");
}
