//! `cvmprobe sim-call`: one raw request to a simulated host's model, no guest, no KVM. It
//! prints the answer as the guest would see it: "what would KVM answer to this?" in one line.
//!
//! ```text
//! $ cvmprobe sim-call --platform tdx-sim r11=30 r12=3 r13=0 r14=0x80
//! rax=0x0 r10=0x8000000000000000 r11=0x1e r12=0x3 r13=0x0 r14=0x80 r15=0x0
//! $ cvmprobe sim-call --platform sev-es-sim exit_code=0x78 info1=0 info2=0
//! info1=0x2 info2=0x6 rax=0x0 rbx=0x0 rcx=0x0 rdx=0x0
//! $ cvmprobe sim-call --platform sev-es-sim msr=0x2
//! msr=0x2000100002f001
//! ```
//!
//! TDX input: `NAME=VALUE` for rax, rcx, rdx, rbx, rsi, rdi, r8-r15. Defaults: RAX = 0
//! (TDG.VP.VMCALL), RCX = 0xfc00 (R10-R15 exposed), everything else 0. Output: RAX, R10-R15
//! after TDCALL.
//!
//! SEV-ES input: either `msr=VALUE` (an MSR-protocol request: written to the GHCB MSR,
//! VMGEXIT, the MSR read back), or GHCB fields: exit_code, info1, info2, scratch, rax, rbx,
//! rcx, rdx, rsi, xcr0 (8-byte fields), version (u16, default 2), usage (u32, default 0), and
//! `valid=a,b,...` naming the fields marked valid (default: every 8-byte field given). A value
//! may be `ghcb+OFFSET`, the GHCB page's GPA plus an offset (the page is at
//! [`vmm::sim::oracle::GHCB_GPA`] = 0x10000 in a 256 KiB RAM at GPA 0), e.g.
//! `scratch=ghcb+0x800` for the shared buffer. Output: SW_EXITINFO1/2 and the registers KVM
//! returned marked valid.
//!
//! Values are decimal or `0x` hex. Where KVM would exit to the VMM (a port read, MMIO, a
//! MapGPA chunk, ...), the oracle answers as a VMM with no device there: reads all ones in the
//! access size (an unassigned port), writes done, MSRs refused, MapGPA done
//! ([`vmm::sim::oracle::CannedHost`]); `--read-value` sets what reads answer instead. When KVM
//! ends the VM, the line is `stop=KIND` with the detail in `detail=`.

use anyhow::{Context, Result, bail};
use protocol::ghcb::{self, off};
use protocol::kvm::KvmProfile;
use protocol::tdx::TdcallRegs;
use std::fmt::Write as _;
use vmm::sim::Stop;
use vmm::sim::ghcb::{GhcbConfig, GhcbModel};
use vmm::sim::oracle::{self, CannedHost, GHCB_GPA, HostLog, Outcome};
use vmm::sim::tdx::{TdxConfig, TdxModel};

/// Options of `sim-call`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Send one raw request to a simulated host's model (no guest, no KVM) and print KVM's answer",
    after_help = "TDX: r11=30 r12=3 r13=0 r14=0x80 (rax=0, rcx=0xfc00 by default)\n\
                  SEV-ES: msr=0x2, or exit_code=0x7b info1=0xf000210 info2=0 rax=0x41 valid=exit_code,info1,info2,rax\n\
                  Values: decimal, 0x hex, or ghcb+OFFSET (SEV-ES: the GHCB page at 0x10000)."
)]
pub struct SimCallArgs {
    /// The simulated platform.
    #[arg(long, value_enum)]
    pub platform: SimPlatform,
    /// Print the answer as one JSON object (values as "0x..." strings).
    #[arg(long)]
    pub json: bool,
    /// What port, MMIO and RDMSR reads answer (default: all ones for port and MMIO reads, as
    /// an unassigned port; RDMSR refused).
    #[arg(long, value_name = "VALUE", value_parser = parse_value)]
    pub read_value: Option<u64>,
    /// The simulated SEV-ES VM's GHCB version (2: KVM_SEV_INIT2; 1: legacy KVM_SEV_INIT).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=2))]
    pub ghcb_version: u16,
    /// The KVM release the model answers as (6.10, 6.11, 6.16, current; TDX needs 6.16 or
    /// current).
    #[arg(long, value_name = "PROFILE", default_value = "current", value_parser = crate::cli::parse_kvm)]
    pub kvm: protocol::kvm::KvmProfile,
    /// Print the host requests the model made (and the canned answers) on stderr.
    #[arg(long, short)]
    pub verbose: bool,
    /// The request, as NAME=VALUE assignments.
    #[arg(value_name = "NAME=VALUE", required = true)]
    pub request: Vec<String>,
}

/// The platforms `sim-call` models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SimPlatform {
    /// The TDX module + KVM's TDG.VP.VMCALL handling.
    TdxSim,
    /// KVM's GHCB handling for an SEV-ES guest.
    SevEsSim,
}

/// Parses a decimal or `0x` hex `u64`.
pub fn parse_value(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(&h.replace('_', ""), 16),
        None => t.replace('_', "").parse(),
    };
    r.map_err(|_| format!("`{s}` is not a number (decimal or 0x hex, up to 64 bits)"))
}

/// Splits `NAME=VALUE` assignments, refusing malformed and repeated names.
fn assignments(args: &[String]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for a in args {
        let Some((n, v)) = a.split_once('=') else {
            bail!("`{a}` is not NAME=VALUE");
        };
        let n = n.trim().to_ascii_lowercase();
        if n.is_empty() {
            bail!("`{a}`: the name is empty");
        }
        if out.iter().any(|(m, _)| *m == n) {
            bail!("`{n}` is given twice");
        }
        out.push((n, v.trim().to_string()));
    }
    Ok(out)
}

/// The answer, ready to print.
#[derive(Debug, PartialEq, Eq)]
pub struct Printed {
    /// `(name, value)` pairs in output order.
    pub values: Vec<(&'static str, u64)>,
    /// When KVM ends the VM: its kind and a description.
    pub stop: Option<(&'static str, String)>,
    /// The host requests the model made.
    pub host: HostLog,
}

impl Printed {
    /// One line of `name=0xVALUE` pairs (or `stop=KIND detail="..."`).
    pub fn line(&self) -> String {
        if let Some((kind, detail)) = &self.stop {
            return format!("stop={kind} detail={detail:?}");
        }
        let mut s = String::new();
        for (i, (n, v)) in self.values.iter().enumerate() {
            let _ = write!(s, "{}{n}={v:#x}", if i > 0 { " " } else { "" });
        }
        s
    }

    /// One JSON object: values as "0x..." strings, `stop` and `detail` when the VM ends,
    /// `host_requests` as descriptions.
    pub fn json(&self, platform: SimPlatform) -> String {
        let mut s = String::from("{");
        let name = match platform {
            SimPlatform::TdxSim => "tdx-sim",
            SimPlatform::SevEsSim => "sev-es-sim",
        };
        let _ = write!(s, "\"platform\":\"{name}\"");
        for (n, v) in &self.values {
            let _ = write!(s, ",\"{n}\":\"{v:#x}\"");
        }
        if let Some((kind, detail)) = &self.stop {
            let _ = write!(s, ",\"stop\":\"{kind}\",\"detail\":{}", json_str(detail));
        }
        s.push_str(",\"host_requests\":[");
        for (i, (req, res)) in self.host.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&json_str(&format!("{req:?} -> {res:?}")));
        }
        s.push_str("]}");
        s
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn stop(s: &Stop) -> (&'static str, String) {
    let kind = match s {
        Stop::TdxFatal { .. } => "tdx_fatal",
        Stop::SevTerm { .. } => "sev_term",
        Stop::KvmRunError { .. } => "kvm_run_error",
        Stop::NotModelled { .. } => "not_modelled",
    };
    (kind, s.to_string())
}

/// Runs the request of `a` and returns the answer.
pub fn call(a: &SimCallArgs) -> Result<Printed> {
    let host = CannedHost {
        read_value: a.read_value,
        ..CannedHost::default()
    };
    let asg = assignments(&a.request)?;
    match a.platform {
        SimPlatform::TdxSim => tdx(&asg, &host, a.kvm),
        SimPlatform::SevEsSim => sev_es(&asg, &host, a.ghcb_version, a.kvm),
    }
}

/// The TDX register names, in [`TdcallRegs`] order.
const TDX_REGS: [&str; 14] = [
    "rax", "rcx", "rdx", "rbx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
];

fn tdx(asg: &[(String, String)], host: &CannedHost, kvm: KvmProfile) -> Result<Printed> {
    let cfg = vmm::sim::profile::tdx_config(kvm, TdxConfig::default())?;
    let mut regs = TdcallRegs {
        rax: protocol::tdx::leaf::VP_VMCALL,
        rcx: protocol::conformance::EXPOSE_R10_R15,
        ..TdcallRegs::default()
    };
    for (n, v) in asg {
        let value = parse_value(v)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{n}="))?;
        let slot = match n.as_str() {
            "rax" => &mut regs.rax,
            "rcx" => &mut regs.rcx,
            "rdx" => &mut regs.rdx,
            "rbx" => &mut regs.rbx,
            "rsi" => &mut regs.rsi,
            "rdi" => &mut regs.rdi,
            "r8" => &mut regs.r8,
            "r9" => &mut regs.r9,
            "r10" => &mut regs.r10,
            "r11" => &mut regs.r11,
            "r12" => &mut regs.r12,
            "r13" => &mut regs.r13,
            "r14" => &mut regs.r14,
            "r15" => &mut regs.r15,
            other => bail!(
                "`{other}` is not a TDX register: use {} (msr= and GHCB fields are for --platform sev-es-sim)",
                TDX_REGS.join(", ")
            ),
        };
        *slot = value;
    }
    let mut model = TdxModel::new(cfg);
    let (out, log) = oracle::tdx_call(&mut model, &regs, host)?;
    Ok(match out {
        Outcome::Answer(r) => Printed {
            values: vec![
                ("rax", r.rax),
                ("r10", r.r10),
                ("r11", r.r11),
                ("r12", r.r12),
                ("r13", r.r13),
                ("r14", r.r14),
                ("r15", r.r15),
            ],
            stop: None,
            host: log,
        },
        Outcome::Stop(s) => Printed {
            values: Vec::new(),
            stop: Some(stop(&s)),
            host: log,
        },
    })
}

/// The 8-byte GHCB fields `sim-call` takes, by name.
const GHCB_FIELDS: [(&str, usize); 10] = [
    ("exit_code", off::SW_EXIT_CODE),
    ("info1", off::SW_EXIT_INFO_1),
    ("info2", off::SW_EXIT_INFO_2),
    ("scratch", off::SW_SCRATCH),
    ("rax", off::RAX),
    ("rbx", off::RBX),
    ("rcx", off::RCX),
    ("rdx", off::RDX),
    ("rsi", off::RSI),
    ("xcr0", off::XCR0),
];

fn field_offset(name: &str) -> Option<usize> {
    let name = match name {
        "sw_exit_code" => "exit_code",
        "sw_exit_info_1" => "info1",
        "sw_exit_info_2" => "info2",
        "sw_scratch" => "scratch",
        n => n,
    };
    GHCB_FIELDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, o)| *o)
}

fn field_names() -> String {
    GHCB_FIELDS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A GHCB field value: a number or `ghcb+OFFSET`.
fn ghcb_value(v: &str) -> Result<u64> {
    if let Some(o) = v.strip_prefix("ghcb+") {
        let o = parse_value(o).map_err(anyhow::Error::msg)?;
        return GHCB_GPA
            .checked_add(o)
            .with_context(|| format!("`{v}` overflows"));
    }
    if v == "ghcb" {
        return Ok(GHCB_GPA);
    }
    parse_value(v).map_err(anyhow::Error::msg)
}

fn sev_es(
    asg: &[(String, String)],
    host: &CannedHost,
    ghcb_version: u16,
    kvm: KvmProfile,
) -> Result<Printed> {
    let mut model = GhcbModel::new(vmm::sim::profile::ghcb_config(
        kvm,
        GhcbConfig {
            ghcb_version,
            ..GhcbConfig::default()
        },
    ));
    let mut mem = oracle::ram();
    if let Some((_, v)) = asg.iter().find(|(n, _)| n == "msr") {
        if asg.len() > 1 {
            bail!("msr= is an MSR-protocol request: give it alone, without GHCB fields");
        }
        let value = parse_value(v).map_err(anyhow::Error::msg).context("msr=")?;
        if value & ghcb::msr::INFO_MASK == 0 {
            bail!(
                "msr={value:#x}: the low 12 bits are 0, which is a GHCB GPA, not an MSR-protocol request (give GHCB fields instead)"
            );
        }
        model
            .msr_write(ghcb::MSR_GHCB, value)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (out, log) = oracle::ghcb_call(&mut model, &mut mem, host)?;
        return Ok(match out {
            Outcome::Answer(()) => Printed {
                values: vec![("msr", model.ghcb_msr())],
                stop: None,
                host: log,
            },
            Outcome::Stop(s) => Printed {
                values: Vec::new(),
                stop: Some(stop(&s)),
                host: log,
            },
        });
    }
    let mut fields: Vec<(usize, u64)> = Vec::new();
    let mut valid: Option<Vec<usize>> = None;
    let (mut version, mut usage) = (ghcb::GHCB_VERSION_MAX, 0u32);
    for (n, v) in asg {
        match n.as_str() {
            "valid" => {
                let mut list = Vec::new();
                for f in v.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    let o = field_offset(f).with_context(|| {
                        format!("valid=: `{f}` is not a GHCB field ({})", field_names())
                    })?;
                    list.push(o);
                }
                valid = Some(list);
            }
            "version" => {
                let x = parse_value(v)
                    .map_err(anyhow::Error::msg)
                    .context("version=")?;
                version = u16::try_from(x)
                    .map_err(|_| anyhow::anyhow!("version={v}: the field is 16 bits"))?;
            }
            "usage" => {
                let x = parse_value(v)
                    .map_err(anyhow::Error::msg)
                    .context("usage=")?;
                usage = u32::try_from(x)
                    .map_err(|_| anyhow::anyhow!("usage={v}: the field is 32 bits"))?;
            }
            name => {
                let o = field_offset(name).with_context(|| {
                    format!(
                        "`{name}` is not a GHCB field: use msr=, {}, valid=, version= or usage=",
                        field_names()
                    )
                })?;
                fields.push((o, ghcb_value(v).with_context(|| format!("{name}="))?));
            }
        }
    }
    if fields.is_empty() {
        bail!("no GHCB field given: at least exit_code=, info1= and info2= (or msr=)");
    }
    let valid = valid.unwrap_or_else(|| fields.iter().map(|(o, _)| *o).collect());
    let mut page: Vec<oracle::GhcbField> = fields
        .iter()
        .map(|&(o, v)| (o, v, valid.contains(&o)))
        .collect();
    for &o in &valid {
        if !fields.iter().any(|(f, _)| *f == o) {
            // Marked valid but not written: a zero field marked valid.
            page.push((o, 0, true));
        }
    }
    oracle::write_ghcb(&mut mem, GHCB_GPA, &page, version, usage)?;
    model
        .msr_write(ghcb::MSR_GHCB, GHCB_GPA)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (out, log) = oracle::ghcb_call(&mut model, &mut mem, host)?;
    Ok(match out {
        Outcome::Answer(()) => {
            let r = oracle::read_ghcb(&mem, GHCB_GPA)?;
            let mut values = vec![("info1", r.info1), ("info2", r.info2)];
            for ((_, name), v) in oracle::RETURNED_REGS.iter().zip(r.regs) {
                if let Some(v) = v {
                    values.push((name, v));
                }
            }
            Printed {
                values,
                stop: None,
                host: log,
            }
        }
        Outcome::Stop(s) => Printed {
            values: Vec::new(),
            stop: Some(stop(&s)),
            host: log,
        },
    })
}

/// `cvmprobe sim-call`: prints the answer; `Ok(true)`.
pub fn run(a: &SimCallArgs) -> Result<bool> {
    let p = call(a)?;
    if a.verbose {
        for (req, res) in &p.host {
            eprintln!("cvmprobe sim-call: host request {req:?} -> canned answer {res:?}");
        }
    }
    if a.json {
        println!("{}", p.json(a.platform));
    } else {
        println!("{}", p.line());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse() {
        assert_eq!(parse_value("0x10"), Ok(16));
        assert_eq!(parse_value("30"), Ok(30));
        assert_eq!(parse_value("0xffff_ffff_ffff_ffff"), Ok(u64::MAX));
        assert!(parse_value("0x1_0000_0000_0000_0000").is_err());
        assert!(parse_value("ten").is_err());
        assert_eq!(ghcb_value("ghcb+0x800").unwrap(), 0x1_0800);
    }

    #[test]
    fn assignments_refuse_repeats_and_garbage() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(assignments(&s(&["r11=1", "R11=2"])).is_err());
        assert!(assignments(&s(&["r11"])).is_err());
        assert!(assignments(&s(&["=1"])).is_err());
        assert_eq!(
            assignments(&s(&["R12 = 3"])).unwrap(),
            [("r12".to_string(), "3".to_string())]
        );
    }
}
