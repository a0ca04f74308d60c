//! The platforms the guest can run on, and sets of them.

/// The confidential-computing platform the guest detected at boot (or the host simulates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlatformKind {
    /// A plain VM: loads/stores and `in`/`out` are intercepted by the host directly.
    Legacy,
    /// Intel TDX: requests go through `TDCALL` (TDG.VP.VMCALL, GHCI).
    Tdx,
    /// AMD SEV-ES: requests go through the GHCB (MSR protocol and GHCB page) and `VMGEXIT`.
    SevEs,
}

impl PlatformKind {
    /// Every platform, in the order the host runs them for `--platform all`.
    pub const ALL: [PlatformKind; 3] = [Self::Legacy, Self::Tdx, Self::SevEs];

    /// The short name used in KTAP diagnostics (`# platform: tdx ...`) and case listings.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Legacy => "legacy",
            Self::Tdx => "tdx",
            Self::SevEs => "sev-es",
        }
    }

    /// Parses [`Self::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    const fn bit(self) -> u8 {
        match self {
            Self::Legacy => 1,
            Self::Tdx => 2,
            Self::SevEs => 4,
        }
    }
}

/// The narrowest physical-address width (CPUID 0x80000008 EAX\[7:0\]) the simulated platforms
/// support: 36, the width the Intel SDM (vol. 3A 4.1.4) assumes when the leaf is absent, and
/// the oldest PAE parts had. The sims put their shared bit / C-bit at the top address bit, so
/// RAM, the MMIO windows below 4 GiB and the C-bit alias all fit from here up.
pub const PHYS_BITS_MIN: u8 = 36;
/// The widest physical-address width x86-64 defines (Intel SDM vol. 3A 4.1.4, MAXPHYADDR at
/// most 52; AMD APM vol. 2 5.3.1).
pub const PHYS_BITS_MAX: u8 = 52;

/// A set of platforms (which platforms run a case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Platforms(u8);

impl Platforms {
    /// Runs everywhere.
    pub const ALL: Self = Self(1 | 2 | 4);
    /// Legacy VMs only.
    pub const LEGACY: Self = Self::only(PlatformKind::Legacy);
    /// TDX only.
    pub const TDX: Self = Self::only(PlatformKind::Tdx);
    /// SEV-ES only.
    pub const SEV_ES: Self = Self::only(PlatformKind::SevEs);

    /// The set holding `p` alone.
    pub const fn only(p: PlatformKind) -> Self {
        Self(p.bit())
    }

    /// Whether `p` is in the set.
    pub const fn contains(self, p: PlatformKind) -> bool {
        self.0 & p.bit() != 0
    }

    /// The platforms in the set, in [`PlatformKind::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = PlatformKind> {
        PlatformKind::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in PlatformKind::ALL {
            assert_eq!(PlatformKind::from_name(p.name()), Some(p));
        }
        assert_eq!(PlatformKind::from_name("sev"), None);
    }

    #[test]
    fn sets() {
        assert!(Platforms::ALL.contains(PlatformKind::Tdx));
        assert!(!Platforms::LEGACY.contains(PlatformKind::SevEs));
        assert_eq!(Platforms::TDX.iter().count(), 1);
        assert_eq!(Platforms::ALL.iter().count(), 3);
    }
}
