//! The KVM side of the run loop: vCPU setup for the PVH entry, KVM_RUN, decoding exits into
//! [`Exit`] values for the [`Machine`], and interrupt injection.

use crate::boot::{pvh_regs, pvh_sregs};
use crate::cpuid::{self, Brand};
use crate::devices::lapic::LAPIC_BASE;
use crate::machine::{Control, CpuState, Exit, InterruptStep, Machine};
use crate::{ExitReason, ExitStats, VmmError};
use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES, Msrs, kvm_interrupt, kvm_msr_entry, kvm_run};
use kvm_ioctls::{Kvm, KvmRunWrapper, SyncReg, VcpuExit, VcpuFd, VmFd};
use std::ptr::{NonNull, addr_of, addr_of_mut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

// KVM_INTERRUPT (Linux include/uapi/linux/kvm.h: `_IOW(KVMIO, 0x86, struct kvm_interrupt)`):
// queue an external interrupt when there is no in-kernel irqchip. kvm-ioctls 0.25 has no
// wrapper for it, so the ioctl number is built with vmm-sys-util's macro.
vmm_sys_util::ioctl_iow_nr!(KVM_INTERRUPT, kvm_bindings::KVMIO, 0x86, kvm_interrupt);

/// IA32_APIC_BASE (Intel SDM vol. 3A, 11.4.4).
const MSR_IA32_APIC_BASE: u32 = 0x1b;
/// IA32_APIC_BASE bit 8: this is the bootstrap processor.
const APIC_BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE bit 11: APIC global enable.
const APIC_BASE_ENABLE: u64 = 1 << 11;
/// The value the guest's `msr.apic_base` case expects: default base, BSP, enabled. This
/// KVM already reports it without an in-kernel irqchip (checked on these machines); it is
/// set only if a KVM does not.
const APIC_BASE_VALUE: u64 = LAPIC_BASE | APIC_BASE_ENABLE | APIC_BASE_BSP;

/// Longest single sleep while a halted vCPU waits for its timer, so a stop request is
/// noticed promptly even for a far-off timer.
const HALT_SLEEP_SLICE: Duration = Duration::from_millis(10);

/// A second, read-mostly mapping of the vCPU's `kvm_run` page.
///
/// kvm-ioctls hands out `kvm_run` only through `&mut VcpuFd` (and its exits borrow it), so
/// the register snapshot, `if_flag` and `ready_for_interrupt_injection` could not be read
/// while an exit's data is being handled, and a signal handler could not set
/// `immediate_exit` without aliasing the vCPU object. Mapping the same page again
/// (kvm-ioctls' own [`KvmRunWrapper`]) gives the loop and the kick handler their own view;
/// all accesses through it are volatile reads or, for `immediate_exit`, a volatile write.
pub struct RunView {
    run: NonNull<kvm_run>,
    /// Owns the mapping `run` points into; only dropped, never touched otherwise.
    _map: KvmRunWrapper,
}

impl RunView {
    fn new(vcpu: &VcpuFd, size: usize) -> Result<Self, VmmError> {
        let mut map =
            KvmRunWrapper::mmap_from_fd(vcpu, size).map_err(VmmError::kvm("mmap(kvm_run)"))?;
        let run = NonNull::from(map.as_mut_ref());
        Ok(Self { run, _map: map })
    }

    /// Register snapshot and IF at the last exit (sync regs must be enabled).
    fn cpu_state(&self) -> CpuState {
        let p = self.run.as_ptr();
        // SAFETY: `p` points to the live kvm_run mapping owned by `self._map`, which is
        // KVM_GET_VCPU_MMAP_SIZE bytes long, so every field is in bounds; KVM wrote them at
        // the exit (sync regs are stored on every exit while `kvm_valid_regs` has
        // KVM_SYNC_X86_REGS, which `Vcpu::create` sets). Volatile reads of plain integers:
        // any bit pattern is valid.
        unsafe {
            CpuState {
                regs: addr_of!((*p).s.regs.regs).read_volatile(),
                if_flag: addr_of!((*p).if_flag).read_volatile() != 0,
            }
        }
    }

    /// `ready_for_interrupt_injection` from the last exit.
    fn ready_for_interrupt(&self) -> bool {
        // SAFETY: in-bounds field of the live mapping (see `cpu_state`); a u8 read.
        unsafe { addr_of!((*self.run.as_ptr()).ready_for_interrupt_injection).read_volatile() != 0 }
    }

    /// Bytes per element of the current KVM_EXIT_IO.
    fn io_size(&self) -> usize {
        // SAFETY: called only for KVM_EXIT_IO, for which KVM filled `io` in the exit union;
        // in-bounds field of the live mapping; plain integers.
        let size =
            unsafe { addr_of!((*self.run.as_ptr()).__bindgen_anon_1.io.size).read_volatile() };
        usize::from(size)
    }

    /// `suberror` and `data[..ndata]` of the current KVM_EXIT_INTERNAL_ERROR.
    fn internal_error(&self) -> (u32, Vec<u64>) {
        // SAFETY: called only for KVM_EXIT_INTERNAL_ERROR, for which KVM filled `internal`;
        // in-bounds field of the live mapping; plain integers.
        let internal =
            unsafe { addr_of!((*self.run.as_ptr()).__bindgen_anon_1.internal).read_volatile() };
        let n = (internal.ndata as usize).min(internal.data.len());
        (internal.suberror, internal.data[..n].to_vec())
    }

    /// Where the kick handler writes.
    fn immediate_exit(&self) -> *mut u8 {
        // SAFETY: projection to a field of the live mapping; no reference is created.
        unsafe { addr_of_mut!((*self.run.as_ptr()).immediate_exit) }
    }
}

/// The one vCPU, ready to run from the PVH entry.
pub struct Vcpu {
    fd: VcpuFd,
    view: RunView,
}

impl Vcpu {
    /// Creates vCPU 0 and puts it at the PVH entry: CPUID first (before SREGS and the first
    /// KVM_RUN, DESIGN.md), then the APIC base MSR, then special and general registers.
    pub fn create(kvm: &Kvm, vm: &VmFd, entry: u64, brand: &Brand) -> Result<Self, VmmError> {
        let mut fd = vm
            .create_vcpu(0)
            .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
        let mut cpuid: CpuId = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(VmmError::kvm("KVM_GET_SUPPORTED_CPUID"))?;
        cpuid::configure(&mut cpuid, brand)
            .map_err(|e| VmmError::Config(format!("CPUID table: {e:?}")))?;
        fd.set_cpuid2(&cpuid)
            .map_err(VmmError::kvm("KVM_SET_CPUID2"))?;
        ensure_apic_base(&fd)?;
        let sregs = fd.get_sregs().map_err(VmmError::kvm("KVM_GET_SREGS"))?;
        fd.set_sregs(&pvh_sregs(sregs))
            .map_err(VmmError::kvm("KVM_SET_SREGS"))?;
        fd.set_regs(&pvh_regs(entry))
            .map_err(VmmError::kvm("KVM_SET_REGS"))?;
        fd.set_sync_valid_reg(SyncReg::Register);
        let view = RunView::new(&fd, vm.run_size())?;
        Ok(Self { fd, view })
    }

    /// The vCPU's TSC frequency in kHz (KVM_GET_TSC_KHZ), if KVM reports one.
    pub fn tsc_khz(&self) -> Option<u32> {
        self.fd.get_tsc_khz().ok().filter(|&khz| khz != 0)
    }

    /// RIP through KVM_GET_REGS, for stops outside an exit (EINTR).
    fn rip(&self) -> Result<u64, VmmError> {
        Ok(self
            .fd
            .get_regs()
            .map_err(VmmError::kvm("KVM_GET_REGS"))?
            .rip)
    }

    fn inject(&self, vector: u8) -> Result<(), VmmError> {
        let irq = kvm_interrupt {
            irq: u32::from(vector),
        };
        // SAFETY: KVM_INTERRUPT on a vCPU fd reads one `struct kvm_interrupt`, which `irq`
        // is and which outlives the call; the return value is checked.
        let ret = unsafe { vmm_sys_util::ioctl::ioctl_with_ref(&self.fd, KVM_INTERRUPT(), &irq) };
        if ret < 0 {
            return Err(VmmError::kvm("KVM_INTERRUPT")(
                vmm_sys_util::errno::Error::last(),
            ));
        }
        Ok(())
    }
}

/// Makes IA32_APIC_BASE read [`APIC_BASE_VALUE`] if KVM does not already.
fn ensure_apic_base(fd: &VcpuFd) -> Result<(), VmmError> {
    let entry = kvm_msr_entry {
        index: MSR_IA32_APIC_BASE,
        ..Default::default()
    };
    let mut msrs = Msrs::from_entries(&[entry]).expect("one MSR entry fits");
    fd.get_msrs(&mut msrs)
        .map_err(VmmError::kvm("KVM_GET_MSRS"))?;
    if msrs.as_slice()[0].data == APIC_BASE_VALUE {
        return Ok(());
    }
    let set = Msrs::from_entries(&[kvm_msr_entry {
        data: APIC_BASE_VALUE,
        ..entry
    }])
    .expect("one MSR entry fits");
    match fd.set_msrs(&set).map_err(VmmError::kvm("KVM_SET_MSRS"))? {
        1 => Ok(()),
        _ => Err(VmmError::Config(
            "KVM refused IA32_APIC_BASE = 0xfee00900".into(),
        )),
    }
}

/// Turns kvm-ioctls' exit into the machine's; data slices stay the exit's own.
fn decode<'a>(exit: VcpuExit<'a>, view: &RunView) -> Exit<'a> {
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

/// Runs the vCPU until the machine stops it or `stop` is set (then [`ExitReason::Timeout`]).
/// Serial output goes to `sink` as it appears.
pub fn run(
    vcpu: &mut Vcpu,
    machine: &mut Machine,
    stats: &mut ExitStats,
    stop: &AtomicBool,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<ExitReason, VmmError> {
    // SAFETY: `immediate_exit` points into `vcpu.view`'s mapping, which stays borrowed (and so
    // alive) for the guard's lifetime; no Rust reference to that byte is ever made (the loop
    // resets it through kvm-ioctls' separate mapping of the same page).
    let _kick = unsafe { crate::kick::KickTarget::arm(&vcpu.view, vcpu.view.immediate_exit()) };
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(ExitReason::Timeout { rip: vcpu.rip()? });
        }
        let window = match machine.interrupt_step(vcpu.view.ready_for_interrupt(), Instant::now()) {
            InterruptStep::Idle => false,
            InterruptStep::Inject(v) => {
                vcpu.inject(v)?;
                stats.irqs_injected += 1;
                false
            }
            InterruptStep::RequestWindow => true,
        };
        vcpu.fd.get_kvm_run().request_interrupt_window = u8::from(window);

        let result = vcpu.fd.run();
        let now = Instant::now();
        let cpu = vcpu.view.cpu_state();
        let control = match result {
            Ok(exit) => {
                let exit = decode(exit, &vcpu.view);
                stats.record(&exit);
                let interrupted = matches!(exit, Exit::Interrupted);
                let control = machine.handle(exit, &cpu, now);
                if interrupted {
                    vcpu.fd.set_kvm_immediate_exit(0);
                }
                control
            }
            Err(e) if e.errno() == libc::EINTR => {
                stats.record(&Exit::Interrupted);
                // A kick (or another signal). Re-arm KVM_RUN; the loop head checks `stop`,
                // which the watchdog sets before it kicks. The machine counts it like any
                // exit (its register snapshot is stale, and unused for this exit).
                let control = machine.handle(Exit::Interrupted, &cpu, now);
                vcpu.fd.set_kvm_immediate_exit(0);
                control
            }
            Err(e) => return Err(VmmError::kvm("KVM_RUN")(e)),
        };

        let out = machine.take_serial_output();
        if !out.is_empty() {
            sink(out);
        }

        match control {
            Control::Continue => {}
            Control::Stop(reason) => return Ok(reason),
            Control::WaitUntil(due) => {
                if let Some(reason) = wait_halted(machine, &cpu, due, stop, vcpu)? {
                    return Ok(reason);
                }
            }
        }
    }
}

/// Sleeps while the vCPU is halted waiting for its timer; `Some` if the run ends meanwhile.
fn wait_halted(
    machine: &mut Machine,
    cpu: &CpuState,
    mut due: Instant,
    stop: &AtomicBool,
    vcpu: &Vcpu,
) -> Result<Option<ExitReason>, VmmError> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(Some(ExitReason::Timeout { rip: vcpu.rip()? }));
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
