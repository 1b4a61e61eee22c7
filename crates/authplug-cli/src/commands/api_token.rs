//! `authplug api-token NAME --scope ...`: a token for `authplug serve`'s callers, printed once
//! and stored hashed with its scopes.

use std::path::PathBuf;

use authplug_server::{hash_token, new_token, Scope, TokenEntry, Tokens};
use clap::Args;
use serde_json::json;

use crate::context::Context;
use crate::exit::{Code, Failure};
use crate::output::print_json;

#[derive(Debug, Args)]
pub struct ApiTokenArgs {
    /// A name for the token's holder (in the audit trail).
    pub name: String,

    /// What the token may do; repeat for several.
    #[arg(long = "scope", value_name = "SCOPE", required = true)]
    pub scopes: Vec<String>,

    /// The tokens file. Default: $XDG_CONFIG_HOME/authplug/tokens.json.
    #[arg(long, value_name = "FILE", env = "AUTHPLUG_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
}

/// The tokens file the option names, or the default.
pub fn tokens_file(given: &Option<PathBuf>) -> PathBuf {
    given.clone().unwrap_or_else(|| authplug_store::config_dir().join("tokens.json"))
}

pub fn run(ctx: &Context<'_>, args: &ApiTokenArgs) -> Result<(), Failure> {
    let scopes: Vec<Scope> = args
        .scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<_, _>>()
        .map_err(|e| Failure::new(Code::BadInput, e))?;
    let token = new_token().map_err(|e| Failure::new(Code::Failure, e))?;
    let path = tokens_file(&args.tokens_file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::new(Code::Failure, format!("{}: {e}", parent.display())))?;
    }
    let entry = TokenEntry {
        name: args.name.clone(),
        sha256: hash_token(&token),
        scopes: scopes.iter().map(ToString::to_string).collect(),
    };
    Tokens::append(&path, entry).map_err(|e| Failure::new(Code::BadInput, e))?;
    if ctx.json() {
        return print_json(&json!({
            "name": args.name, "scopes": args.scopes, "file": path, "token": token,
        }));
    }
    println!("{token}");
    eprintln!(
        "token {} ({}) added to {}; this is the only time it is shown",
        args.name,
        args.scopes.join(", "),
        path.display()
    );
    Ok(())
}
