//! PC-platform I/O the guest and the built-in VMM both use.
//!
//! Sources: the IBM PC/AT technical reference (COM1 at 0x3F8), QEMU `hw/char/serial-isa.c`
//! (`isa_serial_io[0]`), the 16550A data sheet (eight registers).

/// COM1's base port: the guest's console, the VMM's 16550 model.
pub const COM1_BASE: u16 = 0x3f8;
/// The 16550's eight registers, from [`COM1_BASE`].
pub const COM1_LEN: u16 = 8;
/// COM1's data register (THR on write, RBR on read, DLL while LCR.DLAB is set).
pub const COM1_DATA: u16 = COM1_BASE;
