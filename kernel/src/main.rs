//! cvmprobe guest kernel.
//!
//! Boot (`boot/`) -> CPU tables (`arch/`) -> platform detection and backend (`platform/`) ->
//! console -> test tables (`tests/`) -> KTAP on serial -> exit port. See DESIGN.md.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod bench;
mod boot;
mod console;
mod io;
mod ktap;
mod memory;
mod platform;
mod report;
mod tests;
mod timer;

use protocol::exit::{EXIT_BAIL, EXIT_FAIL, EXIT_PASS};

/// Legacy 8259 PIC data ports (OCW1 = interrupt mask).
const PIC1_DATA: u16 = 0x21;
const PIC2_DATA: u16 = 0xa1;

/// The one kernel main every entry point ends in.
pub fn kmain() -> ! {
    let params = boot::params();
    arch::init();
    let (platform, host_check) = platform::init(params);
    if !console::init() {
        platform::exit(EXIT_BAIL);
    }
    ktap::version(0);
    ktap::diag(0)
        .str(protocol::ktap::GUEST_DIAG.trim_start_matches("# "))
        .str(env!("CARGO_PKG_VERSION"))
        .emit();
    let mut l = ktap::diag(0);
    l.str(protocol::ktap::PLATFORM_DIAG.trim_start_matches("# "))
        .str(platform.name())
        .str(" ");
    platform::describe(&mut l);
    l.emit();
    let mut l = ktap::diag(0);
    if platform::describe_simulation(&mut l) {
        l.emit();
    }
    if let Err(e) = host_check {
        let mut l = ktap::Line::new(0);
        l.str(protocol::ktap::BAIL_OUT)
            .str(" the host's answers at platform setup are invalid: ");
        tests::describe_host_error(&mut l, &e);
        l.emit();
        platform::exit(EXIT_BAIL);
    }
    if let Err(why) = memory::init(params) {
        bail(why);
    }
    // Nothing here wants the legacy PIC's interrupts (it would deliver them on exception
    // vectors until remapped): mask both controllers.
    io::pio_write::<u8>(PIC1_DATA, 0xff);
    io::pio_write::<u8>(PIC2_DATA, 0xff);

    let keys = protocol::cmdline::Keys::parse(params.cmdline());
    let cfg = match tests::RunConfig::from_cmdline(&keys) {
        Ok(c) => c,
        Err(why) => bail(&why),
    };
    let env = tests::Env::discover(platform, &keys);
    ktap::diag(0)
        .str("hypervisor: ")
        .bytes(&env.hypervisor)
        .emit();
    let failed = tests::run(&cfg, &env);
    platform::exit(if failed { EXIT_FAIL } else { EXIT_PASS })
}

/// `Bail out! <why>` and exit.
fn bail(why: &str) -> ! {
    ktap::Line::new(0)
        .str(protocol::ktap::BAIL_OUT)
        .str(" ")
        .str(why)
        .emit();
    platform::exit(EXIT_BAIL)
}
