//! Counting the guest's instructions: with `VmConfig::count_instructions` the VMM
//! single-steps the whole run (KVM_GUESTDBG_SINGLESTEP: one debug exit per instruction, or
//! per iteration of a REP string instruction) and attributes each step to the case the test
//! device says is running. Guest ring-0 instructions are emulated on the CI hosts at about
//! 575 ns each (DESIGN.md), so these counts say where a run's time goes; a counting run is
//! slow (an exit per instruction) and is never a timing run.

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
}

impl InstructionCounts {
    /// One single step while `case` runs.
    pub(super) fn step(&mut self, case: Option<(&'static str, &'static str)>) {
        self.total += 1;
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
        for case in [None, None, a, a, a, b, None, a, m] {
            c.step(case);
        }
        assert_eq!(c.total, 9);
        assert_eq!(c.per_case, [(None, 3), (a, 4), (b, 1), (m, 1)]);
        assert_eq!(c.of_case("io", "u8"), 4);
        assert_eq!(c.per_suite(), [("io", 5), ("mmio", 1)]);
    }
}
