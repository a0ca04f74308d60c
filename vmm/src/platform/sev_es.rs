//! sev-es-sim's KVM glue: the guest's VMGEXIT stops at a hardware breakpoint (DR0);
//! [`GhcbModel`] (KVM's GHCB handling, no KVM calls) reads the GHCB MSR and, for a GHCB-page
//! request, the page from guest memory, and writes its answer there; RIP moves past the
//! 4-byte VMGEXIT. The guest's RDMSR/WRMSR of the GHCB MSR and SEV_STATUS reach the model
//! through the MSR filter ([`super::raw`]).
//!
//! At each GHCB-page request the host also checks the guest: that the GHCB is mapped shared
//! ([`GhcbMapping`]; through a private mapping the host sees ciphertext,
//! [`crate::sim::sev_page::sev_ciphertext`]) and that the page carries no guest bytes
//! outside the fields the request sent ([`crate::sim::sev_page::ghcb_leak`]). The hostile
//! host's `ghcb-rewrite` lie single-steps the guest after an answer ([`GhcbWatch`]).

use super::raw::{RawInsn, RawOutcome, note, port_io_text, raw_finding};
use super::serve::{Served, native_msr, serve};
use super::{MAX_REPORTS, Ram, TrapSites, platform_stop, sim_bug};
use crate::VmmError;
use crate::machine::{Control, CpuState, Machine};
use crate::sim::address::AddressWidth;
use crate::sim::ghcb::{GhcbConfig, GhcbModel, GhcbStep, MsrError};
use crate::sim::raw::{RawMsr, sev_es_msr};
use crate::sim::sev_page::{PAGE, ghcb_leak, sev_ciphertext};
use crate::sim::{GuestMemory, Tamper, profile};
use crate::vcpu::{VcpuCtl, next_insn};
use protocol::ghcb;
use protocol::kvm::KvmProfile;
use protocol::platform::PlatformKind;
use protocol::x86::vector;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// The memslot scenario's exception: #VC with error code NPF, the exit code of a nested page
/// fault (GHCB spec 2.0, 4.1.6; Linux `vc_handle_exitcode()` sends it to `vc_handle_mmio()`).
pub const MEMSLOT_EXCEPTION: (u8, Option<u32>) = (vector::VC, Some(ghcb::exit::NPF as u32));

/// sev-es-sim's host state.
pub struct SevEsHost {
    /// KVM's GHCB handling.
    pub model: GhcbModel<Box<dyn Tamper>>,
    /// The vCPU's physical-address width (the C-bit's position).
    pub width: AddressWidth,
    /// Where the VMGEXIT and the raw CPUID are.
    pub sites: TrapSites,
    /// What the guest did that the platform forbids (a raw IN or OUT).
    pub findings: Vec<String>,
    /// GHCB pages that reached the host with non-zero bytes outside the fields sent
    /// ([`ghcb_leak`]), described (at most [`MAX_REPORTS`]).
    pub leaks: Vec<String>,
    /// Guest virtual address of the GHCB page ([`super::ghcb_address`]).
    pub ghcb_va: Option<u64>,
    /// The hostile host watches the guest's reads of the GHCB after an answer
    /// ([`Self::watch_step`]).
    watch: Option<GhcbWatch>,
    /// The host's own check of the GHCB's mapping.
    pub mapping: GhcbMapping,
}

impl SevEsHost {
    /// sev-es-sim on a vCPU of `width`, trapping at `sites`, answering as KVM release `kvm`.
    pub fn new(
        sites: TrapSites,
        tamper: Box<dyn Tamper>,
        width: AddressWidth,
        kvm: KvmProfile,
    ) -> Self {
        let config = profile::ghcb_config(
            kvm,
            GhcbConfig {
                cbit: width.sev_cbit(),
                ..GhcbConfig::default()
            },
        );
        Self {
            model: GhcbModel::with_tamper(config, tamper),
            width,
            sites,
            findings: Vec::new(),
            leaks: Vec::new(),
            ghcb_va: None,
            watch: None,
            mapping: GhcbMapping::default(),
        }
    }

    /// Whether the hostile host single-steps the guest to watch its reads of the GHCB.
    pub fn watching(&self) -> bool {
        self.watch.is_some()
    }

    /// The VMGEXIT at the breakpoint: the host's checks of the page, the model's answer
    /// (after serving what it asks of the VMM), RIP past the VMGEXIT.
    pub fn answer(
        &mut self,
        vcpu: &mut VcpuCtl<'_>,
        machine: &mut Machine,
        cpu: &CpuState,
        stop: &AtomicBool,
        case: Option<(&'static str, &'static str)>,
    ) -> Result<Control, VmmError> {
        // The guest's next request: a watched answer was never read twice.
        self.watch = None;
        let mem = machine.memory().clone();
        let mut ram = Ram(&mem);
        let msr = self.model.ghcb_msr();
        let page_request = msr != 0 && msr & ghcb::msr::INFO_MASK == 0;
        // The raw conformance cases send malformed GHCBs on purpose (fields without their
        // valid bits): their bytes are the test's, not private data.
        let raw_case = case.is_some_and(|(suite, _)| suite == "ghcb_raw");
        // The host's own check of the page's mapping (a GHCB-page request only).
        let (alias, bits, cbit) = (
            self.width.platform_bit(PlatformKind::SevEs),
            self.width.bits(),
            self.width.sev_cbit(),
        );
        let private = page_request
            && self.ghcb_va.is_some_and(|va| {
                let pa = vcpu.translate(&mem, alias, bits, va);
                check_ghcb_mapping(pa, va, msr, cbit, &mut self.mapping, case)
            });
        // Through a private mapping the host sees ciphertext, not the guest's bytes.
        if msr & ghcb::msr::INFO_MASK == 0 && !raw_case && !private {
            let mut page = [0u8; PAGE];
            if ram.read(msr, &mut page).is_ok()
                && let Some((at, byte)) = ghcb_leak(&page)
            {
                if self.leaks.len() < MAX_REPORTS {
                    self.leaks.push(format!(
                        "GHCB at GPA {msr:#x} reached the host with byte {byte:#04x} at \
                         offset {at:#x}, outside the fields the request sent ({})",
                        case.map_or("no case".into(), |(s, c)| format!("{s}.{c}"))
                    ));
                } else if self.leaks.len() == MAX_REPORTS {
                    self.leaks.push("(more GHCB leaks not listed)".into());
                }
            }
        }
        if private {
            toggle_ciphertext(&mut ram, msr);
        }
        let mut step = self.model.vmgexit(&mut ram);
        let control = loop {
            match step {
                GhcbStep::Done => {
                    vcpu.write_regs(|r| r.rip = cpu.rip() + ghcb::VMGEXIT_LEN);
                    if self.model.tamper_mut().rewrite_after_read() && self.ghcb_va.is_some() {
                        self.watch = Some(GhcbWatch::new());
                    }
                    break Control::Continue;
                }
                GhcbStep::Host(request) => match serve(&request, vcpu, machine, cpu, stop)? {
                    Served::Result(r) => {
                        step = self.model.complete(r, &mut ram).map_err(sim_bug)?;
                    }
                    Served::Stop(reason) => break Control::Stop(reason),
                },
                GhcbStep::Stop(s) => break Control::Stop(platform_stop(s, cpu)),
            }
        };
        if private {
            // The guest reads the page back through its decryption.
            toggle_ciphertext(&mut ram, msr);
        }
        Ok(control)
    }

    /// The hostile host's event with no cause after an answer: a #VC with the error code it
    /// chose.
    pub fn spurious_event(&mut self) -> Option<(u8, Option<u32>)> {
        self.model
            .tamper_mut()
            .spurious_event()
            .map(|ev| (vector::VC, Some(ev.error_code)))
    }

    /// One single step while watching the GHCB: the next instruction's load, if it is one. A
    /// second load of a GHCB byte since the answer (a double fetch) is met with the page
    /// rewritten first; the watch ends there, after [`GhcbWatch::STEPS`] steps, before an STI
    /// or HLT, or at the guest's next VMGEXIT (the run loop then stops single-stepping, unless
    /// the memslot scenario needs it).
    pub fn watch_step(
        &mut self,
        vcpu: &VcpuCtl<'_>,
        machine: &mut Machine,
        cpu: &CpuState,
    ) -> Control {
        machine.count_exit();
        let alias = self.width.platform_bit(PlatformKind::SevEs);
        let (reads, halts) = next_insn(vcpu.fd(), machine.memory(), alias, &cpu.regs);
        let (Some(w), Some(va)) = (&mut self.watch, self.ghcb_va) else {
            return Control::Continue;
        };
        match w.step(
            reads.and_then(|(addr, size)| Some((addr.checked_sub(va)?, size))),
            halts,
        ) {
            WatchStep::Go => {}
            WatchStep::Rewrite => {
                rewrite_ghcb(&mut Ram(machine.memory()), self.model.ghcb_msr());
                self.watch = None;
            }
            WatchStep::End => self.watch = None,
        }
        Control::Continue
    }

    /// What SEV-ES gives a raw instruction: #VC, the GHCB model's MSRs, or the MSRs KVM
    /// passes through; a raw IN or OUT is also a finding.
    pub fn raw(
        &mut self,
        vcpu: &mut VcpuCtl<'_>,
        machine: &mut Machine,
        cpu: &CpuState,
        insn: RawInsn,
        now: Instant,
    ) -> Result<RawOutcome, VmmError> {
        let vc = |code: u64, start| RawOutcome::Inject {
            start,
            vector: vector::VC,
            error_code: Some(code as u32),
        };
        Ok(match insn {
            RawInsn::Cpuid => vc(ghcb::exit::CPUID, cpu.rip()),
            RawInsn::Msr { index, write } => match sev_es_msr(index) {
                RawMsr::Ghcb => {
                    let r = match write {
                        None => self.model.msr_read(index),
                        Some(v) => self.model.msr_write(index, v).map(|()| 0),
                    };
                    match r {
                        Ok(v) => RawOutcome::MsrDone(v),
                        Err(MsrError::Gp | MsrError::NotOwned) => RawOutcome::MsrGp,
                    }
                }
                RawMsr::Native => native_msr(vcpu, machine, index, write, now)?,
                _ => vc(ghcb::exit::MSR, cpu.rip()),
            },
            RawInsn::PortIo { start, port, io } => {
                note(
                    &mut self.findings,
                    raw_finding(
                        PlatformKind::SevEs,
                        start,
                        &port_io_text(port, &io),
                        "#VC (error code 0x7b)",
                    ),
                );
                vc(ghcb::exit::IOIO, start)
            }
            RawInsn::Hlt { .. } => {
                return Err(VmmError::Config(
                    "a raw HLT sent to sev-es-sim, where it is an automatic exit (a VMM bug)"
                        .into(),
                ));
            }
        })
    }
}

/// The host's check that the guest maps its GHCB shared: at every GHCB-page VMGEXIT it
/// translates the GHCB's virtual address ([`super::ghcb_address`]) under the vCPU's paging
/// (a walk of the guest's page tables from the CR3 KVM stored at the exit, as
/// KVM_TRANSLATE would). Under sev-es-sim the C-bit is an address bit ([`crate::sim::address`]), so a mapping
/// with it set lands on the private alias. On hardware the guest would then have written the
/// page encrypted: the host hands the model the page as ciphertext ([`sev_ciphertext`]) and
/// the guest reads the answer back through its decryption, as garbage.
#[derive(Clone, Debug, Default)]
pub struct GhcbMapping {
    /// GHCB-page requests whose mapping the host checked.
    pub checked: u64,
    /// What the host found wrong: the first request of each kind of finding.
    pub findings: Vec<String>,
    /// Requests with a finding, the first ones included.
    pub bad: u64,
    /// The kinds of finding described in `findings`.
    kinds: Vec<&'static str>,
}

impl GhcbMapping {
    /// The verdict the host attaches to `platform.sev_es_ghcb_shared`
    /// ([`protocol::ghcb::GHCB_MAPPING_CASE`]).
    pub fn verdict(&self) -> Result<(), String> {
        match self.findings.first() {
            Some(f) => Err(format!(
                "{f} ({} of {} GHCB-page requests had a finding)",
                self.bad, self.checked
            )),
            None if self.checked == 0 => {
                Err("the host saw no GHCB-page request whose mapping it could check".into())
            }
            None => Ok(()),
        }
    }
}

/// Records in `mapping` whether the GHCB's virtual address `va`, which the vCPU's paging
/// translates to `pa`, reaches the GHCB MSR's GPA `msr` through a shared mapping (C-bit
/// `cbit` clear). Returns whether the mapping is private. A page that is not mapped at `va`,
/// or maps another GPA, is a finding too (the guest told the host one page and uses
/// another).
fn check_ghcb_mapping(
    pa: Option<u64>,
    va: u64,
    msr: u64,
    cbit: u8,
    mapping: &mut GhcbMapping,
    case: Option<(&'static str, &'static str)>,
) -> bool {
    mapping.checked += 1;
    let c = 1u64 << cbit;
    // The kind of finding, if any; only the first request of each kind is described.
    let kind = match pa {
        Some(pa) if pa & !c == msr && pa & c != 0 => Some("private"),
        Some(pa) if pa == msr => None,
        Some(_) => Some("elsewhere"),
        None => Some("unmapped"),
    };
    if let Some(kind) = kind {
        mapping.bad += 1;
        if !mapping.kinds.contains(&kind) {
            let at = case.map_or("no case".into(), |(s, k)| format!("{s}.{k}"));
            mapping.kinds.push(kind);
            mapping.findings.push(match pa {
                Some(_) if kind == "private" => format!(
                    "GHCB at GPA {msr:#x} is mapped private (C-bit {cbit} set) at guest VA \
                     {va:#x}, first at {at}: on hardware the host would read ciphertext and \
                     the guest garbage"
                ),
                Some(pa) => format!(
                    "the GHCB MSR holds GPA {msr:#x} but the guest's GHCB at VA {va:#x} maps \
                     GPA {pa:#x}, first at {at}"
                ),
                None => format!("the guest's GHCB at VA {va:#x} is not mapped, first at {at}"),
            });
        }
    }
    kind == Some("private")
}

/// Applies [`sev_ciphertext`] to the GHCB page at `gpa` in guest memory.
fn toggle_ciphertext(ram: &mut Ram<'_>, gpa: u64) {
    let mut page = [0u8; PAGE];
    if ram.read(gpa, &mut page).is_ok() {
        sev_ciphertext(gpa, &mut page);
        let _ = ram.write(gpa, &page);
    }
}

/// The hostile host's watch over the guest's reads of the GHCB after an answer it will
/// rewrite (the `ghcb-rewrite` lie).
#[derive(Clone, Copy, Debug)]
pub struct GhcbWatch {
    /// Steps left before the watch gives up.
    steps_left: u32,
    /// The bytes of the GHCB below the end of the valid bitmap read since the answer (bit
    /// n of word w = byte 64w + n).
    read: [u64; GHCB_WATCHED_BYTES / 64],
}

/// The GHCB bytes the watch covers: the save area and the valid bitmap (the shared buffer
/// holds data the guest may read in pieces).
const GHCB_WATCHED_BYTES: usize = 0x400;

/// What the watch does after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WatchStep {
    /// Keep watching.
    Go,
    /// The guest is about to read a GHCB byte a second time: rewrite the page, stop.
    Rewrite,
    /// Stop watching (out of steps, or the guest is about to halt).
    End,
}

impl GhcbWatch {
    /// How many instructions after an answer the watch follows: the guest copies the answer
    /// within a few dozen and acts on it within a few hundred.
    pub const STEPS: u32 = 400;

    fn new() -> Self {
        Self {
            steps_left: Self::STEPS,
            read: [0; GHCB_WATCHED_BYTES / 64],
        }
    }

    /// One step: `reads` is the GHCB offset and size the next instruction loads (if it loads
    /// from at or above the GHCB), `halts` whether it is STI or HLT.
    fn step(&mut self, reads: Option<(u64, u64)>, halts: bool) -> WatchStep {
        let out_of_steps = self.steps_left == 0 || halts;
        self.steps_left = self.steps_left.saturating_sub(1);
        if let Some((first, size)) = reads {
            let bytes = (first..first + size).filter(|&b| b < GHCB_WATCHED_BYTES as u64);
            let mut again = false;
            for b in bytes {
                let (word, bit) = ((b / 64) as usize, b % 64);
                again |= self.read[word] & (1 << bit) != 0;
                self.read[word] |= 1 << bit;
            }
            if again {
                return WatchStep::Rewrite;
            }
        }
        if out_of_steps {
            WatchStep::End
        } else {
            WatchStep::Go
        }
    }
}

/// Garbage in every returned field of the GHCB at `gpa`, and a cleared valid bitmap: what a
/// guest that reads the page again after copying the answer would then see.
fn rewrite_ghcb(ram: &mut Ram<'_>, gpa: u64) {
    let garbage = 0xbad0_0000_0000_0000u64;
    for (o, v) in [
        (ghcb::off::SW_EXIT_INFO_1, ghcb::result::ERROR),
        (ghcb::off::SW_EXIT_INFO_2, garbage | 1),
        (ghcb::off::RAX, garbage | 2),
        (ghcb::off::RBX, garbage | 3),
        (ghcb::off::RCX, garbage | 4),
        (ghcb::off::RDX, garbage | 5),
    ] {
        let _ = ram.write(gpa + o as u64, &v.to_le_bytes());
    }
    let _ = ram.write(gpa + ghcb::off::VALID_BITMAP as u64, &[0u8; 16]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapping_verdict() {
        let mut m = GhcbMapping::default();
        assert!(m.verdict().unwrap_err().contains("no GHCB-page request"));
        m.checked = 3;
        assert_eq!(m.verdict(), Ok(()));
        m.bad = 2;
        m.findings
            .push("GHCB at GPA 0x1000 is mapped private".into());
        let e = m.verdict().unwrap_err();
        assert!(e.contains("mapped private") && e.contains("2 of 3"), "{e}");
    }

    #[test]
    fn the_watch_rewrites_at_the_second_read_of_a_byte() {
        let mut w = GhcbWatch::new();
        let info1 = ghcb::off::SW_EXIT_INFO_1 as u64;
        assert_eq!(w.step(Some((info1, 8)), false), WatchStep::Go);
        assert_eq!(w.step(None, false), WatchStep::Go);
        assert_eq!(
            w.step(Some((info1 + 8, 8)), false),
            WatchStep::Go,
            "another field"
        );
        assert_eq!(
            w.step(Some((0x800, 8)), false),
            WatchStep::Go,
            "the buffer is not watched"
        );
        assert_eq!(w.step(Some((0x800, 8)), false), WatchStep::Go);
        assert_eq!(
            w.step(Some((info1 + 4, 1)), false),
            WatchStep::Rewrite,
            "a double fetch"
        );
        let mut w = GhcbWatch::new();
        assert_eq!(w.step(None, true), WatchStep::End, "before STI/HLT");
        let mut w = GhcbWatch::new();
        for _ in 0..GhcbWatch::STEPS {
            assert_eq!(w.step(None, false), WatchStep::Go);
        }
        assert_eq!(w.step(None, false), WatchStep::End, "out of steps");
    }
}
