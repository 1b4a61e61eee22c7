//! `authplug token`, `refresh` and `status`: the lifecycle engine from the command line.

use std::sync::Arc;
use std::time::Duration;

use authplug_engine::{Engine, EngineConfig, EngineError, Events, Token, Webhook};
use authplug_host::{HostServices, OperatorSecrets, Registry, Transport, TransportConfig};
use authplug_protocol::Secret;
use authplug_store::{now_ms, now_secs, State};
use serde_json::json;

use crate::cli::{Cli, EngineArgs};
use crate::exit::{Code, Failure};
use crate::schemes::{print_json, print_table};

/// How long a command waits at exit for webhook deliveries still being retried.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

impl From<EngineError> for Failure {
    fn from(error: EngineError) -> Self {
        let code = match &error {
            EngineError::NotFound(_) | EngineError::SchemeNotLoaded { .. } => Code::NotFound,
            EngineError::NeedsReauth { .. } => Code::NeedsReauth,
            EngineError::Unavailable { .. } => Code::Unavailable,
            EngineError::Busy { .. } => Code::Conflict,
            EngineError::Store(e) => return Failure::from(e.clone()),
            EngineError::CannotRenew { .. } | EngineError::Scheme { .. } => Code::Failure,
        };
        Failure::new(code, error.to_string())
    }
}

/// The engine over the store, the loaded schemes and the host's transport, on `runtime`.
pub fn engine(
    cli: &Cli,
    registry: Registry,
    runtime: &tokio::runtime::Runtime,
    keepalive: Option<u64>,
    authorize_cache: Option<Duration>,
) -> Result<Arc<Engine>, Failure> {
    let args = &cli.engine;
    let store = Arc::new(crate::store::open(&cli.store)?);
    let services = services(args, runtime)?;
    let events = match webhook(args)? {
        Some(webhook) => runtime.block_on(async { Events::with_webhook(webhook) }),
        None => Events::default(),
    };
    let engine_config = EngineConfig {
        // A refresh may take the transport's timeout per attempt, plus the waits between them.
        lease_ttl: Duration::from_secs(args.http_timeout.max(1) * 4 + 30),
        keepalive: keepalive.map(Duration::from_secs),
        actor: crate::store::actor(),
        authorize_cache: authorize_cache.unwrap_or(EngineConfig::default().authorize_cache),
        ..EngineConfig::default()
    };
    Ok(Arc::new(Engine::new(store, Arc::new(registry), services, engine_config, events)))
}

/// What plugins may use of the host: its HTTP transport (timeouts, SSRF guard) and the
/// operator's secrets.
pub fn services(
    args: &EngineArgs,
    runtime: &tokio::runtime::Runtime,
) -> Result<HostServices, Failure> {
    let mut services = HostServices::new(transport(args, runtime)?);
    if let Some(path) = &args.operator_secrets {
        let operator =
            OperatorSecrets::from_file(path).map_err(|e| Failure::new(Code::BadInput, e))?;
        services = services.with_operator_secrets(operator);
    }
    Ok(services)
}

/// The host's HTTP transport: timeouts, and the guard against private addresses.
pub fn transport(
    args: &EngineArgs,
    runtime: &tokio::runtime::Runtime,
) -> Result<Arc<Transport>, Failure> {
    let config = TransportConfig {
        timeout: Duration::from_secs(args.http_timeout.max(1)),
        allow_loopback_http: args.allow_loopback_http,
        ..TransportConfig::default()
    };
    Transport::new(config, runtime.handle().clone())
        .map(Arc::new)
        .map_err(|e| Failure::new(Code::Failure, e))
}

fn webhook(args: &EngineArgs) -> Result<Option<Webhook>, Failure> {
    let Some(url) = &args.webhook_url else { return Ok(None) };
    let host = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    if host.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
        return Err(Failure::new(
            Code::BadInput,
            "--webhook-url must be an http:// or https:// URL with a host",
        ));
    }
    let secret = match (&args.webhook_secret_file, std::env::var("AUTHPLUG_WEBHOOK_SECRET")) {
        (Some(path), _) => {
            std::fs::read_to_string(path).map(|text| text.trim().to_owned()).map_err(|e| {
                Failure::new(Code::BadInput, format!("webhook secret file {}: {e}", path.display()))
            })?
        }
        (None, Ok(value)) => value,
        (None, Err(_)) => {
            return Err(Failure::new(
                Code::BadInput,
                "--webhook-url needs a signing secret: --webhook-secret-file or \
                 AUTHPLUG_WEBHOOK_SECRET",
            ))
        }
    };
    if secret.is_empty() {
        return Err(Failure::new(Code::BadInput, "the webhook signing secret is empty"));
    }
    Ok(Some(Webhook::new(url.clone(), Secret::new(secret))))
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Code::Failure, format!("cannot start the runtime: {e}")))
}

/// Runs `work` with the engine, then waits for webhook deliveries before returning.
pub fn with_engine<T>(
    cli: &Cli,
    registry: Registry,
    keepalive: Option<u64>,
    work: impl AsyncFnOnce(&Arc<Engine>) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let runtime = runtime()?;
    let engine = engine(cli, registry, &runtime, keepalive, None)?;
    runtime.block_on(async {
        let result = work(&engine).await;
        if !engine.events().flush(FLUSH_TIMEOUT).await {
            tracing::warn!("some webhook deliveries did not finish before exit");
        }
        result
    })
}

pub fn token(
    cli: &Cli,
    registry: Registry,
    system: &str,
    secret: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let token = with_engine(cli, registry, None, async |engine| Ok(engine.token(system).await?))?;
    print_token(&token, secret, json)
}

fn print_token(token: &Token, secret: Option<&str>, json: bool) -> Result<(), Failure> {
    if let Some(name) = secret {
        let value = token.injected.get(name).ok_or_else(|| {
            let names: Vec<&str> = token.injected.keys().map(String::as_str).collect();
            Failure::new(
                Code::NotFound,
                format!(
                    "system `{}` has no secret `{name}` (it has: {})",
                    token.system,
                    names.join(", ")
                ),
            )
        })?;
        println!("{}", value.expose());
        return Ok(());
    }
    if json {
        let secrets: serde_json::Map<String, serde_json::Value> =
            token.injected.iter().map(|(k, v)| (k.clone(), v.expose().into())).collect();
        return print_json(&json!({
            "system": token.system,
            "scheme": token.scheme,
            "expires_at": token.expires_at,
            "refreshed": token.refreshed,
            "secrets": secrets,
        }));
    }
    for (name, value) in &token.injected {
        println!("{name}={}", value.expose());
    }
    Ok(())
}

pub fn refresh(
    cli: &Cli,
    registry: Registry,
    systems: &[String],
    due: bool,
    keepalive: Option<u64>,
    concurrency: usize,
    json: bool,
) -> Result<(), Failure> {
    let results = with_engine(cli, registry, keepalive, async |engine| {
        if due {
            return Ok(engine.sweep(concurrency).await?);
        }
        let mut results = Vec::new();
        for system in systems {
            results.push((system.clone(), engine.refresh(system).await));
        }
        Ok(results)
    })?;
    let mut worst: Option<Failure> = None;
    let mut lines = Vec::new();
    for (system, result) in results {
        match result {
            Ok(token) => {
                lines.push(json!({"system": system, "ok": true, "expires_at": token.expires_at}));
                if !json {
                    eprintln!(
                        "{system}: refreshed, expires {}",
                        crate::store::time(token.expires_at)
                    );
                }
            }
            Err(error) => {
                let failure = Failure::from(error);
                lines.push(json!({"system": system, "ok": false, "error": failure.message,
                                  "exit_code": failure.code as u8}));
                if !json {
                    eprintln!("{system}: {}", failure.message);
                }
                if worst.as_ref().is_none_or(|w| (failure.code as u8) > (w.code as u8)) {
                    worst = Some(failure);
                }
            }
        }
    }
    if json {
        print_json(&lines)?;
    } else if due && lines.is_empty() {
        eprintln!("nothing is due");
    }
    match worst {
        Some(failure) if systems.len() == 1 => Err(failure),
        Some(failure) => Err(Failure::new(failure.code, "some refreshes failed (see above)")),
        None => Ok(()),
    }
}

pub fn status(cli: &Cli, json: bool) -> Result<(), Failure> {
    let store = crate::store::open(&cli.store)?;
    let systems = store.list()?;
    let attempts: std::collections::HashMap<String, authplug_store::Attempt> =
        store.latest_attempts()?.into_iter().map(|a| (a.system_id.clone(), a)).collect();
    let now = now_ms();
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for system in &systems {
        let attempt = attempts.get(&system.id);
        let lease = store.lease(&system.id)?.filter(|l| l.until_ms > now);
        let refreshing =
            lease.as_ref().is_some_and(|_| attempt.is_some_and(|a| a.finished_at_ms.is_none()));
        let state = if refreshing && system.state == State::Active {
            "refreshing"
        } else {
            system.state.as_str()
        };
        let retry_at = attempt.and_then(|a| a.retry_at_ms).filter(|at| *at > now);
        let interrupted = attempt.is_some_and(|a| a.interrupted_in_flight()) && lease.is_none();
        let note = if let Some(reason) = &system.state_reason {
            reason.clone()
        } else if interrupted {
            "the last refresh died in flight; the next one will tell whether the grant survived"
                .into()
        } else if let Some(at) = retry_at {
            format!(
                "next attempt after {} ({})",
                crate::store::time(Some(at / 1000)),
                attempt.and_then(|a| a.detail.clone()).unwrap_or_default()
            )
        } else if refreshing {
            format!("by {}", lease.as_ref().map(|l| l.holder.as_str()).unwrap_or(""))
        } else {
            String::new()
        };
        let expires = match system.expires_at {
            Some(at) if at <= now_secs() => format!("{} (expired)", crate::store::time(Some(at))),
            other => crate::store::time(other),
        };
        rows.push([
            system.id.clone(),
            system.scheme.clone(),
            state.to_owned(),
            expires,
            crate::store::time(system.last_refresh_at),
            system.failures.to_string(),
            note.clone(),
        ]);
        out.push(json!({
            "system": system.id,
            "scheme": system.scheme,
            "state": state,
            "reason": system.state_reason,
            "expires_at": system.expires_at,
            "last_refresh_at": system.last_refresh_at,
            "failures": system.failures,
            "next_attempt_at_ms": retry_at,
            "last_attempt": attempt,
            "interrupted_in_flight": interrupted,
            "lease": lease,
        }));
    }
    if json {
        return print_json(&out);
    }
    if rows.is_empty() {
        eprintln!("no systems in {}", store.location());
        return Ok(());
    }
    let header = ["SYSTEM", "SCHEME", "STATE", "EXPIRES", "LAST REFRESH", "FAILURES", "NOTE"]
        .map(String::from);
    print_table(&header, &rows);
    Ok(())
}
