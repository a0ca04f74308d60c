//! JUnit XML reports, the format CI systems (GitLab, Jenkins, GitHub test reporters) read.
//!
//! One `<testsuite>` per suite, in order of first appearance, inside one `<testsuites>`:
//!
//! ```xml
//! <?xml version="1.0" encoding="UTF-8"?>
//! <testsuites name="cvmprobe legacy" tests="3" failures="1" errors="0" skipped="1">
//!   <testsuite name="io" tests="3" failures="1" errors="0" skipped="1">
//!     <testcase classname="io" name="u32_roundtrip"/>
//!     <testcase classname="io" name="u16_lanes">
//!       <failure message="u16_lanes failed">low half: expected 0x1234 got 0x0</failure>
//!     </testcase>
//!     <testcase classname="io" name="unassigned_port">
//!       <skipped message="no port-IO test device"/>
//!     </testcase>
//!   </testsuite>
//! </testsuites>
//! ```
//!
//! Text is escaped for XML 1.0; characters XML 1.0 cannot carry at all (most C0 controls,
//! such as the ESC of a terminal colour code in a serial log) become U+FFFD.

use std::io::{self, Write};

/// One test case's outcome for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct JunitCase {
    /// Suite name (the `<testsuite>` and the case's `classname`).
    pub suite: String,
    /// Case name.
    pub name: String,
    /// What happened.
    pub outcome: JunitOutcome,
    /// One-line summary (the `message` attribute of `<failure>`, `<error>` or `<skipped>`).
    pub message: String,
    /// Diagnostics, any number of lines: the body of `<failure>`/`<error>`, or
    /// `<system-out>` for passed and skipped cases. Omitted when empty.
    pub details: String,
    /// Duration in seconds, if measured.
    pub time_secs: Option<f64>,
}

/// A case's outcome in JUnit terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JunitOutcome {
    /// The case passed.
    Passed,
    /// The case reported a failure.
    Failed,
    /// The case was skipped.
    Skipped,
    /// The case never reported (the guest crashed or timed out before it).
    Error,
}

/// Writes a complete JUnit XML document with `cases` grouped by suite.
pub fn write_junit(
    w: &mut impl Write,
    testsuites_name: &str,
    cases: &[JunitCase],
) -> io::Result<()> {
    let mut suites: Vec<(&str, Vec<&JunitCase>)> = Vec::new();
    for case in cases {
        match suites.iter_mut().find(|(name, _)| *name == case.suite) {
            Some((_, members)) => members.push(case),
            None => suites.push((&case.suite, vec![case])),
        }
    }

    writeln!(w, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    let all: Vec<&JunitCase> = cases.iter().collect();
    write!(w, "<testsuites name=\"{}\"", attr(testsuites_name))?;
    write_totals(w, &all)?;
    writeln!(w, ">")?;
    for (name, members) in &suites {
        write!(w, "  <testsuite name=\"{}\"", attr(name))?;
        write_totals(w, members)?;
        writeln!(w, ">")?;
        for case in members {
            write_case(w, case)?;
        }
        writeln!(w, "  </testsuite>")?;
    }
    writeln!(w, "</testsuites>")
}

/// ` tests=".." failures=".." errors=".." skipped=".." [time=".."]`.
fn write_totals(w: &mut impl Write, cases: &[&JunitCase]) -> io::Result<()> {
    let count = |o: JunitOutcome| cases.iter().filter(|c| c.outcome == o).count();
    write!(
        w,
        r#" tests="{}" failures="{}" errors="{}" skipped="{}""#,
        cases.len(),
        count(JunitOutcome::Failed),
        count(JunitOutcome::Error),
        count(JunitOutcome::Skipped),
    )?;
    let times: Vec<f64> = cases
        .iter()
        .filter_map(|c| valid_time(c.time_secs))
        .collect();
    if !times.is_empty() {
        write!(w, r#" time="{:.6}""#, times.iter().sum::<f64>())?;
    }
    Ok(())
}

fn valid_time(t: Option<f64>) -> Option<f64> {
    t.filter(|t| t.is_finite() && *t >= 0.0)
}

fn write_case(w: &mut impl Write, case: &JunitCase) -> io::Result<()> {
    write!(
        w,
        "    <testcase classname=\"{}\" name=\"{}\"",
        attr(&case.suite),
        attr(&case.name)
    )?;
    if let Some(t) = valid_time(case.time_secs) {
        write!(w, r#" time="{t:.6}""#)?;
    }
    let message = attr(&case.message);
    let details = body(&case.details);
    let has_details = !case.details.is_empty();
    match case.outcome {
        JunitOutcome::Passed if !has_details => writeln!(w, "/>"),
        JunitOutcome::Passed => {
            writeln!(w, ">")?;
            writeln!(w, "      <system-out>{details}</system-out>")?;
            writeln!(w, "    </testcase>")
        }
        JunitOutcome::Skipped => {
            writeln!(w, ">")?;
            writeln!(w, "      <skipped message=\"{message}\"/>")?;
            if has_details {
                writeln!(w, "      <system-out>{details}</system-out>")?;
            }
            writeln!(w, "    </testcase>")
        }
        JunitOutcome::Failed | JunitOutcome::Error => {
            let tag = if case.outcome == JunitOutcome::Failed {
                "failure"
            } else {
                "error"
            };
            writeln!(w, ">")?;
            writeln!(w, "      <{tag} message=\"{message}\">{details}</{tag}>")?;
            writeln!(w, "    </testcase>")
        }
    }
}

/// Text escaped for XML 1.0: `attr` for attribute values (line breaks and tabs become
/// character references, which attribute-value normalisation would otherwise turn into
/// spaces), else for character data (line breaks stay; `\r` is a reference so it survives
/// end-of-line normalisation).
struct Escaped<'a> {
    text: &'a str,
    attr: bool,
}

fn attr(text: &str) -> Escaped<'_> {
    Escaped { text, attr: true }
}

fn body(text: &str) -> Escaped<'_> {
    Escaped { text, attr: false }
}

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.text;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            let replacement = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&apos;",
                '\r' => "&#13;",
                '\n' if self.attr => "&#10;",
                '\t' if self.attr => "&#9;",
                c if !is_xml_char(c) => "\u{FFFD}",
                _ => continue,
            };
            f.write_str(s.get(start..i).unwrap_or_default())?;
            f.write_str(replacement)?;
            start = i + c.len_utf8();
        }
        f.write_str(s.get(start..).unwrap_or_default())
    }
}

/// XML 1.0 `Char`: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::Reader;
    use quick_xml::events::Event;

    /// An element read back from the output.
    #[derive(Debug, Default)]
    struct Element {
        name: String,
        attrs: Vec<(String, String)>,
        text: String,
        children: Vec<Element>,
    }

    impl Element {
        fn attr(&self, name: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }

        fn child(&self, name: &str) -> Option<&Element> {
            self.children.iter().find(|c| c.name == name)
        }
    }

    fn element(e: &quick_xml::events::BytesStart<'_>) -> Element {
        let attrs = e
            .attributes()
            .map(|a| {
                let a = a.expect("well-formed attribute");
                let key = String::from_utf8(a.key.as_ref().to_vec()).expect("utf-8 key");
                let value = a.unescape_value().expect("valid escapes").into_owned();
                (key, value)
            })
            .collect();
        Element {
            name: String::from_utf8(e.name().as_ref().to_vec()).expect("utf-8 name"),
            attrs,
            ..Element::default()
        }
    }

    /// Parses `xml` with quick-xml (end names checked) into its root element.
    fn read_back(xml: &str) -> Element {
        let mut reader = Reader::from_str(xml);
        let mut stack: Vec<Element> = vec![Element::default()];
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Decl(_) => {}
                Event::Start(e) => stack.push(element(&e)),
                Event::Empty(e) => {
                    let el = element(&e);
                    stack.last_mut().expect("open element").children.push(el);
                }
                Event::End(_) => {
                    let done = stack.pop().expect("open element");
                    stack.last_mut().expect("parent").children.push(done);
                }
                Event::Text(t) => {
                    let text = t.decode().expect("utf-8 text");
                    stack.last_mut().expect("open element").text.push_str(&text);
                }
                Event::GeneralRef(r) => {
                    let name = r.decode().expect("utf-8 reference");
                    let text = quick_xml::escape::unescape(&format!("&{name};"))
                        .expect("known reference")
                        .into_owned();
                    stack.last_mut().expect("open element").text.push_str(&text);
                }
                Event::Eof => break,
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert_eq!(stack.len(), 1, "unclosed elements");
        let mut top = stack.pop().expect("document");
        assert_eq!(top.children.len(), 1, "one root element");
        top.children.pop().expect("root")
    }

    fn case(suite: &str, name: &str, outcome: JunitOutcome) -> JunitCase {
        JunitCase {
            suite: suite.to_owned(),
            name: name.to_owned(),
            outcome,
            message: String::new(),
            details: String::new(),
            time_secs: None,
        }
    }

    fn render(name: &str, cases: &[JunitCase]) -> String {
        let mut out = Vec::new();
        write_junit(&mut out, name, cases).expect("writing to a Vec");
        String::from_utf8(out).expect("UTF-8 output")
    }

    fn guest_cases() -> Vec<JunitCase> {
        vec![
            JunitCase {
                time_secs: Some(0.25),
                ..case("io", "u32_roundtrip", JunitOutcome::Passed)
            },
            JunitCase {
                message: "u16_lanes failed".to_owned(),
                details: "u16_lanes: low half: expected 0x1234 got 0x0".to_owned(),
                time_secs: Some(0.5),
                ..case("io", "u16_lanes", JunitOutcome::Failed)
            },
            JunitCase {
                message: "no port-IO test device".to_owned(),
                ..case("io", "unassigned_port", JunitOutcome::Skipped)
            },
            JunitCase {
                message: "never reported: Bail out! at line 18".to_owned(),
                ..case("mmio", "u32_roundtrip", JunitOutcome::Error)
            },
        ]
    }

    #[test]
    fn junit_exact_output() {
        let expected = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="cvmprobe legacy" tests="4" failures="1" errors="1" skipped="1" time="0.750000">
  <testsuite name="io" tests="3" failures="1" errors="0" skipped="1" time="0.750000">
    <testcase classname="io" name="u32_roundtrip" time="0.250000"/>
    <testcase classname="io" name="u16_lanes" time="0.500000">
      <failure message="u16_lanes failed">u16_lanes: low half: expected 0x1234 got 0x0</failure>
    </testcase>
    <testcase classname="io" name="unassigned_port">
      <skipped message="no port-IO test device"/>
    </testcase>
  </testsuite>
  <testsuite name="mmio" tests="1" failures="0" errors="1" skipped="0">
    <testcase classname="mmio" name="u32_roundtrip">
      <error message="never reported: Bail out! at line 18"></error>
    </testcase>
  </testsuite>
</testsuites>
"#;
        assert_eq!(render("cvmprobe legacy", &guest_cases()), expected);
    }

    #[test]
    fn junit_groups_by_suite_in_first_appearance_order() {
        let cases = [
            case("msr", "a", JunitOutcome::Passed),
            case("io", "b", JunitOutcome::Failed),
            case("msr", "c", JunitOutcome::Skipped),
            case("io", "d", JunitOutcome::Error),
            case("msr", "e", JunitOutcome::Failed),
        ];
        let root = read_back(&render("run", &cases));
        assert_eq!(root.name, "testsuites");
        assert_eq!(
            [
                root.attr("tests"),
                root.attr("failures"),
                root.attr("errors"),
                root.attr("skipped")
            ],
            [Some("5"), Some("2"), Some("1"), Some("1")]
        );
        let suites: Vec<_> = root
            .children
            .iter()
            .map(|s| {
                let names: Vec<_> = s.children.iter().filter_map(|c| c.attr("name")).collect();
                (s.attr("name").unwrap_or_default(), names.join(","))
            })
            .collect();
        assert_eq!(
            suites,
            [("msr", "a,c,e".to_owned()), ("io", "b,d".to_owned())]
        );
        let msr = &root.children[0];
        assert_eq!(
            [
                msr.attr("tests"),
                msr.attr("failures"),
                msr.attr("errors"),
                msr.attr("skipped")
            ],
            [Some("3"), Some("1"), Some("0"), Some("1")]
        );
        assert!(msr.children[0].children.is_empty());
        assert!(msr.children[1].child("skipped").is_some());
        assert!(msr.children[2].child("failure").is_some());
        assert!(root.children[1].children[1].child("error").is_some());
        assert_eq!(root.children[0].children[0].attr("classname"), Some("msr"));
    }

    #[test]
    fn junit_escapes_and_reads_back() {
        let nasty = "a&b <c> \"d\" 'e' ]]> \u{1b}[31mred\u{1b}[0m \u{0}\u{7}\u{b}\u{c} \u{FFFE}\u{FFFF} é 😀";
        let cases = [
            JunitCase {
                message: format!("first\nsecond\tthird\r {nasty}"),
                details: format!("line 1: {nasty}\nline 2: </failure><x>\r\n\tindented"),
                ..case(nasty, nasty, JunitOutcome::Failed)
            },
            JunitCase {
                message: nasty.to_owned(),
                details: "skipped details & more".to_owned(),
                ..case("s", "skip", JunitOutcome::Skipped)
            },
            JunitCase {
                details: "passed <details>".to_owned(),
                ..case("s", "pass", JunitOutcome::Passed)
            },
        ];
        let xml = render("names & <things>", &cases);

        // Nothing XML 1.0 forbids is in the output, escaped or raw.
        assert!(xml.chars().all(is_xml_char), "{xml:?}");
        for forbidden in ["&#0;", "&#7;", "&#27;", "\u{1b}", "\u{FFFE}"] {
            assert!(!xml.contains(forbidden), "{forbidden:?} in output");
        }

        let cleaned = "a&b <c> \"d\" 'e' ]]> \u{FFFD}[31mred\u{FFFD}[0m \u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD} \u{FFFD}\u{FFFD} é 😀";
        let root = read_back(&xml);
        assert_eq!(root.attr("name"), Some("names & <things>"));
        let suite = &root.children[0];
        assert_eq!(suite.attr("name"), Some(cleaned));
        let tc = &suite.children[0];
        assert_eq!(
            (tc.attr("classname"), tc.attr("name")),
            (Some(cleaned), Some(cleaned))
        );
        let failure = tc.child("failure").expect("failure element");
        // Line breaks and tabs in attributes survive as references.
        assert_eq!(
            failure.attr("message"),
            Some(format!("first\nsecond\tthird\r {cleaned}").as_str())
        );
        assert_eq!(
            failure.text,
            format!("line 1: {cleaned}\nline 2: </failure><x>\r\n\tindented")
        );
        let skipped_case = &root.children[1].children[0];
        assert_eq!(
            skipped_case
                .child("skipped")
                .and_then(|s| s.attr("message")),
            Some(cleaned)
        );
        assert_eq!(
            skipped_case.child("system-out").map(|s| s.text.as_str()),
            Some("skipped details & more")
        );
        let passed_case = &root.children[1].children[1];
        assert_eq!(
            passed_case.child("system-out").map(|s| s.text.as_str()),
            Some("passed <details>")
        );
    }

    #[test]
    fn junit_times_and_empty_reports() {
        let cases = [
            JunitCase {
                time_secs: Some(f64::NAN),
                ..case("s", "nan", JunitOutcome::Passed)
            },
            JunitCase {
                time_secs: Some(-1.0),
                ..case("s", "negative", JunitOutcome::Passed)
            },
            JunitCase {
                time_secs: Some(1.5),
                ..case("s", "ok", JunitOutcome::Passed)
            },
        ];
        let root = read_back(&render("t", &cases));
        assert_eq!(root.attr("time"), Some("1.500000"));
        let times: Vec<_> = root.children[0]
            .children
            .iter()
            .map(|c| c.attr("time"))
            .collect();
        assert_eq!(times, [None, None, Some("1.500000")]);

        let xml = render("empty", &[]);
        let root = read_back(&xml);
        assert_eq!(root.attr("tests"), Some("0"));
        assert_eq!(root.attr("time"), None);
        assert!(root.children.is_empty());
    }

    #[test]
    fn junit_write_errors_propagate() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = write_junit(&mut Broken, "x", &guest_cases()).expect_err("must fail");
        assert_eq!(err.to_string(), "disk full");
    }
}
