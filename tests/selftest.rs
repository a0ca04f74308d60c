//! `cvmprobe selftest`: the test tables as guest code in a kvm_util selftest
//! (`selftest/cvmprobe_test.c`), built against a kernel tree (Debian's linux-source-6.12, or
//! `CVMPROBE_KSRC`) and run on this host's KVM.
//!
//! - a normal VM runs every case the built-in VMM's legacy run runs, with the same results;
//! - the selftest's host-side checks fail a guest that misbehaves (an undeclared access, data
//!   that differs from what the guest says it exchanged), naming the access;
//! - SEV-ES and TDX VMs skip with the test's reason where the host or tree lacks them;
//! - the guest code in the built test calls nothing through the GOT or PLT.

mod common;

use common::{cvmprobe, kernel_tree_or_skip, kvm_or_skip, text};
use std::collections::BTreeMap;
use std::path::Path;

/// `suite.case` -> outcome (`passed`, `failed`, `skipped`, `error`) from a JUnit file.
fn junit_outcomes(path: &Path) -> BTreeMap<String, &'static str> {
    let xml = std::fs::read_to_string(path).expect("JUnit file written");
    let mut out = BTreeMap::new();
    for chunk in xml.split("<testcase").skip(1) {
        let attr = |name: &str| {
            let key = format!(" {name}=\"");
            let start = chunk.find(&key).map(|i| i + key.len()).unwrap_or(0);
            chunk[start..].split('"').next().unwrap_or("").to_string()
        };
        let end = chunk.find("</testcase>").unwrap_or(chunk.len());
        let body = &chunk[..end];
        let outcome = if body.contains("<failure") {
            "failed"
        } else if body.contains("<error") {
            "error"
        } else if body.contains("<skipped") {
            "skipped"
        } else {
            "passed"
        };
        out.insert(format!("{}.{}", attr("classname"), attr("name")), outcome);
    }
    out
}

#[test]
fn a_normal_vm_runs_what_the_builtin_vmm_runs() {
    if !(kvm_or_skip("a_normal_vm_runs_what_the_builtin_vmm_runs")
        && kernel_tree_or_skip("a_normal_vm_runs_what_the_builtin_vmm_runs"))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (st, vmm) = (dir.path().join("selftest.xml"), dir.path().join("vmm.xml"));
    let o = cvmprobe(&[
        "selftest",
        "--platform",
        "legacy",
        "--junit",
        st.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("kvm_util legacy VM"), "{}", text(&o));
    let b = cvmprobe(&[
        "run",
        "--vmm",
        "builtin",
        "--platform",
        "legacy",
        "--junit",
        vmm.to_str().unwrap(),
    ]);
    assert!(b.status.success(), "{}", text(&b));
    let (st, vmm) = (junit_outcomes(&st), junit_outcomes(&vmm));
    assert_eq!(st, vmm, "selftest vs built-in VMM, case by case");
    let passed = |m: &BTreeMap<String, &str>, prefix: &str| {
        m.iter()
            .filter(|(k, v)| k.starts_with(prefix) && **v == "passed")
            .count()
    };
    // The suites that need the host's own test device and memslot scenario run in full.
    assert_eq!(passed(&st, "io."), protocol::catalog::IO.cases.len());
    assert_eq!(
        passed(&st, "memslot."),
        protocol::catalog::MEMSLOT.cases.len()
    );
    assert_eq!(passed(&st, "halt."), protocol::catalog::HALT.cases.len());
}

#[test]
fn host_checks_fail_a_guest_that_misbehaves() {
    if !(kvm_or_skip("host_checks_fail_a_guest_that_misbehaves")
        && kernel_tree_or_skip("host_checks_fail_a_guest_that_misbehaves"))
    {
        return;
    }
    // An access the case does not declare: the guest says ok, the run loop's log disagrees.
    let o = cvmprobe(&[
        "selftest",
        "--platform",
        "legacy",
        "--filter",
        "io",
        "--append",
        "cvmprobe.inject=undeclared-access@io.u32_roundtrip",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FAILED  io.u32_roundtrip"), "{}", text(&o));
    // The RIP comes from the exit's sync regs.
    assert!(
        out.contains(
            "host: access log: undeclared access: a 4-byte read of PIO+0xc (VALUE) at rip 0x"
        ) && out.contains(", made as access 1 of 9 (the other 8 match the declaration)"),
        "{}",
        text(&o)
    );
    assert_eq!(common::verdict_counts(&o).1, 1, "only that case fails");
    // A value changed between the case and the device: the data check names the access.
    let o = cvmprobe(&[
        "selftest",
        "--platform",
        "legacy",
        "--filter",
        "mmio.u32_roundtrip",
        "--append",
        "cvmprobe.inject=corrupt-data@mmio.u32_roundtrip",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(
            "host: access log: data: access 1 (a 4-byte write of MMIO+0x1040 (SCRATCH+0x40) \
             at rip 0x"
        ),
        "{}",
        text(&o)
    );
}

#[test]
fn a_guest_that_stops_leaves_its_cases_not_run() {
    if !(kvm_or_skip("a_guest_that_stops_leaves_its_cases_not_run")
        && kernel_tree_or_skip("a_guest_that_stops_leaves_its_cases_not_run"))
    {
        return;
    }
    let o = cvmprobe(&[
        "selftest",
        "--platform",
        "legacy",
        "--filter",
        "io",
        "--append",
        "cvmprobe.inject=panic@io.u8_lanes",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // The cases before io.u8_lanes pass; it and every later one are not run.
    let io = &protocol::catalog::IO.cases;
    let before = io.iter().position(|c| c.name == "u8_lanes").unwrap();
    let (passed, failed, _, not_run, total) = common::verdict_counts(&o);
    assert_eq!(
        (passed, failed, not_run, total),
        (before, 0, io.len() - before, io.len()),
        "{}",
        text(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("NOT RUN io.u8_lanes"), "{}", text(&o));
    assert!(
        out.contains("panic: injected by cvmprobe.inject=panic"),
        "{}",
        text(&o)
    );
}

#[test]
fn sev_es_and_tdx_vms_run_or_skip_with_the_reason() {
    if !(kvm_or_skip("sev_es_and_tdx_vms_run_or_skip_with_the_reason")
        && kernel_tree_or_skip("sev_es_and_tdx_vms_run_or_skip_with_the_reason"))
    {
        return;
    }
    let o = cvmprobe(&["selftest", "--platform", "all", "--filter", "platform"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = |name: &str| {
        err.lines()
            .find(|l| l.contains(&format!("] {name} ")))
            .unwrap_or_else(|| panic!("no progress line for {name}\n{}", text(&o)))
            .to_string()
    };
    assert!(line("legacy").contains("PASS"), "{}", text(&o));
    // Without SEV-ES (every CI host), kselftest's own skip; with it, the VM runs and passes.
    let sev = line("sev-es");
    assert!(
        sev.contains("SKIP  Requirement not met: kvm_cpu_has(X86_FEATURE_SEV_ES)")
            || sev.contains("PASS"),
        "{sev}\n{}",
        text(&o)
    );
    // Debian's 6.12 tree has no TDX selftests: the TDX path is left out of the build.
    let tdx = line("tdx");
    assert!(
        tdx.contains("SKIP  this tree has no TDX selftests")
            || tdx.contains("SKIP  Requirement not met: is_tdx_enabled()")
            || tdx.contains("PASS"),
        "{tdx}\n{}",
        text(&o)
    );
}

#[test]
fn the_guest_code_calls_nothing_through_the_got() {
    use object::{Object, ObjectSection, ObjectSymbol};
    // A build and a look at its objects: no VM, so no /dev/kvm needed.
    if !kernel_tree_or_skip("the_guest_code_calls_nothing_through_the_got") {
        return;
    }
    let binary = common::built_selftest().binary;
    let lib = Path::new(env!("CVMPROBE_SELFTEST_LIB"));
    // What the library's objects leave to the link.
    let archive = object::read::archive::ArchiveFile::parse(lib_bytes(lib)).unwrap();
    let mut undefined = std::collections::BTreeSet::new();
    for m in archive.members() {
        let m = m.unwrap();
        let data = m.data(lib_bytes(lib)).unwrap();
        let Ok(obj) = object::File::parse(data) else {
            continue;
        };
        for s in obj.symbols().filter(|s| s.is_undefined()) {
            undefined.insert(s.name().unwrap().to_string());
        }
        // No reference through a GOT slot at all (static relocations, `-Z plt=yes`, a core
        // built the same way: selftest/lib/.cargo/config.toml).
        for sec in obj.sections() {
            for (at, r) in sec.relocations() {
                if let object::RelocationFlags::Elf { r_type } = r.flags() {
                    assert!(
                        !matches!(
                            r_type,
                            object::elf::R_X86_64_GOTPCREL
                                | object::elf::R_X86_64_GOTPCRELX
                                | object::elf::R_X86_64_REX_GOTPCRELX
                                | object::elf::R_X86_64_GOT64
                        ),
                        "{}: a GOT relocation (type {r_type}) at {}+{at:#x}",
                        m.name().escape_ascii(),
                        sec.name().unwrap_or("?")
                    );
                }
            }
        }
    }
    assert!(undefined.contains("memcpy"), "{undefined:?}");
    // None of it may be bound by the dynamic loader: kvm_util's copy of the image in guest
    // memory has no loader, so a GOT or PLT slot there holds what the file holds.
    let bytes = std::fs::read(&binary).unwrap();
    let exe = object::File::parse(&*bytes).unwrap();
    let dynamic: Vec<String> = exe
        .dynamic_symbols()
        .filter(|s| s.is_undefined())
        .map(|s| s.name().unwrap_or("").to_string())
        .collect();
    let through_loader: Vec<&String> = dynamic
        .iter()
        .filter(|n| undefined.contains(n.split('@').next().unwrap_or(n)))
        .collect();
    assert!(
        through_loader.is_empty(),
        "{}: the guest library's {through_loader:?} resolve only at load time",
        binary.display()
    );
    for f in ["cvmprobe_run", "cvmprobe_trap", "__start_cvmprobe_ex_table"] {
        assert!(
            exe.symbols().any(|s| s.name() == Ok(f)),
            "{f} is not in {}",
            binary.display()
        );
    }
}

#[test]
fn the_tdx_path_compiles_against_the_tdx_selftests_api() {
    // A build and a look at its objects: no VM, so no /dev/kvm needed.
    if !kernel_tree_or_skip("the_tdx_path_compiles_against_the_tdx_selftests_api") {
        return;
    }
    // Debian's 6.12 tree has no TDX selftests, so `cvmprobe selftest` builds the test without
    // its TDX path. Compile that path too, against the series' API as
    // tests/fixtures/tdx_selftests declares it, with the tree's own rules (object only).
    let built = common::built_selftest();
    let kvm = built.tree.kvm_dir();
    let name = format!("{}/cvmprobe_tdx_check", built.tree.arch_dir);
    std::fs::write(
        kvm.join(format!("{name}.c")),
        cvmprobe::selftest::TEST_SOURCE,
    )
    .unwrap();
    let object = kvm.join(format!("{name}.o"));
    let _ = std::fs::remove_file(&object);
    let stub = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tdx_selftests");
    let o = std::process::Command::new("make")
        .arg("-C")
        .arg(&kvm)
        .arg(format!(
            "EXTRA_CFLAGS={} -Werror -I{} -I{stub}",
            cvmprobe::selftest::EXTRA_CFLAGS,
            built.work.join("include").display()
        ))
        .arg(format!("TEST_GEN_PROGS_x86_64={name}"))
        .arg(format!("TEST_GEN_PROGS_x86={name}"))
        .arg(&object)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let bytes = std::fs::read(&object).unwrap();
    let obj = object::File::parse(&*bytes).unwrap();
    use object::{Object, ObjectSymbol};
    assert!(
        obj.symbols()
            .any(|s| s.is_undefined() && s.name() == Ok("kvm_arch_vm_finalize_vcpus")),
        "the TDX path was not compiled in"
    );
}

/// The archive's bytes again (`ArchiveMember::data` takes the archive's data).
fn lib_bytes(lib: &Path) -> &'static [u8] {
    use std::sync::OnceLock;
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(lib).unwrap())
}
