//! `cvmprobe list --names | head -1`: a closed stdout ends the process quietly, as it ends
//! other Unix tools (killed by SIGPIPE, or finished), never with a panic on EPIPE.

mod common;
use common::*;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// Runs `cvmprobe args` with its stdout a pipe whose reading end is already closed.
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_cvmprobe"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("cvmprobe runs")
}

#[test]
fn a_closed_stdout_ends_every_subcommand_quietly() {
    let log = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ktap/kunit_example.log"
    );
    let mut runs: Vec<Vec<&str>> = vec![
        vec!["list", "--names"],
        vec!["list"],
        vec!["list", "--conformance-markdown"],
        vec!["parse", log],
        vec!["sim-call", "--platform", "tdx-sim", "r11=30", "r12=3"],
        vec!["--help"],
        vec!["run", "--help"],
    ];
    if cvmprobe::qemu::kvm_usable() {
        runs.push(vec!["run", "--platform", "legacy", "--filter", "cpuid"]);
    }
    for args in runs {
        let o = with_closed_stdout(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}\n{}",
            text(&o)
        );
        assert!(
            o.status.signal() == Some(libc::SIGPIPE) || o.status.code().is_some(),
            "{args:?}\n{}",
            text(&o)
        );
        assert_ne!(
            o.status.code(),
            Some(101),
            "{args:?}: a panic\n{}",
            text(&o)
        );
    }
}
