//! `authplug token SYSTEM`: a system's injected secrets for a script, refreshed first if due.

use clap::Args;
use serde_json::json;

use crate::context::{Context, EngineOptions};
use crate::exit::{Code, Failure};
use crate::output::print_json;

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The system id.
    pub system: String,

    /// Print only this secret's value.
    #[arg(long, value_name = "NAME", conflicts_with = "json")]
    pub secret: Option<String>,
}

pub fn run(ctx: &Context<'_>, args: &TokenArgs) -> Result<(), Failure> {
    let token = ctx.with_engine(EngineOptions::default(), async |engine| {
        Ok(engine.token(&args.system).await?)
    })?;
    if let Some(name) = &args.secret {
        let value = token.injected.get(name).ok_or_else(|| {
            let names: Vec<&str> = token.injected.keys().map(String::as_str).collect();
            Failure::new(
                Code::NotFound,
                format!(
                    "system `{}` has no secret `{name}` (it has: {})",
                    token.system,
                    names.join(", ")
                ),
            )
        })?;
        println!("{}", value.expose());
        return Ok(());
    }
    if ctx.json() {
        let secrets: serde_json::Map<String, serde_json::Value> =
            token.injected.iter().map(|(k, v)| (k.clone(), v.expose().into())).collect();
        return print_json(&json!({
            "system": token.system,
            "scheme": token.scheme,
            "expires_at": token.expires_at,
            "refreshed": token.refreshed,
            "secrets": secrets,
        }));
    }
    for (name, value) in &token.injected {
        println!("{name}={}", value.expose());
    }
    Ok(())
}
