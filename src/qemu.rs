//! Booting the guest under QEMU: the command line, and a run with a timeout that streams the
//! serial output line by line.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use protocol::exit::EXIT_PORT;

/// The QEMU machine model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Machine {
    /// `-M microvm`: no firmware, no PCI; starts in tens of milliseconds.
    Microvm,
    /// `-M pc`: i440FX with SeaBIOS and a PCI bus (the `edu` device is added).
    Pc,
}

impl Machine {
    /// QEMU's name.
    pub fn name(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Pc => "pc",
        }
    }
}

/// The QEMU accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's software emulator.
    Tcg,
}

impl Accel {
    /// QEMU's name.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// How the guest is booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Boot {
    /// `-kernel kernel.elf`: QEMU's PVH loader (no firmware on microvm).
    Pvh,
    /// The BIOS disk image through SeaBIOS (`-M pc`).
    Bios,
    /// `cvmprobe.efi` through OVMF with `-kernel` (the command line as its load options).
    Efi,
    /// The UEFI disk image: `cvmprobe.efi` on a FAT ESP image through OVMF (`-M pc`, pflash
    /// firmware; the command line in `cmdline.txt`). `uefi` is its older name.
    #[value(alias = "uefi")]
    Esp,
    /// Built-in VMM: the kernel's UEFI hand-off entry, from the state firmware leaves after
    /// ExitBootServices, rebuilt without firmware (`vmm::boot_efi`).
    EfiHandoff,
}

impl Boot {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Boot::Pvh => "pvh",
            Boot::Bios => "bios",
            Boot::Efi => "efi",
            Boot::Esp => "esp",
            Boot::EfiHandoff => "efi-handoff",
        }
    }

    /// Whether only QEMU boots this way (everything but PVH and the built-in VMM's hand-off).
    pub fn needs_qemu(self) -> bool {
        !matches!(self, Boot::Pvh | Boot::EfiHandoff)
    }

    /// Whether this boot goes through UEFI firmware (OVMF).
    pub fn uses_ovmf(self) -> bool {
        matches!(self, Boot::Efi | Boot::Esp)
    }
}

/// What QEMU boots.
#[derive(Clone, Debug)]
pub enum Media {
    /// The kernel ELF through PVH, with the command line in `-append`.
    Pvh {
        /// The ELF.
        kernel: PathBuf,
    },
    /// A BIOS disk image (its ramdisk carries the command line).
    Bios {
        /// The image (a per-run copy).
        disk: PathBuf,
    },
    /// `cvmprobe.efi` with OVMF: given with `-kernel`, or on an ESP image (`esp`).
    Efi {
        /// The application.
        app: PathBuf,
        /// The ESP image holding it (`--boot esp`); `None`: `-kernel` and `-append`.
        esp: Option<PathBuf>,
        /// OVMF code (read-only pflash).
        code: PathBuf,
        /// A private copy of the OVMF variable store.
        vars: PathBuf,
    },
    /// A command line built elsewhere, used as it is (`--confidential`: QEMU's documented
    /// lines for a TD or an SEV-ES guest, `crate::confidential::qemu_args`).
    Raw {
        /// The arguments after the binary.
        args: Vec<String>,
    },
}

/// The options every QEMU run of ours shares: no default devices or user config, no display,
/// the serial port on stdio (the KTAP stream), and a reset ends QEMU instead of rebooting.
pub const HEADLESS: [&str; 7] = [
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-no-reboot",
];

/// Everything that determines one QEMU run.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// The QEMU binary (`qemu-system-x86_64` on PATH by default).
    pub binary: PathBuf,
    /// Machine model.
    pub machine: Machine,
    /// Accelerator.
    pub accel: Accel,
    /// What to boot.
    pub media: Media,
    /// Kernel command line (PVH: `-append`; images: already patched into the disk).
    pub cmdline: String,
    /// CPUID brand string the host chose (`-cpu qemu64,model-id=`).
    pub brand: String,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
}

impl QemuConfig {
    /// A configuration that boots `kernel` through PVH; [`crate::run::prepare_qemu`] fills the
    /// command line and brand, and swaps in a disk image for `boot`. Guest RAM: 64 MiB (256 for
    /// OVMF, which wants more than the kernel needs).
    pub fn new(binary: PathBuf, machine: Machine, accel: Accel, kernel: &Path, boot: Boot) -> Self {
        Self {
            binary,
            machine,
            accel,
            media: Media::Pvh {
                kernel: kernel.to_path_buf(),
            },
            cmdline: String::new(),
            brand: String::new(),
            mem_mib: if boot.uses_ovmf() { 256 } else { 64 },
        }
    }

    /// The argument list after the binary.
    pub fn args(&self) -> Vec<String> {
        if let Media::Raw { args } = &self.media {
            return args.clone();
        }
        let mut a: Vec<String> = vec![
            "-M".into(),
            self.machine.name().into(),
            "-accel".into(),
            self.accel.name().into(),
            "-cpu".into(),
            format!("qemu64,model-id={}", self.brand.replace(',', ",,")),
            "-m".into(),
            format!("{}M", self.mem_mib),
        ];
        a.extend(HEADLESS.iter().map(|s| s.to_string()));
        match &self.media {
            Media::Pvh { kernel } => a.extend([
                "-kernel".into(),
                kernel.display().to_string(),
                "-append".into(),
                self.cmdline.clone(),
            ]),
            // The bootloader's BIOS stage sets a VESA mode through the VGA BIOS: it needs a VGA.
            Media::Bios { disk } => a.extend([
                "-vga".into(),
                "std".into(),
                "-drive".into(),
                format!("format=raw,file={}", disk.display()),
            ]),
            Media::Efi {
                app,
                esp,
                code,
                vars,
            } => {
                a.extend([
                    "-drive".into(),
                    format!("if=pflash,format=raw,readonly=on,file={}", code.display()),
                    "-drive".into(),
                    format!("if=pflash,format=raw,file={}", vars.display()),
                ]);
                match esp {
                    Some(disk) => a.extend([
                        "-drive".into(),
                        format!("format=raw,file={}", disk.display()),
                    ]),
                    None => a.extend([
                        "-kernel".into(),
                        app.display().to_string(),
                        "-append".into(),
                        self.cmdline.clone(),
                    ]),
                }
            }
            Media::Raw { .. } => {}
        }
        a.extend([
            "-device".into(),
            format!("isa-debug-exit,iobase={EXIT_PORT:#x},iosize=0x04"),
            "-device".into(),
            "pc-testdev".into(),
        ]);
        if self.machine == Machine::Pc {
            a.extend(["-net".into(), "none".into(), "-device".into(), "edu".into()]);
        }
        a
    }

    /// What this command line provides the guest on `platform`, read from the arguments QEMU
    /// gets (so the verdict knows what was attached, not what was meant to be).
    pub fn environment(
        &self,
        platform: protocol::platform::PlatformKind,
    ) -> crate::environment::Environment {
        use protocol::catalog::Need;
        let args = self.args();
        let pair = |a: &str, b: &str| args.windows(2).any(|w| w[0] == a && w[1] == b);
        let mut provided = Vec::new();
        let mut add = |n: Need, how: &str| provided.push((n, how.to_string()));
        if pair("-device", "pc-testdev") {
            add(
                Need::TestDevice,
                "-device pc-testdev on the QEMU command line",
            );
        }
        if pair("-device", "edu") {
            add(Need::EduPci, "-device edu on the QEMU command line (-M pc)");
        }
        let key = |k: &str| {
            self.cmdline
                .split_whitespace()
                .any(|t| t.starts_with(k) && t.as_bytes().get(k.len()) == Some(&b'='))
        };
        if key(protocol::cmdline::KEY_BRAND)
            && args
                .iter()
                .any(|a| a.starts_with("qemu64,model-id=") && a.len() > "qemu64,model-id=".len())
        {
            add(
                Need::Brand,
                "-cpu qemu64,model-id= on the QEMU command line and cvmprobe.brand= on the \
                 kernel command line",
            );
        }
        if key(protocol::cmdline::KEY_PLATFORM) {
            add(
                Need::PlatformKey,
                "cvmprobe.platform= on the kernel command line",
            );
        }
        let kernel = args.iter().any(|a| a == "-kernel");
        match self.media {
            Media::Pvh { .. } if kernel => {
                add(
                    Need::IdentityMap,
                    "-kernel on the QEMU command line (PVH boot)",
                );
            }
            Media::Efi { .. } => add(
                Need::IdentityMap,
                "cvmprobe.efi through OVMF (the firmware's identity map, handed over)",
            ),
            Media::Raw { .. } if kernel => add(
                Need::IdentityMap,
                "-kernel cvmprobe.efi through the firmware (its identity map, handed over)",
            ),
            _ => {}
        }
        if args.iter().any(|a| a.starts_with("qemu64")) {
            add(Need::LocalApic, "-cpu qemu64 (its local APIC)");
        } else if pair("-cpu", "host") {
            add(Need::LocalApic, "-cpu host (the host CPU's local APIC)");
        }
        if pair("-accel", "kvm") {
            add(Need::ExactMsrs, "-accel kvm on the QEMU command line");
        }
        let boot = match self.media {
            Media::Pvh { .. } => "PVH",
            Media::Bios { .. } => "BIOS image",
            Media::Efi { esp: None, .. } => "cvmprobe.efi with -kernel, OVMF",
            Media::Efi { esp: Some(_), .. } => "ESP image, OVMF",
            Media::Raw { .. } => "cvmprobe.efi, confidential guest",
        };
        let value = |flag: &str| {
            args.windows(2)
                .find(|w| w[0] == flag)
                .map(|w| w[1].split(',').next().unwrap_or("").to_string())
        };
        let machine = value("-machine")
            .or_else(|| value("-M"))
            .unwrap_or_else(|| self.machine.name().to_string());
        let accel = value("-accel").unwrap_or_else(|| self.accel.name().to_string());
        crate::environment::Environment {
            platform,
            runner: format!("QEMU -M {machine} -accel {accel} ({boot})"),
            provided,
        }
    }

    /// The command as one shell line, quoted so it can be pasted.
    pub fn shell_line(&self) -> String {
        shell_line(&self.binary, &self.args())
    }
}

/// `binary args...` as one line a shell takes back, each word quoted by [`shell_quote`].
pub fn shell_line(binary: &Path, args: &[String]) -> String {
    std::iter::once(binary.display().to_string())
        .chain(args.iter().cloned())
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes `s` for a POSIX shell when needed.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=./,:+@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// How a QEMU run ended.
#[derive(Debug)]
pub enum QemuEnd {
    /// QEMU exited by itself.
    Exited(ExitStatus),
    /// The run passed its timeout; QEMU was killed.
    TimedOut(Duration),
    /// QEMU reported a KVM internal error (e.g. an emulation failure) and was killed: it
    /// would otherwise stop the VM and wait forever.
    KvmInternalError(String),
}

/// What a QEMU run produced.
#[derive(Debug)]
pub struct QemuRun {
    /// How it ended.
    pub end: QemuEnd,
    /// Everything QEMU printed on stdout (the guest's serial port).
    pub serial: String,
    /// Everything QEMU printed on stderr.
    pub stderr: String,
    /// Start to end.
    pub wall: Duration,
}

/// Why QEMU could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The binary does not exist.
    #[error(
        "cannot find QEMU at `{0}`: install it (Debian/Ubuntu: `sudo apt-get install qemu-system-x86`) or pass --qemu PATH"
    )]
    NotFound(String),
    /// Spawning failed for another reason.
    #[error("cannot start QEMU `{path}`: {source}")]
    Spawn {
        /// Binary.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Output of QEMU, one line at a time.
enum Output {
    Serial(String),
    Stderr(String),
}

/// What QEMU prints on stderr when KVM_RUN fails with KVM_EXIT_INTERNAL_ERROR
/// (accel/kvm/kvm-all.c, kvm_handle_internal_error); it then pauses the VM.
const KVM_INTERNAL_ERROR: &str = "KVM internal error";

fn forward_lines(r: impl Read, tx: mpsc::Sender<Output>, wrap: fn(String) -> Output) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if tx
                    .send(wrap(String::from_utf8_lossy(&buf).into_owned()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
}

/// Runs QEMU with `cfg`, calling `on_line` with each serial line as it arrives, and kills it
/// after `timeout`, or as soon as it reports a KVM internal error.
pub fn run(
    cfg: &QemuConfig,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> Result<QemuRun, QemuError> {
    let start = Instant::now();
    let mut child = spawn(&cfg.binary, &cfg.args())?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel::<Output>();
    let tx2 = tx.clone();
    let out_reader = std::thread::spawn(move || forward_lines(stdout, tx, Output::Serial));
    let err_reader = std::thread::spawn(move || forward_lines(stderr, tx2, Output::Stderr));

    let deadline = start + timeout;
    let mut serial = String::new();
    let mut errors = String::new();
    let mut end = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            end = Some(QemuEnd::TimedOut(timeout));
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(Output::Serial(line)) => {
                on_line(line.trim_end_matches(['\n', '\r']));
                serial.push_str(&line);
            }
            Ok(Output::Stderr(line)) => {
                errors.push_str(&line);
                if line.contains(KVM_INTERNAL_ERROR) {
                    end = Some(QemuEnd::KvmInternalError(line.trim().to_string()));
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                end = Some(QemuEnd::TimedOut(timeout));
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let end = match end {
        Some(e) => {
            let _ = child.kill();
            let _ = child.wait();
            e
        }
        None => match wait_with_deadline(&mut child, deadline) {
            Some(s) => QemuEnd::Exited(s),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                QemuEnd::TimedOut(timeout)
            }
        },
    };
    let _ = out_reader.join();
    let _ = err_reader.join();
    // Output that arrived between the last receive and the end.
    for o in rx.try_iter() {
        match o {
            Output::Serial(line) => {
                on_line(line.trim_end_matches(['\n', '\r']));
                serial.push_str(&line);
            }
            Output::Stderr(line) => errors.push_str(&line),
        }
    }
    Ok(QemuRun {
        end,
        serial,
        stderr: errors,
        wall: start.elapsed(),
    })
}

fn spawn(binary: &Path, args: &[String]) -> Result<Child, QemuError> {
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                QemuError::NotFound(binary.display().to_string())
            } else {
                QemuError::Spawn {
                    path: binary.display().to_string(),
                    source: e,
                }
            }
        })
}

/// Waits for `child` until `deadline`; `None` if it is still running then.
fn wait_with_deadline(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether /dev/kvm can be opened read-write (what QEMU's `-accel kvm` needs).
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("-M"), "-M");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn args_have_the_devices() {
        let cfg = QemuConfig {
            binary: "qemu-system-x86_64".into(),
            machine: Machine::Pc,
            accel: Accel::Tcg,
            media: Media::Pvh {
                kernel: "/k".into(),
            },
            cmdline: "cvmprobe.filter=io".into(),
            brand: "cvmprobe 1,2".into(),
            mem_mib: 64,
        };
        let a = cfg.args();
        assert!(a.contains(&"isa-debug-exit,iobase=0xf4,iosize=0x04".to_string()));
        assert!(a.contains(&"edu".to_string()));
        assert!(a.contains(&"qemu64,model-id=cvmprobe 1,,2".to_string()));
        assert!(cfg.shell_line().contains("'qemu64,model-id=cvmprobe 1,,2'"));
    }

    #[test]
    fn environment_follows_the_arguments() {
        use protocol::catalog::Need;
        use protocol::platform::PlatformKind;
        let mut cfg = QemuConfig::new(
            "qemu-system-x86_64".into(),
            Machine::Microvm,
            Accel::Tcg,
            Path::new("/k"),
            Boot::Pvh,
        );
        cfg.cmdline = "cvmprobe.platform=legacy cvmprobe.brand=b".into();
        cfg.brand = "b".into();
        let e = cfg.environment(PlatformKind::Legacy);
        let has = |n| e.needs().contains(n);
        assert!(has(Need::TestDevice) && has(Need::Brand) && has(Need::PlatformKey));
        assert!(has(Need::IdentityMap) && has(Need::LocalApic));
        assert!(!has(Need::EduPci), "microvm has no PCI bus");
        assert!(!has(Need::ExactMsrs), "TCG");
        assert!(!has(Need::BuiltinTestDevice) && !has(Need::MemslotControl));
        assert!(e.runner.contains("-M microvm -accel tcg"), "{}", e.runner);
        cfg.machine = Machine::Pc;
        cfg.accel = Accel::Kvm;
        cfg.cmdline.clear();
        let e = cfg.environment(PlatformKind::Legacy);
        assert!(e.needs().contains(Need::EduPci) && e.needs().contains(Need::ExactMsrs));
        assert!(!e.needs().contains(Need::Brand) && !e.needs().contains(Need::PlatformKey));
    }

    #[test]
    fn environment_of_the_firmware_boots() {
        use protocol::catalog::Need;
        use protocol::platform::PlatformKind;
        let mut cfg = QemuConfig::new(
            "qemu-system-x86_64".into(),
            Machine::Pc,
            Accel::Kvm,
            Path::new("/k"),
            Boot::Efi,
        );
        // cvmprobe.efi with -kernel: not a PVH boot, but the firmware's identity map.
        cfg.media = Media::Efi {
            app: "/cvmprobe.efi".into(),
            esp: None,
            code: "/OVMF_CODE.fd".into(),
            vars: "/vars.fd".into(),
        };
        let e = cfg.environment(PlatformKind::Legacy);
        assert!(e.how(Need::IdentityMap).unwrap().contains("OVMF"), "{e:?}");
        assert!(
            e.runner.contains("cvmprobe.efi with -kernel"),
            "{}",
            e.runner
        );
        cfg.media = Media::Efi {
            app: "/cvmprobe.efi".into(),
            esp: Some("/esp.img".into()),
            code: "/OVMF_CODE.fd".into(),
            vars: "/vars.fd".into(),
        };
        let e = cfg.environment(PlatformKind::Legacy);
        assert!(e.needs().contains(Need::IdentityMap) && e.runner.contains("ESP"));
        // The bootloader's BIOS boot keeps its own page tables: no memslot page.
        cfg.media = Media::Bios {
            disk: "/bios.img".into(),
        };
        assert!(
            !cfg.environment(PlatformKind::Legacy)
                .needs()
                .contains(Need::IdentityMap)
        );
        // A confidential guest's command line (`--confidential`): read from its arguments.
        cfg.media = Media::Raw {
            args: [
                "-accel",
                "kvm",
                "-cpu",
                "host",
                "-machine",
                "q35,confidential-guest-support=tdx0",
                "-kernel",
                "/cvmprobe.efi",
                "-device",
                "pc-testdev",
            ]
            .map(String::from)
            .to_vec(),
        };
        cfg.cmdline = "cvmprobe.platform=tdx".into();
        let e = cfg.environment(PlatformKind::Tdx);
        let has = |n| e.needs().contains(n);
        assert!(has(Need::TestDevice) && has(Need::PlatformKey) && has(Need::IdentityMap));
        assert!(has(Need::LocalApic) && has(Need::ExactMsrs));
        assert!(!has(Need::Brand), "-cpu host keeps the host's brand string");
        assert!(e.runner.contains("-M q35 -accel kvm"), "{}", e.runner);
    }
}
