//! The pure enablement state machine: which [`Event`] is allowed in which
//! [`EnablementState`], where it leads, and which [`Effect`]s the service must carry out.
//!
//! No I/O and no clock: [`apply`] only looks the pair up in the table below. Everything
//! not listed is an [`InvalidTransition`] (`POLIS_ENABLEMENT_STEP`).
//!
//! | state | event | next | effects |
//! |---|---|---|---|
//! | `NotEnabled` | `Begin` | `RequestData` | — |
//! | `NotEnabled`, `RequestData` | `SubmitRequest` | `RecoveryQuestion` | `SaveRequestData` |
//! | `RecoveryQuestion` | `SubmitRequest` | `RecoveryQuestion` | `SaveRequestData` |
//! | `Review` | `SubmitRequest` | `Review` | `SaveRequestData` |
//! | `RecoveryQuestion`, `Review` | `SubmitRecovery` | `Review` | `SaveRecovery` |
//! | `Confirmed` | `SubmitRequest` | `Review` | `SaveRequestData` |
//! | `Confirmed` | `SubmitRecovery` | `Review` | `SaveRecovery` |
//! | `Accepted` | `SubmitRequest` | `Review` | `SaveRequestData`, `ClearTempCp` |
//! | `Accepted` | `SubmitRecovery` | `Review` | `SaveRecovery`, `ClearTempCp` |
//! | `Review` | `Confirm` | `Confirmed` | — |
//! | `Confirmed` | `Accept` | `Accepted` | `IssueTempCp`, `SendTempCpMail` |
//! | `Accepted` | `RetryDelivery` | `Accepted` | `IssueTempCp`, `SendTempCpMail` |
//! | `Accepted` | `TempCpDelivered` | `TempCpSent` | — |
//! | `TempCpSent` | `ResendTempCp` | `TempCpSent` | `IssueTempCp`, `SendTempCpMail` |
//! | `TempCpSent` | `ChangeTempCp` | `Enabled` | `SetChosenCp`, `ClearTempCp`, `MarkEnabled` |
//! | `Enabled` | `RecoverCp` | `TempCpSent` | `IssueTempCp`, `SendTempCpMail` |
//! | every state but `NotEnabled` | `Revoke` | `NotEnabled` | `DropSecrets` |
//!
//! `SubmitRequest` is accepted straight from `NotEnabled`, so the first POST of the request
//! form needs no separate `Begin`. Going back to edit is allowed until «Accetto» has sent
//! the mail: from `RecoveryQuestion` and `Review` (in `Review` the recovery answer is
//! already set, so the account stays in `Review`), and from `Confirmed` and `Accepted` (a
//! typo seen in the modulo di adesione), which go back to `Review`: the changed data must
//! be confirmed again, and in `Accepted` the temporary CP whose mail failed is forgotten.
//!
//! ## Resumability
//!
//! Effects are listed in the order they must run. The service persists the new state
//! together with the result of [`Effect::IssueTempCp`] (the MAC of the new temporary CP)
//! **before** [`Effect::SendTempCpMail`]. A mail that fails therefore leaves the account
//! in `Accepted` (then [`Event::RetryDelivery`] issues and sends a new temporary CP, since
//! the plaintext of the old one is gone) or in `TempCpSent` (then
//! [`Event::ResendTempCp`]): the person can always resume, and a CP is never lost.
//! [`Event::TempCpDelivered`] moves `Accepted` to `TempCpSent` once the mail went out.

use std::fmt;

use crate::accounts::EnablementState;

/// Something the person (or the service, for deliveries) does during the enablement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// Start the enablement (opens the request form).
    Begin,
    /// Submit the request data (domicile, phones, identity document).
    SubmitRequest,
    /// Submit the CP-recovery question and answer.
    SubmitRecovery,
    /// "Conferma" on the review page.
    Confirm,
    /// "Accetto" on the warnings / modulo di adesione page.
    Accept,
    /// The temporary-CP mail failed after "Accetto": issue and send a new one.
    RetryDelivery,
    /// The temporary-CP mail went out.
    TempCpDelivered,
    /// Ask for a new temporary CP (lost or expired).
    ResendTempCp,
    /// Replace the temporary CP with one of the person's choice.
    ChangeTempCp,
    /// Forgotten CP: recovered with the recovery answer, a new temporary CP is sent.
    RecoverCp,
    /// The enablement is revoked (inactivity campaign, help desk): the person starts
    /// the abilitazione again at their next login.
    Revoke,
}

impl Event {
    /// Every event, in declaration order.
    pub const ALL: [Event; 11] = [
        Self::Begin,
        Self::SubmitRequest,
        Self::SubmitRecovery,
        Self::Confirm,
        Self::Accept,
        Self::RetryDelivery,
        Self::TempCpDelivered,
        Self::ResendTempCp,
        Self::ChangeTempCp,
        Self::RecoverCp,
        Self::Revoke,
    ];

    /// The snake_case name (logs, error messages).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Begin => "begin",
            Self::SubmitRequest => "submit_request",
            Self::SubmitRecovery => "submit_recovery",
            Self::Confirm => "confirm",
            Self::Accept => "accept",
            Self::RetryDelivery => "retry_delivery",
            Self::TempCpDelivered => "temp_cp_delivered",
            Self::ResendTempCp => "resend_temp_cp",
            Self::ChangeTempCp => "change_temp_cp",
            Self::RecoverCp => "recover_cp",
            Self::Revoke => "revoke",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Work the service must do for a transition, in the listed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Store the submitted request data on the account.
    SaveRequestData,
    /// Store the recovery question and the hash of the answer.
    SaveRecovery,
    /// Generate a new temporary CP and store its MAC (persisted with the new state).
    IssueTempCp,
    /// Mail the temporary CP to the reference address (after the state is persisted).
    SendTempCpMail,
    /// Store the hash of the CP the person chose (the old hash goes to the history).
    SetChosenCp,
    /// Forget the temporary CP.
    ClearTempCp,
    /// Record the enablement (time passed in by the caller).
    MarkEnabled,
    /// Forget the CP, its history, the temporary CP, the recovery question and answer
    /// and the enablement time (the request data stay, to prefill the next request).
    DropSecrets,
}

/// The outcome of an allowed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state after the event.
    pub next: EnablementState,
    /// What the service must do, in order.
    pub effects: &'static [Effect],
}

/// An event that the current state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event {event} is not allowed in state {state}")]
pub struct InvalidTransition {
    /// The state the account was in.
    pub state: EnablementState,
    /// The refused event.
    pub event: Event,
}

impl InvalidTransition {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        "POLIS_ENABLEMENT_STEP"
    }
}

const ISSUE_AND_SEND: &[Effect] = &[Effect::IssueTempCp, Effect::SendTempCpMail];

/// Looks `event` up for `state` (see the table in the module doc).
pub fn apply(state: EnablementState, event: Event) -> Result<Transition, InvalidTransition> {
    use EnablementState as S;
    use Event as E;

    let (next, effects): (EnablementState, &'static [Effect]) = match (state, event) {
        (S::NotEnabled, E::Begin) => (S::RequestData, &[]),
        (S::NotEnabled | S::RequestData | S::RecoveryQuestion, E::SubmitRequest) => {
            (S::RecoveryQuestion, &[Effect::SaveRequestData])
        }
        (S::Review, E::SubmitRequest) => (S::Review, &[Effect::SaveRequestData]),
        (S::RecoveryQuestion | S::Review, E::SubmitRecovery) => {
            (S::Review, &[Effect::SaveRecovery])
        }
        (S::Confirmed, E::SubmitRequest) => (S::Review, &[Effect::SaveRequestData]),
        (S::Confirmed, E::SubmitRecovery) => (S::Review, &[Effect::SaveRecovery]),
        (S::Accepted, E::SubmitRequest) => {
            (S::Review, &[Effect::SaveRequestData, Effect::ClearTempCp])
        }
        (S::Accepted, E::SubmitRecovery) => {
            (S::Review, &[Effect::SaveRecovery, Effect::ClearTempCp])
        }
        (S::Review, E::Confirm) => (S::Confirmed, &[]),
        (S::Confirmed, E::Accept) => (S::Accepted, ISSUE_AND_SEND),
        (S::Accepted, E::RetryDelivery) => (S::Accepted, ISSUE_AND_SEND),
        (S::Accepted, E::TempCpDelivered) => (S::TempCpSent, &[]),
        (S::TempCpSent, E::ResendTempCp) => (S::TempCpSent, ISSUE_AND_SEND),
        (S::TempCpSent, E::ChangeTempCp) => (
            S::Enabled,
            &[
                Effect::SetChosenCp,
                Effect::ClearTempCp,
                Effect::MarkEnabled,
            ],
        ),
        (S::Enabled, E::RecoverCp) => (S::TempCpSent, ISSUE_AND_SEND),
        (
            S::RequestData
            | S::RecoveryQuestion
            | S::Review
            | S::Confirmed
            | S::Accepted
            | S::TempCpSent
            | S::Enabled,
            E::Revoke,
        ) => (S::NotEnabled, &[Effect::DropSecrets]),
        _ => return Err(InvalidTransition { state, event }),
    };
    Ok(Transition { next, effects })
}

#[cfg(test)]
mod tests {
    use super::*;
    use EnablementState as S;
    use Event as E;

    const SAVE_REQUEST: &[Effect] = &[Effect::SaveRequestData];
    const SAVE_RECOVERY: &[Effect] = &[Effect::SaveRecovery];
    const DROP: &[Effect] = &[Effect::DropSecrets];
    const CHANGE: &[Effect] = &[
        Effect::SetChosenCp,
        Effect::ClearTempCp,
        Effect::MarkEnabled,
    ];

    /// The allowed pairs, written out independently of `apply`.
    const ALLOWED: &[(S, E, S, &[Effect])] = &[
        (S::NotEnabled, E::Begin, S::RequestData, &[]),
        (
            S::NotEnabled,
            E::SubmitRequest,
            S::RecoveryQuestion,
            SAVE_REQUEST,
        ),
        (
            S::RequestData,
            E::SubmitRequest,
            S::RecoveryQuestion,
            SAVE_REQUEST,
        ),
        (
            S::RecoveryQuestion,
            E::SubmitRequest,
            S::RecoveryQuestion,
            SAVE_REQUEST,
        ),
        (
            S::RecoveryQuestion,
            E::SubmitRecovery,
            S::Review,
            SAVE_RECOVERY,
        ),
        (S::Review, E::SubmitRequest, S::Review, SAVE_REQUEST),
        (S::Review, E::SubmitRecovery, S::Review, SAVE_RECOVERY),
        (S::Review, E::Confirm, S::Confirmed, &[]),
        (S::Confirmed, E::SubmitRequest, S::Review, SAVE_REQUEST),
        (S::Confirmed, E::SubmitRecovery, S::Review, SAVE_RECOVERY),
        (
            S::Accepted,
            E::SubmitRequest,
            S::Review,
            &[Effect::SaveRequestData, Effect::ClearTempCp],
        ),
        (
            S::Accepted,
            E::SubmitRecovery,
            S::Review,
            &[Effect::SaveRecovery, Effect::ClearTempCp],
        ),
        (
            S::Confirmed,
            E::Accept,
            S::Accepted,
            &[Effect::IssueTempCp, Effect::SendTempCpMail],
        ),
        (
            S::Accepted,
            E::RetryDelivery,
            S::Accepted,
            &[Effect::IssueTempCp, Effect::SendTempCpMail],
        ),
        (S::Accepted, E::TempCpDelivered, S::TempCpSent, &[]),
        (
            S::TempCpSent,
            E::ResendTempCp,
            S::TempCpSent,
            &[Effect::IssueTempCp, Effect::SendTempCpMail],
        ),
        (S::TempCpSent, E::ChangeTempCp, S::Enabled, CHANGE),
        (
            S::Enabled,
            E::RecoverCp,
            S::TempCpSent,
            &[Effect::IssueTempCp, Effect::SendTempCpMail],
        ),
        (S::RequestData, E::Revoke, S::NotEnabled, DROP),
        (S::RecoveryQuestion, E::Revoke, S::NotEnabled, DROP),
        (S::Review, E::Revoke, S::NotEnabled, DROP),
        (S::Confirmed, E::Revoke, S::NotEnabled, DROP),
        (S::Accepted, E::Revoke, S::NotEnabled, DROP),
        (S::TempCpSent, E::Revoke, S::NotEnabled, DROP),
        (S::Enabled, E::Revoke, S::NotEnabled, DROP),
    ];

    /// A cell of the grid: `Some((next, effects))` or `None` (refused).
    type Cell = Option<(S, &'static [Effect])>;

    /// The whole 8 × 11 grid: `Some(next, effects)` or `None` (refused). One row per
    /// state, one column per event in `Event::ALL` order.
    fn expected_grid() -> Vec<(S, [Cell; 11])> {
        let issue: &'static [Effect] = &[Effect::IssueTempCp, Effect::SendTempCpMail];
        vec![
            (
                S::NotEnabled,
                [
                    Some((S::RequestData, &[])),
                    Some((S::RecoveryQuestion, SAVE_REQUEST)),
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                ],
            ),
            (
                S::RequestData,
                [
                    None,
                    Some((S::RecoveryQuestion, SAVE_REQUEST)),
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some((S::NotEnabled, DROP)),
                ],
            ),
            (
                S::RecoveryQuestion,
                [
                    None,
                    Some((S::RecoveryQuestion, SAVE_REQUEST)),
                    Some((S::Review, SAVE_RECOVERY)),
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some((S::NotEnabled, DROP)),
                ],
            ),
            (
                S::Review,
                [
                    None,
                    Some((S::Review, SAVE_REQUEST)),
                    Some((S::Review, SAVE_RECOVERY)),
                    Some((S::Confirmed, &[])),
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some((S::NotEnabled, DROP)),
                ],
            ),
            (
                S::Confirmed,
                [
                    None,
                    Some((S::Review, SAVE_REQUEST)),
                    Some((S::Review, SAVE_RECOVERY)),
                    None,
                    Some((S::Accepted, issue)),
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some((S::NotEnabled, DROP)),
                ],
            ),
            (
                S::Accepted,
                [
                    None,
                    Some((S::Review, &[Effect::SaveRequestData, Effect::ClearTempCp])),
                    Some((S::Review, &[Effect::SaveRecovery, Effect::ClearTempCp])),
                    None,
                    None,
                    Some((S::Accepted, issue)),
                    Some((S::TempCpSent, &[])),
                    None,
                    None,
                    None,
                    Some((S::NotEnabled, DROP)),
                ],
            ),
            (
                S::TempCpSent,
                [
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some((S::TempCpSent, issue)),
                    Some((S::Enabled, CHANGE)),
                    None,
                    Some((S::NotEnabled, DROP)),
                ],
            ),
            (
                S::Enabled,
                [
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some((S::TempCpSent, issue)),
                    Some((S::NotEnabled, DROP)),
                ],
            ),
        ]
    }

    #[test]
    fn every_pair_of_the_grid() {
        let grid = expected_grid();
        assert_eq!(grid.len(), S::ALL.len());
        let mut checked = 0;
        for ((state, row), expected_state) in grid.iter().zip(S::ALL) {
            assert_eq!(
                *state, expected_state,
                "grid rows follow EnablementState::ALL"
            );
            for (event, expected) in Event::ALL.into_iter().zip(row.iter()) {
                let got = apply(*state, event);
                match expected {
                    Some((next, effects)) => assert_eq!(
                        got,
                        Ok(Transition {
                            next: *next,
                            effects
                        }),
                        "{state} + {event}"
                    ),
                    None => assert_eq!(
                        got,
                        Err(InvalidTransition {
                            state: *state,
                            event
                        }),
                        "{state} + {event}"
                    ),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 88);
    }

    #[test]
    fn allowed_list_matches_the_grid() {
        let grid = expected_grid();
        let mut allowed_in_grid = 0;
        for (state, row) in &grid {
            for (event, cell) in Event::ALL.into_iter().zip(row.iter()) {
                let listed = ALLOWED
                    .iter()
                    .find(|(s, e, _, _)| s == state && *e == event)
                    .map(|(_, _, next, effects)| (*next, *effects));
                assert_eq!(listed, *cell, "{state} + {event}");
                if cell.is_some() {
                    allowed_in_grid += 1;
                }
            }
        }
        assert_eq!(allowed_in_grid, ALLOWED.len());
        assert_eq!(ALLOWED.len(), 25);
    }

    fn walk(mut state: S, events: &[E]) -> (S, Vec<Effect>) {
        let mut effects = Vec::new();
        for event in events {
            let transition = apply(state, *event).unwrap();
            effects.extend_from_slice(transition.effects);
            state = transition.next;
        }
        (state, effects)
    }

    #[test]
    fn happy_path_not_enabled_to_enabled() {
        let (state, effects) = walk(
            S::NotEnabled,
            &[
                E::Begin,
                E::SubmitRequest,
                E::SubmitRecovery,
                E::Confirm,
                E::Accept,
                E::TempCpDelivered,
                E::ChangeTempCp,
            ],
        );
        assert_eq!(state, S::Enabled);
        assert_eq!(
            effects,
            vec![
                Effect::SaveRequestData,
                Effect::SaveRecovery,
                Effect::IssueTempCp,
                Effect::SendTempCpMail,
                Effect::SetChosenCp,
                Effect::ClearTempCp,
                Effect::MarkEnabled,
            ]
        );
    }

    #[test]
    fn first_post_without_begin_and_edits_and_failed_mail() {
        let (state, effects) = walk(
            S::NotEnabled,
            &[
                E::SubmitRequest,
                E::SubmitRequest,
                E::SubmitRecovery,
                E::SubmitRequest,
                E::SubmitRecovery,
                E::Confirm,
                E::Accept,
                E::RetryDelivery,
                E::TempCpDelivered,
                E::ResendTempCp,
                E::ChangeTempCp,
            ],
        );
        assert_eq!(state, S::Enabled);
        let issued = effects
            .iter()
            .filter(|e| **e == Effect::IssueTempCp)
            .count();
        assert_eq!(issued, 3);
    }

    #[test]
    fn recovery_enabled_to_temp_cp_sent_to_enabled() {
        let recover = apply(S::Enabled, E::RecoverCp).unwrap();
        assert_eq!(recover.next, S::TempCpSent);
        assert_eq!(
            recover.effects,
            &[Effect::IssueTempCp, Effect::SendTempCpMail]
        );
        let change = apply(recover.next, E::ChangeTempCp).unwrap();
        assert_eq!(change.next, S::Enabled);
        assert_eq!(change.effects, CHANGE);
    }

    #[test]
    fn invalid_transition_message_and_code() {
        let err = apply(S::Enabled, E::Accept).unwrap_err();
        assert_eq!(err.state, S::Enabled);
        assert_eq!(err.event, E::Accept);
        assert_eq!(
            err.to_string(),
            "event accept is not allowed in state enabled"
        );
        assert_eq!(err.code(), "POLIS_ENABLEMENT_STEP");
    }

    #[test]
    fn event_names_are_snake_case_and_distinct() {
        let names: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
        for name in &names {
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
        let mut dedup = names.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len());
        assert_eq!(E::TempCpDelivered.to_string(), "temp_cp_delivered");
    }
}
