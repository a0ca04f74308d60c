//! `cvmprobe sim-call`: one raw request to a simulated host's model, from the command line.
//! Every case of the conformance table sent through the CLI gets the table's answer; malformed
//! input is refused with a clear message and exit code 2.

mod common;
use common::*;
use protocol::conformance::{Addresses, Answer, Arg, CASES, Expect, Request, check};
use protocol::tdx::TdcallRegs;

fn ok_line(args: &[&str]) -> String {
    let mut a = vec!["sim-call"];
    a.extend_from_slice(args);
    let o = cvmprobe(&a);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(out.lines().count(), 1, "one line\n{}", text(&o));
    out.trim_end().to_string()
}

fn error_of(args: &[&str]) -> String {
    let mut a = vec!["sim-call"];
    a.extend_from_slice(args);
    error_line(&cvmprobe(&a))
}

fn values(line: &str) -> Vec<(String, u64)> {
    line.split_whitespace()
        .map(|p| {
            let (n, v) = p.split_once('=').expect("name=value");
            let v = u64::from_str_radix(v.strip_prefix("0x").expect("0x value"), 16).unwrap();
            (n.to_string(), v)
        })
        .collect()
}

#[test]
fn tdx_io_of_three_bytes_is_invalid_operand() {
    assert_eq!(
        ok_line(&[
            "--platform",
            "tdx-sim",
            "r11=30",
            "r12=3",
            "r13=0",
            "r14=0x80"
        ]),
        "rax=0x0 r10=0x8000000000000000 r11=0x1e r12=0x3 r13=0x0 r14=0x80 r15=0x0"
    );
}

#[test]
fn tdx_reads_answer_all_ones_or_the_given_value() {
    let line = ok_line(&["--platform", "tdx-sim", "r11=30", "r12=2", "r14=0xf00"]);
    assert!(line.starts_with("rax=0x0 r10=0x0 r11=0xffff "), "{line}");
    let line = ok_line(&[
        "--platform",
        "tdx-sim",
        "--read-value",
        "0x1234",
        "r11=30",
        "r12=2",
        "r14=0xf00",
    ]);
    assert!(line.starts_with("rax=0x0 r10=0x0 r11=0x1234 "), "{line}");
}

#[test]
fn json_output() {
    let mut a = vec![
        "sim-call",
        "--json",
        "--platform",
        "tdx-sim",
        "r11=30",
        "r12=1",
    ];
    a.push("r14=0xf00");
    let o = cvmprobe(&a);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let out = out.trim();
    assert!(out.starts_with("{\"platform\":\"tdx-sim\""), "{out}");
    assert!(out.ends_with("]}"), "{out}");
    assert!(out.contains("\"r10\":\"0x0\",\"r11\":\"0xff\""), "{out}");
    assert!(out.contains("\"host_requests\":[\"PortRead"), "{out}");
}

#[test]
fn sev_es_msr_protocol_and_page() {
    // SEV information: max version 2, min 1, C-bit 47.
    assert_eq!(
        ok_line(&["--platform", "sev-es-sim", "msr=0x2"]),
        "msr=0x200012f000001"
    );
    assert_eq!(
        ok_line(&[
            "--platform",
            "sev-es-sim",
            "exit_code=0x78",
            "info1=0",
            "info2=0"
        ]),
        "info1=0x2 info2=0x6 rax=0x0 rbx=0x0 rcx=0x0 rdx=0x0"
    );
    // Version 1 splits a 16-byte MMIO read instead of refusing it.
    let v2 = [
        "exit_code=0x80000001",
        "info1=0xd0001000",
        "info2=16",
        "scratch=ghcb+0x800",
    ];
    let mut a = vec!["--platform", "sev-es-sim"];
    a.extend_from_slice(&v2);
    assert!(ok_line(&a).starts_with("info1=0x2 info2=0x5 "));
    let mut a = vec!["--platform", "sev-es-sim", "--ghcb-version", "1"];
    a.extend_from_slice(&v2);
    assert!(ok_line(&a).starts_with("info1=0x0 info2=0x0 "));
}

#[test]
fn kvm_profiles_answer_as_their_release() {
    // An SNP guest request from an SEV-ES guest: the three eras.
    let req = ["exit_code=0x80000011", "info1=0", "info2=0"];
    for (kvm, info2) in [
        ("6.10", "0x6"),
        ("6.11", "0x4"),
        ("6.16", "0x4"),
        ("current", "0x6"),
    ] {
        let mut a = vec!["--platform", "sev-es-sim", "--kvm", kvm];
        a.extend_from_slice(&req);
        let line = ok_line(&a);
        assert!(
            line.starts_with(&format!("info1=0x2 info2={info2} ")),
            "{kvm}: {line}"
        );
    }
    // An SNP-only MSR request: unknown to 6.10 (the MSR stays), the end of the VM since.
    let line = ok_line(&["--platform", "sev-es-sim", "--kvm", "6.10", "msr=0x12"]);
    assert_eq!(line, "msr=0x12");
    // A KVM without TDX cannot play tdx-sim; an unknown profile is refused.
    let e = error_of(&["--platform", "tdx-sim", "--kvm", "6.11", "r11=30"]);
    assert!(e.contains("no TDX host support"), "{e}");
    let o = cvmprobe(&[
        "sim-call",
        "--platform",
        "tdx-sim",
        "--kvm",
        "6.12",
        "r11=30",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a KVM profile"),
        "{}",
        text(&o)
    );
}

#[test]
fn requests_that_end_the_vm_say_so() {
    let line = ok_line(&["--platform", "tdx-sim", "r11=0x10003"]);
    assert!(line.starts_with("stop=tdx_fatal detail="), "{line}");
    let line = ok_line(&["--platform", "sev-es-sim", "msr=0x12"]);
    assert!(line.starts_with("stop=sev_term detail="), "{line}");
}

#[test]
fn bad_input_is_refused_clearly() {
    let cases: [(&[&str], &str); 8] = [
        (
            &["--platform", "tdx-sim", "foo=1"],
            "`foo` is not a TDX register",
        ),
        (
            &["--platform", "tdx-sim", "r12=zz"],
            "r12=: `zz` is not a number",
        ),
        (&["--platform", "tdx-sim", "r12"], "`r12` is not NAME=VALUE"),
        (
            &["--platform", "tdx-sim", "r12=1", "r12=2"],
            "`r12` is given twice",
        ),
        (
            &["--platform", "sev-es-sim", "r11=3"],
            "`r11` is not a GHCB field",
        ),
        (
            &["--platform", "sev-es-sim", "msr=0x2", "info1=0"],
            "give it alone",
        ),
        (
            &["--platform", "sev-es-sim", "msr=0x1000"],
            "the low 12 bits are 0",
        ),
        (
            &[
                "--platform",
                "sev-es-sim",
                "exit_code=0x72",
                "valid=exit_code,bogus",
            ],
            "valid=: `bogus` is not a GHCB field",
        ),
    ];
    for (args, want) in cases {
        let e = error_of(args);
        assert!(e.contains(want), "{args:?}: `{e}` lacks `{want}`");
    }
    // clap refuses a missing platform or request.
    let o = cvmprobe(&["sim-call", "r11=30"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--platform"));
}

/// The CLI form of an operand (the oracle's GHCB is at 0x10000; the MapGPA page stands at
/// 0x200000, shared bit 47).
fn cli_value(a: Arg, addrs: &Addresses) -> String {
    match a {
        Arg::Ghcb(o) => format!("ghcb+{o:#x}"),
        other => format!("{:#x}", other.resolve(addrs)),
    }
}

fn field_name(offset: usize) -> &'static str {
    use protocol::ghcb::off;
    match offset {
        off::SW_EXIT_CODE => "exit_code",
        off::SW_EXIT_INFO_1 => "info1",
        off::SW_EXIT_INFO_2 => "info2",
        off::SW_SCRATCH => "scratch",
        off::RAX => "rax",
        off::RBX => "rbx",
        off::RCX => "rcx",
        off::RDX => "rdx",
        o => panic!("no sim-call name for GHCB offset {o:#x}"),
    }
}

#[test]
fn every_conformance_case_through_the_cli_gets_the_tables_answer() {
    let addrs = Addresses {
        shared_bit: 1 << 47,
        ghcb_gpa: vmm::sim::oracle::GHCB_GPA,
        map_gpa_page: 0x20_0000,
    };
    for case in CASES {
        let mut args: Vec<String> = vec!["--platform".into()];
        match case.request {
            Request::Tdx(r) => {
                args.push("tdx-sim".into());
                let regs = r.regs(&addrs);
                for (n, v) in [
                    ("rcx", regs.rcx),
                    ("r10", regs.r10),
                    ("r11", regs.r11),
                    ("r12", regs.r12),
                    ("r13", regs.r13),
                    ("r14", regs.r14),
                    ("r15", regs.r15),
                ] {
                    args.push(format!("{n}={v:#x}"));
                }
            }
            Request::GhcbMsr(v) => {
                args.push("sev-es-sim".into());
                args.push(format!("msr={v:#x}"));
            }
            Request::GhcbPage(p) => {
                args.push("sev-es-sim".into());
                for f in p.fields {
                    args.push(format!(
                        "{}={}",
                        field_name(f.offset),
                        cli_value(f.value, &addrs)
                    ));
                }
                let valid: Vec<&str> = p
                    .fields
                    .iter()
                    .filter(|f| f.valid)
                    .map(|f| field_name(f.offset))
                    .collect();
                args.push(format!("valid={}", valid.join(",")));
                args.push(format!("version={}", p.protocol_version));
                args.push(format!("usage={}", p.usage));
            }
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let line = ok_line(&refs);
        let answer = if let Some(rest) = line.strip_prefix("stop=") {
            let kind = rest.split_whitespace().next().unwrap();
            Answer::VmEnded(match kind {
                "tdx_fatal" => protocol::conformance::VmEnd::TdxFatal,
                "sev_term" => protocol::conformance::VmEnd::SevTerm,
                "kvm_run_error" => protocol::conformance::VmEnd::KvmRunError,
                k => panic!("{}: stop={k}", case.id),
            })
        } else {
            let v = values(&line);
            let get = |n: &str| v.iter().find(|(m, _)| m == n).map(|(_, x)| *x);
            match case.request {
                Request::Tdx(r) => {
                    let sent = r.regs(&addrs);
                    Answer::Tdx(TdcallRegs {
                        rax: get("rax").unwrap(),
                        r10: get("r10").unwrap(),
                        r11: get("r11").unwrap(),
                        r12: get("r12").unwrap(),
                        r13: get("r13").unwrap(),
                        r14: get("r14").unwrap(),
                        r15: get("r15").unwrap(),
                        ..sent
                    })
                }
                Request::GhcbMsr(_) => Answer::Msr(get("msr").unwrap()),
                Request::GhcbPage(_) => Answer::Page {
                    info1: get("info1").unwrap(),
                    info2: get("info2").unwrap(),
                    rax: get("rax"),
                    exit_info_valid: true,
                },
            }
        };
        if let Err(m) = check(case, &addrs, &answer) {
            panic!("{}: sim-call {}: {m}\n{line}", case.id, args.join(" "));
        }
        if matches!(case.expect, Expect::VmEnds { .. }) {
            assert!(line.starts_with("stop="), "{}: {line}", case.id);
        }
    }
}
