//! The hostile host (`--hostile SEED`): a [`Tamper`] that answers a seeded random subset of
//! the guest's requests wrongly, in ways a real host could, and logs every lie with the
//! request it answered and the case that made the request.
//!
//! Rules (README, "Hostile host"):
//! - It lies only while the guest has a case announced on the test device, so every lie
//!   belongs to one case, and never to the requests that carry the run itself: the console
//!   (COM1), the exit port, the test device's case and bench ports, the memslot scenario's
//!   control port, and the GHCB MSR protocol's termination request. A lie there would cut the
//!   channel the verdict travels on; it tests nothing a case does not test already.
//! - Every lie is one a correct guest can detect: most from the protocol alone (ranges,
//!   widths, valid bits, statuses, response codes, the #VE report against the instruction),
//!   `success-garbage` (a refused request answered "success") only through the test's
//!   expectation. Each lie carries the number of the request it answered ([`Lie::seq`]), and
//!   the verdict demands a rejection naming it: a value that is merely plausible but wrong (an
//!   MMIO read returning 5 instead of 7) is not a lie this layer tells.
//! - The answer is changed after KVM computed it ([`Tamper`]), so the device models saw the
//!   request exactly as an honest host would.
//!
//! Randomness: a SplitMix64 stream from the seed, written here because one seeded,
//! reproducible 64-bit stream is all that is needed (no crate dependency for ten lines).

use super::ghcb::GhcbAnswer;
use super::tdx::VeInfo;
use super::{GhcbPageRequest, SpuriousEvent, Tamper};
use protocol::ghcb::{self, exit, ioio, off, result};
use protocol::tdx::{self, TdcallRegs, status, vmcall};
use std::fmt;
use std::sync::{Arc, Mutex};

/// Settings of a hostile run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostileConfig {
    /// Seed of the lie stream: the same seed and guest give the same lies.
    pub seed: u64,
    /// Probability that one eligible answer is a lie (0..=1).
    pub rate: f64,
}

impl HostileConfig {
    /// The default rate: one eligible answer in 20 is a lie, so a run mixes lied-to cases
    /// (which must fail) with honest ones (which must still pass).
    pub const DEFAULT_RATE: f64 = 0.05;
}

/// What kind of lie was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LieKind {
    /// TDX: a successful TDVMCALL answered with an error status (RETRY, INVALID_OPERAND, ...).
    ErrorStatus,
    /// TDX / GHCB: a refused request answered "success" with garbage outputs.
    SuccessGarbage,
    /// A read answered with a value wider than the access (IO size 1 answering 0x1_0000_0000,
    /// CPUID or MSR halves beyond 32 bits).
    WideValue,
    /// GHCB: SW_EXITINFO1 neither 0, 1 nor 2.
    BadExitInfo1,
    /// GHCB: a successful request answered with SW_EXITINFO1 = 2 (error).
    ErrorReply,
    /// GHCB: a successful request answered with an exception to inject.
    ExceptionReply,
    /// GHCB: a returned field (SW_EXITINFO1/2 or a register the guest needs) left unmarked
    /// in the valid bitmap.
    UnmarkedField,
    /// GHCB MSR protocol: the response code is not the one for the request.
    MsrResponseCode,
    /// tdx-sim: the #VE information reports a private GPA (shared bit clear).
    VeGpaPrivate,
    /// tdx-sim: the #VE information reports a GPA other than the access's.
    VeGpaOther,
    /// A #VE / #VC injected with no memslot deleted (no access behind it).
    SpuriousEvent,
    /// GHCB: an honest answer, rewritten with garbage right after the guest read the page
    /// (a data breakpoint on its last field). Harmless to a guest that copies the answer
    /// once: the case must pass as if honest; a failure means a double fetch.
    GhcbRewrite,
}

impl LieKind {
    /// Every kind, in report order.
    pub const ALL: [LieKind; 12] = [
        Self::ErrorStatus,
        Self::SuccessGarbage,
        Self::WideValue,
        Self::BadExitInfo1,
        Self::ErrorReply,
        Self::ExceptionReply,
        Self::UnmarkedField,
        Self::MsrResponseCode,
        Self::VeGpaPrivate,
        Self::VeGpaOther,
        Self::SpuriousEvent,
        Self::GhcbRewrite,
    ];

    /// Short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ErrorStatus => "error-status",
            Self::SuccessGarbage => "success-garbage",
            Self::WideValue => "wide-value",
            Self::BadExitInfo1 => "bad-exitinfo1",
            Self::ErrorReply => "error-reply",
            Self::ExceptionReply => "exception-reply",
            Self::UnmarkedField => "unmarked-field",
            Self::MsrResponseCode => "msr-response-code",
            Self::VeGpaPrivate => "ve-gpa-private",
            Self::VeGpaOther => "ve-gpa-other",
            Self::SpuriousEvent => "spurious-event",
            Self::GhcbRewrite => "ghcb-rewrite",
        }
    }

    /// Whether a correct guest must notice this lie (its case must fail). A GHCB rewritten
    /// after the guest's one read must instead go unnoticed.
    pub const fn must_be_noticed(self) -> bool {
        !matches!(self, Self::GhcbRewrite)
    }
}

impl fmt::Display for LieKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One lie, as the host logged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lie {
    /// The case that was running (`suite.case`).
    pub case: String,
    /// The number of the request whose answer was the lie: the guest's TDCALLs and VMGEXITs
    /// since boot, counted from 1 on both sides (the guest names it when it rejects the
    /// answer). For a spurious event, the request it followed; for #VE information, the
    /// TDG.VP.VEINFO.GET that will read it.
    pub seq: u64,
    /// What kind of lie.
    pub kind: LieKind,
    /// The request answered (`TDVMCALL IO read port 0xd104 size 1`).
    pub request: String,
    /// What was changed (`R11 0x41 -> 0x100000041`).
    pub change: String,
}

impl fmt::Display for Lie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} to request {} ({}): {}",
            self.case, self.kind, self.seq, self.request, self.change
        )
    }
}

/// What a hostile host did in one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LieLog {
    /// Every answer that passed through the hostile layer (all requests the models answered).
    pub answers: u64,
    /// Answers eligible for a lie (inside a case, not run infrastructure).
    pub eligible: u64,
    /// Requests (traps) the guest made: the numbering of [`Lie::seq`].
    pub requests: u64,
    /// The lies, in the order told.
    pub lies: Vec<Lie>,
}

/// A shared handle on the log: the VMM keeps one, the [`Hostile`] tamper the other.
pub type SharedLog = Arc<Mutex<LieLog>>;

/// SplitMix64 (Steele, Lea, Flood 2014): a seeded, reproducible 64-bit stream.
#[derive(Clone, Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// One of `items` (not empty).
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// Ports that carry the run itself (see the module docs): never lied about.
fn infrastructure_port(port: u16) -> bool {
    use protocol::testdev::{PIO_BASE, pio};
    const COM1: std::ops::RangeInclusive<u16> = 0x3f8..=0x3ff;
    COM1.contains(&port)
        || port == protocol::exit::EXIT_PORT
        || (PIO_BASE + pio::CASE..PIO_BASE + pio::CASE + 4).contains(&port)
        || (PIO_BASE + pio::BENCH..PIO_BASE + pio::BENCH + 4).contains(&port)
        || (protocol::memslot::CONTROL_PORT..protocol::memslot::CONTROL_PORT + 4).contains(&port)
}

/// The hostile host's tamper.
pub struct Hostile {
    rng: SplitMix,
    rate: f64,
    case: Option<(&'static str, &'static str)>,
    log: SharedLog,
    /// TDX shared bit, for #VE lies.
    shared_bit: u64,
    /// Whether the last answer was eligible for a lie (spurious events follow only those,
    /// so each belongs to the case that made the request).
    last_eligible: bool,
    /// A GHCB rewrite is due once the guest read the answer ([`Tamper::rewrite_after_read`]).
    rewrite: bool,
    /// Whether the VMM can take host-made events now ([`Tamper::set_events_allowed`]).
    events_allowed: bool,
    /// Traps so far ([`Tamper::set_case`] comes once before each): the current request's
    /// number.
    requests: u64,
}

impl Hostile {
    /// A hostile host for `cfg`, with the handle on its log. `shared_bit` is the TDX shared
    /// GPA bit (ignored for SEV-ES).
    pub fn new(cfg: HostileConfig, shared_bit: u64) -> (Self, SharedLog) {
        let log = SharedLog::default();
        (
            Self {
                rng: SplitMix(cfg.seed),
                rate: cfg.rate.clamp(0.0, 1.0),
                case: None,
                log: log.clone(),
                shared_bit,
                last_eligible: false,
                rewrite: false,
                events_allowed: true,
                requests: 0,
            },
            log,
        )
    }

    /// Counts one answer; whether it is eligible and chosen for a lie.
    fn roll(&mut self, infrastructure: bool) -> bool {
        let mut log = self.log.lock().expect("lie log lock");
        log.answers += 1;
        self.last_eligible = self.case.is_some() && !infrastructure;
        if !self.last_eligible {
            return false;
        }
        log.eligible += 1;
        drop(log);
        self.rng.chance(self.rate)
    }

    fn record(&mut self, kind: LieKind, request: String, change: String) {
        self.record_at(self.requests, kind, request, change);
    }

    fn record_at(&mut self, seq: u64, kind: LieKind, request: String, change: String) {
        let case = self
            .case
            .map(|(suite, case)| format!("{suite}.{case}"))
            .unwrap_or_default();
        self.log.lock().expect("lie log lock").lies.push(Lie {
            case,
            seq,
            kind,
            request,
            change,
        });
    }

    /// A TDVMCALL error status other than `honest`.
    fn error_status(&mut self, honest: u64) -> u64 {
        let choices = [
            status::RETRY,
            status::INVALID_OPERAND,
            status::ALIGN_ERROR,
            status::SUBFUNC_UNSUPPORTED,
            status::INVALID_OPERAND | (self.rng.next() & 0xffff) | 0x10,
        ];
        loop {
            let s = self.rng.pick(&choices);
            if s != honest {
                return s;
            }
        }
    }

    /// A value wider than `bytes` (1..=4): the honest low bytes with bits above set.
    fn widen(&mut self, value: u64, bytes: u64) -> u64 {
        let shift = bytes * 8;
        let high = (self.rng.next() | 1) << shift;
        (value & super::low_bytes_mask(bytes)) | high
    }
}

/// The TDVMCALL a register view stands for, for the log.
fn describe_tdvmcall(r: &TdcallRegs) -> String {
    let dir = |d: u64| if d == tdx::DIR_WRITE { "write" } else { "read" };
    match r.r11 {
        vmcall::IO => format!(
            "TDVMCALL IO {} port {:#x} size {}",
            dir(r.r13),
            r.r14,
            r.r12
        ),
        vmcall::MMIO => format!(
            "TDVMCALL MMIO {} GPA {:#x} size {}",
            dir(r.r13),
            r.r14,
            r.r12
        ),
        vmcall::CPUID => format!("TDVMCALL CPUID leaf {:#x} subleaf {:#x}", r.r12, r.r13),
        vmcall::RDMSR => format!("TDVMCALL RDMSR {:#x}", r.r12),
        vmcall::WRMSR => format!("TDVMCALL WRMSR {:#x} value {:#x}", r.r12, r.r13),
        vmcall::HLT => "TDVMCALL HLT".into(),
        other => format!("TDVMCALL sub-function {other:#x} (R10 {:#x})", r.r10),
    }
}

/// The GHCB request, for the log.
fn describe_ghcb(r: &GhcbPageRequest) -> String {
    match r.exit_code {
        exit::IOIO => format!(
            "GHCB IOIO {} port {:#x} (info1 {:#x})",
            if r.info1 & ioio::TYPE_IN != 0 {
                "in"
            } else {
                "out"
            },
            r.info1 >> ioio::PORT_SHIFT,
            r.info1
        ),
        exit::MMIO_READ => format!("GHCB MMIO read GPA {:#x} size {}", r.info1, r.info2),
        exit::MMIO_WRITE => format!("GHCB MMIO write GPA {:#x} size {}", r.info1, r.info2),
        exit::CPUID => "GHCB CPUID".into(),
        exit::MSR if r.info1 == 0 => "GHCB MSR read".into(),
        exit::MSR => "GHCB MSR write".into(),
        code => format!("GHCB exit {code:#x} (info1 {:#x})", r.info1),
    }
}

/// IOIO size bits as bytes (0 if none or several).
fn ioio_bytes(info1: u64) -> u64 {
    match info1 & (ioio::SZ8 | ioio::SZ16 | ioio::SZ32) {
        ioio::SZ8 => 1,
        ioio::SZ16 => 2,
        ioio::SZ32 => 4,
        _ => 0,
    }
}

/// The event-injection encoding of #GP (AMD APM vol. 2 15.20): vector 13, type 3
/// (exception), error code valid (bit 11), valid (bit 31).
const EVENT_GP: u64 = 13 | (3 << 8) | (1 << 11) | (1 << 31);

/// EPT-violation exit qualification bits (Intel SDM vol. 3C table 28-7): data read, GLA
/// valid, access to the translated address.
const EPT_QUAL_READ_GLA: u64 = 1 | (1 << 7) | (1 << 8);

/// #VC error codes a spurious #VC carries (SVM exit codes; GHCB spec 2.0 4.1): NPF, CPUID,
/// IOIO, MSR, VMMCALL.
const SPURIOUS_VC_CODES: [u64; 5] = [exit::NPF, exit::CPUID, exit::IOIO, exit::MSR, exit::VMMCALL];

impl Tamper for Hostile {
    fn tdvmcall(&mut self, request: &TdcallRegs, answer: &mut TdcallRegs) {
        let infrastructure = request.r10 == vmcall::STANDARD
            && request.r11 == vmcall::IO
            && infrastructure_port(request.r14 as u16);
        if !self.roll(infrastructure) {
            return;
        }
        let what = describe_tdvmcall(request);
        if answer.r10 != status::SUCCESS {
            let before = answer.r10;
            answer.r10 = status::SUCCESS;
            for r in [
                &mut answer.r11,
                &mut answer.r12,
                &mut answer.r13,
                &mut answer.r14,
                &mut answer.r15,
            ] {
                *r = self.rng.next();
            }
            let change = format!("R10 {before:#x} -> 0 with garbage R11 {:#x}", answer.r11);
            return self.record(LieKind::SuccessGarbage, what, change);
        }
        let read = request.r13 == tdx::DIR_READ;
        let widen_reg = match request.r11 {
            vmcall::IO if read && matches!(request.r12, 1 | 2 | 4) => Some(request.r12),
            vmcall::MMIO if read && matches!(request.r12, 1 | 2 | 4) => Some(request.r12),
            vmcall::CPUID => Some(4),
            _ => None,
        };
        if let Some(bytes) = widen_reg
            && self.rng.chance(0.5)
        {
            let reg = if request.r11 == vmcall::CPUID {
                match self.rng.next() % 4 {
                    0 => ("R12", &mut answer.r12),
                    1 => ("R13", &mut answer.r13),
                    2 => ("R14", &mut answer.r14),
                    _ => ("R15", &mut answer.r15),
                }
            } else {
                ("R11", &mut answer.r11)
            };
            let before = *reg.1;
            *reg.1 = self.widen(before, bytes);
            let change = format!("{} {before:#x} -> {:#x}", reg.0, *reg.1);
            return self.record(LieKind::WideValue, what, change);
        }
        let before = answer.r10;
        answer.r10 = self.error_status(before);
        let change = format!("R10 0 -> {:#x} ({})", answer.r10, status::name(answer.r10));
        self.record(LieKind::ErrorStatus, what, change);
    }

    fn ghcb_msr(&mut self, request: u64, answer: &mut u64) {
        let infrastructure = request & ghcb::msr::INFO_MASK == ghcb::msr::TERM_REQ;
        if !self.roll(infrastructure) {
            return;
        }
        let honest = *answer & ghcb::msr::INFO_MASK;
        let codes = [
            0,
            ghcb::msr::SEV_INFO_RESP,
            ghcb::msr::CPUID_RESP,
            ghcb::msr::HV_FT_RESP,
            0x007,
            ghcb::msr::INFO_MASK,
        ];
        let mut code = self.rng.pick(&codes);
        while code == honest {
            code = self.rng.pick(&codes);
        }
        let before = *answer;
        *answer = (before & !ghcb::msr::INFO_MASK) | code;
        self.record(
            LieKind::MsrResponseCode,
            format!("GHCB MSR protocol request {request:#x}"),
            format!("response {before:#x} -> {:#x}", *answer),
        );
    }

    fn ghcb_page(&mut self, request: &GhcbPageRequest, answer: &mut GhcbAnswer) {
        let infrastructure = request.exit_code == exit::IOIO
            && infrastructure_port((request.info1 >> ioio::PORT_SHIFT) as u16);
        if !self.roll(infrastructure) {
            return;
        }
        let what = describe_ghcb(request);
        if answer.info1 != result::OK {
            let before = (answer.info1, answer.info2);
            answer.info1 = result::OK;
            answer.info2 = 0;
            answer.rax = self.rng.next();
            answer.rdx = self.rng.next();
            let change = format!(
                "SW_EXITINFO1/2 {:#x}/{:#x} -> 0/0 with garbage RAX {:#x}",
                before.0, before.1, answer.rax
            );
            return self.record(LieKind::SuccessGarbage, what, change);
        }
        // The registers the guest reads back for this request, with their widths.
        let returned: &[(usize, &str, u64)] = match request.exit_code {
            exit::IOIO if request.info1 & ioio::TYPE_IN != 0 => match ioio_bytes(request.info1) {
                0 => &[],
                1 => &[(off::RAX, "RAX", 1)],
                2 => &[(off::RAX, "RAX", 2)],
                _ => &[(off::RAX, "RAX", 4)],
            },
            exit::CPUID => &[
                (off::RAX, "RAX", 4),
                (off::RBX, "RBX", 4),
                (off::RCX, "RCX", 4),
                (off::RDX, "RDX", 4),
            ],
            exit::MSR if request.info1 == 0 => &[(off::RAX, "RAX", 4), (off::RDX, "RDX", 4)],
            _ => &[],
        };
        let string_io = request.exit_code == exit::IOIO && request.info1 & ioio::STR != 0;
        let mut kinds = vec![
            LieKind::BadExitInfo1,
            LieKind::ErrorReply,
            LieKind::ExceptionReply,
            LieKind::UnmarkedField,
        ];
        if self.events_allowed {
            kinds.push(LieKind::GhcbRewrite);
        }
        if !returned.is_empty() && !string_io {
            kinds.push(LieKind::WideValue);
        }
        let kind = self.rng.pick(&kinds);
        let change = match kind {
            LieKind::BadExitInfo1 => {
                answer.info1 = 3 + self.rng.next() % 0xffff_fffc;
                format!("SW_EXITINFO1 0 -> {:#x}", answer.info1)
            }
            LieKind::ErrorReply => {
                answer.info1 = result::ERROR;
                answer.info2 =
                    self.rng
                        .pick(&[ghcb::error::NOT_REGISTERED, ghcb::error::INVALID_USAGE, 3]);
                format!("SW_EXITINFO1/2 0 -> 2/{:#x}", answer.info2)
            }
            LieKind::ExceptionReply => {
                answer.info1 = result::EXCEPTION;
                answer.info2 = EVENT_GP;
                format!("SW_EXITINFO1/2 0 -> 1/{EVENT_GP:#x} (#GP)")
            }
            LieKind::GhcbRewrite => {
                self.rewrite = true;
                "answered honestly, then SW_EXITINFO1/2, RAX-RDX and the valid bitmap \
                 rewritten with garbage once the guest read RDX"
                    .into()
            }
            LieKind::UnmarkedField => {
                let mut fields: Vec<(usize, &str)> = vec![
                    (off::SW_EXIT_INFO_1, "SW_EXITINFO1"),
                    (off::SW_EXIT_INFO_2, "SW_EXITINFO2"),
                ];
                if !string_io {
                    fields.extend(returned.iter().map(|&(o, n, _)| (o, n)));
                }
                let (o, n) = self.rng.pick(&fields);
                answer.unmarked.push(o);
                format!("{n} not marked valid")
            }
            _ => {
                let (o, n, bytes) = self.rng.pick(returned);
                let reg = match o {
                    off::RAX => &mut answer.rax,
                    off::RBX => &mut answer.rbx,
                    off::RCX => &mut answer.rcx,
                    _ => &mut answer.rdx,
                };
                let before = *reg;
                *reg = self.widen(before, bytes);
                format!("{n} {before:#x} -> {:#x}", *reg)
            }
        };
        self.record(kind, what, change);
    }

    fn rewrite_after_read(&mut self) -> bool {
        std::mem::take(&mut self.rewrite)
    }

    fn set_events_allowed(&mut self, allowed: bool) {
        self.events_allowed = allowed;
    }

    fn set_case(&mut self, case: Option<(&'static str, &'static str)>) {
        self.case = case;
        self.requests += 1;
        self.log.lock().expect("lie log lock").requests = self.requests;
    }

    fn spurious_event(&mut self) -> Option<SpuriousEvent> {
        // One answer in four that could have been a lie is followed by an event instead.
        if !std::mem::take(&mut self.last_eligible)
            || !self.events_allowed
            || !self.rng.chance(self.rate / 4.0)
        {
            return None;
        }
        let ev = if self.shared_bit != 0 {
            let ve = self.rng.chance(0.5).then(|| VeInfo {
                exit_reason: tdx::EXIT_REASON_EPT_VIOLATION as u32,
                exit_qualification: EPT_QUAL_READ_GLA,
                gla: self.rng.next() & 0xffff_ffff_f000,
                gpa: (self.rng.next() & 0xffff_f000 & (self.shared_bit - 1)) | self.shared_bit,
                insn_len: 3,
                insn_info: 0,
            });
            let change = match &ve {
                Some(v) => format!(
                    "#VE injected, #VE information: EPT violation at GPA {:#x}",
                    v.gpa
                ),
                None => "#VE injected, no #VE information".into(),
            };
            self.record(
                LieKind::SpuriousEvent,
                "no request (after a TDCALL)".into(),
                change,
            );
            SpuriousEvent { error_code: 0, ve }
        } else {
            let code = self.rng.pick(&SPURIOUS_VC_CODES);
            self.record(
                LieKind::SpuriousEvent,
                "no request (after a VMGEXIT)".into(),
                format!("#VC injected with error code {code:#x}"),
            );
            SpuriousEvent {
                error_code: code as u32,
                ve: None,
            }
        };
        Some(ev)
    }

    fn ve_info(&mut self, info: &mut VeInfo) {
        if !self.roll(false) {
            return;
        }
        let before = info.gpa;
        let kind = if self.rng.chance(0.5) {
            info.gpa &= !self.shared_bit;
            LieKind::VeGpaPrivate
        } else {
            info.gpa ^= 0x1000 << (self.rng.next() % 8);
            LieKind::VeGpaOther
        };
        // The guest reads it with its next request, TDG.VP.VEINFO.GET.
        self.record_at(
            self.requests + 1,
            kind,
            format!("#VE information for the MMIO access at GPA {before:#x}"),
            format!("GPA {before:#x} -> {:#x}", info.gpa),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile(rate: f64) -> (Hostile, SharedLog) {
        Hostile::new(HostileConfig { seed: 7, rate }, 1 << 47)
    }

    fn io_read(port: u64, size: u64) -> TdcallRegs {
        TdcallRegs {
            rcx: tdx::ExposeMask::LINUX.0,
            r11: vmcall::IO,
            r12: size,
            r13: tdx::DIR_READ,
            r14: port,
            ..TdcallRegs::default()
        }
    }

    #[test]
    fn no_lies_outside_cases_or_to_infrastructure() {
        let (mut h, log) = hostile(1.0);
        let mut a = TdcallRegs::default();
        h.tdvmcall(&io_read(0xd104, 1), &mut a);
        assert_eq!(a, TdcallRegs::default(), "no case announced");
        h.set_case(Some(("io", "u8")));
        for port in [0x3f8, 0xf4, 0xd110, 0xd114, 0xd120] {
            h.tdvmcall(&io_read(port, 1), &mut a);
            assert_eq!(a, TdcallRegs::default(), "port {port:#x}");
        }
        let mut m = 0x100 | ghcb::msr::TERM_REQ;
        h.ghcb_msr(m, &mut m);
        assert_eq!(m, 0x100 | ghcb::msr::TERM_REQ);
        let l = log.lock().unwrap();
        assert_eq!((l.answers, l.eligible, l.lies.len()), (7, 0, 0));
    }

    #[test]
    fn every_lie_is_logged_and_changes_the_answer() {
        let (mut h, log) = hostile(1.0);
        h.set_case(Some(("io", "u8")));
        for i in 0..200 {
            let req = io_read(0xd104, 1);
            let honest = TdcallRegs {
                r11: 0x41,
                ..TdcallRegs::default()
            };
            let mut a = honest;
            h.tdvmcall(&req, &mut a);
            assert_ne!(a, honest, "answer {i} unchanged");
            let ok = a.r10 != status::SUCCESS || a.r11 > 0xff;
            assert!(ok, "answer {i} is a lie a guest can detect: {a:?}");
        }
        let l = log.lock().unwrap();
        assert_eq!(l.lies.len(), 200);
        assert!(l.lies.iter().all(|x| x.case == "io.u8"));
        let kinds: std::collections::BTreeSet<_> = l.lies.iter().map(|x| x.kind).collect();
        assert!(kinds.contains(&LieKind::WideValue) && kinds.contains(&LieKind::ErrorStatus));
    }

    #[test]
    fn ghcb_lies_are_detectable() {
        let (mut h, log) = hostile(1.0);
        h.set_case(Some(("cpuid", "basic")));
        let req = GhcbPageRequest {
            exit_code: exit::CPUID,
            info1: 0,
            info2: 0,
        };
        for _ in 0..300 {
            let mut a = GhcbAnswer {
                info1: 0,
                info2: 0,
                rax: 1,
                rbx: 2,
                rcx: 3,
                rdx: 4,
                scratch: None,
                unmarked: Vec::new(),
            };
            h.ghcb_page(&req, &mut a);
            let detectable = a.info1 != 0
                || !a.unmarked.is_empty()
                || [a.rax, a.rbx, a.rcx, a.rdx]
                    .iter()
                    .any(|&v| v > u64::from(u32::MAX));
            assert!(detectable || h.rewrite_after_read(), "{a:?}");
        }
        let l = log.lock().unwrap();
        let kinds: std::collections::BTreeSet<_> = l.lies.iter().map(|x| x.kind).collect();
        assert_eq!(kinds.len(), 6, "{kinds:?}");
    }

    #[test]
    fn msr_protocol_lies_change_the_response_code() {
        let (mut h, _log) = hostile(1.0);
        h.set_case(Some(("platform", "sev")));
        for _ in 0..50 {
            let honest = (0x8000_001f_u64 << 32) | ghcb::msr::CPUID_RESP;
            let mut a = honest;
            h.ghcb_msr(ghcb::msr::CPUID_REQ, &mut a);
            assert_ne!(a & ghcb::msr::INFO_MASK, ghcb::msr::CPUID_RESP);
            assert_eq!(a >> 12, honest >> 12);
        }
    }

    #[test]
    fn lies_carry_the_number_of_their_request() {
        let (mut h, log) = hostile(1.0);
        for n in 1..=5 {
            h.set_case(Some(("io", "u8")));
            let mut a = TdcallRegs::default();
            h.tdvmcall(&io_read(0xd104, 1), &mut a);
            assert_eq!(log.lock().unwrap().lies.last().unwrap().seq, n);
        }
        let mut info = VeInfo {
            exit_reason: 48,
            exit_qualification: 0,
            gla: 0,
            gpa: 1 << 47,
            insn_len: 3,
            insn_info: 0,
        };
        h.ve_info(&mut info);
        let l = log.lock().unwrap();
        assert_eq!(l.requests, 5);
        assert_eq!(l.lies.last().unwrap().seq, 6, "read by the next request");
    }

    #[test]
    fn same_seed_same_lies() {
        let run = || {
            let (mut h, log) = hostile(0.3);
            h.set_case(Some(("io", "u8")));
            for _ in 0..100 {
                let mut a = TdcallRegs::default();
                h.tdvmcall(&io_read(0xd104, 2), &mut a);
            }
            log.lock().unwrap().clone()
        };
        let (a, b) = (run(), run());
        assert_eq!(a, b);
        assert!(!a.lies.is_empty() && a.lies.len() < 100);
        assert_eq!(a.eligible, 100);
    }
}
