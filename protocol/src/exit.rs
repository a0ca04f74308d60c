//! How the guest ends a run: a write to the isa-debug-exit port.
//!
//! QEMU's `isa-debug-exit` device (hw/misc/debugexit.c) exits the emulator with status
//! `(value << 1) | 1` when the guest writes `value` to its port; the built-in VMM listens
//! on the same port with the same meaning, so the guest needs no second exit path.

/// The I/O port of the exit device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
pub const EXIT_PORT: u16 = 0xf4;

/// Value the guest writes when every selected case passed (or was skipped).
pub const EXIT_PASS: u32 = 0;
/// Value the guest writes when at least one case failed.
pub const EXIT_FAIL: u32 = 1;
/// Value the guest writes after a `Bail out!` (panic, unexpected exception).
pub const EXIT_BAIL: u32 = 2;

/// The verdict the guest gave through the exit port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestExit {
    /// [`EXIT_PASS`].
    Pass,
    /// [`EXIT_FAIL`].
    Fail,
    /// [`EXIT_BAIL`].
    Bail,
    /// Any other value written to the port.
    Other(u32),
}

impl GuestExit {
    /// Decodes a value written to [`EXIT_PORT`].
    pub const fn from_port_value(v: u32) -> Self {
        match v {
            EXIT_PASS => Self::Pass,
            EXIT_FAIL => Self::Fail,
            EXIT_BAIL => Self::Bail,
            other => Self::Other(other),
        }
    }

    /// Decodes QEMU's process exit status, which is `(value << 1) | 1` after a write to the
    /// port. Even statuses (0 after `-no-reboot` shutdown, for example) did not come from the
    /// port and give `None`.
    pub const fn from_qemu_status(status: i32) -> Option<Self> {
        if status & 1 == 1 && status > 0 {
            Some(Self::from_port_value((status as u32) >> 1))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_status() {
        assert_eq!(GuestExit::from_qemu_status(1), Some(GuestExit::Pass));
        assert_eq!(GuestExit::from_qemu_status(3), Some(GuestExit::Fail));
        assert_eq!(GuestExit::from_qemu_status(5), Some(GuestExit::Bail));
        assert_eq!(GuestExit::from_qemu_status(0), None);
        assert_eq!(GuestExit::from_qemu_status(2), None);
        assert_eq!(GuestExit::from_qemu_status(9), Some(GuestExit::Other(4)));
    }
}
