//! The run loop: one KVM_RUN after another until the machine, the platform or the watchdog
//! ends the run. Each turn: deliver a due interrupt, KVM_RUN, replay the coalesced COM1
//! writes, route the exit ([`super::exits`]) and hand it to whoever serves it, forward the
//! guest's memslot requests; before each KVM_RUN, set KVM's single-stepping to what the
//! memslot scenario, the hostile host's GHCB watch and an instruction count need.

use super::exits::{self, Routed};
use super::{InstructionCounts, Vcpu, VcpuCtl, halt, rip};
use crate::machine::{Control, Exit, InterruptStep, Machine};
use crate::memslot::Scenario;
use crate::platform::Host;
use crate::{ExitReason, ExitStats, VmmError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Runs the vCPU until the machine stops it or `stop` is set (then [`ExitReason::Timeout`]).
/// Serial output goes to `sink` as it appears. `memslot` carries the memslot scenario
/// (its host thread, if the run has one, and its single-step bookkeeping).
pub fn run(
    vcpu: &mut Vcpu,
    machine: &mut Machine,
    host: &mut Host,
    memslot: &mut Scenario,
    stats: &mut ExitStats,
    stop: &AtomicBool,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<ExitReason, VmmError> {
    // What the platform glue and the memslot scenario may do to the vCPU at this exit.
    macro_rules! ctl {
        () => {
            VcpuCtl::new(
                super::VcpuParts {
                    fd: &mut vcpu.fd,
                    view: &vcpu.view,
                    cpuid: &vcpu.cpuid,
                    sregs_synced: vcpu.sregs_synced,
                },
                memslot.stepping(),
            )
        };
    }
    // Whether KVM single-steps the guest now (KVM_SET_GUEST_DEBUG with
    // KVM_GUESTDBG_SINGLESTEP); `Vcpu::create` armed the breakpoints without it.
    let mut single_step = false;
    // SAFETY: `immediate_exit` points into `vcpu.view`'s mapping, which stays borrowed (and so
    // alive) for the guard's lifetime; no Rust reference to that byte is ever made (the loop
    // resets it through kvm-ioctls' separate mapping of the same page).
    let _kick = unsafe { crate::kick::KickTarget::arm(&vcpu.view, vcpu.view.immediate_exit()) };
    // When the last KVM_RUN returned: the VMM's own time runs from there to the next one.
    let mut returned: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(ExitReason::Timeout {
                rip: rip(&vcpu.fd)?,
            });
        }
        // Single-step while the memslot page may be MMIO under a simulated platform (a
        // store's MMIO exit reports the RIP after the store, and the #VE/#VC must point at
        // the store itself), while the hostile host watches the guest's GHCB reads, and
        // throughout a run that counts instructions (but its uncounted suites).
        let counting = vcpu.instructions.is_some()
            && InstructionCounts::counts(machine.testdev().current_case());
        let want_step = memslot.stepping() || host.watching() || counting;
        if want_step != single_step {
            vcpu.fd
                .set_guest_debug(&crate::platform::guest_debug(host.trap_sites(), want_step))?;
            single_step = want_step;
        }
        // A simulated TD's interrupts are posted: delivered when it leaves TDVMCALL<HLT>
        // (`Host::take_wakeup`).
        let ready = vcpu.view.ready_for_interrupt() || host.take_wakeup();
        let window = match machine.interrupt_step(ready, Instant::now()) {
            InterruptStep::Idle => false,
            InterruptStep::Inject(v) => {
                vcpu.fd.interrupt(v)?;
                stats.irqs_injected += 1;
                false
            }
            InterruptStep::RequestWindow => true,
        };
        vcpu.fd.kvm_run_mut().request_interrupt_window = u8::from(window);

        // The run's counts as of this KVM_RUN (itself included), for the devices' bench
        // samples.
        if let Some(t) = returned {
            vcpu.vmm_ns += t.elapsed().as_nanos() as u64;
        }
        let mut counts = vcpu.counts();
        counts.ioctls.add(super::Ioctl::Run);
        machine.set_counts(counts);
        let result = vcpu.fd.run();
        let now = Instant::now();
        returned = Some(now);
        let cpu = vcpu.view.cpu_state();
        // Writes KVM coalesced during this KVM_RUN came before whatever ended it (an exit, a
        // signal, an error): replay them first, so the devices, the sink and the report see
        // the guest's accesses in its order. The ring fills only inside KVM_RUN, so doing
        // this after every KVM_RUN also leaves it empty at the end of the run, however the
        // run ends.
        let replayed = match vcpu.ring.as_mut() {
            Some(ring) => machine.replay_coalesced(ring.drain(), &cpu, now),
            None => Control::Continue,
        };
        let control = match result {
            Ok(exit) => {
                let exit = exits::decode(exit, &vcpu.view);
                stats.record(&exit);
                let interrupted = matches!(exit, Exit::Interrupted);
                let control = match replayed {
                    Control::Continue => match exits::route(host, exit, &cpu, single_step) {
                        Routed::Machine(exit) => machine.handle(exit, &cpu, now),
                        Routed::Done(control) => control,
                        Routed::Trap => {
                            if let Some(c) = vcpu.instructions.as_mut() {
                                c.traps += 1;
                            }
                            let mut ctl = ctl!();
                            host.trap(&mut ctl, machine, &cpu, stop)?
                        }
                        Routed::Step => {
                            let case = machine.testdev().current_case();
                            if let Some(c) = vcpu.instructions.as_mut()
                                && InstructionCounts::counts(case)
                            {
                                c.step(case, cpu.rip());
                            }
                            memslot.note_step(cpu.rip());
                            if host.watching() {
                                let ctl = ctl!();
                                host.watch_step(&ctl, machine, &cpu)
                            } else {
                                Control::Continue
                            }
                        }
                        Routed::Raw(raw) => {
                            let mut ctl = ctl!();
                            crate::platform::raw::serve(&mut ctl, host, machine, &cpu, raw, now)?
                        }
                        Routed::Convert(access) => {
                            machine.count_exit();
                            let mut ctl = ctl!();
                            memslot.convert(&mut ctl, host, machine.memory(), &cpu, access)?
                        }
                    },
                    stop => stop,
                };
                if interrupted {
                    vcpu.fd.set_kvm_immediate_exit(0);
                }
                control
            }
            Err(e) if e.errno() == libc::EINTR => {
                stats.record(&Exit::Interrupted);
                // A kick (or another signal). Re-arm KVM_RUN; the loop head checks `stop`,
                // which the watchdog sets before it kicks. The machine counts it like any
                // exit (its register snapshot is stale, and unused for this exit).
                let control = match replayed {
                    Control::Continue => machine.handle(Exit::Interrupted, &cpu, now),
                    stop => stop,
                };
                vcpu.fd.set_kvm_immediate_exit(0);
                control
            }
            Err(e) => {
                flush_serial(machine, sink);
                return Err(VmmError::kvm("KVM_RUN")(e));
            }
        };

        flush_serial(machine, sink);

        if let Some(req) = machine.take_memslot_request() {
            memslot.request(req, host.forbids_raw_io());
        }

        match control {
            Control::Continue => {}
            Control::Stop(reason) => return Ok(reason),
            Control::WaitUntil(due) => {
                if let Some(reason) = halt::wait_halted(machine, &cpu, due, stop, &vcpu.fd)? {
                    return Ok(reason);
                }
                // A halted vCPU's wait is not VMM work.
                returned = Some(Instant::now());
            }
        }
    }
}

/// Hands the serial output written since the last call to `sink`.
fn flush_serial(machine: &mut Machine, sink: &mut dyn FnMut(&[u8])) {
    let out = machine.take_serial_output();
    if !out.is_empty() {
        sink(out);
    }
}
