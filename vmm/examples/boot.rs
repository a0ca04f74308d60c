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
            eprintln!(
                "test device: seed {:#018x}, {} accesses logged ({} dropped), TSC {} kHz",
                r.seed,
                r.testdev_log.len(),
                r.testdev_log_dropped,
                r.tsc_khz.map_or("?".to_owned(), |k| k.to_string())
            );
            let failed: Vec<_> = r.case_checks.iter().filter(|c| c.result.is_err()).collect();
            eprintln!(
                "host checks: {} cases, {} mismatched",
                r.case_checks.len(),
                failed.len()
            );
            for c in failed {
                eprintln!(
                    "  {}.{}: {}",
                    c.suite,
                    c.case,
                    c.result.as_ref().unwrap_err()
                );
            }
            for p in &r.host_problems {
                eprintln!("  problem: {p}");
            }
            for b in &r.bench {
                eprintln!(
                    "bench {}: {:?} host wall, {} exits",
                    b.id.name(),
                    b.wall,
                    b.exits
                );
            }
            let ok = r.exit.passed() && r.host_verdict_ok();
            std::process::exit(if ok { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
