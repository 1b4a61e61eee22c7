//! `authplug connect DIR --system ID`: a connector developer's onboarding, through the
//! onboarding service (`authplug-onboard`, the same path as the server's). This front end
//! brings the inputs (flags, a secrets file, the environment, the folder's `.authconfig`, or a
//! prompt that never echoes), a loopback callback server for an OAuth2 consent, and progress
//! lines on stderr.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use authplug_connector::{read_authconfig, Connector, ConnectorSecret, AUTHCONFIG};
use authplug_onboard::{Answer, Consent, Found, Inputs, OnboardError, Onboarder, Outcome, Parked};
use authplug_protocol::Secret;
use clap::Args;
use serde_json::{json, Value};

use super::callback::{parse_redirect, Callback};
use crate::context::{Context, EngineOptions};
use crate::exit::{Code, Failure};
use crate::output::{print_json, time};

/// Non-secret inputs the classic tool read from `.authconfig`; they become parameters.
const PARAMETER_INPUTS: &[&str] = &["account_id", "base_url"];

#[derive(Args)]
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
    #[arg(long, env = "AUTHPLUG_NO_BROWSER", value_parser = clap::builder::BoolishValueParser::new())]
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

    /// Do not send the verification request (the connector's or the scheme's) once stored.
    #[arg(long)]
    pub no_verify: bool,
}

/// Never prints a `--secret` value.
impl std::fmt::Debug for ConnectArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> =
            self.secrets.iter().filter_map(|s| s.split_once('=').map(|(n, _)| n)).collect();
        f.debug_struct("ConnectArgs")
            .field("dir", &self.dir)
            .field("system", &self.system)
            .field("secrets", &names)
            .field("replace", &self.replace)
            .finish_non_exhaustive()
    }
}

/// Progress lines on stderr, so that stdout stays for `--json`.
struct Progress {
    step: usize,
    steps: usize,
}

impl Progress {
    fn say(&mut self, text: &str) {
        self.step += 1;
        eprintln!("[{}/{}] {text}", self.step, self.steps);
    }
}

pub fn run(ctx: &Context<'_>, args: &ConnectArgs) -> Result<(), Failure> {
    let mut progress = Progress { step: 0, steps: if args.no_verify { 4 } else { 5 } };
    let dir = &args.dir;
    let connector = Connector::load(dir).map_err(|e| Failure::bad_input(e.to_string()))?;
    let registry = ctx.registry()?;
    let schemes: Vec<_> = registry.schemes().map(|s| s.descriptor()).collect();
    let report = authplug_connector::check(&connector, &schemes);
    for finding in &report.findings {
        eprintln!("{}", super::check::line(dir, finding));
    }
    if report.errors() > 0 {
        return Err(Failure::bad_input(format!(
            "{} has errors (above): fix them before connecting",
            dir.display()
        )));
    }
    if connector.manifest.auth.is_none() {
        return Err(Failure::bad_input(format!(
            "{}: the manifest names no `auth`: this connector needs no credentials",
            dir.join("manifest.json").display()
        )));
    }
    let redirect_uri = args
        .redirect_uri
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}/callback", args.port));

    let engine = ctx.engine(EngineOptions::default())?;
    let onboarder = Onboarder::new(engine.clone());
    let scheme = onboarder.scheme_for(&connector)?;
    progress.say(&format!(
        "{}: connector {}, scheme {}{}",
        dir.display(),
        connector.name(),
        scheme.id(),
        if report.warnings() > 0 {
            format!(" ({} warning(s) above)", report.warnings())
        } else {
            String::new()
        }
    ));

    let mut sources = Sources::new(args, &connector)?;
    let request = authplug_onboard::Request {
        connector: &connector,
        system: args.system.clone(),
        replace: args.replace,
        actor: ctx.actor(),
        redirect_uri: Some(redirect_uri.clone()),
        defaults: sources.parameter_inputs(&connector),
        parameters: params(&args.params)?,
        return_to: None,
    };
    let plan = onboarder.plan(request, &mut sources).map_err(|e| sources.hint(e))?;
    let names: Vec<String> =
        plan.sources().iter().map(|(name, source)| format!("{name} ({source})")).collect();
    progress.say(&format!(
        "secrets: {}",
        if names.is_empty() { "none".into() } else { names.join(", ") }
    ));

    let mut consent = Loopback {
        runtime: ctx.runtime()?,
        redirect_uri: &redirect_uri,
        timeout: Duration::from_secs(args.timeout),
        open_browser: !args.no_browser,
        progress: &mut progress,
    };
    let outcome = onboarder.run(plan, &mut consent);
    // What the engine said (recovered) reaches the webhook before the command exits.
    ctx.flush(&engine)?;
    let finished = match outcome? {
        Outcome::Done(finished) => finished,
        Outcome::AwaitingConsent { .. } => {
            return Err(Failure::new(Code::Failure, "the consent was parked, not awaited"))
        }
    };
    if progress.step < 3 {
        progress.say("onboarded without a consent");
    }
    for note in &finished.notes {
        eprintln!("warning: {note}");
    }
    if let Some(tenant) = &finished.tenant {
        eprintln!("  tenant: account_id = {tenant}");
    }
    let stored = &finished.stored.record;
    let expiry = match stored.summary.expires_at {
        Some(at) => format!(", expires {}", time(Some(at))),
        None => String::new(),
    };
    progress.say(&format!(
        "stored system {} ({} secrets{expiry}) in {}",
        args.system,
        stored.injected.len() + stored.required.len(),
        engine.store().location()
    ));
    // The credential, tried once: the system stays stored whatever the answer.
    let verification = if args.no_verify {
        None
    } else {
        let actor = ctx.actor();
        let outcome =
            ctx.runtime()?.block_on(authplug_onboard::verify(&engine, &args.system, &actor));
        let (line, value, result) = super::verify::after_connect(outcome, &args.system);
        progress.say(&line);
        Some((value, result))
    };
    if ctx.json() {
        let names: Vec<&String> = stored.injected.keys().collect();
        print_json(&json!({
            "system": args.system,
            "scheme": stored.summary.scheme,
            "injected": names,
            "expires_at": stored.summary.expires_at,
            "parameters": stored.summary.parameters,
            "verification": verification.as_ref().map(|(value, _)| value),
        }))?;
    }
    verification.map_or(Ok(()), |(_, result)| result)
}

/// `--param KEY=VALUE` pairs (JSON values allowed).
fn params(pairs: &[String]) -> Result<BTreeMap<String, Value>, Failure> {
    let mut parameters = BTreeMap::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| Failure::bad_input(format!("--param {pair}: expected KEY=VALUE")))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        parameters.insert(key.to_owned(), value);
    }
    Ok(parameters)
}

/// Where `connect` finds inputs: `--secret`, `--secrets-file`, `AUTHPLUG_SECRET_<NAME>`,
/// `.authconfig`, then a hidden prompt, in that order.
struct Sources {
    /// Each named source with its values, in order.
    named: Vec<(String, BTreeMap<String, String>)>,
    authconfig: Option<BTreeMap<String, String>>,
    authconfig_path: PathBuf,
    interactive: bool,
}

impl Sources {
    fn new(args: &ConnectArgs, connector: &Connector) -> Result<Self, Failure> {
        let mut named = Vec::new();
        let mut flags = BTreeMap::new();
        for pair in &args.secrets {
            // Without its `=`, the argument may be a bare value: it is never quoted.
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                Failure::bad_input("--secret: expected NAME=VALUE (the argument is not shown)")
            })?;
            flags.insert(name.to_owned(), value.to_owned());
        }
        named.push(("--secret".to_owned(), flags));
        if let Some(path) = &args.secrets_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::bad_input(format!("{}: {e}", path.display())))?;
            let values = authplug_connector::parse_authconfig(path, &text)
                .map_err(|e| Failure::bad_input(e.to_string()))?;
            named.push((path.display().to_string(), values));
        }
        let authconfig =
            read_authconfig(&connector.dir).map_err(|e| Failure::bad_input(e.to_string()))?;
        Ok(Self {
            named,
            authconfig,
            authconfig_path: connector.dir.join(AUTHCONFIG),
            interactive: std::io::stdin().is_terminal() && !args.no_prompt,
        })
    }

    /// The non-secret inputs the classic tool took from these files (`account_id`,
    /// `base_url`, and the connector's declared variables), as parameter defaults.
    fn parameter_inputs(&self, connector: &Connector) -> BTreeMap<String, Value> {
        let declared = &connector.manifest.additional_parameters;
        let mut defaults = BTreeMap::new();
        let files = self.named.iter().map(|(_, v)| v).chain(self.authconfig.as_ref());
        for values in files {
            for (key, value) in values {
                if PARAMETER_INPUTS.contains(&key.as_str()) || declared.contains_key(key) {
                    defaults.entry(key.clone()).or_insert_with(|| Value::from(value.clone()));
                }
            }
        }
        defaults
    }

    /// A missing input's failure, with where to put it.
    fn hint(&self, error: OnboardError) -> Failure {
        let OnboardError::Missing { names } = &error else { return error.into() };
        let where_ = if self.authconfig.is_some() {
            format!("{} lacks it", self.authconfig_path.display())
        } else {
            format!("put it in {}", self.authconfig_path.display())
        };
        let first = &names[0];
        Failure::bad_input(format!(
            "{error}: {where_}, or give --secret {first}=..., or set AUTHPLUG_SECRET_{}",
            variable(first)
        ))
    }
}

fn variable(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

impl Inputs for Sources {
    fn find(&mut self, input: &ConnectorSecret) -> Result<Option<Found>, OnboardError> {
        let found = |value: &String, source: String| {
            Some(Found { value: Secret::new(value.clone()), source })
        };
        for (source, values) in &self.named {
            if let Some(value) = values.get(&input.name) {
                return Ok(found(value, source.clone()));
            }
        }
        let variable = format!("AUTHPLUG_SECRET_{}", variable(&input.name));
        if let Ok(value) = std::env::var(&variable) {
            return Ok(found(&value, variable));
        }
        let path = self.authconfig_path.display().to_string();
        Ok(self.authconfig.as_ref().and_then(|c| c.get(&input.name)).and_then(|v| found(v, path)))
    }

    fn ask(&mut self, input: &ConnectorSecret) -> Result<Option<Found>, OnboardError> {
        if !self.interactive {
            return Ok(None);
        }
        let question = format!("{} ({}): ", input.name, input.description.trim_end_matches('.'));
        let answer = if input.secret {
            rpassword::prompt_password(question)
        } else {
            eprint!("{question}");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        };
        let answer = answer.map_err(|e| {
            OnboardError::Local(format!("cannot read {} from the terminal: {e}", input.name))
        })?;
        let answer = answer.trim().to_owned();
        Ok((!answer.is_empty())
            .then(|| Found { value: Secret::new(answer), source: "prompt".into() }))
    }
}

/// The consent in a browser, back to a loopback listener on this machine (RFC 8252).
struct Loopback<'a> {
    runtime: &'a tokio::runtime::Runtime,
    redirect_uri: &'a str,
    timeout: Duration,
    open_browser: bool,
    progress: &'a mut Progress,
}

impl Consent for Loopback<'_> {
    fn redirect(
        &mut self,
        url: &str,
        state: &str,
        _parked: Parked<'_>,
    ) -> Result<Answer, OnboardError> {
        let (host, port, path) = parse_redirect(self.redirect_uri)?;
        let callback = self.runtime.block_on(Callback::bind(&host, port, path))?;
        self.progress.say(&format!(
            "consent: open this address in a browser (waiting {} s for {}):",
            self.timeout.as_secs(),
            self.redirect_uri
        ));
        eprintln!("  {url}");
        if self.open_browser {
            open_browser(url);
        }
        let query = self.runtime.block_on(callback.wait(state, self.timeout))?;
        Ok(Answer::Callback(query))
    }
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let opened = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if opened.is_err() {
        eprintln!("  (no browser could be opened: copy the address above)");
    }
}
