//! Shared by the VMM's integration tests: the KVM check and the kernel's location.

#![allow(dead_code)]

use std::path::PathBuf;

/// Environment variable naming the kernel ELF.
pub const KERNEL_ENV: &str = "CVMPROBE_KERNEL_ELF";
/// Environment variable that turns a missing `/dev/kvm` into skips.
pub const NO_KVM_ENV: &str = "CVMPROBE_NO_KVM";

/// Environment variable naming a KVM device to open instead of `/dev/kvm` for the check: a
/// missing path tries the skip path on a machine that has KVM.
pub const KVM_DEVICE_ENV: &str = "CVMPROBE_KVM_DEVICE";

/// Whether KVM is there. Without it: `false` when `CVMPROBE_NO_KVM=1`, with a notice written
/// straight to stderr (libtest hides a passing test's `eprintln!`), else a panic that says
/// what is wrong.
pub fn kvm_or_skip(test: &str) -> bool {
    let available = match std::env::var(KVM_DEVICE_ENV) {
        Ok(dev) => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev)
            .map(|_| ())
            .map_err(|e| format!("cannot open {dev}: {e}")),
        Err(_) => vmm::kvm_available().map_err(|e| e.to_string()),
    };
    match available {
        Ok(()) => true,
        Err(e) if std::env::var(NO_KVM_ENV).as_deref() == Ok("1") => {
            use std::io::Write;
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "SKIPPED {test}: {e} ({NO_KVM_ENV}=1)");
            false
        }
        Err(e) => panic!("{test}: KVM is needed: {e}. Set {NO_KVM_ENV}=1 to skip the VMM tests."),
    }
}

/// Runs one test of this test binary again in a child with `env` added and `unset` removed
/// (output captured as `cargo test` captures it).
pub fn rerun_test(test: &str, env: &[(&str, &str)], unset: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args(["--exact", test, "--test-threads", "1"]);
    for k in unset {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the test binary runs")
}

/// The guest kernel ELF: `CVMPROBE_KERNEL_ELF`, else the root build's output. Panics with
/// what to do when it is missing.
pub fn kernel(test: &str) -> PathBuf {
    let path = match std::env::var_os(KERNEL_ENV) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/kernel/x86_64-unknown-none/release/cvmprobe-kernel"),
    };
    assert!(
        path.is_file(),
        "{test}: kernel ELF {} not found: run `cargo build` at the workspace root, or point \
         {KERNEL_ENV} at a cvmprobe kernel",
        path.display()
    );
    path
}
