//! The guest's CPUID: KVM's supported leaves, adjusted for a legacy vCPU without an in-kernel
//! local APIC, with a brand string chosen per run.
//!
//! Pure functions over a [`CpuId`] so they are tested without KVM; `set_cpuid2` with the result
//! must come before `set_sregs` and the first `KVM_RUN` (DESIGN.md, "Facts of these machines").

use kvm_bindings::{CpuId, kvm_cpuid_entry2};
use protocol::qemu_devices::HYPERVISOR_SIG_KVM;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// CPUID leaf 1 (Intel SDM vol. 2A, CPUID, table 3-10/3-11).
const LEAF_FEATURES: u32 = 1;
/// CPUID.1:EDX bit 9: APIC on chip. The guest's halt suite needs it for its timer.
const EDX_APIC: u32 = 1 << 9;
/// CPUID.1:ECX bit 21: x2APIC. Cleared: the user-space APIC model is xAPIC MMIO only.
const ECX_X2APIC: u32 = 1 << 21;
/// CPUID.1:ECX bit 24: TSC-deadline timer mode. Cleared: the model has one-shot and
/// periodic modes only.
const ECX_TSC_DEADLINE: u32 = 1 << 24;
/// CPUID.1:ECX bit 31: running under a hypervisor (reserved for this use by both vendors).
const ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:EBX[31:24]: initial APIC ID.
const EBX_APIC_ID_MASK: u32 = 0xff << 24;
/// The only vCPU's APIC ID.
const APIC_ID: u32 = 0;

/// KVM's signature leaf (Linux Documentation/virt/kvm/x86/cpuid.rst, KVM_CPUID_SIGNATURE).
const LEAF_KVM_SIGNATURE: u32 = 0x4000_0000;
/// KVM_CPUID_FEATURES, the highest KVM leaf; leaf 0x40000000 EAX names it.
const LEAF_KVM_FEATURES: u32 = 0x4000_0001;

/// Extended leaf 0x80000000: EAX = highest extended leaf.
const LEAF_EXT_MAX: u32 = 0x8000_0000;
/// First of the three brand-string leaves (0x80000002..=0x80000004, 16 bytes each).
const LEAF_BRAND_FIRST: u32 = 0x8000_0002;
/// Last brand-string leaf.
const LEAF_BRAND_LAST: u32 = 0x8000_0004;

/// Bytes of the processor brand string (three leaves of four registers).
pub const BRAND_LEN: usize = 48;

/// The processor brand string the VMM chose for one run: printable ASCII without `_`, `=`
/// or whitespace other than single spaces, NUL-padded to 48 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Brand {
    text: String,
}

impl Brand {
    /// A brand unique to this run: `cvmprobe VMM <12 hex digits>`, so a guest that reads a
    /// stale or host CPUID cannot pass the `cpuid.brand_string` case by accident.
    pub fn for_run() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mix = (nanos ^ (u64::from(std::process::id()) << 32) ^ n.rotate_left(17))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Self {
            text: format!("cvmprobe VMM {:012x}", mix >> 16),
        }
    }

    /// A fixed brand (tests). Panics unless `text` is at most 47 printable ASCII bytes
    /// without `_` or `=`.
    pub fn new(text: &str) -> Self {
        assert!(text.len() < BRAND_LEN, "brand string longer than 47 bytes");
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'_' && b != b'=' || b == b' '),
            "brand string must be printable ASCII without '_' or '='"
        );
        Self {
            text: text.to_owned(),
        }
    }

    /// The brand as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value of `cvmprobe.brand=` for the guest (`protocol::cmdline::KEY_BRAND`):
    /// spaces written as `_`.
    pub fn cmdline_value(&self) -> String {
        self.text.replace(' ', "_")
    }

    /// The 48 bytes CPUID returns, NUL-padded.
    pub fn bytes(&self) -> [u8; BRAND_LEN] {
        let mut b = [0u8; BRAND_LEN];
        b[..self.text.len()].copy_from_slice(self.text.as_bytes());
        b
    }
}

/// Adjusts KVM's supported CPUID for this VMM's vCPU:
/// - leaf 1: hypervisor bit set, APIC bit set (the user-space APIC answers at its default
///   base), x2APIC and TSC-deadline cleared (the model does neither), APIC ID 0;
/// - leaf 0x40000000 says KVM (the guest prints it and its MSR cases depend on it);
/// - leaves 0x80000002..4 hold `brand`, and leaf 0x80000000 reaches them.
pub fn configure(cpuid: &mut CpuId, brand: &Brand) -> Result<(), vmm_sys_util::fam::Error> {
    if let Some(e) = find(cpuid, LEAF_FEATURES) {
        e.ecx = (e.ecx | ECX_HYPERVISOR) & !(ECX_X2APIC | ECX_TSC_DEADLINE);
        e.edx |= EDX_APIC;
        e.ebx = (e.ebx & !EBX_APIC_ID_MASK) | (APIC_ID << 24);
    }

    let sig = signature_regs(HYPERVISOR_SIG_KVM);
    match find(cpuid, LEAF_KVM_SIGNATURE) {
        Some(e) => {
            e.eax = e.eax.max(LEAF_KVM_FEATURES);
            (e.ebx, e.ecx, e.edx) = sig;
        }
        None => cpuid.push(entry(
            LEAF_KVM_SIGNATURE,
            [LEAF_KVM_FEATURES, sig.0, sig.1, sig.2],
        ))?,
    }

    match find(cpuid, LEAF_EXT_MAX) {
        Some(e) => e.eax = e.eax.max(LEAF_BRAND_LAST),
        None => cpuid.push(entry(LEAF_EXT_MAX, [LEAF_BRAND_LAST, 0, 0, 0]))?,
    }
    let bytes = brand.bytes();
    for (i, leaf) in (LEAF_BRAND_FIRST..=LEAF_BRAND_LAST).enumerate() {
        let mut regs = [0u32; 4];
        for (j, r) in regs.iter_mut().enumerate() {
            let at = i * 16 + j * 4;
            *r = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        }
        match find(cpuid, leaf) {
            Some(e) => [e.eax, e.ebx, e.ecx, e.edx] = regs,
            None => cpuid.push(entry(leaf, regs))?,
        }
    }
    Ok(())
}

/// Extended leaf 0x80000008: EAX\[7:0\] = physical-address bits (MAXPHYADDR), EAX\[15:8\] =
/// linear-address bits, EAX\[23:16\] = AMD's guest physical-address size (0: use \[7:0\];
/// reserved on Intel). Intel SDM vol. 2A CPUID; AMD APM vol. 3 E.4.7. KVM derives the vCPU's
/// MAXPHYADDR, and so its reserved PTE bits, from \[7:0\] (`cpuid_query_maxphyaddr()`).
pub const LEAF_ADDRESS_SIZES: u32 = 0x8000_0008;
/// EAX\[7:0\] of [`LEAF_ADDRESS_SIZES`].
const PHYS_BITS_MASK: u32 = 0xff;
/// EAX\[23:16\] of [`LEAF_ADDRESS_SIZES`].
const GUEST_PHYS_BITS_MASK: u32 = 0xff << 16;
/// MAXPHYADDR when CPUID has no leaf 0x80000008 (Intel SDM vol. 3A 4.1.4).
const DEFAULT_PHYS_BITS: u8 = 36;

/// The physical-address width in `cpuid` (leaf 0x80000008 EAX\[7:0\], 36 without the leaf):
/// applied to KVM_GET_SUPPORTED_CPUID, the widest the host lets a vCPU have.
pub fn phys_bits(cpuid: &CpuId) -> u8 {
    cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == LEAF_ADDRESS_SIZES)
        .map_or(DEFAULT_PHYS_BITS, |e| (e.eax & PHYS_BITS_MASK) as u8)
}

/// Gives the vCPU `bits` physical-address bits (leaf 0x80000008 EAX\[7:0\]; EAX\[23:16\]
/// cleared so no separate guest width overrides it). On a host with shadow paging (such as
/// these CI hosts' kvm_pvm) KVM then treats PTE bits from `bits` up as reserved, exactly as a
/// host of that width would; with EPT/NPT the hardware walk does not enforce the narrower
/// width, but the guest still sees it.
pub fn set_phys_bits(cpuid: &mut CpuId, bits: u8) -> Result<(), vmm_sys_util::fam::Error> {
    match cpuid
        .as_mut_slice()
        .iter_mut()
        .find(|e| e.function == LEAF_ADDRESS_SIZES)
    {
        Some(e) => e.eax = (e.eax & !(PHYS_BITS_MASK | GUEST_PHYS_BITS_MASK)) | u32::from(bits),
        // Linear-address bits: 48 (4-level paging) beside the width.
        None => cpuid.push(entry(
            LEAF_ADDRESS_SIZES,
            [u32::from(bits) | 48 << 8, 0, 0, 0],
        ))?,
    }
    if let Some(e) = find(cpuid, LEAF_EXT_MAX) {
        e.eax = e.eax.max(LEAF_ADDRESS_SIZES);
    }
    Ok(())
}

/// CPUID leaf 0: EAX = highest basic leaf, EBX/EDX/ECX = vendor.
const LEAF_VENDOR: u32 = 0;
/// The vendor string of Intel CPUs (EBX, EDX, ECX of leaf 0).
const VENDOR_INTEL: &[u8; 12] = b"GenuineIntel";
/// The vendor string of AMD CPUs.
const VENDOR_AMD: &[u8; 12] = b"AuthenticAMD";
/// The TDX identification leaf: EBX, EDX, ECX = "IntelTDX    " (GHCI 1.5, 2.4.5; Linux
/// `tdx_early_init()` compares the three registers in that order).
pub const LEAF_TDX: u32 = 0x21;
/// "IntelTDX    " as the guest reads it from leaf 0x21.
const TDX_IDENT: &[u8; 12] = b"IntelTDX    ";
/// The highest extended leaf Intel CPUs report (address sizes); AMD's later extended leaves
/// (0x80000009 and up, 0x8000001F among them) do not exist on Intel.
const INTEL_EXT_MAX: u32 = LEAF_ADDRESS_SIZES;
/// AMD's L1 cache and TLB leaf, reserved (zero) on Intel.
const LEAF_AMD_L1_CACHE: u32 = 0x8000_0005;
/// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX` (sic, Linux include/uapi/asm/kvm.h): the entry applies
/// to its `index` only.
const FLAG_SIGNIFICANT_INDEX: u32 = 1;

/// Makes the table an Intel TD's as tdx-sim presents it: vendor GenuineIntel, leaf 0x21 =
/// "IntelTDX    " (leaf 0 EAX raised to reach it), x2APIC (CPUID.1:ECX\[21\]), and AMD's
/// extended leaves gone (leaf 0x80000000 reports 0x80000008 and no vendor, as Intel CPUs do). KVM accepts another vendor
/// than the host's freely (seen on AMD and Intel hosts: sev-es-sim presents AuthenticAMD on
/// Intel hosts the same way).
pub fn configure_tdx(cpuid: &mut CpuId) -> Result<(), vmm_sys_util::fam::Error> {
    let (b, c, d) = signature_regs(&vendor_order(VENDOR_INTEL));
    match find(cpuid, LEAF_VENDOR) {
        Some(e) => {
            e.eax = e.eax.max(LEAF_TDX);
            (e.ebx, e.ecx, e.edx) = (b, c, d);
        }
        None => cpuid.push(entry(LEAF_VENDOR, [LEAF_TDX, b, c, d]))?,
    }
    let (b, c, d) = signature_regs(&vendor_order(TDX_IDENT));
    match find(cpuid, LEAF_TDX) {
        Some(e) => [e.eax, e.ebx, e.ecx, e.edx] = [0, b, c, d],
        None => cpuid.push(entry(LEAF_TDX, [0, b, c, d]))?,
    }
    if let Some(e) = find(cpuid, LEAF_EXT_MAX) {
        e.eax = INTEL_EXT_MAX;
        (e.ebx, e.ecx, e.edx) = (0, 0, 0);
    }
    if let Some(e) = find(cpuid, LEAF_AMD_L1_CACHE) {
        [e.eax, e.ebx, e.ecx, e.edx] = [0; 4];
    }
    // A TD's APIC is an x2APIC (the TDX module's CPUID configuration fixes CPUID.1:ECX[21]
    // to 1 and runs the TD's APIC in x2APIC mode).
    if let Some(e) = find(cpuid, 1) {
        e.ecx |= protocol::apic::CPUID_1_ECX_X2APIC;
    }
    let keep: Vec<kvm_cpuid_entry2> = cpuid
        .as_slice()
        .iter()
        .filter(|e| !(INTEL_EXT_MAX + 1..=0x8000_ffff).contains(&e.function))
        .copied()
        .collect();
    *cpuid = CpuId::from_entries(&keep)?;
    Ok(())
}

/// Makes the table an SEV-ES guest's as sev-es-sim presents it: vendor AuthenticAMD and leaf
/// 0x8000001F (AMD APM vol. 3, E.4.17) with SEV and SEV-ES (EAX bits 1 and 3) and the C-bit
/// position `cbit` in EBX\[5:0\]; EBX\[11:6\] (physical-address reduction), ECX (encrypted
/// guests) and EDX (minimum SEV-ES ASID) are 0: nothing is reduced or counted here.
pub fn configure_sev_es(cpuid: &mut CpuId, cbit: u8) -> Result<(), vmm_sys_util::fam::Error> {
    use protocol::ghcb::{CPUID_SEV, CPUID_SEV_ES, CPUID_SEV_LEAF};
    let (b, c, d) = signature_regs(&vendor_order(VENDOR_AMD));
    if let Some(e) = find(cpuid, LEAF_VENDOR) {
        (e.ebx, e.ecx, e.edx) = (b, c, d);
    }
    match find(cpuid, LEAF_EXT_MAX) {
        Some(e) => e.eax = e.eax.max(CPUID_SEV_LEAF),
        None => cpuid.push(entry(LEAF_EXT_MAX, [CPUID_SEV_LEAF, 0, 0, 0]))?,
    }
    let regs = [CPUID_SEV | CPUID_SEV_ES, u32::from(cbit & 0x3f), 0, 0];
    match find(cpuid, CPUID_SEV_LEAF) {
        Some(e) => [e.eax, e.ebx, e.ecx, e.edx] = regs,
        None => cpuid.push(entry(CPUID_SEV_LEAF, regs))?,
    }
    Ok(())
}

/// CPUID `leaf`.`subleaf` as KVM answers it from `cpuid` (Linux arch/x86/kvm/cpuid.c
/// `kvm_cpuid()`): the entry for the leaf (and the subleaf, for entries flagged
/// SIGNIFCANT_INDEX); if there is none and the vendor is not AMD, a leaf beyond its class's
/// maximum reads as the highest basic leaf with the same subleaf
/// (`get_out_of_range_cpuid_entry()`); otherwise zeros.
pub fn lookup(cpuid: &CpuId, leaf: u32, subleaf: u32) -> [u32; 4] {
    let find = |function: u32, index: u32| {
        cpuid.as_slice().iter().find(|e| {
            e.function == function && (e.flags & FLAG_SIGNIFICANT_INDEX == 0 || e.index == index)
        })
    };
    let regs = |e: &kvm_cpuid_entry2| [e.eax, e.ebx, e.ecx, e.edx];
    if let Some(e) = find(leaf, subleaf) {
        return regs(e);
    }
    let Some(basic) = find(LEAF_VENDOR, 0) else {
        return [0; 4];
    };
    let vendor = vendor_bytes(basic.ebx, basic.edx, basic.ecx);
    if &vendor == VENDOR_AMD || &vendor == b"HygonGenuine" {
        return [0; 4];
    }
    let class = match leaf {
        0x4000_0000..=0x4fff_ffff => leaf & 0xffff_ff00,
        0xc000_0000.. => 0xc000_0000,
        _ => leaf & 0x8000_0000,
    };
    if find(class, 0).is_some_and(|c| leaf <= c.eax) {
        return [0; 4];
    }
    find(basic.eax, subleaf).map_or([0; 4], regs)
}

/// A vendor string as it reads from EBX, EDX, ECX.
fn vendor_bytes(ebx: u32, edx: u32, ecx: u32) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..4].copy_from_slice(&ebx.to_le_bytes());
    v[4..8].copy_from_slice(&edx.to_le_bytes());
    v[8..].copy_from_slice(&ecx.to_le_bytes());
    v
}

/// Reorders a 12-byte string read as EBX, EDX, ECX into EBX, ECX, EDX order for
/// [`signature_regs`].
fn vendor_order(s: &[u8; 12]) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..4].copy_from_slice(&s[..4]);
    v[4..8].copy_from_slice(&s[8..]);
    v[8..].copy_from_slice(&s[4..8]);
    v
}

/// The entry for `function`, subleaf 0.
fn find(cpuid: &mut CpuId, function: u32) -> Option<&mut kvm_cpuid_entry2> {
    cpuid
        .as_mut_slice()
        .iter_mut()
        .find(|e| e.function == function && e.index == 0)
}

fn entry(function: u32, [eax, ebx, ecx, edx]: [u32; 4]) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function,
        eax,
        ebx,
        ecx,
        edx,
        ..Default::default()
    }
}

/// A 12-byte signature as EBX, ECX, EDX.
fn signature_regs(sig: &[u8; 12]) -> (u32, u32, u32) {
    let r = |i: usize| u32::from_le_bytes(sig[i..i + 4].try_into().expect("4 bytes"));
    (r(0), r(4), r(8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::cmdline::brand_matches;

    fn sample() -> CpuId {
        CpuId::from_entries(&[
            entry(0, [0x1c, 0x6874_7541, 0x444d_4163, 0x6974_6e65]),
            // Leaf 1 as this host's KVM reports it (x2APIC, TSC-deadline, hypervisor set).
            entry(1, [0x00b0_0f21, 0x0102_0800, 0x8120_2000, 0x078b_f9ff]),
            entry(0x8000_0000, [0x8000_0021, 0, 0, 0]),
            entry(0x8000_0002, [0; 4]),
        ])
        .unwrap()
    }

    fn get(c: &CpuId, f: u32) -> kvm_cpuid_entry2 {
        *c.as_slice().iter().find(|e| e.function == f).unwrap()
    }

    #[test]
    fn leaf1_adjusted() {
        let mut c = sample();
        configure(&mut c, &Brand::new("x")).unwrap();
        let e = get(&c, 1);
        assert_ne!(e.edx & EDX_APIC, 0);
        assert_ne!(e.ecx & ECX_HYPERVISOR, 0);
        assert_eq!(e.ecx & (ECX_X2APIC | ECX_TSC_DEADLINE), 0);
        assert_eq!(e.ebx >> 24, 0);
        assert_eq!(e.ebx & 0xffff, 0x0800, "CLFLUSH size kept");
    }

    #[test]
    fn kvm_signature_present() {
        let mut c = sample();
        configure(&mut c, &Brand::new("x")).unwrap();
        let e = get(&c, LEAF_KVM_SIGNATURE);
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&e.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&e.ecx.to_le_bytes());
        sig[8..].copy_from_slice(&e.edx.to_le_bytes());
        assert_eq!(&sig, HYPERVISOR_SIG_KVM);
        assert!(e.eax >= LEAF_KVM_FEATURES);
    }

    #[test]
    fn brand_round_trips_through_the_guest_check() {
        let mut c = sample();
        let brand = Brand::for_run();
        configure(&mut c, &brand).unwrap();
        let mut got = [0u8; BRAND_LEN];
        for (i, leaf) in (LEAF_BRAND_FIRST..=LEAF_BRAND_LAST).enumerate() {
            let e = get(&c, leaf);
            for (j, r) in [e.eax, e.ebx, e.ecx, e.edx].into_iter().enumerate() {
                got[i * 16 + j * 4..][..4].copy_from_slice(&r.to_le_bytes());
            }
        }
        assert!(brand_matches(&brand.cmdline_value(), &got), "{brand:?}");
        assert!(!brand_matches(&Brand::for_run().cmdline_value(), &got));
        assert!(get(&c, LEAF_EXT_MAX).eax >= LEAF_BRAND_LAST);
    }

    fn regs(c: &CpuId, f: u32) -> [u32; 4] {
        let e = get(c, f);
        [e.eax, e.ebx, e.ecx, e.edx]
    }

    #[test]
    fn tdx_table_reads_as_an_intel_td() {
        let mut c = sample();
        c.push(entry(CPUID_SEV_LEAF_FOR_TEST, [0xb, 0x33, 0, 0]))
            .unwrap();
        // Even from a table without x2APIC.
        find(&mut c, 1).unwrap().ecx &= !protocol::apic::CPUID_1_ECX_X2APIC;
        configure(&mut c, &Brand::new("x")).unwrap();
        configure_tdx(&mut c).unwrap();
        let l0 = regs(&c, 0);
        assert_eq!(l0[0], LEAF_TDX);
        assert_eq!(&vendor_bytes(l0[1], l0[3], l0[2]), b"GenuineIntel");
        let t = regs(&c, LEAF_TDX);
        assert_eq!(&vendor_bytes(t[1], t[3], t[2]), b"IntelTDX    ");
        assert_eq!(lookup(&c, LEAF_TDX, 0), t);
        assert_eq!(regs(&c, LEAF_EXT_MAX), [INTEL_EXT_MAX, 0, 0, 0]);
        assert!(
            c.as_slice()
                .iter()
                .all(|e| e.function != CPUID_SEV_LEAF_FOR_TEST),
            "AMD's SEV leaf is gone"
        );
        assert_ne!(
            regs(&c, 1)[2] & protocol::apic::CPUID_1_ECX_X2APIC,
            0,
            "a TD has an x2APIC"
        );
        // The brand leaves stay in range.
        assert!(get(&c, LEAF_BRAND_LAST).function == LEAF_BRAND_LAST);
    }

    const CPUID_SEV_LEAF_FOR_TEST: u32 = 0x8000_001f;

    #[test]
    fn sev_es_table_reports_the_cbit() {
        let mut c = sample();
        configure_sev_es(&mut c, 47).unwrap();
        let e = regs(&c, CPUID_SEV_LEAF_FOR_TEST);
        assert_eq!(e[0], (1 << 1) | (1 << 3), "SEV and SEV-ES");
        assert_eq!(e[1] & 0x3f, 47);
        assert!(get(&c, LEAF_EXT_MAX).eax >= CPUID_SEV_LEAF_FOR_TEST);
        let l0 = regs(&c, 0);
        assert_eq!(&vendor_bytes(l0[1], l0[3], l0[2]), b"AuthenticAMD");
    }

    #[test]
    fn phys_bits_read_and_forced() {
        let mut c = sample();
        assert_eq!(phys_bits(&c), 36, "no leaf 0x80000008: the SDM's default");
        set_phys_bits(&mut c, 46).unwrap();
        assert_eq!(phys_bits(&c), 46);
        assert_eq!(
            get(&c, LEAF_ADDRESS_SIZES).eax >> 8 & 0xff,
            48,
            "linear bits"
        );
        assert!(get(&c, LEAF_EXT_MAX).eax >= LEAF_ADDRESS_SIZES);
        // An existing leaf keeps its linear-address bits; AMD's guest width is cleared.
        let mut c = sample();
        c.push(entry(LEAF_ADDRESS_SIZES, [0x0030_3930, 0, 0, 0]))
            .unwrap();
        assert_eq!(phys_bits(&c), 0x30);
        set_phys_bits(&mut c, 39).unwrap();
        assert_eq!(get(&c, LEAF_ADDRESS_SIZES).eax, 0x3927);
        assert_eq!(phys_bits(&c), 39);
        // The TD's table keeps the leaf (Intel's extended maximum is 0x80000008).
        configure_tdx(&mut c).unwrap();
        assert_eq!(phys_bits(&c), 39);
    }

    /// KVM's table on an Intel host: GenuineIntel, extended leaves up to 0x80000008 only.
    fn intel_sample() -> CpuId {
        let (b, c, d) = signature_regs(&vendor_order(VENDOR_INTEL));
        CpuId::from_entries(&[
            entry(0, [0x1f, b, c, d]),
            entry(1, [0x000c_06f2, 0x0001_0800, 0xfffa_3203, 0x1f8b_fbff]),
            entry(0x8000_0000, [0x8000_0008, 0, 0, 0]),
            entry(0x8000_0008, [0x3930, 0, 0, 0]),
        ])
        .unwrap()
    }

    #[test]
    fn sev_es_table_on_an_intel_host_reads_as_amd() {
        let mut c = intel_sample();
        configure(&mut c, &Brand::new("x")).unwrap();
        configure_sev_es(&mut c, 45).unwrap();
        let l0 = regs(&c, 0);
        assert_eq!(&vendor_bytes(l0[1], l0[3], l0[2]), b"AuthenticAMD");
        // The SEV leaf is reachable (the extended maximum was Intel's 0x80000008) and the
        // address sizes survive.
        assert!(get(&c, LEAF_EXT_MAX).eax >= CPUID_SEV_LEAF_FOR_TEST);
        assert_eq!(lookup(&c, CPUID_SEV_LEAF_FOR_TEST, 0)[1] & 0x3f, 45);
        assert_eq!(phys_bits(&c), 0x30);
        // AMD's lookup rules now apply: a leaf between Intel's maximum and the SEV leaf
        // that has no entry reads 0 (not the highest basic leaf, as on Intel).
        assert_eq!(lookup(&c, 0x8000_0019, 0), [0; 4]);
    }

    #[test]
    fn tdx_table_on_an_intel_host_keeps_its_address_sizes() {
        let mut c = intel_sample();
        configure(&mut c, &Brand::new("x")).unwrap();
        set_phys_bits(&mut c, 46).unwrap();
        configure_tdx(&mut c).unwrap();
        assert_eq!(regs(&c, LEAF_EXT_MAX)[0], INTEL_EXT_MAX);
        assert_eq!(phys_bits(&c), 46);
        assert_eq!(
            regs(&c, LEAF_TDX)[1..],
            regs(
                &{
                    let mut t = sample();
                    configure_tdx(&mut t).unwrap();
                    t
                },
                LEAF_TDX
            )[1..]
        );
    }

    #[test]
    fn lookup_follows_kvm_cpuid() {
        let mut c = sample();
        // An indexed leaf: subleaf 1 has its own entry.
        c.push(kvm_cpuid_entry2 {
            function: 0xb,
            index: 1,
            flags: FLAG_SIGNIFICANT_INDEX,
            eax: 0x11,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(lookup(&c, 0xb, 1)[0], 0x11);
        assert_eq!(lookup(&c, 0xb, 0), [0; 4], "AMD: a missing entry reads 0");
        assert_eq!(lookup(&c, 0x7fff_0000, 0), [0; 4]);
        // On Intel an out-of-range basic leaf reads as the highest basic leaf.
        configure_tdx(&mut c).unwrap();
        c.push(entry(LEAF_TDX, [0; 4])).unwrap();
        let top = lookup(&c, LEAF_TDX, 0);
        assert_eq!(lookup(&c, 0x7fff_0000, 0), top);
        assert_eq!(
            lookup(&c, 0x8000_0009, 0),
            top,
            "beyond the extended maximum"
        );
        assert_eq!(lookup(&c, 0x8000_0003, 0), [0; 4], "in range, no entry");
    }

    #[test]
    fn brand_value_has_no_spaces() {
        let b = Brand::for_run();
        assert!(b.as_str().len() < BRAND_LEN);
        assert!(!b.cmdline_value().contains(' '));
    }

    #[test]
    #[should_panic(expected = "without '_'")]
    fn brand_rejects_underscore() {
        Brand::new("a_b");
    }
}
