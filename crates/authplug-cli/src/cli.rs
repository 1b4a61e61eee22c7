//! The command-line grammar.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
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

    #[command(subcommand)]
    pub command: Command,
}

/// The options of `authplug connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The connector folder (manifest.json and templates/).
    #[arg(value_name = "CONNECTOR_DIR")]
    pub dir: PathBuf,

    /// The id to store the system under (e.g. hubspot-acme).
    #[arg(long, value_name = "ID")]
    pub system: String,

    /// A secret, NAME=VALUE; repeat for several.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    pub secrets: Vec<String>,

    /// A file of secrets, in .authconfig's format (JSON, or key=value lines).
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,

    /// A scheme parameter, KEY=VALUE (JSON values allowed), over the manifest's; repeat for
    /// several (e.g. --param environment=test for Tripletex).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,

    /// The loopback port of the OAuth2 callback.
    #[arg(long, default_value_t = 8765)]
    pub port: u16,

    /// The redirect URI registered with the provider (a loopback http:// address), instead of
    /// http://127.0.0.1:PORT/callback.
    #[arg(long, value_name = "URI")]
    pub redirect_uri: Option<String>,

    /// Print the consent address instead of opening a browser (for a browser on another
    /// machine, or over SSH).
    #[arg(long, env = "AUTHPLUG_NO_BROWSER", value_parser = BoolishValueParser::new())]
    pub no_browser: bool,

    /// Never prompt: fail (exit code 2) when a secret is missing.
    #[arg(long)]
    pub no_prompt: bool,

    /// How long to wait for the consent's callback, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,

    /// Onboard an existing system again (after "needs re-authorisation"), replacing its secrets.
    #[arg(long)]
    pub replace: bool,

    /// Print the stored system as JSON (names, never values).
    #[arg(long)]
    pub json: bool,
}

/// The options of `authplug render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The connector folder.
    #[arg(value_name = "CONNECTOR_DIR")]
    pub dir: PathBuf,

    /// The stored system whose secrets and parameters fill the templates.
    #[arg(long, value_name = "ID")]
    pub system: String,

    /// Write secret values instead of ******** (recorded in the audit trail; files 0600).
    #[arg(long)]
    pub reveal: bool,

    /// Write system.json and <datatype>.json here instead of printing system.json.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// A value for $ENV(KEY), over the stored one; repeat for several.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
}

/// The options of `authplug push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The stored system.
    pub system: String,

    /// The node's base URL (https://, or http:// to this machine).
    #[arg(long, value_name = "URL", env = "AUTHPLUG_NODE_URL")]
    pub node: String,

    /// The node's JWT. Prefer AUTHPLUG_NODE_JWT: arguments are visible to other users.
    #[arg(long, value_name = "TOKEN")]
    pub jwt: Option<String>,

    /// Show the names that would be pushed, send nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Replace the system's secrets on the node (PUT) instead of adding to them (POST).
    #[arg(long)]
    pub replace: bool,

    /// Print what was pushed as JSON (names only).
    #[arg(long)]
    pub json: bool,
}

/// The options of `authplug request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The stored system.
    pub system: String,

    /// GET, POST, PUT, PATCH, DELETE, ...
    pub method: String,

    /// The full URL.
    pub url: String,

    /// An extra header, 'Name: value'; repeat for several.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// The request body.
    #[arg(short = 'd', long, value_name = "BODY")]
    pub data: Option<String>,
}

/// The options of `authplug serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", env = "AUTHPLUG_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,

    /// The API tokens file. Default: $XDG_CONFIG_HOME/authplug/tokens.json.
    #[arg(long, value_name = "FILE", env = "AUTHPLUG_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Seconds between two checks of every system for a due refresh.
    #[arg(long, value_name = "SECS", env = "AUTHPLUG_SWEEP_INTERVAL", default_value_t = 30)]
    pub sweep_interval: u64,

    /// Refreshes a sweep runs at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub sweep_concurrency: usize,

    /// Also refresh systems idle for this many seconds (providers that expire unused tokens).
    #[arg(long, value_name = "SECS", env = "AUTHPLUG_KEEPALIVE")]
    pub keepalive: Option<u64>,

    /// Reuse a system's authorize answer for this many milliseconds (never past the moment its
    /// secrets become due; 0: never). Also how late a change made by another instance sharing
    /// the store is seen by this one's authorize.
    #[arg(long, value_name = "MS", env = "AUTHPLUG_AUTHORIZE_CACHE_MS", default_value_t = 1000)]
    pub authorize_cache_ms: u64,

    /// A folder of connector folders users may onboard through the API.
    #[arg(long, value_name = "DIR", env = "AUTHPLUG_CONNECTORS")]
    pub connectors: Option<PathBuf>,

    /// Do not serve the web page at / (an API-only deployment).
    #[arg(long, env = "AUTHPLUG_NO_WEB_PAGE")]
    pub no_web_page: bool,

    /// The address browsers reach this server at, for the OAuth2 callback
    /// (PUBLIC_URL/v1/onboarding/callback). Default: http://LISTEN.
    #[arg(long, value_name = "URL", env = "AUTHPLUG_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// The options of `authplug api-token`.
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
    ///
    /// Example: authplug check connectors/*
    #[command(verbatim_doc_comment)]
    Check {
        /// Connector folders (each holding a manifest.json and templates/).
        #[arg(value_name = "CONNECTOR_DIR", required = true)]
        connectors: Vec<PathBuf>,

        /// Print JSON: {"connectors": [{"connector", "scheme", "findings": [...]}], "errors", "warnings"}.
        #[arg(long)]
        json: bool,

        /// Fail (exit code 2) on warnings too.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Print a system's injected secrets, refreshed first if they are due: for scripts.
    ///
    /// Text output is NAME=value lines; --secret prints one value alone; --json an object.
    /// Exit code 7 means a human must onboard the system again; 8 that the provider is failing
    /// and the stored secrets have expired.
    Token {
        /// The system id.
        system: String,

        /// Print only this secret's value.
        #[arg(long, value_name = "NAME", conflicts_with = "json")]
        secret: Option<String>,

        /// Print JSON: {"system", "scheme", "expires_at", "refreshed", "secrets": {...}}.
        #[arg(long)]
        json: bool,
    },
    /// Refresh systems now: the named ones (forced), or with --due every one that is due.
    Refresh {
        /// The systems to refresh.
        #[arg(value_name = "SYSTEM", required_unless_present = "due")]
        systems: Vec<String>,

        /// Refresh every active system within its refresh margin (and, with --keepalive, every
        /// one idle for longer). Systems in backoff or needing re-authorisation are skipped.
        #[arg(long, conflicts_with = "systems")]
        due: bool,

        /// With --due: also refresh systems not refreshed for this many seconds.
        #[arg(long, value_name = "SECS", requires = "due")]
        keepalive: Option<u64>,

        /// How many refreshes run at once.
        #[arg(long, value_name = "N", default_value_t = 8)]
        concurrency: usize,

        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every system's lifecycle: state (and why), expiry, last refresh, failures, next attempt.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the stored systems (connector instances): scheme, state, expiry. Never values.
    Systems {
        #[command(subcommand)]
        command: Option<SystemsCommand>,

        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Manage the credential store itself: key rotation, backups.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
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
pub enum SystemsCommand {
    /// Show one system: metadata and secret names; values only with --reveal (audited).
    Show {
        id: String,

        /// Also print the secret values. Recorded in the system's audit trail.
        #[arg(long)]
        reveal: bool,

        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a system and its secrets (its audit trail stays).
    Delete {
        id: String,

        /// Confirm the deletion (required: there is no undo).
        #[arg(long)]
        yes: bool,
    },
    /// Show a system's audit trail: who changed or revealed what, and when. Never values.
    Audit {
        id: String,

        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Re-encrypt every value under a new master key, without stopping other instances. With a
    /// key file, the new key is added to it first and the old one removed at the end; with
    /// AUTHPLUG_MASTER_KEY, put the new key first (new,old) and run this. Safe to interrupt: run
    /// it again to finish.
    RotateKey {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write an encrypted backup bundle of every system (sealed under the current master key).
    Export {
        /// The bundle file to write (mode 0600).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Restore systems from a backup bundle; existing systems are kept unless --replace.
    Import {
        /// The bundle file.
        file: PathBuf,

        /// Overwrite systems that already exist.
        #[arg(long)]
        replace: bool,
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
