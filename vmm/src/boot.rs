//! PVH boot: the kernel ELF into guest memory (linux-loader), the start info, memory map and
//! command line (linux-loader's PVH configurator and cmdline helpers), and the vCPU state the
//! PVH ABI prescribes at entry (written here: no rust-vmm crate sets up x86 registers).

use crate::VmmError;
use crate::cpuid::Brand;
use crate::layout::{self, CMDLINE_CAPACITY, CMDLINE_GPA, HIMEM_START, MEMMAP_GPA, START_INFO_GPA};
use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::hvm_start_info;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{KernelLoader, load_cmdline};
use std::fs::File;
use std::path::Path;
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// `hvm_start_info.magic` (Xen public/arch-x86/hvm/start_info.h, XEN_HVM_START_MAGIC_VALUE).
const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// `hvm_start_info.version`: 1 has the memory map fields (QEMU passes 1 too).
const HVM_START_INFO_VERSION: u32 = 1;

/// Loads the kernel ELF at its physical addresses and returns its PVH entry point.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<u64, VmmError> {
    let mut file = File::open(path).map_err(|source| VmmError::KernelOpen {
        path: path.to_owned(),
        source,
    })?;
    // No kernel offset: segments go to their p_paddr, and linux-loader reads the PVH note
    // only in that case. The entry must lie in high memory.
    let loaded =
        Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START))).map_err(|source| {
            VmmError::KernelLoad {
                path: path.to_owned(),
                source,
            }
        })?;
    match loaded.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(entry) => Ok(entry.0),
        PvhBootCapability::PvhEntryNotPresent | PvhBootCapability::PvhEntryIgnored => {
            Err(VmmError::NoPvhNote {
                path: path.to_owned(),
            })
        }
    }
}

/// The command line the guest gets: the configured one plus `cvmprobe.brand=` for this run's
/// brand string (appended, so it wins over any earlier value: the last key counts), and on a
/// simulated platform `cvmprobe.sim_phys_bits=` with the vCPU's width first (the declaration
/// that lets the guest accept a sim's non-architectural values, `protocol::cmdline`).
pub fn cmdline(base: &str, brand: &Brand, sim_phys_bits: Option<u8>) -> Result<Cmdline, VmmError> {
    // The declaration goes first, so a test can override it from the configured command line
    // (the last occurrence of a key wins) and see the guest refuse what a real TD would.
    let line = match sim_phys_bits {
        Some(bits) => format!("{}={bits} {base}", protocol::cmdline::KEY_SIM_PHYS_BITS),
        None => base.to_owned(),
    };
    let mut cl = Cmdline::try_from(line.trim_end(), CMDLINE_CAPACITY)
        .map_err(|e| VmmError::Cmdline(format!("{e} (in {base:?})")))?;
    cl.insert(protocol::cmdline::KEY_BRAND, &brand.cmdline_value())
        .map_err(|e| VmmError::Cmdline(e.to_string()))?;
    Ok(cl)
}

/// Writes the command line, the memory map and `hvm_start_info` to their places in the
/// boot-data block (see [`crate::layout`]).
pub fn write_boot_info(mem: &GuestMemoryMmap, mem_size: u64, cl: &Cmdline) -> Result<(), VmmError> {
    load_cmdline(mem, GuestAddress(CMDLINE_GPA), cl)
        .map_err(|e| VmmError::Cmdline(e.to_string()))?;
    let memmap = layout::memmap(mem_size);
    let start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: HVM_START_INFO_VERSION,
        cmdline_paddr: CMDLINE_GPA,
        memmap_paddr: MEMMAP_GPA,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    let mut params = BootParams::new(&start_info, GuestAddress(START_INFO_GPA));
    params.set_sections(&memmap, GuestAddress(MEMMAP_GPA));
    PvhBootConfigurator::write_bootparams(&params, mem)?;
    Ok(())
}

/// CR0.PE: protected mode (Intel SDM vol. 3A, 2.5).
const CR0_PE: u64 = 1 << 0;
/// CR0.ET: extension type, hardwired to 1 on modern CPUs.
const CR0_ET: u64 = 1 << 4;
/// RFLAGS bit 1 is reserved and always 1; everything else (IF, TF, VM) clear at entry.
pub(crate) const RFLAGS_RESERVED: u64 = 1 << 1;
/// Code segment type 0xb: execute/read, accessed (SDM 3.4.5.1, table 3-1).
pub(crate) const SEG_TYPE_CODE: u8 = 0xb;
/// Data segment type 0x3: read/write, accessed.
pub(crate) const SEG_TYPE_DATA: u8 = 0x3;
/// System segment type 0xb: 32-bit TSS (busy) (SDM table 3-2).
pub(crate) const SEG_TYPE_TSS32_BUSY: u8 = 0xb;
/// Selectors the flat segments pretend to come from (the PVH ABI leaves them unspecified).
const SEL_CODE: u16 = 0x08;
const SEL_DATA: u16 = 0x10;
const SEL_TSS: u16 = 0x18;

/// A flat 4 GiB ring-0 segment of `type_` (32-bit: D/B set, L clear).
pub(crate) fn flat(selector: u16, type_: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Special registers for the PVH entry (Xen docs/misc/pvh.pandoc): 32-bit protected mode,
/// paging off, CS a flat 32-bit code segment, DS/ES/SS (and FS/GS) flat 32-bit data, TR a
/// 32-bit TSS with base 0 and limit 0x67, CR4 and EFER clear. The rest of `base` (KVM's
/// reset state: APIC base, CR8, descriptor tables) is kept.
pub fn pvh_sregs(base: kvm_sregs) -> kvm_sregs {
    let data = flat(SEL_DATA, SEG_TYPE_DATA);
    kvm_sregs {
        cs: flat(SEL_CODE, SEG_TYPE_CODE),
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: kvm_segment {
            limit: 0x67,
            selector: SEL_TSS,
            type_: SEG_TYPE_TSS32_BUSY,
            s: 0,
            db: 0,
            g: 0,
            ..flat(SEL_TSS, SEG_TYPE_TSS32_BUSY)
        },
        cr0: CR0_PE | CR0_ET,
        cr3: 0,
        cr4: 0,
        efer: 0,
        ..base
    }
}

/// General registers for the PVH entry: RIP at the entry point, EBX = GPA of the start info.
pub fn pvh_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rbx: START_INFO_GPA,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress};

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap()
    }

    /// A minimal static x86-64 ELF: one PT_LOAD of 16 bytes at 1 MiB, and optionally a
    /// PT_NOTE with a PVH entry note pointing at `pvh_entry`.
    fn tiny_elf(pvh_entry: Option<u32>) -> Vec<u8> {
        const EHDR: usize = 64;
        const PHDR: usize = 56;
        let nph = if pvh_entry.is_some() { 2 } else { 1 };
        let payload = EHDR + PHDR * nph;
        let mut f = vec![0u8; payload];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little-endian
        f[6] = 1; // EV_CURRENT
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&0x10_0000u64.to_le_bytes()); // e_entry
        f[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
        f[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
        f[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
        f[56..58].copy_from_slice(&(nph as u16).to_le_bytes());
        let code_off = f.len() as u64;
        f.extend_from_slice(&[0xf4; 16]); // hlt
        let mut phdr = |i: usize, p_type: u32, off: u64, addr: u64, size: u64| {
            let p = &mut f[EHDR + i * PHDR..][..PHDR];
            p[0..4].copy_from_slice(&p_type.to_le_bytes());
            p[8..16].copy_from_slice(&off.to_le_bytes());
            p[16..24].copy_from_slice(&addr.to_le_bytes());
            p[24..32].copy_from_slice(&addr.to_le_bytes());
            p[32..40].copy_from_slice(&size.to_le_bytes());
            p[40..48].copy_from_slice(&size.to_le_bytes());
        };
        phdr(0, 1, code_off, 0x10_0000, 16); // PT_LOAD
        if let Some(entry) = pvh_entry {
            let note_off = code_off + 16;
            phdr(1, 4, note_off, 0, 24); // PT_NOTE
            let mut note = Vec::new();
            note.extend_from_slice(&4u32.to_le_bytes()); // namesz
            note.extend_from_slice(&8u32.to_le_bytes()); // descsz
            note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
            note.extend_from_slice(b"Xen\0");
            note.extend_from_slice(&u64::from(entry).to_le_bytes());
            f.extend_from_slice(&note);
        }
        f
    }

    fn write_tmp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("vmm-boot-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn pvh_note_gives_the_entry() {
        let p = write_tmp("pvh", &tiny_elf(Some(0x10_0004)));
        let m = mem();
        assert_eq!(load_kernel(&m, &p).unwrap(), 0x10_0004);
        assert_eq!(m.read_obj::<u8>(GuestAddress(0x10_0000)).unwrap(), 0xf4);
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn elf_without_pvh_note_is_refused() {
        let p = write_tmp("nonote", &tiny_elf(None));
        let e = load_kernel(&mem(), &p).unwrap_err();
        assert!(matches!(e, VmmError::NoPvhNote { .. }), "{e}");
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn garbage_and_missing_files_are_named() {
        let p = write_tmp(
            "garbage",
            b"not an elf at all, not even close....................................",
        );
        let e = load_kernel(&mem(), &p).unwrap_err();
        assert!(matches!(e, VmmError::KernelLoad { .. }), "{e}");
        assert!(e.to_string().contains("garbage"), "{e}");
        std::fs::remove_file(p).ok();
        let e = load_kernel(&mem(), Path::new("/nonexistent/kernel")).unwrap_err();
        assert!(matches!(e, VmmError::KernelOpen { .. }), "{e}");
    }

    #[test]
    fn boot_info_is_where_the_start_info_says() {
        let m = mem();
        let brand = Brand::new("cvmprobe test");
        let cl = cmdline("cvmprobe.filter=cpuid", &brand, None).unwrap();
        write_boot_info(&m, 4 << 20, &cl).unwrap();
        let si: hvm_start_info = m.read_obj(GuestAddress(START_INFO_GPA)).unwrap();
        assert_eq!(si.magic, XEN_HVM_START_MAGIC_VALUE);
        assert_eq!(si.memmap_entries, 3);
        let mut line = vec![0u8; 64];
        m.read_slice(&mut line, GuestAddress(si.cmdline_paddr))
            .unwrap();
        let line = std::ffi::CStr::from_bytes_until_nul(&line)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(line, "cvmprobe.filter=cpuid cvmprobe.brand=cvmprobe_test");
        let e: linux_loader::loader::elf::start_info::hvm_memmap_table_entry =
            m.read_obj(GuestAddress(si.memmap_paddr + 2 * 24)).unwrap();
        assert_eq!(
            (e.addr, e.size, e.type_),
            (HIMEM_START, (4 << 20) - HIMEM_START, 1)
        );
    }

    #[test]
    fn empty_cmdline_still_gets_the_brand() {
        let cl = cmdline("", &Brand::new("b c"), None).unwrap();
        assert_eq!(
            cl.as_cstring().unwrap().to_str().unwrap(),
            "cvmprobe.brand=b_c"
        );
    }

    #[test]
    fn a_simulated_platform_declares_its_width() {
        let cl = cmdline("cvmprobe.platform=tdx", &Brand::new("b"), Some(46)).unwrap();
        assert_eq!(
            cl.as_cstring().unwrap().to_str().unwrap(),
            "cvmprobe.sim_phys_bits=46 cvmprobe.platform=tdx cvmprobe.brand=b"
        );
    }

    #[test]
    fn entry_state_follows_the_pvh_abi() {
        let s = pvh_sregs(kvm_sregs::default());
        assert_eq!(s.cr0, CR0_PE | CR0_ET);
        assert_eq!((s.cr4, s.efer), (0, 0));
        assert_eq!(
            (s.cs.base, s.cs.limit, s.cs.db, s.cs.l),
            (0, 0xffff_ffff, 1, 0)
        );
        assert_eq!(
            (s.ss.base, s.ss.limit, s.ss.type_),
            (0, 0xffff_ffff, SEG_TYPE_DATA)
        );
        assert_eq!(
            (s.tr.limit, s.tr.type_, s.tr.s),
            (0x67, SEG_TYPE_TSS32_BUSY, 0)
        );
        let r = pvh_regs(0x10_1000);
        assert_eq!((r.rip, r.rbx, r.rflags), (0x10_1000, START_INFO_GPA, 0x2));
    }
}
