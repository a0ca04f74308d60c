//! The CI fleet templates in `ci-templates/` parse, and what they run exists: every `cvmprobe`
//! command the GitHub workflow runs parses with the CLI's own definitions (for each matrix
//! value), the JUnit file it writes is the one it uploads, the LAVA jobs carry the QEMU
//! arguments `cvmprobe --confidential` builds from QEMU's documentation, and LAVA's monitor
//! pattern reads a real serial log of `cvmprobe.efi` under OVMF case by case.

use clap::Parser;
use cvmprobe::cli::Cli;
use cvmprobe::confidential::{Confidential, QemuPlan, qemu_args};
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(rel: &str) -> Yaml {
    let text = std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one document");
    docs.remove(0)
}

fn s<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

/// The argv of a `cargo run [...] -- ARGS` or `cvmprobe ARGS` line, if it is one.
fn cvmprobe_argv(line: &str) -> Option<Vec<String>> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let args = if words.first() == Some(&"cargo") && words.get(1) == Some(&"run") {
        let i = words.iter().position(|w| *w == "--")?;
        &words[i + 1..]
    } else if words.first() == Some(&"cvmprobe") {
        &words[1..]
    } else {
        return None;
    };
    Some(
        std::iter::once("cvmprobe")
            .chain(args.iter().copied())
            .map(String::from)
            .collect(),
    )
}

#[test]
fn the_github_workflow_runs_only_commands_the_cli_has() {
    let wf = load("ci-templates/github/cvmprobe-confidential.yml");
    let jobs = wf["jobs"].as_hash().expect("jobs");
    let mut checked = 0;
    for (name, job) in jobs {
        let name = s(name, "job name");
        let matrix: Vec<String> = match job["strategy"]["matrix"]["platform"].as_vec() {
            Some(v) => v.iter().map(|p| s(p, "platform").to_string()).collect(),
            None => vec![String::new()],
        };
        let steps = job["steps"]
            .as_vec()
            .unwrap_or_else(|| panic!("{name}: steps"));
        let mut junit_written = Vec::new();
        let mut uploaded = Vec::new();
        for p in &matrix {
            for step in steps {
                if let Some(run) = step["run"].as_str() {
                    let run = run.replace("${{ matrix.platform }}", p);
                    for line in run.lines() {
                        let Some(argv) = cvmprobe_argv(line) else {
                            continue;
                        };
                        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| {
                            panic!("{name}: `{line}` is not a cvmprobe command: {e}")
                        });
                        checked += 1;
                        let args = match &cli.command {
                            Some(cvmprobe::cli::Command::Run(a)) => Some(a.clone()),
                            None => Some(cli.run.clone()),
                            _ => None,
                        };
                        if let Some(a) = args {
                            if let Some(j) = &a.junit {
                                junit_written.push(j.clone());
                            }
                            if !p.is_empty() {
                                let kind = a.confidential.expect("a confidential run");
                                assert_eq!(kind.name(), p, "{line}");
                            }
                        }
                        if let Some(cvmprobe::cli::Command::Parse(pa)) = &cli.command {
                            assert!(
                                root().join(&pa.file).is_file(),
                                "{name}: parses {} which is not in the repository",
                                pa.file
                            );
                            junit_written.extend(pa.junit.clone());
                        }
                    }
                }
                if step["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("actions/upload-artifact"))
                {
                    let path = step["with"]["path"].as_str().expect("upload path");
                    uploaded.push(PathBuf::from(path.replace("${{ matrix.platform }}", p)));
                }
            }
        }
        for j in &junit_written {
            assert!(
                uploaded.contains(j),
                "{name}: {} is written but not uploaded",
                j.display()
            );
        }
        if name == "confidential" {
            let labels: Vec<&str> = job["runs-on"]
                .as_vec()
                .expect("runs-on")
                .iter()
                .map(|l| s(l, "label"))
                .collect();
            assert!(labels.contains(&"self-hosted"), "{labels:?}");
            assert!(labels.contains(&"${{ matrix.platform }}"), "{labels:?}");
            assert_eq!(junit_written.len(), 2, "one JUnit file per platform");
        }
    }
    assert!(checked >= 5, "{checked} commands checked");
}

/// Every `-object`, the machine, the command line and the test devices of `cvmprobe
/// --confidential` for `kind` are in the LAVA job's QEMU context.
fn lava_matches_the_runner(rel: &str, kind: Confidential) -> Yaml {
    let job = load(rel);
    assert_eq!(s(&job["device_type"], "device_type"), "qemu");
    let ctx = &job["context"];
    let extra: Vec<&str> = ctx["extra_options"]
        .as_vec()
        .expect("extra_options")
        .iter()
        .map(|o| s(o, "option"))
        .collect();
    let plan = QemuPlan {
        firmware: "/fw".into(),
        payload: "/p".into(),
        cmdline: format!("cvmprobe.platform={}", kind.platform().name()),
        sev_bits: (51, 1),
        mem_mib: 256,
    };
    let want = qemu_args(kind, &plan);
    for pair in want.windows(2) {
        let (flag, value) = (pair[0].as_str(), pair[1].as_str());
        match flag {
            "-machine" => assert_eq!(s(&ctx["machine"], "machine"), value, "{rel}"),
            "-cpu" => assert_eq!(s(&ctx["cpu"], "cpu"), value, "{rel}"),
            "-object" | "-append" | "-device" => {
                let o = format!("{flag} {value}");
                assert!(
                    extra.contains(&o.as_str()),
                    "{rel}: `{o}` missing from {extra:?}"
                );
            }
            _ => {}
        }
    }
    assert!(
        extra.iter().any(|o| o.starts_with("-bios ")),
        "{rel}: firmware"
    );
    let kernel = &job["actions"][0]["deploy"]["images"]["kernel"];
    assert_eq!(s(&kernel["image_arg"], "image_arg"), "-kernel {kernel}");
    assert!(s(&kernel["url"], "url").ends_with("cvmprobe.efi"), "{rel}");
    job["actions"][2]["test"]["monitors"][0].clone()
}

#[test]
fn the_lava_jobs_boot_what_the_runner_boots_and_read_the_ktap() {
    for (rel, kind) in [
        ("ci-templates/lava/cvmprobe-tdx.yaml", Confidential::Tdx),
        (
            "ci-templates/lava/cvmprobe-sev-es.yaml",
            Confidential::SevEs,
        ),
    ] {
        let m = lava_matches_the_runner(rel, kind);
        let start = s(&m["start"], "start");
        let end = regex::Regex::new(s(&m["end"], "end")).expect("end is a regex");
        let pattern = regex::Regex::new(s(&m["pattern"], "pattern")).expect("pattern is a regex");
        let fix = &m["fixupdict"];
        // The recorded OVMF serial log (escape sequences and all).
        let log = std::fs::read_to_string(root().join("tests/fixtures/efi-serial.log")).unwrap();
        let from = log.find(start).expect("start seen");
        let until = from + end.find(&log[from..]).expect("end seen").start();
        let mut results = Vec::new();
        for c in pattern.captures_iter(&log[from..until]) {
            let r = s(&fix[&c["result"]], "fixup");
            results.push((c["test_case_id"].to_string(), r.to_string()));
        }
        // Every result line of the recorded log, as cvmprobe's own KTAP parser reads it: the
        // leaves and the suites (the log is a fixture, so the catalog may have grown since).
        let doc = cvmprobe::ktap::parse(&log[from..until]);
        assert!(doc.passed(), "{rel}: the fixture is a passing run");
        let cases = doc.leaves().len();
        let suites = doc.tests.len();
        assert!(cases >= 80, "{rel}: {cases} cases in the fixture");
        assert_eq!(results.len(), cases + suites, "{rel}: {results:?}");
        assert!(
            results.iter().all(|(_, r)| r == "pass"),
            "{rel}: {results:?}"
        );
        assert!(results.iter().any(|(c, _)| c == "u32_roundtrip"));
        // A failing case reads as a failure.
        let failing = "KTAP version 1\n    not ok 3 u8_lanes\n# Totals: pass:0 fail:1\n";
        let c = pattern.captures(failing).unwrap();
        assert_eq!(
            (s(&fix[&c["result"]], "fixup"), &c["test_case_id"]),
            ("fail", "u8_lanes")
        );
        assert!(end.is_match("Bail out! the host's answers at platform setup are invalid"));
    }
}

#[test]
fn the_templates_readme_names_every_template() {
    let readme = std::fs::read_to_string(root().join("ci-templates/README.md")).unwrap();
    for f in std::fs::read_dir(root().join("ci-templates"))
        .unwrap()
        .flatten()
    {
        if f.path().is_dir() {
            for t in std::fs::read_dir(f.path()).unwrap().flatten() {
                let rel = Path::new(&f.file_name()).join(t.file_name());
                assert!(
                    readme.contains(&*rel.to_string_lossy()),
                    "{} is not in the README",
                    rel.display()
                );
            }
        }
    }
}
