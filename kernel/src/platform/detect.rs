//! Platform detection, in the order that is safe on every platform.
//!
//! On SEV-ES, CPUID itself raises #VC, so SEV_STATUS is read first, under the fault fixup
//! (it #GPs outside SEV); then CPUID leaf 0x21 tells TDX apart. This module and the legacy
//! backend are the only places allowed to run raw intercepted instructions.
//!
//! Only the legacy backend exists so far, so only legacy is reported; the TDX and SEV-ES
//! probes arrive with their backends.

/// What detection found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// Neither SEV-ES nor TDX.
    Legacy,
}

/// Runs the probes.
#[inline(never)]
pub fn detect() -> Detected {
    Detected::Legacy
}
