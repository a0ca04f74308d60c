//! Boots the real kernel under QEMU PVH (microvm and pc, KVM and TCG) and checks the verdict
//! and the exact case count against `cvmprobe list`; a QEMU that does not attach the test
//! device the runner asked for, or stops on a KVM internal error, fails the run. Without QEMU
//! these tests skip visibly (and fail under CI).

mod common;
use common::*;

fn boot(machine: &str, accel: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "run",
        "--machine",
        machine,
        "--accel",
        accel,
        "--timeout",
        "120s",
        "--verbose",
    ];
    args.extend_from_slice(extra);
    cvmprobe(&args)
}

/// The cases QEMU cannot run, and why: the cases the catalog keeps for TDX or SEV-ES (the
/// platform cases and the raw `ghci_raw` / `ghcb_raw` suites); the host-value cases need the
/// built-in VMM's test device, the memslot suite its memslot scenario; microvm has no PCI
/// bus for edu; TCG's RDMSR returns 0 instead of #GP.
fn expected_skips(machine: &str, accel: &str) -> Vec<String> {
    use protocol::catalog::{Expected, Filter, Needs, planned};
    use protocol::platform::PlatformKind;
    let mut v: Vec<String> = planned(PlatformKind::Legacy, Needs::ALL, Filter::ALL)
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
    let want = expected_skips(machine, accel);
    assert_eq!(skipped_names(&o), want, "{}", text(&o));
    assert_eq!(
        (passed, skipped),
        (total - want.len(), want.len()),
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
    if qemu_or_skip("microvm_kvm_passes") && kvm_or_skip("microvm_kvm_passes") {
        assert_passes("microvm", "kvm");
    }
}

#[test]
fn microvm_tcg_passes() {
    if qemu_or_skip("microvm_tcg_passes") {
        assert_passes("microvm", "tcg");
    }
}

#[test]
fn pc_kvm_passes() {
    if qemu_or_skip("pc_kvm_passes") && kvm_or_skip("pc_kvm_passes") {
        assert_passes("pc", "kvm");
    }
}

#[test]
fn pc_tcg_passes() {
    if !qemu_or_skip("pc_tcg_passes") {
        return;
    }
    assert_passes("pc", "tcg");
    // On `pc` the edu PCI device is present, so the PCI case runs instead of skipping.
    let o = boot("pc", "tcg", &["--filter", "mmio.pci_edu"]);
    assert_eq!(verdict_counts(&o), (1, 0, 0, 0, 1), "{}", text(&o));
}

#[test]
fn filter_selects_exactly() {
    if !qemu_or_skip("filter_selects_exactly") {
        return;
    }
    let o = boot("microvm", "tcg", &["--filter", "io.u8_*,cpuid"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (_, _, _, _, total) = verdict_counts(&o);
    assert_eq!(total, listed_cases("io.u8_*,cpuid"));
    assert_eq!(total, 1 + protocol::catalog::CPUID.cases.len());
}

#[test]
fn junit_has_every_case() {
    if !qemu_or_skip("junit_has_every_case") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.xml");
    let o = boot("microvm", "tcg", &["--junit", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let xml = std::fs::read_to_string(&path).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), listed_cases(""), "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");
}

/// A QEMU wrapper script in `dir`: `body` runs with the real QEMU's path in `$QEMU`.
fn fake_qemu(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let real = cvmprobe::tools::find_qemu().expect("QEMU was found");
    let path = dir.join("qemu-system-x86_64");
    let script = format!(
        "#!/bin/bash\nQEMU={}\necho \"$*\" >> {}\n{body}\n",
        real.display(),
        dir.join("calls").display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The command lines the fake QEMU in `dir` was started with.
fn fake_calls(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_qemu_that_drops_the_test_device_fails_the_run() {
    if !qemu_or_skip("a_qemu_that_drops_the_test_device_fails_the_run") {
        return;
    }
    // The runner asks for -device pc-testdev; this QEMU starts without it, so the guest finds
    // no test device and skips the io and mmio cases that need one.
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_qemu(
        dir.path(),
        r#"args=(); for a in "$@"; do if [ "$a" = pc-testdev ]; then unset 'args[-1]'; else args+=("$a"); fi; done
exec "$QEMU" "${args[@]}""#,
    );
    let o = cvmprobe(&[
        "run",
        "--vmm",
        "qemu",
        "--accel",
        "tcg",
        "--filter",
        "io,mmio",
        "--qemu",
        fake.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let reason = protocol::catalog::Need::TestDevice.reason();
    for case in [
        "io.u32_roundtrip",
        "mmio.u8_roundtrip",
        "mmio.narrow_write_merge",
    ] {
        assert!(
            out.contains(&format!("FAILED  {case}\n")),
            "{case}\n{}",
            text(&o)
        );
    }
    assert!(
        out.contains(&format!(
            "host: the host provides test-device (-device pc-testdev on the QEMU command line; \
             QEMU -M microvm -accel tcg (PVH)), but the guest reported SKIP: {reason}"
        )),
        "{}",
        text(&o)
    );
    // What the environment lacks may still skip: no edu on microvm, no built-in test device.
    assert!(!out.contains("FAILED  mmio.pci_edu"), "{}", text(&o));
    assert!(!out.contains("FAILED  io.host_values"), "{}", text(&o));
    // io.unassigned_port needs no device: it ran and passed.
    assert!(!out.contains("FAILED  io.unassigned_port"), "{}", text(&o));
    assert_eq!(fake_calls(dir.path()).len(), 1);
}

#[test]
fn a_kvm_internal_error_is_the_result_unless_tcg_fallback_is_asked() {
    if !qemu_or_skip("a_kvm_internal_error_is_the_result_unless_tcg_fallback_is_asked") {
        return;
    }
    // Under -accel kvm this QEMU reports a KVM internal error and stops the VM, as QEMU does
    // (it pauses, waiting); under TCG it runs the real QEMU.
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_qemu(
        dir.path(),
        r#"case " $* " in *" -accel kvm "*) echo "KVM internal error. Suberror: 1" >&2; exec sleep 60;; esac
exec "$QEMU" "$@""#,
    );
    let base = [
        "run",
        "--accel",
        "kvm",
        "--filter",
        "cpuid",
        "--qemu",
        fake.to_str().unwrap(),
    ];
    let o = cvmprobe(&base);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the KVM failure is the result\n{}",
        text(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("KVM internal error. Suberror: 1"),
        "{}",
        text(&o)
    );
    assert!(out.contains("verdict: FAIL"), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the run fails with it") && err.contains("--tcg-fallback"),
        "{}",
        text(&o)
    );
    assert_eq!(fake_calls(dir.path()).len(), 1, "no silent rerun");

    let mut with = base.to_vec();
    with.push("--tcg-fallback");
    let o = cvmprobe(&with);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let verdict = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find(|l| l.starts_with("verdict:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        verdict.contains("qemu microvm/tcg")
            && verdict.contains("TCG rerun (--tcg-fallback) after a KVM internal error"),
        "the verdict is labelled TCG's: {verdict}\n{}",
        text(&o)
    );
    let calls = fake_calls(dir.path());
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls[1].contains("-accel kvm") && calls[2].contains("-accel tcg"));
}

#[test]
fn qemu_tests_skip_visibly_without_qemu_and_fail_when_required() {
    // Not a QEMU test itself: it runs one in a child with QEMU pointed at nothing.
    let missing = [("CVMPROBE_QEMU", "/nonexistent/qemu-system-x86_64")];
    let o = rerun_test(
        "microvm_tcg_passes",
        &missing,
        &["CI", "CVMPROBE_REQUIRE_QEMU"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("SKIPPED microvm_tcg_passes: /nonexistent/qemu-system-x86_64 does not run")
            && err.contains("sudo apt-get install qemu-system-x86"),
        "the skip is visible through cargo's capture\n{}",
        text(&o)
    );
    let required = [missing[0], ("CVMPROBE_REQUIRE_QEMU", "1")];
    let o = rerun_test("microvm_tcg_passes", &required, &["CI"]);
    assert!(
        !o.status.success(),
        "required QEMU tests fail\n{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("needs QEMU"),
        "{}",
        text(&o)
    );
}
