//! A minimal local APIC in user space: a register file and the timer, for a VM with no
//! in-kernel irqchip.
//!
//! Written by hand because no rust-vmm crate provides a user-space local APIC (vm-superio has
//! UART/RTC/i8042 only; KVM's in-kernel APIC would take the whole interrupt path away from the
//! VMM, which later work needs). It models what the guest's `halt` suite uses
//! (guest/src/timer.rs): SVR, the LVT timer in one-shot (and periodic) mode, the divide
//! configuration, initial/current count, EOI; plus one pending (IRR) and one in-service (ISR)
//! vector, which is all a single timer source can produce. Other registers read back what
//! was written; TSC-deadline mode is not modelled (CPUID says so).
//!
//! Two register interfaces reach the same state: the xAPIC MMIO page ([`Device`]) for the
//! legacy and SEV-ES platforms, and the x2APIC MSRs ([`Lapic::read_msr`],
//! [`Lapic::write_msr`]; Intel SDM vol. 3A 11.12) for tdx-sim, whose TD has an x2APIC only.
//!
//! Time: one bus clock is [`TICK_NS`] nanoseconds, scaled by the divide configuration. The
//! model has no thread of its own: the run loop polls it before every KVM_RUN, and a HLT
//! waits for its deadline. A guest that spins without exits past the deadline gets the
//! interrupt at its next exit, not at the deadline (the halt suite arms, then halts).

use super::{AccessCtx, Device, Effect, fill_unassigned};
use protocol::apic::reg;
use std::time::{Duration, Instant};

pub use protocol::qemu_devices::LAPIC_BASE;
/// The APIC's MMIO page (Intel SDM vol. 3A, 11.4.1: 4 KiB at the APIC base).
pub const LAPIC_LEN: u64 = 0x1000;

// Register offsets: Intel SDM vol. 3A, table 11-1 "Local APIC Register Address Map".
/// Local APIC ID (bits 31:24).
pub const APIC_ID: u64 = reg::ID;
/// Local APIC version (read-only).
pub const APIC_VERSION: u64 = reg::VERSION;
/// Task priority.
pub const APIC_TPR: u64 = reg::TPR;
/// End of interrupt (write-only).
pub const APIC_EOI: u64 = reg::EOI;
/// Spurious interrupt vector; bit 8 enables the APIC in software.
pub const APIC_SVR: u64 = reg::SVR;
/// In-service register, eight 32-bit words at 16-byte strides.
pub const APIC_ISR: u64 = reg::ISR;
/// Interrupt request register, eight words.
pub const APIC_IRR: u64 = reg::IRR;
/// LVT timer.
pub const APIC_LVT_TIMER: u64 = reg::LVT_TIMER;
/// Timer initial count.
pub const APIC_TIMER_INITIAL: u64 = reg::TIMER_INITIAL;
/// Timer current count (read-only).
pub const APIC_TIMER_CURRENT: u64 = reg::TIMER_CURRENT;
/// Timer divide configuration.
pub const APIC_TIMER_DIVIDE: u64 = reg::TIMER_DIVIDE;

/// SVR bit 8: APIC software enable (SDM 11.9).
pub const SVR_ENABLE: u32 = protocol::apic::SVR_ENABLE;
/// LVT bit 16: masked (SDM 11.5.1, figure 11-8).
pub const LVT_MASKED: u32 = protocol::apic::LVT_MASKED;
/// LVT timer bits 18:17: mode.
const LVT_TIMER_MODE: u32 = 0b11 << 17;
/// Timer mode 01: periodic.
const LVT_TIMER_PERIODIC: u32 = 0b01 << 17;
/// Timer mode 00: one-shot.
const LVT_TIMER_ONESHOT: u32 = 0;
/// LVT bits 7:0: vector.
const LVT_VECTOR: u32 = 0xff;
/// Vectors 0..16 are reserved; an LVT naming one raises an APIC error instead (SDM 11.5.3).
const FIRST_VALID_VECTOR: u8 = 16;

/// Version register: version 0x14 (integrated APIC), bits 23:16 = highest LVT entry (5: timer,
/// thermal, performance, LINT0, LINT1, error), the value QEMU's APIC model reports.
const VERSION_VALUE: u32 = 0x0005_0014;
/// Reset value of the LVT entries: masked (SDM 11.12.5.1, state after reset).
const LVT_RESET: u32 = LVT_MASKED;
/// Reset value of SVR: vector 0xff, software-disabled.
const SVR_RESET: u32 = 0xff;
/// Destination format register and its reset value (flat model).
const APIC_DFR: u64 = reg::DFR;
const DFR_RESET: u32 = 0xffff_ffff;
/// Every LVT register: CMCI, timer, thermal, performance, LINT0, LINT1, error.
const LVT_REGS: [u64; 7] = [
    reg::LVT_CMCI,
    reg::LVT_TIMER,
    reg::LVT_THERMAL,
    reg::LVT_PMC,
    reg::LVT_LINT0,
    reg::LVT_LINT1,
    reg::LVT_ERROR,
];

/// Nanoseconds per APIC bus clock: KVM clocks the APIC timer at 1 GHz
/// (`APIC_BUS_CYCLE_NS_DEFAULT` in arch/x86/kvm/lapic.h), as does QEMU; the guest's halt
/// suite sizes its delay with this (guest/src/tests/halt.rs `TICKS`).
pub const TICK_NS: u64 = 1;

/// Number of 16-byte register slots in the 4 KiB page that the model keeps (up to 0x3f0).
const NREGS: usize = 0x400 / 16;

/// A running timer.
#[derive(Clone, Copy, Debug)]
struct Countdown {
    /// When the count reaches zero.
    deadline: Instant,
    /// Time for the full initial count (the period in periodic mode).
    period: Duration,
}

/// The local APIC model.
#[derive(Debug)]
pub struct Lapic {
    regs: [u32; NREGS],
    timer: Option<Countdown>,
    /// Vector requested and not yet delivered.
    irr: Option<u8>,
    /// Vector delivered and not yet acknowledged by EOI.
    isr: Option<u8>,
}

impl Default for Lapic {
    fn default() -> Self {
        let mut regs = [0u32; NREGS];
        regs[idx(APIC_VERSION)] = VERSION_VALUE;
        regs[idx(APIC_SVR)] = SVR_RESET;
        regs[idx(APIC_DFR)] = DFR_RESET;
        for r in LVT_REGS {
            regs[idx(r)] = LVT_RESET;
        }
        Self {
            regs,
            timer: None,
            irr: None,
            isr: None,
        }
    }
}

fn idx(offset: u64) -> usize {
    (offset >> 4) as usize
}

/// Priority class of a vector (SDM 11.8.3.1).
fn class(v: u8) -> u8 {
    v >> 4
}

impl Lapic {
    fn reg(&self, offset: u64) -> u32 {
        self.regs[idx(offset)]
    }

    fn software_enabled(&self) -> bool {
        self.reg(APIC_SVR) & SVR_ENABLE != 0
    }

    /// Divisor from the divide configuration register: bits 3,1:0 encode 2^(n+1), 0b111 = 1
    /// (SDM 11.5.4, figure 11-10).
    fn divisor(&self) -> u64 {
        let d = self.reg(APIC_TIMER_DIVIDE);
        let n = ((d >> 1) & 0b100) | (d & 0b11);
        1 << ((n + 1) & 0b111)
    }

    /// The vector the timer raises when it expires, if the expiry raises anything.
    fn timer_vector(&self) -> Option<u8> {
        let lvt = self.reg(APIC_LVT_TIMER);
        let mode = lvt & LVT_TIMER_MODE;
        let vector = (lvt & LVT_VECTOR) as u8;
        (self.software_enabled()
            && lvt & LVT_MASKED == 0
            && (mode == LVT_TIMER_ONESHOT || mode == LVT_TIMER_PERIODIC)
            && vector >= FIRST_VALID_VECTOR)
            .then_some(vector)
    }

    fn start_timer(&mut self, initial: u32, now: Instant) {
        self.timer = (initial != 0).then(|| {
            let period = Duration::from_nanos(u64::from(initial) * TICK_NS * self.divisor());
            Countdown {
                deadline: now + period,
                period,
            }
        });
    }

    /// Advances the timer to `now`: an expired countdown raises its vector (if unmasked) and
    /// stops, or restarts in periodic mode.
    pub fn poll(&mut self, now: Instant) {
        let Some(t) = self.timer else { return };
        if now < t.deadline {
            return;
        }
        let periodic = self.reg(APIC_LVT_TIMER) & LVT_TIMER_MODE == LVT_TIMER_PERIODIC;
        self.timer = periodic.then(|| {
            // Periods missed while nobody polled collapse into one interrupt, as they would
            // in the one IRR bit of real hardware.
            let mut deadline = t.deadline + t.period;
            if deadline <= now {
                deadline = now + t.period;
            }
            Countdown { deadline, ..t }
        });
        if let Some(v) = self.timer_vector() {
            self.irr = Some(v);
        }
    }

    /// The vector to deliver now, if one is requested and its priority class beats both the
    /// in-service vector and the task priority (SDM 11.8.3.1).
    pub fn pending_interrupt(&self) -> Option<u8> {
        let v = self.irr?;
        let tpr_class = (self.reg(APIC_TPR) >> 4) as u8 & 0xf;
        let busy = self.isr.map_or(0, class).max(tpr_class);
        (class(v) > busy).then_some(v)
    }

    /// The vector was delivered to the CPU: it moves from IRR to ISR until EOI.
    pub fn acknowledge(&mut self) {
        if let Some(v) = self.irr.take() {
            self.isr = Some(v);
        }
    }

    /// When the running timer will raise an interrupt, if it will.
    pub fn next_interrupt_at(&self) -> Option<Instant> {
        let t = self.timer?;
        self.timer_vector().map(|_| t.deadline)
    }

    /// The vector in service (delivered, no EOI yet).
    pub fn in_service(&self) -> Option<u8> {
        self.isr
    }

    fn current_count(&self, now: Instant) -> u32 {
        self.timer.map_or(0, |t| {
            let left = t.deadline.saturating_duration_since(now).as_nanos() as u64;
            (left / (TICK_NS * self.divisor())).min(u64::from(u32::MAX)) as u32
        })
    }

    /// One bit per vector in the 256-bit ISR/IRR: word `word` of the register for `v`.
    fn vector_word(v: Option<u8>, word: u64) -> u32 {
        v.filter(|&v| u64::from(v) / 32 == word)
            .map_or(0, |v| 1 << (v % 32))
    }

    fn read_reg(&self, offset: u64, now: Instant) -> u32 {
        match offset {
            APIC_TIMER_CURRENT => self.current_count(now),
            APIC_EOI => 0,
            o if (APIC_ISR..APIC_ISR + 0x80).contains(&o) => {
                Self::vector_word(self.isr, (o - APIC_ISR) >> 4)
            }
            o if (APIC_IRR..APIC_IRR + 0x80).contains(&o) => {
                Self::vector_word(self.irr, (o - APIC_IRR) >> 4)
            }
            o => self.reg(o),
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32, now: Instant) {
        match offset {
            APIC_VERSION | APIC_TIMER_CURRENT => {}
            o if (APIC_ISR..APIC_IRR + 0x80).contains(&o) => {}
            APIC_EOI => self.isr = None,
            APIC_SVR => {
                self.regs[idx(APIC_SVR)] = v;
                if v & SVR_ENABLE == 0 {
                    // Software-disabling the APIC masks every LVT entry (SDM 11.4.7.2).
                    for r in LVT_REGS {
                        self.regs[idx(r)] |= LVT_MASKED;
                    }
                }
            }
            o if LVT_REGS.contains(&o) => {
                let masked = if self.software_enabled() {
                    0
                } else {
                    LVT_MASKED
                };
                self.regs[idx(o)] = v | masked;
            }
            APIC_TIMER_INITIAL => {
                self.regs[idx(APIC_TIMER_INITIAL)] = v;
                self.start_timer(v, now);
            }
            o => self.regs[idx(o)] = v,
        }
    }
}

/// Why an x2APIC MSR access raises #GP (Intel SDM vol. 3A 11.12.1.2 and table 11-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X2apicFault {
    /// Not an x2APIC register (reserved, or xAPIC-only: APR, RRD, DFR, ICR high).
    Reserved,
    /// A read of a write-only register (EOI, self IPI) or a write of a read-only one.
    WrongDirection,
    /// A non-zero write to EOI, or reserved bits set.
    ReservedBits,
}

impl Lapic {
    /// The x2APIC register at `offset` in the xAPIC map, if x2APIC mode has it.
    fn x2apic_register(offset: u64) -> Option<u64> {
        use protocol::apic::reg;
        let exists = matches!(
            offset,
            reg::ID
                | reg::VERSION
                | reg::TPR
                | reg::PPR
                | reg::EOI
                | reg::LDR
                | reg::SVR
                | reg::ESR
                | reg::LVT_CMCI
                | reg::ICR_LOW
                | reg::LVT_TIMER
                | reg::LVT_THERMAL
                | reg::LVT_PMC
                | reg::LVT_LINT0
                | reg::LVT_LINT1
                | reg::LVT_ERROR
                | reg::TIMER_INITIAL
                | reg::TIMER_CURRENT
                | reg::TIMER_DIVIDE
                | reg::SELF_IPI
        ) || (reg::ISR..reg::IRR + 0x80).contains(&offset);
        exists.then_some(offset)
    }

    /// RDMSR of x2APIC register `msr` (0x800-0x8FF): the 32-bit register zero-extended, the
    /// whole 64-bit ICR at 0x830; the x2APIC ID is this APIC's 32-bit ID (0) and the logical
    /// ID derives from it (Intel SDM vol. 3A 11.12.10.2: cluster ID 0, bit 0).
    pub fn read_msr(&self, msr: u32, now: Instant) -> Result<u64, X2apicFault> {
        use protocol::apic::reg;
        let offset = protocol::apic::x2apic_offset(msr)
            .and_then(Self::x2apic_register)
            .ok_or(X2apicFault::Reserved)?;
        match offset {
            reg::EOI | reg::SELF_IPI => Err(X2apicFault::WrongDirection),
            reg::ID => Ok(0),
            reg::LDR => Ok(1),
            reg::PPR => Ok(u64::from(self.ppr())),
            reg::ICR_LOW => {
                Ok(u64::from(self.reg(reg::ICR_HIGH)) << 32 | u64::from(self.reg(reg::ICR_LOW)))
            }
            o => Ok(u64::from(self.read_reg(o, now))),
        }
    }

    /// WRMSR of x2APIC register `msr`: the low 32 bits of `value` (bits 63:32 must be 0 but
    /// for the ICR); EOI takes only 0; the self-IPI register requests its vector.
    pub fn write_msr(&mut self, msr: u32, value: u64, now: Instant) -> Result<(), X2apicFault> {
        use protocol::apic::reg;
        let offset = protocol::apic::x2apic_offset(msr)
            .and_then(Self::x2apic_register)
            .ok_or(X2apicFault::Reserved)?;
        match offset {
            reg::ID | reg::VERSION | reg::PPR | reg::LDR | reg::TIMER_CURRENT => {
                Err(X2apicFault::WrongDirection)
            }
            o if (reg::ISR..reg::IRR + 0x80).contains(&o) => Err(X2apicFault::WrongDirection),
            reg::ICR_LOW => {
                self.regs[idx(reg::ICR_HIGH)] = (value >> 32) as u32;
                self.regs[idx(reg::ICR_LOW)] = value as u32;
                Ok(())
            }
            _ if value >> 32 != 0 => Err(X2apicFault::ReservedBits),
            reg::EOI if value != 0 => Err(X2apicFault::ReservedBits),
            reg::SELF_IPI => {
                let vector = (value & u64::from(LVT_VECTOR)) as u8;
                if vector >= FIRST_VALID_VECTOR {
                    self.irr = Some(vector);
                }
                Ok(())
            }
            o => {
                self.write_reg(o, value as u32, now);
                Ok(())
            }
        }
    }

    /// Processor priority (Intel SDM vol. 3A 11.8.3.1): TPR or the in-service class,
    /// whichever is higher.
    fn ppr(&self) -> u32 {
        let tpr = self.reg(protocol::apic::reg::TPR) & 0xff;
        let isr = self.isr.map_or(0, |v| u32::from(v) & 0xf0);
        if tpr >> 4 >= isr >> 4 { tpr } else { isr }
    }
}

/// Registers are 32 bits wide at 16-byte aligned offsets (SDM 11.4.1); other accesses are
/// undefined on hardware and read all ones / are dropped here.
fn dword_register(offset: u64, len: usize) -> Option<u64> {
    (len == 4 && offset % 16 == 0 && offset < (NREGS as u64) * 16).then_some(offset)
}

impl Device for Lapic {
    fn name(&self) -> &'static str {
        "lapic"
    }

    fn read(&mut self, offset: u64, data: &mut [u8], ctx: &AccessCtx) {
        match dword_register(offset, data.len()) {
            Some(o) => data.copy_from_slice(&self.read_reg(o, ctx.now).to_le_bytes()),
            None => fill_unassigned(data),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8], ctx: &AccessCtx) -> Effect {
        if let Some(o) = dword_register(offset, data.len()) {
            let v = u32::from_le_bytes(data.try_into().expect("4 bytes"));
            self.write_reg(o, v, ctx.now);
        }
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(a: &mut Lapic, off: u64, v: u32, now: Instant) {
        a.write(
            off,
            &v.to_le_bytes(),
            &AccessCtx {
                rip: 0,
                now,
                exits: 0,
                counts: Default::default(),
            },
        );
    }

    fn r(a: &mut Lapic, off: u64, now: Instant) -> u32 {
        let mut d = [0u8; 4];
        a.read(
            off,
            &mut d,
            &AccessCtx {
                rip: 0,
                now,
                exits: 0,
                counts: Default::default(),
            },
        );
        u32::from_le_bytes(d)
    }

    /// What guest/src/timer.rs `arm_lapic_oneshot` writes.
    fn arm(a: &mut Lapic, vector: u32, ticks: u32, now: Instant) {
        w(a, APIC_SVR, SVR_ENABLE | 0xff, now);
        w(a, APIC_TIMER_DIVIDE, 0xb, now);
        w(a, APIC_LVT_TIMER, vector, now);
        w(a, APIC_TIMER_INITIAL, ticks, now);
    }

    #[test]
    fn oneshot_fires_once_at_its_deadline() {
        let t0 = Instant::now();
        let mut a = Lapic::default();
        arm(&mut a, 0x20, 50_000, t0);
        assert_eq!(a.next_interrupt_at(), Some(t0 + Duration::from_micros(50)));
        a.poll(t0 + Duration::from_micros(49));
        assert_eq!(a.pending_interrupt(), None);
        assert_eq!(
            r(&mut a, APIC_TIMER_CURRENT, t0 + Duration::from_micros(30)),
            20_000
        );
        a.poll(t0 + Duration::from_micros(50));
        assert_eq!(a.pending_interrupt(), Some(0x20));
        assert_eq!(a.next_interrupt_at(), None, "one-shot stops");
        assert_eq!(
            r(&mut a, APIC_TIMER_CURRENT, t0 + Duration::from_micros(60)),
            0
        );
        a.acknowledge();
        assert_eq!(a.pending_interrupt(), None);
        assert_eq!(a.in_service(), Some(0x20));
        assert_eq!(
            r(&mut a, APIC_ISR + 0x10, t0),
            1,
            "vector 0x20 is bit 0 of ISR word 1"
        );
        w(&mut a, APIC_EOI, 0, t0);
        assert_eq!(a.in_service(), None);
    }

    #[test]
    fn divide_configuration_scales_time() {
        let t0 = Instant::now();
        let mut a = Lapic::default();
        w(&mut a, APIC_SVR, SVR_ENABLE, t0);
        w(&mut a, APIC_TIMER_DIVIDE, 0b0011, t0); // divide by 16
        w(&mut a, APIC_LVT_TIMER, 0x30, t0);
        w(&mut a, APIC_TIMER_INITIAL, 1000, t0);
        assert_eq!(
            a.next_interrupt_at(),
            Some(t0 + Duration::from_nanos(16_000))
        );
    }

    #[test]
    fn masked_or_disabled_timer_raises_nothing() {
        let t0 = Instant::now();
        let mut a = Lapic::default();
        arm(&mut a, 0x20 | LVT_MASKED, 10, t0);
        assert_eq!(a.next_interrupt_at(), None);
        a.poll(t0 + Duration::from_secs(1));
        assert_eq!(a.pending_interrupt(), None);

        let mut a = Lapic::default();
        w(&mut a, APIC_LVT_TIMER, 0x20, t0);
        assert_eq!(
            r(&mut a, APIC_LVT_TIMER, t0) & LVT_MASKED,
            LVT_MASKED,
            "SVR disabled"
        );
        w(&mut a, APIC_TIMER_INITIAL, 10, t0);
        assert_eq!(a.next_interrupt_at(), None);
    }

    #[test]
    fn periodic_rearms() {
        let t0 = Instant::now();
        let mut a = Lapic::default();
        arm(&mut a, 0x20 | LVT_TIMER_PERIODIC, 1000, t0);
        a.poll(t0 + Duration::from_micros(1));
        assert_eq!(a.pending_interrupt(), Some(0x20));
        assert_eq!(a.next_interrupt_at(), Some(t0 + Duration::from_micros(2)));
    }

    #[test]
    fn in_service_vector_blocks_same_class() {
        let t0 = Instant::now();
        let mut a = Lapic::default();
        arm(&mut a, 0x20, 1, t0);
        a.poll(t0 + Duration::from_secs(1));
        a.acknowledge();
        arm(&mut a, 0x20, 1, t0);
        a.poll(t0 + Duration::from_secs(1));
        assert_eq!(a.pending_interrupt(), None, "waits for EOI");
        w(&mut a, APIC_EOI, 0, t0);
        assert_eq!(a.pending_interrupt(), Some(0x20));
    }

    #[test]
    fn x2apic_msrs_reach_the_same_registers() {
        use protocol::apic::{reg, x2apic_msr};
        let t0 = Instant::now();
        let mut a = Lapic::default();
        let wr = |a: &mut Lapic, r: u64, v: u64| a.write_msr(x2apic_msr(r), v, t0);
        // What guest/src/timer.rs writes on TDX, through MSRs.
        wr(&mut a, reg::SVR, u64::from(SVR_ENABLE) | 0xff).unwrap();
        wr(&mut a, reg::TIMER_DIVIDE, 0xb).unwrap();
        wr(&mut a, reg::LVT_TIMER, 0x20).unwrap();
        wr(&mut a, reg::TIMER_INITIAL, 1000).unwrap();
        assert_eq!(a.next_interrupt_at(), Some(t0 + Duration::from_micros(1)));
        assert_eq!(r(&mut a, APIC_LVT_TIMER, t0), 0x20, "the xAPIC view agrees");
        a.poll(t0 + Duration::from_micros(1));
        a.acknowledge();
        assert_eq!(a.read_msr(x2apic_msr(reg::ISR + 0x10), t0), Ok(1));
        assert_eq!(a.read_msr(x2apic_msr(reg::PPR), t0), Ok(0x20));
        // EOI takes only 0 and is write-only.
        assert_eq!(wr(&mut a, reg::EOI, 1), Err(X2apicFault::ReservedBits));
        assert_eq!(a.in_service(), Some(0x20));
        assert_eq!(
            a.read_msr(x2apic_msr(reg::EOI), t0),
            Err(X2apicFault::WrongDirection)
        );
        wr(&mut a, reg::EOI, 0).unwrap();
        assert_eq!(a.in_service(), None);
        // Read-only registers, xAPIC-only and reserved MSRs, the 64-bit ICR.
        assert_eq!(a.read_msr(x2apic_msr(reg::ID), t0), Ok(0));
        assert_eq!(a.read_msr(x2apic_msr(reg::LDR), t0), Ok(1));
        assert_eq!(
            a.read_msr(x2apic_msr(reg::VERSION), t0),
            Ok(u64::from(VERSION_VALUE))
        );
        assert_eq!(
            wr(&mut a, reg::VERSION, 0),
            Err(X2apicFault::WrongDirection)
        );
        for xapic_only in [reg::APR, reg::RRD, reg::DFR, reg::ICR_HIGH] {
            assert_eq!(
                a.read_msr(x2apic_msr(xapic_only), t0),
                Err(X2apicFault::Reserved),
                "{xapic_only:#x}"
            );
        }
        assert_eq!(a.read_msr(0x840, t0), Err(X2apicFault::Reserved));
        assert_eq!(a.read_msr(0x1b, t0), Err(X2apicFault::Reserved));
        wr(&mut a, reg::ICR_LOW, 0x1_0000_00fd).unwrap();
        assert_eq!(a.read_msr(x2apic_msr(reg::ICR_LOW), t0), Ok(0x1_0000_00fd));
        assert_eq!(
            wr(&mut a, reg::SVR, 1 << 32),
            Err(X2apicFault::ReservedBits)
        );
        // Self IPI requests its vector.
        wr(&mut a, reg::SELF_IPI, 0x31).unwrap();
        assert_eq!(a.pending_interrupt(), Some(0x31));
    }

    #[test]
    fn register_file_and_odd_accesses() {
        let t0 = Instant::now();
        let mut a = Lapic::default();
        assert_eq!(r(&mut a, APIC_VERSION, t0), VERSION_VALUE);
        assert_eq!(r(&mut a, APIC_ID, t0), 0);
        w(&mut a, APIC_VERSION, 0, t0);
        assert_eq!(r(&mut a, APIC_VERSION, t0), VERSION_VALUE, "read-only");
        w(&mut a, APIC_TPR, 0x10, t0);
        assert_eq!(r(&mut a, APIC_TPR, t0), 0x10);
        let mut b = [0u8; 1];
        a.read(
            APIC_SVR,
            &mut b,
            &AccessCtx {
                rip: 0,
                now: t0,
                exits: 0,
                counts: Default::default(),
            },
        );
        assert_eq!(b, [0xff]);
        let mut d = [0u8; 4];
        a.read(
            APIC_SVR + 4,
            &mut d,
            &AccessCtx {
                rip: 0,
                now: t0,
                exits: 0,
                counts: Default::default(),
            },
        );
        assert_eq!(d, [0xff; 4]);
    }
}
