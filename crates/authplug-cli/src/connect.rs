//! `authplug connect DIR --system ID`: a connector developer's onboarding. The folder is checked,
//! the secrets the scheme requires are gathered (flags, a secrets file, the environment, the
//! folder's `.authconfig`, or a prompt that never echoes), the scheme's onboarding runs (with a
//! loopback callback server for an OAuth2 consent), and the result is stored.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use authplug_connector::{read_authconfig, Connector, AUTHCONFIG, CONNECTOR_PARAMETER};
use authplug_host::{LoadedScheme, Registry};
use authplug_protocol::{OnboardRequest, OnboardStep, Resume, Secret};
use authplug_store::{NewSystem, StoreError};
use serde_json::{json, Value};

use crate::callback::{parse_redirect, Callback};
use crate::cli::{Cli, ConnectArgs};
use crate::exit::{Code, Failure};

/// Non-secret inputs the classic tool read from `.authconfig`; they become parameters.
const PARAMETER_INPUTS: &[&str] = &["account_id", "base_url"];

/// One input and where it came from (said in the progress line, never its value).
struct Input {
    value: Secret,
    source: String,
    /// The scheme requires it; otherwise the connector's own.
    for_scheme: bool,
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

pub fn connect(cli: &Cli, registry: &Registry, args: &ConnectArgs) -> Result<(), Failure> {
    let mut progress = Progress { step: 0, steps: 4 };
    let dir = &args.dir;
    let connector =
        Connector::load(dir).map_err(|e| Failure::new(Code::BadInput, e.to_string()))?;
    let schemes: Vec<_> = registry.schemes().map(|s| s.descriptor()).collect();
    let report = authplug_connector::check(&connector, &schemes);
    for finding in &report.findings {
        eprintln!("{}", crate::connector::line(dir, finding));
    }
    if report.errors() > 0 {
        return Err(Failure::new(
            Code::BadInput,
            format!("{} has errors (above): fix them before connecting", dir.display()),
        ));
    }
    let manifest = &connector.manifest;
    let Some(auth) = manifest.auth.as_deref() else {
        return Err(Failure::new(
            Code::BadInput,
            format!(
                "{}: the manifest names no `auth`: this connector needs no credentials",
                dir.join("manifest.json").display()
            ),
        ));
    };
    // The check resolved it, or reported an error above.
    let scheme = registry.resolve(auth, manifest.auth_variant.as_deref()).ok_or_else(|| {
        Failure::new(Code::BadInput, format!("{}: no loaded scheme serves it", dir.display()))
    })?;
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

    // The inputs, and where each came from.
    let Gathered { inputs, parameters } = gather(args, &connector, scheme)?;
    let names: Vec<String> =
        inputs.iter().map(|(name, input)| format!("{name} ({})", input.source)).collect();
    progress.say(&format!(
        "secrets: {}",
        if names.is_empty() { "none".into() } else { names.join(", ") }
    ));

    let (required, extras): (BTreeMap<String, Secret>, BTreeMap<String, Secret>) = inputs
        .iter()
        .map(|(name, input)| (name.clone(), input.value.clone()))
        .partition(|(name, _)| inputs[name].for_scheme);

    let runtime = crate::lifecycle::runtime()?;
    let services = crate::lifecycle::services(&cli.engine, &runtime)?;
    let redirect_uri = args
        .redirect_uri
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}/callback", args.port));
    let mut request = OnboardRequest {
        required: required.clone(),
        parameters: parameters.clone(),
        redirect_uri: Some(redirect_uri.clone()),
        ..OnboardRequest::default()
    };
    let (injected, expires_at, outputs) = loop {
        let step = scheme
            .onboard(request.clone(), &services)
            .map_err(|e| Failure::new(Code::Failure, format!("onboarding failed: {e}")))?;
        match step {
            OnboardStep::Done { injected, expires_at, outputs } => {
                break (injected, expires_at, outputs)
            }
            OnboardStep::Redirect { url, state, continuation } => {
                let (host, port, path) = parse_redirect(&redirect_uri)?;
                let callback = runtime.block_on(Callback::bind(&host, port, path))?;
                progress.say(&format!(
                    "consent: open this address in a browser (waiting {} s for {redirect_uri}):",
                    args.timeout
                ));
                eprintln!("  {url}");
                if !args.no_browser {
                    open_browser(&url);
                }
                let query =
                    runtime.block_on(callback.wait(&state, Duration::from_secs(args.timeout)))?;
                request.resume = Some(Resume { continuation, callback: query });
            }
        }
    };
    if progress.step < 3 {
        progress.say("onboarded without a consent");
    }

    // Store: the user's secrets (the scheme's and the connector's extras), the injected ones,
    // the manifest's scheme block with what onboarding learned, and what the connector declared.
    let mut stored_parameters = parameters;
    stored_parameters.extend(outputs);
    if let Some(tenant) = tenant(cli, &runtime, &connector, &injected)? {
        match stored_parameters.get("account_id").and_then(Value::as_str) {
            Some(given) if given != tenant => eprintln!(
                "warning: the provider names tenant {tenant}, not the account_id given ({given}); keeping {tenant}"
            ),
            _ => {}
        }
        eprintln!("  tenant: account_id = {tenant}");
        stored_parameters.insert("account_id".into(), Value::from(tenant));
    }
    stored_parameters.insert(
        CONNECTOR_PARAMETER.into(),
        authplug_connector::connector_parameter(&connector, extras.keys()),
    );
    let mut all_required = required;
    all_required.extend(extras);
    let store = crate::store::open(&cli.store)?;
    let actor = crate::store::actor();
    let new = NewSystem {
        id: args.system.clone(),
        scheme: scheme.id().to_owned(),
        parameters: stored_parameters,
        required: all_required,
        injected,
        expires_at,
    };
    let stored = match store.onboarded(new, args.replace, &actor) {
        Ok((record, _)) => record,
        Err(StoreError::Exists(id)) => {
            return Err(Failure::new(
                Code::Conflict,
                format!("system {id} exists: pass --replace to onboard it again"),
            ))
        }
        Err(StoreError::NotFound(_)) => {
            return Err(Failure::new(Code::Conflict, "the system vanished meanwhile; try again"))
        }
        Err(other) => return Err(other.into()),
    };
    let expiry = match stored.summary.expires_at {
        Some(at) => format!(", expires {}", crate::store::time(Some(at))),
        None => String::new(),
    };
    progress.say(&format!(
        "stored system {} ({} secrets{expiry}) in {}",
        args.system,
        stored.injected.len() + stored.required.len(),
        store.location()
    ));
    if args.json {
        let mut names: Vec<&String> = stored.injected.keys().collect();
        names.sort();
        crate::schemes::print_json(&json!({
            "system": args.system,
            "scheme": scheme.id(),
            "injected": names,
            "expires_at": stored.summary.expires_at,
            "parameters": stored.summary.parameters,
        }))?;
    }
    Ok(())
}

/// The tenant, by the manifest's `oauth2.tenant_id_expression`: read from the answer of its
/// `identity_url` (called with the new access token), or else from the access token's claims.
fn tenant(
    cli: &Cli,
    runtime: &tokio::runtime::Runtime,
    connector: &Connector,
    injected: &BTreeMap<String, Secret>,
) -> Result<Option<String>, Failure> {
    let Some(expression) = connector.field("oauth2.tenant_id_expression").and_then(Value::as_str)
    else {
        return Ok(None);
    };
    let Some(token) = injected.get("oauth_access_token") else { return Ok(None) };
    let (document, source) = match connector.field("oauth2.identity_url").and_then(Value::as_str) {
        Some(url) => {
            let transport = crate::lifecycle::transport(&cli.engine, runtime)?;
            let request = authplug_protocol::HttpRequest {
                method: "GET".into(),
                url: url.to_owned(),
                headers: vec![
                    ("Authorization".into(), format!("Bearer {}", token.expose())),
                    ("Accept".into(), "application/json".into()),
                ],
                body: Vec::new(),
            };
            let answer = transport.execute_blocking(request).map_err(|e| {
                Failure::new(Code::Failure, format!("identity_url {url}: {}", e.message))
            })?;
            if !(200..300).contains(&answer.status) {
                return Err(Failure::new(
                    Code::Failure,
                    format!("identity_url {url} answered HTTP {}: the tenant is unknown; nothing was stored", answer.status),
                ));
            }
            let document = serde_json::from_slice(&answer.body).map_err(|_| {
                Failure::new(
                    Code::Failure,
                    format!("identity_url {url} did not answer JSON; nothing was stored"),
                )
            })?;
            (document, format!("the answer of {url}"))
        }
        None => match authplug_connector::jwt_claims(token.expose()) {
            Some(claims) => (claims, "the access token's claims".to_owned()),
            None => {
                eprintln!("warning: tenant_id_expression without identity_url, and the access token is not a JWT: account_id not set");
                return Ok(None);
            }
        },
    };
    match authplug_connector::tenant_from(expression, &document) {
        Some(tenant) => Ok(Some(tenant)),
        None => {
            eprintln!("warning: tenant_id_expression `{expression}` finds nothing in {source}: account_id not set");
            Ok(None)
        }
    }
}

/// The secrets the scheme requires (less the operator's) and the connector declares, and the
/// parameters: from `--secret`, `--secrets-file`, `AUTHPLUG_SECRET_<NAME>`, `.authconfig`, or a
/// hidden prompt, in that order.
fn gather(
    args: &ConnectArgs,
    connector: &Connector,
    scheme: &LoadedScheme,
) -> Result<Gathered, Failure> {
    let manifest = &connector.manifest;
    let mut sources: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut flags = BTreeMap::new();
    for pair in &args.secrets {
        // Without its `=`, the argument may be a bare value: it is never quoted.
        let (name, value) = pair.split_once('=').ok_or_else(|| {
            Failure::new(
                Code::BadInput,
                "--secret: expected NAME=VALUE (the argument is not shown)",
            )
        })?;
        flags.insert(name.to_owned(), value.to_owned());
    }
    sources.push(("--secret".into(), flags));
    if let Some(path) = &args.secrets_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::new(Code::BadInput, format!("{}: {e}", path.display())))?;
        let values = authplug_connector::parse_authconfig(path, &text)
            .map_err(|e| Failure::new(Code::BadInput, e.to_string()))?;
        sources.push((path.display().to_string(), values));
    }
    let authconfig_path = connector.dir.join(AUTHCONFIG);
    let authconfig =
        read_authconfig(&connector.dir).map_err(|e| Failure::new(Code::BadInput, e.to_string()))?;

    // What is asked for: the scheme's user secrets, then the connector's own.
    let wanted = manifest.onboarding_inputs(scheme.descriptor());

    let lookup = |name: &str| -> Option<(String, String)> {
        for (source, values) in &sources {
            if let Some(value) = values.get(name) {
                return Some((value.clone(), source.clone()));
            }
        }
        let variable = format!("AUTHPLUG_SECRET_{}", name.to_uppercase().replace('-', "_"));
        if let Ok(value) = std::env::var(&variable) {
            return Some((value, variable));
        }
        authconfig.as_ref()?.get(name).map(|v| (v.clone(), authconfig_path.display().to_string()))
    };

    let mut inputs = BTreeMap::new();
    let mut missing = Vec::new();
    let interactive = std::io::stdin().is_terminal() && !args.no_prompt;
    for wanted in &wanted {
        let name = &wanted.name;
        let found = match lookup(name) {
            Some(found) => Some(found),
            None if wanted.generated => Some((random_hex(32)?, "generated".to_owned())),
            None if wanted.optional => continue,
            None if interactive => {
                prompt(name, &wanted.description, wanted.secret)?.map(|v| (v, "prompt".to_owned()))
            }
            None => None,
        };
        match found {
            Some((value, _)) if value.is_empty() => missing.push(name.clone()),
            Some((value, source)) => {
                let for_scheme = wanted.for_scheme;
                inputs
                    .insert(name.clone(), Input { value: Secret::new(value), source, for_scheme });
            }
            None => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        let where_ = if authconfig.is_some() {
            format!("{} lacks it", authconfig_path.display())
        } else {
            format!("put it in {}", authconfig_path.display())
        };
        let first = &missing[0];
        return Err(Failure::new(
            Code::BadInput,
            format!(
                "missing required secret{} {}: {where_}, or give --secret {first}=..., or set AUTHPLUG_SECRET_{}",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", "),
                first.to_uppercase().replace('-', "_")
            ),
        ));
    }

    // Parameters: the manifest's scheme block, then the non-secret inputs, then --param.
    let mut parameters = connector.scheme_parameters();
    let declared_env: Vec<&String> = manifest.additional_parameters.keys().collect();
    let mut all: Vec<&BTreeMap<String, String>> = sources.iter().map(|(_, v)| v).collect();
    all.extend(authconfig.as_ref());
    for values in all {
        for (key, value) in values {
            if PARAMETER_INPUTS.contains(&key.as_str()) || declared_env.contains(&key) {
                parameters.entry(key.clone()).or_insert_with(|| Value::from(value.clone()));
            }
        }
    }
    for pair in &args.params {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            Failure::new(Code::BadInput, format!("--param {pair}: expected KEY=VALUE"))
        })?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        parameters.insert(key.to_owned(), value);
    }
    Ok(Gathered { inputs, parameters })
}

/// The user's inputs: secrets by name, and the scheme parameters.
struct Gathered {
    inputs: BTreeMap<String, Input>,
    parameters: BTreeMap<String, Value>,
}

/// Asks on the terminal; a secret's answer is not echoed.
fn prompt(name: &str, description: &str, hidden: bool) -> Result<Option<String>, Failure> {
    let question = format!("{name} ({}): ", description.trim_end_matches('.'));
    let answer = if hidden {
        rpassword::prompt_password(question)
    } else {
        eprint!("{question}");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    };
    let answer = answer.map_err(|e| {
        Failure::new(Code::Failure, format!("cannot read {name} from the terminal: {e}"))
    })?;
    let answer = answer.trim().to_owned();
    Ok((!answer.is_empty()).then_some(answer))
}

fn random_hex(bytes: usize) -> Result<String, Failure> {
    let mut buffer = vec![0u8; bytes];
    getrandom::getrandom(&mut buffer).map_err(|e| {
        Failure::new(Code::Failure, format!("no randomness for the webhook secret: {e}"))
    })?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
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
