//! The KVM side of the run loop: vCPU setup for the PVH entry, KVM_RUN, decoding exits into
//! [`Exit`] values for the [`Machine`], and interrupt injection.

use crate::boot::{pvh_regs, pvh_sregs};
use crate::cpuid::{self, Brand};
use crate::devices::lapic::LAPIC_BASE;
use crate::devices::serial::COM1_DATA;
use crate::machine::{CoalescedWrite, Control, CpuState, Exit, InterruptStep, Machine};
use crate::simulated::{Host, RawInsn, RawOutcome};
use crate::{ExitReason, ExitStats, VmmError};
use kvm_bindings::{
    CpuId, Msrs, kvm_coalesced_mmio, kvm_coalesced_mmio_ring, kvm_interrupt, kvm_msr_entry,
    kvm_regs, kvm_run,
};
use kvm_ioctls::{Cap, IoEventAddress, KvmRunWrapper, SyncReg, VcpuExit, VcpuFd, VmFd};
use protocol::apic;
use protocol::platform::PlatformKind;
use protocol::testdev::Space;
use std::os::fd::AsRawFd;
use std::ptr::{NonNull, addr_of, addr_of_mut};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

// KVM_INTERRUPT (Linux include/uapi/linux/kvm.h: `_IOW(KVMIO, 0x86, struct kvm_interrupt)`):
// queue an external interrupt when there is no in-kernel irqchip. kvm-ioctls 0.25 has no
// wrapper for it, so the ioctl number is built with vmm-sys-util's macro.
vmm_sys_util::ioctl_iow_nr!(KVM_INTERRUPT, kvm_bindings::KVMIO, 0x86, kvm_interrupt);

/// IA32_APIC_BASE (Intel SDM vol. 3A, 11.4.4).
const MSR_IA32_APIC_BASE: u32 = protocol::x86::msr::APIC_BASE;
/// The value the guest's `msr.apic_base` case expects: default base, BSP, enabled (and under
/// tdx-sim x2APIC mode, EXTD). This KVM already reports the xAPIC value without an in-kernel
/// irqchip (checked on these machines); it is set only if a KVM does not.
const APIC_BASE_VALUE: u64 = LAPIC_BASE | apic::BASE_ENABLE | apic::BASE_BSP;

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

    /// Answers the current KVM_EXIT_X86_RDMSR / WRMSR: `data` (a read's value) and `error`
    /// (KVM injects #GP when set).
    fn set_msr_reply(&self, data: u64, error: bool) {
        let p = self.run.as_ptr();
        // SAFETY: called only for an MSR exit, for which KVM filled `msr` in the exit union
        // and reads `data`/`error` back at the next KVM_RUN; in-bounds fields of the live
        // mapping; plain integer writes, no reference created.
        unsafe {
            addr_of_mut!((*p).__bindgen_anon_1.msr.data).write_volatile(data);
            addr_of_mut!((*p).__bindgen_anon_1.msr.error).write_volatile(u8::from(error));
        }
    }

    /// Where the kick handler writes.
    fn immediate_exit(&self) -> *mut u8 {
        // SAFETY: projection to a field of the live mapping; no reference is created.
        unsafe { addr_of_mut!((*self.run.as_ptr()).immediate_exit) }
    }
}

/// KVM's coalesced-I/O ring: the page at `KVM_COALESCED_MMIO_PAGE_OFFSET` pages into the
/// vCPU fd's mapping, `struct kvm_coalesced_mmio_ring { u32 first, last; struct
/// kvm_coalesced_mmio coalesced_mmio[]; }` (Linux include/uapi/linux/kvm.h). KVM appends a
/// write to a registered zone at `last` and advances `last` (after a write barrier,
/// virt/kvm/coalesced_mmio.c); user space consumes from `first` and advances `first`. When
/// the ring is full, KVM exits for the write instead, so nothing is lost as long as the ring
/// is drained before each exit is handled.
///
/// Mapped here rather than through kvm-ioctls' `VcpuFd::coalesced_mmio_read`: that needs
/// `&mut VcpuFd` while the exit returned by `VcpuFd::run` still borrows it, and the ring has
/// to be drained before that exit is handled. It also reads `first` and `last` with plain
/// accesses; here `last` is loaded with Acquire (pairing with KVM's `smp_wmb` before it
/// stores `last`) and `first` stored with Release (the entry is read before KVM may reuse
/// its slot).
pub struct CoalescedRing {
    ring: NonNull<kvm_coalesced_mmio_ring>,
    /// Length of the mapping (one page).
    page_size: usize,
    /// Entries in the ring (`KVM_COALESCED_MMIO_MAX`).
    capacity: u32,
}

impl CoalescedRing {
    /// Maps the ring page of `vcpu`, which is at page `page_offset` of the vCPU fd (the
    /// value KVM_CHECK_EXTENSION(KVM_CAP_COALESCED_MMIO) returns).
    fn map(vcpu: &VcpuFd, page_offset: u32) -> Result<Self, VmmError> {
        // SAFETY: sysconf with a valid name has no preconditions.
        let page_size = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => {
                return Err(VmmError::kvm("sysconf(_SC_PAGESIZE)")(
                    vmm_sys_util::errno::Error::last(),
                ));
            }
        };
        let offset = libc::off_t::from(page_offset) * page_size as libc::off_t;
        // SAFETY: a fresh shared mapping of one page of the vCPU fd, at an address the kernel
        // picks (no existing mapping is replaced); the result is checked. KVM backs this
        // offset with the VM's coalesced ring page when KVM_CAP_COALESCED_MMIO is present.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                vcpu.as_raw_fd(),
                offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(VmmError::kvm("mmap(coalesced MMIO ring)")(
                vmm_sys_util::errno::Error::last(),
            ));
        }
        let header = size_of::<kvm_coalesced_mmio_ring>();
        let capacity = ((page_size - header) / size_of::<kvm_coalesced_mmio>()) as u32;
        Ok(Self {
            ring: NonNull::new(addr.cast()).expect("mmap does not return null on success"),
            page_size,
            capacity,
        })
    }

    /// The ring's `first` index (user space's to advance).
    fn first(&self) -> &AtomicU32 {
        // SAFETY: `first` is the first u32 of the live, page-aligned mapping, so aligned and
        // in bounds for `self`'s lifetime; KVM accesses it with single-copy-atomic 32-bit
        // loads and stores (READ_ONCE / aligned stores), never as anything else.
        unsafe { AtomicU32::from_ptr(addr_of_mut!((*self.ring.as_ptr()).first)) }
    }

    /// The ring's `last` index (KVM's to advance).
    fn last(&self) -> &AtomicU32 {
        // SAFETY: as for `first`, the second u32 of the mapping.
        unsafe { AtomicU32::from_ptr(addr_of_mut!((*self.ring.as_ptr()).last)) }
    }

    /// Takes the queued writes out of the ring, oldest first. Only while the vCPU is out of
    /// KVM_RUN (nothing is appended meanwhile: one vCPU, and it is on this thread).
    pub fn drain(&mut self) -> Drain<'_> {
        let last = self.last().load(Ordering::Acquire);
        Drain { ring: self, last }
    }

    /// Decodes entry `index` (< `capacity`).
    fn entry(&self, index: u32) -> CoalescedWrite {
        debug_assert!(index < self.capacity);
        // SAFETY: `index < capacity`, and `capacity` entries fit in the mapped page after the
        // header (computed in `map`), so the entry is in bounds; KVM wrote it before it
        // published `last` past it (the Acquire load in `drain`) and does not touch it until
        // `first` moves past it. A volatile read of plain integers: any bit pattern is valid.
        let e = unsafe {
            addr_of!((*self.ring.as_ptr()).coalesced_mmio)
                .cast::<kvm_coalesced_mmio>()
                .add(index as usize)
                .read_volatile()
        };
        // SAFETY: both union members are u32; `pio` is set by kernels with
        // KVM_CAP_COALESCED_PIO, which `coalesce_com1_data` requires.
        let pio = unsafe { e.__bindgen_anon_1.pio } != 0;
        CoalescedWrite {
            space: if pio { Space::Pio } else { Space::Mmio },
            addr: e.phys_addr,
            len: (e.len as usize).min(e.data.len()),
            data: e.data,
        }
    }
}

impl Drop for CoalescedRing {
    fn drop(&mut self) {
        // SAFETY: the page mapped in `map`, unmapped once; no reference into it outlives
        // `self` (`first`/`last`/`Drain` borrow `self`).
        unsafe { libc::munmap(self.ring.as_ptr().cast(), self.page_size) };
    }
}

/// The writes in the ring when [`CoalescedRing::drain`] was called, consumed one by one
/// (`first` advances as each is taken; those not taken stay queued).
pub struct Drain<'a> {
    ring: &'a mut CoalescedRing,
    /// `last` at the start of the drain.
    last: u32,
}

impl Iterator for Drain<'_> {
    type Item = CoalescedWrite;

    fn next(&mut self) -> Option<CoalescedWrite> {
        let capacity = self.ring.capacity;
        // Only this thread stores `first`.
        let first = self.ring.first().load(Ordering::Relaxed);
        if first == self.last || first >= capacity || self.last >= capacity {
            // Empty, or indices KVM would never produce (it checks `last` < capacity).
            return None;
        }
        let w = self.ring.entry(first);
        self.ring
            .first()
            .store((first + 1) % capacity, Ordering::Release);
        Some(w)
    }
}

/// Lets KVM queue byte writes to COM1's data port in its coalesced ring instead of exiting
/// for each, if it can; `Err` says why not (the caller falls back to plain exits).
///
/// The ring is mapped before the zone is registered, so no write is ever queued where it
/// could not be read.
fn coalesce_com1_data(vm: &VmFd, vcpu: &VcpuFd) -> Result<CoalescedRing, String> {
    if !vm.check_extension(Cap::CoalescedPio) {
        return Err("KVM lacks KVM_CAP_COALESCED_PIO".into());
    }
    let page_offset = vm.check_extension_int(Cap::CoalescedMmio);
    let page_offset = u32::try_from(page_offset)
        .ok()
        .filter(|&p| p > 0)
        .ok_or("KVM lacks KVM_CAP_COALESCED_MMIO (no ring page)")?;
    let ring = CoalescedRing::map(vcpu, page_offset).map_err(|e| e.to_string())?;
    vm.register_coalesced_mmio(IoEventAddress::Pio(u64::from(COM1_DATA)), 1)
        .map_err(|e| format!("KVM_REGISTER_COALESCED_MMIO (pio {COM1_DATA:#x}) failed: {e}"))?;
    Ok(ring)
}

/// The one vCPU, ready to run from the PVH entry.
pub struct Vcpu {
    fd: VcpuFd,
    view: RunView,
    /// KVM's coalesced ring for COM1's data port; `None` when KVM cannot coalesce port
    /// writes (then every byte exits, as before), and on the simulated platforms (where a
    /// raw write to COM1 must exit, to be caught).
    ring: Option<CoalescedRing>,
    /// The CPUID table given to KVM_SET_CPUID2, for the simulated hosts' CPUID requests.
    cpuid: CpuId,
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
    pub breakpoint: Option<crate::simulated::TrapSites>,
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
        let mut fd = vm
            .create_vcpu(0)
            .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
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
        fd.set_cpuid2(&cpuid)
            .map_err(VmmError::kvm("KVM_SET_CPUID2"))?;
        // A TD's APIC is in x2APIC mode from the start (EXTD set; CPUID says x2APIC).
        let apic_base = match platform {
            PlatformKind::Tdx => APIC_BASE_VALUE | apic::BASE_EXTD,
            PlatformKind::Legacy | PlatformKind::SevEs => APIC_BASE_VALUE,
        };
        ensure_apic_base(&fd, apic_base)?;
        let sregs = fd.get_sregs().map_err(VmmError::kvm("KVM_GET_SREGS"))?;
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
        fd.set_sregs(&sregs)
            .map_err(VmmError::kvm("KVM_SET_SREGS"))?;
        fd.set_regs(&regs).map_err(VmmError::kvm("KVM_SET_REGS"))?;
        if let Some(sites) = breakpoint {
            fd.set_guest_debug(&crate::simulated::breakpoint(sites, false))
                .map_err(VmmError::kvm("KVM_SET_GUEST_DEBUG"))?;
        }
        fd.set_sync_valid_reg(SyncReg::Register);
        let view = RunView::new(&fd, vm.run_size())?;
        let ring = if platform == PlatformKind::Legacy {
            coalesce_com1_data(vm, &fd)
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
        })
    }

    /// The vCPU's TSC frequency in kHz (KVM_GET_TSC_KHZ), if KVM reports one.
    pub fn tsc_khz(&self) -> Option<u32> {
        self.fd.get_tsc_khz().ok().filter(|&khz| khz != 0)
    }

    /// RIP through KVM_GET_REGS, for stops outside an exit (EINTR).
    fn rip(&self) -> Result<u64, VmmError> {
        rip(&self.fd)
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

/// What the simulated platforms' trap handler may do to the vCPU while the run loop holds
/// its kvm_run view: change registers, look up CPUID, access MSRs.
pub struct VcpuCtl<'a> {
    fd: &'a mut VcpuFd,
    cpuid: &'a CpuId,
    stepping: bool,
}

impl VcpuCtl<'_> {
    /// The guest physical address `va` maps to under the vCPU's current paging
    /// (KVM_TRANSLATE), if mapped.
    pub fn translate(&mut self, va: u64) -> Option<u64> {
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
        let n = self
            .fd
            .get_msrs(&mut msrs)
            .map_err(VmmError::kvm("KVM_GET_MSRS"))?;
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
        let n = self
            .fd
            .set_msrs(&msrs)
            .map_err(VmmError::kvm("KVM_SET_MSRS"))?;
        Ok(n == 1)
    }

    /// RIP through KVM_GET_REGS.
    pub fn rip(&self) -> Result<u64, VmmError> {
        rip(self.fd)
    }

    /// Whether the VMM single-steps the guest (a memslot is deleted).
    pub fn stepping(&self) -> bool {
        self.stepping
    }

    /// KVM_SET_GUEST_DEBUG.
    pub fn set_guest_debug(&mut self, d: &kvm_bindings::kvm_guest_debug) -> Result<(), VmmError> {
        self.fd
            .set_guest_debug(d)
            .map_err(VmmError::kvm("KVM_SET_GUEST_DEBUG"))
    }

    /// Injects exception `vector` (with `error_code`, if it has one) for delivery at the
    /// next KVM_RUN, at the RIP the registers hold then. Only valid at an exit with no access
    /// left for KVM to complete (a debug exit), which is where the simulated hosts call it.
    pub fn inject_exception(
        &mut self,
        vector: u8,
        error_code: Option<u32>,
    ) -> Result<(), VmmError> {
        inject_exception(self.fd, vector, error_code)
    }
}

/// KVM_SET_VCPU_EVENTS with exception `vector` injected (and nothing else changed).
fn inject_exception(fd: &VcpuFd, vector: u8, error_code: Option<u32>) -> Result<(), VmmError> {
    let mut events = fd
        .get_vcpu_events()
        .map_err(VmmError::kvm("KVM_GET_VCPU_EVENTS"))?;
    events.exception.injected = 1;
    events.exception.pending = 0;
    events.exception.nr = vector;
    events.exception.has_error_code = u8::from(error_code.is_some());
    events.exception.error_code = error_code.unwrap_or(0);
    // Only the exception is being set: no other event's fields are valid.
    events.flags = 0;
    fd.set_vcpu_events(&events)
        .map_err(VmmError::kvm("KVM_SET_VCPU_EVENTS"))
}

/// RIP through KVM_GET_REGS, for stops outside an exit (EINTR).
fn rip(fd: &VcpuFd) -> Result<u64, VmmError> {
    Ok(fd.get_regs().map_err(VmmError::kvm("KVM_GET_REGS"))?.rip)
}

/// Makes IA32_APIC_BASE read `value` if KVM does not already.
fn ensure_apic_base(fd: &VcpuFd, value: u64) -> Result<(), VmmError> {
    let entry = kvm_msr_entry {
        index: MSR_IA32_APIC_BASE,
        ..Default::default()
    };
    let mut msrs = Msrs::from_entries(&[entry]).expect("one MSR entry fits");
    fd.get_msrs(&mut msrs)
        .map_err(VmmError::kvm("KVM_GET_MSRS"))?;
    if msrs.as_slice()[0].data == value {
        return Ok(());
    }
    let set = Msrs::from_entries(&[kvm_msr_entry {
        data: value,
        ..entry
    }])
    .expect("one MSR entry fits");
    match fd.set_msrs(&set).map_err(VmmError::kvm("KVM_SET_MSRS"))? {
        1 => Ok(()),
        _ => Err(VmmError::Config(format!(
            "KVM refused IA32_APIC_BASE = {value:#x}"
        ))),
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

/// Runs the vCPU until the machine stops it or `stop` is set (then [`ExitReason::Timeout`]).
/// Serial output goes to `sink` as it appears.
pub fn run(
    vcpu: &mut Vcpu,
    machine: &mut Machine,
    host: &mut Host,
    memslots: Option<&crate::kick::MemslotThread>,
    stats: &mut ExitStats,
    stop: &AtomicBool,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<ExitReason, VmmError> {
    // Single-stepping while the memslot page may be MMIO (simulated platforms only), and the
    // RIP of the last step: where a store that exits began.
    let mut stepping = false;
    let mut last_step: Option<u64> = None;
    // Where the last #VE/#VC made of an MMIO access pointed (the guest re-executes it there
    // if its handler refuses the exception).
    let mut last_converted: Option<u64> = None;
    // SAFETY: `immediate_exit` points into `vcpu.view`'s mapping, which stays borrowed (and so
    // alive) for the guard's lifetime; no Rust reference to that byte is ever made (the loop
    // resets it through kvm-ioctls' separate mapping of the same page).
    let _kick = unsafe { crate::kick::KickTarget::arm(&vcpu.view, vcpu.view.immediate_exit()) };
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(ExitReason::Timeout { rip: vcpu.rip()? });
        }
        // A simulated TD's interrupts are posted: delivered when it leaves TDVMCALL<HLT>
        // (`Host::take_wakeup`).
        let ready = vcpu.view.ready_for_interrupt() || host.take_wakeup();
        let window = match machine.interrupt_step(ready, Instant::now()) {
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
        // Writes KVM coalesced during this KVM_RUN came before whatever ended it (an exit, a
        // signal, an error): replay them first, so the devices, the sink and the report see
        // the guest's accesses in its order. The ring fills only inside KVM_RUN, so doing
        // this after every KVM_RUN also leaves it empty at the end of the run, however the
        // run ends.
        let replayed = match vcpu.ring.as_mut() {
            Some(ring) => machine.replay_coalesced(ring.drain(), &cpu, now),
            None => Control::Continue,
        };
        let control = match result {
            Ok(exit) => {
                let exit = decode(exit, &vcpu.view);
                stats.record(&exit);
                let interrupted = matches!(exit, Exit::Interrupted);
                let control = match replayed {
                    Control::Continue => match route(host, exit, &cpu, stepping) {
                        Routed::Machine(exit) => machine.handle(exit, &cpu, now),
                        Routed::Done(control) => control,
                        Routed::Trap => {
                            let mut ctl = VcpuCtl {
                                fd: &mut vcpu.fd,
                                cpuid: &vcpu.cpuid,
                                stepping,
                            };
                            host.trap(&mut ctl, machine, &cpu, stop)?
                        }
                        Routed::Step => {
                            last_step = Some(cpu.rip());
                            Control::Continue
                        }
                        Routed::Watch => {
                            if stepping {
                                last_step = Some(cpu.rip());
                            }
                            let (reads, halts) = next_insn(
                                &vcpu.fd,
                                machine.memory(),
                                host.ram_alias_bit(),
                                &cpu.regs,
                            );
                            let mut ctl = VcpuCtl {
                                fd: &mut vcpu.fd,
                                cpuid: &vcpu.cpuid,
                                stepping,
                            };
                            host.watch_step(&mut ctl, machine, reads, halts, stepping)?
                        }
                        Routed::RawCpuid => {
                            let (fd, view) = (&mut vcpu.fd, &vcpu.view);
                            let raw = RawSite {
                                insn: RawInsn::Cpuid,
                                complete: false,
                            };
                            handle_raw(
                                fd,
                                view,
                                &vcpu.cpuid,
                                stepping,
                                host,
                                machine,
                                &cpu,
                                raw,
                                now,
                            )?
                        }
                        Routed::RawMsr { index, write } => {
                            let (fd, view) = (&mut vcpu.fd, &vcpu.view);
                            let raw = RawSite {
                                insn: RawInsn::Msr { index, write },
                                complete: true,
                            };
                            handle_raw(
                                fd,
                                view,
                                &vcpu.cpuid,
                                stepping,
                                host,
                                machine,
                                &cpu,
                                raw,
                                now,
                            )?
                        }
                        Routed::RawIo { port, size, input } => {
                            // Complete the exit first: whether KVM moves RIP then tells
                            // whether the exit reported it at the instruction (upstream KVM)
                            // or after it (OUT on these machines).
                            match complete_exit(&mut vcpu.fd, &vcpu.view) {
                                Err(why) => Control::Stop(ExitReason::PlatformStop {
                                    detail: format!(
                                        "cannot raise #VE/#VC at a raw port access: {why}"
                                    ),
                                    rip: cpu.rip(),
                                }),
                                Ok(after) => {
                                    let alias = host.ram_alias_bit();
                                    let at_insn = after != cpu.rip();
                                    let mem = machine.memory();
                                    let exit = PortExit { port, size, input };
                                    match find_port_io(
                                        &vcpu.fd, mem, alias, &cpu.regs, exit, at_insn,
                                    ) {
                                        Some((start, io)) => {
                                            let (fd, view) = (&mut vcpu.fd, &vcpu.view);
                                            let raw = RawSite {
                                                insn: RawInsn::PortIo { start, port, io },
                                                complete: false,
                                            };
                                            handle_raw(
                                                fd,
                                                view,
                                                &vcpu.cpuid,
                                                stepping,
                                                host,
                                                machine,
                                                &cpu,
                                                raw,
                                                now,
                                            )?
                                        }
                                        None => Control::Stop(ExitReason::RawInterception {
                                            platform: crate::sim_name(host.platform()),
                                            what: format!(
                                                "{} port {port:#x} ({size}-byte elements) that the VMM could not decode",
                                                if input { "IN from" } else { "OUT to" }
                                            ),
                                            rip: cpu.rip(),
                                        }),
                                    }
                                }
                            }
                        }
                        Routed::RawHlt => {
                            let start = cpu.rip().wrapping_sub(1);
                            let mut byte = [0u8; 1];
                            let alias = host.ram_alias_bit();
                            if read_guest(&vcpu.fd, machine.memory(), alias, start, &mut byte) == 1
                                && byte[0] == protocol::x86::HLT_OPCODE
                            {
                                let (fd, view) = (&mut vcpu.fd, &vcpu.view);
                                let raw = RawSite {
                                    insn: RawInsn::Hlt { start },
                                    complete: true,
                                };
                                handle_raw(
                                    fd,
                                    view,
                                    &vcpu.cpuid,
                                    stepping,
                                    host,
                                    machine,
                                    &cpu,
                                    raw,
                                    now,
                                )?
                            } else {
                                Control::Stop(ExitReason::RawInterception {
                                    platform: crate::sim_name(host.platform()),
                                    what: "HLT (no HLT opcode before the exit's RIP)".into(),
                                    rip: cpu.rip(),
                                })
                            }
                        }
                        Routed::Convert { gpa, write, len } => {
                            machine.count_exit();
                            let mem = machine.memory();
                            let (fd, view) = (&mut vcpu.fd, &vcpu.view);
                            let access = MmioAccess { gpa, write, len };
                            let steps = StepTrail {
                                last_step,
                                last_converted: &mut last_converted,
                            };
                            convert_to_exception(fd, view, host, mem, &cpu, access, steps)?
                        }
                    },
                    stop => stop,
                };
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
                let control = match replayed {
                    Control::Continue => machine.handle(Exit::Interrupted, &cpu, now),
                    stop => stop,
                };
                vcpu.fd.set_kvm_immediate_exit(0);
                control
            }
            Err(e) => {
                flush_serial(machine, sink);
                return Err(VmmError::kvm("KVM_RUN")(e));
            }
        };

        flush_serial(machine, sink);

        if let Some(req) = machine.take_memslot_request()
            && let Some(memslots) = memslots
        {
            memslots.send(req);
            if let Some(trap) = host.trap_sites() {
                // Step while the page may be MMIO: a store's MMIO exit reports the RIP after
                // the store, and the #VE/#VC must point at the store itself.
                stepping = req == crate::devices::memslot::Request::Delete;
                last_step = None;
                vcpu.fd
                    .set_guest_debug(&crate::simulated::breakpoint(
                        trap,
                        stepping || host.watching(),
                    ))
                    .map_err(VmmError::kvm("KVM_SET_GUEST_DEBUG"))?;
            }
        }

        match control {
            Control::Continue => {}
            Control::Stop(reason) => return Ok(reason),
            Control::WaitUntil(due) => {
                if let Some(reason) = wait_halted(machine, &cpu, due, stop, &vcpu.fd)? {
                    return Ok(reason);
                }
            }
        }
    }
}

/// DR6.B0: the DR0 breakpoint was hit (Intel SDM vol. 3B 18.2.3).
const DR6_B0: u64 = 1 << 0;

/// Where one exit goes.
enum Routed<'a> {
    /// To the machine's devices.
    Machine(Exit<'a>),
    /// Handled already.
    Done(Control),
    /// The simulated platform's TDCALL / VMGEXIT breakpoint: [`Host::trap`].
    Trap,
    /// A single step (while the memslot page may be MMIO).
    Step,
    /// A single step while the hostile host watches the guest's GHCB reads:
    /// [`Host::watch_step`].
    Watch,
    /// The guest's raw CPUID (DR1) under a simulated platform: [`Host::raw`].
    RawCpuid,
    /// A raw RDMSR/WRMSR under a simulated platform (its MSR filter denies every MSR).
    RawMsr {
        /// ECX.
        index: u32,
        /// EDX:EAX of a WRMSR.
        write: Option<u64>,
    },
    /// A raw IN/OUT (INS/OUTS) under a simulated platform.
    RawIo {
        /// The port.
        port: u16,
        /// Bytes per element.
        size: usize,
        /// IN/INS.
        input: bool,
    },
    /// A raw HLT under tdx-sim (an automatic exit under SEV-ES, which KVM handles).
    RawHlt,
    /// An MMIO exit on the deleted memslot page under a simulated platform: becomes #VE/#VC.
    Convert {
        /// GPA as KVM reported it.
        gpa: u64,
        /// A store.
        write: bool,
        /// Bytes accessed.
        len: usize,
    },
}

/// Sends platform exits (breakpoint, filtered MSRs) to the simulated host and stops the run
/// on a raw intercepted instruction the platform forbids; everything else goes to the
/// machine.
fn route<'a>(host: &mut Host, exit: Exit<'a>, cpu: &CpuState, stepping: bool) -> Routed<'a> {
    let rip = cpu.rip();
    let raw = |what: String| {
        Routed::Done(Control::Stop(ExitReason::RawInterception {
            platform: crate::sim_name(host.platform()),
            what,
            rip,
        }))
    };
    match exit {
        // A single step that lands on the trap instruction is a step: the breakpoint itself
        // (DR6.B0) follows when the instruction is about to run, and only that one is the
        // trap (answering at the step would answer twice: at the step and at B0).
        Exit::Debug { dr6 }
            if host.is_trap(rip) && (dr6 & DR6_B0 != 0 || !(stepping || host.watching())) =>
        {
            Routed::Trap
        }
        // The raw CPUID's breakpoint (DR1), likewise.
        Exit::Debug { dr6 }
            if host.is_cpuid_site(rip)
                && (dr6 & crate::simulated::DR6_B1 != 0 || !(stepping || host.watching())) =>
        {
            Routed::RawCpuid
        }
        Exit::Debug { .. } if host.watching() => Routed::Watch,
        Exit::Debug { .. } if stepping => Routed::Step,
        Exit::MmioRead { addr, data } if host.forbids_raw_io() && host.is_memslot_gpa(addr) => {
            Routed::Convert {
                gpa: addr,
                write: false,
                len: data.len(),
            }
        }
        Exit::MmioWrite { addr, data } if host.forbids_raw_io() && host.is_memslot_gpa(addr) => {
            Routed::Convert {
                gpa: addr,
                write: true,
                len: data.len(),
            }
        }
        // The simulated platforms send every RDMSR/WRMSR here (a DENY MSR filter).
        Exit::RdMsr { index, .. } if host.forbids_raw_io() => Routed::RawMsr { index, write: None },
        Exit::WrMsr { index, value, .. } if host.forbids_raw_io() => Routed::RawMsr {
            index,
            write: Some(value),
        },
        Exit::IoIn { port, size, .. } if host.forbids_raw_io() => Routed::RawIo {
            port,
            size,
            input: true,
        },
        Exit::IoOut { port, size, .. } if host.forbids_raw_io() => Routed::RawIo {
            port,
            size,
            input: false,
        },
        Exit::MmioRead { addr, data } if host.forbids_raw_io() => raw(format!(
            "MMIO read of {} bytes at GPA {addr:#x} (no memslot)",
            data.len()
        )),
        Exit::MmioWrite { addr, data } if host.forbids_raw_io() => raw(format!(
            "MMIO write of {} bytes at GPA {addr:#x} (no memslot)",
            data.len()
        )),
        Exit::Hlt if host.forbids_raw_hlt() => Routed::RawHlt,
        exit => Routed::Machine(exit),
    }
}

/// Turns the MMIO exit just taken (on the deleted memslot page, under a simulated platform)
/// into the #VE or #VC real hardware would have raised at the accessing instruction
/// (DESIGN.md, last section): KVM completes the access on the next KVM_RUN whatever the
/// registers say, so that run is made with `immediate_exit` set (it returns EINTR with the
/// access done and nothing executed); then the registers are restored from the snapshot
/// taken at the exit with RIP at the instruction, and the exception is injected. The access
/// itself never reaches a device: the guest re-issues it through its backend.
///
/// RIP at the instruction: a load's exit reports it (KVM writes RIP back only after the
/// data arrives); a store's exit reports the next instruction, so it comes from the last
/// single step. The instruction's length is the difference KVM's emulator made.
///
/// The last step is not always the store's start: after the guest's handler refused a #VE
/// and returned with IRET, the single-step trap comes one instruction late (IRET loads TF),
/// so no step exit precedes the re-executed store. Then the start is found backwards from
/// the RIP after the store: the one start whose bytes decode, with the guest's decoder, to a
/// store of the exit's width ending exactly there and addressing the exit's page.
fn convert_to_exception(
    fd: &mut VcpuFd,
    view: &RunView,
    host: &mut Host,
    mem: &vm_memory::GuestMemoryMmap,
    cpu: &CpuState,
    mmio: MmioAccess,
    steps: StepTrail<'_>,
) -> Result<Control, VmmError> {
    let MmioAccess { gpa, write, len } = mmio;
    let alias = host.ram_alias_bit();
    let last_step = steps.last_step;
    let snapshot = cpu.regs;
    let stop = |why: String| {
        Ok(Control::Stop(ExitReason::PlatformStop {
            detail: format!("cannot convert the MMIO exit at GPA {gpa:#x} into #VE/#VC: {why}"),
            rip: snapshot.rip,
        }))
    };
    fd.set_kvm_immediate_exit(1);
    let completed = match fd.run() {
        Err(e) if e.errno() == libc::EINTR => Ok(()),
        Ok(VcpuExit::Intr) => Ok(()),
        // While single-stepping, KVM reports the step that ends the completed instruction
        // instead of checking `immediate_exit`: the access is just as completed.
        Ok(VcpuExit::Debug(_)) => Ok(()),
        Ok(other) => Err(format!("the completing KVM_RUN exited with {other:?}")),
        Err(e) => Err(format!("the completing KVM_RUN failed: {e}")),
    };
    fd.set_kvm_immediate_exit(0);
    if let Err(why) = completed {
        return stop(why);
    }
    let after = view.cpu_state().regs;
    let (start, next) = if write {
        let next = snapshot.rip;
        let is_the_store = |start: u64| {
            let n = next.wrapping_sub(start);
            (1..=15).contains(&n)
                && decode_guest(fd, mem, alias, start).is_some_and(|d| {
                    u64::from(d.len) == n
                        && d.direction() == protocol::access::Direction::Write
                        && d.size().bytes() == len as u64
                        && fd
                            .translate_gva(linear_address(&d, &snapshot, next))
                            .is_ok_and(|t| {
                                t.valid != 0 && (t.physical_address ^ gpa) & !0xfff & !alias == 0
                            })
                })
        };
        // The last step, else the restart point of a refused exception, else the longest
        // decoding (a shorter suffix of a store can decode as another store: `89 04 96` in
        // `46 89 04 96` is the same store from EAX instead of R8D).
        let found = last_step
            .into_iter()
            .chain(*steps.last_converted)
            .chain((1..=15u64).rev().map(|n| next.wrapping_sub(n)))
            .find(|&s| is_the_store(s));
        match found {
            Some(start) => (start, next),
            None => {
                return stop(format!(
                    "no {len}-byte store to GPA {gpa:#x} ends at {next:#x} (last step {last_step:#x?})"
                ));
            }
        }
    } else {
        (snapshot.rip, after.rip)
    };
    let insn_len = next.wrapping_sub(start);
    if !(1..=15).contains(&insn_len) {
        return stop(format!(
            "instruction bounds {start:#x}..{next:#x} are not one instruction"
        ));
    }
    let gla = guest_linear_address(fd, mem, alias, &snapshot, start, next);
    let access = crate::simulated::EmulatedAccess { gpa, write, gla };
    let (vector, error_code) = match host.exception_for(&access) {
        Ok(e) => e,
        Err(why) => return stop(why),
    };
    *steps.last_converted = Some(start);
    let mut restored = snapshot;
    restored.rip = start;
    fd.sync_regs_mut().regs = restored;
    fd.set_sync_dirty_reg(SyncReg::Register);
    inject_exception(fd, vector, error_code)?;
    Ok(Control::Continue)
}

/// A raw intercepted instruction at an exit, and whether KVM has an access to complete
/// before the exception can be injected (an MSR, port-IO or HLT exit; not the CPUID's
/// breakpoint, where nothing ran).
struct RawSite {
    insn: RawInsn,
    complete: bool,
}

/// Serves a raw intercepted instruction under a simulated platform ([`Host::raw`] decides):
/// a CPUID answer goes into the registers with RIP past the 2-byte instruction; an MSR
/// answer or #GP into the MSR exit (KVM completes it); an exception is injected at the
/// instruction ([`inject_at`]).
#[allow(clippy::too_many_arguments)]
fn handle_raw(
    fd: &mut VcpuFd,
    view: &RunView,
    cpuid: &CpuId,
    stepping: bool,
    host: &mut Host,
    machine: &mut Machine,
    cpu: &CpuState,
    raw: RawSite,
    now: Instant,
) -> Result<Control, VmmError> {
    let mut ctl = VcpuCtl {
        fd,
        cpuid,
        stepping,
    };
    let outcome = host.raw(&mut ctl, machine, cpu, raw.insn, now)?;
    match outcome {
        RawOutcome::Cpuid([a, b, c, d]) => {
            ctl.write_regs(|r| {
                (r.rax, r.rbx, r.rcx, r.rdx) = (a.into(), b.into(), c.into(), d.into());
                r.rip = cpu.rip() + u64::from(protocol::x86::TWO_BYTE_INSN_LEN);
            });
            Ok(Control::Continue)
        }
        RawOutcome::MsrDone(v) => {
            view.set_msr_reply(v, false);
            Ok(Control::Continue)
        }
        RawOutcome::MsrGp => {
            view.set_msr_reply(0, true);
            Ok(Control::Continue)
        }
        RawOutcome::Inject {
            start,
            vector,
            error_code,
        } => inject_at(
            fd_of(ctl),
            &cpu.regs,
            start,
            vector,
            error_code,
            raw.complete,
        ),
    }
}

/// The vCPU fd a [`VcpuCtl`] holds.
fn fd_of<'a>(ctl: VcpuCtl<'a>) -> &'a mut VcpuFd {
    ctl.fd
}

/// Injects exception `vector` at the instruction at `start`, with the registers of the exit
/// (`snapshot`) otherwise. With `complete`, KVM still has the exit's access to finish, which
/// it does on the next KVM_RUN whatever the registers say (DESIGN.md): that run is made with
/// `immediate_exit` (it returns at once with the access done and nothing executed), then the
/// registers are restored. Seen on these machines: RDMSR/WRMSR and IN exits report RIP at
/// the instruction, OUT and HLT exits after it; the completing run moves it on.
fn inject_at(
    fd: &mut VcpuFd,
    snapshot: &kvm_regs,
    start: u64,
    vector: u8,
    error_code: Option<u32>,
    complete: bool,
) -> Result<Control, VmmError> {
    if complete && let Err(why) = complete_exit_fd(fd) {
        return Ok(Control::Stop(ExitReason::PlatformStop {
            detail: format!("cannot raise exception {vector} at the instruction: {why}"),
            rip: start,
        }));
    }
    let mut restored = *snapshot;
    restored.rip = start;
    fd.sync_regs_mut().regs = restored;
    fd.set_sync_dirty_reg(SyncReg::Register);
    inject_exception(fd, vector, error_code)?;
    Ok(Control::Continue)
}

/// Lets KVM finish the exit it started (the access completed, nothing executed): a KVM_RUN
/// with `immediate_exit`, which returns EINTR (or, while single-stepping, the step that ends
/// the instruction). Returns RIP afterwards.
fn complete_exit(fd: &mut VcpuFd, view: &RunView) -> Result<u64, String> {
    complete_exit_fd(fd)?;
    Ok(view.cpu_state().regs.rip)
}

fn complete_exit_fd(fd: &mut VcpuFd) -> Result<(), String> {
    fd.set_kvm_immediate_exit(1);
    let completed = match fd.run() {
        Err(e) if e.errno() == libc::EINTR => Ok(()),
        Ok(VcpuExit::Intr | VcpuExit::Debug(_)) => Ok(()),
        Ok(other) => Err(format!("the completing KVM_RUN exited with {other:?}")),
        Err(e) => Err(format!("the completing KVM_RUN failed: {e}")),
    };
    fd.set_kvm_immediate_exit(0);
    completed
}

/// A port-IO exit: what KVM reported.
#[derive(Clone, Copy, Debug)]
struct PortExit {
    port: u16,
    size: usize,
    input: bool,
}

/// The port-IO instruction an IN/OUT exit at `regs.rip` came from, and where it starts:
/// at RIP if `at_insn` (KVM moved RIP past it when it completed the exit: upstream KVM
/// reports port exits at the instruction), else ending at RIP (OUT exits on these machines
/// report the next instruction); decoded with `protocol::x86::decode_port_io` and matching
/// the exit's port, size and direction.
fn find_port_io(
    fd: &VcpuFd,
    mem: &vm_memory::GuestMemoryMmap,
    alias: u64,
    regs: &kvm_regs,
    exit: PortExit,
    at_insn: bool,
) -> Option<(u64, protocol::x86::PortIo)> {
    let rip = regs.rip;
    let matches = |start: u64| {
        let mut bytes = [0u8; 4];
        let n = read_guest(fd, mem, alias, start, &mut bytes);
        let io = protocol::x86::decode_port_io(&bytes[..n])?;
        let fits = usize::from(io.size) == exit.size
            && io.input == exit.input
            && io.imm_port.is_none_or(|p| u16::from(p) == exit.port)
            && (io.imm_port.is_some() || regs.rdx as u16 == exit.port)
            && (at_insn || start + u64::from(io.len) == rip);
        fits.then_some((start, io))
    };
    if at_insn {
        matches(rip)
    } else {
        (1..=3u64).rev().find_map(|n| matches(rip.wrapping_sub(n)))
    }
}

/// What the single-stepping saw of where a store began.
struct StepTrail<'a> {
    /// RIP of the last single step.
    last_step: Option<u64>,
    /// Where the last converted access's exception pointed (updated here).
    last_converted: &'a mut Option<u64>,
}

/// One MMIO exit on the memslot page.
#[derive(Clone, Copy, Debug)]
struct MmioAccess {
    /// GPA as KVM reported it.
    gpa: u64,
    /// A store.
    write: bool,
    /// Bytes.
    len: usize,
}

/// Reads guest virtual memory at `va` into `buf`, translating once per page; returns how
/// many bytes were readable (the rest of `buf` is left as it was).
fn read_guest(
    fd: &VcpuFd,
    mem: &vm_memory::GuestMemoryMmap,
    alias: u64,
    va: u64,
    buf: &mut [u8],
) -> usize {
    use vm_memory::Bytes;
    const PAGE: u64 = 4096;
    let mut done = 0;
    while done < buf.len() {
        let at = va + done as u64;
        let Some(t) = fd.translate_gva(at).ok().filter(|t| t.valid != 0) else {
            break;
        };
        // The RAM alias bit (sev-es-sim's C-bit) is not part of the RAM memslot's GPA.
        let gpa = t.physical_address & !alias;
        let n = ((PAGE - at % PAGE) as usize).min(buf.len() - done);
        if mem
            .read_slice(&mut buf[done..done + n], vm_memory::GuestAddress(gpa))
            .is_err()
        {
            break;
        }
        done += n;
    }
    done
}

/// The instruction at guest virtual `start`, decoded with the guest's decoder from the
/// readable bytes there (`None` if unreadable, undecodable, or FS/GS-relative).
fn decode_guest(
    fd: &VcpuFd,
    mem: &vm_memory::GuestMemoryMmap,
    alias: u64,
    start: u64,
) -> Option<protocol::decode::Decoded> {
    let mut bytes = [0u8; protocol::decode::MAX_INSN_LEN];
    let n = read_guest(fd, mem, alias, start, &mut bytes);
    let d = protocol::decode::decode(&bytes[..n]).ok()?;
    d.mem.segment.is_none().then_some(d)
}

/// STI and HLT opcodes: the hostile host's GHCB watch stops single-stepping before them (a
/// step exit between `sti` and `hlt` would let the wake-up interrupt in before the HLT).
const OPCODE_STI: u8 = 0xfb;
const OPCODE_HLT: u8 = 0xf4;

/// What the instruction at RIP is about to do, for the hostile host's GHCB watch: the
/// linear address and size it loads (if it is one of the decoder's loads, which is what
/// volatile reads of the GHCB compile to), and whether it is an STI or HLT.
fn next_insn(
    fd: &VcpuFd,
    mem: &vm_memory::GuestMemoryMmap,
    alias: u64,
    regs: &kvm_regs,
) -> (Option<(u64, u64)>, bool) {
    let mut first = [0u8; 1];
    let halts = read_guest(fd, mem, alias, regs.rip, &mut first) == 1
        && (first[0] == OPCODE_STI || first[0] == OPCODE_HLT);
    let load = decode_guest(fd, mem, alias, regs.rip)
        .filter(|d| d.direction() == protocol::access::Direction::Read)
        .map(|d| {
            let next = regs.rip + u64::from(d.len);
            (linear_address(&d, regs, next), d.size().bytes())
        });
    (load, halts)
}

/// The linear address the decoded instruction `d` (ending at `next`) accesses with the
/// registers `regs` (what TDX reports as the GLA).
fn linear_address(d: &protocol::decode::Decoded, regs: &kvm_regs, next: u64) -> u64 {
    use protocol::decode::Gpr;
    let reg = |g: Gpr| match g {
        Gpr::Rax => regs.rax,
        Gpr::Rcx => regs.rcx,
        Gpr::Rdx => regs.rdx,
        Gpr::Rbx => regs.rbx,
        Gpr::Rsp => regs.rsp,
        Gpr::Rbp => regs.rbp,
        Gpr::Rsi => regs.rsi,
        Gpr::Rdi => regs.rdi,
        Gpr::R8 => regs.r8,
        Gpr::R9 => regs.r9,
        Gpr::R10 => regs.r10,
        Gpr::R11 => regs.r11,
        Gpr::R12 => regs.r12,
        Gpr::R13 => regs.r13,
        Gpr::R14 => regs.r14,
        Gpr::R15 => regs.r15,
    };
    d.mem.effective_address(reg, next)
}

/// The linear address the instruction at `start`, ending exactly at `next`, accessed,
/// decoded from guest memory with the guest's decoder. `None` when the bytes cannot be read
/// or decoded, or decode to another length.
fn guest_linear_address(
    fd: &VcpuFd,
    mem: &vm_memory::GuestMemoryMmap,
    alias: u64,
    regs: &kvm_regs,
    start: u64,
    next: u64,
) -> Option<u64> {
    let d = decode_guest(fd, mem, alias, start)?;
    (start + u64::from(d.len) == next).then(|| linear_address(&d, regs, next))
}

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

/// Hands the serial output written since the last call to `sink`.
fn flush_serial(machine: &mut Machine, sink: &mut dyn FnMut(&[u8])) {
    let out = machine.take_serial_output();
    if !out.is_empty() {
        sink(out);
    }
}

/// Sleeps while the vCPU is halted waiting for its timer; `Some` if the run ends meanwhile.
fn wait_halted(
    machine: &mut Machine,
    cpu: &CpuState,
    mut due: Instant,
    stop: &AtomicBool,
    fd: &VcpuFd,
) -> Result<Option<ExitReason>, VmmError> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(Some(ExitReason::Timeout { rip: rip(fd)? }));
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

#[cfg(test)]
mod tests {
    //! The run loop against real KVM, with guests of a few 32-bit instructions placed at the
    //! PVH entry (as in `tests/tiny_guests.rs`, but in-crate, to see whether the coalesced
    //! ring is mapped). Serial ordering and the DLAB case are in `tests/tiny_guests.rs`.
    //! Needs `/dev/kvm`; `CVMPROBE_NO_KVM=1` turns these into skips.

    use super::*;
    use crate::cpuid::Brand;
    use std::sync::Arc;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    const ENTRY: u64 = 0x10_0000;
    const DATA: u64 = ENTRY + 0x100;

    /// What one run of a tiny guest produced.
    struct Outcome {
        exit: ExitReason,
        stats: ExitStats,
        /// The sink's calls, one buffer each.
        chunks: Vec<Vec<u8>>,
        serial: Vec<u8>,
        coalesced: u64,
        ring: bool,
    }

    /// Runs `code` (with `data` at [`DATA`]) on a fresh VM, or `None` when KVM is missing
    /// and skipping is allowed.
    fn run_guest(test: &str, code: &[u8], data: &[u8]) -> Option<Outcome> {
        run_on(test, PlatformKind::Legacy, code, data).map(|(o, _)| o)
    }

    /// Where the sims' TDCALL/VMGEXIT breakpoint sits in the tiny guests: a byte they never
    /// reach.
    const NO_TRAP: u64 = ENTRY + 0xf0;

    /// [`run_guest`] under `platform`, set up as `crate::run` sets it up (MSR filter,
    /// CPUID, APIC, breakpoints), with the raw CPUID's breakpoint at `ENTRY + cpuid_at`
    /// where the code has its CPUID (or anywhere, if it has none). Also returns the host.
    fn run_on(
        test: &str,
        platform: PlatformKind,
        code: &[u8],
        data: &[u8],
    ) -> Option<(Outcome, Host)> {
        run_sim(test, platform, code, data, NO_TRAP - 8)
    }

    fn run_sim(
        test: &str,
        platform: PlatformKind,
        code: &[u8],
        data: &[u8],
        cpuid_at: u64,
    ) -> Option<(Outcome, Host)> {
        let kvm = match crate::open_kvm() {
            Ok(kvm) => kvm,
            Err(e) if std::env::var("CVMPROBE_NO_KVM").as_deref() == Ok("1") => {
                // Straight to stderr: libtest hides a passing test's `eprintln!`.
                use std::io::Write;
                let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {e}");
                return None;
            }
            Err(e) => panic!("{test}: KVM is needed: {e} (CVMPROBE_NO_KVM=1 skips)"),
        };
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        mem.write_slice(code, GuestAddress(ENTRY)).unwrap();
        mem.write_slice(data, GuestAddress(DATA)).unwrap();
        let vm = kvm.create_vm().unwrap();
        vm.set_tss_address(crate::TSS_ADDRESS).unwrap();
        crate::map_memory(&vm, &mem, &[0]).unwrap();
        crate::simulated::prepare_vm(&vm, platform).unwrap();
        let supported = crate::supported_cpuid(&kvm).unwrap();
        let width = crate::sim::address::AddressWidth::new(cpuid::phys_bits(&supported)).unwrap();
        let sites = (platform != PlatformKind::Legacy).then_some(crate::simulated::TrapSites {
            trap: NO_TRAP,
            cpuid: cpuid_at,
        });
        let mut vcpu = Vcpu::create(
            &vm,
            supported,
            VcpuSetup {
                entry: ENTRY,
                brand: &Brand::for_run(),
                platform,
                width,
                forced_width: false,
                breakpoint: sites,
                handoff: None,
            },
        )
        .unwrap();
        let mut host = Host::new(platform, sites, Box::new(crate::sim::Honest), width);
        let ring = vcpu.ring.is_some();
        let apic = match platform {
            PlatformKind::Tdx => crate::machine::ApicAccess::X2apicOnly,
            _ => crate::machine::ApicAccess::Xapic,
        };
        let mut machine = Machine::new(mem.clone(), 1, apic);
        let mut stats = ExitStats::default();
        let mut chunks = Vec::new();
        crate::kick::install().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let watchdog = crate::kick::Watchdog::start(Duration::from_secs(10), stop.clone()).unwrap();
        let exit = run(
            &mut vcpu,
            &mut machine,
            &mut host,
            None,
            &mut stats,
            &stop,
            &mut |b| chunks.push(b.to_vec()),
        )
        .unwrap();
        drop(watchdog);
        Some((
            Outcome {
                exit,
                stats,
                chunks,
                coalesced: machine.coalesced_writes(),
                serial: machine.into_serial(),
                ring,
            },
            host,
        ))
    }

    /// The #VE information tdx-sim posted, read as the guest would (TDG.VP.VEINFO.GET).
    fn veinfo(host: &mut Host) -> (u64, u64, u64) {
        let Host::Tdx { model, .. } = host else {
            panic!("not tdx-sim")
        };
        match model.tdcall(&protocol::tdx::TdcallRegs {
            rax: protocol::tdx::leaf::VP_VEINFO_GET,
            ..Default::default()
        }) {
            crate::sim::tdx::TdxStep::Done(r) => {
                assert_eq!(r.rax, 0, "#VE information posted");
                (r.rcx, r.rdx, r.r10)
            }
            other => panic!("{other:?}"),
        }
    }

    /// `mov ecx, imm32`
    fn mov_ecx(v: u32) -> Vec<u8> {
        [&[0xb9][..], &v.to_le_bytes()].concat()
    }
    /// `mov eax, imm32`
    fn mov_eax(v: u32) -> Vec<u8> {
        [&[0xb8][..], &v.to_le_bytes()].concat()
    }
    const CPUID: [u8; 2] = [0x0f, 0xa2];
    const RDMSR: [u8; 2] = [0x0f, 0x32];

    // The tiny guests below have no IDT: an exception the sim raises ends the run in a triple
    // fault (KVM_EXIT_SHUTDOWN) at the instruction it was raised for, which is what they
    // check, with the #VE information the TDX module would have posted.

    #[test]
    fn tdx_sim_cpuid_answered_by_the_module_then_a_raw_out_is_a_ve() {
        // CPUID 0x21 (the module's own leaf: answered, EBX = "Inte"), then OUT to the port in
        // DX = 0x6e49 ("In"): a #VE at the first OUT (whose exit reports the next RIP here,
        // where a second, identical OUT starts: the VMM must not take that one).
        let code = [
            mov_eax(0x21),
            vec![0x31, 0xc9], // xor ecx, ecx
            CPUID.to_vec(),   // ENTRY + 7
            vec![0x89, 0xda], // mov edx, ebx
            vec![0xee],       // out dx, al: ENTRY + 11
            vec![0xee],       // out dx, al
        ]
        .concat();
        let test = "tdx_sim_cpuid_answered_by_the_module_then_a_raw_out_is_a_ve";
        let Some((o, mut host)) = run_sim(test, PlatformKind::Tdx, &code, &[], ENTRY + 7) else {
            return;
        };
        assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 11 });
        assert_eq!(
            host.take_findings(),
            [format!(
                "raw OUT to port 0x6e49 (1 byte) under tdx-sim at RIP {:#x}: on hardware this \
                 is a #VE (exit reason 30); the guest must go through its TDG.VP.VMCALL backend",
                ENTRY + 11
            )]
        );
        // Exit reason 30, I/O qualification (1 byte, OUT, DX, port 0x6e49), length 1.
        assert_eq!(veinfo(&mut host), (30, 0x6e49_0000, 1));
    }

    #[test]
    fn tdx_sim_raw_msrs_and_cpuid_outside_the_modules_tables_are_ves() {
        // RDMSR of SEV_STATUS: outside the MSR bitmap, a #VE (exit reason 31, length 2).
        let code = [mov_ecx(0xc001_0131), RDMSR.to_vec()].concat();
        let test = "tdx_sim_raw_msrs_and_cpuid_outside_the_modules_tables_are_ves";
        let Some((o, mut host)) = run_on(test, PlatformKind::Tdx, &code, &[]) else {
            return;
        };
        assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 5 });
        assert_eq!(veinfo(&mut host), (31, 0, 2));
        assert!(
            host.take_findings().is_empty(),
            "a #VE the guest may handle"
        );
        // IN (its exit reports RIP at the instruction): #VE at it, I/O qualification with
        // the IN bit and an immediate port.
        let code = [vec![0x90], vec![0xe5, 0x80]].concat(); // nop; in eax, 0x80
        let (o, mut host) = run_on(test, PlatformKind::Tdx, &code, &[]).unwrap();
        assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 1 });
        assert_eq!(veinfo(&mut host), (30, 0x0080_004b, 2));
        // CPUID 0x40000000 (the hypervisor range): #VE, exit reason 10.
        let code = [mov_eax(0x4000_0000), vec![0x31, 0xc9], CPUID.to_vec()].concat();
        let (o, mut host) = run_sim(test, PlatformKind::Tdx, &code, &[], ENTRY + 7).unwrap();
        assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 7 });
        assert_eq!(veinfo(&mut host), (10, 0, 2));
        // HLT: #VE, exit reason 12 (its exit reports the next RIP), and a finding.
        let (o, mut host) = run_on(test, PlatformKind::Tdx, &[0x90, 0xf4], &[]).unwrap();
        assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 1 });
        assert_eq!(veinfo(&mut host), (12, 0, 1));
        assert_eq!(host.take_findings().len(), 1);
    }

    #[test]
    fn tdx_sim_x2apic_eoi_is_native_and_the_pvh_efer_write_allowed() {
        // The PVH entry's EFER dance from the TD's initial EFER (LME already set): allowed;
        // then WRMSR 0 to the x2APIC EOI (virtualised by the CPU: no exit in a TD, here the
        // user-space APIC), then RDMSR of the x2APIC SVR: #VE (not in the module's table).
        let code = [
            mov_ecx(0xc000_0080),
            RDMSR.to_vec(),
            vec![0x0d, 0x00, 0x01, 0x00, 0x00], // or eax, 0x100
            vec![0x0f, 0x30],                   // wrmsr
            mov_ecx(0x80b),
            vec![0x31, 0xc0, 0x31, 0xd2], // xor eax, eax; xor edx, edx
            vec![0x0f, 0x30],             // wrmsr EOI: ENTRY + 0x17
            mov_ecx(0x80f),
            RDMSR.to_vec(), // ENTRY + 0x1e
        ]
        .concat();
        let test = "tdx_sim_x2apic_eoi_is_native_and_the_pvh_efer_write_allowed";
        let Some((o, mut host)) = run_on(test, PlatformKind::Tdx, &code, &[]) else {
            return;
        };
        assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 0x1e });
        assert_eq!(veinfo(&mut host), (31, 0, 2));
        assert_eq!(o.stats.msr, 4, "{:?}", o.stats);
    }

    #[test]
    fn sev_es_sim_cpuid_and_intercepted_msrs_are_vcs_sev_status_is_not() {
        // RDMSR of SEV_STATUS (not intercepted: the GHCB model answers), RDMSR of EFER
        // (passed through), then RDMSR of IA32_TSC: intercepted, a #VC (error code 0x7c).
        let code = [
            mov_ecx(0xc001_0131),
            RDMSR.to_vec(),
            mov_ecx(0xc000_0080),
            RDMSR.to_vec(),
            mov_ecx(0x10),
            RDMSR.to_vec(), // ENTRY + 0x13
        ]
        .concat();
        let test = "sev_es_sim_cpuid_and_intercepted_msrs_are_vcs_sev_status_is_not";
        let Some((o, _)) = run_on(test, PlatformKind::SevEs, &code, &[]) else {
            return;
        };
        assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 0x13 });
        // CPUID: #VC.
        let code = [mov_eax(0), vec![0x31, 0xc9], CPUID.to_vec()].concat();
        let (o, _) = run_sim(test, PlatformKind::SevEs, &code, &[], ENTRY + 7).unwrap();
        assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 7 });
        // HLT is an automatic exit: no #VC, the VMM halts (with nothing to wake it).
        let (o, mut host) = run_on(test, PlatformKind::SevEs, &[0xf4], &[]).unwrap();
        assert_eq!(o.exit, ExitReason::HaltedForever { rip: ENTRY + 1 });
        assert!(host.take_findings().is_empty());
    }

    /// `mov dx, port`
    fn mov_dx(port: u16) -> Vec<u8> {
        [&[0x66, 0xba][..], &port.to_le_bytes()].concat()
    }
    /// `xor eax, eax; out 0xf4, eax`: verdict 0.
    const EXIT_0: [u8; 4] = [0x31, 0xc0, 0xe7, 0xf4];

    #[test]
    fn full_ring_falls_back_to_exits_in_order() {
        // One `rep outsb` of more bytes than the ring holds: when it is full, KVM exits for
        // the next byte, which the VMM handles after the ring's older ones.
        const N: usize = 400;
        let data: Vec<u8> = (0..N).map(|i| (i * 7 % 251) as u8).collect();
        let code = [
            mov_dx(COM1_DATA),
            [&[0xbe][..], &(DATA as u32).to_le_bytes()].concat(), // mov esi, DATA
            [&[0xb9][..], &(N as u32).to_le_bytes()].concat(),    // mov ecx, N
            vec![0xf3, 0x6e],                                     // rep outsb
            EXIT_0.to_vec(),
        ]
        .concat();
        let test = "full_ring_falls_back_to_exits_in_order";
        let Some(o) = run_guest(test, &code, &data) else {
            return;
        };
        assert_eq!(o.exit, ExitReason::GuestExit(0));
        assert_eq!(o.serial, data);
        assert_eq!(o.chunks.concat(), o.serial);
        if o.ring {
            let exited = o.stats.io - 1;
            assert!(exited >= 1, "the ring filled up: {:?}", o.stats);
            assert_eq!(o.coalesced + exited, N as u64, "{:?}", o.stats);
        }
    }
}
