//! Raw wrappers for the instructions a TDX or SEV-ES host intercepts: port IO, RDMSR/WRMSR,
//! CPUID, HLT. One wrapper per instruction, typed operands.
//!
//! Only the legacy backend and the platform detection probe may call these: after detection,
//! a TDX or SEV-ES guest must reach the host through `tdcall`/`vmgexit` instead (a host test
//! disassembles the kernel and checks where these instructions appear). CPUID is one
//! out-of-line wrapper ([`cpuid`]), whose instruction the simulated platforms watch.

use core::arch::asm;

/// Fault taken by a fixup-protected instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Exception vector (13 = #GP).
    pub vector: u8,
    /// Error code pushed by the CPU (0 if none).
    pub error_code: u64,
}

/// `in al, dx`.
///
/// # Safety
/// Port IO can have any side effect the device defines; the caller owns the port.
#[inline(always)]
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: per the function contract.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// `in ax, dx`.
///
/// # Safety
/// As [`inb`].
#[inline(always)]
pub unsafe fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: per the function contract.
    unsafe {
        asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// `in eax, dx`.
///
/// # Safety
/// As [`inb`].
#[inline(always)]
pub unsafe fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: per the function contract.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// `out dx, al`.
///
/// # Safety
/// As [`inb`].
#[inline(always)]
pub unsafe fn outb(port: u16, v: u8) {
    // SAFETY: per the function contract.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

/// `out dx, ax`.
///
/// # Safety
/// As [`inb`].
#[inline(always)]
pub unsafe fn outw(port: u16, v: u16) {
    // SAFETY: per the function contract.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags))
    };
}

/// `out dx, eax`.
///
/// # Safety
/// As [`inb`].
#[inline(always)]
pub unsafe fn outl(port: u16, v: u32) {
    // SAFETY: per the function contract.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    };
}

/// `rep outsb`: writes every byte of `bytes` to `port` (DF is clear in this kernel).
///
/// # Safety
/// As [`inb`].
#[inline(always)]
pub unsafe fn rep_outsb(port: u16, bytes: &[u8]) {
    // SAFETY: per the function contract; RSI/RCX describe a live slice that OUTSB only reads.
    unsafe {
        asm!(
            "rep outsb",
            in("dx") port,
            inout("rsi") bytes.as_ptr() => _,
            inout("rcx") bytes.len() => _,
            options(nostack, preserves_flags, readonly)
        )
    };
}

/// `rdmsr` under the fixup table: a fault (#GP for a missing MSR) returns `Err`.
#[inline(always)]
pub fn rdmsr_safe(msr: u32) -> Result<u64, Fault> {
    let (lo, hi): (u32, u32);
    let failed: u32;
    // SAFETY: RDMSR at CPL0 only reads; if it faults, the trap handler finds the `cvmprobe_ex_table`
    // entry for label 2 and resumes at label 4, which flags the failure and returns zeros.
    unsafe {
        asm!(
            "xor {f:e}, {f:e}",
            "2: rdmsr",
            "3:",
            ".pushsection cvmprobe_ex_table, \"a\"",
            ".balign 8",
            ".quad 2b, 4f",
            ".popsection",
            ".pushsection .text.fixup, \"ax\"",
            "4: mov {f:e}, 1",
            "xor eax, eax",
            "xor edx, edx",
            "jmp 3b",
            ".popsection",
            f = out(reg) failed,
            in("ecx") msr,
            out("eax") lo,
            out("edx") hi,
            options(nostack),
        );
    }
    if failed != 0 {
        Err(super::fixup::take_fault())
    } else {
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }
}

/// `wrmsr` under the fixup table: a fault returns `Err`.
///
/// # Safety
/// Writing an MSR can change any CPU behaviour; the caller knows what this MSR does.
#[inline(always)]
pub unsafe fn wrmsr_safe(msr: u32, v: u64) -> Result<(), Fault> {
    let failed: u32;
    // SAFETY: per the function contract; a fault resumes at label 4 as in `rdmsr_safe`.
    unsafe {
        asm!(
            "xor {f:e}, {f:e}",
            "2: wrmsr",
            "3:",
            ".pushsection cvmprobe_ex_table, \"a\"",
            ".balign 8",
            ".quad 2b, 4f",
            ".popsection",
            ".pushsection .text.fixup, \"ax\"",
            "4: mov {f:e}, 1",
            "jmp 3b",
            ".popsection",
            f = out(reg) failed,
            in("ecx") msr,
            in("eax") v as u32,
            in("edx") (v >> 32) as u32,
            options(nostack),
        );
    }
    if failed != 0 {
        Err(super::fixup::take_fault())
    } else {
        Ok(())
    }
}

/// Registers returned by CPUID.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidResult {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

core::arch::global_asm!(
    ".pushsection .text.cpuid, \"ax\"",
    ".global cvmprobe_cpuid",
    ".balign 16",
    // RDI = *mut CpuidResult: EAX (leaf) and ECX (sub-leaf) in, all four out. Returns 0, or 1
    // if CPUID faulted (#VE in a TD for the leaves the TDX module does not answer, #VC under
    // SEV-ES): the fixup entry below resumes at label 2.
    "cvmprobe_cpuid:",
    "push rbx",
    "mov eax, [rdi + {eax}]",
    "mov ecx, [rdi + {ecx}]",
    ".global cvmprobe_cpuid_insn",
    "cvmprobe_cpuid_insn:",
    "cpuid",
    "mov [rdi + {eax}], eax",
    "mov [rdi + {ebx}], ebx",
    "mov [rdi + {ecx}], ecx",
    "mov [rdi + {edx}], edx",
    "xor eax, eax",
    "pop rbx",
    "ret",
    ".pushsection cvmprobe_ex_table, \"a\"",
    ".balign 8",
    ".quad cvmprobe_cpuid_insn, 2f",
    ".popsection",
    ".pushsection .text.fixup, \"ax\"",
    "2: mov eax, 1",
    "pop rbx",
    "ret",
    ".popsection",
    ".popsection",
    eax = const core::mem::offset_of!(CpuidResult, eax),
    ebx = const core::mem::offset_of!(CpuidResult, ebx),
    ecx = const core::mem::offset_of!(CpuidResult, ecx),
    edx = const core::mem::offset_of!(CpuidResult, edx),
);

unsafe extern "C" {
    /// The kernel's one raw CPUID (`protocol::x86::CPUID_SYMBOL` is its instruction): reads
    /// the leaf and sub-leaf from `*regs`, writes the four registers back; 1 if it faulted.
    fn cvmprobe_cpuid(regs: *mut CpuidResult) -> u32;
}

/// `cpuid` with leaf and sub-leaf: the only raw CPUID in the kernel, in one out-of-line
/// wrapper whose instruction the simulated platforms put a hardware breakpoint on (a raw
/// CPUID never leaves KVM by itself). It runs under the fixup table: a #VE (TDX, a leaf the
/// TDX module does not answer) or #VC (SEV-ES, every leaf) comes back as `Err`.
#[inline(always)]
pub fn cpuid(leaf: u32, subleaf: u32) -> Result<CpuidResult, Fault> {
    let mut r = CpuidResult {
        eax: leaf,
        ecx: subleaf,
        ..CpuidResult::default()
    };
    // SAFETY: the wrapper reads and writes only `r` (a live local) and restores RBX; CPUID
    // has no other effect at CPL0, and a fault resumes at its fixup with the stack as it was.
    let faulted = unsafe { cvmprobe_cpuid(&mut r) };
    if faulted != 0 {
        Err(super::fixup::take_fault())
    } else {
        Ok(r)
    }
}

/// `rdtsc`: the time-stamp counter. Not intercepted by KVM on any of the platforms here (in
/// a TD the TDX module virtualises the TSC without an exit).
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter; CR4.TSD is clear in this kernel.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// `sti; hlt; cli`: wait for one interrupt with interrupts enabled only while halted. The
/// STI shadow covers HLT, so an interrupt already pending wakes it instead of being lost.
#[inline(always)]
pub fn sti_hlt_cli() {
    // SAFETY: the IDT handles every vector that can arrive; interrupts are off again after.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}

/// `sti; nop; cli`: lets one pending interrupt in (the STI shadow covers the NOP).
#[inline(always)]
pub fn interrupt_window() {
    // SAFETY: the IDT handles every vector that can arrive; interrupts are off again after.
    unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// `cli; hlt` forever (the last resort when the exit port did not stop the VM).
#[inline(always)]
pub fn cli_hlt_loop() -> ! {
    loop {
        // SAFETY: stops the CPU; nothing to preserve.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// CLFLUSH of the cache line holding `va`: written back if dirty, then invalidated (used when
/// a page turns from private to shared on SEV).
#[inline(always)]
pub fn clflush(va: u64) {
    // SAFETY: CLFLUSH of a mapped address changes no architectural state but the cache.
    unsafe { asm!("clflush ({0})", in(reg) va, options(att_syntax, nostack, preserves_flags)) };
}
