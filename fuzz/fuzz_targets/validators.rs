//! Fuzzes `protocol::validate`, the guest's checks of its host's answers, with arbitrary
//! host answers: no validator may panic, and whatever one accepts must have the property the
//! guest relies on, restated here from the specs rather than through the validators' own
//! helpers (GHCB spec 2.x 4.1 and 2.3.1; GHCI 1.5; Intel SDM vol. 3C table 28-7; AMD APM
//! vol. 2 15.20).
//!
//! Each input is read as a stream of fields; a short input reads as zeros after its end. The
//! #VE case starts from a consistent report and lets the input break chosen parts of it, so
//! both the accepting and each rejecting path are reached without the fuzzer having to guess
//! a matching GPA.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::access::{Direction, Width};
use protocol::ghcb::off;
use protocol::tdx::Gpaw;
use protocol::validate::{self, DecodedAccess, GhcbOutcome, GhcbReply, TdvmcallError, VeReport};

/// The fuzz input as a stream of little-endian fields.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let n = N.min(self.0.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        b
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
    fn width(&mut self) -> Width {
        [Width::B1, Width::B2, Width::B4, Width::B8][usize::from(self.u8() & 3)]
    }
}

/// Whether `v` fits in `w` bytes, computed without `Width::fits`.
fn fits(w: Width, v: u64) -> bool {
    u128::from(v) < 1u128 << (8 * w.bytes())
}

/// Whether the GHCB field at byte offset `off` is marked in `valid` (bit n = offset 8n, GHCB
/// spec table 1), computed without `ghcb::valid_bit`.
fn marked(valid: &[u8; 16], off: usize) -> bool {
    let bit = off / 8;
    bit < 128 && valid[bit / 8] >> (bit % 8) & 1 == 1
}

const WHAT: &str = "fuzz";

fn width(inp: &mut Input<'_>) {
    let w = inp.width();
    let v = inp.u64();
    match validate::width_fits(w, v, WHAT) {
        Ok(x) => assert!(x == v && fits(w, v), "accepted {v:#x} for {w:?}"),
        Err(e) => assert!(!fits(w, v) && e.value == v && e.what == WHAT, "{e:?}"),
    }
}

fn tdvmcall(inp: &mut Input<'_>) {
    // Small values half the time, so SUCCESS (0) is common.
    let pick = |inp: &mut Input<'_>| {
        let v = inp.u64();
        if v & 1 == 0 { v >> 60 } else { v }
    };
    let (module, vmcall) = (pick(inp), pick(inp));
    match validate::tdvmcall_status(module, vmcall) {
        Ok(()) => assert!(module == 0 && vmcall == 0),
        Err(TdvmcallError::Module(s)) => assert!(s == module && s != 0),
        Err(TdvmcallError::Vmcall(s)) => assert!(module == 0 && s == vmcall && s != 0),
    }
}

fn vp_info(inp: &mut Input<'_>) {
    let rcx = inp.u64();
    // Half the time the host declared a simulated TDX of some width (any byte).
    let declared = (inp.u8() & 1 != 0).then(|| inp.u8());
    match validate::vp_info_gpaw(rcx, declared) {
        Ok(g) => {
            assert!(u64::from(g.bits()) == rcx & 0x3f);
            if g.is_architectural() {
                assert!(matches!(g.bits(), 48 | 52));
            } else {
                // Only exactly the declared width, narrower than 48, at least 36.
                assert!(declared == Some(g.bits() as u8) && (36..48).contains(&g.bits()));
            }
            assert_eq!(g.shared_bit(), 1 << (g.bits() - 1));
        }
        Err(e) => {
            assert!(!matches!(rcx & 0x3f, 48 | 52) && e.value == rcx);
            assert!(declared.is_none_or(|d| u64::from(d) != rcx & 0x3f || !(36..48).contains(&d)));
        }
    }
}

fn ghcb_reply(inp: &mut Input<'_>) {
    let mut valid = inp.bytes::<16>();
    // Mark SW_EXITINFO1/2 (bits 0x73, 0x74: byte 14 bits 3, 4) unless the input says not to.
    let flags = inp.u8();
    if flags & 1 != 0 {
        valid[14] |= 0b1_1000;
    }
    let info1 = if flags & 2 != 0 {
        u64::from(inp.u8() % 4)
    } else {
        inp.u64()
    };
    let r = GhcbReply {
        info1,
        info2: inp.u64(),
        valid,
        rax: inp.u64(),
        rbx: inp.u64(),
        rcx: inp.u64(),
        rdx: inp.u64(),
    };
    let answered = marked(&valid, 0x398) && marked(&valid, 0x3a0);
    // Event injection: valid (bit 31), type 3 = exception (bits 10:8), vector #GP or #UD.
    let e = r.info2;
    let event_ok = e >> 31 & 1 == 1 && e >> 8 & 7 == 3 && matches!(e & 0xff, 6 | 13);
    let expected = match (answered, r.info1) {
        (false, _) => None,
        (true, 0) => Some(GhcbOutcome::Ok),
        (true, 1) if event_ok => Some(GhcbOutcome::Exception(e as u8)),
        (true, 2) => Some(GhcbOutcome::Error(e)),
        _ => None,
    };
    match r.outcome(WHAT) {
        Ok(o) => assert_eq!(Some(o), expected, "{r:?}"),
        Err(err) => {
            assert_eq!(expected, None, "{r:?}");
            // Unanswered: SW_EXITINFO1; a bad event: SW_EXITINFO2; else SW_EXITINFO1.
            let value = if answered && r.info1 == 1 { e } else { r.info1 };
            assert_eq!(err.value, value);
        }
    }
    let w = inp.width();
    for (o, field) in [
        (off::RAX, r.rax),
        (off::RBX, r.rbx),
        (off::RCX, r.rcx),
        (off::RDX, r.rdx),
    ] {
        let m = marked(&valid, o);
        assert_eq!(r.reg(o), m.then_some(field));
        match r.reg_valid(o, WHAT) {
            Ok(v) => assert!(m && v == field),
            Err(e) => assert!(!m && e.value == r.info1),
        }
        match r.reg_fits(o, w, WHAT) {
            Ok(v) => assert!(m && v == field && fits(w, v), "{o:#x} {v:#x} {w:?}"),
            Err(_) => assert!(!m || !fits(w, field)),
        }
    }
    // Any offset, even off the page: no panic, and only the four registers are registers.
    let o = inp.u64() as usize;
    let is_marked = r.raw_is_marked(o);
    assert_eq!(is_marked, marked(&valid, o));
    if let Some(v) = r.reg(o) {
        assert!(is_marked && [off::RAX, off::RBX, off::RCX, off::RDX].contains(&o));
        assert!([r.rax, r.rbx, r.rcx, r.rdx].contains(&v));
    }
}

fn sev_msr(inp: &mut Input<'_>) {
    let raw = inp.u64();
    if let Ok(i) = validate::sev_info(raw) {
        assert!(raw & 0xfff == 0x001 && raw >> 12 & 0xfff == 0);
        assert!(u64::from(i.max) == raw >> 48 && u64::from(i.min) == raw >> 32 & 0xffff);
        assert!(u64::from(i.cbit) == raw >> 24 & 0xff);
        assert!(i.min <= i.max && i.min <= 2 && i.max >= 1, "{i:?}");
        assert!((32..=51).contains(&i.cbit), "{i:?}");
        assert!((1..=2).contains(&i.version()) && i.version() <= i.max);
    }
    if let Ok(v) = validate::msr_cpuid_response(raw) {
        assert!(raw & 0xfff == 0x005 && u64::from(v) == raw >> 32);
    }
    let (eax, ebx, cbit) = (inp.u32(), inp.u32(), inp.u8());
    if validate::sev_cpuid_features(eax).is_ok() {
        assert!(eax & 0b1010 == 0b1010);
    }
    if validate::sev_cpuid_cbit(ebx, cbit).is_ok() {
        assert!(ebx & 0x3f == u32::from(cbit));
    }
}

fn ve(inp: &mut Input<'_>) {
    let gpaw = if inp.u8() & 1 == 0 {
        Gpaw::W48
    } else {
        Gpaw::W52
    };
    let shared = 1u64 << (gpaw.bits() - 1);
    let breaks = inp.u8();
    let direction = if inp.u8() & 1 == 0 {
        Direction::Read
    } else {
        Direction::Write
    };
    let linear = inp.u64();
    let len = inp.u8() % 16;
    // A consistent report: shared GPA below 2^GPAW, a length (undefined for EPT violations,
    // never checked), the access type, a valid GLA equal to the linear address, the GPA the
    // walk found.
    let gpa = (inp.u64() & (shared - 1)) | shared;
    let mut report = VeReport {
        exit_reason: 48,
        qualification: (if direction == Direction::Read { 1 } else { 2 }) | 1 << 7 | 1 << 8,
        gla: linear,
        gpa,
        insn_len: u32::from(len),
    };
    let mut access = DecodedAccess {
        direction,
        linear,
        mapped_gpa: Some(gpa),
    };
    // Each set bit of `breaks` replaces one part with raw input.
    if breaks & 1 != 0 {
        report.exit_reason = inp.u32();
    }
    if breaks & 2 != 0 {
        report.qualification = inp.u64();
    }
    if breaks & 4 != 0 {
        report.gla = inp.u64();
    }
    if breaks & 8 != 0 {
        report.gpa = inp.u64();
    }
    if breaks & 16 != 0 {
        report.insn_len = inp.u32();
    }
    if breaks & 32 != 0 {
        access.mapped_gpa = (inp.u8() & 1 == 1).then(|| inp.u64());
    }
    let header = validate::ve_header(&report, gpaw);
    if let Ok(plain) = validate::ve_report(&report, &access, gpaw) {
        assert!(header.is_ok());
        assert!(report.exit_reason == 48);
        assert!(
            report.gpa & shared != 0 && report.gpa >> gpaw.bits() == 0,
            "{report:?}"
        );
        assert!(access.mapped_gpa == Some(report.gpa));
        // R10[31:0] is undefined for EPT violations: it never changes the answer.
        let other_len = VeReport {
            insn_len: !report.insn_len,
            ..report
        };
        assert!(validate::ve_report(&other_len, &access, gpaw) == Ok(plain));
        let want = if access.direction == Direction::Read {
            1
        } else {
            2
        };
        assert!(report.qualification & 0b111 == want, "{report:?}");
        assert!(report.qualification & 1 << 7 == 0 || report.gla == access.linear);
        assert!(plain == report.gpa & !shared && plain | shared == report.gpa);
    }
    if header.is_err() {
        assert!(validate::ve_report(&report, &access, gpaw).is_err());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    width(&mut inp);
    tdvmcall(&mut inp);
    vp_info(&mut inp);
    sev_msr(&mut inp);
    ve(&mut inp);
    ghcb_reply(&mut inp);
});
