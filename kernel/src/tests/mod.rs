//! Test tables and the runner that prints them as KTAP.
//!
//! Each suite is a static table of [`Case`]s whose names match the protocol catalog
//! (`protocol::catalog`) one for one, in order; a compile-time check enforces it. The runner
//! applies the command-line filter, skips cases not meant for the platform, runs the rest and
//! prints one KTAP subtest block per suite.

mod cpuid;
mod halt;
mod io;
mod mmio;
mod msr;

use crate::ktap::{self, Line};
use alloc::format;
use alloc::string::String;
use protocol::catalog::{self, Filter, SuiteSpec};
use protocol::cmdline::{self, Fault, Inject, Mode};
use protocol::platform::PlatformKind;

/// One case: its catalog name and the function that runs it.
pub struct Case {
    /// Same as the catalog's `CaseSpec::name` at the same index.
    pub name: &'static str,
    /// Runs the case; failures and skips are recorded in the context.
    pub run: fn(&mut Ctx<'_>),
}

/// A suite: its catalog entry and its cases.
pub struct Suite {
    /// The catalog entry (name, docs, per-case platforms).
    pub spec: &'static SuiteSpec,
    /// The cases, in catalog order.
    pub cases: &'static [Case],
}

/// Every suite, in run order (the catalog's order).
pub static SUITES: [&Suite; 5] = [
    &io::SUITE,
    &mmio::SUITE,
    &cpuid::SUITE,
    &msr::SUITE,
    &halt::SUITE,
];

const fn tables_match() -> bool {
    if SUITES.len() != catalog::SUITES.len() {
        return false;
    }
    let mut i = 0;
    while i < SUITES.len() {
        let (k, c) = (SUITES[i], catalog::SUITES[i]);
        if !catalog::str_eq(k.spec.name, c.name) || k.cases.len() != c.cases.len() {
            return false;
        }
        let mut j = 0;
        while j < k.cases.len() {
            if !catalog::str_eq(k.cases[j].name, c.cases[j].name) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

const _: () = assert!(
    tables_match(),
    "kernel test tables and protocol::catalog disagree (names, order or counts)"
);

/// What the command line asked for.
pub struct RunConfig {
    filter: Filter<'static>,
    inject: Option<Inject<'static>>,
    mode: Mode,
}

impl RunConfig {
    /// Parses the `cvmprobe.*` keys; a malformed value is an error (the run bails out).
    pub fn from_cmdline(c: &'static str) -> Result<Self, String> {
        for k in cmdline::unknown_keys(c) {
            ktap::diag(0)
                .str("warning: unknown command-line key ")
                .str(k)
                .emit();
        }
        let filter = match cmdline::get(c, cmdline::KEY_FILTER) {
            Some(v) => Filter::parse(v)
                .map_err(|e| format!("bad {}= value: {:?}", cmdline::KEY_FILTER, e))?,
            None => Filter::ALL,
        };
        let inject = match cmdline::get(c, cmdline::KEY_INJECT) {
            Some(v) => Some(
                Inject::parse(v)
                    .ok_or_else(|| format!("bad {}= value: {v}", cmdline::KEY_INJECT))?,
            ),
            None => None,
        };
        let mode = match cmdline::get(c, cmdline::KEY_MODE) {
            Some(v) => {
                Mode::parse(v).ok_or_else(|| format!("bad {}= value: {v}", cmdline::KEY_MODE))?
            }
            None => Mode::Full,
        };
        Ok(Self {
            filter,
            inject,
            mode,
        })
    }
}

/// What the guest found around it at boot (devices the suites can use).
pub struct Env {
    /// The detected platform.
    pub platform: PlatformKind,
    /// The command line.
    pub cmdline: &'static str,
    /// QEMU's `pc-testdev` answers at its ports.
    pub pc_testdev: bool,
    /// CPUID 0x40000000 signature (zeros if the hypervisor bit is clear).
    pub hypervisor: [u8; 12],
}

impl Env {
    /// Probes for the devices the suites use.
    pub fn discover(platform: PlatformKind, cmdline: &'static str) -> Self {
        Self {
            platform,
            cmdline,
            pc_testdev: io::probe_pc_testdev(),
            hypervisor: hypervisor_signature(),
        }
    }

    /// Whether QEMU's TCG emulates the CPU (some MSR behaviour differs from hardware).
    pub fn is_tcg(&self) -> bool {
        &self.hypervisor == protocol::qemu_devices::HYPERVISOR_SIG_TCG
    }
}

/// CPUID leaf 0x40000000 EBX, ECX, EDX, if CPUID.1:ECX[31] says a hypervisor is present.
pub fn hypervisor_signature() -> [u8; 12] {
    let mut sig = [0u8; 12];
    if crate::io::cpuid(1, 0).ecx >> 31 == 1 {
        let r = crate::io::cpuid(0x4000_0000, 0);
        sig[..4].copy_from_slice(&r.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        sig[8..].copy_from_slice(&r.edx.to_le_bytes());
    }
    sig
}

/// The running case's view: environment, checks, diagnostics.
pub struct Ctx<'a> {
    /// Devices and platform.
    pub env: &'a Env,
    name: &'static str,
    failed: bool,
    skipped: Option<&'static str>,
}

impl Ctx<'_> {
    /// A diagnostic line `# <case>: ` at case depth, for the caller to fill and emit.
    pub fn diag(&self) -> Line {
        let mut l = ktap::diag(1);
        l.str(self.name).str(": ");
        l
    }

    /// Marks the case failed with a diagnostic.
    pub fn fail(&mut self, what: &str) {
        self.failed = true;
        self.diag().str(what).emit();
    }

    /// Fails with `what` unless `ok`; returns `ok`.
    pub fn check(&mut self, ok: bool, what: &str) -> bool {
        if !ok {
            self.fail(what);
        }
        ok
    }

    /// Fails with `what: expected 0x.. got 0x..` unless equal; returns whether equal.
    pub fn check_eq<T: Into<u64> + Copy + PartialEq>(
        &mut self,
        what: &str,
        expected: T,
        got: T,
    ) -> bool {
        if expected != got {
            self.failed = true;
            self.diag()
                .str(what)
                .str(": expected ")
                .hex(expected.into())
                .str(" got ")
                .hex(got.into())
                .emit();
        }
        expected == got
    }

    /// Reports the case as skipped with `reason` (unless it already failed).
    pub fn skip(&mut self, reason: &'static str) {
        self.skipped = Some(reason);
    }
}

/// A small deterministic generator of test patterns (xorshift64*), so values differ from
/// case to case and from lane to lane.
pub struct Patterns(u64);

impl Patterns {
    /// Patterns seeded by `seed` (non-zero).
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next 64-bit pattern.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn inject(f: Fault) {
    match f {
        Fault::Panic => panic!("injected by {}=panic", cmdline::KEY_INJECT),
        Fault::Exception => {
            // SAFETY: deliberately raises #UD, which the trap handler reports as unexpected.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
        }
        Fault::TripleFault => {
            let empty = x86_64::structures::DescriptorTablePointer {
                limit: 0,
                base: x86_64::VirtAddr::new(0),
            };
            // SAFETY: deliberately loads an empty IDT and traps: #UD cannot be delivered,
            // nor the #DF that follows, so the CPU shuts down (the host sees a triple fault).
            unsafe {
                x86_64::instructions::tables::lidt(&empty);
                core::arch::asm!("ud2", options(nomem, nostack));
            }
        }
        Fault::Hang => loop {
            core::hint::spin_loop();
        },
    }
}

/// Runs the selected cases; returns whether any failed.
pub fn run(cfg: &RunConfig, env: &Env) -> bool {
    let suites: alloc::vec::Vec<&Suite> = SUITES
        .iter()
        .copied()
        .filter(|s| cfg.filter.selects_suite(s.spec))
        .collect();
    if cfg.mode == Mode::Empty {
        ktap::plan(0, 0);
        return false;
    }
    ktap::plan(0, suites.len());

    // Where an injected fault happens: the named case, else the first case of the second
    // suite (so the first suite's results are on record), else the first case.
    let inject_at: Option<(&str, &str)> = cfg.inject.map(|i| match i.at {
        Some(at) => at,
        None => {
            let s = suites.get(1).or(suites.first()).copied();
            match s {
                Some(s) => {
                    let c = s
                        .cases
                        .iter()
                        .find(|c| cfg.filter.selects(s.spec.name, c.name));
                    (s.spec.name, c.map_or("", |c| c.name))
                }
                None => ("", ""),
            }
        }
    });

    let mut any_failed = false;
    for (si, suite) in suites.iter().enumerate() {
        ktap::version(1);
        ktap::subtest(1, suite.spec.name);
        let selected: alloc::vec::Vec<(usize, &Case)> = suite
            .cases
            .iter()
            .enumerate()
            .filter(|(_, c)| cfg.filter.selects(suite.spec.name, c.name))
            .collect();
        ktap::plan(1, selected.len());
        let (mut failed, mut skipped) = (0usize, 0usize);
        for (n, (ci, case)) in selected.iter().enumerate() {
            if inject_at == Some((suite.spec.name, case.name)) {
                if let Some(i) = cfg.inject {
                    inject(i.fault);
                }
            }
            let spec = &suite.spec.cases[*ci];
            if !spec.platforms.contains(env.platform) {
                let mut reason = [0u8; 64];
                let r = not_for_platform(&mut reason, env.platform);
                ktap::result(1, n + 1, case.name, ktap::Result::Skip(r));
                skipped += 1;
                continue;
            }
            let mut ctx = Ctx {
                env,
                name: case.name,
                failed: false,
                skipped: None,
            };
            let _ = crate::io::take_host_error();
            (case.run)(&mut ctx);
            if let Some(e) = crate::io::take_host_error() {
                ctx.failed = true;
                let mut l = ctx.diag();
                l.str("host error: ");
                describe_host_error(&mut l, &e);
                l.emit();
            }
            let r = if ctx.failed {
                failed += 1;
                ktap::Result::Fail
            } else if let Some(why) = ctx.skipped {
                skipped += 1;
                ktap::Result::Skip(why)
            } else {
                ktap::Result::Pass
            };
            ktap::result(1, n + 1, case.name, r);
        }
        let r = if failed > 0 {
            any_failed = true;
            ktap::Result::Fail
        } else if skipped == selected.len() {
            ktap::Result::Skip("all cases skipped")
        } else {
            ktap::Result::Pass
        };
        ktap::result(0, si + 1, suite.spec.name, r);
    }
    any_failed
}

fn not_for_platform(buf: &mut [u8; 64], p: PlatformKind) -> &str {
    let prefix = b"not for platform ";
    let name = p.name().as_bytes();
    buf[..prefix.len()].copy_from_slice(prefix);
    buf[prefix.len()..prefix.len() + name.len()].copy_from_slice(name);
    core::str::from_utf8(&buf[..prefix.len() + name.len()]).unwrap_or("not for this platform")
}

/// Appends a host error to a diagnostic.
pub fn describe_host_error(l: &mut Line, e: &crate::platform::HostError) {
    use crate::platform::HostError;
    match *e {
        HostError::Refused { request, status } => {
            l.str(request).str(" refused with status ").hex(status);
        }
        HostError::BadAnswer { request, value } => {
            l.str(request).str(" answered out of range: ").hex(value);
        }
        HostError::Unsupported { request } => {
            l.str("unsupported: ").str(request);
        }
    }
}
