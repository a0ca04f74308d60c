//! Pulling the vCPU out of KVM_RUN: a real-time signal whose handler sets `immediate_exit`,
//! and the watchdog thread that sends it when the run's time is up.
//!
//! vmm-sys-util provides the handler registration and `pthread_kill` ([`Killable`]); the
//! handler itself and the per-thread pointer it writes through are ours, because what a kick
//! must do (set `kvm_run.immediate_exit` of the vCPU on this thread) is VMM-specific. Setting
//! `immediate_exit` rather than relying on the signal alone closes the race where the signal
//! lands while the thread is in user space between two KVM_RUNs: the next KVM_RUN then
//! returns EINTR at once (Linux Documentation/virt/kvm/api.rst, `immediate_exit`).

use crate::VmmError;
use libc::{c_int, c_void, pthread_t, siginfo_t};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;
use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler, unblock_signal};

/// Offset of the kick signal above SIGRTMIN (Firecracker uses the same, `VCPU_RTSIG_OFFSET`).
const KICK_SIGNAL_OFFSET: c_int = 0;
/// How often the watchdog repeats a kick until the vCPU thread confirms it stopped.
const KICK_RETRY: Duration = Duration::from_millis(5);

/// The kick signal number.
pub(crate) fn kick_signal() -> c_int {
    SIGRTMIN() + KICK_SIGNAL_OFFSET
}

thread_local! {
    /// `&kvm_run.immediate_exit` of the vCPU this thread runs, or null. Const-initialised and
    /// without a destructor, so reading it from a signal handler is async-signal-safe.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn on_kick(_num: c_int, _info: *mut siginfo_t, _ctx: *mut c_void) {
    let p = IMMEDIATE_EXIT.with(Cell::get);
    if !p.is_null() {
        // SAFETY: `p` was set by `KickTarget::arm` on this thread and points into a kvm_run
        // mapping that the `KickTarget` guard keeps alive; it is cleared before the mapping
        // goes away. A single volatile byte store, as KVM reads the byte itself.
        unsafe { p.write_volatile(1) };
    }
}

/// Installs the kick handler (process-wide, idempotent) and makes sure this thread can
/// receive the signal.
pub fn install() -> Result<(), VmmError> {
    let sig = kick_signal();
    register_signal_handler(sig, on_kick)
        .map_err(|e| VmmError::Signal(format!("registering SIGRTMIN+{KICK_SIGNAL_OFFSET}: {e}")))?;
    unblock_signal(sig)
        .map_err(|e| VmmError::Signal(format!("unblocking SIGRTMIN+{KICK_SIGNAL_OFFSET}: {e:?}")))
}

/// While alive, kicks delivered to this thread set `*immediate_exit`.
pub struct KickTarget<'a> {
    _owner: std::marker::PhantomData<&'a ()>,
}

impl<'a> KickTarget<'a> {
    /// Points this thread's kick handler at `immediate_exit` for as long as `owner` (the
    /// mapping that holds it) stays borrowed.
    ///
    /// # Safety
    /// `immediate_exit` must stay valid for writes while `owner` is borrowed, and nothing may
    /// hold a Rust reference to that byte meanwhile (the handler writes it asynchronously).
    pub unsafe fn arm<T>(_owner: &'a T, immediate_exit: *mut u8) -> Self {
        IMMEDIATE_EXIT.with(|c| c.set(immediate_exit));
        Self {
            _owner: std::marker::PhantomData,
        }
    }
}

impl Drop for KickTarget<'_> {
    fn drop(&mut self) {
        IMMEDIATE_EXIT.with(|c| c.set(std::ptr::null_mut()));
    }
}

/// The thread running the vCPU, as something vmm-sys-util can signal.
pub(crate) struct VcpuThread(pthread_t);

impl VcpuThread {
    /// The calling thread.
    pub(crate) fn current() -> Self {
        // SAFETY: pthread_self has no preconditions and cannot fail.
        Self(unsafe { libc::pthread_self() })
    }
}

// SAFETY: the handle is the vCPU thread's own `pthread_self()`, taken in `Watchdog::start` or
// `memslot::MemslotThread::start`; the vCPU thread joins the watchdog (in `Watchdog::drop`)
// and the memslot thread (when the run ends) before it returns, so the handle is valid
// whenever either signals it.
unsafe impl Killable for VcpuThread {
    fn pthread_handle(&self) -> pthread_t {
        self.0
    }
}

/// Ends a run that outlives its time: sets `stop` and kicks the vCPU thread until the run
/// loop notices. Dropping it (on the vCPU thread) stops and joins the thread.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts watching the calling thread: after `timeout`, `stop` is set and the thread is
    /// kicked.
    pub fn start(timeout: Duration, stop: Arc<AtomicBool>) -> Result<Self, VmmError> {
        let target = VcpuThread::current();
        let (done, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vmm-watchdog".into())
            .spawn(move || {
                if rx.recv_timeout(timeout) != Err(RecvTimeoutError::Timeout) {
                    return; // the run ended in time
                }
                stop.store(true, Ordering::SeqCst);
                loop {
                    // A failed kill (the thread is gone) cannot happen while the vCPU thread
                    // waits in `drop` for us; nothing useful to do about it anyway.
                    let _ = target.kill(kick_signal());
                    if rx.recv_timeout(KICK_RETRY) != Err(RecvTimeoutError::Timeout) {
                        return;
                    }
                }
            })
            .map_err(VmmError::Thread)?;
        Ok(Self {
            done: Some(done),
            thread: Some(thread),
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
