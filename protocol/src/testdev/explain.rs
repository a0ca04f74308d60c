//! The host's check of one case against its declaration, as a value with a one-sentence
//! [`Display`](core::fmt::Display): the check the built-in VMM's test device makes (through
//! [`check_log`], on the part of the log it keeps), and the one a host that logs the accesses
//! itself makes (the KVM selftest, `selftest/cvmprobe_test.c`, through the guest library's
//! `cvmprobe_check_case` and [`check_case`]). No allocation: it runs inside that selftest's
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

/// One case's log as a host kept it: its first accesses (`seen`, their `rips` and `data`:
/// written values as received, read values as answered, in order) and the first values it
/// reported, with how many of each it made in all. A host may keep only the first few: the
/// built-in VMM keeps the declared count plus one access (enough for the check) and
/// [`super::DATA_MAX`] + 1 values, so a runaway case neither grows its memory nor changes its
/// verdict.
#[derive(Clone, Copy, Debug)]
pub struct CaseLog<'a> {
    /// The first accesses, at most [`CHECK_MAX`] of them.
    pub seen: &'a [Seen],
    /// Their RIPs (0, or missing: not recorded).
    pub rips: &'a [u64],
    /// Their data, one entry per kept access.
    pub data: &'a [(Direction, u64)],
    /// Accesses the case made: `seen.len()`, or more when the host kept only the first.
    pub accesses: usize,
    /// The first values the case reported.
    pub reported: &'a [u64],
    /// Values the case reported: `reported.len()`, or more when the host kept only the first.
    pub reported_count: usize,
}

impl<'a> CaseLog<'a> {
    /// A log that kept every access and every reported value.
    pub fn complete(
        seen: &'a [Seen],
        rips: &'a [u64],
        data: &'a [(Direction, u64)],
        reported: &'a [u64],
    ) -> Self {
        Self {
            seen,
            rips,
            data,
            accesses: seen.len(),
            reported,
            reported_count: reported.len(),
        }
    }
}

/// Checks a case's accesses (`seen`, their `rips` and `data`: written values as received,
/// read values as answered, in order) against `steps`, then their data against `reported`:
/// [`check_log`] of a [`CaseLog::complete`].
pub fn check_case(
    steps: &[Step],
    seen: &[Seen],
    rips: &[u64],
    data: &[(Direction, u64)],
    reported: &[u64],
) -> Result<(), Finding> {
    check_log(steps, &CaseLog::complete(seen, rips, data, reported))
}

/// Checks a case's accesses against `steps`, then, once they match, their data against the
/// values the case reported. A case that made no access passes the first half (the guest
/// announces skipped cases too), and one that reported nothing passes the second: whether it
/// should have is for whoever sees its result. Accesses are numbered from 1 in the case; an
/// access or a step is named only from the kept part of the log, the counts are the case's.
pub fn check_log(steps: &[Step], log: &CaseLog<'_>) -> Result<(), Finding> {
    let seen = log.seen;
    let count = log.accesses.max(seen.len());
    if count > 0 {
        if seen.len() > CHECK_MAX {
            return Err(Finding::TooMany { count });
        }
        let rip = |i: usize| log.rips.get(i).copied().unwrap_or(0);
        if let Err(m) = check(steps, seen) {
            return Err(explain(m, steps, seen, &rip, count, declared_len(steps)));
        }
    }
    let reported_count = log.reported_count.max(log.reported.len());
    let data = &log.data[..log.data.len().min(seen.len())];
    // Nothing reported is for the caller; data the host did not keep cannot be compared
    // (and a case that made more accesses than it kept failed the first half).
    if reported_count == 0 || count > data.len() {
        return Ok(());
    }
    match check_data(data, log.reported) {
        Ok(()) if reported_count == log.reported.len() => Ok(()),
        Err(DataMismatch::Differs {
            index,
            logged,
            reported,
            ..
        }) => Err(Finding::DataDiffers {
            seen: seen[index],
            rip: log.rips.get(index).copied().unwrap_or(0),
            index,
            logged,
            reported,
        }),
        Ok(()) | Err(DataMismatch::Count { .. }) => Err(Finding::DataCount {
            reported: reported_count,
            accesses: count,
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

/// The finding for `m`. `seen` holds the case's first accesses (all of them when `count`, the
/// accesses it made, is `seen.len()`), `declared` is how many `steps` lists.
fn explain(
    m: Mismatch,
    steps: &[Step],
    seen: &[Seen],
    rip: &dyn Fn(usize) -> u64,
    count: usize,
    declared: usize,
) -> Finding {
    // One access too many, or one too few, with the rest in order: said so, when the whole
    // sequence is at hand to tell.
    let complete = count == seen.len();
    match m {
        Mismatch::Differs {
            index,
            expected,
            seen: a,
        } => {
            if complete && count == declared + 1 && matches_with(steps, seen, Some(index), None) {
                return Finding::Undeclared {
                    seen: a,
                    rip: rip(index),
                    index,
                    count,
                    declared,
                };
            }
            let step = step_seen(&expected);
            if complete
                && count + 1 == declared
                && matches_with(steps, seen, None, Some((index, step)))
            {
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
    #[test]
    fn a_log_that_kept_only_the_first_accesses_counts_them_all() {
        let steps = declared("io", "host_values");
        let mut seen = log(steps);
        let id = Seen {
            space: crate::testdev::Space::Pio,
            offset: u64::from(crate::testdev::pio::ID),
            size: 4,
            dir: Direction::Read,
        };
        // 3 declared, 10 made, the first 4 kept (as the built-in VMM keeps them).
        seen.push(id);
        let rips = [0x4000, 0x4001, 0x4002, 0x4003];
        let d = data(&seen);
        let mut kept = CaseLog::complete(&seen, &rips, &d, &[]);
        kept.accesses = 10;
        assert_eq!(
            format!("{}", check_log(steps, &kept).unwrap_err()),
            "undeclared access: a 4-byte read of PIO+0x0 (ID) at rip 0x4003, access 4 of 10 \
             (after the 3 declared)"
        );
        // One access too many in front, but more made than kept: not called "the other
        // ones match", the kept part is not the whole sequence.
        let steps = declared("io", "u32_roundtrip");
        let mut seen = log(steps);
        seen.insert(0, id);
        let d = data(&seen);
        let mut kept = CaseLog::complete(&seen, &[], &d, &[]);
        assert!(matches!(
            check_log(steps, &kept),
            Err(Finding::Undeclared { count: 9, .. })
        ));
        kept.accesses = 11;
        assert!(matches!(
            check_log(steps, &kept),
            Err(Finding::Differs { index: 0, .. })
        ));
    }

    #[test]
    fn reported_values_are_counted_past_the_kept_ones() {
        let steps = declared("io", "u16_lanes");
        let seen = log(steps);
        let d = data(&seen);
        let reported: Vec<u64> = d.iter().map(|&(_, v)| v).collect();
        let mut l = CaseLog::complete(&seen, &[], &d, &reported);
        assert_eq!(check_log(steps, &l), Ok(()));
        // The same values kept, more reported than kept.
        l.reported_count = 40;
        assert_eq!(
            check_log(steps, &l),
            Err(Finding::DataCount {
                reported: 40,
                accesses: 7
            })
        );
        // Values reported for a case that made no access.
        let none = CaseLog::complete(&[], &[], &[], &reported[..2]);
        let e = check_log(steps, &none).unwrap_err();
        assert_eq!(
            format!("{e}"),
            "data: the case reported 2 values for 0 accesses"
        );
    }

    #[test]
    fn places_name_registers() {
        use crate::testdev::Space::{Mmio, Pio};
        let p = |space, offset| format!("{}", Place(space, offset));
        assert_eq!(p(Pio, 0xc), "PIO+0xc (VALUE)");
        assert_eq!(p(Pio, 0x9), "PIO+0x9 (DATA_BYTE+0x1)");
        assert_eq!(p(Pio, 0x18), "PIO+0x18");
        assert_eq!(p(Mmio, 0x8), "MMIO+0x8 (SEED)");
        assert_eq!(p(Mmio, 0x1fff), "MMIO+0x1fff (SCRATCH+0xfff)");
        assert_eq!(p(Mmio, 0x2000), "MMIO+0x2000");
    }
}
