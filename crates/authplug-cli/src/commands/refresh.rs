//! `authplug refresh SYSTEM...` (forced) or `--due` (every due system, as a sweep does).

use clap::Args;
use serde_json::json;

use crate::context::{Context, EngineOptions};
use crate::exit::Failure;
use crate::output::{print_json, time};

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The systems to refresh.
    #[arg(value_name = "SYSTEM", required_unless_present = "due")]
    pub systems: Vec<String>,

    /// Refresh every active system within its refresh margin (and, with --keepalive, every
    /// one idle for longer). Systems in backoff or needing re-authorisation are skipped.
    #[arg(long, conflicts_with = "systems")]
    pub due: bool,

    /// With --due: also refresh systems not refreshed for this many seconds.
    #[arg(long, value_name = "SECS", requires = "due")]
    pub keepalive: Option<u64>,

    /// How many refreshes run at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub concurrency: usize,
}

pub fn run(ctx: &Context<'_>, args: &RefreshArgs) -> Result<(), Failure> {
    let options = EngineOptions { keepalive: args.keepalive, ..EngineOptions::default() };
    let results = ctx.with_engine(options, async |engine| {
        if args.due {
            return Ok(engine.sweep(args.concurrency).await?);
        }
        let mut results = Vec::new();
        for system in &args.systems {
            results.push((system.clone(), engine.refresh(system).await));
        }
        Ok(results)
    })?;
    let json = ctx.json();
    let mut worst: Option<Failure> = None;
    let mut lines = Vec::new();
    for (system, result) in results {
        match result {
            Ok(token) => {
                lines.push(json!({"system": system, "ok": true, "expires_at": token.expires_at}));
                if !json {
                    eprintln!("{system}: refreshed, expires {}", time(token.expires_at));
                }
            }
            Err(error) => {
                let failure = Failure::from(error);
                lines.push(json!({"system": system, "ok": false, "error": failure.message,
                                  "exit_code": failure.code as u8}));
                if !json {
                    eprintln!("{system}: {}", failure.message);
                }
                if worst.as_ref().is_none_or(|w| failure.code > w.code) {
                    worst = Some(failure);
                }
            }
        }
    }
    if json {
        print_json(&lines)?;
    } else if args.due && lines.is_empty() {
        eprintln!("nothing is due");
    }
    match worst {
        Some(failure) if args.systems.len() == 1 => Err(failure),
        Some(failure) => Err(Failure::new(failure.code, "some refreshes failed (see above)")),
        None => Ok(()),
    }
}
