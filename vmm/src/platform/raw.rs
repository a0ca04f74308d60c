//! The raw intercepted instructions' glue: the guest runs a CPUID, RDMSR/WRMSR, IN/OUT or
//! (under tdx-sim) HLT itself, and the sim must give it what the real platform gives it
//! (answered by the TDX module, #VE, #VC or #GP: [`crate::sim::raw`] decides). The exits
//! that bring them here: the raw CPUID's breakpoint (DR1), the DENY MSR filter's exits, port
//! IO and HLT exits. An exception is injected at the instruction after a KVM_RUN with
//! `immediate_exit` has completed what KVM started (`VcpuCtl::complete_exit`): MSR and IN
//! exits report RIP at the instruction, HLT exits after it; OUT exits after it on these
//! machines, at it in upstream KVM, so the VMM tells which by whether completing the exit
//! moves RIP, and decodes back to the instruction's start (`vcpu::find_port_io`).

use super::Host;
use crate::machine::{Control, CpuState, Machine};
use crate::vcpu::{PortExit, VcpuCtl, find_port_io, read_guest};
use crate::{ExitReason, VmmError};
use std::time::Instant;

/// A raw intercepted instruction's exit under a simulated platform, as the run loop routed
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawExit {
    /// The raw CPUID's breakpoint (DR1): nothing ran yet.
    Cpuid,
    /// An RDMSR (`write` = `None`) or WRMSR exit of the MSR filter.
    Msr {
        /// ECX.
        index: u32,
        /// EDX:EAX of a WRMSR.
        write: Option<u64>,
    },
    /// An IN/OUT (INS/OUTS) exit.
    Io(PortExit),
    /// A HLT exit (tdx-sim; an automatic exit under SEV-ES, which KVM handles).
    Hlt,
}

/// A raw intercepted instruction the guest executed under a simulated platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawInsn {
    /// CPUID, stopped at its DR1 breakpoint (not executed); leaf and sub-leaf in RAX/RCX.
    Cpuid,
    /// RDMSR (`write` = `None`) or WRMSR of `write`, from an MSR exit (not completed).
    Msr {
        /// ECX.
        index: u32,
        /// EDX:EAX of a WRMSR.
        write: Option<u64>,
    },
    /// IN, OUT, INS or OUTS, decoded at `start`.
    PortIo {
        /// RIP of the instruction.
        start: u64,
        /// The port.
        port: u16,
        /// The instruction.
        io: protocol::x86::PortIo,
    },
    /// HLT at `start`.
    Hlt {
        /// RIP of the instruction.
        start: u64,
    },
}

/// What the VMM does with a [`RawInsn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawOutcome {
    /// CPUID answered: EAX..EDX, RIP moves past it.
    Cpuid([u32; 4]),
    /// RDMSR answered with this value, or WRMSR done: KVM completes it and moves RIP on.
    MsrDone(u64),
    /// The MSR access raises #GP (the MSR exit's error flag: KVM injects it).
    MsrGp,
    /// The exception `vector` (with `error_code`) at the instruction at `start`.
    Inject {
        /// RIP of the instruction.
        start: u64,
        /// Vector.
        vector: u8,
        /// Error code, for vectors that push one.
        error_code: Option<u32>,
    },
}

/// One line for the host verdict about a raw instruction the platform forbids.
pub(super) fn raw_finding(
    platform: protocol::platform::PlatformKind,
    rip: u64,
    what: &str,
    exception: &str,
) -> String {
    use protocol::platform::PlatformKind;
    let backend = match platform {
        PlatformKind::Tdx => "TDG.VP.VMCALL",
        PlatformKind::SevEs => "GHCB",
        PlatformKind::Legacy => "legacy",
    };
    format!(
        "raw {what} under {} at RIP {rip:#x}: on hardware this is a {exception}; the guest \
         must go through its {backend} backend",
        crate::sim_name(platform)
    )
}

/// Records `finding` once (a guest that takes the exception and runs the instruction again
/// repeats it), and at most [`super::MAX_REPORTS`] different ones.
pub(super) fn note(findings: &mut Vec<String>, finding: String) {
    if findings.len() < super::MAX_REPORTS && !findings.contains(&finding) {
        findings.push(finding);
    }
}

/// `IN from port 0xf00 (1 byte)`.
pub(super) fn port_io_text(port: u16, io: &protocol::x86::PortIo) -> String {
    format!(
        "{}{} {} port {port:#x} ({} byte{})",
        if io.rep { "REP " } else { "" },
        match (io.input, io.string) {
            (true, false) => "IN",
            (true, true) => "INS",
            (false, false) => "OUT",
            (false, true) => "OUTS",
        },
        if io.input { "from" } else { "to" },
        io.size,
        if io.size == 1 { "" } else { "s" },
    )
}

/// Serves the raw instruction of exit `raw` ([`Host::raw`] decides): a CPUID answer goes
/// into the registers with RIP past the 2-byte instruction; an MSR answer or #GP into the MSR
/// exit (KVM completes it); an exception is injected at the instruction
/// (`VcpuCtl::inject_at`). A port-IO or HLT exit whose instruction the VMM cannot find
/// ends the run ([`ExitReason::RawInterception`]).
pub fn serve(
    vcpu: &mut VcpuCtl<'_>,
    host: &mut Host,
    machine: &mut Machine,
    cpu: &CpuState,
    raw: RawExit,
    now: Instant,
) -> Result<Control, VmmError> {
    let rip = cpu.rip();
    let alias = host.ram_alias_bit();
    let not_found = |what: String| {
        Ok(Control::Stop(ExitReason::RawInterception {
            platform: crate::sim_name(host.platform()),
            what,
            rip,
        }))
    };
    // The instruction, and whether KVM has an access to complete before an exception can be
    // injected (an MSR or HLT exit; not the CPUID's breakpoint, where nothing ran, nor a
    // port-IO exit, completed here already).
    let (insn, complete) = match raw {
        RawExit::Cpuid => (RawInsn::Cpuid, false),
        RawExit::Msr { index, write } => (RawInsn::Msr { index, write }, true),
        RawExit::Io(exit) => {
            // Complete the exit first: whether KVM moves RIP then tells whether the exit
            // reported it at the instruction (upstream KVM) or after it (OUT on these
            // machines).
            let after = match vcpu.complete_exit() {
                Ok(regs) => regs.rip,
                Err(why) => {
                    return Ok(Control::Stop(ExitReason::PlatformStop {
                        detail: format!("cannot raise #VE/#VC at a raw port access: {why}"),
                        rip,
                    }));
                }
            };
            let at_insn = after != rip;
            match find_port_io(vcpu.fd(), machine.memory(), alias, &cpu.regs, exit, at_insn) {
                Some((start, io)) => (
                    RawInsn::PortIo {
                        start,
                        port: exit.port,
                        io,
                    },
                    false,
                ),
                None => {
                    return not_found(format!(
                        "{} port {:#x} ({}-byte elements) that the VMM could not decode",
                        if exit.input { "IN from" } else { "OUT to" },
                        exit.port,
                        exit.size
                    ));
                }
            }
        }
        RawExit::Hlt => {
            let start = rip.wrapping_sub(1);
            let mut byte = [0u8; 1];
            if read_guest(vcpu.fd(), machine.memory(), alias, start, &mut byte) == 1
                && byte[0] == protocol::x86::HLT_OPCODE
            {
                (RawInsn::Hlt { start }, true)
            } else {
                return not_found("HLT (no HLT opcode before the exit's RIP)".into());
            }
        }
    };
    match host.raw(vcpu, machine, cpu, insn, now)? {
        RawOutcome::Cpuid([a, b, c, d]) => {
            vcpu.write_regs(|r| {
                (r.rax, r.rbx, r.rcx, r.rdx) = (a.into(), b.into(), c.into(), d.into());
                r.rip = rip + u64::from(protocol::x86::TWO_BYTE_INSN_LEN);
            });
            Ok(Control::Continue)
        }
        RawOutcome::MsrDone(v) => {
            vcpu.set_msr_reply(v, false);
            Ok(Control::Continue)
        }
        RawOutcome::MsrGp => {
            vcpu.set_msr_reply(0, true);
            Ok(Control::Continue)
        }
        RawOutcome::Inject {
            start,
            vector,
            error_code,
        } => vcpu.inject_at(&cpu.regs, start, vector, error_code, complete),
    }
}
