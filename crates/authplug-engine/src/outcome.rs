//! The pure step of a refresh attempt: what the scheme answered becomes a [`Verdict`], and a
//! verdict becomes a [`Settlement`]: the journal's [`Finish`] (what is stored, in one
//! transaction), the [`Event`]s said once it is stored, and what the caller does next. No I/O and
//! no clock of its own: everything it needs is in [`Attempted`], so each rule can be tested
//! alone.

use std::collections::BTreeMap;
use std::time::Duration;

use authplug_host::CallError;
use authplug_protocol::{ErrorCode, RefreshOutcome, Secret};
use authplug_store::{Attempt, Change, Finish, Injected, Lifecycle, Outcome, SystemRecord};

use crate::events::{Event, EventKind};
use crate::{Backoff, EngineError, Token};

/// The longest `Retry-After` honoured: a far-future value must not park a system for days.
pub(crate) const MAX_RETRY_AFTER_SECS: u64 = 3600;

/// What one attempt's answer means.
#[derive(Debug)]
pub(crate) enum Verdict {
    Renewed {
        injected: BTreeMap<String, Secret>,
        expires_at: Option<i64>,
    },
    /// The provider refused the credential, and the system had not moved meanwhile.
    Refused {
        reason: String,
    },
    /// The provider refused, but another holder stored a newer credential meanwhile: ours was
    /// simply old (found by re-reading the store before believing a refusal).
    Superseded {
        reason: String,
        current: Box<SystemRecord>,
    },
    /// Worth trying again later; `retry_after` is the provider's wish, in seconds.
    Transient {
        reason: String,
        retry_after: Option<u64>,
    },
    /// Neither transient nor a refusal: a contract violation, a plugin panic.
    Failed(CallError),
    /// The scheme had nothing to renew with (no refresh token): kept if the secrets never
    /// expire, a refusal if they do.
    Unchanged {
        reason: String,
    },
}

/// Sorts a scheme's answer. `observed_retry_after` is what the host saw in the provider's
/// `Retry-After` header; the scheme's own value wins.
pub(crate) fn classify(
    answer: Result<RefreshOutcome, CallError>,
    observed_retry_after: Option<u64>,
) -> Verdict {
    match answer {
        Ok(RefreshOutcome::Renewed { injected, expires_at }) => {
            Verdict::Renewed { injected, expires_at }
        }
        Ok(RefreshOutcome::Reauthorize { reason }) => Verdict::Refused { reason },
        Ok(RefreshOutcome::Unchanged { reason }) => Verdict::Unchanged { reason },
        Ok(RefreshOutcome::Transient { reason, retry_after_secs }) => {
            Verdict::Transient { reason, retry_after: retry_after_secs.or(observed_retry_after) }
        }
        // The transport failed (timeout, reset, truncated answer): transient.
        Err(error) if error.code == ErrorCode::Http => {
            Verdict::Transient { reason: error.message, retry_after: observed_retry_after }
        }
        Err(error) => Verdict::Failed(error),
    }
}

/// What the step knows of the attempt.
#[derive(Debug)]
pub(crate) struct Attempted<'a> {
    /// The system as read when the refresh call began.
    pub record: &'a SystemRecord,
    pub attempt: &'a Attempt,
    /// The attempt's number within the call (1, 2, ...).
    pub number: u32,
    /// When the provider's last answer arrived, Unix milliseconds.
    pub answered_at_ms: Option<i64>,
    /// Now, Unix milliseconds.
    pub now_ms: i64,
    pub backoff: &'a Backoff,
    /// The backoff's jitter, in `[0.5, 1.0]`.
    pub jitter: f64,
    /// What the operator should know of the attempt before, which died in flight.
    pub interrupted: Option<&'a str>,
    /// The scheme's refresh margin, seconds (so the store indexes when renewed secrets fall due).
    pub margin_secs: i64,
}

/// What to do once the finish is stored.
#[derive(Debug)]
pub(crate) enum Then {
    /// Hand these secrets out.
    Done(Token),
    /// Try again after this long, under the same lease.
    Retry(Duration),
    /// Give up with this error.
    Fail(EngineError),
}

impl Then {
    /// With the system's version after the finish was stored (when it changed the system).
    pub(crate) fn at_version(mut self, version: Option<i64>) -> Self {
        let Some(version) = version else { return self };
        match &mut self {
            Then::Done(token) => token.version = version,
            Then::Fail(EngineError::Unavailable { still_valid: Some(token), .. }) => {
                token.version = version
            }
            _ => {}
        }
        self
    }
}

/// The attempt's result, ready to store and to say.
#[derive(Debug)]
pub(crate) struct Settlement {
    pub finish: Finish,
    /// Said once the finish is stored, in order.
    pub events: Vec<Event>,
    pub then: Then,
}

/// Turns a verdict into what is stored and said: the one place that builds a refresh's
/// [`Finish`] and [`Event`]s.
pub(crate) fn settle(verdict: Verdict, at: &Attempted<'_>) -> Settlement {
    let summary = &at.record.summary;
    let system = summary.id.clone();
    let event = |kind: EventKind| {
        let mut event = Event::new(kind, &system, &summary.scheme, &at.attempt.holder, at.now_ms);
        event.attempt = Some(at.number);
        event.failures = summary.failures;
        event
    };
    let finish =
        |outcome: Outcome| Finish { answered_at_ms: at.answered_at_ms, ..Finish::new(outcome) };
    let verdict = match verdict {
        // Secrets that expire and cannot be renewed will stop working: a human must act.
        Verdict::Unchanged { reason } if summary.expires_at.is_some() => {
            Verdict::Refused { reason: unrenewable(&reason) }
        }
        other => other,
    };
    match verdict {
        // An offline token: nothing changes but the time it was last looked at, so that a
        // keep-alive comes back after its interval, not every sweep.
        Verdict::Unchanged { reason } => Settlement {
            finish: Finish {
                detail: Some(reason.clone()),
                change: Some(Change {
                    last_refresh_at: Some(at.now_ms.div_euclid(1000)),
                    ..Change::default()
                }),
                event: Some(("refresh_unchanged".into(), serde_json::json!({"reason": reason}))),
                ..finish(Outcome::Unchanged)
            },
            events: vec![],
            then: Then::Done(Token::from_record(at.record.clone(), false)),
        },
        Verdict::Renewed { injected, expires_at } => {
            let recovering = summary.failures > 0;
            let mut refreshed = event(EventKind::Refreshed);
            refreshed.expires_at = expires_at;
            refreshed.failures = 0;
            let (action, mut detail) = refreshed.audit_line();
            detail["recovered"] = recovering.into();
            let now_secs = at.now_ms.div_euclid(1000);
            let change = Change {
                injected: Some(
                    Injected::new(injected.clone(), expires_at).with_margin(at.margin_secs),
                ),
                state: Some(Lifecycle::Active),
                last_refresh_at: Some(now_secs),
                failures: Some(0),
                ..Change::default()
            };
            let mut events = vec![refreshed];
            if recovering {
                let mut recovered = event(EventKind::Recovered);
                recovered.expires_at = expires_at;
                recovered.reason =
                    Some(format!("refreshed after {} failed attempts", summary.failures));
                events.push(recovered);
            }
            let token = Token {
                issued_at: now_secs,
                system,
                scheme: summary.scheme.clone(),
                injected,
                expires_at,
                version: at.attempt.from_version + 1,
                refreshed: true,
                parameters: summary.parameters.clone(),
            };
            Settlement {
                finish: Finish {
                    change: Some(change),
                    event: Some((action, detail)),
                    ..finish(Outcome::Renewed)
                },
                events,
                then: Then::Done(token),
            }
        }
        Verdict::Superseded { reason, current } => Settlement {
            finish: Finish { detail: Some(reason), ..finish(Outcome::Superseded) },
            events: vec![],
            then: Then::Done(Token::from_record(*current, true)),
        },
        Verdict::Refused { reason } => {
            let reason = match at.interrupted {
                Some(note) => format!("{reason}; {note}"),
                None => reason,
            };
            let failures = summary.failures + 1;
            let mut refused = event(EventKind::NeedsReauth);
            refused.reason = Some(reason.clone());
            refused.failures = failures;
            let change = Change {
                state: Some(Lifecycle::NeedsReauth(reason.clone())),
                failures: Some(failures),
                ..Change::default()
            };
            Settlement {
                finish: Finish {
                    detail: Some(reason.clone()),
                    change: Some(change),
                    event: Some(refused.audit_line()),
                    ..finish(Outcome::Reauthorize)
                },
                events: vec![refused],
                then: Then::Fail(EngineError::NeedsReauth { system, reason }),
            }
        }
        Verdict::Transient { reason, retry_after } => {
            let failures = summary.failures + i64::from(at.number);
            let mut delay = at.backoff.delay(count(failures), at.jitter);
            if let Some(seconds) = retry_after {
                delay = delay.max(Duration::from_secs(seconds.min(MAX_RETRY_AFTER_SECS)));
            }
            let retry_at = at.now_ms.saturating_add(millis(delay));
            let again =
                at.number < at.backoff.attempts_per_call && delay <= at.backoff.max_wait_in_call;
            let mut failed = event(EventKind::RefreshFailed);
            failed.reason = Some(reason.clone());
            failed.retry_in_ms = Some(delay.as_millis() as u64);
            failed.retry_after_secs = retry_after;
            failed.failures = failures;
            failed.expires_at = summary.expires_at;
            let finish = Finish {
                detail: Some(reason.clone()),
                retry_at_ms: Some(retry_at),
                // The last attempt of the call counts the failures on the system (a version
                // bump that tells waiting instances to look again) and gives the lease back.
                change: (!again).then(|| Change { failures: Some(failures), ..Change::default() }),
                release: !again,
                event: Some(failed.audit_line()),
                ..finish(Outcome::Transient)
            };
            let then = if again {
                Then::Retry(delay)
            } else {
                let still_valid = summary
                    .expires_at
                    .is_some_and(|e| e > at.now_ms.div_euclid(1000))
                    .then(|| Box::new(Token::from_record(at.record.clone(), false)));
                Then::Fail(EngineError::Unavailable {
                    system,
                    reason,
                    retry_at_ms: Some(retry_at),
                    still_valid,
                })
            };
            Settlement { finish, events: vec![failed], then }
        }
        Verdict::Failed(error) => {
            let failures = summary.failures + i64::from(at.number);
            let delay = at.backoff.delay(count(failures), at.jitter);
            let mut failed = event(EventKind::RefreshFailed);
            failed.reason = Some(error.to_string());
            failed.retry_in_ms = Some(delay.as_millis() as u64);
            failed.failures = failures;
            Settlement {
                finish: Finish {
                    detail: Some(error.to_string()),
                    // Recorded with a backoff, so that nobody retries it in a loop.
                    retry_at_ms: Some(at.now_ms.saturating_add(millis(delay))),
                    change: Some(Change { failures: Some(failures), ..Change::default() }),
                    event: Some(failed.audit_line()),
                    ..finish(Outcome::Failed)
                },
                events: vec![failed],
                then: Then::Fail(EngineError::Scheme { system, error }),
            }
        }
    }
}

/// The reason of a refusal for secrets that expire and that the scheme cannot renew.
pub(crate) fn unrenewable(reason: &str) -> String {
    format!("{reason}, and the secrets expire: authorise again")
}

/// Failures as the backoff counts them (1 or more).
fn count(failures: i64) -> u32 {
    u32::try_from(failures.max(1)).unwrap_or(u32::MAX)
}

fn millis(delay: Duration) -> i64 {
    i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2)
}

#[cfg(test)]
#[path = "outcome_tests.rs"]
mod tests;
