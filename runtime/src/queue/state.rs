//! A queued message's state and its transitions, as pure functions.
//!
//! [`State`] holds only what each state means (held: why and since when; queued: when the
//! next attempt is due; ...). [`Progress`] adds the counters every state carries (attempts,
//! failures, first and last send, failing since, the latest operator release). [`apply`]
//! takes the progress and an [`Event`] and returns the new progress or a typed [`Refusal`];
//! it reads no clock and touches no store. A backend reads the row, calls [`apply`] and
//! writes the result in one transaction, so every backend makes the same decisions.

use std::time::Duration;

use time::OffsetDateTime;

use super::{MessageInfo, MessageState};
use crate::hl7::AckCode;

/// Where a message is, with what that state means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Waiting to be sent, or to be sent again.
    Queued {
        /// When a retry after a failure is due (backoff); `None`: now.
        next_attempt_at: Option<OffsetDateTime>,
    },
    /// Sent; the outcome is not recorded yet.
    InFlight {
        /// When the send started.
        since: OffsetDateTime,
    },
    /// Accepted by the engine.
    Delivered {
        /// When the accepting ACK arrived.
        at: OffsetDateTime,
        /// Its MSA-1 (AA or CA), when an ACK was read.
        ack_code: Option<AckCode>,
    },
    /// Holding the stream until an operator acts.
    Held {
        /// Since when.
        since: OffsetDateTime,
        /// Why.
        reason: String,
    },
    /// Passed over (by policy or an operator); kept, never sent again.
    Skipped {
        /// When.
        at: OffsetDateTime,
        /// Why (the policy, or the operator's note).
        reason: String,
    },
}

impl State {
    /// The state without its data.
    pub fn kind(&self) -> MessageState {
        match self {
            Self::Queued { .. } => MessageState::Queued,
            Self::InFlight { .. } => MessageState::InFlight,
            Self::Delivered { .. } => MessageState::Delivered,
            Self::Held { .. } => MessageState::Held,
            Self::Skipped { .. } => MessageState::Skipped,
        }
    }
}

/// A message's state and the counters that outlive each state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Where it is.
    pub state: State,
    /// Sends so far.
    pub attempts: u32,
    /// Failed attempts since it was queued or last released by an operator.
    pub failures: u32,
    /// The first send.
    pub first_attempt_at: Option<OffsetDateTime>,
    /// The latest send.
    pub last_attempt_at: Option<OffsetDateTime>,
    /// The first failure since it was queued or last released.
    pub failing_since: Option<OffsetDateTime>,
    /// The latest operator release.
    pub released_at: Option<OffsetDateTime>,
}

/// What the sequencer decided about a failure (its class's policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send it again after this delay.
    Retry(Duration),
    /// Hold the stream, for this reason.
    Hold(String),
    /// Skip the message, for this reason.
    Skip(String),
}

/// Something that happens to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The sequencer sends it.
    Send {
        /// When.
        at: OffsetDateTime,
    },
    /// The sequencer starts again (after a crash or a stop) and finds it in flight: its ACK
    /// may be lost, so it is sent again.
    Restart,
    /// The engine accepted it.
    Accepted {
        /// When.
        at: OffsetDateTime,
        /// The ACK's MSA-1.
        ack_code: Option<AckCode>,
    },
    /// An attempt failed and the policy chose `action`.
    Failed {
        /// When.
        at: OffsetDateTime,
        /// Retry, hold or skip.
        action: Action,
    },
    /// An operator releases it (`queue retry`).
    Release {
        /// When.
        at: OffsetDateTime,
    },
    /// An operator skips it (`queue skip`).
    Skip {
        /// When.
        at: OffsetDateTime,
        /// The recorded reason.
        reason: String,
    },
}

/// Why an event does not apply to a message in its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Only a queued or in-flight message is sent (an operator held or skipped it meanwhile).
    #[error("a {0} message is not sent")]
    NotSendable(MessageState),
    /// Only an in-flight message fails or is resumed (an operator acted meanwhile: their
    /// decision stands).
    #[error("the message is {0}, not in flight")]
    NotInFlight(MessageState),
    /// A delivered message stays delivered.
    #[error("the message is delivered already")]
    AlreadyDelivered,
    /// Operators retry or skip pending messages only.
    #[error(
        "the message is {0}: only queued, in-flight or held messages can be retried or skipped"
    )]
    NotPending(MessageState),
}

impl Refusal {
    /// The state the message was in.
    pub fn state(self) -> MessageState {
        match self {
            Self::NotSendable(s) | Self::NotInFlight(s) | Self::NotPending(s) => s,
            Self::AlreadyDelivered => MessageState::Delivered,
        }
    }
}

/// The progress after `event`, or why the event does not apply.
pub fn apply(progress: &Progress, event: Event) -> Result<Progress, Refusal> {
    let kind = progress.state.kind();
    let mut next = progress.clone();
    match event {
        Event::Send { at } => {
            if !matches!(kind, MessageState::Queued | MessageState::InFlight) {
                return Err(Refusal::NotSendable(kind));
            }
            next.state = State::InFlight { since: at };
            next.attempts = next.attempts.saturating_add(1);
            next.first_attempt_at = next.first_attempt_at.or(Some(at));
            next.last_attempt_at = Some(at);
        }
        Event::Restart => {
            if kind != MessageState::InFlight {
                return Err(Refusal::NotInFlight(kind));
            }
            next.state = State::Queued {
                next_attempt_at: None,
            };
        }
        // A delivered message is delivered whatever an operator did meanwhile: that is
        // what happened.
        Event::Accepted { at, ack_code } => {
            if kind == MessageState::Delivered {
                return Err(Refusal::AlreadyDelivered);
            }
            next.state = State::Delivered { at, ack_code };
        }
        Event::Failed { at, action } => {
            if kind != MessageState::InFlight {
                return Err(Refusal::NotInFlight(kind));
            }
            next.failures = failures_after_one_more(progress);
            next.failing_since = next.failing_since.or(Some(at));
            next.state = match action {
                // Informational (the sequencer keeps the timer); a delay past the calendar's
                // end leaves it unset rather than failing the record.
                Action::Retry(delay) => State::Queued {
                    next_attempt_at: time::Duration::try_from(delay)
                        .ok()
                        .and_then(|d| at.checked_add(d)),
                },
                Action::Hold(reason) => State::Held { since: at, reason },
                Action::Skip(reason) => State::Skipped { at, reason },
            };
        }
        Event::Release { at } => {
            if !kind.is_pending() {
                return Err(Refusal::NotPending(kind));
            }
            next.state = State::Queued {
                next_attempt_at: None,
            };
            next.failures = 0;
            next.failing_since = None;
            next.released_at = Some(at);
        }
        Event::Skip { at, reason } => {
            if !kind.is_pending() {
                return Err(Refusal::NotPending(kind));
            }
            next.state = State::Skipped { at, reason };
        }
    }
    Ok(next)
}

/// The failure count a failure of this attempt makes: what `retry(N) then hold` is given.
pub fn failures_after_one_more(progress: &Progress) -> u32 {
    progress.failures.saturating_add(1)
}

impl MessageInfo {
    /// The typed state and counters of this row. A row edited by hand that lacks a state's
    /// time falls back to the latest time it has, and a missing reason reads as empty.
    pub fn progress(&self) -> Progress {
        let latest = self.last_attempt_at.unwrap_or(self.enqueued_at);
        let state = match self.state {
            MessageState::Queued => State::Queued {
                next_attempt_at: self.next_attempt_at,
            },
            MessageState::InFlight => State::InFlight { since: latest },
            MessageState::Delivered => State::Delivered {
                at: self.delivered_at.unwrap_or(latest),
                ack_code: self.last_response.as_ref().and_then(|r| r.ack_code),
            },
            MessageState::Held => State::Held {
                since: self.held_at.unwrap_or(latest),
                reason: self.held_reason.clone().unwrap_or_default(),
            },
            MessageState::Skipped => State::Skipped {
                at: self.skipped_at.unwrap_or(latest),
                reason: self.skip_reason.clone().unwrap_or_default(),
            },
        };
        Progress {
            state,
            attempts: self.attempts,
            failures: self.failures,
            first_attempt_at: self.first_attempt_at,
            last_attempt_at: self.last_attempt_at,
            failing_since: self.failing_since,
            released_at: self.released_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_700_000_000 + secs)
    }

    fn queued() -> Progress {
        Progress {
            state: State::Queued {
                next_attempt_at: None,
            },
            attempts: 0,
            failures: 0,
            first_attempt_at: None,
            last_attempt_at: None,
            failing_since: None,
            released_at: None,
        }
    }

    fn step(p: &Progress, e: Event) -> Progress {
        match apply(p, e) {
            Ok(next) => next,
            Err(refusal) => panic!("refused: {refusal}"),
        }
    }

    #[test]
    fn a_send_counts_attempts_and_keeps_the_first_time() {
        let first = step(&queued(), Event::Send { at: at(1) });
        assert_eq!(first.state, State::InFlight { since: at(1) });
        assert_eq!(first.attempts, 1);
        // Sent again after a restart: in flight again, the first send stays on record.
        let resumed = step(&first, Event::Restart);
        assert_eq!(
            resumed.state,
            State::Queued {
                next_attempt_at: None
            }
        );
        let again = step(&resumed, Event::Send { at: at(5) });
        assert_eq!(again.attempts, 2);
        assert_eq!(
            (again.first_attempt_at, again.last_attempt_at),
            (Some(at(1)), Some(at(5)))
        );
    }

    #[test]
    fn failures_retry_with_a_due_time_then_hold_and_a_release_resets_them() {
        let sent = step(&queued(), Event::Send { at: at(1) });
        assert_eq!(failures_after_one_more(&sent), 1);
        let retrying = step(
            &sent,
            Event::Failed {
                at: at(2),
                action: Action::Retry(Duration::from_secs(10)),
            },
        );
        assert_eq!(
            retrying.state,
            State::Queued {
                next_attempt_at: Some(at(12))
            }
        );
        assert_eq!(
            (retrying.failures, retrying.failing_since),
            (1, Some(at(2)))
        );
        let sent = step(&retrying, Event::Send { at: at(12) });
        let held = step(
            &sent,
            Event::Failed {
                at: at(13),
                action: Action::Hold("on_ae: hold".into()),
            },
        );
        assert_eq!(
            held.state,
            State::Held {
                since: at(13),
                reason: "on_ae: hold".into()
            }
        );
        // The first failure is still the one the stream has been failing since.
        assert_eq!((held.failures, held.failing_since), (2, Some(at(2))));
        // Held means held: it is not sent and a late failure report changes nothing.
        assert_eq!(
            apply(&held, Event::Send { at: at(14) }),
            Err(Refusal::NotSendable(MessageState::Held))
        );
        assert_eq!(
            apply(
                &held,
                Event::Failed {
                    at: at(14),
                    action: Action::Retry(Duration::ZERO)
                }
            ),
            Err(Refusal::NotInFlight(MessageState::Held))
        );
        let released = step(&held, Event::Release { at: at(20) });
        assert_eq!(
            released.state,
            State::Queued {
                next_attempt_at: None
            }
        );
        assert_eq!(
            (
                released.failures,
                released.failing_since,
                released.released_at
            ),
            (0, None, Some(at(20)))
        );
        assert_eq!(released.attempts, 2, "attempts are history, never reset");
    }

    #[test]
    fn a_policy_skip_and_an_operator_skip_keep_the_reason() {
        let sent = step(&queued(), Event::Send { at: at(1) });
        let skipped = step(
            &sent,
            Event::Failed {
                at: at(2),
                action: Action::Skip("skipped by policy on_ar: skip".into()),
            },
        );
        assert_eq!(skipped.state.kind(), MessageState::Skipped);
        let by_hand = step(
            &queued(),
            Event::Skip {
                at: at(3),
                reason: "skipped by an operator".into(),
            },
        );
        assert_eq!(
            by_hand.state,
            State::Skipped {
                at: at(3),
                reason: "skipped by an operator".into()
            }
        );
        // Done messages are not retried or skipped again.
        for done in [&skipped, &by_hand] {
            assert_eq!(
                apply(done, Event::Release { at: at(4) }),
                Err(Refusal::NotPending(MessageState::Skipped))
            );
        }
    }

    #[test]
    fn an_accepting_ack_delivers_whatever_happened_meanwhile_but_only_once() {
        let sent = step(&queued(), Event::Send { at: at(1) });
        // An operator skipped it while the ACK was on its way: the ACK is what happened.
        let skipped = step(
            &sent,
            Event::Skip {
                at: at(2),
                reason: "x".into(),
            },
        );
        let accepted = Event::Accepted {
            at: at(3),
            ack_code: Some(AckCode::ApplicationAccept),
        };
        let delivered = step(&skipped, accepted.clone());
        assert_eq!(
            delivered.state,
            State::Delivered {
                at: at(3),
                ack_code: Some(AckCode::ApplicationAccept)
            }
        );
        assert_eq!(apply(&delivered, accepted), Err(Refusal::AlreadyDelivered));
        assert_eq!(
            apply(
                &delivered,
                Event::Skip {
                    at: at(4),
                    reason: "y".into()
                }
            ),
            Err(Refusal::NotPending(MessageState::Delivered))
        );
        assert_eq!(
            apply(&delivered, Event::Restart),
            Err(Refusal::NotInFlight(MessageState::Delivered))
        );
    }
}
