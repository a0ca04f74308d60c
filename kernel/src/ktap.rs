//! KTAP v1 output, built line by line in a fixed buffer (no allocation, no `core::fmt` on the
//! hot path: guest instructions are expensive on emulated hosts).

use protocol::ktap;

/// One output line under construction.
pub struct Line {
    buf: [u8; 400],
    len: usize,
    truncated: bool,
}

impl Line {
    /// A line indented by `depth` KTAP levels.
    pub fn new(depth: usize) -> Self {
        let mut l = Line {
            buf: [0; 400],
            len: 0,
            truncated: false,
        };
        for _ in 0..depth {
            l.str(ktap::INDENT);
        }
        l
    }

    fn push(&mut self, b: u8) {
        // Keep room for "...\n".
        if self.len < self.buf.len() - 4 {
            self.buf[self.len] = b;
            self.len += 1;
        } else {
            self.truncated = true;
        }
    }

    /// Appends text; newlines are replaced so a value cannot break the KTAP structure.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Appends bytes, showing non-printable ones as `?`.
    pub fn bytes(&mut self, s: &[u8]) -> &mut Self {
        for &b in s {
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

    fn finish(&mut self) -> &[u8] {
        if self.truncated {
            for &b in b"..." {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self.buf[self.len] = b'\n';
        &self.buf[..=self.len]
    }

    /// Writes the line to the console.
    pub fn emit(&mut self) {
        crate::console::write(self.finish());
    }

    /// Writes the line from a fault context (see `console::write_emergency`).
    pub fn emit_emergency(&mut self) {
        crate::console::write_emergency(self.finish());
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
}

/// `ok n name`, `not ok n name` or `ok n name # SKIP reason`.
pub fn result(depth: usize, n: usize, name: &str, r: Result<'_>) {
    let mut l = Line::new(depth);
    match r {
        Result::Pass => l.str("ok "),
        Result::Fail => l.str("not ok "),
        Result::Skip(_) => l.str("ok "),
    };
    l.dec(n as u64).str(" ").str(name);
    if let Result::Skip(reason) = r {
        l.str(" ").str(ktap::SKIP_DIRECTIVE).str(" ").str(reason);
    }
    l.emit();
}

/// A diagnostic line `# ...` at `depth`, returned for the caller to fill and emit.
pub fn diag(depth: usize) -> Line {
    let mut l = Line::new(depth);
    l.str("# ");
    l
}
