//! The KVM side of the run: vCPU 0's setup, KVM_RUN and what the VMM does to the vCPU.
//!
//! | file | responsibility |
//! | --- | --- |
//! | `mod.rs` | [`Vcpu`]: creation (CPUID, APIC base, entry registers, breakpoints); [`VcpuCtl`]: what the platform glue and the memslot scenario may do to the vCPU at an exit (registers through sync regs, MSRs, CPUID, translation, exception injection, completing an exit) |
//! | `kvm.rs` | [`CountedFd`]: the vCPU fd with every ioctl counted ([`IoctlCounts`]) |
//! | `run_view.rs` | the run loop's view of `kvm_run` (register snapshot, IF, MSR reply, `immediate_exit`) |
//! | `coalesced.rs` | KVM's coalesced ring for COM1's data port |
//! | `exits.rs` | decoding a KVM exit into a [`crate::machine::Exit`] and routing it: devices, platform glue, memslot scenario |
//! | `run_loop.rs` | [`run`]: interrupts, KVM_RUN, dispatch, single-stepping, memslot requests |
//! | `guest.rs` | guest memory through the vCPU's paging: reading and decoding instructions, linear addresses |
//! | `halt.rs` | waiting for the APIC timer while the vCPU is halted (HLT exits, `TDVMCALL<HLT>`) |
//! | `floor.rs` | the tiny guests' run loop of [`crate::floor`] |
//! | `count.rs` | counting the guest's instructions by single-stepping ([`InstructionCounts`]) |
//!
//! The devices never see KVM ([`crate::machine`]); the simulated platforms' glue
//! ([`crate::platform`]) and the memslot scenario ([`crate::memslot`]) reach the vCPU only
//! through [`VcpuCtl`].

mod coalesced;
mod count;
mod exits;
mod floor;
mod guest;
mod halt;
mod kvm;
mod run_loop;
mod run_view;
#[cfg(test)]
mod tests;

pub use count::{InstructionCounts, NOT_COUNTED};
pub use guest::{
    PortExit, decode_guest, find_port_io, guest_linear_address, linear_address, next_insn,
    read_guest, walk_guest,
};
pub use halt::wait_for_wakeup;
pub use kvm::{CountedFd, Ioctl, IoctlCounts};
pub use run_loop::run;

use crate::boot::{pvh_regs, pvh_sregs};
use crate::cpuid::{self, Brand};
use crate::devices::lapic::LAPIC_BASE;
use crate::machine::{Control, CpuState};
use crate::platform::TrapSites;
use crate::{ExitReason, VmmError};
use coalesced::CoalescedRing;
use kvm_bindings::{CpuId, Msrs, kvm_msr_entry, kvm_regs};
use kvm_ioctls::{SyncReg, VcpuExit, VmFd};
use protocol::apic;
use protocol::platform::PlatformKind;
use run_view::RunView;

/// The value the guest's `msr.apic_base` case expects: default base, BSP, enabled (and under
/// tdx-sim x2APIC mode, EXTD). This KVM already reports the xAPIC value without an in-kernel
/// irqchip (checked on these machines); it is set only if a KVM does not.
const APIC_BASE_VALUE: u64 = LAPIC_BASE | apic::BASE_ENABLE | apic::BASE_BSP;

/// The one vCPU, ready to run from the PVH entry.
pub struct Vcpu {
    fd: CountedFd,
    view: RunView,
    /// KVM's coalesced ring for COM1's data port; `None` when KVM cannot coalesce port
    /// writes (then every byte exits, as before), and on the simulated platforms (where a
    /// raw write to COM1 must exit, to be caught).
    ring: Option<CoalescedRing>,
    /// The CPUID table given to KVM_SET_CPUID2, for the simulated hosts' CPUID requests.
    cpuid: CpuId,
    /// The guest's instructions, when the run counts them ([`Vcpu::count_instructions`]).
    instructions: Option<InstructionCounts>,
    /// Host time the run loop spent outside KVM_RUN so far, in nanoseconds.
    vmm_ns: u64,
    /// KVM stores the special registers in kvm_run at every exit ([`VcpuCtl::translate`]
    /// then walks the guest's page tables itself).
    sregs_synced: bool,
}

/// What vCPU 0 is made of.
#[derive(Clone, Copy, Debug)]
pub struct VcpuSetup<'a> {
    /// The PVH entry point.
    pub entry: u64,
    /// The CPUID brand string of this run.
    pub brand: &'a Brand,
    /// Which CPUID table: plain, tdx-sim's or sev-es-sim's.
    pub platform: PlatformKind,
    /// The vCPU's physical-address width (sev-es-sim's C-bit comes from it).
    pub width: crate::sim::address::AddressWidth,
    /// Whether the width was chosen narrower than the host's (then CPUID says so).
    pub forced_width: bool,
    /// The simulated platforms' TDCALL or VMGEXIT and raw CPUID, armed as hardware
    /// breakpoints 0 and 1.
    pub breakpoint: Option<TrapSites>,
    /// The UEFI hand-off state to start in (`efi-handoff` boot) instead of the PVH entry.
    pub handoff: Option<&'a crate::boot_efi::Handoffs>,
}

impl Vcpu {
    /// Creates vCPU 0 and puts it at the PVH entry: CPUID first (before SREGS and the first
    /// KVM_RUN, DESIGN.md), from KVM's `supported` table adjusted for `setup`, then the APIC
    /// base MSR, then special and general registers.
    pub fn create(vm: &VmFd, supported: CpuId, setup: VcpuSetup<'_>) -> Result<Self, VmmError> {
        let VcpuSetup {
            entry,
            brand,
            platform,
            width,
            forced_width,
            breakpoint,
            handoff,
        } = setup;
        let mut fd = CountedFd::new(
            vm.create_vcpu(0)
                .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?,
        );
        let mut cpuid = supported;
        let table = |e| VmmError::Config(format!("CPUID table: {e:?}"));
        cpuid::configure(&mut cpuid, brand).map_err(table)?;
        if forced_width {
            cpuid::set_phys_bits(&mut cpuid, width.bits()).map_err(table)?;
        }
        match platform {
            PlatformKind::Legacy => {}
            PlatformKind::Tdx => cpuid::configure_tdx(&mut cpuid).map_err(table)?,
            PlatformKind::SevEs => {
                cpuid::configure_sev_es(&mut cpuid, width.sev_cbit()).map_err(table)?
            }
        }
        fd.set_cpuid2(&cpuid)?;
        // A TD's APIC is in x2APIC mode from the start (EXTD set; CPUID says x2APIC).
        let apic_base = match platform {
            PlatformKind::Tdx => APIC_BASE_VALUE | apic::BASE_EXTD,
            PlatformKind::Legacy | PlatformKind::SevEs => APIC_BASE_VALUE,
        };
        ensure_apic_base(&fd, apic_base)?;
        let sregs = fd.get_sregs()?;
        let (sregs, regs) = match handoff {
            Some(h) => (crate::boot_efi::sregs(h, sregs), crate::boot_efi::regs(h)),
            None => {
                let mut sregs = pvh_sregs(sregs);
                if platform == PlatformKind::Tdx {
                    // The TDX module enters a TD with long mode already enabled.
                    sregs.efer = crate::sim::raw::TDX_INITIAL_EFER;
                }
                (sregs, pvh_regs(entry))
            }
        };
        fd.set_sregs(&sregs)?;
        fd.set_regs(&regs)?;
        if let Some(sites) = breakpoint {
            fd.set_guest_debug(&crate::platform::guest_debug(Some(sites), false))?;
        }
        fd.set_sync_valid_reg(SyncReg::Register);
        // sev-es-sim checks the GHCB's mapping at every GHCB-page request: with CR3 in kvm_run
        // (no cost measurable on these hosts) that is a walk over guest RAM, not an ioctl.
        let sregs_synced = platform == PlatformKind::SevEs;
        if sregs_synced {
            fd.set_sync_valid_reg(SyncReg::SystemRegister);
        }
        let view = RunView::new(fd.raw(), vm.run_size())?;
        let ring = if platform == PlatformKind::Legacy {
            coalesced::coalesce_com1_data(vm, &fd)
                .inspect_err(|why| {
                    eprintln!(
                        "vmm: serial output is not coalesced ({why}); every byte written to \
                         COM1 exits"
                    );
                })
                .ok()
        } else {
            None
        };
        Ok(Self {
            fd,
            view,
            ring,
            cpuid,
            instructions: None,
            vmm_ns: 0,
            sregs_synced,
        })
    }

    /// Makes the run loop single-step the whole run and count the guest's instructions
    /// ([`InstructionCounts`]; slow: an exit per instruction).
    pub fn count_instructions(&mut self) {
        self.instructions = Some(InstructionCounts::default());
    }

    /// The instructions counted, if the run counts them.
    pub fn instructions(&self) -> Option<&InstructionCounts> {
        self.instructions.as_ref()
    }

    /// What the run cost so far besides exits.
    fn counts(&self) -> crate::devices::RunCounts {
        crate::devices::RunCounts {
            ioctls: self.fd.counts(),
            instructions: self.instructions.as_ref().map_or(0, |c| c.total),
            vmm_ns: self.vmm_ns,
        }
    }

    /// The vCPU's TSC frequency in kHz (KVM_GET_TSC_KHZ), if KVM reports one.
    pub fn tsc_khz(&self) -> Option<u32> {
        self.fd.get_tsc_khz().ok().filter(|&khz| khz != 0)
    }

    /// The vCPU ioctls made so far.
    pub fn ioctls(&self) -> IoctlCounts {
        self.fd.counts()
    }

    /// Whether KVM queues COM1's data-port writes in the coalesced ring.
    #[cfg(test)]
    fn coalesces(&self) -> bool {
        self.ring.is_some()
    }
}

/// What the simulated platforms' glue and the memslot scenario may do to the vCPU at an
/// exit, while the run loop holds its kvm_run view: change registers, look up CPUID, access
/// MSRs, translate addresses, inject exceptions, complete the exit KVM started.
pub struct VcpuCtl<'a> {
    fd: &'a mut CountedFd,
    view: &'a RunView,
    cpuid: &'a CpuId,
    stepping: bool,
    sregs_synced: bool,
}

impl<'a> VcpuCtl<'a> {
    /// What the platform glue may do to the vCPU at the current exit (`stepping`: the memslot
    /// scenario single-steps the guest). Built from the [`Vcpu`]'s fields one by one, so the
    /// run loop keeps its own borrow of the view.
    fn new(vcpu: VcpuParts<'a>, stepping: bool) -> Self {
        Self {
            fd: vcpu.fd,
            view: vcpu.view,
            cpuid: vcpu.cpuid,
            stepping,
            sregs_synced: vcpu.sregs_synced,
        }
    }

    /// The vCPU fd, for reading guest memory through the vCPU's paging ([`read_guest`] and
    /// friends).
    pub fn fd(&self) -> &CountedFd {
        self.fd
    }

    /// The guest physical address `va` maps to under the vCPU's current paging, if mapped:
    /// walked over guest RAM `mem` ([`walk_guest`], `alias` and `phys_bits` as there) when KVM
    /// syncs the special registers and the guest runs with long-mode paging, else asked of
    /// KVM (KVM_TRANSLATE).
    pub fn translate(
        &mut self,
        mem: &vm_memory::GuestMemoryMmap,
        alias: u64,
        phys_bits: u8,
        va: u64,
    ) -> Option<u64> {
        if self.sregs_synced {
            let sregs = self.view.sregs();
            if guest::long_mode_paging(&sregs) {
                return walk_guest(mem, &sregs, alias, phys_bits, va);
            }
        }
        self.fd
            .translate_gva(va)
            .ok()
            .filter(|t| t.valid != 0)
            .map(|t| t.physical_address)
    }

    /// Changes the guest's general registers through kvm_run's sync regs (loaded by the next
    /// KVM_RUN; cheaper than KVM_SET_REGS here). Starts from the snapshot KVM stored at the
    /// last exit.
    pub fn write_regs(&mut self, change: impl FnOnce(&mut kvm_regs)) {
        change(&mut self.fd.sync_regs_mut().regs);
        self.fd.set_sync_dirty_reg(SyncReg::Register);
    }

    /// CPUID as KVM answers it from the table set with KVM_SET_CPUID2 (`kvm_cpuid()`).
    pub fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        cpuid::lookup(self.cpuid, leaf, subleaf)
    }

    /// The vCPU's MSR `index` (KVM_GET_MSRS), `None` if KVM has no such MSR.
    pub fn read_msr(&self, index: u32) -> Result<Option<u64>, VmmError> {
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
            index,
            ..Default::default()
        }])
        .expect("one MSR entry fits");
        let n = self.fd.get_msrs(&mut msrs)?;
        Ok((n == 1).then(|| msrs.as_slice()[0].data))
    }

    /// Sets the vCPU's MSR `index` (KVM_SET_MSRS); false if KVM refuses the MSR or value.
    pub fn write_msr(&self, index: u32, value: u64) -> Result<bool, VmmError> {
        let msrs = Msrs::from_entries(&[kvm_msr_entry {
            index,
            data: value,
            ..Default::default()
        }])
        .expect("one MSR entry fits");
        Ok(self.fd.set_msrs(&msrs)? == 1)
    }

    /// Answers the current KVM_EXIT_X86_RDMSR / WRMSR: `data` (a read's value) and `error`
    /// (KVM injects #GP when set).
    pub fn set_msr_reply(&self, data: u64, error: bool) {
        self.view.set_msr_reply(data, error);
    }

    /// Whether the VMM single-steps the guest (a memslot is deleted).
    pub fn stepping(&self) -> bool {
        self.stepping
    }

    /// Injects exception `vector` (with `error_code`, if it has one) for delivery at the
    /// next KVM_RUN, at the RIP the registers hold then. Only valid at an exit with no access
    /// left for KVM to complete (a debug exit, or after [`Self::complete_exit`]).
    pub fn inject_exception(
        &mut self,
        vector: u8,
        error_code: Option<u32>,
    ) -> Result<(), VmmError> {
        let mut events = self.fd.get_vcpu_events()?;
        events.exception.injected = 1;
        events.exception.pending = 0;
        events.exception.nr = vector;
        events.exception.has_error_code = u8::from(error_code.is_some());
        events.exception.error_code = error_code.unwrap_or(0);
        // Only the exception is being set: no other event's fields are valid.
        events.flags = 0;
        self.fd.set_vcpu_events(&events)
    }

    /// Lets KVM finish the exit it started (the access completed, nothing executed): a
    /// KVM_RUN with `immediate_exit`, which returns EINTR (or, while single-stepping, the step
    /// that ends the instruction). Returns the registers afterwards. KVM completes an MMIO,
    /// port-IO or MSR exit on the next KVM_RUN whatever the registers say (DESIGN.md), so an
    /// exception for the instruction can only be injected after this.
    pub fn complete_exit(&mut self) -> Result<kvm_regs, String> {
        self.fd.set_kvm_immediate_exit(1);
        let completed = match self.fd.run() {
            Err(e) if e.errno() == libc::EINTR => Ok(()),
            Ok(VcpuExit::Intr | VcpuExit::Debug(_)) => Ok(()),
            Ok(other) => Err(format!("the completing KVM_RUN exited with {other:?}")),
            Err(e) => Err(format!("the completing KVM_RUN failed: {e}")),
        };
        self.fd.set_kvm_immediate_exit(0);
        completed.map(|()| self.view.cpu_state().regs)
    }

    /// Injects exception `vector` at the instruction at `start`, with the registers of the
    /// exit (`snapshot`) otherwise. With `complete`, KVM still has the exit's access to
    /// finish ([`Self::complete_exit`] first). Seen on these machines: RDMSR/WRMSR and IN
    /// exits report RIP at the instruction, OUT and HLT exits after it; the completing run
    /// moves it on.
    pub fn inject_at(
        &mut self,
        snapshot: &kvm_regs,
        start: u64,
        vector: u8,
        error_code: Option<u32>,
        complete: bool,
    ) -> Result<Control, VmmError> {
        if complete && let Err(why) = self.complete_exit() {
            return Ok(Control::Stop(ExitReason::PlatformStop {
                detail: format!("cannot raise exception {vector} at the instruction: {why}"),
                rip: start,
            }));
        }
        self.write_regs(|r| {
            *r = *snapshot;
            r.rip = start;
        });
        self.inject_exception(vector, error_code)?;
        Ok(Control::Continue)
    }

    /// The register snapshot of the current exit.
    pub fn cpu_state(&self) -> CpuState {
        self.view.cpu_state()
    }
}

/// The fields of a [`Vcpu`] a [`VcpuCtl`] borrows.
struct VcpuParts<'a> {
    fd: &'a mut CountedFd,
    view: &'a RunView,
    cpuid: &'a CpuId,
    sregs_synced: bool,
}

/// RIP through KVM_GET_REGS, for stops outside an exit (EINTR).
fn rip(fd: &CountedFd) -> Result<u64, VmmError> {
    Ok(fd.get_regs()?.rip)
}

/// Makes IA32_APIC_BASE read `value` if KVM does not already.
fn ensure_apic_base(fd: &CountedFd, value: u64) -> Result<(), VmmError> {
    let entry = kvm_msr_entry {
        index: protocol::x86::msr::APIC_BASE,
        ..Default::default()
    };
    let mut msrs = Msrs::from_entries(&[entry]).expect("one MSR entry fits");
    fd.get_msrs(&mut msrs)?;
    if msrs.as_slice()[0].data == value {
        return Ok(());
    }
    let set = Msrs::from_entries(&[kvm_msr_entry {
        data: value,
        ..entry
    }])
    .expect("one MSR entry fits");
    match fd.set_msrs(&set)? {
        1 => Ok(()),
        _ => Err(VmmError::Config(format!(
            "KVM refused IA32_APIC_BASE = {value:#x}"
        ))),
    }
}
