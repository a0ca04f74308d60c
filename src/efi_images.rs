//! `cvmprobe.efi`, the UEFI loader that carries the kernel (`efi/`, built by build.rs), and the
//! two ways QEMU boots it under OVMF: `--boot efi` gives it to the firmware with `-kernel` (the
//! command line in `-append` reaches it as load options), `--boot esp` puts it on a FAT EFI
//! System Partition image as `EFI/BOOT/BOOTX64.EFI` (the removable-media default path, UEFI
//! 2.10 3.5.1.1) with the run's command line in `EFI/BOOT/cmdline.txt`, which the loader reads
//! when it was started without load options.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The UEFI application build.rs made (it embeds this build's kernel).
pub const EFI_APP: &str = env!("CVMPROBE_EFI_APP");

/// The ESP's directory and file names.
pub const ESP_DIR: [&str; 2] = ["EFI", "BOOT"];
/// The default boot file on removable media for x64 (UEFI 2.10, 3.5.1.1).
pub const ESP_BOOT_FILE: &str = "BOOTX64.EFI";
/// Size of the ESP image: room for the application (about 350 KiB) in a FAT the firmware
/// reads (a superfloppy: the whole disk is the file system).
pub const ESP_SIZE: u64 = 8 << 20;

/// Why the EFI application or its ESP could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum EfiError {
    /// The application is missing.
    #[error("cvmprobe.efi {0} is missing: run `cargo build` to rebuild it")]
    Missing(String),
    /// The command line does not fit.
    #[error("the kernel command line is {0} bytes; cvmprobe.efi takes at most {max}", max = CMDLINE_MAX)]
    TooLong(usize),
    /// Making the image failed.
    #[error("cannot make the ESP image {path}: {source}")]
    Io {
        /// The image.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// The command-line room of the hand-off (`efi/src/main.rs`, one page).
pub const CMDLINE_MAX: usize = 4096;

/// The application, checked to exist.
pub fn app() -> Result<PathBuf, EfiError> {
    let p = PathBuf::from(EFI_APP);
    if !p.is_file() {
        return Err(EfiError::Missing(EFI_APP.to_string()));
    }
    Ok(p)
}

/// Writes a FAT ESP image to `out` with `app` as `EFI/BOOT/BOOTX64.EFI` and `cmdline` as
/// `EFI/BOOT/cmdline.txt`.
pub fn esp_image(app: &Path, cmdline: &str, out: &Path) -> Result<(), EfiError> {
    if cmdline.len() >= CMDLINE_MAX {
        return Err(EfiError::TooLong(cmdline.len()));
    }
    let io = |source: std::io::Error| EfiError::Io {
        path: out.display().to_string(),
        source,
    };
    let bytes = std::fs::read(app).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .map_err(io)?;
    file.set_len(ESP_SIZE).map_err(io)?;
    let mut file = file;
    fatfs::format_volume(
        &mut file,
        fatfs::FormatVolumeOptions::new().volume_label(*b"CVMPROBE   "),
    )
    .map_err(io)?;
    let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).map_err(io)?;
    let mut dir = fs.root_dir();
    for d in ESP_DIR {
        dir = dir.create_dir(d).map_err(io)?;
    }
    dir.create_file(ESP_BOOT_FILE)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(io)?;
    dir.create_file(protocol::efi::CMDLINE_FILE)
        .and_then(|mut f| f.write_all(format!("{cmdline}\n").as_bytes()))
        .map_err(io)?;
    drop(dir);
    fs.unmount().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_esp_holds_the_application_and_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app.efi");
        std::fs::write(&app, b"MZ not really a PE image").unwrap();
        let img = dir.path().join("esp.img");
        esp_image(&app, "cvmprobe.filter=io a=1", &img).unwrap();
        assert_eq!(std::fs::metadata(&img).unwrap().len(), ESP_SIZE);
        let fs =
            fatfs::FileSystem::new(std::fs::File::open(&img).unwrap(), fatfs::FsOptions::new())
                .unwrap();
        let mut s = Vec::new();
        fs.root_dir()
            .open_file("EFI/BOOT/BOOTX64.EFI")
            .unwrap()
            .read_to_end(&mut s)
            .unwrap();
        assert_eq!(s, b"MZ not really a PE image");
        let mut c = String::new();
        fs.root_dir()
            .open_file("EFI/BOOT/cmdline.txt")
            .unwrap()
            .read_to_string(&mut c)
            .unwrap();
        assert_eq!(c, "cvmprobe.filter=io a=1\n");
        let mut out = [0u8; 64];
        let n = protocol::efi::cmdline_from_file(c.as_bytes(), &mut out);
        assert_eq!(&out[..n], b"cvmprobe.filter=io a=1");
        assert!(matches!(
            esp_image(&app, &"x".repeat(5000), &img),
            Err(EfiError::TooLong(5000))
        ));
    }

    #[test]
    fn the_built_application_embeds_the_kernel_and_is_a_pe_image() {
        let a = std::fs::read(app().unwrap()).unwrap();
        assert_eq!(&a[..2], b"MZ", "a PE/COFF image");
        let k = std::fs::read(env!("CVMPROBE_KERNEL_ELF")).unwrap();
        assert!(
            a.windows(64).any(|w| w == &k[..64]),
            "the kernel ELF's header is inside cvmprobe.efi"
        );
    }
}
