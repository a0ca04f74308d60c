//! The environment the library runs in, as its [`Ops`] describe it: where output goes, how a
//! run ends, what is mapped where. Set once by [`crate::run`]; every other module asks here.

use crate::platform::HostError;
use core::ffi::{CStr, c_char};
pub use protocol::abi::Ops;

struct OpsCell(Ops);

// SAFETY: the table is written once, before anything reads it, on the one CPU the library
// runs on; `ctx` is the environment's, handed back to its callbacks only.
unsafe impl Sync for OpsCell {}
// SAFETY: as above.
unsafe impl Send for OpsCell {}

static OPS: spin::Once<OpsCell> = spin::Once::new();

/// Why an operations table cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpsError {
    /// `size` is not this library's `size_of::<Ops>()`.
    Size(u32),
    /// `version` is not [`protocol::abi::ABI_VERSION`].
    Version(u32),
    /// A required callback (`write` or `exit`) is missing.
    Missing(&'static str),
}

/// Checks and keeps `ops` for the rest of the run (the first table wins).
pub fn set(ops: Ops) -> Result<(), OpsError> {
    if ops.size as usize != core::mem::size_of::<Ops>() {
        return Err(OpsError::Size(ops.size));
    }
    if ops.version != protocol::abi::ABI_VERSION {
        return Err(OpsError::Version(ops.version));
    }
    if ops.write.is_none() {
        return Err(OpsError::Missing("write"));
    }
    if ops.exit.is_none() {
        return Err(OpsError::Missing("exit"));
    }
    let table = OPS.call_once(|| OpsCell(ops));
    PRINTS_RESULTS.store(
        table.0.result.is_some(),
        core::sync::atomic::Ordering::Relaxed,
    );
    Ok(())
}

/// [`prints_results`], fixed by [`set`]: read for every output line, so one load.
static PRINTS_RESULTS: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn ops() -> Option<&'static Ops> {
    OPS.get().map(|c| &c.0)
}

/// Writes one output line, with its newline. Nothing before [`set`].
pub fn write(line: &[u8], emergency: bool) {
    if let Some(o) = ops()
        && let Some(f) = o.write
    {
        let flags = if emergency {
            protocol::abi::WRITE_EMERGENCY
        } else {
            0
        };
        // SAFETY: the environment's callback with its own context; the line is valid for
        // `len` bytes for the call.
        unsafe { f(o.ctx, line.as_ptr().cast(), line.len() as u64, flags) }
    }
}

/// Ends the run with `code` (`protocol::exit::EXIT_*`). Before [`set`], halts for good.
pub fn exit(code: u32) -> ! {
    if let Some(o) = ops()
        && let Some(f) = o.exit
    {
        // SAFETY: the environment's callback with its own context.
        unsafe { f(o.ctx, code) }
    }
    crate::platform::legacy::stop_forever()
}

/// The platform is fixed: the environment finishes its setup. `Err` is why the run stops.
pub fn ready() -> Result<(), &'static str> {
    let Some(o) = ops() else { return Ok(()) };
    let Some(f) = o.ready else { return Ok(()) };
    // SAFETY: the environment's callback with its own context.
    let why = unsafe { f(o.ctx) };
    if why.is_null() {
        Ok(())
    } else {
        // SAFETY: a NUL-ended string the environment keeps for the run (a static reason).
        Err(unsafe { c_text(why) })
    }
}

/// Text the environment handed over (invalid UTF-8 is cut at the first bad byte).
///
/// # Safety
/// `p` is a NUL-ended string that lives for the rest of the run.
pub unsafe fn c_text(p: *const c_char) -> &'static str {
    // SAFETY: per the function contract.
    let b = unsafe { CStr::from_ptr(p) }.to_bytes();
    match core::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
    }
}

/// The virtual address for plain accesses to `[gpa, gpa + len)` the host may turn into MMIO,
/// if the environment mapped it.
pub fn map_mmio(gpa: u64, len: u64) -> Option<u64> {
    let o = ops()?;
    let f = o.map_mmio?;
    // SAFETY: the environment's callback with its own context.
    match unsafe { f(o.ctx, gpa, len) } {
        0 => None,
        va => Some(va),
    }
}

/// SEV-ES: asks the environment to map private memory with C-bit `cbit` and the shared page
/// (at `ghcb_gpa`) without it. An environment without the callback already did.
pub fn sev_es_memory(cbit: u8, ghcb_gpa: u64) -> Result<(), HostError> {
    let Some(o) = ops() else { return Ok(()) };
    let Some(f) = o.sev_es_memory else {
        return Ok(());
    };
    let mut value = 0u64;
    // SAFETY: the environment's callback with its own context; `value` outlives the call.
    let why = unsafe { f(o.ctx, u32::from(cbit), ghcb_gpa, &mut value) };
    if why.is_null() {
        Ok(())
    } else {
        // SAFETY: a NUL-ended static reason, per the callback's contract.
        Err(HostError::bad_answer(unsafe { c_text(why) }, value))
    }
}

/// The page the environment keeps shared with the host (the SEV-ES GHCB), 0 if none.
pub fn shared_page() -> u64 {
    ops().map_or(0, |o| o.shared_page)
}

/// Whether the environment prints the results itself ([`Ops::result`] is set): the library
/// then prints only diagnostics, one level flat.
pub fn prints_results() -> bool {
    PRINTS_RESULTS.load(core::sync::atomic::Ordering::Relaxed)
}

/// Tells the environment how many cases run.
pub fn plan(cases: u32) {
    if let Some(o) = ops()
        && let Some(f) = o.plan
    {
        // SAFETY: the environment's callback with its own context.
        unsafe { f(o.ctx, cases) }
    }
}

/// Tells the environment one case's result (`protocol::abi::RESULT_*`).
pub fn result(id: u32, result: u32, reason: &str) {
    if let Some(o) = ops()
        && let Some(f) = o.result
    {
        // SAFETY: the environment's callback with its own context; `reason` is valid for its
        // length for the call.
        unsafe {
            f(
                o.ctx,
                id,
                result,
                reason.as_ptr().cast(),
                reason.len() as u64,
            )
        }
    }
}
