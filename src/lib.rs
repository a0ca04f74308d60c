//! cvmprobe host library: everything the `cvmprobe` CLI does, as modules the integration
//! tests can call directly.
pub mod junit;
pub mod ktap;
