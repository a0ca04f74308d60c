//! The exit port: the guest's verdict, with QEMU isa-debug-exit's meaning.
//!
//! QEMU (hw/misc/debugexit.c) exits on any write to the device's ports with the written
//! value; the guest writes a 4-byte value to [`EXIT_PORT`] (protocol::exit). The VMM ends
//! the run with that value as [`crate::ExitReason::GuestExit`].

use super::{AccessCtx, Device, Effect, fill_unassigned, le_value};

pub use protocol::exit::EXIT_PORT;
/// Ports the device claims (QEMU `-device isa-debug-exit,iobase=0xf4,iosize=4`).
pub const EXIT_PORT_LEN: u16 = 4;

/// The isa-debug-exit equivalent.
#[derive(Debug, Default)]
pub struct ExitPort;

impl Device for ExitPort {
    fn name(&self) -> &'static str {
        "exit-port"
    }

    /// Nothing to read: all ones, like an unassigned port.
    fn read(&mut self, _offset: u64, data: &mut [u8], _ctx: &AccessCtx) {
        fill_unassigned(data);
    }

    /// Any write is the verdict (zero-extended, so a 1-byte write of 2 is 2).
    fn write(&mut self, _offset: u64, data: &[u8], _ctx: &AccessCtx) -> Effect {
        Effect::GuestExit(le_value(data) as u32)
    }
}
