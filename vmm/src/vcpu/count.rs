//! Counting the guest's instructions: with `VmConfig::count_instructions` the VMM
//! single-steps the run (KVM_GUESTDBG_SINGLESTEP: one debug exit per instruction; a REP
//! string instruction counts once on these hosts) and attributes each step to the case the
//! test device says is running. Guest ring-0 instructions are emulated on the CI hosts at
//! about 575 ns each (DESIGN.md), so these counts say where a run's time goes; a counting run
//! is slow (an exit per instruction) and is never a timing run.
//!
//! Two suites run unstepped ([`NOT_COUNTED`]): `halt` waits for a 50 µs APIC timer, which
//! fires long before a stepped guest reaches its HLT, and `memslot` single-steps itself
//! while its page is MMIO (converting its exits relies on that bookkeeping alone).

/// Suites whose cases are not single-stepped in a counting run (see the module docs).
pub const NOT_COUNTED: [&str; 2] = ["halt", "memslot"];

/// The guest's instructions in one run, counted by single-stepping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstructionCounts {
    /// Single steps in the whole run.
    pub total: u64,
    /// Steps per case (`suite.case`), in the order the cases first ran; steps outside any
    /// case are under `None` (boot, KTAP output between cases, the verdict).
    pub per_case: Vec<(Option<(&'static str, &'static str)>, u64)>,
    /// Trap exits (TDCALL / VMGEXIT breakpoints answered by a simulated host): requests,
    /// which a step does not count (the host, not the CPU, executes them).
    pub traps: u64,
    /// Steps per guest RIP (the instruction about to run at the step exit), for a profile
    /// by function ([`Self::by_function`]).
    pub per_rip: std::collections::HashMap<u64, u64>,
}

impl InstructionCounts {
    /// Whether the run is single-stepped while `case` runs ([`NOT_COUNTED`]).
    pub fn counts(case: Option<(&'static str, &'static str)>) -> bool {
        case.is_none_or(|(suite, _)| !NOT_COUNTED.contains(&suite))
    }

    /// One single step while `case` runs, stopped at `rip`.
    pub(super) fn step(&mut self, case: Option<(&'static str, &'static str)>, rip: u64) {
        self.total += 1;
        *self.per_rip.entry(rip).or_default() += 1;
        match self.per_case.last_mut() {
            Some((c, n)) if *c == case => *n += 1,
            _ => match self.per_case.iter_mut().find(|(c, _)| *c == case) {
                Some((_, n)) => *n += 1,
                None => self.per_case.push((case, 1)),
            },
        }
    }

    /// Steps while `suite.case` ran.
    pub fn of_case(&self, suite: &str, case: &str) -> u64 {
        self.per_case
            .iter()
            .filter(|(c, _)| *c == Some((suite, case)))
            .map(|(_, n)| n)
            .sum()
    }

    /// Steps per function of the kernel ELF at `kernel` (the symbol each stepped RIP falls
    /// in, demangled, hashes dropped; in asm, the label before it), most first; RIPs outside
    /// every function are under `?`.
    pub fn by_function(&self, kernel: &std::path::Path) -> Result<Vec<(String, u64)>, String> {
        use object::{Object, ObjectSymbol, SymbolKind};
        let bytes = std::fs::read(kernel).map_err(|e| format!("{}: {e}", kernel.display()))?;
        let file = object::File::parse(&*bytes).map_err(|e| e.to_string())?;
        // Sized functions, and the asm labels (size 0) that start code of their own (the
        // TDCALL and VMGEXIT wrappers are `global_asm!`).
        let mut funcs: Vec<(u64, u64, String)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text)
            .filter_map(|s| {
                let name = s.name().ok()?;
                Some((
                    s.address(),
                    s.size(),
                    format!("{:#}", rustc_demangle::demangle(name)),
                ))
            })
            .collect();
        funcs.sort();
        let mut out: std::collections::HashMap<String, u64> = Default::default();
        for (&rip, &n) in &self.per_rip {
            let i = funcs.partition_point(|f| f.0 <= rip);
            // The innermost sized function holding `rip`, else the nearest label before it.
            let sized = funcs[..i]
                .iter()
                .rev()
                .take(8)
                .find(|(start, size, _)| rip < start + size);
            let name = match (sized, i.checked_sub(1).map(|i| &funcs[i])) {
                (Some((_, _, name)), _) => name.clone(),
                (None, Some((_, 0, label))) => label.clone(),
                _ => "?".into(),
            };
            *out.entry(name).or_default() += n;
        }
        let mut out: Vec<_> = out.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Steps per suite, in the order the suites first ran (steps outside cases excluded).
    pub fn per_suite(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> = Vec::new();
        for (suite, n) in self
            .per_case
            .iter()
            .filter_map(|(c, n)| Some((c.as_ref()?.0, *n)))
        {
            match out.iter_mut().find(|(s, _)| *s == suite) {
                Some((_, m)) => *m += n,
                None => out.push((suite, n)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_go_to_the_running_case() {
        let mut c = InstructionCounts::default();
        let a = Some(("io", "u8"));
        let b = Some(("io", "u16"));
        let m = Some(("mmio", "u8"));
        for (i, case) in [None, None, a, a, a, b, None, a, m].into_iter().enumerate() {
            c.step(case, 0x1000 + i as u64 % 2);
        }
        assert_eq!(c.total, 9);
        assert_eq!((c.per_rip[&0x1000], c.per_rip[&0x1001]), (5, 4));
        assert_eq!(c.per_case, [(None, 3), (a, 4), (b, 1), (m, 1)]);
        assert_eq!(c.of_case("io", "u8"), 4);
        assert_eq!(c.per_suite(), [("io", 5), ("mmio", 1)]);
        assert!(InstructionCounts::counts(None) && InstructionCounts::counts(a));
        assert!(!InstructionCounts::counts(Some(("memslot", "load_u8"))));
    }
}
