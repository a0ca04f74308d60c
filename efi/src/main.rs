//! `cvmprobe.efi`: the UEFI application that boots the cvmprobe kernel under firmware: OVMF on
//! a plain VM, TDVF in a TD, the SEV build of OVMF in an SEV-ES guest. QEMU starts confidential
//! guests only through firmware, so this is how the payload reaches a real TDX or SEV-ES host.
//!
//! Before ExitBootServices, with the firmware's help (its #VE/#VC handlers serve anything
//! intercepted here):
//! 1. the command line: the load options (UCS-2; QEMU's `-append` fills them through OVMF), or
//!    when there are none (a firmware boot entry) the first line of `cmdline.txt` next to this
//!    image on the ESP;
//! 2. the kernel ELF embedded in this image: pages allocated at exactly its physical addresses
//!    (`AllocatePages(AllocateAddress)`, type `EfiLoaderCode`: the firmware may map loader
//!    *data* non-executable, and the hand-off entry runs there under the firmware's tables),
//!    segments copied, BSS zeroed; a clear message on the console when the range is taken or
//!    unaccepted (never `EfiUnacceptedMemoryType`: only pages the firmware hands out);
//! 3. the encryption mask from the firmware's own page tables: a walk of CR3 for this image's
//!    own code address (identity map), whose leaf holds the C-bit on SEV and nothing on TDX or
//!    a plain VM (`protocol::paging::encryption_mask`), cross-checked with CPUID 0x8000001F
//!    when set;
//! 4. ExitBootServices (nothing of the firmware is used after it: no console, no allocator);
//!    then the final memory map and the hand-off block ([`protocol::efi::Handoff`]) are written
//!    to loader data below 4 GiB, and it jumps, interrupts off, to the kernel's hand-off entry
//!    with RDI = the block's GPA. No intercepted instruction runs after ExitBootServices.
#![no_std]
#![no_main]

use core::fmt::Write;
use protocol::{efi, elf, paging};
use uefi::boot::{self, AllocateType, MemoryType};
use uefi::mem::memory_map::MemoryMap;
use uefi::prelude::*;
use uefi::proto::device_path::{DeviceSubType, DeviceType};
use uefi::proto::loaded_image::LoadedImage;
use uefi::proto::media::file::{File, FileAttribute, FileMode};

/// The kernel ELF, embedded by the root build.rs (`CVMPROBE_KERNEL_ELF`).
static KERNEL: &[u8] = include_bytes!(env!("CVMPROBE_KERNEL_ELF"));

/// Pages of loader data for the hand-off: the block, the command line, the memory map.
const HANDOFF_PAGES: usize = 32;
/// Offsets in that area.
const OFF_BLOCK: usize = 0;
const OFF_CMDLINE: usize = 0x1000;
const CMDLINE_MAX: usize = 0x1000;
const OFF_MEMMAP: usize = 0x2000;
/// Below 4 GiB: the kernel reads the hand-off through its identity map of the low 4 GiB.
const BELOW_4G: u64 = efi::FOUR_GIB - 1;
/// CR4.LA57 (Intel SDM vol. 3A 2.5).
const CR4_LA57: u64 = 1 << 12;
/// CPUID 0x80000000: the highest extended leaf; 0x8000001F: AMD memory encryption (AMD APM
/// vol. 3 E.4.17: EBX\[5:0\] = C-bit position).
const CPUID_EXT_MAX: u32 = 0x8000_0000;

/// Writes to the firmware's console (before ExitBootServices only).
fn say(args: core::fmt::Arguments<'_>) {
    uefi::system::with_stdout(|out| {
        let _ = out.write_str("cvmprobe.efi: ");
        let _ = out.write_fmt(args);
        let _ = out.write_str("\r\n");
    });
}

#[entry]
fn main() -> Status {
    match load() {
        Ok(never) => never,
        Err(status) => status,
    }
}

/// Everything up to the jump; an error was already said on the console.
fn load() -> Result<core::convert::Infallible, Status> {
    // 1. The command line.
    let mut cmdline = [0u8; CMDLINE_MAX];
    let (cmdline_len, from_file) = command_line(&mut cmdline);

    // 2. The kernel.
    let fail = |what: &str| {
        say(format_args!("the embedded kernel ELF is unusable: {what}"));
        Status::LOAD_ERROR
    };
    let (start, end) = elf::load_range(KERNEL).map_err(|_| fail("no PT_LOAD segments"))?;
    let sym = elf::symbol(KERNEL, efi::ENTRY_SYMBOL)
        .ok()
        .flatten()
        .ok_or_else(|| fail("no hand-off entry symbol"))?;
    let entry = elf::phys_of(KERNEL, sym)
        .ok()
        .flatten()
        .ok_or_else(|| fail("the entry lies in no segment"))?;
    let pages = ((end - start) / efi::PAGE_SIZE) as usize;
    if let Err(e) =
        boot::allocate_pages(AllocateType::Address(start), MemoryType::LOADER_CODE, pages)
    {
        say(format_args!(
            "the kernel's physical range {start:#x}..{end:#x} is not free ({:?}): the kernel is \
             linked there and must run there",
            e.status()
        ));
        describe_owners(start, end);
        return Err(Status::OUT_OF_RESOURCES);
    }
    // SAFETY: the pages [start, end) were just allocated to this image (identity mapped by the
    // firmware); nothing else uses them.
    unsafe {
        core::ptr::write_bytes(start as usize as *mut u8, 0, (end - start) as usize);
        for s in elf::load_segments(KERNEL).map_err(|_| fail("bad segments"))? {
            let src = &KERNEL[s.offset as usize..(s.offset + s.filesz) as usize];
            core::ptr::copy_nonoverlapping(src.as_ptr(), s.paddr as usize as *mut u8, src.len());
        }
    }

    // The hand-off area, below 4 GiB.
    let area = boot::allocate_pages(
        AllocateType::MaxAddress(BELOW_4G),
        MemoryType::LOADER_DATA,
        HANDOFF_PAGES,
    )
    .map_err(|e| {
        say(format_args!(
            "no loader data below 4 GiB for the hand-off ({:?})",
            e.status()
        ));
        Status::OUT_OF_RESOURCES
    })?
    .as_ptr();
    // SAFETY: `area` is HANDOFF_PAGES pages of loader data just allocated to this image.
    let area = unsafe { core::slice::from_raw_parts_mut(area, HANDOFF_PAGES * 4096) };
    area[OFF_CMDLINE..OFF_CMDLINE + cmdline_len].copy_from_slice(&cmdline[..cmdline_len]);

    // 3. The encryption mask, from the firmware's own page tables.
    let enc_mask = encryption_mask()?;
    let la57 = cr4() & CR4_LA57 != 0;

    // 4. ExitBootServices. From here on: no console, no allocation, no intercepted instruction.
    // SAFETY: nothing of the firmware's boot services is used after this; the memory map it
    // returns lives in loader data, which the kernel's map marks in use.
    let map = unsafe { boot::exit_boot_services(Some(MemoryType::LOADER_DATA)) };
    let meta = map.meta();
    let stride = meta.desc_size;
    let room = (area.len() - OFF_MEMMAP) / stride * stride;
    let bytes = &map.buffer()[..meta.map_size.min(room)];
    area[OFF_MEMMAP..OFF_MEMMAP + bytes.len()].copy_from_slice(bytes);
    let memmap = &area[OFF_MEMMAP..OFF_MEMMAP + bytes.len()];
    let base = area.as_ptr() as u64;
    let block = efi::Handoff {
        magic: efi::MAGIC,
        version: efi::VERSION,
        size: core::mem::size_of::<efi::Handoff>() as u32,
        enc_mask,
        private_end: efi::private_end(memmap, stride),
        memmap_gpa: base + OFF_MEMMAP as u64,
        memmap_size: bytes.len() as u64,
        desc_size: stride as u64,
        desc_version: meta.desc_version,
        flags: if la57 { efi::FLAG_LA57 } else { 0 }
            | if from_file {
                efi::FLAG_CMDLINE_FROM_FILE
            } else {
                0
            },
        cmdline_gpa: base + OFF_CMDLINE as u64,
        cmdline_len: cmdline_len as u64,
    };
    let b = block.to_bytes();
    area[OFF_BLOCK..OFF_BLOCK + b.len()].copy_from_slice(&b);
    // The map's buffer belongs to the firmware's pool, which is gone: never free it.
    core::mem::forget(map);
    // SAFETY: the kernel is at its physical addresses and its hand-off entry takes the firmware's
    // state as it is now (`kernel/src/boot/efi.rs`); it never returns.
    unsafe {
        core::arch::asm!(
            "cli",
            "jmp {entry}",
            entry = in(reg) entry,
            in("rdi") base + OFF_BLOCK as u64,
            options(noreturn)
        )
    }
}

/// The command line into `out`: from the load options, else from `cmdline.txt` next to this
/// image. Returns its length and whether it came from the file.
fn command_line(out: &mut [u8]) -> (usize, bool) {
    let Ok(img) = boot::open_protocol_exclusive::<LoadedImage>(boot::image_handle()) else {
        return (0, false);
    };
    if let Some(n) = img
        .load_options_as_bytes()
        .and_then(|b| efi::cmdline_from_load_options(b, out))
        .filter(|&n| n > 0)
    {
        return (n, false);
    }
    // The directory of this image's file path (`\EFI\BOOT\BOOTX64.EFI` -> `\EFI\BOOT\`).
    let mut path = [0u8; 256];
    let mut len = 0;
    if let Some(dp) = img.file_path() {
        for node in dp.node_iter() {
            if node.device_type() == DeviceType::MEDIA
                && node.sub_type() == DeviceSubType::MEDIA_FILE_PATH
            {
                for c in node.data().as_chunks::<2>().0 {
                    let c = u16::from_le_bytes(*c);
                    if c == 0 || len == path.len() {
                        break;
                    }
                    path[len] = if c < 0x80 { c as u8 } else { b'_' };
                    len += 1;
                }
            }
        }
    }
    drop(img);
    let dir = path[..len]
        .iter()
        .rposition(|&c| c == b'\\')
        .map_or(0, |i| i + 1);
    let mut name = [0u8; 300];
    let mut n = 0;
    for &c in path[..dir].iter().chain(efi::CMDLINE_FILE.as_bytes()) {
        name[n] = c;
        n += 1;
    }
    let name = core::str::from_utf8(&name[..n]).unwrap_or(efi::CMDLINE_FILE);
    let mut buf16 = [0u16; 300];
    let Ok(name16) = uefi::CStr16::from_str_with_buf(name, &mut buf16) else {
        return (0, false);
    };
    let Ok(mut fs) = boot::get_image_file_system(boot::image_handle()) else {
        return (0, false);
    };
    let Ok(mut root) = fs.open_volume() else {
        return (0, false);
    };
    let Some(mut file) = root
        .open(name16, FileMode::Read, FileAttribute::empty())
        .ok()
        .and_then(|f| f.into_regular_file())
    else {
        return (0, false);
    };
    let mut bytes = [0u8; CMDLINE_MAX];
    let got = file.read(&mut bytes).unwrap_or(0);
    (efi::cmdline_from_file(&bytes[..got], out), true)
}

/// Says which firmware memory holds `[start, end)` (after a failed allocation there).
fn describe_owners(start: u64, end: u64) {
    let Ok(map) = boot::memory_map(MemoryType::LOADER_DATA) else {
        return;
    };
    for d in map.entries() {
        let (s, e) = (d.phys_start, d.phys_start + d.page_count * efi::PAGE_SIZE);
        if s < end && start < e {
            let what = match d.ty.0 {
                efi::mem_type::UNACCEPTED => {
                    " (unaccepted: the firmware has not accepted it; cvmprobe.efi never uses such \
                     memory)"
                }
                efi::mem_type::CONVENTIONAL => " (free)",
                _ => "",
            };
            say(format_args!(
                "  {s:#x}..{e:#x}: memory type {}{what}",
                d.ty.0
            ));
        }
    }
}

/// The encryption mask the firmware's identity map uses for private memory (0 on TDX and plain
/// VMs), from the leaf that maps this very function.
fn encryption_mask() -> Result<u64, Status> {
    let top = boot::memory_map(MemoryType::LOADER_DATA)
        .map(|m| {
            let meta = m.meta();
            efi::map_top(&m.buffer()[..meta.map_size], meta.desc_size)
        })
        .unwrap_or(0);
    let va = encryption_mask as *const () as u64;
    let levels = if cr4() & CR4_LA57 != 0 { 5 } else { 4 };
    let mut read = |pa: u64| {
        // SAFETY: `pa` is an entry of the firmware's live page tables, which it identity maps.
        Some(unsafe { core::ptr::read_volatile(pa as usize as *const u64) })
    };
    let Some(leaf) = paging::walk(&mut read, cr3(), levels, va, paging::table_addr_mask(top))
    else {
        say(format_args!(
            "the firmware's page tables do not map this image at {va:#x}"
        ));
        return Err(Status::UNSUPPORTED);
    };
    let mask = paging::encryption_mask(leaf, va).map_err(|e| {
        say(format_args!(
            "cannot read an encryption mask from the firmware's page tables ({e:?}): not an \
             identity map"
        ));
        Status::UNSUPPORTED
    })?;
    if mask != 0 {
        // The firmware's #VC handler still answers CPUID here.
        let max = core::arch::x86_64::__cpuid(CPUID_EXT_MAX).eax;
        let cbit = (max >= protocol::ghcb::CPUID_SEV_LEAF)
            .then(|| core::arch::x86_64::__cpuid(protocol::ghcb::CPUID_SEV_LEAF).ebx & 0x3f);
        if cbit != Some(mask.trailing_zeros()) {
            say(format_args!(
                "the firmware maps private memory with bit {} but CPUID 0x8000001F says C-bit \
                 {cbit:?}",
                mask.trailing_zeros()
            ));
            return Err(Status::UNSUPPORTED);
        }
    }
    Ok(mask)
}

/// CR3.
fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effect.
    unsafe {
        core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// CR4.
fn cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effect.
    unsafe {
        core::arch::asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // Before ExitBootServices the console still works; nothing after it panics.
    say(format_args!("panic: {info}"));
    loop {
        core::hint::spin_loop();
    }
}
