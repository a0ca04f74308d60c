//! Ending a run abnormally: `Bail out!` lines for panics and unexpected exceptions.
//!
//! KTAP v1 ends a run early with a top-level `Bail out! <reason>`; the host then reports
//! every case that did not report as failed, so nothing already printed is lost.

use crate::arch::trap::{self, TrapFrame};
use crate::ktap::Line;
use core::fmt::Write;
use protocol::exit::EXIT_BAIL;
use protocol::ktap::BAIL_OUT;

/// Prints `Bail out! unexpected exception ...` and ends the run.
pub fn unexpected_exception(f: &TrapFrame) -> ! {
    let mut l = Line::new(0);
    l.str(BAIL_OUT)
        .str(" unexpected exception ")
        .str(trap::vector_name(f.vector))
        .str(" (vector ")
        .dec(f.vector)
        .str(") error=")
        .hex(f.error_code)
        .str(" rip=")
        .hex(f.rip)
        .str(" rsp=")
        .hex(f.rsp);
    if f.vector == 14 {
        // SAFETY: reading CR2 has no side effects.
        let cr2 = x86_64::registers::control::Cr2::read_raw();
        l.str(" cr2=").hex(cr2);
    }
    l.emit_emergency();
    crate::env::exit(EXIT_BAIL)
}

struct LineWriter<'a>(&'a mut Line);

impl Write for LineWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.str(s);
        Ok(())
    }
}

/// Prints `Bail out! panic: ...` and ends the run: the body of the environment's panic
/// handler (a library has none of its own).
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut l = Line::new(0);
    l.str(BAIL_OUT).str(" panic: ");
    let _ = write!(LineWriter(&mut l), "{}", info.message());
    if let Some(loc) = info.location() {
        l.str(" at ")
            .str(loc.file())
            .str(":")
            .dec(u64::from(loc.line()));
    }
    l.emit_emergency();
    crate::env::exit(EXIT_BAIL)
}
