//! The memslot scenario, host side, in one place: the host deletes a memslot while the vCPU
//! uses it, so RAM turns into emulated MMIO (KVM selftests' `set_memory_region_test`), the
//! one case where a TDX or SEV-ES guest legitimately emulates MMIO in its #VE/#VC handler.
//!
//! The cycle ([`protocol::memslot`]; the guest side is `kernel/src/tests/memslot.rs` and its
//! #VE/#VC emulation `kernel/src/platform/emulate.rs`):
//!
//! 1. The page has its own host memory and KVM slot, at its GPA (under tdx-sim with the
//!    shared bit, where the guest maps it: [`gpa_bits`]), filled with the seed's RAM pattern
//!    ([`slot::map_page`]).
//! 2. The guest writes DELETE to the control port ([`device::Memslot`], on the machine's
//!    port bus); the run loop hands the request to [`Scenario::request`], whose host thread
//!    ([`slot::MemslotThread`]) deletes the slot while the vCPU runs and kicks the vCPU out of
//!    KVM_RUN. Under a simulated platform the VMM now single-steps the guest (a store's MMIO
//!    exit reports the RIP after the store).
//! 3. The page's accesses now exit as MMIO: on legacy they reach the emulated page
//!    ([`device::Memslot::page_read`], `page_write`); under tdx-sim and sev-es-sim each exit
//!    becomes #VE/#VC at the instruction ([`convert::to_exception`], with the platform's
//!    exception from [`crate::platform::Host::exception_for`]) and the guest re-issues the
//!    access through its backend, which reaches the same emulated page.
//! 4. RESTORE re-creates the slot (single-stepping ends); REPORT names the guest's access
//!    count, which the device compares with its own.

pub mod convert;
pub mod device;
pub mod slot;

pub use device::{Memslot, Request};
pub use slot::MemslotThread;

use crate::VmmError;
use crate::machine::{Control, CpuState};
use crate::platform::Host;
use crate::sim::address::AddressWidth;
use crate::vcpu::VcpuCtl;
use convert::MmioAccess;
use protocol::platform::PlatformKind;

/// The bits ORed into the page's GPA for `platform`: under tdx-sim the shared bit (the guest
/// maps MMIO shared, so the TDX module reports the EPT violation on a shared GPA), else none.
pub fn gpa_bits(platform: PlatformKind, width: AddressWidth) -> u64 {
    match platform {
        PlatformKind::Tdx => width.tdx_shared_bit(),
        PlatformKind::Legacy | PlatformKind::SevEs => 0,
    }
}

/// Whether `gpa`, as KVM reports it in an MMIO exit, is the page, mapped with `bits`
/// ([`gpa_bits`]).
pub fn is_page_gpa(gpa: u64, bits: u64) -> bool {
    let plain = gpa & !bits;
    gpa & bits == bits
        && (protocol::memslot::GPA..protocol::memslot::GPA + protocol::memslot::SIZE)
            .contains(&plain)
}

/// The run loop's part of the scenario: the host thread (if this run has the page) and the
/// single-step bookkeeping that finds where a store began.
#[derive(Default)]
pub struct Scenario {
    thread: Option<MemslotThread>,
    /// The VMM single-steps the guest: a simulated platform, page deleted.
    stepping: bool,
    /// RIP of the last single step: where a store that exits began.
    last_step: Option<u64>,
    /// Where the last #VE/#VC made of an MMIO access pointed (the guest re-executes it there
    /// if its handler refuses the exception).
    last_converted: Option<u64>,
}

impl Scenario {
    /// The scenario with its host thread (`None`: the page's requests are ignored, as in
    /// runs without the page).
    pub fn new(thread: Option<MemslotThread>) -> Self {
        Self {
            thread,
            ..Self::default()
        }
    }

    /// Whether the VMM single-steps the guest for the scenario.
    pub fn stepping(&self) -> bool {
        self.stepping
    }

    /// A single-step exit at `rip`.
    pub fn note_step(&mut self, rip: u64) {
        if self.stepping {
            self.last_step = Some(rip);
        }
    }

    /// The guest's request `req`: to the host thread; under a simulated platform (`sim`)
    /// single-stepping starts at DELETE and ends at RESTORE.
    pub fn request(&mut self, req: Request, sim: bool) {
        let Some(thread) = &self.thread else {
            return;
        };
        thread.send(req);
        if sim {
            self.stepping = req == Request::Delete;
            self.last_step = None;
        }
    }

    /// An MMIO exit on the deleted page under a simulated platform: the exception
    /// ([`convert::to_exception`]).
    pub fn convert(
        &mut self,
        vcpu: &mut VcpuCtl<'_>,
        host: &mut Host,
        mem: &vm_memory::GuestMemoryMmap,
        cpu: &CpuState,
        access: MmioAccess,
    ) -> Result<Control, VmmError> {
        convert::to_exception(
            vcpu,
            host,
            mem,
            cpu,
            access,
            self.last_step,
            &mut self.last_converted,
        )
    }

    /// Stops the host thread and returns the KVM errors it met.
    pub fn finish(self) -> Vec<String> {
        self.thread.map(MemslotThread::finish).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn width(bits: u8) -> AddressWidth {
        AddressWidth::new(bits).unwrap()
    }

    #[test]
    fn the_page_carries_the_shared_bit_under_tdx() {
        use protocol::memslot::{GPA, SIZE};
        for (bits, shared) in [
            (48, 1u64 << 47),
            (46, 1 << 45),
            (39, 1 << 38),
            (52, 1 << 51),
        ] {
            let tdx = gpa_bits(PlatformKind::Tdx, width(bits));
            assert_eq!(tdx, shared);
            assert!(is_page_gpa(GPA | shared, tdx), "{bits}");
            assert!(!is_page_gpa(GPA, tdx), "private alias: not the page");
            assert!(!is_page_gpa((GPA + SIZE) | shared, tdx));
            assert!(!is_page_gpa(GPA | shared << 1 >> 2, tdx), "another bit");
            let sev = gpa_bits(PlatformKind::SevEs, width(bits));
            assert_eq!(sev, 0);
            assert!(is_page_gpa(GPA + 8, sev));
            assert!(!is_page_gpa(
                GPA | width(bits).platform_bit(PlatformKind::SevEs),
                sev
            ));
        }
    }

    #[test]
    fn requests_start_and_end_stepping_only_under_a_sim_with_the_page() {
        let mut none = Scenario::new(None);
        none.request(Request::Delete, true);
        assert!(!none.stepping(), "no page, no scenario");
        none.note_step(5);
        assert_eq!(none.last_step, None);
    }
}
