//! One raw request to a model, served by a canned host: the engine of `cvmprobe sim-call` and
//! of the conformance tests (`conformance_tests.rs`). No guest, no KVM.
//!
//! The models ask the VMM for help where KVM exits to user space ([`HostRequest`]). Here a
//! [`CannedHost`] answers every such request deterministically, as a VMM with no devices at
//! the addresses asked would:
//!
//! | request | answer |
//! |---|---|
//! | port / MMIO read | all ones in the access size (an unassigned port or bus: QEMU `unassigned_io_read`), or the `read_value` given |
//! | string port read | `0xff` bytes |
//! | port / MMIO write, HLT, AP reset hold | done |
//! | CPUID | the `cpuid` given (default all zero: a leaf the VMM did not set) |
//! | RDMSR / WRMSR | refused (an MSR no one implements: INVALID_OPERAND on TDX, #GP on SEV-ES), or `read_value` for RDMSR |
//! | MapGPA chunk | success, no event pending |
//! | GetTdVmCallInfo leaf 1, GetQuote, SetupEventNotifyInterrupt | KVM's pre-filled answer |
//! | KVM hypercall that needs a PV feature | `-KVM_ENOSYS` (the feature is not in the guest's CPUID) |
//!
//! The SEV-ES side works on a [`FlatMemory`] of [`RAM_LEN`] bytes at GPA 0 holding the GHCB
//! page at [`GHCB_GPA`].

use super::ghcb::{GhcbModel, GhcbStep};
use super::tdx::{TdxModel, TdxStep};
use super::{
    FlatMemory, GuestMemory, HostRequest, HostResult, MapGpaResult, SimError, Stop, Tamper,
    low_bytes_mask,
};
use protocol::ghcb::{self, off};
use protocol::tdx::TdcallRegs;

/// GPA of the GHCB page in the oracle's memory.
pub const GHCB_GPA: u64 = 0x1_0000;
/// Bytes of RAM at GPA 0 (the GHCB page and the pages around it).
pub const RAM_LEN: usize = 0x4_0000;
/// How many host requests one raw request may make before the oracle gives up (a model bug:
/// every request here needs at most a few).
pub const MAX_HOST_REQUESTS: usize = 64;

/// The oracle's answers to the models' host requests (see the module table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CannedHost {
    /// What port, MMIO and RDMSR reads answer; `None`: all ones for port and MMIO reads,
    /// refused for RDMSR.
    pub read_value: Option<u64>,
    /// What CPUID answers (EAX, EBX, ECX, EDX).
    pub cpuid: [u32; 4],
}

impl CannedHost {
    /// The answer to `req`.
    pub fn answer(&self, req: &HostRequest) -> HostResult {
        match req {
            HostRequest::PortRead { size, .. } | HostRequest::MmioRead { size, .. } => {
                HostResult::Value(
                    self.read_value.unwrap_or(u64::MAX) & low_bytes_mask(u64::from(*size)),
                )
            }
            HostRequest::PortReadString { size, count, .. } => {
                HostResult::Bytes(vec![0xff; usize::from(*size) * *count as usize])
            }
            HostRequest::PortWrite { .. }
            | HostRequest::PortWriteString { .. }
            | HostRequest::MmioWrite { .. }
            | HostRequest::Hlt { .. }
            | HostRequest::ApResetHold
            | HostRequest::TdVmCallInfo { .. }
            | HostRequest::GetQuote { .. }
            | HostRequest::SetupEventNotify { .. } => HostResult::Done,
            HostRequest::Cpuid { .. } => HostResult::Cpuid(self.cpuid),
            HostRequest::Rdmsr { .. } => match self.read_value {
                Some(v) => HostResult::Value(v),
                None => HostResult::Refused,
            },
            HostRequest::Wrmsr { .. } => HostResult::Refused,
            HostRequest::MapGpa { .. } => HostResult::MapGpa(MapGpaResult::Ok {
                event_pending: false,
            }),
            HostRequest::KvmMapGpaRange { .. } => HostResult::Value(0),
        }
    }
}

/// Why the oracle could not finish a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OracleError {
    /// The model refused the canned answer (a bug in [`CannedHost`] or the model).
    #[error("the model refused the canned host answer: {0}")]
    Sim(#[from] SimError),
    /// More than [`MAX_HOST_REQUESTS`] host requests.
    #[error("more than {MAX_HOST_REQUESTS} host requests for one guest request")]
    TooManyHostRequests,
}

/// What a request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The guest resumes with this answer.
    Answer(T),
    /// KVM ends the VM (or the model does not cover the request).
    Stop(Stop),
}

/// The host requests the model made, each with the canned answer it got.
pub type HostLog = Vec<(HostRequest, HostResult)>;

/// One TDCALL with `regs` on `model`, host requests served by `host`.
pub fn tdx_call<T: Tamper>(
    model: &mut TdxModel<T>,
    regs: &TdcallRegs,
    host: &CannedHost,
) -> Result<(Outcome<TdcallRegs>, HostLog), OracleError> {
    let mut log = HostLog::new();
    let mut step = model.tdcall(regs);
    loop {
        match step {
            TdxStep::Done(r) => return Ok((Outcome::Answer(r), log)),
            TdxStep::Stop(s) => return Ok((Outcome::Stop(s), log)),
            TdxStep::Host(req) => {
                if log.len() >= MAX_HOST_REQUESTS {
                    return Err(OracleError::TooManyHostRequests);
                }
                let res = host.answer(&req);
                log.push((req, res.clone()));
                step = model.complete(res)?;
            }
        }
    }
}

/// One VMGEXIT on `model` with its GHCB MSR as it is, host requests served by `host`. The
/// answer is in the model's MSR or in `mem`'s GHCB page.
pub fn ghcb_call<T: Tamper>(
    model: &mut GhcbModel<T>,
    mem: &mut dyn GuestMemory,
    host: &CannedHost,
) -> Result<(Outcome<()>, HostLog), OracleError> {
    let mut log = HostLog::new();
    let mut step = model.vmgexit(mem);
    loop {
        match step {
            GhcbStep::Done => return Ok((Outcome::Answer(()), log)),
            GhcbStep::Stop(s) => return Ok((Outcome::Stop(s), log)),
            GhcbStep::Host(req) => {
                if log.len() >= MAX_HOST_REQUESTS {
                    return Err(OracleError::TooManyHostRequests);
                }
                let res = host.answer(&req);
                log.push((req, res.clone()));
                step = model.complete(res, mem)?;
            }
        }
    }
}

/// One 8-byte GHCB field to write: offset, value, marked valid.
pub type GhcbField = (usize, u64, bool);

/// A GHCB-page request as the guest's `Request::new()` builds it: the page zeroed, `fields`
/// written (and marked valid where asked), protocol version and usage set.
pub fn write_ghcb(
    mem: &mut dyn GuestMemory,
    gpa: u64,
    fields: &[GhcbField],
    protocol_version: u16,
    usage: u32,
) -> Result<(), super::MemoryError> {
    let mut page = vec![0u8; super::PAGE_SIZE as usize];
    for &(o, v, valid) in fields {
        page[o..o + 8].copy_from_slice(&v.to_le_bytes());
        if valid {
            let bit = ghcb::valid_bit(o);
            page[off::VALID_BITMAP + bit / 8] |= 1 << (bit % 8);
        }
    }
    page[off::PROTOCOL_VERSION..off::PROTOCOL_VERSION + 2]
        .copy_from_slice(&protocol_version.to_le_bytes());
    page[off::GHCB_USAGE..off::GHCB_USAGE + 4].copy_from_slice(&usage.to_le_bytes());
    mem.write(gpa, &page)
}

/// The GHCB page's answer as the guest reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GhcbAnswerRead {
    /// SW_EXITINFO1.
    pub info1: u64,
    /// SW_EXITINFO2.
    pub info2: u64,
    /// RAX, RBX, RCX, RDX, each if marked valid.
    pub regs: [Option<u64>; 4],
    /// SW_EXITINFO1 and SW_EXITINFO2 are marked valid (the host answered).
    pub exit_info_valid: bool,
}

/// The returned register offsets, in [`GhcbAnswerRead::regs`] order.
pub const RETURNED_REGS: [(usize, &str); 4] = [
    (off::RAX, "rax"),
    (off::RBX, "rbx"),
    (off::RCX, "rcx"),
    (off::RDX, "rdx"),
];

/// Reads the answer out of the GHCB page at `gpa`.
pub fn read_ghcb(mem: &dyn GuestMemory, gpa: u64) -> Result<GhcbAnswerRead, super::MemoryError> {
    let mut page = vec![0u8; super::PAGE_SIZE as usize];
    mem.read(gpa, &mut page)?;
    let u64_at = |o: usize| u64::from_le_bytes(page[o..o + 8].try_into().expect("8 bytes"));
    let is_valid = |o: usize| {
        let bit = ghcb::valid_bit(o);
        page[off::VALID_BITMAP + bit / 8] & (1 << (bit % 8)) != 0
    };
    let mut regs = [None; 4];
    for (slot, (o, _)) in regs.iter_mut().zip(RETURNED_REGS) {
        *slot = is_valid(o).then(|| u64_at(o));
    }
    Ok(GhcbAnswerRead {
        info1: u64_at(off::SW_EXIT_INFO_1),
        info2: u64_at(off::SW_EXIT_INFO_2),
        regs,
        exit_info_valid: is_valid(off::SW_EXIT_INFO_1) && is_valid(off::SW_EXIT_INFO_2),
    })
}

/// A fresh RAM for the SEV-ES oracle (GPA 0, [`RAM_LEN`] bytes).
pub fn ram() -> FlatMemory {
    FlatMemory::new(0, RAM_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::ghcb::GhcbConfig;
    use crate::sim::tdx::TdxConfig;
    use protocol::tdx::{leaf, status, vmcall};

    #[test]
    fn canned_reads_are_all_ones_in_the_access_size() {
        let h = CannedHost::default();
        assert_eq!(
            h.answer(&HostRequest::PortRead {
                port: 0xf00,
                size: 2
            }),
            HostResult::Value(0xffff)
        );
        let h = CannedHost {
            read_value: Some(0x1234_5678),
            ..CannedHost::default()
        };
        assert_eq!(
            h.answer(&HostRequest::MmioRead {
                gpa: 0,
                guest_gpa: 0,
                size: 1
            }),
            HostResult::Value(0x78)
        );
        assert_eq!(
            CannedHost::default().answer(&HostRequest::Rdmsr { index: 0x10 }),
            HostResult::Refused
        );
    }

    #[test]
    fn tdx_io_read_goes_through_the_canned_host() {
        let mut m = TdxModel::new(TdxConfig::default());
        let regs = TdcallRegs {
            rax: leaf::VP_VMCALL,
            rcx: 0xfc00,
            r11: vmcall::IO,
            r12: 1,
            r14: 0xf00,
            ..TdcallRegs::default()
        };
        let (out, log) = tdx_call(&mut m, &regs, &CannedHost::default()).unwrap();
        let Outcome::Answer(r) = out else {
            panic!("{out:?}")
        };
        assert_eq!((r.r10, r.r11), (status::SUCCESS, 0xff));
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn ghcb_page_round_trip() {
        let mut m = GhcbModel::new(GhcbConfig::default());
        let mut mem = ram();
        write_ghcb(
            &mut mem,
            GHCB_GPA,
            &[
                (off::SW_EXIT_CODE, ghcb::exit::HLT, true),
                (off::SW_EXIT_INFO_1, 0, true),
                (off::SW_EXIT_INFO_2, 0, true),
            ],
            2,
            0,
        )
        .unwrap();
        m.msr_write(ghcb::MSR_GHCB, GHCB_GPA).unwrap();
        let (out, log) = ghcb_call(&mut m, &mut mem, &CannedHost::default()).unwrap();
        assert_eq!(out, Outcome::Answer(()));
        assert!(log.is_empty());
        let a = read_ghcb(&mem, GHCB_GPA).unwrap();
        assert_eq!((a.info1, a.info2), (2, ghcb::error::INVALID_EVENT));
        assert_eq!(a.regs, [Some(0); 4]);
        assert!(a.exit_info_valid);
    }
}
