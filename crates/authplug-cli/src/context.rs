//! What commands share: the global options, and the store, the loaded plugins, the runtime and
//! the engine, each opened only when a command asks for it (`authplug status` loads no plugin;
//! `authplug schemes` opens no store).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use authplug_engine::{Engine, EngineConfig, Events, Webhook};
use authplug_host::{
    HostServices, LoadOptions, OperatorSecrets, PluginLock, Registry, Transport, TransportConfig,
};
use authplug_protocol::Secret;
use authplug_store::{Keyring, Location, OpenOptions, Store};

use crate::cli::{Cli, PluginArgs};
use crate::exit::{Code, Failure};

/// How long a command waits at exit for webhook deliveries still being retried.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// The engine's settings a command may choose.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineOptions {
    /// Refresh systems idle this long, in seconds.
    pub keepalive: Option<u64>,
    /// How long authorize answers are reused (the engine's default without it).
    pub authorize_cache: Option<Duration>,
    /// The most authorize answers kept, and the bytes they may hold.
    pub authorize_cache_bounds: Option<(usize, usize)>,
}

pub struct Context<'a> {
    pub cli: &'a Cli,
    registry: OnceLock<Arc<Registry>>,
    runtime: OnceLock<tokio::runtime::Runtime>,
}

impl<'a> Context<'a> {
    pub fn new(cli: &'a Cli) -> Self {
        Self { cli, registry: OnceLock::new(), runtime: OnceLock::new() }
    }

    /// `--json`.
    pub fn json(&self) -> bool {
        self.cli.json
    }

    /// Who is acting, for the audit trail.
    pub fn actor(&self) -> String {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        format!("cli:{user}")
    }

    /// Opens the store the options name, with the master key from the environment or the key
    /// file.
    pub fn store(&self) -> Result<Store, Failure> {
        let args = &self.cli.store;
        let location = match &args.location {
            Some(text) => Location::parse(text),
            None => Location::default_sqlite(),
        };
        let key_file = args
            .key_file
            .clone()
            .unwrap_or_else(|| authplug_store::config_dir().join("master.key"));
        let keys = Keyring::from_env_or_file(&key_file)?;
        tracing::debug!(store = %location, "opening the credential store");
        let options = OpenOptions { pg_sessions: usize::from(args.store_sessions) };
        Ok(Store::open_with_options(&location, keys, options)?)
    }

    /// The loaded plugins (loaded once); refusals are warnings, or a failure with
    /// `--strict-plugins`.
    pub fn registry(&self) -> Result<Arc<Registry>, Failure> {
        if let Some(registry) = self.registry.get() {
            return Ok(registry.clone());
        }
        let args = &self.cli.plugins;
        let lock = match &args.plugins_lock {
            Some(path) => Some(PluginLock::read(path).map_err(Failure::bad_input)?),
            None => None,
        };
        let options = LoadOptions {
            isolation: isolation(args),
            lock,
            ..LoadOptions::from_dirs(plugin_dirs(args))
        };
        let registry = Registry::load(&options);
        warn_refusals(&registry);
        if args.strict_plugins && !registry.refusals().is_empty() {
            let count = registry.refusals().len();
            return Err(Failure::new(
                Code::PluginRefused,
                format!("{count} plugin file(s) refused and --strict-plugins is set (see above)"),
            ));
        }
        Ok(self.registry.get_or_init(|| Arc::new(registry)).clone())
    }

    /// The async runtime (started once).
    pub fn runtime(&self) -> Result<&tokio::runtime::Runtime, Failure> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::new(Code::Failure, format!("cannot start the runtime: {e}")))?;
        Ok(self.runtime.get_or_init(|| runtime))
    }

    /// What plugins may use of the host: its HTTP transport (timeouts, SSRF guard) and the
    /// operator's secrets.
    pub fn services(&self) -> Result<HostServices, Failure> {
        let args = &self.cli.engine;
        let config = TransportConfig {
            timeout: Duration::from_secs(args.http_timeout.max(1)),
            allow_loopback_http: args.allow_loopback_http,
            ..TransportConfig::default()
        };
        let transport = Transport::new(config, self.runtime()?.handle().clone())
            .map(Arc::new)
            .map_err(|e| Failure::new(Code::Failure, e))?;
        let mut services = HostServices::new(transport);
        if let Some(path) = &args.operator_secrets {
            let operator =
                OperatorSecrets::from_file(path).map_err(|e| Failure::new(Code::BadInput, e))?;
            services = services.with_operator_secrets(operator);
        }
        Ok(services)
    }

    /// The engine over the store, the loaded schemes and the host's transport.
    pub fn engine(&self, options: EngineOptions) -> Result<Arc<Engine>, Failure> {
        let args = &self.cli.engine;
        let store = Arc::new(self.store()?);
        let services = self.services()?;
        let events = match self.webhook()? {
            Some(webhook) => self.runtime()?.block_on(async { Events::with_webhook(webhook) }),
            None => Events::default(),
        };
        let defaults = EngineConfig::default();
        let config = EngineConfig {
            // A refresh may take the transport's timeout per attempt, plus the waits between
            // them.
            lease_ttl: Duration::from_secs(args.http_timeout.max(1) * 4 + 30),
            keepalive: options.keepalive.map(Duration::from_secs),
            actor: self.actor(),
            authorize_cache: options.authorize_cache.unwrap_or(defaults.authorize_cache),
            authorize_cache_entries: options
                .authorize_cache_bounds
                .map_or(defaults.authorize_cache_entries, |b| b.0),
            authorize_cache_bytes: options
                .authorize_cache_bounds
                .map_or(defaults.authorize_cache_bytes, |b| b.1),
            ..defaults
        };
        Ok(Arc::new(Engine::new(store, self.registry()?, services, config, events)))
    }

    /// Runs `work` with the engine, then waits for webhook deliveries before returning.
    pub fn with_engine<T>(
        &self,
        options: EngineOptions,
        work: impl AsyncFnOnce(&Arc<Engine>) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let engine = self.engine(options)?;
        let result = self.runtime()?.block_on(work(&engine));
        self.flush(&engine)?;
        result
    }

    /// Waits (a while) for the engine's webhook deliveries still being retried: called before
    /// a command that made the engine say something exits.
    pub fn flush(&self, engine: &Engine) -> Result<(), Failure> {
        if !self.runtime()?.block_on(engine.events().flush(FLUSH_TIMEOUT)) {
            tracing::warn!("some webhook deliveries did not finish before exit");
        }
        Ok(())
    }

    fn webhook(&self) -> Result<Option<Webhook>, Failure> {
        let args = &self.cli.engine;
        let Some(url) = &args.webhook_url else { return Ok(None) };
        let host = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
        if host.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
            return Err(Failure::bad_input(
                "--webhook-url must be an http:// or https:// URL with a host",
            ));
        }
        let secret = match (&args.webhook_secret_file, std::env::var("AUTHPLUG_WEBHOOK_SECRET")) {
            (Some(path), _) => {
                std::fs::read_to_string(path).map(|text| text.trim().to_owned()).map_err(|e| {
                    Failure::bad_input(format!("webhook secret file {}: {e}", path.display()))
                })?
            }
            (None, Ok(value)) => value,
            (None, Err(_)) => {
                return Err(Failure::bad_input(
                    "--webhook-url needs a signing secret: --webhook-secret-file or \
                     AUTHPLUG_WEBHOOK_SECRET",
                ))
            }
        };
        if secret.is_empty() {
            return Err(Failure::bad_input("the webhook signing secret is empty"));
        }
        Ok(Some(Webhook::new(url.clone(), Secret::new(secret))))
    }
}

/// The folders searched for plugins: the options', or by default `plugins/` next to the binary
/// and then the user's data folder.
pub fn plugin_dirs(args: &PluginArgs) -> Vec<PathBuf> {
    if !args.dirs.is_empty() {
        return args.dirs.clone();
    }
    let mut dirs = Vec::new();
    if let Some(bin_dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(PathBuf::from))
    {
        dirs.push(bin_dir.join("plugins"));
    }
    // The user's data folder, only when the environment names one: never a folder relative
    // to wherever the command happens to run (cron, a unit without HOME).
    let named = ["XDG_DATA_HOME", "HOME"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    if named {
        dirs.push(authplug_store::data_dir().join("plugins"));
    }
    dirs
}

/// Prints refusals and the registry's warnings on stderr, once, when the plugins are loaded (by
/// every command that loads them, `serve` included).
fn warn_refusals(registry: &Registry) {
    for refusal in registry.refusals() {
        eprintln!("warning: {refusal}");
    }
    for warning in registry.warnings() {
        eprintln!("warning: {warning}");
    }
}

/// How plugin files run: the options', with this binary as the runner of isolated ones and
/// `plugins/` beside it as the folder of the files shipped with it.
fn isolation(args: &PluginArgs) -> authplug_host::IsolationPolicy {
    use crate::cli::IsolationArg;
    let binary = std::env::current_exe().ok();
    let shipped = binary.as_ref().and_then(|b| b.parent().map(|d| d.join("plugins")));
    authplug_host::IsolationPolicy {
        mode: match args.isolation {
            IsolationArg::Auto => authplug_host::Isolation::Auto,
            IsolationArg::Process => authplug_host::Isolation::Process,
            IsolationArg::InProcess => authplug_host::Isolation::InProcess,
        },
        runner: binary,
        trusted_dirs: shipped.into_iter().collect(),
        in_process: args.in_process.clone(),
        limits: authplug_host::Limits {
            onboard: Duration::from_secs(args.plugin_timeout.max(1) * 3),
            call: Duration::from_secs(args.plugin_timeout.max(1)),
            memory_bytes: args.plugin_memory.max(64) << 20,
            spin: Duration::from_micros(args.plugin_spin.min(10_000)),
            ..authplug_host::Limits::default()
        },
    }
}
