//! The KTAP v1 vocabulary shared by the guest's writer and the host's reader.
//!
//! Format: Linux Documentation/dev-tools/ktap.rst (KTAP v1). The guest prints one top-level
//! test per suite, each with a nested subtest block of its cases:
//!
//! ```text
//! KTAP version 1
//! # platform: legacy
//! 1..2
//!     KTAP version 1
//!     # Subtest: io
//!     1..5
//!     ok 1 u32_roundtrip
//!     # u16_lanes: lane 2: expected 0x1234 got 0x0
//!     not ok 2 u16_lanes
//!     ok 3 u8_lanes # SKIP not for platform tdx
//! ...
//! not ok 1 io
//! ```

/// First line of every KTAP v1 document and nested block.
pub const VERSION_LINE: &str = "KTAP version 1";
/// Indentation of one nesting level.
pub const INDENT: &str = "    ";
/// Header line before a nested block's plan (`# Subtest: <name>`).
pub const SUBTEST_PREFIX: &str = "# Subtest: ";
/// Directive suffix for skipped tests (`ok 3 name # SKIP reason`).
pub const SKIP_DIRECTIVE: &str = "# SKIP";
/// The TODO directive after a test name (KTAP v1: an expected failure).
pub const TODO_DIRECTIVE: &str = "# TODO";
/// Diagnostic the guest prints once detection is done: `# platform: <name> <params>`.
pub const PLATFORM_DIAG: &str = "# platform: ";
/// Diagnostic naming the guest build: `# cvmprobe-guest <version>`.
pub const GUEST_DIAG: &str = "# cvmprobe-guest ";
/// Top-level line that ends a run abnormally (`Bail out! <reason>`).
pub const BAIL_OUT: &str = "Bail out!";

/// Who rejected a host answer, in a [rejection note](parse_reject_note).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectedBy {
    /// The backend's checks of the answer itself (`protocol::validate`, status checks, the
    /// #VE/#VC handlers): a malformed, refused or out-of-range answer.
    Validator,
    /// A test's expectation: a well-formed answer with the wrong value or outcome.
    Expectation,
}

impl RejectedBy {
    /// The word in the note.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Validator => "validator",
            Self::Expectation => "expectation",
        }
    }
}

/// Opens a rejection note at the end of a diagnostic.
pub const REJECT_NOTE_OPEN: &str = " [";
/// Between the rejecter and one request number: ` [validator rejects request 12]`.
pub const REJECTS_REQUEST: &str = " rejects request ";
/// Between the rejecter and a range of request numbers: ` [expectation rejects requests
/// 10-12]`.
pub const REJECTS_REQUESTS: &str = " rejects requests ";
/// Closes a rejection note.
pub const REJECT_NOTE_CLOSE: &str = "]";

/// The rejection note at the end of a diagnostic (or `Bail out!` reason): who rejected, and
/// the first and last request numbers it is about. Requests are the guest's TDCALLs and
/// VMGEXITs since boot, counted from 1 by the guest and by the (simulated) host alike, so a
/// host can tie the answer it falsified to the rejection that caught it.
pub fn parse_reject_note(text: &str) -> Option<(RejectedBy, u64, u64)> {
    let body = text.strip_suffix(REJECT_NOTE_CLOSE)?;
    let (_, note) = body.rsplit_once(REJECT_NOTE_OPEN)?;
    let by = [RejectedBy::Validator, RejectedBy::Expectation]
        .into_iter()
        .find(|b| note.starts_with(b.name()))?;
    let rest = &note[by.name().len()..];
    let (first, last) = if let Some(n) = rest.strip_prefix(REJECTS_REQUEST) {
        let n = n.parse().ok()?;
        (n, n)
    } else {
        let (a, b) = rest.strip_prefix(REJECTS_REQUESTS)?.split_once('-')?;
        (a.parse().ok()?, b.parse().ok()?)
    };
    (first <= last).then_some((by, first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_notes_parse() {
        assert_eq!(
            parse_reject_note("io read: answered out of range: 0x1 [validator rejects request 12]"),
            Some((RejectedBy::Validator, 12, 12))
        );
        assert_eq!(
            parse_reject_note("lane: expected 0x1 got 0x2 [expectation rejects requests 10-12]"),
            Some((RejectedBy::Expectation, 10, 12))
        );
        assert_eq!(parse_reject_note("lane: expected 0x1 got 0x2"), None);
        assert_eq!(
            parse_reject_note("x [expectation rejects requests 12-10]"),
            None
        );
        assert_eq!(parse_reject_note("x [someone rejects request 1]"), None);
        assert_eq!(parse_reject_note("x [validator rejects request one]"), None);
    }
}
