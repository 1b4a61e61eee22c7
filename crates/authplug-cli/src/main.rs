//! `authplug`: the command line of the authplug runtime. The flags are parsed once (`cli`),
//! dispatched once (`commands`), and every failure leaves through the exit policy (`exit`).

mod cli;
mod commands;
mod context;
mod exit;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // An isolated plugin's process: the protocol owns stdout, and nothing else runs.
    if let cli::Command::PluginRunner { file, memory_bytes, open_files, spin_micros } = &cli.command
    {
        let limits = authplug_host::Limits {
            memory_bytes: *memory_bytes,
            open_files: *open_files,
            spin: std::time::Duration::from_micros(*spin_micros),
            ..authplug_host::Limits::default()
        };
        return ExitCode::from(authplug_host::isolate::runner::serve(file, &limits));
    }
    // Other processes of this user (an isolated plugin's among them) may not read this one's
    // memory or environment through /proc or ptrace. Best effort: not every kernel allows it.
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    init_logging(&cli);
    match commands::run(&context::Context::new(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // Nothing reaches the terminal unescaped: a message may quote a name or an id.
            eprintln!("error: {}", authplug_store::escaped(&failure.message, usize::MAX));
            failure.code.into()
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
        // Colours for a terminal only: a log file or a service manager's journal gets plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        builder.without_time().with_target(false).with_ansi(ansi).init();
    }
}
