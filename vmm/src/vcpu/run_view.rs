//! [`RunView`]: the run loop's own view of the vCPU's `kvm_run` page (the exit's register
//! snapshot, interrupt readiness, the MSR exit's reply, `immediate_exit` for the kick).

use crate::VmmError;
use crate::machine::CpuState;
use kvm_bindings::kvm_run;
use kvm_ioctls::{KvmRunWrapper, VcpuFd};
use std::ptr::{NonNull, addr_of, addr_of_mut};

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
    pub(super) fn new(vcpu: &VcpuFd, size: usize) -> Result<Self, VmmError> {
        let mut map =
            KvmRunWrapper::mmap_from_fd(vcpu, size).map_err(VmmError::kvm("mmap(kvm_run)"))?;
        let run = NonNull::from(map.as_mut_ref());
        Ok(Self { run, _map: map })
    }

    /// Register snapshot and IF at the last exit (sync regs must be enabled).
    pub(super) fn cpu_state(&self) -> CpuState {
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

    /// The special registers KVM stored at the last exit (sync sregs must be enabled:
    /// [`super::Vcpu::create`] does for sev-es-sim, whose GHCB check walks the guest's page
    /// tables).
    pub(super) fn sregs(&self) -> kvm_bindings::kvm_sregs {
        // SAFETY: in-bounds field of the live mapping (see `cpu_state`); KVM stores it at
        // every exit while `kvm_valid_regs` has KVM_SYNC_X86_SREGS. A volatile read of plain
        // integers: any bit pattern is valid.
        unsafe { addr_of!((*self.run.as_ptr()).s.regs.sregs).read_volatile() }
    }

    /// `ready_for_interrupt_injection` from the last exit.
    pub(super) fn ready_for_interrupt(&self) -> bool {
        // SAFETY: in-bounds field of the live mapping (see `cpu_state`); a u8 read.
        unsafe { addr_of!((*self.run.as_ptr()).ready_for_interrupt_injection).read_volatile() != 0 }
    }

    /// Bytes per element of the current KVM_EXIT_IO.
    pub(super) fn io_size(&self) -> usize {
        // SAFETY: called only for KVM_EXIT_IO, for which KVM filled `io` in the exit union;
        // in-bounds field of the live mapping; plain integers.
        let size =
            unsafe { addr_of!((*self.run.as_ptr()).__bindgen_anon_1.io.size).read_volatile() };
        usize::from(size)
    }

    /// `suberror` and `data[..ndata]` of the current KVM_EXIT_INTERNAL_ERROR.
    pub(super) fn internal_error(&self) -> (u32, Vec<u64>) {
        // SAFETY: called only for KVM_EXIT_INTERNAL_ERROR, for which KVM filled `internal`;
        // in-bounds field of the live mapping; plain integers.
        let internal =
            unsafe { addr_of!((*self.run.as_ptr()).__bindgen_anon_1.internal).read_volatile() };
        let n = (internal.ndata as usize).min(internal.data.len());
        (internal.suberror, internal.data[..n].to_vec())
    }

    /// Answers the current KVM_EXIT_X86_RDMSR / WRMSR: `data` (a read's value) and `error`
    /// (KVM injects #GP when set).
    pub(super) fn set_msr_reply(&self, data: u64, error: bool) {
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
    pub(super) fn immediate_exit(&self) -> *mut u8 {
        // SAFETY: projection to a field of the live mapping; no reference is created.
        unsafe { addr_of_mut!((*self.run.as_ptr()).immediate_exit) }
    }
}
