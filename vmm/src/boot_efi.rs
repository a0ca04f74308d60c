//! The `efi-handoff` boot: the state UEFI firmware and `cvmprobe.efi` leave behind after
//! ExitBootServices, rebuilt without firmware, so the kernel's hand-off entry
//! (`kernel/src/boot/efi.rs`) runs under tdx-sim and sev-es-sim as it would in a TD or an
//! SEV-ES guest booted by TDVF / OVMF.
//!
//! What the VMM writes (all pure, in [`build`], tested without KVM):
//! - the kernel ELF at its physical addresses (as for PVH), its range typed `EfiLoaderCode`;
//! - "firmware" identity page tables in boot-services data: 2 MiB pages over the low 4 GiB,
//!   every table pointer and every page below the end of private memory with the encryption
//!   mask (sev-es-sim: `1 << AddressWidth::sev_cbit()`, as OVMF maps an SEV guest; none under
//!   tdx-sim and legacy), 4-level or, with [`HandoffOptions::la57`], 5-level as TDVF runs;
//! - a firmware GDT (64-bit code 0x38, data 0x30, as OVMF's), a firmware stack, and under
//!   sev-es-sim a "firmware GHCB" page whose GPA the GHCB MSR already holds at entry;
//! - a UEFI memory map (descriptor stride 48, as OVMF's) and the hand-off block and command
//!   line in loader data ([`protocol::efi`]);
//! - under tdx-sim a range typed `EfiUnacceptedMemoryType` with **no memslot behind it**: a
//!   guest that touched it would make a raw MMIO exit, which the sim turns into the end of the
//!   run (on hardware: a #VE, or the TD's end).
//!
//! The vCPU starts in 64-bit mode at the hand-off entry with RDI = the block's GPA,
//! interrupts off and an **empty IDT** (limit 0): any exception before the kernel installs its
//! own handlers is a triple fault, which proves no intercepted instruction runs before them.

use protocol::efi::{self, Handoff, MemoryDescriptor, mem_type};
use protocol::paging::{self, PTE_P, PTE_W};

/// Options of the hand-off rebuild.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandoffOptions {
    /// Firmware running with 5-level paging (CR4.LA57, as TDVF with GPAW 52). Needs a host
    /// whose KVM offers LA57 in CPUID.7.0:ECX\[16\].
    pub la57: bool,
}

/// The firmware area at the top of RAM: page tables, GDT, stack, GHCB (boot-services data),
/// then the loader's data. 2 MiB, 2 MiB aligned.
pub const FIRMWARE_AREA: u64 = 2 << 20;
/// Loader data at the end of the firmware area: hand-off block, memory map, command line.
pub const LOADER_AREA: u64 = 64 << 10;
/// Descriptor stride of the memory map (OVMF's `sizeof (EFI_MEMORY_DESCRIPTOR)` + 8).
pub const DESC_STRIDE: usize = 48;
/// Under tdx-sim, conventional memory ends here; the rest up to the firmware area is
/// unaccepted (TDVF accepts a prefix of RAM and reports the rest unaccepted).
pub const ACCEPTED_END: u64 = 16 << 20;
/// Smallest RAM for the hand-off boot: the accepted prefix and the firmware area.
pub const MIN_MEM: u64 = 32 << 20;
/// OVMF's flat selectors (OvmfPkg `LINEAR_CODE64_SEL` 0x38, `LINEAR_SEL` 0x30).
pub const SEL_CODE64: u16 = 0x38;
/// See [`SEL_CODE64`].
pub const SEL_DATA: u16 = 0x30;
/// The local APIC page, reported as `EfiMemoryMappedIO` (as OVMF reports its MMIO ranges).
const LAPIC_PAGE: u64 = protocol::qemu_devices::LAPIC_BASE;

// Offsets in the firmware area.
const OFF_PML5: u64 = 0;
const OFF_PML4: u64 = 0x1000;
const OFF_PDPT: u64 = 0x2000;
const OFF_PD: u64 = 0x3000; // four tables
const OFF_GDT: u64 = 0x7000;
const OFF_GHCB: u64 = 0x8000;
const OFF_STACK_TOP: u64 = 0x20000;
// Offsets in the loader data.
const OFF_HANDOFF: u64 = 0;
const OFF_CMDLINE: u64 = 0x1000;
const CMDLINE_MAX: u64 = 0x1000;
const OFF_MEMMAP: u64 = 0x2000;

/// A rebuilt hand-off: what to write where, and the vCPU's entry state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoffs {
    /// Bytes to write into guest memory at a GPA.
    pub writes: Vec<(u64, Vec<u8>)>,
    /// RAM ranges that get a memslot: `[start, end)`.
    pub ram: Vec<(u64, u64)>,
    /// RIP: the hand-off entry's physical address.
    pub rip: u64,
    /// RSP: the firmware stack.
    pub rsp: u64,
    /// RDI: the hand-off block's GPA.
    pub rdi: u64,
    /// CR3.
    pub cr3: u64,
    /// Base of the firmware GDT (limit [`Handoffs::gdt_limit`]).
    pub gdt_base: u64,
    /// Limit of the firmware GDT.
    pub gdt_limit: u16,
    /// 5-level paging.
    pub la57: bool,
    /// The "firmware GHCB" page (sev-es-sim: the GHCB MSR's value at entry).
    pub firmware_ghcb: u64,
    /// The hand-off block as written.
    pub handoff: Handoff,
}

/// What [`build`] needs to know.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Bytes of RAM at GPA 0 (at least [`MIN_MEM`], 2 MiB aligned).
    pub mem_size: u64,
    /// The kernel's physical range `[start, end)` (`protocol::elf::load_range`).
    pub kernel: (u64, u64),
    /// The hand-off entry's physical address.
    pub entry: u64,
    /// The encryption mask (sev-es-sim's C-bit; 0 otherwise).
    pub enc_mask: u64,
    /// Leave `[ACCEPTED_END, firmware area)` unaccepted and without memory (tdx-sim).
    pub unaccepted: bool,
    /// 5-level paging.
    pub la57: bool,
}

/// The hand-off state for `layout` with command line `cmdline`.
pub fn build(layout: &Layout, cmdline: &[u8]) -> Result<Handoffs, String> {
    let m = layout.mem_size;
    if m < MIN_MEM || !m.is_multiple_of(FIRMWARE_AREA) {
        return Err(format!(
            "the efi-handoff boot needs at least {} MiB of RAM in 2 MiB steps (got {} MiB)",
            MIN_MEM >> 20,
            m >> 20
        ));
    }
    if cmdline.len() as u64 > CMDLINE_MAX {
        return Err(format!(
            "the command line is {} bytes; the hand-off has room for {CMDLINE_MAX}",
            cmdline.len()
        ));
    }
    let fw = m - FIRMWARE_AREA;
    let loader = m - LOADER_AREA;
    let (k0, k1) = layout.kernel;
    if k0 < crate::layout::HIMEM_START || k1 > ACCEPTED_END {
        return Err(format!(
            "the kernel's physical range {k0:#x}..{k1:#x} is outside 1 MiB..{ACCEPTED_END:#x}"
        ));
    }
    use mem_type::*;
    let mut descs = vec![
        (CONVENTIONAL, 0, 0x9f000),
        (BOOT_SERVICES_DATA, 0x9f000, 0xa0000),
        (LOADER_CODE, k0, k1),
    ];
    if layout.unaccepted {
        descs.push((CONVENTIONAL, k1, ACCEPTED_END));
        descs.push((UNACCEPTED, ACCEPTED_END, fw));
    } else {
        descs.push((CONVENTIONAL, k1, fw));
    }
    descs.push((BOOT_SERVICES_DATA, fw, loader));
    descs.push((LOADER_DATA, loader, m));
    descs.push((MMIO, LAPIC_PAGE, LAPIC_PAGE + 0x1000));
    let mut memmap = vec![0u8; descs.len() * DESC_STRIDE];
    for (i, &(ty, start, end)) in descs.iter().enumerate() {
        let d = MemoryDescriptor {
            ty,
            phys_start: start,
            pages: (end - start) / efi::PAGE_SIZE,
            ..Default::default()
        };
        memmap[i * DESC_STRIDE..][..efi::DESCRIPTOR_SIZE].copy_from_slice(&d.to_bytes());
    }
    let private_end = efi::private_end(&memmap, DESC_STRIDE);
    let mask = layout.enc_mask;

    // Firmware page tables.
    let mut tables = vec![0u8; (OFF_PD + 0x4000) as usize];
    let mut put = |off: u64, v: u64| {
        tables[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes());
    };
    for i in 0..2048u64 {
        put(
            OFF_PD + i * 8,
            paging::identity_pd_entry(i, mask, private_end),
        );
    }
    for i in 0..4u64 {
        put(
            OFF_PDPT + i * 8,
            (fw + OFF_PD + i * 0x1000) | PTE_P | PTE_W | mask,
        );
    }
    put(OFF_PML4, (fw + OFF_PDPT) | PTE_P | PTE_W | mask);
    put(OFF_PML5, (fw + OFF_PML4) | PTE_P | PTE_W | mask);
    let cr3 = (fw + if layout.la57 { OFF_PML5 } else { OFF_PML4 }) | mask;

    // OVMF's GDT: null, ..., 0x30 flat data, 0x38 64-bit code.
    let mut gdt = vec![0u8; 0x40];
    gdt[SEL_DATA as usize..][..8].copy_from_slice(&0x00cf_9200_0000_ffffu64.to_le_bytes());
    gdt[SEL_CODE64 as usize..][..8].copy_from_slice(&0x00af_9a00_0000_ffffu64.to_le_bytes());

    let handoff = Handoff {
        magic: efi::MAGIC,
        version: efi::VERSION,
        size: core::mem::size_of::<Handoff>() as u32,
        enc_mask: mask,
        private_end,
        memmap_gpa: loader + OFF_MEMMAP,
        memmap_size: memmap.len() as u64,
        desc_size: DESC_STRIDE as u64,
        desc_version: efi::DESCRIPTOR_VERSION,
        flags: if layout.la57 { efi::FLAG_LA57 } else { 0 },
        cmdline_gpa: loader + OFF_CMDLINE,
        cmdline_len: cmdline.len() as u64,
    };
    let mut ram = vec![(0, m)];
    if layout.unaccepted {
        ram = vec![(0, ACCEPTED_END), (fw, m)];
    }
    Ok(Handoffs {
        writes: vec![
            (fw, tables),
            (fw + OFF_GDT, gdt.clone()),
            (loader + OFF_HANDOFF, handoff.to_bytes().to_vec()),
            (loader + OFF_CMDLINE, cmdline.to_vec()),
            (loader + OFF_MEMMAP, memmap),
        ],
        ram,
        rip: layout.entry,
        // As after a CALL into the loader's jump: 16-byte aligned minus the return address.
        rsp: fw + OFF_STACK_TOP - 8,
        rdi: loader + OFF_HANDOFF,
        cr3,
        gdt_base: fw + OFF_GDT,
        gdt_limit: (gdt.len() - 1) as u16,
        la57: layout.la57,
        firmware_ghcb: fw + OFF_GHCB,
        handoff,
    })
}

/// CPUID.7.0:ECX bit 16: LA57 (Intel SDM vol. 2A, CPUID).
const CPUID_7_ECX_LA57: u32 = 1 << 16;

/// Builds the hand-off for `cfg` (platform, width, options) and the kernel ELF `elf`, makes
/// the guest memory (with the unaccepted hole under tdx-sim) and writes everything into it.
pub(crate) fn prepare(
    cfg: &crate::VmConfig,
    elf: &[u8],
    supported: &kvm_bindings::CpuId,
    width: crate::sim::address::AddressWidth,
    mem_size: u64,
    cmdline: &linux_loader::cmdline::Cmdline,
    opts: HandoffOptions,
) -> Result<(vm_memory::GuestMemoryMmap, Handoffs), crate::VmmError> {
    use crate::VmmError;
    use protocol::platform::PlatformKind;
    use vm_memory::{Bytes, GuestAddress};
    let bad = |what: String| VmmError::Config(format!("kernel {}: {what}", cfg.kernel.display()));
    let range = protocol::elf::load_range(elf).map_err(|e| bad(format!("{e:?}")))?;
    let sym = protocol::elf::symbol(elf, efi::ENTRY_SYMBOL)
        .map_err(|e| bad(format!("{e:?}")))?
        .ok_or_else(|| {
            bad(format!(
                "no symbol {} (the UEFI hand-off entry)",
                efi::ENTRY_SYMBOL
            ))
        })?;
    let entry = protocol::elf::phys_of(elf, sym)
        .map_err(|e| bad(format!("{e:?}")))?
        .ok_or_else(|| bad(format!("{} lies in no PT_LOAD segment", efi::ENTRY_SYMBOL)))?;
    if opts.la57 && crate::cpuid::lookup(supported, 7, 0)[2] & CPUID_7_ECX_LA57 == 0 {
        return Err(VmmError::Config(
            "efi-handoff with 5-level paging: this host's KVM offers no LA57 (CPUID.7.0:ECX[16])"
                .into(),
        ));
    }
    let layout = Layout {
        mem_size,
        kernel: range,
        entry,
        enc_mask: match cfg.platform {
            PlatformKind::SevEs => 1 << width.sev_cbit(),
            PlatformKind::Legacy | PlatformKind::Tdx => 0,
        },
        unaccepted: cfg.platform == PlatformKind::Tdx,
        la57: opts.la57,
    };
    let line = cmdline
        .as_cstring()
        .map_err(|e| VmmError::Cmdline(e.to_string()))?;
    let h = build(&layout, line.as_bytes()).map_err(VmmError::Config)?;
    let mem = crate::guest_memory(&h.ram, cfg.mem_mib)?;
    let write = |gpa: u64, b: &[u8]| {
        mem.write_slice(b, GuestAddress(gpa))
            .map_err(|e| VmmError::GuestMemory {
                mib: cfg.mem_mib,
                reason: format!("writing {} bytes at {gpa:#x}: {e}", b.len()),
            })
    };
    for s in protocol::elf::load_segments(elf).map_err(|e| bad(format!("{e:?}")))? {
        write(
            s.paddr,
            &elf[s.offset as usize..(s.offset + s.filesz) as usize],
        )?;
    }
    for (gpa, b) in &h.writes {
        write(*gpa, b)?;
    }
    Ok((mem, h))
}

/// CR0: PE, MP, ET, NE, WP, PG (OVMF's 0x80010033).
pub const CR0_FIRMWARE: u64 = 0x8001_0033;
/// CR4: PAE, OSFXSR, OSXMMEXCPT (Intel SDM vol. 3A 2.5).
pub const CR4_FIRMWARE: u64 = (1 << 5) | (1 << 9) | (1 << 10);
/// CR4.LA57.
pub const CR4_LA57: u64 = protocol::x86::cr::CR4_LA57;
/// EFER: LME | LMA.
pub const EFER_LONG: u64 = protocol::x86::efer::LME | protocol::x86::efer::LMA;

/// The special registers at the hand-off: 64-bit mode with the firmware's tables, GDT and an
/// empty IDT; KVM's other reset state (APIC base, CR8) kept from `base`.
pub fn sregs(h: &Handoffs, base: kvm_bindings::kvm_sregs) -> kvm_bindings::kvm_sregs {
    use crate::boot::{SEG_TYPE_CODE, SEG_TYPE_DATA, SEG_TYPE_TSS32_BUSY, flat};
    use kvm_bindings::{kvm_dtable, kvm_segment};
    let data = flat(SEL_DATA, SEG_TYPE_DATA);
    kvm_bindings::kvm_sregs {
        cs: kvm_segment {
            l: 1,
            db: 0,
            ..flat(SEL_CODE64, SEG_TYPE_CODE)
        },
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: kvm_segment {
            limit: 0x67,
            s: 0,
            db: 0,
            g: 0,
            ..flat(0, SEG_TYPE_TSS32_BUSY)
        },
        gdt: kvm_dtable {
            base: h.gdt_base,
            limit: h.gdt_limit,
            padding: [0; 3],
        },
        idt: kvm_dtable {
            base: 0,
            limit: 0,
            padding: [0; 3],
        },
        cr0: CR0_FIRMWARE,
        cr3: h.cr3,
        cr4: CR4_FIRMWARE | if h.la57 { CR4_LA57 } else { 0 },
        efer: EFER_LONG,
        ..base
    }
}

/// The general registers at the hand-off: RIP at the entry, RDI = the block, the firmware
/// stack, interrupts off.
pub fn regs(h: &Handoffs) -> kvm_bindings::kvm_regs {
    kvm_bindings::kvm_regs {
        rip: h.rip,
        rdi: h.rdi,
        rsp: h.rsp,
        rflags: crate::boot::RFLAGS_RESERVED,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::efi::RegionKind;
    use std::collections::HashMap;

    fn layout(mask: u64, unaccepted: bool, la57: bool) -> Layout {
        Layout {
            mem_size: 64 << 20,
            kernel: (0x10_0000, 0x17_0000),
            entry: 0x10_1000,
            enc_mask: mask,
            unaccepted,
            la57,
        }
    }

    /// Guest memory as the writes leave it, read 8 bytes at a time.
    fn memory(h: &Handoffs) -> HashMap<u64, u64> {
        let mut m = HashMap::new();
        for (gpa, bytes) in &h.writes {
            for (i, c) in bytes.as_chunks::<8>().0.iter().enumerate() {
                m.insert(gpa + 8 * i as u64, u64::from_le_bytes(*c));
            }
        }
        m
    }

    #[test]
    fn firmware_tables_map_private_ram_with_the_cbit_at_every_position() {
        for bit in [47u32, 51, 38, 45] {
            for la57 in [false, true] {
                let mask = 1u64 << bit;
                let h = build(&layout(mask, false, la57), b"a=1").unwrap();
                let mem = memory(&h);
                let levels = if la57 { 5 } else { 4 };
                let walk = |va: u64| {
                    paging::walk(
                        &mut |pa| mem.get(&pa).copied(),
                        h.cr3,
                        levels,
                        va,
                        paging::table_addr_mask(64 << 20),
                    )
                    .unwrap()
                };
                // The kernel, the firmware area and the last RAM page: private.
                for va in [0x10_1000, (64 << 20) - 0x1000, 0x1234] {
                    let leaf = walk(va);
                    assert_eq!(
                        paging::encryption_mask(leaf, va),
                        Ok(mask),
                        "{va:#x} bit {bit}"
                    );
                }
                // MMIO above RAM: shared.
                let leaf = walk(0xfee0_0000);
                assert_eq!(leaf.entry & mask, 0);
                assert_eq!(h.cr3 & mask, mask);
                assert_eq!(h.handoff.enc_mask, mask);
                assert_eq!(h.handoff.private_end, 64 << 20);
            }
        }
        let h = build(&layout(0, false, false), b"").unwrap();
        let mem = memory(&h);
        let leaf = paging::walk(
            &mut |pa| mem.get(&pa).copied(),
            h.cr3,
            4,
            0x10_1000,
            paging::PTE_ADDR,
        )
        .unwrap();
        assert_eq!(paging::encryption_mask(leaf, 0x10_1000), Ok(0));
    }

    #[test]
    fn the_memory_map_offers_only_accepted_free_ram() {
        let h = build(&layout(0, true, false), b"cvmprobe.filter=io").unwrap();
        let mem: Vec<u8> = h
            .writes
            .iter()
            .find(|(g, _)| *g == h.handoff.memmap_gpa)
            .unwrap()
            .1
            .clone();
        assert_eq!(h.handoff.check(), Ok(()));
        let regions: Vec<_> = efi::regions(&mem, DESC_STRIDE).collect();
        let kind_at = |gpa: u64| {
            regions
                .iter()
                .find(|r| r.base <= gpa && gpa < r.base + r.len)
                .map(|r| r.kind)
        };
        assert_eq!(kind_at(0x10_0000), Some(RegionKind::RamInUse), "the kernel");
        assert_eq!(kind_at(0x20_0000), Some(RegionKind::Ram));
        assert_eq!(
            kind_at(ACCEPTED_END),
            Some(RegionKind::Reserved),
            "unaccepted"
        );
        assert_eq!(kind_at(h.handoff.memmap_gpa), Some(RegionKind::RamInUse));
        assert_eq!(
            kind_at(h.rsp),
            Some(RegionKind::RamInUse),
            "the firmware stack"
        );
        assert_eq!(kind_at(LAPIC_PAGE), Some(RegionKind::Reserved));
        // No memslot behind unaccepted memory; everything the VMM writes has one.
        assert_eq!(h.ram, vec![(0, ACCEPTED_END), ((62 << 20), 64 << 20)]);
        for (gpa, b) in &h.writes {
            assert!(
                h.ram
                    .iter()
                    .any(|&(s, e)| s <= *gpa && gpa + b.len() as u64 <= e),
                "{gpa:#x}"
            );
        }
    }

    #[test]
    fn small_or_odd_memory_is_refused() {
        let mut l = layout(0, false, false);
        l.mem_size = 16 << 20;
        assert!(build(&l, b"").unwrap_err().contains("at least 32 MiB"));
        l.mem_size = (64 << 20) + 4096;
        assert!(build(&l, b"").is_err());
        assert!(build(&layout(0, false, false), &[b'a'; 5000]).is_err());
    }

    #[test]
    fn entry_state_is_long_mode_with_an_empty_idt() {
        let h = build(&layout(1 << 47, false, true), b"").unwrap();
        let s = sregs(&h, kvm_bindings::kvm_sregs::default());
        assert_eq!((s.idt.base, s.idt.limit), (0, 0));
        assert_eq!((s.cs.l, s.cs.db, s.cs.selector), (1, 0, SEL_CODE64));
        assert_eq!(s.efer, EFER_LONG);
        assert_eq!(s.cr4 & CR4_LA57, CR4_LA57);
        assert_eq!(s.cr3, h.cr3);
        let r = regs(&h);
        assert_eq!((r.rip, r.rdi, r.rflags & (1 << 9)), (0x10_1000, h.rdi, 0));
        assert_eq!(r.rsp % 16, 8);
    }

    /// Starts a vCPU in the hand-off state with `code` at the entry; `None` without KVM.
    fn run_at_entry(code: &[u8]) -> Option<crate::ExitReason> {
        use crate::cpuid::Brand;
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        use vm_memory::{Bytes, GuestAddress};
        let kvm = match kvm_ioctls::Kvm::new() {
            Ok(k) => k,
            Err(e) if std::env::var("CVMPROBE_NO_KVM").as_deref() == Ok("1") => {
                eprintln!("hand-off entry state: skipped: {e} (CVMPROBE_NO_KVM=1)");
                return None;
            }
            Err(e) => panic!("KVM is needed: {e} (CVMPROBE_NO_KVM=1 skips)"),
        };
        let h = build(&layout(0, false, false), b"").unwrap();
        let mem = crate::guest_memory(&h.ram, 64).unwrap();
        for (gpa, b) in &h.writes {
            mem.write_slice(b, GuestAddress(*gpa)).unwrap();
        }
        mem.write_slice(code, GuestAddress(h.rip)).unwrap();
        let vm = kvm.create_vm().unwrap();
        vm.set_tss_address(crate::TSS_ADDRESS).unwrap();
        crate::map_memory(&vm, &mem, &[0]).unwrap();
        let supported = crate::supported_cpuid(&kvm).unwrap();
        let width =
            crate::sim::address::AddressWidth::new(crate::cpuid::phys_bits(&supported)).unwrap();
        let mut vcpu = crate::vcpu::Vcpu::create(
            &vm,
            supported,
            crate::vcpu::VcpuSetup {
                entry: h.rip,
                brand: &Brand::for_run(),
                platform: protocol::platform::PlatformKind::Legacy,
                width,
                forced_width: false,
                breakpoint: None,
                handoff: Some(&h),
            },
        )
        .unwrap();
        let mut host = crate::platform::Host::Legacy;
        let mut machine = crate::machine::Machine::legacy(mem.clone(), 1);
        let mut stats = crate::ExitStats::default();
        crate::kick::install().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let watchdog =
            crate::kick::Watchdog::start(std::time::Duration::from_secs(10), stop.clone()).unwrap();
        let exit = crate::vcpu::run(
            &mut vcpu,
            &mut machine,
            &mut host,
            &mut crate::memslot::Scenario::default(),
            &mut stats,
            &stop,
            &mut |_| {},
        )
        .unwrap();
        drop(watchdog);
        Some(exit)
    }

    /// The hand-off state is usable (64-bit code at the entry runs: the block's GPA in RDI
    /// reaches the exit port), and its IDT is empty: an exception at the entry cannot be
    /// delivered, so the VM shuts down. That is what makes the kernel's runs under it proof that
    /// nothing faults before the kernel's own IDT.
    #[test]
    fn the_entry_state_runs_64_bit_code_and_has_no_exception_handler() {
        // mov eax, edi (low bits of the block's GPA, nonzero); out 0xf4, eax
        let Some(exit) = run_at_entry(&[0x89, 0xf8, 0xe7, 0xf4]) else {
            return;
        };
        let h = build(&layout(0, false, false), b"").unwrap();
        assert_eq!(exit, crate::ExitReason::GuestExit(h.rdi as u32));
        // ud2
        let exit = run_at_entry(&[0x0f, 0x0b]).unwrap();
        assert!(
            matches!(exit, crate::ExitReason::Shutdown { .. }),
            "an exception with an empty IDT is a triple fault: {exit}"
        );
    }
}
