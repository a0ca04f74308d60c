//! What the host set up for one run: the platform, the VMM and accelerator, and each
//! [`Need`] of the catalog it provides, with how. The verdict compares it with what the guest
//! reported: a case whose needs this environment provides must run (`report::Summary::from_run`).

use protocol::catalog::{Need, Needs};
use protocol::platform::PlatformKind;

/// The environment of one run, as the runner set it up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// The platform the host set up.
    pub platform: PlatformKind,
    /// Who runs the guest, for messages: `the built-in VMM (tdx-sim)`, `QEMU -M microvm -accel
    /// kvm`.
    pub runner: String,
    /// Every need provided, with how (`-device pc-testdev on the QEMU command line`).
    pub provided: Vec<(Need, String)>,
}

impl Environment {
    /// The set of needs provided.
    pub fn needs(&self) -> Needs {
        self.provided
            .iter()
            .fold(Needs::NONE, |set, (n, _)| set.with(*n))
    }

    /// How `need` is provided, if it is.
    pub fn how(&self, need: Need) -> Option<&str> {
        self.provided
            .iter()
            .find(|(n, _)| *n == need)
            .map(|(_, how)| how.as_str())
    }

    /// The built-in KVM VMM on `platform`, starting the kernel by `boot`: its test device,
    /// memslot scenario, identity map (the kernel's own after PVH, the rebuilt firmware's
    /// after the UEFI hand-off), brand string, platform key, APIC timer, and KVM's MSR
    /// behaviour; no PCI bus (so no edu).
    pub fn builtin(platform: PlatformKind, boot: vmm::Boot) -> Self {
        let device = "the built-in VMM's test device (port-IO 0xd100, MMIO 0xd0000000)";
        let provided = vec![
            (Need::TestDevice, device.to_string()),
            (Need::BuiltinTestDevice, device.to_string()),
            (
                Need::MemslotControl,
                "the built-in VMM's memslot control port".to_string(),
            ),
            (
                Need::IdentityMap,
                match boot {
                    vmm::Boot::Pvh => "PVH boot of the kernel ELF by the built-in VMM",
                    vmm::Boot::EfiHandoff(_) => {
                        "the firmware identity tables of the built-in VMM's UEFI hand-off"
                    }
                }
                .to_string(),
            ),
            (
                Need::Brand,
                "cvmprobe.brand= on the kernel command line (CPUID set by the built-in VMM)"
                    .to_string(),
            ),
            (
                Need::PlatformKey,
                "cvmprobe.platform= on the kernel command line".to_string(),
            ),
            (
                Need::LocalApic,
                "the built-in VMM's local APIC timer".to_string(),
            ),
            (Need::ExactMsrs, "KVM (not QEMU's TCG)".to_string()),
        ];
        Self {
            platform,
            runner: match boot {
                vmm::Boot::Pvh => format!("the built-in VMM ({})", vmm::sim_name(platform)),
                other => format!(
                    "the built-in VMM ({}, {})",
                    vmm::sim_name(platform),
                    other.name()
                ),
            },
            provided,
        }
    }

    /// One line per need: `name: how`, for `--verbose`.
    pub fn describe(&self) -> Vec<String> {
        Need::ALL
            .iter()
            .map(|n| match self.how(*n) {
                Some(how) => format!("{}: {how}", n.name()),
                None => format!("{}: not provided", n.name()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_provides_all_but_edu() {
        let e = Environment::builtin(PlatformKind::Tdx, vmm::Boot::Pvh);
        for n in Need::ALL {
            assert_eq!(e.needs().contains(n), n != Need::EduPci, "{n:?}");
        }
        assert!(e.runner.contains("tdx-sim"));
        assert_eq!(e.describe().len(), Need::ALL.len());
        // The UEFI hand-off provides the same: the memslot page sits on the firmware's
        // identity map (vmm/tests/efi_handoff.rs runs the memslot suite through it).
        let h = Environment::builtin(
            PlatformKind::SevEs,
            vmm::Boot::EfiHandoff(Default::default()),
        );
        assert_eq!(h.needs(), e.needs());
        assert!(h.how(Need::IdentityMap).unwrap().contains("hand-off"));
        assert!(h.runner.contains("efi-handoff"), "{}", h.runner);
    }
}
