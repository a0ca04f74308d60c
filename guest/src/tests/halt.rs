//! `halt`: HLT through the backend returns when a timer interrupt arrives.

use super::{Case, Ctx, Suite};
use crate::arch::trap::irq_count;
use crate::io::halt;
use crate::timer::{self, TIMER_VECTOR};
use protocol::catalog::{self, Need};

pub static SUITE: Suite = Suite {
    spec: &catalog::HALT,
    cases: &[
        Case {
            name: "timer_wakeup",
            run: timer_wakeup,
        },
        Case {
            name: "repeated_wakeups",
            run: repeated_wakeups,
        },
    ],
};

/// Timer delay in APIC bus clocks (KVM and QEMU clock the APIC timer at 1 GHz: ~50 us).
const TICKS: u32 = 50_000;

fn wake_once(ctx: &mut Ctx<'_>) -> bool {
    let before = irq_count(TIMER_VECTOR);
    if let Err(e) = timer::arm_lapic_oneshot(TICKS) {
        // Halting now could wait for an interrupt that never comes.
        ctx.fail("arming the APIC timer failed; not halting");
        let mut l = ctx.diag();
        super::describe_host_error(&mut l, &e);
        l.emit();
        return false;
    }
    halt();
    let n = irq_count(TIMER_VECTOR) - before;
    ctx.check_eq("timer interrupts taken by one HLT", 1u64, n)
}

fn timer_wakeup(ctx: &mut Ctx<'_>) {
    if !timer::lapic_present() {
        ctx.skip(Need::LocalApic);
        return;
    }
    wake_once(ctx);
}

fn repeated_wakeups(ctx: &mut Ctx<'_>) {
    if !timer::lapic_present() {
        ctx.skip(Need::LocalApic);
        return;
    }
    for _ in 0..3 {
        if !wake_once(ctx) {
            return;
        }
    }
}
