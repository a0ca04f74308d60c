//! Fuzzes `protocol::decode::decode` with arbitrary bytes: it must never panic, a decoded
//! length must be at most 15 and at most the input length, and whatever it decodes (or
//! refuses) must agree with iced-x86 under the rule in `protocol/tests/iced_check/mod.rs`.
#![no_main]

#[path = "../../protocol/tests/iced_check/mod.rs"]
mod iced_check;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = iced_check::check(data) {
        panic!("{e}");
    }
});
