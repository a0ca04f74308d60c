//! The kernel's UEFI hand-off entry, booted from the state firmware leaves after
//! ExitBootServices (`vmm::boot_efi`): 64-bit mode, firmware identity tables (the C-bit on
//! private RAM under sev-es-sim), a UEFI memory map with unaccepted memory under tdx-sim (and
//! no memslot behind it), the GHCB MSR holding the firmware's GHCB, an empty IDT. The full
//! suite must pass on every platform, at the host's width and at 39 and 46 bits, with the same
//! results as the PVH boot.
//!
//! Needs `/dev/kvm` and the kernel ELF (see `tests/common`); `CVMPROBE_NO_KVM=1` skips.

use protocol::platform::PlatformKind;
use std::path::Path;
use std::time::Duration;
use vmm::{Boot, ExitReason, RunReport, VmConfig};

mod common;

fn boot(kernel: &Path, platform: PlatformKind, phys_bits: Option<u8>, how: Boot) -> RunReport {
    let mut cfg = VmConfig::new(kernel);
    cfg.platform = platform;
    cfg.phys_bits = phys_bits;
    cfg.boot = how;
    cfg.cmdline = format!("cvmprobe.platform={}", platform.name());
    cfg.timeout = Duration::from_secs(60);
    vmm::run(&cfg, &mut |_| {}).expect("VMM setup")
}

/// `(case, ok)` for every result line of depth 1, in order.
fn results(serial: &str) -> Vec<(String, bool)> {
    serial
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("    ")?;
            let ok = l.starts_with("ok ");
            (ok || l.starts_with("not ok ")).then(|| {
                let name = l
                    .split_whitespace()
                    .nth(if ok { 2 } else { 3 })
                    .unwrap_or("");
                let skip = l.contains("# SKIP");
                (format!("{name}{}", if skip { " (skip)" } else { "" }), ok)
            })
        })
        .collect()
}

const HANDOFF: Boot = Boot::EfiHandoff(vmm::boot_efi::HandoffOptions { la57: false });

#[test]
fn the_full_suite_passes_through_the_handoff_as_through_pvh() {
    if !common::kvm_or_skip("the_full_suite_passes_through_the_handoff_as_through_pvh") {
        return;
    }
    let kernel = common::kernel("handoff");
    let host = vmm::host_phys_bits().expect("host width");
    for platform in PlatformKind::ALL {
        let pvh = boot(&kernel, platform, None, Boot::Pvh);
        let want = results(&String::from_utf8_lossy(&pvh.serial));
        assert!(want.len() > 60, "{}", want.len());
        let widths: Vec<Option<u8>> = match platform {
            PlatformKind::Legacy => vec![None],
            _ => [None, Some(39), Some(46)]
                .into_iter()
                .filter(|w| w.is_none_or(|b| b <= host))
                .collect(),
        };
        for w in widths {
            let r = boot(&kernel, platform, w, HANDOFF);
            let serial = String::from_utf8_lossy(&r.serial);
            let name = format!("{} at {:?} bits", vmm::sim_name(platform), w);
            assert_eq!(r.exit, ExitReason::GuestExit(0), "{name}\n{serial}");
            assert!(
                r.host_verdict_ok(),
                "{name}: {:?} {:?}",
                r.case_checks,
                r.host_problems
            );
            assert_eq!(
                results(&serial),
                want,
                "{name}: same cases and results as PVH"
            );
            assert!(
                serial.contains("ok 9 memslot"),
                "{name}: the memslot scenario ran on the hand-off's identity map\n{serial}"
            );
            if platform == PlatformKind::SevEs {
                // The guest's own GHCB replaced the firmware's in the MSR.
                assert!(r.stats.msr > 0, "{name}: {:?}", r.stats);
            }
            if platform != PlatformKind::Legacy {
                assert_eq!(r.stats.io, 0, "{name}: no raw port IO: {:?}", r.stats);
            }
        }
    }
}

#[test]
fn five_level_firmware_tables_where_the_host_offers_la57() {
    if !common::kvm_or_skip("five_level_firmware_tables_where_the_host_offers_la57") {
        return;
    }
    let kernel = common::kernel("la57");
    let mut cfg = VmConfig::new(&kernel);
    cfg.platform = PlatformKind::Tdx;
    cfg.cmdline = "cvmprobe.platform=tdx cvmprobe.filter=platform,io,memslot".into();
    cfg.boot = Boot::EfiHandoff(vmm::boot_efi::HandoffOptions { la57: true });
    match vmm::run(&cfg, &mut |_| {}) {
        Ok(r) => {
            let serial = String::from_utf8_lossy(&r.serial);
            assert_eq!(r.exit, ExitReason::GuestExit(0), "{serial}");
            assert!(r.host_verdict_ok(), "{:?}", r.host_problems);
        }
        Err(vmm::VmmError::Config(e)) if e.contains("no LA57") => {
            eprintln!("five_level_firmware_tables_where_the_host_offers_la57: skipped: {e}");
        }
        // Seen on the software-nested kvm_pvm hosts: CPUID offers LA57, CR4 refuses it.
        Err(e) if e.to_string().contains("KVM_SET_SREGS") => {
            eprintln!(
                "five_level_firmware_tables_where_the_host_offers_la57: skipped: this host's \
                 KVM refuses CR4.LA57 ({e}) although its CPUID offers it"
            );
        }
        Err(e) => panic!("{e}"),
    }
}
