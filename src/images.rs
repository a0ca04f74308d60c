//! The BIOS disk image: the template build.rs makes, the per-run copy with the run's command
//! line patched into its ramdisk; and the OVMF firmware files (for cvmprobe.efi, whose ESP
//! image is the UEFI disk image: `crate::efi_images`).
//!
//! bootloader 0.11 passes no command line to the kernel; its ramdisk is the one channel. The
//! templates carry a one-sector placeholder ramdisk (`protocol::cmdline::ramdisk_placeholder`);
//! a run copies the image and overwrites that sector (found at a 512-byte boundary, exactly
//! once) with its command line. A FAT file of one sector lies in one cluster, so the file's
//! bytes are contiguous in the image and its directory entry (size 512) stays right.

use protocol::cmdline::{RAMDISK_LEN, ramdisk_for, ramdisk_placeholder};
use std::path::{Path, PathBuf};

/// The BIOS image template made by build.rs (empty when built without the `images` feature).
pub const BIOS_IMAGE: &str = env!("CVMPROBE_BIOS_IMAGE");

/// Debian's OVMF (package `ovmf`): 4 MiB code and variable-store templates.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The variable-store template matching [`OVMF_CODE`].
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Why an image could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Built without the images.
    #[error(
        "this cvmprobe was built without the BIOS disk image (`--no-default-features` or CVMPROBE_SKIP_IMAGES=1): rebuild with the default features"
    )]
    NotBuilt,
    /// The template is gone.
    #[error("the disk image {0} is missing: run `cargo build` to rebuild it")]
    Missing(String),
    /// The placeholder sector is not there exactly once.
    #[error(
        "the disk image {path} has {count} command-line placeholder sectors (expected 1): rebuild it"
    )]
    Placeholder {
        /// Image.
        path: String,
        /// How many were found.
        count: usize,
    },
    /// The command line does not fit the ramdisk.
    #[error("the kernel command line is {0} bytes; a disk image's ramdisk holds at most {max}", max = RAMDISK_LEN - 1)]
    TooLong(usize),
    /// OVMF is not installed.
    #[error(
        "OVMF firmware not found at {0}: install it (Debian/Ubuntu: `sudo apt-get install ovmf`) or pass --ovmf PATH"
    )]
    NoOvmf(String),
    /// `cvmprobe.efi` or its ESP image.
    #[error(transparent)]
    Efi(#[from] crate::efi_images::EfiError),
    /// A boot QEMU does not do.
    #[error("--boot {0} is the built-in VMM's (drop --vmm qemu and the QEMU options)")]
    NotQemu(&'static str),
    /// Reading or writing failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// Action.
        what: &'static str,
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// The BIOS image template.
pub fn template() -> Result<PathBuf, ImageError> {
    let t = BIOS_IMAGE;
    if t.is_empty() {
        return Err(ImageError::NotBuilt);
    }
    let p = PathBuf::from(t);
    if !p.exists() {
        return Err(ImageError::Missing(t.to_string()));
    }
    Ok(p)
}

/// Writes `template` to `out` with `cmdline` in its ramdisk.
pub fn patched_copy(template: &Path, cmdline: &str, out: &Path) -> Result<(), ImageError> {
    let sector = ramdisk_for(cmdline).ok_or(ImageError::TooLong(cmdline.len()))?;
    let mut data = std::fs::read(template).map_err(io("cannot read the disk image", template))?;
    let placeholder = ramdisk_placeholder();
    let hits: Vec<usize> = (0..data.len() / RAMDISK_LEN)
        .map(|i| i * RAMDISK_LEN)
        .filter(|&o| data[o..o + RAMDISK_LEN] == placeholder)
        .collect();
    if hits.len() != 1 {
        return Err(ImageError::Placeholder {
            path: template.display().to_string(),
            count: hits.len(),
        });
    }
    data[hits[0]..hits[0] + RAMDISK_LEN].copy_from_slice(&sector);
    std::fs::write(out, &data).map_err(io("cannot write the disk image copy", out))
}

/// The OVMF code file and a private copy of the variable store in `dir`. `code` overrides
/// the code path; the variable store is the sibling `OVMF_VARS*` of the code file.
pub fn ovmf(code: Option<&Path>, dir: &Path) -> Result<(PathBuf, PathBuf), ImageError> {
    let code = code.map_or_else(|| PathBuf::from(OVMF_CODE), Path::to_path_buf);
    if !code.exists() {
        return Err(ImageError::NoOvmf(code.display().to_string()));
    }
    let vars_name = code
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.replace("CODE", "VARS"))
        .unwrap_or_default();
    let vars_template = code.with_file_name(&vars_name);
    let vars_template = if vars_name.contains("VARS") && vars_template.exists() {
        vars_template
    } else {
        PathBuf::from(OVMF_VARS)
    };
    if !vars_template.exists() {
        return Err(ImageError::NoOvmf(vars_template.display().to_string()));
    }
    let vars = dir.join("OVMF_VARS.fd");
    std::fs::copy(&vars_template, &vars)
        .map_err(io("cannot copy the OVMF variable store", &vars_template))?;
    Ok((code, vars))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_exactly_one_aligned_sector() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t.img");
        let mut img = vec![0u8; 8 * RAMDISK_LEN];
        // An unaligned copy of the marker (as inside the kernel's .rodata) must not count.
        img[100..100 + 10].copy_from_slice(&ramdisk_placeholder()[..10]);
        img[3 * RAMDISK_LEN..4 * RAMDISK_LEN].copy_from_slice(&ramdisk_placeholder());
        std::fs::write(&t, &img).unwrap();
        let out = dir.path().join("o.img");
        patched_copy(&t, "cvmprobe.filter=io", &out).unwrap();
        let o = std::fs::read(&out).unwrap();
        assert_eq!(
            &o[3 * RAMDISK_LEN..3 * RAMDISK_LEN + 18],
            b"cvmprobe.filter=io"
        );
        assert_eq!(o[3 * RAMDISK_LEN + 18], 0);
        assert_eq!(o[..3 * RAMDISK_LEN], img[..3 * RAMDISK_LEN]);
        assert!(matches!(
            patched_copy(&t, &"x".repeat(600), &out),
            Err(ImageError::TooLong(600))
        ));
        std::fs::write(&t, vec![0u8; 4096]).unwrap();
        assert!(matches!(
            patched_copy(&t, "a", &out),
            Err(ImageError::Placeholder { count: 0, .. })
        ));
    }

    #[test]
    fn missing_ovmf_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let e = ovmf(Some(Path::new("/nonexistent/OVMF_CODE_4M.fd")), dir.path()).unwrap_err();
        assert!(e.to_string().contains("apt-get install ovmf"), "{e}");
    }
}
