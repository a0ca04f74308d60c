//! tdx-sim's KVM glue: the guest's TDCALL stops at a hardware breakpoint (DR0); its
//! registers come from kvm_run's sync regs, [`TdxModel`] (the TDX module and KVM, no KVM
//! calls) answers, the answer goes back through the sync regs and RIP moves past the 4-byte
//! TDCALL: one exit, one ioctl (KVM_RUN) per request. Also here: what the TDX module gives
//! the raw instructions (#VE with its information, or its own answer), the memslot
//! scenario's #VE, and the hostile host's spurious #VE.

use super::raw::{RawInsn, RawOutcome, note, port_io_text, raw_finding};
use super::serve::{Served, native_msr, serve};
use super::{TrapSites, platform_stop, sim_bug};
use crate::VmmError;
use crate::machine::{Control, CpuState, Machine};
use crate::memslot::convert::EmulatedAccess;
use crate::sim::address::AddressWidth;
use crate::sim::profile::{self, ProfileError};
use crate::sim::raw::{RawMsr, TdxCpuid, tdx_cpuid, tdx_msr};
use crate::sim::tdx::{TdxConfig, TdxModel, TdxStep, VeInfo};
use crate::sim::{HostRequest, Tamper};
use crate::vcpu::VcpuCtl;
use kvm_bindings::kvm_regs;
use protocol::kvm::KvmProfile;
use protocol::tdx::{TDCALL_LEN, TdcallRegs};
use protocol::x86::{TWO_BYTE_INSN_LEN, exit_reason, msr as msrs, vector};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// tdx-sim's host state.
pub struct TdxHost {
    /// The TDX module + KVM.
    pub model: TdxModel<Box<dyn Tamper>>,
    /// The vCPU's physical-address width (the shared bit's position).
    pub width: AddressWidth,
    /// Where the TDCALL and the raw CPUID are.
    pub sites: TrapSites,
    /// What the guest did that the platform forbids (a raw IN, OUT, HLT), for the host
    /// verdict ([`super::Host::take_findings`]).
    pub findings: Vec<String>,
    /// A `TDVMCALL<HLT>` was just answered ([`Self::take_wakeup`]).
    woke: bool,
}

impl TdxHost {
    /// tdx-sim on a vCPU of `width`, trapping at `sites`, answering as KVM release `kvm`.
    pub fn new(
        sites: TrapSites,
        tamper: Box<dyn Tamper>,
        width: AddressWidth,
        kvm: KvmProfile,
    ) -> Result<Self, ProfileError> {
        let config = profile::tdx_config(
            kvm,
            TdxConfig {
                gpaw: width.tdx_gpaw(),
                maxphyaddr: u32::from(width.bits()),
                ..TdxConfig::default()
            },
        )?;
        Ok(Self {
            model: TdxModel::with_tamper(config, tamper),
            width,
            sites,
            findings: Vec::new(),
            woke: false,
        })
    }

    /// Whether the guest was just woken from `TDVMCALL<HLT>` (then read once): the pending
    /// interrupt goes in at the next entry. Under TDX interrupts are posted: the TDX module
    /// delivers a pending one when the TD sets RFLAGS.IF (the guest's one-instruction window
    /// after HLT), with no exit the VMM could wait for; injecting at the HLT's return stands
    /// for that. Never earlier: KVM_INTERRUPT is injected at the next entry whatever
    /// RFLAGS.IF says, so an interrupt due while the guest runs with IF=0 waits for the HLT.
    pub fn take_wakeup(&mut self) -> bool {
        std::mem::take(&mut self.woke)
    }

    /// The TDCALL at the breakpoint: the model's answer into the registers, RIP past the
    /// TDCALL, after serving what the model asks of the VMM.
    pub fn answer(
        &mut self,
        vcpu: &mut VcpuCtl<'_>,
        machine: &mut Machine,
        cpu: &CpuState,
        stop: &AtomicBool,
    ) -> Result<Control, VmmError> {
        let mut step = self.model.tdcall(&tdcall_regs(&cpu.regs));
        loop {
            match step {
                TdxStep::Done(out) => {
                    vcpu.write_regs(|r| {
                        set_tdcall_regs(r, &out);
                        r.rip = cpu.rip() + TDCALL_LEN;
                    });
                    return Ok(Control::Continue);
                }
                TdxStep::Host(request) => {
                    self.woke |= matches!(request, HostRequest::Hlt { .. });
                    match serve(&request, vcpu, machine, cpu, stop)? {
                        Served::Result(r) => {
                            step = self.model.complete(r).map_err(sim_bug)?;
                        }
                        Served::Stop(reason) => return Ok(Control::Stop(reason)),
                    }
                }
                TdxStep::Stop(s) => return Ok(Control::Stop(platform_stop(s, cpu))),
            }
        }
    }

    /// The hostile host's event with no cause after an answer: a #VE. A host cannot make the
    /// TDX module raise a #VE: this is the hostile layer's own fiction, so it stays away from
    /// a #VE whose information is unread (which the module would turn into #DF).
    pub fn spurious_event(&mut self) -> Option<(u8, Option<u32>)> {
        let ev = self.model.tamper_mut().spurious_event()?;
        if self.model.ve_pending() {
            return None;
        }
        if let Some(ve) = ev.ve {
            self.model.raise_ve(ve);
        }
        Some((vector::VE, None))
    }

    /// The memslot scenario's #VE for `access`, its information posted for
    /// TDG.VP.VEINFO.GET (through the hostile layer), or #DF if the last #VE's information
    /// is still unread (`tdx_inject_ve()`).
    pub fn memslot_exception(&mut self, access: &EmulatedAccess) -> (u8, Option<u32>) {
        let mut info = access.ve_info();
        self.model.tamper_mut().ve_info(&mut info);
        self.model.raise_ve(info).event()
    }

    /// What the TDX module gives a raw instruction: its CPUID answer, a native MSR access,
    /// #GP, or a #VE with its information (#DF while the last one is unread); a raw IN, OUT
    /// or HLT is also a finding.
    pub fn raw(
        &mut self,
        vcpu: &mut VcpuCtl<'_>,
        machine: &mut Machine,
        cpu: &CpuState,
        insn: RawInsn,
        now: Instant,
    ) -> Result<RawOutcome, VmmError> {
        let rip = cpu.rip();
        let model = &mut self.model;
        let ve = |model: &mut TdxModel<Box<dyn Tamper>>, reason, qual, len, start| {
            let (vector, error_code) = model
                .raise_ve(VeInfo {
                    exit_reason: reason,
                    exit_qualification: qual,
                    gla: 0,
                    gpa: 0,
                    insn_len: len,
                    insn_info: 0,
                })
                .event();
            RawOutcome::Inject {
                start,
                vector,
                error_code,
            }
        };
        Ok(match insn {
            RawInsn::Cpuid => {
                let (leaf, subleaf) = (cpu.regs.rax as u32, cpu.regs.rcx as u32);
                let last_base = vcpu.cpuid(0, 0)[0];
                let last_extended = vcpu.cpuid(0x8000_0000, 0)[0];
                match tdx_cpuid(leaf, subleaf, last_base, last_extended) {
                    TdxCpuid::Answer { leaf } => RawOutcome::Cpuid(vcpu.cpuid(leaf, subleaf)),
                    TdxCpuid::Ve => ve(model, exit_reason::CPUID, 0, TWO_BYTE_INSN_LEN, rip),
                }
            }
            RawInsn::Msr { index, write } => {
                let efer = match write {
                    Some(_) if index == msrs::EFER => vcpu.read_msr(index)?.unwrap_or(0),
                    _ => 0,
                };
                match tdx_msr(index, write, efer) {
                    RawMsr::Native => native_msr(vcpu, machine, index, write, now)?,
                    RawMsr::Gp => RawOutcome::MsrGp,
                    _ => {
                        let reason = if write.is_some() {
                            exit_reason::MSR_WRITE
                        } else {
                            exit_reason::MSR_READ
                        };
                        ve(model, reason, 0, TWO_BYTE_INSN_LEN, rip)
                    }
                }
            }
            RawInsn::PortIo { start, port, io } => {
                note(
                    &mut self.findings,
                    raw_finding(
                        protocol::platform::PlatformKind::Tdx,
                        start,
                        &port_io_text(port, &io),
                        "#VE (exit reason 30)",
                    ),
                );
                ve(
                    model,
                    exit_reason::IO_INSTRUCTION,
                    io.exit_qualification(port),
                    u32::from(io.len),
                    start,
                )
            }
            RawInsn::Hlt { start } => {
                note(
                    &mut self.findings,
                    raw_finding(
                        protocol::platform::PlatformKind::Tdx,
                        start,
                        "HLT",
                        "#VE (exit reason 12)",
                    ),
                );
                ve(model, exit_reason::HLT, 0, 1, start)
            }
        })
    }
}

/// The guest's registers at TDCALL.
fn tdcall_regs(r: &kvm_regs) -> TdcallRegs {
    TdcallRegs {
        rax: r.rax,
        rcx: r.rcx,
        rdx: r.rdx,
        rbx: r.rbx,
        rsi: r.rsi,
        rdi: r.rdi,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
    }
}

/// Writes the TDX module's answer into the vCPU's registers (RSP, RBP, RIP and RFLAGS are
/// not TDCALL outputs).
fn set_tdcall_regs(r: &mut kvm_regs, t: &TdcallRegs) {
    r.rax = t.rax;
    r.rcx = t.rcx;
    r.rdx = t.rdx;
    r.rbx = t.rbx;
    r.rsi = t.rsi;
    r.rdi = t.rdi;
    r.r8 = t.r8;
    r.r9 = t.r9;
    r.r10 = t.r10;
    r.r11 = t.r11;
    r.r12 = t.r12;
    r.r13 = t.r13;
    r.r14 = t.r14;
    r.r15 = t.r15;
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITES: TrapSites = TrapSites { trap: 1, cpuid: 2 };

    #[test]
    fn memslot_ve_reports_no_instruction_length_and_a_second_one_is_a_double_fault() {
        let width = AddressWidth::new(48).unwrap();
        let mut tdx = TdxHost::new(
            SITES,
            Box::new(crate::sim::Honest),
            width,
            KvmProfile::Current,
        )
        .unwrap();
        let access = EmulatedAccess {
            gpa: protocol::memslot::GPA | 1 << 47,
            write: false,
            gla: Some(0xffff_8000_0000_0010),
        };
        assert_eq!(tdx.memslot_exception(&access), (vector::VE, None));
        // Unread: the TDX module raises #DF (vector 8, error code 0) instead of a second #VE.
        assert_eq!(tdx.memslot_exception(&access), (vector::DF, Some(0)));
        let TdxStep::Done(out) = tdx.model.tdcall(&TdcallRegs {
            rax: protocol::tdx::leaf::VP_VEINFO_GET,
            ..TdcallRegs::default()
        }) else {
            panic!("VEINFO.GET answers at once")
        };
        assert_eq!(out.rcx, 48, "the first #VE's information was kept");
        assert_eq!(out.r9, access.gpa);
        assert_eq!(
            out.r10,
            u64::from(crate::sim::tdx::EPT_VIOLATION_INSN_LEN),
            "R10 is undefined for an EPT violation: never the instruction's length"
        );
        assert_eq!(crate::sim::tdx::EPT_VIOLATION_INSN_LEN, 0);
        // Read: the next access raises a #VE again.
        assert_eq!(tdx.memslot_exception(&access), (vector::VE, None));
    }

    #[test]
    fn tdcall_registers_round_trip() {
        let r = kvm_regs {
            rax: 0,
            rcx: 0xfc00,
            r10: 0,
            r11: 30,
            r12: 1,
            r13: 1,
            r14: 0xd100,
            r15: 0xff,
            rsp: 0x1234,
            rip: 0x5678,
            ..Default::default()
        };
        let t = tdcall_regs(&r);
        assert_eq!((t.rcx, t.r11, t.r14, t.r15), (0xfc00, 30, 0xd100, 0xff));
        let mut back = kvm_regs {
            rsp: 0x1234,
            rip: 0x5678,
            ..Default::default()
        };
        set_tdcall_regs(&mut back, &t);
        assert_eq!(back, r);
    }
}
