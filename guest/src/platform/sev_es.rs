//! The SEV-ES backend: the GHCB MSR protocol and one GHCB page, with a single VMGEXIT.
//!
//! Requests that carry data go through the GHCB page (GHCB spec 2.x, section 4): what earlier
//! requests left in the page is zeroed, the fields the request needs are written and marked
//! valid, the GHCB MSR is set to the page's GPA (when an MSR-protocol exchange replaced it),
//! VMGEXIT. Answers are read once each into private memory
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
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, AtomicUsize, Ordering};
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
#[optimize(speed)]
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
/// [`ghcb_va`] once `init` found it mapped (0 before): the request path's copy, one load
/// instead of a look into the environment's table per request.
static GHCB_PAGE: AtomicU64 = AtomicU64::new(0);

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
    GHCB_PAGE.store(ghcb_va(), Ordering::Relaxed);
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

/// From now on a request clears only the GHCB's valid bitmap, not the bytes earlier requests
/// left (`cvmprobe.inject=ghcb-not-zeroed`: a leak put in on purpose, for the host-side check).
pub fn stop_zeroing() {
    let _busy = GHCB_BUSY.lock();
    CLEAN.store(CLEAN_BITMAP, Ordering::Relaxed);
}

/// The page words a standard request may leave non-zero besides SW_EXITCODE and
/// SW_EXITINFO1/2 (which every standard request writes anew): the fields the requests of
/// this backend send or the host answers in, and the valid bitmap. A standard request zeroes
/// exactly these, and the start of the shared buffer earlier requests used
/// ([`BUFFER_DIRTY`]), instead of the whole page: zeroing 4 KiB is one `rep stosq` whose
/// 512 iterations each cost a guest instruction's emulation on the CI hosts.
const STANDARD_WORDS: [usize; 7] = [
    off::SW_SCRATCH,
    off::RAX,
    off::RBX,
    off::RCX,
    off::RDX,
    off::VALID_BITMAP,
    off::VALID_BITMAP + 8,
];

/// What the next request must zero first: [`CLEAN_STANDARD`], [`CLEAN_PAGE`] or, under the
/// `ghcb-not-zeroed` fault, [`CLEAN_BITMAP`]. One byte, so a standard request decides with one
/// load.
static CLEAN: AtomicU8 = AtomicU8::new(CLEAN_PAGE);
/// The standard words and the used start of the buffer ([`BUFFER_DIRTY`]).
const CLEAN_STANDARD: u8 = 0;
/// The whole page: a request wrote outside the standard words (a raw conformance request);
/// also at boot, when the first request writes the protocol version into a zeroed page.
const CLEAN_PAGE: u8 = 1;
/// Only the valid bitmap (the `ghcb-not-zeroed` fault).
const CLEAN_BITMAP: u8 = 2;

/// 8-byte words at the start of the shared buffer that standard requests (or the host's
/// answers to them) wrote since it was last zeroed.
static BUFFER_DIRTY: AtomicUsize = AtomicUsize::new(0);

/// Records that the first `bytes` of the shared buffer hold data (a plain load and store: the
/// caller holds the page).
fn buffer_used(bytes: usize) {
    let words = bytes.div_ceil(8);
    if words > BUFFER_DIRTY.load(Ordering::Relaxed) {
        BUFFER_DIRTY.store(words, Ordering::Relaxed);
    }
}

/// The valid-bitmap words marking the 8-byte fields at `offs` (GHCB spec 2.x, 2.2: bit n
/// marks the field at byte 8n).
const fn valid_words(offs: &[usize]) -> [u64; 2] {
    let mut w = [0u64; 2];
    let mut i = 0;
    while i < offs.len() {
        let bit = valid_bit(offs[i]);
        w[bit / 64] |= 1 << (bit % 64);
        i += 1;
    }
    w
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
    /// Takes the GHCB, zeroed, with the version and usage set: the conformance cases' raw
    /// requests start here. `None` if the page is in use (a #VC arrived in the middle of a
    /// request).
    pub fn new() -> Option<Self> {
        let r = Self::take_clean(CLEAN_PAGE)?;
        // Whatever the raw request writes, the next request zeroes the page again.
        r.dirty_page();
        Some(r)
    }

    /// Takes the GHCB for a standard request of exit `code` with SW_EXITINFO1/2: the words
    /// earlier requests left are zeroed ([`STANDARD_WORDS`]), the exit code and infos
    /// written. Their valid bits are set by [`Self::send`].
    #[optimize(speed)]
    fn standard(code: u64, info1: u64, info2: u64) -> Option<Self> {
        let mut r = Self::take_clean(CLEAN_STANDARD)?;
        r.put(off::SW_EXIT_CODE, code);
        r.put(off::SW_EXIT_INFO_1, info1);
        r.put(off::SW_EXIT_INFO_2, info2);
        Some(r)
    }

    /// Takes the page and zeroes what earlier requests left: at least what `at_least` says,
    /// more if they wrote more ([`CLEAN`]; only the valid bitmap under the `ghcb-not-zeroed`
    /// fault).
    #[optimize(speed)]
    fn take_clean(at_least: u8) -> Option<Self> {
        let busy = GHCB_BUSY.try_lock()?;
        let page = GHCB_PAGE.load(Ordering::Relaxed) as *mut u8;
        if page.is_null() {
            return None;
        }
        let mut r = Self { _busy: busy, page };
        match CLEAN.load(Ordering::Relaxed).max(at_least) {
            CLEAN_STANDARD => {
                // One store each, spelled out: the kernel is built for size, and a loop over
                // the offsets costs four emulated instructions a word.
                let [a, b, c, d, e, f, g] = STANDARD_WORDS;
                r.put(a, 0);
                r.put(b, 0);
                r.put(c, 0);
                r.put(d, 0);
                r.put(e, 0);
                r.put(f, 0);
                r.put(g, 0);
                match BUFFER_DIRTY.swap(0, Ordering::Relaxed) {
                    0 => {}
                    1 => r.put(off::SHARED_BUFFER, 0),
                    words => {
                        for i in 0..words {
                            r.put(off::SHARED_BUFFER + 8 * i, 0);
                        }
                    }
                }
            }
            CLEAN_PAGE => {
                // SAFETY: the page is ours while `busy` is held; zeroing it means no private
                // bytes from an earlier request reach the host.
                unsafe { core::ptr::write_bytes(r.page, 0, 4096) };
                BUFFER_DIRTY.store(0, Ordering::Relaxed);
                r.write16(off::PROTOCOL_VERSION, version());
                CLEAN.store(CLEAN_STANDARD, Ordering::Relaxed);
            }
            _ => {
                // CLEAN_BITMAP: the `ghcb-not-zeroed` fault (stays on).
                r.put(off::VALID_BITMAP, 0);
                r.put(off::VALID_BITMAP + 8, 0);
                r.write16(off::PROTOCOL_VERSION, version());
            }
        }
        Some(r)
    }

    /// A raw write outside the standard words: the next request zeroes the whole page
    /// (unless the `ghcb-not-zeroed` fault is on).
    fn dirty_page(&self) {
        if CLEAN.load(Ordering::Relaxed) == CLEAN_STANDARD {
            CLEAN.store(CLEAN_PAGE, Ordering::Relaxed);
        }
    }

    fn write16(&self, off: usize, v: u16) {
        // SAFETY: `off` is a field offset inside the 4 KiB page we hold.
        unsafe { core::ptr::write_volatile(self.page.add(off).cast::<u16>(), v) }
    }

    fn read64(&self, off: usize) -> u64 {
        // SAFETY: as in `write16`; 8-byte fields are 8-byte aligned in the page.
        unsafe { core::ptr::read_volatile(self.page.add(off).cast::<u64>()) }
    }

    /// Writes the 8-byte word at `off` (a field of [`STANDARD_WORDS`], SW_EXITCODE/INFO1/2 or
    /// the buffer's start), nothing else.
    fn put(&mut self, off: usize, v: u64) {
        // SAFETY: `off` is an 8-byte-aligned word inside the 4 KiB page we hold.
        unsafe { core::ptr::write_volatile(self.page.add(off).cast::<u64>(), v) };
    }

    /// Writes an 8-byte field and marks it valid (raw requests).
    pub fn set(&mut self, off: usize, v: u64) -> &mut Self {
        self.set_unmarked(off, v);
        self.mark_valid(off);
        self
    }

    /// Writes an 8-byte field without marking it valid (raw requests).
    pub fn set_unmarked(&mut self, off: usize, v: u64) -> &mut Self {
        self.dirty_page();
        self.put(off, v);
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

    /// Copies `bytes` to the start of the shared buffer, eight at a time.
    #[optimize(speed)]
    fn put_buffer(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(ghcb::SHARED_BUFFER_LEN);
        buffer_used(n);
        for (i, chunk) in bytes[..n].chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.put(off::SHARED_BUFFER + 8 * i, u64::from_le_bytes(w));
        }
    }

    /// The shared buffer as the scratch area of a standard request that sends `sent` bytes
    /// there and gets up to `answered` back: SW_SCRATCH holds its GPA.
    #[optimize(speed)]
    fn scratch(&mut self, sent: &[u8], answered: usize) {
        self.put_buffer(sent);
        buffer_used(answered);
        self.put(off::SW_SCRATCH, self.buffer_gpa());
    }

    /// Marks the fields of `valid` ([`valid_words`]) valid and sends the request ([`Self::call`]);
    /// the answer's RAX-RDX are copied out only if `registers` (else they read 0).
    #[optimize(speed)]
    fn send(&mut self, valid: [u64; 2], registers: bool) -> Response {
        self.put(off::VALID_BITMAP, valid[0]);
        self.put(off::VALID_BITMAP + 8, valid[1]);
        self.exchange(registers)
    }

    /// GPA of the shared buffer.
    pub fn buffer_gpa(&self) -> u64 {
        ghcb_gpa() + off::SHARED_BUFFER as u64
    }

    /// Registers the page in the GHCB MSR, VMGEXIT, and copies the answer out once.
    pub fn call(&mut self) -> Response {
        self.exchange(true)
    }

    /// [`Self::call`], copying RAX-RDX out only if `registers` (else they read 0).
    #[optimize(speed)]
    fn exchange(&mut self, registers: bool) -> Response {
        if !MSR_HOLDS_GHCB.load(Ordering::Relaxed) {
            ghcb_msr_write(ghcb_gpa());
            MSR_HOLDS_GHCB.store(true, Ordering::Relaxed);
        }
        vmgexit();
        let valid = |r: &Self| {
            let (lo, hi) = (r.read64(off::VALID_BITMAP), r.read64(off::VALID_BITMAP + 8));
            (u128::from(hi) << 64 | u128::from(lo)).to_le_bytes()
        };
        let mut r = Response {
            info1: self.read64(off::SW_EXIT_INFO_1),
            info2: self.read64(off::SW_EXIT_INFO_2),
            valid: valid(self),
            ..Response::default()
        };
        if registers {
            r.rax = self.read64(off::RAX);
            r.rbx = self.read64(off::RBX);
            r.rcx = self.read64(off::RCX);
            r.rdx = self.read64(off::RDX);
        }
        if DOUBLE_FETCH.load(Ordering::Relaxed) {
            // The `ghcb-double-fetch` fault: the bug this backend must not have.
            r.info1 = self.read64(off::SW_EXIT_INFO_1);
            r.valid = valid(self);
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

/// The fields every standard request marks valid.
const STANDARD_VALID: [usize; 3] = [off::SW_EXIT_CODE, off::SW_EXIT_INFO_1, off::SW_EXIT_INFO_2];

/// Takes the page for a standard request (exit code, infos), or says it is in use.
#[optimize(speed)]
fn take_standard(code: u64, info1: u64, info2: u64) -> Result<Request, HostError> {
    Request::standard(code, info1, info2).ok_or(HostError::Unsupported {
        request: "GHCB request while the GHCB is in use (nested #VC)",
    })
}

/// Sends a standard request: exit code and infos, what `fill` adds, the fields of `valid`
/// marked valid (with the standard three); checks SW_EXITINFO1. The answer's registers are
/// copied out if `registers`. Inlined: each call site is its own instance anyway (its own
/// `fill`), and a call returned the answer through memory (~25 guest instructions a request).
#[inline(always)]
fn standard(
    name: &'static str,
    code: u64,
    info: (u64, u64),
    valid: [u64; 2],
    registers: bool,
    fill: impl FnOnce(&mut Request),
) -> Result<Checked, HostError> {
    let resp = {
        let mut r = take_standard(code, info.0, info.1)?;
        fill(&mut r);
        let std = const { valid_words(&STANDARD_VALID) };
        r.send([std[0] | valid[0], std[1] | valid[1]], registers)
    };
    match resp.outcome(name)? {
        GhcbOutcome::Ok => Ok(Checked::Ok(resp)),
        GhcbOutcome::Exception(vector) => Ok(Checked::Exception(vector)),
        GhcbOutcome::Error(status) => Err(HostError::refused(name, status)),
    }
}

/// A returned register: marked valid, and within `width` unless the `no-width-check` fault
/// injection removed that check (`super::read_fits`).
#[optimize(speed)]
fn read_reg(
    resp: &Response,
    off: usize,
    width: Width,
    what: &'static str,
) -> Result<u64, HostError> {
    read_fits(width, resp.reg_valid(off, what)?, what)
}

#[optimize(speed)]
fn ok_or_fault(name: &'static str, c: Checked) -> Result<Response, HostError> {
    match c {
        Checked::Ok(r) => Ok(r),
        Checked::Exception(vector) => Err(HostError::refused(name, u64::from(vector))),
    }
}

/// MMIO read (GHCB MMIO_READ: info1 = GPA, info2 = size, scratch = shared buffer).
#[optimize(speed)]
pub fn mmio_read<T: MmioValue>(gpa: u64) -> Result<T, HostError> {
    let name = "GHCB MMIO read";
    let size = T::WIDTH.bytes();
    let (c, value) = {
        let mut r = take_standard(exit::MMIO_READ, gpa, size)?;
        r.scratch(&[], size as usize);
        let resp = r.send(
            const {
                valid_words(&[
                    off::SW_EXIT_CODE,
                    off::SW_EXIT_INFO_1,
                    off::SW_EXIT_INFO_2,
                    off::SW_SCRATCH,
                ])
            },
            false,
        );
        // The answer's bytes, read once; those past the access are not the answer.
        let value = r.read64(off::SHARED_BUFFER) & (u64::MAX >> (64 - 8 * size));
        (resp, value)
    };
    match c.outcome(name)? {
        GhcbOutcome::Ok => Ok(T::from_u64(value)),
        GhcbOutcome::Error(status) => Err(HostError::refused(name, status)),
        // An exception is no answer to an MMIO read.
        GhcbOutcome::Exception(_) => Err(HostError::bad_answer(name, c.info1)),
    }
}

/// The #VC error code of a nested page fault (SVM_EXIT_NPF; GHCB spec 2.x 4.1.6): MMIO.
const VC_NPF: u64 = exit::NPF;

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
#[optimize(speed)]
pub fn hv_features() -> Result<u64, HostError> {
    let name = "GHCB HV_FEATURES";
    let c = standard(name, exit::HV_FEATURES, (0, 0), [0; 2], false, |_| {})?;
    ok_or_fault(name, c).map(|r| r.info2)
}

/// MMIO write (GHCB MMIO_WRITE).
#[inline(always)]
pub fn mmio_write<T: MmioValue>(gpa: u64, v: T) -> Result<(), HostError> {
    mmio_write_sized(gpa, v.to_u64(), T::WIDTH.bytes())
}

/// [`mmio_write`] of the low `size` bytes of `value`: one copy of the request path for every
/// width (a generic one was four, 0.9 KiB each, and executed more instructions).
#[optimize(speed)]
fn mmio_write_sized(gpa: u64, value: u64, size: u64) -> Result<(), HostError> {
    let name = "GHCB MMIO write";
    // The low `size` bytes, the rest of the word zero: the bytes the host reads, in one store.
    let word = value & (u64::MAX >> (64 - 8 * size));
    let valid = const { valid_words(&[off::SW_SCRATCH]) };
    let c = standard(name, exit::MMIO_WRITE, (gpa, size), valid, false, |r| {
        r.put(off::SHARED_BUFFER, word);
        r.scratch(&[], 8);
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
#[optimize(speed)]
fn ioio_info(port: u16, w: Width, input: bool) -> u64 {
    (u64::from(port) << ioio::PORT_SHIFT)
        | ioio_size(w)
        | ioio::A64
        | if input { ioio::TYPE_IN } else { 0 }
}

/// Port read (GHCB IOIO, IN): RAX must come back valid and within the width.
#[optimize(speed)]
pub fn pio_read<T: PioValue>(port: u16) -> Result<T, HostError> {
    let name = "GHCB IOIO read";
    let code = if super::port_reads_broken() {
        exit::IOIO - 1
    } else {
        exit::IOIO
    };
    let info = ioio_info(port, T::WIDTH, true);
    let valid = const { valid_words(&[off::RAX]) };
    let c = standard(name, code, (info, 0), valid, true, |r| r.put(off::RAX, 0))?;
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
#[optimize(speed)]
pub fn pio_write<T: PioValue>(port: u16, v: T) -> Result<(), HostError> {
    let name = "GHCB IOIO write";
    let info = ioio_info(port, T::WIDTH, false);
    let valid = const { valid_words(&[off::RAX]) };
    let c = standard(name, exit::IOIO, (info, 0), valid, false, |r| {
        r.put(off::RAX, v.to_u64())
    })?;
    ok_or_fault(name, c).map(|_| ())
}

/// String port write (GHCB IOIO with STR|REP: count in info2, data in the shared buffer).
#[optimize(speed)]
pub fn pio_write_bytes(port: u16, bytes: &[u8]) -> Result<(), HostError> {
    let name = "GHCB IOIO string write";
    for chunk in bytes.chunks(ghcb::SHARED_BUFFER_LEN) {
        let info = ioio_info(port, Width::B1, false) | ioio::STR | ioio::REP;
        let valid = const { valid_words(&[off::SW_SCRATCH]) };
        let c = standard(
            name,
            exit::IOIO,
            (info, chunk.len() as u64),
            valid,
            false,
            |r| {
                r.scratch(chunk, 0);
            },
        )?;
        ok_or_fault(name, c)?;
    }
    Ok(())
}

/// CPUID (GHCB CPUID exit: RAX = leaf, RCX = subleaf; RAX-RDX must come back valid, 32-bit).
#[optimize(speed)]
pub fn cpuid(leaf: u32, subleaf: u32) -> Result<CpuidResult, HostError> {
    let name = "GHCB CPUID";
    let valid = const { valid_words(&[off::RAX, off::RCX]) };
    let c = standard(name, exit::CPUID, (0, 0), valid, true, |r| {
        r.put(off::RAX, u64::from(leaf));
        r.put(off::RCX, u64::from(subleaf));
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
#[optimize(speed)]
pub fn rdmsr(msr: u32) -> Result<u64, MsrError> {
    let name = "GHCB MSR read";
    let valid = const { valid_words(&[off::RCX]) };
    let c = standard(name, exit::MSR, (0, 0), valid, true, |r| {
        r.put(off::RCX, u64::from(msr))
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
#[optimize(speed)]
pub fn wrmsr(msr: u32, v: u64) -> Result<(), MsrError> {
    let name = "GHCB MSR write";
    let valid = const { valid_words(&[off::RCX, off::RAX, off::RDX]) };
    let c = standard(name, exit::MSR, (1, 0), valid, false, |r| {
        r.put(off::RCX, u64::from(msr));
        r.put(off::RAX, v & 0xffff_ffff);
        r.put(off::RDX, v >> 32);
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
        self.dirty_page();
        self.write16(off::PROTOCOL_VERSION, version);
        // SAFETY: the usage field is a 4-byte-aligned u32 inside the page we hold.
        unsafe { core::ptr::write_volatile(self.page.add(off::GHCB_USAGE).cast::<u32>(), usage) };
        self
    }
}
