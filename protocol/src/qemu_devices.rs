//! Register facts of the QEMU devices the legacy suites use under QEMU.
//!
//! Under the built-in VMM the suites use the cvmprobe test device instead; under QEMU they
//! use devices whose behaviour QEMU documents in its source, so the expected answers are
//! fixed by that source rather than by us.

/// `pc-testdev` (QEMU hw/misc/pc-testdev.c, ISA): a 4-byte data register at port 0xe0
/// (`test_ioport_ops`: an access of `len` bytes at offset `addr & 3` reads/writes those lanes).
pub const PC_TESTDEV_IOPORT: u16 = 0xe0;
/// `pc-testdev` byte-implemented view of the same data register (`test_ioport_byte_ops`,
/// `impl.max_access_size = 1`: QEMU splits wider accesses into 1-byte ones).
pub const PC_TESTDEV_IOPORT_BYTE: u16 = 0xe8;
/// `pc-testdev` IO-memory window: 64 KiB of device memory at this GPA (`test_iomem_ops`,
/// reads return what was written, little-endian, any size).
pub const PC_TESTDEV_IOMEM: u64 = 0xff00_0000;
/// Size of [`PC_TESTDEV_IOMEM`] (`IOMEM_LEN`).
pub const PC_TESTDEV_IOMEM_LEN: u64 = 0x1_0000;

/// A port no QEMU x86 machine model claims, nor the firmware maps a device to (0x600/0x700
/// are taken by SeaBIOS for the PIIX4 PM and SMBus blocks on `pc`): used to check all-ones
/// reads of unassigned IO.
pub const UNASSIGNED_PORT: u16 = 0x0f00;

/// CPUID leaf 0x40000000 EBX/ECX/EDX signature of QEMU's TCG accelerator
/// (target/i386/cpu.c, `tcg_cpuid_vendor`-style hypervisor leaf).
pub const HYPERVISOR_SIG_TCG: &[u8; 12] = b"TCGTCGTCGTCG";
/// CPUID leaf 0x40000000 signature of KVM (Documentation/virt/kvm/x86/cpuid.rst).
pub const HYPERVISOR_SIG_KVM: &[u8; 12] = b"KVMKVMKVM\0\0\0";

/// PCI configuration mechanism #1 (PCI Local Bus Spec 3.0, 3.2.2.3.2): address port.
pub const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
/// PCI configuration mechanism #1: data port.
pub const PCI_CONFIG_DATA: u16 = 0xcfc;

/// QEMU `edu` device (docs/specs/edu.rst): PCI vendor 0x1234.
pub const EDU_VENDOR: u16 = 0x1234;
/// QEMU `edu` device: PCI device 0x11e8.
pub const EDU_DEVICE: u16 = 0x11e8;
/// `edu` BAR0 offset 0x00: identification, `0xRRrr00ed` (major.minor version, 0xed).
pub const EDU_REG_ID: u64 = 0x00;
/// Value of [`EDU_REG_ID`] for edu version 1.0.
pub const EDU_ID_V1: u32 = 0x0100_00ed;
/// `edu` BAR0 offset 0x04: card liveness check, reads back the bitwise inverse of the last write.
pub const EDU_REG_LIVENESS: u64 = 0x04;
/// GPA the guest gives the edu BAR0 when no firmware assigned one (inside QEMU's PCI hole).
pub const EDU_BAR_FALLBACK: u64 = 0xfe00_0000;

/// Local APIC default base (Intel SDM vol. 3A 11.4.1).
pub const LAPIC_BASE: u64 = 0xfee0_0000;
