//! Test tables and the runner that prints them as KTAP.
//!
//! Each suite is a static table of [`Case`]s whose names match the protocol catalog
//! (`protocol::catalog`) one for one, in order; a compile-time check enforces it. The runner
//! applies the command-line filter, skips cases not meant for the platform, runs the rest and
//! prints one KTAP subtest block per suite.

mod cpuid;
mod ghcb_raw;
mod ghci_raw;
mod halt;
mod io;
mod memslot;
mod mmio;
mod msr;
mod platform;

use crate::io::{MmioValue, PioValue};
use crate::kept::Kept;
use crate::ktap::{self, Line};
use alloc::format;
use alloc::string::String;
use core::cell::Cell;
use protocol::access::Direction;
use protocol::catalog::{self, Filter, Need, SuiteSpec};
use protocol::cmdline::{self, Fault, Inject, Mode};
use protocol::ktap::RejectedBy;
use protocol::platform::PlatformKind;
use protocol::testdev::DATA_MAX;

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
pub static SUITES: [&Suite; 9] = [
    &platform::SUITE,
    &io::SUITE,
    &mmio::SUITE,
    &cpuid::SUITE,
    &msr::SUITE,
    &halt::SUITE,
    &ghci_raw::SUITE,
    &ghcb_raw::SUITE,
    &memslot::SUITE,
];

/// The kernel table of a raw conformance suite: one [`Case`] per catalog entry, all run by
/// the suite's `run`, which finds the `protocol::conformance` case by the running case's name.
const fn raw_cases<const N: usize>(spec: &SuiteSpec) -> [Case; N] {
    let run: fn(&mut Ctx<'_>) = if catalog::str_eq(spec.name, "ghci_raw") {
        ghci_raw::run
    } else {
        ghcb_raw::run
    };
    let mut out = [const {
        Case {
            name: "",
            run: |_| {},
        }
    }; N];
    let mut i = 0;
    while i < N {
        out[i] = Case {
            name: spec.cases[i].name,
            run,
        };
        i += 1;
    }
    out
}

/// Reports a raw conformance case against the KVM releases (`protocol::conformance::check_eras`):
/// told the host's KVM (`cvmprobe.kvm=`), only that release's answer passes; otherwise any
/// release's. Where the releases differ, a diagnostic names the releases the answer matched
/// (`# ghcb_raw.x: kvm: answers as 6.11-6.16`); a mismatch gives the checker's diagnostic
/// (`expected status 0x8000000000000000 (INVALID_OPERAND) got 0x0`), the releases whose answer
/// it is if any, and the source of the expectation.
fn report_conformance(
    ctx: &mut Ctx<'_>,
    case: &protocol::conformance::Case,
    addrs: &protocol::conformance::Addresses,
    answer: &protocol::conformance::Answer,
) {
    use protocol::conformance::check_eras;
    let kvm = ctx.env.kvm;
    let mut b = [0u8; 48];
    match check_eras(case, addrs, answer, kvm) {
        Ok(kvms) => {
            if case.varies_by_release() {
                ctx.diag()
                    .str("kvm: answers as ")
                    .str(kvms.label(&mut b))
                    .emit();
            }
        }
        Err(m) => {
            ctx.fail(&format!("{m}"));
            if let Some(p) = kvm {
                let mut l = ctx.diag();
                l.str("kvm: expected KVM ").str(p.name()).str("'s answer");
                if let Ok(other) = check_eras(case, addrs, answer, None) {
                    l.str(", got the answer of ").str(other.label(&mut b));
                }
                l.emit();
            } else {
                ctx.diag()
                    .str("kvm: no KVM release gives this answer")
                    .emit();
            }
            ctx.diag().str("source: ").str(case.source).emit();
        }
    }
}

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
    pub fn from_cmdline(keys: &cmdline::Keys<'static>) -> Result<Self, String> {
        if let Some(k) = keys.unknown {
            ktap::diag(0)
                .str("warning: unknown command-line key ")
                .bytes(k.as_bytes())
                .emit();
        }
        let filter = match keys.filter {
            Some(v) => Filter::parse(v)
                .map_err(|e| format!("bad {}= value: {:?}", cmdline::KEY_FILTER, e))?,
            None => Filter::ALL,
        };
        let inject = match keys.inject {
            Some(v) => Some(
                Inject::parse(v)
                    .ok_or_else(|| format!("bad {}= value: {v}", cmdline::KEY_INJECT))?,
            ),
            None => None,
        };
        if let Some(v) = keys.kvm
            && protocol::kvm::KvmProfile::parse(v).is_none()
        {
            return Err(format!("bad {}= value: {v}", cmdline::KEY_KVM));
        }
        let mode = match keys.mode {
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

/// The test device the `io` and `mmio` suites run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestDevice {
    /// None found.
    None,
    /// QEMU's `pc-testdev` (ports 0xe0/0xe8, IO memory at 0xff000000).
    PcTestdev,
    /// The built-in VMM's test device, with the per-run seed read from it.
    Cvmprobe {
        /// Seed of `protocol::testdev::host_value`.
        seed: u64,
    },
}

/// What the guest found around it at boot (devices the suites can use).
pub struct Env {
    /// The detected platform.
    pub platform: PlatformKind,
    /// The brand string the host chose (`cvmprobe.brand=`), if any.
    pub brand: Option<&'static str>,
    /// The platform the host set up (`cvmprobe.platform=`), if it said.
    pub expected_platform: Option<&'static str>,
    /// The KVM release the host said it is (`cvmprobe.kvm=`): the conformance suites then
    /// expect exactly its answers; without it any release's answer passes.
    pub kvm: Option<protocol::kvm::KvmProfile>,
    /// The device for the `io` and `mmio` suites.
    pub device: TestDevice,
    /// CPUID 0x40000000 signature (zeros if the hypervisor bit is clear).
    pub hypervisor: [u8; 12],
}

impl Env {
    /// Probes for the devices the suites use.
    pub fn discover(platform: PlatformKind, keys: &protocol::cmdline::Keys<'static>) -> Self {
        let device = if let Some(seed) = io::probe_cvmprobe_testdev() {
            TestDevice::Cvmprobe { seed }
        } else if io::probe_pc_testdev() {
            TestDevice::PcTestdev
        } else {
            TestDevice::None
        };
        Self {
            platform,
            brand: keys.brand,
            expected_platform: keys.platform,
            kvm: keys.kvm.and_then(protocol::kvm::KvmProfile::parse),
            device,
            hypervisor: hypervisor_signature(),
        }
    }

    /// `(data port, byte-wise port)` of the port-IO test registers, if any.
    pub fn pio_ports(&self) -> Option<(u16, u16)> {
        use protocol::testdev::{PIO_BASE, pio};
        match self.device {
            TestDevice::None => None,
            TestDevice::PcTestdev => Some((
                protocol::qemu_devices::PC_TESTDEV_IOPORT,
                protocol::qemu_devices::PC_TESTDEV_IOPORT_BYTE,
            )),
            TestDevice::Cvmprobe { .. } => Some((PIO_BASE + pio::DATA, PIO_BASE + pio::DATA_BYTE)),
        }
    }

    /// The data port of the port-IO test device, if any.
    pub fn pio_data_port(&self) -> Option<u16> {
        self.pio_ports().map(|(d, _)| d)
    }

    /// The GPA of the memory-like MMIO test window, if any.
    pub fn mmio_window(&self) -> Option<u64> {
        match self.device {
            TestDevice::None => None,
            TestDevice::PcTestdev => Some(protocol::qemu_devices::PC_TESTDEV_IOMEM),
            TestDevice::Cvmprobe { .. } => {
                Some(protocol::testdev::MMIO_BASE + protocol::testdev::mmio::SCRATCH)
            }
        }
    }

    /// The host's per-run seed, if the built-in VMM's test device is present.
    pub fn seed(&self) -> Option<u64> {
        match self.device {
            TestDevice::Cvmprobe { seed } => Some(seed),
            _ => None,
        }
    }

    /// Tells the built-in VMM's test device which case runs (0 = none).
    fn announce(&self, id: u32) {
        if let TestDevice::Cvmprobe { .. } = self.device {
            crate::io::pio_write::<u32>(
                protocol::testdev::PIO_BASE + protocol::testdev::pio::CASE,
                id,
            );
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
    suite: &'static str,
    name: &'static str,
    failed: bool,
    skipped: Option<Need>,
    /// The values exchanged with the test device so far, for `protocol::testdev::mmio::REPORT`;
    /// cells, so a check can take a device read as its argument (`ctx.check_eq(..,
    /// ctx.dev_pio_read(..))`).
    exchanged: [Cell<(Direction, u64)>; DATA_MAX],
    exchanges: Cell<usize>,
    /// `corrupt-data`: the next device write sends the value with bit 0 flipped.
    corrupt_next_write: Cell<bool>,
    /// The requests a failing check names (`[expectation rejects requests a-b]`): those
    /// made since the previous check; `window.0` is the last request before them.
    window: (u64, u64),
}

impl Ctx<'_> {
    /// The running case's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A diagnostic line `# <case>: ` at case depth, for the caller to fill and emit
    /// (`# <suite>.<case>: ` when the environment prints the results: its report is flat).
    pub fn diag(&self) -> Line {
        let mut l = ktap::diag(1);
        if crate::env::prints_results() {
            l.str(self.suite).str(".");
        }
        l.str(self.name).str(": ");
        l
    }

    /// The requests since the previous check, `(first, last)` (the previous check's window
    /// again when none was made since), and starts a new window.
    fn checked(&mut self) -> (u64, u64) {
        let now = crate::platform::request_seq();
        let (before, last) = self.window;
        if now > last {
            self.window = (last, now);
            (last + 1, now)
        } else {
            (before + 1, last)
        }
    }

    /// Marks the case failed with a diagnostic that names the requests since the previous
    /// check as rejected by this expectation.
    pub fn fail(&mut self, what: &str) {
        self.failed = true;
        let (first, last) = self.checked();
        self.diag()
            .str(what)
            .reject_note(RejectedBy::Expectation, first, last)
            .emit();
    }

    /// Fails with `what` unless `ok`; returns `ok`.
    pub fn check(&mut self, ok: bool, what: &str) -> bool {
        if !ok {
            self.fail(what);
        } else {
            self.checked();
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
        let (first, last) = self.checked();
        if expected != got {
            self.failed = true;
            self.diag()
                .str(what)
                .str(": expected ")
                .hex(expected.into())
                .str(" got ")
                .hex(got.into())
                .reject_note(RejectedBy::Expectation, first, last)
                .emit();
        }
        expected == got
    }

    fn note(&self, dir: Direction, v: u64) {
        let n = self.exchanges.get();
        if let Some(slot) = self.exchanged.get(n) {
            slot.set((dir, v));
        }
        self.exchanges.set(n + 1);
    }

    /// Reads a `T` from test-device port `port`, recording the value for the host's data
    /// check.
    pub fn dev_pio_read<T: PioValue>(&self, port: u16) -> T {
        let v = crate::io::pio_read::<T>(port);
        self.note(Direction::Read, v.to_u64());
        v
    }

    /// Writes `v` to test-device port `port`, recording it for the host's data check.
    pub fn dev_pio_write<T: PioValue>(&self, port: u16, v: T) {
        self.note(Direction::Write, v.to_u64());
        crate::io::pio_write(port, self.maybe_corrupt(v));
    }

    /// Reads a `T` from test-device MMIO at `gpa`, recording the value.
    pub fn dev_mmio_read<T: MmioValue>(&self, gpa: u64) -> T {
        let v = crate::io::mmio_read::<T>(gpa);
        self.note(Direction::Read, v.to_u64());
        v
    }

    /// Writes `v` to test-device MMIO at `gpa`, recording it.
    pub fn dev_mmio_write<T: MmioValue>(&self, gpa: u64, v: T) {
        self.note(Direction::Write, v.to_u64());
        crate::io::mmio_write(gpa, self.maybe_corrupt(v));
    }

    fn maybe_corrupt<T: MmioValue>(&self, v: T) -> T {
        if self.corrupt_next_write.replace(false) {
            T::from_u64(v.to_u64() ^ 1)
        } else {
            v
        }
    }

    /// Writes the values the case exchanged with the built-in VMM's test device to its
    /// `REPORT` register, in order, for the host's data check (`protocol::testdev::check_data`).
    fn report_data(&self) {
        if !matches!(self.env.device, TestDevice::Cvmprobe { .. }) {
            return;
        }
        let report = protocol::testdev::MMIO_BASE + protocol::testdev::mmio::REPORT;
        let n = self.exchanges.get().min(DATA_MAX);
        for slot in &self.exchanged[..n] {
            crate::io::mmio_write::<u64>(report, slot.get().1);
        }
    }

    /// Reports the case as skipped because `need` is missing (unless it already failed): the
    /// reason printed is [`Need::reason`], which the host compares with what it set up.
    pub fn skip(&mut self, need: Need) {
        self.skipped = Some(need);
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
        Fault::UndeclaredAccess => {
            let port = protocol::testdev::PIO_BASE + protocol::testdev::pio::VALUE;
            core::hint::black_box(crate::io::pio_read::<u32>(port));
        }
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
        Fault::EmulationFailure => {
            // SAFETY: deliberately executes TDCALL (66 0F 01 CC) outside TDX: KVM cannot
            // emulate it and ends the run; TCG raises #UD. Nothing returns here.
            unsafe { core::arch::asm!(".byte 0x66, 0x0f, 0x01, 0xcc", options(nomem, nostack)) }
        }
        Fault::Hang => loop {
            core::hint::spin_loop();
        },
        Fault::RawPortIo => {
            // The legacy backend's raw IN, whatever the platform: the guest bug the
            // simulated TDX and SEV-ES hosts must catch.
            core::hint::black_box(crate::platform::legacy::pio_read::<u8>(UNASSIGNED_PORT));
        }
        Fault::BrokenBackend => crate::platform::break_port_reads(),
        Fault::NoWidthCheck => crate::platform::disable_width_check(),
        Fault::GhcbNotZeroed => crate::platform::sev_es::stop_zeroing(),
        Fault::GhcbDoubleFetch => crate::platform::sev_es::double_fetch(),
        Fault::GhcbPrivate => {
            if !crate::platform::sev_es::map_ghcb_private() {
                ktap::diag(1)
                    .str("ghcb-private: the GHCB's mapping is not the split PVH map: not injected")
                    .emit();
            }
        }
        Fault::SevStatusProbe => {
            let _ = crate::platform::detect::probe_sev_status();
        }
        Fault::VeFixupSkipsVeinfo => {
            crate::platform::tdx::skip_veinfo_in_fixup();
            let _ = crate::platform::detect::probe_sev_status();
        }
        // Handled by the case runner.
        Fault::Skip | Fault::Todo | Fault::CorruptData => {}
    }
}

/// A port no device claims on the VMMs cvmprobe runs under (0x700 is taken on QEMU `pc`).
const UNASSIGNED_PORT: u16 = 0xf00;

/// Runs the selected cases; returns whether any failed.
#[optimize(speed)]
pub fn run(cfg: &RunConfig, env: &Env) -> bool {
    // The environment prints the results (a KVM selftest's flat kselftest report): it gets
    // the case count and each case's result, and no KTAP structure is printed here.
    let flat = crate::env::prints_results();
    match cfg.mode {
        Mode::Full => {}
        Mode::Empty if flat => {
            crate::env::plan(0);
            return false;
        }
        Mode::Empty => {
            ktap::plan(0, 0);
            return false;
        }
        Mode::Bench => {
            crate::bench::run(env);
            return false;
        }
    }
    let f = &cfg.filter;
    let selected = |s: &Suite| {
        s.cases
            .iter()
            .filter(|c| f.selects(s.spec.name, c.name))
            .count()
    };
    let nsuites = SUITES.iter().filter(|s| selected(s) > 0).count();
    if flat {
        crate::env::plan(SUITES.iter().map(|s| selected(s) as u32).sum());
    } else {
        ktap::plan(0, nsuites);
    }

    // Where an injected fault happens: the named case, else the first case of the second
    // selected suite (so the first suite's results are on record), else the first case.
    let inject_at: Option<(&str, &str)> = cfg.inject.map(|i| {
        i.at.unwrap_or_else(|| {
            let mut suites = SUITES.iter().filter(|s| selected(s) > 0);
            let first = suites.next();
            match suites.next().or(first) {
                Some(s) => {
                    let c = s.cases.iter().find(|c| f.selects(s.spec.name, c.name));
                    (s.spec.name, c.map_or("", |c| c.name))
                }
                None => ("", ""),
            }
        })
    });

    let mut any_failed = false;
    let mut si = 0;
    let (mut all_passed, mut all_failed, mut all_skipped) = (0u64, 0u64, 0u64);
    for (suite_index, suite) in SUITES.iter().enumerate() {
        let total = selected(suite);
        if total == 0 {
            continue;
        }
        si += 1;
        if !flat {
            ktap::version(1);
            ktap::subtest(1, suite.spec.name);
            ktap::plan(1, total);
        }
        let (mut n, mut failed, mut skipped) = (0usize, 0usize, 0usize);
        for (ci, case) in suite.cases.iter().enumerate() {
            if !f.selects(suite.spec.name, case.name) {
                continue;
            }
            n += 1;
            let r = run_case(cfg, env, inject_at, suite, suite_index, ci, case);
            match r {
                ktap::Result::Fail | ktap::Result::Todo(_) => failed += 1,
                ktap::Result::Skip(_) => skipped += 1,
                ktap::Result::Pass => all_passed += 1,
            }
            if flat {
                report_flat(protocol::testdev::case_id(suite_index, ci), r);
            } else {
                ktap::result(1, n, case.name, r);
            }
        }
        let r = if failed > 0 {
            any_failed = true;
            ktap::Result::Fail
        } else if skipped == total {
            ktap::Result::Skip("all cases skipped")
        } else {
            ktap::Result::Pass
        };
        if !flat {
            ktap::result(0, si, suite.spec.name, r);
        }
        all_failed += failed as u64;
        all_skipped += skipped as u64;
    }
    if flat {
        return any_failed;
    }
    // kselftest's closing line (tools/testing/selftests/kselftest.h, ksft_print_cnts()): the
    // end marker a log reader such as LAVA's monitor waits for (ci-templates/).
    ktap::diag(0)
        .str("Totals: pass:")
        .dec(all_passed)
        .str(" fail:")
        .dec(all_failed)
        .str(" xfail:0 xpass:0 skip:")
        .dec(all_skipped)
        .str(" error:0")
        .emit();
    any_failed
}

/// One case's result, to an environment that prints the results.
fn report_flat(id: u32, r: ktap::Result<'_>) {
    use protocol::abi::{RESULT_FAIL, RESULT_PASS, RESULT_SKIP, RESULT_TODO};
    let (result, reason) = match r {
        ktap::Result::Pass => (RESULT_PASS, ""),
        ktap::Result::Fail => (RESULT_FAIL, ""),
        ktap::Result::Skip(why) => (RESULT_SKIP, why),
        ktap::Result::Todo(why) => (RESULT_TODO, why),
    };
    crate::env::result(id, result, reason);
}

/// Runs one case (announcing it to the host's test device) and returns its result.
fn run_case(
    cfg: &RunConfig,
    env: &Env,
    inject_at: Option<(&str, &str)>,
    suite: &Suite,
    suite_index: usize,
    ci: usize,
    case: &Case,
) -> ktap::Result<'static> {
    let spec = &suite.spec.cases[ci];
    env.announce(protocol::testdev::case_id(suite_index, ci));
    if inject_at == Some((suite.spec.name, case.name))
        && let Some(i) = cfg.inject
    {
        match i.fault {
            Fault::Skip => {
                env.announce(0);
                let need = spec.needs.iter().next().unwrap_or(Need::TestDevice);
                return ktap::Result::Skip(need.reason());
            }
            Fault::Todo => {
                env.announce(0);
                return ktap::Result::Todo("injected by cvmprobe.inject=todo");
            }
            Fault::CorruptData => {}
            f => inject(f),
        }
    }
    if !spec.platforms.contains(env.platform) {
        env.announce(0);
        return ktap::Result::Skip(not_for_platform(env.platform));
    }
    let mut ctx = Ctx {
        env,
        suite: suite.spec.name,
        name: case.name,
        failed: false,
        skipped: None,
        exchanged: [const { Cell::new((Direction::Read, 0)) }; DATA_MAX],
        exchanges: Cell::new(0),
        corrupt_next_write: Cell::new(
            inject_at == Some((suite.spec.name, case.name))
                && cfg.inject.is_some_and(|i| i.fault == Fault::CorruptData),
        ),
        window: {
            let now = crate::platform::request_seq();
            (now, now)
        },
    };
    let _ = crate::io::take_host_errors();
    let _ = crate::platform::emulate::take_refusals();
    (case.run)(&mut ctx);
    ctx.report_data();
    env.announce(0);
    report_host_errors(&mut ctx);
    report_refusals(&mut ctx);
    if ctx.failed {
        ktap::Result::Fail
    } else if let Some(need) = ctx.skipped {
        ktap::Result::Skip(need.reason())
    } else {
        ktap::Result::Pass
    }
}

/// One diagnostic per host error the case's I/O met, each naming the rejected request.
fn report_host_errors(ctx: &mut Ctx<'_>) {
    let errors = crate::io::take_host_errors();
    for e in errors.list.iter().flatten() {
        let mut l = ctx.diag();
        l.str("host error: ");
        describe_host_error(&mut l, e);
        l.emit();
    }
    fail_if_any(ctx, &errors, " more host errors");
}

/// One diagnostic per #VE/#VC the case's handlers refused, each naming its requests.
fn report_refusals(ctx: &mut Ctx<'_>) {
    let refusals = crate::platform::emulate::take_refusals();
    for r in refusals.list.iter().flatten() {
        let mut l = ctx.diag();
        l.str(r.exception)
            .str(if r.completed {
                " access failed by the host: "
            } else {
                " refused: "
            })
            .str(r.error.what)
            .str(" (")
            .hex(r.error.value)
            .str(") at rip=")
            .hex(r.rip)
            .reject_note(RejectedBy::Validator, r.requests.0, r.requests.1);
        l.emit();
    }
    fail_if_any(ctx, &refusals, " more #VE/#VC refusals");
}

/// Fails the case if `kept` holds anything, with `and <n><more>` for those not kept in full.
fn fail_if_any<T: Copy, const N: usize>(ctx: &mut Ctx<'_>, kept: &Kept<T, N>, more: &str) {
    if kept.is_empty() {
        return;
    }
    ctx.failed = true;
    if kept.more > 0 {
        let (first, last) = kept.more_requests;
        ctx.diag()
            .str("and ")
            .dec(u64::from(kept.more))
            .str(more)
            .reject_note(RejectedBy::Validator, first, last)
            .emit();
    }
}

fn not_for_platform(p: PlatformKind) -> &'static str {
    match p {
        PlatformKind::Legacy => "not for platform legacy",
        PlatformKind::Tdx => "not for platform tdx",
        PlatformKind::SevEs => "not for platform sev-es",
    }
}

/// Appends a host error to a diagnostic, with the rejection note naming its request.
pub fn describe_host_error(l: &mut Line, e: &crate::platform::HostError) {
    use crate::platform::HostError;
    match *e {
        HostError::Refused {
            request, status, ..
        } => {
            l.str(request).str(" refused with status ").hex(status);
        }
        HostError::BadAnswer { request, value, .. } => {
            l.str(request).str(" answered out of range: ").hex(value);
        }
        HostError::Unsupported { request } => {
            l.str("unsupported: ").str(request);
        }
    }
    if let Some(seq) = e.seq() {
        l.reject_note(RejectedBy::Validator, seq, seq);
    }
}
