//! KTAP v1 output, built line by line in a fixed buffer (no allocation, no `core::fmt` on the
//! hot path: guest instructions are expensive on emulated hosts).

use protocol::ktap;

use core::mem::MaybeUninit;

/// Capacity of one line.
const LINE_MAX: usize = 400;

/// One output line under construction. The buffer is not zeroed (that alone cost more guest
/// instructions than formatting the line): only `buf[..len]` is ever read.
pub struct Line {
    buf: [MaybeUninit<u8>; LINE_MAX],
    len: usize,
    truncated: bool,
}

impl Line {
    /// A line indented by `depth` KTAP levels (none when the environment prints the results:
    /// its report is flat, [`crate::env::prints_results`]).
    #[optimize(speed)]
    pub fn new(depth: usize) -> Self {
        let mut l = Line {
            buf: [MaybeUninit::uninit(); LINE_MAX],
            len: 0,
            truncated: false,
        };
        if !crate::env::prints_results() {
            for _ in 0..depth {
                l.str(ktap::INDENT);
            }
        }
        l
    }

    fn push(&mut self, b: u8) {
        // Keep room for "...\n".
        if self.len < LINE_MAX - 4 {
            self.buf[self.len] = MaybeUninit::new(b);
            self.len += 1;
        } else {
            self.truncated = true;
        }
    }

    /// Appends text the kernel controls (literals, catalog names): one copy, no per-byte work.
    /// Text from outside (command line, host answers) goes through [`Line::bytes`].
    #[optimize(speed)]
    pub fn str(&mut self, s: &str) -> &mut Self {
        let room = LINE_MAX - 4 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].write_copy_of_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            self.truncated = true;
        }
        self
    }

    /// Appends bytes from outside, showing non-printable ones (newlines included, so a value
    /// cannot break the KTAP structure) as `?`; NUL padding at the end is dropped.
    pub fn bytes(&mut self, s: &[u8]) -> &mut Self {
        let end = s.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        for &b in &s[..end] {
            self.push(if (0x20..0x7f).contains(&b) { b } else { b'?' });
        }
        self
    }

    /// Appends `0x` and the hex digits of `v` (no leading zeros).
    pub fn hex(&mut self, v: u64) -> &mut Self {
        self.str("0x");
        let digits = if v == 0 {
            1
        } else {
            (64 - v.leading_zeros()).div_ceil(4)
        };
        for i in (0..digits).rev() {
            let d = ((v >> (i * 4)) & 0xf) as u8;
            self.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
        }
        self
    }

    /// Appends `v` in decimal.
    #[optimize(speed)]
    pub fn dec(&mut self, v: u64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut n = 0;
        let mut x = v;
        loop {
            tmp[n] = b'0' + (x % 10) as u8;
            n += 1;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        for i in (0..n).rev() {
            self.push(tmp[i]);
        }
        self
    }

    #[optimize(speed)]
    fn finish(&mut self) -> &[u8] {
        if self.truncated {
            for &b in b"..." {
                self.buf[self.len] = MaybeUninit::new(b);
                self.len += 1;
            }
        }
        self.buf[self.len] = MaybeUninit::new(b'\n');
        // SAFETY: every byte of `buf[..=len]` was written by `push`, `str` or the line above.
        unsafe { self.buf[..=self.len].assume_init_ref() }
    }

    /// Writes the line out through the environment ([`crate::env::write`]).
    #[optimize(speed)]
    pub fn emit(&mut self) {
        crate::env::write(self.finish(), false);
    }

    /// Writes the line from a fault context (an interrupted writer may hold the console).
    pub fn emit_emergency(&mut self) {
        crate::env::write(self.finish(), true);
    }
}

/// `KTAP version 1` at `depth`.
pub fn version(depth: usize) {
    Line::new(depth).str(ktap::VERSION_LINE).emit();
}

/// `1..n` at `depth`.
pub fn plan(depth: usize, n: usize) {
    Line::new(depth).str("1..").dec(n as u64).emit();
}

/// `# Subtest: name` at `depth`.
pub fn subtest(depth: usize, name: &str) {
    Line::new(depth).str(ktap::SUBTEST_PREFIX).str(name).emit();
}

/// The result of a test at `depth`.
pub enum Result<'a> {
    /// `ok n name`.
    Pass,
    /// `not ok n name`.
    Fail,
    /// `ok n name # SKIP reason`.
    Skip(&'a str),
    /// `not ok n name # TODO reason` (only the `todo` fault injection prints it).
    Todo(&'a str),
}

/// `ok n name`, `not ok n name`, `ok n name # SKIP reason` or `not ok n name # TODO reason`.
#[optimize(speed)]
pub fn result(depth: usize, n: usize, name: &str, r: Result<'_>) {
    let mut l = Line::new(depth);
    match r {
        Result::Pass | Result::Skip(_) => l.str("ok "),
        Result::Fail | Result::Todo(_) => l.str("not ok "),
    };
    l.dec(n as u64).str(" ").str(name);
    match r {
        Result::Skip(reason) => {
            l.str(" ").str(ktap::SKIP_DIRECTIVE).str(" ").str(reason);
        }
        Result::Todo(reason) => {
            l.str(" ").str(ktap::TODO_DIRECTIVE).str(" ").str(reason);
        }
        Result::Pass | Result::Fail => {}
    }
    l.emit();
}

impl Line {
    /// Appends a rejection note (`protocol::ktap::parse_reject_note`) naming requests
    /// `first..=last`; nothing when no request was ever made (legacy).
    pub fn reject_note(&mut self, by: ktap::RejectedBy, first: u64, last: u64) -> &mut Self {
        if last == 0 {
            return self;
        }
        self.str(ktap::REJECT_NOTE_OPEN).str(by.name());
        if first >= last {
            self.str(ktap::REJECTS_REQUEST).dec(last);
        } else {
            self.str(ktap::REJECTS_REQUESTS)
                .dec(first)
                .str("-")
                .dec(last);
        }
        self.str(ktap::REJECT_NOTE_CLOSE)
    }
}

/// A diagnostic line `# ...` at `depth`, returned for the caller to fill and emit.
#[optimize(speed)]
pub fn diag(depth: usize) -> Line {
    let mut l = Line::new(depth);
    l.str("# ");
    l
}
