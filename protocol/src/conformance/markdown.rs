//! The README's "Conformance cases" table, rendered from [`CASES`]
//! (`cvmprobe list --conformance-markdown`).
use super::check::{module_status_name, no_name, vmcall_status_name};
use super::table::v;
use super::*;
use crate::ghcb::{self, error, off, result};
use crate::tdx;
use std::fmt::Write as _;
use std::string::String;
use std::vec::Vec;

fn arg(a: Arg) -> String {
    match a {
        Arg::Val(v) => format!("{v:#x}"),
        Arg::Shared(v) => format!("{v:#x}|shared"),
        Arg::Ghcb(o) => format!("GHCB+{o:#x}"),
        Arg::MapGpaPage => "page|shared".into(),
    }
}

fn field_name(offset: usize) -> &'static str {
    match offset {
        off::RAX => "rax",
        off::RBX => "rbx",
        off::RCX => "rcx",
        off::RDX => "rdx",
        off::RSI => "rsi",
        off::SW_EXIT_CODE => "exit_code",
        off::SW_EXIT_INFO_1 => "info1",
        off::SW_EXIT_INFO_2 => "info2",
        off::SW_SCRATCH => "scratch",
        off::XCR0 => "xcr0",
        _ => "field",
    }
}

fn request(r: &Request) -> String {
    match r {
        Request::Tdx(t) => format!(
            "rcx={:#x} r10={:#x} r11={:#x} r12={} r13={} r14={} r15={}",
            t.rcx,
            t.r10,
            t.r11,
            arg(t.r12),
            arg(t.r13),
            arg(t.r14),
            arg(t.r15)
        ),
        Request::GhcbMsr(v) => format!("msr={v:#x}"),
        Request::GhcbPage(p) => {
            let mut s = String::new();
            for f in p.fields {
                let _ = write!(s, "{}={} ", field_name(f.offset), arg(f.value));
            }
            let valid: Vec<&str> = p
                .fields
                .iter()
                .filter(|f| f.valid)
                .map(|f| field_name(f.offset))
                .collect();
            let _ = write!(s, "valid={}", valid.join(","));
            if p.protocol_version != ghcb::GHCB_VERSION_MAX {
                let _ = write!(s, " version={}", p.protocol_version);
            }
            if p.usage != 0 {
                let _ = write!(s, " usage={}", p.usage);
            }
            s
        }
    }
}

fn reg(name: &str, r: Reg, status_name: fn(u64) -> &'static str) -> Option<String> {
    match r {
        Reg::Any | Reg::Unchanged => None,
        Reg::Is(Arg::Val(v)) => Some(match status_name(v) {
            "" => format!("{name}={v:#x}"),
            n => format!("{name}={n}"),
        }),
        Reg::Is(a) => Some(format!("{name}={}", arg(a))),
        Reg::StatusClass(v) => Some(format!("{name}={}", module_status_name(v))),
    }
}

fn expect(e: &Expect) -> String {
    match e {
        Expect::Tdx(t) => {
            let mut parts: Vec<String> = Vec::new();
            if t.rax != v(tdx::TDX_SUCCESS) {
                parts.extend(reg("rax", t.rax, module_status_name));
            }
            parts.extend(reg("r10", t.r10, vmcall_status_name));
            for (n, r) in [
                ("r11", t.r11),
                ("r12", t.r12),
                ("r13", t.r13),
                ("r14", t.r14),
                ("r15", t.r15),
            ] {
                parts.extend(reg(n, r, no_name));
            }
            if parts.is_empty() {
                "all unchanged".into()
            } else {
                parts.join(" ")
            }
        }
        Expect::Msr(Reg::Unchanged) => "msr unchanged".into(),
        Expect::Msr(r) => reg("msr", *r, no_name).unwrap_or_default(),
        Expect::Page(p) if p.info1 == result::ERROR => {
            format!("info1=2 info2={}", error::name(p.info2))
        }
        Expect::Page(p) => format!("info1={:#x} info2={:#x}", p.info1, p.info2),
        Expect::VmEnds { end, why } => format!("VM ends: {} (not executed: {why})", end.name()),
    }
}

/// Text for a table cell outside a code span: `|` escaped, `<` `>` as entities (the
/// GHCI's `TDG.VP.VMCALL<MapGPA>` would otherwise read as an HTML tag).
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The answer cell: current KVM's answer, then each older era's, with the releases.
fn answers(c: &Case) -> String {
    let mut s = expect(&c.expect);
    if c.varies_by_release() {
        let mut b = [0u8; 48];
        let _ = write!(s, " (current KVM)");
        for e in c.older {
            let _ = write!(s, "; KVM {}: {}", e.kvm.label(&mut b), expect(&e.expect));
        }
    }
    if !c.note.is_empty() {
        let _ = write!(s, "; {}", c.note);
    }
    s
}

/// The "Conformance cases" table: one row per case, the answer of each KVM era in one cell.
pub fn markdown() -> String {
    let mut s = String::new();
    s.push_str("| case | request | KVM's answer, by release | source |\n");
    s.push_str("|---|---|---|---|\n");
    for c in CASES {
        let suite = c.suite();
        let mut source = String::from(c.source);
        for e in c.older {
            let _ = write!(source, "; {}", e.why);
        }
        let _ = writeln!(
            s,
            "| `{suite}.{}` | `{}` | {} | {} |",
            c.id,
            request(&c.request).replace('|', "\\|"),
            cell(&answers(c)),
            cell(&source)
        );
    }
    s
}
