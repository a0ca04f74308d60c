//! `ghcb_raw`: raw GHCB requests, valid and invalid, exactly as `protocol::conformance` lists
//! them: MSR-protocol values written to the GHCB MSR, and GHCB pages with the fields, valid
//! bits, protocol version and usage of the table. Answers are checked by
//! `protocol::conformance::check`, the checker the simulated host's tests use too.
//!
//! Each page request starts from a zeroed GHCB (`sev_es::Request::new`) and every request
//! sets the GHCB MSR again, so a case that leaves the page or the MSR in a bad state cannot
//! spoil the next one. The requests that make KVM end the VM (an SNP-only MSR request, the
//! "unsupported event" exit) are in the table but never sent.

use super::{Ctx, Suite};
use crate::platform::sev_es;
use protocol::catalog;
use protocol::conformance::{self, Addresses, Answer, Request};
use protocol::ghcb::off;

pub static SUITE: Suite = Suite {
    spec: &catalog::GHCB_RAW,
    cases: &super::raw_cases::<{ catalog_len() }>(&catalog::GHCB_RAW),
};

const fn catalog_len() -> usize {
    conformance::executed_count(protocol::platform::PlatformKind::SevEs)
}

/// Sends the case named like the running one and checks the answer.
pub fn run(ctx: &mut Ctx<'_>) {
    let Some(case) = conformance::find(ctx.name()) else {
        ctx.fail("no protocol::conformance case of this name");
        return;
    };
    let addrs = Addresses {
        shared_bit: 0,
        ghcb_gpa: sev_es::ghcb_gpa(),
        map_gpa_page: 0,
    };
    let answer = match case.request {
        Request::GhcbMsr(value) => Answer::Msr(sev_es::msr_protocol(value)),
        Request::GhcbPage(page) => {
            let Some(mut r) = sev_es::Request::new() else {
                ctx.fail("the GHCB is in use");
                return;
            };
            r.set_version_and_usage(page.protocol_version, page.usage);
            for f in page.fields {
                let v = f.value.resolve(&addrs);
                if f.valid {
                    r.set(f.offset, v);
                } else {
                    r.set_unmarked(f.offset, v);
                }
            }
            let resp = r.call();
            // The answer is copied out: release the GHCB before printing anything (the
            // console needs it; a diagnostic printed while it is held would be lost).
            drop(r);
            // A CPUID the host says succeeded must return its four registers, marked valid
            // and 32 bits wide, whatever the case probes: every host value is checked.
            let exit_code = page
                .fields
                .iter()
                .find(|f| f.offset == off::SW_EXIT_CODE)
                .map(|f| f.value.resolve(&addrs));
            if exit_code == Some(protocol::ghcb::exit::CPUID)
                && resp.info1 == protocol::ghcb::result::OK
                && let Err(e) = sev_es::cpuid_registers(&resp)
            {
                let mut l = ctx.diag();
                super::describe_host_error(&mut l, &e);
                l.emit();
                ctx.fail("the CPUID answer is malformed");
            }
            Answer::Page {
                info1: resp.info1,
                info2: resp.info2,
                rax: resp.reg(off::RAX),
                exit_info_valid: resp.raw_is_marked(off::SW_EXIT_INFO_1)
                    && resp.raw_is_marked(off::SW_EXIT_INFO_2),
            }
        }
        Request::Tdx(_) => {
            ctx.fail("not an SEV-ES request");
            return;
        }
    };
    super::report_conformance(ctx, case, &addrs, &answer);
}
