//! Guest memory as the guest's instructions see it: read through the vCPU's paging
//! (KVM_TRANSLATE per page), and the instructions there decoded with the guest's own decoder
//! (`protocol::decode`, `protocol::x86::decode_port_io`), for the exits whose instruction the
//! VMM must find: a store's MMIO exit (the memslot scenario), a raw port-IO exit, the hostile
//! host's GHCB watch.

use super::kvm::CountedFd;
use kvm_bindings::kvm_regs;

/// A port-IO exit: what KVM reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortExit {
    /// The port.
    pub port: u16,
    /// Bytes per element.
    pub size: usize,
    /// IN/INS.
    pub input: bool,
}

/// The port-IO instruction an IN/OUT exit at `regs.rip` came from, and where it starts:
/// at RIP if `at_insn` (KVM moved RIP past it when it completed the exit: upstream KVM
/// reports port exits at the instruction), else ending at RIP (OUT exits on these machines
/// report the next instruction); decoded with `protocol::x86::decode_port_io` and matching
/// the exit's port, size and direction.
pub fn find_port_io(
    fd: &CountedFd,
    mem: &vm_memory::GuestMemoryMmap,
    alias: u64,
    regs: &kvm_regs,
    exit: PortExit,
    at_insn: bool,
) -> Option<(u64, protocol::x86::PortIo)> {
    let rip = regs.rip;
    let matches = |start: u64| {
        let mut bytes = [0u8; 4];
        let n = read_guest(fd, mem, alias, start, &mut bytes);
        let io = protocol::x86::decode_port_io(&bytes[..n])?;
        let fits = usize::from(io.size) == exit.size
            && io.input == exit.input
            && io.imm_port.is_none_or(|p| u16::from(p) == exit.port)
            && (io.imm_port.is_some() || regs.rdx as u16 == exit.port)
            && (at_insn || start + u64::from(io.len) == rip);
        fits.then_some((start, io))
    };
    if at_insn {
        matches(rip)
    } else {
        (1..=3u64).rev().find_map(|n| matches(rip.wrapping_sub(n)))
    }
}

/// Reads guest virtual memory at `va` into `buf`, translating once per page; returns how
/// many bytes were readable (the rest of `buf` is left as it was).
pub fn read_guest(
    fd: &CountedFd,
    mem: &vm_memory::GuestMemoryMmap,
    alias: u64,
    va: u64,
    buf: &mut [u8],
) -> usize {
    use vm_memory::Bytes;
    const PAGE: u64 = 4096;
    let mut done = 0;
    while done < buf.len() {
        let at = va + done as u64;
        let Some(t) = fd.translate_gva(at).ok().filter(|t| t.valid != 0) else {
            break;
        };
        // The RAM alias bit (sev-es-sim's C-bit) is not part of the RAM memslot's GPA.
        let gpa = t.physical_address & !alias;
        let n = ((PAGE - at % PAGE) as usize).min(buf.len() - done);
        if mem
            .read_slice(&mut buf[done..done + n], vm_memory::GuestAddress(gpa))
            .is_err()
        {
            break;
        }
        done += n;
    }
    done
}

/// The instruction at guest virtual `start`, decoded with the guest's decoder from the
/// readable bytes there (`None` if unreadable, undecodable, or FS/GS-relative).
pub fn decode_guest(
    fd: &CountedFd,
    mem: &vm_memory::GuestMemoryMmap,
    alias: u64,
    start: u64,
) -> Option<protocol::decode::Decoded> {
    let mut bytes = [0u8; protocol::decode::MAX_INSN_LEN];
    let n = read_guest(fd, mem, alias, start, &mut bytes);
    let d = protocol::decode::decode(&bytes[..n]).ok()?;
    d.mem.segment.is_none().then_some(d)
}

/// What the instruction at RIP is about to do, for the hostile host's GHCB watch: the
/// linear address and size it loads (if it is one of the decoder's loads, which is what
/// volatile reads of the GHCB compile to), and whether it is an STI or HLT (the watch stops
/// single-stepping before them: a step exit between `sti` and `hlt` would let the wake-up
/// interrupt in before the HLT).
pub fn next_insn(
    fd: &CountedFd,
    mem: &vm_memory::GuestMemoryMmap,
    alias: u64,
    regs: &kvm_regs,
) -> (Option<(u64, u64)>, bool) {
    let mut first = [0u8; 1];
    let halts = read_guest(fd, mem, alias, regs.rip, &mut first) == 1
        && (first[0] == protocol::x86::STI_OPCODE || first[0] == protocol::x86::HLT_OPCODE);
    let load = decode_guest(fd, mem, alias, regs.rip)
        .filter(|d| d.direction() == protocol::access::Direction::Read)
        .map(|d| {
            let next = regs.rip + u64::from(d.len);
            (linear_address(&d, regs, next), d.size().bytes())
        });
    (load, halts)
}

/// The linear address the decoded instruction `d` (ending at `next`) accesses with the
/// registers `regs` (what TDX reports as the GLA).
pub fn linear_address(d: &protocol::decode::Decoded, regs: &kvm_regs, next: u64) -> u64 {
    use protocol::decode::Gpr;
    let reg = |g: Gpr| match g {
        Gpr::Rax => regs.rax,
        Gpr::Rcx => regs.rcx,
        Gpr::Rdx => regs.rdx,
        Gpr::Rbx => regs.rbx,
        Gpr::Rsp => regs.rsp,
        Gpr::Rbp => regs.rbp,
        Gpr::Rsi => regs.rsi,
        Gpr::Rdi => regs.rdi,
        Gpr::R8 => regs.r8,
        Gpr::R9 => regs.r9,
        Gpr::R10 => regs.r10,
        Gpr::R11 => regs.r11,
        Gpr::R12 => regs.r12,
        Gpr::R13 => regs.r13,
        Gpr::R14 => regs.r14,
        Gpr::R15 => regs.r15,
    };
    d.mem.effective_address(reg, next)
}

/// The linear address the instruction at `start`, ending exactly at `next`, accessed,
/// decoded from guest memory with the guest's decoder. `None` when the bytes cannot be read
/// or decoded, or decode to another length.
pub fn guest_linear_address(
    fd: &CountedFd,
    mem: &vm_memory::GuestMemoryMmap,
    alias: u64,
    regs: &kvm_regs,
    start: u64,
    next: u64,
) -> Option<u64> {
    let d = decode_guest(fd, mem, alias, start)?;
    (start + u64::from(d.len) == next).then(|| linear_address(&d, regs, next))
}

/// The guest physical address `va` maps to under the paging of `sregs` (CR0, CR3, CR4,
/// EFER), walked in software over guest RAM `mem`: what KVM_TRANSLATE answers, without the
/// ioctl. Table pointers are read with `alias` (sev-es-sim's C-bit: RAM's second mapping)
/// stripped; the leaf's address keeps it, as KVM_TRANSLATE's does. An entry with an address
/// bit at or above the vCPU's `phys_bits` is a reserved-bit fault: not mapped. `None` when
/// `va` is not mapped, or when paging is off or not in long mode (see [`long_mode_paging`]:
/// the caller asks KVM then).
pub fn walk_guest(
    mem: &vm_memory::GuestMemoryMmap,
    sregs: &kvm_bindings::kvm_sregs,
    alias: u64,
    phys_bits: u8,
    va: u64,
) -> Option<u64> {
    use protocol::paging::{PTE_ADDR, PTE_P, walk};
    use protocol::x86::cr;
    use vm_memory::Bytes;
    if !long_mode_paging(sregs) {
        return None;
    }
    let levels = if sregs.cr4 & cr::CR4_LA57 != 0 { 5 } else { 4 };
    let reserved = PTE_ADDR & !((1u64 << phys_bits) - 1);
    let mut read = |gpa: u64| {
        let e: u64 = mem.read_obj(vm_memory::GuestAddress(gpa & !alias)).ok()?;
        (e & PTE_P == 0 || e & reserved == 0).then_some(e)
    };
    let leaf = walk(&mut read, sregs.cr3, levels, va, PTE_ADDR & !alias)?;
    Some((leaf.entry & PTE_ADDR & !(leaf.size - 1)) | (va & (leaf.size - 1)))
}

/// Whether `sregs` page with 4- or 5-level long-mode paging, which [`walk_guest`] walks.
pub fn long_mode_paging(sregs: &kvm_bindings::kvm_sregs) -> bool {
    sregs.cr0 & protocol::x86::cr::CR0_PG != 0 && sregs.efer & protocol::x86::efer::LMA != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::paging::{PTE_P, PTE_PS, PTE_W};
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    #[test]
    fn the_software_walk_reads_four_and_five_levels_with_the_alias_stripped() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let alias = 1u64 << 47;
        let put = |gpa: u64, v: u64| mem.write_obj(v, GuestAddress(gpa)).unwrap();
        // PML4 at 0x1000 -> PDPT at 0x2000 (through the alias) -> PD at 0x3000: a 2 MiB
        // leaf for VA 0x4000_0000 at 0x20_0000 with the alias bit, and a 4 KiB table at 0x4000
        // for VA 0x4020_0000 whose page 3 maps 0x9000.
        put(0x1000, 0x2000 | alias | PTE_P | PTE_W);
        put(0x2000 + 8, 0x3000 | PTE_P | PTE_W);
        put(0x3000, 0x20_0000 | alias | PTE_P | PTE_W | PTE_PS);
        put(0x3000 + 8, 0x4000 | PTE_P | PTE_W);
        put(0x4000 + 3 * 8, 0x9000 | PTE_P);
        let mut sregs = kvm_bindings::kvm_sregs {
            cr0: protocol::x86::cr::CR0_PG | 1,
            cr3: 0x1000,
            efer: protocol::x86::efer::LMA | protocol::x86::efer::LME,
            ..Default::default()
        };
        let va = 0x4000_0000;
        assert_eq!(
            walk_guest(&mem, &sregs, alias, 48, va + 0x1234),
            Some(0x20_1234 | alias)
        );
        assert_eq!(
            walk_guest(&mem, &sregs, alias, 48, va + 0x20_3abc),
            Some(0x9abc)
        );
        assert_eq!(
            walk_guest(&mem, &sregs, alias, 48, va + 0x20_4000),
            None,
            "not present"
        );
        // The alias bit is at or above a 46-bit vCPU's width: reserved.
        assert_eq!(walk_guest(&mem, &sregs, alias, 46, va), None);
        // 5-level: a PML5 at 0x5000 pointing at the PML4.
        put(0x5000, 0x1000 | PTE_P | PTE_W);
        sregs.cr3 = 0x5000;
        sregs.cr4 = protocol::x86::cr::CR4_LA57;
        assert_eq!(
            walk_guest(&mem, &sregs, alias, 48, va + 0x20_3abc),
            Some(0x9abc)
        );
        // Paging off: the caller asks KVM.
        sregs.cr0 = 1;
        assert_eq!(walk_guest(&mem, &sregs, alias, 48, va), None);
    }
}
