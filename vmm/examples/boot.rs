//! Boots a kernel ELF once and prints its serial output and the run report.
//!
//! `cargo run -p vmm --release --example boot -- <kernel.elf> [command line] [--quiet]`

use std::io::Write;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let quiet = args.iter().any(|a| a == "--quiet");
    args.retain(|a| a != "--quiet");
    let Some(kernel) = args.first() else {
        eprintln!("usage: boot <kernel.elf> [command line] [--quiet]");
        std::process::exit(2);
    };
    let mut cfg = vmm::VmConfig::new(kernel);
    cfg.cmdline = args.get(1).cloned().unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let report = vmm::run(&cfg, &mut |b| {
        if !quiet {
            let _ = out.write_all(b);
        }
    });
    match report {
        Ok(r) => {
            eprintln!(
                "exit: {}\nsetup {:?}, start->verdict {:?}\nexits: {:?}\nbrand: {}",
                r.exit, r.setup, r.wall, r.stats, r.brand
            );
            std::process::exit(if r.exit.passed() { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
