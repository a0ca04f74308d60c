//! What the models ask of the VMM ([`HostRequest`]), served exactly where KVM would exit to
//! user space or consult VMM-owned state: port and MMIO accesses go to the legacy devices of
//! [`Machine`]; CPUID comes from the table set with KVM_SET_CPUID2; MSR accesses KVM emulates
//! are done on the vCPU with KVM_GET_MSRS / KVM_SET_MSRS (so the guest sees exactly the MSRs
//! plain KVM keeps, and a missing MSR is refused), the x2APIC registers on the user-space
//! APIC (KVM's in-kernel APIC in a real TD); `TDVMCALL<HLT>` waits for the local-APIC timer
//! like a halted vCPU; MapGPA conversions and KVM_HC_MAP_GPA_RANGE are accepted (the sims
//! keep no private/shared state); every other KVM hypercall the models answer themselves,
//! as KVM does ([`crate::sim::kvm_hypercall`]).

use super::raw::RawOutcome;
use crate::machine::{Control, CpuState, Machine};
use crate::sim::{HostRequest, HostResult, MapGpaResult};
use crate::vcpu::VcpuCtl;
use crate::{ExitReason, VmmError};
use protocol::testdev::Space;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// The outcome of serving one [`HostRequest`].
pub(super) enum Served {
    /// Hand this to the model.
    Result(HostResult),
    /// The run ends (the guest's verdict, a device error, a halt forever, a timeout).
    Stop(ExitReason),
}

/// The low `size` bytes of `value`, as a device sees a write of that size (no allocation: a
/// request's write costs no heap traffic).
fn low_bytes(value: u64, size: u8) -> ([u8; 8], usize) {
    (value.to_le_bytes(), usize::from(size).min(8))
}

/// A raw MSR access the platform lets through to the vCPU's own state (no exit on
/// hardware): the x2APIC registers from the user-space APIC, every other MSR from KVM
/// (KVM_GET_MSRS / KVM_SET_MSRS); a missing MSR or a refused value is a #GP.
pub(super) fn native_msr(
    vcpu: &mut VcpuCtl<'_>,
    machine: &mut Machine,
    index: u32,
    write: Option<u64>,
    now: Instant,
) -> Result<RawOutcome, VmmError> {
    use protocol::x86::msr;
    let outcome = |ok: bool, v: u64| {
        if ok {
            RawOutcome::MsrDone(v)
        } else {
            RawOutcome::MsrGp
        }
    };
    Ok(match (index, write) {
        (msr::X2APIC_FIRST..=msr::X2APIC_LAST, None) => match machine.x2apic_read(index, now) {
            Ok(v) => RawOutcome::MsrDone(v),
            Err(_) => RawOutcome::MsrGp,
        },
        (msr::X2APIC_FIRST..=msr::X2APIC_LAST, Some(v)) => {
            outcome(machine.x2apic_write(index, v, now).is_ok(), 0)
        }
        (_, None) => match vcpu.read_msr(index)? {
            Some(v) => RawOutcome::MsrDone(v),
            None => RawOutcome::MsrGp,
        },
        (_, Some(v)) => outcome(vcpu.write_msr(index, v)?, 0),
    })
}

/// Serves one model request where KVM would exit to the VMM (or consult its state).
pub(super) fn serve(
    request: &HostRequest,
    vcpu: &mut VcpuCtl<'_>,
    machine: &mut Machine,
    cpu: &CpuState,
    stop: &AtomicBool,
) -> Result<Served, VmmError> {
    let now = Instant::now();
    let write = |machine: &mut Machine, space, addr, data: &[u8]| match machine
        .host_write(space, addr, data, cpu, now)
    {
        Control::Stop(reason) => Served::Stop(reason),
        _ => Served::Result(HostResult::Done),
    };
    let read = |machine: &mut Machine, space, addr, size: u8| {
        let mut buf = [0u8; 8];
        let n = usize::from(size).min(8);
        machine.host_read(space, addr, &mut buf[..n], cpu, now);
        Served::Result(HostResult::Value(u64::from_le_bytes(buf)))
    };
    Ok(match *request {
        HostRequest::PortRead { port, size } => read(machine, Space::Pio, u64::from(port), size),
        HostRequest::PortWrite { port, size, value } => {
            let (bytes, n) = low_bytes(value, size);
            write(machine, Space::Pio, u64::from(port), &bytes[..n])
        }
        HostRequest::PortReadString { port, size, count } => {
            let size = usize::from(size.max(1));
            let mut data = vec![0u8; size * count as usize];
            for el in data.chunks_mut(size) {
                machine.host_read(Space::Pio, u64::from(port), el, cpu, now);
            }
            Served::Result(HostResult::Bytes(data))
        }
        HostRequest::PortWriteString {
            port,
            size,
            ref data,
        } => {
            for el in data.chunks(usize::from(size.max(1))) {
                if let Served::Stop(reason) = write(machine, Space::Pio, u64::from(port), el) {
                    return Ok(Served::Stop(reason));
                }
            }
            Served::Result(HostResult::Done)
        }
        HostRequest::MmioRead { gpa, size, .. } => read(machine, Space::Mmio, gpa, size),
        HostRequest::MmioWrite {
            gpa, size, value, ..
        } => {
            let (bytes, n) = low_bytes(value, size);
            write(machine, Space::Mmio, gpa, &bytes[..n])
        }
        HostRequest::Cpuid { leaf, subleaf, .. } => {
            Served::Result(HostResult::Cpuid(vcpu.cpuid(leaf, subleaf)))
        }
        // KVM's own MSR emulation (`kvm_get_msr_common()`): the x2APIC registers from its
        // APIC, which here is the user-space one; every other MSR from KVM's vCPU.
        HostRequest::Rdmsr { index } => {
            Served::Result(match native_msr(vcpu, machine, index, None, now)? {
                RawOutcome::MsrDone(v) => HostResult::Value(v),
                _ => HostResult::Refused,
            })
        }
        HostRequest::Wrmsr { index, value } => {
            Served::Result(match native_msr(vcpu, machine, index, Some(value), now)? {
                RawOutcome::MsrDone(_) => HostResult::Done,
                _ => HostResult::Refused,
            })
        }
        HostRequest::Hlt { interrupts_blocked } => {
            let halted = CpuState {
                if_flag: !interrupts_blocked,
                ..*cpu
            };
            match crate::vcpu::wait_for_wakeup(machine, &halted, stop, vcpu)? {
                Some(reason) => Served::Stop(reason),
                None => Served::Result(HostResult::Done),
            }
        }
        HostRequest::ApResetHold => Served::Stop(ExitReason::PlatformStop {
            detail: "AP reset hold: this one-vCPU VM has no other vCPU to send the SIPI".into(),
            rip: cpu.rip(),
        }),
        HostRequest::MapGpa { .. } => Served::Result(HostResult::MapGpa(MapGpaResult::Ok {
            event_pending: false,
        })),
        HostRequest::TdVmCallInfo { .. }
        | HostRequest::GetQuote { .. }
        | HostRequest::SetupEventNotify { .. } => Served::Result(HostResult::Done),
        // Accepted, as for TDVMCALL<MapGPA>: the sims keep no private/shared state.
        HostRequest::KvmMapGpaRange { .. } => Served::Result(HostResult::Value(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_bytes_cut_to_size() {
        let (b, n) = low_bytes(0x1122_3344, 2);
        assert_eq!(&b[..n], [0x44, 0x33]);
        assert_eq!(low_bytes(u64::MAX, 9).1, 8);
    }
}
