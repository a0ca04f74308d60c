//! The UEFI hand-off: what `cvmprobe.efi` (the UEFI loader, `efi/`) passes to the kernel's
//! post-ExitBootServices entry (`kernel/src/boot/efi.rs`), and the firmware's memory map it
//! carries.
//!
//! The loader runs under the firmware (OVMF, TDVF, the SEV build of OVMF), loads the kernel
//! ELF at its physical addresses, calls ExitBootServices and jumps to the kernel's hand-off
//! entry ([`ENTRY_SYMBOL`]) with RDI = the GPA of a [`Handoff`] block, in 64-bit mode under the
//! firmware's identity page tables with interrupts off. The built-in VMM's `efi-handoff` boot
//! rebuilds exactly that state without firmware. Both sides use this module: the block's
//! layout, the memory-descriptor layout and types (UEFI 2.10, 7.2 `GetMemoryMap()`), and the
//! pure parsers (host-tested).

/// The kernel's hand-off entry (64-bit, runs at its physical address): the loader finds it in
/// the ELF's symbol table.
pub const ENTRY_SYMBOL: &str = "cvmprobe_efi_entry";

/// [`Handoff::magic`]: "CVMPEFI" and a format byte.
pub const MAGIC: u64 = u64::from_le_bytes(*b"CVMPEFI\x01");
/// [`Handoff::version`] of this layout.
pub const VERSION: u32 = 1;

/// [`Handoff::flags`]: the firmware ran with 5-level paging (CR4.LA57; TDVF does with GPAW
/// 52). Informative: the kernel reads CR4 itself.
pub const FLAG_LA57: u32 = 1 << 0;
/// [`Handoff::flags`]: the command line came from `cmdline.txt` on the ESP, not from the load
/// options.
pub const FLAG_CMDLINE_FROM_FILE: u32 = 1 << 1;

/// The file next to `cvmprobe.efi` on an ESP whose first line is the kernel command line when
/// the image was started without load options (a firmware boot entry).
pub const CMDLINE_FILE: &str = "cmdline.txt";

/// The hand-off block (all GPAs below 4 GiB: the kernel reads them through its identity map
/// of the low 4 GiB).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handoff {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// `size_of::<Handoff>()` as the loader knew it.
    pub size: u32,
    /// The memory-encryption mask of private memory: `1 << C-bit` on SEV-ES, read from the
    /// firmware's own page tables ([`crate::paging::encryption_mask`]); 0 on TDX (private is
    /// the shared bit clear) and on a legacy VM.
    pub enc_mask: u64,
    /// End of private low memory: every RAM descriptor below 4 GiB ends at or below it
    /// ([`private_end`]). The kernel sets [`Handoff::enc_mask`] on its identity map below it.
    pub private_end: u64,
    /// GPA of the memory map (the descriptors as `GetMemoryMap()` returned them, final: taken
    /// by ExitBootServices).
    pub memmap_gpa: u64,
    /// Bytes of the memory map.
    pub memmap_size: u64,
    /// Stride of one descriptor (the firmware's `DescriptorSize`, at least
    /// [`DESCRIPTOR_SIZE`]).
    pub desc_size: u64,
    /// The firmware's `DescriptorVersion` ([`DESCRIPTOR_VERSION`]).
    pub desc_version: u32,
    /// `FLAG_*`.
    pub flags: u32,
    /// GPA of the kernel command line (ASCII, not NUL-terminated).
    pub cmdline_gpa: u64,
    /// Bytes of the command line.
    pub cmdline_len: u64,
}

/// Offsets of [`Handoff`]'s fields (the kernel's entry asm reads two of them).
pub mod handoff_off {
    /// [`super::Handoff::enc_mask`].
    pub const ENC_MASK: usize = core::mem::offset_of!(super::Handoff, enc_mask);
    /// [`super::Handoff::private_end`].
    pub const PRIVATE_END: usize = core::mem::offset_of!(super::Handoff, private_end);
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(Handoff, magic) == 0);
    assert!(offset_of!(Handoff, version) == 8);
    assert!(offset_of!(Handoff, size) == 12);
    assert!(offset_of!(Handoff, enc_mask) == 16);
    assert!(offset_of!(Handoff, private_end) == 24);
    assert!(offset_of!(Handoff, memmap_gpa) == 32);
    assert!(offset_of!(Handoff, memmap_size) == 40);
    assert!(offset_of!(Handoff, desc_size) == 48);
    assert!(offset_of!(Handoff, desc_version) == 56);
    assert!(offset_of!(Handoff, flags) == 60);
    assert!(offset_of!(Handoff, cmdline_gpa) == 64);
    assert!(offset_of!(Handoff, cmdline_len) == 72);
    assert!(size_of::<Handoff>() == 80);
};

impl Handoff {
    /// The block's bytes (little-endian, as the kernel reads them).
    pub fn to_bytes(&self) -> [u8; core::mem::size_of::<Handoff>()] {
        let mut b = [0u8; core::mem::size_of::<Handoff>()];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.magic.to_le_bytes());
        put(8, &self.version.to_le_bytes());
        put(12, &self.size.to_le_bytes());
        put(16, &self.enc_mask.to_le_bytes());
        put(24, &self.private_end.to_le_bytes());
        put(32, &self.memmap_gpa.to_le_bytes());
        put(40, &self.memmap_size.to_le_bytes());
        put(48, &self.desc_size.to_le_bytes());
        put(56, &self.desc_version.to_le_bytes());
        put(60, &self.flags.to_le_bytes());
        put(64, &self.cmdline_gpa.to_le_bytes());
        put(72, &self.cmdline_len.to_le_bytes());
        b
    }

    /// Checks the magic, version and size, and that the memory map is well formed.
    pub fn check(&self) -> Result<(), HandoffError> {
        if self.magic != MAGIC {
            return Err(HandoffError::BadMagic(self.magic));
        }
        if self.version != VERSION || self.size as usize != core::mem::size_of::<Handoff>() {
            return Err(HandoffError::BadVersion {
                version: self.version,
                size: self.size,
            });
        }
        if (self.desc_size as usize) < DESCRIPTOR_SIZE
            || !self.desc_size.is_multiple_of(8)
            || !self.memmap_size.is_multiple_of(self.desc_size)
        {
            return Err(HandoffError::BadMemoryMap {
                size: self.memmap_size,
                stride: self.desc_size,
            });
        }
        Ok(())
    }
}

/// What is wrong with a hand-off block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffError {
    /// Not [`MAGIC`].
    BadMagic(u64),
    /// Another layout.
    BadVersion {
        /// The block's version.
        version: u32,
        /// The block's size.
        size: u32,
    },
    /// The memory map's size is not a multiple of a plausible stride.
    BadMemoryMap {
        /// Bytes.
        size: u64,
        /// Descriptor stride.
        stride: u64,
    },
}

impl HandoffError {
    /// A short description for an early failure message.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::BadMagic(_) => "the hand-off block has a bad magic",
            Self::BadVersion { .. } => "the hand-off block has another version",
            Self::BadMemoryMap { .. } => "the hand-off memory map has a bad size or stride",
        }
    }
}

/// UEFI page size (UEFI 2.10, 7.2 `EFI_BOOT_SERVICES.AllocatePages()`).
pub const PAGE_SIZE: u64 = 4096;

/// `EFI_MEMORY_DESCRIPTOR_VERSION` (UEFI 2.10, 7.2 `GetMemoryMap()`).
pub const DESCRIPTOR_VERSION: u32 = 1;

/// `EFI_MEMORY_DESCRIPTOR` (UEFI 2.10, 7.2 `GetMemoryMap()`): the fields as the spec lays them
/// out. The firmware's `DescriptorSize` may be larger (OVMF: 48); walk the map with it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryDescriptor {
    /// `EFI_MEMORY_TYPE` ([`mem_type`]).
    pub ty: u32,
    /// Padding (the spec's natural alignment of the next field).
    pub pad: u32,
    /// First byte, 4 KiB aligned.
    pub phys_start: u64,
    /// Virtual address (runtime services only).
    pub virt_start: u64,
    /// Number of 4 KiB pages.
    pub pages: u64,
    /// `EFI_MEMORY_*` attributes.
    pub attribute: u64,
}

/// Bytes of [`MemoryDescriptor`] as the spec defines it.
pub const DESCRIPTOR_SIZE: usize = 40;

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(MemoryDescriptor, ty) == 0);
    assert!(offset_of!(MemoryDescriptor, phys_start) == 8);
    assert!(offset_of!(MemoryDescriptor, virt_start) == 16);
    assert!(offset_of!(MemoryDescriptor, pages) == 24);
    assert!(offset_of!(MemoryDescriptor, attribute) == 32);
    assert!(size_of::<MemoryDescriptor>() == DESCRIPTOR_SIZE);
};

impl MemoryDescriptor {
    /// Reads one descriptor from the first [`DESCRIPTOR_SIZE`] bytes of `b`.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b = b.get(..DESCRIPTOR_SIZE)?;
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        Some(Self {
            ty: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            pad: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            phys_start: u64_at(8),
            virt_start: u64_at(16),
            pages: u64_at(24),
            attribute: u64_at(32),
        })
    }

    /// The descriptor's bytes (the first [`DESCRIPTOR_SIZE`] of a stride).
    pub fn to_bytes(&self) -> [u8; DESCRIPTOR_SIZE] {
        let mut b = [0u8; DESCRIPTOR_SIZE];
        b[0..4].copy_from_slice(&self.ty.to_le_bytes());
        b[4..8].copy_from_slice(&self.pad.to_le_bytes());
        b[8..16].copy_from_slice(&self.phys_start.to_le_bytes());
        b[16..24].copy_from_slice(&self.virt_start.to_le_bytes());
        b[24..32].copy_from_slice(&self.pages.to_le_bytes());
        b[32..40].copy_from_slice(&self.attribute.to_le_bytes());
        b
    }

    /// One past the last byte (saturating: a hostile or broken map cannot wrap).
    pub fn end(&self) -> u64 {
        self.phys_start
            .saturating_add(self.pages.saturating_mul(PAGE_SIZE))
    }
}

/// `EFI_MEMORY_TYPE` values (UEFI 2.10, 7.2, table 7.10 "Memory Type Usage before
/// ExitBootServices()"; `EfiUnacceptedMemoryType` added in 2.10).
pub mod mem_type {
    /// `EfiReservedMemoryType`.
    pub const RESERVED: u32 = 0;
    /// `EfiLoaderCode`: the loader's code; the kernel image (cvmprobe.efi allocates it so: the
    /// firmware may map loader data non-executable).
    pub const LOADER_CODE: u32 = 1;
    /// `EfiLoaderData`: the loader's data: hand-off block, memory map, command line.
    pub const LOADER_DATA: u32 = 2;
    /// `EfiBootServicesCode`.
    pub const BOOT_SERVICES_CODE: u32 = 3;
    /// `EfiBootServicesData` (the firmware's page tables and stack live here).
    pub const BOOT_SERVICES_DATA: u32 = 4;
    /// `EfiRuntimeServicesCode`.
    pub const RUNTIME_SERVICES_CODE: u32 = 5;
    /// `EfiRuntimeServicesData`.
    pub const RUNTIME_SERVICES_DATA: u32 = 6;
    /// `EfiConventionalMemory`: free, accepted RAM.
    pub const CONVENTIONAL: u32 = 7;
    /// `EfiUnusableMemory`.
    pub const UNUSABLE: u32 = 8;
    /// `EfiACPIReclaimMemory`.
    pub const ACPI_RECLAIM: u32 = 9;
    /// `EfiACPIMemoryNVS`.
    pub const ACPI_NVS: u32 = 10;
    /// `EfiMemoryMappedIO`.
    pub const MMIO: u32 = 11;
    /// `EfiMemoryMappedIOPortSpace`.
    pub const MMIO_PORT_SPACE: u32 = 12;
    /// `EfiPalCode`.
    pub const PAL_CODE: u32 = 13;
    /// `EfiPersistentMemory`.
    pub const PERSISTENT: u32 = 14;
    /// `EfiUnacceptedMemoryType`: TDX / SEV-SNP memory the firmware has not accepted. Touching
    /// it before TDG.MEM.PAGE.ACCEPT is a #VE (or the TD's end): never used as RAM here.
    pub const UNACCEPTED: u32 = 15;
}

/// What the kernel may do with a range of the firmware's memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Free, accepted RAM (`EfiConventionalMemory`).
    Ram,
    /// Accepted RAM in use: the kernel image, the hand-off data, the firmware's boot-services
    /// memory (its page tables and stack are in use until the kernel has its own).
    RamInUse,
    /// Anything else, unaccepted memory included.
    Reserved,
}

/// The kernel's use of memory type `ty`.
pub const fn classify(ty: u32) -> RegionKind {
    match ty {
        mem_type::CONVENTIONAL => RegionKind::Ram,
        mem_type::LOADER_CODE
        | mem_type::LOADER_DATA
        | mem_type::BOOT_SERVICES_CODE
        | mem_type::BOOT_SERVICES_DATA => RegionKind::RamInUse,
        _ => RegionKind::Reserved,
    }
}

/// Whether type `ty` is guest RAM (private memory on a confidential VM), used or not. MMIO,
/// reserved ranges and unknown types are not.
pub const fn is_ram(ty: u32) -> bool {
    matches!(
        ty,
        mem_type::LOADER_CODE
            | mem_type::LOADER_DATA
            | mem_type::BOOT_SERVICES_CODE
            | mem_type::BOOT_SERVICES_DATA
            | mem_type::RUNTIME_SERVICES_CODE
            | mem_type::RUNTIME_SERVICES_DATA
            | mem_type::CONVENTIONAL
            | mem_type::ACPI_RECLAIM
            | mem_type::ACPI_NVS
            | mem_type::PERSISTENT
            | mem_type::UNACCEPTED
    )
}

/// The descriptors of a memory map `buf` with stride `stride` (a trailing partial descriptor
/// is ignored; a stride below [`DESCRIPTOR_SIZE`] yields nothing).
pub fn descriptors(buf: &[u8], stride: usize) -> impl Iterator<Item = MemoryDescriptor> + '_ {
    let n = if stride < DESCRIPTOR_SIZE {
        0
    } else {
        buf.len() / stride
    };
    (0..n).filter_map(move |i| MemoryDescriptor::from_bytes(&buf[i * stride..]))
}

/// One range of the memory map, merged with its neighbours of the same kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First GPA.
    pub base: u64,
    /// Bytes.
    pub len: u64,
    /// What the kernel may do with it.
    pub kind: RegionKind,
}

/// The map's ranges by [`RegionKind`], consecutive descriptors that touch and have the same
/// kind merged (OVMF's maps have a hundred descriptors; the kernel keeps a few dozen ranges).
pub fn regions(buf: &[u8], stride: usize) -> impl Iterator<Item = Region> + '_ {
    let mut it = descriptors(buf, stride)
        .filter(|d| d.pages != 0)
        .map(|d| Region {
            base: d.phys_start,
            len: d.end() - d.phys_start,
            kind: classify(d.ty),
        })
        .peekable();
    core::iter::from_fn(move || {
        let mut r = it.next()?;
        while let Some(n) = it.peek() {
            if n.kind != r.kind || r.base.saturating_add(r.len) != n.base {
                break;
            }
            r.len += n.len;
            it.next();
        }
        Some(r)
    })
}

/// 4 GiB: the kernel's identity map covers the GPAs below it.
pub const FOUR_GIB: u64 = 1 << 32;

/// The end of private low memory: the highest end of a RAM descriptor ([`is_ram`]) that starts
/// below 4 GiB, capped at 4 GiB. 0 if there is none.
pub fn private_end(buf: &[u8], stride: usize) -> u64 {
    descriptors(buf, stride)
        .filter(|d| is_ram(d.ty) && d.phys_start < FOUR_GIB)
        .map(|d| d.end().min(FOUR_GIB))
        .max()
        .unwrap_or(0)
}

/// The highest end of any descriptor: no RAM lies at or above it, so no table address either.
pub fn map_top(buf: &[u8], stride: usize) -> u64 {
    descriptors(buf, stride)
        .filter(|d| is_ram(d.ty))
        .map(|d| d.end())
        .max()
        .unwrap_or(0)
}

/// Whether any byte of `[start, end)` lies in memory of type [`mem_type::CONVENTIONAL`] ...
/// that is, the loader may allocate it: every page of the range must be conventional memory.
pub fn range_is_free(buf: &[u8], stride: usize, start: u64, end: u64) -> bool {
    let mut at = start;
    while at < end {
        match descriptors(buf, stride)
            .find(|d| d.phys_start <= at && at < d.end() && d.ty == mem_type::CONVENTIONAL)
        {
            Some(d) => at = d.end(),
            None => return false,
        }
    }
    true
}

/// The load options as a kernel command line: UCS-2 (`LoadOptions` of `EFI_LOADED_IMAGE`,
/// UEFI 2.10 9.1, which QEMU's `-append` fills through OVMF) up to a NUL, printable ASCII only,
/// into `out`. `None` when the options are not such text (a boot entry's binary data): the
/// caller then looks for [`CMDLINE_FILE`]. Returns the bytes written (leading and trailing
/// blanks dropped).
pub fn cmdline_from_load_options(options: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    for pair in options.as_chunks::<2>().0 {
        let c = u16::from_le_bytes(*pair);
        if c == 0 {
            break;
        }
        let b = match c {
            0x20..=0x7e => c as u8,
            0x09 | 0x0a | 0x0d => b' ',
            _ => return None,
        };
        if n == out.len() {
            break;
        }
        out[n] = b;
        n += 1;
    }
    Some(trim_into_start(out, n))
}

/// The first line of `cmdline.txt`'s bytes as a command line, into `out` (non-printable bytes
/// end it). Returns the bytes written, blanks trimmed.
pub fn cmdline_from_file(bytes: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    for &b in bytes {
        if !(0x20..=0x7e).contains(&b) && b != b'\t' {
            break;
        }
        if n == out.len() {
            break;
        }
        out[n] = if b == b'\t' { b' ' } else { b };
        n += 1;
    }
    trim_into_start(out, n)
}

/// Moves `out[..n]` without its leading and trailing blanks to the start; returns the length.
fn trim_into_start(out: &mut [u8], n: usize) -> usize {
    let start = out[..n].iter().position(|&b| b != b' ').unwrap_or(n);
    let end = out[..n]
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |e| e + 1);
    out.copy_within(start..end, 0);
    end - start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(descs: &[(u32, u64, u64)], stride: usize) -> Vec<u8> {
        let mut b = vec![0xeeu8; descs.len() * stride];
        for (i, &(ty, start, pages)) in descs.iter().enumerate() {
            let d = MemoryDescriptor {
                ty,
                phys_start: start,
                pages,
                ..Default::default()
            };
            b[i * stride..i * stride + DESCRIPTOR_SIZE].copy_from_slice(&d.to_bytes());
        }
        b
    }

    /// OVMF-like: conventional low memory, the kernel at 1 MiB, boot-services data, unaccepted
    /// memory above, MMIO under 4 GiB.
    fn ovmf_like() -> Vec<(u32, u64, u64)> {
        use mem_type::*;
        vec![
            (CONVENTIONAL, 0, 0x9f),
            (LOADER_CODE, 0x10_0000, 0x80),
            (CONVENTIONAL, 0x18_0000, 0x80),
            (CONVENTIONAL, 0x20_0000, 0x100),
            (BOOT_SERVICES_DATA, 0x30_0000, 0x100),
            (BOOT_SERVICES_CODE, 0x40_0000, 0x100),
            (UNACCEPTED, 0x50_0000, 0xb00),
            (ACPI_NVS, 0x0fff_0000, 0x10),
            (MMIO, 0xffc0_0000, 0x400),
        ]
    }

    #[test]
    fn descriptors_follow_the_firmware_stride() {
        for stride in [40, 48, 64] {
            let b = map(&ovmf_like(), stride);
            let d: Vec<_> = descriptors(&b, stride).collect();
            assert_eq!(d.len(), 9, "stride {stride}");
            assert_eq!(d[1].ty, mem_type::LOADER_CODE);
            assert_eq!((d[1].phys_start, d[1].end()), (0x10_0000, 0x18_0000));
        }
        assert_eq!(descriptors(&map(&ovmf_like(), 48), 32).count(), 0);
    }

    #[test]
    fn regions_merge_and_never_offer_unaccepted_memory() {
        let b = map(&ovmf_like(), 48);
        let r: Vec<_> = regions(&b, 48).collect();
        assert_eq!(
            r[2],
            Region {
                base: 0x18_0000,
                len: 0x18_0000,
                kind: RegionKind::Ram
            },
            "two touching conventional descriptors are one range: {r:x?}"
        );
        assert_eq!(
            r[3],
            Region {
                base: 0x30_0000,
                len: 0x20_0000,
                kind: RegionKind::RamInUse
            }
        );
        let unaccepted = r.iter().find(|r| r.base == 0x50_0000).unwrap();
        assert_eq!(unaccepted.kind, RegionKind::Reserved);
        assert_eq!(classify(mem_type::UNACCEPTED), RegionKind::Reserved);
        assert_eq!(
            classify(mem_type::RUNTIME_SERVICES_DATA),
            RegionKind::Reserved
        );
        assert_eq!(classify(99), RegionKind::Reserved);
    }

    #[test]
    fn private_end_covers_ram_and_stops_before_mmio() {
        let b = map(&ovmf_like(), 48);
        assert_eq!(private_end(&b, 48), 0x1000_0000);
        assert_eq!(map_top(&b, 48), 0x1000_0000);
        // RAM above 4 GiB does not move the low end.
        let mut d = ovmf_like();
        d.push((mem_type::CONVENTIONAL, 0x1_0000_0000, 0x1000));
        let b = map(&d, 48);
        assert_eq!(private_end(&b, 48), 0x1000_0000);
        assert_eq!(map_top(&b, 48), 0x1_0100_0000);
        assert_eq!(private_end(&[], 48), 0);
    }

    #[test]
    fn free_ranges_are_conventional_only() {
        let b = map(&ovmf_like(), 48);
        assert!(
            range_is_free(&b, 48, 0x18_0000, 0x30_0000),
            "across two descriptors"
        );
        assert!(!range_is_free(&b, 48, 0x10_0000, 0x11_0000), "loader code");
        assert!(
            !range_is_free(&b, 48, 0x2f_0000, 0x31_0000),
            "runs into boot data"
        );
        assert!(!range_is_free(&b, 48, 0x50_0000, 0x51_0000), "unaccepted");
        assert!(!range_is_free(&b, 48, 0x9f000, 0xa0000), "a hole");
    }

    #[test]
    fn handoff_round_trip_and_checks() {
        let h = Handoff {
            magic: MAGIC,
            version: VERSION,
            size: core::mem::size_of::<Handoff>() as u32,
            enc_mask: 1 << 47,
            private_end: 0x1000_0000,
            memmap_gpa: 0x9000,
            memmap_size: 48 * 9,
            desc_size: 48,
            desc_version: DESCRIPTOR_VERSION,
            flags: FLAG_LA57,
            cmdline_gpa: 0xa000,
            cmdline_len: 5,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..7], b"CVMPEFI");
        assert_eq!(b[handoff_off::ENC_MASK + 5], 0x80, "bit 47");
        assert_eq!(
            u64::from_le_bytes(b[handoff_off::PRIVATE_END..][..8].try_into().unwrap()),
            0x1000_0000
        );
        assert_eq!(h.check(), Ok(()));
        assert_eq!(
            Handoff { magic: 1, ..h }.check(),
            Err(HandoffError::BadMagic(1))
        );
        assert!(matches!(
            Handoff { version: 2, ..h }.check(),
            Err(HandoffError::BadVersion { .. })
        ));
        assert!(matches!(
            Handoff { desc_size: 24, ..h }.check(),
            Err(HandoffError::BadMemoryMap { .. })
        ));
        assert!(matches!(
            Handoff {
                memmap_size: 50,
                ..h
            }
            .check(),
            Err(HandoffError::BadMemoryMap { .. })
        ));
    }

    fn ucs2(s: &str) -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    #[test]
    fn load_options_become_the_command_line() {
        let mut out = [0u8; 64];
        let n = cmdline_from_load_options(&ucs2("  cvmprobe.filter=io a=1 "), &mut out).unwrap();
        assert_eq!(&out[..n], b"cvmprobe.filter=io a=1");
        assert_eq!(cmdline_from_load_options(&[], &mut out), Some(0));
        assert_eq!(cmdline_from_load_options(&ucs2(""), &mut out), Some(0));
        // Binary boot-entry data is not a command line.
        assert_eq!(
            cmdline_from_load_options(&[0x01, 0xd8, 0x41, 0x00], &mut out),
            None
        );
        assert_eq!(cmdline_from_load_options(&ucs2("é"), &mut out), None);
        // Cut at the buffer's end.
        let mut small = [0u8; 4];
        assert_eq!(
            cmdline_from_load_options(&ucs2("abcdefgh"), &mut small),
            Some(4)
        );
        let n = cmdline_from_file(b"cvmprobe.filter=io\r\nsecond line\n", &mut out);
        assert_eq!(&out[..n], b"cvmprobe.filter=io");
        assert_eq!(cmdline_from_file(b"", &mut out), 0);
    }
}
