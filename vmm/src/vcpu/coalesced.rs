//! COM1 output without an exit per byte: KVM's coalesced-I/O ring for COM1's data port,
//! mapped by the VMM and drained after every KVM_RUN, before the exit is handled.

use super::kvm::CountedFd;
use crate::VmmError;
use crate::machine::CoalescedWrite;
use kvm_bindings::{kvm_coalesced_mmio, kvm_coalesced_mmio_ring};
use kvm_ioctls::{Cap, IoEventAddress, VmFd};
use protocol::pc::COM1_DATA;
use protocol::testdev::Space;
use std::os::fd::AsRawFd;
use std::ptr::{NonNull, addr_of, addr_of_mut};
use std::sync::atomic::{AtomicU32, Ordering};

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
    fn map(vcpu: &CountedFd, page_offset: u32) -> Result<Self, VmmError> {
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
pub(super) fn coalesce_com1_data(vm: &VmFd, vcpu: &CountedFd) -> Result<CoalescedRing, String> {
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
