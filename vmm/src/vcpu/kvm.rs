//! The vCPU file descriptor with every ioctl counted: [`CountedFd`] wraps kvm-ioctls'
//! [`VcpuFd`] and is the only way the VMM reaches it, so [`IoctlCounts`] holds every vCPU
//! ioctl the VMM made (`cvmprobe bench` reports them per request: a vCPU ioctl costs about
//! 5 µs on the CI hosts, DESIGN.md "Facts of these machines").
//!
//! kvm_run accessors (sync regs, `immediate_exit`, `request_interrupt_window`) are memory
//! accesses, not ioctls, and are not counted.

use crate::VmmError;
use kvm_bindings::{
    CpuId, Msrs, kvm_guest_debug, kvm_interrupt, kvm_regs, kvm_run, kvm_sregs, kvm_sync_regs,
    kvm_translation, kvm_vcpu_events,
};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};
use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use vmm_sys_util::errno;

// KVM_INTERRUPT (Linux include/uapi/linux/kvm.h: `_IOW(KVMIO, 0x86, struct kvm_interrupt)`):
// queue an external interrupt when there is no in-kernel irqchip. kvm-ioctls 0.25 has no
// wrapper for it, so the ioctl number is built with vmm-sys-util's macro.
vmm_sys_util::ioctl_iow_nr!(KVM_INTERRUPT, kvm_bindings::KVMIO, 0x86, kvm_interrupt);

/// The vCPU ioctls the VMM makes, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ioctl {
    /// KVM_RUN (including the runs that only complete an exit, with `immediate_exit`).
    Run,
    /// KVM_GET_REGS.
    GetRegs,
    /// KVM_SET_REGS.
    SetRegs,
    /// KVM_GET_SREGS.
    GetSregs,
    /// KVM_SET_SREGS.
    SetSregs,
    /// KVM_SET_CPUID2.
    SetCpuid,
    /// KVM_GET_MSRS.
    GetMsrs,
    /// KVM_SET_MSRS.
    SetMsrs,
    /// KVM_TRANSLATE.
    Translate,
    /// KVM_SET_GUEST_DEBUG.
    SetGuestDebug,
    /// KVM_GET_VCPU_EVENTS.
    GetEvents,
    /// KVM_SET_VCPU_EVENTS.
    SetEvents,
    /// KVM_INTERRUPT.
    Interrupt,
    /// KVM_GET_TSC_KHZ.
    GetTscKhz,
}

impl Ioctl {
    /// Every kind, in [`IoctlCounts`]' order.
    pub const ALL: [Ioctl; 14] = [
        Ioctl::Run,
        Ioctl::GetRegs,
        Ioctl::SetRegs,
        Ioctl::GetSregs,
        Ioctl::SetSregs,
        Ioctl::SetCpuid,
        Ioctl::GetMsrs,
        Ioctl::SetMsrs,
        Ioctl::Translate,
        Ioctl::SetGuestDebug,
        Ioctl::GetEvents,
        Ioctl::SetEvents,
        Ioctl::Interrupt,
        Ioctl::GetTscKhz,
    ];

    /// The ioctl's name in Linux's UAPI.
    pub const fn name(self) -> &'static str {
        match self {
            Ioctl::Run => "KVM_RUN",
            Ioctl::GetRegs => "KVM_GET_REGS",
            Ioctl::SetRegs => "KVM_SET_REGS",
            Ioctl::GetSregs => "KVM_GET_SREGS",
            Ioctl::SetSregs => "KVM_SET_SREGS",
            Ioctl::SetCpuid => "KVM_SET_CPUID2",
            Ioctl::GetMsrs => "KVM_GET_MSRS",
            Ioctl::SetMsrs => "KVM_SET_MSRS",
            Ioctl::Translate => "KVM_TRANSLATE",
            Ioctl::SetGuestDebug => "KVM_SET_GUEST_DEBUG",
            Ioctl::GetEvents => "KVM_GET_VCPU_EVENTS",
            Ioctl::SetEvents => "KVM_SET_VCPU_EVENTS",
            Ioctl::Interrupt => "KVM_INTERRUPT",
            Ioctl::GetTscKhz => "KVM_GET_TSC_KHZ",
        }
    }
}

/// vCPU ioctls made so far, by kind ([`Ioctl::ALL`]'s order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlCounts {
    /// Count per kind, indexed by `Ioctl as usize`.
    pub by_kind: [u64; Ioctl::ALL.len()],
}

impl IoctlCounts {
    /// All ioctls.
    pub fn total(&self) -> u64 {
        self.by_kind.iter().sum()
    }

    /// Ioctls of `kind`.
    pub fn of(&self, kind: Ioctl) -> u64 {
        self.by_kind[kind as usize]
    }

    /// One more `kind`.
    pub fn add(&mut self, kind: Ioctl) {
        self.by_kind[kind as usize] += 1;
    }

    /// `self - earlier`, kind by kind (counts only grow).
    pub fn since(&self, earlier: &IoctlCounts) -> IoctlCounts {
        IoctlCounts {
            by_kind: std::array::from_fn(|i| self.by_kind[i].saturating_sub(earlier.by_kind[i])),
        }
    }

    /// The kinds made at least once, with their counts (`KVM_RUN 2, KVM_TRANSLATE 1`).
    pub fn nonzero(&self) -> impl Iterator<Item = (Ioctl, u64)> + '_ {
        Ioctl::ALL
            .into_iter()
            .map(|k| (k, self.of(k)))
            .filter(|&(_, n)| n > 0)
    }
}

/// The vCPU fd; each method is one counted ioctl (or a kvm_run access, not counted).
pub struct CountedFd {
    fd: VcpuFd,
    counts: Cell<IoctlCounts>,
}

impl CountedFd {
    /// Takes over `fd`.
    pub fn new(fd: VcpuFd) -> Self {
        Self {
            fd,
            counts: Cell::new(IoctlCounts::default()),
        }
    }

    fn count(&self, kind: Ioctl) {
        let mut c = self.counts.get();
        c.add(kind);
        self.counts.set(c);
    }

    /// The ioctls made so far.
    pub fn counts(&self) -> IoctlCounts {
        self.counts.get()
    }

    /// KVM_RUN.
    pub fn run(&mut self) -> Result<VcpuExit<'_>, errno::Error> {
        self.count(Ioctl::Run);
        self.fd.run()
    }

    /// KVM_GET_REGS.
    pub fn get_regs(&self) -> Result<kvm_regs, VmmError> {
        self.count(Ioctl::GetRegs);
        self.fd.get_regs().map_err(VmmError::kvm("KVM_GET_REGS"))
    }

    /// KVM_SET_REGS.
    pub fn set_regs(&self, regs: &kvm_regs) -> Result<(), VmmError> {
        self.count(Ioctl::SetRegs);
        self.fd
            .set_regs(regs)
            .map_err(VmmError::kvm("KVM_SET_REGS"))
    }

    /// KVM_GET_SREGS.
    pub fn get_sregs(&self) -> Result<kvm_sregs, VmmError> {
        self.count(Ioctl::GetSregs);
        self.fd.get_sregs().map_err(VmmError::kvm("KVM_GET_SREGS"))
    }

    /// KVM_SET_SREGS.
    pub fn set_sregs(&self, sregs: &kvm_sregs) -> Result<(), VmmError> {
        self.count(Ioctl::SetSregs);
        self.fd
            .set_sregs(sregs)
            .map_err(VmmError::kvm("KVM_SET_SREGS"))
    }

    /// KVM_SET_CPUID2.
    pub fn set_cpuid2(&self, cpuid: &CpuId) -> Result<(), VmmError> {
        self.count(Ioctl::SetCpuid);
        self.fd
            .set_cpuid2(cpuid)
            .map_err(VmmError::kvm("KVM_SET_CPUID2"))
    }

    /// KVM_GET_MSRS: how many of `msrs` KVM read.
    pub fn get_msrs(&self, msrs: &mut Msrs) -> Result<usize, VmmError> {
        self.count(Ioctl::GetMsrs);
        self.fd
            .get_msrs(msrs)
            .map_err(VmmError::kvm("KVM_GET_MSRS"))
    }

    /// KVM_SET_MSRS: how many of `msrs` KVM set.
    pub fn set_msrs(&self, msrs: &Msrs) -> Result<usize, VmmError> {
        self.count(Ioctl::SetMsrs);
        self.fd
            .set_msrs(msrs)
            .map_err(VmmError::kvm("KVM_SET_MSRS"))
    }

    /// KVM_TRANSLATE of guest virtual `va` under the vCPU's current paging.
    pub fn translate_gva(&self, va: u64) -> Result<kvm_translation, errno::Error> {
        self.count(Ioctl::Translate);
        self.fd.translate_gva(va)
    }

    /// KVM_SET_GUEST_DEBUG.
    pub fn set_guest_debug(&self, d: &kvm_guest_debug) -> Result<(), VmmError> {
        self.count(Ioctl::SetGuestDebug);
        self.fd
            .set_guest_debug(d)
            .map_err(VmmError::kvm("KVM_SET_GUEST_DEBUG"))
    }

    /// KVM_GET_VCPU_EVENTS.
    pub fn get_vcpu_events(&self) -> Result<kvm_vcpu_events, VmmError> {
        self.count(Ioctl::GetEvents);
        self.fd
            .get_vcpu_events()
            .map_err(VmmError::kvm("KVM_GET_VCPU_EVENTS"))
    }

    /// KVM_SET_VCPU_EVENTS.
    pub fn set_vcpu_events(&self, events: &kvm_vcpu_events) -> Result<(), VmmError> {
        self.count(Ioctl::SetEvents);
        self.fd
            .set_vcpu_events(events)
            .map_err(VmmError::kvm("KVM_SET_VCPU_EVENTS"))
    }

    /// KVM_INTERRUPT: queues external interrupt `vector` for the next entry.
    pub fn interrupt(&self, vector: u8) -> Result<(), VmmError> {
        self.count(Ioctl::Interrupt);
        let irq = kvm_interrupt {
            irq: u32::from(vector),
        };
        // SAFETY: KVM_INTERRUPT on a vCPU fd reads one `struct kvm_interrupt`, which `irq`
        // is and which outlives the call; the return value is checked.
        let ret = unsafe { vmm_sys_util::ioctl::ioctl_with_ref(&self.fd, KVM_INTERRUPT(), &irq) };
        if ret < 0 {
            return Err(VmmError::kvm("KVM_INTERRUPT")(errno::Error::last()));
        }
        Ok(())
    }

    /// KVM_GET_TSC_KHZ.
    pub fn get_tsc_khz(&self) -> Result<u32, errno::Error> {
        self.count(Ioctl::GetTscKhz);
        self.fd.get_tsc_khz()
    }

    /// Has KVM store `reg` in kvm_run at every exit (no ioctl).
    pub fn set_sync_valid_reg(&mut self, reg: SyncReg) {
        self.fd.set_sync_valid_reg(reg);
    }

    /// Has the next KVM_RUN load `reg` from kvm_run (no ioctl).
    pub fn set_sync_dirty_reg(&mut self, reg: SyncReg) {
        self.fd.set_sync_dirty_reg(reg);
    }

    /// kvm_run's sync regs, to change before a KVM_RUN (no ioctl).
    pub fn sync_regs_mut(&mut self) -> &mut kvm_sync_regs {
        self.fd.sync_regs_mut()
    }

    /// kvm_run's `immediate_exit` (no ioctl).
    pub fn set_kvm_immediate_exit(&mut self, value: u8) {
        self.fd.set_kvm_immediate_exit(value);
    }

    /// kvm_run (no ioctl).
    pub fn kvm_run_mut(&mut self) -> &mut kvm_run {
        self.fd.get_kvm_run()
    }

    /// The kvm-ioctls fd, for mapping its pages (no ioctl).
    pub fn raw(&self) -> &VcpuFd {
        &self.fd
    }
}

impl AsRawFd for CountedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_subtract_kind_by_kind() {
        let mut a = IoctlCounts::default();
        a.by_kind[Ioctl::Run as usize] = 5;
        a.by_kind[Ioctl::Translate as usize] = 2;
        let mut b = a;
        b.by_kind[Ioctl::Run as usize] = 9;
        let d = b.since(&a);
        assert_eq!(
            (d.of(Ioctl::Run), d.of(Ioctl::Translate), d.total()),
            (4, 0, 4)
        );
        assert_eq!(
            b.nonzero().collect::<Vec<_>>(),
            [(Ioctl::Run, 9), (Ioctl::Translate, 2)]
        );
        assert_eq!(
            Ioctl::ALL
                .iter()
                .enumerate()
                .find(|&(i, k)| *k as usize != i),
            None
        );
    }
}
