//! `authplug serve` and `authplug api-token`: the long-running host, and the tokens its callers
//! present.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authplug_host::Registry;
use authplug_server::{hash_token, new_token, AppState, Scope, ServeOptions, TokenEntry, Tokens};

use crate::cli::{ApiTokenArgs, Cli, ServeArgs};
use crate::exit::{Code, Failure};

fn tokens_file(given: &Option<PathBuf>) -> PathBuf {
    given.clone().unwrap_or_else(|| authplug_store::config_dir().join("tokens.json"))
}

/// The tokens file, and the admin token of the environment.
fn load_tokens(path: &std::path::Path) -> Result<Tokens, Failure> {
    let mut tokens = if path.exists() {
        Tokens::from_file(path).map_err(|e| Failure::new(Code::BadInput, e))?
    } else {
        Tokens::default()
    };
    if let Ok(admin) = std::env::var("AUTHPLUG_ADMIN_TOKEN") {
        if !admin.is_empty() {
            tokens = tokens.with_plain("admin (AUTHPLUG_ADMIN_TOKEN)", &admin, vec![Scope::Admin]);
        }
    }
    Ok(tokens)
}

/// On SIGHUP, the tokens file and the connectors folder are read again (a bad file or folder
/// keeps the old ones, and says why). Plugins are never unloaded or reloaded: that takes a
/// restart.
async fn reload_on_hangup(
    state: Arc<AppState>,
    path: PathBuf,
    connectors: Option<PathBuf>,
    mut hangups: tokio::signal::unix::Signal,
) {
    while hangups.recv().await.is_some() {
        // Connectors first: once the new tokens answer, the new connectors are there too.
        if let Some(dir) = &connectors {
            match authplug_server::load_connectors(dir) {
                Ok(loaded) => {
                    let count = loaded.len();
                    *state.connectors.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
                    eprintln!(
                        "authplug serve: reloaded {count} connector(s) from {}",
                        dir.display()
                    );
                }
                Err(error) => eprintln!("authplug serve: kept the old connectors: {error}"),
            }
        }
        match load_tokens(&path) {
            Ok(tokens) => {
                *state.tokens.write().unwrap_or_else(|p| p.into_inner()) = tokens;
                eprintln!("authplug serve: reloaded the API tokens from {}", path.display());
            }
            Err(failure) => {
                eprintln!("authplug serve: kept the old API tokens: {}", failure.message)
            }
        }
    }
}

pub fn serve(cli: &Cli, registry: Registry, args: &ServeArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let path = tokens_file(&args.tokens_file);
    let tokens = load_tokens(&path)?;
    if tokens.is_empty() {
        eprintln!(
            "warning: no API token: only /healthz and /readyz will answer (set AUTHPLUG_ADMIN_TOKEN, or `authplug api-token NAME --scope ...`)"
        );
    }
    let schemes = registry.schemes().count();
    let runtime = crate::lifecycle::runtime()?;
    let cache = Duration::from_millis(args.authorize_cache_ms);
    let engine = crate::lifecycle::engine(cli, registry, &runtime, args.keepalive, Some(cache))?;
    let connectors = match &args.connectors {
        Some(dir) => {
            authplug_server::load_connectors(dir).map_err(|e| Failure::new(Code::BadInput, e))?
        }
        None => Default::default(),
    };
    let options = ServeOptions {
        sweep_interval: Duration::from_secs(args.sweep_interval.max(1)),
        sweep_concurrency: args.sweep_concurrency.max(1),
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| {
            Failure::new(Code::Failure, format!("cannot listen on {}: {e}", args.listen))
        })?;
        let address: SocketAddr = listener.local_addr().map_err(|e| Failure::new(Code::Failure, e.to_string()))?;
        let public_url = args.public_url.clone().unwrap_or_else(|| format!("http://{address}"));
        let state = Arc::new(AppState {
            engine: engine.clone(),
            tokens: std::sync::RwLock::new(tokens),
            connectors: std::sync::RwLock::new(Arc::new(connectors)),
            public_url: public_url.trim_end_matches('/').to_owned(),
            metrics: Default::default(),
            web_page: !args.no_web_page,
        });
        tokio::spawn(authplug_server::count_events(state.clone()));
        // Installed before the server says it listens, so that no SIGHUP finds the default action.
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| Failure::new(Code::Failure, format!("no SIGHUP handler: {e}")))?;
        let folder = args.connectors.clone();
        tokio::spawn(reload_on_hangup(state.clone(), path.clone(), folder, hangups));
        let sweeper = tokio::spawn(authplug_server::sweep_forever(engine.clone(), options));
        eprintln!(
            "authplug serve: listening on http://{address} ({schemes} schemes, store {}, pid {}), ready in {} ms",
            engine.store().location(),
            std::process::id(),
            started.elapsed().as_millis()
        );
        let app = authplug_server::router(state);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| Failure::new(Code::Failure, format!("the server failed: {e}")))?;
        // Refreshes run in their own tasks and store their result before anyone sees it; the
        // sweep stops between systems, and webhook deliveries get a little time to finish.
        sweeper.abort();
        if !engine.events().flush(Duration::from_secs(10)).await {
            tracing::warn!("some webhook deliveries did not finish before exit");
        }
        eprintln!("authplug serve: stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("authplug serve: shutting down (in-flight requests finish)");
}

pub fn api_token(args: &ApiTokenArgs) -> Result<(), Failure> {
    let scopes: Vec<Scope> = args
        .scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<_, _>>()
        .map_err(|e| Failure::new(Code::BadInput, e))?;
    let token = new_token().map_err(|e| Failure::new(Code::Failure, e))?;
    let path = tokens_file(&args.tokens_file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::new(Code::Failure, format!("{}: {e}", parent.display())))?;
    }
    let entry = TokenEntry {
        name: args.name.clone(),
        sha256: hash_token(&token),
        scopes: scopes.iter().map(ToString::to_string).collect(),
    };
    Tokens::append(&path, entry).map_err(|e| Failure::new(Code::BadInput, e))?;
    println!("{token}");
    eprintln!(
        "token {} ({}) added to {}; this is the only time it is shown",
        args.name,
        args.scopes.join(", "),
        path.display()
    );
    Ok(())
}
