//! The cvmprobe guest as a library: the test tables, the I/O API, the platform backends
//! (legacy, TDX, SEV-ES), their #VE/#VC handlers and the KTAP writer, for any place that runs
//! ring-0 x86_64 code with its own boot, GDT/IDT, page tables and console.
//!
//! Two environments use it: cvmprobe's kernel (`kernel/`: PVH/bootloader/UEFI entry, GDT and
//! IDT, the identity map, COM1, a heap) and a KVM selftest (`selftest/cvmprobe_test.c`,
//! through the C ABI of `selftest/lib/`: kvm_util's page tables and IDT, a shared page to its
//! host). What the library needs from them is one table, [`env::Ops`]
//! (`protocol::abi::Ops`, `struct cvmprobe_ops` in `selftest/cvmprobe.h`); the environment's
//! interrupt stubs call [`trap`]. Detection and the backends are one code path for both.
//!
//! [`run`] -> platform detection and backend (`platform/`) -> test tables (`tests/`) -> KTAP
//! through the environment -> its exit. See DESIGN.md.
#![no_std]

extern crate alloc;

pub mod arch;
pub mod bench;
pub mod env;
pub mod io;
pub mod kept;
pub mod ktap;
pub mod memory;
pub mod platform;
pub mod report;
pub mod tests;
pub mod timer;

pub use arch::trap::{TrapFrame, trap};
pub use env::Ops;

use protocol::exit::{EXIT_BAIL, EXIT_FAIL, EXIT_PASS};

/// Runs the tables in the environment `ops` describes, with command line `cmdline`
/// (`cvmprobe.filter=... cvmprobe.platform=...`), and ends the run through `ops.exit`.
/// An unusable table ends it at once (through its `exit` if it has one).
pub fn run(ops: Ops, cmdline: &'static str) -> ! {
    if env::set(ops).is_err() {
        if let Some(exit) = ops.exit {
            // SAFETY: the environment's own callback and context.
            unsafe { exit(ops.ctx, EXIT_BAIL) }
        }
        platform::legacy::stop_forever()
    }
    platform::legacy::set_phys_offset(ops.phys_offset);
    memory::set_ram(ops.ram_end, ops.ram_end_high);
    arch::paging::set_levels(ops.paging_levels);
    let (platform, host_check) = platform::init(cmdline);
    let ready = env::ready();
    if !env::prints_results() {
        ktap::version(0);
    }
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
        env::exit(EXIT_BAIL);
    }
    if let Err(why) = ready {
        bail(why);
    }
    let keys = protocol::cmdline::Keys::parse(cmdline);
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
    env::exit(if failed { EXIT_FAIL } else { EXIT_PASS })
}

/// `Bail out! <why>` and exit.
fn bail(why: &str) -> ! {
    ktap::Line::new(0)
        .str(protocol::ktap::BAIL_OUT)
        .str(" ")
        .str(why)
        .emit();
    env::exit(EXIT_BAIL)
}
