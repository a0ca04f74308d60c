//! Page-table entries with an encryption (SEV C-bit) or shared (TDX) bit: the pure rules the
//! UEFI loader, the kernel and the built-in VMM's firmware stand-in share, host-tested at the
//! real parts' positions (47, 51) and at the narrow ones the simulated platforms use on small
//! vCPUs (38, 45: `vmm::sim::address`).
//!
//! Formats: Intel SDM vol. 3A 4.5 (4-level and 5-level paging), AMD APM vol. 2 5.3; the C-bit
//! is an address bit of every entry that maps or points at private memory (AMD APM vol. 2
//! 15.34.5); the TDX shared bit is GPAW - 1 (TDX module ABI, TDG.VP.INFO).

/// Present.
pub const PTE_P: u64 = 1 << 0;
/// Writable.
pub const PTE_W: u64 = 1 << 1;
/// Page size: a 2 MiB (PD) or 1 GiB (PDPT) leaf.
pub const PTE_PS: u64 = 1 << 7;
/// Address bits of an entry (51:12; a large leaf also holds its PAT bit in bit 12).
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
/// 2 MiB.
pub const SIZE_2M: u64 = 1 << 21;
/// Entries per table.
pub const ENTRIES: usize = 512;

/// Entry `i` of an identity map of 2 MiB pages (GPA `i * 2 MiB`): present, writable, large,
/// with `mask` when the page starts below `private_end` (private RAM on SEV). The kernel's
/// hand-off entry applies exactly this rule to its static `boot_pd` (in asm, before it can run
/// Rust at its link address); the built-in VMM builds the firmware's tables with it.
pub const fn identity_pd_entry(i: u64, mask: u64, private_end: u64) -> u64 {
    let gpa = i * SIZE_2M;
    gpa | PTE_P | PTE_W | PTE_PS | if gpa < private_end { mask } else { 0 }
}

/// The 2 MiB entries below `private_end` (rounded up): how many of the identity map's
/// entries get the mask.
pub const fn private_pd_entries(private_end: u64) -> u64 {
    private_end.div_ceil(SIZE_2M)
}

/// The 512 entries of a 4 KiB table that maps the 2 MiB page at `base` (2 MiB aligned) with
/// `mask` on every page but the one at `shared_gpa`, which is left without it (the SEV-ES
/// GHCB: AMD APM vol. 2 15.34.5, GHCB spec 2.x 2.2 "the GHCB must be mapped unencrypted").
pub fn split_2m(base: u64, mask: u64, shared_gpa: u64) -> [u64; ENTRIES] {
    core::array::from_fn(|j| {
        let gpa = base + ((j as u64) << 12);
        let m = if gpa == shared_gpa & !0xfff { 0 } else { mask };
        gpa | PTE_P | PTE_W | m
    })
}

/// A leaf of a page walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The entry.
    pub entry: u64,
    /// Bytes it maps (4 KiB, 2 MiB or 1 GiB).
    pub size: u64,
}

/// Walks the page tables rooted at `cr3` (`levels` = 4, or 5 with CR4.LA57) for `va`, reading
/// each 8-byte entry at a physical address with `read`. Table addresses are taken from entries
/// with `addr_mask` (the address bits that can hold RAM: a C-bit in a table pointer is stripped
/// by it). `None` on a non-present entry or a failed read.
pub fn walk(
    read: &mut dyn FnMut(u64) -> Option<u64>,
    cr3: u64,
    levels: u32,
    va: u64,
    addr_mask: u64,
) -> Option<Leaf> {
    let mut table = cr3 & addr_mask;
    for level in (0..levels).rev() {
        let idx = (va >> (12 + 9 * level)) & 511;
        let e = read(table + idx * 8)?;
        if e & PTE_P == 0 {
            return None;
        }
        let size = 1u64 << (12 + 9 * level);
        if level == 0 || ((level == 1 || level == 2) && e & PTE_PS != 0) {
            return Some(Leaf { entry: e, size });
        }
        table = e & addr_mask;
    }
    None
}

/// The address bits a table pointer may hold on a machine whose RAM ends below `ram_top`: the
/// bits 51:12 below the power of two at or above it (C-bits and shared bits lie above).
pub fn table_addr_mask(ram_top: u64) -> u64 {
    let top = ram_top
        .max(1 << 32)
        .checked_next_power_of_two()
        .unwrap_or(1 << 52);
    PTE_ADDR & (top - 1)
}

/// Why no encryption mask could be read from a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskError {
    /// The leaf maps another frame: the map is not an identity map (bits shown).
    NotIdentity {
        /// The leaf's frame with its extra bits.
        frame: u64,
        /// The frame the identity map would have.
        expected: u64,
    },
    /// More than one extra address bit (a C-bit is one bit, at 32 or above: AMD APM vol. 3
    /// E.4.17, `protocol::ghcb::CBIT_MIN`; a differing bit below 32 is a non-identity map).
    Implausible(u64),
}

/// The memory-encryption mask of the identity map whose leaf for `va` is `leaf`: the address
/// bits the leaf holds beyond `va`'s own frame. 0 when there are none (TDX: private memory has
/// the shared bit clear; a legacy VM); `1 << C-bit` on SEV, where the firmware maps its own
/// code private.
pub fn encryption_mask(leaf: Leaf, va: u64) -> Result<u64, MaskError> {
    // A large leaf's bit 12 is its PAT bit, not an address bit.
    let frame_bits = PTE_ADDR & !(leaf.size - 1);
    let frame = leaf.entry & frame_bits;
    let expected = va & frame_bits;
    let extra = frame ^ expected;
    let low = (1u64 << crate::ghcb::CBIT_MIN) - 1;
    if extra & expected != 0 || extra & low != 0 {
        return Err(MaskError::NotIdentity { frame, expected });
    }
    if extra.count_ones() > 1 {
        return Err(MaskError::Implausible(extra));
    }
    Ok(extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// C-bit / shared-bit positions: Milan and Genoa, and the sims' narrow ones (39- and
    /// 46-bit vCPUs).
    const POSITIONS: [u32; 4] = [47, 51, 38, 45];

    /// A firmware-like identity map (4 or 5 levels, 2 MiB leaves for the low 4 GiB), every
    /// table pointer and private leaf with `mask`, as OVMF builds it for an SEV guest.
    fn firmware_tables(mask: u64, private_end: u64, levels: u32) -> (HashMap<u64, u64>, u64) {
        let mut m = HashMap::new();
        let (pml5, pml4, pdpt, pd) = (0x1000u64, 0x2000u64, 0x3000u64, 0x10_000u64);
        for i in 0..2048u64 {
            m.insert(pd + i * 8, identity_pd_entry(i, mask, private_end));
        }
        for i in 0..4u64 {
            m.insert(pdpt + i * 8, (pd + i * 0x1000) | PTE_P | PTE_W | mask);
        }
        m.insert(pml4, pdpt | PTE_P | PTE_W | mask);
        m.insert(pml5, pml4 | PTE_P | PTE_W | mask);
        let cr3 = if levels == 5 { pml5 } else { pml4 } | mask;
        (m, cr3)
    }

    #[test]
    fn the_mask_is_read_back_from_the_firmwares_tables_at_every_position() {
        for levels in [4, 5] {
            for bit in POSITIONS {
                let mask = 1u64 << bit;
                let (m, cr3) = firmware_tables(mask, 0x1000_0000, levels);
                let va = 0x0765_4321;
                let leaf = walk(
                    &mut |pa| m.get(&pa).copied(),
                    cr3,
                    levels,
                    va,
                    table_addr_mask(0x1000_0000),
                )
                .unwrap_or_else(|| panic!("walk at bit {bit}, {levels} levels"));
                assert_eq!(leaf.size, SIZE_2M);
                assert_eq!(encryption_mask(leaf, va), Ok(mask), "bit {bit}");
            }
            // TDX and legacy: no extra bit.
            let (m, cr3) = firmware_tables(0, 0x1000_0000, levels);
            let leaf = walk(
                &mut |pa| m.get(&pa).copied(),
                cr3,
                levels,
                0x20_0000,
                PTE_ADDR,
            )
            .unwrap();
            assert_eq!(encryption_mask(leaf, 0x20_0000), Ok(0));
        }
    }

    #[test]
    fn a_table_address_mask_keeps_ram_and_drops_the_cbit() {
        for bit in POSITIONS {
            let m = table_addr_mask(256 << 20);
            assert_eq!(m & (1 << bit), 0, "bit {bit}");
            assert_eq!(m & 0xffff_f000, 0xffff_f000);
        }
        assert_eq!(table_addr_mask(5 << 32) & (1 << 34), 1 << 34);
        assert_eq!(table_addr_mask(u64::MAX), PTE_ADDR);
    }

    #[test]
    fn implausible_leaves_are_refused() {
        let va = 0x40_0000;
        let leaf = |entry| Leaf {
            entry,
            size: SIZE_2M,
        };
        assert_eq!(
            encryption_mask(leaf(0x60_0000 | PTE_P | PTE_PS), va),
            Err(MaskError::NotIdentity {
                frame: 0x60_0000,
                expected: 0x40_0000
            })
        );
        assert_eq!(
            encryption_mask(leaf(va | (1 << 47) | (1 << 51) | PTE_P | PTE_PS), va),
            Err(MaskError::Implausible((1 << 47) | (1 << 51)))
        );
        assert!(matches!(
            encryption_mask(leaf(va | (1 << 30) | PTE_P | PTE_PS), va),
            Err(MaskError::NotIdentity { .. })
        ));
        // A 2 MiB leaf's PAT bit (12) is not an address bit.
        assert_eq!(
            encryption_mask(
                leaf(va | (1 << 12) | (1 << 47) | PTE_P | PTE_PS),
                va + 0x1234
            ),
            Ok(1 << 47)
        );
    }

    #[test]
    fn identity_entries_carry_the_mask_below_private_end_only() {
        for bit in POSITIONS {
            let mask = 1u64 << bit;
            let end = 0x1030_0000; // not 2 MiB aligned: the page holding its end is private
            assert_eq!(private_pd_entries(end), 0x82);
            let e = |i| identity_pd_entry(i, mask, end);
            assert_eq!(e(0), PTE_P | PTE_W | PTE_PS | mask);
            assert_eq!(e(0x81) & mask, mask);
            assert_eq!(e(0x82), (0x82 << 21) | PTE_P | PTE_W | PTE_PS);
            assert_eq!(e(2047) & PTE_ADDR, 2047 << 21);
        }
    }

    #[test]
    fn a_split_page_leaves_only_the_shared_page_without_the_mask() {
        for bit in POSITIONS {
            let mask = 1u64 << bit;
            let base = 0x20_0000;
            let t = split_2m(base, mask, base + 0x5123);
            for (j, e) in t.iter().enumerate() {
                assert_eq!(e & PTE_ADDR & !mask, base + ((j as u64) << 12));
                assert_eq!(e & PTE_PS, 0);
                assert_eq!(e & mask != 0, j != 5, "page {j} at bit {bit}");
            }
        }
    }
}
