//! Guest microbenchmarks (`cvmprobe.mode=bench`): loops of N accesses timed with the TSC.
//!
//! Each result is a KTAP diagnostic `# bench <name> n=<N> tsc=<cycles>`. Under the built-in
//! VMM each loop is bracketed by writes to the test device's BENCH register, so the host adds
//! its own wall time and exit count per loop. Figures are compared only as ratios in one run.

use crate::io::{mmio_read, mmio_write, pio_read, pio_write};
use crate::ktap;
use crate::tests::{Env, TestDevice};
use core::arch::x86_64::_rdtsc;
use protocol::testdev::{self, BenchId};

/// Iterations per loop.
const N: u64 = 2000;

fn report(id: BenchId, n: u64, cycles: u64) {
    ktap::diag(0)
        .str("bench ")
        .str(id.name())
        .str(" n=")
        .dec(n)
        .str(" tsc=")
        .dec(cycles)
        .emit();
}

fn timed(env: &Env, id: BenchId, f: impl FnOnce()) {
    let markers = matches!(env.device, TestDevice::Cvmprobe { .. });
    let port = testdev::PIO_BASE + testdev::pio::BENCH;
    if markers {
        pio_write::<u32>(port, testdev::bench_marker(id, false));
    }
    // SAFETY: RDTSC only reads the time-stamp counter.
    let t0 = unsafe { _rdtsc() };
    f();
    // SAFETY: as above.
    let t1 = unsafe { _rdtsc() };
    if markers {
        pio_write::<u32>(port, testdev::bench_marker(id, true));
    }
    report(id, N, t1.wrapping_sub(t0));
}

/// Runs the loops against the test device found at boot.
#[optimize(speed)]
pub fn run(env: &Env) {
    ktap::plan(0, 0);
    timed(env, BenchId::EmptyLoop, || {
        for i in 0..N {
            core::hint::black_box(i);
        }
    });
    let Some(port) = env.pio_data_port() else {
        ktap::diag(0)
            .str("bench: no port-IO test device, nothing to measure")
            .emit();
        return;
    };
    if crate::platform::is_legacy() {
        // A raw IN is what the confidential platforms forbid: their floor is the trap.
        timed(env, BenchId::RawPioRead, || {
            crate::platform::legacy::raw_pio_read_loop(port, N)
        });
    } else {
        timed(env, BenchId::TrapFloor, || {
            for _ in 0..N {
                core::hint::black_box(crate::platform::trap_floor());
            }
        });
    }
    timed(env, BenchId::ApiPioRead, || {
        for _ in 0..N {
            core::hint::black_box(pio_read::<u32>(port));
        }
    });
    if let Some(base) = env.mmio_window() {
        timed(env, BenchId::ApiMmioRead, || {
            for _ in 0..N {
                core::hint::black_box(mmio_read::<u32>(base));
            }
        });
        timed(env, BenchId::ApiMmioWrite, || {
            for i in 0..N {
                mmio_write::<u32>(base, i as u32);
            }
        });
    }
}
