//! MMIO emulation in the #VE (TDX) and #VC (SEV-ES) handlers.
//!
//! The clean API never takes these exceptions: it asks the host directly. They happen only
//! when the host turns RAM the guest uses into emulated MMIO (a memslot deleted under a
//! running vCPU). Then the handler decodes the faulting instruction (`protocol::decode`: the
//! MOV forms compilers emit for plain loads and stores, MOVZX, MOVSX, MOVSXD), re-issues the
//! access through the platform's backend at the GPA the access went to, writes a load's
//! result into the destination register with x86's extension rules, and resumes after the
//! instruction. Anything else (an instruction outside those forms, a fault the platform does
//! not describe as MMIO, a GPA that does not match the access) is an [`EmulationError`],
//! never a silent skip: the running case fails naming it ([`refuse`]). A host can raise
//! these exceptions with nothing behind them (a spurious #VC is a real SEV-ES attack), so a
//! refused exception is not fatal: nothing was sent to the host yet, and the instruction
//! runs again as if the exception had not happened; the same instruction refused
//! [`REFUSE_LIMIT`] times in a row ends the run with a `Bail out!`. When the host refuses or
//! garbles the emulated access itself, the access was already made: the instruction is
//! completed with all ones for a load (a floating bus) and not repeated, and the case fails.

use crate::arch::trap::TrapFrame;
use crate::io::MmioValue;
use crate::platform::HostError;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use protocol::access::Width;
use protocol::decode::{self, Decoded, Gpr, MmioOp};

/// Why a #VE / #VC could not be emulated.
#[derive(Clone, Copy, Debug)]
pub struct EmulationError {
    /// What was wrong.
    pub what: &'static str,
    /// The value concerned (an exit reason, a GPA, a length).
    pub value: u64,
    /// The instruction bytes at RIP, when they were read.
    pub bytes: [u8; decode::MAX_INSN_LEN],
}

impl EmulationError {
    /// An error about `value`.
    pub const fn new(what: &'static str, value: u64) -> Self {
        Self {
            what,
            value,
            bytes: [0; decode::MAX_INSN_LEN],
        }
    }
}

impl From<HostError> for EmulationError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::Refused {
                request, status, ..
            } => Self::new(request, status),
            HostError::BadAnswer { request, value, .. } => Self::new(request, value),
            HostError::Unsupported { request } => Self::new(request, 0),
        }
    }
}

/// Refusals of the same instruction in a row (with no request to the host in between) after
/// which the guest gives up: a host that keeps raising an exception the guest cannot handle
/// would otherwise hold it forever.
pub const REFUSE_LIMIT: u32 = 4;

/// A #VE/#VC the handler did not emulate, kept for the running case's report.
#[derive(Clone, Copy, Debug)]
pub struct Refusal {
    /// `#VE` or `#VC`.
    pub exception: &'static str,
    /// Why.
    pub error: EmulationError,
    /// Where.
    pub rip: u64,
    /// Whether the access was completed with all ones / dropped (the host failed it) rather
    /// than left to run again.
    pub completed: bool,
    /// The requests the refusal is about (`platform::request_seq` numbers): from the last
    /// one before the exception (the answer a spurious event followed) to the last one the
    /// handler made (TDG.VP.VEINFO.GET); for a host-failed access, that access's request.
    pub requests: (u64, u64),
}

/// Refusals kept per case; later ones are counted.
pub const REFUSALS_KEPT: usize = 4;

/// The refusals since the last [`take_refusals`].
pub type Refusals = crate::kept::Kept<Refusal, REFUSALS_KEPT>;

static REFUSED: spin::Mutex<Refusals> = spin::Mutex::new(Refusals::NONE);
/// RIP of the last refused instruction and how many times in a row it was refused.
static LAST_REFUSED_RIP: AtomicU64 = AtomicU64::new(0);
static REFUSED_STREAK: AtomicU32 = AtomicU32::new(0);
/// [`crate::platform::host_calls`] at the last refusal.
static LAST_REFUSED_CALLS: AtomicU64 = AtomicU64::new(u64::MAX);

/// The #VE/#VC refusals since the last call (the case runner fails the case with them).
/// Also starts a new refusal streak: refusals count "in a row" within one case.
pub fn take_refusals() -> Refusals {
    LAST_REFUSED_RIP.store(0, Ordering::Relaxed);
    core::mem::replace(&mut *REFUSED.lock(), Refusals::NONE)
}

fn record(r: Refusal) {
    REFUSED.lock().push(r, Some(r.requests));
}

/// Handles a #VE/#VC the handler returned `e` for: records it for the running case and
/// returns to the instruction (see the module docs); bails out after [`REFUSE_LIMIT`]
/// refusals of one instruction in a row. `entry_request` is `platform::request_seq` when
/// the exception arrived.
pub fn refuse(exception: &'static str, f: &TrapFrame, e: &EmulationError, entry_request: u64) {
    let requests = (entry_request, crate::platform::request_seq());
    // "In a row": the same instruction, with no request to the host since (an exception
    // raised again later, after the guest made progress, starts a new streak).
    let calls = crate::platform::host_calls();
    let same_calls = LAST_REFUSED_CALLS.swap(calls, Ordering::Relaxed) == calls;
    let streak = if LAST_REFUSED_RIP.swap(f.rip, Ordering::Relaxed) == f.rip && same_calls {
        REFUSED_STREAK.fetch_add(1, Ordering::Relaxed) + 1
    } else {
        REFUSED_STREAK.store(1, Ordering::Relaxed);
        1
    };
    if streak >= REFUSE_LIMIT {
        bail(exception, f, e, requests);
    }
    record(Refusal {
        exception,
        error: *e,
        rip: f.rip,
        completed: false,
        requests,
    });
}

/// Accesses emulated so far (the `memslot` suite compares it with its own count).
static EMULATED: AtomicU64 = AtomicU64::new(0);

/// How many #VE/#VC MMIO accesses the handlers emulated so far.
pub fn emulated() -> u64 {
    EMULATED.load(Ordering::Relaxed)
}

/// A general-purpose register of the interrupted code.
pub fn gpr(f: &TrapFrame, g: Gpr) -> u64 {
    match g {
        Gpr::Rax => f.rax,
        Gpr::Rcx => f.rcx,
        Gpr::Rdx => f.rdx,
        Gpr::Rbx => f.rbx,
        Gpr::Rsp => f.rsp,
        Gpr::Rbp => f.rbp,
        Gpr::Rsi => f.rsi,
        Gpr::Rdi => f.rdi,
        Gpr::R8 => f.r8,
        Gpr::R9 => f.r9,
        Gpr::R10 => f.r10,
        Gpr::R11 => f.r11,
        Gpr::R12 => f.r12,
        Gpr::R13 => f.r13,
        Gpr::R14 => f.r14,
        Gpr::R15 => f.r15,
    }
}

fn set_gpr(f: &mut TrapFrame, g: Gpr, v: u64) {
    let r = match g {
        Gpr::Rax => &mut f.rax,
        Gpr::Rcx => &mut f.rcx,
        Gpr::Rdx => &mut f.rdx,
        Gpr::Rbx => &mut f.rbx,
        Gpr::Rsp => &mut f.rsp,
        Gpr::Rbp => &mut f.rbp,
        Gpr::Rsi => &mut f.rsi,
        Gpr::Rdi => &mut f.rdi,
        Gpr::R8 => &mut f.r8,
        Gpr::R9 => &mut f.r9,
        Gpr::R10 => &mut f.r10,
        Gpr::R11 => &mut f.r11,
        Gpr::R12 => &mut f.r12,
        Gpr::R13 => &mut f.r13,
        Gpr::R14 => &mut f.r14,
        Gpr::R15 => &mut f.r15,
    };
    *r = v;
}

/// The instruction bytes at `rip` (kernel text: mapped, and at least 15 bytes before its end).
fn fetch(rip: u64) -> [u8; decode::MAX_INSN_LEN] {
    let mut b = [0u8; decode::MAX_INSN_LEN];
    for (i, x) in b.iter_mut().enumerate() {
        // SAFETY: a fault's RIP points into kernel text, which is mapped readable; the text
        // is followed by read-only data in the same image, so 15 bytes stay inside it.
        *x = unsafe { core::ptr::read_volatile((rip + i as u64) as *const u8) };
    }
    b
}

/// One decoded faulting access: the instruction and its linear address.
pub struct Access {
    /// The instruction.
    pub insn: Decoded,
    /// The linear address it accessed.
    pub linear: u64,
}

/// Decodes the instruction at the frame's RIP and computes the address it accessed.
pub fn decode_at(f: &TrapFrame) -> Result<Access, EmulationError> {
    let bytes = fetch(f.rip);
    let with_bytes = |what, value| EmulationError { what, value, bytes };
    let insn = decode::decode(&bytes).map_err(|_| with_bytes("instruction not emulated", f.rip))?;
    if insn.mem.segment.is_some() {
        return Err(with_bytes("FS/GS-relative MMIO access not emulated", f.rip));
    }
    let linear = insn
        .mem
        .effective_address(|g| gpr(f, g), f.rip + u64::from(insn.len));
    Ok(Access { insn, linear })
}

/// Reads `width` bytes of MMIO at `gpa` through the backend.
fn read(gpa: u64, width: Width) -> Result<u64, HostError> {
    fn via<T: MmioValue>(gpa: u64) -> Result<u64, HostError> {
        crate::platform::mmio_read::<T>(gpa).map(|v| v.to_u64())
    }
    match width {
        Width::B1 => via::<u8>(gpa),
        Width::B2 => via::<u16>(gpa),
        Width::B4 => via::<u32>(gpa),
        Width::B8 => via::<u64>(gpa),
    }
}

/// Writes the low `width` bytes of `v` as MMIO at `gpa` through the backend.
fn write(gpa: u64, width: Width, v: u64) -> Result<(), HostError> {
    use crate::platform::mmio_write;
    match width {
        Width::B1 => mmio_write::<u8>(gpa, v as u8),
        Width::B2 => mmio_write::<u16>(gpa, v as u16),
        Width::B4 => mmio_write::<u32>(gpa, v as u32),
        Width::B8 => mmio_write::<u64>(gpa, v),
    }
}

/// Emulates `access` at (plain) `gpa`: the backend does the access, a load's value goes into
/// its register, RIP moves past the instruction. If the host refuses or garbles the access,
/// it was made all the same: a load gets all ones, the refusal is recorded for the running
/// case, and the instruction is not repeated. Always `Ok`: the exception was handled.
pub fn complete(f: &mut TrapFrame, access: &Access, gpa: u64) -> Result<(), EmulationError> {
    let exception = match crate::platform::kind() {
        protocol::platform::PlatformKind::Tdx => "#VE",
        _ => "#VC",
    };
    let done = match access.insn.op {
        MmioOp::Load(l) => {
            let r = read(gpa, l.size);
            let v = *r.as_ref().unwrap_or(&u64::MAX);
            let old = gpr(f, l.dest.gpr);
            set_gpr(f, l.dest.gpr, l.merge(old, v & l.size.mask()));
            r.map(|_| ())
        }
        MmioOp::Store(s) => {
            let v = s.value(|g| gpr(f, g));
            write(gpa, s.size, v)
        }
    };
    // The access was made (the host saw it) whether or not its answer was good.
    EMULATED.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = done {
        let seq = e.seq().unwrap_or_else(crate::platform::request_seq);
        record(Refusal {
            exception,
            error: e.into(),
            rip: f.rip,
            completed: true,
            requests: (seq, seq),
        });
    }
    LAST_REFUSED_RIP.store(0, Ordering::Relaxed);
    f.rip += u64::from(access.insn.len);
    Ok(())
}

/// Prints `Bail out! <exception>: <what> ... [validator rejects requests a-b]` and ends the
/// run (a #VE/#VC that is not the emulated-MMIO case, or one that could not be emulated).
pub fn bail(exception: &str, f: &TrapFrame, e: &EmulationError, requests: (u64, u64)) -> ! {
    let mut l = crate::ktap::Line::new(0);
    l.str(protocol::ktap::BAIL_OUT)
        .str(" ")
        .str(exception)
        .str(": ")
        .str(e.what)
        .str(" (")
        .hex(e.value)
        .str(") at rip=")
        .hex(f.rip);
    if e.bytes.iter().any(|&b| b != 0) {
        l.str(" bytes");
        for b in e.bytes {
            l.str(" ").hex(u64::from(b));
        }
    }
    l.reject_note(
        protocol::ktap::RejectedBy::Validator,
        requests.0,
        requests.1,
    );
    l.emit_emergency();
    crate::env::exit(protocol::exit::EXIT_BAIL)
}
