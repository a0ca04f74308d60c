//! The conformance table (`protocol::conformance::CASES`) against the models, for every KVM
//! profile ([`protocol::kvm::KvmProfile`], configured by [`super::profile`]): every case gives
//! that release's answer under the same checker the guest uses; a guest told another
//! release fails exactly the rows where the two releases differ; and flipping the host's
//! answer for any one case makes exactly that case fail.
//!
//! The executed cases run one after the other on one TDX model and one GHCB model, sharing
//! one guest memory, as the guest sends them in one run (so a case that leaves state behind,
//! a GHCB in a bad state or the GHCB MSR holding an MSR-protocol value, would show up in the
//! next). The documented cases (the VM ends) each run on fresh models.

use super::ghcb::{GhcbAnswer, GhcbConfig, GhcbModel};
use super::oracle::{self, CannedHost, GHCB_GPA, Outcome};
use super::profile;
use super::tdx::{TdxConfig, TdxModel};
use super::{FlatMemory, Stop, Tamper};
use protocol::conformance::{
    Addresses, Answer, CASES, Case, Expect, Request, VmEnd, check, check_eras,
};
use protocol::ghcb;
use protocol::kvm::KvmProfile;
use protocol::tdx::TdcallRegs;
use std::cell::Cell;
use std::rc::Rc;

/// GPA (private alias) of the page the MapGPA case converts: a legal, page-aligned GPA.
const MAP_GPA_PAGE: u64 = 0x20_0000;

/// The bit the flipping host toggles in its answers.
const FLIP: u64 = 0x40;

/// The hosts of one run: a TDX model and a GHCB model with their guest memory.
struct Hosts<T: Tamper> {
    tdx: TdxModel<T>,
    ghcb: GhcbModel<T>,
    mem: FlatMemory,
    host: CannedHost,
}

impl<T: Tamper + Clone> Hosts<T> {
    fn new(tamper: T, kvm: KvmProfile, ghcb_version: u16) -> Self {
        // A KVM without TDX support still gets a TDX model: its rows are skipped.
        let tdx = profile::tdx_config(kvm, TdxConfig::default()).unwrap_or_default();
        Self {
            tdx: TdxModel::with_tamper(tdx, tamper.clone()),
            ghcb: GhcbModel::with_tamper(
                profile::ghcb_config(
                    kvm,
                    GhcbConfig {
                        ghcb_version,
                        ..GhcbConfig::default()
                    },
                ),
                tamper,
            ),
            mem: oracle::ram(),
            host: CannedHost::default(),
        }
    }

    fn addresses(&self) -> Addresses {
        Addresses {
            shared_bit: self.tdx.shared_bit(),
            ghcb_gpa: GHCB_GPA,
            map_gpa_page: MAP_GPA_PAGE,
        }
    }

    /// Sends `case` as the guest does and returns what the guest would see.
    fn send(&mut self, case: &Case) -> Answer {
        let a = self.addresses();
        match case.request {
            Request::Tdx(r) => {
                let (out, _) = oracle::tdx_call(&mut self.tdx, &r.regs(&a), &self.host)
                    .unwrap_or_else(|e| panic!("{}: {e}", case.id));
                match out {
                    Outcome::Answer(regs) => Answer::Tdx(regs),
                    Outcome::Stop(s) => vm_end(case, &s),
                }
            }
            Request::GhcbMsr(v) => {
                self.ghcb.msr_write(ghcb::MSR_GHCB, v).unwrap();
                let (out, _) = oracle::ghcb_call(&mut self.ghcb, &mut self.mem, &self.host)
                    .unwrap_or_else(|e| panic!("{}: {e}", case.id));
                match out {
                    Outcome::Answer(()) => Answer::Msr(self.ghcb.ghcb_msr()),
                    Outcome::Stop(s) => vm_end(case, &s),
                }
            }
            Request::GhcbPage(p) => {
                let fields: Vec<_> = p
                    .fields
                    .iter()
                    .map(|f| (f.offset, f.value.resolve(&a), f.valid))
                    .collect();
                oracle::write_ghcb(
                    &mut self.mem,
                    GHCB_GPA,
                    &fields,
                    p.protocol_version,
                    p.usage,
                )
                .unwrap();
                self.ghcb.msr_write(ghcb::MSR_GHCB, GHCB_GPA).unwrap();
                let (out, _) = oracle::ghcb_call(&mut self.ghcb, &mut self.mem, &self.host)
                    .unwrap_or_else(|e| panic!("{}: {e}", case.id));
                match out {
                    Outcome::Answer(()) => {
                        let r = oracle::read_ghcb(&self.mem, GHCB_GPA).unwrap();
                        Answer::Page {
                            info1: r.info1,
                            info2: r.info2,
                            rax: r.regs[0],
                            exit_info_valid: r.exit_info_valid,
                        }
                    }
                    Outcome::Stop(s) => vm_end(case, &s),
                }
            }
        }
    }
}

fn vm_end(case: &Case, s: &Stop) -> Answer {
    Answer::VmEnded(match s {
        Stop::TdxFatal { .. } => VmEnd::TdxFatal,
        Stop::SevTerm { .. } => VmEnd::SevTerm,
        Stop::KvmRunError { .. } => VmEnd::KvmRunError,
        Stop::NotModelled { what } => panic!("{}: the model does not cover it: {what}", case.id),
    })
}

/// Runs the whole table as one guest run would, on hosts playing `kvm` (executed cases in
/// order on shared hosts, documented ones on fresh hosts), checks each answer as a guest told
/// `expect` would, and returns the ids that fail, with their diagnostics. TDX rows are
/// skipped for a KVM without TDX.
fn run_table<T: Tamper + Clone>(
    tamper: T,
    kvm: KvmProfile,
    expect: KvmProfile,
    ghcb_version: u16,
    before_case: impl Fn(usize),
) -> Vec<(&'static str, String)> {
    let mut hosts = Hosts::new(tamper.clone(), kvm, ghcb_version);
    let mut failed = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        if matches!(case.request, Request::Tdx(_)) && !kvm.has_tdx() {
            continue;
        }
        before_case(i);
        let answer = if case.executed() {
            hosts.send(case)
        } else {
            Hosts::new(tamper.clone(), kvm, ghcb_version).send(case)
        };
        if let Err(m) = check_eras(case, &hosts.addresses(), &answer, Some(expect)) {
            failed.push((
                case.id,
                format!("{}: {m} (source: {})", case.id, case.source),
            ));
        }
    }
    failed
}

#[derive(Clone)]
struct Honest;
impl Tamper for Honest {}

#[test]
fn every_case_gets_each_releases_answer_from_the_models() {
    for kvm in KvmProfile::ALL {
        let failed = run_table(Honest, kvm, kvm, 2, |_| {});
        assert!(
            failed.is_empty(),
            "KVM {}:\n{}",
            kvm.name(),
            failed
                .iter()
                .map(|(_, d)| d.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn a_guest_told_another_release_fails_exactly_the_rows_where_they_differ() {
    let mut differing = 0;
    for kvm in KvmProfile::ALL {
        for told in KvmProfile::ALL {
            let failed: Vec<&str> = run_table(Honest, kvm, told, 2, |_| {})
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            let want: Vec<&str> = CASES
                .iter()
                .filter(|c| {
                    matches!(c.request, Request::GhcbMsr(_) | Request::GhcbPage(_)) || kvm.has_tdx()
                })
                .filter(|c| c.expect_for(kvm) != c.expect_for(told))
                .map(|c| c.id)
                .collect();
            assert_eq!(
                failed,
                want,
                "sims play {}, guest told {}",
                kvm.name(),
                told.name()
            );
            differing += want.len();
        }
    }
    assert!(differing > 0, "no release differs from another");
}

#[test]
fn every_executed_row_answered_differently_by_some_release_differs_between_two_profiles() {
    // Each era of the table is one some profile plays: the profiles tell every era apart.
    for c in CASES.iter().filter(|c| c.varies_by_release()) {
        for (kvms, e) in c.answers() {
            assert!(
                kvms.iter().any(|p| c.expect_for(p) == e),
                "{}: an era no profile plays",
                c.id
            );
        }
    }
}

/// A host that changes its answer while case `target` runs, and counts how often it did.
#[derive(Clone)]
struct FlipOne {
    current: Rc<Cell<usize>>,
    target: usize,
    flips: Rc<Cell<usize>>,
}

impl FlipOne {
    fn hit(&self) -> bool {
        let hit = self.current.get() == self.target;
        if hit {
            self.flips.set(self.flips.get() + 1);
        }
        hit
    }
}

impl Tamper for FlipOne {
    fn tdvmcall(&mut self, _request: &TdcallRegs, answer: &mut TdcallRegs) {
        if self.hit() {
            for r in [
                &mut answer.r10,
                &mut answer.r11,
                &mut answer.r12,
                &mut answer.r13,
                &mut answer.r14,
                &mut answer.r15,
            ] {
                *r ^= FLIP;
            }
        }
    }

    fn ghcb_msr(&mut self, _request: u64, answer: &mut u64) {
        if self.hit() {
            *answer ^= FLIP << 32;
        }
    }

    fn ghcb_page(&mut self, _request: &crate::sim::GhcbPageRequest, answer: &mut GhcbAnswer) {
        if self.hit() {
            answer.info2 ^= FLIP;
        }
    }
}

#[test]
fn flipping_the_answer_of_one_case_fails_exactly_that_case_under_every_profile() {
    for kvm in KvmProfile::ALL {
        let rows = CASES
            .iter()
            .filter(|c| kvm.has_tdx() || !matches!(c.request, Request::Tdx(_)));
        let mut flipped = 0;
        for (target, case) in CASES.iter().enumerate() {
            if !kvm.has_tdx() && matches!(case.request, Request::Tdx(_)) {
                continue;
            }
            let current = Rc::new(Cell::new(usize::MAX));
            let flips = Rc::new(Cell::new(0));
            let tamper = FlipOne {
                current: current.clone(),
                target,
                flips: flips.clone(),
            };
            let failed: Vec<&str> = run_table(tamper, kvm, kvm, 2, |i| current.set(i))
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            let k = kvm.name();
            if !matches!(
                case.expect_for(kvm),
                Expect::Msr(_) | Expect::Tdx(_) | Expect::Page(_)
            ) {
                // KVM ends the VM: there is no answer to change.
                assert_eq!(
                    flips.get(),
                    0,
                    "{k} {}: a VM-ending case was answered",
                    case.id
                );
                assert!(failed.is_empty(), "{k} {}: {failed:?}", case.id);
            } else if case.answered_by_tdx_module() {
                // The TDX module refuses the exposure mask before KVM sees the call: a host
                // cannot change the answer, and the case still passes.
                assert_eq!(flips.get(), 0, "{k} {}: KVM saw a refused mask", case.id);
                assert!(failed.is_empty(), "{k} {}: {failed:?}", case.id);
            } else {
                assert!(flips.get() > 0, "{k} {}: the host was never asked", case.id);
                assert_eq!(failed, [case.id], "{k}: flipping {}", case.id);
                flipped += 1;
            }
        }
        let answered = rows
            .filter(|c| {
                !matches!(c.expect_for(kvm), Expect::VmEnds { .. }) && !c.answered_by_tdx_module()
            })
            .count();
        assert_eq!(flipped, answered, "KVM {}", kvm.name());
        assert!(flipped >= 15, "KVM {}: {flipped}", kvm.name());
    }
}

#[test]
fn ghcb_version_1_answers_are_the_ones_the_notes_give() {
    // The notes of these two cases record version 1's SUCCESS; every other SEV-ES case answers
    // the same under both versions.
    let failed: Vec<&str> = run_table(Honest, KvmProfile::Current, KvmProfile::Current, 1, |_| {})
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(failed, ["scratch_outside_ghcb", "mmio_size_16_ghcb"]);
    for id in failed {
        let case = protocol::conformance::find(id).unwrap();
        assert!(case.note.contains("version 1"), "{id}: {}", case.note);
        let mut hosts = Hosts::new(Honest, KvmProfile::Current, 1);
        let a = hosts.send(case);
        assert!(
            matches!(a, Answer::Page { info1: 0, .. }),
            "{id} under GHCB version 1: {a:?}"
        );
    }
}

#[test]
fn a_bad_ghcb_does_not_spoil_the_next_request() {
    // An MSR-protocol request leaves the GHCB MSR holding its value, and an error answer
    // leaves the page in whatever state: the next page request must still be answered.
    let mut hosts = Hosts::new(Honest, KvmProfile::Current, 2);
    let unknown = protocol::conformance::find("msr_unknown_request").unwrap();
    let usage = protocol::conformance::find("usage_nonzero").unwrap();
    let ok = protocol::conformance::find("protocol_version_3").unwrap();
    for case in [unknown, usage, ok, unknown, ok] {
        let a = hosts.send(case);
        assert_eq!(check(case, &hosts.addresses(), &a), Ok(()), "{}", case.id);
    }
}
