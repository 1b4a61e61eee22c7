//! One module per command, each with its options (`...Args`) and its `run`.

pub mod api_token;
mod callback;
pub mod check;
mod conformance;
pub mod connect;
pub mod docs;
pub mod listing;
pub mod plugins;
pub mod push;
pub mod refresh;
pub mod render;
pub mod request;
mod scaffold;
pub mod schemes;
pub mod serve;
pub mod status;
pub mod store;
pub mod systems;
pub mod token;
pub mod verify;

use crate::cli::Command;
use crate::context::Context;
use crate::exit::Failure;

/// The system ids a command line names (checked before anything runs: exit 2, the id escaped).
fn system_ids(command: &Command) -> Vec<&str> {
    use systems::SystemsCommand;
    match command {
        Command::Connect(args) => vec![&args.system],
        Command::Render(args) => vec![&args.system],
        Command::Push(args) => vec![&args.system],
        Command::Request(args) => vec![&args.system],
        Command::Verify(args) => vec![&args.system],
        Command::Token(args) => vec![&args.system],
        Command::Refresh(args) => args.systems.iter().map(String::as_str).collect(),
        Command::Systems(args) => match &args.command {
            Some(
                SystemsCommand::Show { id, .. }
                | SystemsCommand::Delete { id, .. }
                | SystemsCommand::Audit { id },
            ) => vec![id],
            None => vec![],
        },
        _ => vec![],
    }
}

/// Runs the command the user named, once the system ids it names are known to be ids.
pub fn run(ctx: &Context<'_>) -> Result<(), Failure> {
    for id in system_ids(&ctx.cli.command) {
        authplug_store::check_system_id(id)?;
    }
    match &ctx.cli.command {
        Command::Connect(args) => connect::run(ctx, args),
        Command::Render(args) => render::run(ctx, args),
        Command::Push(args) => push::run(ctx, args),
        Command::Request(args) => request::run(ctx, args),
        Command::Verify(args) => verify::run(ctx, args),
        Command::Serve(args) => serve::run(ctx, args),
        Command::ApiToken(args) => api_token::run(ctx, args),
        Command::Check(args) => check::run(ctx, args),
        Command::Token(args) => token::run(ctx, args),
        Command::Refresh(args) => refresh::run(ctx, args),
        Command::Status(args) => status::run(ctx, args),
        Command::Systems(args) => systems::run(ctx, args),
        Command::Store { command } => store::run(ctx, command),
        Command::Schemes(args) => schemes::run(ctx, args),
        Command::Docs(args) => docs::run(ctx, args),
        Command::Plugins { command } => plugins::run(ctx, command),
        // Served in `main`, before anything else starts.
        Command::PluginRunner { .. } => Ok(()),
    }
}
