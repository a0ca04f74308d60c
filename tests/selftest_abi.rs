//! `selftest/cvmprobe.h` against the Rust definitions of the guest library's C ABI
//! (`protocol::abi`): every field offset, every struct size and every `#define`, checked by
//! compiling the header with `_Static_assert`s generated from the Rust values.

use protocol::abi::{ACCESS_FIELDS, FRAME_FIELDS, HEADER_CONSTANTS, OPS_FIELDS};
use std::io::Write;
use std::process::{Command, Stdio};

const HEADER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/selftest");

/// `_Static_assert`s for the fields of `strukt` (`(name, offset)`, `"(size)"` for its size).
fn field_asserts(strukt: &str, fields: &[(&str, usize)]) -> String {
    fields
        .iter()
        .map(|&(f, off)| {
            if f == "(size)" {
                format!("_Static_assert(sizeof(struct {strukt}) == {off}, \"sizeof {strukt}\");\n")
            } else {
                format!(
                    "_Static_assert(offsetof(struct {strukt}, {f}) == {off}, \"{strukt}.{f} at {off}\");\n"
                )
            }
        })
        .collect()
}

/// Compiles `body` after `#include "cvmprobe.h"`; the compiler's output on failure.
fn compile(body: &str) -> Result<(), String> {
    let mut child = Command::new("cc")
        .args([
            "-std=gnu11",
            "-Wall",
            "-Werror",
            "-fsyntax-only",
            "-x",
            "c",
            "-",
        ])
        .arg(format!("-I{HEADER_DIR}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`cc` runs (the KVM selftest needs it too: sudo apt-get install gcc)");
    let src = format!("#include <stddef.h>\n#include \"cvmprobe.h\"\n{body}");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(src.as_bytes())
        .expect("write the test source");
    let out = child.wait_with_output().expect("cc ends");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn the_header_has_the_rust_layouts_and_values() {
    let mut body = field_asserts("cvmprobe_ops", &OPS_FIELDS);
    body += &field_asserts("cvmprobe_frame", &FRAME_FIELDS);
    body += &field_asserts("cvmprobe_access", &ACCESS_FIELDS);
    for &(name, v) in HEADER_CONSTANTS {
        body += &format!("_Static_assert({name} == {v:#x}ull, \"{name} == {v:#x}\");\n");
    }
    if let Err(e) = compile(&body) {
        panic!("cvmprobe.h disagrees with protocol::abi:\n{e}");
    }
}

#[test]
fn a_layout_that_differs_fails_the_check() {
    // The check above can fail: one offset off by eight, one constant off by one.
    let mut ops = OPS_FIELDS;
    ops[9].1 += 8;
    let e = compile(&field_asserts("cvmprobe_ops", &ops)).expect_err("a wrong offset compiles");
    assert!(e.contains("cvmprobe_ops.write"), "{e}");
    let (name, v) = HEADER_CONSTANTS[0];
    let e = compile(&format!("_Static_assert({name} == {}, \"{name}\");", v + 1))
        .expect_err("a wrong value compiles");
    assert!(e.contains(name), "{e}");
}

#[test]
fn every_function_the_library_exports_is_declared() {
    let header = std::fs::read_to_string(format!("{HEADER_DIR}/cvmprobe.h")).unwrap();
    let lib = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/selftest/lib/src/lib.rs"
    ))
    .unwrap();
    let exported: Vec<&str> = lib
        .split("pub unsafe extern \"C\" fn ")
        .chain(lib.split("pub extern \"C\" fn "))
        .skip(1)
        .filter_map(|s| s.split('(').next())
        .filter(|n| n.starts_with("cvmprobe_"))
        .collect();
    assert!(
        exported.len() >= 5,
        "the export list did not parse: {exported:?}"
    );
    for f in exported {
        assert!(
            header.contains(&format!(" {f}(")),
            "{f} is exported by selftest/lib but not declared in cvmprobe.h"
        );
    }
}
