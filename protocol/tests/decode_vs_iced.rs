//! Cross-checks `protocol::decode` against iced-x86 over a generated sweep: prefix
//! combinations x the supported opcodes and their neighbours x every ModRM byte x a set of
//! SIB bytes, with pseudo-random displacement and immediate bytes, plus a full SIB sweep of
//! the supported opcodes. The comparison rule is in `iced_check/mod.rs` (shared with the
//! cargo-fuzz target).

mod iced_check;

use std::collections::BTreeMap;

use iced_check::{Outcome, SUPPORTED, check};

/// Prefix sequences: none, 66, every REX, 66 + every REX, REX then a legacy prefix (the REX
/// is ignored), segment overrides, and the refused ones.
fn prefix_sets() -> Vec<Vec<u8>> {
    let mut sets = vec![vec![], vec![0x66]];
    for rex in 0x40..=0x4f {
        sets.push(vec![rex]);
        sets.push(vec![0x66, rex]);
    }
    sets.extend(
        [
            &[0x48, 0x66][..],
            &[0x40, 0x2e],
            &[0x66, 0x66],
            &[0x41, 0x48],
            &[0x4c, 0x66, 0x41],
            &[0x64],
            &[0x65],
            &[0x2e],
            &[0x26, 0x65],
            &[0x65, 0x3e, 0x41],
            &[0x64, 0x65, 0x66, 0x4d],
            &[0x67],
            &[0x67, 0x48],
            &[0xf0],
            &[0xf0, 0x48],
            &[0xf2],
            &[0xf3],
            &[0x66, 0xf3, 0x48],
        ]
        .iter()
        .map(|p| p.to_vec()),
    );
    sets
}

/// Opcodes: the supported set and neighbours (other MOVs, ALU ops around 88-8B, moffs, group
/// 11, VEX escapes C4/C5, the 0F B0-C0 row, control/debug register MOVs, SSE moves).
fn opcodes() -> Vec<Vec<u8>> {
    let mut ops: Vec<Vec<u8>> = [0x00, 0x01, 0x62, 0x63, 0x69, 0xb0, 0xb8, 0xf6, 0xff]
        .iter()
        .map(|&b| vec![b])
        .collect();
    ops.extend((0x84..=0x8f).map(|b| vec![b]));
    ops.extend((0xa0..=0xa3).map(|b| vec![b]));
    ops.extend((0xc4..=0xc9).map(|b| vec![b]));
    ops.extend((0xb0..=0xc0).map(|b| vec![0x0f, b]));
    ops.extend([0x10, 0x11, 0x20, 0x22, 0x6e, 0x7e, 0xd6].map(|b| vec![0x0f, b]));
    ops
}

/// SIB bytes for the restricted sweep: every scale, index 100b (none) and not, base 100b
/// (RSP/R12) and 101b (none with mod 00, else RBP/R13).
const SIBS: [u8; 10] = [0x00, 0x24, 0x25, 0x65, 0xa5, 0xe5, 0x4c, 0x8d, 0xdf, 0xfb];

/// A small deterministic generator for the bytes after ModRM/SIB.
struct XorShift(u64);

impl XorShift {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

/// Runs `check` on `head` followed by random bytes, counting outcomes.
fn run(head: &[u8], rng: &mut XorShift, stats: &mut BTreeMap<String, usize>) {
    let mut buf = [0u8; 24];
    buf[..head.len()].copy_from_slice(head);
    rng.fill(&mut buf[head.len()..]);
    // Small displacements too, so disp8/disp32 of both signs and zero appear.
    if rng.0 % 4 == 0 {
        for b in &mut buf[head.len()..head.len() + 4] {
            *b = 0;
        }
    }
    // The whole buffer, and a cut anywhere up to 4 bytes past the head (truncated encodings).
    let cut = (rng.0 >> 32) as usize % (head.len() + 5);
    for bytes in [&buf[..], &buf[..cut]] {
        let key = match check(bytes) {
            Ok(Outcome::Agreed(code)) => format!("{code:?}"),
            Ok(Outcome::RefusedPrefix(_)) => "(refused prefix)".into(),
            Ok(Outcome::BothRefused) => "(both refused)".into(),
            Err(e) => panic!("{e}"),
        };
        *stats.entry(key).or_default() += 1;
    }
}

#[test]
fn agrees_with_iced_on_prefixes_opcodes_modrm_and_sib() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut stats = BTreeMap::new();
    let mut total = 0usize;
    for prefixes in prefix_sets() {
        for op in opcodes() {
            for modrm in 0..=255u8 {
                let mut head = prefixes.clone();
                head.extend(&op);
                head.push(modrm);
                let needs_sib = modrm >> 6 != 3 && modrm & 7 == 4;
                if needs_sib {
                    for sib in SIBS {
                        head.push(sib);
                        run(&head, &mut rng, &mut stats);
                        head.pop();
                        total += 1;
                    }
                } else {
                    run(&head, &mut rng, &mut stats);
                    total += 1;
                }
            }
        }
    }
    // Every SIB byte with every memory ModRM that needs one, for the supported opcodes.
    for prefixes in [&[][..], &[0x4f], &[0x43], &[0x66, 0x45]] {
        for op in [
            &[0x88][..],
            &[0x89],
            &[0x8a],
            &[0x8b],
            &[0x63],
            &[0xc6],
            &[0xc7],
            &[0x0f, 0xb6],
            &[0x0f, 0xb7],
            &[0x0f, 0xbe],
            &[0x0f, 0xbf],
        ] {
            for md in 0..3u8 {
                for reg in [0u8, 5] {
                    for sib in 0..=255u8 {
                        let mut head = prefixes.to_vec();
                        head.extend(op);
                        head.extend([(md << 6) | (reg << 3) | 4, sib]);
                        run(&head, &mut rng, &mut stats);
                        total += 1;
                    }
                }
            }
        }
    }
    println!("{} byte strings compared: {stats:#?}", 2 * total);
    for code in SUPPORTED {
        assert!(
            stats.contains_key(&format!("{code:?}")),
            "the sweep never produced {code:?}"
        );
    }
    assert!(stats.contains_key("(refused prefix)"));
}

#[test]
fn agrees_with_iced_on_truncated_and_overlong_input() {
    // Every prefix of a few long instructions, and prefix runs around the 15-byte limit.
    let long: [&[u8]; 4] = [
        &[
            0x66, 0x48, 0xc7, 0x84, 0xcd, 0x78, 0x56, 0x34, 0x12, 0x01, 0x02, 0x03, 0x04,
        ],
        &[0x65, 0x4f, 0x0f, 0xbf, 0x84, 0x9a, 0x00, 0x00, 0x00, 0x80],
        &[0xc7, 0x05, 0xf8, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00],
        &[0x66, 0xc7, 0x44, 0x24, 0x08, 0x34, 0x12],
    ];
    for insn in long {
        for n in 0..=insn.len() {
            check(&insn[..n]).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    for prefixes in 0..=16 {
        for p in [0x66u8, 0x3e, 0x48] {
            let mut b = vec![p; prefixes];
            b.extend([0xc7, 0x00, 1, 2, 3, 4]);
            for n in 0..=b.len() {
                check(&b[..n]).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
}
