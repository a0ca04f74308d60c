//! The platform backend, chosen once at boot.
//!
//! [`init`] runs detection and stores the platform once (an atomic byte, so dispatch is one
//! load); every request the guest makes to its host (MMIO, port IO, CPUID, MSR, HLT) goes
//! through the functions here, and nothing else in the kernel branches on the platform.
//! Before `init` the platform reads as legacy, which is what a guest can do before it knows
//! better (and all it needs to report an early failure on a legacy VM).

pub mod detect;
pub mod emulate;
pub mod legacy;
pub mod sev_es;
pub mod tdx;

use crate::arch::insn::{CpuidResult, Fault};
use crate::io::{MmioValue, PioValue};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use protocol::platform::PlatformKind;

/// A host answer the guest refuses (never on legacy, where the CPU itself answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostError {
    /// The host answered `request` with error status `status`.
    Refused {
        /// What was asked.
        request: &'static str,
        /// The status the host returned.
        status: u64,
        /// The number of the request that got the answer ([`request_seq`]).
        seq: u64,
    },
    /// The host's answer to `request` is out of range (`value`).
    BadAnswer {
        /// What was asked.
        request: &'static str,
        /// The value returned.
        value: u64,
        /// The number of the request that got the answer ([`request_seq`]).
        seq: u64,
    },
    /// The request cannot be made on this platform (e.g. a RAM GPA given to the MMIO API):
    /// nothing was asked.
    Unsupported {
        /// What was asked.
        request: &'static str,
    },
}

impl HostError {
    /// The host refused the request whose answer is being checked ([`answering`]) with
    /// `status`.
    pub fn refused(request: &'static str, status: u64) -> Self {
        Self::Refused {
            request,
            status,
            seq: answering(),
        }
    }

    /// The host's answer to the request being checked ([`answering`]) is out of range.
    pub fn bad_answer(request: &'static str, value: u64) -> Self {
        Self::BadAnswer {
            request,
            value,
            seq: answering(),
        }
    }

    /// The number of the request whose answer was refused, if a request was made.
    pub fn seq(&self) -> Option<u64> {
        match *self {
            Self::Refused { seq, .. } | Self::BadAnswer { seq, .. } => Some(seq),
            Self::Unsupported { .. } => None,
        }
    }
}

impl From<protocol::validate::Invalid> for HostError {
    fn from(e: protocol::validate::Invalid) -> Self {
        HostError::bad_answer(e.what, e.value)
    }
}

/// Why an MSR access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrError {
    /// The CPU (or the host on its behalf) raised an exception, e.g. #GP for a missing MSR.
    Fault(Fault),
    /// The host refused or gave a bad answer.
    Host(HostError),
}

const KIND_LEGACY: u8 = 0;
const KIND_TDX: u8 = 1;
const KIND_SEV_ES: u8 = 2;

/// The platform, fixed by [`init`].
static KIND: AtomicU8 = AtomicU8::new(KIND_LEGACY);

#[inline(always)]
fn kind_raw() -> u8 {
    KIND.load(Ordering::Relaxed)
}

/// The platform fixed at boot (legacy before [`init`]).
pub fn kind() -> PlatformKind {
    match kind_raw() {
        KIND_TDX => PlatformKind::Tdx,
        KIND_SEV_ES => PlatformKind::SevEs,
        _ => PlatformKind::Legacy,
    }
}

/// Whether the platform is legacy (the I/O API's inlined fast path).
#[inline(always)]
pub fn is_legacy() -> bool {
    kind_raw() == KIND_LEGACY
}

/// Detects the platform and fixes the backend for the rest of the run. On TDX and SEV-ES the
/// host's first answers are checked here; if they are bad the platform is still fixed (the
/// console needs a backend to report it) and the error comes back for [`crate::run`] to bail
/// out on. On SEV-ES the environment then maps memory with the host's C-bit
/// ([`crate::env::sev_es_memory`]).
pub fn init(cmdline: &str) -> (PlatformKind, Result<(), HostError>) {
    if let Some(bits) = protocol::cmdline::get(cmdline, protocol::cmdline::KEY_SIM_PHYS_BITS)
        .and_then(protocol::cmdline::parse_sim_phys_bits)
    {
        SIM_PHYS_BITS.store(bits, Ordering::Relaxed);
    }
    match detect::detect() {
        detect::Detected::Legacy => {
            KIND.store(KIND_LEGACY, Ordering::Relaxed);
            (PlatformKind::Legacy, Ok(()))
        }
        // Nothing safe to use: report it through the legacy backend (the best left).
        detect::Detected::Inconsistent { what, value } => {
            KIND.store(KIND_LEGACY, Ordering::Relaxed);
            (
                PlatformKind::Legacy,
                Err(HostError::bad_answer(what, value)),
            )
        }
        detect::Detected::Tdx => {
            KIND.store(KIND_TDX, Ordering::Relaxed);
            (PlatformKind::Tdx, tdx::init().map(|_| ()))
        }
        detect::Detected::SevEs { .. } => {
            let info = match sev_es::init() {
                Ok(i) => i,
                // Without an agreed protocol the GHCB cannot be used, so there is no console
                // either: ask the host to end the guest (GHCB spec 2.3.1, reason 1).
                Err(_) => sev_es::terminate(
                    protocol::ghcb::TERM_SET_GENERAL,
                    protocol::ghcb::TERM_PROTOCOL_UNSUPPORTED,
                ),
            };
            let memory = crate::env::sev_es_memory(info.cbit, sev_es::ghcb_gpa());
            KIND.store(KIND_SEV_ES, Ordering::Relaxed);
            (PlatformKind::SevEs, memory)
        }
    }
}

/// The physical-address width of a simulated platform, as the host declared it
/// (`cmdline::KEY_SIM_PHYS_BITS`); 0 when the host declared none (every real host).
static SIM_PHYS_BITS: AtomicU8 = AtomicU8::new(0);

/// The width the host declared for a simulated platform, if it declared one. Only the checks
/// that real hardware makes stricter than a sim on a narrow vCPU can meet (TDX GPAW 48 or 52)
/// look at it, and the guest says so when it relies on it ([`describe_simulation`]).
pub fn declared_sim_phys_bits() -> Option<u8> {
    match SIM_PHYS_BITS.load(Ordering::Relaxed) {
        0 => None,
        b => Some(b),
    }
}

/// A KTAP diagnostic (without the `# `) when the platform's parameters are ones only a
/// simulated platform on a narrow vCPU reports: `tdx-sim: GPAW 46, non-architectural: the host
/// declared a simulated TDX on a vCPU with 46 physical address bits`. Returns whether it wrote
/// one.
pub fn describe_simulation(line: &mut crate::ktap::Line) -> bool {
    let Some(bits) = declared_sim_phys_bits() else {
        return false;
    };
    match kind_raw() {
        KIND_TDX => match tdx::gpaw() {
            Some(g) if !g.is_architectural() => {
                line.str("tdx-sim: GPAW ")
                    .dec(u64::from(g.bits()))
                    .str(", non-architectural (the TDX module reports 48 or 52): the host declared a simulated TDX on a vCPU with ")
                    .dec(u64::from(bits))
                    .str(" physical address bits");
                true
            }
            _ => false,
        },
        KIND_SEV_ES => {
            let c = sev_es::cbit();
            if c == protocol::ghcb::CBIT_MILAN || c == protocol::ghcb::CBIT_GENOA {
                return false;
            }
            line.str("sev-es-sim: C-bit ")
                .dec(u64::from(c))
                .str(" (AMD parts use 47 or 51): the host declared a simulated SEV-ES on a vCPU with ")
                .dec(u64::from(bits))
                .str(" physical address bits");
            true
        }
        _ => false,
    }
}

/// Set by the `broken-backend` fault injection: port reads use a wrong request number.
static PORT_READS_BROKEN: AtomicBool = AtomicBool::new(false);

/// Requests sent to the host (TDG.VP.VMCALLs, VMGEXITs): the #VE/#VC handlers compare it to
/// tell a refused exception raised again at once (no progress) from one raised again later.
static HOST_CALLS: AtomicU64 = AtomicU64::new(0);

/// Counts one request to the host (the backends call it at each TDG.VP.VMCALL / VMGEXIT).
#[inline(always)]
#[optimize(speed)]
fn count_host_call() {
    HOST_CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Requests sent to the host so far.
pub fn host_calls() -> u64 {
    HOST_CALLS.load(Ordering::Relaxed)
}

/// Traps to the host since boot: every TDCALL and VMGEXIT, counted in their one wrapper each
/// (TDG.VP.INFO and TDG.VP.VEINFO.GET included, which [`host_calls`] leaves out). A
/// (simulated) host counts the same traps, so the number names one request on both sides: a
/// rejected answer is reported with it (`protocol::ktap::parse_reject_note`).
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// The request whose answer the running code is checking: the last one it made itself. An
/// interrupt or exception handler that makes requests of its own (an EOI, TDG.VP.VEINFO.GET)
/// puts it back when it returns ([`AnsweringGuard`]), so an answer checked after an
/// interrupt arrived (TDVMCALL<HLT> returns straight into the timer interrupt) is still
/// named by its own request.
static ANSWERING: AtomicU64 = AtomicU64::new(0);

/// Counts one trap to the host, right before the TDCALL or VMGEXIT (their wrappers call it).
#[inline(always)]
#[optimize(speed)]
fn count_request() {
    let n = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
    ANSWERING.store(n, Ordering::Relaxed);
}

/// The number of the last request made to the host (0 before the first, and always on
/// legacy).
pub fn request_seq() -> u64 {
    REQUESTS.load(Ordering::Relaxed)
}

/// The request whose answer is being checked (see [`ANSWERING`]).
pub fn answering() -> u64 {
    ANSWERING.load(Ordering::Relaxed)
}

/// Puts [`answering`] back as it was when the guard was made (the trap entry holds one).
pub struct AnsweringGuard(u64);

impl AnsweringGuard {
    /// Remembers the request being checked now.
    pub fn new() -> Self {
        Self(answering())
    }
}

impl Default for AnsweringGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for AnsweringGuard {
    fn drop(&mut self) {
        ANSWERING.store(self.0, Ordering::Relaxed);
    }
}

/// Makes the TDX and SEV-ES backends send port reads with a wrong request number from now on
/// (`cvmprobe.inject=broken-backend`, a test of the host's refusal; writes stay intact so the
/// console and the exit port still work).
pub fn break_port_reads() {
    PORT_READS_BROKEN.store(true, Ordering::Relaxed);
}

/// Whether [`break_port_reads`] was called.
fn port_reads_broken() -> bool {
    PORT_READS_BROKEN.load(Ordering::Relaxed)
}

/// Set by the `no-width-check` fault injection: read answers are not width-checked.
static WIDTH_CHECK_DISABLED: AtomicBool = AtomicBool::new(false);

/// Makes the TDX and SEV-ES backends skip the width check of read answers from now on and
/// truncate a too-wide value silently (`cvmprobe.inject=no-width-check`: a validation removed
/// on purpose, to prove the hostile-host tests catch its absence).
pub fn disable_width_check() {
    WIDTH_CHECK_DISABLED.store(true, Ordering::Relaxed);
}

/// A host's answer `v` to a `width`-byte read (or a 32-bit CPUID/MSR half): checked by
/// `protocol::validate::width_fits`, or truncated after [`disable_width_check`].
#[inline(always)]
#[optimize(speed)]
fn read_fits(width: protocol::access::Width, v: u64, what: &'static str) -> Result<u64, HostError> {
    if WIDTH_CHECK_DISABLED.load(Ordering::Relaxed) {
        return Ok(v & width.mask());
    }
    Ok(protocol::validate::width_fits(width, v, what)?)
}

/// The virtual address of the memslot scenario's page at `gpa` (`protocol::memslot`), mapped
/// the way the platform maps MMIO: shared on TDX (the shared bit set in its leaf entry, once),
/// without the C-bit on SEV-ES (the environment's mapping). `None` when the environment did
/// not map it ([`crate::env::map_mmio`]).
pub fn memslot_va(gpa: u64) -> Option<u64> {
    static SHARED: AtomicBool = AtomicBool::new(false);
    let va = crate::env::map_mmio(gpa, protocol::memslot::SIZE)?;
    if kind_raw() == KIND_TDX && !SHARED.swap(true, Ordering::Relaxed) {
        // SAFETY: the environment mapped the page for this use; nothing else lives in its
        // leaf's page (on the kernel's identity map a 2 MiB page, in the VMM's RAM-free top
        // GiB, holding nothing but the memslot page).
        unsafe { crate::arch::paging::set_leaf_bits(va, tdx::shared_bit()) }?;
    }
    Some(va)
}

/// One trap to the host that no device serves (the benchmark's floor): TDX TDG.VP.INFO, SEV-ES
/// GHCB HV_FEATURES; nothing on legacy. Returns whether the host answered well.
#[optimize(speed)]
pub fn trap_floor() -> bool {
    match kind_raw() {
        KIND_TDX => tdx::vp_info().is_ok(),
        KIND_SEV_ES => sev_es::hv_features().is_ok(),
        _ => false,
    }
}

/// Appends the platform's parameters to a KTAP diagnostic line (`gpaw=48 shared_bit=47`).
pub fn describe(line: &mut crate::ktap::Line) {
    match kind_raw() {
        KIND_TDX => {
            line.str("gpaw=")
                .dec(u64::from(tdx::gpaw().map_or(0, protocol::tdx::Gpaw::bits)))
                .str(" shared_bit=")
                .dec(u64::from(tdx::shared_bit().trailing_zeros()));
        }
        KIND_SEV_ES => {
            line.str("cbit=")
                .dec(u64::from(sev_es::cbit()))
                .str(" ghcb_version=")
                .dec(u64::from(sev_es::version()))
                .str(" ghcb_gpa=")
                .hex(sev_es::ghcb_gpa());
        }
        _ => {
            line.str("(no confidential-computing extensions detected)");
        }
    }
}

/// MMIO read of a `T` at `gpa`.
#[inline(always)]
#[optimize(speed)]
pub fn mmio_read<T: MmioValue>(gpa: u64) -> Result<T, HostError> {
    match kind_raw() {
        KIND_LEGACY => Ok(legacy::mmio_read::<T>(gpa)),
        KIND_TDX => tdx::mmio_read::<T>(gpa),
        _ => sev_es::mmio_read::<T>(gpa),
    }
}

/// MMIO write of `v` at `gpa`.
#[inline(always)]
#[optimize(speed)]
pub fn mmio_write<T: MmioValue>(gpa: u64, v: T) -> Result<(), HostError> {
    match kind_raw() {
        KIND_LEGACY => {
            legacy::mmio_write(gpa, v);
            Ok(())
        }
        KIND_TDX => tdx::mmio_write(gpa, v),
        _ => sev_es::mmio_write(gpa, v),
    }
}

/// Port read of a `T` (1, 2 or 4 bytes).
#[inline(always)]
#[optimize(speed)]
pub fn pio_read<T: PioValue>(port: u16) -> Result<T, HostError> {
    match kind_raw() {
        KIND_LEGACY => Ok(legacy::pio_read::<T>(port)),
        KIND_TDX => tdx::pio_read::<T>(port),
        _ => sev_es::pio_read::<T>(port),
    }
}

/// Port write of `v` (1, 2 or 4 bytes).
#[inline(always)]
#[optimize(speed)]
pub fn pio_write<T: PioValue>(port: u16, v: T) -> Result<(), HostError> {
    match kind_raw() {
        KIND_LEGACY => {
            legacy::pio_write(port, v);
            Ok(())
        }
        KIND_TDX => tdx::pio_write(port, v),
        _ => sev_es::pio_write(port, v),
    }
}

/// String port write of `bytes` (1-byte units).
#[optimize(speed)]
pub fn pio_write_bytes(port: u16, bytes: &[u8]) -> Result<(), HostError> {
    match kind_raw() {
        KIND_LEGACY => {
            legacy::pio_write_bytes(port, bytes);
            Ok(())
        }
        KIND_TDX => tdx::pio_write_bytes(port, bytes),
        _ => sev_es::pio_write_bytes(port, bytes),
    }
}

/// CPUID.
#[optimize(speed)]
pub fn cpuid(leaf: u32, subleaf: u32) -> Result<CpuidResult, HostError> {
    match kind_raw() {
        KIND_LEGACY => legacy::cpuid(leaf, subleaf),
        KIND_TDX => tdx::cpuid(leaf, subleaf),
        _ => sev_es::cpuid(leaf, subleaf),
    }
}

/// RDMSR.
#[optimize(speed)]
pub fn rdmsr(msr: u32) -> Result<u64, MsrError> {
    match kind_raw() {
        KIND_LEGACY => legacy::rdmsr(msr).map_err(MsrError::Fault),
        KIND_TDX => tdx::rdmsr(msr),
        _ => sev_es::rdmsr(msr),
    }
}

/// WRMSR.
///
/// # Safety
/// Writing an MSR can change any CPU behaviour; the caller knows what this MSR does.
pub unsafe fn wrmsr(msr: u32, v: u64) -> Result<(), MsrError> {
    match kind_raw() {
        // SAFETY: per the function contract.
        KIND_LEGACY => unsafe { legacy::wrmsr(msr, v) }.map_err(MsrError::Fault),
        KIND_TDX => tdx::wrmsr(msr, v),
        _ => sev_es::wrmsr(msr, v),
    }
}

/// Halts until the next interrupt (interrupts are enabled only while halted).
pub fn halt() -> Result<(), HostError> {
    match kind_raw() {
        KIND_LEGACY => {
            legacy::halt();
            Ok(())
        }
        KIND_TDX => tdx::halt(),
        _ => {
            sev_es::halt();
            Ok(())
        }
    }
}

/// Acknowledges device interrupt `vector` (called from the trap handler).
pub fn end_of_interrupt(vector: u8) {
    crate::timer::end_of_interrupt(vector);
}

/// Ends a run through the isa-debug-exit port (QEMU's, the built-in VMM's): writes `code`
/// there through the backend, then stops the vCPU for good if the port did not end the VM.
/// The kernel's `exit` operation.
pub fn exit_via_port(code: u32) -> ! {
    let _ = pio_write::<u32>(protocol::exit::EXIT_PORT, code);
    match kind_raw() {
        KIND_TDX => tdx::stop_forever(),
        KIND_SEV_ES => sev_es::terminate(
            protocol::ghcb::TERM_SET_GENERAL,
            protocol::ghcb::TERM_GENERAL_REQUEST,
        ),
        _ => legacy::stop_forever(),
    }
}
