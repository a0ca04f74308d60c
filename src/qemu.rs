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

/// Everything that determines one QEMU run.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    /// The QEMU binary (`qemu-system-x86_64` on PATH by default).
    pub binary: PathBuf,
    /// Machine model.
    pub machine: Machine,
    /// Accelerator.
    pub accel: Accel,
    /// The kernel ELF (PVH note).
    pub kernel: PathBuf,
    /// Kernel command line.
    pub cmdline: String,
    /// CPUID brand string the host chose (`-cpu qemu64,model-id=`).
    pub brand: String,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
}

impl QemuConfig {
    /// The argument list after the binary.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-M".into(),
            self.machine.name().into(),
            "-accel".into(),
            self.accel.name().into(),
            "-cpu".into(),
            format!("qemu64,model-id={}", self.brand.replace(',', ",,")),
            "-m".into(),
            format!("{}M", self.mem_mib),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-serial".into(),
            "stdio".into(),
            "-no-reboot".into(),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-append".into(),
            self.cmdline.clone(),
            "-device".into(),
            format!("isa-debug-exit,iobase={EXIT_PORT:#x},iosize=0x04"),
            "-device".into(),
            "pc-testdev".into(),
        ];
        if self.machine == Machine::Pc {
            a.extend(["-net".into(), "none".into(), "-device".into(), "edu".into()]);
        }
        a
    }

    /// The command as one shell line, quoted so it can be pasted.
    pub fn shell_line(&self) -> String {
        std::iter::once(self.binary.display().to_string())
            .chain(self.args())
            .map(|a| shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ")
    }
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

/// Runs QEMU with `cfg`, calling `on_line` with each serial line as it arrives, and kills it
/// after `timeout`.
pub fn run(
    cfg: &QemuConfig,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> Result<QemuRun, QemuError> {
    let start = Instant::now();
    let mut child = spawn(&cfg.binary, &cfg.args())?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });

    let deadline = start + timeout;
    let mut serial = String::new();
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                on_line(line.trim_end_matches(['\n', '\r']));
                serial.push_str(&line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let end = if timed_out {
        let _ = child.kill();
        let _ = child.wait();
        QemuEnd::TimedOut(timeout)
    } else {
        let status = wait_with_deadline(&mut child, deadline);
        match status {
            Some(s) => QemuEnd::Exited(s),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                QemuEnd::TimedOut(timeout)
            }
        }
    };
    let _ = reader.join();
    // Lines that arrived between the last receive and the kill.
    for line in rx.try_iter() {
        on_line(line.trim_end_matches(['\n', '\r']));
        serial.push_str(&line);
    }
    let stderr = err_reader.join().unwrap_or_default();
    Ok(QemuRun {
        end,
        serial,
        stderr,
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
            kernel: "/k".into(),
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
}
