//! cvmprobe host library: everything the `cvmprobe` CLI does, as modules the integration
//! tests can call directly.
//!
//! - [`bench`]: `cvmprobe bench`.
//! - [`cli`]: command-line definitions.
//! - [`command`]: what each subcommand does (`main.rs` only parses the arguments).
//! - [`environment`]: what the host set up for a run (the verdict's side of every skip).
//! - [`confidential`]: QEMU command lines and host checks for real TDX / SEV-ES hosts.
//! - [`efi_images`]: `cvmprobe.efi` and its ESP image.
//! - [`qemu`]: QEMU command line and runs with a timeout.
//! - [`hostile`]: the verdict of a run under a hostile host, and `cvmprobe fuzz-host`.
//! - [`images`]: the BIOS/UEFI disk images and their per-run command line.
//! - [`run`]: one run of the guest, from command line to [`report::Summary`].
//! - [`report`]: the verdict, its table and JUnit cases.
//! - [`selftest`]: `cvmprobe selftest`, the tables inside the upstream KVM selftests.
//! - [`sim_call`]: `cvmprobe sim-call`, one raw request to a simulated host's model.
//! - [`ktap`]: the KTAP reader (its own crate, `ktap/`, which the fuzz target builds alone).
//! - [`junit`]: the JUnit writer.
//! - [`tools`]: where QEMU and OVMF are, and whether their tests may skip.
pub mod bench;
pub mod cli;
pub mod command;
pub mod confidential;
pub mod efi_images;
pub mod environment;
pub mod hostile;
pub mod images;
pub mod junit;
pub mod qemu;
pub mod report;
pub mod run;
pub mod selftest;
pub mod sim_call;
pub mod tools;

pub use cvmprobe_ktap as ktap;
