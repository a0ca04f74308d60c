//! The SEV-ES backend: the GHCB MSR protocol and one GHCB page, with a single VMGEXIT.
//!
//! Requests that carry data go through the GHCB page (GHCB spec 2.x, section 4): the page is
//! zeroed, the fields the request needs are written and marked valid, the GHCB MSR is set to
//! the page's GPA, VMGEXIT. Answers are read once each into private memory
//! (`protocol::validate::GhcbReply`) and checked there: `sw_exit_info_1` must be 0 (or 1 with
//! an exception to inject, or 2 with an error reason), returned registers must be marked valid
//! and fit their width. The host is untrusted; the checks are `protocol::validate`'s, which the
//! host tests and the `validators` fuzz target run too.
//!
//! HLT is an automatic exit under SEV-ES (AMD APM vol. 2 15.35.4), so halting is a plain HLT;
//! the GHCB MSR itself is read and written with RDMSR/WRMSR, which SEV-ES does not intercept.
//! Those are the only raw intercepted instructions here.

use crate::arch::insn::{self, CpuidResult, Fault};
use crate::io::{MmioValue, PioValue};
use crate::platform::{HostError, MsrError, read_fits};
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};
use protocol::access::Width;
use protocol::ghcb::{self, CpuidReg, MsrRequest, exit, ioio, off, valid_bit};
use protocol::validate::{self, GhcbOutcome};

global_asm!(
    ".pushsection .text.vmgexit, \"ax\"",
    ".global cvmprobe_vmgexit",
    ".balign 16",
    "cvmprobe_vmgexit:",
    ".global cvmprobe_vmgexit_insn",
    "cvmprobe_vmgexit_insn:",
    // VMGEXIT = REP VMMCALL (F3 0F 01 D9), spelled as bytes.
    ".byte 0xf3, 0x0f, 0x01, 0xd9",
    "ret",
    ".popsection",
);

unsafe extern "C" {
    /// VMGEXIT: hands the GHCB MSR (and the GHCB it may point to) to the host.
    fn cvmprobe_vmgexit();
}

/// VMGEXIT. The host reads the GHCB MSR and, for GHCB requests, the GHCB page.
fn vmgexit() {
    super::count_host_call();
    super::count_request();
    // SAFETY: VMGEXIT changes no guest register or memory except what the host writes into
    // the shared GHCB page and the GHCB MSR, both read only through volatile accesses.
    unsafe { cvmprobe_vmgexit() }
}

/// RDMSR of the GHCB MSR (not intercepted under SEV-ES).
#[inline(never)]
fn ghcb_msr_read() -> u64 {
    insn::rdmsr_safe(ghcb::MSR_GHCB).unwrap_or(u64::MAX)
}

/// WRMSR of the GHCB MSR.
#[inline(never)]
fn ghcb_msr_write(v: u64) {
    // SAFETY: the GHCB MSR only tells the host where to look; it affects nothing in the guest.
    let _ = unsafe { insn::wrmsr_safe(ghcb::MSR_GHCB, v) };
}

/// Whether the GHCB MSR still holds the GHCB page's GPA, as the last GHCB-page request left
/// it: then the next page request skips the WRMSR. An MSR-protocol exchange replaces the
/// value (the host answers in the MSR), so it clears this. On hardware the WRMSR costs
/// nothing (SEV-ES does not intercept it); under the simulated host it is an MSR-filter
/// exit, half the cost of an MMIO request. A host that changes the MSR behind the guest's
/// back is caught: its non-answer leaves SW_EXITINFO1 unmarked in the zeroed page, which
/// every request checks.
static MSR_HOLDS_GHCB: AtomicBool = AtomicBool::new(false);

/// One MSR-protocol exchange: request in the GHCB MSR, VMGEXIT, response from the MSR.
pub fn msr_protocol(request: u64) -> u64 {
    MSR_HOLDS_GHCB.store(false, Ordering::Relaxed);
    ghcb_msr_write(request);
    vmgexit();
    ghcb_msr_read()
}

/// Asks the host to end the guest (GHCB MSR protocol 0x100), then stops for good.
pub fn terminate(set: u8, code: u8) -> ! {
    msr_protocol(MsrRequest::Terminate { set, code }.into());
    stop_forever()
}

/// `cli; hlt` forever (HLT is an automatic exit under SEV-ES).
#[inline(never)]
pub fn stop_forever() -> ! {
    insn::cli_hlt_loop()
}

/// `sti; hlt; cli` — HLT is an automatic exit: no GHCB (KVM would answer a GHCB HLT request
/// with INVALID_EVENT).
#[inline(never)]
pub fn halt() {
    insn::sti_hlt_cli();
}

static CBIT: AtomicU8 = AtomicU8::new(0);
static VERSION: AtomicU16 = AtomicU16::new(0);
static GHCB_GPA: AtomicU64 = AtomicU64::new(0);

/// What the SEV information request and CPUID 0x8000001F told the guest.
#[derive(Clone, Copy, Debug)]
pub struct SevInfo {
    /// C-bit position.
    pub cbit: u8,
}

/// Negotiates the protocol (MSR protocol SEV information and CPUID 0x8000001F), checks the
/// host's answers, and prepares the GHCB page.
pub fn init() -> Result<SevInfo, HostError> {
    let info = validate::sev_info(msr_protocol(MsrRequest::SevInfo.into()))?;
    let cbit = info.cbit;
    validate::sev_cpuid_features(cpuid_msr(ghcb::CPUID_SEV_LEAF, CpuidReg::Eax)?)?;
    validate::sev_cpuid_cbit(cpuid_msr(ghcb::CPUID_SEV_LEAF, CpuidReg::Ebx)?, cbit)?;
    CBIT.store(cbit, Ordering::Relaxed);
    VERSION.store(info.version(), Ordering::Relaxed);
    // The GHCB is the environment's shared page, whose physical placement only the page
    // tables know (identity on PVH, the loader's choice in a disk image, kvm_util's).
    if ghcb_va() == 0 {
        return Err(HostError::Unsupported {
            request: "a GHCB: the environment gives no shared page",
        });
    }
    let gpa = crate::arch::paging::virt_to_phys(ghcb_va()).ok_or(HostError::Unsupported {
        request: "the GHCB page is not mapped",
    })?;
    GHCB_GPA.store(gpa, Ordering::Relaxed);
    Ok(SevInfo { cbit })
}

/// One CPUID register through the MSR protocol (no GHCB needed).
pub fn cpuid_msr(function: u32, register: CpuidReg) -> Result<u32, HostError> {
    let raw = msr_protocol(MsrRequest::Cpuid { function, register }.into());
    Ok(validate::msr_cpuid_response(raw)?)
}

/// The C-bit position negotiated at init.
pub fn cbit() -> u8 {
    CBIT.load(Ordering::Relaxed)
}

/// The GHCB version in use.
pub fn version() -> u16 {
    VERSION.load(Ordering::Relaxed)
}

/// GPA of the GHCB page.
pub fn ghcb_gpa() -> u64 {
    GHCB_GPA.load(Ordering::Relaxed)
}

static GHCB_BUSY: spin::Mutex<()> = spin::Mutex::new(());

/// The virtual address of the GHCB page: the page the environment keeps shared with the host
/// (`cvmprobe_ops.shared_page`; cvmprobe's kernel exports it as `protocol::ghcb::GHCB_SYMBOL`
/// so a test host can watch the guest's reads of it). 0 if the environment has none.
pub fn ghcb_va() -> u64 {
    crate::env::shared_page()
}

/// The `ghcb-private` fault injection: maps the GHCB page private (C-bit set), the mistake
/// of a guest that forgets to share it. On hardware the host then reads ciphertext; under
/// sev-es-sim the host's check of the GHCB's mapping reports it and fails the run. Returns
/// whether the mapping changed (only where a 4 KiB entry maps the page alone, as the
/// kernel's split PVH map and kvm_util's tables do).
pub fn map_ghcb_private() -> bool {
    let _busy = GHCB_BUSY.lock();
    if !matches!(crate::arch::paging::walk(ghcb_va()), Some((_, 0x1000))) {
        return false;
    }
    // SAFETY: `init` ran (the C-bit and the GHCB's address are known); the page's 4 KiB leaf
    // maps nothing else, and the GHCB lock keeps requests out meanwhile.
    unsafe { crate::arch::paging::set_leaf_bits(ghcb_va(), 1 << cbit()) }.is_some()
}

/// Set by the `ghcb-double-fetch` fault injection ([`double_fetch`]).
static DOUBLE_FETCH: AtomicBool = AtomicBool::new(false);

/// From now on a request reads SW_EXITINFO1 and the valid bitmap a second time from the
/// shared page after copying the answer (`cvmprobe.inject=ghcb-double-fetch`: the bug the
/// hostile host's GHCB-rewrite lie exists to catch).
pub fn double_fetch() {
    DOUBLE_FETCH.store(true, Ordering::Relaxed);
}

/// Set by the `ghcb-not-zeroed` fault injection ([`stop_zeroing`]).
static ZEROING_DISABLED: AtomicBool = AtomicBool::new(false);

/// From now on a request clears only the GHCB's valid bitmap, not the whole page
/// (`cvmprobe.inject=ghcb-not-zeroed`: a leak put in on purpose, for the host-side check).
pub fn stop_zeroing() {
    ZEROING_DISABLED.store(true, Ordering::Relaxed);
}

/// A GHCB request under construction; holds the page.
pub struct Request {
    _busy: spin::MutexGuard<'static, ()>,
    page: *mut u8,
}

/// The host's answer, copied out of the shared page once: `info1`, `info2`, the valid bitmap
/// and RAX-RDX, with the checks of `protocol::validate` (`outcome`, `reg_fits`) and the raw
/// getters the conformance tables use (`reg`, `raw_is_marked`).
pub type Response = validate::GhcbReply;

impl Request {
    /// Takes and zeroes the GHCB, sets the version and usage. `None` if the page is in use
    /// (a #VC arrived in the middle of a request).
    pub fn new() -> Option<Self> {
        let busy = GHCB_BUSY.try_lock()?;
        let page = ghcb_va() as *mut u8;
        if page.is_null() {
            return None;
        }
        if ZEROING_DISABLED.load(Ordering::Relaxed) {
            // SAFETY: as below, the valid bitmap only (the `ghcb-not-zeroed` fault).
            unsafe { core::ptr::write_bytes(page.add(off::VALID_BITMAP), 0, 16) };
        } else {
            // SAFETY: the page is ours while `busy` is held; zeroing it means no private
            // bytes from an earlier request reach the host.
            unsafe { core::ptr::write_bytes(page, 0, 4096) };
        }
        let r = Self { _busy: busy, page };
        r.write16(off::PROTOCOL_VERSION, version());
        Some(r)
    }

    fn write16(&self, off: usize, v: u16) {
        // SAFETY: `off` is a field offset inside the 4 KiB page we hold.
        unsafe { core::ptr::write_volatile(self.page.add(off).cast::<u16>(), v) }
    }

    fn read64(&self, off: usize) -> u64 {
        // SAFETY: as in `write16`; 8-byte fields are 8-byte aligned in the page.
        unsafe { core::ptr::read_volatile(self.page.add(off).cast::<u64>()) }
    }

    /// Writes an 8-byte field and marks it valid.
    pub fn set(&mut self, off: usize, v: u64) -> &mut Self {
        self.set_unmarked(off, v);
        self.mark_valid(off);
        self
    }

    /// Writes an 8-byte field without marking it valid (conformance cases).
    pub fn set_unmarked(&mut self, off: usize, v: u64) -> &mut Self {
        // SAFETY: as in `write16`.
        unsafe { core::ptr::write_volatile(self.page.add(off).cast::<u64>(), v) };
        self
    }

    /// Marks the 8-byte field at `off` valid.
    pub fn mark_valid(&mut self, off: usize) -> &mut Self {
        let bit = valid_bit(off);
        let p = off::VALID_BITMAP + bit / 8;
        // SAFETY: `p` is inside the valid bitmap of the page we hold.
        unsafe {
            let b = core::ptr::read_volatile(self.page.add(p));
            core::ptr::write_volatile(self.page.add(p), b | (1 << (bit % 8)));
        }
        self
    }

    /// Copies `bytes` into the shared buffer at `at`.
    pub fn write_buffer(&mut self, at: usize, bytes: &[u8]) -> &mut Self {
        let n = bytes.len().min(ghcb::SHARED_BUFFER_LEN.saturating_sub(at));
        for (i, &b) in bytes[..n].iter().enumerate() {
            // SAFETY: inside the shared buffer of the page we hold.
            unsafe { core::ptr::write_volatile(self.page.add(off::SHARED_BUFFER + at + i), b) };
        }
        self
    }

    /// Reads `out.len()` bytes of the shared buffer once.
    pub fn read_buffer(&self, at: usize, out: &mut [u8]) {
        let n = out.len().min(ghcb::SHARED_BUFFER_LEN.saturating_sub(at));
        for (i, o) in out[..n].iter_mut().enumerate() {
            // SAFETY: inside the shared buffer of the page we hold.
            *o = unsafe { core::ptr::read_volatile(self.page.add(off::SHARED_BUFFER + at + i)) };
        }
    }

    /// GPA of the shared buffer.
    pub fn buffer_gpa(&self) -> u64 {
        ghcb_gpa() + off::SHARED_BUFFER as u64
    }

    /// Registers the page in the GHCB MSR, VMGEXIT, and copies the answer out once.
    pub fn call(&mut self) -> Response {
        if !MSR_HOLDS_GHCB.load(Ordering::Relaxed) {
            ghcb_msr_write(ghcb_gpa());
            MSR_HOLDS_GHCB.store(true, Ordering::Relaxed);
        }
        vmgexit();
        let mut valid = [0u8; 16];
        for (i, v) in valid.iter_mut().enumerate() {
            // SAFETY: inside the valid bitmap of the page we hold.
            *v = unsafe { core::ptr::read_volatile(self.page.add(off::VALID_BITMAP + i)) };
        }
        let mut r = Response {
            info1: self.read64(off::SW_EXIT_INFO_1),
            info2: self.read64(off::SW_EXIT_INFO_2),
            valid,
            rax: self.read64(off::RAX),
            rbx: self.read64(off::RBX),
            rcx: self.read64(off::RCX),
            rdx: self.read64(off::RDX),
        };
        if DOUBLE_FETCH.load(Ordering::Relaxed) {
            // The `ghcb-double-fetch` fault: the bug this backend must not have.
            r.info1 = self.read64(off::SW_EXIT_INFO_1);
            for (i, v) in r.valid.iter_mut().enumerate() {
                // SAFETY: inside the valid bitmap of the page we hold.
                *v = unsafe { core::ptr::read_volatile(self.page.add(off::VALID_BITMAP + i)) };
            }
        }
        r
    }
}

/// Outcome of a standard request once SW_EXITINFO1 is checked.
enum Checked {
    Ok(Response),
    /// The host asks the guest to take an exception (event-injection format in info2).
    Exception(u8),
}

/// Fills a request with exit code and infos (all marked valid), calls, checks SW_EXITINFO1.
fn standard(
    name: &'static str,
    code: u64,
    info1: u64,
    info2: u64,
    fill: impl FnOnce(&mut Request),
) -> Result<Checked, HostError> {
    let mut r = Request::new().ok_or(HostError::Unsupported {
        request: "GHCB request while the GHCB is in use (nested #VC)",
    })?;
    r.set(off::SW_EXIT_CODE, code)
        .set(off::SW_EXIT_INFO_1, info1)
        .set(off::SW_EXIT_INFO_2, info2);
    fill(&mut r);
    let resp = r.call();
    match resp.outcome(name)? {
        GhcbOutcome::Ok => Ok(Checked::Ok(resp)),
        GhcbOutcome::Exception(vector) => Ok(Checked::Exception(vector)),
        GhcbOutcome::Error(status) => Err(HostError::refused(name, status)),
    }
}

/// A returned register: marked valid, and within `width` unless the `no-width-check` fault
/// injection removed that check (`super::read_fits`).
fn read_reg(
    resp: &Response,
    off: usize,
    width: Width,
    what: &'static str,
) -> Result<u64, HostError> {
    read_fits(width, resp.reg_valid(off, what)?, what)
}

fn ok_or_fault(name: &'static str, c: Checked) -> Result<Response, HostError> {
    match c {
        Checked::Ok(r) => Ok(r),
        Checked::Exception(vector) => Err(HostError::refused(name, u64::from(vector))),
    }
}

/// MMIO read (GHCB MMIO_READ: info1 = GPA, info2 = size, scratch = shared buffer).
pub fn mmio_read<T: MmioValue>(gpa: u64) -> Result<T, HostError> {
    let name = "GHCB MMIO read";
    let size = T::WIDTH.bytes();
    let mut buf = [0u8; 8];
    let c = {
        let mut r = Request::new().ok_or(HostError::Unsupported {
            request: "GHCB request while the GHCB is in use (nested #VC)",
        })?;
        let scratch = r.buffer_gpa();
        r.set(off::SW_EXIT_CODE, exit::MMIO_READ)
            .set(off::SW_EXIT_INFO_1, gpa)
            .set(off::SW_EXIT_INFO_2, size)
            .set(off::SW_SCRATCH, scratch);
        let resp = r.call();
        r.read_buffer(0, &mut buf[..size as usize]);
        resp
    };
    match c.outcome(name)? {
        GhcbOutcome::Ok => Ok(T::from_u64(u64::from_le_bytes(buf))),
        GhcbOutcome::Error(status) => Err(HostError::refused(name, status)),
        // An exception is no answer to an MMIO read.
        GhcbOutcome::Exception(_) => Err(HostError::bad_answer(name, c.info1)),
    }
}

/// The #VC error code of a nested page fault (SVM_EXIT_NPF; GHCB spec 2.x 4.1.6): MMIO.
const VC_NPF: u64 = 0x400;

/// The #VC handler: only a nested page fault (MMIO the host made of memory the guest used) is
/// emulated. The hardware gives no GPA for it: the handler decodes the instruction, computes
/// the linear address and walks the page tables; the page must be mapped shared (C-bit
/// clear), as MMIO is.
pub fn handle_vc(
    f: &mut crate::arch::trap::TrapFrame,
) -> Result<(), super::emulate::EmulationError> {
    use super::emulate::{self, EmulationError};
    if f.error_code != VC_NPF {
        return Err(EmulationError::new(
            "#VC for an exit code other than NPF",
            f.error_code,
        ));
    }
    let access = emulate::decode_at(f)?;
    let (pte, _) = crate::arch::paging::walk(access.linear).ok_or(EmulationError::new(
        "#VC on an unmapped linear address",
        access.linear,
    ))?;
    if pte & (1 << cbit()) != 0 {
        return Err(EmulationError::new(
            "#VC NPF on a private (C-bit) page",
            access.linear,
        ));
    }
    let gpa = crate::arch::paging::virt_to_phys(access.linear).ok_or(EmulationError::new(
        "#VC on an unmapped linear address",
        access.linear,
    ))?;
    emulate::complete(f, &access, gpa)
}

/// The hypervisor's features (GHCB HV_FEATURES exit, GHCB spec 4.1.12): SW_EXITINFO2.
pub fn hv_features() -> Result<u64, HostError> {
    let name = "GHCB HV_FEATURES";
    let c = standard(name, exit::HV_FEATURES, 0, 0, |_| {})?;
    ok_or_fault(name, c).map(|r| r.info2)
}

/// MMIO write (GHCB MMIO_WRITE).
pub fn mmio_write<T: MmioValue>(gpa: u64, v: T) -> Result<(), HostError> {
    let name = "GHCB MMIO write";
    let size = T::WIDTH.bytes();
    let bytes = v.to_u64().to_le_bytes();
    let c = standard(name, exit::MMIO_WRITE, gpa, size, |r| {
        let scratch = r.buffer_gpa();
        r.write_buffer(0, &bytes[..size as usize])
            .set(off::SW_SCRATCH, scratch);
    })?;
    ok_or_fault(name, c).map(|_| ())
}

fn ioio_size(w: Width) -> u64 {
    match w {
        Width::B1 => ioio::SZ8,
        Width::B2 => ioio::SZ16,
        _ => ioio::SZ32,
    }
}

/// IOIO exit information for a non-string access (AMD APM vol. 2 15.10.2).
fn ioio_info(port: u16, w: Width, input: bool) -> u64 {
    (u64::from(port) << ioio::PORT_SHIFT)
        | ioio_size(w)
        | ioio::A64
        | if input { ioio::TYPE_IN } else { 0 }
}

/// Port read (GHCB IOIO, IN): RAX must come back valid and within the width.
pub fn pio_read<T: PioValue>(port: u16) -> Result<T, HostError> {
    let name = "GHCB IOIO read";
    let code = if super::port_reads_broken() {
        exit::IOIO - 1
    } else {
        exit::IOIO
    };
    let c = standard(name, code, ioio_info(port, T::WIDTH, true), 0, |r| {
        r.set(off::RAX, 0);
    })?;
    let resp = ok_or_fault(name, c)?;
    read_reg(
        &resp,
        off::RAX,
        T::WIDTH,
        "GHCB IOIO read: RAX not valid or wider than the access",
    )
    .map(T::from_u64)
}

/// Port write (GHCB IOIO, OUT).
pub fn pio_write<T: PioValue>(port: u16, v: T) -> Result<(), HostError> {
    let name = "GHCB IOIO write";
    let c = standard(name, exit::IOIO, ioio_info(port, T::WIDTH, false), 0, |r| {
        r.set(off::RAX, v.to_u64());
    })?;
    ok_or_fault(name, c).map(|_| ())
}

/// String port write (GHCB IOIO with STR|REP: count in info2, data in the shared buffer).
pub fn pio_write_bytes(port: u16, bytes: &[u8]) -> Result<(), HostError> {
    let name = "GHCB IOIO string write";
    for chunk in bytes.chunks(ghcb::SHARED_BUFFER_LEN) {
        let info = ioio_info(port, Width::B1, false) | ioio::STR | ioio::REP;
        let c = standard(name, exit::IOIO, info, chunk.len() as u64, |r| {
            let scratch = r.buffer_gpa();
            r.write_buffer(0, chunk).set(off::SW_SCRATCH, scratch);
        })?;
        ok_or_fault(name, c)?;
    }
    Ok(())
}

/// CPUID (GHCB CPUID exit: RAX = leaf, RCX = subleaf; RAX-RDX must come back valid, 32-bit).
pub fn cpuid(leaf: u32, subleaf: u32) -> Result<CpuidResult, HostError> {
    let name = "GHCB CPUID";
    let c = standard(name, exit::CPUID, 0, 0, |r| {
        r.set(off::RAX, u64::from(leaf))
            .set(off::RCX, u64::from(subleaf));
    })?;
    cpuid_registers(&ok_or_fault(name, c)?)
}

/// The four registers of a CPUID answer the host said succeeded: each must be marked valid
/// and 32 bits wide.
pub fn cpuid_registers(resp: &Response) -> Result<CpuidResult, HostError> {
    let reg = |off, what| read_reg(resp, off, Width::B4, what).map(|v| v as u32);
    Ok(CpuidResult {
        eax: reg(off::RAX, "GHCB CPUID: EAX not valid or wider than 32 bits")?,
        ebx: reg(off::RBX, "GHCB CPUID: EBX not valid or wider than 32 bits")?,
        ecx: reg(off::RCX, "GHCB CPUID: ECX not valid or wider than 32 bits")?,
        edx: reg(off::RDX, "GHCB CPUID: EDX not valid or wider than 32 bits")?,
    })
}

/// RDMSR (GHCB MSR exit, info1 = 0): an injected #GP is a fault, like on bare metal.
pub fn rdmsr(msr: u32) -> Result<u64, MsrError> {
    let name = "GHCB MSR read";
    let c = standard(name, exit::MSR, 0, 0, |r| {
        r.set(off::RCX, u64::from(msr));
    })
    .map_err(MsrError::Host)?;
    match c {
        Checked::Exception(vector) => Err(MsrError::Fault(Fault {
            vector,
            error_code: 0,
        })),
        Checked::Ok(resp) => {
            let w = Width::B4;
            let lo = read_reg(
                &resp,
                off::RAX,
                w,
                "GHCB MSR read: EAX not valid or wider than 32 bits",
            )
            .map_err(MsrError::Host)?;
            let hi = read_reg(
                &resp,
                off::RDX,
                w,
                "GHCB MSR read: EDX not valid or wider than 32 bits",
            )
            .map_err(MsrError::Host)?;
            Ok(hi << 32 | lo)
        }
    }
}

/// WRMSR (GHCB MSR exit, info1 = 1).
pub fn wrmsr(msr: u32, v: u64) -> Result<(), MsrError> {
    let name = "GHCB MSR write";
    let c = standard(name, exit::MSR, 1, 0, |r| {
        r.set(off::RCX, u64::from(msr))
            .set(off::RAX, v & 0xffff_ffff)
            .set(off::RDX, v >> 32);
    })
    .map_err(MsrError::Host)?;
    match c {
        Checked::Exception(vector) => Err(MsrError::Fault(Fault {
            vector,
            error_code: 0,
        })),
        Checked::Ok(_) => Ok(()),
    }
}

// ----- Raw requests for the conformance tables (kernel/src/tests/ghcb_raw.rs) -------------

impl Request {
    /// Overwrites the protocol-version and GHCB-usage fields with values a standard request
    /// never sends (`protocol::conformance` cases: versions outside 1-2, usage != 0).
    pub fn set_version_and_usage(&mut self, version: u16, usage: u32) -> &mut Self {
        self.write16(off::PROTOCOL_VERSION, version);
        // SAFETY: the usage field is a 4-byte-aligned u32 inside the page we hold.
        unsafe { core::ptr::write_volatile(self.page.add(off::GHCB_USAGE).cast::<u32>(), usage) };
        self
    }
}
