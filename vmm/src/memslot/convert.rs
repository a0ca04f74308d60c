//! Under tdx-sim and sev-es-sim, an MMIO exit on the deleted page becomes the exception
//! hardware would raise at the accessing instruction: #VE with the TDX module's EPT-violation
//! information, or #VC with error code NPF. The access itself never reaches a device: the
//! guest's handler re-issues it through its backend.

use crate::machine::{Control, CpuState};
use crate::platform::Host;
use crate::sim::tdx::{EPT_VIOLATION_INSN_LEN, VeInfo};
use crate::vcpu::{VcpuCtl, decode_guest, guest_linear_address, linear_address};
use crate::{ExitReason, VmmError};
use protocol::x86::{ept_qual, exit_reason};

/// One MMIO exit on the memslot page, as KVM reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// GPA as KVM reported it (under tdx-sim with the shared bit).
    pub gpa: u64,
    /// A store.
    pub write: bool,
    /// Bytes.
    pub len: usize,
}

/// An access the guest made to the deleted memslot page, to be turned into #VE / #VC.
#[derive(Clone, Copy, Debug)]
pub struct EmulatedAccess {
    /// The GPA KVM reported (under tdx-sim with the shared bit).
    pub gpa: u64,
    /// A store.
    pub write: bool,
    /// The guest linear address, if the VMM could decode the instruction.
    pub gla: Option<u64>,
}

impl EmulatedAccess {
    /// The #VE information the TDX module posts for this access: an EPT violation on the
    /// shared GPA, read or write, the linear address when known, and an undefined instruction
    /// length ([`EPT_VIOLATION_INSN_LEN`], never the instruction's length).
    pub fn ve_info(&self) -> VeInfo {
        let qual = if self.write {
            ept_qual::WRITE
        } else {
            ept_qual::READ
        } | if self.gla.is_some() {
            ept_qual::GLA_VALID | ept_qual::GLA_TRANSLATED
        } else {
            0
        };
        VeInfo {
            exit_reason: exit_reason::EPT_VIOLATION,
            exit_qualification: qual,
            gla: self.gla.unwrap_or(0),
            gpa: self.gpa,
            insn_len: EPT_VIOLATION_INSN_LEN,
            insn_info: 0,
        }
    }
}

/// Turns the MMIO exit just taken into the #VE or #VC real hardware would have raised at the
/// accessing instruction (DESIGN.md, last section): KVM completes the access on the next
/// KVM_RUN whatever the registers say, so that run is made with `immediate_exit` set
/// (`VcpuCtl::complete_exit`); then the registers are restored from the snapshot taken at
/// the exit with RIP at the instruction, and the exception is injected.
///
/// RIP at the instruction: a load's exit reports it (KVM writes RIP back only after the
/// data arrives); a store's exit reports the next instruction, so it comes from the last
/// single step (`last_step`). The instruction's length is the difference KVM's emulator made.
///
/// The last step is not always the store's start: after the guest's handler refused a #VE
/// and returned with IRET, the single-step trap comes one instruction late (IRET loads TF),
/// so no step exit precedes the re-executed store. Then the start is the restart point of the
/// last converted access (`last_converted`, updated here), else found backwards from the RIP
/// after the store: the one start whose bytes decode, with the guest's decoder, to a store
/// of the exit's width ending exactly there and addressing the exit's page.
pub fn to_exception(
    vcpu: &mut VcpuCtl<'_>,
    host: &mut Host,
    mem: &vm_memory::GuestMemoryMmap,
    cpu: &CpuState,
    mmio: MmioAccess,
    last_step: Option<u64>,
    last_converted: &mut Option<u64>,
) -> Result<Control, VmmError> {
    let MmioAccess { gpa, write, len } = mmio;
    let alias = host.ram_alias_bit();
    let snapshot = cpu.regs;
    let stop = |why: String| {
        Ok(Control::Stop(ExitReason::PlatformStop {
            detail: format!("cannot convert the MMIO exit at GPA {gpa:#x} into #VE/#VC: {why}"),
            rip: snapshot.rip,
        }))
    };
    // While single-stepping, KVM reports the step that ends the completed instruction
    // instead of checking `immediate_exit`: the access is just as completed.
    let after = match vcpu.complete_exit() {
        Ok(regs) => regs,
        Err(why) => return stop(why),
    };
    let fd = vcpu.fd();
    let (start, next) = if write {
        let next = snapshot.rip;
        let is_the_store = |start: u64| {
            let n = next.wrapping_sub(start);
            (1..=15).contains(&n)
                && decode_guest(fd, mem, alias, start).is_some_and(|d| {
                    u64::from(d.len) == n
                        && d.direction() == protocol::access::Direction::Write
                        && d.size().bytes() == len as u64
                        && fd
                            .translate_gva(linear_address(&d, &snapshot, next))
                            .is_ok_and(|t| {
                                t.valid != 0 && (t.physical_address ^ gpa) & !0xfff & !alias == 0
                            })
                })
        };
        // The last step, else the restart point of a refused exception, else the longest
        // decoding (a shorter suffix of a store can decode as another store: `89 04 96` in
        // `46 89 04 96` is the same store from EAX instead of R8D).
        let found = last_step
            .into_iter()
            .chain(*last_converted)
            .chain((1..=15u64).rev().map(|n| next.wrapping_sub(n)))
            .find(|&s| is_the_store(s));
        match found {
            Some(start) => (start, next),
            None => {
                return stop(format!(
                    "no {len}-byte store to GPA {gpa:#x} ends at {next:#x} (last step {last_step:#x?})"
                ));
            }
        }
    } else {
        (snapshot.rip, after.rip)
    };
    let insn_len = next.wrapping_sub(start);
    if !(1..=15).contains(&insn_len) {
        return stop(format!(
            "instruction bounds {start:#x}..{next:#x} are not one instruction"
        ));
    }
    let gla = guest_linear_address(fd, mem, alias, &snapshot, start, next);
    let access = EmulatedAccess { gpa, write, gla };
    let (vector, error_code) = match host.exception_for(&access) {
        Ok(e) => e,
        Err(why) => return stop(why),
    };
    *last_converted = Some(start);
    vcpu.inject_at(&snapshot, start, vector, error_code, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ve_information_of_a_memslot_access() {
        let load = EmulatedAccess {
            gpa: 0x8000_c000_0010,
            write: false,
            gla: Some(0xffff_8000_0000_0010),
        };
        let ve = load.ve_info();
        assert_eq!(ve.exit_reason, 48, "EPT violation");
        assert_eq!(
            ve.exit_qualification, 0b1_1000_0001,
            "read, GLA valid and translated"
        );
        assert_eq!((ve.gla, ve.gpa), (0xffff_8000_0000_0010, 0x8000_c000_0010));
        assert_eq!(ve.insn_len, 0, "undefined for an EPT violation");
        let store = EmulatedAccess {
            write: true,
            gla: None,
            ..load
        };
        assert_eq!(store.ve_info().exit_qualification, 0b10, "write, no GLA");
        assert_eq!(store.ve_info().gla, 0);
    }
}
