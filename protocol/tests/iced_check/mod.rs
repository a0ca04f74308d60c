//! One comparison of `protocol::decode::decode` with iced-x86, the reference decoder.
//!
//! Shared by `tests/decode_vs_iced.rs` (a generated sweep) and the cargo-fuzz target
//! `fuzz/fuzz_targets/decode.rs` (arbitrary bytes), which includes this file by path.
//!
//! The rule: when iced decodes one of the [`SUPPORTED`] codes with a memory operand, ours
//! must agree on length, access width, registers, immediate, extension and addressing, or
//! refuse it for a prefix it refuses on purpose (LOCK, REP/REPNE, address size) that the
//! bytes do contain. For anything else iced decodes (other instructions, register forms,
//! `moffs`, 16/32-bit `MOVSXD`, invalid or incomplete encodings) ours must refuse. Ours may
//! only say `Truncated` when iced runs out of bytes too, and every proper prefix of an
//! instruction ours decodes must be `Truncated`.

use iced_x86::{
    Code, Decoder, DecoderError, DecoderOptions, Instruction, Mnemonic, OpKind, Register,
};
use protocol::access::Width;
use protocol::decode::{
    DecodeErrorKind, Decoded, Extension, Gpr, Load, MAX_INSN_LEN, Mem, MmioOp, Reg, Segment, Store,
    StoreSrc, decode,
};

/// The iced codes ours decodes (with a memory operand).
pub const SUPPORTED: [Code; 25] = [
    Code::Mov_rm8_r8,
    Code::Mov_rm16_r16,
    Code::Mov_rm32_r32,
    Code::Mov_rm64_r64,
    Code::Mov_r8_rm8,
    Code::Mov_r16_rm16,
    Code::Mov_r32_rm32,
    Code::Mov_r64_rm64,
    Code::Mov_rm8_imm8,
    Code::Mov_rm16_imm16,
    Code::Mov_rm32_imm32,
    Code::Mov_rm64_imm32,
    Code::Movzx_r16_rm8,
    Code::Movzx_r32_rm8,
    Code::Movzx_r64_rm8,
    Code::Movzx_r16_rm16,
    Code::Movzx_r32_rm16,
    Code::Movzx_r64_rm16,
    Code::Movsx_r16_rm8,
    Code::Movsx_r32_rm8,
    Code::Movsx_r64_rm8,
    Code::Movsx_r16_rm16,
    Code::Movsx_r32_rm16,
    Code::Movsx_r64_rm16,
    Code::Movsxd_r64_rm32,
];

/// Prefixes ours refuses on purpose.
pub const REFUSED_PREFIXES: [u8; 4] = [0x67, 0xf0, 0xf2, 0xf3];

/// The instruction's address (exercises RIP-relative wrap-around).
pub const IP: u64 = 0xffff_ffff_ffff_fff0;
/// FS base used for the linear-address comparison.
pub const FS_BASE: u64 = 0x0000_7f00_0000_0000;
/// GS base used for the linear-address comparison.
pub const GS_BASE: u64 = 0xffff_8880_0000_0000;

/// A distinct value for each general-purpose register.
pub fn reg_value(n: u8) -> u64 {
    0x0123_4567_89ab_cdefu64.rotate_left(u32::from(n) * 5) ^ (u64::from(n) * 0x1111)
}

/// What one comparison found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Both decoded the same supported instruction (its iced code).
    Agreed(Code),
    /// iced decodes a supported instruction; ours refuses one of its prefixes on purpose.
    RefusedPrefix(Code),
    /// iced decodes something else (or nothing) and ours refuses.
    BothRefused,
}

/// Compares the two decoders on `bytes`; `Err` describes the disagreement.
pub fn check(bytes: &[u8]) -> Result<Outcome, String> {
    let ours = decode(bytes);
    let mut decoder = Decoder::with_ip(64, bytes, IP, DecoderOptions::NONE);
    let ins = decoder.decode();
    let iced_error = decoder.last_error();
    let fail = |why: String| {
        Err(format!(
            "{bytes:02x?}: {why}; iced: {ins:?} ({iced_error:?}), ours: {ours:?}"
        ))
    };

    if let Ok(d) = &ours {
        let len = usize::from(d.len);
        if len == 0 || len > MAX_INSN_LEN || len > bytes.len() {
            return fail(format!("impossible length {len}"));
        }
        // Every proper prefix of the instruction is incomplete.
        for k in 0..len {
            match decode(&bytes[..k]).map_err(|e| e.kind) {
                Err(DecodeErrorKind::Truncated) => {}
                other => return fail(format!("bytes[..{k}] gave {other:?}, not Truncated")),
            }
        }
    }

    let supported = !ins.is_invalid()
        && SUPPORTED.contains(&ins.code())
        && (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory);
    if !supported {
        return match ours {
            Ok(_) => fail("ours decodes what iced does not call a supported MMIO MOV".into()),
            Err(e)
                if e.kind == DecodeErrorKind::Truncated
                    && iced_error != DecoderError::NoMoreBytes =>
            {
                fail("ours says Truncated, iced does not run out of bytes".into())
            }
            Err(_) => Ok(Outcome::BothRefused),
        };
    }

    let d = match ours {
        Ok(d) => d,
        Err(e) => {
            return match e.kind {
                DecodeErrorKind::RefusedPrefix(p)
                    if REFUSED_PREFIXES.contains(&p)
                        && prefix_bytes(&bytes[..ins.len()]).contains(&p) =>
                {
                    Ok(Outcome::RefusedPrefix(ins.code()))
                }
                _ => fail(format!("ours refuses a supported instruction: {e}")),
            };
        }
    };
    if let Some(p) = prefix_bytes(&bytes[..ins.len()])
        .iter()
        .find(|p| REFUSED_PREFIXES.contains(p))
    {
        return fail(format!("ours accepts refused prefix {p:02x}"));
    }
    if usize::from(d.len) != ins.len() {
        return fail(format!("length {} vs iced {}", d.len, ins.len()));
    }
    if d.size().bytes() != ins.memory_size().size() as u64 {
        return fail(format!(
            "access size {:?} vs iced {}",
            d.size(),
            ins.memory_size().size()
        ));
    }
    let expected_op = match iced_op(&ins, d.size()) {
        Ok(op) => op,
        Err(why) => return fail(why),
    };
    if d.op != expected_op {
        return fail(format!("op {:?} vs iced {expected_op:?}", d.op));
    }
    let expected_mem = match iced_mem(&ins) {
        Ok(m) => m,
        Err(why) => return fail(why),
    };
    if d.mem != expected_mem {
        return fail(format!("mem {:?} vs iced {expected_mem:?}", d.mem));
    }
    let ours_la = linear_address(&d);
    let iced_la = ins.virtual_address(mem_operand(&ins), 0, |r, _, _| iced_register_value(r));
    if Some(ours_la) != iced_la {
        return fail(format!("linear address {ours_la:#x} vs iced {iced_la:x?}"));
    }
    Ok(Outcome::Agreed(ins.code()))
}

/// Ours: the linear address with [`reg_value`] registers and the test segment bases.
fn linear_address(d: &Decoded) -> u64 {
    d.mem.linear_address(
        |r| reg_value(r.index()),
        IP.wrapping_add(u64::from(d.len)),
        |s| match s {
            Segment::Fs => FS_BASE,
            Segment::Gs => GS_BASE,
        },
    )
}

/// iced's register values for `virtual_address`, the same as [`linear_address`] uses.
fn iced_register_value(r: Register) -> Option<u64> {
    match r {
        Register::ES | Register::CS | Register::SS | Register::DS => Some(0),
        Register::FS => Some(FS_BASE),
        Register::GS => Some(GS_BASE),
        r if r.is_gpr64() => Some(reg_value(r.number() as u8)),
        _ => None,
    }
}

/// The leading bytes that are prefixes (legacy and REX).
fn prefix_bytes(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .take_while(|&&b| {
            matches!(
                b,
                0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x40
                    ..=0x4f
            )
        })
        .count();
    &bytes[..n]
}

/// The index of the memory operand.
fn mem_operand(ins: &Instruction) -> u32 {
    (0..ins.op_count())
        .find(|&i| ins.op_kind(i) == OpKind::Memory)
        .unwrap_or(0)
}

/// iced's register operand as ours represents it.
fn iced_reg(r: Register) -> Result<(Reg, Width), String> {
    let n = r.number();
    let width = Width::from_bytes(r.size() as u64).ok_or(format!("register {r:?} of odd size"))?;
    let (n, high_byte) = if r.is_gpr8() {
        // AL..BL 0-3, AH..BH 4-7, SPL..DIL 8-11, R8L..R15L 12-19.
        match n {
            0..=3 => (n, false),
            4..=7 => (n - 4, true),
            _ => (n - 4, false),
        }
    } else if r.is_gpr() {
        (n, false)
    } else {
        return Err(format!("register {r:?} is not a GPR"));
    };
    let gpr = Gpr::from_index(n as u8).ok_or(format!("register {r:?} out of range"))?;
    Ok((Reg { gpr, high_byte }, width))
}

/// iced's instruction as ours represents the operation.
fn iced_op(ins: &Instruction, size: Width) -> Result<MmioOp, String> {
    let extend = match ins.mnemonic() {
        Mnemonic::Mov => Extension::None,
        Mnemonic::Movzx => Extension::Zero,
        Mnemonic::Movsx | Mnemonic::Movsxd => Extension::Sign,
        m => return Err(format!("unexpected mnemonic {m:?}")),
    };
    if ins.op_kind(0) == OpKind::Register {
        let (dest, dest_width) = iced_reg(ins.op0_register())?;
        return Ok(MmioOp::Load(Load {
            dest,
            dest_width,
            size,
            extend,
        }));
    }
    let src = match ins.op_kind(1) {
        OpKind::Register => StoreSrc::Reg(iced_reg(ins.op1_register())?.0),
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate32to64 => StoreSrc::Imm(ins.immediate(1)),
        k => return Err(format!("unexpected source kind {k:?}")),
    };
    Ok(MmioOp::Store(Store { src, size }))
}

/// iced's memory operand as ours represents it.
fn iced_mem(ins: &Instruction) -> Result<Mem, String> {
    let gpr64 = |r: Register| -> Result<Option<Gpr>, String> {
        match r {
            Register::None => Ok(None),
            r if r.is_gpr64() => Ok(Gpr::from_index(r.number() as u8)),
            r => Err(format!("address register {r:?} is not 64-bit")),
        }
    };
    let rip_relative = ins.memory_base() == Register::RIP;
    let base = if rip_relative {
        None
    } else {
        gpr64(ins.memory_base())?
    };
    let index = gpr64(ins.memory_index())?.map(|r| (r, ins.memory_index_scale() as u8));
    let disp = if rip_relative {
        ins.memory_displacement64().wrapping_sub(ins.next_ip()) as i64
    } else {
        ins.memory_displacement64() as i64
    };
    let segment = match ins.segment_prefix() {
        Register::FS => Some(Segment::Fs),
        Register::GS => Some(Segment::Gs),
        _ => None,
    };
    Ok(Mem {
        base,
        index,
        disp,
        rip_relative,
        segment,
    })
}
