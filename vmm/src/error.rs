//! Setup failures: everything that stops the VMM before or outside the guest's own run.
//!
//! What the guest does (a verdict, a triple fault, a hang) is not an error here but an
//! [`crate::ExitReason`]; these variants are for a host that cannot run the guest at all.

use std::path::PathBuf;

/// The `errno` type kvm-ioctls and vmm-sys-util return.
pub use vmm_sys_util::errno::Error as Errno;

/// Why the VMM could not set up or drive the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// `/dev/kvm` could not be opened; `hint` says what is probably wrong.
    #[error("cannot open /dev/kvm: {hint} ({errno})")]
    KvmUnavailable {
        /// What to do about it.
        hint: &'static str,
        /// The `open` error.
        errno: Errno,
    },
    /// `KVM_GET_API_VERSION` answered something other than 12.
    #[error("/dev/kvm speaks KVM API version {0}, this VMM needs {expected}", expected = kvm_bindings::KVM_API_VERSION)]
    KvmApiVersion(i32),
    /// A KVM capability the VMM relies on is missing.
    #[error("KVM lacks {0}, which this VMM needs")]
    MissingCapability(&'static str),
    /// A KVM ioctl failed.
    #[error("{ioctl} failed: {errno}")]
    Kvm {
        /// The ioctl, as named in the KVM API documentation.
        ioctl: &'static str,
        /// Its error.
        errno: Errno,
    },
    /// The configuration cannot work (memory size, timeout, command line).
    #[error("invalid VM configuration: {0}")]
    Config(String),
    /// The kernel file could not be opened.
    #[error("cannot open kernel {path}: {source}")]
    KernelOpen {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel is not an ELF linux-loader can place in guest memory.
    #[error("cannot load kernel {path}: {source}")]
    KernelLoad {
        /// The file.
        path: PathBuf,
        /// linux-loader's reason.
        source: linux_loader::loader::Error,
    },
    /// The kernel ELF has no `XEN_ELFNOTE_PHYS32_ENTRY` note, so there is no PVH entry.
    #[error(
        "kernel {path} has no PVH entry (no XEN_ELFNOTE_PHYS32_ENTRY note in a PT_NOTE segment)"
    )]
    NoPvhNote {
        /// The file.
        path: PathBuf,
    },
    /// Guest memory could not be allocated.
    #[error("cannot allocate {mib} MiB of guest memory: {reason}")]
    GuestMemory {
        /// Requested size.
        mib: u64,
        /// vm-memory's reason.
        reason: String,
    },
    /// The PVH start info or memory map could not be written.
    #[error("cannot write the PVH start info: {0}")]
    BootInfo(#[from] linux_loader::configurator::Error),
    /// The command line is not acceptable to linux-loader or does not fit.
    #[error("bad kernel command line: {0}")]
    Cmdline(String),
    /// The vCPU kick signal could not be set up.
    #[error("cannot set up the vCPU kick signal: {0}")]
    Signal(String),
    /// The watchdog thread could not be started.
    #[error("cannot start the watchdog thread: {0}")]
    Thread(std::io::Error),
}

impl VmmError {
    /// A failed KVM ioctl, named as in the KVM API documentation.
    pub(crate) fn kvm(ioctl: &'static str) -> impl FnOnce(Errno) -> Self {
        move |errno| Self::Kvm { ioctl, errno }
    }
}
