//! Device models and the buses that route guest accesses to them.
//!
//! A device sees offsets into its own range and the context of the access (guest RIP, time),
//! never KVM: the run loop in [`crate::machine`] decodes the exit and calls it. Accesses that
//! no device claims are answered like an empty PC bus: reads return all ones, writes vanish.

pub mod exit_port;
pub mod lapic;
pub mod serial;
pub mod testdev;

use std::time::Instant;

/// Where and when an access happened, for models that time, log or check accesses.
#[derive(Clone, Copy, Debug)]
pub struct AccessCtx {
    /// Guest RIP of the accessing instruction (from the exit's register snapshot).
    pub rip: u64,
    /// Host time of the exit.
    pub now: Instant,
    /// vCPU exits so far in the run, this access's own exit included.
    pub exits: u64,
    /// What the run cost so far besides exits, as of this access's exit.
    pub counts: RunCounts,
}

/// What a run has cost so far besides exits, for the bench samples: the VMM's vCPU ioctls
/// (as of the KVM_RUN that returned with the access's exit, that KVM_RUN included), the
/// VMM's own time outside KVM_RUN (up to that KVM_RUN) and, when the VMM single-steps the
/// run to count them, the guest's instructions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// vCPU ioctls made so far, by kind.
    pub ioctls: crate::IoctlCounts,
    /// Guest instructions single-stepped so far (0 unless the run counts them).
    pub instructions: u64,
    /// Host time the VMM spent outside KVM_RUN so far (handling exits: devices, models,
    /// ioctls other than KVM_RUN), in nanoseconds.
    pub vmm_ns: u64,
}

/// What a device write asks of the VMM beyond the write itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing: resume the guest.
    None,
    /// The guest gave its verdict through the exit port: end the run.
    GuestExit(u32),
    /// The device model failed; end the run and report it.
    Failed(String),
}

/// A device on the port-IO or MMIO bus.
pub trait Device {
    /// Name for diagnostics.
    fn name(&self) -> &'static str;
    /// A read of `data.len()` bytes at `offset` into the device's range; fill `data`.
    fn read(&mut self, offset: u64, data: &mut [u8], ctx: &AccessCtx);
    /// A write of `data` at `offset` into the device's range.
    fn write(&mut self, offset: u64, data: &[u8], ctx: &AccessCtx) -> Effect;
}

/// Two ranges given to one bus overlap.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("bus range {base:#x}+{len:#x} overlaps an existing one")]
pub struct Overlap {
    /// Start of the rejected range.
    pub base: u64,
    /// Its length.
    pub len: u64,
}

/// An address space (ports or guest-physical MMIO) mapping ranges to device ids.
///
/// `Id` is whatever names a device for the owner (an enum in [`crate::machine`]); the bus only
/// resolves addresses. An access must fall wholly inside one range to reach its device.
#[derive(Clone, Debug)]
pub struct Bus<Id> {
    /// `(base, len, id)`, sorted by base, non-overlapping.
    ranges: Vec<(u64, u64, Id)>,
}

impl<Id: Copy> Default for Bus<Id> {
    fn default() -> Self {
        Self { ranges: Vec::new() }
    }
}

impl<Id: Copy> Bus<Id> {
    /// Claims `[base, base + len)` for `id`.
    pub fn insert(&mut self, base: u64, len: u64, id: Id) -> Result<(), Overlap> {
        let end = base.checked_add(len).ok_or(Overlap { base, len })?;
        if len == 0 || self.ranges.iter().any(|&(b, l, _)| base < b + l && b < end) {
            return Err(Overlap { base, len });
        }
        let at = self.ranges.partition_point(|&(b, _, _)| b < base);
        self.ranges.insert(at, (base, len, id));
        Ok(())
    }

    /// The device and offset for an access of `size` bytes at `addr`, if one range holds it
    /// whole.
    pub fn resolve(&self, addr: u64, size: usize) -> Option<(Id, u64)> {
        let i = self
            .ranges
            .partition_point(|&(b, _, _)| b <= addr)
            .checked_sub(1)?;
        let (base, len, id) = self.ranges[i];
        let offset = addr - base;
        (offset.checked_add(size as u64)? <= len).then_some((id, offset))
    }
}

/// What an unassigned read returns: all ones, as on a PC bus with nothing answering.
pub fn fill_unassigned(data: &mut [u8]) {
    data.fill(0xff);
}

/// Little-endian value of a 1..=8-byte access.
pub fn le_value(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

/// Writes the low `data.len()` bytes of `v`, little-endian.
pub fn put_le(data: &mut [u8], v: u64) {
    let n = data.len().min(8);
    data[..n].copy_from_slice(&v.to_le_bytes()[..n]);
    data[n..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_resolves_inside_ranges_only() {
        let mut bus = Bus::default();
        bus.insert(0x3f8, 8, 'a').unwrap();
        bus.insert(0xf4, 4, 'b').unwrap();
        assert_eq!(bus.resolve(0x3f8, 1), Some(('a', 0)));
        assert_eq!(bus.resolve(0x3ff, 1), Some(('a', 7)));
        assert_eq!(bus.resolve(0x3fe, 4), None, "straddles the end");
        assert_eq!(bus.resolve(0x400, 1), None);
        assert_eq!(bus.resolve(0xf4, 4), Some(('b', 0)));
        assert_eq!(bus.resolve(0xf3, 1), None);
        assert_eq!(bus.resolve(0, 1), None);
    }

    #[test]
    fn bus_rejects_overlap_and_empty() {
        let mut bus = Bus::default();
        bus.insert(0x100, 0x10, 1).unwrap();
        assert!(bus.insert(0x10f, 1, 2).is_err());
        assert!(bus.insert(0xf8, 0x10, 2).is_err());
        assert!(bus.insert(0x200, 0, 2).is_err());
        assert!(bus.insert(u64::MAX, 2, 2).is_err());
        bus.insert(0x110, 1, 3).unwrap();
        assert_eq!(bus.resolve(0x110, 1), Some((3, 0)));
    }

    #[test]
    fn le_helpers() {
        assert_eq!(le_value(&[0x78, 0x56, 0x34, 0x12]), 0x1234_5678);
        let mut d = [0u8; 2];
        put_le(&mut d, 0xabcd_ef01);
        assert_eq!(d, [0x01, 0xef]);
        let mut d = [0u8; 3];
        fill_unassigned(&mut d);
        assert_eq!(d, [0xff; 3]);
    }
}
