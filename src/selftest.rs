//! `cvmprobe selftest`: the guest's test tables inside the upstream KVM selftests.
//!
//! `selftest/cvmprobe_test.c` is a kvm_util selftest whose guest code is the guest library
//! (`libcvmprobe.a`, built by the build script for x86_64-unknown-none). This module finds or
//! unpacks a kernel tree, builds the test with the tree's own selftest rules, runs it once per
//! VM type and turns its kselftest output into the same summary, JUnit and exit code as
//! `cvmprobe run`.
//!
//! The default tree is Debian's `linux-source-6.12` package, unpacked in part (what the
//! selftests and `make headers` need) under `target/selftest/`.

use crate::tools::{KERNEL_TARBALL, KERNEL_TREE_INSTALL};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tarball's top directory.
const TARBALL_TOP: &str = "linux-source-6.12";
/// What the selftests and `make headers` need from the tree (the rest is 1.5 GB).
pub const UNPACKED_PATHS: [&str; 9] = [
    "tools",
    "include",
    "arch/x86",
    "scripts",
    "Makefile",
    "Kbuild",
    "Kconfig",
    "arch/Kconfig",
    "usr",
];
/// Written into the unpacked tree once `make headers` succeeded: the tarball it came from.
const UNPACKED_STAMP: &str = ".cvmprobe-unpacked";
/// The selftest directory inside a kernel tree.
pub const KVM_SELFTESTS: &str = "tools/testing/selftests/kvm";
/// The test's name (source `<arch dir>/cvmprobe_test.c`, binary next to it).
pub const TEST_NAME: &str = "cvmprobe_test";
/// The test's source and the library's header, as the build embeds them.
pub const TEST_SOURCE: &str = include_str!("../selftest/cvmprobe_test.c");
/// See [`TEST_SOURCE`].
pub const HEADER: &str = include_str!("../selftest/cvmprobe.h");
/// Compiler flags for the kvm_util objects and the test: `-mgeneral-regs-only` because a
/// software-nested KVM (kvm_pvm) cannot emulate SSE in guest ring 0, and 6.12 builds guest C
/// with `-march=x86-64-v2` (kvm_util's own `route_exception` would use it). Real KVM hosts do
/// not need it; it costs them nothing.
pub const EXTRA_CFLAGS: &str = "-mgeneral-regs-only";

/// Why the selftest could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum SelftestError {
    /// No kernel tree to build against.
    #[error(
        "no kernel tree: {KERNEL_TARBALL} is not there (`{KERNEL_TREE_INSTALL}` installs it), \
         and no --ksrc DIR was given"
    )]
    NoTree,
    /// `--ksrc` does not point at a kernel tree with the KVM selftests.
    #[error("{0} is not a kernel tree with the KVM selftests (no {KVM_SELFTESTS}/Makefile)")]
    NotATree(PathBuf),
    /// A program the build needs is missing.
    #[error("`{program}` is missing: `{install}` installs it")]
    MissingTool {
        /// The program.
        program: &'static str,
        /// The command that installs it.
        install: &'static str,
    },
    /// A step failed; its output is in `log`.
    #[error("{what} failed ({status}); its output is in {}", log.display())]
    Step {
        /// What was done.
        what: String,
        /// How it ended.
        status: String,
        /// Where its output went.
        log: PathBuf,
    },
    /// An I/O error while doing `what`.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SelftestError {
    let what = what.into();
    move |source| SelftestError::Io { what, source }
}

/// The programs the build runs, with the Debian package that has each.
const TOOLS: [(&str, &str); 4] = [
    ("make", "sudo apt-get install make"),
    ("gcc", "sudo apt-get install gcc"),
    ("tar", "sudo apt-get install tar"),
    ("xz", "sudo apt-get install xz-utils"),
];

/// Whether `program` is on `PATH`.
fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| d.join(program).is_file())
}

/// The first missing program the build needs (`tar` and `xz` only when a tarball is unpacked).
pub fn missing_tool(unpacking: bool) -> Option<SelftestError> {
    TOOLS
        .iter()
        .filter(|(p, _)| unpacking || !matches!(*p, "tar" | "xz"))
        .find(|(p, _)| !on_path(p))
        .map(|&(program, install)| SelftestError::MissingTool { program, install })
}

/// Where the default tree is unpacked and the build's files and logs go: `target/selftest`,
/// next to the library the build script made (`target/selftest-lib/...`).
pub fn work_dir() -> PathBuf {
    let lib = Path::new(env!("CVMPROBE_SELFTEST_LIB"));
    lib.ancestors()
        .nth(4)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("selftest")
}

/// A kernel tree ready for the selftest build (`make headers` done).
#[derive(Clone, Debug)]
pub struct Tree {
    /// The tree's top directory.
    pub root: PathBuf,
    /// The directory of the x86 tests inside [`KVM_SELFTESTS`]: `x86_64` up to Linux 6.15,
    /// `x86` after.
    pub arch_dir: &'static str,
}

impl Tree {
    /// `tools/testing/selftests/kvm` of the tree.
    pub fn kvm_dir(&self) -> PathBuf {
        self.root.join(KVM_SELFTESTS)
    }

    /// The test binary the build makes.
    pub fn test_binary(&self) -> PathBuf {
        self.kvm_dir().join(self.arch_dir).join(TEST_NAME)
    }

    /// Whether the tree has the TDX selftests (the test's TDX path is built only then).
    pub fn has_tdx_selftests(&self) -> bool {
        [
            "include/x86/tdx/tdx_util.h",
            "include/x86_64/tdx/tdx_util.h",
        ]
        .iter()
        .any(|p| self.kvm_dir().join(p).is_file())
    }
}

/// The x86 test directory of a KVM selftests directory.
fn arch_dir(kvm_dir: &Path) -> &'static str {
    if kvm_dir.join("x86_64").is_dir() {
        "x86_64"
    } else {
        "x86"
    }
}

/// The tree to build against: `ksrc` (after `make headers` if it has no `usr/include`), or
/// Debian's tarball unpacked in part under `work_dir` (once; again when the tarball changes).
pub fn prepare_tree(ksrc: Option<&Path>, work_dir: &Path) -> Result<Tree, SelftestError> {
    let root = match ksrc {
        Some(dir) => {
            if !dir.join(KVM_SELFTESTS).join("Makefile").is_file() {
                return Err(SelftestError::NotATree(dir.to_path_buf()));
            }
            if let Some(e) = missing_tool(false) {
                return Err(e);
            }
            if !dir.join("usr/include/linux/kvm.h").is_file() {
                make_headers(dir, work_dir)?;
            }
            dir.to_path_buf()
        }
        None => unpack_default(Path::new(KERNEL_TARBALL), work_dir)?,
    };
    let arch_dir = arch_dir(&root.join(KVM_SELFTESTS));
    Ok(Tree { root, arch_dir })
}

/// What identifies a tarball: its size and modification time.
fn tarball_id(tarball: &Path) -> Result<String, SelftestError> {
    let m = std::fs::metadata(tarball).map_err(io(format!("reading {}", tarball.display())))?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok(format!("{} {} {}\n", tarball.display(), m.len(), mtime))
}

/// Unpacks the parts of `tarball` the build needs into `work_dir` and installs the headers.
pub fn unpack_default(tarball: &Path, work_dir: &Path) -> Result<PathBuf, SelftestError> {
    if !tarball.is_file() {
        return Err(SelftestError::NoTree);
    }
    let root = work_dir.join(TARBALL_TOP);
    let id = tarball_id(tarball)?;
    if std::fs::read_to_string(root.join(UNPACKED_STAMP)).is_ok_and(|s| s == id) {
        return Ok(root);
    }
    if let Some(e) = missing_tool(true) {
        return Err(e);
    }
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(io(format!("removing {}", root.display())))?;
    }
    std::fs::create_dir_all(work_dir).map_err(io(format!("creating {}", work_dir.display())))?;
    let mut tar = Command::new("tar");
    tar.arg("-xJf").arg(tarball).arg("-C").arg(work_dir);
    tar.args(UNPACKED_PATHS.iter().map(|p| format!("{TARBALL_TOP}/{p}")));
    step(
        &mut tar,
        &format!("unpacking {}", tarball.display()),
        &work_dir.join("unpack.log"),
    )?;
    make_headers(&root, work_dir)?;
    std::fs::write(root.join(UNPACKED_STAMP), id).map_err(io(format!(
        "writing {}",
        root.join(UNPACKED_STAMP).display()
    )))?;
    Ok(root)
}

/// `make headers` in `root` (what the selftests include as `usr/include`).
fn make_headers(root: &Path, work_dir: &Path) -> Result<(), SelftestError> {
    std::fs::create_dir_all(work_dir).map_err(io(format!("creating {}", work_dir.display())))?;
    let mut make = Command::new("make");
    make.arg("-C").arg(root).arg(jobs()).arg("headers");
    step(
        &mut make,
        &format!("`make headers` in {}", root.display()),
        &work_dir.join("headers.log"),
    )
}

/// `-jN` for the machine's CPUs.
fn jobs() -> String {
    format!(
        "-j{}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    )
}

/// Runs `cmd` with its output in `log`; an error names `what` and the log.
fn step(cmd: &mut Command, what: &str, log: &Path) -> Result<(), SelftestError> {
    let file = std::fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
    let err = file
        .try_clone()
        .map_err(io(format!("opening {}", log.display())))?;
    let status = cmd
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(io(format!("starting {what}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(SelftestError::Step {
            what: what.to_string(),
            status: status.to_string(),
            log: log.to_path_buf(),
        })
    }
}

/// The makefile that builds the test with the tree's own rules: the selftests' Makefile, plus
/// the library on the test's link line.
pub fn wrapper_makefile(lib: &Path) -> String {
    format!(
        "# Written by `cvmprobe selftest`: the KVM selftests' own rules, plus cvmprobe's guest\n\
         # library on cvmprobe_test's link line (and a relink when it changes).\n\
         include Makefile\n\
         $(OUTPUT)/$(CVMPROBE_TEST): LDLIBS += {lib}\n\
         $(OUTPUT)/$(CVMPROBE_TEST): {lib}\n",
        lib = lib.display()
    )
}

/// Holds `work_dir`'s lock (one `cvmprobe selftest` at a time unpacks, builds and runs in a
/// tree) until dropped: closing the file releases it.
pub struct WorkLock {
    _file: std::fs::File,
}

/// Takes `work_dir`'s lock, waiting for another holder.
pub fn lock(work_dir: &Path) -> Result<WorkLock, SelftestError> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(work_dir).map_err(io(format!("creating {}", work_dir.display())))?;
    let path = work_dir.join(".lock");
    let f = std::fs::File::create(&path).map_err(io(format!("creating {}", path.display())))?;
    // SAFETY: flock on a descriptor this function owns; it changes no memory.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io(format!("locking {}", path.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(WorkLock { _file: f })
}

/// Builds the test in `tree` against the library `lib` (the header goes to `work_dir`);
/// returns the binary.
pub fn build(tree: &Tree, lib: &Path, work_dir: &Path) -> Result<PathBuf, SelftestError> {
    let include = work_dir.join("include");
    std::fs::create_dir_all(&include).map_err(io(format!("creating {}", include.display())))?;
    write_if_changed(&include.join("cvmprobe.h"), HEADER)?;
    let kvm = tree.kvm_dir();
    let source = kvm.join(tree.arch_dir).join(format!("{TEST_NAME}.c"));
    write_if_changed(&source, TEST_SOURCE)?;
    let makefile = work_dir.join("cvmprobe.mk");
    write_if_changed(&makefile, &wrapper_makefile(lib))?;
    let test = format!("{}/{TEST_NAME}", tree.arch_dir);
    let binary = tree.test_binary();
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(&kvm)
        .arg("-f")
        .arg(&makefile)
        .arg(jobs())
        .arg(format!(
            "EXTRA_CFLAGS={EXTRA_CFLAGS} -I{}",
            include.display()
        ))
        .arg(format!("TEST_GEN_PROGS_x86_64={test}"))
        .arg(format!("TEST_GEN_PROGS_x86={test}"))
        .arg(format!("CVMPROBE_TEST={test}"))
        .arg(&binary);
    step(
        &mut make,
        &format!("building {TEST_NAME} in {}", kvm.display()),
        &work_dir.join("build.log"),
    )?;
    Ok(binary)
}

fn write_if_changed(path: &Path, text: &str) -> Result<(), SelftestError> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))
}

/// The VM types the test creates (`cvmprobe_test -t`), in the order `--platform all` runs
/// them.
pub const VM_TYPES: [(PlatformKind, &str); 3] = [
    (PlatformKind::Legacy, "legacy"),
    (PlatformKind::SevEs, "sev-es"),
    (PlatformKind::Tdx, "tdx"),
];

use crate::environment::Environment;
use crate::ktap::{self, Document, Status, TestNode};
use crate::report::{CaseReport, CaseStatus, Summary};
use protocol::catalog::{self, Filter};
use protocol::platform::PlatformKind;
use std::time::{Duration, Instant};

/// The kselftest exit code of a skipped test (`KSFT_SKIP`).
pub const KSFT_SKIP: i32 = 4;

/// What one run of the test is asked for.
#[derive(Clone, Debug)]
pub struct SelftestRequest {
    /// The VM type.
    pub platform: PlatformKind,
    /// `cvmprobe.filter=` (validated), empty for all.
    pub filter: String,
    /// Extra guest command-line tokens (`cvmprobe.inject=...`).
    pub append: Vec<String>,
    /// The test device's seed; random when `None`.
    pub seed: Option<u64>,
    /// Hang limit.
    pub timeout: Duration,
    /// Copy the test's output to stdout as it arrives.
    pub verbose: bool,
}

/// The test's arguments for a request.
pub fn test_args(req: &SelftestRequest) -> Vec<String> {
    let name = VM_TYPES
        .iter()
        .find(|(p, _)| *p == req.platform)
        .map_or("legacy", |(_, n)| n);
    let mut args = vec!["-t".to_string(), name.to_string()];
    if let Some(s) = req.seed {
        args.push("-s".into());
        args.push(format!("{s:#x}"));
    }
    if !req.filter.is_empty() {
        args.push("-a".into());
        args.push(format!("{}={}", protocol::cmdline::KEY_FILTER, req.filter));
    }
    for a in &req.append {
        args.push("-a".into());
        args.push(a.clone());
    }
    args
}

/// What the selftest provides to the cases: its test device and memslot scenario (in its
/// run loop), the page it maps for the memslot suite, the CPUID brand and the platform key it
/// passes, KVM's in-kernel local APIC and MSRs; no PCI bus.
pub fn environment(platform: PlatformKind) -> Environment {
    use protocol::catalog::Need;
    let device = "cvmprobe_test's run loop (port-IO 0xd100, MMIO 0xd0000000)".to_string();
    Environment {
        platform,
        runner: format!(
            "the KVM selftest cvmprobe_test (kvm_util {} VM)",
            vm_type_name(platform)
        ),
        provided: vec![
            (Need::TestDevice, device.clone()),
            (Need::BuiltinTestDevice, device),
            (
                Need::MemslotControl,
                "cvmprobe_test's memslot thread (set_memory_region_test's way)".to_string(),
            ),
            (
                Need::IdentityMap,
                "the memslot page mapped by cvmprobe_test (cvmprobe_ops.map_mmio)".to_string(),
            ),
            (
                Need::Brand,
                "cvmprobe.brand= on the guest command line (CPUID set by cvmprobe_test)"
                    .to_string(),
            ),
            (
                Need::PlatformKey,
                "cvmprobe.platform= on the guest command line".to_string(),
            ),
            (Need::LocalApic, "KVM's in-kernel local APIC".to_string()),
            (Need::ExactMsrs, "KVM".to_string()),
        ],
    }
}

/// `legacy`, `sev-es`, `tdx`.
pub fn vm_type_name(platform: PlatformKind) -> &'static str {
    VM_TYPES
        .iter()
        .find(|(p, _)| *p == platform)
        .map_or("legacy", |(_, n)| n)
}

/// How one run of the test ended.
#[derive(Debug)]
pub struct SelftestRun {
    /// The verdict (every selected case skipped with the test's reason when it skipped the
    /// VM type).
    pub summary: Summary,
    /// The test's output.
    pub output: String,
    /// The test's reason when it skipped the whole VM type (exit code 4, `1..0 # SKIP`).
    pub skipped: Option<String>,
}

/// Runs the built test once and reads its verdict.
pub fn run(binary: &Path, req: &SelftestRequest) -> Result<SelftestRun, SelftestError> {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let start = Instant::now();
    let mut child = Command::new(binary)
        .args(test_args(req))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(format!("starting {}", binary.display())))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let verbose = req.verbose;
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if verbose {
                println!("{line}");
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    let status = loop {
        if let Some(s) = child
            .try_wait()
            .map_err(io(format!("waiting for {}", binary.display())))?
        {
            break Some(s);
        }
        if start.elapsed() > req.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let ended = match status {
        None => Ended::Timeout,
        Some(s) => match s.code() {
            Some(code) => Ended::Code(code),
            None => Ended::Signal(s.to_string()),
        },
    };
    let mut run = summarize(req, &output, &stderr, ended);
    run.summary.wall = Some(start.elapsed());
    Ok(run)
}

/// How the test process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Exited with this code.
    Code(i32),
    /// Killed by a signal (described).
    Signal(String),
    /// Killed by cvmprobe after the timeout.
    Timeout,
}

/// The verdict of one run from the test's output: its flat kselftest results
/// (`ok 5 io.u32_roundtrip`) are regrouped into the guest's suites and judged as `run`
/// judges the guest's own KTAP (every expected case must report; a skip must be one the
/// environment allows), its host findings (`# io.u32_roundtrip: host: ...`) kept with the case.
pub fn summarize(req: &SelftestRequest, output: &str, stderr: &str, ended: Ended) -> SelftestRun {
    let env = environment(req.platform);
    let filter = Filter::parse(&req.filter).unwrap_or(Filter::ALL);
    let expected: Vec<_> = catalog::planned(req.platform, env.needs(), filter)
        .map(|(s, c, e)| (s.name, c.name, e))
        .collect();
    let flat = ktap::parse(output);
    if ended == Ended::Code(KSFT_SKIP) && flat.tests.is_empty() {
        let reason = skip_reason(output);
        let mut summary = Summary::default();
        for (suite, case, _) in &expected {
            summary.cases.push(CaseReport {
                suite: suite.to_string(),
                case: case.to_string(),
                status: CaseStatus::Skipped(reason.clone()),
                diagnostics: Vec::new(),
            });
        }
        summary.environment = format!("{}: skipped the VM type", env.runner);
        return SelftestRun {
            summary,
            output: output.to_string(),
            skipped: Some(reason),
        };
    }
    let doc = nest(&flat);
    let end_reason = match (&ended, &doc.bail_out) {
        (Ended::Timeout, _) => Some(format!(
            "hang: no verdict within the {:.1} s timeout",
            req.timeout.as_secs_f64()
        )),
        (Ended::Signal(s), _) => Some(format!("the test was killed: {s}")),
        (_, Some(b)) => Some(format!("the test bailed out: {}", b.reason)),
        (Ended::Code(_), None) => Some("the test ended without reporting it".to_string()),
    };
    let mut summary =
        Summary::from_run(&doc, expected.iter().copied(), &env, end_reason.as_deref());
    match ended {
        Ended::Code(0) if summary.counts().failed > 0 => summary
            .problems
            .push("the test exited 0 (KSFT_PASS) although cases failed".into()),
        Ended::Code(0) => {}
        Ended::Code(1) if summary.counts().failed > 0 || summary.bail_out.is_some() => {}
        Ended::Code(code) => summary.problems.push(format!(
            "the test exited {code}{}",
            match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
                Some(l) => format!(": {}", l.trim()),
                None => String::new(),
            }
        )),
        Ended::Signal(ref s) => summary.problems.push(format!("the test was killed: {s}")),
        Ended::Timeout => summary.problems.push(format!(
            "hang: the test did not end within {:.1} s",
            req.timeout.as_secs_f64()
        )),
    }
    if !summary.passed() {
        summary.serial_tail = crate::report::tail(output, crate::report::SERIAL_TAIL_LINES);
    }
    summary.environment = env.runner;
    SelftestRun {
        summary,
        output: output.to_string(),
        skipped: None,
    }
}

/// The reason of a `1..0 # SKIP <reason>` line (kselftest's whole-test skip).
fn skip_reason(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("1..0 # SKIP"))
        .map(|r| r.trim().trim_start_matches("- ").to_string())
        .unwrap_or_else(|| "the test skipped (exit code 4)".to_string())
}

/// The flat document's `suite.case` results as the guest's nested form: one top-level node
/// per suite, in order of first appearance, holding its cases.
pub fn nest(flat: &Document) -> Document {
    let mut doc = Document {
        version: flat.version,
        plan: flat.plan,
        tests: Vec::new(),
        bail_out: flat.bail_out.clone(),
        diagnostics: flat.diagnostics.clone(),
        problems: flat.problems.clone(),
        unknown_lines: flat.unknown_lines,
        noise_lines: flat.noise_lines,
    };
    for t in &flat.tests {
        let (suite, case) = t.name.split_once('.').unwrap_or(("", t.name.as_str()));
        let mut node = t.clone();
        node.name = case.to_string();
        let prefix = format!("{}: ", t.name);
        for d in &mut node.diagnostics {
            if let Some(rest) = d.text.strip_prefix(&prefix) {
                d.text = format!("{case}: {rest}");
            }
        }
        match doc.tests.iter_mut().find(|s| s.name == suite) {
            Some(s) => {
                if node.status == Status::Fail {
                    s.status = Status::Fail;
                }
                s.subtests.push(node);
            }
            None => doc.tests.push(TestNode {
                number: doc.tests.len() + 1,
                name: suite.to_string(),
                status: if node.status == Status::Fail {
                    Status::Fail
                } else {
                    Status::Pass
                },
                diagnostics: Vec::new(),
                plan: None,
                line: node.line,
                subtests: vec![node],
            }),
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(filter: &str) -> SelftestRequest {
        SelftestRequest {
            platform: PlatformKind::Legacy,
            filter: filter.into(),
            append: Vec::new(),
            seed: Some(7),
            timeout: Duration::from_secs(5),
            verbose: false,
        }
    }

    const IO_OK: &str = "Random seed: 0x6b8b4567\nTAP version 13\n# cvmprobe-guest 0.1.0\n\
        1..6\nok 1 io.u32_roundtrip\nok 2 io.u16_lanes\nok 3 io.u8_lanes\n\
        ok 4 io.split_register\nok 5 io.unassigned_port\nok 6 io.host_values\n\
        # Totals: pass:6 fail:0 xfail:0 xpass:0 skip:0 error:0\n";

    #[test]
    fn flat_results_become_the_guests_suites() {
        let r = summarize(&req("io"), IO_OK, "", Ended::Code(0));
        assert!(r.summary.passed(), "{:?}", r.summary);
        assert_eq!(r.summary.counts().passed, 6);
        assert!(r.skipped.is_none());
        assert!(r.summary.cases.iter().all(|c| c.suite == "io"));
    }

    #[test]
    fn a_host_finding_fails_its_case_and_stays_with_it() {
        let out = IO_OK.replace(
            "ok 1 io.u32_roundtrip\n",
            "# io.u32_roundtrip: host: access log: undeclared access\nnot ok 1 io.u32_roundtrip\n",
        );
        let r = summarize(&req("io"), &out, "", Ended::Code(1));
        assert!(!r.summary.passed());
        let c = &r.summary.cases[0];
        assert_eq!(
            (c.case.as_str(), &c.status),
            ("u32_roundtrip", &CaseStatus::Failed)
        );
        assert_eq!(
            c.diagnostics,
            ["u32_roundtrip: host: access log: undeclared access"]
        );
        assert!(r.summary.problems.is_empty(), "{:?}", r.summary.problems);
    }

    #[test]
    fn a_missing_case_is_not_run_and_exit_codes_must_agree() {
        let out = IO_OK.replace("ok 6 io.host_values\n", "");
        let r = summarize(&req("io"), &out, "", Ended::Code(1));
        assert_eq!(r.summary.counts().not_run, 1);
        // Exit 0 with a failed case, or a code that is not kselftest's: a problem.
        let out = IO_OK.replace("ok 2 io.u16_lanes", "not ok 2 io.u16_lanes");
        let r = summarize(&req("io"), &out, "", Ended::Code(0));
        assert_eq!(r.summary.problems.len(), 1, "{:?}", r.summary.problems);
        let r = summarize(
            &req("io"),
            IO_OK,
            "==== Test Assertion Failure ====\n",
            Ended::Code(254),
        );
        assert!(r.summary.problems[0].contains("exited 254: ==== Test Assertion Failure"));
        let r = summarize(&req("io"), "TAP version 13\n", "", Ended::Timeout);
        assert!(!r.summary.passed());
        assert_eq!(r.summary.counts().not_run, 6);
    }

    #[test]
    fn a_skipped_vm_type_skips_every_case_with_the_tests_reason() {
        let out = "Random seed: 0x6b8b4567\n1..0 # SKIP - Requirement not met: kvm_cpu_has(X86_FEATURE_SEV_ES)\n";
        let mut rq = req("io");
        rq.platform = PlatformKind::SevEs;
        let r = summarize(&rq, out, "", Ended::Code(KSFT_SKIP));
        let why = "Requirement not met: kvm_cpu_has(X86_FEATURE_SEV_ES)";
        assert_eq!(r.skipped.as_deref(), Some(why));
        assert_eq!(r.summary.counts().skipped, 6);
        assert!(
            r.summary
                .cases
                .iter()
                .all(|c| c.status == CaseStatus::Skipped(why.into()))
        );
    }

    #[test]
    fn test_args_carry_the_request() {
        let mut r = req("io");
        r.append = vec!["cvmprobe.inject=panic".into()];
        assert_eq!(
            test_args(&r),
            [
                "-t",
                "legacy",
                "-s",
                "0x7",
                "-a",
                "cvmprobe.filter=io",
                "-a",
                "cvmprobe.inject=panic"
            ]
        );
        r.platform = PlatformKind::Tdx;
        assert_eq!(test_args(&r)[1], "tdx");
    }

    #[test]
    fn the_wrapper_makefile_adds_the_library_to_the_tests_link() {
        let m = wrapper_makefile(Path::new("/x/libcvmprobe.a"));
        assert!(m.contains("include Makefile\n"));
        assert!(m.contains("$(OUTPUT)/$(CVMPROBE_TEST): LDLIBS += /x/libcvmprobe.a\n"));
    }

    #[test]
    fn the_environment_provides_all_but_edu() {
        use protocol::catalog::Need;
        let e = environment(PlatformKind::Legacy);
        for n in Need::ALL {
            assert_eq!(e.needs().contains(n), n != Need::EduPci, "{n:?}");
        }
    }
}
