//! The run loop of [`crate::floor`]'s tiny guests: only the exits their mechanisms make,
//! served with the least the mechanism needs (no devices, no models).

use super::Vcpu;
use crate::VmmError;
use kvm_ioctls::VcpuExit;
use std::time::{Duration, Instant};

impl Vcpu {
    /// Runs a floor guest to its exit-port write: a port-IO read is answered 0xff, an MSR
    /// exit completed, a breakpoint exit answered like a trap (registers read from and
    /// written back to kvm_run's sync regs, RIP past the 4-byte instruction). Returns the
    /// host time and the exits, or an error for any other exit or more than `max_exits`.
    pub(crate) fn run_floor(&mut self, max_exits: u64) -> Result<(Duration, u64), VmmError> {
        let start = Instant::now();
        let mut exits = 0;
        loop {
            exits += 1;
            if exits > max_exits {
                return Err(VmmError::Config(format!(
                    "floor guest: more than {max_exits} exits"
                )));
            }
            match self.fd.run() {
                Ok(VcpuExit::IoIn(_, data)) => data.fill(0xff),
                Ok(VcpuExit::IoOut(protocol::exit::EXIT_PORT, _)) => break,
                Ok(VcpuExit::X86Wrmsr(m)) => *m.error = 0,
                Ok(VcpuExit::Debug(_)) => {
                    let mut regs = self.view.cpu_state().regs;
                    regs.rip += protocol::tdx::TDCALL_LEN;
                    self.fd.sync_regs_mut().regs = regs;
                    self.fd.set_sync_dirty_reg(kvm_ioctls::SyncReg::Register);
                }
                Ok(other) => {
                    return Err(VmmError::Config(format!(
                        "floor guest: unexpected exit {other:?}"
                    )));
                }
                Err(e) => return Err(VmmError::kvm("KVM_RUN")(e)),
            }
        }
        Ok((start.elapsed(), exits))
    }
}
