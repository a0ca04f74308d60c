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
