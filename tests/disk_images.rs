//! The BIOS disk image of the same kernel, booted under QEMU with SeaBIOS: same suites, same
//! case count as `cvmprobe list` (and as PVH), the command line reaching the kernel through the
//! image's ramdisk; and a clear line when OVMF is missing for the UEFI disk image (`--boot
//! uefi`, the ESP with cvmprobe.efi, whose runs are in tests/efi.rs). Without QEMU these tests
//! skip visibly (and fail under CI).

mod common;
use common::*;

fn boot(kind: &str, accel: Option<&str>, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--boot", kind, "--timeout", "300s", "--verbose"];
    if let Some(a) = accel {
        args.extend(["--accel", a]);
    }
    args.extend_from_slice(extra);
    cvmprobe(&args)
}

fn assert_full_pass(o: &std::process::Output, accel: &str) {
    use protocol::catalog::{Expected, Filter, MEMSLOT, Needs, planned};
    use protocol::platform::PlatformKind;
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    let (passed, failed, skipped, not_run, total) = verdict_counts(o);
    assert_eq!(
        total,
        listed_cases(""),
        "same case count as `cvmprobe list`\n{}",
        text(o)
    );
    assert_eq!((failed, not_run), (0, 0), "{}", text(o));
    // On `pc` the edu device is present, so only the cases the catalog keeps for TDX or
    // SEV-ES, the host-value and memslot cases (built-in VMM only) and, under TCG, the two
    // RDMSR cases skip.
    let mut want: Vec<String> = planned(PlatformKind::Legacy, Needs::ALL, Filter::ALL)
        .filter(|(_, _, e)| *e == Expected::SkippedForPlatform)
        .map(|(s, c, _)| format!("{}.{}", s.name, c.name))
        .chain(["io.host_values".into(), "mmio.host_values".into()])
        .chain(MEMSLOT.cases.iter().map(|c| format!("memslot.{}", c.name)))
        .collect();
    if accel == "tcg" {
        want.extend(["msr.tsc_advances".into(), "msr.missing_msr_faults".into()]);
    }
    want.sort();
    let out = String::from_utf8_lossy(&o.stdout);
    let mut got: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("SKIPPED "))
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect();
    got.sort();
    assert_eq!(got, want, "{}", text(o));
    assert_eq!(
        (passed, skipped),
        (total - want.len(), want.len()),
        "{}",
        text(o)
    );
    for c in MEMSLOT.cases {
        assert!(
            out.contains(&format!(
                "SKIPPED memslot.{}: needs the built-in VMM's test device",
                c.name
            )),
            "the memslot scenario is the built-in VMM's\n{}",
            text(o)
        );
    }
}

#[test]
fn bios_image_tcg() {
    if qemu_or_skip("bios_image_tcg") {
        assert_full_pass(&boot("bios", Some("tcg"), &[]), "tcg");
    }
}

#[test]
fn bios_image_kvm() {
    if qemu_or_skip("bios_image_kvm") && kvm_or_skip("bios_image_kvm") {
        assert_full_pass(&boot("bios", Some("kvm"), &[]), "kvm");
    }
}

#[test]
fn filter_reaches_the_image_kernel() {
    if !qemu_or_skip("filter_reaches_the_image_kernel") {
        return;
    }
    let o = boot("bios", Some("tcg"), &["--filter", "io.u8_*,halt"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        verdict_counts(&o).4,
        listed_cases("io.u8_*,halt"),
        "{}",
        text(&o)
    );
}

#[test]
fn missing_ovmf_is_one_clear_line() {
    let o = cvmprobe(&[
        "run",
        "--boot",
        "uefi",
        "--accel",
        "tcg",
        "--ovmf",
        "/nonexistent/OVMF_CODE_4M.fd",
    ]);
    let line = error_line(&o);
    assert!(
        line.contains("OVMF firmware not found") && line.contains("apt-get install ovmf"),
        "{line}"
    );
}

#[test]
fn microvm_cannot_boot_a_disk() {
    let o = cvmprobe(&["run", "--boot", "bios", "--machine", "microvm"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("use --machine pc"),
        "{}",
        text(&o)
    );
}
