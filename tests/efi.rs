//! `cvmprobe.efi` under OVMF (TCG: OVMF does not run under these hosts' KVM), booted with
//! `-kernel` and from an ESP image by the runner and by a QEMU command line written here by
//! hand; the built-in VMM's UEFI hand-off through the CLI; the confidential-host recipes and
//! check; the ELF facts the loader relies on. Without QEMU or OVMF the OVMF tests skip visibly
//! (and fail under CI).

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const APP: &str = env!("CVMPROBE_EFI_APP");
const KERNEL: &str = env!("CVMPROBE_KERNEL_ELF");

/// A full legacy pass through OVMF: every case reported, none failed, the command line arrived
/// (the host-chosen brand and the platform key), edu found on the PCI bus.
fn assert_full_pass(o: &std::process::Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    let (passed, failed, skipped, not_run, total) = verdict_counts(o);
    assert_eq!(total, listed_cases(""), "{}", text(o));
    assert_eq!((failed, not_run), (0, 0), "{}", text(o));
    assert_eq!(passed + skipped, total);
    assert!(passed >= 20, "{}", text(o));
    let out = String::from_utf8_lossy(&o.stdout);
    for must_run in ["cpuid.brand_string", "platform.detected", "mmio.pci_edu"] {
        assert!(
            !out.contains(&format!("SKIPPED {must_run}")),
            "{must_run}\n{}",
            text(o)
        );
    }
}

/// Whether an OVMF test should run (QEMU and OVMF present, or skipped visibly).
fn ovmf_test(test: &str) -> bool {
    qemu_or_skip(test) && ovmf_or_skip(test)
}

/// `cvmprobe.efi` booted `how` (`efi`: QEMU `-kernel`; `esp`: from an ESP image) under OVMF
/// with TCG: the full legacy suite passes, and the verdict names the boot.
fn ovmf_run(how: &str) -> std::process::Output {
    let o = cvmprobe(&[
        "run",
        "--vmm",
        "qemu",
        "--boot",
        how,
        "--accel",
        "tcg",
        "--timeout",
        "300s",
        "--verbose",
    ]);
    assert_full_pass(&o);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("qemu pc/tcg, {how}")),
        "{}",
        text(&o)
    );
    o
}

#[test]
fn efi_app_with_kernel_option_under_ovmf() {
    if !ovmf_test("efi_app_with_kernel_option_under_ovmf") {
        return;
    }
    let o = ovmf_run("efi");
    // The same cases skip, with the same reasons, as the kernel booted through PVH on the
    // same machine: the UEFI path loses nothing.
    let pvh = cvmprobe(&[
        "run",
        "--vmm",
        "qemu",
        "--machine",
        "pc",
        "--accel",
        "tcg",
        "--verbose",
    ]);
    let skips = |o: &std::process::Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("SKIPPED "))
            .map(String::from)
            .collect()
    };
    assert!(
        !skips(&o).is_empty(),
        "--verbose lists the skips\n{}",
        text(&o)
    );
    assert_eq!(skips(&o), skips(&pvh), "{}\n{}", text(&o), text(&pvh));
    assert_eq!(verdict_counts(&o), verdict_counts(&pvh));
}

#[test]
fn efi_app_from_an_esp_image_under_ovmf() {
    if !ovmf_test("efi_app_from_an_esp_image_under_ovmf") {
        return;
    }
    ovmf_run("esp");
}

#[test]
fn uefi_tests_skip_visibly_without_ovmf_and_fail_when_required() {
    // Not an OVMF test itself: it runs one in a child with OVMF pointed at nothing.
    let test = "efi_app_from_an_esp_image_under_ovmf";
    let missing = [("CVMPROBE_OVMF", "/nonexistent/OVMF_CODE_4M.fd")];
    let o = rerun_test(test, &missing, &["CI", "CVMPROBE_REQUIRE_QEMU"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let qemu_missing = err.contains(&format!("SKIPPED {test}: ")) && err.contains("does not run");
    assert!(
        qemu_missing
            || (err.contains(&format!("SKIPPED {test}: OVMF not found at /nonexistent"))
                && err.contains("sudo apt-get install ovmf")),
        "{}",
        text(&o)
    );
    let required = [missing[0], ("CVMPROBE_REQUIRE_QEMU", "1")];
    let o = rerun_test(test, &required, &["CI"]);
    assert!(
        !o.status.success(),
        "required UEFI tests fail\n{}",
        text(&o)
    );
}

/// A QEMU line the runner did not write (q35, `-bios` with the combined OVMF image, more RAM,
/// no VGA), as a user would type it from the README: the guest must pass the selected suites
/// and end through the exit port with status (0 << 1) | 1.
#[test]
fn efi_app_with_a_hand_written_qemu_line() {
    if !ovmf_test("efi_app_with_a_hand_written_qemu_line") {
        return;
    }
    let bios = ["/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF.fd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("the ovmf package's OVMF.fd (apt-get install ovmf)");
    let start = Instant::now();
    let mut child = Command::new(cvmprobe::tools::qemu_binary())
        .args([
            "-machine", "q35", "-accel", "tcg", "-m", "512M", "-bios", bios,
        ])
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .args([
            "-kernel",
            APP,
            "-append",
            "cvmprobe.platform=legacy cvmprobe.filter=platform,io,cpuid,halt",
        ])
        .args([
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-device",
            "pc-testdev",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("qemu starts");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(300) {
            child.kill().unwrap();
            panic!("QEMU hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let serial = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        status.code(),
        Some(1),
        "{serial}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(serial.contains("KTAP version 1"), "{serial}");
    assert!(!serial.contains("not ok"), "{serial}");
    for suite in ["platform", "io", "cpuid", "halt"] {
        assert!(
            serial
                .lines()
                .any(|l| l.starts_with("ok ") && l.split_whitespace().nth(2) == Some(suite)),
            "{suite}: {serial}"
        );
    }
    assert!(
        !serial.contains("# Subtest: mmio"),
        "the filter arrived as load options: {serial}"
    );
}

#[test]
fn the_handoff_through_the_cli_on_every_platform() {
    if !kvm_or_skip("the_handoff_through_the_cli_on_every_platform") {
        return;
    }
    let o = cvmprobe(&["run", "--boot", "efi-handoff", "--platform", "all"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("verdict per platform: legacy PASS, tdx-sim PASS, sev-es-sim PASS"),
        "{}",
        text(&o)
    );
    assert_eq!(out.matches(", efi-handoff, ").count(), 3, "{}", text(&o));
    let o = cvmprobe(&["run", "--vmm", "qemu", "--boot", "efi-handoff"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(error_line(&o).contains("built-in VMM"), "{}", text(&o));
}

#[test]
fn confidential_dry_runs_carry_what_qemus_docs_require() {
    let o = cvmprobe(&["run", "--vmm", "qemu", "--confidential", "tdx", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().next().unwrap();
    for want in [
        "-accel kvm",
        "-cpu host",
        "q35,kernel-irqchip=split,confidential-guest-support=tdx0",
        "-object tdx-guest,id=tdx0",
        "-bios ",
        &format!("-kernel {APP}"),
        "-append cvmprobe.platform=tdx",
    ] {
        assert!(line.contains(want), "{want}: {line}");
    }
    let o = cvmprobe(&[
        "run",
        "--vmm",
        "qemu",
        "--confidential",
        "sev-es",
        "--dry-run",
        "--filter",
        "io",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().next().unwrap();
    for want in [
        "q35,confidential-guest-support=sev0",
        "-object sev-guest,id=sev0,cbitpos=",
        ",reduced-phys-bits=",
        ",policy=0x5",
        "'cvmprobe.platform=sev-es cvmprobe.filter=io'",
    ] {
        assert!(line.contains(want), "{want}: {line}");
    }
    assert!(!line.contains("kernel-irqchip=split"), "{line}");
}

/// Without the hardware the run exits 2 and names every missing piece; on a host that has
/// everything this test says it cannot check that.
#[test]
fn a_host_without_the_hardware_is_refused_with_what_it_lacks() {
    use cvmprobe::confidential::{Confidential, HostFacts, check};
    for kind in [Confidential::Tdx, Confidential::SevEs] {
        let facts = HostFacts::read(kind, &cvmprobe::tools::qemu_binary(), None);
        let missing = check(kind, &facts);
        if missing.is_empty() {
            eprintln!("SKIPPED: this host can start {} guests", kind.name());
            continue;
        }
        let o = cvmprobe(&[
            "run",
            "--vmm",
            "qemu",
            "--confidential",
            kind.name(),
            "--filter",
            "io",
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("nothing was started"), "{err}");
        for m in &missing {
            assert!(err.contains(&m.what), "{}: {err}", m.what);
        }
        assert!(!err.contains("KTAP"), "no guest ran: {err}");
    }
}

/// The loader's ELF reader (no_std, `protocol::elf`) agrees with the `object` crate on the
/// real kernel: the range it allocates and the entry it jumps to.
#[test]
fn the_loaders_elf_reader_agrees_with_object() {
    use object::{Object, ObjectSegment, ObjectSymbol};
    let bytes = std::fs::read(KERNEL).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(protocol::efi::ENTRY_SYMBOL))
        .expect("the kernel exports the hand-off entry");
    assert_eq!(
        protocol::elf::symbol(&bytes, protocol::efi::ENTRY_SYMBOL),
        Ok(Some(sym.address()))
    );
    let segs: Vec<_> = protocol::elf::load_segments(&bytes).unwrap().collect();
    let theirs: Vec<_> = file.segments().collect();
    assert_eq!(segs.len(), theirs.len());
    for (m, t) in segs.iter().zip(&theirs) {
        assert_eq!((m.vaddr, m.memsz), (t.address(), t.size()));
        assert_eq!(m.offset, t.file_range().0);
    }
    let (lo, hi) = protocol::elf::load_range(&bytes).unwrap();
    assert_eq!(lo, 0x10_0000, "linker.ld's load address");
    let entry = protocol::elf::phys_of(&bytes, sym.address())
        .unwrap()
        .unwrap();
    assert!((lo..hi).contains(&entry));
    assert_eq!(
        entry,
        sym.address() - 0xffff_ffff_8000_0000,
        "the entry runs at its physical address"
    );
}
