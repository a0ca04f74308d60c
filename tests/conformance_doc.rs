//! The README's "Conformance cases" table is generated from `protocol::conformance::CASES`:
//! this test fails when the two differ, and says how to regenerate the section. With
//! `CVMPROBE_UPDATE_README=1` it rewrites the section instead.

mod common;
use common::*;

const BEGIN: &str = "<!-- conformance-cases:begin";
const END: &str = "<!-- conformance-cases:end -->";

fn readme_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")
}

/// `(text before the table, the table, text from the end marker on)`.
fn split(readme: &str) -> (&str, &str, &str) {
    let b = readme
        .find(BEGIN)
        .expect("README.md has the conformance begin marker");
    let body = b + readme[b..].find('\n').expect("marker line ends") + 1;
    let e = readme
        .find(END)
        .expect("README.md has the conformance end marker");
    assert!(e >= body, "the end marker comes after the begin marker");
    (&readme[..body], &readme[body..e], &readme[e..])
}

#[test]
fn readme_conformance_section_is_current() {
    let path = readme_path();
    let readme = std::fs::read_to_string(&path).expect("README.md reads");
    let (head, table, tail) = split(&readme);
    let want = protocol::conformance::markdown();
    if table == want {
        return;
    }
    if std::env::var("CVMPROBE_UPDATE_README").as_deref() == Ok("1") {
        std::fs::write(&path, format!("{head}{want}{tail}")).expect("README.md writes");
        eprintln!(
            "rewrote the Conformance cases section of {}",
            path.display()
        );
        return;
    }
    let first_diff = table
        .lines()
        .zip(want.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(table.lines().count().min(want.lines().count()));
    panic!(
        "README.md's \"Conformance cases\" table differs from protocol::conformance::CASES \
         (first difference at table line {}).\nRegenerate it with \
         `CVMPROBE_UPDATE_README=1 cargo test --test conformance_doc` (or paste the output of \
         `cvmprobe list --conformance-markdown` between the markers).\n--- README\n{}\n--- generated\n{}",
        first_diff + 1,
        table.lines().nth(first_diff).unwrap_or("(end)"),
        want.lines().nth(first_diff).unwrap_or("(end)"),
    );
}

#[test]
fn list_prints_the_same_markdown() {
    let o = cvmprobe(&["list", "--conformance-markdown"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        protocol::conformance::markdown()
    );
}

#[test]
fn list_shows_the_raw_cases_with_their_sources_and_the_documented_ones() {
    let o = cvmprobe(&["list", "--filter", "ghci_raw,ghcb_raw"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for c in protocol::conformance::CASES {
        let line = out
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{} ", c.id)))
            .unwrap_or_else(|| panic!("{} is not listed\n{out}", c.id));
        let rest: Vec<&str> = out.lines().skip(line + 1).take(2).collect();
        assert!(
            rest.iter()
                .any(|l| l.contains(&format!("source: {}", c.source))),
            "{}: source not shown\n{out}",
            c.id
        );
        if !c.executed() {
            assert!(
                out.lines()
                    .nth(line)
                    .unwrap()
                    .contains("documented, not executed"),
                "{}\n{out}",
                c.id
            );
        }
    }
    // Documented cases are not cases of a run: `--names` (what a run reports) leaves them out.
    let names = cvmprobe(&["list", "--names", "--filter", "ghci_raw,ghcb_raw"]);
    let names = String::from_utf8_lossy(&names.stdout);
    assert_eq!(
        names.lines().count(),
        protocol::conformance::CASES
            .iter()
            .filter(|c| c.executed())
            .count()
    );
    assert!(!names.contains("report_fatal_error"));
}
