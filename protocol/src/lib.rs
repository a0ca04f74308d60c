//! Facts the cvmprobe guest and host must agree on, in one place.
//!
//! Everything here is plain data and pure functions: no asm, no I/O, `no_std`, unit-tested
//! on the host. The guest kernel (`kernel/`) and the host tools (the `cvmprobe` CLI, the
//! built-in VMM) both depend on this crate, so a number changes in exactly one place.
//!
//! - [`abi`]: the guest library's C ABI (`selftest/cvmprobe.h`): operations table, trap frame.
//! - [`access`]: access widths and directions.
//! - [`apic`]: the local APIC's registers, their x2APIC MSRs, IA32_APIC_BASE.
//! - [`catalog`]: every suite and case the guest runs, with the platforms that run it;
//!   the filter syntax that selects cases.
//! - [`conformance`]: the raw GHCI/GHCB conformance cases (request, KVM's answer, source)
//!   and the checker the guest and the host tests share.
//! - [`cmdline`]: the kernel command-line keys (`cvmprobe.filter=...`) and their parser.
//! - [`efi`]: the UEFI hand-off block and the firmware memory map it carries.
//! - [`elf`]: the PT_LOAD segments and symbols of the kernel ELF (for the UEFI loader).
//! - [`paging`]: page-table entries with a C-bit / shared bit, and a page walk.
//! - [`decode`]: the x86-64 decoder of the `MOV` forms the guest's MMIO emulation handles.
//! - [`kvm`]: KVM's hypercall numbers, error values and PV feature bits.
//! - [`ktap`]: the KTAP v1 line vocabulary the guest prints and the host reads.
//! - [`memslot`]: the memslot-deletion scenario's page, values and control port.
//! - [`ghcb`]: AMD SEV-ES GHCB protocol: MSR protocol, page layout, exit and error codes.
//! - [`tdx`]: Intel TDX GHCI: TDCALL leaves, TDVMCALL sub-functions and statuses.
//! - [`exit`]: the isa-debug-exit port and the codes written to it.
//! - [`pc`]: PC-platform ports (COM1).
//! - [`platform`]: the platform kinds (legacy, TDX, SEV-ES).
//! - [`qemu_devices`]: register facts of the QEMU devices the legacy suites use.
//! - [`testdev`]: the built-in VMM's test device: registers, host values, declared accesses.
//! - [`x86`]: architectural numbers: vectors, VMX exit reasons and qualifications, MSRs.
//! - [`validate`]: the guest's checks of every value its (untrusted) TDX or SEV-ES host
//!   returns, shared with the host tests and the `validators` fuzz target.
#![cfg_attr(not(any(feature = "std", test)), no_std)]

pub mod abi;
pub mod access;
pub mod apic;
pub mod catalog;
pub mod cmdline;
pub mod conformance;
pub mod decode;
pub mod efi;
pub mod elf;
pub mod exit;
pub mod ghcb;
pub mod ktap;
pub mod kvm;
pub mod kvm_para;
pub mod memslot;
pub mod paging;
pub mod pc;
pub mod platform;
pub mod qemu_devices;
pub mod tdx;
pub mod testdev;
pub mod validate;
pub mod x86;
