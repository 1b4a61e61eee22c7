//! `authplug systems [show|delete|audit]`: the stored systems, from the store alone. Never a
//! value unless `show --reveal`, which is audited first.

use std::collections::BTreeMap;

use authplug_engine::Revocation;
use authplug_protocol::Secret;
use authplug_store::{Store, StoreError, SystemSummary};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::commands::listing::{say_next, ListArgs};
use crate::context::{Context, EngineOptions};
use crate::exit::Failure;
use crate::output::{print_json, print_table, time};

#[derive(Debug, Args)]
pub struct SystemsArgs {
    #[command(subcommand)]
    pub command: Option<SystemsCommand>,

    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Subcommand)]
pub enum SystemsCommand {
    /// Show one system: metadata and secret names; values only with --reveal (audited).
    Show {
        id: String,

        /// Also print the secret values. Recorded in the system's audit trail.
        #[arg(long)]
        reveal: bool,
    },
    /// Delete a system and its secrets (its audit trail stays); with --revoke, revoke its
    /// tokens at the provider first.
    #[command(
        after_help = "With --revoke, the scheme revokes the system's tokens at the provider \
(RFC 7009: the refresh token, then the access token) where the connector declares a revocation \
endpoint (the revocation_url of an OAuth2 manifest), then the system is deleted; no refresh \
runs meanwhile. A provider that refuses or fails to revoke leaves the system stored (exit code \
11) unless --force is given too. A scheme that does not revoke (an API key, for one) deletes \
with a note saying so."
    )]
    Delete {
        id: String,

        /// Confirm the deletion (required: there is no undo).
        #[arg(long)]
        yes: bool,

        /// Revoke the system's tokens at the provider first; keep the system if that fails.
        #[arg(long)]
        revoke: bool,

        /// With --revoke: delete even if the provider did not revoke (said in the output).
        #[arg(long, requires = "revoke")]
        force: bool,
    },
    /// Show a system's audit trail: who changed or revealed what, and when. Never values.
    Audit { id: String },
}

pub fn run(ctx: &Context<'_>, args: &SystemsArgs) -> Result<(), Failure> {
    let store = ctx.store()?;
    match &args.command {
        None => list(ctx, &store, &args.list),
        Some(SystemsCommand::Show { id, reveal }) => show(ctx, &store, id, *reveal),
        Some(SystemsCommand::Delete { id, yes, revoke, force }) => {
            if !yes {
                return Err(Failure::bad_input(format!(
                    "deleting `{id}` cannot be undone: run again with --yes to confirm"
                )));
            }
            if !revoke {
                if !store.delete(id, &ctx.actor())? {
                    return Err(StoreError::NotFound(id.clone()).into());
                }
                if ctx.json() {
                    return print_json(&json!({"deleted": id, "revoked": [], "notes": []}));
                }
                eprintln!("deleted system `{id}`");
                return Ok(());
            }
            drop(store);
            let revocation = if *force { Revocation::RevokeOrForce } else { Revocation::Revoke };
            let deleted = ctx.with_engine(EngineOptions::default(), async |engine| {
                Ok(engine.delete(id, &ctx.actor(), revocation).await?)
            })?;
            if ctx.json() {
                return print_json(&json!({
                    "deleted": id, "revoked": deleted.revoked, "notes": deleted.notes,
                }));
            }
            if !deleted.revoked.is_empty() {
                eprintln!("revoked at the provider: {}", deleted.revoked.join(", "));
            }
            for note in &deleted.notes {
                eprintln!("note: {note}");
            }
            eprintln!("deleted system `{id}`");
            Ok(())
        }
        Some(SystemsCommand::Audit { id }) => {
            let trail = store.audit(id)?;
            if trail.is_empty() {
                return Err(StoreError::NotFound(id.clone()).into());
            }
            if ctx.json() {
                return print_json(&trail);
            }
            for entry in trail {
                println!(
                    "{}  {:<16} {:<10} {}",
                    time(Some(entry.at)),
                    entry.actor,
                    entry.action,
                    entry.detail
                );
            }
            Ok(())
        }
    }
}

fn list(ctx: &Context<'_>, store: &Store, args: &ListArgs) -> Result<(), Failure> {
    let filter = args.filter();
    let (systems, next) = args.walk(|cursor, limit| {
        let page = store.page(&filter, cursor, limit)?;
        Ok((page.systems, page.next))
    })?;
    if ctx.json() {
        if args.limit.is_some() {
            let next = next.map(|c| c.encode());
            return print_json(&json!({"systems": systems, "next_cursor": next}));
        }
        return print_json(&systems);
    }
    if systems.is_empty() {
        eprintln!("no systems in {}", store.location());
        return Ok(());
    }
    let rows: Vec<[String; 6]> = systems
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                s.scheme.clone(),
                s.state.to_string(),
                time(s.expires_at),
                s.version.to_string(),
                time(Some(s.updated_at)),
            ]
        })
        .collect();
    print_table(&["ID", "SCHEME", "STATE", "EXPIRES", "VERSION", "UPDATED"], &rows);
    say_next(&next);
    Ok(())
}

fn show(ctx: &Context<'_>, store: &Store, id: &str, reveal: bool) -> Result<(), Failure> {
    let record = store.get(id)?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    if reveal {
        // Audited before anything is printed.
        let names = json!({"secrets": record.summary.secret_names});
        store.record_event(id, &ctx.actor(), "revealed", names)?;
    }
    let value = |secret: &Secret| {
        if reveal {
            secret.expose().to_owned()
        } else {
            "********".to_owned()
        }
    };
    if ctx.json() {
        let mut out = serde_json::to_value(&record.summary).expect("summaries serialise");
        if reveal {
            let values = |set: &BTreeMap<String, Secret>| {
                set.iter()
                    .map(|(k, v)| (k.clone(), json!(v.expose())))
                    .collect::<serde_json::Map<_, _>>()
            };
            out["required"] = json!(values(&record.required));
            out["injected"] = json!(values(&record.injected));
        }
        return print_json(&out);
    }
    let s: &SystemSummary = &record.summary;
    println!("{} ({})", s.id, s.scheme);
    println!(
        "  state:        {}{}",
        s.state,
        s.state_reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
    );
    println!("  expires:      {}", time(s.expires_at));
    println!("  version:      {}", s.version);
    println!("  created:      {}", time(Some(s.created_at)));
    println!("  updated:      {}", time(Some(s.updated_at)));
    println!("  last refresh: {}", time(s.last_refresh_at));
    println!("  failures:     {}", s.failures);
    println!("  sealed under: {}", s.key_ids.join(", "));
    if !s.parameters.is_empty() {
        println!("  parameters:");
        for (name, value) in &s.parameters {
            println!("    {name} = {value}");
        }
    }
    for (kind, set) in [("required", &record.required), ("injected", &record.injected)] {
        println!("  {kind}:");
        for (name, secret) in set {
            println!("    {name} = {}", value(secret));
        }
    }
    if !reveal {
        eprintln!("(values hidden; --reveal shows them and records it in the audit trail)");
    }
    Ok(())
}
