//! The lifecycle engine against oidc-provider (refresh tokens rotated; reusing one revokes the
//! whole grant), through a counting fault proxy, with `authplug` processes on SQLite and on
//! PostgreSQL: concurrent callers, kill -9 at random moments, faults, a revoked grant.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authplug_engine::{Backoff, EngineConfig, EngineError, EventKind, Events, Webhook};
use authplug_protocol::Secret;
use authplug_testkit::Fault;
use tests::lifecycle::{fingerprint, Lab, SYSTEM};
use tests::{stderr, stdout};

/// Starts a `token-burst` process and waits for its `ready`.
fn burst(lab: &Lab, callers: usize) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_token-burst"));
    lab.environment(&mut command);
    let mut child = command
        .args([SYSTEM, &callers.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    (child, out)
}

fn two_processes_fifty_callers_each(lab: Lab) {
    lab.make_due(SYSTEM);
    let before = lab.proxy.forwarded();
    let mut bursts = vec![burst(&lab, 50), burst(&lab, 50)];
    // Both are loaded and waiting: release them together.
    for (child, _) in &mut bursts {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    let mut seen = BTreeSet::new();
    let mut answers = 0;
    for (mut child, out) in bursts {
        for line in out.lines() {
            let line: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            assert_eq!(line["ok"], true, "{line}");
            seen.insert(line["access"].as_str().unwrap().to_owned());
            answers += 1;
        }
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(answers, 100);
    assert_eq!(lab.proxy.forwarded() - before, 1, "exactly one refresh grant reached the server");
    let stored = lab.store().get(SYSTEM).unwrap().unwrap();
    let stored_access = fingerprint(stored.injected["oauth_access_token"].expose());
    assert_eq!(seen, BTreeSet::from([stored_access]), "every caller got the one new token");
    // The grant is alive: the stored refresh token still works.
    let output = lab.run(&["refresh", SYSTEM]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(lab.proxy.forwarded() - before, 2);
}

#[test]
fn two_processes_of_fifty_callers_cause_one_refresh_grant_sqlite() {
    two_processes_fifty_callers_each(Lab::sqlite());
}

#[test]
fn two_processes_of_fifty_callers_cause_one_refresh_grant_postgres() {
    two_processes_fifty_callers_each(Lab::postgres());
}

/// What a kill interrupted, from the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// Before the request left, or after the result was stored.
    Outside,
    /// After the request left and before its result was stored.
    InFlight,
}

#[derive(Debug, Default)]
struct Tally {
    outside: usize,
    in_flight_recovered: usize,
    in_flight_lost: usize,
}

fn kill_nine_during_refreshes(lab: Lab, cycles: usize) {
    let mut tally = Tally::default();
    let mut rng_state = authplug_store::now_ms() as u64 | 1;
    let mut random = move |bound: u64| {
        // xorshift: enough to spread the kill moments.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state % bound.max(1)
    };
    // How long an uninterrupted `authplug refresh` takes here: kills land anywhere inside it.
    let started = Instant::now();
    let output = lab.run(&["refresh", SYSTEM]);
    assert!(output.status.success(), "{}", stderr(&output));
    let span = (started.elapsed().as_micros() as u64) * 12 / 10;
    for cycle in 0..cycles {
        let last_attempt = lab.store().attempts(SYSTEM, 1).unwrap().first().map(|a| a.id);
        let mut child =
            lab.command().args(["refresh", SYSTEM]).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(random(span)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let newest = lab.store().attempts(SYSTEM, 1).unwrap().into_iter().next();
        let moment = match &newest {
            Some(a) if Some(a.id) != last_attempt && a.interrupted_in_flight() => Moment::InFlight,
            _ => Moment::Outside,
        };
        let killed_attempt = newest.map(|a| a.id);
        let next = lab.run(&["refresh", SYSTEM]);
        match (moment, next.status.code()) {
            (Moment::Outside, Some(0)) => tally.outside += 1,
            (Moment::InFlight, Some(0)) => tally.in_flight_recovered += 1,
            (Moment::InFlight, Some(7)) => {
                tally.in_flight_lost += 1;
                let message = stderr(&next);
                assert!(message.contains("needs re-authorisation"), "{message}");
                assert!(message.contains("invalid_grant"), "the provider's reason: {message}");
                assert!(message.contains("died in flight"), "what happened: {message}");
                // Reported, not retried: asking again does not reach the provider.
                let selected = lab.proxy.selected();
                let again = lab.run(&["token", SYSTEM]);
                assert_eq!(again.status.code(), Some(7), "{}", stderr(&again));
                assert_eq!(lab.proxy.selected(), selected, "no retry loop");
                // One refused attempt by the next process (counted in the journal: the proxy
                // may count the killed process's request late, since it left before the kill).
                let after: Vec<_> = lab
                    .store()
                    .attempts(SYSTEM, 5)
                    .unwrap()
                    .into_iter()
                    .filter(|a| Some(a.id) > killed_attempt)
                    .collect();
                assert_eq!(after.len(), 1, "{after:?}");
                assert_eq!(after[0].outcome, Some(authplug_store::Outcome::Reauthorize));
                // A human re-authorises: the system is active again.
                let engine =
                    lab.engine(EngineConfig::default(), Duration::from_secs(10), Events::default());
                lab.reauthorize(&engine, SYSTEM);
            }
            (moment, code) => panic!(
                "cycle {cycle}: after a kill {moment:?}, the next refresh exited {code:?}: {}",
                stderr(&next)
            ),
        }
    }
    eprintln!("{cycles} kills: {tally:?}");
    // The window: from the journaled send to the stored result, against the round trip alone.
    let mut round_trips = Vec::new();
    let mut gaps = Vec::new();
    for attempt in lab.store().attempts(SYSTEM, 50).unwrap() {
        if let (Some(sent), Some(answered), Some(finished)) =
            (attempt.sent_at_ms, attempt.answered_at_ms, attempt.finished_at_ms)
        {
            assert!(sent <= answered && answered <= finished, "{attempt:?}");
            round_trips.push(answered - sent);
            gaps.push(finished - answered);
        }
    }
    round_trips.sort();
    gaps.sort();
    assert!(!gaps.is_empty());
    eprintln!(
        "window over {} attempts: round trip median {} ms (max {}), answer to stored result median \
         {} ms (max {})",
        gaps.len(),
        round_trips[round_trips.len() / 2],
        round_trips.last().unwrap(),
        gaps[gaps.len() / 2],
        gaps.last().unwrap()
    );
    assert_eq!(tally.outside + tally.in_flight_recovered + tally.in_flight_lost, cycles);
    assert!(tally.outside > 0, "{tally:?}");
    // Each loss was reported exactly once in the audit trail.
    let reports =
        lab.store().audit(SYSTEM).unwrap().iter().filter(|e| e.action == "needs_reauth").count();
    assert_eq!(reports, tally.in_flight_lost);
    let status = lab.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status[0]["state"], "active", "{status}");
}

#[test]
fn kill_nine_during_200_refreshes_sqlite() {
    kill_nine_during_refreshes(Lab::sqlite(), 200);
}

#[test]
fn kill_nine_during_200_refreshes_postgres() {
    kill_nine_during_refreshes(Lab::postgres(), 200);
}

fn quick_backoff() -> EngineConfig {
    EngineConfig {
        backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            attempts_per_call: 3,
            max_wait_in_call: Duration::from_secs(3),
        },
        ..EngineConfig::default()
    }
}

#[test]
fn faults_between_engine_and_server_lose_nothing_and_back_off_visibly() {
    let lab = Lab::sqlite();
    let (hook, delivered) = tests::webhook::receiver("whsec-test", 1);
    let events = lab.host.block_on(async {
        Events::with_webhook(Webhook::new(
            format!("{}/events", hook.url()),
            Secret::new("whsec-test"),
        ))
    });
    let mut watched = events.subscribe();
    let engine = lab.engine(quick_backoff(), Duration::from_millis(500), events);
    let faults = [
        Fault::Hang(Duration::from_millis(1500)),
        Fault::Reset,
        Fault::Status { status: 503, retry_after: None },
        Fault::Truncated,
        Fault::Status { status: 429, retry_after: Some("1".into()) },
    ];
    for fault in faults {
        let forwarded = lab.proxy.forwarded();
        lab.proxy.push_faults([fault.clone()]);
        let token = lab.host.block_on(engine.refresh(SYSTEM)).unwrap();
        assert!(token.refreshed, "{fault:?}");
        assert_eq!(lab.proxy.forwarded() - forwarded, 1, "{fault:?}: one grant reached the server");
        let failed = watched.try_recv().unwrap();
        assert_eq!(failed.kind, EventKind::RefreshFailed, "{fault:?}");
        assert!(failed.retry_in_ms.unwrap() > 0, "the backoff is in the event");
        if let Fault::Status { status: 429, .. } = fault {
            assert_eq!(failed.retry_after_secs, Some(1));
            assert!(failed.retry_in_ms.unwrap() >= 1000, "Retry-After is honoured");
        }
        assert_eq!(watched.try_recv().unwrap().kind, EventKind::Refreshed);
    }
    // The server stays down for a whole call: the stored secrets are untouched and still
    // handed out while valid, and the failures are counted.
    let before = lab.store().get(SYSTEM).unwrap().unwrap();
    lab.proxy.push_faults((0..3).map(|_| Fault::Status { status: 503, retry_after: None }));
    let error = lab.host.block_on(engine.refresh(SYSTEM)).unwrap_err();
    assert!(matches!(error, EngineError::Unavailable { still_valid: Some(_), .. }), "{error}");
    let after = lab.store().get(SYSTEM).unwrap().unwrap();
    assert_eq!(after.injected, before.injected, "nothing lost or corrupted");
    assert_eq!(after.summary.failures, 3);
    let token = lab.host.block_on(engine.token(SYSTEM)).unwrap();
    assert_eq!(token.injected, before.injected, "still valid, so still usable");
    // The server is back: the credential recovers.
    let token = lab.host.block_on(engine.refresh(SYSTEM)).unwrap();
    assert_ne!(token.injected, before.injected);
    assert_eq!(lab.store().get(SYSTEM).unwrap().unwrap().summary.failures, 0);
    let kinds: Vec<EventKind> =
        std::iter::from_fn(|| watched.try_recv().ok()).map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::RefreshFailed; 3]
            .into_iter()
            .chain([EventKind::Refreshed, EventKind::Recovered])
            .collect::<Vec<_>>()
    );
    // Every event reached the webhook, signed, in order.
    assert!(lab.host.block_on(engine.events().flush(Duration::from_secs(10))));
    let delivered = delivered.lock().unwrap();
    assert_eq!(delivered.len(), 5 * 2 + 5, "each once, the first after a retry");
    assert_eq!(hook.hits(), 5 * 2 + 5 + 1);
    assert_eq!(delivered.last().unwrap()["kind"], "recovered");
    assert!(delivered.iter().all(|e| e["system"] == SYSTEM));
    let text = serde_json::to_string(&*delivered).unwrap();
    for value in after.injected.values().chain(token.injected.values()) {
        assert!(!text.contains(value.expose()), "no secret in events");
    }
}

#[test]
fn a_revoked_grant_needs_reauthorisation_once_without_a_retry_storm() {
    let lab = Lab::sqlite();
    let events = Events::default();
    let mut watched = events.subscribe();
    let engine = lab.engine(quick_backoff(), Duration::from_secs(5), events);
    lab.revoke_grant(SYSTEM);
    lab.make_due(SYSTEM);
    let selected = lab.proxy.selected();
    let error = lab.host.block_on(engine.token(SYSTEM)).unwrap_err();
    let EngineError::NeedsReauth { reason, .. } = &error else { panic!("{error}") };
    assert!(reason.starts_with("invalid_grant"), "the provider's reason: {reason}");
    // Asked again and again, from the engine, a sweep and the command line: nobody calls out.
    for _ in 0..5 {
        assert!(matches!(
            lab.host.block_on(engine.token(SYSTEM)),
            Err(EngineError::NeedsReauth { .. })
        ));
    }
    assert!(lab.host.block_on(engine.sweep(4)).unwrap().is_empty());
    let output = lab.run(&["token", SYSTEM]);
    assert_eq!(output.status.code(), Some(7));
    assert!(stderr(&output).contains("invalid_grant"), "{}", stderr(&output));
    assert_eq!(lab.proxy.selected() - selected, 1, "one request, no retry storm");
    let event = watched.try_recv().unwrap();
    assert_eq!(event.kind, EventKind::NeedsReauth);
    assert!(watched.try_recv().is_err(), "one event");
    let status = lab.run(&["status"]);
    let status = stdout(&status);
    assert!(status.contains("needs_reauth") && status.contains("invalid_grant"), "{status}");
    // Re-authorised, it is active again and refreshes.
    lab.reauthorize(&engine, SYSTEM);
    assert_eq!(watched.try_recv().unwrap().kind, EventKind::Recovered);
    lab.host.block_on(engine.refresh(SYSTEM)).unwrap();
}

#[test]
fn token_prints_fresh_secrets_for_scripts() {
    let lab = Lab::sqlite();
    lab.make_due(SYSTEM);
    let output = lab.run(&["token", SYSTEM, "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["refreshed"], true);
    assert!(json["expires_at"].as_i64().unwrap() > authplug_store::now_secs() + 200);
    let stored = lab.store().get(SYSTEM).unwrap().unwrap();
    let access = stored.injected["oauth_access_token"].expose();
    assert!(json["secrets"]["oauth_access_token"] == access, "the stored access token is printed");
    // Not due any more: the same token, without a request.
    let forwarded = lab.proxy.forwarded();
    let output = lab.run(&["token", SYSTEM, "--secret", "oauth_access_token"]);
    assert!(stdout(&output).trim() == access, "--secret prints the value alone");
    assert_eq!(lab.proxy.forwarded(), forwarded);
    let output = lab.run(&["token", SYSTEM, "--secret", "nope"]);
    assert_eq!(output.status.code(), Some(4));
    assert!(!stderr(&output).contains(access), "names, never values");
    let output = lab.run(&["token", "missing"]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
}

#[test]
fn refresh_due_refreshes_what_is_due_or_idle_and_signs_its_events() {
    let lab = Lab::sqlite();
    let (hook, delivered) = tests::webhook::receiver("cli-whsec", 0);
    let forwarded = lab.proxy.forwarded();
    let output = lab.run(&["refresh", "--due", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "[]", "nothing is due");
    assert_eq!(lab.proxy.forwarded(), forwarded);
    // Idle for at least 0 seconds: keep-alive refreshes it, and the event reaches the webhook
    // before the command exits.
    let output = lab
        .command()
        .args(["refresh", "--due", "--keepalive", "0", "--json"])
        .env("AUTHPLUG_WEBHOOK_URL", format!("{}/hook", hook.url()))
        .env("AUTHPLUG_WEBHOOK_SECRET", "cli-whsec")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let results: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(results[0]["system"], SYSTEM);
    assert_eq!(results[0]["ok"], true);
    assert_eq!(lab.proxy.forwarded(), forwarded + 1);
    let delivered = delivered.lock().unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["kind"], "refreshed");
    // A webhook without a signing secret is refused up front.
    let output = lab
        .command()
        .args(["refresh", SYSTEM])
        .env("AUTHPLUG_WEBHOOK_URL", format!("{}/hook", hook.url()))
        .env_remove("AUTHPLUG_WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("signing secret"), "{}", stderr(&output));
    let output = lab
        .command()
        .args(["refresh", SYSTEM])
        .env("AUTHPLUG_WEBHOOK_URL", "hooks.example.test/authplug")
        .env("AUTHPLUG_WEBHOOK_SECRET", "cli-whsec")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--webhook-url must be"), "{}", stderr(&output));
}

#[test]
fn a_caller_that_goes_away_does_not_cancel_a_refresh_in_flight() {
    let lab = Lab::sqlite();
    let engine = lab.engine(EngineConfig::default(), Duration::from_secs(10), Events::default());
    lab.make_due(SYSTEM);
    // The provider takes 500 ms to answer; the caller gives up after 50 ms.
    lab.proxy.push_faults([Fault::SlowAnswer(Duration::from_millis(500))]);
    let gave_up = lab.host.block_on(async {
        tokio::time::timeout(Duration::from_millis(50), engine.token(SYSTEM)).await.is_err()
    });
    assert!(gave_up);
    // The refresh went on: the next caller shares it and gets the rotated token, stored.
    let token = lab.host.block_on(engine.token(SYSTEM)).unwrap();
    assert!(token.refreshed);
    assert_eq!(lab.proxy.forwarded(), 1, "one refresh grant, not a second with the old token");
    let stored = lab.store().get(SYSTEM).unwrap().unwrap();
    assert_eq!(stored.injected, token.injected);
    assert!(!lab.store().attempts(SYSTEM, 1).unwrap()[0].interrupted_in_flight());
    // And the grant is alive.
    lab.host.block_on(engine.refresh(SYSTEM)).unwrap();
}

/// `authorize` answers are reused for the same system, but never across a change the engine
/// made, a re-authorisation, or the moment the secrets become due.
#[test]
fn authorize_answers_are_reused_until_the_system_changes_or_falls_due() {
    let lab = Lab::sqlite();
    let config =
        EngineConfig { authorize_cache: Duration::from_secs(600), ..EngineConfig::default() };
    let engine = lab.engine(config, Duration::from_secs(10), Events::default());
    let authorize = |engine: &Arc<authplug_engine::Engine>| {
        lab.host.block_on(engine.authorize(SYSTEM)).unwrap()
    };
    let header = |a: &authplug_engine::Authorization| a.applied.headers[0].1.expose().to_owned();

    let first = authorize(&engine);
    assert!(header(&first).starts_with("Bearer "));
    let again = authorize(&engine);
    assert!(Arc::ptr_eq(&first, &again), "the same answer, reused");

    // A refresh by this engine: the next answer carries the new token.
    let before = lab.proxy.forwarded();
    let refreshed = lab.host.block_on(engine.refresh(SYSTEM)).unwrap();
    assert_eq!(lab.proxy.forwarded() - before, 1);
    let after_refresh = authorize(&engine);
    assert_eq!(after_refresh.version, refreshed.version);
    assert!(header(&after_refresh) != header(&first), "a new token (compared without printing it)");

    // A re-authorisation: not the old answer either.
    lab.reauthorize(&engine, SYSTEM);
    let reauthorized = authorize(&engine);
    assert!(reauthorized.version > after_refresh.version);
    assert!(
        header(&reauthorized) != header(&after_refresh),
        "a new token (compared without printing it)"
    );

    // Secrets that are due are refreshed before they are applied, never served from memory:
    // here they fall due within the answer's lifetime, so the answer is not kept past then.
    let store = lab.store();
    let record = store.get(SYSTEM).unwrap().unwrap();
    // Due at about half the remaining lifetime before expiry, `soon - 2`: a second boundary
    // between this update and the first authorize still finds it not due.
    let soon = authplug_store::now_secs() + 4;
    let injected = authplug_store::Injected::new(record.injected.clone(), Some(soon));
    let change =
        authplug_store::Change { injected: Some(injected), ..authplug_store::Change::default() };
    store.update(SYSTEM, record.summary.version, change, "test").unwrap();
    engine.forget(SYSTEM);
    let short = authorize(&engine);
    assert_eq!(short.expires_at, Some(soon), "not due yet: served as stored");
    let before = lab.proxy.forwarded();
    while authplug_store::now_secs() < soon {
        let answer = authorize(&engine);
        if answer.refreshed {
            break;
        }
        assert!(Arc::ptr_eq(&answer, &short), "reused while not due");
        std::thread::sleep(Duration::from_millis(50));
    }
    let renewed = authorize(&engine);
    assert_eq!(lab.proxy.forwarded() - before, 1, "one refresh once due");
    assert!(renewed.expires_at > Some(soon));
    assert!(header(&renewed) != header(&short), "a new token (compared without printing it)");
}
