//! Kernel command-line keys and their parser.
//!
//! The command line reaches the guest on every boot path: PVH start info (`-append`, the
//! built-in VMM), and for BIOS/UEFI images the ramdisk the host writes per run. It is a list of
//! space-separated `key=value` tokens; the guest reads only keys starting with [`PREFIX`] and
//! ignores the rest (so it can share a command line with other consumers). Values contain no
//! spaces. The last occurrence of a key wins.

/// Every key this crate defines starts with this.
pub const PREFIX: &str = "cvmprobe.";

/// `cvmprobe.filter=<patterns>`: which cases run (see [`crate::catalog::Filter`]).
pub const KEY_FILTER: &str = "cvmprobe.filter";
/// `cvmprobe.inject=<fault>[@suite.case]`: test-only fault injection (see [`Inject`]).
pub const KEY_INJECT: &str = "cvmprobe.inject";
/// `cvmprobe.mode=full|empty|bench`: `empty` boots, prints an empty plan and exits;
/// `bench` runs the guest microbenchmarks instead of the tables.
pub const KEY_MODE: &str = "cvmprobe.mode";
/// `cvmprobe.brand=<text>`: the CPUID brand string the host chose for this run (QEMU
/// `-cpu ...,model-id=`); `_` stands for a space.
pub const KEY_BRAND: &str = "cvmprobe.brand";

/// `cvmprobe.platform=legacy|tdx|sev-es`: the platform the host set up (the guest's
/// `platform.detected` case compares it with what it detected).
pub const KEY_PLATFORM: &str = "cvmprobe.platform";

/// `cvmprobe.sim_phys_bits=<36..52>`: the host declares that it runs a *simulated*
/// confidential platform (the built-in VMM's tdx-sim or sev-es-sim) on a vCPU with this many
/// physical-address bits. The guest then accepts the one non-architectural value such a sim
/// reports on a narrow vCPU (TDX GPAW = this width, below 48) and says so in a KTAP
/// diagnostic. Never set on real hardware: a real TD reporting GPAW 46 fails.
pub const KEY_SIM_PHYS_BITS: &str = "cvmprobe.sim_phys_bits";

/// `cvmprobe.kvm=<profile>`: see [`crate::kvm::KEY_KVM`].
pub const KEY_KVM: &str = crate::kvm::KEY_KVM;

/// Every key the guest understands (it warns about others with the prefix).
pub const KNOWN_KEYS: [&str; 7] = [
    KEY_FILTER,
    KEY_INJECT,
    KEY_MODE,
    KEY_BRAND,
    KEY_PLATFORM,
    KEY_SIM_PHYS_BITS,
    KEY_KVM,
];

/// The value of [`KEY_SIM_PHYS_BITS`] if it is a decimal width in
/// [`crate::platform::PHYS_BITS_MIN`]..=[`crate::platform::PHYS_BITS_MAX`].
pub fn parse_sim_phys_bits(v: &str) -> Option<u8> {
    let bits: u8 = v.parse().ok()?;
    (crate::platform::PHYS_BITS_MIN..=crate::platform::PHYS_BITS_MAX)
        .contains(&bits)
        .then_some(bits)
}

/// Iterates over `(key, value)` of every `key=value` token (`value` is `""` for a bare key).
pub fn tokens(cmdline: &str) -> impl Iterator<Item = (&str, &str)> {
    cmdline
        .split_ascii_whitespace()
        .map(|t| t.split_once('=').unwrap_or((t, "")))
}

/// The value of the last occurrence of `key`.
pub fn get<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    tokens(cmdline)
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .last()
}

/// The command line of a BIOS/UEFI image travels in the bootloader's ramdisk (bootloader 0.11
/// has no command line): the image is built with a ramdisk of [`RAMDISK_LEN`] bytes that starts
/// with [`RAMDISK_PLACEHOLDER`] and is padded with [`RAMDISK_PAD`]; a run copies the image and
/// overwrites those bytes with its command line, NUL-padded. The ramdisk is one 512-byte
/// sector, so it lies in one FAT cluster and the copy can be patched in place.
pub const RAMDISK_LEN: usize = 512;
/// First bytes of the unpatched ramdisk (the guest then uses an empty command line).
pub const RAMDISK_PLACEHOLDER: &[u8] = b"cvmprobe-cmdline-placeholder-v1\n";
/// Padding byte of the unpatched ramdisk.
pub const RAMDISK_PAD: u8 = b'#';

/// The unpatched ramdisk contents.
pub fn ramdisk_placeholder() -> [u8; RAMDISK_LEN] {
    let mut b = [RAMDISK_PAD; RAMDISK_LEN];
    b[..RAMDISK_PLACEHOLDER.len()].copy_from_slice(RAMDISK_PLACEHOLDER);
    b
}

/// The ramdisk contents for `cmdline` (`None` if it does not fit with its NUL).
pub fn ramdisk_for(cmdline: &str) -> Option<[u8; RAMDISK_LEN]> {
    let c = cmdline.as_bytes();
    if c.len() >= RAMDISK_LEN || c.contains(&0) {
        return None;
    }
    let mut b = [0u8; RAMDISK_LEN];
    b[..c.len()].copy_from_slice(c);
    Some(b)
}

/// The command line in ramdisk contents: up to the first NUL; an unpatched placeholder gives
/// an empty command line.
pub fn cmdline_from_ramdisk(r: &[u8]) -> &[u8] {
    if r.starts_with(RAMDISK_PLACEHOLDER) {
        return &[];
    }
    let end = r.iter().position(|&b| b == 0).unwrap_or(r.len());
    &r[..end]
}

/// Every `cvmprobe.*` key of a command line, found in one pass (the guest parses its command
/// line once: each pass over it costs guest instructions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keys<'a> {
    /// [`KEY_FILTER`].
    pub filter: Option<&'a str>,
    /// [`KEY_INJECT`].
    pub inject: Option<&'a str>,
    /// [`KEY_MODE`].
    pub mode: Option<&'a str>,
    /// [`KEY_BRAND`].
    pub brand: Option<&'a str>,
    /// [`KEY_PLATFORM`].
    pub platform: Option<&'a str>,
    /// [`KEY_SIM_PHYS_BITS`].
    pub sim_phys_bits: Option<&'a str>,
    /// [`KEY_KVM`].
    pub kvm: Option<&'a str>,
    /// The first key with [`PREFIX`] that this crate does not define.
    pub unknown: Option<&'a str>,
}

impl<'a> Keys<'a> {
    /// Parses `cmdline`; later occurrences of a key win, as with [`get`].
    pub fn parse(cmdline: &'a str) -> Self {
        let mut k = Keys::default();
        for (key, v) in tokens(cmdline) {
            let Some(name) = key.strip_prefix(PREFIX) else {
                continue;
            };
            match name {
                "filter" => k.filter = Some(v),
                "inject" => k.inject = Some(v),
                "mode" => k.mode = Some(v),
                "brand" => k.brand = Some(v),
                "platform" => k.platform = Some(v),
                "sim_phys_bits" => k.sim_phys_bits = Some(v),
                "kvm" => k.kvm = Some(v),
                _ => {
                    if k.unknown.is_none() {
                        k.unknown = Some(key);
                    }
                }
            }
        }
        k
    }
}

/// What the guest does with its test tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run the selected cases (default).
    Full,
    /// Boot, print the KTAP header with an empty plan, exit: the start-up floor for benchmarks.
    Empty,
    /// Run the guest microbenchmarks (`# bench ...` diagnostics) instead of the tables.
    Bench,
}

impl Mode {
    /// Parses the value of [`KEY_MODE`].
    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "full" => Some(Self::Full),
            "empty" => Some(Self::Empty),
            "bench" => Some(Self::Bench),
            _ => None,
        }
    }
}

/// A fault the guest injects on purpose, to test the host's failure handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `panic!` inside a case.
    Panic,
    /// An unexpected exception (`ud2`, #UD) inside a case.
    Exception,
    /// A triple fault: load an empty IDT and trap.
    TripleFault,
    /// Spin forever with interrupts off.
    Hang,
    /// One extra read of the test device inside the case, which the case does not declare:
    /// the host's access-log check must turn the case's `ok` into a failure.
    UndeclaredAccess,
    /// An instruction the hypervisor cannot emulate (a TDCALL outside TDX): under KVM the run
    /// ends in KVM_EXIT_INTERNAL_ERROR (emulation failure), under TCG in #UD.
    EmulationFailure,
    /// A raw `in` from an unassigned port, bypassing the backend: harmless on a legacy VM; on
    /// TDX or SEV-ES hardware a #VE/#VC, which the simulated platforms turn into a failed
    /// run naming the RIP.
    RawPortIo,
    /// From the case on, the backend's port reads use a wrong request number (TDX: IO
    /// sub-function 29 instead of 30; SEV-ES: exit code 0x7a instead of IOIO 0x7b): the
    /// host must refuse them with KVM's status and the read cases must fail.
    BrokenBackend,
    /// From the case on, the TDX and SEV-ES backends skip the width check of read answers
    /// (`protocol::validate::width_fits`: TDVMCALL IO/MMIO read R11 and CPUID R12-R15, GHCB
    /// IOIO read RAX, CPUID RAX-RDX and MSR read EAX/EDX) and truncate a too-wide value
    /// silently: a validation removed on purpose, which a host returning such values must
    /// catch through the wrong results.
    NoWidthCheck,
    /// From the case on, the SEV-ES backend clears only the GHCB's valid bitmap before a
    /// request instead of the whole page, so values of earlier requests stay in fields the
    /// new request does not send: the host-side check of the GHCB bytes must report the leak.
    GhcbNotZeroed,
    /// From the case on, the SEV-ES backend reads SW_EXITINFO1 and the valid bitmap from the
    /// shared GHCB a second time after copying the answer (a double fetch): a host that
    /// rewrites the page after the guest's first read changes what the guest acts on.
    GhcbDoubleFetch,
    /// The case reports `# SKIP` with the reason of its first need (or the test device's)
    /// without running: a guest skipping a case its environment can run, which the host's
    /// verdict must fail.
    Skip,
    /// The case reports `not ok # TODO` without running: the host must not count it as a
    /// skip.
    Todo,
    /// The case's first test-device write sends the value with bit 0 flipped while the case
    /// reports the value it meant (a backend corrupting data): the host's data check must
    /// fail the case at that access.
    CorruptData,
    /// From the case on, the SEV-ES backend maps its GHCB page private (C-bit set) instead of
    /// shared: on hardware the host would read ciphertext and the guest would read back
    /// garbage; the host's own check of the GHCB's mapping must report it and fail the run.
    GhcbPrivate,
    /// Inside the case, RDMSR of SEV_STATUS (0xC0010131) raw under the fault fixup, as
    /// detection did before it asked CPUID first: in a TD the TDX module raises a #VE for it
    /// (the MSR is outside its MSR bitmap), which the fixup swallows after reading its
    /// information with TDG.VP.VEINFO.GET: the run goes on unharmed.
    SevStatusProbe,
    /// [`Fault::SevStatusProbe`] with a fixup that does not call TDG.VP.VEINFO.GET: the #VE's
    /// information stays valid, so in a TD the next #VE (a memslot access) is a #DF.
    VeFixupSkipsVeinfo,
}

impl Fault {
    /// All faults, for help texts.
    pub const ALL: [Fault; 17] = [
        Self::Panic,
        Self::Exception,
        Self::TripleFault,
        Self::Hang,
        Self::UndeclaredAccess,
        Self::EmulationFailure,
        Self::RawPortIo,
        Self::BrokenBackend,
        Self::NoWidthCheck,
        Self::GhcbNotZeroed,
        Self::GhcbDoubleFetch,
        Self::Skip,
        Self::Todo,
        Self::CorruptData,
        Self::GhcbPrivate,
        Self::SevStatusProbe,
        Self::VeFixupSkipsVeinfo,
    ];

    /// The name used on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Panic => "panic",
            Self::Exception => "exception",
            Self::TripleFault => "triple-fault",
            Self::Hang => "hang",
            Self::UndeclaredAccess => "undeclared-access",
            Self::EmulationFailure => "emulation-failure",
            Self::RawPortIo => "raw-port-io",
            Self::BrokenBackend => "broken-backend",
            Self::NoWidthCheck => "no-width-check",
            Self::GhcbNotZeroed => "ghcb-not-zeroed",
            Self::GhcbDoubleFetch => "ghcb-double-fetch",
            Self::Skip => "skip",
            Self::Todo => "todo",
            Self::CorruptData => "corrupt-data",
            Self::GhcbPrivate => "ghcb-private",
            Self::SevStatusProbe => "sev-status-probe",
            Self::VeFixupSkipsVeinfo => "ve-fixup-skips-veinfo",
        }
    }
}

/// A parsed `cvmprobe.inject=` value: the fault and, optionally, the case it happens in.
/// Without `@suite.case` it happens at the start of the first case of the second suite that
/// runs (so the first suite's results are on record), or the first case if only one suite runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inject<'a> {
    /// What to do.
    pub fault: Fault,
    /// `(suite, case)` where to do it.
    pub at: Option<(&'a str, &'a str)>,
}

impl<'a> Inject<'a> {
    /// Parses `fault[@suite.case]`.
    pub fn parse(v: &'a str) -> Option<Self> {
        let (f, at) = match v.split_once('@') {
            Some((f, at)) => (f, Some(at.split_once('.')?)),
            None => (v, None),
        };
        let fault = Fault::ALL.into_iter().find(|x| x.name() == f)?;
        Some(Self { fault, at })
    }
}

/// Decodes a [`KEY_BRAND`] value: `_` stands for a space.
pub fn brand_matches(value: &str, brand: &[u8]) -> bool {
    let v = value.as_bytes();
    // CPUID pads the 48-byte brand with NULs after the text.
    let trimmed = match brand.iter().position(|&b| b == 0) {
        Some(n) => &brand[..n],
        None => brand,
    };
    v.len() == trimmed.len()
        && v.iter()
            .zip(trimmed)
            .all(|(&a, &b)| a == b || (a == b'_' && b == b' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_last_wins() {
        let c = "console=ttyS0 cvmprobe.filter=io cvmprobe.filter=mmio,io.* noapic";
        assert_eq!(get(c, KEY_FILTER), Some("mmio,io.*"));
        assert_eq!(get(c, KEY_MODE), None);
        assert_eq!(get("cvmprobe.mode", KEY_MODE), Some(""));
    }

    #[test]
    fn keys_in_one_pass_agree_with_get() {
        let c = "a=1 cvmprobe.filter=io cvmprobe.brand=x_y cvmprobe.bogus=1 cvmprobe.filter=mmio cvmprobe.mode=empty";
        let k = Keys::parse(c);
        assert_eq!(k.filter, get(c, KEY_FILTER));
        assert_eq!(k.mode, get(c, KEY_MODE));
        assert_eq!(k.brand, get(c, KEY_BRAND));
        assert_eq!(k.inject, None);
        assert_eq!(k.unknown, Some("cvmprobe.bogus"));
        for key in KNOWN_KEYS {
            assert!(key.starts_with(PREFIX));
        }
    }

    #[test]
    fn sim_phys_bits() {
        let k = Keys::parse("cvmprobe.sim_phys_bits=46 cvmprobe.platform=tdx");
        assert_eq!(k.sim_phys_bits, Some("46"));
        assert_eq!(k.unknown, None);
        assert_eq!(parse_sim_phys_bits("46"), Some(46));
        assert_eq!(parse_sim_phys_bits("36"), Some(36));
        assert_eq!(parse_sim_phys_bits("52"), Some(52));
        for bad in ["35", "53", "", "0x2e", "-1", "300"] {
            assert_eq!(parse_sim_phys_bits(bad), None, "{bad}");
        }
    }

    #[test]
    fn ramdisk_round_trip() {
        let p = ramdisk_placeholder();
        assert_eq!(cmdline_from_ramdisk(&p), b"");
        let r = ramdisk_for("cvmprobe.filter=io cvmprobe.mode=empty").unwrap();
        assert_eq!(
            cmdline_from_ramdisk(&r),
            b"cvmprobe.filter=io cvmprobe.mode=empty"
        );
        assert!(ramdisk_for(&"x".repeat(RAMDISK_LEN)).is_none());
        assert!(ramdisk_for("a\0b").is_none());
    }

    #[test]
    fn inject() {
        assert_eq!(
            Inject::parse("panic"),
            Some(Inject {
                fault: Fault::Panic,
                at: None
            })
        );
        assert_eq!(
            Inject::parse("hang@mmio.u8_roundtrip"),
            Some(Inject {
                fault: Fault::Hang,
                at: Some(("mmio", "u8_roundtrip"))
            })
        );
        assert_eq!(
            Inject::parse("no-width-check"),
            Some(Inject {
                fault: Fault::NoWidthCheck,
                at: None
            })
        );
        for f in Fault::ALL {
            assert_eq!(Inject::parse(f.name()).map(|i| i.fault), Some(f));
        }
        assert_eq!(Inject::parse("hang@mmio"), None);
        assert_eq!(Inject::parse("explode"), None);
    }

    #[test]
    fn brand() {
        let mut b = [0u8; 48];
        b[..13].copy_from_slice(b"cvmprobe 1234");
        assert!(brand_matches("cvmprobe_1234", &b));
        assert!(!brand_matches("cvmprobe_123", &b));
        assert!(!brand_matches("cvmprobe_12345", &b));
    }
}
