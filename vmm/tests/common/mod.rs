//! Shared by the VMM's integration tests: the KVM check and the kernel's location.

#![allow(dead_code)]

use std::path::PathBuf;

/// Environment variable naming the kernel ELF.
pub const KERNEL_ENV: &str = "CVMPROBE_KERNEL_ELF";
/// Environment variable that turns a missing `/dev/kvm` into skips.
pub const NO_KVM_ENV: &str = "CVMPROBE_NO_KVM";

/// Whether KVM is there. Without it: `false` (the test prints that it is skipped) when
/// `CVMPROBE_NO_KVM=1`, else a panic that says what is wrong.
pub fn kvm_or_skip(test: &str) -> bool {
    match vmm::kvm_available() {
        Ok(()) => true,
        Err(e) if std::env::var(NO_KVM_ENV).as_deref() == Ok("1") => {
            eprintln!("{test}: skipped: {e} ({NO_KVM_ENV}=1)");
            false
        }
        Err(e) => panic!("{test}: KVM is needed: {e}. Set {NO_KVM_ENV}=1 to skip the VMM tests."),
    }
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
