//! The BIOS disk image of the same kernel, booted under QEMU with SeaBIOS: same suites, same
//! case count as `cvmprobe list` (and as PVH), the command line reaching the kernel through the
//! image's ramdisk; and a clear line when OVMF is missing for the UEFI disk image (`--boot
//! uefi`, the ESP with cvmprobe.efi, whose runs are in tests/efi.rs).

mod common;
use common::*;

fn boot(kind: &str, accel: Option<&str>, extra: &[&str]) -> std::process::Output {
    need_qemu();
    let mut args = vec!["run", "--boot", kind, "--timeout", "300s"];
    if let Some(a) = accel {
        args.extend(["--accel", a]);
    }
    args.extend_from_slice(extra);
    cvmprobe(&args)
}

fn assert_full_pass(o: &std::process::Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    let (passed, failed, skipped, not_run, total) = verdict_counts(o);
    assert_eq!(
        total,
        listed_cases(""),
        "same case count as `cvmprobe list`\n{}",
        text(o)
    );
    assert_eq!((failed, not_run), (0, 0), "{}", text(o));
    assert_eq!(passed + skipped, total);
    // On `pc` the edu device is present, so only the host-value and memslot cases (built-in
    // VMM only) and the cases the catalog keeps for TDX or SEV-ES (platform cases, raw
    // conformance suites) skip, plus TCG's RDMSR limitation (two cases).
    let not_for_legacy = protocol::catalog::planned(
        protocol::platform::PlatformKind::Legacy,
        protocol::catalog::Filter::ALL,
    )
    .filter(|(_, _, e)| *e == protocol::catalog::Expected::SkippedForPlatform)
    .count();
    let memslot = protocol::catalog::MEMSLOT.cases.len();
    assert!(skipped <= not_for_legacy + 2 + 2 + memslot, "{}", text(o));
    let out = String::from_utf8_lossy(&o.stdout);
    for c in protocol::catalog::MEMSLOT.cases {
        assert!(
            out.contains(&format!(
                "SKIPPED memslot.{}: needs the built-in VMM",
                c.name
            )),
            "the memslot scenario is the built-in VMM's\n{}",
            text(o)
        );
    }
    assert!(
        !out.contains("SKIPPED mmio.pci_edu"),
        "edu is found through PCI\n{}",
        text(o)
    );
    assert!(
        !out.contains("SKIPPED cpuid.brand_string"),
        "the brand key arrived through the ramdisk\n{}",
        text(o)
    );
    assert!(
        !out.contains("SKIPPED platform.detected"),
        "the platform key arrived\n{}",
        text(o)
    );
}

#[test]
fn bios_image_tcg() {
    assert_full_pass(&boot("bios", Some("tcg"), &[]));
}

#[test]
fn bios_image_kvm() {
    if kvm_or_skip("bios_image_kvm") {
        assert_full_pass(&boot("bios", Some("kvm"), &[]));
    }
}

#[test]
fn filter_reaches_the_image_kernel() {
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
