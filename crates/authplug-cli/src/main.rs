//! `authplug`: the command line of the authplug runtime.

mod callback;
mod cli;
mod connect;
mod connector;
mod exit;
mod lifecycle;
mod plugins;
mod push;
mod render;
mod request;
mod schemes;
mod serve;
mod store;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, SchemesCommand};
use crate::exit::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            failure.code.into()
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Systems { command, json } => {
            return store::systems(&cli.store, command.as_ref(), *json)
        }
        Command::Store { command } => return store::store(&cli.store, command),
        Command::Status { json } => return lifecycle::status(cli, *json),
        Command::Render(args) => return render::render(cli, args),
        Command::ApiToken(args) => return serve::api_token(args),
        _ => {}
    }
    let registry = plugins::load(&cli.plugins)?;
    match &cli.command {
        Command::Systems { .. }
        | Command::Store { .. }
        | Command::Status { .. }
        | Command::Render(_)
        | Command::ApiToken(_) => {
            unreachable!("handled above")
        }
        Command::Token { system, secret, json } => {
            lifecycle::token(cli, registry, system, secret.as_deref(), *json)
        }
        Command::Refresh { systems, due, keepalive, concurrency, json } => {
            lifecycle::refresh(cli, registry, systems, *due, *keepalive, *concurrency, *json)
        }
        Command::Schemes { command: None, json } => schemes::list(&registry, &cli.plugins, *json),
        Command::Schemes { command: Some(SchemesCommand::Show { id, json }), .. } => {
            schemes::show(&registry, id, *json)
        }
        Command::Docs { output, schemes } => schemes::docs(&registry, output.as_deref(), schemes),
        Command::Connect(args) => connect::connect(cli, &registry, args),
        Command::Push(args) => push::push(cli, registry, args),
        Command::Request(args) => request::request(cli, registry, args),
        Command::Serve(args) => serve::serve(cli, registry, args),
        Command::Check { connectors, json, deny_warnings } => {
            connector::check(&registry, connectors, *json, *deny_warnings)
        }
    }
}

/// Logs go to stderr, so stdout stays clean for `--json` and generated pages.
fn init_logging(cli: &Cli) {
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUTHPLUG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.without_time().with_target(false).init();
    }
}
