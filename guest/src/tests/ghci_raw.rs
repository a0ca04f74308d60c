//! `ghci_raw`: raw TDG.VP.VMCALL requests, valid and invalid, exactly as
//! `protocol::conformance` lists them (RCX exposure mask, R10-R15), each sent through the one
//! TDCALL wrapper and its answer checked by `protocol::conformance::check`, the checker the
//! simulated host's tests use too. A failure prints the checker's diagnostic and the source
//! of the expectation. ReportFatalError is in the table but never sent: it ends the TD.

use super::{Ctx, Suite};
use crate::platform::tdx;
use protocol::catalog;
use protocol::conformance::{self, Addresses, Answer, Request};

pub static SUITE: Suite = Suite {
    spec: &catalog::GHCI_RAW,
    cases: &super::raw_cases::<{ catalog_len() }>(&catalog::GHCI_RAW),
};

const fn catalog_len() -> usize {
    conformance::executed_count(protocol::platform::PlatformKind::Tdx)
}

/// The page the MapGPA case converts to shared: page-aligned, page-sized, used by nothing else
/// (its contents are never read, so losing them on conversion harms nothing).
#[repr(C, align(4096))]
struct SparePage(core::cell::UnsafeCell<[u8; 4096]>);

// SAFETY: no Rust code reads or writes the page (only its address is used); interior
// mutability puts it in .bss, so the kernel ELF carries no 4 KiB of zeros for it.
unsafe impl Sync for SparePage {}

static MAP_GPA_PAGE: SparePage = SparePage(core::cell::UnsafeCell::new([0; 4096]));

/// Sends the case named like the running one and checks the answer.
pub fn run(ctx: &mut Ctx<'_>) {
    let Some(case) = conformance::find(ctx.name()) else {
        ctx.fail("no protocol::conformance case of this name");
        return;
    };
    let Request::Tdx(request) = case.request else {
        ctx.fail("not a TDX request");
        return;
    };
    let page_va = core::ptr::addr_of!(MAP_GPA_PAGE) as u64;
    let Some(map_gpa_page) = crate::arch::paging::virt_to_phys(page_va) else {
        ctx.fail("the MapGPA spare page is not mapped");
        return;
    };
    let addrs = Addresses {
        shared_bit: tdx::shared_bit(),
        ghcb_gpa: 0,
        map_gpa_page,
    };
    let mut regs = request.regs(&addrs);
    tdx::tdcall(&mut regs);
    super::report_conformance(ctx, case, &addrs, &Answer::Tdx(regs));
}
