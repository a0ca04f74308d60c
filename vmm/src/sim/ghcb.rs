//! KVM's GHCB handling for an SEV-ES guest, as a pure model: the GHCB MSR protocol and the
//! GHCB page (Linux `arch/x86/kvm/svm/sev.c`: `sev_handle_vmgexit()`,
//! `sev_handle_vmgexit_msr_protocol()`, `sev_es_sync_from_ghcb()`,
//! `sev_es_are_required_ghcb_fields_valid()`, `is_snp_only_vmgexit()`,
//! `setup_vmgexit_scratch()`, `sev_es_string_io()`, `sev_es_unmap_ghcb()`,
//! `sev_es_sync_to_ghcb()`; `arch/x86/kvm/svm/svm.c` exit handlers; `arch/x86/kvm/x86.c`
//! `kvm_fast_pio()`, `kvm_sev_es_mmio()`, `kvm_sev_es_string_io()`). Read in kvm-x86/linux
//! at 1a27afa0511e (2026); older KVM had the checks in `sev_es_validate_vmgexit()`, which
//! current KVM no longer has (see [`SnpOnlyExits`]).
//!
//! The guest's RDMSR/WRMSR of the GHCB MSR and SEV_STATUS reach the VMM through the MSR
//! filter ([`GhcbModel::msr_read`], [`GhcbModel::msr_write`]); its VMGEXIT reaches
//! [`GhcbModel::vmgexit`], which reads the GHCB through [`GuestMemory`].
//!
//! What KVM writes back into the page, always, for a VMGEXIT with a mapped GHCB: the valid
//! bitmap is cleared when KVM reads the page (`sev_es_sync_from_ghcb()`); SW_EXITINFO1/2
//! are set and marked valid (`svm_vmgexit_success()`, `svm_vmgexit_bad_input()`,
//! `svm_vmgexit_inject_exception()`); RAX, RBX, RCX and RDX are set from KVM's registers and
//! marked valid on the next entry (`sev_es_sync_to_ghcb()`), "even if they may not have been
//! written during the VM-Exit". KVM's registers start as the GHCB's values where marked
//! valid, else 0. Nothing else is marked valid afterwards. All of this happens in
//! [`GhcbModel`]'s single `finish` step, after the [`Tamper::ghcb_page`] hook.
//!
//! The order of current `sev_handle_vmgexit()` for a GHCB page: `ghcb_usage` != 0 ->
//! INVALID_USAGE; an SNP-only exit code (`is_snp_only_vmgexit()`: PSC, guest request,
//! extended guest request, AP creation) from a non-SNP guest -> INVALID_EVENT, with
//! SW_EXITCODE read whether or not it is marked valid; `sev_es_are_required_ghcb_fields_valid()`
//! (SW_EXITCODE, SW_EXITINFO1/2, then the exit's own inputs) -> MISSING_INPUT;
//! `svm_vmgexit_success(svm, 0)` and the dispatch, whose default is INVALID_EVENT.
//!
//! Versions ([`GhcbConfig`]; [`crate::sim::profile`] sets them per KVM release):
//! - `ghcb_version` (2 for KVM_SEV_INIT2 VMs, 1 for legacy KVM_SEV_INIT).
//! - `ghcb_v2_limits` (the 2026 fix series "KVM: SEV: Reject MMIO requests larger than 8
//!   bytes with GHCB v2+" and "GHCB v2 requires the scratch area to be within the GHCB",
//!   tagged for stable): with it and version >= 2 a scratch area outside the GHCB page is
//!   INVALID_SCRATCH_AREA and MMIO longer than 8 bytes is INVALID_INPUT; without it, or with
//!   version 1, KVM bounces up to 16 pages of outside scratch and splits long MMIO into 8-byte
//!   exits.
//! - `kvm_has_snp` (KVM with SEV-SNP host support, v6.11+): SNP-only MSR codes (0x010, 0x012,
//!   0x014) raise KVM_SYSTEM_EVENT_SEV_TERM; before, KVM did not know them and left the MSR
//!   as it was.
//! - `snp_only_exits` ([`SnpOnlyExits`]): SNP-only exit codes, three eras.
//!
//! Where this model follows current KVM rather than PROTOCOLS.md:
//! - The MSR-protocol CPUID response keeps the request's bits 31:12 (the register selector
//!   in 31:30): KVM only replaces bits 63:32 and 11:0 (`set_ghcb_msr_bits()`). A CPUID
//!   request for EBX (0x..._4000_0004) answers 0x..._4000_0005. (Linux's guest only checks
//!   the low 12 bits; `protocol::ghcb::MsrResponse::decode` currently requires 31:12 to be 0
//!   and so refuses KVM's answer for EBX, ECX and EDX.)
//! - Exit codes are compared as whole 64-bit values (KVM keeps `exit_code` as `u64` since
//!   v7.0, "KVM: SVM: Treat exit_code as an unsigned 64-bit value through all of KVM"), so
//!   0x1_0000_0072 is not CPUID but INVALID_EVENT.

use super::kvm_hypercall::{self, Hypercall, HypercallConfig, HypercallOutcome, PvFeatures};
use super::{
    GuestMemory, Honest, HostRequest, HostResult, PAGE_SIZE, SevTermCause, SimError, Stop, Tamper,
    low_bytes_mask,
};
use protocol::ghcb::{self, MsrResponse, error, exit, ioio, msr, off, result};

/// SVM exit codes KVM's validation knows besides those in [`protocol::ghcb::exit`] (AMD APM
/// vol. 2 appendix C; Linux `uapi/asm/svm.h`).
pub mod svm_exit {
    /// SVM_EXIT_READ_DR7.
    pub const READ_DR7: u64 = 0x027;
    /// SVM_EXIT_WRITE_DR7.
    pub const WRITE_DR7: u64 = 0x037;
    /// SVM_EXIT_RDTSC.
    pub const RDTSC: u64 = 0x06e;
    /// SVM_EXIT_RDPMC.
    pub const RDPMC: u64 = 0x06f;
    /// SVM_EXIT_INVD.
    pub const INVD: u64 = 0x076;
    /// SVM_EXIT_RDTSCP.
    pub const RDTSCP: u64 = 0x087;
    /// SVM_EXIT_WBINVD.
    pub const WBINVD: u64 = 0x089;
    /// SVM_EXIT_MONITOR.
    pub const MONITOR: u64 = 0x08a;
    /// SVM_EXIT_MWAIT.
    pub const MWAIT: u64 = 0x08b;
    /// SVM_VMGEXIT_PSC (SNP).
    pub const PSC: u64 = 0x8000_0010;
    /// SVM_VMGEXIT_GUEST_REQUEST (SNP).
    pub const GUEST_REQUEST: u64 = 0x8000_0011;
    /// SVM_VMGEXIT_EXT_GUEST_REQUEST (SNP).
    pub const EXT_GUEST_REQUEST: u64 = 0x8000_0012;
    /// SVM_VMGEXIT_AP_CREATION (SNP).
    pub const AP_CREATION: u64 = 0x8000_0013;
    /// SVM_VMGEXIT_TERM_REQUEST.
    pub const TERM_REQUEST: u64 = 0x8000_fffe;
}

/// GHCB MSR protocol AP reset hold response (Linux `sev-common.h`
/// `GHCB_MSR_AP_RESET_HOLD_RESP`); result in \[63:12\].
pub const AP_RESET_HOLD_RESP: u64 = 0x007;
/// The hypervisor features current KVM advertises to every SEV-ES/SNP guest, in the MSR
/// protocol and the HV_FEATURES exit: `GHCB_HV_FT_SUPPORTED` = GHCB_HV_FT_SNP (bit 0) |
/// GHCB_HV_FT_SNP_AP_CREATION (bit 1) (sev.c).
pub const KVM_HV_FEATURES: u64 = 0x3;
/// GHCB_VERSION_MIN, the minimum in KVM's SEV-information response (sev.c).
pub const KVM_GHCB_VERSION_MIN: u16 = 1;
/// An exception to inject, SW_EXITINFO2 for SW_EXITINFO1 = 1 (`svm_vmgexit_inject_exception()`):
/// SVM_EVTINJ_VALID (bit 31) | SVM_EVTINJ_TYPE_EXEPT (3 << 8) | vector.
pub const fn event_inject_exception(vector: u8) -> u64 {
    (1 << 31) | (3 << 8) | vector as u64
}
/// #GP, the vector KVM injects for a refused MSR (`svm_complete_emulated_msr()`).
pub const X86_TRAP_GP: u8 = 13;
/// KVM bounces at most this much scratch area from outside the GHCB (GHCB version 1,
/// `GHCB_SCRATCH_AREA_LIMIT`).
pub const SCRATCH_AREA_LIMIT: u64 = 16 * PAGE_SIZE;
/// End (exclusive) of the shared buffer in the page (`offsetof(struct ghcb, reserved_0xff0)`).
const SHARED_BUFFER_END: u64 = (off::SHARED_BUFFER + ghcb::SHARED_BUFFER_LEN) as u64;
/// IOIO size bits \[6:4\] (`SVM_IOIO_SIZE_MASK`, `SVM_IOIO_SIZE_SHIFT`).
const IOIO_SIZE_MASK: u64 = ioio::SZ8 | ioio::SZ16 | ioio::SZ32;
const IOIO_SIZE_SHIFT: u32 = 4;

/// How KVM answers an SNP-only exit code (PSC 0x8000_0010, guest request 0x8000_0011,
/// extended guest request 0x8000_0012, AP creation 0x8000_0013) from an SEV-ES guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnpOnlyExits {
    /// KVM without SEV-SNP host support (v6.10 and older): the codes are unknown, so
    /// `sev_es_validate_vmgexit()` checks the SW_EXITCODE/SW_EXITINFO1/SW_EXITINFO2 valid
    /// bits (MISSING_INPUT) and its default case answers INVALID_EVENT.
    Unknown,
    /// v6.11 (SEV-SNP host support) until the rewrite: `sev_es_validate_vmgexit()` checks the
    /// three valid bits, then each SNP-only case does `if (!sev_snp_guest(...)) goto
    /// vmgexit_err;` with `reason = GHCB_ERR_MISSING_INPUT`: MISSING_INPUT either way.
    MissingInput,
    /// Current KVM (the rewrite that replaced `sev_es_validate_vmgexit()`):
    /// `sev_handle_vmgexit()` checks `is_snp_only_vmgexit() && !is_sev_snp_guest()` right
    /// after the usage check, before any valid bit: INVALID_EVENT, even with SW_EXITCODE not
    /// marked valid.
    InvalidEventFirst,
}

/// The simulated SEV-ES VM's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GhcbConfig {
    /// The VM's GHCB protocol version: 2 for KVM_SEV_INIT2 VMs (the default), 1 for the
    /// legacy KVM_SEV_INIT (`__sev_guest_init()`).
    pub ghcb_version: u16,
    /// C-bit position (`sev_enc_bit`).
    pub cbit: u8,
    /// Hypervisor features (MSR protocol 0x080 and the HV_FEATURES exit).
    pub hv_features: u64,
    /// What RDMSR of SEV_STATUS reads.
    pub sev_status: u64,
    /// KVM with SEV-SNP host support (v6.11+): SNP-only MSR-protocol codes end the VM.
    pub kvm_has_snp: bool,
    /// How SNP-only exit codes are answered.
    pub snp_only_exits: SnpOnlyExits,
    /// KVM enforces the GHCB version 2 limits on the scratch area and the MMIO length (the
    /// 2026 fix series; see the module documentation).
    pub ghcb_v2_limits: bool,
    /// The VMM enabled KVM_CAP_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE
    /// (`user_exit_on_hypercall()`); without it that hypercall answers `-KVM_ENOSYS`.
    pub map_gpa_range_exit: bool,
    /// Whether KVM enforces the PV CPUID bits on KVM hypercalls (`guest_pv_has()`).
    pub pv_features: PvFeatures,
}

impl Default for GhcbConfig {
    fn default() -> Self {
        Self {
            ghcb_version: 2,
            cbit: 47,
            hv_features: KVM_HV_FEATURES,
            sev_status: ghcb::SEV_STATUS_SEV | ghcb::SEV_STATUS_SEV_ES,
            kvm_has_snp: true,
            snp_only_exits: SnpOnlyExits::InvalidEventFirst,
            ghcb_v2_limits: true,
            map_gpa_range_exit: true,
            pv_features: PvFeatures::default(),
        }
    }
}

impl GhcbConfig {
    /// Whether KVM holds this VM to the GHCB version 2 limits (scratch inside the GHCB, MMIO
    /// of at most 8 bytes).
    pub fn v2_limits(&self) -> bool {
        self.ghcb_version >= 2 && self.ghcb_v2_limits
    }
}

/// What KVM writes into the GHCB page after a request ([`GhcbModel`]'s `finish`); the
/// [`Tamper::ghcb_page`] hook may change it first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GhcbAnswer {
    /// SW_EXITINFO1 (0 success, 1 exception, 2 error).
    pub info1: u64,
    /// SW_EXITINFO2.
    pub info2: u64,
    /// RAX.
    pub rax: u64,
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// Data KVM writes into guest memory at a GPA: the scratch area after IN / MMIO read.
    pub scratch: Option<(u64, Vec<u8>)>,
    /// GHCB offsets of returned fields left unmarked in the valid bitmap (KVM marks
    /// SW_EXITINFO1/2 and RAX, RBX, RCX, RDX; only a hostile host leaves one out).
    pub unmarked: Vec<usize>,
}

/// What the model does with one VMGEXIT, or with a completed host request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GhcbStep {
    /// Resume the guest: the GHCB MSR and page already hold KVM's answer.
    Done,
    /// Serve this, then call [`GhcbModel::complete`].
    Host(HostRequest),
    /// The VM stops.
    Stop(Stop),
}

/// Why an intercepted MSR access is not a plain success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MsrError {
    /// Inject #GP (a write to the read-only SEV_STATUS).
    #[error("#GP")]
    Gp,
    /// Not an MSR this model owns (the MSR filter should not have sent it).
    #[error("not an SEV MSR")]
    NotOwned,
}

/// KVM's copies of the guest registers the GHCB carries (`vcpu->arch.regs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Regs {
    rax: u64,
    rbx: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
}

/// One GHCB request as KVM took it in (`sev_es_sync_from_ghcb()`).
#[derive(Clone, Debug)]
struct Request {
    ghcb_gpa: u64,
    exit_code: u64,
    info1: u64,
    info2: u64,
    regs: Regs,
}

/// A scratch area (`svm->sev_es.ghcb_sa`): its GPA, KVM's copy, and whether KVM writes it
/// back when done (`ghcb_sa_sync`; for the in-page area KVM writes the page directly).
#[derive(Clone, Debug)]
struct Scratch {
    gpa: u64,
    data: Vec<u8>,
    sync: bool,
}

#[derive(Clone, Debug)]
enum PageOp {
    PortIn {
        size: u64,
    },
    PortOut,
    StringIn {
        port: u16,
        size: u8,
        left: u64,
        chunk: u64,
        offset: usize,
        sa: Scratch,
    },
    StringOut {
        port: u16,
        size: u8,
        left: u64,
        offset: usize,
        sa: Scratch,
    },
    Mmio {
        write: bool,
        gpa: u64,
        offset: usize,
        chunk: usize,
        sa: Scratch,
    },
    Cpuid,
    Rdmsr,
    Wrmsr,
    Hypercall,
    ApHltLoop,
}

impl PageOp {
    const fn name(&self) -> &'static str {
        match self {
            PageOp::PortIn { .. } => "PortRead",
            PageOp::PortOut => "PortWrite",
            PageOp::StringIn { .. } => "PortReadString",
            PageOp::StringOut { .. } => "PortWriteString",
            PageOp::Mmio { write: false, .. } => "MmioRead",
            PageOp::Mmio { write: true, .. } => "MmioWrite",
            PageOp::Cpuid => "Cpuid",
            PageOp::Rdmsr => "Rdmsr",
            PageOp::Wrmsr => "Wrmsr",
            PageOp::Hypercall => "KvmHypercall",
            PageOp::ApHltLoop => "ApResetHold",
        }
    }
}

#[derive(Clone, Debug)]
enum Pending {
    /// MSR-protocol CPUID request (the MSR value).
    MsrCpuid(u64),
    /// MSR-protocol AP reset hold.
    MsrApResetHold(u64),
    /// A GHCB-page request.
    Page(Request, PageOp),
}

/// Outcome of `setup_vmgexit_scratch()` failing.
enum ScratchError {
    /// INVALID_SCRATCH_AREA.
    Invalid,
    /// KVM_RUN fails (`kvm_read_guest()` of an outside area failed: -EFAULT).
    Fault,
}

/// KVM's GHCB handling for one SEV-ES vCPU.
#[derive(Clone, Debug)]
pub struct GhcbModel<T: Tamper = Honest> {
    cfg: GhcbConfig,
    msr: u64,
    ap_jump_table: u64,
    pending: Option<(Pending, HostRequest)>,
    tamper: T,
}

impl GhcbModel<Honest> {
    /// An honest SEV-ES host.
    pub fn new(cfg: GhcbConfig) -> Self {
        Self::with_tamper(cfg, Honest)
    }
}

impl<T: Tamper> GhcbModel<T> {
    /// An SEV-ES host whose KVM answers pass through `tamper`. The GHCB MSR starts as the
    /// SEV-information response (`sev_es_vcpu_reset()`).
    pub fn with_tamper(cfg: GhcbConfig, tamper: T) -> Self {
        let msr = Self::sev_info(&cfg);
        Self {
            cfg,
            msr,
            ap_jump_table: 0,
            pending: None,
            tamper,
        }
    }

    /// The SEV-information response: \[63:48\] the VM's GHCB version, \[47:32\]
    /// GHCB_VERSION_MIN, \[31:24\] the C-bit (`GHCB_MSR_SEV_INFO()`).
    fn sev_info(cfg: &GhcbConfig) -> u64 {
        MsrResponse::SevInfo {
            max: cfg.ghcb_version,
            min: KVM_GHCB_VERSION_MIN,
            cbit: cfg.cbit,
        }
        .encode()
    }

    /// The configuration.
    pub fn config(&self) -> &GhcbConfig {
        &self.cfg
    }

    /// The tamper hook.
    pub fn tamper_mut(&mut self) -> &mut T {
        &mut self.tamper
    }

    /// The GHCB MSR's value.
    pub fn ghcb_msr(&self) -> u64 {
        self.msr
    }

    /// The host request the model is waiting for, if any.
    pub fn pending_request(&self) -> Option<&HostRequest> {
        self.pending.as_ref().map(|(_, r)| r)
    }

    /// The guest's RDMSR of an intercepted MSR: the GHCB MSR (its value) or SEV_STATUS.
    pub fn msr_read(&self, index: u32) -> Result<u64, MsrError> {
        match index {
            ghcb::MSR_GHCB => Ok(self.msr),
            ghcb::MSR_SEV_STATUS => Ok(self.cfg.sev_status),
            _ => Err(MsrError::NotOwned),
        }
    }

    /// The guest's WRMSR of an intercepted MSR: the GHCB MSR takes any value; SEV_STATUS is
    /// read-only (#GP).
    pub fn msr_write(&mut self, index: u32, value: u64) -> Result<(), MsrError> {
        match index {
            ghcb::MSR_GHCB => {
                self.msr = value;
                Ok(())
            }
            ghcb::MSR_SEV_STATUS => Err(MsrError::Gp),
            _ => Err(MsrError::NotOwned),
        }
    }

    /// One VMGEXIT (`sev_handle_vmgexit()`): MSR protocol if the GHCB MSR's low 12 bits are
    /// non-zero; nothing if the MSR is 0 or its page is not guest RAM ("without a GHCB, just
    /// return right back to the guest"); otherwise the GHCB page. A request still pending
    /// from an earlier VMGEXIT is dropped.
    pub fn vmgexit(&mut self, mem: &mut dyn GuestMemory) -> GhcbStep {
        self.pending = None;
        let gpa = self.msr;
        if gpa & msr::INFO_MASK != 0 {
            return self.msr_protocol(gpa);
        }
        if gpa == 0 {
            return GhcbStep::Done;
        }
        let mut page = vec![0u8; PAGE_SIZE as usize];
        if mem.read(gpa, &mut page).is_err() {
            return GhcbStep::Done;
        }
        self.page_request(gpa, &page, mem)
    }

    // ----- MSR protocol --------------------------------------------------------------------

    /// `sev_handle_vmgexit_msr_protocol()`.
    fn msr_protocol(&mut self, request: u64) -> GhcbStep {
        let code = request & msr::INFO_MASK;
        match code {
            msr::SEV_INFO_REQ => self.msr_answer(request, Self::sev_info(&self.cfg)),
            msr::CPUID_REQ => {
                // The CPUID intercept with RAX = function, RCX = 0.
                let req = HostRequest::Cpuid {
                    leaf: (request >> 32) as u32,
                    subleaf: 0,
                    xcr0: None,
                };
                self.pending = Some((Pending::MsrCpuid(request), req.clone()));
                GhcbStep::Host(req)
            }
            msr::AP_RESET_HOLD_REQ => {
                self.pending = Some((Pending::MsrApResetHold(request), HostRequest::ApResetHold));
                GhcbStep::Host(HostRequest::ApResetHold)
            }
            msr::HV_FT_REQ => {
                // GHCB_MSR_HV_FT_MASK is GENMASK_ULL(51, 0) at position 12.
                let features = self.cfg.hv_features & ((1 << 52) - 1);
                self.msr_answer(request, MsrResponse::HvFeatures { features }.encode())
            }
            msr::PREF_GPA_REQ | msr::REG_GPA_REQ | msr::PSC_REQ if self.cfg.kvm_has_snp => {
                // `if (!is_sev_snp_guest(vcpu)) goto out_terminate;`
                GhcbStep::Stop(Stop::SevTerm {
                    ghcb_msr: request,
                    cause: SevTermCause::SnpOnlyMsrRequest { code },
                })
            }
            msr::TERM_REQ => GhcbStep::Stop(Stop::SevTerm {
                ghcb_msr: request,
                cause: SevTermCause::Request {
                    set: ((request >> 12) & 0xf) as u8,
                    code: ((request >> 16) & 0xff) as u8,
                },
            }),
            // "Error, keep GHCB MSR value as-is".
            _ => self.msr_answer(request, request),
        }
    }

    /// The one place an MSR-protocol answer is written.
    fn msr_answer(&mut self, request: u64, mut answer: u64) -> GhcbStep {
        self.tamper.ghcb_msr(request, &mut answer);
        self.msr = answer;
        GhcbStep::Done
    }

    // ----- GHCB page -----------------------------------------------------------------------

    /// `sev_es_sync_from_ghcb()`, the checks of `sev_handle_vmgexit()` ([`Self::validate`]),
    /// then its dispatch after `svm_vmgexit_success(svm, 0)`.
    fn page_request(&mut self, ghcb_gpa: u64, page: &[u8], mem: &mut dyn GuestMemory) -> GhcbStep {
        let page = Page(page);
        let regs = Regs {
            rax: page.u64_if_valid(off::RAX),
            rbx: page.u64_if_valid(off::RBX),
            rcx: page.u64_if_valid(off::RCX),
            rdx: page.u64_if_valid(off::RDX),
            rsi: page.u64_if_valid(off::RSI),
        };
        let req = Request {
            ghcb_gpa,
            exit_code: page.u64_at(off::SW_EXIT_CODE),
            info1: page.u64_at(off::SW_EXIT_INFO_1),
            info2: page.u64_at(off::SW_EXIT_INFO_2),
            regs,
        };
        if let Err(reason) = self.validate(&page, &req) {
            return self.bad_input(&req, reason, mem);
        }
        let scratch = page.u64_if_valid(off::SW_SCRATCH);
        match req.exit_code {
            exit::MMIO_READ | exit::MMIO_WRITE => self.mmio(req, scratch, &page, mem),
            exit::IOIO => self.ioio(req, scratch, &page, mem),
            exit::CPUID => {
                let xcr0 = page.is_valid(off::XCR0).then(|| page.u64_at(off::XCR0));
                let host = HostRequest::Cpuid {
                    leaf: regs.rax as u32,
                    subleaf: regs.rcx as u32,
                    xcr0,
                };
                self.ask(req, PageOp::Cpuid, host)
            }
            exit::MSR => {
                // msr_interception(): any non-zero SW_EXITINFO1 is a write.
                let index = regs.rcx as u32;
                if req.info1 != 0 {
                    let value = (u64::from(regs.rdx as u32) << 32) | u64::from(regs.rax as u32);
                    self.ask(req, PageOp::Wrmsr, HostRequest::Wrmsr { index, value })
                } else {
                    self.ask(req, PageOp::Rdmsr, HostRequest::Rdmsr { index })
                }
            }
            exit::VMMCALL => {
                let cpl = if page.is_valid(off::CPL) {
                    page.0[off::CPL]
                } else {
                    0
                };
                self.vmmcall(req, cpl, mem)
            }
            exit::NMI_COMPLETE => self.success(&req, req.regs, 0, None, mem),
            exit::AP_HLT_LOOP => self.ask(req, PageOp::ApHltLoop, HostRequest::ApResetHold),
            exit::AP_JUMP_TABLE => match req.info1 {
                0 => {
                    self.ap_jump_table = req.info2;
                    self.success(&req, req.regs, 0, None, mem)
                }
                1 => {
                    let table = self.ap_jump_table;
                    self.success(&req, req.regs, table, None, mem)
                }
                _ => self.bad_input(&req, error::INVALID_INPUT, mem),
            },
            exit::HV_FEATURES => {
                let features = self.cfg.hv_features;
                self.success(&req, req.regs, features, None, mem)
            }
            svm_exit::TERM_REQUEST => GhcbStep::Stop(Stop::SevTerm {
                ghcb_msr: ghcb_gpa,
                cause: SevTermCause::TermRequestExit {
                    info1: req.info1,
                    info2: req.info2,
                },
            }),
            exit::UNSUPPORTED => GhcbStep::Stop(Stop::KvmRunError {
                errno: libc::EINVAL,
                why: "VMGEXIT unsupported event (0x8000ffff)",
            }),
            other => GhcbStep::Stop(Stop::NotModelled {
                what: format!(
                    "GHCB exit code {other:#x} (valid, handled by KVM's SVM exit handlers)"
                ),
            }),
        }
    }

    /// The checks before the dispatch, in the order of the configured KVM: `ghcb_usage`
    /// (INVALID_USAGE) always first; then, in current KVM, an SNP-only exit code
    /// (INVALID_EVENT, SW_EXITCODE read without its valid bit); then the valid bits of
    /// SW_EXITCODE, SW_EXITINFO1/2 and the exit's inputs (MISSING_INPUT,
    /// `sev_es_are_required_ghcb_fields_valid()`); an unknown code is INVALID_EVENT (the
    /// dispatch's default). The comparisons use the full 64-bit exit code and (for CPUID's
    /// XCR0 rule) the full RAX. See [`SnpOnlyExits`] for the older orders.
    fn validate(&self, page: &Page<'_>, req: &Request) -> Result<(), u64> {
        if page.u32_at(off::GHCB_USAGE) != 0 {
            return Err(error::INVALID_USAGE);
        }
        let snp_only = is_snp_only_vmgexit(req.exit_code);
        if snp_only && self.cfg.snp_only_exits == SnpOnlyExits::InvalidEventFirst {
            return Err(error::INVALID_EVENT);
        }
        let need = |offs: &[usize]| {
            if offs.iter().all(|&o| page.is_valid(o)) {
                Ok(())
            } else {
                Err(error::MISSING_INPUT)
            }
        };
        need(&[off::SW_EXIT_CODE, off::SW_EXIT_INFO_1, off::SW_EXIT_INFO_2])?;
        if snp_only {
            return Err(match self.cfg.snp_only_exits {
                // `if (!sev_snp_guest(vcpu->kvm)) goto vmgexit_err;` with MISSING_INPUT.
                SnpOnlyExits::MissingInput => error::MISSING_INPUT,
                // Unknown to KVM: the default case.
                SnpOnlyExits::Unknown | SnpOnlyExits::InvalidEventFirst => error::INVALID_EVENT,
            });
        }
        match req.exit_code {
            svm_exit::READ_DR7
            | svm_exit::RDTSC
            | svm_exit::INVD
            | svm_exit::RDTSCP
            | svm_exit::WBINVD => Ok(()),
            svm_exit::WRITE_DR7 => need(&[off::RAX]),
            svm_exit::RDPMC => need(&[off::RCX]),
            exit::CPUID => {
                need(&[off::RAX, off::RCX])?;
                if req.regs.rax == 0xd {
                    need(&[off::XCR0])?;
                }
                Ok(())
            }
            exit::IOIO => {
                if req.info1 & ioio::STR != 0 {
                    need(&[off::SW_SCRATCH])
                } else if req.info1 & ioio::TYPE_IN == 0 {
                    need(&[off::RAX])
                } else {
                    Ok(())
                }
            }
            exit::MSR => {
                need(&[off::RCX])?;
                if req.info1 != 0 {
                    need(&[off::RAX, off::RDX])?;
                }
                Ok(())
            }
            exit::VMMCALL => need(&[off::RAX, off::CPL]),
            svm_exit::MONITOR => need(&[off::RAX, off::RCX, off::RDX]),
            svm_exit::MWAIT => need(&[off::RAX, off::RCX]),
            exit::MMIO_READ | exit::MMIO_WRITE => need(&[off::SW_SCRATCH]),
            exit::NMI_COMPLETE
            | exit::AP_HLT_LOOP
            | exit::AP_JUMP_TABLE
            | exit::UNSUPPORTED
            | exit::HV_FEATURES
            | svm_exit::TERM_REQUEST => Ok(()),
            _ => Err(error::INVALID_EVENT),
        }
    }

    /// `setup_vmgexit_scratch()`: scratch 0, `scratch + len` overflowing, an area that starts
    /// in the GHCB page but is not wholly inside [0x800, 0xFF0), or (GHCB version >= 2) any
    /// area outside the page, or (version 1) one longer than 16 pages -> INVALID_SCRATCH_AREA.
    /// A version-1 outside area is copied in (a failed copy fails KVM_RUN with EFAULT).
    fn setup_scratch(
        &self,
        req: &Request,
        scratch: u64,
        len: u64,
        sync: bool,
        page: &Page<'_>,
        mem: &dyn GuestMemory,
    ) -> Result<Scratch, ScratchError> {
        if len == 0 || scratch == 0 {
            return Err(ScratchError::Invalid);
        }
        let end = scratch.checked_add(len).ok_or(ScratchError::Invalid)?;
        if scratch & !(PAGE_SIZE - 1) == req.ghcb_gpa {
            let (beg_ok, end_ok) = (
                scratch >= req.ghcb_gpa + off::SHARED_BUFFER as u64,
                end <= req.ghcb_gpa + SHARED_BUFFER_END,
            );
            if !beg_ok || !end_ok {
                return Err(ScratchError::Invalid);
            }
            let start = (scratch - req.ghcb_gpa) as usize;
            return Ok(Scratch {
                gpa: scratch,
                data: page.0[start..start + len as usize].to_vec(),
                sync,
            });
        }
        if self.cfg.v2_limits() || len > SCRATCH_AREA_LIMIT {
            return Err(ScratchError::Invalid);
        }
        let mut data = vec![0u8; len as usize];
        mem.read(scratch, &mut data)
            .map_err(|_| ScratchError::Fault)?;
        Ok(Scratch {
            gpa: scratch,
            data,
            sync,
        })
    }

    /// Maps a scratch failure to KVM's answer.
    fn scratch_failed(
        &mut self,
        req: &Request,
        e: ScratchError,
        mem: &mut dyn GuestMemory,
    ) -> GhcbStep {
        match e {
            ScratchError::Invalid => self.bad_input(req, error::INVALID_SCRATCH_AREA, mem),
            ScratchError::Fault => GhcbStep::Stop(Stop::KvmRunError {
                errno: libc::EFAULT,
                why: "kvm_read_guest() of the scratch area outside the GHCB failed",
            }),
        }
    }

    /// MMIO_READ / MMIO_WRITE (`sev_handle_vmgexit()`): length 0 is a successful no-op; with
    /// GHCB version >= 2 a length above 8 is INVALID_INPUT; then the scratch area, then
    /// `kvm_sev_es_mmio()` at SW_EXITINFO1 (the GPA as sent) in exits of at most 8 bytes
    /// (`complete_sev_es_emulated_mmio()`).
    fn mmio(
        &mut self,
        req: Request,
        scratch: u64,
        page: &Page<'_>,
        mem: &mut dyn GuestMemory,
    ) -> GhcbStep {
        let write = req.exit_code == exit::MMIO_WRITE;
        let len = req.info2;
        if len == 0 {
            return self.success(&req, req.regs, 0, None, mem);
        }
        if self.cfg.v2_limits() && len > 8 {
            return self.bad_input(&req, error::INVALID_INPUT, mem);
        }
        let sa = match self.setup_scratch(&req, scratch, len, !write, page, mem) {
            Ok(sa) => sa,
            Err(e) => return self.scratch_failed(&req, e, mem),
        };
        let gpa = req.info1;
        self.mmio_chunk(req, write, gpa, 0, sa)
    }

    /// The next (at most 8-byte) MMIO exit at `offset` into the area.
    fn mmio_chunk(
        &mut self,
        req: Request,
        write: bool,
        gpa: u64,
        offset: usize,
        sa: Scratch,
    ) -> GhcbStep {
        let chunk = (sa.data.len() - offset).min(8);
        let at = gpa.wrapping_add(offset as u64);
        let host = if write {
            let mut b = [0u8; 8];
            b[..chunk].copy_from_slice(&sa.data[offset..offset + chunk]);
            HostRequest::MmioWrite {
                gpa: at,
                guest_gpa: at,
                size: chunk as u8,
                value: u64::from_le_bytes(b),
            }
        } else {
            HostRequest::MmioRead {
                gpa: at,
                guest_gpa: at,
                size: chunk as u8,
            }
        };
        let op = PageOp::Mmio {
            write,
            gpa,
            offset,
            chunk,
            sa,
        };
        self.ask(req, op, host)
    }

    /// IOIO (`sev_handle_vmgexit()`: no size bit set is a successful no-op; then
    /// `io_interception()` with `io_info` = SW_EXITINFO1 as `u32`): the size bits are added up,
    /// never validated (two bits give 3, 5 or 6; three give 7). String IO goes to
    /// `sev_es_string_io()`, the rest to `kvm_fast_pio()`.
    fn ioio(
        &mut self,
        req: Request,
        scratch: u64,
        page: &Page<'_>,
        mem: &mut dyn GuestMemory,
    ) -> GhcbStep {
        let size = (req.info1 & IOIO_SIZE_MASK) >> IOIO_SIZE_SHIFT;
        if size == 0 {
            return self.success(&req, req.regs, 0, None, mem);
        }
        let io_info = req.info1 as u32;
        let port = (io_info >> ioio::PORT_SHIFT) as u16;
        let input = u64::from(io_info) & ioio::TYPE_IN != 0;
        if u64::from(io_info) & ioio::STR != 0 {
            return self.string_io(req, scratch, size, port, input, page, mem);
        }
        if input {
            let host = HostRequest::PortRead {
                port,
                size: size as u8,
            };
            self.ask(req, PageOp::PortIn { size }, host)
        } else {
            // kvm_fast_pio_out(): the low `size` bytes of RAX.
            let value = req.regs.rax & low_bytes_mask(size);
            let host = HostRequest::PortWrite {
                port,
                size: size as u8,
                value,
            };
            self.ask(req, PageOp::PortOut, host)
        }
    }

    /// `sev_es_string_io()`: SW_EXITINFO2 (the count) above INT_MAX, or count * size
    /// overflowing an `int`, fails KVM_RUN with EINVAL; 0 bytes is a successful no-op; then the
    /// scratch area and `kvm_sev_es_string_io()`, which exits with at most
    /// PAGE_SIZE / size elements at a time.
    #[allow(clippy::too_many_arguments)]
    fn string_io(
        &mut self,
        req: Request,
        scratch: u64,
        size: u64,
        port: u16,
        input: bool,
        page: &Page<'_>,
        mem: &mut dyn GuestMemory,
    ) -> GhcbStep {
        let einval = |why| {
            GhcbStep::Stop(Stop::KvmRunError {
                errno: libc::EINVAL,
                why,
            })
        };
        let Ok(count) = i32::try_from(req.info2) else {
            return einval("string IO count (SW_EXITINFO2) above INT_MAX");
        };
        let Some(bytes) = count.checked_mul(size as i32) else {
            return einval("string IO count * size overflows an int");
        };
        if bytes == 0 {
            return self.success(&req, req.regs, 0, None, mem);
        }
        let sa = match self.setup_scratch(&req, scratch, bytes as u64, input, page, mem) {
            Ok(sa) => sa,
            Err(e) => return self.scratch_failed(&req, e, mem),
        };
        let size = size as u8;
        if input {
            self.string_in_chunk(req, port, size, count as u64, 0, sa)
        } else {
            self.string_out_chunk(req, port, size, count as u64, 0, sa)
        }
    }

    fn string_in_chunk(
        &mut self,
        req: Request,
        port: u16,
        size: u8,
        left: u64,
        offset: usize,
        sa: Scratch,
    ) -> GhcbStep {
        let chunk = left.min(PAGE_SIZE / u64::from(size));
        let host = HostRequest::PortReadString {
            port,
            size,
            count: chunk as u32,
        };
        let op = PageOp::StringIn {
            port,
            size,
            left,
            chunk,
            offset,
            sa,
        };
        self.ask(req, op, host)
    }

    fn string_out_chunk(
        &mut self,
        req: Request,
        port: u16,
        size: u8,
        left: u64,
        offset: usize,
        sa: Scratch,
    ) -> GhcbStep {
        let chunk = left.min(PAGE_SIZE / u64::from(size));
        let n = (chunk * u64::from(size)) as usize;
        let host = HostRequest::PortWriteString {
            port,
            size,
            data: sa.data[offset..offset + n].to_vec(),
        };
        let op = PageOp::StringOut {
            port,
            size,
            left,
            offset,
            sa,
        };
        self.ask(req, op, host)
    }

    /// VMMCALL (`kvm_emulate_hypercall()` -> `____kvm_emulate_hypercall()`): number RAX,
    /// arguments RBX, RCX, RDX, RSI, CPL from the GHCB, 64-bit (protected state); the
    /// return value goes to RAX. KVM answers it inside ([`kvm_hypercall::emulate`]); only
    /// KVM_HC_MAP_GPA_RANGE with the user exit enabled reaches the VMM.
    fn vmmcall(&mut self, req: Request, cpl: u8, mem: &mut dyn GuestMemory) -> GhcbStep {
        let mut regs = req.regs;
        let call = Hypercall {
            nr: regs.rax,
            args: [regs.rbx, regs.rcx, regs.rdx, regs.rsi],
            cpl,
            op_64_bit: true,
        };
        let cfg = HypercallConfig {
            map_gpa_range_exit: self.cfg.map_gpa_range_exit,
            pv: self.cfg.pv_features,
            ..HypercallConfig::default()
        };
        match kvm_hypercall::emulate(call, &cfg) {
            HypercallOutcome::Return(v) => {
                regs.rax = v;
                self.success(&req, regs, 0, None, mem)
            }
            HypercallOutcome::MapGpaRange { gpa, npages, attrs } => self.ask(
                req,
                PageOp::Hypercall,
                HostRequest::KvmMapGpaRange { gpa, npages, attrs },
            ),
            HypercallOutcome::NotModelled(what) => {
                GhcbStep::Stop(Stop::NotModelled { what: what.into() })
            }
        }
    }

    /// Leaves the request with the VMM.
    fn ask(&mut self, req: Request, op: PageOp, host: HostRequest) -> GhcbStep {
        self.pending = Some((Pending::Page(req, op), host.clone()));
        GhcbStep::Host(host)
    }

    /// SW_EXITINFO1 = 0, SW_EXITINFO2 = `info2` (`svm_vmgexit_success()`).
    fn success(
        &mut self,
        req: &Request,
        regs: Regs,
        info2: u64,
        scratch: Option<(u64, Vec<u8>)>,
        mem: &mut dyn GuestMemory,
    ) -> GhcbStep {
        self.answer(req, regs, result::OK, info2, scratch, mem)
    }

    /// SW_EXITINFO1 = 2, SW_EXITINFO2 = `reason` (`svm_vmgexit_bad_input()`).
    fn bad_input(&mut self, req: &Request, reason: u64, mem: &mut dyn GuestMemory) -> GhcbStep {
        self.answer(req, req.regs, result::ERROR, reason, None, mem)
    }

    fn answer(
        &mut self,
        req: &Request,
        regs: Regs,
        info1: u64,
        info2: u64,
        scratch: Option<(u64, Vec<u8>)>,
        mem: &mut dyn GuestMemory,
    ) -> GhcbStep {
        let answer = GhcbAnswer {
            info1,
            info2,
            rax: regs.rax,
            rbx: regs.rbx,
            rcx: regs.rcx,
            rdx: regs.rdx,
            scratch,
            unmarked: Vec::new(),
        };
        let seen = crate::sim::GhcbPageRequest {
            exit_code: req.exit_code,
            info1: req.info1,
            info2: req.info2,
        };
        self.finish(req.ghcb_gpa, &seen, answer, mem);
        GhcbStep::Done
    }

    /// The one place a GHCB-page answer is written, in KVM's order: the valid bitmap cleared
    /// and SW_EXITINFO1/2 set and marked valid (while handling the exit); the scratch area
    /// synced (`sev_es_unmap_ghcb()`); RAX, RBX, RCX, RDX set and marked valid
    /// (`sev_es_sync_to_ghcb()`). Write errors are ignored, as KVM ignores them.
    fn finish(
        &mut self,
        ghcb_gpa: u64,
        seen: &crate::sim::GhcbPageRequest,
        mut answer: GhcbAnswer,
        mem: &mut dyn GuestMemory,
    ) {
        self.tamper.ghcb_page(seen, &mut answer);
        let mut bitmap = [0u8; 16];
        for o in [off::SW_EXIT_INFO_1, off::SW_EXIT_INFO_2] {
            if !answer.unmarked.contains(&o) {
                set_valid(&mut bitmap, o);
            }
        }
        let _ = mem.write(ghcb_gpa + off::VALID_BITMAP as u64, &bitmap);
        let _ = mem.write(
            ghcb_gpa + off::SW_EXIT_INFO_1 as u64,
            &answer.info1.to_le_bytes(),
        );
        let _ = mem.write(
            ghcb_gpa + off::SW_EXIT_INFO_2 as u64,
            &answer.info2.to_le_bytes(),
        );
        if let Some((gpa, data)) = &answer.scratch {
            let _ = mem.write(*gpa, data);
        }
        let mut bitmap = [0u8; 16];
        let _ = mem.read(ghcb_gpa + off::VALID_BITMAP as u64, &mut bitmap);
        for (o, v) in [
            (off::RAX, answer.rax),
            (off::RBX, answer.rbx),
            (off::RCX, answer.rcx),
            (off::RDX, answer.rdx),
        ] {
            if !answer.unmarked.contains(&o) {
                set_valid(&mut bitmap, o);
            }
            let _ = mem.write(ghcb_gpa + o as u64, &v.to_le_bytes());
        }
        let _ = mem.write(ghcb_gpa + off::VALID_BITMAP as u64, &bitmap);
    }

    /// The VMM served the pending request: KVM's completion for it. A result that does not
    /// fit the request is refused and the request stays pending.
    pub fn complete(
        &mut self,
        result: HostResult,
        mem: &mut dyn GuestMemory,
    ) -> Result<GhcbStep, SimError> {
        let Some((pending, host)) = self.pending.take() else {
            return Err(SimError::NothingPending);
        };
        match pending {
            Pending::MsrCpuid(request) => {
                let HostResult::Cpuid(r) = result else {
                    self.pending = Some((Pending::MsrCpuid(request), host));
                    return Err(SimError::WrongResult {
                        pending: "Cpuid (MSR protocol)",
                        got: result,
                    });
                };
                // Bits [31:30] of the request select the register; KVM replaces [63:32] with
                // the value and [11:0] with the response code, keeping [31:12].
                let value = r[((request >> 30) & 3) as usize];
                let answer = (u64::from(value) << 32) | (request & 0xffff_f000) | msr::CPUID_RESP;
                Ok(self.msr_answer(request, answer))
            }
            Pending::MsrApResetHold(request) => {
                if result != HostResult::Done {
                    self.pending = Some((Pending::MsrApResetHold(request), host));
                    return Err(SimError::WrongResult {
                        pending: "ApResetHold (MSR protocol)",
                        got: result,
                    });
                }
                // sev_vcpu_deliver_sipi_vector(): response 0x007 with a non-zero result.
                Ok(self.msr_answer(request, (1 << 12) | AP_RESET_HOLD_RESP))
            }
            Pending::Page(req, op) => self.complete_page(req, op, host, result, mem),
        }
    }

    fn complete_page(
        &mut self,
        req: Request,
        op: PageOp,
        host: HostRequest,
        result: HostResult,
        mem: &mut dyn GuestMemory,
    ) -> Result<GhcbStep, SimError> {
        let mut regs = req.regs;
        match (op, result) {
            // complete_fast_pio_in(): below 4 bytes merge into RAX, else zero-extend.
            (PageOp::PortIn { size }, HostResult::Value(v)) => {
                let mask = low_bytes_mask(size);
                regs.rax = if size < 4 {
                    (regs.rax & !mask) | (v & mask)
                } else {
                    v & mask
                };
                Ok(self.success(&req, regs, 0, None, mem))
            }
            (PageOp::PortOut | PageOp::Wrmsr, HostResult::Done) => {
                Ok(self.success(&req, regs, 0, None, mem))
            }
            // kvm_emulate_cpuid()
            (PageOp::Cpuid, HostResult::Cpuid([a, b, c, d])) => {
                regs.rax = u64::from(a);
                regs.rbx = u64::from(b);
                regs.rcx = u64::from(c);
                regs.rdx = u64::from(d);
                Ok(self.success(&req, regs, 0, None, mem))
            }
            // kvm_emulate_rdmsr(): EAX = low half, EDX = high half.
            (PageOp::Rdmsr, HostResult::Value(v)) => {
                regs.rax = v & 0xffff_ffff;
                regs.rdx = v >> 32;
                Ok(self.success(&req, regs, 0, None, mem))
            }
            // svm_complete_emulated_msr() -> svm_vmgexit_inject_exception(svm, X86_TRAP_GP).
            (PageOp::Rdmsr | PageOp::Wrmsr, HostResult::Refused) => Ok(self.answer(
                &req,
                regs,
                result::EXCEPTION,
                event_inject_exception(X86_TRAP_GP),
                None,
                mem,
            )),
            (PageOp::Hypercall, HostResult::Value(ret)) => {
                regs.rax = ret;
                Ok(self.success(&req, regs, 0, None, mem))
            }
            // sev_vcpu_deliver_sipi_vector(): AP_RESET_HOLD_NAE_EVENT -> SW_EXITINFO2 = 1.
            (PageOp::ApHltLoop, HostResult::Done) => Ok(self.success(&req, regs, 1, None, mem)),
            (
                PageOp::Mmio {
                    write,
                    gpa,
                    offset,
                    chunk,
                    mut sa,
                },
                r,
            ) if (write && r == HostResult::Done)
                || (!write && matches!(r, HostResult::Value(_))) =>
            {
                if let HostResult::Value(v) = r {
                    sa.data[offset..offset + chunk].copy_from_slice(&v.to_le_bytes()[..chunk]);
                }
                let offset = offset + chunk;
                if offset < sa.data.len() {
                    return Ok(self.mmio_chunk(req, write, gpa, offset, sa));
                }
                let scratch = sa.sync.then_some((sa.gpa, sa.data));
                Ok(self.success(&req, regs, 0, scratch, mem))
            }
            (
                PageOp::StringIn {
                    port,
                    size,
                    left,
                    chunk,
                    offset,
                    mut sa,
                },
                HostResult::Bytes(b),
            ) if b.len() as u64 == chunk * u64::from(size) => {
                sa.data[offset..offset + b.len()].copy_from_slice(&b);
                let (left, offset) = (left - chunk, offset + b.len());
                if left > 0 {
                    return Ok(self.string_in_chunk(req, port, size, left, offset, sa));
                }
                let scratch = sa.sync.then_some((sa.gpa, sa.data));
                Ok(self.success(&req, regs, 0, scratch, mem))
            }
            (
                PageOp::StringOut {
                    port,
                    size,
                    left,
                    offset,
                    sa,
                },
                HostResult::Done,
            ) => {
                let chunk = left.min(PAGE_SIZE / u64::from(size));
                let (left, offset) = (left - chunk, offset + (chunk * u64::from(size)) as usize);
                if left > 0 {
                    return Ok(self.string_out_chunk(req, port, size, left, offset, sa));
                }
                Ok(self.success(&req, regs, 0, None, mem))
            }
            (op, got) => {
                let pending = op.name();
                self.pending = Some((Pending::Page(req, op), host));
                Err(SimError::WrongResult { pending, got })
            }
        }
    }
}

/// `is_snp_only_vmgexit()`: the exit codes only an SEV-SNP guest may send.
pub fn is_snp_only_vmgexit(code: u64) -> bool {
    matches!(
        code,
        svm_exit::AP_CREATION
            | svm_exit::GUEST_REQUEST
            | svm_exit::EXT_GUEST_REQUEST
            | svm_exit::PSC
    )
}

/// A read-only view of a GHCB page snapshot.
struct Page<'a>(&'a [u8]);

impl Page<'_> {
    fn u64_at(&self, o: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[o..o + 8]);
        u64::from_le_bytes(b)
    }

    fn u32_at(&self, o: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[o..o + 4]);
        u32::from_le_bytes(b)
    }

    /// The valid-bitmap bit of the field at byte offset `o` (`GHCB_BITMAP_IDX`).
    fn is_valid(&self, o: usize) -> bool {
        let bit = ghcb::valid_bit(o);
        self.0[off::VALID_BITMAP + bit / 8] & (1 << (bit % 8)) != 0
    }

    /// `kvm_ghcb_get_*_if_valid()`.
    fn u64_if_valid(&self, o: usize) -> u64 {
        if self.is_valid(o) { self.u64_at(o) } else { 0 }
    }
}

fn set_valid(bitmap: &mut [u8; 16], o: usize) {
    let bit = ghcb::valid_bit(o);
    bitmap[bit / 8] |= 1 << (bit % 8);
}

#[cfg(test)]
#[path = "ghcb_tests.rs"]
mod tests;
