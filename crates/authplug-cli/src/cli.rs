//! The command-line grammar: the global options, and one variant per command whose options
//! live with its code (`commands/<name>.rs`).

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};

use crate::commands::{
    api_token::ApiTokenArgs, check::CheckArgs, connect::ConnectArgs, docs::DocsArgs,
    push::PushArgs, refresh::RefreshArgs, render::RenderArgs, request::RequestArgs,
    schemes::SchemesArgs, serve::ServeArgs, store::StoreCommand, systems::SystemsArgs,
    token::TokenArgs, verify::VerifyArgs,
};

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
///   authplug status                       every system: state, expiry, last refresh, failures
///   authplug token crm --secret oauth_access_token
///                                         a fresh access token for a script (refreshed if due)
///   authplug refresh --due                refresh every system that is due (run from cron)
#[derive(Debug, Parser)]
#[command(name = "authplug", version, after_help = crate::exit::HELP)]
#[command(verbatim_doc_comment)]
pub struct Cli {
    #[command(flatten)]
    pub plugins: PluginArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// More log output on stderr (-v info, -vv debug); AUTHPLUG_LOG=<filter> overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Log lines as JSON objects (for log collectors).
    #[arg(long, global = true, env = "AUTHPLUG_LOG_JSON", value_parser = BoolishValueParser::new())]
    pub log_json: bool,

    /// Print the result as JSON on stdout, for scripts (commands whose output is a document or
    /// a request's body refuse it).
    #[arg(long, global = true)]
    pub json: bool,

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
    #[arg(long, global = true, env = "AUTHPLUG_STRICT_PLUGINS", value_parser = BoolishValueParser::new())]
    pub strict_plugins: bool,

    /// How plugin files run: `auto` (those in plugins/ beside the binary in-process, every other
    /// file in a child process), `process` (all isolated) or `in-process` (none; warned about).
    #[arg(
        long,
        global = true,
        value_name = "MODE",
        env = "AUTHPLUG_ISOLATION",
        default_value = "auto"
    )]
    pub isolation: IsolationArg,

    /// A plugin file name (e.g. libmy_scheme.so) to run in-process whatever --isolation says;
    /// repeat for several.
    #[arg(
        long = "in-process",
        value_name = "FILE_NAME",
        global = true,
        env = "AUTHPLUG_IN_PROCESS",
        value_delimiter = ','
    )]
    pub in_process: Vec<String>,

    /// The deadline of an isolated plugin's refresh or apply call, in seconds (onboarding steps
    /// get three times as long).
    #[arg(
        long,
        value_name = "SECS",
        global = true,
        env = "AUTHPLUG_PLUGIN_TIMEOUT",
        default_value_t = 10
    )]
    pub plugin_timeout: u64,

    /// Load only the plugin files this lock (`authplug plugins lock`) admits, by name and
    /// SHA-256; refuse any other, or any changed, with one line each.
    #[arg(long, value_name = "FILE", global = true, env = "AUTHPLUG_PLUGINS_LOCK")]
    pub plugins_lock: Option<PathBuf>,

    /// The address space of an isolated plugin's process, in MiB.
    #[arg(
        long,
        value_name = "MIB",
        global = true,
        env = "AUTHPLUG_PLUGIN_MEMORY",
        default_value_t = 1024
    )]
    pub plugin_memory: u64,

    /// How long, in microseconds, the host and an isolated plugin's process poll their pipe for
    /// the other's next message before sleeping. Polling saves two wake-ups per call (tens of
    /// microseconds on a virtual machine) for at most this much CPU per wait; 0 never polls.
    #[arg(
        long,
        value_name = "MICROS",
        global = true,
        env = "AUTHPLUG_PLUGIN_SPIN",
        default_value_t = 50
    )]
    pub plugin_spin: u64,
}

/// `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IsolationArg {
    Auto,
    Process,
    InProcess,
}

/// Where credentials are stored and the master key that seals them.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The credential store: a SQLite file path, or a postgres:// URL for a store shared by
    /// several instances. Default: $XDG_DATA_HOME/authplug/store.sqlite3.
    #[arg(long = "store", value_name = "PATH|URL", global = true, env = "AUTHPLUG_STORE")]
    pub location: Option<String>,

    /// The master key file (created with mode 0600 on first use), used when AUTHPLUG_MASTER_KEY
    /// is not set. Default: $XDG_CONFIG_HOME/authplug/master.key.
    #[arg(long, value_name = "FILE", global = true, env = "AUTHPLUG_KEY_FILE")]
    pub key_file: Option<PathBuf>,

    /// With a postgres:// store: the sessions this process opens at most, as concurrent calls
    /// need them. Keep instances x N within the server's max_connections.
    #[arg(
        long,
        value_name = "N",
        global = true,
        env = "AUTHPLUG_STORE_SESSIONS",
        default_value_t = authplug_store::DEFAULT_SESSIONS as u16,
        value_parser = clap::value_parser!(u16).range(1..=256),
    )]
    pub store_sessions: u16,
}

/// How credentials are refreshed, and where lifecycle events go.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// POST every lifecycle event (refreshed, refresh_failed, needs_reauth, recovered) as JSON to
    /// this URL, signed with HMAC-SHA256 in the `authplug-signature` header.
    #[arg(long, value_name = "URL", global = true, env = "AUTHPLUG_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// The file holding the webhook signing secret (AUTHPLUG_WEBHOOK_SECRET may hold the value
    /// itself instead). Required with --webhook-url.
    #[arg(long, value_name = "FILE", global = true, env = "AUTHPLUG_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,

    /// Secrets the operator holds per scheme (a JSON file {"scheme": {"name": "value"}}), e.g.
    /// Tripletex's consumer token or SuperOffice's partner key.
    #[arg(long, value_name = "FILE", global = true, env = "AUTHPLUG_OPERATOR_SECRETS")]
    pub operator_secrets: Option<PathBuf>,

    /// The timeout of each request to a provider, in seconds.
    #[arg(
        long,
        value_name = "SECS",
        global = true,
        env = "AUTHPLUG_HTTP_TIMEOUT",
        default_value_t = 30
    )]
    pub http_timeout: u64,

    /// Allow plain http:// to loopback addresses (development and tests only).
    #[arg(long, global = true, env = "AUTHPLUG_ALLOW_LOOPBACK_HTTP", value_parser = BoolishValueParser::new())]
    pub allow_loopback_http: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Onboard a connector: check its folder, gather the secrets its scheme requires, run the
    /// scheme's onboarding (an OAuth2 consent in the browser, a session, a JWT login, ...) and
    /// store the result as system ID.
    ///
    /// Secrets come from, in order: --secret NAME=VALUE, --secrets-file, environment variables
    /// AUTHPLUG_SECRET_<NAME>, the folder's .authconfig (JSON or key=value lines, like the
    /// classic tool's), or a prompt that does not echo (when a terminal is attached). Prefer a
    /// file or the prompt to --secret, which other users of the machine can see.
    ///
    /// For an OAuth2 consent, authplug listens on http://127.0.0.1:PORT/callback (--port, or
    /// --redirect-uri for the one registered with the provider), opens the browser (or prints
    /// the address with --no-browser) and checks the callback's state.
    ///
    /// Example: authplug connect connectors/hubspot --system hubspot-acme
    #[command(verbatim_doc_comment)]
    Connect(ConnectArgs),
    /// Render a connector's templates for a stored system, for a local run: `{{@ x @}}`
    /// expanded as the platform does (runtime `{{ }}` left alone), `$SECRET(x)` and `$ENV(x)`
    /// resolved from the stored system (secret values masked unless --reveal).
    ///
    /// Prints the system template; --output DIR writes system.json and one file per datatype.
    ///
    /// Example: authplug render connectors/hubspot --system hubspot-acme --reveal --output build/
    #[command(verbatim_doc_comment)]
    Render(RenderArgs),
    /// Push a system's injected secrets to an integration node (refreshed first if due), and
    /// merge its environment variables (token_url, base_url, account_id) into the node's.
    ///
    /// Secrets are added or overwritten (POST); --replace replaces the system's whole set (PUT).
    /// The node's token comes from AUTHPLUG_NODE_JWT (or --jwt, which other users can see).
    ///
    /// Example: AUTHPLUG_NODE_JWT=... authplug push hubspot-acme --node https://node.example/
    #[command(verbatim_doc_comment)]
    Push(PushArgs),
    /// Send one request with a system's credentials applied by its scheme (refreshed first if
    /// due): a quick check that they work. The body goes to stdout, the status to stderr.
    ///
    /// Example: authplug request hubspot-acme GET https://api.hubapi.com/account-info/v3/details
    #[command(verbatim_doc_comment)]
    Request(RequestArgs),
    /// Check that a stored system's credential works: send the request its connector or
    /// scheme declares for that, with the credentials applied, and judge the answer's status.
    ///
    /// The connector's `"verify"` in manifest.json (a URL relative to the system template's
    /// url_pattern) wins over the scheme's. 2xx is verified, 401/403 refused (exit 7), anything
    /// else or no answer failed (exit 12). Nothing stored changes; the audit trail records the
    /// outcome. `connect` runs it too, after storing.
    ///
    /// With --json: {"system", "outcome", "declared_by", "method", "url", "status",
    /// "elapsed_ms", "detail"}; outcome is verified, refused, failed, unreachable or undeclared.
    ///
    /// Example: authplug verify hubspot-acme
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Run the long-running host: refresh due systems in the background and serve fresh
    /// credentials over HTTP (/v1/systems, /v1/systems/ID/secrets, /v1/systems/ID/authorize;
    /// /healthz, /readyz and /metrics for probes; the API described at /v1/openapi.json) to
    /// callers with API tokens. Its address serves a web page to connect the connectors of
    /// --connectors and see the state of every system (sign in with an admin token;
    /// --no-web-page turns it off).
    ///
    /// Tokens come from the tokens file (`authplug api-token`) and AUTHPLUG_ADMIN_TOKEN. SIGHUP
    /// reloads the tokens and the connectors (never the plugins). SIGTERM or Ctrl-C stops it
    /// gracefully.
    ///
    /// Example: AUTHPLUG_ADMIN_TOKEN=... authplug serve --listen 127.0.0.1:8080 --connectors ./connectors
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Create an API token for `authplug serve`: printed once, stored hashed with its scopes.
    ///
    /// Scopes: admin; secrets:SYSTEM (its secrets, less refresh tokens and copied confidential
    /// inputs); long-lived:SYSTEM (those too); authorize:SYSTEM (one request's headers only).
    /// SYSTEM may be * for every system.
    ///
    /// Example: authplug api-token worker-1 --scope authorize:hubspot-acme
    #[command(name = "api-token", verbatim_doc_comment)]
    ApiToken(ApiTokenArgs),
    /// Check connector folders against their schemes, like a compiler: every `$SECRET(x)` must
    /// be injected by the scheme or declared (`extra_secrets`, `use_webhook_secret`,
    /// `requires_service_api_access`); every `$ENV(x)` and `{{@ x @}}` declared in
    /// `additional_parameters`, a datatype's `parameters`, or provided by the platform; every
    /// manifest field the scheme needs present.
    ///
    /// Findings are printed as `file:line:column: error|warning: message`. Exit code 0 when no
    /// error was found (warnings allowed unless --deny-warnings), 2 otherwise: use it in CI.
    /// With --json: {"connectors": [{"connector", "scheme", "findings": [...]}], "errors",
    /// "warnings"}.
    ///
    /// Example: authplug check connectors/*
    #[command(verbatim_doc_comment)]
    Check(CheckArgs),
    /// Print a system's injected secrets, refreshed first if they are due: for scripts.
    ///
    /// Text output is NAME=value lines; --secret prints one value alone; --json an object
    /// {"system", "scheme", "expires_at", "refreshed", "secrets": {...}}. Exit code 7 means a
    /// human must onboard the system again; 8 that the provider is failing and the stored
    /// secrets have expired.
    Token(TokenArgs),
    /// Refresh systems now: the named ones (forced), or with --due every one that is due.
    Refresh(RefreshArgs),
    /// Every system's lifecycle: state (and why), expiry, last refresh, failures, next attempt.
    /// Filter with --state, --scheme, --connector; page with --limit and --cursor.
    Status(crate::commands::listing::ListArgs),
    /// List the stored systems (connector instances): scheme, state, expiry. Never values.
    Systems(SystemsArgs),
    /// Manage the credential store itself: key rotation, backups.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// List the loaded schemes, where each came from, and any refused plugin files.
    Schemes(SchemesArgs),
    /// Write the scheme reference page (reStructuredText, like authentication-schemes.rst).
    Docs(DocsArgs),
    /// Pin the approved plugin files in a lock file, or check the plugin folders against one.
    Plugins {
        #[command(subcommand)]
        command: crate::commands::plugins::PluginsCommand,
    },
    /// Serve one plugin file to the host over stdin and stdout (what an isolated plugin's child
    /// process runs; never by hand).
    #[command(hide = true)]
    PluginRunner {
        file: PathBuf,
        #[arg(long)]
        memory_bytes: u64,
        #[arg(long)]
        open_files: u64,
        #[arg(long, default_value_t = 0)]
        spin_micros: u64,
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

    #[test]
    fn json_is_one_global_flag_accepted_after_any_command() {
        for args in [
            &["authplug", "status", "--json"][..],
            &["authplug", "--json", "systems", "show", "crm"],
            &["authplug", "systems", "audit", "crm", "--json"],
            &["authplug", "schemes", "show", "api_key", "--json"],
        ] {
            assert!(Cli::try_parse_from(args).unwrap().json, "{args:?}");
        }
        let both = Cli::try_parse_from(["authplug", "token", "crm", "--secret", "x", "--json"]);
        assert!(both.is_err(), "--secret prints one value: it conflicts with --json");
    }
}
