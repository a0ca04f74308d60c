//! KVM releases as model configurations: what `--kvm PROFILE` sets in [`GhcbConfig`] and
//! [`TdxConfig`]. Each knob is one `match` on the profile, citing the change that made the
//! difference (see [`protocol::kvm`] for the releases and where they were read).
//!
//! Knobs that are the same in every release a profile names (the PV-feature enforcement and
//! the MAP_GPA_RANGE user exit are VMM choices, not KVM versions; v6.16-rc1's answer to an
//! unknown TDVMCALL sub-function was never released) keep the base configuration's value.

use super::ghcb::{GhcbConfig, SnpOnlyExits};
use super::tdx::{MapGpaErrors, TdxConfig, UnknownSubfunction, X2apicMsrs};
use protocol::kvm::KvmProfile;

/// Why a profile cannot play a platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// KVM had no TDX host support before v6.16.
    #[error("KVM {0} has no TDX host support (it landed in v6.16): pick --kvm 6.16 or current")]
    NoTdx(&'static str),
}

/// `base` with the SEV-ES answers of `kvm`.
pub fn ghcb_config(kvm: KvmProfile, base: GhcbConfig) -> GhcbConfig {
    use KvmProfile::*;
    GhcbConfig {
        // sev_handle_vmgexit_msr_protocol(): the SNP-only MSR codes are known (and end a
        // non-SNP guest) since SEV-SNP host support, v6.11.
        kvm_has_snp: kvm >= V6_11,
        snp_only_exits: match kvm {
            V6_10 => SnpOnlyExits::Unknown,
            // sev_es_validate_vmgexit(): `!sev_snp_guest()` under MISSING_INPUT.
            V6_11 | V6_16 => SnpOnlyExits::MissingInput,
            // sev_handle_vmgexit(): is_snp_only_vmgexit() before any valid bit.
            Current => SnpOnlyExits::InvalidEventFirst,
        },
        // The 2026 fix series (GHCB v2: scratch inside the GHCB, MMIO <= 8 bytes).
        ghcb_v2_limits: kvm >= Current,
        ..base
    }
}

/// `base` with the TDX answers of `kvm`, or why that KVM cannot run a TD.
pub fn tdx_config(kvm: KvmProfile, base: TdxConfig) -> Result<TdxConfig, ProfileError> {
    use KvmProfile::*;
    if !kvm.has_tdx() {
        return Err(ProfileError::NoTdx(kvm.name()));
    }
    Ok(TdxConfig {
        // tdx_complete_vmcall_map_gpa(): v6.16 answers INVALID_OPERAND for any VMM error;
        // current KVM EAGAIN -> RETRY, EINVAL -> INVALID_OPERAND (kvm-x86 tdx.c 09c6f74ecb86).
        map_gpa_errors: match kvm {
            V6_10 | V6_11 | V6_16 => MapGpaErrors::AllInvalid,
            Current => MapGpaErrors::RetryOnEagain,
        },
        // tdx_has_emulated_msr(): the x2APIC ranges were wrong from v6.16 until the 2026-03
        // fix ("KVM: TDX: Fix APIC MSR ranges in tdx_has_emulated_msr()").
        x2apic_msrs: match kvm {
            V6_10 | V6_11 | V6_16 => X2apicMsrs::BeforeFix,
            Current => X2apicMsrs::Fixed,
        },
        // handle_tdvmcall(): SUBFUNC_UNSUPPORTED in every release (v6.16-rc1's
        // INVALID_OPERAND never shipped).
        unknown_subfunction: UnknownSubfunction::SubfuncUnsupported,
        ..base
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_is_the_default_configuration() {
        assert_eq!(
            ghcb_config(KvmProfile::Current, GhcbConfig::default()),
            GhcbConfig::default()
        );
        let t = tdx_config(KvmProfile::Current, TdxConfig::default()).unwrap();
        assert_eq!(t, TdxConfig::default());
    }

    #[test]
    fn older_profiles() {
        let g = ghcb_config(KvmProfile::V6_10, GhcbConfig::default());
        assert!(!g.kvm_has_snp && !g.ghcb_v2_limits);
        assert_eq!(g.snp_only_exits, SnpOnlyExits::Unknown);
        let g = ghcb_config(KvmProfile::V6_16, GhcbConfig::default());
        assert!(g.kvm_has_snp && !g.ghcb_v2_limits);
        assert_eq!(g.snp_only_exits, SnpOnlyExits::MissingInput);
        assert_eq!(
            tdx_config(KvmProfile::V6_11, TdxConfig::default()),
            Err(ProfileError::NoTdx("6.11"))
        );
        let t = tdx_config(KvmProfile::V6_16, TdxConfig::default()).unwrap();
        assert_eq!(t.map_gpa_errors, MapGpaErrors::AllInvalid);
        assert_eq!(t.x2apic_msrs, X2apicMsrs::BeforeFix);
        let rc1 = TdxConfig {
            unknown_subfunction: UnknownSubfunction::InvalidOperand,
            ..TdxConfig::default()
        };
        for k in [KvmProfile::V6_16, KvmProfile::Current] {
            assert_eq!(
                tdx_config(k, rc1.clone()).unwrap().unknown_subfunction,
                UnknownSubfunction::SubfuncUnsupported,
                "no release answers as v6.16-rc1"
            );
        }
    }
}
