//! Vectors for the GHCB model: PROTOCOLS.md's rules, each valid and invalid, both GHCB
//! versions where KVM differs, and the guest's own request shapes
//! (`guest/src/platform/sev_es.rs`).

use super::*;
use crate::sim::{FlatMemory, GuestMemory, HostRequest, HostResult, SevTermCause, SimError, Stop};
use protocol::ghcb::{self, MsrRequest, MsrResponse, error, exit, ioio, msr, off, result};

/// GPA of the GHCB page in the test memory.
const GHCB: u64 = 0x1_0000;
/// GPA of the shared buffer.
const BUF: u64 = GHCB + off::SHARED_BUFFER as u64;
/// RAM: 0..0x40000.
const RAM: usize = 0x4_0000;

fn cfg_v(version: u16) -> GhcbConfig {
    GhcbConfig {
        ghcb_version: version,
        ..GhcbConfig::default()
    }
}

struct Env {
    m: GhcbModel,
    mem: FlatMemory,
}

impl Env {
    fn new(cfg: GhcbConfig) -> Self {
        Self {
            m: GhcbModel::new(cfg),
            mem: FlatMemory::new(0, RAM),
        }
    }

    fn v2() -> Self {
        Self::new(GhcbConfig::default())
    }

    fn v1() -> Self {
        Self::new(cfg_v(1))
    }

    /// `Request::new()`: zero the page, set the protocol version.
    fn zero(&mut self) -> &mut Self {
        self.mem.write(GHCB, &[0u8; PAGE_SIZE as usize]).unwrap();
        self.mem
            .write(GHCB + off::PROTOCOL_VERSION as u64, &2u16.to_le_bytes())
            .unwrap();
        self
    }

    fn set_unmarked(&mut self, o: usize, v: u64) -> &mut Self {
        self.mem.write(GHCB + o as u64, &v.to_le_bytes()).unwrap();
        self
    }

    fn mark(&mut self, o: usize) -> &mut Self {
        let bit = ghcb::valid_bit(o);
        let at = GHCB + (off::VALID_BITMAP + bit / 8) as u64;
        let mut b = [0u8];
        self.mem.read(at, &mut b).unwrap();
        b[0] |= 1 << (bit % 8);
        self.mem.write(at, &b).unwrap();
        self
    }

    /// `Request::set()`: write and mark valid.
    fn set(&mut self, o: usize, v: u64) -> &mut Self {
        self.set_unmarked(o, v).mark(o)
    }

    /// The guest's `standard()`: exit code and both infos, marked valid.
    fn standard(&mut self, code: u64, info1: u64, info2: u64) -> &mut Self {
        self.zero()
            .set(off::SW_EXIT_CODE, code)
            .set(off::SW_EXIT_INFO_1, info1)
            .set(off::SW_EXIT_INFO_2, info2)
    }

    fn buffer(&mut self, at: u64, data: &[u8]) -> &mut Self {
        self.mem.write(at, data).unwrap();
        self
    }

    /// `Request::call()`: GHCB GPA into the MSR, VMGEXIT.
    fn call(&mut self) -> GhcbStep {
        self.m.msr_write(ghcb::MSR_GHCB, GHCB).unwrap();
        self.m.vmgexit(&mut self.mem)
    }

    fn complete(&mut self, r: HostResult) -> GhcbStep {
        self.m.complete(r, &mut self.mem).expect("result fits")
    }

    fn get(&self, o: usize) -> u64 {
        let mut b = [0u8; 8];
        self.mem.read(GHCB + o as u64, &mut b).unwrap();
        u64::from_le_bytes(b)
    }

    fn valid(&self, o: usize) -> bool {
        let bit = ghcb::valid_bit(o);
        let mut b = [0u8];
        self.mem
            .read(GHCB + (off::VALID_BITMAP + bit / 8) as u64, &mut b)
            .unwrap();
        b[0] & (1 << (bit % 8)) != 0
    }

    fn bitmap(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        self.mem
            .read(GHCB + off::VALID_BITMAP as u64, &mut b)
            .unwrap();
        b
    }

    fn bytes(&self, at: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.mem.read(at, &mut b).unwrap();
        b
    }

    /// SW_EXITINFO1/2 as the guest reads them.
    fn resp(&self) -> (u64, u64) {
        (self.get(off::SW_EXIT_INFO_1), self.get(off::SW_EXIT_INFO_2))
    }

    /// A request KVM answers without the VMM.
    #[track_caller]
    fn answered(&mut self) -> (u64, u64) {
        assert_eq!(self.call(), GhcbStep::Done);
        self.resp()
    }

    /// A request KVM refuses with SW_EXITINFO1 = 2.
    #[track_caller]
    fn refused(&mut self) -> u64 {
        let (i1, i2) = self.answered();
        assert_eq!(i1, result::ERROR, "SW_EXITINFO1");
        i2
    }

    #[track_caller]
    fn host(&mut self) -> HostRequest {
        match self.call() {
            GhcbStep::Host(r) => r,
            other => panic!("expected a host request, got {other:?}"),
        }
    }
}

/// The bitmap KVM leaves: SW_EXITINFO1/2 and RAX..RDX, nothing else.
fn kvm_bitmap() -> [u8; 16] {
    let mut b = [0u8; 16];
    for o in [
        off::SW_EXIT_INFO_1,
        off::SW_EXIT_INFO_2,
        off::RAX,
        off::RBX,
        off::RCX,
        off::RDX,
    ] {
        let bit = ghcb::valid_bit(o);
        b[bit / 8] |= 1 << (bit % 8);
    }
    b
}

fn ioio_info(port: u16, size_bits: u64, input: bool) -> u64 {
    (u64::from(port) << ioio::PORT_SHIFT)
        | size_bits
        | ioio::A64
        | if input { ioio::TYPE_IN } else { 0 }
}

// ----- MSRs and the MSR protocol -------------------------------------------------------

#[test]
fn msr_reset_value_and_sev_status() {
    let m = GhcbModel::new(GhcbConfig::default());
    assert_eq!(m.ghcb_msr(), 0x0002_0001_2f00_0001);
    assert_eq!(m.msr_read(ghcb::MSR_GHCB), Ok(0x0002_0001_2f00_0001));
    assert_eq!(
        m.msr_read(ghcb::MSR_SEV_STATUS),
        Ok(ghcb::SEV_STATUS_SEV | ghcb::SEV_STATUS_SEV_ES)
    );
    assert_eq!(m.msr_read(0x1b), Err(MsrError::NotOwned));
    let mut m = m;
    assert_eq!(m.msr_write(ghcb::MSR_SEV_STATUS, 0), Err(MsrError::Gp));
    assert_eq!(m.msr_write(0x1b, 0), Err(MsrError::NotOwned));
    assert_eq!(m.msr_write(ghcb::MSR_GHCB, 0x1234), Ok(()));
    assert_eq!(m.ghcb_msr(), 0x1234);
    assert_eq!(GhcbModel::new(cfg_v(1)).ghcb_msr(), 0x0001_0001_2f00_0001);
}

fn msr_call(m: &mut GhcbModel, request: u64) -> GhcbStep {
    let mut mem = FlatMemory::new(0, 0x1000);
    m.msr_write(ghcb::MSR_GHCB, request).unwrap();
    m.vmgexit(&mut mem)
}

#[test]
fn msr_protocol_sev_info() {
    for (version, want) in [(2, 0x0002_0001_2f00_0001), (1, 0x0001_0001_2f00_0001)] {
        let mut m = GhcbModel::new(cfg_v(version));
        assert_eq!(msr_call(&mut m, MsrRequest::SevInfo.into()), GhcbStep::Done);
        assert_eq!(m.ghcb_msr(), want);
        assert_eq!(
            MsrResponse::decode(m.ghcb_msr()),
            MsrResponse::SevInfo {
                max: version,
                min: 1,
                cbit: 47
            }
        );
    }
}

#[test]
fn msr_protocol_cpuid() {
    let mut m = GhcbModel::new(GhcbConfig::default());
    let regs = [0x1_000b, 0x0000_012f, 0, 0];
    // EAX: the answer is a clean 0x005 response.
    let req = u64::from(MsrRequest::Cpuid {
        function: ghcb::CPUID_SEV_LEAF,
        register: ghcb::CpuidReg::Eax,
    });
    assert_eq!(
        msr_call(&mut m, req),
        GhcbStep::Host(HostRequest::Cpuid {
            leaf: ghcb::CPUID_SEV_LEAF,
            subleaf: 0,
            xcr0: None
        })
    );
    let mut mem = FlatMemory::new(0, 0);
    assert_eq!(
        m.complete(HostResult::Cpuid(regs), &mut mem),
        Ok(GhcbStep::Done)
    );
    assert_eq!(m.ghcb_msr(), 0x0001_000b_0000_0005);
    assert_eq!(
        MsrResponse::decode(m.ghcb_msr()),
        MsrResponse::Cpuid { value: 0x1_000b }
    );
    // EBX: KVM keeps the request's bits 31:12, so the selector (bit 30) stays set.
    let req = u64::from(MsrRequest::Cpuid {
        function: ghcb::CPUID_SEV_LEAF,
        register: ghcb::CpuidReg::Ebx,
    });
    assert_eq!(req, 0x8000_001f_4000_0004);
    msr_call(&mut m, req);
    m.complete(HostResult::Cpuid(regs), &mut mem).unwrap();
    assert_eq!(m.ghcb_msr(), 0x0000_012f_4000_0005);
    // EDX, with junk in the reserved bits 29:12: kept too.
    msr_call(&mut m, 0x8000_001f_c123_4004);
    m.complete(HostResult::Cpuid([1, 2, 3, 4]), &mut mem)
        .unwrap();
    assert_eq!(m.ghcb_msr(), 0x0000_0004_c123_4005);
}

#[test]
fn msr_protocol_hv_features() {
    let mut m = GhcbModel::new(GhcbConfig::default());
    assert_eq!(
        msr_call(&mut m, MsrRequest::HvFeatures.into()),
        GhcbStep::Done
    );
    assert_eq!(m.ghcb_msr(), 0x3081);
}

#[test]
fn msr_protocol_unknown_codes_leave_the_msr() {
    for code in [
        0x003,
        0x005,
        0x0ff,
        0x081,
        0x101,
        0xfff,
        0x1234_5678_0000_0abc,
    ] {
        let mut m = GhcbModel::new(GhcbConfig::default());
        assert_eq!(msr_call(&mut m, code), GhcbStep::Done);
        assert_eq!(m.ghcb_msr(), code, "code {code:#x}");
    }
}

#[test]
fn msr_protocol_termination() {
    let mut m = GhcbModel::new(GhcbConfig::default());
    let req = u64::from(MsrRequest::Terminate {
        set: ghcb::TERM_SET_GENERAL,
        code: ghcb::TERM_PROTOCOL_UNSUPPORTED,
    });
    assert_eq!(
        msr_call(&mut m, req),
        GhcbStep::Stop(Stop::SevTerm {
            ghcb_msr: req,
            cause: SevTermCause::Request { set: 0, code: 1 }
        })
    );
}

#[test]
fn msr_protocol_snp_only_codes() {
    for code in [msr::PREF_GPA_REQ, msr::REG_GPA_REQ, msr::PSC_REQ] {
        let req = 0x1234_5000 | code;
        let mut m = GhcbModel::new(GhcbConfig::default());
        assert_eq!(
            msr_call(&mut m, req),
            GhcbStep::Stop(Stop::SevTerm {
                ghcb_msr: req,
                cause: SevTermCause::SnpOnlyMsrRequest { code }
            })
        );
        // KVM without SNP support does not know them.
        let mut m = GhcbModel::new(GhcbConfig {
            kvm_has_snp: false,
            ..GhcbConfig::default()
        });
        assert_eq!(msr_call(&mut m, req), GhcbStep::Done);
        assert_eq!(m.ghcb_msr(), req);
    }
}

#[test]
fn msr_protocol_ap_reset_hold() {
    let mut m = GhcbModel::new(GhcbConfig::default());
    assert_eq!(
        msr_call(&mut m, msr::AP_RESET_HOLD_REQ),
        GhcbStep::Host(HostRequest::ApResetHold)
    );
    let mut mem = FlatMemory::new(0, 0);
    m.complete(HostResult::Done, &mut mem).unwrap();
    assert_eq!(m.ghcb_msr(), 0x1007);
}

// ----- The GHCB page: what KVM always does ----------------------------------------------

#[test]
fn no_ghcb_no_answer() {
    // MSR = 0: nothing.
    let mut e = Env::v2();
    e.m.msr_write(ghcb::MSR_GHCB, 0).unwrap();
    assert_eq!(e.m.vmgexit(&mut e.mem), GhcbStep::Done);
    // A GHCB GPA that is not RAM: nothing either.
    e.m.msr_write(ghcb::MSR_GHCB, 0x100_0000).unwrap();
    assert_eq!(e.m.vmgexit(&mut e.mem), GhcbStep::Done);
    assert!(e.mem.bytes.iter().all(|&b| b == 0));
}

#[test]
fn usage_is_checked_before_valid_bits() {
    let mut e = Env::v2();
    e.zero()
        .set_unmarked(off::SW_EXIT_CODE, exit::CPUID)
        .buffer(GHCB + off::GHCB_USAGE as u64, &1u32.to_le_bytes());
    assert_eq!(e.refused(), error::INVALID_USAGE);
    assert_eq!(e.bitmap(), kvm_bitmap(), "KVM's valid bits only");
    // With a valid request too.
    e.standard(exit::CPUID, 0, 0)
        .set(off::RAX, 0)
        .set(off::RCX, 0)
        .buffer(GHCB + off::GHCB_USAGE as u64, &0xffff_ffffu32.to_le_bytes());
    assert_eq!(e.refused(), error::INVALID_USAGE);
}

#[test]
fn exit_code_and_infos_must_be_valid() {
    for missing in [off::SW_EXIT_CODE, off::SW_EXIT_INFO_1, off::SW_EXIT_INFO_2] {
        let mut e = Env::v2();
        e.zero().set(off::RAX, 0).set(off::RCX, 0);
        for o in [off::SW_EXIT_CODE, off::SW_EXIT_INFO_1, off::SW_EXIT_INFO_2] {
            if o == missing {
                e.set_unmarked(o, 0);
            } else {
                e.set(o, 0);
            }
        }
        e.set_unmarked(off::SW_EXIT_CODE, exit::CPUID);
        if missing != off::SW_EXIT_CODE {
            e.mark(off::SW_EXIT_CODE);
        }
        assert_eq!(e.refused(), error::MISSING_INPUT, "missing {missing:#x}");
    }
}

#[test]
fn missing_inputs_per_exit() {
    let port_out = ioio_info(0x3f8, ioio::SZ8, false);
    let port_in = ioio_info(0x3f8, ioio::SZ8, true);
    let string = port_out | ioio::STR | ioio::REP;
    // (exit code, info1, fields marked valid, why)
    let cases: &[(u64, u64, &[usize], &str)] = &[
        (exit::CPUID, 0, &[off::RCX], "CPUID without RAX"),
        (exit::CPUID, 0, &[off::RAX], "CPUID without RCX"),
        (exit::IOIO, port_out, &[], "OUT without RAX"),
        (exit::IOIO, string, &[off::RAX], "string IO without scratch"),
        (
            exit::IOIO,
            port_in | ioio::STR,
            &[],
            "string IN without scratch",
        ),
        (exit::MSR, 0, &[], "RDMSR without RCX"),
        (exit::MSR, 1, &[off::RCX, off::RAX], "WRMSR without RDX"),
        (exit::MSR, 1, &[off::RCX, off::RDX], "WRMSR without RAX"),
        (exit::MSR, 2, &[off::RCX], "info1 = 2 is a write too"),
        (exit::MMIO_READ, 0x1000, &[], "MMIO read without scratch"),
        (exit::MMIO_WRITE, 0x1000, &[], "MMIO write without scratch"),
        (exit::VMMCALL, 0, &[off::RAX], "VMMCALL without CPL"),
        (exit::VMMCALL, 0, &[off::CPL], "VMMCALL without RAX"),
        (svm_exit::WRITE_DR7, 0, &[], "DR7 write without RAX"),
        (svm_exit::RDPMC, 0, &[], "RDPMC without RCX"),
        (
            svm_exit::MONITOR,
            0,
            &[off::RAX, off::RCX],
            "MONITOR without RDX",
        ),
        (svm_exit::MWAIT, 0, &[off::RAX], "MWAIT without RCX"),
    ];
    for &(code, info1, fields, why) in cases {
        let mut e = Env::v2();
        e.standard(code, info1, 4);
        for &o in fields {
            e.set(o, 0);
        }
        assert_eq!(e.refused(), error::MISSING_INPUT, "{why}");
    }
}

#[test]
fn cpuid_leaf_0xd_needs_xcr0() {
    let mut e = Env::v2();
    e.standard(exit::CPUID, 0, 0)
        .set(off::RAX, 0xd)
        .set(off::RCX, 1);
    assert_eq!(e.refused(), error::MISSING_INPUT);
    e.standard(exit::CPUID, 0, 0)
        .set(off::RAX, 0xd)
        .set(off::RCX, 1)
        .set(off::XCR0, 7);
    assert_eq!(
        e.host(),
        HostRequest::Cpuid {
            leaf: 0xd,
            subleaf: 1,
            xcr0: Some(7)
        }
    );
    // KVM compares the whole 64-bit RAX with 0xd, then uses EAX as the leaf.
    e.standard(exit::CPUID, 0, 0)
        .set(off::RAX, 0x1_0000_000d)
        .set(off::RCX, 0);
    assert_eq!(
        e.host(),
        HostRequest::Cpuid {
            leaf: 0xd,
            subleaf: 0,
            xcr0: None
        }
    );
}

#[test]
fn invalid_events() {
    for code in [
        exit::HLT,
        0x1234,
        0,
        exit::NPF,
        0x1_0000_0000 | exit::CPUID,
        0x8000_0006,
        u64::MAX,
    ] {
        let mut e = Env::v2();
        e.standard(code, 0, 0).set(off::RAX, 0).set(off::RCX, 0);
        assert_eq!(e.refused(), error::INVALID_EVENT, "exit code {code:#x}");
    }
}

const SNP_ONLY: [u64; 4] = [
    svm_exit::PSC,
    svm_exit::GUEST_REQUEST,
    svm_exit::EXT_GUEST_REQUEST,
    svm_exit::AP_CREATION,
];

fn era(snp_only_exits: SnpOnlyExits) -> Env {
    Env::new(GhcbConfig {
        snp_only_exits,
        kvm_has_snp: snp_only_exits != SnpOnlyExits::Unknown,
        ..GhcbConfig::default()
    })
}

#[test]
fn snp_only_exit_codes_current_kvm_answers_invalid_event_before_the_valid_bits() {
    // sev_handle_vmgexit(): usage, then is_snp_only_vmgexit() && !is_sev_snp_guest(), with
    // SW_EXITCODE read whether or not it is marked valid.
    for code in SNP_ONLY {
        let mut e = Env::v2();
        e.standard(code, 0, 0)
            .set(off::RAX, 0)
            .set(off::SW_SCRATCH, BUF);
        assert_eq!(e.refused(), error::INVALID_EVENT, "all valid, {code:#x}");
        let mut e = Env::v2();
        e.zero().set_unmarked(off::SW_EXIT_CODE, code);
        assert_eq!(
            e.refused(),
            error::INVALID_EVENT,
            "nothing marked, {code:#x}"
        );
        // The usage check still comes first.
        let mut e = Env::v2();
        e.zero().set_unmarked(off::SW_EXIT_CODE, code);
        e.mem
            .write(GHCB + off::GHCB_USAGE as u64, &1u32.to_le_bytes())
            .unwrap();
        assert_eq!(e.refused(), error::INVALID_USAGE, "usage 1, {code:#x}");
    }
}

#[test]
fn snp_only_exit_codes_v6_11_answers_missing_input() {
    // sev_es_validate_vmgexit(): the three valid bits, then `!sev_snp_guest()` under
    // reason = GHCB_ERR_MISSING_INPUT.
    for code in SNP_ONLY {
        let mut e = era(SnpOnlyExits::MissingInput);
        e.standard(code, 0, 0)
            .set(off::RAX, 0)
            .set(off::SW_SCRATCH, BUF);
        assert_eq!(e.refused(), error::MISSING_INPUT, "all valid, {code:#x}");
        let mut e = era(SnpOnlyExits::MissingInput);
        e.zero().set_unmarked(off::SW_EXIT_CODE, code);
        assert_eq!(
            e.refused(),
            error::MISSING_INPUT,
            "nothing marked, {code:#x}"
        );
    }
}

#[test]
fn snp_only_exit_codes_v6_10_answers_invalid_event_after_the_valid_bits() {
    // No SNP support: unknown codes, after the valid-bit check.
    for code in SNP_ONLY {
        let mut e = era(SnpOnlyExits::Unknown);
        e.standard(code, 0, 0).set(off::RAX, 0);
        assert_eq!(e.refused(), error::INVALID_EVENT, "all valid, {code:#x}");
        let mut e = era(SnpOnlyExits::Unknown);
        e.zero()
            .set_unmarked(off::SW_EXIT_CODE, code)
            .set(off::SW_EXIT_INFO_1, 0)
            .set(off::SW_EXIT_INFO_2, 0);
        assert_eq!(
            e.refused(),
            error::MISSING_INPUT,
            "SW_EXITCODE unmarked, {code:#x}"
        );
    }
}

#[test]
fn an_unknown_exit_code_still_needs_its_valid_bits_in_current_kvm() {
    // Only the SNP-only codes skip the valid-bit check: an unknown code with SW_EXITCODE
    // unmarked is MISSING_INPUT (sev_es_are_required_ghcb_fields_valid() comes before the
    // dispatch's default).
    let mut e = Env::v2();
    e.zero()
        .set_unmarked(off::SW_EXIT_CODE, 0x60)
        .set(off::SW_EXIT_INFO_1, 0)
        .set(off::SW_EXIT_INFO_2, 0);
    assert_eq!(e.refused(), error::MISSING_INPUT);
}

#[test]
fn without_the_2026_v2_limits_a_version_2_vm_answers_as_version_1() {
    let cfg = GhcbConfig {
        ghcb_v2_limits: false,
        ..GhcbConfig::default()
    };
    assert!(!cfg.v2_limits());
    assert!(GhcbConfig::default().v2_limits());
    assert!(!cfg_v(1).v2_limits());
    // MMIO of 16 bytes: split into two 8-byte exits instead of INVALID_INPUT.
    let mut e = Env::new(cfg);
    mmio_read(&mut e, 0xd000_0000, 16, BUF);
    assert!(
        matches!(e.host(), HostRequest::MmioRead { size: 8, .. }),
        "first 8-byte chunk"
    );
    let mut e = Env::v2();
    mmio_read(&mut e, 0xd000_0000, 16, BUF);
    assert_eq!(e.refused(), error::INVALID_INPUT);
}

#[test]
fn an_error_answer_keeps_the_registers_kvm_read() {
    let mut e = Env::v2();
    e.standard(exit::HLT, 0, 0)
        .set(off::RAX, 0x11)
        .set_unmarked(off::RBX, 0x22)
        .set(off::RDX, 0x44);
    assert_eq!(e.refused(), error::INVALID_EVENT);
    assert_eq!(e.get(off::RAX), 0x11);
    assert_eq!(e.get(off::RBX), 0, "not valid: KVM's copy was 0");
    assert_eq!(e.get(off::RCX), 0);
    assert_eq!(e.get(off::RDX), 0x44);
    assert_eq!(e.bitmap(), kvm_bitmap());
    assert_eq!(e.get(off::SW_EXIT_CODE), exit::HLT, "fields stay, unmarked");
    assert!(!e.valid(off::SW_EXIT_CODE));
}

// ----- Scratch areas --------------------------------------------------------------------

fn mmio_read(e: &mut Env, gpa: u64, size: u64, scratch: u64) -> &mut Env {
    e.standard(exit::MMIO_READ, gpa, size)
        .set(off::SW_SCRATCH, scratch)
}

#[test]
fn scratch_zero_or_misplaced_in_the_page() {
    for (scratch, size, why) in [
        (0, 4, "scratch 0"),
        (GHCB + 0x400, 4, "in the page, before the shared buffer"),
        (GHCB + 0x7fc, 8, "starts before the buffer"),
        (GHCB + 0xfec, 8, "runs past 0xff0"),
        (GHCB + 0xff8, 4, "in the reserved tail"),
    ] {
        for mut e in [Env::v2(), Env::v1()] {
            mmio_read(&mut e, 0xfeb0_0000, size, scratch);
            assert_eq!(e.refused(), error::INVALID_SCRATCH_AREA, "{why}");
        }
    }
    // Exactly up to 0xff0 is fine.
    let mut e = Env::v2();
    mmio_read(&mut e, 0xfeb0_0000, 8, GHCB + 0xfe8);
    assert!(matches!(e.host(), HostRequest::MmioRead { size: 8, .. }));
}

#[test]
fn scratch_outside_the_page() {
    let outside = GHCB + 2 * PAGE_SIZE;
    // Version 2: refused.
    let mut e = Env::v2();
    mmio_read(&mut e, 0xfeb0_0000, 4, outside);
    assert_eq!(e.refused(), error::INVALID_SCRATCH_AREA);
    // Version 1: KVM bounces it, and writes the read data back there.
    let mut e = Env::v1();
    mmio_read(&mut e, 0xfeb0_0000, 4, outside);
    assert_eq!(
        e.host(),
        HostRequest::MmioRead {
            gpa: 0xfeb0_0000,
            guest_gpa: 0xfeb0_0000,
            size: 4
        }
    );
    assert_eq!(e.complete(HostResult::Value(0x1122_3344)), GhcbStep::Done);
    assert_eq!(e.resp(), (0, 0));
    assert_eq!(e.bytes(outside, 4), [0x44, 0x33, 0x22, 0x11]);
    // Version 1, starting just below the GHCB page (the page check looks at the start only).
    let mut e = Env::v1();
    mmio_read(&mut e, 0xfeb0_0000, 8, GHCB - 4);
    assert!(matches!(e.host(), HostRequest::MmioRead { size: 8, .. }));
}

#[test]
fn scratch_outside_limits_in_version_1() {
    // More than 16 pages: refused.
    let mut e = Env::v1();
    e.standard(
        exit::IOIO,
        ioio_info(0x3f8, ioio::SZ8, false) | ioio::STR | ioio::REP,
        16 * PAGE_SIZE + 1,
    )
    .set(off::SW_SCRATCH, 0x2_0000);
    assert_eq!(e.refused(), error::INVALID_SCRATCH_AREA);
    // Not RAM: KVM_RUN fails with EFAULT.
    let mut e = Env::v1();
    mmio_read(&mut e, 0xfeb0_0000, 4, 0x100_0000);
    assert!(matches!(
        e.call(),
        GhcbStep::Stop(Stop::KvmRunError { errno: 14, .. })
    ));
    // scratch + len overflowing.
    let mut e = Env::v1();
    mmio_read(&mut e, 0xfeb0_0000, 8, u64::MAX - 3);
    assert_eq!(e.refused(), error::INVALID_SCRATCH_AREA);
}

// ----- MMIO ----------------------------------------------------------------------------

#[test]
fn mmio_size_zero_is_a_no_op() {
    for mut e in [Env::v2(), Env::v1()] {
        // Even with a scratch area that would be refused.
        mmio_read(&mut e, 0xfeb0_0000, 0, 0);
        assert_eq!(e.answered(), (0, 0));
        assert_eq!(e.bitmap(), kvm_bitmap());
    }
}

#[test]
fn mmio_longer_than_8_bytes() {
    let mut e = Env::v2();
    mmio_read(&mut e, 0xfeb0_0000, 16, BUF);
    assert_eq!(e.refused(), error::INVALID_INPUT);
    // Version 1: two 8-byte exits.
    let mut e = Env::v1();
    mmio_read(&mut e, 0xfeb0_0000, 16, BUF);
    assert_eq!(
        e.host(),
        HostRequest::MmioRead {
            gpa: 0xfeb0_0000,
            guest_gpa: 0xfeb0_0000,
            size: 8
        }
    );
    assert_eq!(
        e.complete(HostResult::Value(0x0807_0605_0403_0201)),
        GhcbStep::Host(HostRequest::MmioRead {
            gpa: 0xfeb0_0008,
            guest_gpa: 0xfeb0_0008,
            size: 8
        })
    );
    assert_eq!(
        e.complete(HostResult::Value(0x100f_0e0d_0c0b_0a09)),
        GhcbStep::Done
    );
    assert_eq!(e.bytes(BUF, 16), (1..=16).collect::<Vec<u8>>());
    // Version 1, 12 bytes written: 8 then 4.
    let mut e = Env::v1();
    e.standard(exit::MMIO_WRITE, 0x2000, 12)
        .set(off::SW_SCRATCH, BUF)
        .buffer(BUF, &(1..=12).collect::<Vec<u8>>());
    assert_eq!(
        e.host(),
        HostRequest::MmioWrite {
            gpa: 0x2000,
            guest_gpa: 0x2000,
            size: 8,
            value: 0x0807_0605_0403_0201
        }
    );
    assert_eq!(
        e.complete(HostResult::Done),
        GhcbStep::Host(HostRequest::MmioWrite {
            gpa: 0x2008,
            guest_gpa: 0x2008,
            size: 4,
            value: 0x0c0b_0a09
        })
    );
    assert_eq!(e.complete(HostResult::Done), GhcbStep::Done);
}

#[test]
fn mmio_read_round_trip() {
    // mmio_read::<u32>(gpa) as the guest sends it.
    let mut e = Env::v2();
    mmio_read(&mut e, 0xfeb0_0010, 4, BUF);
    e.buffer(BUF, &[0xaa; 8]);
    assert_eq!(
        e.host(),
        HostRequest::MmioRead {
            gpa: 0xfeb0_0010,
            guest_gpa: 0xfeb0_0010,
            size: 4
        }
    );
    assert_eq!(
        e.complete(HostResult::Value(0xdead_beef_1234_5678)),
        GhcbStep::Done
    );
    assert_eq!(e.resp(), (result::OK, 0));
    assert_eq!(
        e.bytes(BUF, 8),
        [0x78, 0x56, 0x34, 0x12, 0xaa, 0xaa, 0xaa, 0xaa],
        "exactly `size` bytes"
    );
    assert_eq!(e.bitmap(), kvm_bitmap());
}

#[test]
fn mmio_write_round_trip() {
    // mmio_write::<u16>(gpa, 0xbeef): data in the buffer, scratch = buffer GPA.
    let mut e = Env::v2();
    e.standard(exit::MMIO_WRITE, 0xfeb0_0020, 2)
        .buffer(BUF, &[0xef, 0xbe])
        .set(off::SW_SCRATCH, BUF);
    assert_eq!(
        e.host(),
        HostRequest::MmioWrite {
            gpa: 0xfeb0_0020,
            guest_gpa: 0xfeb0_0020,
            size: 2,
            value: 0xbeef
        }
    );
    assert_eq!(e.complete(HostResult::Done), GhcbStep::Done);
    assert_eq!(e.resp(), (0, 0));
}

// ----- IOIO ----------------------------------------------------------------------------

#[test]
fn ioio_without_size_bits_is_a_no_op() {
    for input in [false, true] {
        let mut e = Env::v2();
        e.standard(exit::IOIO, ioio_info(0x3f8, 0, input), 0)
            .set(off::RAX, 0x41);
        assert_eq!(e.answered(), (0, 0), "input {input}");
    }
    // String IO too, before the scratch area is looked at.
    let mut e = Env::v2();
    e.standard(
        exit::IOIO,
        ioio_info(0x3f8, 0, false) | ioio::STR | ioio::REP,
        5,
    )
    .set(off::SW_SCRATCH, 0);
    assert_eq!(e.answered(), (0, 0));
}

#[test]
fn ioio_size_bits_are_added_up() {
    for (bits, size) in [
        (ioio::SZ8 | ioio::SZ16, 3),
        (ioio::SZ8 | ioio::SZ32, 5),
        (ioio::SZ16 | ioio::SZ32, 6),
        (ioio::SZ8 | ioio::SZ16 | ioio::SZ32, 7),
    ] {
        let mut e = Env::v2();
        e.standard(exit::IOIO, ioio_info(0x80, bits, false), 0)
            .set(off::RAX, u64::MAX);
        assert_eq!(
            e.host(),
            HostRequest::PortWrite {
                port: 0x80,
                size,
                value: u64::MAX >> (64 - 8 * u32::from(size))
            }
        );
    }
}

#[test]
fn ioio_in_merges_below_4_bytes() {
    // (size bits, reply, RAX after): below 4 bytes the upper RAX bits stay.
    for (bits, rax_after) in [
        (ioio::SZ8, 0xffff_ffff_ffff_ff88),
        (ioio::SZ16, 0xffff_ffff_ffff_7788),
        (ioio::SZ8 | ioio::SZ16, 0xffff_ffff_ff66_7788),
        (ioio::SZ32, 0x5566_7788),
        (ioio::SZ16 | ioio::SZ32, 0x3344_5566_7788),
    ] {
        let mut e = Env::v2();
        e.standard(exit::IOIO, ioio_info(0x71, bits, true), 0)
            .set(off::RAX, u64::MAX);
        assert!(matches!(e.host(), HostRequest::PortRead { port: 0x71, .. }));
        assert_eq!(
            e.complete(HostResult::Value(0x1122_3344_5566_7788)),
            GhcbStep::Done
        );
        assert_eq!(e.get(off::RAX), rax_after, "bits {bits:#x}");
        assert!(e.valid(off::RAX));
    }
}

#[test]
fn ioio_round_trips_as_the_guest_sends_them() {
    // pio_read::<u8>(0x3fd): IN with RAX = 0 marked valid.
    let mut e = Env::v2();
    e.standard(exit::IOIO, ioio_info(0x3fd, ioio::SZ8, true), 0)
        .set(off::RAX, 0);
    assert_eq!(
        e.host(),
        HostRequest::PortRead {
            port: 0x3fd,
            size: 1
        }
    );
    e.complete(HostResult::Value(0x60));
    assert_eq!(e.resp(), (0, 0));
    assert!(e.valid(off::RAX), "the guest requires RAX valid");
    assert_eq!(e.get(off::RAX), 0x60);
    // pio_write::<u32>(0xf4, 0x31).
    let mut e = Env::v2();
    e.standard(exit::IOIO, ioio_info(0xf4, ioio::SZ32, false), 0)
        .set(off::RAX, 0x31);
    assert_eq!(
        e.host(),
        HostRequest::PortWrite {
            port: 0xf4,
            size: 4,
            value: 0x31
        }
    );
    assert_eq!(e.complete(HostResult::Done), GhcbStep::Done);
    assert_eq!(e.resp(), (0, 0));
}

#[test]
fn string_io() {
    // pio_write_bytes(0x3f8, b"hello"): STR|REP, count in info2, data in the buffer.
    let mut e = Env::v2();
    e.standard(
        exit::IOIO,
        ioio_info(0x3f8, ioio::SZ8, false) | ioio::STR | ioio::REP,
        5,
    )
    .buffer(BUF, b"hello")
    .set(off::SW_SCRATCH, BUF);
    assert_eq!(
        e.host(),
        HostRequest::PortWriteString {
            port: 0x3f8,
            size: 1,
            data: b"hello".to_vec()
        }
    );
    assert_eq!(e.complete(HostResult::Done), GhcbStep::Done);
    assert_eq!(e.resp(), (0, 0));
    // INS of 3 words.
    let mut e = Env::v2();
    e.standard(
        exit::IOIO,
        ioio_info(0x1f0, ioio::SZ16, true) | ioio::STR | ioio::REP,
        3,
    )
    .set(off::SW_SCRATCH, BUF + 0x10);
    assert_eq!(
        e.host(),
        HostRequest::PortReadString {
            port: 0x1f0,
            size: 2,
            count: 3
        }
    );
    assert!(matches!(
        e.m.complete(HostResult::Bytes(vec![1; 5]), &mut e.mem),
        Err(SimError::WrongResult { .. })
    ));
    assert_eq!(
        e.complete(HostResult::Bytes(vec![1, 2, 3, 4, 5, 6])),
        GhcbStep::Done
    );
    assert_eq!(e.bytes(BUF + 0x10, 6), [1, 2, 3, 4, 5, 6]);
    // Count 0: nothing to do.
    let mut e = Env::v2();
    e.standard(
        exit::IOIO,
        ioio_info(0x3f8, ioio::SZ8, false) | ioio::STR,
        0,
    )
    .set(off::SW_SCRATCH, 0);
    assert_eq!(e.answered(), (0, 0));
    // Count above INT_MAX, or count * size overflowing an int: KVM_RUN fails.
    for (bits, count) in [(ioio::SZ8, 0x8000_0000), (ioio::SZ32, 0x4000_0000)] {
        let mut e = Env::v2();
        e.standard(exit::IOIO, ioio_info(0x3f8, bits, false) | ioio::STR, count)
            .set(off::SW_SCRATCH, BUF);
        assert!(matches!(
            e.call(),
            GhcbStep::Stop(Stop::KvmRunError { errno: 22, .. })
        ));
    }
    // Longer than the shared buffer: the scratch area check refuses it.
    let mut e = Env::v2();
    e.standard(
        exit::IOIO,
        ioio_info(0x3f8, ioio::SZ8, false) | ioio::STR,
        2033,
    )
    .set(off::SW_SCRATCH, BUF);
    assert_eq!(e.refused(), error::INVALID_SCRATCH_AREA);
}

#[test]
fn string_io_version_1_in_page_sized_exits() {
    // 5000 bytes from outside the GHCB: one exit per 4096 bytes.
    let mut e = Env::v1();
    let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    e.standard(
        exit::IOIO,
        ioio_info(0x3f8, ioio::SZ8, false) | ioio::STR,
        5000,
    )
    .set(off::SW_SCRATCH, 0x2_0000)
    .buffer(0x2_0000, &data);
    let HostRequest::PortWriteString { data: first, .. } = e.host() else {
        panic!("expected a string write");
    };
    assert_eq!(first, data[..4096]);
    let GhcbStep::Host(HostRequest::PortWriteString { data: second, .. }) =
        e.complete(HostResult::Done)
    else {
        panic!("expected the second chunk");
    };
    assert_eq!(second, data[4096..]);
    assert_eq!(e.complete(HostResult::Done), GhcbStep::Done);
}

// ----- CPUID, MSR, VMMCALL, misc exits ---------------------------------------------------

#[test]
fn cpuid_round_trip() {
    // cpuid(0x8000001f, 0) as the guest sends it.
    let mut e = Env::v2();
    e.standard(exit::CPUID, 0, 0)
        .set(off::RAX, 0x8000_001f)
        .set(off::RCX, 0)
        .set_unmarked(off::RBX, 0x99);
    assert_eq!(
        e.host(),
        HostRequest::Cpuid {
            leaf: 0x8000_001f,
            subleaf: 0,
            xcr0: None
        }
    );
    e.complete(HostResult::Cpuid([0x1_000b, 0x12f, 0, 0xffff_ffff]));
    assert_eq!(e.resp(), (0, 0));
    assert_eq!(
        [
            e.get(off::RAX),
            e.get(off::RBX),
            e.get(off::RCX),
            e.get(off::RDX)
        ],
        [0x1_000b, 0x12f, 0, 0xffff_ffff]
    );
    for o in [off::RAX, off::RBX, off::RCX, off::RDX] {
        assert!(e.valid(o));
    }
}

#[test]
fn msr_round_trips() {
    // rdmsr(0x1b): RCX valid, info1 = 0.
    let mut e = Env::v2();
    e.standard(exit::MSR, 0, 0).set(off::RCX, 0x1_0000_001b);
    assert_eq!(e.host(), HostRequest::Rdmsr { index: 0x1b });
    e.complete(HostResult::Value(0x1234_5678_9abc_def0));
    assert_eq!(e.resp(), (0, 0));
    assert_eq!(
        (e.get(off::RAX), e.get(off::RDX)),
        (0x9abc_def0, 0x1234_5678)
    );
    assert!(e.valid(off::RAX) && e.valid(off::RDX));
    // Refused: #GP in event-injection format.
    e.standard(exit::MSR, 0, 0).set(off::RCX, 0xc000_0104);
    e.host();
    assert_eq!(e.complete(HostResult::Refused), GhcbStep::Done);
    assert_eq!(e.resp(), (result::EXCEPTION, 0x8000_030d));
    // wrmsr(0x6e0, v): EAX = low half, EDX = high half; upper register halves ignored.
    e.standard(exit::MSR, 1, 0)
        .set(off::RCX, 0x6e0)
        .set(off::RAX, 0xffff_ffff_9abc_def0)
        .set(off::RDX, 0xffff_ffff_1234_5678);
    assert_eq!(
        e.host(),
        HostRequest::Wrmsr {
            index: 0x6e0,
            value: 0x1234_5678_9abc_def0
        }
    );
    assert_eq!(e.complete(HostResult::Refused), GhcbStep::Done);
    assert_eq!(e.resp(), (1, event_inject_exception(X86_TRAP_GP)));
}

#[test]
fn vmmcall() {
    for (cpl, nr, ret) in [
        (3, 1, crate::sim::kvm_err::EPERM),
        (0, 0x99, crate::sim::kvm_err::ENOSYS),
        (0, 1, 0),
    ] {
        let mut e = Env::v2();
        e.standard(exit::VMMCALL, 0, 0).set(off::RAX, nr);
        e.buffer(GHCB + off::CPL as u64, &[cpl]).mark(off::CPL);
        assert_eq!(e.answered(), (0, 0));
        assert_eq!(e.get(off::RAX), ret, "cpl {cpl} nr {nr}");
    }
    // KVM answers every hypercall itself (____kvm_emulate_hypercall()): SEND_IPI to no vCPU
    // counts 0 IPIs; nothing reaches the VMM.
    let mut e = Env::v2();
    e.standard(exit::VMMCALL, 0, 0)
        .set(off::RAX, 10)
        .set(off::RBX, 0b100)
        .set(off::RCX, 0)
        .set(off::RDX, 0)
        .set(off::RSI, 0x30)
        .mark(off::CPL);
    assert_eq!(e.answered(), (0, 0));
    assert_eq!(e.get(off::RAX), 0);
    // ... except KVM_HC_MAP_GPA_RANGE with the user exit enabled: the VMM's hypercall.ret.
    let mut e = Env::v2();
    e.standard(exit::VMMCALL, 0, 0)
        .set(off::RAX, 12)
        .set(off::RBX, 0x20_0000)
        .set(off::RCX, 2)
        .set(off::RDX, 0)
        .set(off::RSI, 4)
        .mark(off::CPL);
    assert_eq!(
        e.host(),
        HostRequest::KvmMapGpaRange {
            gpa: 0x20_0000,
            npages: 2,
            attrs: 0
        }
    );
    e.complete(HostResult::Value(11));
    assert_eq!(e.get(off::RAX), 11);
    // An unaligned GPA is refused inside KVM.
    let mut e = Env::v2();
    e.standard(exit::VMMCALL, 0, 0)
        .set(off::RAX, 12)
        .set(off::RBX, 0x20_0010)
        .set(off::RCX, 1)
        .mark(off::CPL);
    assert_eq!(e.answered(), (0, 0));
    assert_eq!(e.get(off::RAX), protocol::kvm_para::err::EINVAL);
}

#[test]
fn other_ghcb_exits() {
    // NMI complete: success.
    let mut e = Env::v2();
    e.standard(exit::NMI_COMPLETE, 0, 0);
    assert_eq!(e.answered(), (0, 0));
    // HV features.
    e.standard(exit::HV_FEATURES, 0, 0);
    assert_eq!(e.answered(), (0, 3));
    // AP jump table: set, get, bad request.
    e.standard(exit::AP_JUMP_TABLE, 0, 0x9_f000);
    assert_eq!(e.answered(), (0, 0));
    e.standard(exit::AP_JUMP_TABLE, 1, 0);
    assert_eq!(e.answered(), (0, 0x9_f000));
    e.standard(exit::AP_JUMP_TABLE, 2, 0);
    assert_eq!(e.refused(), error::INVALID_INPUT);
    // AP HLT loop: held until a SIPI, then SW_EXITINFO2 = 1.
    e.standard(exit::AP_HLT_LOOP, 0, 0);
    assert_eq!(e.host(), HostRequest::ApResetHold);
    e.complete(HostResult::Done);
    assert_eq!(e.resp(), (0, 1));
    // Termination request exit.
    e.standard(svm_exit::TERM_REQUEST, 0x100, 7);
    assert_eq!(
        e.call(),
        GhcbStep::Stop(Stop::SevTerm {
            ghcb_msr: GHCB,
            cause: SevTermCause::TermRequestExit {
                info1: 0x100,
                info2: 7
            }
        })
    );
    // Unsupported event: KVM_RUN fails.
    e.standard(exit::UNSUPPORTED, 0, 0);
    assert!(matches!(
        e.call(),
        GhcbStep::Stop(Stop::KvmRunError { errno: 22, .. })
    ));
    // Valid SVM exits KVM handles but the sim does not model.
    e.standard(svm_exit::RDTSC, 0, 0);
    assert!(matches!(e.call(), GhcbStep::Stop(Stop::NotModelled { .. })));
}

// ----- Hooks and misuse ----------------------------------------------------------------

struct WideRax;

impl crate::sim::Tamper for WideRax {
    fn ghcb_page(&mut self, request: &crate::sim::GhcbPageRequest, answer: &mut GhcbAnswer) {
        if request.exit_code == exit::IOIO {
            answer.rax = 0x1_0000_0041;
        }
    }

    fn ghcb_msr(&mut self, _request: u64, answer: &mut u64) {
        *answer = 0xbad;
    }
}

#[test]
fn tamper_hook_changes_kvm_answers() {
    let mut m = GhcbModel::with_tamper(GhcbConfig::default(), WideRax);
    let mut mem = FlatMemory::new(0, RAM);
    let mut e = Env::v2();
    e.standard(exit::IOIO, ioio_info(0x3f8, ioio::SZ8, true), 0)
        .set(off::RAX, 0);
    mem.bytes.copy_from_slice(&e.mem.bytes);
    m.msr_write(ghcb::MSR_GHCB, GHCB).unwrap();
    assert!(matches!(m.vmgexit(&mut mem), GhcbStep::Host(_)));
    m.complete(HostResult::Value(0x41), &mut mem).unwrap();
    let mut rax = [0u8; 8];
    mem.read(GHCB + off::RAX as u64, &mut rax).unwrap();
    assert_eq!(u64::from_le_bytes(rax), 0x1_0000_0041);
    m.msr_write(ghcb::MSR_GHCB, MsrRequest::SevInfo.into())
        .unwrap();
    m.vmgexit(&mut mem);
    assert_eq!(m.ghcb_msr(), 0xbad);
}

#[test]
fn complete_out_of_order() {
    let mut e = Env::v2();
    assert_eq!(
        e.m.complete(HostResult::Done, &mut e.mem),
        Err(SimError::NothingPending)
    );
    e.standard(exit::IOIO, ioio_info(0x3f8, ioio::SZ8, true), 0);
    e.host();
    assert!(matches!(
        e.m.complete(HostResult::Done, &mut e.mem),
        Err(SimError::WrongResult {
            pending: "PortRead",
            ..
        })
    ));
    assert!(e.m.pending_request().is_some());
    assert_eq!(e.complete(HostResult::Value(1)), GhcbStep::Done);
}

#[test]
fn garbage_pages_never_panic() {
    // A deterministic xorshift over whole pages and MSR values: whatever the guest writes,
    // the model answers without panicking.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for v in [1, 2] {
        let mut e = Env::new(cfg_v(v));
        for _ in 0..300 {
            let mut page = vec![0u8; PAGE_SIZE as usize];
            for chunk in page.chunks_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes());
            }
            e.mem.write(GHCB, &page).unwrap();
            let code = [
                exit::IOIO,
                exit::MMIO_READ,
                exit::MMIO_WRITE,
                exit::MSR,
                next(),
            ][(next() % 5) as usize];
            e.set(off::SW_EXIT_CODE, code)
                .set(off::SW_SCRATCH, BUF + next() % 0x900)
                .buffer(GHCB + off::GHCB_USAGE as u64, &[0; 4]);
            let mut step = e.call();
            for _ in 0..8 {
                let GhcbStep::Host(req) = step else { break };
                let r = match req {
                    HostRequest::PortReadString { size, count, .. } => {
                        HostResult::Bytes(vec![0; usize::from(size) * count as usize])
                    }
                    HostRequest::Cpuid { .. } => HostResult::Cpuid([1, 2, 3, 4]),
                    HostRequest::PortRead { .. } | HostRequest::MmioRead { .. } => {
                        HostResult::Value(next())
                    }
                    HostRequest::Rdmsr { .. } | HostRequest::KvmMapGpaRange { .. } => {
                        HostResult::Value(next())
                    }
                    _ => HostResult::Done,
                };
                step = e.complete(r);
            }
            let _ = msr_call(&mut e.m, next());
        }
    }
}
