//! Where a simulated platform puts its address bits: the TDX shared bit (GPAW - 1) and the
//! SEV C-bit, chosen from the vCPU's physical-address width (CPUID 0x80000008 EAX\[7:0\]).
//!
//! Both sims run on plain KVM, where the shared bit and the C-bit are ordinary address bits of
//! the guest's page tables: a PTE with a bit at or above the vCPU's MAXPHYADDR set is a
//! reserved-bit #PF (Intel SDM vol. 3A 4.5.4, AMD APM vol. 2 5.3.1; seen as error code 0x9
//! for bit 47 on a 46-bit host). So the bit must lie below the width, and the real platforms'
//! positions fit only on wide vCPUs:
//!
//! | vCPU width | tdx-sim GPAW (shared bit) | sev-es-sim C-bit |
//! | --- | --- | --- |
//! | 52 | 52 (51), architectural | 51, as on Genoa |
//! | 48..=51 | 48 (47), architectural | 47, as on Milan |
//! | 36..=47 | the width (width - 1), **non-architectural** | width - 1 |
//!
//! The TDX module reports GPAW 48 or 52 only (TDX module ABI spec, TDG.VP.INFO), so on a
//! narrower vCPU tdx-sim reports a width no real TD has; it declares that to the guest
//! (`protocol::cmdline::KEY_SIM_PHYS_BITS`), which accepts it only then and says so. The C-bit
//! position is whatever CPUID 0x8000001F EBX\[5:0\] says (AMD APM vol. 2 15.34.1); real parts
//! use 47 or 51, and a C-bit that is an address bit costs the guest one bit of GPA space
//! (Linux commit 76ff371b67cb, "KVM: SVM: Revert clearing of C-bit on GPA in #NPF handler"),
//! which is what the top bit does here: guest RAM stays below it, and its alias at the C-bit
//! is the vCPU's top half.

use protocol::platform::{PHYS_BITS_MAX, PHYS_BITS_MIN, PlatformKind};
use protocol::tdx::Gpaw;
use std::fmt;

/// A vCPU physical-address width the simulated platforms support
/// ([`PHYS_BITS_MIN`]..=[`PHYS_BITS_MAX`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressWidth(u8);

/// A width outside what the simulated platforms support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsupportedWidth(pub u8);

impl fmt::Display for UnsupportedWidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} physical-address bits is outside the {PHYS_BITS_MIN}..={PHYS_BITS_MAX} the \
             simulated platforms support",
            self.0
        )
    }
}

impl AddressWidth {
    /// The width of `bits`, if the sims support it.
    pub const fn new(bits: u8) -> Result<Self, UnsupportedWidth> {
        if bits >= PHYS_BITS_MIN && bits <= PHYS_BITS_MAX {
            Ok(Self(bits))
        } else {
            Err(UnsupportedWidth(bits))
        }
    }

    /// The width in bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The GPAW tdx-sim reports in TDG.VP.INFO: 52 or 48 where the vCPU holds it, else the
    /// width itself (non-architectural, see the module documentation).
    pub const fn tdx_gpaw(self) -> u32 {
        if self.0 >= 52 {
            52
        } else if self.0 >= 48 {
            48
        } else {
            self.0 as u32
        }
    }

    /// Whether [`Self::tdx_gpaw`] is one the TDX module reports.
    pub const fn tdx_gpaw_is_architectural(self) -> bool {
        self.0 >= 48
    }

    /// The TDX shared bit, `1 << (GPAW - 1)`.
    pub const fn tdx_shared_bit(self) -> u64 {
        1 << (self.tdx_gpaw() - 1)
    }

    /// The C-bit position sev-es-sim reports (CPUID 0x8000001F EBX\[5:0\], the SEV information
    /// response): 51 (Genoa) or 47 (Milan) where the vCPU holds it, else the top address bit.
    pub const fn sev_cbit(self) -> u8 {
        if self.0 >= 52 {
            protocol::ghcb::CBIT_GENOA
        } else if self.0 >= 48 {
            protocol::ghcb::CBIT_MILAN
        } else {
            self.0 - 1
        }
    }

    /// Whether [`Self::sev_cbit`] is a position AMD parts use.
    pub const fn sev_cbit_is_real(self) -> bool {
        self.0 >= 48
    }

    /// The bit `platform`'s page tables set on GPAs that differ from plain RAM: the TDX shared
    /// bit, the SEV C-bit, nothing on legacy.
    pub const fn platform_bit(self, platform: PlatformKind) -> u64 {
        match platform {
            PlatformKind::Legacy => 0,
            PlatformKind::Tdx => self.tdx_shared_bit(),
            PlatformKind::SevEs => 1 << self.sev_cbit(),
        }
    }

    /// A note for the run's output when `platform` uses a value no real part has on a vCPU
    /// this wide (`tdx-sim: GPAW 46, non-architectural: ...`), else `None`.
    pub fn note(self, platform: PlatformKind) -> Option<String> {
        match platform {
            PlatformKind::Tdx if !self.tdx_gpaw_is_architectural() => Some(format!(
                "tdx-sim: GPAW {}, non-architectural (the TDX module reports 48 or 52): the \
                 vCPU has {} physical address bits, so the shared bit is bit {}",
                self.tdx_gpaw(),
                self.0,
                self.tdx_gpaw() - 1
            )),
            PlatformKind::SevEs if !self.sev_cbit_is_real() => Some(format!(
                "sev-es-sim: C-bit {} (AMD parts use 47 or 51): the vCPU has {} physical \
                 address bits",
                self.sev_cbit(),
                self.0
            )),
            _ => None,
        }
    }

    /// The same as [`Self::note`] in a few words, for a verdict line (`GPAW 46,
    /// non-architectural`).
    pub fn brief(self, platform: PlatformKind) -> Option<String> {
        match platform {
            PlatformKind::Tdx if !self.tdx_gpaw_is_architectural() => {
                Some(format!("GPAW {}, non-architectural", self.tdx_gpaw()))
            }
            PlatformKind::SevEs if !self.sev_cbit_is_real() => {
                Some(format!("C-bit {}, no real part's", self.sev_cbit()))
            }
            _ => None,
        }
    }

    /// The GPAW as the guest's validator sees it (checks the sim and the guest agree).
    pub fn tdx_gpaw_as_guest_sees_it(self) -> Option<Gpaw> {
        Gpaw::simulated(u64::from(self.tdx_gpaw()), Some(self.0))
    }
}

impl fmt::Display for AddressWidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bits", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_width() -> impl Iterator<Item = AddressWidth> {
        (PHYS_BITS_MIN..=PHYS_BITS_MAX).map(|b| AddressWidth::new(b).unwrap())
    }

    #[test]
    fn widths_outside_the_range_are_refused() {
        for b in [0, 32, 35, 53, 64, 255] {
            assert_eq!(AddressWidth::new(b), Err(UnsupportedWidth(b)));
        }
        assert!(UnsupportedWidth(35).to_string().contains("36..=52"));
    }

    #[test]
    fn architectural_values_where_they_fit() {
        let w = |b| AddressWidth::new(b).unwrap();
        assert_eq!((w(52).tdx_gpaw(), w(52).sev_cbit()), (52, 51));
        assert_eq!((w(48).tdx_gpaw(), w(48).sev_cbit()), (48, 47));
        assert_eq!((w(50).tdx_gpaw(), w(50).sev_cbit()), (48, 47));
        assert_eq!((w(46).tdx_gpaw(), w(46).sev_cbit()), (46, 45));
        assert_eq!((w(39).tdx_gpaw(), w(39).sev_cbit()), (39, 38));
        assert_eq!(w(46).tdx_shared_bit(), 1 << 45);
        assert!(w(48).note(PlatformKind::Tdx).is_none());
        assert!(w(48).note(PlatformKind::SevEs).is_none());
        let n = w(46).note(PlatformKind::Tdx).unwrap();
        assert!(n.starts_with("tdx-sim: GPAW 46, non-architectural"), "{n}");
        assert!(
            w(39)
                .note(PlatformKind::SevEs)
                .unwrap()
                .contains("C-bit 38")
        );
        assert!(w(39).note(PlatformKind::Legacy).is_none());
        assert_eq!(
            w(46).brief(PlatformKind::Tdx).as_deref(),
            Some("GPAW 46, non-architectural")
        );
        assert!(w(48).brief(PlatformKind::SevEs).is_none());
    }

    /// The property the whole module exists for: every bit a sim sets in a guest page table
    /// lies below the vCPU's width (else a reserved-bit #PF), and the guest accepts the GPAW.
    #[test]
    fn every_bit_fits_the_vcpu_and_the_guest_accepts_it() {
        for w in every_width() {
            let top = 1u64 << w.bits();
            for p in PlatformKind::ALL {
                assert!(w.platform_bit(p) < top, "{w} {p:?}");
            }
            // The shared bit and the C-bit stay above the low 4 GiB the guest maps as RAM
            // and MMIO (protocol::ghcb::CBIT_MIN is 32).
            assert!(w.tdx_shared_bit().trailing_zeros() >= u32::from(protocol::ghcb::CBIT_MIN));
            assert!(w.sev_cbit() >= protocol::ghcb::CBIT_MIN);
            let g = w
                .tdx_gpaw_as_guest_sees_it()
                .expect("the guest accepts the declared GPAW");
            assert_eq!(g.bits(), w.tdx_gpaw());
            assert_eq!(g.is_architectural(), w.tdx_gpaw_is_architectural());
            // Without the declaration a real TD's check refuses every narrow width.
            assert_eq!(
                Gpaw::new(u64::from(w.tdx_gpaw())).is_some(),
                w.tdx_gpaw_is_architectural()
            );
        }
    }
}
