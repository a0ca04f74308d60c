//! Links the kernel with the workspace's linker script.
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let script = dir.join("../linker.ld");
    let script = script
        .canonicalize()
        .expect("linker.ld exists next to kernel/");
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    // No PT_GNU_RELRO: lld would cover the whole .data section with it (it holds relocated
    // statics), and the bootloader makes RELRO ranges read-only.
    println!("cargo:rustc-link-arg-bins=-znorelro");
    println!("cargo:rerun-if-changed={}", script.display());
}
