//! The x86-64 instruction decoder of the guest's MMIO emulation: the few `MOV` forms a
//! `#VE` (TDX) or `#VC` (SEV-ES) handler must emulate when the guest touches MMIO, and a
//! refusal that names the bytes for everything else.
//!
//! The handler fetches the bytes at the faulting RIP, calls [`decode`], computes the address
//! with [`Mem::linear_address`] (SEV-ES; TDX reports the GPA itself), performs the access
//! through the hypervisor, writes a load back with [`Load::merge`] (or takes a store's value
//! from [`Store::value`]) and advances RIP by [`Decoded::len`] once.
//!
//! Supported, 64-bit mode only, memory operands only (Intel SDM vol. 2B "MOV", "MOVZX",
//! "MOVSX/MOVSXD"; AMD APM vol. 3 same names):
//!
//! | opcode        | form                          | access          |
//! |---------------|-------------------------------|-----------------|
//! | `88 /r`       | `MOV m8, r8`                  | store 1         |
//! | `89 /r`       | `MOV m16/32/64, r`            | store 2/4/8     |
//! | `8A /r`       | `MOV r8, m8`                  | load 1          |
//! | `8B /r`       | `MOV r, m16/32/64`            | load 2/4/8      |
//! | `C6 /0 ib`    | `MOV m8, imm8`                | store 1         |
//! | `C7 /0 iw/id` | `MOV m16/32/64, imm16/imm32`  | store 2/4/8     |
//! | `0F B6 /r`    | `MOVZX r16/32/64, m8`         | load 1          |
//! | `0F B7 /r`    | `MOVZX r16/32/64, m16`        | load 2          |
//! | `0F BE /r`    | `MOVSX r16/32/64, m8`         | load 1          |
//! | `0F BF /r`    | `MOVSX r16/32/64, m16`        | load 2          |
//! | `REX.W 63 /r` | `MOVSXD r64, m32`             | load 4          |
//!
//! Prefixes: operand size `66`, REX `40`-`4F` (effective only immediately before the opcode,
//! as on hardware), and the segment overrides `26 2E 36 3E 64 65` (only FS and GS change the
//! address in 64-bit mode; the other four are accepted and skipped). Refused with
//! [`DecodeErrorKind::RefusedPrefix`]:
//!
//! - `F0` (LOCK): `#UD` on `MOV`; it never reaches an MMIO exit.
//! - `F2`/`F3` (REPNE/REP, XACQUIRE/XRELEASE): ignored by `MOV`, or an HLE hint on a store;
//!   neither means anything for an emulated MMIO access and no compiler emits them there, so
//!   their presence means the bytes are not what the handler expects.
//! - `67` (32-bit address size): the address would be truncated to 32 bits; no compiled
//!   MMIO accessor uses it, so the address computation stays one 64-bit rule.
//!
//! Also refused: register-to-register forms (`ModRM.mod = 3`, they never touch memory),
//! `63` without REX.W (the 16- and 32-bit `MOVSXD` forms, whose use Intel SDM vol. 2B calls
//! discouraged in favour of `MOV`), the `moffs` forms `A0`-`A3`, and every other opcode.
//!
//! Sources: Intel SDM vol. 2A (order no. 325383, 2024) 2.1 "Instruction format", 2.1.1
//! "Instruction prefixes", 2.1.3 "ModR/M and SIB bytes" (tables 2-2, 2-3), 2.2.1 "REX
//! prefixes" (tables 2-4, 2-5), 2.2.1.6 "RIP-relative addressing"; Intel SDM vol. 1 3.4.1.1
//! "General-purpose registers in 64-bit mode"; AMD APM vol. 3 (pub. 24594) 1.2 "Instruction
//! prefixes", 1.4 "ModRM and SIB bytes". Linux `arch/x86/lib/insn-eval.c`
//! (`insn_decode_mmio`) classifies nearly the same set (it adds `MOVS`, `A4`/`A5`, and has
//! no `MOVSXD`).

use core::fmt;

use crate::access::{Direction, Width};

/// The longest legal x86 instruction, in bytes (Intel SDM vol. 2A 2.1: a longer one raises
/// `#GP`). The decoder never reads beyond this many bytes.
pub const MAX_INSN_LEN: usize = 15;

/// Prefix bytes (Intel SDM vol. 2A 2.1.1, AMD APM vol. 3 1.2).
pub mod prefix {
    /// Operand-size override: 16-bit operands (REX.W wins over it).
    pub const OPERAND_SIZE: u8 = 0x66;
    /// Address-size override: 32-bit addressing in 64-bit mode (refused).
    pub const ADDRESS_SIZE: u8 = 0x67;
    /// LOCK (refused: `#UD` on `MOV`).
    pub const LOCK: u8 = 0xf0;
    /// REPNE / XACQUIRE (refused).
    pub const REPNE: u8 = 0xf2;
    /// REP / XRELEASE (refused).
    pub const REP: u8 = 0xf3;
    /// ES override (a null prefix in 64-bit mode: AMD APM vol. 3 1.2.4).
    pub const ES: u8 = 0x26;
    /// CS override (null in 64-bit mode).
    pub const CS: u8 = 0x2e;
    /// SS override (null in 64-bit mode).
    pub const SS: u8 = 0x36;
    /// DS override (null in 64-bit mode).
    pub const DS: u8 = 0x3e;
    /// FS override: the FS base is added to the address.
    pub const FS: u8 = 0x64;
    /// GS override: the GS base is added to the address.
    pub const GS: u8 = 0x65;
    /// First REX byte (`0100WRXB`, Intel SDM vol. 2A 2.2.1, table 2-4).
    pub const REX_FIRST: u8 = 0x40;
    /// Last REX byte.
    pub const REX_LAST: u8 = 0x4f;
    /// REX.W: 64-bit operand size.
    pub const REX_W: u8 = 0x08;
    /// REX.R: extends ModRM.reg.
    pub const REX_R: u8 = 0x04;
    /// REX.X: extends SIB.index.
    pub const REX_X: u8 = 0x02;
    /// REX.B: extends ModRM.rm and SIB.base.
    pub const REX_B: u8 = 0x01;
}

/// Opcode bytes of the supported forms (Intel SDM vol. 2B, opcode map in vol. 2D appendix A).
pub mod opcode {
    /// `MOV r/m8, r8`.
    pub const MOV_RM8_R8: u8 = 0x88;
    /// `MOV r/m16/32/64, r16/32/64`.
    pub const MOV_RM_R: u8 = 0x89;
    /// `MOV r8, r/m8`.
    pub const MOV_R8_RM8: u8 = 0x8a;
    /// `MOV r16/32/64, r/m16/32/64`.
    pub const MOV_R_RM: u8 = 0x8b;
    /// `MOVSXD r64, r/m32` (with REX.W).
    pub const MOVSXD: u8 = 0x63;
    /// `MOV r/m8, imm8` (group 11, ModRM.reg = 0).
    pub const MOV_RM8_IMM8: u8 = 0xc6;
    /// `MOV r/m16/32/64, imm16/32` (group 11, ModRM.reg = 0).
    pub const MOV_RM_IMM: u8 = 0xc7;
    /// Two-byte opcode escape.
    pub const ESCAPE_0F: u8 = 0x0f;
    /// `0F B6`: `MOVZX r, r/m8`.
    pub const MOVZX_RM8: u8 = 0xb6;
    /// `0F B7`: `MOVZX r, r/m16`.
    pub const MOVZX_RM16: u8 = 0xb7;
    /// `0F BE`: `MOVSX r, r/m8`.
    pub const MOVSX_RM8: u8 = 0xbe;
    /// `0F BF`: `MOVSX r, r/m16`.
    pub const MOVSX_RM16: u8 = 0xbf;
}

/// A general-purpose register, numbered as the encoding numbers it: the 3-bit ModRM.reg,
/// ModRM.rm, SIB.index or SIB.base field extended by REX.R, REX.B or REX.X to 4 bits
/// (Intel SDM vol. 2A 2.2.1.2 and 3.1.1.1, table 3-1 "Register codes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Gpr {
    /// 0: RAX.
    Rax = 0,
    /// 1: RCX.
    Rcx = 1,
    /// 2: RDX.
    Rdx = 2,
    /// 3: RBX.
    Rbx = 3,
    /// 4: RSP.
    Rsp = 4,
    /// 5: RBP.
    Rbp = 5,
    /// 6: RSI.
    Rsi = 6,
    /// 7: RDI.
    Rdi = 7,
    /// 8: R8.
    R8 = 8,
    /// 9: R9.
    R9 = 9,
    /// 10: R10.
    R10 = 10,
    /// 11: R11.
    R11 = 11,
    /// 12: R12.
    R12 = 12,
    /// 13: R13.
    R13 = 13,
    /// 14: R14.
    R14 = 14,
    /// 15: R15.
    R15 = 15,
}

impl Gpr {
    /// All sixteen, in encoding order.
    pub const ALL: [Gpr; 16] = [
        Gpr::Rax,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rsp,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];

    /// The register with encoding number `n` (0..=15).
    pub const fn from_index(n: u8) -> Option<Gpr> {
        if (n as usize) < Self::ALL.len() {
            Some(Self::ALL[n as usize])
        } else {
            None
        }
    }

    /// The encoding number (0..=15).
    pub const fn index(self) -> u8 {
        self as u8
    }

    /// The 64-bit name (`"rax"`, `"r12"`), for diagnostics.
    pub const fn name(self) -> &'static str {
        const NAMES: [&str; 16] = [
            "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ];
        NAMES[self as usize]
    }
}

/// A register operand: which register, and whether it is one of the legacy high-byte
/// registers AH/CH/DH/BH (bits 15:8 of RAX/RCX/RDX/RBX).
///
/// 8-bit register numbers 4..=7 name AH/CH/DH/BH when the instruction has no REX prefix and
/// SPL/BPL/SIL/DIL when it has one (Intel SDM vol. 1 3.4.1.1, vol. 2A 2.2.1, table 2-5
/// footnote; AMD APM vol. 3 1.2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reg {
    /// The 64-bit register the operand is part of.
    pub gpr: Gpr,
    /// The operand is bits 15:8 (AH, CH, DH, BH); only with 8-bit operands.
    pub high_byte: bool,
}

impl Reg {
    /// A register operand that is the low part of `gpr`.
    pub const fn low(gpr: Gpr) -> Reg {
        Reg {
            gpr,
            high_byte: false,
        }
    }

    /// The operand's value in a register holding `full`: the low bits, or bits 15:8 for a
    /// high-byte register (not yet truncated to the operand width).
    pub const fn read(self, full: u64) -> u64 {
        if self.high_byte { full >> 8 } else { full }
    }
}

/// A segment override that changes the address in 64-bit mode. ES, CS, SS and DS overrides
/// are null prefixes there (their bases are treated as 0: Intel SDM vol. 1 3.4.2.1, AMD APM
/// vol. 3 1.2.4); the decoder accepts and skips them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// `64`: the FS base (MSR `IA32_FS_BASE`) is added.
    Fs,
    /// `65`: the GS base (MSR `IA32_GS_BASE`) is added.
    Gs,
}

/// The memory operand's addressing: `segment base + base + index * scale + disp`, or
/// `address of the next instruction + disp` when [`Mem::rip_relative`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mem {
    /// The base register, if any (none for RIP-relative and for SIB with base 101b and
    /// mod 00b).
    pub base: Option<Gpr>,
    /// The index register and its scale (1, 2, 4 or 8), if any (SIB.index 100b without REX.X
    /// means none).
    pub index: Option<(Gpr, u8)>,
    /// The displacement, sign-extended (0 when the encoding has none).
    pub disp: i64,
    /// Addressing relative to the next instruction (ModRM mod 00b, rm 101b).
    pub rip_relative: bool,
    /// The FS/GS override, if any (the last FS/GS prefix wins).
    pub segment: Option<Segment>,
}

impl Mem {
    /// The effective address (the offset within the segment): `base + index * scale + disp`
    /// modulo 2^64, or `rip_after + disp` for RIP-relative addressing, where `rip_after` is
    /// the address of the next instruction (the faulting RIP plus [`Decoded::len`]). `regs`
    /// gives the value of a register at the time of the fault.
    pub fn effective_address(&self, regs: impl Fn(Gpr) -> u64, rip_after: u64) -> u64 {
        if self.rip_relative {
            return rip_after.wrapping_add_signed(self.disp);
        }
        let base = self.base.map_or(0, &regs);
        let index = self
            .index
            .map_or(0, |(r, scale)| regs(r).wrapping_mul(u64::from(scale)));
        base.wrapping_add(index).wrapping_add_signed(self.disp)
    }

    /// The linear address: [`Mem::effective_address`] plus the FS or GS base when the
    /// instruction has that override (`seg_base` answers the base; it is not called
    /// otherwise).
    pub fn linear_address(
        &self,
        regs: impl Fn(Gpr) -> u64,
        rip_after: u64,
        seg_base: impl Fn(Segment) -> u64,
    ) -> u64 {
        let ea = self.effective_address(regs, rip_after);
        self.segment.map_or(ea, |s| ea.wrapping_add(seg_base(s)))
    }
}

/// How a load widens the value read from memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Extension {
    /// `MOV`: the destination is as wide as the access.
    None,
    /// `MOVZX`: zero-extended to the destination width.
    Zero,
    /// `MOVSX`, `MOVSXD`: sign-extended to the destination width.
    Sign,
}

/// A load from MMIO into a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Load {
    /// The destination register.
    pub dest: Reg,
    /// The width of the destination operand (`Width::B1` only for `MOV r8, m8`).
    pub dest_width: Width,
    /// The memory access width.
    pub size: Width,
    /// How the value is widened from `size` to `dest_width`.
    pub extend: Extension,
}

impl Load {
    /// The destination register's new 64-bit value, given its old value and the value read
    /// from memory (bits above the access width are ignored), with x86-64 semantics (Intel
    /// SDM vol. 1 3.4.1.1): the value is zero- or sign-extended to the destination width; a
    /// 32-bit destination write zero-extends to 64 bits; 8- and 16-bit writes keep the other
    /// bits; a high-byte destination writes bits 15:8 only.
    pub const fn merge(&self, old: u64, value_from_memory: u64) -> u64 {
        let value = match self.extend {
            Extension::None | Extension::Zero => value_from_memory & self.size.mask(),
            Extension::Sign => sign_extend(value_from_memory, self.size),
        };
        let value = value & self.dest_width.mask();
        if self.dest.high_byte {
            return (old & !0xff00) | ((value & 0xff) << 8);
        }
        match self.dest_width {
            Width::B1 | Width::B2 => (old & !self.dest_width.mask()) | value,
            Width::B4 | Width::B8 => value,
        }
    }
}

/// `v`'s low `width` bytes sign-extended to 64 bits.
const fn sign_extend(v: u64, width: Width) -> u64 {
    let shift = 64 - 8 * width.bytes() as u32;
    (((v << shift) as i64) >> shift) as u64
}

/// What a store writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreSrc {
    /// A register (`MOV m, r`).
    Reg(Reg),
    /// An immediate (`MOV m, imm`), already extended to the access width as the CPU does
    /// (a `C7` immediate with REX.W is sign-extended from 32 to 64 bits).
    Imm(u64),
}

/// A store from a register or an immediate to MMIO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Store {
    /// The source.
    pub src: StoreSrc,
    /// The memory access width.
    pub size: Width,
}

impl Store {
    /// The value written to memory, masked to the access width: the source register's value
    /// (bits 15:8 for a high-byte register) or the immediate. `regs` gives a register's value.
    pub fn value(&self, regs: impl Fn(Gpr) -> u64) -> u64 {
        let v = match self.src {
            StoreSrc::Reg(r) => r.read(regs(r.gpr)),
            StoreSrc::Imm(v) => v,
        };
        v & self.size.mask()
    }
}

/// The MMIO operation of a decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmioOp {
    /// Memory to register.
    Load(Load),
    /// Register or immediate to memory.
    Store(Store),
}

/// A decoded MMIO instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decoded {
    /// The whole instruction's length in bytes, prefixes and immediate included (at most
    /// [`MAX_INSN_LEN`]): the handler advances RIP by it.
    pub len: u8,
    /// What the instruction does.
    pub op: MmioOp,
    /// Where in memory.
    pub mem: Mem,
}

impl Decoded {
    /// The memory access width.
    pub const fn size(&self) -> Width {
        match self.op {
            MmioOp::Load(l) => l.size,
            MmioOp::Store(s) => s.size,
        }
    }

    /// Read (load) or write (store).
    pub const fn direction(&self) -> Direction {
        match self.op {
            MmioOp::Load(_) => Direction::Read,
            MmioOp::Store(_) => Direction::Write,
        }
    }
}

/// Why [`decode`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeErrorKind {
    /// The input ended inside the instruction: the caller fetched too few bytes (for
    /// example at the end of a mapped page). Distinct from every other refusal, because
    /// more bytes could make it decode.
    Truncated,
    /// The instruction would be longer than [`MAX_INSN_LEN`] bytes (only possible with
    /// redundant prefixes; the CPU raises `#GP`).
    TooLong,
    /// A prefix this decoder refuses (see the module documentation): LOCK, REP/REPNE or
    /// address size. Holds the prefix byte.
    RefusedPrefix(u8),
    /// A supported opcode in its register-to-register form (ModRM.mod = 3): no memory access.
    RegisterForm,
    /// Not one of the supported opcodes (or a `C6`/`C7` with ModRM.reg != 0, or `63`
    /// without REX.W).
    Unsupported,
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("instruction truncated"),
            Self::TooLong => write!(f, "instruction longer than {MAX_INSN_LEN} bytes"),
            Self::RefusedPrefix(p) => write!(f, "refused prefix {p:02x}"),
            Self::RegisterForm => f.write_str("register operand, no memory access"),
            Self::Unsupported => f.write_str("not a supported MMIO MOV"),
        }
    }
}

/// A refusal, with the bytes it was given (at most [`MAX_INSN_LEN`]) so a report can name
/// the instruction.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecodeError {
    /// Why.
    pub kind: DecodeErrorKind,
    bytes: [u8; MAX_INSN_LEN],
    len: u8,
}

impl DecodeError {
    fn new(kind: DecodeErrorKind, input: &[u8]) -> Self {
        let n = input.len().min(MAX_INSN_LEN);
        let mut bytes = [0; MAX_INSN_LEN];
        bytes[..n].copy_from_slice(&input[..n]);
        DecodeError {
            kind,
            bytes,
            len: n as u8,
        }
    }

    /// The bytes the decoder was given, up to [`MAX_INSN_LEN`].
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Display for DecodeError {
    /// `"<reason>: bytes 0f 05"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: bytes", self.kind)?;
        if self.len == 0 {
            return f.write_str(" (none)");
        }
        for b in self.bytes() {
            write!(f, " {b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeError")
            .field("kind", &self.kind)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl core::error::Error for DecodeError {}

/// Decodes the instruction at the start of `bytes` (64-bit mode). Bytes after the
/// instruction are ignored; at most [`MAX_INSN_LEN`] are read.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    decode_inner(bytes).map_err(|kind| DecodeError::new(kind, bytes))
}

/// A forward reader over the instruction bytes that enforces the length limit.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    /// The next byte.
    fn byte(&mut self) -> Result<u8, DecodeErrorKind> {
        if self.pos >= MAX_INSN_LEN {
            return Err(DecodeErrorKind::TooLong);
        }
        let b = *self.bytes.get(self.pos).ok_or(DecodeErrorKind::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// The next `n` (<= 8) bytes as a little-endian number.
    fn le(&mut self, n: u32) -> Result<u64, DecodeErrorKind> {
        let mut v = 0;
        for i in 0..n {
            v |= u64::from(self.byte()?) << (8 * i);
        }
        Ok(v)
    }
}

/// The shape of a supported opcode.
#[derive(Clone, Copy)]
enum Form {
    /// Register operand is the source: `MOV m, r`.
    StoreReg,
    /// Immediate source (`C6`/`C7`); ModRM.reg must be 0.
    StoreImm,
    /// Register operand is the destination; the value widens as given.
    Load(Extension),
}

/// [`decode`] without the bytes in the error.
fn decode_inner(bytes: &[u8]) -> Result<Decoded, DecodeErrorKind> {
    use DecodeErrorKind::*;
    let mut c = Cursor { bytes, pos: 0 };

    // Legacy prefixes in any order, then at most one effective REX: a REX byte followed by
    // another prefix is ignored (Intel SDM vol. 2A 2.2.1, "other placements are ignored").
    let mut opsize16 = false;
    let mut segment = None;
    let mut rex = 0u8;
    let op = loop {
        let b = c.byte()?;
        match b {
            prefix::ES | prefix::CS | prefix::SS | prefix::DS => rex = 0,
            prefix::FS => (segment, rex) = (Some(Segment::Fs), 0),
            prefix::GS => (segment, rex) = (Some(Segment::Gs), 0),
            prefix::OPERAND_SIZE => (opsize16, rex) = (true, 0),
            prefix::ADDRESS_SIZE | prefix::LOCK | prefix::REPNE | prefix::REP => {
                return Err(RefusedPrefix(b));
            }
            prefix::REX_FIRST..=prefix::REX_LAST => rex = b,
            _ => break b,
        }
    };
    let has_rex = rex != 0;
    let rex_w = rex & prefix::REX_W != 0;
    // Operand size: REX.W 64, else 66 16, else 32 (Intel SDM vol. 1 3.6.1, table 3-4).
    let osize = if rex_w {
        Width::B8
    } else if opsize16 {
        Width::B2
    } else {
        Width::B4
    };

    // (form, memory access width, register/destination width)
    let (form, size, reg_width) = match op {
        opcode::MOV_RM8_R8 => (Form::StoreReg, Width::B1, Width::B1),
        opcode::MOV_RM_R => (Form::StoreReg, osize, osize),
        opcode::MOV_R8_RM8 => (Form::Load(Extension::None), Width::B1, Width::B1),
        opcode::MOV_R_RM => (Form::Load(Extension::None), osize, osize),
        opcode::MOV_RM8_IMM8 => (Form::StoreImm, Width::B1, Width::B1),
        opcode::MOV_RM_IMM => (Form::StoreImm, osize, osize),
        opcode::MOVSXD if rex_w => (Form::Load(Extension::Sign), Width::B4, Width::B8),
        opcode::ESCAPE_0F => match c.byte()? {
            opcode::MOVZX_RM8 => (Form::Load(Extension::Zero), Width::B1, osize),
            opcode::MOVZX_RM16 => (Form::Load(Extension::Zero), Width::B2, osize),
            opcode::MOVSX_RM8 => (Form::Load(Extension::Sign), Width::B1, osize),
            opcode::MOVSX_RM16 => (Form::Load(Extension::Sign), Width::B2, osize),
            _ => return Err(Unsupported),
        },
        _ => return Err(Unsupported),
    };

    let (reg_field, mem) = decode_modrm(&mut c, rex, segment, matches!(form, Form::StoreImm))?;
    let reg_num = reg_field | if rex & prefix::REX_R != 0 { 8 } else { 0 };
    let reg = if reg_width == Width::B1 && !has_rex && (4..8).contains(&reg_num) {
        Reg {
            gpr: gpr(reg_num - 4),
            high_byte: true,
        }
    } else {
        Reg::low(gpr(reg_num))
    };

    let op = match form {
        Form::StoreReg => MmioOp::Store(Store {
            src: StoreSrc::Reg(reg),
            size,
        }),
        Form::StoreImm => {
            // imm8, imm16, or imm32 (sign-extended to 64 bits with REX.W).
            let imm = match size {
                Width::B1 => c.le(1)?,
                Width::B2 => c.le(2)?,
                Width::B4 => c.le(4)?,
                Width::B8 => c.le(4)? as u32 as i32 as i64 as u64,
            };
            MmioOp::Store(Store {
                src: StoreSrc::Imm(imm),
                size,
            })
        }
        Form::Load(extend) => MmioOp::Load(Load {
            dest: reg,
            dest_width: reg_width,
            size,
            extend,
        }),
    };

    Ok(Decoded {
        // `Cursor::byte` never goes past MAX_INSN_LEN (15).
        len: c.pos as u8,
        op,
        mem,
    })
}

/// The register with number `n` (0..=15; callers mask to 4 bits).
fn gpr(n: u8) -> Gpr {
    Gpr::ALL[usize::from(n & 0xf)]
}

/// Reads ModRM, SIB and displacement (Intel SDM vol. 2A 2.1.3 tables 2-2/2-3, 2.2.1.1-2.2.1.6
/// for REX and 64-bit mode). Refuses mod = 3, and for a group-11 opcode (`C6`/`C7`,
/// `group11`) a ModRM.reg other than /0, before reading further (so an unsupported encoding
/// is never reported as truncated). Returns the raw 3-bit ModRM.reg field and the memory
/// operand.
fn decode_modrm(
    c: &mut Cursor<'_>,
    rex: u8,
    segment: Option<Segment>,
    group11: bool,
) -> Result<(u8, Mem), DecodeErrorKind> {
    let modrm = c.byte()?;
    let md = modrm >> 6;
    let reg = (modrm >> 3) & 7;
    let rm = modrm & 7;
    if md == 3 {
        return Err(DecodeErrorKind::RegisterForm);
    }
    // Group 11: ModRM.reg is an opcode extension and /0 is MOV; REX.R does not extend it
    // (Intel SDM vol. 2A 2.2.1, table 2-4).
    if group11 && reg != 0 {
        return Err(DecodeErrorKind::Unsupported);
    }
    let rex_b = if rex & prefix::REX_B != 0 { 8 } else { 0 };
    let rex_x = if rex & prefix::REX_X != 0 { 8 } else { 0 };

    let mut mem = Mem {
        base: None,
        index: None,
        disp: 0,
        rip_relative: false,
        segment,
    };
    // Whether mod 00 still carries a disp32 (RIP-relative, or SIB without base).
    let mut disp32 = false;
    match rm {
        // rm 100b: a SIB byte follows (also for R12 with REX.B: table 2-5).
        4 => {
            let sib = c.byte()?;
            let scale = 1u8 << (sib >> 6);
            let index = ((sib >> 3) & 7) | rex_x;
            // Index 100b without REX.X: no index (RSP cannot be an index; R12 can).
            if index != 4 {
                mem.index = Some((gpr(index), scale));
            }
            let base = sib & 7;
            if base == 5 && md == 0 {
                // Base 101b with mod 00: no base, disp32 (also with REX.B: no R13 here).
                disp32 = true;
            } else {
                mem.base = Some(gpr(base | rex_b));
            }
        }
        // rm 101b with mod 00: RIP + disp32 in 64-bit mode (2.2.1.6), whatever REX.B says.
        5 if md == 0 => {
            mem.rip_relative = true;
            disp32 = true;
        }
        _ => mem.base = Some(gpr(rm | rex_b)),
    }
    mem.disp = match md {
        1 => c.le(1)? as u8 as i8 as i64,
        2 => c.le(4)? as u32 as i32 as i64,
        _ if disp32 => c.le(4)? as u32 as i32 as i64,
        _ => 0,
    };
    Ok((reg, mem))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes and unwraps.
    fn ok(bytes: &[u8]) -> Decoded {
        match decode(bytes) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// The refusal kind.
    fn err(bytes: &[u8]) -> DecodeErrorKind {
        match decode(bytes) {
            Ok(d) => panic!("decoded {bytes:02x?} as {d:?}"),
            Err(e) => {
                assert_eq!(e.bytes(), &bytes[..bytes.len().min(MAX_INSN_LEN)]);
                e.kind
            }
        }
    }

    fn load(d: &Decoded) -> Load {
        match d.op {
            MmioOp::Load(l) => l,
            MmioOp::Store(s) => panic!("expected a load, got {s:?}"),
        }
    }

    fn store(d: &Decoded) -> Store {
        match d.op {
            MmioOp::Store(s) => s,
            MmioOp::Load(l) => panic!("expected a store, got {l:?}"),
        }
    }

    /// `[base]` with no index, no displacement, no segment.
    fn at(base: Gpr) -> Mem {
        Mem {
            base: Some(base),
            index: None,
            disp: 0,
            rip_relative: false,
            segment: None,
        }
    }

    /// Register values for address tests: rN = 0x1000 * (N + 1).
    fn regs(r: Gpr) -> u64 {
        0x1000 * (u64::from(r.index()) + 1)
    }

    /// Every input shorter than a decoded instruction is `Truncated`, and trailing bytes
    /// do not change the result.
    fn check_len_and_truncation(bytes: &[u8]) {
        let d = ok(bytes);
        assert_eq!(usize::from(d.len), bytes.len(), "{bytes:02x?}");
        for n in 0..bytes.len() {
            assert_eq!(
                err(&bytes[..n]),
                DecodeErrorKind::Truncated,
                "{bytes:02x?}[..{n}]"
            );
        }
        let mut longer = [0xccu8; 32];
        longer[..bytes.len()].copy_from_slice(bytes);
        assert_eq!(decode(&longer), Ok(d));
    }

    #[test]
    fn mov_store_register_all_widths() {
        // mov [rax], cl / cx / ecx / rcx
        for (bytes, size) in [
            (&[0x88, 0x08][..], Width::B1),
            (&[0x66, 0x89, 0x08][..], Width::B2),
            (&[0x89, 0x08][..], Width::B4),
            (&[0x48, 0x89, 0x08][..], Width::B8),
        ] {
            let d = ok(bytes);
            check_len_and_truncation(bytes);
            assert_eq!(
                store(&d),
                Store {
                    src: StoreSrc::Reg(Reg::low(Gpr::Rcx)),
                    size
                },
                "{bytes:02x?}"
            );
            assert_eq!(d.mem, at(Gpr::Rax));
            assert_eq!(d.direction(), Direction::Write);
            assert_eq!(d.size(), size);
        }
    }

    #[test]
    fn mov_load_register_all_widths() {
        // mov dl / dx / edx / rdx, [rbx]
        for (bytes, size) in [
            (&[0x8a, 0x13][..], Width::B1),
            (&[0x66, 0x8b, 0x13][..], Width::B2),
            (&[0x8b, 0x13][..], Width::B4),
            (&[0x48, 0x8b, 0x13][..], Width::B8),
        ] {
            let d = ok(bytes);
            check_len_and_truncation(bytes);
            assert_eq!(
                load(&d),
                Load {
                    dest: Reg::low(Gpr::Rdx),
                    dest_width: size,
                    size,
                    extend: Extension::None
                },
                "{bytes:02x?}"
            );
            assert_eq!(d.mem, at(Gpr::Rbx));
            assert_eq!(d.direction(), Direction::Read);
        }
    }

    #[test]
    fn high_byte_registers_only_without_rex() {
        // mov [rax], ah (88 20): reg 4 without REX = AH.
        let d = ok(&[0x88, 0x20]);
        assert_eq!(
            store(&d).src,
            StoreSrc::Reg(Reg {
                gpr: Gpr::Rax,
                high_byte: true
            })
        );
        // mov bh, [rax] (8a 38).
        let l = load(&ok(&[0x8a, 0x38]));
        assert_eq!(
            l.dest,
            Reg {
                gpr: Gpr::Rbx,
                high_byte: true
            }
        );
        // With an empty REX (40): SPL / DIL.
        assert_eq!(
            store(&ok(&[0x40, 0x88, 0x20])).src,
            StoreSrc::Reg(Reg::low(Gpr::Rsp))
        );
        assert_eq!(load(&ok(&[0x40, 0x8a, 0x38])).dest, Reg::low(Gpr::Rdi));
        // A REX that is not last is ignored: 40 66 ... has no REX, so AH again.
        assert_eq!(
            store(&ok(&[0x40, 0x66, 0x88, 0x20])).src,
            StoreSrc::Reg(Reg {
                gpr: Gpr::Rax,
                high_byte: true
            })
        );
        // 16-bit operands never use high bytes: mov [rax], sp.
        assert_eq!(
            store(&ok(&[0x66, 0x89, 0x20])).src,
            StoreSrc::Reg(Reg::low(Gpr::Rsp))
        );
        // The MOVZX destination is at least 16 bits: movzx esp, byte [rax].
        assert_eq!(load(&ok(&[0x0f, 0xb6, 0x20])).dest, Reg::low(Gpr::Rsp));
    }

    #[test]
    fn mov_store_immediates() {
        // mov byte [rax], 0x80
        let d = ok(&[0xc6, 0x00, 0x80]);
        check_len_and_truncation(&[0xc6, 0x00, 0x80]);
        assert_eq!(
            store(&d),
            Store {
                src: StoreSrc::Imm(0x80),
                size: Width::B1
            }
        );
        // mov word [rax], 0x8001
        let d = ok(&[0x66, 0xc7, 0x00, 0x01, 0x80]);
        check_len_and_truncation(&[0x66, 0xc7, 0x00, 0x01, 0x80]);
        assert_eq!(
            store(&d),
            Store {
                src: StoreSrc::Imm(0x8001),
                size: Width::B2
            }
        );
        // mov dword [rax], 0x80000001: not sign-extended.
        let b = [0xc7, 0x00, 0x01, 0x00, 0x00, 0x80];
        check_len_and_truncation(&b);
        assert_eq!(
            store(&ok(&b)),
            Store {
                src: StoreSrc::Imm(0x8000_0001),
                size: Width::B4
            }
        );
        // mov qword [rax], -0x7fffffff: sign-extended to 64.
        let b = [0x48, 0xc7, 0x00, 0x01, 0x00, 0x00, 0x80];
        check_len_and_truncation(&b);
        assert_eq!(
            store(&ok(&b)),
            Store {
                src: StoreSrc::Imm(0xffff_ffff_8000_0001),
                size: Width::B8
            }
        );
        // ... and a positive one stays positive.
        let b = [0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0x7f];
        assert_eq!(store(&ok(&b)).src, StoreSrc::Imm(0x7fff_ffff));
        // REX.W wins over 66.
        let b = [0x66, 0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff];
        check_len_and_truncation(&b);
        assert_eq!(
            store(&ok(&b)),
            Store {
                src: StoreSrc::Imm(u64::MAX),
                size: Width::B8
            }
        );
        // The immediate follows the displacement: mov dword [rbp+0x10], 7.
        let b = [0xc7, 0x45, 0x10, 0x07, 0x00, 0x00, 0x00];
        check_len_and_truncation(&b);
        let d = ok(&b);
        assert_eq!(store(&d).src, StoreSrc::Imm(7));
        assert_eq!(
            d.mem,
            Mem {
                disp: 0x10,
                ..at(Gpr::Rbp)
            }
        );
        // REX.R does not extend the opcode-extension field: 44 c6 00 05 is still MOV.
        let b = [0x44, 0xc6, 0x00, 0x05];
        check_len_and_truncation(&b);
        assert_eq!(store(&ok(&b)).src, StoreSrc::Imm(5));
        // C6/C7 with ModRM.reg != 0 is not MOV.
        assert_eq!(err(&[0xc6, 0x08, 0x00]), DecodeErrorKind::Unsupported);
        assert_eq!(err(&[0xc7, 0x38, 0, 0, 0, 0]), DecodeErrorKind::Unsupported);
        // ... known from ModRM alone, so never reported as truncated (found by the fuzzer).
        assert_eq!(
            err(&[0xc7, 0xbb, 0xc6, 0x3a, 0xbb]),
            DecodeErrorKind::Unsupported
        );
        assert_eq!(err(&[0xc7, 0xb0, 0xff, 0xe4]), DecodeErrorKind::Unsupported);
        assert_eq!(err(&[0xc6, 0x0c]), DecodeErrorKind::Unsupported);
    }

    #[test]
    fn movzx_movsx_all_forms() {
        use Extension::{Sign, Zero};
        // (bytes, access width, destination width, extension); all `reg = rcx, [rdx]`.
        let cases: [(&[u8], Width, Width, Extension); 16] = [
            (&[0x66, 0x0f, 0xb6, 0x0a], Width::B1, Width::B2, Zero),
            (&[0x0f, 0xb6, 0x0a], Width::B1, Width::B4, Zero),
            (&[0x48, 0x0f, 0xb6, 0x0a], Width::B1, Width::B8, Zero),
            (&[0x66, 0x0f, 0xb7, 0x0a], Width::B2, Width::B2, Zero),
            (&[0x0f, 0xb7, 0x0a], Width::B2, Width::B4, Zero),
            (&[0x48, 0x0f, 0xb7, 0x0a], Width::B2, Width::B8, Zero),
            (&[0x66, 0x0f, 0xbe, 0x0a], Width::B1, Width::B2, Sign),
            (&[0x0f, 0xbe, 0x0a], Width::B1, Width::B4, Sign),
            (&[0x48, 0x0f, 0xbe, 0x0a], Width::B1, Width::B8, Sign),
            (&[0x66, 0x0f, 0xbf, 0x0a], Width::B2, Width::B2, Sign),
            (&[0x0f, 0xbf, 0x0a], Width::B2, Width::B4, Sign),
            (&[0x48, 0x0f, 0xbf, 0x0a], Width::B2, Width::B8, Sign),
            (&[0x48, 0x63, 0x0a], Width::B4, Width::B8, Sign),
            (&[0x66, 0x48, 0x63, 0x0a], Width::B4, Width::B8, Sign),
            (&[0x4f, 0x63, 0x0a], Width::B4, Width::B8, Sign),
            (&[0x66, 0x48, 0x0f, 0xbf, 0x0a], Width::B2, Width::B8, Sign),
        ];
        for (bytes, size, dest_width, extend) in cases {
            check_len_and_truncation(bytes);
            let d = ok(bytes);
            let l = load(&d);
            let dest = if bytes.contains(&0x4f) {
                Reg::low(Gpr::R9)
            } else {
                Reg::low(Gpr::Rcx)
            };
            assert_eq!(
                l,
                Load {
                    dest,
                    dest_width,
                    size,
                    extend
                },
                "{bytes:02x?}"
            );
            assert_eq!(d.size(), size);
            // Extension at the sign boundary of the access width.
            let top = 1u64 << (8 * size.bytes() - 1);
            let expect = match extend {
                Zero => top,
                _ => (!0u64 << (8 * size.bytes() - 1)) & dest_width.mask(),
            };
            let old = 0x5555_5555_5555_5555;
            let keep = if dest_width == Width::B2 {
                old & !0xffff
            } else {
                0
            };
            assert_eq!(l.merge(old, top), keep | expect, "{bytes:02x?}");
            // Positive values are the same either way.
            assert_eq!(l.merge(old, top - 1), keep | (top - 1), "{bytes:02x?}");
        }
        // MOVSXD without REX.W (the 16/32-bit forms) is refused.
        assert_eq!(err(&[0x63, 0x0a]), DecodeErrorKind::Unsupported);
        assert_eq!(err(&[0x66, 0x63, 0x0a]), DecodeErrorKind::Unsupported);
        // A REX.W that is not last does not count.
        assert_eq!(err(&[0x48, 0x66, 0x63, 0x0a]), DecodeErrorKind::Unsupported);
    }

    #[test]
    fn merge_follows_x86_register_write_rules() {
        let old = 0x1122_3344_5566_7788;
        let l = |dest, dest_width, size, extend| Load {
            dest,
            dest_width,
            size,
            extend,
        };
        let rax = Reg::low(Gpr::Rax);
        let ah = Reg {
            gpr: Gpr::Rax,
            high_byte: true,
        };
        // 8 and 16 bits keep the rest.
        assert_eq!(
            l(rax, Width::B1, Width::B1, Extension::None).merge(old, 0xab),
            0x1122_3344_5566_77ab
        );
        assert_eq!(
            l(rax, Width::B2, Width::B2, Extension::None).merge(old, 0xabcd),
            0x1122_3344_5566_abcd
        );
        // 32 bits zero-extend.
        assert_eq!(
            l(rax, Width::B4, Width::B4, Extension::None).merge(old, 0xffff_ffff),
            0xffff_ffff
        );
        assert_eq!(
            l(rax, Width::B8, Width::B8, Extension::None).merge(old, 0xdead_beef_0bad_f00d),
            0xdead_beef_0bad_f00d
        );
        // High byte: bits 15:8 only.
        assert_eq!(
            l(ah, Width::B1, Width::B1, Extension::None).merge(old, 0xab),
            0x1122_3344_5566_ab88
        );
        // Bits above the access width are ignored.
        assert_eq!(
            l(rax, Width::B1, Width::B1, Extension::None).merge(old, 0xffff_ff01),
            0x1122_3344_5566_7701
        );
        assert_eq!(
            l(ah, Width::B1, Width::B1, Extension::None).merge(old, 0x1ff),
            0x1122_3344_5566_ff88
        );
        // MOVSX r16, m8 keeps bits 63:16; MOVSX r32 zero-extends above 32; MOVSXD r64.
        assert_eq!(
            l(rax, Width::B2, Width::B1, Extension::Sign).merge(old, 0x80),
            0x1122_3344_5566_ff80
        );
        assert_eq!(
            l(rax, Width::B4, Width::B2, Extension::Sign).merge(old, 0x8000),
            0xffff_8000
        );
        assert_eq!(
            l(rax, Width::B8, Width::B4, Extension::Sign).merge(old, 0x8000_0000),
            0xffff_ffff_8000_0000
        );
        assert_eq!(
            l(rax, Width::B8, Width::B2, Extension::Zero).merge(old, 0xffff_8000),
            0x8000
        );
    }

    #[test]
    fn store_values() {
        let regs = |r: Gpr| match r {
            Gpr::Rax => 0x1122_3344_5566_7788,
            _ => u64::MAX,
        };
        let s = |src, size| Store { src, size };
        let rax = StoreSrc::Reg(Reg::low(Gpr::Rax));
        let ah = StoreSrc::Reg(Reg {
            gpr: Gpr::Rax,
            high_byte: true,
        });
        assert_eq!(s(rax, Width::B1).value(regs), 0x88);
        assert_eq!(s(ah, Width::B1).value(regs), 0x77);
        assert_eq!(s(rax, Width::B2).value(regs), 0x7788);
        assert_eq!(s(rax, Width::B4).value(regs), 0x5566_7788);
        assert_eq!(s(rax, Width::B8).value(regs), 0x1122_3344_5566_7788);
        assert_eq!(s(StoreSrc::Imm(0x1ff), Width::B1).value(regs), 0xff);
        assert_eq!(s(StoreSrc::Imm(u64::MAX), Width::B8).value(regs), u64::MAX);
    }

    #[test]
    fn extended_registers_rex_r_x_b() {
        // mov r9, [r10 + r11*4 + 0x10]: 4f 8b 4c 9a 10 (REX.WRXB).
        let b = [0x4f, 0x8b, 0x4c, 0x9a, 0x10];
        check_len_and_truncation(&b);
        let d = ok(&b);
        assert_eq!(load(&d).dest, Reg::low(Gpr::R9));
        assert_eq!(
            d.mem,
            Mem {
                base: Some(Gpr::R10),
                index: Some((Gpr::R11, 4)),
                disp: 0x10,
                rip_relative: false,
                segment: None,
            }
        );
        assert_eq!(d.mem.effective_address(regs, 0), 0xb000 + 0xc000 * 4 + 0x10);
        // mov [r15], r8b: 45 88 07 (REX.RB).
        let d = ok(&[0x45, 0x88, 0x07]);
        assert_eq!(store(&d).src, StoreSrc::Reg(Reg::low(Gpr::R8)));
        assert_eq!(d.mem, at(Gpr::R15));
        // REX.X makes index 100b R12: mov eax, [rax + r12*1].
        let d = ok(&[0x42, 0x8b, 0x04, 0x20]);
        assert_eq!(d.mem.index, Some((Gpr::R12, 1)));
        // Without REX.X index 100b is none: mov eax, [rax].
        let d = ok(&[0x8b, 0x04, 0x20]);
        assert_eq!(d.mem, at(Gpr::Rax));
    }

    #[test]
    fn sib_without_base_and_absolute() {
        // mov eax, [rcx*8 + 0x12345678]: 8b 04 cd 78 56 34 12 (mod 00, base 101b).
        let b = [0x8b, 0x04, 0xcd, 0x78, 0x56, 0x34, 0x12];
        check_len_and_truncation(&b);
        let d = ok(&b);
        assert_eq!(
            d.mem,
            Mem {
                base: None,
                index: Some((Gpr::Rcx, 8)),
                disp: 0x1234_5678,
                rip_relative: false,
                segment: None,
            }
        );
        assert_eq!(d.mem.effective_address(regs, 0), 0x2000 * 8 + 0x1234_5678);
        // REX.B does not turn that into R13: 41 8b 04 25 <disp32> = mov eax, [abs].
        let b = [0x41, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0xd0];
        check_len_and_truncation(&b);
        let d = ok(&b);
        assert_eq!(
            d.mem,
            Mem {
                base: None,
                index: None,
                disp: -0x3000_0000,
                rip_relative: false,
                segment: None,
            }
        );
        assert_eq!(
            d.mem.effective_address(regs, 0),
            0xffff_ffff_d000_0000,
            "disp32 is sign-extended"
        );
    }

    #[test]
    fn rbp_r13_need_a_displacement_rsp_r12_need_sib() {
        // mov eax, [rbp + 0]: 8b 45 00.
        let d = ok(&[0x8b, 0x45, 0x00]);
        assert_eq!((d.len, d.mem), (3, at(Gpr::Rbp)));
        // mov eax, [r13 + 0]: 41 8b 45 00.
        let d = ok(&[0x41, 0x8b, 0x45, 0x00]);
        assert_eq!((d.len, d.mem), (4, at(Gpr::R13)));
        // mod 01 with SIB base 101b is RBP/R13 + disp8: 8b 44 25 f0 = [rbp - 0x10].
        let d = ok(&[0x8b, 0x44, 0x25, 0xf0]);
        assert_eq!(
            d.mem,
            Mem {
                disp: -0x10,
                ..at(Gpr::Rbp)
            }
        );
        // mov eax, [rsp]: 8b 04 24; [r12]: 41 8b 04 24.
        let d = ok(&[0x8b, 0x04, 0x24]);
        assert_eq!((d.len, d.mem), (3, at(Gpr::Rsp)));
        let d = ok(&[0x41, 0x8b, 0x04, 0x24]);
        assert_eq!((d.len, d.mem), (4, at(Gpr::R12)));
        // [rsp + disp32]: 8b 84 24 00 01 00 00.
        let b = [0x8b, 0x84, 0x24, 0x00, 0x01, 0x00, 0x00];
        check_len_and_truncation(&b);
        assert_eq!(
            ok(&b).mem,
            Mem {
                disp: 0x100,
                ..at(Gpr::Rsp)
            }
        );
        // disp8 is sign-extended: mov eax, [rbx - 1].
        assert_eq!(ok(&[0x8b, 0x43, 0xff]).mem.disp, -1);
        // disp32 with mod 10: mov eax, [rbx + 0x80000000] is [rbx - 2^31].
        assert_eq!(
            ok(&[0x8b, 0x83, 0x00, 0x00, 0x00, 0x80]).mem.disp,
            -0x8000_0000
        );
    }

    #[test]
    fn rip_relative() {
        // mov eax, [rip + 0x100]: 8b 05 00 01 00 00.
        let b = [0x8b, 0x05, 0x00, 0x01, 0x00, 0x00];
        check_len_and_truncation(&b);
        let d = ok(&b);
        assert_eq!(
            d.mem,
            Mem {
                base: None,
                index: None,
                disp: 0x100,
                rip_relative: true,
                segment: None,
            }
        );
        let rip = 0xffff_8000_0000_1000u64;
        assert_eq!(
            d.mem.effective_address(regs, rip + u64::from(d.len)),
            rip + 6 + 0x100
        );
        // REX.B does not make it R13: 41 8b 05 ... is still RIP-relative.
        assert!(ok(&[0x41, 0x8b, 0x05, 0, 0, 0, 0]).mem.rip_relative);
        // The next instruction follows the immediate: mov dword [rip - 8], 1.
        let b = [0xc7, 0x05, 0xf8, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00];
        check_len_and_truncation(&b);
        let d = ok(&b);
        assert_eq!(d.len, 10);
        assert_eq!(d.mem.effective_address(regs, 0x1000 + 10), 0x1000 + 10 - 8);
        // With SIB, base 101b and mod 00 is absolute, not RIP-relative.
        assert!(!ok(&[0x8b, 0x04, 0x25, 0, 0, 0, 0]).mem.rip_relative);
    }

    #[test]
    fn segment_overrides() {
        // mov eax, gs:[rax]: 65 8b 00.
        let d = ok(&[0x65, 0x8b, 0x00]);
        assert_eq!(d.mem.segment, Some(Segment::Gs));
        assert_eq!(
            d.mem.linear_address(regs, 0, |s| match s {
                Segment::Fs => 0x1_0000_0000,
                Segment::Gs => 0x2_0000_0000,
            }),
            0x2_0000_1000
        );
        // The last FS/GS wins; ES/CS/SS/DS are skipped and do not cancel it.
        assert_eq!(ok(&[0x65, 0x64, 0x8b, 0x00]).mem.segment, Some(Segment::Fs));
        assert_eq!(ok(&[0x64, 0x2e, 0x8b, 0x00]).mem.segment, Some(Segment::Fs));
        for p in [0x26, 0x2e, 0x36, 0x3e] {
            let d = ok(&[p, 0x8b, 0x00]);
            assert_eq!((d.len, d.mem), (3, at(Gpr::Rax)));
            assert_eq!(d.mem.linear_address(regs, 0, |_| unreachable!()), 0x1000);
        }
        // Segment prefix then REX: the REX is effective.
        let d = ok(&[0x64, 0x48, 0x89, 0x08]);
        assert_eq!(
            (d.len, d.size(), d.mem.segment),
            (4, Width::B8, Some(Segment::Fs))
        );
        // REX then segment prefix: the REX is ignored.
        assert_eq!(ok(&[0x48, 0x64, 0x89, 0x08]).size(), Width::B4);
    }

    #[test]
    fn prefix_order_66_and_rex() {
        // 66 then REX.W: REX.W wins, 64-bit.
        let d = ok(&[0x66, 0x48, 0x8b, 0x00]);
        assert_eq!((d.len, d.size()), (4, Width::B8));
        // REX.W then 66: the REX is ignored, 16-bit.
        let d = ok(&[0x48, 0x66, 0x8b, 0x00]);
        assert_eq!((d.len, d.size()), (4, Width::B2));
        // 66 then REX.R: 16-bit with r8w.
        let d = ok(&[0x66, 0x44, 0x8b, 0x00]);
        assert_eq!(
            (d.len, d.size(), load(&d).dest),
            (4, Width::B2, Reg::low(Gpr::R8))
        );
        // Two REX: the last one counts.
        let d = ok(&[0x48, 0x41, 0x8b, 0x00]);
        assert_eq!((d.size(), d.mem), (Width::B4, at(Gpr::R8)));
        // Repeated 66 is fine.
        assert_eq!(ok(&[0x66, 0x66, 0x89, 0x00]).size(), Width::B2);
    }

    #[test]
    fn refused_forms() {
        use DecodeErrorKind::*;
        // Register-to-register forms of every supported opcode.
        for b in [
            &[0x88, 0xc0][..],
            &[0x89, 0xc0],
            &[0x8a, 0xc0],
            &[0x8b, 0xc0],
            &[0xc6, 0xc0, 0x00],
            &[0xc7, 0xc0, 0, 0, 0, 0],
            &[0x48, 0x63, 0xc0],
            &[0x0f, 0xb6, 0xc0],
            &[0x0f, 0xb7, 0xc0],
            &[0x0f, 0xbe, 0xc0],
            &[0x0f, 0xbf, 0xc0],
        ] {
            assert_eq!(err(b), RegisterForm, "{b:02x?}");
        }
        // Other opcodes: add, movs, moffs, vmgexit (F3 is refused first), cpuid.
        for b in [
            &[0x01, 0x00][..],
            &[0xa5],
            &[0xa1, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x0f, 0xa2],
            &[0x8c, 0x00],
            &[0x0f, 0xb8, 0x00],
        ] {
            assert_eq!(err(b), Unsupported, "{b:02x?}");
        }
        assert_eq!(err(&[0xf3, 0x0f, 0x01, 0xd9]), RefusedPrefix(0xf3));
        // LOCK, REP, REPNE, address size.
        assert_eq!(err(&[0xf0, 0x89, 0x00]), RefusedPrefix(0xf0));
        assert_eq!(err(&[0xf3, 0x89, 0x00]), RefusedPrefix(0xf3));
        assert_eq!(err(&[0xf2, 0x89, 0x00]), RefusedPrefix(0xf2));
        assert_eq!(err(&[0x67, 0x8b, 0x00]), RefusedPrefix(0x67));
        assert_eq!(err(&[0x66, 0x48, 0xf0, 0x89, 0x00]), RefusedPrefix(0xf0));
        // Truncated is distinct, including the empty input and a lone prefix.
        assert_eq!(err(&[]), Truncated);
        assert_eq!(err(&[0x66]), Truncated);
        assert_eq!(err(&[0x0f]), Truncated);
        assert_eq!(err(&[0x8b]), Truncated);
        assert_eq!(err(&[0x8b, 0x04]), Truncated);
        assert_eq!(err(&[0x8b, 0x80, 0, 0, 0]), Truncated);
        // Too long: 14 prefixes + opcode + ModRM is 16 bytes.
        let mut b = [0x66u8; 16];
        b[14] = 0x8b;
        b[15] = 0x00;
        assert_eq!(err(&b), TooLong);
        // ... while 13 prefixes + 2 bytes is exactly 15 and fine.
        let d = ok(&b[1..]);
        assert_eq!((d.len, d.size()), (15, Width::B2));
        // A 15-byte limit hit inside the immediate.
        let mut b = [0x3eu8; 20];
        b[9..15].copy_from_slice(&[0xc7, 0x00, 1, 2, 3, 4]);
        assert_eq!(ok(&b[..15]).len, 15);
        let mut b = [0x3eu8; 20];
        b[10..16].copy_from_slice(&[0xc7, 0x00, 1, 2, 3, 4]);
        assert_eq!(err(&b), TooLong);
    }

    #[test]
    fn error_names_the_bytes() {
        let e = decode(&[0x0f, 0x05, 0x90]).unwrap_err();
        assert_eq!(e.bytes(), &[0x0f, 0x05, 0x90]);
        assert_eq!(e.to_string(), "not a supported MMIO MOV: bytes 0f 05 90");
        assert_eq!(
            decode(&[]).unwrap_err().to_string(),
            "instruction truncated: bytes (none)"
        );
        assert_eq!(
            decode(&[0xf0, 0x89, 0x00]).unwrap_err().to_string(),
            "refused prefix f0: bytes f0 89 00"
        );
        // At most 15 bytes are kept.
        let e = decode(&[0x26; 20]).unwrap_err();
        assert_eq!((e.kind, e.bytes().len()), (DecodeErrorKind::TooLong, 15));
    }

    #[test]
    fn gpr_numbers() {
        for (i, r) in Gpr::ALL.iter().enumerate() {
            assert_eq!(usize::from(r.index()), i);
            assert_eq!(Gpr::from_index(i as u8), Some(*r));
        }
        assert_eq!(Gpr::from_index(16), None);
        assert_eq!(Gpr::R12.name(), "r12");
    }

    #[test]
    fn every_scale() {
        for (ss, scale) in [(0u8, 1u8), (1, 2), (2, 4), (3, 8)] {
            // mov eax, [rbx + rsi*scale]
            let d = ok(&[0x8b, 0x04, (ss << 6) | (6 << 3) | 3]);
            assert_eq!(d.mem.index, Some((Gpr::Rsi, scale)));
            assert_eq!(
                d.mem.effective_address(regs, 0),
                0x4000 + 0x7000 * u64::from(scale)
            );
        }
    }
}
