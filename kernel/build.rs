//! Links the kernel with the workspace's linker script.
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let script = dir.join("../linker.ld");
    let script = script
        .canonicalize()
        .expect("linker.ld exists next to kernel/");
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    println!("cargo:rerun-if-changed={}", script.display());
}
