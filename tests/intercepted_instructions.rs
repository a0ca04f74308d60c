//! After detection a TDX or SEV-ES guest must never execute a raw intercepted instruction:
//! on real hardware it would raise #VE/#VC. Raw CPUID (and MSR accesses KVM handles in the
//! kernel) never reach the built-in VMM's simulated platforms, so they cannot catch it at run
//! time; this test disassembles the kernel ELF and fails if CPUID, RDMSR, WRMSR, IN, OUT (and
//! their string forms) or HLT appear outside the code allowed to hold them:
//!
//! - the legacy backend (`platform::legacy`), which only runs on legacy;
//! - the detection probes (`platform::detect`), which run before the platform is known;
//! - the one raw-CPUID wrapper (`cvmprobe_cpuid`), which the others call: every CPUID in the
//!   kernel is its instruction, where the simulated platforms put a hardware breakpoint;
//! - the SEV-ES backend's GHCB-MSR accessors (SEV-ES does not intercept the GHCB MSR) and its
//!   HLT (an automatic exit under SEV-ES);
//! - the TDX backend's x2APIC EOI (a WRMSR the CPU virtualises in a TD);
//! - the 32-bit PVH stub (EFER setup before anything else runs; real TDX and SEV-ES guests do
//!   not boot through PVH).
//!
//! It also checks that TDCALL, VMGEXIT and CPUID appear where the built-in VMM puts its
//! breakpoints, and that the guest library linked into the KVM selftest (`cvmprobe_test`)
//! keeps the same rule in its Rust code (on SEV-ES and TDX VMs it runs as the guest too).

mod common;

use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

const KERNEL: &str = env!("CVMPROBE_KERNEL_ELF");

fn demangled(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// Whether the function `sym` (demangled) may hold raw intercepted instructions.
fn allowed(sym: &str) -> bool {
    sym.starts_with("cvmprobe_guest::platform::legacy::")
        || sym.starts_with("cvmprobe_guest::platform::detect::")
        || sym == "cvmprobe_cpuid"
        || sym == protocol::x86::CPUID_SYMBOL
        || sym == "cvmprobe_guest::platform::tdx::x2apic_eoi"
        || sym == "cvmprobe_guest::platform::sev_es::ghcb_msr_read"
        || sym == "cvmprobe_guest::platform::sev_es::ghcb_msr_write"
        || sym == "cvmprobe_guest::platform::sev_es::halt"
        || sym == "cvmprobe_guest::platform::sev_es::stop_forever"
        || matches!(sym, "pvh_start32" | "pvh_start64_low" | "pvh_start64")
}

fn intercepted(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Cpuid | Rdmsr | Wrmsr | In | Out | Insb | Insw | Insd | Outsb | Outsw | Outsd | Hlt
    )
}

struct Text {
    addr: u64,
    bytes: Vec<u8>,
    /// (address, demangled name), sorted.
    symbols: Vec<(u64, String)>,
}

fn load() -> Text {
    load_elf(std::path::Path::new(KERNEL))
}

fn load_elf(path: &std::path::Path) -> Text {
    let data = std::fs::read(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (run `cargo build`)", path.display()));
    let elf = object::File::parse(&*data).expect("an ELF");
    let text = elf.section_by_name(".text").expect(".text section");
    let (lo, hi) = (text.address(), text.address() + text.size());
    let mut symbols: Vec<(u64, String)> = elf
        .symbols()
        .filter(|s| {
            matches!(
                s.kind(),
                SymbolKind::Text | SymbolKind::Unknown | SymbolKind::Label
            )
        })
        .filter(|s| (lo..hi).contains(&s.address()))
        .filter_map(|s| Some((s.address(), demangled(s.name().ok()?))))
        .filter(|(_, n)| !n.is_empty() && !n.starts_with(".L") && !n.starts_with("$"))
        .collect();
    symbols.sort();
    Text {
        addr: lo,
        bytes: text.data().expect("text bytes").to_vec(),
        symbols,
    }
}

impl Text {
    fn symbol_at(&self, ip: u64) -> (&str, u64) {
        let i = self.symbols.partition_point(|(a, _)| *a <= ip);
        match i.checked_sub(1).map(|i| &self.symbols[i]) {
            Some((a, n)) => (n, ip - a),
            None => ("(before the first symbol)", ip - self.addr),
        }
    }

    fn address_of(&self, name: &str) -> Option<u64> {
        self.symbols
            .iter()
            .find(|(_, n)| n == name)
            .map(|(a, _)| *a)
    }
}

#[test]
fn intercepted_instructions_only_in_allowed_functions() {
    check_intercepted(&load(), |_| true);
}

#[test]
fn the_selftests_guest_library_follows_the_same_rule() {
    if !common::kernel_tree_or_skip("the_selftests_guest_library_follows_the_same_rule") {
        return;
    }
    // The selftest's executable holds kvm_util's C as well (host code that runs CPUID
    // natively, the ucall's IN): only the Rust library's functions are held to the rule.
    let t = load_elf(&common::built_selftest().binary);
    check_intercepted(&t, |sym| {
        sym.contains("::") || (sym.starts_with("cvmprobe_") && !sym.starts_with("cvmprobe_ops"))
    });
}

/// Fails on a raw intercepted instruction in a function `checked` selects that may not hold
/// one.
fn check_intercepted(t: &Text, checked: impl Fn(&str) -> bool) {
    let mut decoder = Decoder::with_ip(64, &t.bytes, t.addr, DecoderOptions::NONE);
    let mut violations = Vec::new();
    let mut seen_in_allowed = 0;
    for insn in decoder.iter() {
        if !intercepted(insn.mnemonic()) {
            continue;
        }
        let (sym, off) = t.symbol_at(insn.ip());
        if !checked(sym) {
            continue;
        }
        if allowed(sym) {
            seen_in_allowed += 1;
        } else {
            violations.push(format!(
                "{sym}+{off:#x}: {:?} at {:#x}",
                insn.mnemonic(),
                insn.ip()
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "raw intercepted instructions outside the legacy backend, the detection probe and the SEV-ES GHCB-MSR/HLT wrappers:\n  {}",
        violations.join("\n  ")
    );
    // The check looked at something: the legacy backend does hold IN/OUT/CPUID/RDMSR/HLT.
    assert!(
        seen_in_allowed >= 8,
        "only {seen_in_allowed} intercepted instructions found at all"
    );
}

/// Every address in .text where `pat` occurs, however it was written (a mnemonic, `.byte`).
fn byte_sites(t: &Text, pat: [u8; 4]) -> Vec<u64> {
    t.bytes
        .windows(pat.len())
        .enumerate()
        .filter(|(_, w)| *w == pat)
        .map(|(i, _)| t.addr + i as u64)
        .collect()
}

/// Every decoded instruction with mnemonic `m`.
fn decoded_sites(t: &Text, m: Mnemonic) -> Vec<u64> {
    Decoder::with_ip(64, &t.bytes, t.addr, DecoderOptions::NONE)
        .iter()
        .filter(|i| i.mnemonic() == m)
        .map(|i| i.ip())
        .collect()
}

fn named(t: &Text, sites: &[u64]) -> Vec<String> {
    sites
        .iter()
        .map(|&a| {
            let (sym, off) = t.symbol_at(a);
            format!("{sym}+{off:#x} ({a:#x})")
        })
        .collect()
}

#[test]
fn tdcall_vmgexit_and_cpuid_sites_are_counted_and_where_the_symbols_say() {
    let t = load();
    for (sym, bytes) in [
        (
            protocol::tdx::TDCALL_SYMBOL,
            &protocol::tdx::TDCALL_BYTES[..],
        ),
        (
            protocol::ghcb::VMGEXIT_SYMBOL,
            &protocol::ghcb::VMGEXIT_BYTES[..],
        ),
        (protocol::x86::CPUID_SYMBOL, &protocol::x86::CPUID_BYTES[..]),
    ] {
        let at = t
            .address_of(sym)
            .unwrap_or_else(|| panic!("no `{sym}` symbol in the kernel"));
        let off = (at - t.addr) as usize;
        assert_eq!(
            &t.bytes[off..off + bytes.len()],
            bytes,
            "{sym} does not point at its instruction"
        );
    }
    // The simulated hosts put a hardware breakpoint on one TDCALL and one VMGEXIT: any other
    // site would reach plain KVM. Count them both ways, by bytes (whatever spelled them) and
    // by disassembly, and name each.
    let tdcalls = byte_sites(&t, protocol::tdx::TDCALL_BYTES);
    assert_eq!(
        decoded_sites(&t, Mnemonic::Tdcall),
        tdcalls,
        "byte search and disassembly disagree on TDCALL: {:?}",
        named(&t, &tdcalls)
    );
    let wrapper = t.address_of(protocol::tdx::TDCALL_SYMBOL).unwrap();
    // Two TDCALLs: the wrapper's, and the `emulation-failure` fault injection's in the test
    // runner, spelled `.byte 0x66, 0x0f, 0x01, 0xcc`, which executes TDCALL outside TDX on
    // purpose (KVM cannot emulate it).
    assert_eq!(tdcalls.len(), 2, "TDCALL sites: {:?}", named(&t, &tdcalls));
    assert!(tdcalls.contains(&wrapper), "{:?}", named(&t, &tdcalls));
    for &site in tdcalls.iter().filter(|&&a| a != wrapper) {
        let (sym, _) = t.symbol_at(site);
        assert!(
            sym.starts_with("cvmprobe_guest::tests::"),
            "a TDCALL outside the wrapper and the fault injection: {:?}",
            named(&t, &[site])
        );
    }
    let vmgexits = byte_sites(&t, protocol::ghcb::VMGEXIT_BYTES);
    assert_eq!(
        decoded_sites(&t, Mnemonic::Vmgexit),
        vmgexits,
        "byte search and disassembly disagree on VMGEXIT: {:?}",
        named(&t, &vmgexits)
    );
    assert_eq!(
        vmgexits,
        [t.address_of(protocol::ghcb::VMGEXIT_SYMBOL).unwrap()],
        "VMGEXIT sites: {:?}",
        named(&t, &vmgexits)
    );
}

/// The simulated platforms watch one CPUID with one hardware breakpoint: a second raw CPUID
/// anywhere would run natively under them, answered by plain KVM instead of the TDX module or
/// a #VC, and the sims would be more lenient than hardware.
#[test]
fn every_cpuid_is_the_one_the_sims_watch() {
    let t = load();
    let site = t
        .address_of(protocol::x86::CPUID_SYMBOL)
        .expect("the CPUID symbol");
    let cpuids = decoded_sites(&t, Mnemonic::Cpuid);
    assert_eq!(cpuids, [site], "CPUID instructions at {cpuids:#x?}");
}
