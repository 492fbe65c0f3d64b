//! The inactivity rule and the pure decision of what a campaign does to one account on
//! one day: nothing yet, a notice, wait, or revoke. Dates are Italian civil dates.

use chrono::{DateTime, Months, NaiveDate, Utc};

use crate::clock::rome_midnight;

/// Which accounts are inactive, and their deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// Unused since before `since` (no login on or after it): revoked on `deadline`
    /// unless they log in before (the seeds' campaign: since 1 November 2015, by
    /// 11 December).
    Since {
        /// The first day that counts as activity.
        since: NaiveDate,
        /// The revocation date.
        deadline: NaiveDate,
    },
    /// Revoked `n` months after the last login (today's rule: 15).
    Months(u32),
}

/// An inactivity campaign: its name (in the notice records and the report), its
/// window and the days before the deadline on which a notice goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `inactivity-15m`, `inactivity-2015-11-01`: notice records are kept per name.
    pub name: String,
    /// Who is inactive and until when.
    pub window: Window,
    /// Days before the deadline, largest first, no repeats, none zero, at least one.
    notify_days: Vec<u32>,
}

/// A rule that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// `--notify-days` empty, zero, or over 366.
    #[error("notify days must be 1 to 366, at least one")]
    NotifyDays,
    /// `--inactive-months` 0 or over 120.
    #[error("inactive months must be 1 to 120")]
    Months,
    /// The deadline is not after `since`.
    #[error("the deadline must come after the inactivity date")]
    Deadline,
}

/// What the campaign does to an account today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing: the first notice is not due yet, or the last one's days have not run.
    Nothing,
    /// The notice of `days`, announcing revocation on `revoke_on`.
    Notice {
        /// Which notice (`--notify-days`).
        days: u32,
        /// The date the mail announces.
        revoke_on: NaiveDate,
    },
    /// Revoke the enablement.
    Revoke,
}

impl Rule {
    /// A rule; `notify_days` in any order.
    pub fn new(name: String, window: Window, notify_days: &[u32]) -> Result<Self, RuleError> {
        let mut days: Vec<u32> = notify_days.to_vec();
        days.sort_unstable_by(|a, b| b.cmp(a));
        days.dedup();
        if days.is_empty() || days.iter().any(|d| !(1..=366).contains(d)) {
            return Err(RuleError::NotifyDays);
        }
        match window {
            Window::Months(n) if !(1..=120).contains(&n) => return Err(RuleError::Months),
            Window::Since { since, deadline } if deadline <= since => {
                return Err(RuleError::Deadline);
            }
            _ => {}
        }
        Ok(Self {
            name,
            window,
            notify_days: days,
        })
    }

    /// The notice days, largest first.
    pub fn notify_days(&self) -> &[u32] {
        &self.notify_days
    }

    fn first_notice(&self) -> u32 {
        self.notify_days.first().copied().unwrap_or(1)
    }

    fn last_notice(&self) -> u32 {
        self.notify_days.last().copied().unwrap_or(1)
    }

    /// Accounts last active before this moment may need something `today`; the others
    /// cannot (their first notice is still ahead).
    pub fn scan_before(&self, today: NaiveDate) -> DateTime<Utc> {
        match &self.window {
            Window::Since { since, .. } => rome_midnight(*since),
            Window::Months(n) => {
                // deadline − first notice ≤ today ⇔ last day ≤ today + first − n months.
                let horizon = today + chrono::Days::new(u64::from(self.first_notice()));
                let last_day = horizon
                    .checked_sub_months(Months::new(*n))
                    .unwrap_or(NaiveDate::MIN);
                rome_midnight(last_day.succ_opt().unwrap_or(last_day))
            }
        }
    }

    /// The revocation deadline of an account last active on `last_active_day`.
    pub fn deadline(&self, last_active_day: NaiveDate) -> NaiveDate {
        match &self.window {
            Window::Since { deadline, .. } => *deadline,
            Window::Months(n) => last_active_day
                .checked_add_months(Months::new(*n))
                .unwrap_or(NaiveDate::MAX),
        }
    }

    /// What to do `today` to an account with this `deadline`, given when its first
    /// notice about that deadline reached the mail server and whether it has an
    /// address. No account is revoked without a notice sent at least the smallest
    /// notice's days before (a campaign started late gives everyone that much time);
    /// one without an e-mail address cannot be told and is revoked on the deadline.
    pub fn decide(
        &self,
        today: NaiveDate,
        deadline: NaiveDate,
        first_sent: Option<NaiveDate>,
        has_email: bool,
    ) -> Action {
        if today < deadline {
            let due = self
                .notify_days
                .iter()
                .rev()
                .find(|d| deadline - chrono::Days::new(u64::from(**d)) <= today);
            return match (due, has_email) {
                (Some(days), true) => Action::Notice {
                    days: *days,
                    revoke_on: deadline,
                },
                _ => Action::Nothing,
            };
        }
        if !has_email {
            return Action::Revoke;
        }
        let grace = chrono::Days::new(u64::from(self.last_notice()));
        match first_sent {
            Some(sent) if sent + grace <= today => Action::Revoke,
            Some(_) => Action::Nothing,
            None => Action::Notice {
                days: self.last_notice(),
                revoke_on: today + grace,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn months15() -> Rule {
        Rule::new(
            "inactivity-15m".into(),
            Window::Months(15),
            &[1, 30, 90, 10, 60, 30],
        )
        .unwrap()
    }

    #[test]
    fn notices_fall_on_their_days_and_between_them_the_last_due_one_counts() {
        let rule = months15();
        assert_eq!(rule.notify_days(), &[90, 60, 30, 10, 1]);
        let deadline = day("2026-12-11");
        let at = |today: &str| rule.decide(day(today), deadline, None, true);
        assert_eq!(at("2026-09-11"), Action::Nothing, "91 days before");
        for (today, days) in [
            ("2026-09-12", 90),
            ("2026-10-01", 90),
            ("2026-10-12", 60),
            ("2026-11-11", 30),
            ("2026-12-01", 10),
            ("2026-12-10", 1),
        ] {
            assert_eq!(
                at(today),
                Action::Notice {
                    days,
                    revoke_on: deadline
                },
                "{today}"
            );
        }
    }

    #[test]
    fn the_deadline_revokes_only_after_a_notice_old_enough() {
        let rule = months15();
        let deadline = day("2026-12-11");
        let today = day("2026-12-11");
        assert_eq!(
            rule.decide(today, deadline, Some(day("2026-09-12")), true),
            Action::Revoke
        );
        assert_eq!(
            rule.decide(today, deadline, Some(day("2026-12-11")), true),
            Action::Nothing,
            "a notice sent today gives one more day"
        );
        // A campaign started late: the overdue account is told first.
        assert_eq!(
            rule.decide(today, deadline, None, true),
            Action::Notice {
                days: 1,
                revoke_on: day("2026-12-12")
            }
        );
        assert_eq!(rule.decide(today, deadline, None, false), Action::Revoke);
        assert_eq!(
            rule.decide(day("2026-12-01"), deadline, None, false),
            Action::Nothing
        );
    }

    #[test]
    fn deadlines_and_the_scan_horizon() {
        let rule = months15();
        assert_eq!(rule.deadline(day("2025-09-11")), day("2026-12-11"));
        // Today 2026-09-12: the 90-day notice of deadline 2026-12-11 is due, so an
        // account last active on 2025-09-11 is scanned, one of 2025-09-12 is not.
        let before = rule.scan_before(day("2026-09-12"));
        assert!(rome_midnight(day("2025-09-11")) < before);
        assert_eq!(before, rome_midnight(day("2025-09-12")));
        let since = Rule::new(
            "inactivity-2015-11-01".into(),
            Window::Since {
                since: day("2015-11-01"),
                deadline: day("2015-12-11"),
            },
            &[30],
        )
        .unwrap();
        assert_eq!(since.deadline(day("2010-01-01")), day("2015-12-11"));
        assert_eq!(
            since.scan_before(day("2015-11-10")),
            rome_midnight(day("2015-11-01"))
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        let w = Window::Months(15);
        assert_eq!(
            Rule::new("x".into(), w.clone(), &[]),
            Err(RuleError::NotifyDays)
        );
        assert_eq!(
            Rule::new("x".into(), w, &[0, 1]),
            Err(RuleError::NotifyDays)
        );
        assert_eq!(
            Rule::new("x".into(), Window::Months(0), &[1]),
            Err(RuleError::Months)
        );
        assert_eq!(
            Rule::new(
                "x".into(),
                Window::Since {
                    since: day("2026-01-02"),
                    deadline: day("2026-01-02")
                },
                &[1]
            ),
            Err(RuleError::Deadline)
        );
    }
}
