//! A halted vCPU waits for its local-APIC timer: after a HLT exit (the machine says when the
//! next interrupt is due) and inside the simulated platforms' `TDVMCALL<HLT>`, whose halt KVM
//! does without an exit.

use super::{VcpuCtl, kvm::CountedFd};
use crate::machine::{Control, CpuState, Machine};
use crate::{ExitReason, VmmError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest single sleep while a halted vCPU waits for its timer, so a stop request is
/// noticed promptly even for a far-off timer.
const HALT_SLEEP_SLICE: Duration = Duration::from_millis(10);

/// Waits, like a halted vCPU, until an interrupt can wake it: `None` when one is
/// deliverable, `Some` if the run ends meanwhile (halted forever, timeout). For the
/// simulated platforms' TDVMCALL<HLT>, whose halt KVM does without an exit.
pub fn wait_for_wakeup(
    machine: &mut Machine,
    cpu: &CpuState,
    stop: &AtomicBool,
    vcpu: &VcpuCtl<'_>,
) -> Result<Option<ExitReason>, VmmError> {
    match machine.resume_halt(cpu, Instant::now()) {
        Control::Continue => Ok(None),
        Control::Stop(reason) => Ok(Some(reason)),
        Control::WaitUntil(due) => wait_halted(machine, cpu, due, stop, vcpu.fd),
    }
}

/// Sleeps while the vCPU is halted waiting for its timer; `Some` if the run ends meanwhile.
pub(super) fn wait_halted(
    machine: &mut Machine,
    cpu: &CpuState,
    mut due: Instant,
    stop: &AtomicBool,
    fd: &CountedFd,
) -> Result<Option<ExitReason>, VmmError> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(Some(ExitReason::Timeout {
                rip: super::rip(fd)?,
            }));
        }
        let now = Instant::now();
        if now < due {
            std::thread::sleep((due - now).min(HALT_SLEEP_SLICE));
            continue;
        }
        match machine.resume_halt(cpu, now) {
            Control::Continue => return Ok(None),
            Control::Stop(reason) => return Ok(Some(reason)),
            Control::WaitUntil(next) => due = next,
        }
    }
}
