//! The kernel as the guest library's environment: the [`Ops`] it hands to
//! `cvmprobe_guest::run` (COM1 for output, the isa-debug-exit port, its identity map, its
//! GHCB page, its heap).

use crate::boot::{BootParams, BootPath};
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_void};
use core::mem::MaybeUninit;
use cvmprobe_guest::Ops;
use protocol::exit::EXIT_BAIL;
use protocol::ghcb::Ghcb;

struct GhcbCell(UnsafeCell<MaybeUninit<Ghcb>>);

// SAFETY: only the guest library's SEV-ES backend uses the page, through its own lock and
// with volatile accesses (the host writes it concurrently with nothing else).
unsafe impl Sync for GhcbCell {}

/// The GHCB page: page-aligned, in `.bss`, mapped shared on SEV-ES (C-bit clear:
/// [`sev_es_memory`]). Exported under `protocol::ghcb::GHCB_SYMBOL` so a test host can watch
/// the guest's reads of it.
#[unsafe(export_name = "cvmprobe_ghcb")]
static GHCB: GhcbCell = GhcbCell(UnsafeCell::new(MaybeUninit::zeroed()));

/// Legacy 8259 PIC data ports (OCW1 = interrupt mask).
const PIC1_DATA: u16 = 0x21;
const PIC2_DATA: u16 = 0xa1;

/// The operations table for a kernel booted with `params`.
pub fn ops(params: &BootParams) -> Ops {
    let (ram_end, ram_end_high) = crate::memory::ram_bounds(params);
    Ops {
        size: core::mem::size_of::<Ops>() as u32,
        version: protocol::abi::ABI_VERSION,
        ctx: core::ptr::null_mut(),
        phys_offset: params.phys_offset,
        ram_end,
        ram_end_high,
        shared_page: GHCB.0.get() as u64,
        paging_levels: if params.five_level { 5 } else { 4 },
        reserved: 0,
        write: Some(write),
        exit: Some(exit),
        ready: Some(ready),
        map_mmio: Some(map_mmio),
        sev_es_memory: Some(sev_es_memory),
        plan: None,
        result: None,
    }
}

/// COM1 (the emergency path takes the console over from an interrupted writer).
unsafe extern "C" fn write(_: *mut c_void, line: *const c_char, len: u64, flags: u32) {
    // SAFETY: the library passes a line valid for `len` bytes for this call.
    let bytes = unsafe { core::slice::from_raw_parts(line.cast::<u8>(), len as usize) };
    if flags & protocol::abi::WRITE_EMERGENCY != 0 {
        crate::console::write_emergency(bytes);
    } else {
        crate::console::write(bytes);
    }
}

/// The isa-debug-exit port (QEMU's and the built-in VMM's), then a platform-specific stop.
unsafe extern "C" fn exit(_: *mut c_void, code: u32) -> ! {
    cvmprobe_guest::platform::exit_via_port(code)
}

/// The platform is fixed: the console (whose registers go through the backend), the heap
/// (private memory on SEV-ES from now on), and the legacy PIC masked (nothing here wants its
/// interrupts, which it would deliver on exception vectors until remapped).
unsafe extern "C" fn ready(_: *mut c_void) -> *const c_char {
    if !crate::console::init() {
        cvmprobe_guest::platform::exit_via_port(EXIT_BAIL);
    }
    if let Err(why) = crate::memory::init_heap(crate::boot::params()) {
        return why.as_ptr();
    }
    cvmprobe_guest::io::pio_write::<u8>(PIC1_DATA, 0xff);
    cvmprobe_guest::io::pio_write::<u8>(PIC2_DATA, 0xff);
    core::ptr::null()
}

/// The memslot page, on the boots that run on the kernel's identity map (PVH, UEFI hand-off),
/// which the page relies on.
unsafe extern "C" fn map_mmio(_: *mut c_void, gpa: u64, _len: u64) -> u64 {
    let params = crate::boot::params();
    if matches!(params.path, BootPath::Pvh | BootPath::Efi) {
        gpa + params.phys_offset
    } else {
        0
    }
}

/// SEV-ES: the C-bit on RAM, the GHCB page shared. The UEFI hand-off's tables carry the C-bit
/// from entry on (the loader read it from the firmware's own tables): it must be the host's.
/// A disk-image boot keeps the bootloader's tables as they are.
unsafe extern "C" fn sev_es_memory(
    _: *mut c_void,
    cbit: u32,
    ghcb_gpa: u64,
    value: *mut u64,
) -> *const c_char {
    let params = crate::boot::params();
    let cbit = cbit as u8;
    match params.path {
        BootPath::Efi => {
            if params.enc_mask != 1 << cbit {
                // SAFETY: the library passes a writable `value` for this call.
                unsafe { *value = params.enc_mask };
                return c"C-bit (SEV information) against the firmware's page tables".as_ptr();
            }
            // SAFETY: the kernel's identity map, with the C-bit on RAM since entry; the GHCB
            // has not been used yet.
            unsafe { crate::arch::paging::share_page(cbit, ghcb_gpa) };
        }
        BootPath::Pvh => {
            let (ram_end, _) = crate::memory::ram_bounds(params);
            // SAFETY: PVH identity map; the SEV-ES host aliases RAM at the C-bit (both in
            // hardware and in the simulated platform); nothing has used the old attributes
            // yet.
            unsafe { crate::arch::paging::set_cbit_on_ram(cbit, ram_end, ghcb_gpa) };
        }
        BootPath::Bootloader | BootPath::Unknown => {}
    }
    core::ptr::null()
}
