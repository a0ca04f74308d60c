//! The I/O API every test uses.
//!
//! `mmio_read::<u32>(gpa)`, `mmio_write(gpa, 0x1234u16)`: the access size comes from the type,
//! never from an argument, and the set of types is closed (u8, u16, u32, u64 for MMIO; u8,
//! u16, u32 for port IO). Every call goes through the platform backend chosen at boot.
//!
//! Host errors: on TDX and SEV-ES the host answers each request and may refuse it or answer
//! nonsense. The plain functions then record the error for the running case (which fails
//! with the error as its diagnostic) and return all ones, like a read of a floating bus; the
//! `try_` variants return the error instead.

use crate::platform::{self, HostError, MsrError};
use protocol::access::Width;

pub use crate::arch::insn::CpuidResult;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}

/// A value one MMIO access moves: u8, u16, u32 or u64.
pub trait MmioValue: sealed::Sealed + Copy + Eq + core::fmt::Debug {
    /// The access width.
    const WIDTH: Width;
    /// Zero-extends to u64.
    fn to_u64(self) -> u64;
    /// Truncates from u64.
    fn from_u64(v: u64) -> Self;
}

/// A value one port-IO access moves: u8, u16 or u32.
pub trait PioValue: MmioValue {}

macro_rules! value {
    ($t:ty, $w:expr) => {
        impl MmioValue for $t {
            const WIDTH: Width = $w;
            #[inline(always)]
            fn to_u64(self) -> u64 {
                self as u64
            }
            #[inline(always)]
            fn from_u64(v: u64) -> Self {
                v as $t
            }
        }
    };
}
value!(u8, Width::B1);
value!(u16, Width::B2);
value!(u32, Width::B4);
value!(u64, Width::B8);
impl PioValue for u8 {}
impl PioValue for u16 {}
impl PioValue for u32 {}

/// Host errors kept in full per case; later ones are counted with the range of their
/// requests (`HostErrors::more`).
pub const HOST_ERRORS_KEPT: usize = 8;

/// The host errors recorded since the last [`take_host_errors`].
pub type HostErrors = crate::kept::Kept<HostError, HOST_ERRORS_KEPT>;

static HOST_ERRORS: spin::Mutex<HostErrors> = spin::Mutex::new(HostErrors::NONE);

/// Records a host error for the running case (which fails with it).
#[cold]
pub fn record_host_error(e: HostError) {
    HOST_ERRORS.lock().push(e, e.seq().map(|seq| (seq, seq)));
}

/// The host errors recorded since the last call (the case runner fails the case with them).
pub fn take_host_errors() -> HostErrors {
    core::mem::replace(&mut *HOST_ERRORS.lock(), HostErrors::NONE)
}

/// Reads a `T` from MMIO at guest-physical address `gpa`.
///
/// On legacy this is the check that `gpa` is not RAM and one load, inlined; the other
/// platforms go through their backend out of line.
#[inline(always)]
pub fn mmio_read<T: MmioValue>(gpa: u64) -> T {
    if platform::is_legacy()
        && !crate::memory::overlaps_ram(gpa, gpa.wrapping_add(T::WIDTH.bytes()))
    {
        return platform::legacy::mmio_read::<T>(gpa);
    }
    mmio_read_slow(gpa)
}

#[inline(never)]
#[optimize(speed)]
fn mmio_read_slow<T: MmioValue>(gpa: u64) -> T {
    match try_mmio_read(gpa) {
        Ok(v) => v,
        Err(e) => {
            record_host_error(e);
            T::from_u64(u64::MAX)
        }
    }
}

/// Writes `v` to MMIO at guest-physical address `gpa`.
#[inline(always)]
pub fn mmio_write<T: MmioValue>(gpa: u64, v: T) {
    if platform::is_legacy()
        && !crate::memory::overlaps_ram(gpa, gpa.wrapping_add(T::WIDTH.bytes()))
    {
        return platform::legacy::mmio_write(gpa, v);
    }
    mmio_write_slow(gpa, v)
}

#[inline(never)]
#[optimize(speed)]
fn mmio_write_slow<T: MmioValue>(gpa: u64, v: T) {
    if let Err(e) = try_mmio_write(gpa, v) {
        record_host_error(e);
    }
}

/// [`mmio_read`] returning the host error instead of recording it.
#[optimize(speed)]
pub fn try_mmio_read<T: MmioValue>(gpa: u64) -> Result<T, HostError> {
    check_not_ram(gpa, T::WIDTH)?;
    platform::mmio_read::<T>(gpa)
}

/// [`mmio_write`] returning the host error instead of recording it.
#[optimize(speed)]
pub fn try_mmio_write<T: MmioValue>(gpa: u64, v: T) -> Result<(), HostError> {
    check_not_ram(gpa, T::WIDTH)?;
    platform::mmio_write(gpa, v)
}

/// Reads a `T` from I/O port `port`.
///
/// On legacy this is a call to the one-instruction `in` wrapper; the other platforms go
/// through their backend out of line.
#[inline(always)]
pub fn pio_read<T: PioValue>(port: u16) -> T {
    if platform::is_legacy() {
        return platform::legacy::pio_read::<T>(port);
    }
    pio_read_slow(port)
}

#[inline(never)]
#[optimize(speed)]
fn pio_read_slow<T: PioValue>(port: u16) -> T {
    match platform::pio_read::<T>(port) {
        Ok(v) => v,
        Err(e) => {
            record_host_error(e);
            T::from_u64(u64::MAX)
        }
    }
}

/// Writes `v` to I/O port `port`.
#[inline(always)]
pub fn pio_write<T: PioValue>(port: u16, v: T) {
    if platform::is_legacy() {
        return platform::legacy::pio_write(port, v);
    }
    pio_write_slow(port, v)
}

#[inline(never)]
#[optimize(speed)]
fn pio_write_slow<T: PioValue>(port: u16, v: T) {
    if let Err(e) = platform::pio_write(port, v) {
        record_host_error(e);
    }
}

/// Writes `bytes` to port `port` one byte at a time as a single string operation (the same
/// as `pio_write::<u8>` for each byte, in one request to the host where the platform allows).
#[optimize(speed)]
pub fn pio_write_bytes(port: u16, bytes: &[u8]) {
    if let Err(e) = platform::pio_write_bytes(port, bytes) {
        record_host_error(e);
    }
}

/// CPUID `leaf`/`subleaf`.
#[optimize(speed)]
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    platform::cpuid(leaf, subleaf).unwrap_or_else(|e| {
        record_host_error(e);
        CpuidResult::default()
    })
}

/// RDMSR `msr`.
#[optimize(speed)]
pub fn rdmsr(msr: u32) -> Result<u64, MsrError> {
    platform::rdmsr(msr)
}

/// WRMSR `msr` = `v`.
///
/// # Safety
/// Writing an MSR can change any CPU behaviour (paging, segment bases, ...): the caller
/// knows what `msr` does and that `v` keeps the kernel running.
pub unsafe fn wrmsr(msr: u32, v: u64) -> Result<(), MsrError> {
    // SAFETY: per the function contract.
    unsafe { platform::wrmsr(msr, v) }
}

/// Halts until an interrupt arrives (interrupts are enabled only while halted).
pub fn halt() {
    if let Err(e) = platform::halt() {
        record_host_error(e);
    }
}

/// Refuses MMIO to the kernel's own RAM: a plain store there would corrupt the kernel, so the
/// safe API only reaches device memory. (Memslot tests that turn RAM into MMIO do their
/// accesses with explicit volatile pointers, not through this API.)
#[inline(always)]
fn check_not_ram(gpa: u64, w: Width) -> Result<(), HostError> {
    let end = gpa.wrapping_add(w.bytes());
    if crate::memory::overlaps_ram(gpa, end) {
        Err(HostError::Unsupported {
            request: "MMIO to a GPA that is kernel RAM",
        })
    } else {
        Ok(())
    }
}
