//! The memslot scenario's KVM side: the page's own host memory and memslot, and the host
//! thread that deletes and re-creates that memslot while the vCPU runs on its own thread
//! (KVM selftests' `set_memory_region_test` shape), then kicks the vCPU out of KVM_RUN so it
//! re-enters with the new memory map.

use super::device::Request;
use crate::VmmError;
use crate::kick::{VcpuThread, kick_signal};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    MemoryRegionAddress,
};
use vmm_sys_util::signal::Killable;

/// KVM slot number of the page (after the RAM slots and their aliases).
const SLOT: u32 = 8;

/// The page's RAM content at the start of the run.
pub fn initial_page(seed: u64) -> Vec<u8> {
    (0..protocol::memslot::SIZE)
        .map(|o| protocol::memslot::ram_byte(seed, o))
        .collect()
}

/// Maps the page ([`protocol::memslot`]): its own host memory, filled with the RAM pattern of
/// `seed`, at its GPA with `gpa_bits` ORed in ([`super::gpa_bits`]: under tdx-sim the shared
/// bit, where the guest maps it). Returns the memory (keep it alive as long as the VM) and
/// the region.
pub fn map_page(
    vm: &VmFd,
    seed: u64,
    gpa_bits: u64,
) -> Result<(GuestMemoryMmap, kvm_userspace_memory_region), VmmError> {
    use protocol::memslot::{GPA, SIZE};
    let err = |reason: String| VmmError::GuestMemory { mib: 0, reason };
    let page = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(GPA), SIZE as usize)])
        .map_err(|e| err(format!("memslot page: {e}")))?;
    page.write_slice(&initial_page(seed), GuestAddress(GPA))
        .map_err(|e| err(format!("memslot page: {e}")))?;
    let host = page
        .iter()
        .next()
        .and_then(|r| r.get_host_address(MemoryRegionAddress(0)).ok())
        .ok_or_else(|| err("memslot page has no host mapping".into()))?;
    let region = kvm_userspace_memory_region {
        slot: SLOT,
        flags: 0,
        guest_phys_addr: GPA | gpa_bits,
        memory_size: SIZE,
        userspace_addr: host as u64,
    };
    // SAFETY: `host` is the start of `page`'s own mapping of SIZE bytes, which the caller
    // keeps until the VM is gone.
    unsafe { vm.set_user_memory_region(region) }
        .map_err(VmmError::kvm("KVM_SET_USER_MEMORY_REGION (memslot page)"))?;
    Ok((page, region))
}

/// The scenario's host thread: deletes (size 0) and re-creates the page's memslot on the
/// guest's requests, then kicks the vCPU thread.
pub struct MemslotThread {
    requests: Option<mpsc::Sender<Request>>,
    problems: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl MemslotThread {
    /// Starts the thread for the calling (vCPU) thread, with `region` as the memslot to
    /// delete (size 0) and re-create.
    ///
    /// # Safety
    /// `region.userspace_addr` must stay mapped for `region.memory_size` bytes for as long as
    /// `vm` lives (KVM may use the memory whenever the slot exists).
    pub unsafe fn start(
        vm: Arc<VmFd>,
        region: kvm_userspace_memory_region,
    ) -> Result<Self, VmmError> {
        let target = VcpuThread::current();
        let (requests, rx) = mpsc::channel::<Request>();
        let problems = Arc::new(Mutex::new(Vec::new()));
        let seen = problems.clone();
        let thread = std::thread::Builder::new()
            .name("vmm-memslot".into())
            .spawn(move || {
                for req in rx {
                    let r = match req {
                        Request::Delete => kvm_userspace_memory_region {
                            memory_size: 0,
                            ..region
                        },
                        Request::Restore => region,
                    };
                    // SAFETY: the caller of `start` keeps the memory mapped while the VM
                    // lives; deleting a slot needs nothing.
                    if let Err(e) = unsafe { vm.set_user_memory_region(r) }
                        && let Ok(mut p) = seen.lock()
                    {
                        p.push(format!(
                            "memslot {req:?}: KVM_SET_USER_MEMORY_REGION failed: {e}"
                        ));
                    }
                    // Pull the vCPU out so it re-enters KVM_RUN with the new memory map.
                    let _ = target.kill(kick_signal());
                }
            })
            .map_err(VmmError::Thread)?;
        Ok(Self {
            requests: Some(requests),
            problems,
            thread: Some(thread),
        })
    }

    /// Hands a request to the thread (it acts asynchronously).
    pub fn send(&self, req: Request) {
        if let Some(tx) = &self.requests {
            let _ = tx.send(req);
        }
    }

    /// Stops the thread (after the requests sent so far) and returns the KVM errors it met.
    pub fn finish(mut self) -> Vec<String> {
        self.join();
        self.problems.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn join(&mut self) {
        drop(self.requests.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MemslotThread {
    fn drop(&mut self) {
        self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_page_is_the_ram_pattern() {
        let p = initial_page(3);
        assert_eq!(p.len() as u64, protocol::memslot::SIZE);
        assert_eq!(p[5], protocol::memslot::ram_byte(3, 5));
    }
}
