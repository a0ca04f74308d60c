//! COM1: vm-superio's 16550 model, its output kept in memory for the run's sink.

use super::{AccessCtx, Device, Effect, fill_unassigned};
use std::convert::Infallible;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};

// COM1's ports are `protocol::pc`'s. Its data port (offset 0: THR on write, or DLL while
// LCR.DLAB is set) is the one COM1 port whose byte writes the VMM lets KVM coalesce instead
// of exiting (KVM_REGISTER_COALESCED_MMIO with `pio = 1`, `vcpu/coalesced.rs`).
//
// That is sound because, in this model, a write there has no effect the guest can see until
// it next *reads* COM1 (LSR, RBR, DLL...), and every read exits, and the VMM replays the
// queued writes before it handles any exit: the guest observes exactly what it would had
// each write exited. The UART's interrupt goes nowhere ([`NoIrq`]), so no THRE interrupt is
// delayed either. Writes to the other registers (LCR, IER, MCR, FCR, SCR) keep exiting: they
// are few (setup only), so coalescing them would buy nothing.

/// The UART's interrupt line goes nowhere: this VM has no interrupt controller for it (no
/// in-kernel irqchip, and the user-space APIC models only its timer). The guest polls LSR.
/// vm-superio needs some [`Trigger`]; none of the rust-vmm crates ships a no-op one.
#[derive(Debug, Default)]
pub struct NoIrq;

impl Trigger for NoIrq {
    type E = Infallible;

    fn trigger(&self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// COM1 with everything the guest wrote to it.
pub struct Com1 {
    uart: Serial<NoIrq, NoEvents, Vec<u8>>,
    /// Bytes of the output already handed out by [`Com1::take_new_output`].
    taken: usize,
}

impl Default for Com1 {
    fn default() -> Self {
        Self {
            uart: Serial::new(NoIrq, Vec::new()),
            taken: 0,
        }
    }
}

impl Com1 {
    /// Output written since the last call.
    pub fn take_new_output(&mut self) -> &[u8] {
        let out = self.uart.writer();
        let new = &out[self.taken..];
        self.taken = out.len();
        new
    }

    /// Everything the guest wrote.
    pub fn output(&self) -> &[u8] {
        self.uart.writer()
    }

    /// Consumes the device, returning everything the guest wrote.
    pub fn into_output(self) -> Vec<u8> {
        self.uart.into_writer()
    }
}

impl Device for Com1 {
    fn name(&self) -> &'static str {
        "com1"
    }

    fn read(&mut self, offset: u64, data: &mut [u8], _ctx: &AccessCtx) {
        // The 16550 has byte registers; a wider read sees the first and all ones above it,
        // like an unclaimed byte lane.
        if let Some((first, rest)) = data.split_first_mut() {
            *first = self.uart.read(offset as u8);
            fill_unassigned(rest);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], _ctx: &AccessCtx) -> Effect {
        let Some(&byte) = data.first() else {
            return Effect::None;
        };
        match self.uart.write(offset as u8, byte) {
            Ok(()) => Effect::None,
            Err(e) => Effect::Failed(format!("16550 write at +{offset}: {e:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const CTX: fn() -> AccessCtx = || AccessCtx {
        rip: 0,
        now: Instant::now(),
        exits: 0,
        counts: Default::default(),
    };

    /// 16550 register offsets (PC16550D datasheet): scratch, line status, interrupt id.
    const SCR: u64 = 7;
    const LSR: u64 = 5;
    const IIR: u64 = 2;

    #[test]
    fn answers_what_uart_16550_checks() {
        let mut c = Com1::default();
        let mut b = [0u8];
        for pattern in [0x42, 0x73] {
            assert_eq!(c.write(SCR, &[pattern], &CTX()), Effect::None);
            c.read(SCR, &mut b, &CTX());
            assert_eq!(b[0], pattern, "scratch register (check_present)");
        }
        c.read(LSR, &mut b, &CTX());
        assert_eq!(b[0] & 0x60, 0x60, "THR empty and transmitter empty");
        c.read(IIR, &mut b, &CTX());
        assert_eq!(b[0] & 0xc0, 0xc0, "FIFOs reported enabled");
    }

    #[test]
    fn output_is_kept_and_taken_once() {
        let mut c = Com1::default();
        for &b in b"ok" {
            c.write(0, &[b], &CTX());
        }
        assert_eq!(c.take_new_output(), b"ok");
        assert_eq!(c.take_new_output(), b"");
        c.write(0, b"!", &CTX());
        assert_eq!(c.take_new_output(), b"!");
        assert_eq!(c.into_output(), b"ok!");
    }
}
