//! Comparing an answer with the table: [`check`] against one expectation, [`check_eras`]
//! against the releases.

use super::*;
use crate::ghcb::{error, off, result};
use crate::tdx::{self, TdcallRegs, status};
use core::fmt;

/// What came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The guest's registers after TDCALL.
    Tdx(TdcallRegs),
    /// The GHCB MSR read back after an MSR-protocol request.
    Msr(u64),
    /// The GHCB page after a page request.
    Page {
        /// SW_EXITINFO1.
        info1: u64,
        /// SW_EXITINFO2.
        info2: u64,
        /// RAX, if marked valid.
        rax: Option<u64>,
        /// Whether SW_EXITINFO1 and SW_EXITINFO2 came back marked valid: the page was zeroed
        /// before the request, so unmarked means the host did not answer it.
        exit_info_valid: bool,
    },
    /// The VM ended (host side only).
    VmEnded(VmEnd),
}

impl Answer {
    const fn kind(&self) -> &'static str {
        match self {
            Answer::Tdx(_) => "TDX registers",
            Answer::Msr(_) => "a GHCB MSR value",
            Answer::Page { .. } => "a GHCB page answer",
            Answer::VmEnded(e) => e.name(),
        }
    }
}

/// How an answer differs from the expectation (its `Display` is the diagnostic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// One value differs.
    Value {
        /// Which value (`status`, `R11`, `SW_EXITINFO2`, ...).
        what: &'static str,
        /// The expected value.
        expected: u64,
        /// A name for the expected value ("" if none).
        name: &'static str,
        /// Only bits 63:32 are compared.
        class: bool,
        /// What came back (`None`: not returned, e.g. RAX not marked valid).
        got: Option<u64>,
    },
    /// A different kind of answer (e.g. the VM ended instead of answering).
    Kind {
        /// The expected kind.
        expected: &'static str,
        /// What came back.
        got: &'static str,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Mismatch::Value {
                what,
                expected,
                name,
                class,
                got,
            } => {
                write!(f, "expected {what} {expected:#x}")?;
                if !name.is_empty() {
                    write!(f, " ({name})")?;
                }
                if class {
                    f.write_str(" in bits 63:32")?;
                }
                match got {
                    Some(g) => write!(f, " got {g:#x}"),
                    None => f.write_str(" got none (not marked valid)"),
                }
            }
            Mismatch::Kind { expected, got } => write!(f, "expected {expected} got {got}"),
        }
    }
}

/// A name for a TDX module status (RAX).
pub(super) const fn module_status_name(s: u64) -> &'static str {
    if s == tdx::TDX_SUCCESS {
        "TDX_SUCCESS"
    } else if s >> 32 == tdx::TDX_OPERAND_INVALID >> 32 {
        "TDX_OPERAND_INVALID"
    } else {
        ""
    }
}

/// A name for a TDVMCALL status (R10).
pub(super) fn vmcall_status_name(s: u64) -> &'static str {
    match status::name(s) {
        "unknown status" => "",
        n => n,
    }
}

const fn info1_name(v: u64) -> &'static str {
    match v {
        result::OK => "success",
        result::EXCEPTION => "exception",
        result::ERROR => "error",
        _ => "",
    }
}

fn info2_name(info1: u64, v: u64) -> &'static str {
    if info1 == result::ERROR {
        match error::name(v) {
            "unknown reason" => "",
            n => n,
        }
    } else {
        ""
    }
}

fn check_reg(
    what: &'static str,
    expect: Reg,
    sent: u64,
    got: Option<u64>,
    name: fn(u64) -> &'static str,
    a: &Addresses,
) -> Result<(), Mismatch> {
    let (expected, class) = match expect {
        Reg::Any => return Ok(()),
        Reg::Is(arg) => (arg.resolve(a), false),
        Reg::Unchanged => (sent, false),
        Reg::StatusClass(s) => (s, true),
    };
    let ok = match got {
        Some(g) if class => g >> 32 == expected >> 32,
        Some(g) => g == expected,
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Mismatch::Value {
            what,
            expected,
            name: name(expected),
            class,
            got,
        })
    }
}

pub(super) fn no_name(_: u64) -> &'static str {
    ""
}

/// Checks `answer` against `case`'s expectation, with the run's addresses `a` (the same ones
/// the request was resolved with). The first difference is the error.
pub fn check(case: &Case, a: &Addresses, answer: &Answer) -> Result<(), Mismatch> {
    check_expect(&case.expect, &case.request, a, answer)
}

/// Checks `answer` against the KVM releases' answers. With `kvm` (the guest was told which
/// KVM to expect) only that release's answer passes; `Ok` then holds every release that
/// answers the same. Without, any release's answer passes and `Ok` holds the releases that
/// give it (current KVM's tried first); the error is the mismatch against `kvm`'s answer, or
/// against current KVM's when no release gives the answer.
pub fn check_eras(
    case: &Case,
    a: &Addresses,
    answer: &Answer,
    kvm: Option<KvmProfile>,
) -> Result<Kvms, Mismatch> {
    let matching = |e: &Expect| {
        let mut k = 0;
        for (kvms, other) in case.answers() {
            if other == e {
                k |= kvms.0;
            }
        }
        Kvms(k)
    };
    if let Some(p) = kvm {
        let e = case.expect_for(p);
        return check_expect(e, &case.request, a, answer).map(|()| matching(e));
    }
    let mut first = None;
    for (_, e) in case.answers() {
        match check_expect(e, &case.request, a, answer) {
            Ok(()) => return Ok(matching(e)),
            Err(m) => {
                first.get_or_insert(m);
            }
        }
    }
    Err(first.expect("a case has at least current KVM's answer"))
}

/// Checks `answer` to `request` against one expectation.
pub fn check_expect(
    expect: &Expect,
    request: &Request,
    a: &Addresses,
    answer: &Answer,
) -> Result<(), Mismatch> {
    match (expect, request, answer) {
        (Expect::Tdx(e), Request::Tdx(r), Answer::Tdx(got)) => {
            let sent = r.regs(a);
            check_reg(
                "TDX module status (RAX)",
                e.rax,
                sent.rax,
                Some(got.rax),
                module_status_name,
                a,
            )?;
            check_reg(
                "status",
                e.r10,
                sent.r10,
                Some(got.r10),
                vmcall_status_name,
                a,
            )?;
            check_reg("R11", e.r11, sent.r11, Some(got.r11), no_name, a)?;
            check_reg("R12", e.r12, sent.r12, Some(got.r12), no_name, a)?;
            check_reg("R13", e.r13, sent.r13, Some(got.r13), no_name, a)?;
            check_reg("R14", e.r14, sent.r14, Some(got.r14), no_name, a)?;
            check_reg("R15", e.r15, sent.r15, Some(got.r15), no_name, a)
        }
        (Expect::Msr(e), Request::GhcbMsr(sent), Answer::Msr(got)) => {
            check_reg("GHCB MSR", *e, *sent, Some(*got), no_name, a)
        }
        (
            Expect::Page(e),
            Request::GhcbPage(p),
            Answer::Page {
                info1,
                info2,
                rax,
                exit_info_valid,
            },
        ) => {
            if !exit_info_valid {
                return Err(Mismatch::Kind {
                    expected: "a GHCB page answer",
                    got: "SW_EXITINFO1/2 not marked valid (no answer)",
                });
            }
            if *info1 != e.info1 || *info2 != e.info2 {
                let (what, expected, got) = if *info1 != e.info1 {
                    ("SW_EXITINFO1", e.info1, *info1)
                } else {
                    ("SW_EXITINFO2", e.info2, *info2)
                };
                let name = if what == "SW_EXITINFO1" {
                    info1_name(expected)
                } else {
                    info2_name(e.info1, expected)
                };
                return Err(Mismatch::Value {
                    what,
                    expected,
                    name,
                    class: false,
                    got: Some(got),
                });
            }
            let sent_rax = p
                .fields
                .iter()
                .find(|f| f.offset == off::RAX && f.valid)
                .map_or(0, |f| f.value.resolve(a));
            check_reg("RAX", e.rax, sent_rax, *rax, no_name, a)
        }
        (Expect::VmEnds { end, .. }, _, Answer::VmEnded(got)) if end == got => Ok(()),
        (Expect::VmEnds { end, .. }, _, got) => Err(Mismatch::Kind {
            expected: end.name(),
            got: got.kind(),
        }),
        (_, _, got) => Err(Mismatch::Kind {
            expected: match expect {
                Expect::Tdx(_) => "TDX registers",
                Expect::Msr(_) => "a GHCB MSR value",
                Expect::Page(_) => "a GHCB page answer",
                Expect::VmEnds { .. } => "the VM to end",
            },
            got: got.kind(),
        }),
    }
}
