//! The run loop against real KVM, with guests of a few 32-bit instructions placed at the
//! PVH entry (as in `tests/tiny_guests.rs`, but in-crate, to see whether the coalesced
//! ring is mapped). Serial ordering and the DLAB case are in `tests/tiny_guests.rs`.
//! Needs `/dev/kvm`; `CVMPROBE_NO_KVM=1` turns these into skips.

use super::*;
use crate::cpuid::Brand;
use crate::machine::Machine;
use crate::memslot::Scenario;
use crate::platform::Host;
use crate::{ExitReason, ExitStats};
use protocol::pc::COM1_DATA;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const ENTRY: u64 = 0x10_0000;
const DATA: u64 = ENTRY + 0x100;

/// What one run of a tiny guest produced.
struct Outcome {
    exit: ExitReason,
    stats: ExitStats,
    /// The sink's calls, one buffer each.
    chunks: Vec<Vec<u8>>,
    serial: Vec<u8>,
    coalesced: u64,
    ring: bool,
}

/// Runs `code` (with `data` at [`DATA`]) on a fresh VM, or `None` when KVM is missing
/// and skipping is allowed.
fn run_guest(test: &str, code: &[u8], data: &[u8]) -> Option<Outcome> {
    run_on(test, PlatformKind::Legacy, code, data).map(|(o, _)| o)
}

/// Where the sims' TDCALL/VMGEXIT breakpoint sits in the tiny guests: a byte they never
/// reach.
const NO_TRAP: u64 = ENTRY + 0xf0;

/// [`run_guest`] under `platform`, set up as `crate::run` sets it up (MSR filter,
/// CPUID, APIC, breakpoints), with the raw CPUID's breakpoint at `ENTRY + cpuid_at`
/// where the code has its CPUID (or anywhere, if it has none). Also returns the host.
fn run_on(test: &str, platform: PlatformKind, code: &[u8], data: &[u8]) -> Option<(Outcome, Host)> {
    run_sim(test, platform, code, data, NO_TRAP - 8)
}

fn run_sim(
    test: &str,
    platform: PlatformKind,
    code: &[u8],
    data: &[u8],
    cpuid_at: u64,
) -> Option<(Outcome, Host)> {
    let kvm = match crate::open_kvm() {
        Ok(kvm) => kvm,
        Err(e) if std::env::var("CVMPROBE_NO_KVM").as_deref() == Ok("1") => {
            // Straight to stderr: libtest hides a passing test's `eprintln!`.
            use std::io::Write;
            let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {e}");
            return None;
        }
        Err(e) => panic!("{test}: KVM is needed: {e} (CVMPROBE_NO_KVM=1 skips)"),
    };
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    mem.write_slice(code, GuestAddress(ENTRY)).unwrap();
    mem.write_slice(data, GuestAddress(DATA)).unwrap();
    let vm = kvm.create_vm().unwrap();
    vm.set_tss_address(crate::TSS_ADDRESS).unwrap();
    crate::map_memory(&vm, &mem, &[0]).unwrap();
    crate::platform::prepare_vm(&vm, platform).unwrap();
    let supported = crate::supported_cpuid(&kvm).unwrap();
    let width = crate::sim::address::AddressWidth::new(cpuid::phys_bits(&supported)).unwrap();
    let sites = (platform != PlatformKind::Legacy).then_some(crate::platform::TrapSites {
        trap: NO_TRAP,
        cpuid: cpuid_at,
    });
    let mut vcpu = Vcpu::create(
        &vm,
        supported,
        VcpuSetup {
            entry: ENTRY,
            brand: &Brand::for_run(),
            platform,
            width,
            forced_width: false,
            breakpoint: sites,
            handoff: None,
        },
    )
    .unwrap();
    let mut host = Host::new(platform, sites, Box::new(crate::sim::Honest), width);
    let ring = vcpu.coalesces();
    let apic = match platform {
        PlatformKind::Tdx => crate::machine::ApicAccess::X2apicOnly,
        _ => crate::machine::ApicAccess::Xapic,
    };
    let mut machine = Machine::new(mem.clone(), 1, apic);
    let mut stats = ExitStats::default();
    let mut chunks = Vec::new();
    crate::kick::install().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watchdog = crate::kick::Watchdog::start(Duration::from_secs(10), stop.clone()).unwrap();
    let exit = run(
        &mut vcpu,
        &mut machine,
        &mut host,
        &mut Scenario::default(),
        &mut stats,
        &stop,
        &mut |b| chunks.push(b.to_vec()),
    )
    .unwrap();
    drop(watchdog);
    Some((
        Outcome {
            exit,
            stats,
            chunks,
            coalesced: machine.coalesced_writes(),
            serial: machine.into_serial(),
            ring,
        },
        host,
    ))
}

/// The #VE information tdx-sim posted, read as the guest would (TDG.VP.VEINFO.GET).
fn veinfo(host: &mut Host) -> (u64, u64, u64) {
    let Host::Tdx(tdx) = host else {
        panic!("not tdx-sim")
    };
    match tdx.model.tdcall(&protocol::tdx::TdcallRegs {
        rax: protocol::tdx::leaf::VP_VEINFO_GET,
        ..Default::default()
    }) {
        crate::sim::tdx::TdxStep::Done(r) => {
            assert_eq!(r.rax, 0, "#VE information posted");
            (r.rcx, r.rdx, r.r10)
        }
        other => panic!("{other:?}"),
    }
}

/// `mov ecx, imm32`
fn mov_ecx(v: u32) -> Vec<u8> {
    [&[0xb9][..], &v.to_le_bytes()].concat()
}
/// `mov eax, imm32`
fn mov_eax(v: u32) -> Vec<u8> {
    [&[0xb8][..], &v.to_le_bytes()].concat()
}
const CPUID: [u8; 2] = [0x0f, 0xa2];
const RDMSR: [u8; 2] = [0x0f, 0x32];

// The tiny guests below have no IDT: an exception the sim raises ends the run in a triple
// fault (KVM_EXIT_SHUTDOWN) at the instruction it was raised for, which is what they
// check, with the #VE information the TDX module would have posted.

#[test]
fn tdx_sim_cpuid_answered_by_the_module_then_a_raw_out_is_a_ve() {
    // CPUID 0x21 (the module's own leaf: answered, EBX = "Inte"), then OUT to the port in
    // DX = 0x6e49 ("In"): a #VE at the first OUT (whose exit reports the next RIP here,
    // where a second, identical OUT starts: the VMM must not take that one).
    let code = [
        mov_eax(0x21),
        vec![0x31, 0xc9], // xor ecx, ecx
        CPUID.to_vec(),   // ENTRY + 7
        vec![0x89, 0xda], // mov edx, ebx
        vec![0xee],       // out dx, al: ENTRY + 11
        vec![0xee],       // out dx, al
    ]
    .concat();
    let test = "tdx_sim_cpuid_answered_by_the_module_then_a_raw_out_is_a_ve";
    let Some((o, mut host)) = run_sim(test, PlatformKind::Tdx, &code, &[], ENTRY + 7) else {
        return;
    };
    assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 11 });
    assert_eq!(
        host.take_findings(),
        [format!(
            "raw OUT to port 0x6e49 (1 byte) under tdx-sim at RIP {:#x}: on hardware this \
             is a #VE (exit reason 30); the guest must go through its TDG.VP.VMCALL backend",
            ENTRY + 11
        )]
    );
    // Exit reason 30, I/O qualification (1 byte, OUT, DX, port 0x6e49), length 1.
    assert_eq!(veinfo(&mut host), (30, 0x6e49_0000, 1));
}

#[test]
fn tdx_sim_raw_msrs_and_cpuid_outside_the_modules_tables_are_ves() {
    // RDMSR of SEV_STATUS: outside the MSR bitmap, a #VE (exit reason 31, length 2).
    let code = [mov_ecx(0xc001_0131), RDMSR.to_vec()].concat();
    let test = "tdx_sim_raw_msrs_and_cpuid_outside_the_modules_tables_are_ves";
    let Some((o, mut host)) = run_on(test, PlatformKind::Tdx, &code, &[]) else {
        return;
    };
    assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 5 });
    assert_eq!(veinfo(&mut host), (31, 0, 2));
    assert!(
        host.take_findings().is_empty(),
        "a #VE the guest may handle"
    );
    // IN (its exit reports RIP at the instruction): #VE at it, I/O qualification with
    // the IN bit and an immediate port.
    let code = [vec![0x90], vec![0xe5, 0x80]].concat(); // nop; in eax, 0x80
    let (o, mut host) = run_on(test, PlatformKind::Tdx, &code, &[]).unwrap();
    assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 1 });
    assert_eq!(veinfo(&mut host), (30, 0x0080_004b, 2));
    // CPUID 0x40000000 (the hypervisor range): #VE, exit reason 10.
    let code = [mov_eax(0x4000_0000), vec![0x31, 0xc9], CPUID.to_vec()].concat();
    let (o, mut host) = run_sim(test, PlatformKind::Tdx, &code, &[], ENTRY + 7).unwrap();
    assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 7 });
    assert_eq!(veinfo(&mut host), (10, 0, 2));
    // HLT: #VE, exit reason 12 (its exit reports the next RIP), and a finding.
    let (o, mut host) = run_on(test, PlatformKind::Tdx, &[0x90, 0xf4], &[]).unwrap();
    assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 1 });
    assert_eq!(veinfo(&mut host), (12, 0, 1));
    assert_eq!(host.take_findings().len(), 1);
}

#[test]
fn tdx_sim_x2apic_eoi_is_native_and_the_pvh_efer_write_allowed() {
    // The PVH entry's EFER dance from the TD's initial EFER (LME already set): allowed;
    // then WRMSR 0 to the x2APIC EOI (virtualised by the CPU: no exit in a TD, here the
    // user-space APIC), then RDMSR of the x2APIC SVR: #VE (not in the module's table).
    let code = [
        mov_ecx(0xc000_0080),
        RDMSR.to_vec(),
        vec![0x0d, 0x00, 0x01, 0x00, 0x00], // or eax, 0x100
        vec![0x0f, 0x30],                   // wrmsr
        mov_ecx(0x80b),
        vec![0x31, 0xc0, 0x31, 0xd2], // xor eax, eax; xor edx, edx
        vec![0x0f, 0x30],             // wrmsr EOI: ENTRY + 0x17
        mov_ecx(0x80f),
        RDMSR.to_vec(), // ENTRY + 0x1e
    ]
    .concat();
    let test = "tdx_sim_x2apic_eoi_is_native_and_the_pvh_efer_write_allowed";
    let Some((o, mut host)) = run_on(test, PlatformKind::Tdx, &code, &[]) else {
        return;
    };
    assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 0x1e });
    assert_eq!(veinfo(&mut host), (31, 0, 2));
    assert_eq!(o.stats.msr, 4, "{:?}", o.stats);
}

#[test]
fn sev_es_sim_cpuid_and_intercepted_msrs_are_vcs_sev_status_is_not() {
    // RDMSR of SEV_STATUS (not intercepted: the GHCB model answers), RDMSR of EFER
    // (passed through), then RDMSR of IA32_TSC: intercepted, a #VC (error code 0x7c).
    let code = [
        mov_ecx(0xc001_0131),
        RDMSR.to_vec(),
        mov_ecx(0xc000_0080),
        RDMSR.to_vec(),
        mov_ecx(0x10),
        RDMSR.to_vec(), // ENTRY + 0x13
    ]
    .concat();
    let test = "sev_es_sim_cpuid_and_intercepted_msrs_are_vcs_sev_status_is_not";
    let Some((o, _)) = run_on(test, PlatformKind::SevEs, &code, &[]) else {
        return;
    };
    assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 0x13 });
    // CPUID: #VC.
    let code = [mov_eax(0), vec![0x31, 0xc9], CPUID.to_vec()].concat();
    let (o, _) = run_sim(test, PlatformKind::SevEs, &code, &[], ENTRY + 7).unwrap();
    assert_eq!(o.exit, ExitReason::Shutdown { rip: ENTRY + 7 });
    // HLT is an automatic exit: no #VC, the VMM halts (with nothing to wake it).
    let (o, mut host) = run_on(test, PlatformKind::SevEs, &[0xf4], &[]).unwrap();
    assert_eq!(o.exit, ExitReason::HaltedForever { rip: ENTRY + 1 });
    assert!(host.take_findings().is_empty());
}

/// `mov dx, port`
fn mov_dx(port: u16) -> Vec<u8> {
    [&[0x66, 0xba][..], &port.to_le_bytes()].concat()
}
/// `xor eax, eax; out 0xf4, eax`: verdict 0.
const EXIT_0: [u8; 4] = [0x31, 0xc0, 0xe7, 0xf4];

#[test]
fn full_ring_falls_back_to_exits_in_order() {
    // One `rep outsb` of more bytes than the ring holds: when it is full, KVM exits for
    // the next byte, which the VMM handles after the ring's older ones.
    const N: usize = 400;
    let data: Vec<u8> = (0..N).map(|i| (i * 7 % 251) as u8).collect();
    let code = [
        mov_dx(COM1_DATA),
        [&[0xbe][..], &(DATA as u32).to_le_bytes()].concat(), // mov esi, DATA
        [&[0xb9][..], &(N as u32).to_le_bytes()].concat(),    // mov ecx, N
        vec![0xf3, 0x6e],                                     // rep outsb
        EXIT_0.to_vec(),
    ]
    .concat();
    let test = "full_ring_falls_back_to_exits_in_order";
    let Some(o) = run_guest(test, &code, &data) else {
        return;
    };
    assert_eq!(o.exit, ExitReason::GuestExit(0));
    assert_eq!(o.serial, data);
    assert_eq!(o.chunks.concat(), o.serial);
    if o.ring {
        let exited = o.stats.io - 1;
        assert!(exited >= 1, "the ring filled up: {:?}", o.stats);
        assert_eq!(o.coalesced + exited, N as u64, "{:?}", o.stats);
    }
}
