//! The exit floors `cvmprobe bench` compares the simulated platforms' requests with: what
//! each request mechanism costs by itself on this host, measured in the same run with tiny
//! guests of a few 32-bit instructions at the PVH entry, looping over the mechanism alone
//! with a VMM that does the least the mechanism needs.
//!
//! | [`Mechanism`] | guest loop body | VMM at the exit |
//! | --- | --- | --- |
//! | [`Mechanism::PortIo`] | `in al, 0x80` (one port-IO exit) | fills the byte |
//! | [`Mechanism::Breakpoint`] | a TDCALL under a hardware breakpoint (DR0) | reads the registers from kvm_run's sync regs, writes them back with RIP past the 4 bytes (tdx-sim's TDCALL mechanism) |
//! | [`Mechanism::MsrThenBreakpoint`] | WRMSR of the GHCB MSR (an MSR-filter exit), then a VMGEXIT under a hardware breakpoint | completes the WRMSR; moves RIP past the VMGEXIT (sev-es-sim's mechanism when the GHCB MSR is written per request) |
//!
//! Each loop iteration also runs `dec esi; jnz` (two instructions, emulated like the rest).

use crate::cpuid::Brand;
use crate::platform::{TrapSites, prepare_vm};
use crate::sim::address::AddressWidth;
use crate::vcpu::{IoctlCounts, Vcpu, VcpuSetup};
use crate::{VmmError, cpuid};
use protocol::platform::PlatformKind;
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress};

/// A request mechanism whose floor is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// One port-IO exit: the legacy platform's request.
    PortIo,
    /// One exit at a hardware breakpoint, registers through sync regs: tdx-sim's TDCALL.
    Breakpoint,
    /// One MSR-filter exit, then one breakpoint exit: sev-es-sim's GHCB MSR write and VMGEXIT.
    MsrThenBreakpoint,
}

impl Mechanism {
    /// Every mechanism.
    pub const ALL: [Mechanism; 3] = [
        Mechanism::PortIo,
        Mechanism::Breakpoint,
        Mechanism::MsrThenBreakpoint,
    ];

    /// What it is, for a report.
    pub const fn describe(self) -> &'static str {
        match self {
            Mechanism::PortIo => "port-IO exit",
            Mechanism::Breakpoint => "breakpoint exit, sync regs (TDCALL)",
            Mechanism::MsrThenBreakpoint => "MSR-filter exit + breakpoint exit (VMGEXIT)",
        }
    }

    /// The platform whose VM setup the tiny guest gets (MSR filter, breakpoints).
    const fn platform(self) -> PlatformKind {
        match self {
            Mechanism::PortIo => PlatformKind::Legacy,
            Mechanism::Breakpoint => PlatformKind::Tdx,
            Mechanism::MsrThenBreakpoint => PlatformKind::SevEs,
        }
    }
}

/// One floor measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Floor {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// Loop iterations.
    pub iterations: u32,
    /// Host time from the first KVM_RUN to the guest's exit-port write.
    pub wall: Duration,
    /// vCPU exits in that time (the final exit-port write included).
    pub exits: u64,
    /// vCPU ioctls in that time.
    pub ioctls: IoctlCounts,
}

impl Floor {
    /// Host time per iteration.
    pub fn per_op(&self) -> Duration {
        self.wall / self.iterations.max(1)
    }

    /// Exits per iteration.
    pub fn exits_per_op(&self) -> f64 {
        self.exits.saturating_sub(1) as f64 / f64::from(self.iterations.max(1))
    }

    /// Ioctls per iteration.
    pub fn ioctls_per_op(&self) -> f64 {
        self.ioctls.total().saturating_sub(1) as f64 / f64::from(self.iterations.max(1))
    }
}

/// Where the tiny guest's code starts (the PVH entry).
pub(crate) const ENTRY: u64 = 0x10_0000;
/// The loop body's first byte: after `mov esi, N` (5 bytes) and `mov ecx, imm32` (5 bytes).
pub(crate) const BODY: u64 = ENTRY + 10;
/// Where the breakpoint of [`Mechanism::MsrThenBreakpoint`] sits: after WRMSR (2 bytes).
const MSR_BODY_TRAP: u64 = BODY + 2;
/// A byte the tiny guests never execute, for the raw-CPUID breakpoint (DR1).
const NO_CPUID: u64 = ENTRY + 0xf0;

/// The tiny guest for `mechanism`, looping `iterations` times.
fn code(mechanism: Mechanism, iterations: u32) -> Vec<u8> {
    let mut c = vec![0xbe]; // mov esi, iterations
    c.extend_from_slice(&iterations.to_le_bytes());
    c.push(0xb9); // mov ecx, MSR_GHCB
    c.extend_from_slice(&protocol::ghcb::MSR_GHCB.to_le_bytes());
    debug_assert_eq!(ENTRY + c.len() as u64, BODY);
    let body: Vec<u8> = match mechanism {
        Mechanism::PortIo => vec![0xe4, 0x80], // in al, 0x80
        Mechanism::Breakpoint => protocol::tdx::TDCALL_BYTES.to_vec(),
        Mechanism::MsrThenBreakpoint => {
            [&[0x0f, 0x30][..], &protocol::ghcb::VMGEXIT_BYTES].concat() // wrmsr; vmgexit
        }
    };
    let back = -(body.len() as i8 + 3); // to BODY from after `dec esi; jnz`
    c.extend_from_slice(&body);
    c.extend_from_slice(&[0x4e, 0x75, back as u8]); // dec esi; jnz BODY
    c.extend_from_slice(&[0x31, 0xc0, 0xe7, 0xf4]); // xor eax, eax; out 0xf4, eax
    c
}

/// Measures `mechanism`'s floor over `iterations` loop iterations on a fresh VM.
pub fn measure(mechanism: Mechanism, iterations: u32) -> Result<Floor, VmmError> {
    let kvm = crate::open_kvm()?;
    let mem = crate::guest_memory(&[(0, 2 << 20)], 2)?;
    mem.write_slice(&code(mechanism, iterations), GuestAddress(ENTRY))
        .map_err(|e| VmmError::GuestMemory {
            mib: 2,
            reason: e.to_string(),
        })?;
    let vm = kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?;
    vm.set_tss_address(crate::TSS_ADDRESS)
        .map_err(VmmError::kvm("KVM_SET_TSS_ADDR"))?;
    crate::map_memory(&vm, &mem, &[0])?;
    let platform = mechanism.platform();
    prepare_vm(&vm, platform)?;
    let supported = crate::supported_cpuid(&kvm)?;
    let width = AddressWidth::new(cpuid::phys_bits(&supported))
        .map_err(|e| VmmError::Config(e.to_string()))?;
    let trap = match mechanism {
        Mechanism::PortIo => None,
        Mechanism::Breakpoint => Some(BODY),
        Mechanism::MsrThenBreakpoint => Some(MSR_BODY_TRAP),
    };
    let mut vcpu = Vcpu::create(
        &vm,
        supported,
        VcpuSetup {
            entry: ENTRY,
            brand: &Brand::for_run(),
            platform,
            width,
            forced_width: false,
            breakpoint: trap.map(|trap| TrapSites {
                trap,
                cpuid: NO_CPUID,
            }),
            handoff: None,
        },
    )?;
    let before = vcpu.ioctls();
    let max_exits = 2 * u64::from(iterations) + 16;
    let (wall, exits) = vcpu.run_floor(max_exits)?;
    Ok(Floor {
        mechanism,
        iterations,
        wall,
        exits,
        ioctls: vcpu.ioctls().since(&before),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_floor_loop_exits_as_its_mechanism_says() {
        if crate::open_kvm().is_err() && std::env::var("CVMPROBE_NO_KVM").as_deref() == Ok("1") {
            eprintln!("each_floor_loop_exits_as_its_mechanism_says: skipped (no KVM)");
            return;
        }
        for (m, exits_per_op) in [
            (Mechanism::PortIo, 1),
            (Mechanism::Breakpoint, 1),
            (Mechanism::MsrThenBreakpoint, 2),
        ] {
            let f = measure(m, 50).unwrap_or_else(|e| panic!("{m:?}: {e}"));
            assert_eq!(f.exits, 50 * exits_per_op + 1, "{m:?}: {f:?}");
            // One KVM_RUN per exit: the floors use sync regs and kvm_run, nothing else.
            assert_eq!(f.ioctls.total(), f.exits, "{m:?}: {f:?}");
            assert_eq!(f.exits_per_op(), exits_per_op as f64);
            assert!(f.wall > Duration::ZERO);
        }
    }
}
