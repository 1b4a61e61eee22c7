//! The pure step, rule by rule: no store, no plugin, no clock.

use std::collections::BTreeMap;
use std::time::Duration;

use authplug_host::CallError;
use authplug_protocol::{ErrorCode, RefreshOutcome, Secret};
use authplug_store::{Attempt, Lifecycle, Outcome, State, SystemRecord, SystemSummary};

use super::*;
use crate::events::EventKind;

const NOW_MS: i64 = 1_700_000_000_000;
const NOW: i64 = NOW_MS / 1000;

fn record(failures: i64, expires_at: Option<i64>) -> SystemRecord {
    SystemRecord {
        summary: SystemSummary {
            id: "crm".into(),
            scheme: "oauth2".into(),
            state: State::Active,
            state_reason: None,
            parameters: BTreeMap::from([("token_url".into(), "https://t".into())]),
            expires_at,
            version: 7,
            created_at: NOW - 3600,
            updated_at: NOW - 3600,
            last_refresh_at: None,
            failures,
            secret_names: vec![],
            key_ids: vec![],
            due_at: None,
        },
        required: BTreeMap::new(),
        injected: BTreeMap::from([("oauth_access_token".into(), Secret::new("at-old"))]),
    }
}

fn backoff() -> Backoff {
    Backoff {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
        attempts_per_call: 3,
        max_wait_in_call: Duration::from_secs(10),
    }
}

/// Settles `verdict` for attempt `number` of a call on `record`, with full jitter.
fn settled(verdict: Verdict, record: &SystemRecord, number: u32) -> Settlement {
    let attempt = Attempt::started(41, "crm", "host/1/x/n#1", 7, NOW_MS - 500);
    let backoff = backoff();
    settle(
        verdict,
        &Attempted {
            record,
            attempt: &attempt,
            number,
            answered_at_ms: Some(NOW_MS - 10),
            now_ms: NOW_MS,
            backoff: &backoff,
            jitter: 1.0,
            interrupted: None,
            margin_secs: 300,
        },
    )
}

fn call_error(code: ErrorCode) -> CallError {
    CallError { scheme: "oauth2".into(), code, message: "it broke".into() }
}

fn kinds(settlement: &Settlement) -> Vec<EventKind> {
    settlement.events.iter().map(|e| e.kind).collect()
}

#[test]
fn answers_are_sorted_into_renewed_refused_transient_and_failed() {
    let renewed = RefreshOutcome::Renewed { injected: BTreeMap::new(), expires_at: Some(1) };
    assert!(matches!(classify(Ok(renewed), None), Verdict::Renewed { expires_at: Some(1), .. }));
    let refused = RefreshOutcome::Reauthorize { reason: "invalid_grant".into() };
    assert!(
        matches!(classify(Ok(refused), Some(5)), Verdict::Refused { reason } if reason == "invalid_grant")
    );
    // A transport failure (timeout, reset) is transient, with what the host saw of Retry-After.
    assert!(matches!(
        classify(Err(call_error(ErrorCode::Http)), Some(30)),
        Verdict::Transient { retry_after: Some(30), .. }
    ));
    // Anything else the host reports (a contract violation, a panic) is neither.
    for code in [ErrorCode::ContractViolation, ErrorCode::PluginPanic, ErrorCode::Internal] {
        let shown = code.to_string();
        assert!(matches!(classify(Err(call_error(code)), None), Verdict::Failed(_)), "{shown}");
    }
}

#[test]
fn the_schemes_own_retry_after_wins_over_the_header() {
    let transient = |own| RefreshOutcome::Transient { reason: "503".into(), retry_after_secs: own };
    assert!(matches!(
        classify(Ok(transient(Some(7))), Some(30)),
        Verdict::Transient { retry_after: Some(7), .. }
    ));
    assert!(matches!(
        classify(Ok(transient(None)), Some(30)),
        Verdict::Transient { retry_after: Some(30), .. }
    ));
}

#[test]
fn renewed_secrets_are_stored_active_and_said_once() {
    let record = record(0, Some(NOW + 10));
    let injected = BTreeMap::from([("oauth_access_token".into(), Secret::new("at-new"))]);
    let s = settled(Verdict::Renewed { injected, expires_at: Some(NOW + 3600) }, &record, 1);
    assert_eq!(s.finish.outcome, Outcome::Renewed);
    assert!(s.finish.release, "the lease goes back with the result");
    assert_eq!(s.finish.answered_at_ms, Some(NOW_MS - 10));
    let change = s.finish.change.as_ref().unwrap();
    let stored = change.injected.as_ref().unwrap();
    assert_eq!(
        (stored.expires_at, stored.secrets["oauth_access_token"].expose()),
        (Some(NOW + 3600), "at-new")
    );
    assert_eq!(
        (change.state.clone(), change.failures, change.last_refresh_at),
        (Some(Lifecycle::Active), Some(0), Some(NOW))
    );
    assert_eq!(kinds(&s), [EventKind::Refreshed]);
    let (action, detail) = s.finish.event.as_ref().unwrap();
    assert_eq!((action.as_str(), &detail["recovered"]), ("refreshed", &serde_json::json!(false)));
    let Then::Done(token) = s.then.at_version(Some(8)) else {
        panic!("renewed hands the secrets out")
    };
    assert!(token.refreshed);
    assert_eq!((token.version, token.issued_at, token.expires_at), (8, NOW, Some(NOW + 3600)));
}

#[test]
fn a_renewal_after_failures_also_says_recovered() {
    let record = record(2, Some(NOW + 10));
    let s = settled(Verdict::Renewed { injected: BTreeMap::new(), expires_at: None }, &record, 1);
    assert_eq!(kinds(&s), [EventKind::Refreshed, EventKind::Recovered]);
    assert_eq!(s.events[1].reason.as_deref(), Some("refreshed after 2 failed attempts"));
    assert_eq!(s.finish.event.as_ref().unwrap().1["recovered"], true);
}

#[test]
fn a_refusal_needs_reauthorisation_once_with_the_providers_reason() {
    let record = record(1, Some(NOW + 10));
    let s = settled(Verdict::Refused { reason: "invalid_grant: revoked".into() }, &record, 1);
    assert_eq!(s.finish.outcome, Outcome::Reauthorize);
    let change = s.finish.change.as_ref().unwrap();
    assert_eq!(change.state, Some(Lifecycle::NeedsReauth("invalid_grant: revoked".into())));
    assert_eq!(change.failures, Some(2));
    assert!(change.injected.is_none(), "the secrets stay as they were");
    assert_eq!(kinds(&s), [EventKind::NeedsReauth]);
    assert_eq!(s.finish.retry_at_ms, None, "nothing to retry");
    assert!(
        matches!(s.then, Then::Fail(EngineError::NeedsReauth { reason, .. }) if reason == "invalid_grant: revoked")
    );
}

#[test]
fn a_refusal_after_an_attempt_died_in_flight_says_so() {
    let record = record(0, None);
    let attempt = Attempt::started(41, "crm", "h#1", 7, NOW_MS);
    let backoff = backoff();
    let s = settle(
        Verdict::Refused { reason: "invalid_grant".into() },
        &Attempted {
            record: &record,
            attempt: &attempt,
            number: 1,
            answered_at_ms: None,
            now_ms: NOW_MS,
            backoff: &backoff,
            jitter: 1.0,
            interrupted: Some("an earlier refresh died in flight"),
            margin_secs: 300,
        },
    );
    assert_eq!(
        s.events[0].reason.as_deref(),
        Some("invalid_grant; an earlier refresh died in flight")
    );
}

#[test]
fn a_refusal_of_an_old_token_hands_out_the_newer_one_stored_meanwhile() {
    let mut current = record(0, Some(NOW + 3600));
    current.summary.version = 9;
    let s = settled(
        Verdict::Superseded { reason: "invalid_grant".into(), current: Box::new(current) },
        &record(0, Some(NOW + 10)),
        1,
    );
    assert_eq!(s.finish.outcome, Outcome::Superseded);
    assert!(s.finish.change.is_none() && s.events.is_empty(), "nothing changes, nothing is said");
    let Then::Done(token) = s.then.at_version(None) else { panic!("superseded is a success") };
    assert_eq!((token.version, token.refreshed), (9, true));
}

#[test]
fn a_transient_failure_is_retried_in_the_call_with_a_doubling_backoff() {
    let record = record(0, Some(NOW + 10));
    let transient = || Verdict::Transient { reason: "HTTP 503".into(), retry_after: None };
    let first = settled(transient(), &record, 1);
    assert!(matches!(first.then, Then::Retry(d) if d == Duration::from_secs(1)));
    assert!(
        !first.finish.release && first.finish.change.is_none(),
        "the lease is kept for the retry"
    );
    assert_eq!(first.finish.retry_at_ms, Some(NOW_MS + 1000));
    let second = settled(transient(), &record, 2);
    assert!(matches!(second.then, Then::Retry(d) if d == Duration::from_secs(2)));
    assert_eq!(second.events[0].failures, 2);
}

#[test]
fn the_last_transient_attempt_counts_the_failures_and_hands_out_still_valid_secrets() {
    let record = record(4, Some(NOW + 10));
    let s =
        settled(Verdict::Transient { reason: "HTTP 503".into(), retry_after: None }, &record, 3);
    assert!(s.finish.release);
    assert_eq!(s.finish.change.as_ref().unwrap().failures, Some(7));
    assert_eq!(s.finish.outcome, Outcome::Transient);
    let Then::Fail(EngineError::Unavailable { still_valid: Some(token), retry_at_ms, .. }) =
        s.then.at_version(Some(8))
    else {
        panic!("unavailable, with the stored secrets")
    };
    assert_eq!((token.version, token.refreshed), (8, false));
    assert_eq!(token.injected["oauth_access_token"].expose(), "at-old");
    // 2^6 s, capped at a minute.
    assert_eq!(retry_at_ms, Some(NOW_MS + 60_000));
}

#[test]
fn expired_secrets_do_not_ride_along_with_a_failure() {
    let s = settled(
        Verdict::Transient { reason: "HTTP 503".into(), retry_after: None },
        &record(0, Some(NOW)),
        3,
    );
    assert!(matches!(s.then, Then::Fail(EngineError::Unavailable { still_valid: None, .. })));
}

#[test]
fn retry_after_lengthens_the_wait_up_to_an_hour_and_a_long_one_ends_the_call() {
    let record = record(0, Some(NOW + 10));
    let asked = |secs| Verdict::Transient { reason: "HTTP 429".into(), retry_after: Some(secs) };
    let s = settled(asked(5), &record, 1);
    assert!(
        matches!(s.then, Then::Retry(d) if d == Duration::from_secs(5)),
        "within the call's wait"
    );
    assert_eq!(s.events[0].retry_after_secs, Some(5));
    let s = settled(asked(30), &record, 1);
    assert!(
        matches!(s.then, Then::Fail(EngineError::Unavailable { .. })),
        "longer than 10 s: ends the call"
    );
    assert_eq!(s.finish.retry_at_ms, Some(NOW_MS + 30_000), "and nobody tries before it");
    let s = settled(asked(86_400 * 30), &record, 1);
    assert_eq!(s.finish.retry_at_ms, Some(NOW_MS + 3_600_000), "capped at an hour");
}

#[test]
fn a_failure_that_is_neither_is_recorded_with_a_backoff_and_not_retried() {
    let s = settled(Verdict::Failed(call_error(ErrorCode::ContractViolation)), &record(0, None), 1);
    assert_eq!(s.finish.outcome, Outcome::Failed);
    assert!(s.finish.release);
    assert_eq!(s.finish.retry_at_ms, Some(NOW_MS + 1000));
    assert_eq!(s.finish.change.as_ref().unwrap().failures, Some(1));
    assert!(s.finish.detail.as_deref().unwrap().contains("contract_violation"));
    assert!(matches!(s.then, Then::Fail(EngineError::Scheme { .. })));
}
