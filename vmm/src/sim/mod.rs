//! Simulated confidential platforms: pure models of the TDX module + KVM's TDG.VP.VMCALL
//! handling ([`tdx`]) and of KVM's GHCB handling for an SEV-ES guest ([`ghcb`]).
//!
//! DESIGN.md, "Sims are pure models": host state + request -> answer. Nothing here calls KVM,
//! spawns a thread or does I/O; guest memory is reached only through the small
//! [`GuestMemory`] trait. The vCPU loop, the unit tests, the `sim-call` oracle and the
//! hostile-host mode share these models:
//!
//! 1. The VMM hands the model what the guest did (its registers at TDCALL; the GHCB MSR and,
//!    through [`GuestMemory`], the GHCB page at VMGEXIT).
//! 2. The model answers at once, or asks the VMM to serve a [`HostRequest`] first (a port or
//!    MMIO access, a CPUID lookup, an MSR access, a halt, ...), exactly where KVM exits to
//!    user space (or, for CPUID and MSRs, where KVM looks at state the VMM owns).
//! 3. The VMM serves it and calls the model's `complete` with a [`HostResult`]; the model
//!    writes KVM's answer back the way KVM does.
//! 4. Some requests end the VM instead ([`Stop`]): KVM's system events, KVM_RUN errors, and
//!    exits that KVM handles but these models do not.
//!
//! Every model writes its answer in one `finish` function, after passing it through a
//! [`Tamper`] hook, so a hostile-host layer can alter KVM's answers (never the TDX module's
//! or the CPU's) without touching the models. Models are deterministic: same inputs, same
//! outputs.
//!
//! [`oracle`] drives one raw request through a model with a canned host (the `sim-call`
//! oracle and the conformance tests, `conformance_tests.rs`, which run every case of
//! `protocol::conformance` against the models).
//!
//! The models follow current upstream KVM (Linux `arch/x86/kvm/vmx/tdx.c`,
//! `arch/x86/kvm/svm/sev.c`, `arch/x86/kvm/x86.c`) and the Intel TDX module sources
//! (`intel/tdx-module`, `src/td_dispatcher/`); each behaviour cites its function. Where
//! KVM's answer depends on the version, a config field selects it.

pub mod address;
pub mod ghcb;
pub mod hostile;
pub mod kvm_hypercall;
pub mod oracle;
pub mod profile;
pub mod raw;
pub mod tdx;

#[cfg(test)]
mod conformance_tests;

use std::fmt;

/// Size of a guest page (x86 4 KiB), as KVM's `PAGE_SIZE`.
pub const PAGE_SIZE: u64 = 4096;

/// KVM's hypercall error values (`protocol::kvm_para::err`).
pub use protocol::kvm_para::err as kvm_err;
/// KVM hypercall numbers (`protocol::kvm_para::hc`).
pub use protocol::kvm_para::hc as kvm_hc;

/// `kvm_run.system_event.type` values (Linux `include/uapi/linux/kvm.h`).
pub mod system_event {
    /// KVM_SYSTEM_EVENT_SEV_TERM: an SEV-ES/SNP guest asked to terminate.
    pub const SEV_TERM: u32 = 6;
    /// KVM_SYSTEM_EVENT_TDX_FATAL: `TDG.VP.VMCALL<ReportFatalError>`.
    pub const TDX_FATAL: u32 = 7;
}

/// Something the VMM must do before the model can answer the guest. Each variant says which
/// KVM exit (or KVM-internal lookup) it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostRequest {
    /// Port read (KVM_EXIT_IO, in): answer [`HostResult::Value`] (the low `size` bytes are
    /// used). `size` is 1, 2 or 4 from TDX; from an SEV-ES GHCB it is whatever the IOIO size
    /// bits add up to (1..=7, see `ghcb`).
    PortRead {
        /// Port.
        port: u16,
        /// Bytes.
        size: u8,
    },
    /// Port write (KVM_EXIT_IO, out): answer [`HostResult::Done`].
    PortWrite {
        /// Port.
        port: u16,
        /// Bytes.
        size: u8,
        /// The low `size` bytes of the guest's value (KVM copies only those).
        value: u64,
    },
    /// String port read (`rep ins` through the GHCB; KVM_EXIT_IO with `count` > 1): answer
    /// [`HostResult::Bytes`] of exactly `size * count` bytes.
    PortReadString {
        /// Port.
        port: u16,
        /// Bytes per element.
        size: u8,
        /// Elements.
        count: u32,
    },
    /// String port write (`rep outs` through the GHCB): answer [`HostResult::Done`].
    PortWriteString {
        /// Port.
        port: u16,
        /// Bytes per element.
        size: u8,
        /// `size * count` bytes, element after element.
        data: Vec<u8>,
    },
    /// MMIO read (KVM_EXIT_MMIO): answer [`HostResult::Value`] (low `size` bytes used).
    MmioRead {
        /// The GPA KVM reports in `kvm_run.mmio.phys_addr` (TDX: shared bit stripped).
        gpa: u64,
        /// The GPA as the guest sent it (TDX: with the shared bit; SEV-ES: same as `gpa`).
        guest_gpa: u64,
        /// Bytes, 1..=8.
        size: u8,
    },
    /// MMIO write (KVM_EXIT_MMIO): answer [`HostResult::Done`].
    MmioWrite {
        /// The GPA KVM reports (TDX: shared bit stripped).
        gpa: u64,
        /// The GPA as the guest sent it.
        guest_gpa: u64,
        /// Bytes, 1..=8.
        size: u8,
        /// The low `size` bytes of the value.
        value: u64,
    },
    /// CPUID lookup (`kvm_cpuid()` over the table the VMM set with KVM_SET_CPUID2): answer
    /// [`HostResult::Cpuid`].
    Cpuid {
        /// Leaf (EAX).
        leaf: u32,
        /// Subleaf (ECX).
        subleaf: u32,
        /// The XCR0 the GHCB supplied, if it marked one valid (`sev_es_sync_from_ghcb()` hands
        /// it to `__kvm_set_xcr()`, which keeps the old XCR0 if this one is invalid); `None`:
        /// KVM's current XCR0. KVM's CPUID code uses it for leaf 0xD.
        xcr0: Option<u64>,
    },
    /// RDMSR (`kvm_emulate_rdmsr()`; the VMM decides like KVM's MSR code or its MSR filter):
    /// answer [`HostResult::Value`] or [`HostResult::Refused`].
    Rdmsr {
        /// MSR index.
        index: u32,
    },
    /// WRMSR (`kvm_emulate_wrmsr()`): answer [`HostResult::Done`] or [`HostResult::Refused`].
    Wrmsr {
        /// MSR index.
        index: u32,
        /// Value (EDX:EAX).
        value: u64,
    },
    /// `TDVMCALL<HLT>` (`kvm_emulate_halt_noskip()`): halt until an interrupt is pending (with
    /// `interrupts_blocked` set, nothing can wake the vCPU), then [`HostResult::Done`].
    Hlt {
        /// R12 != 0: the guest halts with interrupts blocked.
        interrupts_blocked: bool,
    },
    /// SEV-ES AP reset hold (GHCB MSR protocol 0x006 or the AP_HLT_LOOP exit;
    /// `kvm_emulate_ap_reset_hold()`): hold the vCPU until a SIPI, then [`HostResult::Done`].
    ApResetHold,
    /// One chunk (at most 2 MiB) of `TDVMCALL<MapGPA>` as KVM_EXIT_HYPERCALL /
    /// KVM_HC_MAP_GPA_RANGE (`__tdx_map_gpa()`): answer [`HostResult::MapGpa`].
    MapGpa {
        /// First GPA of the chunk, shared bit stripped (`hypercall.args[0]`).
        gpa: u64,
        /// Bytes in the chunk (`hypercall.args[1]` pages).
        size: u64,
        /// KVM_MAP_GPA_RANGE_ENCRYPTED (true) or _DECRYPTED (false) (`hypercall.args[2]`).
        to_private: bool,
    },
    /// `TDVMCALL<GetTdVmCallInfo>` with R12 = 1 (KVM_EXIT_TDX, pre-filled with SUCCESS and
    /// zeros): answer [`HostResult::TdVmCallInfo`], or [`HostResult::Done`] to keep KVM's
    /// pre-filled answer.
    TdVmCallInfo {
        /// R12 (the leaf, always 1 here).
        leaf: u64,
    },
    /// `TDVMCALL<GetQuote>` (KVM_EXIT_TDX, `tdx_get_quote()`): answer [`HostResult::Status`],
    /// or [`HostResult::Done`] to keep KVM's pre-filled SUBFUNC_UNSUPPORTED.
    GetQuote {
        /// Buffer GPA, shared bit stripped.
        gpa: u64,
        /// Buffer size.
        size: u64,
    },
    /// `TDVMCALL<SetupEventNotifyInterrupt>` (KVM_EXIT_TDX,
    /// `tdx_setup_event_notify_interrupt()`): answer [`HostResult::Status`] or
    /// [`HostResult::Done`] (KVM's pre-filled SUBFUNC_UNSUPPORTED).
    SetupEventNotify {
        /// Vector, 32..=255.
        vector: u8,
    },
    /// KVM_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE (a KVM hypercall that passed KVM's checks,
    /// [`kvm_hypercall::emulate`]; every other hypercall KVM answers itself): answer
    /// [`HostResult::Value`] with `hypercall.ret`.
    KvmMapGpaRange {
        /// a0: the first GPA.
        gpa: u64,
        /// a1: pages.
        npages: u64,
        /// a2: attributes (KVM_MAP_GPA_RANGE_ENCRYPTED, page size).
        attrs: u64,
    },
}

/// The VMM's answer to a [`HostRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostResult {
    /// Done (a write, a halt that woke up, a hold that got its SIPI, ...).
    Done,
    /// A read value (port, MMIO, RDMSR) or a hypercall return value.
    Value(u64),
    /// String-read data.
    Bytes(Vec<u8>),
    /// CPUID EAX, EBX, ECX, EDX.
    Cpuid([u32; 4]),
    /// The MSR access is refused (what makes KVM answer INVALID_OPERAND on TDX and inject
    /// #GP on SEV-ES).
    Refused,
    /// The outcome of one MapGPA chunk.
    MapGpa(MapGpaResult),
    /// The VMM's GetTdVmCallInfo answer (`kvm_run.tdx.get_tdvmcall_info`).
    TdVmCallInfo {
        /// TDVMCALL status (R10).
        status: u64,
        /// R11.
        r11: u64,
        /// R12.
        r12: u64,
        /// R13.
        r13: u64,
        /// R14.
        r14: u64,
    },
    /// A TDVMCALL status the VMM chose (`kvm_run.tdx.*.ret`).
    Status(u64),
}

/// What the VMM answers for one KVM_HC_MAP_GPA_RANGE chunk (`kvm_run.hypercall.ret`, plus
/// whether the vCPU has an event pending, which KVM checks between chunks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapGpaResult {
    /// `hypercall.ret` = 0.
    Ok {
        /// `kvm_vcpu_has_events()`: an interrupt or NMI is pending, so KVM stops between
        /// chunks and answers RETRY.
        event_pending: bool,
    },
    /// `hypercall.ret` = EAGAIN ("retry later").
    Again,
    /// `hypercall.ret` = EINVAL.
    Invalid,
    /// Any other non-zero `hypercall.ret`.
    Other(i64),
}

/// Why the VM stops instead of resuming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// KVM_EXIT_SYSTEM_EVENT, type [`system_event::TDX_FATAL`], 16 data words
    /// (`tdx_report_fatal_error()`).
    TdxFatal {
        /// `system_event.data`: RAX (the TD exit reason), RCX, RDX, RBX, 0 (RSP), 0 (RBP),
        /// RSI, RDI, R8..R15, as KVM saw them (unexposed registers are 0).
        data: [u64; 16],
    },
    /// KVM_EXIT_SYSTEM_EVENT, type [`system_event::SEV_TERM`], `data[0]` = the GHCB MSR.
    SevTerm {
        /// `system_event.data[0]`.
        ghcb_msr: u64,
        /// What the guest sent.
        cause: SevTermCause,
    },
    /// KVM_RUN fails with this errno (KVM returned an error from the exit handler).
    KvmRunError {
        /// Positive errno (EINVAL = 22, EFAULT = 14).
        errno: i32,
        /// Which check failed.
        why: &'static str,
    },
    /// KVM handles this (valid) request, but the sim does not model it.
    NotModelled {
        /// What it was.
        what: String,
    },
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TdxFatal { data } => write!(
                f,
                "TDX fatal error (KVM_SYSTEM_EVENT_TDX_FATAL), R12 {:#x} R13 {:#x}",
                data[12], data[13]
            ),
            Self::SevTerm { ghcb_msr, cause } => {
                write!(f, "SEV termination ({cause:?}), GHCB MSR {ghcb_msr:#x}")
            }
            Self::KvmRunError { errno, why } => {
                write!(f, "KVM_RUN fails with errno {errno}: {why}")
            }
            Self::NotModelled { what } => write!(f, "not modelled by the sim: {what}"),
        }
    }
}

/// What made KVM raise KVM_SYSTEM_EVENT_SEV_TERM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SevTermCause {
    /// GHCB MSR protocol termination request (0x100).
    Request {
        /// Reason-code set (\[15:12\]).
        set: u8,
        /// Reason code (\[23:16\]).
        code: u8,
    },
    /// An SNP-only MSR-protocol request (0x010, 0x012, 0x014) from a non-SNP guest.
    SnpOnlyMsrRequest {
        /// The request code.
        code: u64,
    },
    /// The GHCB termination-request exit (0x8000FFFE).
    TermRequestExit {
        /// SW_EXITINFO1.
        info1: u64,
        /// SW_EXITINFO2.
        info2: u64,
    },
}

/// The VMM called a model out of order: a bug in the VMM, never a guest input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// `complete` without a pending request.
    #[error("no host request is pending")]
    NothingPending,
    /// The result does not answer the pending request.
    #[error("host result {got:?} does not answer {pending}")]
    WrongResult {
        /// The pending request, described.
        pending: &'static str,
        /// What the VMM gave.
        got: HostResult,
    },
}

/// Guest-physical memory as the models see it: the VMM implements it over vm-memory, the
/// tests over a `Vec`. Both methods fail as a whole when any byte is not backed by RAM.
pub trait GuestMemory {
    /// Reads `buf.len()` bytes at `gpa`.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError>;
    /// Writes `data` at `gpa`.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError>;
}

/// A guest-memory access hit a GPA with no RAM behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no guest RAM at {gpa:#x} (+{len} bytes)")]
pub struct MemoryError {
    /// First GPA of the access.
    pub gpa: u64,
    /// Bytes.
    pub len: usize,
}

/// A flat RAM range at `base`, for tests and the `sim-call` oracle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlatMemory {
    /// GPA of the first byte.
    pub base: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl FlatMemory {
    /// `len` zero bytes at `base`.
    pub fn new(base: u64, len: usize) -> Self {
        Self {
            base,
            bytes: vec![0; len],
        }
    }

    fn range(&self, gpa: u64, len: usize) -> Result<std::ops::Range<usize>, MemoryError> {
        let err = MemoryError { gpa, len };
        let start = gpa.checked_sub(self.base).ok_or(err)?;
        let start = usize::try_from(start).map_err(|_| err)?;
        let end = start.checked_add(len).ok_or(err)?;
        if end > self.bytes.len() {
            return Err(err);
        }
        Ok(start..end)
    }
}

impl GuestMemory for FlatMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let r = self.range(gpa, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        let r = self.range(gpa, data.len())?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

/// What KVM saw of a GHCB-page request, for the [`Tamper::ghcb_page`] hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GhcbPageRequest {
    /// SW_EXITCODE.
    pub exit_code: u64,
    /// SW_EXITINFO1 as the guest sent it (IOIO: port and size bits; MMIO: the GPA).
    pub info1: u64,
    /// SW_EXITINFO2 as the guest sent it.
    pub info2: u64,
}

/// An event the host injects on its own, with no access behind it (a hostile host's
/// "spurious #VE / #VC"; on SEV-ES the hypervisor really can inject any vector, e.g. the
/// 2024 "WeSee" attack's #VC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpuriousEvent {
    /// SEV-ES: the #VC error code (an exit code); TDX: ignored (the #VE information posted
    /// comes from `ve`).
    pub error_code: u32,
    /// TDX: the #VE information to post for TDG.VP.VEINFO.GET (`None`: post nothing).
    pub ve: Option<tdx::VeInfo>,
}

/// The hook through which a hostile-host layer alters KVM's answers before a model writes
/// them. Every method defaults to "change nothing"; [`Honest`] is the plain KVM.
pub trait Tamper {
    /// A TDG.VP.VMCALL answer: `request` is what KVM saw (unexposed registers 0), `answer`
    /// is KVM's register state about to be handed back through the TDX module (which then
    /// writes only the exposed registers into the guest).
    fn tdvmcall(
        &mut self,
        request: &protocol::tdx::TdcallRegs,
        answer: &mut protocol::tdx::TdcallRegs,
    ) {
        let _ = (request, answer);
    }

    /// A GHCB MSR-protocol answer: `request` is the MSR value at VMGEXIT, `answer` the value
    /// KVM leaves in the MSR.
    fn ghcb_msr(&mut self, request: u64, answer: &mut u64) {
        let _ = (request, answer);
    }

    /// A GHCB-page answer about to be written into the page.
    fn ghcb_page(&mut self, request: &GhcbPageRequest, answer: &mut ghcb::GhcbAnswer) {
        let _ = (request, answer);
    }

    /// The guest announced a case on the test device (`(suite, case)`), or ended it
    /// (`None`): the VMM calls this before each trap, so a hostile host knows whose request
    /// it answers.
    fn set_case(&mut self, case: Option<(&'static str, &'static str)>) {
        let _ = case;
    }

    /// Whether the VMM can take host-made events now (spurious #VE/#VC, a watched GHCB
    /// rewrite): not while it single-steps a deleted memslot. Called before each trap.
    fn set_events_allowed(&mut self, allowed: bool) {
        let _ = allowed;
    }

    /// After an answer, whether to inject an event with no cause behind it.
    fn spurious_event(&mut self) -> Option<SpuriousEvent> {
        None
    }

    /// After a GHCB-page answer: whether to rewrite the page once the guest has read it (a
    /// hostile host testing for double fetches). Read once per answer.
    fn rewrite_after_read(&mut self) -> bool {
        false
    }

    /// The #VE information the host posts for an MMIO access it turned into a #VE (in
    /// hardware the TDX module writes it; a hostile-host model alters it to test the
    /// guest's cross-checks).
    fn ve_info(&mut self, info: &mut tdx::VeInfo) {
        let _ = info;
    }
}

/// The honest host: KVM's answers unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Honest;

impl Tamper for Honest {}

impl<T: Tamper + ?Sized> Tamper for Box<T> {
    fn tdvmcall(
        &mut self,
        request: &protocol::tdx::TdcallRegs,
        answer: &mut protocol::tdx::TdcallRegs,
    ) {
        (**self).tdvmcall(request, answer);
    }

    fn ghcb_msr(&mut self, request: u64, answer: &mut u64) {
        (**self).ghcb_msr(request, answer);
    }

    fn ghcb_page(&mut self, request: &GhcbPageRequest, answer: &mut ghcb::GhcbAnswer) {
        (**self).ghcb_page(request, answer);
    }

    fn set_case(&mut self, case: Option<(&'static str, &'static str)>) {
        (**self).set_case(case);
    }

    fn spurious_event(&mut self) -> Option<SpuriousEvent> {
        (**self).spurious_event()
    }

    fn ve_info(&mut self, info: &mut tdx::VeInfo) {
        (**self).ve_info(info);
    }

    fn rewrite_after_read(&mut self) -> bool {
        (**self).rewrite_after_read()
    }

    fn set_events_allowed(&mut self, allowed: bool) {
        (**self).set_events_allowed(allowed);
    }
}

/// All ones in the low `bytes` bytes (`bytes` >= 8: all ones).
pub(crate) const fn low_bytes_mask(bytes: u64) -> u64 {
    if bytes >= 8 {
        u64::MAX
    } else {
        (1u64 << (bytes * 8)) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_memory_bounds() {
        let mut m = FlatMemory::new(0x1000, 0x100);
        assert!(m.write(0x10ff, &[1]).is_ok());
        assert_eq!(
            m.write(0x10ff, &[1, 2]),
            Err(MemoryError {
                gpa: 0x10ff,
                len: 2
            })
        );
        let mut b = [0u8; 1];
        assert!(m.read(0xfff, &mut b).is_err());
        assert!(m.read(u64::MAX, &mut b).is_err());
        m.read(0x10ff, &mut b).unwrap();
        assert_eq!(b, [1]);
    }

    #[test]
    fn masks() {
        assert_eq!(low_bytes_mask(0), 0);
        assert_eq!(low_bytes_mask(3), 0xff_ffff);
        assert_eq!(low_bytes_mask(8), u64::MAX);
        assert_eq!(kvm_err::EPERM, u64::MAX);
    }
}
