//! cvmprobe guest kernel: the guest library's (`cvmprobe_guest`) own environment.
//!
//! Boot (`boot/`) -> CPU tables (`arch/`: GDT, IDT, the identity map) -> the library's
//! [`cvmprobe_guest::run`] with the kernel's operations (`env`: COM1, the exit port, the
//! GHCB page, the heap) -> platform detection and backend -> test tables -> KTAP on serial ->
//! exit port. See DESIGN.md.
#![no_std]
#![no_main]

mod arch;
mod boot;
mod console;
mod env;
mod memory;

/// The one kernel main every entry point ends in.
pub fn kmain() -> ! {
    let params = boot::params();
    arch::init();
    cvmprobe_guest::run(env::ops(params), params.cmdline())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    cvmprobe_guest::report::panic(info)
}
