//! The little of ELF64 the UEFI loader needs to place the kernel: its PT_LOAD segments and one
//! symbol (System V gABI, "ELF Header", "Program Header", "Symbol Table"; x86-64 psABI).
//! No allocation; every offset is bounds-checked, so a corrupt image is an error, not a fault.

/// `e_ident` magic.
const MAGIC: [u8; 4] = *b"\x7fELF";
/// `ELFCLASS64`.
const CLASS64: u8 = 2;
/// `ELFDATA2LSB`.
const DATA_LSB: u8 = 1;
/// `EM_X86_64`.
const EM_X86_64: u16 = 62;
/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
/// `SHT_SYMTAB`.
const SHT_SYMTAB: u32 = 2;
/// Size of an `Elf64_Sym`.
const SYM_SIZE: usize = 24;

/// What is wrong with an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not a little-endian ELF64 for x86-64.
    NotX86_64Elf,
    /// A header or table lies outside the file.
    Truncated,
}

/// A `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// File offset of its bytes.
    pub offset: u64,
    /// Virtual (link) address.
    pub vaddr: u64,
    /// Physical (load) address.
    pub paddr: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest zero: BSS).
    pub memsz: u64,
}

fn u16_at(b: &[u8], o: usize) -> Result<u16, ElfError> {
    let s = b.get(o..o + 2).ok_or(ElfError::Truncated)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], o: usize) -> Result<u32, ElfError> {
    let s = b.get(o..o + 4).ok_or(ElfError::Truncated)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], o: usize) -> Result<u64, ElfError> {
    let s = b.get(o..o + 8).ok_or(ElfError::Truncated)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

fn check_header(b: &[u8]) -> Result<(), ElfError> {
    if b.get(..4) != Some(&MAGIC[..])
        || b.get(4) != Some(&CLASS64)
        || b.get(5) != Some(&DATA_LSB)
        || u16_at(b, 18)? != EM_X86_64
    {
        return Err(ElfError::NotX86_64Elf);
    }
    Ok(())
}

/// The image's `PT_LOAD` segments, each checked to lie in the file.
pub fn load_segments(b: &[u8]) -> Result<impl Iterator<Item = Segment> + '_, ElfError> {
    check_header(b)?;
    let phoff = u64_at(b, 32)? as usize;
    let phentsize = usize::from(u16_at(b, 54)?);
    let phnum = usize::from(u16_at(b, 56)?);
    // Validate every header up front so the iterator cannot fail.
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        if u32_at(b, p)? == PT_LOAD {
            let s = segment_at(b, p)?;
            if s.offset
                .checked_add(s.filesz)
                .is_none_or(|e| e > b.len() as u64)
                || s.filesz > s.memsz
            {
                return Err(ElfError::Truncated);
            }
        }
    }
    Ok((0..phnum).filter_map(move |i| {
        let p = phoff + i * phentsize;
        (u32_at(b, p).ok()? == PT_LOAD)
            .then(|| segment_at(b, p).ok())
            .flatten()
    }))
}

fn segment_at(b: &[u8], p: usize) -> Result<Segment, ElfError> {
    Ok(Segment {
        offset: u64_at(b, p + 8)?,
        vaddr: u64_at(b, p + 16)?,
        paddr: u64_at(b, p + 24)?,
        filesz: u64_at(b, p + 32)?,
        memsz: u64_at(b, p + 40)?,
    })
}

/// The physical address range `[start, end)` the `PT_LOAD` segments cover, 4 KiB aligned.
pub fn load_range(b: &[u8]) -> Result<(u64, u64), ElfError> {
    let mut lo = u64::MAX;
    let mut hi = 0;
    for s in load_segments(b)? {
        lo = lo.min(s.paddr);
        hi = hi.max(s.paddr.saturating_add(s.memsz));
    }
    if lo > hi {
        return Err(ElfError::Truncated);
    }
    Ok((lo & !0xfff, hi.div_ceil(0x1000) * 0x1000))
}

/// The value (link address) of the symbol `name` in the image's `SHT_SYMTAB`.
pub fn symbol(b: &[u8], name: &str) -> Result<Option<u64>, ElfError> {
    check_header(b)?;
    let shoff = u64_at(b, 40)? as usize;
    let shentsize = usize::from(u16_at(b, 58)?);
    let shnum = usize::from(u16_at(b, 60)?);
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        if u32_at(b, sh + 4)? != SHT_SYMTAB {
            continue;
        }
        let off = u64_at(b, sh + 24)? as usize;
        let size = u64_at(b, sh + 32)? as usize;
        let link = u32_at(b, sh + 40)? as usize;
        let str_sh = shoff + link * shentsize;
        let str_off = u64_at(b, str_sh + 24)? as usize;
        let str_size = u64_at(b, str_sh + 32)? as usize;
        let strtab = b
            .get(str_off..str_off.saturating_add(str_size))
            .ok_or(ElfError::Truncated)?;
        let syms = b
            .get(off..off.saturating_add(size))
            .ok_or(ElfError::Truncated)?;
        for sym in syms.as_chunks::<SYM_SIZE>().0 {
            let n = u32_at(sym, 0)? as usize;
            let Some(rest) = strtab.get(n..) else {
                continue;
            };
            let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            if &rest[..end] == name.as_bytes() {
                return Ok(Some(u64_at(sym, 8)?));
            }
        }
    }
    Ok(None)
}

/// The physical address of link address `vaddr`: through the `PT_LOAD` segment that holds it.
pub fn phys_of(b: &[u8], vaddr: u64) -> Result<Option<u64>, ElfError> {
    Ok(load_segments(b)?
        .find(|s| s.vaddr <= vaddr && vaddr < s.vaddr.saturating_add(s.memsz))
        .map(|s| s.paddr + (vaddr - s.vaddr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A static ELF64 with two PT_LOADs (the second with BSS) and a symbol table.
    fn tiny() -> Vec<u8> {
        let mut f = vec![0u8; 0x400];
        f[..4].copy_from_slice(&MAGIC);
        f[4] = CLASS64;
        f[5] = DATA_LSB;
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[40..48].copy_from_slice(&0x200u64.to_le_bytes()); // e_shoff
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&2u16.to_le_bytes());
        f[58..60].copy_from_slice(&64u16.to_le_bytes());
        f[60..62].copy_from_slice(&3u16.to_le_bytes());
        let ph = |f: &mut Vec<u8>, i: usize, off: u64, va: u64, pa: u64, fs: u64, ms: u64| {
            let p = 64 + i * 56;
            f[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            for (o, v) in [(8, off), (16, va), (24, pa), (32, fs), (40, ms)] {
                f[p + o..p + o + 8].copy_from_slice(&v.to_le_bytes());
            }
        };
        ph(
            &mut f,
            0,
            0x180,
            0xffff_ffff_8010_0000,
            0x10_0000,
            0x10,
            0x10,
        );
        ph(
            &mut f,
            1,
            0x190,
            0xffff_ffff_8010_1000,
            0x10_1000,
            0x8,
            0x2000,
        );
        // Section 1: symtab at 0x300 (two symbols), link 2; section 2: strtab at 0x380.
        let sh = |f: &mut Vec<u8>, i: usize, ty: u32, off: u64, size: u64, link: u32| {
            let s = 0x200 + i * 64;
            f[s + 4..s + 8].copy_from_slice(&ty.to_le_bytes());
            f[s + 24..s + 32].copy_from_slice(&off.to_le_bytes());
            f[s + 32..s + 40].copy_from_slice(&size.to_le_bytes());
            f[s + 40..s + 44].copy_from_slice(&link.to_le_bytes());
        };
        sh(&mut f, 1, SHT_SYMTAB, 0x300, 48, 2);
        sh(&mut f, 2, 3, 0x380, 32, 0);
        f[0x380..0x390].copy_from_slice(b"\0other\0entry_x\0\0");
        f[0x300..0x304].copy_from_slice(&1u32.to_le_bytes());
        f[0x308..0x310].copy_from_slice(&0x1111u64.to_le_bytes());
        f[0x318..0x31c].copy_from_slice(&7u32.to_le_bytes());
        f[0x320..0x328].copy_from_slice(&0xffff_ffff_8010_0004u64.to_le_bytes());
        f
    }

    #[test]
    fn segments_range_and_symbols() {
        let f = tiny();
        let s: Vec<_> = load_segments(&f).unwrap().collect();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[1].paddr, s[1].filesz, s[1].memsz),
            (0x10_1000, 8, 0x2000)
        );
        assert_eq!(load_range(&f), Ok((0x10_0000, 0x10_3000)));
        let entry = symbol(&f, "entry_x").unwrap().unwrap();
        assert_eq!(entry, 0xffff_ffff_8010_0004);
        assert_eq!(phys_of(&f, entry), Ok(Some(0x10_0004)));
        assert_eq!(symbol(&f, "other"), Ok(Some(0x1111)));
        assert_eq!(symbol(&f, "entry"), Ok(None), "a prefix is not the name");
        assert_eq!(phys_of(&f, 0x1234), Ok(None));
    }

    #[test]
    fn corrupt_images_are_errors() {
        assert_eq!(
            load_range(b"MZ\x90\x00").unwrap_err(),
            ElfError::NotX86_64Elf
        );
        let mut f = tiny();
        f[64 + 32..64 + 40].copy_from_slice(&0x10_0000u64.to_le_bytes()); // filesz too big
        assert_eq!(load_range(&f).unwrap_err(), ElfError::Truncated);
        let mut f = tiny();
        f.truncate(0x250);
        assert_eq!(symbol(&f, "entry_x"), Err(ElfError::Truncated));
    }
}
