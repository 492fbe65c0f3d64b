//! Per-IdP health over a sliding window: how many of an IdP's Responses in the last
//! [`WINDOW_MINUTES`] minutes failed for reasons that are the IdP's (its system errors,
//! and our refusals of what it sent), not the person's (a cancelled login, a denied
//! consent, a wrong password too often, an expired or reused request). When that share
//! jumps past [`DEGRADED_SHARE`] (with at least [`MIN_RESPONSES`] Responses), the IdP
//! is *degraded*: a warning is logged once, `polis_idp_degraded{idp}` reads 1, and the
//! login page shows a short notice beside it (every IdP stays listed, as AgID asks).
//! It recovers the same way. Counts are per replica; the time is the caller's.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::SsoError;
use crate::saml::SamlError;

/// The window, in one-minute buckets.
pub const WINDOW_MINUTES: i64 = 10;
/// Fewer Responses than this in the window never make an IdP degraded.
pub const MIN_RESPONSES: u64 = 20;
/// The share of IdP-side failures that makes it degraded.
pub const DEGRADED_SHARE: f64 = 0.5;

/// SPID error codes that are the person's doing, not the IdP's trouble (Tabella
/// messaggi di anomalia: nr19 too many tries, nr20 no credentials of that level, nr21
/// timeout, nr22 consent denied, nr23 credentials suspended, nr25 cancelled).
const PERSON_CODES: [u8; 6] = [19, 20, 21, 22, 23, 25];

/// Whether a consume's outcome counts against its IdP: `None` when it says nothing of
/// the IdP (a request unknown, expired, reused or from another browser; the service
/// busy), else `Some(failed)`.
pub fn idp_side(result: &Result<(), &SsoError>) -> Option<bool> {
    match result {
        Ok(()) => Some(false),
        Err(SsoError::Saml(SamlError::IdpStatus { code, .. })) => {
            Some(!code.is_some_and(|c| PERSON_CODES.contains(&c.0)))
        }
        Err(SsoError::Saml(_)) => Some(true),
        Err(_) => None,
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Bucket {
    minute: i64,
    total: u64,
    failed: u64,
}

#[derive(Debug, Default)]
struct IdpWindow {
    buckets: Vec<Bucket>,
    degraded: bool,
}

impl IdpWindow {
    fn add(&mut self, minute: i64, failed: bool) {
        self.buckets.retain(|b| minute - b.minute < WINDOW_MINUTES);
        match self.buckets.iter_mut().find(|b| b.minute == minute) {
            Some(b) => {
                b.total += 1;
                b.failed += u64::from(failed);
            }
            None => self.buckets.push(Bucket {
                minute,
                total: 1,
                failed: u64::from(failed),
            }),
        }
    }

    fn counts(&self, minute: i64) -> (u64, u64) {
        self.buckets
            .iter()
            .filter(|b| minute - b.minute < WINDOW_MINUTES && b.minute <= minute)
            .fold((0, 0), |(t, f), b| (t + b.total, f + b.failed))
    }
}

/// What a recorded outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The IdP just became degraded.
    Degraded,
    /// It just recovered.
    Recovered,
}

/// The windows of every IdP seen.
#[derive(Debug, Default)]
pub struct IdpHealth {
    idps: Mutex<HashMap<String, IdpWindow>>,
}

fn minute_of(now: DateTime<Utc>) -> i64 {
    now.timestamp().div_euclid(60)
}

fn is_degraded(total: u64, failed: u64) -> bool {
    #[allow(clippy::cast_precision_loss)]
    let share = failed as f64 / total.max(1) as f64;
    total >= MIN_RESPONSES && share >= DEGRADED_SHARE
}

impl IdpHealth {
    /// Counts one Response of `idp` (`failed`: on the IdP's side) at `now`; returns the
    /// change of state it caused, if any.
    pub fn record(&self, idp: &str, failed: bool, now: DateTime<Utc>) -> Option<Change> {
        let minute = minute_of(now);
        let mut idps = self.idps.lock().unwrap_or_else(|e| e.into_inner());
        // The IdP's window, allocating its key only the first time it is seen.
        if !idps.contains_key(idp) {
            idps.insert(idp.to_owned(), IdpWindow::default());
        }
        let w = idps.get_mut(idp)?;
        w.add(minute, failed);
        let (total, failed_n) = w.counts(minute);
        let now_degraded = if w.degraded {
            // Recovers only with enough evidence too.
            total < MIN_RESPONSES || is_degraded(total, failed_n)
        } else {
            is_degraded(total, failed_n)
        };
        let change = match (w.degraded, now_degraded) {
            (false, true) => Some(Change::Degraded),
            (true, false) => Some(Change::Recovered),
            _ => None,
        };
        w.degraded = now_degraded;
        change
    }

    /// Whether `idp` is degraded at `now` (an IdP not heard from for a whole window
    /// is not).
    pub fn is_degraded(&self, idp: &str, now: DateTime<Utc>) -> bool {
        let minute = minute_of(now);
        let idps = self.idps.lock().unwrap_or_else(|e| e.into_inner());
        idps.get(idp)
            .is_some_and(|w| w.degraded && w.counts(minute).0 > 0)
    }

    /// `(idp, responses, IdP-side failures, degraded)` in the window at `now`.
    pub fn snapshot(&self, now: DateTime<Utc>) -> Vec<(String, u64, u64, bool)> {
        let minute = minute_of(now);
        let idps = self.idps.lock().unwrap_or_else(|e| e.into_inner());
        idps.iter()
            .map(|(id, w)| {
                let (t, f) = w.counts(minute);
                (id.clone(), t, f, w.degraded && t > 0)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::saml::{IdpProfile, SpidErrorCode};

    fn t(min: i64, sec: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + min * 60 + sec, 0).unwrap()
    }

    #[test]
    fn a_jump_of_failures_degrades_an_idp_and_enough_successes_recover_it() {
        let h = IdpHealth::default();
        let a = "https://idp-a.example";
        // Healthy traffic, then failures: degraded once half of ≥ 20 fail.
        for i in 0..10 {
            assert_eq!(h.record(a, false, t(0, i)), None);
        }
        let mut changes = Vec::new();
        for i in 0..10 {
            changes.extend(h.record(a, true, t(1, i)));
        }
        assert_eq!(changes, vec![Change::Degraded]);
        assert!(h.is_degraded(a, t(1, 30)));
        assert!(!h.is_degraded("https://idp-b.example", t(1, 30)), "per IdP");
        // Successes bring the share under half: recovered, once.
        let mut back = Vec::new();
        for i in 0..11 {
            back.extend(h.record(a, false, t(2, i)));
        }
        assert_eq!(back, vec![Change::Recovered]);
        assert!(!h.is_degraded(a, t(2, 30)));
    }

    #[test]
    fn few_responses_or_old_ones_never_degrade() {
        let h = IdpHealth::default();
        let a = "https://idp-a.example";
        for i in 0..(MIN_RESPONSES - 1) {
            assert_eq!(h.record(a, true, t(0, i64::try_from(i).unwrap())), None);
        }
        assert!(!h.is_degraded(a, t(0, 59)));
        // Failures from before the window do not count.
        for i in 0..15 {
            assert_eq!(h.record(a, true, t(WINDOW_MINUTES + 1, i)), None);
        }
        let snap = h.snapshot(t(WINDOW_MINUTES + 1, 30));
        assert_eq!(snap, vec![(a.to_owned(), 15, 15, false)]);
    }

    #[test]
    fn what_the_person_did_does_not_count_against_the_idp() {
        let status = |code: Option<u8>| {
            SsoError::Saml(SamlError::IdpStatus {
                status: "urn:oasis:names:tc:SAML:2.0:status:Responder".into(),
                sub_status: None,
                code: code.map(SpidErrorCode),
                authenticated: true,
                profile: IdpProfile::Spid,
            })
        };
        assert_eq!(idp_side(&Ok(())), Some(false));
        assert_eq!(idp_side(&Err(&status(Some(25)))), Some(false));
        assert_eq!(idp_side(&Err(&status(Some(22)))), Some(false));
        assert_eq!(idp_side(&Err(&status(Some(9)))), Some(true));
        assert_eq!(idp_side(&Err(&status(None))), Some(true));
        assert_eq!(
            idp_side(&Err(&SsoError::Saml(SamlError::SignatureInvalid))),
            Some(true)
        );
        assert_eq!(idp_side(&Err(&SsoError::UnknownRequest)), None);
        assert_eq!(idp_side(&Err(&SsoError::Replay)), None);
    }
}
