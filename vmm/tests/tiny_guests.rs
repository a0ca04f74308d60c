//! A few instructions of 32-bit guest code, wrapped in a PVH ELF made here, to drive each exit
//! path of the VMM through real KVM (the real kernel exercises only the happy ones).
//!
//! The code runs at the PVH entry: 32-bit protected mode, paging off, flat segments, no IDT
//! of its own, interrupts off. Needs `/dev/kvm` (`CVMPROBE_NO_KVM=1` skips).

use std::path::PathBuf;
use std::time::Duration;
use vmm::{ExitReason, RunReport, VmConfig};

mod common;

/// Where the code is loaded and entered.
const ENTRY: u64 = 0x10_0000;
/// Where data bytes (after the code, in the same segment) are placed.
const DATA: u64 = ENTRY + 0x100;

/// A static x86-64 ELF: one RWX PT_LOAD at [`ENTRY`] holding `code` and, at [`DATA`], `data`;
/// a PT_NOTE with the PVH entry note (Xen, XEN_ELFNOTE_PHYS32_ENTRY = 18) naming [`ENTRY`].
fn pvh_elf(code: &[u8], data: &[u8]) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    assert!(code.len() <= (DATA - ENTRY) as usize);
    let mut image = code.to_vec();
    image.resize((DATA - ENTRY) as usize, 0xcc);
    image.extend_from_slice(data);
    let note = [
        &4u32.to_le_bytes()[..],
        &8u32.to_le_bytes(),
        &18u32.to_le_bytes(),
        b"Xen\0",
        &ENTRY.to_le_bytes(),
    ]
    .concat();

    let image_off = EHDR + 2 * PHDR;
    let note_off = image_off + image.len();
    let mut f = vec![0u8; image_off];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // ELFDATA2LSB
    f[6] = 1; // EV_CURRENT
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&ENTRY.to_le_bytes());
    f[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes());
    f[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
    f[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
    f[56..58].copy_from_slice(&2u16.to_le_bytes());
    let phdr = |f: &mut Vec<u8>, i: usize, p_type: u32, off: usize, addr: u64, size: usize| {
        let p = &mut f[EHDR + i * PHDR..][..PHDR];
        p[0..4].copy_from_slice(&p_type.to_le_bytes());
        p[4..8].copy_from_slice(&7u32.to_le_bytes()); // RWX
        p[8..16].copy_from_slice(&(off as u64).to_le_bytes());
        p[16..24].copy_from_slice(&addr.to_le_bytes());
        p[24..32].copy_from_slice(&addr.to_le_bytes());
        p[32..40].copy_from_slice(&(size as u64).to_le_bytes());
        p[40..48].copy_from_slice(&(size as u64).to_le_bytes());
    };
    phdr(&mut f, 0, 1, image_off, ENTRY, image.len()); // PT_LOAD
    phdr(&mut f, 1, 4, note_off, 0, note.len()); // PT_NOTE
    f.extend_from_slice(&image);
    f.extend_from_slice(&note);
    f
}

/// Runs `code` (with `data` at [`DATA`]) to its end, or `None` when skipped.
fn run(test: &str, code: &[u8], data: &[u8], timeout: Duration) -> Option<RunReport> {
    run_with_sink(test, code, data, timeout).map(|(report, _)| report)
}

/// [`run`], also returning what each call of the serial sink got.
fn run_with_sink(
    test: &str,
    code: &[u8],
    data: &[u8],
    timeout: Duration,
) -> Option<(RunReport, Vec<Vec<u8>>)> {
    if !common::kvm_or_skip(test) {
        return None;
    }
    let path: PathBuf =
        std::env::temp_dir().join(format!("vmm-tiny-{}-{test}.elf", std::process::id()));
    std::fs::write(&path, pvh_elf(code, data)).expect("write the test ELF");
    let mut cfg = VmConfig::new(&path);
    cfg.mem_mib = 2;
    cfg.timeout = timeout;
    let mut chunks = Vec::new();
    let report = vmm::run(&cfg, &mut |b| chunks.push(b.to_vec()));
    std::fs::remove_file(&path).ok();
    let report = report.expect("VMM setup");
    assert_eq!(
        chunks.concat(),
        report.serial,
        "the sink saw the report's bytes"
    );
    Some((report, chunks))
}

const SHORT: Duration = Duration::from_secs(10);

// Instruction encodings used below (32-bit operand size).
/// `mov eax, imm32`
fn mov_eax(v: u32) -> Vec<u8> {
    [&[0xb8][..], &v.to_le_bytes()].concat()
}
/// `out 0xf4, eax`: the verdict.
const OUT_EXIT_EAX: [u8; 2] = [0xe7, 0xf4];
/// `mov dx, 0x3f8`
const MOV_DX_COM1: [u8; 4] = [0x66, 0xba, 0xf8, 0x03];
/// `xor eax, eax`
const XOR_EAX: [u8; 2] = [0x31, 0xc0];

#[test]
fn verdict_through_the_exit_port() {
    let code = [mov_eax(7), OUT_EXIT_EAX.to_vec()].concat();
    let Some(r) = run("verdict_through_the_exit_port", &code, &[], SHORT) else {
        return;
    };
    assert_eq!(r.exit, ExitReason::GuestExit(7));
    assert_eq!((r.stats.io, r.stats.total), (1, 1), "{:?}", r.stats);
}

#[test]
fn serial_bytes_and_string_io() {
    // out dx, al twice, then `mov esi, DATA; mov ecx, 3; rep outsb`, then exit 0.
    let code = [
        &MOV_DX_COM1[..],
        &[0xb0, b'h', 0xee, 0xb0, b'i', 0xee],
        &[0xbe],
        &(DATA as u32).to_le_bytes(),
        &[0xb9, 3, 0, 0, 0],
        &[0xf3, 0x6e],
        &XOR_EAX,
        &OUT_EXIT_EAX,
    ]
    .concat();
    let Some(r) = run("serial_bytes_and_string_io", &code, b"abc", SHORT) else {
        return;
    };
    assert_eq!(r.exit, ExitReason::GuestExit(0));
    assert_eq!(r.serial, b"hiabc");
}

/// `mov al, v; out dx, al`
fn out_dx_byte(v: u8) -> Vec<u8> {
    vec![0xb0, v, 0xee]
}
/// `out 0x80, al`: a port no device has.
const OUT_UNASSIGNED: [u8; 2] = [0xe6, 0x80];
/// `mov dx, 0x3fb` (COM1's LCR)
const MOV_DX_LCR: [u8; 4] = [0x66, 0xba, 0xfb, 0x03];
/// `in al, dx; movzx ebx, al`
const IN_AL_DX_TO_EBX: [u8; 4] = [0xec, 0x0f, 0xb6, 0xd8];
/// `mov eax, ebx`
const MOV_EAX_EBX: [u8; 2] = [0x89, 0xd8];

#[test]
fn serial_bytes_between_exits_keep_their_order() {
    // COM1 data writes are coalesced by KVM where it can (no exit each); the VMM replays
    // them before it handles the next exit, so each exit's sink call brings exactly the
    // bytes written before it.
    let code = [
        MOV_DX_COM1.to_vec(),
        out_dx_byte(b'a'),
        out_dx_byte(b'b'),
        OUT_UNASSIGNED.to_vec(),
        out_dx_byte(b'c'),
        // mov esi, DATA; mov ecx, 3; rep outsb
        [&[0xbe][..], &(DATA as u32).to_le_bytes()].concat(),
        vec![0xb9, 3, 0, 0, 0, 0xf3, 0x6e],
        OUT_UNASSIGNED.to_vec(),
        out_dx_byte(b'g'),
        XOR_EAX.to_vec(),
        OUT_EXIT_EAX.to_vec(),
    ]
    .concat();
    let test = "serial_bytes_between_exits_keep_their_order";
    let Some((r, chunks)) = run_with_sink(test, &code, b"def", SHORT) else {
        return;
    };
    assert_eq!(r.exit, ExitReason::GuestExit(0));
    assert_eq!(r.serial, b"abcdefg");
    assert_eq!(r.stats.unassigned, 2, "{:?}", r.stats);
    assert_eq!(r.stats.total, r.stats.io, "{:?}", r.stats);
    assert_eq!(chunks.concat(), r.serial, "the sink saw the same bytes");
    if kvm_coalesces_pio() {
        // Three exits (two unassigned ports, the verdict); each delivered the bytes written
        // before it, and only those.
        assert_eq!((r.stats.io, r.stats.coalesced), (3, 7), "{:?}", r.stats);
        assert_eq!(chunks, [&b"ab"[..], b"cdef", b"g"]);
    } else {
        assert_eq!(r.stats.coalesced, 0, "{:?}", r.stats);
        assert!(r.stats.io >= 3 + 5, "{:?}", r.stats);
    }
}

#[test]
fn divisor_latch_write_is_not_serial_output() {
    // LCR.DLAB on; DLL = 3 through the data port; read DLL back into EBX; DLAB off (8N1);
    // one data byte; the divisor read back is the verdict. The DLL write and the data byte
    // go through KVM's coalesced ring; the LCR writes and the read exit, and the VMM replays
    // the ring before each, so the read sees the divisor and only 'Z' is output.
    let code = [
        MOV_DX_LCR.to_vec(),
        out_dx_byte(0x80),
        MOV_DX_COM1.to_vec(),
        out_dx_byte(0x03),
        IN_AL_DX_TO_EBX.to_vec(),
        MOV_DX_LCR.to_vec(),
        out_dx_byte(0x03),
        MOV_DX_COM1.to_vec(),
        out_dx_byte(b'Z'),
        MOV_EAX_EBX.to_vec(),
        OUT_EXIT_EAX.to_vec(),
    ]
    .concat();
    let test = "divisor_latch_write_is_not_serial_output";
    let Some(r) = run(test, &code, &[], SHORT) else {
        return;
    };
    assert_eq!(
        r.exit,
        ExitReason::GuestExit(3),
        "DLL reads back as written"
    );
    assert_eq!(r.serial, b"Z");
    if kvm_coalesces_pio() {
        // Four exits (two LCR writes, the read, the verdict); the divisor byte and the data
        // byte went through the ring.
        assert_eq!((r.stats.io, r.stats.coalesced), (4, 2), "{:?}", r.stats);
    } else {
        assert_eq!((r.stats.io, r.stats.coalesced), (6, 0), "{:?}", r.stats);
    }
}

#[test]
fn serial_bytes_before_a_crash_or_a_hang_are_kept() {
    // Bytes, then a triple fault (`ud2` without an IDT) or a spin until the timeout: no exit
    // follows the bytes but the one that ends the run.
    let ok = [MOV_DX_COM1.to_vec(), out_dx_byte(b'o'), out_dx_byte(b'k')].concat();
    let crash = [ok.clone(), vec![0x0f, 0x0b]].concat();
    let test = "serial_bytes_before_a_crash_or_a_hang_are_kept";
    let Some(r) = run(test, &crash, &[], SHORT) else {
        return;
    };
    assert!(matches!(r.exit, ExitReason::Shutdown { .. }), "{}", r.exit);
    assert_eq!(r.serial, b"ok");
    let hang = [ok, vec![0xeb, 0xfe]].concat();
    let r = run(test, &hang, &[], Duration::from_millis(300)).unwrap();
    assert!(matches!(r.exit, ExitReason::Timeout { .. }), "{}", r.exit);
    assert_eq!(r.serial, b"ok");
}

#[test]
fn unassigned_port_string_read_is_all_ones() {
    // mov edi, DATA; mov ecx, 4; mov dx, 0xe0; rep insb; mov eax, [DATA]; out 0xf4, eax
    let code = [
        &[0xbf][..],
        &(DATA as u32).to_le_bytes(),
        &[0xb9, 4, 0, 0, 0],
        &[0x66, 0xba, 0xe0, 0x00],
        &[0xf3, 0x6c],
        &[0xa1],
        &(DATA as u32).to_le_bytes(),
        &OUT_EXIT_EAX,
    ]
    .concat();
    let Some(r) = run(
        "unassigned_port_string_read_is_all_ones",
        &code,
        &[0; 4],
        SHORT,
    ) else {
        return;
    };
    assert_eq!(r.exit, ExitReason::GuestExit(u32::MAX));
    assert_eq!(r.stats.unassigned, 4, "one access per element");
}

#[test]
fn unassigned_mmio_reads_all_ones() {
    // mov eax, [0xff000000]; out 0xf4, eax
    let code = [&[0xa1][..], &0xff00_0000u32.to_le_bytes(), &OUT_EXIT_EAX].concat();
    let Some(r) = run("unassigned_mmio_reads_all_ones", &code, &[], SHORT) else {
        return;
    };
    assert_eq!(r.exit, ExitReason::GuestExit(u32::MAX));
    assert_eq!(r.stats.mmio, 1);
}

#[test]
fn hlt_with_interrupts_off_halts_forever() {
    let Some(r) = run("hlt_with_interrupts_off_halts_forever", &[0xf4], &[], SHORT) else {
        return;
    };
    assert_eq!(r.exit, ExitReason::HaltedForever { rip: ENTRY + 1 });
}

#[test]
fn spinning_guest_times_out_at_its_loop() {
    let timeout = Duration::from_millis(300);
    // jmp $
    let Some(r) = run(
        "spinning_guest_times_out_at_its_loop",
        &[0xeb, 0xfe],
        &[],
        timeout,
    ) else {
        return;
    };
    assert_eq!(r.exit, ExitReason::Timeout { rip: ENTRY });
    assert!(
        r.wall >= timeout && r.wall < timeout + Duration::from_millis(500),
        "{:?}",
        r.wall
    );
}

#[test]
fn exception_without_idt_is_a_triple_fault() {
    // ud2 with the reset IDT (base 0, zeros: no present gate) -> #NP -> #DF -> shutdown.
    let Some(r) = run(
        "exception_without_idt_is_a_triple_fault",
        &[0x0f, 0x0b],
        &[],
        SHORT,
    ) else {
        return;
    };
    assert!(
        matches!(r.exit, ExitReason::Shutdown { rip } if rip == ENTRY),
        "{}",
        r.exit
    );
}

#[test]
fn tdcall_without_tdx_is_reported_with_its_rip() {
    // TDCALL (66 0f 01 cc) outside a TD: this machine's KVM fails to emulate it (internal
    // error, DESIGN.md); KVM on hardware raises #UD, which without an IDT triple-faults.
    let Some(r) = run(
        "tdcall_without_tdx_is_reported_with_its_rip",
        &[0x66, 0x0f, 0x01, 0xcc],
        &[],
        SHORT,
    ) else {
        return;
    };
    match &r.exit {
        ExitReason::InternalError { rip, .. } | ExitReason::Shutdown { rip } => {
            assert_eq!(*rip, ENTRY, "{}", r.exit)
        }
        other => panic!("unexpected ending: {other}"),
    }
    eprintln!("TDCALL outside a TD ended as: {}", r.exit);
}

/// Runs `cpuid` for `leaf` and reports register `reg_to_eax` (a `mov eax, <reg>` encoding,
/// or nothing for EAX) as the verdict.
fn cpuid_reg(test: &str, leaf: u32, reg_to_eax: &[u8]) -> Option<u32> {
    // mov eax, leaf; xor ecx, ecx; cpuid; mov eax, <reg>; out 0xf4, eax
    let code = [
        mov_eax(leaf),
        vec![0x31, 0xc9, 0x0f, 0xa2],
        reg_to_eax.to_vec(),
        OUT_EXIT_EAX.to_vec(),
    ]
    .concat();
    let r = run(test, &code, &[], SHORT)?;
    match r.exit {
        ExitReason::GuestExit(v) => Some(v),
        other => panic!("{test}: {other}"),
    }
}

#[test]
fn guest_sees_the_configured_cpuid() {
    const MOV_EAX_ECX: [u8; 2] = [0x89, 0xc8];
    const MOV_EAX_EDX: [u8; 2] = [0x89, 0xd0];
    const MOV_EAX_EBX: [u8; 2] = [0x89, 0xd8];
    let test = "guest_sees_the_configured_cpuid";
    let Some(ecx) = cpuid_reg(test, 1, &MOV_EAX_ECX) else {
        return;
    };
    assert_ne!(ecx & (1 << 31), 0, "hypervisor bit: {ecx:#x}");
    assert_eq!(ecx & (1 << 21), 0, "x2APIC hidden: {ecx:#x}");
    assert_eq!(ecx & (1 << 24), 0, "TSC-deadline hidden: {ecx:#x}");
    let edx = cpuid_reg(test, 1, &MOV_EAX_EDX).unwrap();
    assert_ne!(edx & (1 << 9), 0, "APIC bit: {edx:#x}");
    let ebx = cpuid_reg(test, 0x4000_0000, &MOV_EAX_EBX).unwrap();
    assert_eq!(&ebx.to_le_bytes(), b"KVMK");
}

/// KVM_CAP_COALESCED_PIO, asked directly (the VMM uses the ring exactly when KVM has it).
fn kvm_coalesces_pio() -> bool {
    let kvm = kvm_ioctls::Kvm::new().expect("/dev/kvm opened by the run just made");
    kvm.create_vm()
        .expect("KVM_CREATE_VM")
        .check_extension(kvm_ioctls::Cap::CoalescedPio)
}

#[test]
fn simulated_platform_needs_the_trap_symbol() {
    if !common::kvm_or_skip("simulated_platform_needs_the_trap_symbol") {
        return;
    }
    // The tiny ELF has no symbol table, so there is no TDCALL / VMGEXIT to trap.
    let path = std::env::temp_dir().join(format!("vmm-tiny-{}-nosym.elf", std::process::id()));
    std::fs::write(&path, pvh_elf(&[0xf4], &[])).expect("write the test ELF");
    for (platform, symbol) in [
        (
            protocol::platform::PlatformKind::Tdx,
            "cvmprobe_tdcall_insn",
        ),
        (
            protocol::platform::PlatformKind::SevEs,
            "cvmprobe_vmgexit_insn",
        ),
    ] {
        let mut cfg = VmConfig::new(&path);
        cfg.mem_mib = 2;
        cfg.platform = platform;
        let e = vmm::run(&cfg, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains(&format!("has no symbol {symbol}")), "{e}");
    }
    std::fs::remove_file(&path).ok();
}
