//! Line-at-a-time classification of serial output, for live progress while a guest runs.

use super::line::{self, Directive, Kind, Prefix};

/// What one raw serial line is, for progress display. Depths are nesting levels: 0 for the
/// top level, 1 for a suite's cases in the guest's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEvent<'a> {
    /// A `KTAP version N` / `TAP version N` line.
    Version,
    /// `# Subtest: name`.
    Subtest {
        /// Nesting level of the line.
        depth: usize,
        /// The subtest's name.
        name: &'a str,
    },
    /// A result line.
    Result {
        /// Nesting level of the line.
        depth: usize,
        /// `ok` (true) or `not ok` (false), as printed.
        ok: bool,
        /// Whether it carries a SKIP directive.
        skip: bool,
        /// The test's name.
        name: &'a str,
    },
    /// `Bail out! reason`: the reason.
    BailOut(&'a str),
    /// `# text`.
    Diagnostic {
        /// Nesting level of the line.
        depth: usize,
        /// The text without `# `.
        text: &'a str,
    },
    /// `1..N`.
    Plan {
        /// Nesting level of the line.
        depth: usize,
        /// N.
        count: usize,
    },
    /// Anything else: output before the version line, kernel messages, blank lines.
    Other,
}

/// Classifies serial lines one at a time. It remembers the prefix of the first version line
/// (stripping prefixes of the same shape afterwards, like [`parse`](super::parse)) and the
/// indentation of the open blocks, so depths follow the same rules as the parser. It does not
/// check structure: use [`parse`](super::parse) on the whole log for the verdict.
#[derive(Debug, Clone, Default)]
pub struct LineClassifier {
    /// Set by the first version line.
    prefix: Option<Prefix>,
    /// Indentation widths of the open levels, outermost first.
    indents: Vec<usize>,
}

impl LineClassifier {
    /// A classifier that has not seen a version line yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifies one raw line (with or without its line terminator).
    pub fn classify<'a>(&mut self, line: &'a str) -> LineEvent<'a> {
        let line = line.trim_end();
        let Some(prefix) = &self.prefix else {
            let Some(v) = line::find_version(line) else {
                return LineEvent::Other;
            };
            let before = line.get(..v.offset).unwrap_or_default();
            let base = if before.trim().is_empty() {
                self.prefix = Some(Prefix::default());
                line::indentation(before).0
            } else {
                self.prefix = Some(Prefix::new(before));
                0
            };
            self.indents = vec![base];
            return LineEvent::Version;
        };
        let (width, content) = line::indentation(prefix.strip(line));
        let Some(kind) = line::lex(content) else {
            return LineEvent::Other;
        };
        if let Kind::BailOut(reason) = kind {
            return LineEvent::BailOut(reason);
        }
        let depth = self.depth(width, matches!(kind, Kind::Version(..)));
        match kind {
            Kind::Version(..) => LineEvent::Version,
            Kind::Subtest(name) => LineEvent::Subtest { depth, name },
            Kind::Plan(count) => LineEvent::Plan { depth, count },
            Kind::Diag(text) => LineEvent::Diagnostic { depth, text },
            Kind::Result(r) => LineEvent::Result {
                depth,
                ok: r.ok,
                skip: matches!(r.directive, Directive::Skip(_)),
                name: r.name,
            },
            Kind::BailOut(reason) => LineEvent::BailOut(reason),
        }
    }

    /// Nesting level of a KTAP line indented `width` columns.
    fn depth(&mut self, width: usize, version: bool) -> usize {
        let base = self.indents.first().copied().unwrap_or(0);
        if version && width <= base {
            // A new top-level document (a rebooted guest): start over.
            self.indents = vec![width];
            return 0;
        }
        while self.indents.len() > 1 && self.indents.last().is_some_and(|&w| w > width) {
            self.indents.pop();
        }
        if self.indents.last().is_none_or(|&w| w < width) && self.indents.len() <= super::MAX_DEPTH
        {
            self.indents.push(width);
        }
        self.indents.len().saturating_sub(1)
    }
}
