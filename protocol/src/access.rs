//! Access widths and directions, shared by the guest's I/O API and the host's device models.

/// The size of one MMIO or port-IO access. A closed set: x86 moves 1, 2, 4 or 8 bytes
/// (port IO: 1, 2 or 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Width {
    /// 1 byte.
    B1 = 1,
    /// 2 bytes.
    B2 = 2,
    /// 4 bytes.
    B4 = 4,
    /// 8 bytes (MMIO only).
    B8 = 8,
}

impl Width {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self as u64
    }

    /// The width of `n` bytes, if it is one.
    pub const fn from_bytes(n: u64) -> Option<Self> {
        match n {
            1 => Some(Self::B1),
            2 => Some(Self::B2),
            4 => Some(Self::B4),
            8 => Some(Self::B8),
            _ => None,
        }
    }

    /// All ones in this width (`0xff`, `0xffff`, ...).
    pub const fn mask(self) -> u64 {
        match self {
            Self::B8 => u64::MAX,
            w => (1u64 << (w.bytes() * 8)) - 1,
        }
    }

    /// Whether `v` fits in this width (a host answer wider than the access is a lie).
    pub const fn fits(self, v: u64) -> bool {
        v & !self.mask() == 0
    }
}

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Device to CPU (IN, MMIO load).
    Read,
    /// CPU to device (OUT, MMIO store).
    Write,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_fits() {
        assert_eq!(Width::B1.mask(), 0xff);
        assert_eq!(Width::B4.mask(), 0xffff_ffff);
        assert_eq!(Width::B8.mask(), u64::MAX);
        assert!(Width::B1.fits(0xff));
        assert!(!Width::B1.fits(0x1_0000_0000));
        assert!(Width::B8.fits(u64::MAX));
        for n in 0..16 {
            assert_eq!(
                Width::from_bytes(n).map(Width::bytes),
                [1, 2, 4, 8].contains(&n).then_some(n)
            );
        }
    }
}
