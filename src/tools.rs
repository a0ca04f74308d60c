//! Where the host tools are (QEMU, OVMF) and whether the tests that need them may skip. One
//! file shared by the CLI, the integration tests (`tests/common`) and the build script (which
//! includes it with `#[path]` to warn, at every `cargo test`, how many tests will skip and how
//! to install what is missing).
//!
//! Without QEMU or OVMF the tests that need them skip, visibly; under CI they are required:
//! `CVMPROBE_REQUIRE_QEMU=1` (which `.ci/run` sets) or a non-empty `CI` other than `0`/`false`
//! (GitHub Actions, GitLab and most CI systems set `CI=true`) makes them fail instead.

use std::path::{Path, PathBuf};

/// Environment variable naming the QEMU binary (the default of `--qemu`; tests use it too).
pub const QEMU_ENV: &str = "CVMPROBE_QEMU";
/// The QEMU binary looked up on `PATH` when [`QEMU_ENV`] is not set.
pub const QEMU_DEFAULT: &str = "qemu-system-x86_64";
/// How to install QEMU on Debian and Ubuntu.
pub const QEMU_INSTALL: &str = "sudo apt-get install qemu-system-x86";
/// Environment variable naming the OVMF code file (the default of `--ovmf`).
pub const OVMF_ENV: &str = "CVMPROBE_OVMF";
/// Debian's OVMF (package `ovmf`): the 4 MiB code file.
pub const OVMF_CODE_DEFAULT: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// How to install OVMF on Debian and Ubuntu.
pub const OVMF_INSTALL: &str = "sudo apt-get install ovmf";
/// Set to `1` to make the QEMU and OVMF tests fail, not skip, when the tools are missing.
pub const REQUIRE_ENV: &str = "CVMPROBE_REQUIRE_QEMU";
/// The tests' helper that skips a test without QEMU (counted by the build script).
pub const QEMU_TEST_MARK: &str = "qemu_or_skip(";
/// The tests' helper that skips a test without OVMF.
pub const OVMF_TEST_MARK: &str = "ovmf_or_skip(";

/// The QEMU binary to run: [`QEMU_ENV`] or [`QEMU_DEFAULT`].
pub fn qemu_binary() -> PathBuf {
    match std::env::var_os(QEMU_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(QEMU_DEFAULT),
    }
}

/// The QEMU binary's path if it exists (a bare name is looked up on `PATH`); else the path
/// that was looked for.
pub fn find_qemu() -> Result<PathBuf, PathBuf> {
    let bin = qemu_binary();
    if bin.components().count() > 1 {
        return if bin.is_file() { Ok(bin) } else { Err(bin) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut first = None;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(&bin);
        if candidate.is_file() {
            return Ok(candidate);
        }
        first.get_or_insert(candidate);
    }
    Err(first.unwrap_or(bin))
}

/// The OVMF code file: [`OVMF_ENV`] or [`OVMF_CODE_DEFAULT`].
pub fn ovmf_code() -> PathBuf {
    match std::env::var_os(OVMF_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(OVMF_CODE_DEFAULT),
    }
}

/// Environment variable naming a kernel tree for `cvmprobe selftest` and its tests (the
/// default of `--ksrc`).
pub const KSRC_ENV: &str = "CVMPROBE_KSRC";
/// Debian's kernel source package (`linux-source-6.12`): the default tree of
/// `cvmprobe selftest`, unpacked in part under `target/selftest/`.
pub const KERNEL_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";
/// How to install it on Debian.
pub const KERNEL_TREE_INSTALL: &str = "sudo apt-get install linux-source-6.12";
/// The tests' helper that skips a test without a kernel tree (counted by the build script).
pub const KERNEL_TREE_TEST_MARK: &str = "kernel_tree_or_skip(";

/// The kernel tree the selftest builds against: [`KSRC_ENV`] if set, else
/// [`KERNEL_TARBALL`]; `Err` with the path looked for when it is missing.
pub fn kernel_tree() -> Result<PathBuf, PathBuf> {
    let p = match std::env::var_os(KSRC_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(KERNEL_TARBALL),
    };
    if p.exists() { Ok(p) } else { Err(p) }
}

/// Whether missing tools fail the tests that need them ([`REQUIRE_ENV`]`=1`, or `CI` set).
pub fn tools_required() -> bool {
    let set = |k: &str| {
        std::env::var(k)
            .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
    };
    set(REQUIRE_ENV) || set("CI")
}

/// How many times `mark` occurs in the `*.rs` files directly in `dir` (the tests that call
/// a skip helper, one call per test).
pub fn count_marks(dir: &Path, mark: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|text| text.matches(mark).count())
        .sum()
}

/// The build script's warning when no kernel tree is there for `cvmprobe selftest`.
pub fn missing_kernel_tree_warning(looked: &Path, tests: usize, required: bool) -> String {
    format!(
        "no kernel tree for the KVM selftest ({}; {KSRC_ENV} names another): the {tests} \
         tests that build it {}; install it: {KERNEL_TREE_INSTALL}",
        looked.display(),
        fate(required)
    )
}

/// What becomes of the tests whose tool is missing.
fn fate(required: bool) -> String {
    if required {
        format!("will FAIL ({REQUIRE_ENV}=1 or CI is set)")
    } else {
        format!("will be skipped (set {REQUIRE_ENV}=1 to make them fail)")
    }
}

/// The build script's warnings: one per missing tool, naming how many tests skip and the
/// install command (or that they will fail, when [`tools_required`]).
pub fn missing_tool_warnings(
    qemu: Result<&Path, &Path>,
    ovmf: Result<&Path, &Path>,
    qemu_tests: usize,
    ovmf_tests: usize,
    required: bool,
) -> Vec<String> {
    let outcome = |n: usize, what: &str| {
        let tests = if n == 1 {
            format!("the 1 test that needs {what}")
        } else {
            format!("the {n} tests that need {what}")
        };
        format!("{tests} {}", fate(required))
    };
    let mut w = Vec::new();
    if let Err(looked) = qemu {
        w.push(format!(
            "QEMU not found ({}; {QEMU_ENV} names another binary): {}; install it: {QEMU_INSTALL}",
            looked.display(),
            outcome(qemu_tests, "QEMU")
        ));
    }
    if let Err(looked) = ovmf {
        w.push(format!(
            "OVMF not found ({}; {OVMF_ENV} names another file): {}; install it: {OVMF_INSTALL}",
            looked.display(),
            outcome(ovmf_tests, "OVMF")
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_name_the_count_and_the_install_command() {
        let none = Path::new("/nonexistent/qemu-system-x86_64");
        let ovmf = Path::new("/nonexistent/OVMF_CODE_4M.fd");
        let w = missing_tool_warnings(Err(none), Err(ovmf), 17, 1, false);
        assert_eq!(w.len(), 2);
        assert!(
            w[0].contains("17 tests that need QEMU will be skipped"),
            "{}",
            w[0]
        );
        assert!(w[0].contains(QEMU_INSTALL) && w[0].contains(none.to_str().unwrap()));
        assert!(w[1].contains("the 1 test that needs OVMF") && w[1].contains(OVMF_INSTALL));
        let w = missing_tool_warnings(Err(none), Ok(ovmf), 17, 1, true);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("will FAIL"), "{}", w[0]);
        assert!(missing_tool_warnings(Ok(none), Ok(ovmf), 17, 1, false).is_empty());
    }

    #[test]
    fn the_integration_tests_mark_their_qemu_tests() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        // qemu_pvh (6), disk_images (4), failures (4), the fake-QEMU tests: the count the
        // warning gives is the number of tests that call the helper.
        assert!(count_marks(&dir, QEMU_TEST_MARK) >= 14);
        assert!(count_marks(&dir, OVMF_TEST_MARK) >= 1);
        assert_eq!(count_marks(Path::new("/nonexistent"), QEMU_TEST_MARK), 0);
    }
}
