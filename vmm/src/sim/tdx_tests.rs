//! Vectors for the TDX model: PROTOCOLS.md's rules, each valid and invalid, and the
//! guest's own request shapes (`guest/src/platform/tdx.rs`).

use super::*;
use crate::sim::{HostRequest, HostResult, MapGpaResult, SimError, Stop, Tamper};
use protocol::tdx::{ExposeMask, TdcallRegs, leaf, status, vmcall};

const SHARED: u64 = 1 << 47;
const MIB2: u64 = 2 << 20;

fn model() -> TdxModel {
    TdxModel::new(TdxConfig::default())
}

fn model_with(f: impl FnOnce(&mut TdxConfig)) -> TdxModel {
    let mut cfg = TdxConfig::default();
    f(&mut cfg);
    TdxModel::new(cfg)
}

/// The registers the guest's `vmcall_raw` loads: everything else 0.
fn call(mask: u64, r10: u64, sub: u64, args: [u64; 4]) -> TdcallRegs {
    TdcallRegs {
        rax: leaf::VP_VMCALL,
        rcx: mask,
        r10,
        r11: sub,
        r12: args[0],
        r13: args[1],
        r14: args[2],
        r15: args[3],
        ..TdcallRegs::default()
    }
}

/// A standard sub-function the way the guest sends it (Linux's mask, R10 = 0).
fn std_call(sub: u64, args: [u64; 4]) -> TdcallRegs {
    call(ExposeMask::LINUX.0, vmcall::STANDARD, sub, args)
}

#[track_caller]
fn done(step: TdxStep) -> TdcallRegs {
    match step {
        TdxStep::Done(r) => r,
        other => panic!("expected Done, got {other:?}"),
    }
}

#[track_caller]
fn host(step: TdxStep) -> HostRequest {
    match step {
        TdxStep::Host(r) => r,
        other => panic!("expected a host request, got {other:?}"),
    }
}

/// A call KVM answers without the VMM: the module status must be success.
#[track_caller]
fn immediate(m: &mut TdxModel, regs: TdcallRegs) -> TdcallRegs {
    let out = done(m.tdcall(&regs));
    assert_eq!(out.rax, tdx::TDX_SUCCESS, "TDX module status");
    out
}

#[track_caller]
fn complete(m: &mut TdxModel, r: HostResult) -> TdcallRegs {
    let out = done(m.complete(r).expect("result fits the request"));
    assert_eq!(out.rax, tdx::TDX_SUCCESS);
    out
}

// ----- Instruction.IO ------------------------------------------------------------------

#[test]
fn io_invalid_sizes() {
    for size in [0, 3, 5, 8, 16, u64::MAX, 0x1_0000_0001] {
        let mut m = model();
        let regs = std_call(vmcall::IO, [size, tdx::DIR_READ, 0x3f8, 0]);
        let out = immediate(&mut m, regs);
        assert_eq!(out.r10, status::INVALID_OPERAND, "size {size}");
        assert_eq!(out.r11, vmcall::IO, "R11 untouched");
        assert!(m.pending_request().is_none());
    }
}

#[test]
fn io_invalid_direction() {
    for dir in [2, u64::MAX, 0x1_0000_0000, 0x1_0000_0001] {
        let mut m = model();
        let out = immediate(&mut m, std_call(vmcall::IO, [1, dir, 0x3f8, 0]));
        assert_eq!(out.r10, status::INVALID_OPERAND, "direction {dir:#x}");
    }
}

#[test]
fn io_read_round_trip() {
    let mut m = model();
    // pio_read::<u8>(0x3f8): [size, DIR_READ, port, 0].
    let regs = std_call(vmcall::IO, [1, tdx::DIR_READ, 0x3f8, 0]);
    assert_eq!(
        host(m.tdcall(&regs)),
        HostRequest::PortRead {
            port: 0x3f8,
            size: 1
        }
    );
    // KVM copies `size` bytes into a zeroed unsigned long.
    let out = complete(&mut m, HostResult::Value(0xabcd));
    assert_eq!(out.r10, status::SUCCESS);
    assert_eq!(out.r11, 0xcd);
    assert_eq!(out.rcx, ExposeMask::LINUX.0);
    assert_eq!(out.r12, 1, "inputs come back as they went");
}

#[test]
fn io_port_is_truncated_to_16_bits() {
    let mut m = model();
    let regs = std_call(vmcall::IO, [4, tdx::DIR_READ, 0x1_0000_00f4, 0]);
    assert_eq!(
        host(m.tdcall(&regs)),
        HostRequest::PortRead {
            port: 0xf4,
            size: 4
        }
    );
    assert_eq!(
        complete(&mut m, HostResult::Value(u64::MAX)).r11,
        0xffff_ffff
    );
}

#[test]
fn io_write_sends_the_low_bytes() {
    let mut m = model();
    let regs = std_call(vmcall::IO, [2, tdx::DIR_WRITE, 0xf4, 0xdead_beef]);
    assert_eq!(
        host(m.tdcall(&regs)),
        HostRequest::PortWrite {
            port: 0xf4,
            size: 2,
            value: 0xbeef
        }
    );
    let out = complete(&mut m, HostResult::Done);
    assert_eq!(out.r10, status::SUCCESS);
    assert_eq!(out.r11, vmcall::IO, "a write leaves R11 alone");
}

// ----- #VE.RequestMMIO -----------------------------------------------------------------

#[test]
fn mmio_invalid_sizes() {
    for size in [0, 3, 5, 16, 0xffff_ffff] {
        let mut m = model();
        let out = immediate(
            &mut m,
            std_call(vmcall::MMIO, [size, tdx::DIR_READ, SHARED | 0xfeb0_0000, 0]),
        );
        assert_eq!(out.r10, status::INVALID_OPERAND, "size {size}");
    }
}

#[test]
fn mmio_size_and_direction_are_32_bit_ints() {
    // tdx_emulate_mmio() reads R12/R13 into `int`s.
    let mut m = model();
    let regs = std_call(
        vmcall::MMIO,
        [0x1_0000_0004, 0x1_0000_0000, SHARED | 0x1000, 0],
    );
    assert_eq!(
        host(m.tdcall(&regs)),
        HostRequest::MmioRead {
            gpa: 0x1000,
            guest_gpa: SHARED | 0x1000,
            size: 4
        }
    );
}

#[test]
fn mmio_invalid_direction() {
    let mut m = model();
    let out = immediate(&mut m, std_call(vmcall::MMIO, [4, 2, SHARED | 0x1000, 0]));
    assert_eq!(out.r10, status::INVALID_OPERAND);
}

#[test]
fn mmio_private_gpa() {
    let mut m = model();
    let out = immediate(&mut m, std_call(vmcall::MMIO, [4, 0, 0xfeb0_0000, 0]));
    assert_eq!(out.r10, status::INVALID_OPERAND);
}

#[test]
fn mmio_range_crossing_the_shared_bit() {
    for (gpa, size) in [
        // Starts private, ends shared.
        (SHARED - 4, 8),
        // Starts shared, runs past 2^48 where bit 47 is clear again.
        (SHARED | (SHARED - 4), 8),
        // Wraps around zero.
        (u64::MAX - 3, 8),
    ] {
        let mut m = model();
        let out = immediate(&mut m, std_call(vmcall::MMIO, [size, 0, gpa, 0]));
        assert_eq!(out.r10, status::INVALID_OPERAND, "gpa {gpa:#x}");
    }
    // The last byte exactly at the end of the shared half is fine.
    let mut m = model();
    let regs = std_call(vmcall::MMIO, [8, 0, SHARED | (SHARED - 8), 0]);
    assert!(matches!(m.tdcall(&regs), TdxStep::Host(_)));
}

#[test]
fn mmio_read_round_trip() {
    let mut m = model();
    // mmio_read::<u32>(gpa): [4, DIR_READ, gpa | shared, 0].
    let regs = std_call(vmcall::MMIO, [4, tdx::DIR_READ, SHARED | 0xfeb0_0010, 0]);
    assert_eq!(
        host(m.tdcall(&regs)),
        HostRequest::MmioRead {
            gpa: 0xfeb0_0010,
            guest_gpa: SHARED | 0xfeb0_0010,
            size: 4
        }
    );
    let out = complete(&mut m, HostResult::Value(0x1_2345_6789));
    assert_eq!(out.r10, status::SUCCESS);
    assert_eq!(out.r11, 0x2345_6789, "KVM copies only `size` bytes");
}

#[test]
fn mmio_write_sends_the_low_bytes() {
    let mut m = model();
    let regs = std_call(vmcall::MMIO, [1, tdx::DIR_WRITE, SHARED | 0x2000, 0x1234]);
    assert_eq!(
        host(m.tdcall(&regs)),
        HostRequest::MmioWrite {
            gpa: 0x2000,
            guest_gpa: SHARED | 0x2000,
            size: 1,
            value: 0x34
        }
    );
    assert_eq!(complete(&mut m, HostResult::Done).r10, status::SUCCESS);
}

#[test]
fn mmio_above_gpaw_is_not_checked() {
    // KVM only looks at the shared bit; bits above GPAW pass through.
    let mut m = model();
    let regs = std_call(vmcall::MMIO, [8, 0, (1 << 50) | SHARED | 0x10, 0]);
    assert_eq!(
        host(m.tdcall(&regs)),
        HostRequest::MmioRead {
            gpa: (1 << 50) | 0x10,
            guest_gpa: (1 << 50) | SHARED | 0x10,
            size: 8
        }
    );
}

#[test]
fn mmio_with_gpaw_52() {
    let mut m = model_with(|c| {
        c.gpaw = 52;
        c.maxphyaddr = 52;
    });
    let shared = 1u64 << 51;
    let out = immediate(&mut m, std_call(vmcall::MMIO, [4, 0, SHARED | 0x10, 0]));
    assert_eq!(
        out.r10,
        status::INVALID_OPERAND,
        "bit 47 is private with GPAW 52"
    );
    let regs = std_call(vmcall::MMIO, [4, 0, shared | 0x10, 0]);
    assert!(matches!(
        host(m.tdcall(&regs)),
        HostRequest::MmioRead { gpa: 0x10, .. }
    ));
}

// ----- Sub-function dispatch -----------------------------------------------------------

#[test]
fn unknown_subfunctions() {
    for sub in [0, 1, 0x7777, 0x10005, 0x1_0000_0000 | vmcall::IO, u64::MAX] {
        let mut m = model();
        let out = immediate(&mut m, std_call(sub, [1, 0, 0x3f8, 0]));
        assert_eq!(out.r10, status::SUBFUNC_UNSUPPORTED, "sub {sub:#x}");
    }
}

#[test]
fn unknown_subfunction_by_kvm_version() {
    let sub = 0x7777;
    let mut m = model();
    let out = immediate(&mut m, std_call(sub, [0; 4]));
    assert_eq!(
        out.r10,
        status::SUBFUNC_UNSUPPORTED,
        "v6.16 final and newer"
    );
    let mut rc1 = model_with(|c| c.unknown_subfunction = UnknownSubfunction::InvalidOperand);
    let out = immediate(&mut rc1, std_call(sub, [0; 4]));
    assert_eq!(out.r10, status::INVALID_OPERAND, "v6.16-rc1");
}

#[test]
fn kvm_hypercalls() {
    let mut m = model();
    let out = immediate(&mut m, call(ExposeMask::LINUX.0, 0x1234, 0, [0; 4]));
    assert_eq!(out.r10, status::KVM_ENOSYS);
    let out = immediate(&mut m, call(ExposeMask::LINUX.0, u64::MAX, 0, [0; 4]));
    assert_eq!(out.r10, status::KVM_ENOSYS);
    let out = immediate(
        &mut m,
        call(
            ExposeMask::LINUX.0,
            crate::sim::kvm_hc::VAPIC_POLL_IRQ,
            7,
            [0; 4],
        ),
    );
    assert_eq!(out.r10, 0);
    // Answered inside KVM (____kvm_emulate_hypercall()), never by the VMM: KICK_CPU and
    // SCHED_YIELD without PV-CPUID enforcement, CLOCK_PAIRING of an unknown clock.
    for (nr, args, want) in [
        (protocol::kvm_para::hc::KICK_CPU, [0, 1, 0, 0], 0),
        (protocol::kvm_para::hc::SCHED_YIELD, [1, 0, 0, 0], 0),
        (
            protocol::kvm_para::hc::CLOCK_PAIRING,
            [0x1000, 7, 0, 0],
            protocol::kvm_para::err::EOPNOTSUPP,
        ),
    ] {
        let out = immediate(
            &mut m,
            call(
                ExposeMask::LINUX.0,
                nr,
                args[0],
                [args[1], args[2], args[3], 0],
            ),
        );
        assert_eq!(out.r10, want, "hypercall {nr}");
    }
    // KVM_HC_MAP_GPA_RANGE: a0..a3 from R11..R14; KVM checks the range, then exits.
    let regs = call(ExposeMask::LINUX.0, 12, 0x1000, [1, 2, 3, 4]);
    assert_eq!(
        host(m.tdcall(&regs)),
        HostRequest::KvmMapGpaRange {
            gpa: 0x1000,
            npages: 1,
            attrs: 2
        }
    );
    assert_eq!(complete(&mut m, HostResult::Value(0)).r10, 0);
    let out = immediate(&mut m, call(ExposeMask::LINUX.0, 12, 0x1001, [1, 0, 0, 0]));
    assert_eq!(out.r10, protocol::kvm_para::err::EINVAL, "unaligned GPA");
    let mut off = model_with(|c| c.map_gpa_exit_enabled = false);
    let out = immediate(
        &mut off,
        call(ExposeMask::LINUX.0, 12, 0x1000, [1, 0, 0, 0]),
    );
    assert_eq!(out.r10, status::KVM_ENOSYS, "user exit not enabled");
    let mut enforced =
        model_with(|c| c.pv_features = crate::sim::kvm_hypercall::PvFeatures::Enforced(0));
    let out = immediate(
        &mut enforced,
        call(
            ExposeMask::LINUX.0,
            protocol::kvm_para::hc::KICK_CPU,
            0,
            [1, 0, 0, 0],
        ),
    );
    assert_eq!(
        out.r10,
        status::KVM_ENOSYS,
        "PV_UNHALT not in the guest's CPUID"
    );
}

#[test]
fn get_td_vm_call_info() {
    let mut m = model();
    // Leaf 0: KVM answers, clearing R11..R14.
    let out = immediate(
        &mut m,
        std_call(vmcall::GET_TD_VM_CALL_INFO, [0, 0x55, 0x66, 0x77]),
    );
    assert_eq!(out.r10, status::SUCCESS);
    assert_eq!((out.r11, out.r12, out.r13, out.r14), (0, 0, 0, 0));
    assert_eq!(out.r15, 0x77, "R15 untouched");
    // Leaf 1: the VMM answers; without an answer of its own, KVM's pre-filled one.
    let regs = std_call(vmcall::GET_TD_VM_CALL_INFO, [1, 0x55, 0, 0]);
    assert_eq!(host(m.tdcall(&regs)), HostRequest::TdVmCallInfo { leaf: 1 });
    let out = complete(&mut m, HostResult::Done);
    assert_eq!(
        (out.r10, out.r11, out.r12, out.r13, out.r14),
        (0, 0, 0, 0, 0)
    );
    host(m.tdcall(&regs));
    let out = complete(
        &mut m,
        HostResult::TdVmCallInfo {
            status: status::SUCCESS,
            r11: 1,
            r12: 2,
            r13: 3,
            r14: 4,
        },
    );
    assert_eq!((out.r11, out.r12, out.r13, out.r14), (1, 2, 3, 4));
    // Leaf >= 2.
    for l in [2, u64::MAX] {
        let out = immediate(&mut m, std_call(vmcall::GET_TD_VM_CALL_INFO, [l, 0, 0, 0]));
        assert_eq!(out.r10, status::INVALID_OPERAND);
    }
}

#[test]
fn get_quote_and_setup_event_notify() {
    let mut m = model();
    let out = immediate(&mut m, std_call(vmcall::GET_QUOTE, [0x1000, 0x1000, 0, 0]));
    assert_eq!(out.r10, status::INVALID_OPERAND, "private buffer");
    let regs = std_call(vmcall::GET_QUOTE, [SHARED | 0x1000, 0x2000, 0, 0]);
    assert_eq!(
        host(m.tdcall(&regs)),
        HostRequest::GetQuote {
            gpa: 0x1000,
            size: 0x2000
        }
    );
    assert_eq!(
        complete(&mut m, HostResult::Done).r10,
        status::SUBFUNC_UNSUPPORTED
    );
    host(m.tdcall(&regs));
    assert_eq!(complete(&mut m, HostResult::Status(status::SUCCESS)).r10, 0);
    for v in [0, 31, 256, u64::MAX] {
        let out = immediate(
            &mut m,
            std_call(vmcall::SETUP_EVENT_NOTIFY_INTERRUPT, [v, 0, 0, 0]),
        );
        assert_eq!(out.r10, status::INVALID_OPERAND, "vector {v}");
    }
    let regs = std_call(vmcall::SETUP_EVENT_NOTIFY_INTERRUPT, [32, 0, 0, 0]);
    assert_eq!(
        host(m.tdcall(&regs)),
        HostRequest::SetupEventNotify { vector: 32 }
    );
}

// ----- MapGPA --------------------------------------------------------------------------

fn map_gpa(gpa: u64, size: u64) -> TdcallRegs {
    std_call(vmcall::MAP_GPA, [gpa, size, 0, 0])
}

#[test]
fn map_gpa_one_chunk_to_shared() {
    let mut m = model();
    assert_eq!(
        host(m.tdcall(&map_gpa(SHARED | 0x10_0000, 0x1000))),
        HostRequest::MapGpa {
            gpa: 0x10_0000,
            size: 0x1000,
            to_private: false
        }
    );
    let out = complete(
        &mut m,
        HostResult::MapGpa(MapGpaResult::Ok {
            event_pending: false,
        }),
    );
    assert_eq!(out.r10, status::SUCCESS);
    assert_eq!(out.r11, vmcall::MAP_GPA, "R11 untouched on success");
}

#[test]
fn map_gpa_in_2mib_chunks() {
    let mut m = model();
    let gpa = 0x20_1000;
    let size = 2 * MIB2;
    let mut chunks = vec![host(m.tdcall(&map_gpa(gpa, size)))];
    loop {
        match m
            .complete(HostResult::MapGpa(MapGpaResult::Ok {
                event_pending: false,
            }))
            .unwrap()
        {
            TdxStep::Host(r) => chunks.push(r),
            TdxStep::Done(out) => {
                assert_eq!(out.r10, status::SUCCESS);
                break;
            }
            TdxStep::Stop(s) => panic!("{s}"),
        }
    }
    let want: Vec<_> = [(gpa, MIB2), (gpa + MIB2, MIB2)]
        .into_iter()
        .map(|(gpa, size)| HostRequest::MapGpa {
            gpa,
            size,
            to_private: true,
        })
        .collect();
    assert_eq!(chunks, want);
    // A range that is not a multiple of 2 MiB: the last chunk is short.
    let mut m = model();
    host(m.tdcall(&map_gpa(0, MIB2 + 0x3000)));
    assert_eq!(
        host(m.complete(HostResult::Done).unwrap()),
        HostRequest::MapGpa {
            gpa: MIB2,
            size: 0x3000,
            to_private: true
        }
    );
}

#[test]
fn map_gpa_retry_on_pending_event() {
    let mut m = model();
    let gpa = SHARED | 0x40_0000;
    host(m.tdcall(&map_gpa(gpa, 4 * MIB2)));
    let out = complete(
        &mut m,
        HostResult::MapGpa(MapGpaResult::Ok {
            event_pending: true,
        }),
    );
    assert_eq!(out.r10, status::RETRY);
    assert_eq!(out.r11, gpa + MIB2, "R11 = the next GPA, shared bit kept");
    // A pending event after the last chunk does not matter: done is checked first.
    let mut m = model();
    host(m.tdcall(&map_gpa(gpa, 0x1000)));
    let out = complete(
        &mut m,
        HostResult::MapGpa(MapGpaResult::Ok {
            event_pending: true,
        }),
    );
    assert_eq!(out.r10, status::SUCCESS);
}

#[test]
fn map_gpa_invalid_operands() {
    for (gpa, size, why) in [
        (0x1000, 0, "size 0"),
        (1 << 48, 0x1000, "GPA not legal"),
        ((1 << 48) - 0x1000, 0x2000, "last byte not legal"),
        (!0xfff, 0x2000, "overflow"),
        (SHARED - 0x1000, 0x2000, "crosses the shared bit"),
        // The range check comes before the alignment check.
        (0x1001, 0, "size 0 and unaligned"),
    ] {
        let mut m = model();
        let out = immediate(&mut m, map_gpa(gpa, size));
        assert_eq!(out.r10, status::INVALID_OPERAND, "{why}");
        assert_eq!(out.r11, gpa, "{why}: R11 = GPA");
    }
}

#[test]
fn map_gpa_alignment() {
    for (gpa, size) in [(0x1001, 0x1000), (0x1000, 0x800), (SHARED | 0x10, 0x1000)] {
        let mut m = model();
        let out = immediate(&mut m, map_gpa(gpa, size));
        assert_eq!(out.r10, status::ALIGN_ERROR, "{gpa:#x}+{size:#x}");
        assert_eq!(out.r11, gpa);
    }
}

#[test]
fn map_gpa_exit_not_enabled_is_checked_first() {
    let mut m = model_with(|c| c.map_gpa_exit_enabled = false);
    for (gpa, size) in [(0x1000, 0x1000), (0x1001, 0)] {
        let out = immediate(&mut m, map_gpa(gpa, size));
        assert_eq!(out.r10, status::SUBFUNC_UNSUPPORTED);
        assert_eq!(out.r11, gpa);
    }
}

#[test]
fn map_gpa_maxphyaddr_above_gpaw() {
    let mut m = model_with(|c| c.maxphyaddr = 52);
    assert!(matches!(
        m.tdcall(&map_gpa(1 << 48, 0x1000)),
        TdxStep::Host(HostRequest::MapGpa { .. })
    ));
}

#[test]
fn map_gpa_vmm_errors_v6_16() {
    for err in [
        MapGpaResult::Again,
        MapGpaResult::Invalid,
        MapGpaResult::Other(-5),
    ] {
        let mut m = model_with(|c| c.map_gpa_errors = MapGpaErrors::AllInvalid);
        host(m.tdcall(&map_gpa(0x20_0000, 4 * MIB2)));
        host(m.complete(HostResult::Done).unwrap());
        let out = complete(&mut m, HostResult::MapGpa(err));
        assert_eq!(out.r10, status::INVALID_OPERAND, "{err:?}");
        assert_eq!(out.r11, 0x20_0000 + MIB2, "R11 = the failed chunk");
    }
}

#[test]
fn map_gpa_vmm_errors_current_kvm_by_default() {
    assert_eq!(
        TdxConfig::default().map_gpa_errors,
        MapGpaErrors::RetryOnEagain
    );
    let new = model;
    let mut m = new();
    host(m.tdcall(&map_gpa(0x20_0000, MIB2)));
    let out = complete(&mut m, HostResult::MapGpa(MapGpaResult::Again));
    assert_eq!((out.r10, out.r11), (status::RETRY, 0x20_0000));
    let mut m = new();
    host(m.tdcall(&map_gpa(0x20_0000, MIB2)));
    let out = complete(&mut m, HostResult::MapGpa(MapGpaResult::Invalid));
    assert_eq!(out.r10, status::INVALID_OPERAND);
    let mut m = new();
    host(m.tdcall(&map_gpa(0x20_0000, MIB2)));
    assert!(matches!(
        m.complete(HostResult::MapGpa(MapGpaResult::Other(-5))),
        Ok(TdxStep::Stop(Stop::KvmRunError { errno: 22, .. }))
    ));
}

// ----- The exposure bitmap -------------------------------------------------------------

#[test]
fn exposure_bitmap_checked_by_the_module() {
    for bad in [1 << 0, 1 << 1, 1 << 4, 1 << 5, 1 << 32, 1 << 63] {
        let mut m = model();
        let regs = TdcallRegs {
            rbx: 0x11,
            rsi: 0x22,
            ..std_call(vmcall::IO, [1, 0, 0x3f8, 0])
        };
        let regs = TdcallRegs {
            rcx: regs.rcx | bad,
            ..regs
        };
        let out = done(m.tdcall(&regs));
        assert_eq!(out.rax, TDX_OPERAND_INVALID_RCX, "bit {bad:#x}");
        assert_eq!(
            out.rax >> 32,
            tdx::TDX_OPERAND_INVALID >> 32,
            "status class"
        );
        assert_eq!(
            TdcallRegs {
                rax: regs.rax,
                ..out
            },
            regs,
            "nothing else changes"
        );
        assert!(m.pending_request().is_none(), "no exit to the host");
    }
    // XMM selection bits (31:16) are allowed.
    let mut m = model();
    let regs = std_call(vmcall::IO, [1, 0, 0x3f8, 0]);
    let regs = TdcallRegs {
        rcx: regs.rcx | 0xffff_0000,
        ..regs
    };
    assert!(matches!(m.tdcall(&regs), TdxStep::Host(_)));
}

#[derive(Default)]
struct Recorder {
    seen: Vec<TdcallRegs>,
    set_r11: Option<u64>,
    set_r13: Option<u64>,
}

impl Tamper for Recorder {
    fn tdvmcall(&mut self, request: &TdcallRegs, answer: &mut TdcallRegs) {
        self.seen.push(*request);
        if let Some(v) = self.set_r11 {
            answer.r11 = v;
        }
        if let Some(v) = self.set_r13 {
            answer.r13 = v;
        }
    }
}

#[test]
fn unexposed_registers_reach_kvm_as_zero_and_are_not_written() {
    let mut m = TdxModel::with_tamper(TdxConfig::default(), Recorder::default());
    // R12 (the size) not exposed: KVM sees size 0.
    let mask = ExposeMask::LINUX.0 & !ExposeMask::R12;
    let regs = TdcallRegs {
        rbx: 0x77,
        ..call(mask, 0, vmcall::IO, [1, 0, 0x3f8, 0])
    };
    let out = done(m.tdcall(&regs));
    assert_eq!(out.rax, tdx::TDX_SUCCESS);
    assert_eq!(out.r10, status::INVALID_OPERAND);
    assert_eq!(out.r12, 1, "unexposed R12 keeps the guest's value");
    let seen = m.tamper_mut().seen[0];
    assert_eq!(seen.r12, 0);
    assert_eq!(seen.rbx, 0x77, "RBX is exposed in Linux's mask");
    assert_eq!(seen.rax, EXIT_REASON_TDCALL);

    // R10/R11 not exposed: KVM sees sub-function 0, answers SUBFUNC_UNSUPPORTED into a
    // register the guest never gets back.
    let mask = ExposeMask::LINUX.0 & !(ExposeMask::R10 | ExposeMask::R11);
    let regs = call(mask, 0x1234, vmcall::IO, [1, 0, 0x3f8, 0]);
    let out = done(m.tdcall(&regs));
    assert_eq!(out.rax, tdx::TDX_SUCCESS);
    assert_eq!(out.r10, 0x1234, "R10 not written back");
    assert_eq!(out.r11, vmcall::IO);
    assert_eq!(
        (m.tamper_mut().seen[1].r10, m.tamper_mut().seen[1].r11),
        (0, 0)
    );

    // R11 not exposed on a read: the value never reaches the guest.
    let mask = ExposeMask::LINUX.0 & !ExposeMask::R11;
    let mut m = model();
    // KVM sees R11 = 0: not IO but sub-function 0.
    let out = done(m.tdcall(&call(mask, 0, vmcall::IO, [1, 0, 0x3f8, 0])));
    assert_eq!(out.r10, status::SUBFUNC_UNSUPPORTED);
}

#[test]
fn only_exposed_registers_are_written_back() {
    let mut m = TdxModel::with_tamper(
        TdxConfig::default(),
        Recorder {
            set_r13: Some(0xbad),
            ..Recorder::default()
        },
    );
    let mask = ExposeMask::LINUX.0 & !ExposeMask::R13;
    let regs = call(mask, 0, vmcall::IO, [1, 0, 0x3f8, 0]);
    // R13 (direction) not exposed: KVM sees 0 = read.
    host(m.tdcall(&regs));
    let out = done(m.complete(HostResult::Value(0x42)).unwrap());
    assert_eq!(out.r11, 0x42);
    assert_eq!(
        out.r13, 0,
        "R13 keeps the guest's value despite KVM's 0xbad"
    );
    // With R13 exposed the tampered value gets through.
    let mut m = TdxModel::with_tamper(
        TdxConfig::default(),
        Recorder {
            set_r11: Some(0x1_0000_0042),
            ..Recorder::default()
        },
    );
    host(m.tdcall(&std_call(vmcall::IO, [1, 0, 0x3f8, 0])));
    let out = done(m.complete(HostResult::Value(0x42)).unwrap());
    assert_eq!(
        out.r11, 0x1_0000_0042,
        "a hostile host can answer wider than the access"
    );
}

// ----- TDX module leaves ---------------------------------------------------------------

#[test]
fn vp_info() {
    let mut m = model_with(|c| {
        c.gpaw = 52;
        c.attributes = tdx::ATTR_SEPT_VE_DISABLE;
        c.num_vcpus = 2;
        c.max_vcpus = 8;
        c.vcpu_index = 1;
    });
    let regs = TdcallRegs {
        rax: leaf::VP_INFO,
        r12: 0x99,
        ..TdcallRegs::default()
    };
    let out = immediate(&mut m, regs);
    assert_eq!(out.rcx & tdx::VP_INFO_GPAW_MASK, 52);
    assert_eq!(out.rdx, tdx::ATTR_SEPT_VE_DISABLE);
    assert_eq!(out.r8, 2 | (8 << 32));
    assert_eq!(out.r9, 1);
    assert_eq!((out.r10, out.r11), (0, 0));
    assert_eq!(out.r12, 0x99, "other registers untouched");
    assert_eq!(m.shared_bit(), 1 << 51);
}

fn veinfo_get(version: u64) -> TdcallRegs {
    TdcallRegs {
        rax: leaf::VP_VEINFO_GET | (version << 16),
        rcx: 1,
        rdx: 2,
        r8: 3,
        r9: 4,
        r10: 5,
        r11: 6,
        ..TdcallRegs::default()
    }
}

#[test]
fn veinfo_get_is_single_shot() {
    let mut m = model();
    let out = done(m.tdcall(&veinfo_get(0)));
    assert_eq!(out.rax, TDX_NO_VALID_VE_INFO);
    assert_eq!(
        (out.rcx, out.rdx, out.r8, out.r9, out.r10, out.r11),
        (0, 0, 0, 0, 0, 6),
        "outputs zeroed even on failure"
    );
    let ve = VeInfo {
        exit_reason: tdx::EXIT_REASON_EPT_VIOLATION as u32,
        exit_qualification: 0x181,
        gla: 0xffff_8000_0000_1000,
        gpa: 0xfeb0_0000,
        insn_len: 3,
        insn_info: 0x10,
    };
    assert_eq!(m.raise_ve(ve), VeDelivery::Ve);
    assert_eq!(
        m.raise_ve(VeInfo::default()),
        VeDelivery::DoubleFault,
        "the first #VE is not read yet: tdx_inject_ve() delivers #DF"
    );
    assert_eq!(VeDelivery::DoubleFault.event(), (8, Some(0)));
    assert_eq!(VeDelivery::Ve.event(), (20, None));
    assert!(m.ve_pending());
    let out = immediate(&mut m, veinfo_get(0));
    assert_eq!(out.rcx, 48);
    assert_eq!(out.rdx, 0x181);
    assert_eq!(out.r8, 0xffff_8000_0000_1000);
    assert_eq!(out.r9, 0xfeb0_0000);
    assert_eq!(out.r10, 3 | (0x10 << 32));
    assert!(!m.ve_pending());
    assert_eq!(done(m.tdcall(&veinfo_get(0))).rax, TDX_NO_VALID_VE_INFO);
    // Version 1 is accepted, 2 is not (and still zeroes the outputs).
    assert_eq!(m.raise_ve(ve), VeDelivery::Ve, "read: a new #VE is a #VE");
    assert_eq!(done(m.tdcall(&veinfo_get(2))).rax, TDX_OPERAND_INVALID_RAX);
    assert!(
        m.ve_pending(),
        "a refused call does not consume the information"
    );
    assert_eq!(immediate(&mut m, veinfo_get(1)).rcx, 48);
}

#[test]
fn unknown_leaves_and_bad_rax() {
    for rax in [
        2,
        5,
        leaf::MR_REPORT,
        leaf::MEM_PAGE_ACCEPT,
        0xffff,
        leaf::VP_INFO | (1 << 16),
        leaf::VP_VMCALL | (1 << 16),
        leaf::VP_INFO | (1 << 24),
        leaf::VP_VMCALL | (1 << 63),
    ] {
        let mut m = model();
        let regs = TdcallRegs {
            rax,
            rcx: ExposeMask::LINUX.0,
            r11: vmcall::IO,
            r12: 1,
            ..TdcallRegs::default()
        };
        let out = done(m.tdcall(&regs));
        assert_eq!(out.rax, tdx::TDX_OPERAND_INVALID, "RAX {rax:#x}");
        assert_eq!(TdcallRegs { rax, ..out }, regs, "nothing else changes");
    }
}

// ----- CPUID, MSRs, HLT, fatal error ---------------------------------------------------

#[test]
fn cpuid_round_trip() {
    let mut m = model();
    // cpuid(0x21, 0) as the guest sends it; the leaf is read as u32.
    let regs = std_call(vmcall::CPUID, [0x1_0000_0021, 0, 0, 0]);
    assert_eq!(
        host(m.tdcall(&regs)),
        HostRequest::Cpuid {
            leaf: 0x21,
            subleaf: 0,
            xcr0: None
        }
    );
    let vendor = [0, 0x6574_6e49, 0x2020_2020, 0x5844_546c];
    let out = complete(&mut m, HostResult::Cpuid(vendor));
    assert_eq!(out.r10, status::SUCCESS);
    assert_eq!(
        [out.r12, out.r13, out.r14, out.r15],
        vendor.map(u64::from),
        "EAX..EDX in R12..R15, zero-extended"
    );
}

#[test]
fn msrs() {
    let mut m = model();
    let regs = std_call(vmcall::RDMSR, [0x1_0000_001b, 0, 0, 0]);
    assert_eq!(host(m.tdcall(&regs)), HostRequest::Rdmsr { index: 0x1b });
    let out = complete(&mut m, HostResult::Value(0xfee0_0d00));
    assert_eq!((out.r10, out.r11), (status::SUCCESS, 0xfee0_0d00));
    host(m.tdcall(&regs));
    assert_eq!(
        complete(&mut m, HostResult::Refused).r10,
        status::INVALID_OPERAND
    );
    let regs = std_call(vmcall::WRMSR, [0x6e0, 0x1234_5678_9abc_def0, 0, 0]);
    assert_eq!(
        host(m.tdcall(&regs)),
        HostRequest::Wrmsr {
            index: 0x6e0,
            value: 0x1234_5678_9abc_def0
        }
    );
    assert_eq!(complete(&mut m, HostResult::Done).r10, status::SUCCESS);
    host(m.tdcall(&regs));
    assert_eq!(
        complete(&mut m, HostResult::Refused).r10,
        status::INVALID_OPERAND
    );
}

/// KVM's MSR policy for a TD (`tdx_has_emulated_msr()`, `tdx_is_read_only_msr()`,
/// `tdx_get_msr()`): refused without asking the VMM.
#[test]
fn msr_policy_refuses_what_kvm_does_not_emulate() {
    use protocol::x86::msr;
    let refused_rd = [
        msr::TSC,
        msr::KERNEL_GS_BASE,
        msr::MCG_EXT_CTL,
        0x0bad_0000,
        0xc001_0131,
        0x808,
        0x80b,
        0x811,
        0x827,
    ];
    for index in refused_rd {
        let mut m = model();
        let out = immediate(&mut m, std_call(vmcall::RDMSR, [u64::from(index), 0, 0, 0]));
        assert_eq!(out.r10, status::INVALID_OPERAND, "RDMSR {index:#x}");
    }
    for index in [
        msr::APIC_BASE,
        msr::EFER,
        msr::FEAT_CTL,
        msr::TSC,
        msr::KERNEL_GS_BASE,
    ] {
        let mut m = model();
        let out = immediate(&mut m, std_call(vmcall::WRMSR, [u64::from(index), 0, 0, 0]));
        assert_eq!(out.r10, status::INVALID_OPERAND, "WRMSR {index:#x}");
    }
    // FEAT_CTL is read-only and answered by KVM itself: LOCKED.
    let mut m = model();
    let out = immediate(
        &mut m,
        std_call(vmcall::RDMSR, [u64::from(msr::FEAT_CTL), 0, 0, 0]),
    );
    assert_eq!((out.r10, out.r11), (status::SUCCESS, FEAT_CTL_LOCKED));
    // Emulated ones reach the VMM: EFER and the APIC base (reads), the x2APIC timer.
    for index in [
        msr::EFER,
        msr::APIC_BASE,
        msr::MISC_ENABLE,
        0x80f,
        0x832,
        0x838,
    ] {
        let mut m = model();
        assert_eq!(
            host(m.tdcall(&std_call(vmcall::RDMSR, [u64::from(index), 0, 0, 0]))),
            HostRequest::Rdmsr { index },
        );
    }
    let mut m = model();
    assert_eq!(
        host(m.tdcall(&std_call(vmcall::WRMSR, [0x838, 50_000, 0, 0]))),
        HostRequest::Wrmsr {
            index: 0x838,
            value: 50_000
        }
    );
}

#[test]
fn x2apic_msrs_kvm_refuses_by_version() {
    let refused = |v: X2apicMsrs| -> Vec<u32> {
        (0x800..=0x8ff)
            .filter(|&i| !tdx_has_emulated_msr(i, v))
            .collect()
    };
    let fixed: Vec<u32> = [0x808, 0x80a, 0x80b]
        .into_iter()
        .chain(0x810..=0x827)
        .collect();
    assert_eq!(refused(X2apicMsrs::Fixed), fixed);
    assert_eq!(X2apicMsrs::default(), X2apicMsrs::Fixed);
    assert_eq!(
        refused(X2apicMsrs::BeforeFix),
        [0x808, 0x80a, 0x80b, 0x810, 0x818, 0x820],
        "X2APIC_MSR(APIC_ISR + APIC_ISR_NR) == X2APIC_MSR(APIC_ISR)"
    );
    // The model follows the knob: ISR1 is refused now, was emulated before the fix.
    let mut m = model_with(|c| c.x2apic_msrs = X2apicMsrs::BeforeFix);
    assert_eq!(
        host(m.tdcall(&std_call(vmcall::RDMSR, [0x811, 0, 0, 0]))),
        HostRequest::Rdmsr { index: 0x811 }
    );
}

#[test]
fn hlt() {
    let mut m = model();
    assert_eq!(
        host(m.tdcall(&std_call(vmcall::HLT, [0; 4]))),
        HostRequest::Hlt {
            interrupts_blocked: false
        }
    );
    assert_eq!(complete(&mut m, HostResult::Done).r10, status::SUCCESS);
    assert_eq!(
        host(m.tdcall(&std_call(vmcall::HLT, [1, 0, 0, 0]))),
        HostRequest::Hlt {
            interrupts_blocked: true
        }
    );
}

#[test]
fn report_fatal_error() {
    let mut m = model();
    let regs = TdcallRegs {
        rdx: 3,
        rbx: 4,
        rsi: 5,
        rdi: 6,
        r8: 7,
        r9: 8,
        ..std_call(vmcall::REPORT_FATAL_ERROR, [0xdead, 0xbeef, 0, 0])
    };
    let TdxStep::Stop(Stop::TdxFatal { data }) = m.tdcall(&regs) else {
        panic!("expected a fatal-error stop");
    };
    assert_eq!(
        data,
        [
            EXIT_REASON_TDCALL,
            ExposeMask::LINUX.0,
            3,
            4,
            0,
            0,
            5,
            6,
            7,
            8,
            0,
            vmcall::REPORT_FATAL_ERROR,
            0xdead,
            0xbeef,
            0,
            0
        ]
    );
    // Re-entering resumes the guest with nothing changed.
    let out = complete(&mut m, HostResult::Done);
    assert_eq!(
        TdcallRegs {
            rax: regs.rax,
            ..out
        },
        regs
    );
}

#[test]
fn complete_out_of_order() {
    let mut m = model();
    assert_eq!(m.complete(HostResult::Done), Err(SimError::NothingPending));
    host(m.tdcall(&std_call(vmcall::IO, [1, 0, 0x3f8, 0])));
    assert!(matches!(
        m.complete(HostResult::Cpuid([0; 4])),
        Err(SimError::WrongResult { .. })
    ));
    assert!(m.pending_request().is_some(), "still pending");
    assert_eq!(complete(&mut m, HostResult::Value(1)).r11, 1);
    // A new TDCALL drops an abandoned request.
    host(m.tdcall(&std_call(vmcall::IO, [1, 0, 0x3f8, 0])));
    immediate(
        &mut m,
        TdcallRegs {
            rax: leaf::VP_INFO,
            ..TdcallRegs::default()
        },
    );
    assert_eq!(
        m.complete(HostResult::Value(1)),
        Err(SimError::NothingPending)
    );
}

/// The guest's clean API end to end, checked the way `guest/src/platform/tdx.rs` checks it.
#[test]
fn guest_backend_requests_round_trip() {
    let mut m = model();
    // vp_info(): GPAW 48 or 52.
    let info = immediate(
        &mut m,
        TdcallRegs {
            rax: leaf::VP_INFO,
            ..TdcallRegs::default()
        },
    );
    let gpaw = (info.rcx & tdx::VP_INFO_GPAW_MASK) as u32;
    assert!(gpaw == 48 || gpaw == 52);
    let shared = tdx::shared_bit(gpaw);
    type Serve = fn(&HostRequest) -> HostResult;
    let cases: [(u64, [u64; 4], Serve); 7] = [
        (
            vmcall::MMIO,
            [4, tdx::DIR_READ, shared | 0xfeb0_0000, 0],
            |_| HostResult::Value(0x1234_5678),
        ),
        (
            vmcall::MMIO,
            [8, tdx::DIR_WRITE, shared | 0xfeb0_0008, 7],
            |_| HostResult::Done,
        ),
        (vmcall::IO, [1, tdx::DIR_READ, 0x3fd, 0], |_| {
            HostResult::Value(0x60)
        }),
        (
            vmcall::IO,
            [1, tdx::DIR_WRITE, 0x3f8, u64::from(b'k')],
            |_| HostResult::Done,
        ),
        (vmcall::CPUID, [0x21, 0, 0, 0], |_| {
            HostResult::Cpuid([0, 1, 2, 3])
        }),
        (vmcall::RDMSR, [0x1b, 0, 0, 0], |_| {
            HostResult::Value(0xfee0_0900)
        }),
        (vmcall::HLT, [0, 0, 0, 0], |_| HostResult::Done),
    ];
    for (sub, args, serve) in cases {
        let req = host(m.tdcall(&std_call(sub, args)));
        let out = complete(&mut m, serve(&req));
        assert_eq!(out.r10, status::SUCCESS, "sub {sub}: {req:?}");
        if sub == vmcall::MMIO && args[1] == tdx::DIR_READ {
            assert_eq!(out.r11, 0x1234_5678);
            assert!(protocol::access::Width::B4.fits(out.r11));
        }
    }
}

#[test]
fn deterministic() {
    let run = || {
        let mut m = model();
        let mut outs = vec![];
        for regs in [
            std_call(vmcall::IO, [1, 0, 0x3f8, 0]),
            map_gpa(0x1000, 0x3000),
            std_call(vmcall::MMIO, [3, 0, SHARED, 0]),
        ] {
            outs.push(format!("{:?}", m.tdcall(&regs)));
            outs.push(format!("{:?}", m.complete(HostResult::Value(5))));
        }
        outs
    };
    assert_eq!(run(), run());
}
