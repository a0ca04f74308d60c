//! The serial console: a 16550 at COM1 driven by `uart_16550`, whose register accesses go
//! through the platform backend (`io::pio_*`), so the same console works on legacy, TDX and
//! SEV-ES without a raw `in`/`out`.

use cvmprobe_guest::io;
use uart_16550::backend::Backend;
use uart_16550::spec::registers::LSR;
use uart_16550::{Config, Uart16550};

/// COM1 base port.
const COM1: u16 = protocol::pc::COM1_BASE;
/// Transmit FIFO depth of a 16550A: how many bytes may follow one "THR empty" status.
const FIFO_DEPTH: usize = 16;

/// 16550 register access through the I/O API.
struct BackendPorts {
    base: u16,
}

impl Backend for BackendPorts {
    unsafe fn read(&mut self, register_offset: u8) -> u8 {
        io::pio_read::<u8>(self.base + u16::from(register_offset))
    }

    unsafe fn write(&mut self, register_offset: u8, value: u8) {
        io::pio_write::<u8>(self.base + u16::from(register_offset), value)
    }
}

static CONSOLE: spin::Mutex<Option<Uart16550<BackendPorts>>> = spin::Mutex::new(None);

/// Probes and initialises COM1 (FIFO on, so one status read covers up to 16 bytes).
pub fn init() -> bool {
    // SAFETY: COM1's eight registers are reachable through the backend for the whole run,
    // and only this console uses them.
    let mut uart = unsafe { Uart16550::new_with_backend(BackendPorts { base: COM1 }) };
    if uart.init(Config::default()).is_err() {
        return false;
    }
    *CONSOLE.lock() = Some(uart);
    true
}

/// Writes raw bytes (no newline translation).
///
/// Like `Uart16550::send_bytes`, one "THR empty" status read admits a FIFO's worth of bytes;
/// unlike it, the bytes go to the data register as one string port write (`rep outsb` on
/// legacy, the GHCB's string IOIO on SEV-ES), which costs one exit per chunk instead of one
/// per byte — guest instructions and exits are what a run spends its time on.
#[optimize(speed)]
pub fn write(bytes: &[u8]) {
    let mut guard = CONSOLE.lock();
    let Some(u) = guard.as_mut() else {
        return;
    };
    for chunk in bytes.chunks(FIFO_DEPTH) {
        while !u.lsr().contains(LSR::THR_EMPTY) {
            core::hint::spin_loop();
        }
        io::pio_write_bytes(COM1, chunk);
    }
}

/// Writes from a context that may have interrupted a writer (panic, exception report): the
/// lock is taken over if it is held, since the interrupted writer will never finish.
pub fn write_emergency(bytes: &[u8]) {
    if CONSOLE.is_locked() {
        // SAFETY: single CPU; the holder was interrupted by the fault that brought us here
        // and will not run again (the report ends the run).
        unsafe { CONSOLE.force_unlock() };
    }
    write(bytes);
}
