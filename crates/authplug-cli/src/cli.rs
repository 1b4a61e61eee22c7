//! The command-line grammar.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// authplug authenticates API connectors: it loads authentication scheme plugins (OAuth2, API
/// key, JWT, Tripletex, SuperOffice, ...) and runs their flows.
///
/// Plugins are shared libraries found at startup in the plugin folders. Without --plugin-dir or
/// AUTHPLUG_PLUGIN_DIR, authplug looks in `plugins/` next to its own binary and in
/// $XDG_DATA_HOME/authplug/plugins (~/.local/share/authplug/plugins).
///
/// Examples:
///   authplug schemes                      list the loaded schemes
///   authplug schemes show api_key         what api_key requires and injects
///   authplug docs --output schemes.rst    write the scheme reference page
#[derive(Debug, Parser)]
#[command(name = "authplug", version, after_help = crate::exit::HELP)]
#[command(verbatim_doc_comment)]
pub struct Cli {
    #[command(flatten)]
    pub plugins: PluginArgs,

    /// More log output on stderr (-v info, -vv debug); AUTHPLUG_LOG=<filter> overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Log lines as JSON objects (for log collectors).
    #[arg(long, global = true, env = "AUTHPLUG_LOG_JSON")]
    pub log_json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Where plugins come from and how strictly they are judged.
#[derive(Debug, Args)]
pub struct PluginArgs {
    /// A folder of scheme plugins; repeat for several. Replaces the default folders.
    #[arg(
        long = "plugin-dir",
        value_name = "DIR",
        global = true,
        env = "AUTHPLUG_PLUGIN_DIR",
        value_delimiter = ':'
    )]
    pub dirs: Vec<PathBuf>,

    /// Fail (exit code 3) when any plugin file is refused, instead of warning and going on.
    #[arg(long, global = true, env = "AUTHPLUG_STRICT_PLUGINS")]
    pub strict_plugins: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the loaded schemes, where each came from, and any refused plugin files.
    Schemes {
        #[command(subcommand)]
        command: Option<SchemesCommand>,

        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write the scheme reference page (reStructuredText, like authentication-schemes.rst).
    Docs {
        /// Write to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,

        /// Only these schemes (ids), in this order; default: every loaded scheme.
        #[arg(value_name = "SCHEME")]
        schemes: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchemesCommand {
    /// Show one scheme's contract: what it serves, requires and injects.
    Show {
        /// The scheme id, e.g. api_key.
        id: String,

        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }
}
