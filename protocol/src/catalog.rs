//! Every suite and case the guest runs, in run order.
//!
//! The guest's test tables (`kernel/src/tests/`) pair each [`CaseSpec`] here with the function
//! that runs it, and a compile-time check in the kernel makes the two lists agree name for
//! name. The host reads this catalog to list cases without booting (`cvmprobe list`), to know
//! which cases a run must report (a case that never reports is a failure), and to apply the
//! same [`Filter`] the guest applies.

use crate::conformance;
use crate::platform::{PlatformKind, Platforms};

/// One test case: what it checks, where it runs, and where its expectation comes from.
#[derive(Debug)]
pub struct CaseSpec {
    /// Name inside its suite (KTAP test name), `[a-z0-9_]+`.
    pub name: &'static str,
    /// Platforms the case is meant for; elsewhere it reports `# SKIP`.
    pub platforms: Platforms,
    /// What the case needs from its environment besides its platform; where one is missing
    /// it reports `# SKIP` with that need's [`Need::reason`], and nowhere else.
    pub needs: Needs,
    /// One sentence: what the case checks.
    pub doc: &'static str,
    /// Where the expected answer comes from (spec section, device source, KVM function).
    pub source: &'static str,
}

impl CaseSpec {
    /// The case with `needs` (the catalog's tables are built with [`case`], which needs
    /// nothing).
    pub const fn needs(mut self, needs: &[Need]) -> Self {
        self.needs = Needs::of(needs);
        self
    }
}

/// Something a case needs from the environment the host set up, besides its platform. A
/// case skips only for a need of its own that is missing, with the need's [`Need::reason`]
/// as the skip reason; the host knows what it set up, so a case that skips although the
/// host provided everything it needs fails the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Need {
    /// A test device with pc-testdev semantics: QEMU's `-device pc-testdev` or the built-in
    /// VMM's test device ([`crate::testdev`]).
    TestDevice = 0,
    /// The built-in VMM's test device itself: its host-chosen values and its case register.
    BuiltinTestDevice = 1,
    /// The built-in VMM's memslot scenario ([`crate::memslot::CONTROL_PORT`]).
    MemslotControl = 2,
    /// The identity map the memslot page is reached through: the kernel's own from a PVH boot,
    /// or the firmware's that cvmprobe.efi hands over (`--boot efi|esp|efi-handoff`); not the
    /// bootloader's (`--boot bios`).
    IdentityMap = 3,
    /// QEMU's `edu` PCI device on a machine with a PCI bus.
    EduPci = 4,
    /// A CPUID brand string chosen by the host (`cvmprobe.brand=`).
    Brand = 5,
    /// The platform the host set up, named on the command line (`cvmprobe.platform=`).
    PlatformKey = 6,
    /// A local APIC with its timer.
    LocalApic = 7,
    /// RDMSR that faults on MSRs the CPU does not implement (any accelerator but QEMU's TCG).
    ExactMsrs = 8,
}

impl Need {
    /// Every need.
    pub const ALL: [Need; 9] = [
        Self::TestDevice,
        Self::BuiltinTestDevice,
        Self::MemslotControl,
        Self::IdentityMap,
        Self::EduPci,
        Self::Brand,
        Self::PlatformKey,
        Self::LocalApic,
        Self::ExactMsrs,
    ];

    /// The `# SKIP` reason a case reports when this need is missing (the guest prints it,
    /// the host compares it).
    pub const fn reason(self) -> &'static str {
        match self {
            Self::TestDevice => {
                "no test device (QEMU: -device pc-testdev; built-in VMM: its test device)"
            }
            Self::BuiltinTestDevice => {
                "needs the built-in VMM's test device: the host chooses its values per run"
            }
            Self::MemslotControl => {
                "no memslot control port: the host does not run the memslot scenario"
            }
            Self::IdentityMap => {
                "the memslot page needs an identity map (PVH boot or cvmprobe.efi's hand-off)"
            }
            Self::EduPci => "no edu PCI device (QEMU: -device edu on a machine with a PCI bus)",
            Self::Brand => {
                "the host chose no brand string (no cvmprobe.brand= on the command line)"
            }
            Self::PlatformKey => {
                "the host named no platform (no cvmprobe.platform= on the command line)"
            }
            Self::LocalApic => "no local APIC (CPUID.1:EDX[9] clear)",
            Self::ExactMsrs => {
                "QEMU TCG's RDMSR returns 0 for MSRs it does not model (helper_rdmsr)"
            }
        }
    }

    /// Short name for listings (`cvmprobe list`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::TestDevice => "test-device",
            Self::BuiltinTestDevice => "builtin-test-device",
            Self::MemslotControl => "memslot-control",
            Self::IdentityMap => "identity-map",
            Self::EduPci => "edu-pci",
            Self::Brand => "brand",
            Self::PlatformKey => "platform-key",
            Self::LocalApic => "local-apic",
            Self::ExactMsrs => "exact-msrs",
        }
    }

    /// The need whose [`Self::reason`] is `reason`.
    pub fn from_reason(reason: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.reason() == reason)
    }

    const fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// A set of [`Need`]s: what a case needs, or what an environment provides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Needs(u16);

impl Needs {
    /// The empty set.
    pub const NONE: Self = Self(0);
    /// Every need.
    pub const ALL: Self = Self::of(&Need::ALL);

    /// The set of `needs`.
    pub const fn of(needs: &[Need]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < needs.len() {
            bits |= needs[i].bit();
            i += 1;
        }
        Self(bits)
    }

    /// Whether `n` is in the set.
    pub const fn contains(self, n: Need) -> bool {
        self.0 & n.bit() != 0
    }

    /// The set with `n` added.
    pub const fn with(self, n: Need) -> Self {
        Self(self.0 | n.bit())
    }

    /// The needs in `self` that `provided` lacks.
    pub const fn missing_from(self, provided: Needs) -> Self {
        Self(self.0 & !provided.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The needs in the set, in [`Need::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Need> {
        Need::ALL.into_iter().filter(move |n| self.contains(*n))
    }
}

/// A group of cases printed as one KTAP subtest block.
#[derive(Debug)]
pub struct SuiteSpec {
    /// Suite name (KTAP subtest name), `[a-z0-9_]+`.
    pub name: &'static str,
    /// One sentence: what the suite covers.
    pub doc: &'static str,
    /// The cases, in run order.
    pub cases: &'static [CaseSpec],
}

const fn case(
    name: &'static str,
    platforms: Platforms,
    doc: &'static str,
    source: &'static str,
) -> CaseSpec {
    CaseSpec {
        name,
        platforms,
        needs: Needs::NONE,
        doc,
        source,
    }
}

const ALL: Platforms = Platforms::ALL;

/// Port IO through the backend: `pio_read::<T>` / `pio_write` at 1, 2 and 4 bytes.
pub static IO: SuiteSpec = SuiteSpec {
    name: "io",
    doc: "port IO of 1, 2 and 4 bytes against a device with known answers",
    cases: &[
        case(
            "u32_roundtrip",
            ALL,
            "a 4-byte OUT to a data register reads back with a 4-byte IN",
            "QEMU hw/misc/pc-testdev.c test_ioport_read/write (port 0xe0)",
        )
        .needs(&[Need::TestDevice]),
        case(
            "u16_lanes",
            ALL,
            "2-byte accesses to each half of a 4-byte register hit the right byte lanes",
            "QEMU hw/misc/pc-testdev.c test_ioport_read/write (start_bit = (addr & 3) * 8)",
        )
        .needs(&[Need::TestDevice]),
        case(
            "u8_lanes",
            ALL,
            "1-byte accesses to each of the four byte lanes of a 4-byte register",
            "QEMU hw/misc/pc-testdev.c test_ioport_read/write",
        )
        .needs(&[Need::TestDevice]),
        case(
            "split_register",
            ALL,
            "a register implemented byte-wise answers a 4-byte access as four 1-byte accesses",
            "QEMU hw/misc/pc-testdev.c test_ioport_byte_ops (port 0xe8, impl.max_access_size = 1)",
        )
        .needs(&[Need::TestDevice]),
        case(
            "unassigned_port",
            ALL,
            "reads of a port no device claims return all ones at 1, 2 and 4 bytes",
            "QEMU system/ioport.c unassigned_io_read; PC convention for floating ISA lines",
        ),
        case(
            "host_values",
            ALL,
            "1-, 2- and 4-byte reads of a register answer the values the host chose for this run",
            "protocol::testdev::host_value (built-in VMM test device; skipped under QEMU)",
        )
        .needs(&[Need::BuiltinTestDevice]),
    ],
};

/// MMIO through the backend: `mmio_read::<T>` / `mmio_write` at 1, 2, 4 and 8 bytes.
pub static MMIO: SuiteSpec = SuiteSpec {
    name: "mmio",
    doc: "MMIO reads and writes of 1, 2, 4 and 8 bytes, read-after-write and byte lanes",
    cases: &[
        case(
            "u8_roundtrip",
            ALL,
            "1-byte MMIO writes read back at several offsets",
            "QEMU hw/misc/pc-testdev.c test_iomem_read/write (0xff000000, memory-like)",
        )
        .needs(&[Need::TestDevice]),
        case(
            "u16_roundtrip",
            ALL,
            "2-byte MMIO writes read back",
            "QEMU hw/misc/pc-testdev.c test_iomem_read/write",
        )
        .needs(&[Need::TestDevice]),
        case(
            "u32_roundtrip",
            ALL,
            "4-byte MMIO writes read back",
            "QEMU hw/misc/pc-testdev.c test_iomem_read/write",
        )
        .needs(&[Need::TestDevice]),
        case(
            "u64_roundtrip",
            ALL,
            "8-byte MMIO writes read back (QEMU may split them into two 4-byte accesses)",
            "QEMU hw/misc/pc-testdev.c test_iomem_read/write; system/memory.c access_with_adjusted_size",
        )
        .needs(&[Need::TestDevice]),
        case(
            "byte_lanes",
            ALL,
            "an 8-byte write read back as bytes, halves and words lands in little-endian lanes",
            "Intel SDM vol. 1 1.3.1 (little-endian byte order)",
        )
        .needs(&[Need::TestDevice]),
        case(
            "narrow_write_merge",
            ALL,
            "1- and 2-byte writes into an 8-byte value change only their lanes",
            "QEMU hw/misc/pc-testdev.c test_iomem_write (memcpy of len bytes)",
        )
        .needs(&[Need::TestDevice]),
        case(
            "host_values",
            ALL,
            "1-, 2-, 4- and 8-byte reads of registers answer the values the host chose for this run",
            "protocol::testdev::host_value (built-in VMM test device; skipped under QEMU)",
        )
        .needs(&[Need::BuiltinTestDevice]),
        case(
            "pci_edu",
            ALL,
            "the QEMU edu PCI device found through config space answers its ID and liveness registers",
            "QEMU docs/specs/edu.rst (0x00 = 0x010000ed, 0x04 reads back the inverse)",
        )
        .needs(&[Need::EduPci]),
    ],
};

/// CPUID through the backend.
pub static CPUID: SuiteSpec = SuiteSpec {
    name: "cpuid",
    doc: "CPUID leaves whose answers the host chose or the architecture fixes",
    cases: &[
        case(
            "max_leaves",
            ALL,
            "leaf 0 reports a max basic leaf >= 1 and 0x80000000 a max extended leaf >= 0x80000004",
            "Intel SDM vol. 2A CPUID; AMD APM vol. 3 E.3.1",
        ),
        case(
            "hypervisor_bit",
            ALL,
            "leaf 1 ECX bit 31 (hypervisor present) is set",
            "Intel SDM vol. 2A CPUID leaf 1 ECX[31]; KVM/QEMU always set it",
        ),
        case(
            "brand_string",
            ALL,
            "leaves 0x80000002-4 spell the brand string the host chose for this run",
            "Intel SDM vol. 2A CPUID 0x80000002-4; value from cvmprobe.brand= (QEMU -cpu model-id)",
        )
        .needs(&[Need::Brand]),
        case(
            "leaf1_apic_id",
            ALL,
            "leaf 1 EBX[31:24] (initial APIC ID) is 0 on the boot vCPU",
            "Intel SDM vol. 2A CPUID leaf 1 EBX[31:24]",
        ),
    ],
};

/// RDMSR/WRMSR through the backend, with fault fixups.
pub static MSR: SuiteSpec = SuiteSpec {
    name: "msr",
    doc: "RDMSR/WRMSR of known MSRs, a write read back, and a missing MSR faulting cleanly",
    cases: &[
        case(
            "efer_long_mode",
            ALL,
            "IA32_EFER has LME and LMA set in 64-bit mode; TDX: KVM refuses a write (read-only for a TD)",
            "Intel SDM vol. 3A 2.2.1 (IA32_EFER bits 8, 10); KVM tdx_is_read_only_msr()",
        ),
        case(
            "write_read_back",
            ALL,
            "a value written to IA32_KERNEL_GS_BASE reads back unchanged; TDX: KVM refuses both (INVALID_OPERAND, a TD has it natively)",
            "Intel SDM vol. 4 table 2-2 (0xC0000102); KVM tdx_has_emulated_msr()",
        ),
        case(
            "tsc_advances",
            ALL,
            "IA32_TIME_STAMP_COUNTER read twice increases; TDX: KVM refuses it (INVALID_OPERAND) and RDTSC advances",
            "Intel SDM vol. 3B 18.17 (MSR 0x10); KVM tdx_has_emulated_msr()",
        )
        .needs(&[Need::ExactMsrs]),
        case(
            "apic_base",
            ALL,
            "IA32_APIC_BASE holds the default base 0xfee00000 with the BSP flag set; TDX: x2APIC mode (EN|EXTD) and a write refused",
            "Intel SDM vol. 3A 11.4.4 (MSR 0x1B), 11.12.1 (EXTD); KVM tdx_is_read_only_msr()",
        ),
        case(
            "missing_msr_faults",
            ALL,
            "RDMSR and WRMSR of an MSR no one implements fault with #GP and return an error",
            "Intel SDM vol. 2B RDMSR (#GP(0) if ECX is reserved or unimplemented)",
        )
        .needs(&[Need::ExactMsrs]),
    ],
};

/// HLT through the backend, woken by a timer interrupt.
pub static HALT: SuiteSpec = SuiteSpec {
    name: "halt",
    doc: "HLT returns when a timer interrupt arrives",
    cases: &[
        case(
            "timer_wakeup",
            ALL,
            "a one-shot timer interrupt wakes a halted vCPU and its handler runs once (TDX: the x2APIC, through MSRs)",
            "Intel SDM vol. 2A HLT; vol. 3A 11.5.4 (APIC timer), 11.12 (x2APIC)",
        )
        .needs(&[Need::LocalApic]),
        case(
            "repeated_wakeups",
            ALL,
            "three one-shot timers wake three HLTs, one interrupt each",
            "Intel SDM vol. 3A 11.5.4",
        )
        .needs(&[Need::LocalApic]),
    ],
};

/// Where the memslot cases' expectations come from.
const MEMSLOT_SOURCE: &str = "KVM selftests set_memory_region_test.c; Linux arch/x86/coco/tdx/tdx.c handle_mmio(), arch/x86/coco/sev/vc-handle.c vc_handle_mmio(); Intel SDM vol. 2B MOV/MOVZX/MOVSX";

/// What every memslot case needs: the built-in VMM's test device (to announce the case), its
/// memslot control port, and the identity map the page is reached through.
const MEMSLOT_NEEDS: [Need; 3] = [
    Need::BuiltinTestDevice,
    Need::MemslotControl,
    Need::IdentityMap,
];

/// A memslot case.
const fn memslot(name: &'static str, doc: &'static str) -> CaseSpec {
    case(name, ALL, doc, MEMSLOT_SOURCE).needs(&MEMSLOT_NEEDS)
}

/// The host deletes the memslot under a page the guest is using and re-creates it
/// ([`crate::memslot`]): every case is one RAM -> emulated MMIO -> RAM cycle with one
/// instruction form; on TDX and SEV-ES the MMIO arrives as #VE / #VC and is emulated.
pub static MEMSLOT: SuiteSpec = SuiteSpec {
    name: "memslot",
    doc: "memslot deleted under a running vCPU: RAM -> emulated MMIO (#VE/#VC on TDX/SEV-ES) -> RAM, per instruction form",
    cases: &[
        memslot("load_u8", "mov al, [m8]: the upper 56 bits of RAX are kept"),
        memslot(
            "load_u16",
            "mov ax, [m16]: the upper 48 bits of RAX are kept",
        ),
        memslot("load_u32", "mov r9d, [m32+disp8]: R9 is zero-extended"),
        memslot("load_u64", "mov r10, [m64+disp8]"),
        memslot("load_high_u8", "mov ah, [m8]: bits 15:8 of RAX only"),
        memslot("movzx_u8", "movzx eax, byte [m]: zero-extended"),
        memslot("movzx_u16", "movzx r11d, word [m]: zero-extended"),
        memslot("movsx_u8", "movsx rax, byte [m]: sign-extended to 64 bits"),
        memslot(
            "movsx_u16",
            "movsx eax, word [m]: sign-extended to 32 bits, upper half cleared",
        ),
        memslot("movsxd", "movsxd rax, dword [m]: sign-extended to 64 bits"),
        memslot(
            "store_u8",
            "mov [m8], cl while the page is MMIO: one host write of the agreed value, RAM unchanged",
        ),
        memslot("store_u16", "mov [m16], dx while the page is MMIO"),
        memslot(
            "store_u32",
            "mov [rsi+rdx*4], r8d (SIB) while the page is MMIO",
        ),
        memslot("store_u64", "mov [m64], r12 while the page is MMIO"),
    ],
};

/// Platform detection and the backend's own parameters.
pub static PLATFORM: SuiteSpec = SuiteSpec {
    name: "platform",
    doc: "platform detection, the TDX shared bit, the SEV-ES C-bit and GHCB page",
    cases: &[
        case(
            "detected",
            ALL,
            "the platform the guest detected is the one the host set up (cvmprobe.platform=)",
            "GHCI 1.5 2.4.5 (CPUID 0x21 \"IntelTDX    \"); AMD APM vol. 2 15.34.10 (SEV_STATUS bit 1)",
        )
        .needs(&[Need::PlatformKey]),
        case(
            "tdx_vp_info",
            Platforms::TDX,
            "TDG.VP.INFO reports GPAW 48 or 52, the shared bit is GPAW-1, and the vCPU index is below the vCPU count",
            "TDX module ABI spec, TDG.VP.INFO; GHCI 1.5 2.4.2",
        ),
        case(
            "sev_es_cbit",
            Platforms::SEV_ES,
            "the C-bit from the MSR protocol equals CPUID 0x8000001F EBX[5:0] read through the GHCB page",
            "GHCB spec 2.x 2.3.1 (SEV information); AMD APM vol. 3 E.4.17",
        ),
        case(
            "sev_es_ghcb_shared",
            Platforms::SEV_ES,
            "the guest's page tables map the GHCB page shared (C-bit clear) and its own RAM private",
            "GHCB spec 2.x 2.2 (the GHCB must be mapped unencrypted); AMD APM vol. 2 15.34.5",
        ),
    ],
};

/// Raw TDG.VP.VMCALL requests, valid and invalid, and the host's answers: the executed TDX
/// cases of [`crate::conformance::CASES`], in table order.
pub static GHCI_RAW: SuiteSpec = SuiteSpec {
    name: conformance::Case::SUITE_TDX,
    doc: "raw TDG.VP.VMCALL requests (GHCI), valid and invalid, checked against KVM's answers",
    cases: &conformance::catalog_cases::<{ conformance::executed_count(PlatformKind::Tdx) }>(
        PlatformKind::Tdx,
    ),
};

/// Raw GHCB MSR-protocol and GHCB-page requests, valid and invalid: the executed SEV-ES cases
/// of [`crate::conformance::CASES`], in table order.
pub static GHCB_RAW: SuiteSpec = SuiteSpec {
    name: conformance::Case::SUITE_SEV_ES,
    doc: "raw GHCB requests (MSR protocol and page), valid and invalid, checked against KVM's answers",
    cases: &conformance::catalog_cases::<{ conformance::executed_count(PlatformKind::SevEs) }>(
        PlatformKind::SevEs,
    ),
};

/// Every suite, in run order.
pub static SUITES: &[&SuiteSpec] = &[
    &PLATFORM, &IO, &MMIO, &CPUID, &MSR, &HALT, &GHCI_RAW, &GHCB_RAW, &MEMSLOT,
];

/// Finds a suite by name.
pub fn suite(name: &str) -> Option<&'static SuiteSpec> {
    SUITES.iter().copied().find(|s| s.name == name)
}

/// Case selection: a comma-separated list of patterns, each `suite` or `suite.case`, where
/// `*` matches any run of characters (`mmio,io.*`, `*.u8_*`). An empty filter selects all.
#[derive(Clone, Copy, Debug)]
pub struct Filter<'a> {
    patterns: &'a str,
}

/// Why a filter string was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterError<'a> {
    /// A pattern contains a character outside `[a-z0-9_.*-]`.
    BadCharacter(&'a str),
    /// A pattern has more than one `.`.
    TooManyDots(&'a str),
    /// A pattern selects no case of the catalog (probably a typo).
    MatchesNothing(&'a str),
}

impl<'a> Filter<'a> {
    /// A filter that selects everything.
    pub const ALL: Filter<'static> = Filter { patterns: "" };

    /// Parses and checks a filter string against the catalog.
    pub fn parse(patterns: &'a str) -> Result<Self, FilterError<'a>> {
        let f = Filter { patterns };
        for p in f.patterns() {
            if !p
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.*-".contains(&b))
            {
                return Err(FilterError::BadCharacter(p));
            }
            if p.bytes().filter(|&b| b == b'.').count() > 1 {
                return Err(FilterError::TooManyDots(p));
            }
            let hits = SUITES
                .iter()
                .flat_map(|s| s.cases.iter().map(move |c| (s.name, c.name)))
                .any(|(s, c)| pattern_selects(p, s, c));
            if !hits {
                return Err(FilterError::MatchesNothing(p));
            }
        }
        Ok(f)
    }

    fn patterns(&self) -> impl Iterator<Item = &'a str> {
        self.patterns
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }

    /// Whether the filter selects case `case` of suite `suite`.
    pub fn selects(&self, suite: &str, case: &str) -> bool {
        if self.patterns.is_empty() {
            return true;
        }
        let mut any = false;
        for p in self.patterns() {
            any = true;
            if pattern_selects(p, suite, case) {
                return true;
            }
        }
        !any
    }

    /// Whether the filter selects at least one case of `suite`.
    pub fn selects_suite(&self, suite: &SuiteSpec) -> bool {
        self.patterns.is_empty() || suite.cases.iter().any(|c| self.selects(suite.name, c.name))
    }

    /// The filter text as given.
    pub fn as_str(&self) -> &'a str {
        self.patterns
    }
}

fn pattern_selects(pattern: &str, suite: &str, case: &str) -> bool {
    match pattern.split_once('.') {
        Some((ps, pc)) => {
            glob(ps.as_bytes(), suite.as_bytes()) && glob(pc.as_bytes(), case.as_bytes())
        }
        None => glob(pattern.as_bytes(), suite.as_bytes()),
    }
}

/// `*`-only glob match (iterative, no allocation, linear backtracking on the last star).
fn glob(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pat.len() && pat[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// What a run must report for one case, given its platform and what its environment provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The environment provides everything the case needs: it must run and report ok or not
    /// ok (a skip, or a `not ok # TODO`, is a failure).
    Runs,
    /// The environment lacks these needs of the case: it may skip, with one of their
    /// [`Need::reason`]s.
    MaySkip(Needs),
    /// The case is not meant for the platform: the guest reports `# SKIP`.
    SkippedForPlatform,
}

impl CaseSpec {
    /// What a run on `platform` in an environment that provides `provided` must report.
    pub const fn expected(&self, platform: PlatformKind, provided: Needs) -> Expected {
        if !self.platforms.contains(platform) {
            return Expected::SkippedForPlatform;
        }
        let missing = self.needs.missing_from(provided);
        if missing.is_empty() {
            Expected::Runs
        } else {
            Expected::MaySkip(missing)
        }
    }
}

/// The cases a run must report, in order: `(suite, case, expected)`, filtered, for a run on
/// `platform` in an environment that provides `provided`.
pub fn planned<'f>(
    platform: PlatformKind,
    provided: Needs,
    filter: Filter<'f>,
) -> impl Iterator<Item = (&'static SuiteSpec, &'static CaseSpec, Expected)> + 'f {
    SUITES.iter().copied().flat_map(move |s| {
        s.cases
            .iter()
            .filter(move |c| filter.selects(s.name, c.name))
            .map(move |c| (s, c, c.expected(platform, provided)))
    })
}

/// Whether `name` is a valid suite or case name (`[a-z0-9_]+`).
pub const fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_') {
            return false;
        }
        i += 1;
    }
    true
}

/// `const` string equality (for the kernel's compile-time table check).
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for s in SUITES {
            assert!(is_valid_name(s.name), "{}", s.name);
            assert!(seen.insert(s.name), "duplicate suite {}", s.name);
            let mut cases = std::collections::HashSet::new();
            for c in s.cases {
                assert!(is_valid_name(c.name), "{}.{}", s.name, c.name);
                assert!(cases.insert(c.name), "duplicate case {}.{}", s.name, c.name);
                assert!(!c.doc.is_empty() && !c.source.is_empty());
            }
        }
    }

    #[test]
    fn glob_matches() {
        assert!(glob(b"*", b""));
        assert!(glob(b"u8_*", b"u8_lanes"));
        assert!(glob(b"*_lanes", b"u16_lanes"));
        assert!(glob(b"*o*", b"io"));
        assert!(!glob(b"u8", b"u8_lanes"));
        assert!(!glob(b"*x", b"io"));
        assert!(glob(b"a*b*c", b"aXbYbZc"));
    }

    #[test]
    fn filter_selects() {
        let f = Filter::parse("mmio,io.u8_*").unwrap();
        assert!(f.selects("mmio", "u64_roundtrip"));
        assert!(f.selects("io", "u8_lanes"));
        assert!(!f.selects("io", "u16_lanes"));
        assert!(!f.selects("cpuid", "max_leaves"));
        assert!(Filter::ALL.selects("cpuid", "max_leaves"));
        assert!(
            Filter::parse(" ,  ")
                .unwrap()
                .selects("halt", "timer_wakeup")
        );
    }

    #[test]
    fn filter_rejects() {
        assert!(matches!(
            Filter::parse("nosuch"),
            Err(FilterError::MatchesNothing("nosuch"))
        ));
        assert!(matches!(
            Filter::parse("io.a.b"),
            Err(FilterError::TooManyDots(_))
        ));
        assert!(matches!(
            Filter::parse("IO"),
            Err(FilterError::BadCharacter(_))
        ));
    }

    #[test]
    fn planned_counts() {
        let all: usize = SUITES.iter().map(|s| s.cases.len()).sum();
        let everything = Needs::ALL;
        assert_eq!(
            planned(PlatformKind::Legacy, everything, Filter::ALL).count(),
            all
        );
        let f = Filter::parse("io").unwrap();
        assert_eq!(
            planned(PlatformKind::Legacy, everything, f).count(),
            IO.cases.len()
        );
    }

    #[test]
    fn a_case_may_skip_only_for_a_missing_need_of_its_own() {
        let edu = MMIO.cases.iter().find(|c| c.name == "pci_edu").unwrap();
        let legacy = PlatformKind::Legacy;
        assert_eq!(edu.expected(legacy, Needs::ALL), Expected::Runs);
        let no_edu = Needs::of(&[Need::TestDevice, Need::Brand]);
        assert_eq!(
            edu.expected(legacy, no_edu),
            Expected::MaySkip(Needs::of(&[Need::EduPci]))
        );
        let vp_info = PLATFORM
            .cases
            .iter()
            .find(|c| c.name == "tdx_vp_info")
            .unwrap();
        assert_eq!(
            vp_info.expected(legacy, Needs::ALL),
            Expected::SkippedForPlatform
        );
        // Cases that need nothing must run wherever their platform is.
        let unassigned = IO
            .cases
            .iter()
            .find(|c| c.name == "unassigned_port")
            .unwrap();
        assert_eq!(unassigned.expected(legacy, Needs::NONE), Expected::Runs);
    }

    #[test]
    fn need_reasons_are_distinct_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for n in Need::ALL {
            assert!(seen.insert(n.reason()), "{n:?}");
            assert_eq!(Need::from_reason(n.reason()), Some(n));
            assert!(Needs::ALL.contains(n));
            assert!(!Needs::NONE.contains(n));
        }
        assert_eq!(Needs::ALL.iter().count(), Need::ALL.len());
    }
}
