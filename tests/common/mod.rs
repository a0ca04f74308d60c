//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the `cvmprobe` binary built for these tests.
pub fn cvmprobe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cvmprobe"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("cvmprobe binary runs")
}

/// stdout + stderr as text, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "--- status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Environment variable naming the KVM device the test helpers open (default `/dev/kvm`):
/// point it at a missing path to try the skip path on a machine that has KVM.
pub const KVM_DEVICE_ENV: &str = "CVMPROBE_KVM_DEVICE";

/// Says that a test skipped, where `cargo test` shows it: libtest captures `eprintln!` of a
/// passing test and hides it, so the notice goes straight to the process's stderr.
pub fn skip_notice(text: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
    let _ = err.flush();
}

/// Whether KVM tests should run: `true` when the KVM device opens; `false` (with a visible
/// notice) when it does not and `CVMPROBE_NO_KVM=1` asks to skip them; otherwise the test
/// fails, so a missing /dev/kvm never passes silently.
pub fn kvm_or_skip(test: &str) -> bool {
    let dev = std::env::var(KVM_DEVICE_ENV).unwrap_or_else(|_| "/dev/kvm".into());
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev)
        .is_ok();
    if ok {
        return true;
    }
    if std::env::var("CVMPROBE_NO_KVM").as_deref() == Ok("1") {
        skip_notice(&format!(
            "SKIPPED {test}: {dev} is not usable and CVMPROBE_NO_KVM=1 asks to skip KVM tests"
        ));
        return false;
    }
    panic!(
        "{test} needs {dev} (cannot open it read-write); set CVMPROBE_NO_KVM=1 to skip KVM tests explicitly"
    );
}

/// Whether a QEMU test should run: `true` when QEMU answers `--version`; `false` with a
/// visible notice when it does not; a failure instead when the tools are required
/// (`CVMPROBE_REQUIRE_QEMU=1`, which `.ci/run` sets, or `CI`). The build script warns how
/// many tests call this and how to install QEMU.
pub fn qemu_or_skip(test: &str) -> bool {
    use cvmprobe::tools;
    let bin = tools::qemu_binary();
    let ok = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    let what = format!(
        "{} does not run: install QEMU ({}) or point {} at it",
        bin.display(),
        tools::QEMU_INSTALL,
        tools::QEMU_ENV
    );
    missing(test, "QEMU", &what)
}

/// Whether a KVM-selftest test should run: `true` when a kernel tree is there
/// (`CVMPROBE_KSRC`, or Debian's linux-source-6.12 tarball); `false` with a visible notice when
/// it is not; a failure instead when the tools are required (`CVMPROBE_REQUIRE_QEMU=1`, which
/// `.ci/run` sets, or `CI`). The build script warns how many tests call this.
pub fn kernel_tree_or_skip(test: &str) -> bool {
    use cvmprobe::tools;
    let Err(looked) = tools::kernel_tree() else {
        return true;
    };
    let what = format!(
        "no kernel tree at {}: install one ({}) or point {} at a tree",
        looked.display(),
        tools::KERNEL_TREE_INSTALL,
        tools::KSRC_ENV
    );
    missing(test, "a kernel tree", &what)
}

/// The KVM selftest, built (as `cvmprobe selftest` builds it) in a tree that stays locked
/// while this is alive.
pub struct BuiltSelftest {
    /// The build's work directory (`target/selftest`).
    pub work: std::path::PathBuf,
    /// The kernel tree it was built in.
    pub tree: cvmprobe::selftest::Tree,
    /// The test binary.
    pub binary: std::path::PathBuf,
    _lock: cvmprobe::selftest::WorkLock,
}

/// Builds the KVM selftest under the work directory's lock. Call after
/// [`kernel_tree_or_skip`].
pub fn built_selftest() -> BuiltSelftest {
    let work = cvmprobe::selftest::work_dir();
    let lock = cvmprobe::selftest::lock(&work).unwrap();
    let ksrc = std::env::var_os(cvmprobe::tools::KSRC_ENV).map(std::path::PathBuf::from);
    let tree = cvmprobe::selftest::prepare_tree(ksrc.as_deref(), &work).unwrap();
    let lib = std::path::Path::new(env!("CVMPROBE_SELFTEST_LIB"));
    let binary = cvmprobe::selftest::build(&tree, lib, &work).unwrap();
    BuiltSelftest {
        work,
        tree,
        binary,
        _lock: lock,
    }
}

/// Whether a UEFI test should run: QEMU as in [`qemu_or_skip`], and the OVMF code file.
pub fn ovmf_or_skip(test: &str) -> bool {
    use cvmprobe::tools;
    let code = tools::ovmf_code();
    if code.is_file() {
        return true;
    }
    let what = format!(
        "OVMF not found at {}: install it ({}) or point {} at it",
        code.display(),
        tools::OVMF_INSTALL,
        tools::OVMF_ENV
    );
    missing(test, "OVMF", &what)
}

/// `test` lacks `tool` (`what` says where it was looked for and how to install it): a
/// failure when the tools are required, else a visible skip (`false`).
fn missing(test: &str, tool: &str, what: &str) -> bool {
    if cvmprobe::tools::tools_required() {
        panic!(
            "{test} needs {tool}: {what} ({}=1 or CI requires the tests that need it)",
            cvmprobe::tools::REQUIRE_ENV
        );
    }
    skip_notice(&format!("SKIPPED {test}: {what}"));
    false
}

/// Runs one test of this test binary again, in a child process with `env` added and the
/// variables in `unset` removed: how a test checks what another test does in an environment
/// it cannot change for itself (no QEMU, no KVM). The child captures output as `cargo test`
/// does.
pub fn rerun_test(test: &str, env: &[(&str, &str)], unset: &[&str]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args(["--exact", test, "--test-threads", "1"]);
    for k in unset {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the test binary runs")
}

/// The number of cases `cvmprobe list` shows for `filter`.
pub fn listed_cases(filter: &str) -> usize {
    let o = cvmprobe(&["list", "--names", "--filter", filter]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .count()
}

/// Counts from the verdict line: (passed, failed, skipped, not run, total).
pub fn verdict_counts(o: &Output) -> (usize, usize, usize, usize, usize) {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.starts_with("verdict:"))
        .unwrap_or_else(|| panic!("no verdict line\n{}", text(o)));
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("number"))
        .collect();
    assert!(nums.len() >= 5, "verdict line: {line}");
    (nums[0], nums[1], nums[2], nums[3], nums[4])
}

/// The one `cvmprobe: error:` line of a run that could not be made (exit code 2).
pub fn error_line(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(2), "{}", text(o));
    let err = String::from_utf8_lossy(&o.stderr);
    err.lines()
        .find(|l| l.starts_with("cvmprobe: error:"))
        .unwrap_or_else(|| panic!("no error line\n{}", text(o)))
        .to_string()
}

/// A run where a fault struck at the first case of `mmio`: the `platform` and `io` results are
/// kept, every later case is not run with `reason` shown, and the serial tail is printed.
pub fn assert_fault_report(o: &Output, reason: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    let out = String::from_utf8_lossy(&o.stdout);
    let (passed, failed, skipped, not_run, total) = verdict_counts(o);
    assert_eq!(total, listed_cases(""), "{}", text(o));
    let before = protocol::catalog::PLATFORM.cases.len() + protocol::catalog::IO.cases.len();
    assert_eq!(
        passed + skipped,
        before,
        "the results before the fault are kept\n{}",
        text(o)
    );
    assert_eq!((failed, not_run), (0, total - before), "{}", text(o));
    assert!(out.contains("NOT RUN mmio.u8_roundtrip"), "{}", text(o));
    assert!(out.contains(reason), "reason `{reason}` shown\n{}", text(o));
    assert!(
        out.contains("serial lines ---"),
        "serial tail printed\n{}",
        text(o)
    );
    assert!(out.contains("verdict: FAIL"), "{}", text(o));
}
