//! The machine behind the vCPU: device buses, the interrupt state, and the one function that
//! turns a decoded exit into what the run loop does next.
//!
//! Nothing here touches KVM (Firecracker's shape): [`Exit`] is plain data, [`Machine::handle`]
//! is a function of the exit, the vCPU's register snapshot and the time, so unit tests drive
//! it with synthetic exits and instants. The KVM side is in `vcpu/`.

use crate::devices::exit_port::{EXIT_PORT, EXIT_PORT_LEN, ExitPort};
use crate::devices::lapic::{LAPIC_BASE, LAPIC_LEN, Lapic, X2apicFault};
use crate::devices::serial::Com1;
use crate::devices::testdev::{self, Testdev, TestdevReport};
use crate::devices::{AccessCtx, Bus, Device, Effect, RunCounts, fill_unassigned};
use crate::memslot::{self as memslot_dev, Memslot};
use crate::{ExitReason, ExitStats};
use kvm_bindings::kvm_regs;
use protocol::pc::{COM1_BASE, COM1_LEN};
use protocol::testdev::Space;
use std::time::Instant;
use vm_memory::GuestMemoryMmap;

/// One vCPU exit, decoded from `kvm_run`. Data slices are the exit's own buffers: what a
/// read handler writes into them is what the guest reads.
#[derive(Debug)]
pub enum Exit<'a> {
    /// `IN` from `port`: fill `data`. String IO (`rep ins`) carries several `size`-byte
    /// elements, one device access each.
    IoIn {
        /// First port.
        port: u16,
        /// Bytes per access (1, 2 or 4).
        size: usize,
        /// `size * count` bytes to fill.
        data: &'a mut [u8],
    },
    /// `OUT` to `port` (several elements for `rep outs`).
    IoOut {
        /// First port.
        port: u16,
        /// Bytes per access.
        size: usize,
        /// `size * count` bytes written.
        data: &'a [u8],
    },
    /// A load from GPA `addr` with no memslot behind it: fill `data` (1..=8 bytes).
    MmioRead {
        /// Guest-physical address.
        addr: u64,
        /// Bytes to fill.
        data: &'a mut [u8],
    },
    /// A store to GPA `addr` with no memslot behind it.
    MmioWrite {
        /// Guest-physical address.
        addr: u64,
        /// Bytes written.
        data: &'a [u8],
    },
    /// `HLT` (KVM_EXIT_HLT: there is no in-kernel local APIC to halt in).
    Hlt,
    /// KVM_EXIT_DEBUG: a hardware breakpoint hit (the simulated platforms' TDCALL/VMGEXIT
    /// trap) or a single step; the RIP is in the register snapshot.
    Debug {
        /// DR6 as KVM reports it: bit 0 (B0) the DR0 breakpoint, bit 14 (BS) a single step.
        dr6: u64,
    },
    /// KVM_EXIT_X86_RDMSR: an RDMSR the MSR filter sent to user space. Set `data`, or
    /// `error` = 1 to inject #GP.
    RdMsr {
        /// MSR index.
        index: u32,
        /// The value the guest reads.
        data: &'a mut u64,
        /// Non-zero: #GP.
        error: &'a mut u8,
    },
    /// KVM_EXIT_X86_WRMSR: a WRMSR the MSR filter sent to user space.
    WrMsr {
        /// MSR index.
        index: u32,
        /// The value written.
        value: u64,
        /// Non-zero: #GP.
        error: &'a mut u8,
    },
    /// KVM_EXIT_IRQ_WINDOW_OPEN: the guest can take the interrupt the VMM asked to inject.
    IrqWindowOpen,
    /// KVM_RUN returned EINTR or KVM_EXIT_INTR: a signal (the watchdog's kick) pulled the
    /// vCPU out.
    Interrupted,
    /// KVM_EXIT_SHUTDOWN: triple fault.
    Shutdown,
    /// KVM_EXIT_FAIL_ENTRY: VM entry failed with a hardware reason.
    FailEntry {
        /// `hardware_entry_failure_reason`.
        reason: u64,
    },
    /// KVM_EXIT_INTERNAL_ERROR (emulation failure and the like).
    InternalError {
        /// `internal.suberror` (1 = KVM_INTERNAL_ERROR_EMULATION).
        suberror: u32,
        /// `internal.data[..ndata]`.
        data: Vec<u64>,
    },
    /// Any exit this machine does not handle, described.
    Other(String),
}

impl Exit<'_> {
    /// Short name for statistics and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::IoIn { .. } | Self::IoOut { .. } => "io",
            Self::MmioRead { .. } | Self::MmioWrite { .. } => "mmio",
            Self::Hlt => "hlt",
            Self::Debug { .. } => "debug",
            Self::RdMsr { .. } | Self::WrMsr { .. } => "msr",
            Self::IrqWindowOpen => "irq-window",
            Self::Interrupted => "interrupted",
            Self::Shutdown => "shutdown",
            Self::FailEntry { .. } => "fail-entry",
            Self::InternalError { .. } => "internal-error",
            Self::Other(_) => "other",
        }
    }
}

/// A write KVM queued in its coalesced ring instead of exiting (KVM_REGISTER_COALESCED_MMIO,
/// Linux Documentation/virt/kvm/api.rst), decoded from a `struct kvm_coalesced_mmio`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoalescedWrite {
    /// Port or MMIO (the entry's `pio`).
    pub space: Space,
    /// Port or guest-physical address.
    pub addr: u64,
    /// Bytes written (1..=8).
    pub len: usize,
    /// The bytes, `data[..len]` significant.
    pub data: [u8; 8],
}

impl CoalescedWrite {
    /// A one-byte port write (`out dx, al` to a coalesced port).
    pub fn pio_byte(port: u16, byte: u8) -> Self {
        let mut data = [0; 8];
        data[0] = byte;
        Self {
            space: Space::Pio,
            addr: u64::from(port),
            len: 1,
            data,
        }
    }

    /// The bytes written.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len.min(self.data.len())]
    }
}

/// The vCPU state the machine sees at an exit.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuState {
    /// General-purpose registers, RIP and RFLAGS (kvm_run sync regs).
    pub regs: kvm_regs,
    /// RFLAGS.IF at the exit (`kvm_run.if_flag`).
    pub if_flag: bool,
}

impl CpuState {
    /// A state with only RIP and IF set (tests, synthetic exits).
    pub fn at(rip: u64, if_flag: bool) -> Self {
        Self {
            regs: kvm_regs {
                rip,
                rflags: 0x2 | if if_flag { 1 << 9 } else { 0 },
                ..Default::default()
            },
            if_flag,
        }
    }

    /// Guest RIP.
    pub fn rip(&self) -> u64 {
        self.regs.rip
    }
}

/// What the run loop does after an exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Re-enter the guest.
    Continue,
    /// The vCPU halted with an interrupt due at this time: wait, then ask again with
    /// [`Machine::resume_halt`].
    WaitUntil(Instant),
    /// The run is over.
    Stop(ExitReason),
}

/// What to do about interrupts before the next KVM_RUN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptStep {
    /// Nothing pending.
    Idle,
    /// Inject this vector with KVM_INTERRUPT (the guest is ready for it).
    Inject(u8),
    /// Something is pending but the guest cannot take it yet: set
    /// `request_interrupt_window` so KVM exits when it can.
    RequestWindow,
}

/// The devices of the legacy platform, named on the buses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceId {
    /// A device on one bus, behind the [`Device`] trait.
    Plain(Plain),
    /// The test device, on both buses (each access says which).
    Testdev,
    /// The memslot scenario: its control port (PIO) and its emulated page (MMIO).
    Memslot,
}

/// The devices behind the [`Device`] trait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plain {
    Com1,
    ExitPort,
    Lapic,
}

/// The legacy platform: COM1, the exit port, a user-space local APIC, the cvmprobe test
/// device; everything else unassigned. It holds the guest's memory too, for exit handlers
/// that read or write it.
pub struct Machine {
    mem: GuestMemoryMmap,
    pio: Bus<DeviceId>,
    mmio: Bus<DeviceId>,
    com1: Com1,
    exit_port: ExitPort,
    lapic: Lapic,
    testdev: Testdev,
    memslot: Memslot,
    unassigned: u64,
    /// Exits handled so far.
    exits: u64,
    /// The run's ioctls and counted instructions, as the run loop last told them.
    counts: RunCounts,
    /// Coalesced writes replayed so far (not exits).
    coalesced: u64,
}

/// How the guest reaches its local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicAccess {
    /// The xAPIC MMIO page at [`LAPIC_BASE`] (legacy and SEV-ES; on SEV-ES the accesses go
    /// through the GHCB). The x2APIC MSRs reach the same registers if asked.
    Xapic,
    /// x2APIC MSRs only, no MMIO page: a TD's APIC is in x2APIC mode and the TDX module does
    /// not let it leave (the xAPIC page is not available to a TD).
    X2apicOnly,
}

impl Machine {
    /// The legacy platform's devices at their standard places, for a guest with memory `mem`
    /// (a cheap handle on the same mapping the VM uses); the test device answers with `seed`.
    pub fn legacy(mem: GuestMemoryMmap, seed: u64) -> Self {
        Self::new(mem, seed, ApicAccess::Xapic)
    }

    /// [`Machine::legacy`] with the APIC reached as `apic` says.
    pub fn new(mem: GuestMemoryMmap, seed: u64, apic: ApicAccess) -> Self {
        const DISJOINT: &str = "the legacy platform's device ranges are disjoint";
        let mut pio = Bus::default();
        pio.insert(
            u64::from(COM1_BASE),
            u64::from(COM1_LEN),
            DeviceId::Plain(Plain::Com1),
        )
        .expect(DISJOINT);
        pio.insert(
            u64::from(EXIT_PORT),
            u64::from(EXIT_PORT_LEN),
            DeviceId::Plain(Plain::ExitPort),
        )
        .expect(DISJOINT);
        pio.insert(
            u64::from(testdev::PIO_BASE),
            u64::from(testdev::PIO_LEN),
            DeviceId::Testdev,
        )
        .expect(DISJOINT);
        pio.insert(
            u64::from(protocol::memslot::CONTROL_PORT),
            4,
            DeviceId::Memslot,
        )
        .expect(DISJOINT);
        let mut mmio = Bus::default();
        if apic == ApicAccess::Xapic {
            mmio.insert(LAPIC_BASE, LAPIC_LEN, DeviceId::Plain(Plain::Lapic))
                .expect(DISJOINT);
        }
        mmio.insert(testdev::MMIO_BASE, testdev::MMIO_LEN, DeviceId::Testdev)
            .expect(DISJOINT);
        mmio.insert(
            protocol::memslot::GPA,
            protocol::memslot::SIZE,
            DeviceId::Memslot,
        )
        .expect(DISJOINT);
        Self {
            mem,
            pio,
            mmio,
            com1: Com1::default(),
            exit_port: ExitPort,
            lapic: Lapic::default(),
            testdev: Testdev::new(seed),
            memslot: Memslot::new(seed),
            unassigned: 0,
            exits: 0,
            counts: RunCounts::default(),
            coalesced: 0,
        }
    }

    fn device(&mut self, id: Plain) -> &mut dyn Device {
        match id {
            Plain::Com1 => &mut self.com1,
            Plain::ExitPort => &mut self.exit_port,
            Plain::Lapic => &mut self.lapic,
        }
    }

    fn bus(&self, space: Space) -> &Bus<DeviceId> {
        match space {
            Space::Pio => &self.pio,
            Space::Mmio => &self.mmio,
        }
    }

    /// Handles one exit. `cpu` is the register snapshot taken at the exit, `now` its time.
    pub fn handle(&mut self, exit: Exit<'_>, cpu: &CpuState, now: Instant) -> Control {
        self.exits += 1;
        let ctx = AccessCtx {
            rip: cpu.rip(),
            now,
            exits: self.exits,
            counts: self.counts,
        };
        let rip = cpu.rip();
        match exit {
            Exit::IoIn { port, size, data } => {
                for el in data.chunks_mut(size.max(1)) {
                    self.read(Space::Pio, u64::from(port), el, &ctx);
                }
                Control::Continue
            }
            Exit::IoOut { port, size, data } => {
                for el in data.chunks(size.max(1)) {
                    let c = self.write(Space::Pio, u64::from(port), el, &ctx);
                    if c != Control::Continue {
                        return c;
                    }
                }
                Control::Continue
            }
            Exit::MmioRead { addr, data } => {
                self.read(Space::Mmio, addr, data, &ctx);
                Control::Continue
            }
            Exit::MmioWrite { addr, data } => self.write(Space::Mmio, addr, data, &ctx),
            Exit::Hlt => self.resume_halt(cpu, now),
            Exit::IrqWindowOpen | Exit::Interrupted => Control::Continue,
            Exit::Shutdown => Control::Stop(ExitReason::Shutdown { rip }),
            Exit::FailEntry { reason } => Control::Stop(ExitReason::FailEntry { reason, rip }),
            Exit::InternalError { suberror, data } => Control::Stop(ExitReason::InternalError {
                suberror,
                rip,
                data,
            }),
            Exit::Other(exit) => Control::Stop(ExitReason::Unexpected { exit, rip }),
            // Only the simulated platforms ask KVM for these, and they handle them before
            // the machine sees an exit.
            Exit::Debug { .. } => Control::Stop(ExitReason::Unexpected {
                exit: "KVM_EXIT_DEBUG (no breakpoint was set)".into(),
                rip,
            }),
            Exit::RdMsr { index, .. } => Control::Stop(ExitReason::Unexpected {
                exit: format!("KVM_EXIT_X86_RDMSR of {index:#x} (no MSR filter was set)"),
                rip,
            }),
            Exit::WrMsr { index, .. } => Control::Stop(ExitReason::Unexpected {
                exit: format!("KVM_EXIT_X86_WRMSR of {index:#x} (no MSR filter was set)"),
                rip,
            }),
        }
    }

    /// Replays, in order, writes that KVM coalesced during the KVM_RUN that just returned.
    ///
    /// They all happened before whatever ended that KVM_RUN (an exit, a signal, an error), so
    /// call this first, before [`Machine::handle`]: devices then see the guest's accesses in
    /// program order, exactly as if each write had exited. Stops at the first write whose
    /// device ends the run (its [`Control::Stop`]; the exit is then not to be handled), and
    /// otherwise returns [`Control::Continue`].
    ///
    /// A coalesced write is not an exit: it does not count in [`Machine::exits`], and the
    /// [`AccessCtx`] its device sees carries the exit count and RIP of the exit that follows
    /// it (the instruction that made it is not known).
    pub fn replay_coalesced(
        &mut self,
        writes: impl IntoIterator<Item = CoalescedWrite>,
        cpu: &CpuState,
        now: Instant,
    ) -> Control {
        let ctx = AccessCtx {
            rip: cpu.rip(),
            now,
            exits: self.exits,
            counts: self.counts,
        };
        for w in writes {
            self.coalesced += 1;
            let c = self.write(w.space, w.addr, w.bytes(), &ctx);
            if c != Control::Continue {
                return c;
            }
        }
        Control::Continue
    }

    /// Decides what a halted vCPU does at `now`: resume (an interrupt is deliverable), wait
    /// for the timer, or stop because nothing can ever wake it.
    pub fn resume_halt(&mut self, cpu: &CpuState, now: Instant) -> Control {
        self.lapic.poll(now);
        if !cpu.if_flag {
            // Only NMI or SMI would wake it, and nothing here raises either.
            return Control::Stop(ExitReason::HaltedForever { rip: cpu.rip() });
        }
        if self.lapic.pending_interrupt().is_some() {
            return Control::Continue;
        }
        match self.lapic.next_interrupt_at() {
            Some(t) => Control::WaitUntil(t),
            None => Control::Stop(ExitReason::HaltedForever { rip: cpu.rip() }),
        }
    }

    /// Runs the timers up to `now` and says how to deliver what is pending. `ready` is
    /// `kvm_run.ready_for_interrupt_injection` from the last exit (IF set, no interrupt
    /// shadow, nothing else queued). An injected vector counts as acknowledged.
    pub fn interrupt_step(&mut self, ready: bool, now: Instant) -> InterruptStep {
        self.lapic.poll(now);
        match self.lapic.pending_interrupt() {
            None => InterruptStep::Idle,
            Some(v) if ready => {
                self.lapic.acknowledge();
                InterruptStep::Inject(v)
            }
            Some(_) => InterruptStep::RequestWindow,
        }
    }

    fn read(&mut self, space: Space, addr: u64, data: &mut [u8], ctx: &AccessCtx) {
        match self.bus(space).resolve(addr, data.len()) {
            Some((DeviceId::Testdev, offset)) => self.testdev.read(space, offset, data, ctx),
            Some((DeviceId::Memslot, offset)) => match space {
                Space::Pio => self.memslot.control_read(data),
                Space::Mmio => self.memslot.page_read(offset, data),
            },
            Some((DeviceId::Plain(id), offset)) => self.device(id).read(offset, data, ctx),
            None => {
                self.unassigned += 1;
                fill_unassigned(data);
            }
        }
    }

    fn write(&mut self, space: Space, addr: u64, data: &[u8], ctx: &AccessCtx) -> Control {
        let Some((id, offset)) = self.bus(space).resolve(addr, data.len()) else {
            self.unassigned += 1;
            return Control::Continue;
        };
        let id = match id {
            DeviceId::Plain(id) => id,
            DeviceId::Testdev => {
                self.testdev.write(space, offset, data, ctx);
                return Control::Continue;
            }
            DeviceId::Memslot => {
                let case = self.testdev.current_case_name();
                match space {
                    Space::Pio => self.memslot.control_write(data, &case),
                    Space::Mmio => self.memslot.page_write(offset, data, &case),
                }
                return Control::Continue;
            }
        };
        let dev = self.device(id);
        match dev.write(offset, data, ctx) {
            Effect::None => Control::Continue,
            Effect::GuestExit(v) => Control::Stop(ExitReason::GuestExit(v)),
            Effect::Failed(error) => Control::Stop(ExitReason::DeviceError {
                device: dev.name(),
                error,
                rip: ctx.rip,
            }),
        }
    }

    /// RDMSR of x2APIC register `msr` (0x800-0x8FF) at `now`; `Err` is a #GP.
    pub fn x2apic_read(&mut self, msr: u32, now: Instant) -> Result<u64, X2apicFault> {
        self.lapic.poll(now);
        self.lapic.read_msr(msr, now)
    }

    /// WRMSR of x2APIC register `msr` at `now`; `Err` is a #GP.
    pub fn x2apic_write(&mut self, msr: u32, value: u64, now: Instant) -> Result<(), X2apicFault> {
        self.lapic.poll(now);
        self.lapic.write_msr(msr, value, now)
    }

    /// What the run cost so far besides exits (the run loop tells it after each KVM_RUN):
    /// device accesses carry it ([`AccessCtx::counts`]) for the bench samples.
    pub fn set_counts(&mut self, counts: RunCounts) {
        self.counts = counts;
    }

    /// Counts one exit that a platform handler served without [`Machine::handle`] (a
    /// simulated platform's TDCALL or VMGEXIT), so bench samples count it.
    pub fn count_exit(&mut self) {
        self.exits += 1;
    }

    /// A read a simulated platform's host model asked for (KVM would have exited to user
    /// space with it): the device at `addr` fills `data`, unassigned space reads all ones.
    pub fn host_read(
        &mut self,
        space: Space,
        addr: u64,
        data: &mut [u8],
        cpu: &CpuState,
        now: Instant,
    ) {
        let ctx = AccessCtx {
            rip: cpu.rip(),
            now,
            exits: self.exits,
            counts: self.counts,
        };
        self.read(space, addr, data, &ctx);
    }

    /// A write a simulated platform's host model asked for; [`Control::Stop`] if it ends
    /// the run (the exit port, a device error).
    pub fn host_write(
        &mut self,
        space: Space,
        addr: u64,
        data: &[u8],
        cpu: &CpuState,
        now: Instant,
    ) -> Control {
        let ctx = AccessCtx {
            rip: cpu.rip(),
            now,
            exits: self.exits,
            counts: self.counts,
        };
        self.write(space, addr, data, &ctx)
    }

    /// The memslot request the guest made with the last exit, if any.
    pub fn take_memslot_request(&mut self) -> Option<memslot_dev::Request> {
        self.memslot.take_request()
    }

    /// The memslot scenario's device (cycles, problems).
    pub fn memslot(&mut self) -> &mut Memslot {
        &mut self.memslot
    }

    /// The guest's memory.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Serial output written since the last call.
    pub fn take_serial_output(&mut self) -> &[u8] {
        self.com1.take_new_output()
    }

    /// The test device (its log so far, its seed).
    pub fn testdev(&self) -> &Testdev {
        &self.testdev
    }

    /// Ends the test device's run: closes the open case and hands over its log, case checks,
    /// problems and bench samples.
    pub fn finish_testdev(&mut self) -> TestdevReport {
        self.testdev.finish()
    }

    /// Exits handled so far.
    pub fn exits(&self) -> u64 {
        self.exits
    }

    /// Accesses no device claimed so far.
    pub fn unassigned_accesses(&self) -> u64 {
        self.unassigned
    }

    /// Coalesced writes replayed so far ([`Machine::replay_coalesced`]): for COM1's data
    /// port, one per byte that reached the UART without an exit.
    pub fn coalesced_writes(&self) -> u64 {
        self.coalesced
    }

    /// Consumes the machine, returning all serial output.
    pub fn into_serial(self) -> Vec<u8> {
        self.com1.into_output()
    }
}

impl ExitStats {
    /// Counts one KVM exit.
    pub fn record(&mut self, exit: &Exit<'_>) {
        self.total += 1;
        match exit {
            Exit::IoIn { .. } | Exit::IoOut { .. } => self.io += 1,
            Exit::MmioRead { .. } | Exit::MmioWrite { .. } => self.mmio += 1,
            Exit::Hlt => self.hlt += 1,
            Exit::Debug { .. } => self.debug += 1,
            Exit::RdMsr { .. } | Exit::WrMsr { .. } => self.msr += 1,
            Exit::IrqWindowOpen => self.irq_window += 1,
            Exit::Interrupted => self.interrupted += 1,
            _ => self.other += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::lapic::{
        APIC_EOI, APIC_LVT_TIMER, APIC_SVR, APIC_TIMER_DIVIDE, APIC_TIMER_INITIAL, SVR_ENABLE,
    };
    use std::time::Duration;

    const RIP: u64 = 0x10_2345;

    fn legacy() -> Machine {
        let mem = GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 0x1000)]).unwrap();
        Machine::legacy(mem, 0x5eed)
    }

    fn cpu() -> CpuState {
        CpuState::at(RIP, true)
    }

    fn out(m: &mut Machine, port: u16, data: &[u8]) -> Control {
        m.handle(
            Exit::IoOut {
                port,
                size: data.len(),
                data,
            },
            &cpu(),
            Instant::now(),
        )
    }

    fn inb<const N: usize>(m: &mut Machine, port: u16) -> [u8; N] {
        let mut d = [0u8; N];
        let c = m.handle(
            Exit::IoIn {
                port,
                size: N,
                data: &mut d,
            },
            &cpu(),
            Instant::now(),
        );
        assert_eq!(c, Control::Continue);
        d
    }

    fn mmio_w32(m: &mut Machine, addr: u64, v: u32, now: Instant) -> Control {
        m.handle(
            Exit::MmioWrite {
                addr,
                data: &v.to_le_bytes(),
            },
            &cpu(),
            now,
        )
    }

    #[test]
    fn an_x2apic_only_machine_has_no_xapic_page() {
        use protocol::apic::{reg, x2apic_msr};
        let mem = GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 0x1000)]).unwrap();
        let now = Instant::now();
        let version = |m: &mut Machine| {
            let mut d = [0u8; 4];
            m.host_read(Space::Mmio, LAPIC_BASE + reg::VERSION, &mut d, &cpu(), now);
            u32::from_le_bytes(d)
        };
        let mut td = Machine::new(mem.clone(), 1, ApicAccess::X2apicOnly);
        assert_eq!(
            version(&mut td),
            u32::MAX,
            "unassigned: no xAPIC page in a TD"
        );
        assert_eq!(
            td.x2apic_read(x2apic_msr(reg::VERSION), now),
            Ok(0x0005_0014)
        );
        let mut vm = Machine::legacy(mem, 1);
        assert_eq!(version(&mut vm), 0x0005_0014);
        // The timer armed through x2APIC MSRs fires like the xAPIC one.
        td.x2apic_write(x2apic_msr(reg::SVR), 0x1ff, now).unwrap();
        td.x2apic_write(x2apic_msr(reg::LVT_TIMER), 0x20, now)
            .unwrap();
        td.x2apic_write(x2apic_msr(reg::TIMER_INITIAL), 10, now)
            .unwrap();
        assert_eq!(
            td.interrupt_step(true, now + Duration::from_millis(1)),
            InterruptStep::Inject(0x20)
        );
    }

    #[test]
    fn serial_bytes_reach_the_output() {
        let mut m = legacy();
        for &b in b"KTAP" {
            assert_eq!(out(&mut m, COM1_BASE, &[b]), Control::Continue);
        }
        assert_eq!(m.take_serial_output(), b"KTAP");
        assert_eq!(m.take_serial_output(), b"");
        // rep outsb: one exit, several accesses.
        let c = m.handle(
            Exit::IoOut {
                port: COM1_BASE,
                size: 1,
                data: b"ok\n",
            },
            &cpu(),
            Instant::now(),
        );
        assert_eq!(c, Control::Continue);
        assert_eq!(m.into_serial(), b"KTAPok\n");
    }

    #[test]
    fn coalesced_writes_replay_in_order_and_stop_at_a_verdict() {
        let mut m = legacy();
        let verdict = CoalescedWrite {
            space: Space::Pio,
            addr: u64::from(EXIT_PORT),
            len: 4,
            data: [2, 0, 0, 0, 0, 0, 0, 0],
        };
        let writes = [
            CoalescedWrite::pio_byte(COM1_BASE, b'o'),
            CoalescedWrite::pio_byte(0x80, 0),
            CoalescedWrite::pio_byte(COM1_BASE, b'k'),
            verdict,
            CoalescedWrite::pio_byte(COM1_BASE, b'!'),
        ];
        assert_eq!(
            m.replay_coalesced(writes, &cpu(), Instant::now()),
            Control::Stop(ExitReason::GuestExit(2))
        );
        assert_eq!(m.take_serial_output(), b"ok", "nothing after the verdict");
        assert_eq!(m.coalesced_writes(), 4);
        assert_eq!(m.unassigned_accesses(), 1);
        assert_eq!(m.exits(), 0, "coalesced writes are not exits");
    }

    #[test]
    fn coalesced_data_port_write_follows_dlab() {
        const LCR: u16 = COM1_BASE + 3;
        let mut m = legacy();
        let replay = |m: &mut Machine, byte| {
            m.replay_coalesced(
                [CoalescedWrite::pio_byte(COM1_BASE, byte)],
                &cpu(),
                Instant::now(),
            )
        };
        assert_eq!(out(&mut m, LCR, &[0x80]), Control::Continue);
        assert_eq!(replay(&mut m, 0x03), Control::Continue);
        assert_eq!(inb::<1>(&mut m, COM1_BASE), [0x03], "DLL took the write");
        assert_eq!(out(&mut m, LCR, &[0x03]), Control::Continue);
        assert_eq!(replay(&mut m, b'Z'), Control::Continue);
        assert_eq!(m.coalesced_writes(), 2);
        assert_eq!(m.into_serial(), b"Z");
    }

    #[test]
    fn exit_port_ends_the_run_with_the_value() {
        let mut m = legacy();
        assert_eq!(
            out(&mut m, EXIT_PORT, &0u32.to_le_bytes()),
            Control::Stop(ExitReason::GuestExit(0))
        );
        assert_eq!(
            out(&mut m, EXIT_PORT, &2u32.to_le_bytes()),
            Control::Stop(ExitReason::GuestExit(2))
        );
    }

    #[test]
    fn unassigned_ports_read_all_ones_and_ignore_writes() {
        let mut m = legacy();
        // The guest masks the PIC and probes pc-testdev and PCI config space.
        for (port, v) in [
            (0x21u16, 0xffu32),
            (0xa1, 0xff),
            (0xe0, 0x5a17_c3e1),
            (0xcf8, 0x8000_0000),
        ] {
            assert_eq!(out(&mut m, port, &v.to_le_bytes()), Control::Continue);
        }
        assert_eq!(inb::<1>(&mut m, 0x0f00), [0xff]);
        assert_eq!(inb::<2>(&mut m, 0x0f00), [0xff; 2]);
        assert_eq!(
            inb::<4>(&mut m, 0xe0),
            [0xff; 4],
            "the probe's write did not stick"
        );
        assert_eq!(inb::<4>(&mut m, 0xcfc), [0xff; 4]);
        assert_eq!(m.unassigned_accesses(), 8);
    }

    #[test]
    fn unassigned_mmio_reads_all_ones() {
        let mut m = legacy();
        for len in [1usize, 2, 4, 8] {
            let mut d = vec![0u8; len];
            let c = m.handle(
                Exit::MmioRead {
                    addr: 0xff00_0010,
                    data: &mut d,
                },
                &cpu(),
                Instant::now(),
            );
            assert_eq!(c, Control::Continue);
            assert!(d.iter().all(|&b| b == 0xff), "{len}: {d:x?}");
        }
        assert_eq!(
            mmio_w32(&mut m, 0xff00_0010, 1, Instant::now()),
            Control::Continue
        );
    }

    #[test]
    fn failure_exits_stop_with_the_rip() {
        let mut m = legacy();
        let now = Instant::now();
        assert_eq!(
            m.handle(Exit::Shutdown, &cpu(), now),
            Control::Stop(ExitReason::Shutdown { rip: RIP })
        );
        assert_eq!(
            m.handle(Exit::FailEntry { reason: 0x80000021 }, &cpu(), now),
            Control::Stop(ExitReason::FailEntry {
                reason: 0x80000021,
                rip: RIP
            })
        );
        assert_eq!(
            m.handle(
                Exit::InternalError {
                    suberror: 1,
                    data: vec![0xcc]
                },
                &cpu(),
                now
            ),
            Control::Stop(ExitReason::InternalError {
                suberror: 1,
                rip: RIP,
                data: vec![0xcc]
            })
        );
        assert_eq!(
            m.handle(Exit::Other("KVM_EXIT_DEBUG".into()), &cpu(), now),
            Control::Stop(ExitReason::Unexpected {
                exit: "KVM_EXIT_DEBUG".into(),
                rip: RIP
            })
        );
        assert_eq!(m.handle(Exit::Interrupted, &cpu(), now), Control::Continue);
        assert_eq!(
            m.handle(Exit::IrqWindowOpen, &cpu(), now),
            Control::Continue
        );
    }

    #[test]
    fn halt_with_nothing_armed_is_forever() {
        let mut m = legacy();
        let now = Instant::now();
        for if_flag in [false, true] {
            assert_eq!(
                m.handle(Exit::Hlt, &CpuState::at(RIP, if_flag), now),
                Control::Stop(ExitReason::HaltedForever { rip: RIP })
            );
        }
    }

    /// Programs the APIC the way guest/src/timer.rs does.
    fn arm(m: &mut Machine, vector: u32, ticks: u32, now: Instant) {
        for (reg, v) in [
            (APIC_SVR, SVR_ENABLE | 0xff),
            (APIC_TIMER_DIVIDE, 0xb),
            (APIC_LVT_TIMER, vector),
            (APIC_TIMER_INITIAL, ticks),
        ] {
            assert_eq!(mmio_w32(m, LAPIC_BASE + reg, v, now), Control::Continue);
        }
    }

    #[test]
    fn halt_waits_for_the_apic_timer_then_injects() {
        let mut m = legacy();
        let t0 = Instant::now();
        arm(&mut m, 0x20, 50_000, t0);
        let due = t0 + Duration::from_micros(50);
        assert_eq!(m.interrupt_step(true, t0), InterruptStep::Idle);
        assert_eq!(m.handle(Exit::Hlt, &cpu(), t0), Control::WaitUntil(due));
        assert_eq!(m.resume_halt(&cpu(), due), Control::Continue);
        assert_eq!(m.interrupt_step(true, due), InterruptStep::Inject(0x20));
        assert_eq!(
            m.interrupt_step(true, due),
            InterruptStep::Idle,
            "delivered once"
        );
        // No EOI yet: the next HLT has nothing that could wake it.
        assert_eq!(
            m.handle(Exit::Hlt, &cpu(), due),
            Control::Stop(ExitReason::HaltedForever { rip: RIP })
        );
        mmio_w32(&mut m, LAPIC_BASE + APIC_EOI, 0, due);
        arm(&mut m, 0x20, 1000, due);
        assert_eq!(
            m.handle(Exit::Hlt, &cpu(), due),
            Control::WaitUntil(due + Duration::from_micros(1))
        );
    }

    #[test]
    fn halt_with_interrupts_off_is_forever_even_when_armed() {
        let mut m = legacy();
        let t0 = Instant::now();
        arm(&mut m, 0x20, 10, t0);
        assert_eq!(
            m.handle(Exit::Hlt, &CpuState::at(RIP, false), t0),
            Control::Stop(ExitReason::HaltedForever { rip: RIP })
        );
    }

    #[test]
    fn pending_interrupt_waits_for_a_window() {
        let mut m = legacy();
        let t0 = Instant::now();
        arm(&mut m, 0x21, 10, t0);
        let later = t0 + Duration::from_millis(1);
        assert_eq!(m.interrupt_step(false, later), InterruptStep::RequestWindow);
        assert_eq!(
            m.handle(Exit::IrqWindowOpen, &cpu(), later),
            Control::Continue
        );
        assert_eq!(m.interrupt_step(true, later), InterruptStep::Inject(0x21));
    }

    #[test]
    fn testdev_answers_on_both_buses() {
        use protocol::testdev::{ID_VALUE, MMIO_BASE, PIO_BASE, mmio, pio};
        let mut m = legacy();
        assert_eq!(inb::<4>(&mut m, PIO_BASE + pio::ID), ID_VALUE.to_le_bytes());
        let mut d = [0u8; 8];
        m.handle(
            Exit::MmioRead {
                addr: MMIO_BASE + mmio::SEED,
                data: &mut d,
            },
            &cpu(),
            Instant::now(),
        );
        assert_eq!(u64::from_le_bytes(d), 0x5eed);
        assert_eq!(m.testdev().seed(), 0x5eed);
        // `rep outsw` to DATA: one exit, two accesses, logged one by one.
        let c = m.handle(
            Exit::IoOut {
                port: PIO_BASE + pio::DATA,
                size: 2,
                data: &[0x11, 0x22, 0x33, 0x44],
            },
            &cpu(),
            Instant::now(),
        );
        assert_eq!(c, Control::Continue);
        assert_eq!(inb::<4>(&mut m, PIO_BASE + pio::DATA), [0x33, 0x44, 0, 0]);
        let log = m.testdev().log();
        assert_eq!(log.len(), 5);
        assert!(log.iter().all(|a| a.rip == RIP));
        // An access straddling the window's end reaches no device.
        let mut d = [0u8; 8];
        m.handle(
            Exit::MmioRead {
                addr: MMIO_BASE + protocol::testdev::MMIO_LEN - 4,
                data: &mut d,
            },
            &cpu(),
            Instant::now(),
        );
        assert_eq!(d, [0xff; 8]);
        assert_eq!(m.unassigned_accesses(), 1);
        assert_eq!(m.testdev().log().len(), 5);
    }

    #[test]
    fn bench_samples_count_the_exits_between_markers() {
        use protocol::testdev::{BenchId, PIO_BASE, bench_marker, pio};
        let mut m = legacy();
        let port = PIO_BASE + pio::BENCH;
        out(
            &mut m,
            port,
            &bench_marker(BenchId::RawPioRead, false).to_le_bytes(),
        );
        for _ in 0..5 {
            inb::<4>(&mut m, PIO_BASE + pio::DATA);
        }
        m.handle(Exit::IrqWindowOpen, &cpu(), Instant::now());
        out(
            &mut m,
            port,
            &bench_marker(BenchId::RawPioRead, true).to_le_bytes(),
        );
        assert_eq!(m.exits(), 8);
        let r = m.finish_testdev();
        assert_eq!(r.bench.len(), 1);
        assert_eq!((r.bench[0].id, r.bench[0].exits), (BenchId::RawPioRead, 6));
        assert!(r.problems.is_empty());
    }

    #[test]
    fn stats_count_by_kind() {
        let mut s = ExitStats::default();
        let mut d = [0u8; 1];
        s.record(&Exit::IoIn {
            port: 0x3fd,
            size: 1,
            data: &mut d,
        });
        s.record(&Exit::MmioWrite {
            addr: LAPIC_BASE,
            data: &[0; 4],
        });
        s.record(&Exit::Hlt);
        s.record(&Exit::Shutdown);
        assert_eq!((s.io, s.mmio, s.hlt, s.other, s.total), (1, 1, 1, 1, 4));
    }
}
