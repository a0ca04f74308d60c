//! Builds the guest kernel for `x86_64-unknown-none`, then the UEFI loader `cvmprobe.efi` that
//! embeds it (`efi/`, for `x86_64-unknown-uefi`), and hands their paths to the CLI.
//!
//! The kernel is its own cargo workspace (`kernel/`) with its own `.cargo/config.toml`, so the
//! nested cargo runs with `current_dir(kernel/)` and a target directory of its own
//! (`target/kernel`). It is always built in release mode: guest instructions are expensive on
//! emulated hosts, and a debug kernel would be a different test payload. The environment the
//! outer build leaks (rustflags, wrappers, profile overrides) is removed so the kernel builds
//! the same from `cargo build`, `cargo test` and `cargo run --release` (BOOT-NOTES.md).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where QEMU and OVMF are, shared with the CLI and the tests.
#[path = "src/tools.rs"]
mod tools;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    for p in [
        "kernel/src",
        "kernel/Cargo.toml",
        "kernel/Cargo.lock",
        "kernel/build.rs",
        "kernel/.cargo/config.toml",
        "guest/src",
        "guest/Cargo.toml",
        "protocol/src",
        "protocol/Cargo.toml",
        "linker.ld",
        "efi/src",
        "efi/Cargo.toml",
        "efi/Cargo.lock",
        "efi/.cargo/config.toml",
        "selftest/lib/src",
        "selftest/lib/Cargo.toml",
        "selftest/lib/Cargo.lock",
        "selftest/lib/.cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=CVMPROBE_SKIP_IMAGES");
    let elf = build_kernel(&root);
    println!("cargo:rustc-env=CVMPROBE_KERNEL_ELF={}", elf.display());
    let efi = build_efi(&root, &elf);
    println!("cargo:rustc-env=CVMPROBE_EFI_APP={}", efi.display());
    println!("cargo:rustc-env=CVMPROBE_BIOS_IMAGE={}", bios_image(&elf));
    let lib = build_selftest_lib(&root);
    println!("cargo:rustc-env=CVMPROBE_SELFTEST_LIB={}", lib.display());
    warn_missing_tools(&root);
}

/// `<target>/<name>` (`kernel`, `efi`, `selftest-lib`: each nested build's own target
/// directory), next to the host build's own profile directories.
fn target_subdir(root: &Path, name: &str) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d).join(name),
        None => root.join("target").join(name),
    }
}

/// Builds `libcvmprobe.a` (`selftest/lib/`: the guest library behind the C ABI of
/// `selftest/cvmprobe.h`, for the KVM selftest) for x86_64-unknown-none with `-Zbuild-std` and
/// no GOT (its `.cargo/config.toml`). Its first build compiles `core` and `alloc` (about a
/// minute).
fn build_selftest_lib(root: &Path) -> PathBuf {
    nested_build(
        root,
        "selftest/lib",
        "selftest-lib",
        "x86_64-unknown-none",
        "libcvmprobe.a",
        &[],
    )
}

/// Warns (at every build: cargo replays a build script's warnings) when QEMU or OVMF is
/// missing, with how many tests will skip (or fail, under CI) and how to install it.
fn warn_missing_tools(root: &Path) {
    for k in [
        "PATH",
        tools::QEMU_ENV,
        tools::OVMF_ENV,
        tools::REQUIRE_ENV,
        tools::KSRC_ENV,
        "CI",
    ] {
        println!("cargo:rerun-if-env-changed={k}");
    }
    let tests = root.join("tests");
    match tools::kernel_tree() {
        Ok(p) => println!("cargo:rerun-if-changed={}", p.display()),
        Err(looked) => {
            println!("cargo:rerun-if-changed={}", looked.display());
            println!("cargo:rerun-if-changed={}", tests.display());
            println!(
                "cargo:warning={}",
                tools::missing_kernel_tree_warning(
                    &looked,
                    tools::count_marks(&tests, tools::KERNEL_TREE_TEST_MARK),
                    tools::tools_required()
                )
            );
        }
    }
    let qemu = tools::find_qemu();
    let ovmf = tools::ovmf_code();
    // What was found, or where it would appear: a path that does not exist makes cargo rerun
    // this script at every build, so installing the tool ends the warning.
    let qemu_path = match &qemu {
        Ok(p) | Err(p) => p.clone(),
    };
    println!("cargo:rerun-if-changed={}", qemu_path.display());
    println!("cargo:rerun-if-changed={}", ovmf.display());
    let ovmf = if ovmf.is_file() {
        Ok(ovmf.as_path())
    } else {
        Err(ovmf.as_path())
    };
    if qemu.is_ok() && ovmf.is_ok() {
        return;
    }
    println!("cargo:rerun-if-changed={}", tests.display());
    let warnings = tools::missing_tool_warnings(
        qemu.as_deref().map_err(PathBuf::as_path),
        ovmf,
        tools::count_marks(&tests, tools::QEMU_TEST_MARK),
        tools::count_marks(&tests, tools::OVMF_TEST_MARK),
        tools::tools_required(),
    );
    for w in warnings {
        println!("cargo:warning={w}");
    }
}

/// Makes the BIOS disk image next to the ELF, with the command-line placeholder as its
/// ramdisk (a run patches its own command line into a copy). An empty path when skipped. (The
/// UEFI disk image is cvmprobe.efi on an ESP, made per run: `src/efi_images.rs`.)
#[cfg(feature = "images")]
fn bios_image(elf: &Path) -> String {
    if std::env::var_os("CVMPROBE_SKIP_IMAGES").is_some_and(|v| v == "1") {
        return String::new();
    }
    let dir = elf.parent().expect("the ELF is in a directory");
    let ramdisk = dir.join("cvmprobe-cmdline.ramdisk");
    std::fs::write(&ramdisk, protocol::cmdline::ramdisk_placeholder())
        .expect("write the ramdisk placeholder");
    // The kernel prints on its own serial port: no bootloader logging, no frame buffer (half
    // the BIOS boot time under an emulated CPU; BOOT-NOTES.md).
    let mut config = bootloader::BootConfig::default();
    config.frame_buffer_logging = false;
    config.serial_logging = false;
    let bios = dir.join("cvmprobe-bios.img");
    bootloader::BiosBoot::new(elf)
        .set_ramdisk(&ramdisk)
        .set_boot_config(&config)
        .create_disk_image(&bios)
        .unwrap_or_else(|e| panic!("creating the BIOS image {} failed: {e:#}", bios.display()));
    bios.display().to_string()
}

#[cfg(not(feature = "images"))]
fn bios_image(_elf: &Path) -> String {
    String::new()
}

/// Builds `cvmprobe.efi` (`efi/`, for x86_64-unknown-uefi with `-Zbuild-std` from its
/// `.cargo/config.toml`: the pinned toolchain ships no prebuilt std for that target), which
/// embeds the kernel ELF at `elf`. Its first build compiles `core` (about a minute).
fn build_efi(root: &Path, elf: &Path) -> PathBuf {
    nested_build(
        root,
        "efi",
        "efi",
        "x86_64-unknown-uefi",
        "cvmprobe.efi",
        &[("CVMPROBE_KERNEL_ELF", elf)],
    )
}

fn build_kernel(root: &Path) -> PathBuf {
    nested_build(
        root,
        "kernel",
        "kernel",
        "x86_64-unknown-none",
        "cvmprobe-kernel",
        &[],
    )
}

/// Builds the crate in `root/dir` for `target` into `<target>/<target_dir>` (with `env` set)
/// and returns its `artifact`; a failed build panics with the command that shows why.
fn nested_build(
    root: &Path,
    dir: &str,
    target_dir: &str,
    target: &str,
    artifact: &str,
    env: &[(&str, &Path)],
) -> PathBuf {
    let target_dir = target_subdir(root, target_dir);
    let mut cmd = nested_cargo(root.join(dir), &target_dir);
    cmd.args(["--target", target]);
    let mut shown = String::new();
    for (k, v) in env {
        cmd.env(k, v);
        shown += &format!("{k}={} ", v.display());
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {artifact}: {e}"));
    if !status.success() {
        panic!(
            "building {artifact} failed ({status}); run `cd {dir} && {shown}cargo build --release` to see why"
        );
    }
    target_dir.join(target).join("release").join(artifact)
}

/// `cargo build --release --locked` in `dir` (whose `.cargo/config.toml` then applies) into
/// `target_dir`, without the environment the outer build leaks (BOOT-NOTES.md).
fn nested_cargo(dir: PathBuf, target_dir: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(["build", "--release", "--locked"])
        .arg("--target-dir")
        .arg(target_dir);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        let leaks = matches!(
            k.as_str(),
            "CARGO_ENCODED_RUSTFLAGS"
                | "RUSTFLAGS"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "CARGO_TARGET_DIR"
                | "CARGO_BUILD_TARGET"
                | "CARGO_BUILD_RUSTFLAGS"
                | "RUSTDOCFLAGS"
                | "CARGO_ENCODED_RUSTDOCFLAGS"
        ) || k.starts_with("CARGO_PROFILE_")
            || k.starts_with("CARGO_FEATURE_")
            || k.starts_with("CARGO_CFG_");
        if leaks {
            cmd.env_remove(&k);
        }
    }
    cmd
}
