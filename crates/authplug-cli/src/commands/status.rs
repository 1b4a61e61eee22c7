//! `authplug status`: every system's lifecycle, as the engine reads it from the store (the same
//! reading `GET /v1/systems` serves). Loads no plugin.

use serde_json::json;

use crate::commands::listing::{say_next, ListArgs};
use crate::context::Context;
use crate::exit::Failure;
use crate::output::{print_json, print_table, time};

pub fn run(ctx: &Context<'_>, args: &ListArgs) -> Result<(), Failure> {
    let store = ctx.store()?;
    let filter = args.filter();
    let (systems, next) = args
        .walk(|cursor, limit| Ok(authplug_engine::status_page(&store, &filter, cursor, limit)?))?;
    if ctx.json() {
        let out: Vec<_> = systems
            .iter()
            .map(|s| {
                let summary = &s.summary;
                json!({
                    "system": summary.id,
                    "scheme": summary.scheme,
                    "state": s.shown_state(),
                    "reason": summary.state_reason,
                    "expires_at": summary.expires_at,
                    "last_refresh_at": summary.last_refresh_at,
                    "failures": summary.failures,
                    "next_attempt_at_ms": s.next_attempt_at_ms,
                    "last_attempt": s.last_attempt,
                    "interrupted_in_flight": s.interrupted_in_flight,
                    "lease": s.lease,
                })
            })
            .collect();
        if args.limit.is_some() {
            let next = next.map(|c| c.encode());
            return print_json(&json!({"systems": out, "next_cursor": next}));
        }
        return print_json(&out);
    }
    if systems.is_empty() {
        eprintln!("no systems in {}", store.location());
        return Ok(());
    }
    let now = store.clock().now_secs();
    let rows: Vec<[String; 7]> = systems
        .iter()
        .map(|s| {
            let summary = &s.summary;
            let expires = match summary.expires_at {
                Some(at) if at <= now => format!("{} (expired)", time(Some(at))),
                other => time(other),
            };
            [
                summary.id.clone(),
                summary.scheme.clone(),
                s.shown_state().to_owned(),
                expires,
                time(summary.last_refresh_at),
                summary.failures.to_string(),
                s.note(),
            ]
        })
        .collect();
    print_table(
        &["SYSTEM", "SCHEME", "STATE", "EXPIRES", "LAST REFRESH", "FAILURES", "NOTE"],
        &rows,
    );
    say_next(&next);
    Ok(())
}
