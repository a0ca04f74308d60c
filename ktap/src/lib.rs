//! Reading KTAP: the guest's serial output, or any kernel's KUnit/kselftest log.
//!
//! [`parse`] turns a whole log into a [`Document`]: the tree of results, the diagnostics that
//! belong to each, and every structural problem with its 1-based input line. It accepts what
//! Linux's `Documentation/dev-tools/ktap.rst` (KTAP v1) and `kunit_parser.py` accept:
//!
//! - a `KTAP version 1` (or `TAP version 13`/`14`) line starts the document; the text in front
//!   of it on its line is the *prefix* (a printk timestamp, a `dmesg -x` facility and level,
//!   a CI timestamp, a tty tag), and later lines lose a prefix of the same *shape* (digits may
//!   differ, blanks inside may differ, level names may differ), so `[    0.123456] ` and
//!   `[   12.345678] ` are both removed;
//! - nesting follows indentation (4 spaces per level in KTAP, but any consistent width, tabs
//!   included, works: a line indented deeper than its block opens a nested block, and a line
//!   back at an outer level closes it);
//! - a nested block belongs to the result line that follows it at the parent level, and its
//!   `# Subtest: name` header must agree with that line's name;
//! - a diagnostic (`# text`) belongs to the next result line at its depth; diagnostics before a
//!   block's plan describe the block (for the top level: [`Document::diagnostics`]);
//! - lines that are not KTAP (kernel messages, continuation lines of assertion reports) are
//!   counted in [`Document::unknown_lines`] and otherwise ignored.
//!
//! A log that stops early (the guest crashed, the VM was killed) is an expected input: every
//! result it contains is kept, a nested block that never got its result line becomes a failed
//! [`TestNode`] holding the children it did print, and [`Document::problems`] says what is
//! missing. No input makes the parser panic.
//!
//! [`LineClassifier`] is the line-at-a-time companion for live progress output.

mod classify;
mod line;
#[cfg(test)]
mod tests;

use std::fmt;

pub use classify::{LineClassifier, LineEvent};
use line::{Directive, Kind, Prefix, ResultLine, VersionLine};

/// Nesting deeper than this many levels is not followed (its lines count as unknown), which
/// bounds the recursion of everything that walks the tree.
pub const MAX_DEPTH: usize = 32;

/// Which header started the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// `KTAP version N`.
    Ktap,
    /// `TAP version N` (older KUnit and kselftest output).
    Tap,
}

/// A parsed KTAP log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    /// The first version line's flavour and number; `None` means the input is not KTAP.
    pub version: Option<(Flavor, u32)>,
    /// The top-level plan (`1..N`), wherever it appeared.
    pub plan: Option<usize>,
    /// Top-level results in order, including blocks that were cut off (as failures).
    pub tests: Vec<TestNode>,
    /// The first `Bail out!` line, at any depth. Parsing stops there.
    pub bail_out: Option<BailOut>,
    /// Top-level diagnostics that no test owns: those before the top-level plan, after the
    /// last top-level result, or after a cut-off.
    pub diagnostics: Vec<Diagnostic>,
    /// Structural problems, ordered by line.
    pub problems: Vec<Problem>,
    /// Lines inside the document that are not KTAP (interleaved kernel messages).
    pub unknown_lines: usize,
    /// Lines outside the document: before the version line, after the top level is complete
    /// (unless they are top-level KTAP), or after a `Bail out!`.
    pub noise_lines: usize,
}

/// One result line, with the nested block that preceded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestNode {
    /// The number printed on the result line (for a cut-off block: the number it should have
    /// had).
    pub number: usize,
    /// The test name (without a TAP-style `- `).
    pub name: String,
    /// Outcome, from `ok`/`not ok` and the directive.
    pub status: Status,
    /// Diagnostics that belong to this test, in input order: those directly before its result
    /// line at its depth, plus those of its nested block that no nested result owns (the
    /// block's header lines such as `# module:`, and trailing lines such as KUnit's
    /// `# suite: pass:5 fail:0 ...` or a failure report printed just before a crash).
    pub diagnostics: Vec<Diagnostic>,
    /// The plan of its nested block, if that block had one.
    pub plan: Option<usize>,
    /// The results of its nested block.
    pub subtests: Vec<TestNode>,
    /// Input line of its result line (for a cut-off block: of its `# Subtest:` header, or of
    /// its first line when it had none).
    pub line: usize,
}

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Status {
    /// `ok` without a directive.
    Pass,
    /// `not ok` without a directive, or a nested block that never got its result line.
    Fail,
    /// `# SKIP reason` (on `ok` or `not ok`).
    Skip(String),
    /// `# TODO reason` (on `ok` or `not ok`).
    Todo(String),
}

/// A `# text` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// The text without the leading `# `.
    pub text: String,
    /// 1-based input line.
    pub line: usize,
}

/// Something wrong with the structure of the input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    /// 1-based input line the problem is about; 0 when it concerns the whole input.
    pub line: usize,
    /// What is wrong, in one sentence.
    pub message: String,
}

/// A `Bail out!` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BailOut {
    /// The text after `Bail out!`, trimmed.
    pub reason: String,
    /// 1-based input line.
    pub line: usize,
}

/// Outcome counts over the leaves of a document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Counts {
    /// Leaves with [`Status::Pass`].
    pub pass: usize,
    /// Leaves with [`Status::Fail`].
    pub fail: usize,
    /// Leaves with [`Status::Skip`].
    pub skip: usize,
    /// Leaves with [`Status::Todo`].
    pub todo: usize,
}

impl Counts {
    /// Number of leaves counted.
    pub fn total(&self) -> usize {
        self.pass + self.fail + self.skip + self.todo
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pass:{} fail:{} skip:{} todo:{} total:{}",
            self.pass,
            self.fail,
            self.skip,
            self.todo,
            self.total()
        )
    }
}

impl Status {
    /// Upper-case label: `PASS`, `FAIL`, `SKIP` or `TODO`.
    pub fn label(&self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip(_) => "SKIP",
            Status::Todo(_) => "TODO",
        }
    }

    /// The SKIP or TODO reason, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Status::Skip(r) | Status::Todo(r) => Some(r),
            Status::Pass | Status::Fail => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(r) if !r.is_empty() => write!(f, "{} ({r})", self.label()),
            _ => f.write_str(self.label()),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl TestNode {
    /// Whether this test has no nested results.
    pub fn is_leaf(&self) -> bool {
        self.subtests.is_empty()
    }
}

impl Document {
    /// Whether a version line was found at all.
    pub fn is_ktap(&self) -> bool {
        self.version.is_some()
    }

    /// Leaf results (tests without subtests) with their path, e.g. `["io", "u8_lanes"]`.
    pub fn leaves(&self) -> Vec<(Vec<&str>, &TestNode)> {
        fn walk<'a>(
            t: &'a TestNode,
            path: &mut Vec<&'a str>,
            out: &mut Vec<(Vec<&'a str>, &'a TestNode)>,
        ) {
            path.push(&t.name);
            if t.subtests.is_empty() {
                out.push((path.clone(), t));
            } else {
                for s in &t.subtests {
                    walk(s, path, out);
                }
            }
            path.pop();
        }
        let mut out = Vec::new();
        let mut path = Vec::new();
        for t in &self.tests {
            walk(t, &mut path, &mut out);
        }
        out
    }

    /// Counts over leaves: pass, fail, skip, todo.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for (_, t) in self.leaves() {
            match t.status {
                Status::Pass => c.pass += 1,
                Status::Fail => c.fail += 1,
                Status::Skip(_) => c.skip += 1,
                Status::Todo(_) => c.todo += 1,
            }
        }
        c
    }

    /// The verdict: a KTAP document without problems or `Bail out!` in which no test, at any
    /// level, failed.
    pub fn passed(&self) -> bool {
        fn none_failed(tests: &[TestNode]) -> bool {
            tests
                .iter()
                .all(|t| t.status != Status::Fail && none_failed(&t.subtests))
        }
        self.is_ktap()
            && self.problems.is_empty()
            && self.bail_out.is_none()
            && none_failed(&self.tests)
    }
}

/// Parses a whole KTAP log (see the module documentation). Never fails: what is wrong with
/// the input is in [`Document::problems`].
///
/// This is the strict reading our own guest's logs get: every departure from KTAP v1 is a
/// problem. [`parse_log`] reads other kernels' logs the way `kunit_tool` does.
pub fn parse(input: &str) -> Document {
    parse_with(input, false)
}

/// Parses a log of unknown origin (`cvmprobe parse`): strictly ([`parse`]) when it comes from
/// our guest (its `# cvmprobe-guest` line), else leniently, agreeing with `kunit_tool`'s
/// `kunit_parser.py` where it is more forgiving than the KTAP text:
///
/// - a missing top-level plan is not a problem (kunit_tool: "A missing test plan is not an
///   error"; its `test_data` logs without one are SUCCESS);
/// - a nested block whose results are indented deeper than its own `KTAP version`/plan lines
///   keeps them (kunit_tool ignores indentation; `test_is_test_passed-failure-nested.log`).
///
/// The README lists every `kunit_tool` `test_data` log with both verdicts.
pub fn parse_log(input: &str) -> Document {
    parse_with(input, !is_from_our_guest(input))
}

/// Whether `input` is our guest's: a line names the guest build (`# cvmprobe-guest`), after
/// whatever prefix the console added.
pub fn is_from_our_guest(input: &str) -> bool {
    input
        .lines()
        .any(|l| l.contains(protocol::ktap::GUEST_DIAG))
}

fn parse_with(input: &str, lenient: bool) -> Document {
    let mut p = Parser {
        lenient,
        ..Parser::default()
    };
    let mut last = 0;
    for (i, raw) in input.lines().enumerate() {
        last = i + 1;
        p.line(last, raw);
    }
    p.finish(last)
}

/// One block of results at one depth, while it is being read.
#[derive(Debug)]
struct Block {
    /// Indentation width of its lines.
    indent: usize,
    /// Line of its first line.
    start_line: usize,
    /// Line of its version line.
    version: Option<usize>,
    /// `# Subtest:` name and line.
    header: Option<(String, usize)>,
    /// Plan count and line.
    plan: Option<(usize, usize)>,
    results: Vec<TestNode>,
    /// Diagnostics waiting for the next result line at this depth.
    pending: Vec<Diagnostic>,
    /// Diagnostics about the block itself (before its plan).
    own: Vec<Diagnostic>,
    /// A nested block that has ended (a line at this depth came) and waits for the result
    /// line that closes it.
    child: Option<Box<Block>>,
}

impl Block {
    fn new(indent: usize, start_line: usize) -> Self {
        Self {
            indent,
            start_line,
            version: None,
            header: None,
            plan: None,
            results: Vec::new(),
            pending: Vec::new(),
            own: Vec::new(),
            child: None,
        }
    }

    fn next_number(&self) -> usize {
        self.results
            .last()
            .map_or(1, |t| t.number.saturating_add(1))
    }

    /// Nothing but diagnostics yet: a header line may still come.
    fn is_unstarted(&self) -> bool {
        self.plan.is_none() && self.results.is_empty() && self.child.is_none()
    }

    /// Only diagnostics: an over-indented diagnostic, not a real nested block.
    fn is_trivial(&self) -> bool {
        self.is_unstarted() && self.version.is_none() && self.header.is_none()
    }

    fn name(&self) -> &str {
        self.header.as_ref().map_or("(unnamed)", |h| h.0.as_str())
    }

    /// All its diagnostics no result owns, in input order.
    fn into_parts(self) -> (Vec<Diagnostic>, Option<usize>, Vec<TestNode>) {
        let mut diags = self.own;
        diags.extend(self.pending);
        diags.sort_by_key(|d| d.line);
        (diags, self.plan.map(|p| p.0), self.results)
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Reports a plan that disagrees with the number of results (at the plan's line).
fn check_plan(problems: &mut Vec<Problem>, b: &Block, what: &str) {
    let Some((planned, line)) = b.plan else {
        return;
    };
    let got = b.results.len();
    let message = if got < planned {
        format!(
            "plan 1..{planned} of {what} but {}: {} missing",
            plural(got, "result"),
            planned - got
        )
    } else if got > planned {
        format!(
            "plan 1..{planned} of {what} but {}: {} more than planned",
            plural(got, "result"),
            got - planned
        )
    } else {
        return;
    };
    problems.push(Problem { line, message });
}

/// Ends `child` without a result line: it becomes a failed test of `parent` that keeps what
/// it printed (a trivial block only hands its diagnostics over).
fn close_unclosed(problems: &mut Vec<Problem>, parent: &mut Block, mut child: Block, why: &str) {
    if let Some(grandchild) = child.child.take() {
        close_unclosed(problems, &mut child, *grandchild, why);
    }
    if child.is_trivial() {
        parent.pending.append(&mut child.own);
        parent.pending.append(&mut child.pending);
        return;
    }
    let name = child.name().to_owned();
    let line = child.header.as_ref().map_or(child.start_line, |h| h.1);
    problems.push(Problem {
        line,
        message: format!("subtest '{name}' never got its result line ({why})"),
    });
    check_plan(problems, &child, &format!("subtest '{name}'"));
    let number = parent.next_number();
    let (diagnostics, plan, subtests) = child.into_parts();
    parent.results.push(TestNode {
        number,
        name,
        status: Status::Fail,
        diagnostics,
        plan,
        subtests,
        line,
    });
}

/// Ends the pending child of `b`, if any, without a result line.
fn close_pending_child(problems: &mut Vec<Problem>, b: &mut Block, why: &str) {
    if let Some(child) = b.child.take() {
        close_unclosed(problems, b, *child, why);
    }
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
enum State {
    #[default]
    BeforeVersion,
    InDocument,
    /// The top-level plan is satisfied: only top-level KTAP lines are still read.
    Complete,
    /// After `Bail out!` or a second document: everything is noise.
    Stopped,
}

#[derive(Debug, Default)]
struct Parser {
    doc: Document,
    state: State,
    prefix: Prefix,
    /// Open blocks; `stack[0]` is the top level. Empty before the version line and after
    /// the document is finished.
    stack: Vec<Block>,
    /// Whether [`MAX_DEPTH`] was already reported.
    too_deep_reported: bool,
    /// Read as `kunit_tool` does where it forgives more than KTAP ([`parse_log`]).
    lenient: bool,
}

impl Parser {
    fn line(&mut self, ln: usize, raw: &str) {
        let raw = raw.trim_end();
        match self.state {
            State::BeforeVersion => match line::find_version(raw) {
                Some(v) => self.start(ln, raw, v),
                None if raw.is_empty() => {}
                None => self.doc.noise_lines += 1,
            },
            State::Stopped => {
                if !raw.is_empty() {
                    self.doc.noise_lines += 1;
                }
            }
            State::InDocument | State::Complete => {
                let (width, content) = line::indentation(self.prefix.strip(raw));
                if content.is_empty() {
                    return;
                }
                match line::lex(content) {
                    Some(kind) => self.ktap(ln, width, kind),
                    None if self.state == State::Complete => self.doc.noise_lines += 1,
                    None => self.doc.unknown_lines += 1,
                }
            }
        }
    }

    fn start(&mut self, ln: usize, raw: &str, v: VersionLine) {
        let before = raw.get(..v.offset).unwrap_or_default();
        let indent = if before.trim().is_empty() {
            // Only indentation: the log starts inside a nested block.
            line::indentation(before).0
        } else {
            self.prefix = Prefix::new(before);
            0
        };
        let supported = match v.flavor {
            Flavor::Ktap => v.version == 1,
            Flavor::Tap => (13..=14).contains(&v.version),
        };
        if !supported {
            let what = match v.flavor {
                Flavor::Ktap => "KTAP version",
                Flavor::Tap => "TAP version",
            };
            self.doc.problems.push(Problem {
                line: ln,
                message: format!(
                    "unsupported {what} {} (KTAP 1 and TAP 13/14 are known); read as KTAP 1",
                    v.version
                ),
            });
        }
        let mut top = Block::new(indent, ln);
        top.version = Some(ln);
        self.stack.push(top);
        self.doc.version = Some((v.flavor, v.version));
        self.state = State::InDocument;
    }

    /// Handles one KTAP line at indentation `width`.
    fn ktap(&mut self, ln: usize, width: usize, kind: Kind<'_>) {
        let Some(top_indent) = self.stack.first().map(|b| b.indent) else {
            self.doc.noise_lines += 1;
            return;
        };
        if self.state == State::Complete && width > top_indent {
            self.doc.noise_lines += 1;
            return;
        }
        if let Kind::BailOut(reason) = kind {
            self.doc.bail_out.get_or_insert(BailOut {
                reason: reason.to_owned(),
                line: ln,
            });
            self.stop(&format!("Bail out! at line {ln}"));
            return;
        }
        self.dedent(width, ln);
        if !self.indent(width, ln, kind) {
            self.doc.unknown_lines += 1;
            return;
        }
        match kind {
            Kind::Version(..) => self.version(ln, width),
            Kind::Subtest(name) => self.subtest(ln, width, name),
            Kind::Plan(n) => self.plan(ln, n),
            Kind::Result(r) => self.result(ln, r),
            Kind::Diag(text) => {
                if let Some(top) = self.stack.last_mut() {
                    top.pending.push(Diagnostic {
                        text: text.to_owned(),
                        line: ln,
                    });
                }
            }
            Kind::BailOut(_) => {}
        }
    }

    /// Closes the nested blocks indented deeper than `width`: each becomes the pending child
    /// of its parent (a parent closed too closes its own child as cut off).
    fn dedent(&mut self, width: usize, ln: usize) {
        while self.stack.len() > 1 && self.stack.last().is_some_and(|b| b.indent > width) {
            let Some(mut b) = self.stack.pop() else {
                return;
            };
            let why = format!("the enclosing block ends at line {ln}");
            close_pending_child(&mut self.doc.problems, &mut b, &why);
            let Some(parent) = self.stack.last_mut() else {
                return;
            };
            close_pending_child(&mut self.doc.problems, parent, &why);
            if b.is_trivial() {
                parent.pending.append(&mut b.own);
                parent.pending.append(&mut b.pending);
            } else {
                parent.child = Some(Box::new(b));
            }
        }
    }

    /// Opens a nested block when the line is indented deeper than the current one (or
    /// reopens the block that just ended at that indentation, when the line continues it).
    /// False when that would nest deeper than [`MAX_DEPTH`].
    fn indent(&mut self, width: usize, ln: usize, kind: Kind<'_>) -> bool {
        let depth = self.stack.len();
        let Some(top) = self.stack.last_mut() else {
            return false;
        };
        if width <= top.indent {
            return true;
        }
        let starts_block = matches!(kind, Kind::Version(..) | Kind::Subtest(_));
        if self.lenient
            && depth > 1
            && matches!(kind, Kind::Result(_))
            && top.results.is_empty()
            && top.child.is_none()
            && (top.version.is_some() || top.header.is_some() || top.plan.is_some())
        {
            // A block of header lines whose results are indented deeper (kunit_tool reads
            // structure from the header lines, not the indentation): its results live there.
            top.indent = width;
            return true;
        }
        if !starts_block && top.child.as_ref().is_some_and(|c| c.indent == width) {
            if let Some(child) = top.child.take() {
                self.stack.push(*child);
            }
            return true;
        }
        if depth > MAX_DEPTH {
            if !self.too_deep_reported {
                self.too_deep_reported = true;
                self.doc.problems.push(Problem {
                    line: ln,
                    message: format!(
                        "nested deeper than {MAX_DEPTH} levels; deeper lines are ignored"
                    ),
                });
            }
            return false;
        }
        close_pending_child(
            &mut self.doc.problems,
            top,
            &format!("a nested block starts at line {ln}"),
        );
        self.stack.push(Block::new(width, ln));
        true
    }

    /// Ends the current nested block without its result line and starts a sibling at the
    /// same indentation (a new `KTAP version` or `# Subtest:` in a block that has started).
    fn restart_block(&mut self, ln: usize, width: usize) {
        if self.stack.len() < 2 {
            return;
        }
        let Some(b) = self.stack.pop() else {
            return;
        };
        if let Some(parent) = self.stack.last_mut() {
            let why = format!("another block starts at line {ln}");
            close_pending_child(&mut self.doc.problems, parent, &why);
            close_unclosed(&mut self.doc.problems, parent, b, &why);
        }
        self.stack.push(Block::new(width, ln));
    }

    fn version(&mut self, ln: usize, width: usize) {
        let depth = self.stack.len();
        let Some(top) = self.stack.last_mut() else {
            return;
        };
        if top.version.is_none() && top.is_unstarted() {
            top.version = Some(ln);
        } else if depth == 1 {
            let first = top.version.unwrap_or(top.start_line);
            self.doc.problems.push(Problem {
                line: ln,
                message: format!(
                    "another KTAP document starts here; only the one from line {first} is read"
                ),
            });
            self.stop(&format!("another document starts at line {ln}"));
        } else {
            self.restart_block(ln, width);
            if let Some(top) = self.stack.last_mut() {
                top.version = Some(ln);
            }
        }
    }

    fn subtest(&mut self, ln: usize, width: usize, name: &str) {
        let depth = self.stack.len();
        let Some(top) = self.stack.last_mut() else {
            return;
        };
        if depth == 1 {
            // A name for the whole document: keep it as a diagnostic.
            top.pending.push(Diagnostic {
                text: format!("Subtest: {name}"),
                line: ln,
            });
            return;
        }
        if top.header.is_some() || !top.is_unstarted() {
            self.restart_block(ln, width);
        }
        if let Some(top) = self.stack.last_mut() {
            top.header = Some((name.to_owned(), ln));
        }
    }

    fn plan(&mut self, ln: usize, count: usize) {
        let depth = self.stack.len();
        let Some(top) = self.stack.last_mut() else {
            return;
        };
        if let Some((first, first_line)) = top.plan {
            self.doc.problems.push(Problem {
                line: ln,
                message: format!(
                    "duplicate plan 1..{count} (the plan 1..{first} at line {first_line} counts)"
                ),
            });
            return;
        }
        if top.results.is_empty() && top.child.is_none() {
            // A leading plan: what came before it describes the block.
            let mut before = std::mem::take(&mut top.pending);
            top.own.append(&mut before);
        } else {
            close_pending_child(
                &mut self.doc.problems,
                top,
                &format!("a plan follows at line {ln}"),
            );
        }
        top.plan = Some((count, ln));
        if depth == 1 && top.results.len() >= count {
            self.state = State::Complete;
        }
    }

    fn result(&mut self, ln: usize, r: ResultLine<'_>) {
        let depth = self.stack.len();
        let Some(top) = self.stack.last_mut() else {
            return;
        };
        let expected = top.next_number();
        if r.number != expected {
            self.doc.problems.push(Problem {
                line: ln,
                message: format!(
                    "test number {} ('{}') out of order: expected {expected}",
                    r.number, r.name
                ),
            });
        }
        let mut diagnostics = std::mem::take(&mut top.pending);
        let (plan, subtests) = match top.child.take() {
            Some(child) => {
                if let Some((header, header_line)) = &child.header
                    && header != r.name
                {
                    self.doc.problems.push(Problem {
                        line: ln,
                        message: format!(
                            "result '{}' closes the block of subtest '{header}' (line {header_line})",
                            r.name
                        ),
                    });
                }
                let what = format!(
                    "subtest '{}'",
                    child.header.as_ref().map_or(r.name, |h| h.0.as_str())
                );
                check_plan(&mut self.doc.problems, &child, &what);
                let (child_diags, plan, subtests) = child.into_parts();
                diagnostics.extend(child_diags);
                diagnostics.sort_by_key(|d| d.line);
                (plan, subtests)
            }
            None => (None, Vec::new()),
        };
        let status = match r.directive {
            Directive::Skip(why) => Status::Skip(why.to_owned()),
            Directive::Todo(why) => Status::Todo(why.to_owned()),
            Directive::None if r.ok => Status::Pass,
            Directive::None => Status::Fail,
        };
        top.results.push(TestNode {
            number: r.number,
            name: r.name.to_owned(),
            status,
            diagnostics,
            plan,
            subtests,
            line: ln,
        });
        if depth == 1 && top.plan.is_some_and(|(n, _)| top.results.len() >= n) {
            self.state = State::Complete;
        }
    }

    /// Finishes the document and ignores the rest of the input.
    fn stop(&mut self, why: &str) {
        self.finalize(why);
        self.state = State::Stopped;
    }

    /// Closes every open block (as cut off, with `why`) and moves the top level into the
    /// document.
    fn finalize(&mut self, why: &str) {
        while self.stack.len() > 1 {
            let Some(b) = self.stack.pop() else {
                break;
            };
            if let Some(parent) = self.stack.last_mut() {
                close_pending_child(&mut self.doc.problems, parent, why);
                close_unclosed(&mut self.doc.problems, parent, b, why);
            }
        }
        let Some(mut top) = self.stack.pop() else {
            return;
        };
        close_pending_child(&mut self.doc.problems, &mut top, why);
        check_plan(&mut self.doc.problems, &top, "the top level");
        if top.plan.is_none() && !self.lenient {
            self.doc.problems.push(Problem {
                line: top.version.unwrap_or(top.start_line),
                message: "no top-level plan (1..N)".to_owned(),
            });
        }
        let (diagnostics, plan, tests) = top.into_parts();
        self.doc.diagnostics = diagnostics;
        self.doc.plan = plan;
        self.doc.tests = tests;
    }

    fn finish(mut self, last_line: usize) -> Document {
        match self.state {
            State::BeforeVersion => self.doc.problems.push(Problem {
                line: 0,
                message: "no 'KTAP version N' or 'TAP version N' line: not a KTAP document"
                    .to_owned(),
            }),
            State::InDocument | State::Complete => {
                self.finalize(&format!("the log ends at line {last_line}"));
            }
            State::Stopped => {}
        }
        self.doc.problems.sort_by_key(|p| p.line);
        self.doc
    }
}
