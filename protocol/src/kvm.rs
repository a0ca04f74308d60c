//! KVM releases whose answers to the guest's requests differ: the profiles the simulated
//! hosts can play (`cvmprobe run --kvm PROFILE`) and the eras of the conformance table
//! ([`crate::conformance`]).
//!
//! A profile is named by the first release that behaves so, and covers every release up to
//! the next profile. What changed, and where it was read (Linux `arch/x86/kvm/svm/sev.c`,
//! `arch/x86/kvm/vmx/tdx.c`):
//!
//! | profile | first release | SEV-ES | TDX |
//! |---|---|---|---|
//! | `6.10` | v5.11 (SEV-ES host support) .. v6.10 | no SEV-SNP host support: SNP-only exit codes are unknown (INVALID_EVENT after the SW_EXITCODE/INFO1/INFO2 valid bits), SNP-only MSR codes leave the MSR | no TDX support (KVM TDX landed in v6.16) |
//! | `6.11` | v6.11 (SEV-SNP host support) | `sev_es_validate_vmgexit()`: SNP-only exit codes fail `!sev_snp_guest()` under MISSING_INPUT; SNP-only MSR codes end the VM (SEV_TERM); no GHCB v2 limits | no TDX support |
//! | `6.16` | v6.16 (TDX host support) | as `6.11` | `tdx_complete_vmcall_map_gpa()`: any VMM error -> INVALID_OPERAND; the x2APIC ranges of `tdx_has_emulated_msr()` before the 2026-03 fix |
//! | `current` | kvm-x86/linux at 1a27afa0511e (sev.c) / 09c6f74ecb86 (tdx.c), 2026 | `sev_handle_vmgexit()` checks `is_snp_only_vmgexit()` before any valid bit: INVALID_EVENT; the 2026 GHCB v2 limits (scratch inside the GHCB, MMIO <= 8 bytes) | MapGPA: EAGAIN -> RETRY, EINVAL -> INVALID_OPERAND; the fixed x2APIC ranges |
//!
//! The SEV-ES rewrite's first release could not be pinned: it is absent from gregkh/linux at
//! 00b9744a3688 (which already has the vCPU-scoped `is_sev_snp_guest()` of the v7.1 cycle and
//! the GHCB v2 scratch limit) and present in kvm-x86/linux at 1a27afa0511e; the git history
//! that would date it (`git log -S is_snp_only_vmgexit`) is an 8.6 GB mirror, beyond what
//! this project's tools can fetch. Hosts between those points (and stable kernels that took
//! the GHCB v2 fix) answer some rows as one profile and others as another: the guest reports
//! the era of each answer and fails only an answer no release gives.
//!
//! Pre-releases are not profiles: v6.16-rc1 answered an unknown TDVMCALL sub-function with
//! INVALID_OPERAND, which no release did (v6.16 answers SUBFUNC_UNSUPPORTED).

/// `cvmprobe.kvm=<profile>`: the guest expects exactly this KVM's answers in the conformance
/// suites (the built-in VMM sets it to the profile its sims play). Without it the guest
/// accepts any release's answer and reports which one it matched.
pub const KEY_KVM: &str = "cvmprobe.kvm";

/// A KVM release whose answers the sims can give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KvmProfile {
    /// v6.10 and older (SEV-ES host support without SEV-SNP).
    V6_10,
    /// v6.11 up to v6.15 (SEV-SNP host support, `sev_es_validate_vmgexit()`).
    V6_11,
    /// v6.16 up to the 2026 changes (TDX host support).
    V6_16,
    /// Current upstream (kvm-x86 next, 2026).
    Current,
}

impl KvmProfile {
    /// Every profile, oldest first.
    pub const ALL: [KvmProfile; 4] = [Self::V6_10, Self::V6_11, Self::V6_16, Self::Current];

    /// The name on the command line (`--kvm`, `cvmprobe.kvm=`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::V6_10 => "6.10",
            Self::V6_11 => "6.11",
            Self::V6_16 => "6.16",
            Self::Current => "current",
        }
    }

    /// Parses [`Self::name`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The releases the profile stands for, for messages and the README.
    pub const fn releases(self) -> &'static str {
        match self {
            Self::V6_10 => "v6.10 and older",
            Self::V6_11 => "v6.11-v6.15",
            Self::V6_16 => "v6.16 up to the 2026 changes",
            Self::Current => "current upstream (kvm-x86, 2026)",
        }
    }

    /// Whether this KVM can run a TD at all (KVM TDX host support landed in v6.16).
    pub const fn has_tdx(self) -> bool {
        matches!(self, Self::V6_16 | Self::Current)
    }

    /// Bit of this profile in a [`Kvms`] set.
    pub const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`KvmProfile`]s: the releases that give one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kvms(pub u8);

impl Kvms {
    /// Every profile.
    pub const ALL: Kvms = Kvms(0b1111);
    /// No profile.
    pub const NONE: Kvms = Kvms(0);

    /// Exactly `p`.
    pub const fn only(p: KvmProfile) -> Kvms {
        Kvms(p.bit())
    }

    /// `from` and every later profile.
    pub const fn since(from: KvmProfile) -> Kvms {
        Kvms(Self::ALL.0 & !(from.bit() - 1))
    }

    /// Every profile before `to`.
    pub const fn before(to: KvmProfile) -> Kvms {
        Kvms(to.bit() - 1)
    }

    /// The profiles in both.
    pub const fn and(self, o: Kvms) -> Kvms {
        Kvms(self.0 & o.0)
    }

    /// Whether `p` is in the set.
    pub const fn contains(self, p: KvmProfile) -> bool {
        self.0 & p.bit() != 0
    }

    /// The set's members, oldest first.
    pub fn iter(self) -> impl Iterator<Item = KvmProfile> {
        KvmProfile::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }

    /// A short label: "all releases", "current", "6.11-6.16", "6.10", "6.10, current".
    pub fn label(self, buf: &mut [u8; 48]) -> &str {
        let mut n = 0;
        let mut push = |s: &str, n: &mut usize| {
            for &b in s.as_bytes() {
                if *n < buf.len() {
                    buf[*n] = b;
                    *n += 1;
                }
            }
        };
        if self.0 & Self::ALL.0 == Self::ALL.0 {
            push("all releases", &mut n);
        } else {
            // Runs of consecutive profiles as "first-last".
            let all = KvmProfile::ALL;
            let mut i = 0;
            let mut first = true;
            while i < all.len() {
                if !self.contains(all[i]) {
                    i += 1;
                    continue;
                }
                let mut j = i;
                while j + 1 < all.len() && self.contains(all[j + 1]) {
                    j += 1;
                }
                if !first {
                    push(", ", &mut n);
                }
                first = false;
                push(all[i].name(), &mut n);
                if j > i {
                    push("-", &mut n);
                    push(all[j].name(), &mut n);
                }
                i = j + 1;
            }
        }
        core::str::from_utf8(&buf[..n]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order() {
        for p in KvmProfile::ALL {
            assert_eq!(KvmProfile::parse(p.name()), Some(p));
        }
        assert_eq!(KvmProfile::parse("6.12"), None);
        assert!(KvmProfile::V6_10 < KvmProfile::Current);
        assert!(!KvmProfile::V6_11.has_tdx());
        assert!(KvmProfile::V6_16.has_tdx());
    }

    #[test]
    fn sets() {
        use KvmProfile::*;
        assert_eq!(Kvms::since(V6_10), Kvms::ALL);
        assert_eq!(
            Kvms::since(V6_11).iter().collect::<Vec<_>>(),
            [V6_11, V6_16, Current]
        );
        assert_eq!(Kvms::before(V6_11).iter().collect::<Vec<_>>(), [V6_10]);
        assert_eq!(Kvms::before(V6_10), Kvms::NONE);
        let mut b = [0; 48];
        assert_eq!(Kvms::ALL.label(&mut b), "all releases");
        assert_eq!(
            Kvms::since(V6_11).and(Kvms::before(Current)).label(&mut b),
            "6.11-6.16"
        );
        assert_eq!(
            Kvms(V6_10.bit() | Current.bit()).label(&mut b),
            "6.10, current"
        );
        assert_eq!(Kvms::only(Current).label(&mut b), "current");
    }
}
