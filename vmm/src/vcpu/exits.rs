//! Where a KVM exit goes: decoded from kvm-ioctls' [`VcpuExit`] into the machine's
//! [`Exit`], then routed to the devices ([`crate::machine`]), to the simulated platform's
//! glue ([`crate::platform`]: its trap, its raw intercepted instructions) or to the memslot
//! scenario ([`crate::memslot`]: an MMIO exit on its deleted page under a simulated
//! platform).

use super::guest::PortExit;
use super::run_view::RunView;
use crate::ExitReason;
use crate::machine::{Control, CpuState, Exit};
use crate::memslot::convert::MmioAccess;
use crate::platform::Host;
use crate::platform::raw::RawExit;
use kvm_ioctls::VcpuExit;
use protocol::x86::debug::{DR6_B0, DR6_B1};

/// Turns kvm-ioctls' exit into the machine's; data slices stay the exit's own.
pub(super) fn decode<'a>(exit: VcpuExit<'a>, view: &RunView) -> Exit<'a> {
    match exit {
        VcpuExit::IoIn(port, data) => Exit::IoIn {
            port,
            size: view.io_size(),
            data,
        },
        VcpuExit::IoOut(port, data) => Exit::IoOut {
            port,
            size: view.io_size(),
            data,
        },
        VcpuExit::MmioRead(addr, data) => Exit::MmioRead { addr, data },
        VcpuExit::MmioWrite(addr, data) => Exit::MmioWrite { addr, data },
        VcpuExit::Hlt => Exit::Hlt,
        VcpuExit::Debug(d) => Exit::Debug { dr6: d.dr6 },
        VcpuExit::X86Rdmsr(m) => Exit::RdMsr {
            index: m.index,
            data: m.data,
            error: m.error,
        },
        VcpuExit::X86Wrmsr(m) => Exit::WrMsr {
            index: m.index,
            value: m.data,
            error: m.error,
        },
        VcpuExit::IrqWindowOpen => Exit::IrqWindowOpen,
        VcpuExit::Intr => Exit::Interrupted,
        VcpuExit::Shutdown => Exit::Shutdown,
        VcpuExit::FailEntry(reason, _cpu) => Exit::FailEntry { reason },
        VcpuExit::InternalError => {
            let (suberror, data) = view.internal_error();
            Exit::InternalError { suberror, data }
        }
        VcpuExit::SystemEvent(kind, data) => {
            Exit::Other(format!("KVM_EXIT_SYSTEM_EVENT type {kind} data {data:#x?}"))
        }
        other => Exit::Other(format!("{other:?}")),
    }
}

/// Where one exit goes.
pub(super) enum Routed<'a> {
    /// To the machine's devices.
    Machine(Exit<'a>),
    /// Handled already.
    Done(Control),
    /// The simulated platform's TDCALL / VMGEXIT breakpoint: [`Host::trap`].
    Trap,
    /// A single step (the memslot scenario's, the hostile host's GHCB watch, or an
    /// instruction count).
    Step,
    /// A raw intercepted instruction under a simulated platform: [`crate::platform::raw`].
    Raw(RawExit),
    /// An MMIO exit on the deleted memslot page under a simulated platform: becomes #VE/#VC
    /// ([`crate::memslot::convert`]).
    Convert(MmioAccess),
}

/// Sends platform exits (breakpoints, filtered MSRs, raw port IO and HLT) to the simulated
/// platform's glue and MMIO exits on the deleted memslot page to the memslot scenario; stops
/// the run on a raw MMIO access the platform forbids; everything else goes to the machine.
/// `single_step`: the VMM single-steps the guest (for any reason).
pub(super) fn route<'a>(
    host: &Host,
    exit: Exit<'a>,
    cpu: &CpuState,
    single_step: bool,
) -> Routed<'a> {
    let rip = cpu.rip();
    let raw = |what: String| {
        Routed::Done(Control::Stop(ExitReason::RawInterception {
            platform: crate::sim_name(host.platform()),
            what,
            rip,
        }))
    };
    let sim = host.forbids_raw_io();
    match exit {
        // A single step that lands on the trap instruction is a step: the breakpoint itself
        // (DR6.B0) follows when the instruction is about to run, and only that one is the
        // trap (answering at the step would answer twice: at the step and at B0).
        Exit::Debug { dr6 } if host.is_trap(rip) && (dr6 & DR6_B0 != 0 || !single_step) => {
            Routed::Trap
        }
        // The raw CPUID's breakpoint (DR1), likewise.
        Exit::Debug { dr6 } if host.is_cpuid_site(rip) && (dr6 & DR6_B1 != 0 || !single_step) => {
            Routed::Raw(RawExit::Cpuid)
        }
        Exit::Debug { .. } if single_step => Routed::Step,
        Exit::MmioRead { addr, data } if sim && host.is_memslot_gpa(addr) => {
            Routed::Convert(MmioAccess {
                gpa: addr,
                write: false,
                len: data.len(),
            })
        }
        Exit::MmioWrite { addr, data } if sim && host.is_memslot_gpa(addr) => {
            Routed::Convert(MmioAccess {
                gpa: addr,
                write: true,
                len: data.len(),
            })
        }
        // The simulated platforms send every RDMSR/WRMSR here (a DENY MSR filter).
        Exit::RdMsr { index, .. } if sim => Routed::Raw(RawExit::Msr { index, write: None }),
        Exit::WrMsr { index, value, .. } if sim => Routed::Raw(RawExit::Msr {
            index,
            write: Some(value),
        }),
        Exit::IoIn { port, size, .. } if sim => Routed::Raw(RawExit::Io(PortExit {
            port,
            size,
            input: true,
        })),
        Exit::IoOut { port, size, .. } if sim => Routed::Raw(RawExit::Io(PortExit {
            port,
            size,
            input: false,
        })),
        Exit::MmioRead { addr, data } if sim => raw(format!(
            "MMIO read of {} bytes at GPA {addr:#x} (no memslot)",
            data.len()
        )),
        Exit::MmioWrite { addr, data } if sim => raw(format!(
            "MMIO write of {} bytes at GPA {addr:#x} (no memslot)",
            data.len()
        )),
        Exit::Hlt if host.forbids_raw_hlt() => Routed::Raw(RawExit::Hlt),
        exit => Routed::Machine(exit),
    }
}
