//! Line-level lexing shared by the parser and the live classifier: finding the version line,
//! stripping the per-line prefix (timestamps, printk levels, CI tags), measuring indentation
//! and recognising the KTAP line kinds.

use super::Flavor;

/// A tab advances the indentation to the next multiple of this many columns, so one tab
/// counts as one KTAP nesting level.
const TAB_WIDTH: usize = 4;

/// One element of a prefix's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// One or more ASCII digits (timestamps, printk levels, dates change from line to line).
    Digits,
    /// Zero or more blanks inside the prefix (`[    0.1]` vs `[12345.1]`).
    Blanks,
    /// A run of ASCII letters: any run (`None`) when the prefix has punctuation to anchor it
    /// (`kern  :info  :` vs `kern  :err   :`), else exactly this text.
    Letters(Option<String>),
    /// Any other character, matched exactly (`[`, `]`, `:`, `<`, `-`, ...).
    Lit(char),
    /// The blanks that end the prefix, matched exactly: more blanks are indentation.
    Trailing(String),
}

/// The noise in front of the version line, turned into a pattern that later lines are
/// matched against: the same *shape*, not the same text or length.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prefix {
    toks: Vec<Tok>,
}

impl Prefix {
    /// Builds the shape of `prefix`, the text before `KTAP version` on the version line.
    pub(crate) fn new(prefix: &str) -> Self {
        let mut toks = Vec::new();
        let mut chars = prefix.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() {
                while chars.next_if(char::is_ascii_digit).is_some() {}
                toks.push(Tok::Digits);
            } else if is_blank(c) {
                let mut run = String::from(c);
                while let Some(b) = chars.next_if(|&c| is_blank(c)) {
                    run.push(b);
                }
                if chars.peek().is_some() {
                    toks.push(Tok::Blanks);
                } else {
                    toks.push(Tok::Trailing(run));
                }
            } else if c.is_ascii_alphabetic() {
                let mut run = String::from(c);
                while let Some(l) = chars.next_if(char::is_ascii_alphabetic) {
                    run.push(l);
                }
                toks.push(Tok::Letters(Some(run)));
            } else {
                toks.push(Tok::Lit(c));
            }
        }
        // Letters vary (printk level names, month names, tty names) but only punctuation
        // makes that safe: an unanchored "foo " shape with free letters would also eat
        // the "not " of "not ok 1 x".
        if toks.iter().any(|t| matches!(t, Tok::Lit(_))) {
            for t in &mut toks {
                if let Tok::Letters(l) = t {
                    *l = None;
                }
            }
        }
        Self { toks }
    }

    /// Removes a prefix of the remembered shape from `line`; returns `line` unchanged when it
    /// does not start with one (a line printed without the prefix is still read).
    pub(crate) fn strip<'a>(&self, line: &'a str) -> &'a str {
        self.match_len(line)
            .and_then(|n| line.get(n..))
            .unwrap_or(line)
    }

    /// Length in bytes of the prefix at the start of `line`, if it has one of this shape.
    fn match_len(&self, line: &str) -> Option<usize> {
        if self.toks.is_empty() {
            return None;
        }
        let bytes = line.as_bytes();
        let run = |from: usize, pred: fn(&u8) -> bool| {
            bytes
                .get(from..)
                .map_or(0, |b| b.iter().take_while(|c| pred(c)).count())
        };
        let mut i = 0;
        for tok in &self.toks {
            let rest = line.get(i..)?;
            match tok {
                Tok::Digits => match run(i, u8::is_ascii_digit) {
                    0 => return None,
                    n => i += n,
                },
                Tok::Blanks => i += run(i, |&b| b == b' ' || b == b'\t'),
                Tok::Letters(None) => match run(i, u8::is_ascii_alphabetic) {
                    0 => return None,
                    n => i += n,
                },
                Tok::Letters(Some(text)) => {
                    if run(i, u8::is_ascii_alphabetic) != text.len() || !rest.starts_with(text) {
                        return None;
                    }
                    i += text.len();
                }
                Tok::Lit(c) => {
                    if !rest.starts_with(*c) {
                        return None;
                    }
                    i += c.len_utf8();
                }
                Tok::Trailing(text) => {
                    if !rest.starts_with(text.as_str()) {
                        return None;
                    }
                    i += text.len();
                }
            }
        }
        Some(i)
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// A version line found in raw input: where its keyword starts, and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VersionLine {
    /// Byte offset of `KTAP`/`TAP` in the raw line: everything before it is the prefix.
    pub(crate) offset: usize,
    pub(crate) flavor: Flavor,
    pub(crate) version: u32,
}

/// Finds `KTAP version N` or `TAP version N` ending `line` (trailing blanks already removed),
/// after any prefix. The keyword may be glued to what precedes it: firmware often leaves
/// screen-control codes without a line break (`\x1b[01;01HKTAP version 1`).
pub(crate) fn find_version(line: &str) -> Option<VersionLine> {
    for (idx, _) in line.match_indices("TAP version ") {
        let before = line.get(..idx)?;
        let (offset, flavor) = match before.strip_suffix('K') {
            Some(b) => (b.len(), Flavor::Ktap),
            None => (idx, Flavor::Tap),
        };
        let number = line.get(idx + "TAP version ".len()..)?;
        if let Some(version) = parse_number::<u32>(number) {
            return Some(VersionLine {
                offset,
                flavor,
                version,
            });
        }
    }
    None
}

/// `s` as a decimal number if it is nothing but ASCII digits (and fits).
fn parse_number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits leading indentation from `s`: (its width in columns, the rest).
pub(crate) fn indentation(s: &str) -> (usize, &str) {
    let mut width = 0;
    for (i, c) in s.char_indices() {
        match c {
            ' ' => width += 1,
            '\t' => width = (width / TAB_WIDTH + 1) * TAB_WIDTH,
            _ => return (width, s.get(i..).unwrap_or_default()),
        }
    }
    (width, "")
}

/// A result line's directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Directive<'a> {
    /// No directive (or one this parser does not know, which is ignored).
    None,
    /// `# SKIP reason`.
    Skip(&'a str),
    /// `# TODO reason`.
    Todo(&'a str),
}

/// `ok N name # directive` / `not ok N - name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResultLine<'a> {
    pub(crate) ok: bool,
    pub(crate) number: usize,
    pub(crate) name: &'a str,
    pub(crate) directive: Directive<'a>,
}

/// What one line is, after prefix and indentation are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    /// `KTAP version N` / `TAP version N`.
    Version(Flavor, u32),
    /// `# Subtest: name`.
    Subtest(&'a str),
    /// `1..N`.
    Plan(usize),
    /// `ok`/`not ok` line.
    Result(ResultLine<'a>),
    /// `# text` (the text without `#` and one following space).
    Diag(&'a str),
    /// `Bail out! reason`.
    BailOut(&'a str),
}

/// Recognises a KTAP line; `content` has no prefix, no indentation and no trailing blanks.
/// `None` for anything else (kernel messages, continuation lines of assertion reports).
pub(crate) fn lex(content: &str) -> Option<Kind<'_>> {
    if let Some(reason) = content.strip_prefix("Bail out!") {
        return Some(Kind::BailOut(reason.trim()));
    }
    if let Some(text) = content.strip_prefix('#') {
        let after_hash = text.trim_start_matches(is_blank);
        if let Some(name) = after_hash.strip_prefix("Subtest:") {
            return Some(Kind::Subtest(name.trim()));
        }
        return Some(Kind::Diag(text.strip_prefix(' ').unwrap_or(text)));
    }
    if let Some(rest) = content.strip_prefix("KTAP version ") {
        return parse_number(rest).map(|v| Kind::Version(Flavor::Ktap, v));
    }
    if let Some(rest) = content.strip_prefix("TAP version ") {
        return parse_number(rest).map(|v| Kind::Version(Flavor::Tap, v));
    }
    if let Some(rest) = content.strip_prefix("1..") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (count, tail) = rest.split_at_checked(digits)?;
        // A TAP plan may carry a directive: `1..0 # SKIP no tests`.
        if !tail.is_empty() && !tail.starts_with(is_blank) {
            return None;
        }
        return parse_number(count).map(Kind::Plan);
    }
    lex_result(content).map(Kind::Result)
}

fn lex_result(content: &str) -> Option<ResultLine<'_>> {
    let (ok, rest) = match content.strip_prefix("not ok") {
        Some(r) => (false, r),
        None => (true, content.strip_prefix("ok")?),
    };
    let number_on = rest.trim_start_matches(is_blank);
    if number_on.len() == rest.len() {
        return None; // "okay", "not okay"
    }
    let digits = number_on.bytes().take_while(u8::is_ascii_digit).count();
    let (number, after) = number_on.split_at_checked(digits)?;
    let number = parse_number(number)?;
    if !after.is_empty() && !after.starts_with(is_blank) {
        return None; // "ok 1x"
    }
    let (description, directive) = split_directive(after.trim());
    let description = description.trim();
    let name = match description.strip_prefix('-') {
        Some(n) if n.is_empty() || n.starts_with(is_blank) => n.trim_start(),
        _ => description,
    };
    Some(ResultLine {
        ok,
        number,
        name,
        directive,
    })
}

/// Splits `description # directive` at the first `#` that starts a directive: one at the
/// start or after a blank, followed by a blank, the end, or a SKIP/TODO word (`#SKIP`).
/// A `#` inside a word (`value#3`) stays in the name.
fn split_directive(s: &str) -> (&str, Directive<'_>) {
    let mut prev_blank = true;
    for (i, c) in s.char_indices() {
        if c == '#' && prev_blank {
            let after = s.get(i + 1..).unwrap_or_default();
            let word_start = after.trim_start_matches(is_blank);
            let spaced = after.is_empty() || after.starts_with(is_blank);
            let keyword = starts_with_ignore_case(word_start, "skip")
                || starts_with_ignore_case(word_start, "todo");
            if spaced || keyword {
                let name = s.get(..i).unwrap_or_default();
                return (name, parse_directive(word_start));
            }
        }
        prev_blank = is_blank(c);
    }
    (s, Directive::None)
}

fn parse_directive(text: &str) -> Directive<'_> {
    let word_len = text
        .find(|c: char| is_blank(c) || c == ':')
        .unwrap_or(text.len());
    let (word, rest) = text.split_at_checked(word_len).unwrap_or((text, ""));
    let reason = rest.trim_start_matches(':').trim();
    if starts_with_ignore_case(word, "skip") {
        Directive::Skip(reason)
    } else if word.eq_ignore_ascii_case("todo") {
        Directive::Todo(reason)
    } else {
        Directive::None
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip<'a>(prefix_line: &str, line: &'a str) -> &'a str {
        let v = find_version(prefix_line).expect("version line");
        Prefix::new(&prefix_line[..v.offset]).strip(line)
    }

    #[test]
    fn ktap_prefix_timestamp_of_another_width() {
        let first = "[    0.123456] KTAP version 1";
        assert_eq!(strip(first, "[   12.345678]     ok 1 a"), "    ok 1 a");
        assert_eq!(strip(first, "[12345.000001] 1..3"), "1..3");
        // Exactly one trailing blank belongs to the prefix; the rest is indentation.
        assert_eq!(strip(first, "[    0.2]         # x"), "        # x");
        // A line without the prefix is read as it is.
        assert_eq!(strip(first, "    ok 1 a"), "    ok 1 a");
        assert_eq!(strip(first, "[ abc] ok 1 a"), "[ abc] ok 1 a");
    }

    #[test]
    fn ktap_prefix_printk_level_and_dmesg_x() {
        let first = "<6>[    0.500000] KTAP version 1";
        assert_eq!(
            strip(first, "<3>[   10.5]     not ok 1 x"),
            "    not ok 1 x"
        );
        let first = "kern  :info  : [    0.100000] KTAP version 1";
        assert_eq!(
            strip(first, "kern  :err   : [    1.100000]     # x: failed"),
            "    # x: failed"
        );
        assert_eq!(strip(first, "kern  :notice: [   11.1] ok 1 y"), "ok 1 y");
    }

    #[test]
    fn ktap_prefix_ci_timestamp_and_tty_tag() {
        let first = "2026-11-25T10:00:00.123456Z KTAP version 1";
        assert_eq!(
            strip(first, "2026-11-25T10:00:01.9Z     ok 2 b"),
            "    ok 2 b"
        );
        let first = "ttyS0: KTAP version 1";
        assert_eq!(strip(first, "ttyS1:     1..2"), "    1..2");
        assert_eq!(strip(first, "not ok 1 x"), "not ok 1 x");
    }

    #[test]
    fn ktap_prefix_without_punctuation_keeps_letters_exact() {
        let first = "foo KTAP version 1";
        assert_eq!(strip(first, "foo ok 1 a"), "ok 1 a");
        assert_eq!(strip(first, "not ok 1 a"), "not ok 1 a");
        assert_eq!(Prefix::new("").strip("  ok 1"), "  ok 1");
    }

    #[test]
    fn ktap_find_version_variants() {
        let v = find_version("[ 1.0] TAP version 14").expect("tap");
        assert_eq!((v.offset, v.flavor, v.version), (7, Flavor::Tap, 14));
        let v = find_version("KTAP version 1").expect("ktap");
        assert_eq!((v.offset, v.flavor, v.version), (0, Flavor::Ktap, 1));
        assert_eq!(find_version("KTAP version 1 extra"), None);
        let v = find_version("XKTAP version 1").expect("glued");
        assert_eq!((v.offset, v.flavor), (1, Flavor::Ktap));
        assert_eq!(find_version("KTAP version "), None);
        assert_eq!(find_version("KTAP version 99999999999999"), None);
        let v = find_version("\x1b[2J\x1b[01;01HKTAP version 1").expect("after escapes");
        assert_eq!(v.offset, 12);
    }

    #[test]
    fn ktap_indentation_counts_tabs_as_one_level() {
        assert_eq!(indentation("    ok"), (4, "ok"));
        assert_eq!(indentation("\tok"), (4, "ok"));
        assert_eq!(indentation("  \tok"), (4, "ok"));
        assert_eq!(indentation("\t\t# x"), (8, "# x"));
        assert_eq!(indentation("   "), (3, ""));
    }

    fn result(s: &str) -> ResultLine<'_> {
        match lex(s) {
            Some(Kind::Result(r)) => r,
            other => panic!("{s:?} lexed as {other:?}"),
        }
    }

    #[test]
    fn ktap_lex_results() {
        let r = result("ok 1 u32_roundtrip");
        assert_eq!(
            (r.ok, r.number, r.name, r.directive),
            (true, 1, "u32_roundtrip", Directive::None)
        );
        let r = result("not ok 12 - example value 3");
        assert_eq!((r.ok, r.number, r.name), (false, 12, "example value 3"));
        let r =
            result("ok 3 unassigned_port # SKIP no port-IO test device (QEMU: -device pc-testdev)");
        assert_eq!(r.name, "unassigned_port");
        assert_eq!(
            r.directive,
            Directive::Skip("no port-IO test device (QEMU: -device pc-testdev)")
        );
        assert_eq!(result("ok 2 x # skip").directive, Directive::Skip(""));
        assert_eq!(
            result("ok 2 x #SKIP: why").directive,
            Directive::Skip("why")
        );
        assert_eq!(
            result("ok 2 x # Skipped why").directive,
            Directive::Skip("why")
        );
        assert_eq!(
            result("not ok 2 x # todo later").directive,
            Directive::Todo("later")
        );
        let r = result("ok 4 value#3 # exit=0");
        assert_eq!((r.name, r.directive), ("value#3", Directive::None));
        assert_eq!(result("ok 5").name, "");
        assert_eq!(result("ok 5 -").name, "");
        assert_eq!(result("ok 5 -x").name, "-x");
        assert_eq!(result("ok  7   spaced  name ").name, "spaced  name");
    }

    #[test]
    fn ktap_lex_other_kinds() {
        assert_eq!(lex("1..3"), Some(Kind::Plan(3)));
        assert_eq!(lex("1..0 # SKIP nothing"), Some(Kind::Plan(0)));
        assert_eq!(lex("1..3x"), None);
        assert_eq!(lex("1..99999999999999999999999"), None);
        assert_eq!(lex("# Subtest: io"), Some(Kind::Subtest("io")));
        assert_eq!(lex("#  Subtest:  io"), Some(Kind::Subtest("io")));
        assert_eq!(lex("# module: foo"), Some(Kind::Diag("module: foo")));
        assert_eq!(lex("#"), Some(Kind::Diag("")));
        assert_eq!(
            lex("Bail out! panic: oops"),
            Some(Kind::BailOut("panic: oops"))
        );
        assert_eq!(lex("KTAP version 1"), Some(Kind::Version(Flavor::Ktap, 1)));
        assert_eq!(lex("TAP version 13"), Some(Kind::Version(Flavor::Tap, 13)));
        for other in [
            "okay",
            "ok",
            "ok x",
            "ok 1x",
            "not okay 1",
            "Expected 1 + 1 == 3, but",
            "",
        ] {
            assert_eq!(lex(other), None, "{other:?}");
        }
        assert_eq!(lex("ok 99999999999999999999999 big"), None);
    }
}
