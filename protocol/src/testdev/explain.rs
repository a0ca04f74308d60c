//! The host's check of one case against its declaration, as a value with a one-sentence
//! [`Display`](core::fmt::Display): the check the built-in VMM's test device makes, for a
//! host that logs the accesses itself (the KVM selftest, `selftest/cvmprobe_test.c`, through
//! the guest library's `cvmprobe_check_case`). No allocation: it runs inside that selftest's
//! host half, which shares the guest library's `no_std` build.

use super::{DataMismatch, Mismatch, Seen, Step, check, check_data};
use crate::access::Direction;
use core::fmt;

/// Accesses of one case the check looks at, at most: the longest declaration is far shorter
/// (`DECLARED`), and one access past the declaration is enough to say what is wrong.
pub const CHECK_MAX: usize = 64;

/// Where a case's accesses part from its declaration, or its data from what it reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// One access too many, the others as declared: access `index` (0-based).
    Undeclared {
        /// The access.
        seen: Seen,
        /// Its RIP.
        rip: u64,
        /// Its position.
        index: usize,
        /// Accesses made.
        count: usize,
        /// Accesses declared.
        declared: usize,
    },
    /// One access too few, the others as declared: declared access `index` was not made.
    NotMade {
        /// The declared step.
        expected: Step,
        /// Its position.
        index: usize,
        /// Accesses made.
        count: usize,
        /// Accesses declared.
        declared: usize,
    },
    /// Access `index` is not the declared one.
    Differs {
        /// The declared step.
        expected: Step,
        /// The access made.
        seen: Seen,
        /// Its RIP.
        rip: u64,
        /// Its position.
        index: usize,
    },
    /// The accesses stopped short of the declaration.
    Missing {
        /// The first declared step not made.
        expected: Step,
        /// Accesses made.
        count: usize,
        /// Accesses declared.
        declared: usize,
    },
    /// Accesses after the declared ones.
    Extra {
        /// The first of them.
        seen: Seen,
        /// Its RIP.
        rip: u64,
        /// Its position.
        index: usize,
        /// Accesses made.
        count: usize,
        /// Accesses declared.
        declared: usize,
    },
    /// More accesses than the check looks at.
    TooMany {
        /// Accesses made.
        count: usize,
    },
    /// The data of access `index` differs from the value the case reported for it.
    DataDiffers {
        /// The access.
        seen: Seen,
        /// Its RIP.
        rip: u64,
        /// Its position.
        index: usize,
        /// What the device received (write) or answered (read).
        logged: u64,
        /// What the guest says it wrote or read.
        reported: u64,
    },
    /// The case reported a different number of values than it made accesses.
    DataCount {
        /// Values reported.
        reported: usize,
        /// Accesses made.
        accesses: usize,
    },
}

/// The steps a declaration lists, repetitions expanded.
pub fn declared_len(steps: &[Step]) -> usize {
    steps.iter().map(|s| usize::from(s.times)).sum()
}

/// Checks a case's accesses (`seen`, their `rips` and `data`: written values as received,
/// read values as answered, in order) against `steps`, then their data against `reported`.
/// A case that made no access passes (the guest announces skipped cases too), and so does one
/// that reported nothing: whether it should have is for whoever sees its result.
pub fn check_case(
    steps: &[Step],
    seen: &[Seen],
    rips: &[u64],
    data: &[(Direction, u64)],
    reported: &[u64],
) -> Result<(), Finding> {
    let count = seen.len();
    if count == 0 {
        return Ok(());
    }
    if count > CHECK_MAX {
        return Err(Finding::TooMany { count });
    }
    let rip = |i: usize| rips.get(i).copied().unwrap_or(0);
    let declared = declared_len(steps);
    if let Err(m) = check(steps, seen) {
        return Err(explain(m, steps, seen, &rip, declared));
    }
    if reported.is_empty() {
        return Ok(());
    }
    match check_data(data, reported) {
        Ok(()) => Ok(()),
        Err(DataMismatch::Differs {
            index,
            logged,
            reported,
            ..
        }) => Err(Finding::DataDiffers {
            seen: seen[index],
            rip: rip(index),
            index,
            logged,
            reported,
        }),
        Err(DataMismatch::Count { logged, reported }) => Err(Finding::DataCount {
            reported,
            accesses: logged,
        }),
    }
}

/// `seen` with access `skip` left out, or with `add` put in at `at`: whether that matches.
fn matches_with(
    steps: &[Step],
    seen: &[Seen],
    skip: Option<usize>,
    add: Option<(usize, Seen)>,
) -> bool {
    let mut buf = [seen[0]; CHECK_MAX + 1];
    let mut n = 0;
    for (i, s) in seen.iter().enumerate() {
        if let Some((at, a)) = add
            && at == i
        {
            buf[n] = a;
            n += 1;
        }
        if skip != Some(i) {
            buf[n] = *s;
            n += 1;
        }
    }
    if let Some((at, a)) = add
        && at == seen.len()
    {
        buf[n] = a;
        n += 1;
    }
    check(steps, &buf[..n]).is_ok()
}

fn explain(
    m: Mismatch,
    steps: &[Step],
    seen: &[Seen],
    rip: &dyn Fn(usize) -> u64,
    declared: usize,
) -> Finding {
    let count = seen.len();
    match m {
        Mismatch::Differs {
            index,
            expected,
            seen: a,
        } => {
            if count == declared + 1 && matches_with(steps, seen, Some(index), None) {
                return Finding::Undeclared {
                    seen: a,
                    rip: rip(index),
                    index,
                    count,
                    declared,
                };
            }
            let step = Seen {
                space: expected.space,
                offset: expected.offset,
                size: expected.width.bytes(),
                dir: expected.dir,
            };
            if count + 1 == declared && matches_with(steps, seen, None, Some((index, step))) {
                return Finding::NotMade {
                    expected,
                    index,
                    count,
                    declared,
                };
            }
            Finding::Differs {
                expected,
                seen: a,
                rip: rip(index),
                index,
            }
        }
        Mismatch::Missing { expected, .. } => Finding::Missing {
            expected,
            count,
            declared,
        },
        Mismatch::Extra { index, seen: a } => Finding::Extra {
            seen: a,
            rip: rip(index),
            index,
            count,
            declared,
        },
    }
}

/// `PIO+0xc (VALUE)`, `MMIO+0x1010 (SCRATCH+0x10)`, `PIO+0x18`.
pub struct Place(pub super::Space, pub u64);

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Place(space, offset) = *self;
        let s = match space {
            super::Space::Pio => "PIO",
            super::Space::Mmio => "MMIO",
        };
        match super::register_name(space, offset) {
            Some((name, 0)) => write!(f, "{s}+{offset:#x} ({name})"),
            Some((name, at)) => write!(f, "{s}+{offset:#x} ({name}+{at:#x})"),
            None => write!(f, "{s}+{offset:#x}"),
        }
    }
}

/// ` at rip 0x...`, or nothing when the host did not record the RIP (0).
struct At(u64);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            rip => write!(f, " at rip {rip:#x}"),
        }
    }
}

/// `a 4-byte read of PIO+0xc (VALUE)`.
struct Describe(Seen);

impl fmt::Display for Describe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.0.dir {
            Direction::Read => "read",
            Direction::Write => "write",
        };
        write!(
            f,
            "a {}-byte {dir} of {}",
            self.0.size,
            Place(self.0.space, self.0.offset)
        )
    }
}

fn step_seen(s: &Step) -> Seen {
    Seen {
        space: s.space,
        offset: s.offset,
        size: s.width.bytes(),
        dir: s.dir,
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Finding::Undeclared {
                seen,
                rip,
                index,
                count,
                declared,
            } => write!(
                f,
                "undeclared access: {}{}, made as access {} of {count} (the other {declared} \
                 match the declaration)",
                Describe(seen),
                At(rip),
                index + 1
            ),
            Finding::NotMade {
                expected,
                index,
                count,
                declared,
            } => write!(
                f,
                "missing: declared {declared} accesses, saw {count}; access {} ({}) was not \
                 made (the others match the declaration)",
                index + 1,
                Describe(step_seen(&expected))
            ),
            Finding::Differs {
                expected,
                seen,
                rip,
                index,
            } => write!(
                f,
                "access {}: expected {}, saw {}{}",
                index + 1,
                Describe(step_seen(&expected)),
                Describe(seen),
                At(rip)
            ),
            Finding::Missing {
                expected,
                count,
                declared,
            } => write!(
                f,
                "missing: declared {declared} accesses, saw {count}; the first missing one is {}",
                Describe(step_seen(&expected))
            ),
            Finding::Extra {
                seen,
                rip,
                index,
                count,
                declared,
            } => {
                write!(
                    f,
                    "undeclared access: {}{}, access {} of {count} (",
                    Describe(seen),
                    At(rip),
                    index + 1
                )?;
                if declared == 0 {
                    write!(f, "the case declares none)")
                } else {
                    write!(f, "after the {declared} declared)")
                }
            }
            Finding::TooMany { count } => write!(
                f,
                "{count} accesses, more than the {CHECK_MAX} the check looks at"
            ),
            Finding::DataDiffers {
                seen,
                rip,
                index,
                logged,
                reported,
            } => {
                let (device, guest) = match seen.dir {
                    Direction::Write => ("received", "wrote"),
                    Direction::Read => ("answered", "read"),
                };
                write!(
                    f,
                    "data: access {} ({}{}): the device {device} {logged:#x}, the guest says it \
                     {guest} {reported:#x}",
                    index + 1,
                    Describe(seen),
                    At(rip)
                )
            }
            Finding::DataCount { reported, accesses } => write!(
                f,
                "data: the case reported {reported} values for {accesses} accesses"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdev::declared;

    fn log(steps: &[Step]) -> Vec<Seen> {
        steps
            .iter()
            .flat_map(|s| core::iter::repeat_n(step_seen(s), usize::from(s.times)))
            .collect()
    }

    fn data(seen: &[Seen]) -> Vec<(Direction, u64)> {
        seen.iter()
            .enumerate()
            .map(|(i, s)| (s.dir, i as u64 * 3))
            .collect()
    }

    #[test]
    fn a_declared_sequence_with_its_data_passes() {
        let steps = declared("io", "u16_lanes");
        let seen = log(steps);
        let d = data(&seen);
        let reported: Vec<u64> = d.iter().map(|&(_, v)| v).collect();
        let rips = vec![0x1000; seen.len()];
        assert_eq!(check_case(steps, &seen, &rips, &d, &reported), Ok(()));
        assert_eq!(check_case(steps, &seen, &rips, &d, &[]), Ok(()));
        assert_eq!(check_case(steps, &[], &[], &[], &[]), Ok(()));
    }

    #[test]
    fn one_access_too_many_is_named_undeclared() {
        let steps = declared("io", "u32_roundtrip");
        let mut seen = log(steps);
        let value = Seen {
            space: crate::testdev::Space::Pio,
            offset: u64::from(crate::testdev::pio::VALUE),
            size: 4,
            dir: Direction::Read,
        };
        seen.insert(0, value);
        let rips: Vec<u64> = (0..seen.len() as u64).map(|i| 0x2000 + i).collect();
        let e = check_case(steps, &seen, &rips, &data(&seen), &[]).unwrap_err();
        assert!(matches!(
            e,
            Finding::Undeclared {
                index: 0,
                count: 9,
                declared: 8,
                ..
            }
        ));
        let text = format!("{e}");
        assert_eq!(
            text,
            "undeclared access: a 4-byte read of PIO+0xc (VALUE) at rip 0x2000, made as access 1 \
             of 9 (the other 8 match the declaration)"
        );
    }

    #[test]
    fn one_access_too_few_is_named_not_made() {
        let steps = declared("io", "u16_lanes");
        let mut seen = log(steps);
        seen.remove(2);
        let e = check_case(steps, &seen, &[], &data(&seen), &[]).unwrap_err();
        assert!(matches!(e, Finding::NotMade { index: 2, .. }), "{e:?}");
        assert!(format!("{e}").starts_with("missing: declared 7 accesses, saw 6; access 3"));
    }

    #[test]
    fn extra_missing_and_differing_accesses_are_told_apart() {
        let steps = declared("io", "u16_lanes");
        let seen = log(steps);
        let short = &seen[..3];
        assert!(matches!(
            check_case(steps, short, &[], &data(short), &[]),
            Err(Finding::Missing {
                count: 3,
                declared: 7,
                ..
            })
        ));
        let none = declared("cpuid", "max_leaves");
        let e = check_case(none, &seen[..1], &[0x3000], &data(&seen[..1]), &[]).unwrap_err();
        assert!(format!("{e}").ends_with("(the case declares none)"), "{e}");
        let mut wrong = seen.clone();
        wrong[1].size = 4;
        wrong[2].size = 4;
        assert!(matches!(
            check_case(steps, &wrong, &[], &data(&wrong), &[]),
            Err(Finding::Differs { index: 1, .. })
        ));
        let many = vec![seen[0]; CHECK_MAX + 1];
        assert!(matches!(
            check_case(steps, &many, &[], &data(&many), &[]),
            Err(Finding::TooMany { .. })
        ));
    }

    #[test]
    fn data_that_differs_from_the_report_is_named() {
        let steps = declared("io", "u16_lanes");
        let seen = log(steps);
        let d = data(&seen);
        let mut reported: Vec<u64> = d.iter().map(|&(_, v)| v).collect();
        reported[1] ^= 1;
        let e = check_case(steps, &seen, &[], &d, &reported).unwrap_err();
        assert!(matches!(
            e,
            Finding::DataDiffers {
                index: 1,
                logged: 3,
                reported: 2,
                ..
            }
        ));
        let text = format!("{e}");
        assert!(
            text.contains("the device answered 0x3, the guest says it read 0x2"),
            "{text}"
        );
        // No RIP recorded (0): none printed.
        assert!(!text.contains("rip"), "{text}");
        reported[1] ^= 1;
        let e = check_case(steps, &seen, &[], &d, &reported[..2]).unwrap_err();
        assert_eq!(
            e,
            Finding::DataCount {
                reported: 2,
                accesses: 7
            }
        );
    }
}
