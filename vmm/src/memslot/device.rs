//! The memslot scenario's device ([`protocol::memslot`]), on the machine's buses: the control
//! port the guest drives the cycle with, and the emulated page that answers while the memslot
//! is deleted. No KVM here: [`crate::machine`] routes accesses to it.
//!
//! The emulated page answers reads with the marker and accepts only the agreed write value;
//! it counts its accesses per cycle, and the guest's REPORT must name the same count: exactly
//! one host access per guest access, whether KVM's MMIO exit reached it (legacy) or the guest
//! re-issued the access through its backend from a #VE/#VC handler (TDX, SEV-ES), where the
//! converted exit itself must never reach this device.

use protocol::access::Width;
use protocol::memslot::{self, CONTROL_ID, command};

/// What the guest asked the host to do with the memslot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Delete it.
    Delete,
    /// Re-create it.
    Restore,
}

/// The control port and the emulated page.
#[derive(Debug)]
pub struct Memslot {
    seed: u64,
    pending: Option<Request>,
    /// Emulated-page accesses since the last DELETE.
    accesses: u32,
    /// Whether a cycle is open (DELETE seen, REPORT not yet).
    open: bool,
    cycles: u32,
    problems: Vec<String>,
}

impl Memslot {
    /// The devices for a run whose host values derive from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            pending: None,
            accesses: 0,
            open: false,
            cycles: 0,
            problems: Vec::new(),
        }
    }

    /// A read of the control port: the scenario's id, little-endian, cut to the access.
    pub fn control_read(&mut self, data: &mut [u8]) {
        let id = CONTROL_ID.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = id.get(i).copied().unwrap_or(0);
        }
    }

    /// A write of the control port; `case` names the case running (for messages).
    pub fn control_write(&mut self, data: &[u8], case: &str) {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            self.problems.push(format!(
                "memslot control ({case}): a {}-byte write (commands are 4 bytes)",
                data.len()
            ));
            return;
        };
        let (cmd, arg) = memslot::split(u32::from_le_bytes(bytes));
        match cmd {
            command::DELETE => {
                self.accesses = 0;
                self.open = true;
                self.pending = Some(Request::Delete);
            }
            command::RESTORE => self.pending = Some(Request::Restore),
            command::REPORT => {
                if !self.open {
                    self.problems.push(format!(
                        "memslot ({case}): REPORT without a DELETE before it"
                    ));
                } else if arg != self.accesses {
                    self.problems.push(format!(
                        "memslot ({case}): the guest made {arg} accesses to the emulated page, \
                         the host saw {}",
                        self.accesses
                    ));
                }
                self.open = false;
                self.cycles += 1;
            }
            other => self.problems.push(format!(
                "memslot control ({case}): unknown command {other:#x}"
            )),
        }
    }

    /// A read of the emulated page at `offset`: the marker.
    pub fn page_read(&mut self, offset: u64, data: &mut [u8]) {
        self.accesses += 1;
        for (i, b) in data.iter_mut().enumerate() {
            *b = memslot::marker_byte(self.seed, offset + i as u64);
        }
    }

    /// A write of the emulated page: counted, and checked against the agreed value.
    pub fn page_write(&mut self, offset: u64, data: &[u8], case: &str) {
        self.accesses += 1;
        let width = match data.len() {
            1 => Width::B1,
            2 => Width::B2,
            4 => Width::B4,
            8 => Width::B8,
            n => {
                self.problems.push(format!(
                    "memslot ({case}): a {n}-byte write at page offset {offset:#x}"
                ));
                return;
            }
        };
        let mut v = [0u8; 8];
        v[..data.len()].copy_from_slice(data);
        let got = u64::from_le_bytes(v);
        let want = memslot::write_value(self.seed, offset, width);
        if got != want {
            self.problems.push(format!(
                "memslot ({case}): a {}-byte write of {got:#x} at page offset {offset:#x}, \
                 expected {want:#x}",
                data.len()
            ));
        }
    }

    /// The request the guest made since the last call, if any.
    pub fn take_request(&mut self) -> Option<Request> {
        self.pending.take()
    }

    /// Cycles the guest completed (REPORTs).
    pub fn cycles(&self) -> u32 {
        self.cycles
    }

    /// Whether a cycle is open (the page may be emulated MMIO now).
    pub fn cycle_open(&self) -> bool {
        self.open
    }

    /// What went wrong, taken.
    pub fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_counts_accesses_and_checks_writes() {
        let mut m = Memslot::new(7);
        let mut id = [0u8; 4];
        m.control_read(&mut id);
        assert_eq!(u32::from_le_bytes(id), CONTROL_ID);
        m.control_write(&command::DELETE.to_le_bytes(), "memslot.x");
        assert_eq!(m.take_request(), Some(Request::Delete));
        assert_eq!(m.take_request(), None);
        let mut d = [0u8; 2];
        m.page_read(0x10, &mut d);
        assert_eq!(
            u16::from_le_bytes(d) as u64,
            memslot::marker_value(7, 0x10, Width::B2)
        );
        let good = memslot::write_value(7, 0x20, Width::B4) as u32;
        m.page_write(0x20, &good.to_le_bytes(), "memslot.x");
        m.control_write(&memslot::report(2).to_le_bytes(), "memslot.x");
        assert!(m.take_problems().is_empty());
        assert_eq!(m.cycles(), 1);

        m.control_write(&command::DELETE.to_le_bytes(), "memslot.y");
        m.page_write(0x20, &(good ^ 1).to_le_bytes(), "memslot.y");
        m.control_write(&memslot::report(2).to_le_bytes(), "memslot.y");
        let p = m.take_problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("expected"), "{p:?}");
        assert!(
            p[1].contains("made 2 accesses") && p[1].contains("saw 1"),
            "{p:?}"
        );
    }
}
