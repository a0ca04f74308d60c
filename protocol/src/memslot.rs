//! The memslot-deletion scenario (KVM selftests' `set_memory_region_test`, DESIGN.md "The
//! host"): the built-in VMM gives the guest one page of RAM in a memslot of its own, deletes
//! the memslot while the vCPU loops over the page (from a second thread) and re-creates it.
//! While it is gone the page is emulated MMIO: the VMM answers reads with a marker and logs
//! writes. On TDX and SEV-ES that MMIO reaches the guest as #VE / #VC, the one case where a
//! confidential guest legitimately emulates MMIO in an exception handler.
//!
//! Guest and host share this page's facts: where it is, what RAM holds at the start
//! ([`ram_value`]), what the emulated page answers ([`marker_value`]), what the guest writes
//! while the page is MMIO ([`write_value`]), and the control port's commands.

use crate::access::Width;
use crate::testdev::splitmix64;

/// GPA of the page: in the top GiB below 4 GiB, which the VMM keeps free of RAM, below the
/// test device's MMIO window. On TDX the VMM maps it at `GPA | shared bit` and the guest maps
/// it shared (Linux `tdx_early_init()`: MMIO lives in shared memory), so the TDX module
/// reports the EPT violation on a shared GPA.
pub const GPA: u64 = 0xc800_0000;
/// Bytes in the memslot (one page).
pub const SIZE: u64 = 0x1000;

/// The control port (4-byte accesses): read [`CONTROL_ID`] to detect the scenario; write a
/// command (`command::*`).
pub const CONTROL_PORT: u16 = 0xd120;
/// What a read of [`CONTROL_PORT`] returns when the host runs the scenario: "MSLT".
pub const CONTROL_ID: u32 = u32::from_le_bytes(*b"MSLT");

/// Commands written to [`CONTROL_PORT`]: the command in bits 7:0, an argument in 31:8.
pub mod command {
    /// Delete the memslot (asynchronously, from the host's memslot thread).
    pub const DELETE: u32 = 1;
    /// Re-create the memslot with the same memory (asynchronously).
    pub const RESTORE: u32 = 2;
    /// End of one cycle: bits 31:8 hold the number of accesses the guest made to the page
    /// while it read the marker (its MMIO accesses); the host compares with its own log.
    pub const REPORT: u32 = 3;
}

/// A [`command::REPORT`] with `accesses`.
pub const fn report(accesses: u32) -> u32 {
    command::REPORT | (accesses << 8)
}

/// Splits a control write into (command, argument).
pub const fn split(v: u32) -> (u32, u32) {
    (v & 0xff, v >> 8)
}

/// Tag mixed into the page's RAM pattern.
const RAM_TAG: u64 = 0x4d45_4d53_4c4f_5400;
/// Tag of the values the guest writes while the page is MMIO.
const WRITE_TAG: u64 = 0x5752_4954_4500_0000;
/// What the marker bytes differ from the RAM bytes by (bit 7 set: every byte's sign flips,
/// so MOVSX sees both signs across RAM and marker).
pub const MARKER_XOR: u8 = 0xa5;

/// Byte `offset` of the page's RAM content at the start of the run.
pub const fn ram_byte(seed: u64, offset: u64) -> u8 {
    (splitmix64(seed ^ RAM_TAG ^ (offset / 8)) >> (8 * (offset % 8))) as u8
}

/// Byte `offset` of what the emulated page answers while the memslot is deleted.
pub const fn marker_byte(seed: u64, offset: u64) -> u8 {
    ram_byte(seed, offset) ^ MARKER_XOR
}

/// Little-endian value of `width` bytes at `offset` of the RAM pattern XORed bytewise with
/// `xor`.
const fn pattern_value(seed: u64, offset: u64, width: Width, xor: u8) -> u64 {
    let mut v = 0u64;
    let mut i = 0;
    while i < width.bytes() {
        v |= ((ram_byte(seed, offset + i) ^ xor) as u64) << (8 * i);
        i += 1;
    }
    v
}

/// Little-endian value of `width` bytes at `offset` of the RAM content.
pub const fn ram_value(seed: u64, offset: u64, width: Width) -> u64 {
    pattern_value(seed, offset, width, 0)
}

/// Little-endian value of `width` bytes at `offset` of the marker.
pub const fn marker_value(seed: u64, offset: u64, width: Width) -> u64 {
    pattern_value(seed, offset, width, MARKER_XOR)
}

/// The value the guest writes at `offset` with `width` bytes while the page is MMIO, and the
/// only value the host accepts in a write there.
pub const fn write_value(seed: u64, offset: u64, width: Width) -> u64 {
    splitmix64(seed ^ WRITE_TAG ^ (offset << 8) ^ width.bytes()) & width.mask()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_differs_from_ram_in_every_byte_and_sign() {
        for seed in [0, 1, 0xdead_beef] {
            for off in 0..SIZE {
                let (r, m) = (ram_byte(seed, off), marker_byte(seed, off));
                assert_ne!(r, m);
                assert_ne!(r & 0x80, m & 0x80);
            }
        }
    }

    #[test]
    fn values_are_little_endian_bytes() {
        let seed = 42;
        let v = ram_value(seed, 3, Width::B4);
        for i in 0..4 {
            assert_eq!((v >> (8 * i)) as u8, ram_byte(seed, 3 + i));
        }
        assert_eq!(
            marker_value(seed, 8, Width::B8) ^ ram_value(seed, 8, Width::B8),
            u64::MAX / 255 * 0xa5
        );
        assert_eq!(write_value(seed, 0, Width::B1) >> 8, 0);
        assert_ne!(
            write_value(seed, 0, Width::B8),
            write_value(seed + 1, 0, Width::B8)
        );
    }

    #[test]
    fn commands_round_trip() {
        assert_eq!(split(report(17)), (command::REPORT, 17));
        assert_eq!(split(command::DELETE), (command::DELETE, 0));
    }
}
