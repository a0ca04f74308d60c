//! Boot entry points and the one [`BootParams`] they produce.
//!
//! The entries (PVH; the UEFI hand-off from `cvmprobe.efi`; the bootloader_api entry of the
//! BIOS/UEFI images) fill the same `BootParams` and call [`crate::kmain`].

pub mod bootloader;
pub mod efi;
pub mod pvh;

use core::cell::UnsafeCell;

/// Which entry point started the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootPath {
    /// Not filled yet.
    Unknown,
    /// PVH (`qemu -kernel`, built-in VMM).
    Pvh,
    /// The bootloader_api entry (BIOS and UEFI disk images).
    Bootloader,
    /// The UEFI hand-off (`cvmprobe.efi`, the built-in VMM's `efi-handoff`): the firmware's
    /// state after ExitBootServices, the kernel's own identity map (`boot_pd`).
    Efi,
}

/// What a memory-map entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Usable RAM.
    Ram,
    /// RAM the loader is using (kernel image, page tables, boot info).
    RamInUse,
    /// Anything else.
    Reserved,
}

/// One memory-map entry (guest-physical).
#[derive(Clone, Copy, Debug)]
pub struct MemoryRegion {
    /// First GPA.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// RAM or not.
    pub kind: MemoryKind,
}

/// Everything the kernel learns from its loader.
pub struct BootParams {
    /// The entry point used.
    pub path: BootPath,
    /// Virtual address of GPA 0: `va = gpa + phys_offset` for RAM and MMIO.
    pub phys_offset: u64,
    /// First GPA after the kernel image (the heap goes after it).
    pub image_end_gpa: u64,
    /// The memory-encryption mask the loader read from the firmware's page tables (UEFI
    /// hand-off only; 0 elsewhere): the C-bit the kernel's tables carry from entry on.
    pub enc_mask: u64,
    /// Whether the kernel's tables are 5-level (the UEFI hand-off under firmware with
    /// CR4.LA57).
    pub five_level: bool,
    regions: [MemoryRegion; Self::MEMORY_MAX],
    nregions: usize,
    cmdline: [u8; Self::CMDLINE_MAX],
    cmdline_len: usize,
}

impl BootParams {
    /// Memory-map entries kept (later ones are dropped).
    pub const MEMORY_MAX: usize = 128;
    /// Command-line bytes kept.
    pub const CMDLINE_MAX: usize = 1024;

    const fn new() -> Self {
        Self {
            path: BootPath::Unknown,
            phys_offset: 0,
            image_end_gpa: 0,
            enc_mask: 0,
            five_level: false,
            regions: [MemoryRegion {
                base: 0,
                len: 0,
                kind: MemoryKind::Reserved,
            }; Self::MEMORY_MAX],
            nregions: 0,
            cmdline: [0; Self::CMDLINE_MAX],
            cmdline_len: 0,
        }
    }

    /// The memory map.
    pub fn regions(&self) -> &[MemoryRegion] {
        &self.regions[..self.nregions]
    }

    /// The command line (invalid UTF-8 is cut at the first bad byte).
    pub fn cmdline(&self) -> &str {
        let b = &self.cmdline[..self.cmdline_len];
        match core::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    fn push_region(&mut self, r: MemoryRegion) {
        if self.nregions < Self::MEMORY_MAX {
            self.regions[self.nregions] = r;
            self.nregions += 1;
        }
    }

    /// Copies a command line (cut at `CMDLINE_MAX`).
    fn set_cmdline(&mut self, c: &[u8]) {
        let n = c.len().min(Self::CMDLINE_MAX);
        self.cmdline[..n].copy_from_slice(&c[..n]);
        self.cmdline_len = n;
    }

    /// Copies a NUL-terminated command line.
    ///
    /// # Safety
    /// `p` must be readable up to its NUL or `CMDLINE_MAX` bytes, whichever comes first.
    unsafe fn set_cmdline_from_cstr(&mut self, p: *const u8) {
        let mut n = 0;
        while n < Self::CMDLINE_MAX {
            // SAFETY: within the caller's guarantee (stops at NUL or CMDLINE_MAX).
            let b = unsafe { p.add(n).read() };
            if b == 0 {
                break;
            }
            self.cmdline[n] = b;
            n += 1;
        }
        self.cmdline_len = n;
    }
}

struct ParamsCell(UnsafeCell<BootParams>);

// SAFETY: written only by the entry code on the single boot CPU before `kmain`, read-only after.
unsafe impl Sync for ParamsCell {}

static PARAMS: ParamsCell = ParamsCell(UnsafeCell::new(BootParams::new()));

/// The entry code's mutable view, used before `kmain`.
fn params_mut() -> &'static mut BootParams {
    // SAFETY: called once per boot by the one entry point that ran, on one CPU, before any
    // shared reference exists (kmain takes the first one).
    unsafe { &mut *PARAMS.0.get() }
}

/// The boot parameters (read-only once `kmain` runs).
pub fn params() -> &'static BootParams {
    // SAFETY: no mutable reference is live after the entry point called kmain.
    unsafe { &*PARAMS.0.get() }
}

/// Fails before the console exists: write a marker to the exit port and stop.
fn early_fail(_why: &'static [u8]) -> ! {
    cvmprobe_guest::platform::exit_via_port(protocol::exit::EXIT_BAIL)
}
