//! An authplug engine process for the concurrency tests: loads the plugins and opens the store
//! like `authplug token`, says `ready`, waits for a line on stdin (so that several processes start
//! at the same moment), then makes N concurrent token requests for one system and prints one JSON
//! line per request with a fingerprint of the access token (never the token).
//!
//! Usage: token-burst SYSTEM N   (environment as for `authplug`: AUTHPLUG_STORE, ...)

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use authplug_engine::{Engine, EngineConfig, Events};
use authplug_host::{HostServices, LoadOptions, Registry, Transport, TransportConfig};
use authplug_store::{Keyring, Location, Store};

fn main() {
    let mut args = std::env::args().skip(1);
    let system = args.next().expect("SYSTEM");
    let count: usize = args.next().expect("N").parse().expect("N is a number");
    if let Ok(filter) = std::env::var("TOKEN_BURST_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let location = Location::parse(&std::env::var("AUTHPLUG_STORE").unwrap());
    let keys = Keyring::from_file(std::env::var_os("AUTHPLUG_KEY_FILE").unwrap().as_ref()).unwrap();
    let store = Arc::new(Store::open(&location, keys).unwrap());
    let registry =
        Registry::load(&LoadOptions::from_dirs([std::env::var_os("AUTHPLUG_PLUGIN_DIR").unwrap()]));
    let config = TransportConfig {
        allow_loopback_http: true,
        timeout: Duration::from_secs(10),
        ..TransportConfig::default()
    };
    let transport = Transport::new(config, runtime.handle().clone()).unwrap();
    let engine = Arc::new(Engine::new(
        store,
        Arc::new(registry),
        HostServices::new(Arc::new(transport)),
        EngineConfig::default(),
        Events::default(),
    ));
    println!("ready");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    let results = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..count {
            let (engine, system) = (engine.clone(), system.clone());
            tasks.spawn(async move { engine.token(&system).await });
        }
        let mut results = Vec::new();
        while let Some(done) = tasks.join_next().await {
            results.push(done.unwrap());
        }
        results
    });
    for result in results {
        let line = match result {
            Ok(token) => serde_json::json!({
                "ok": true,
                "access": tests::lifecycle::fingerprint(token.injected["oauth_access_token"].expose()),
                "version": token.version,
                "refreshed": token.refreshed,
            }),
            Err(error) => serde_json::json!({"ok": false, "error": error.to_string()}),
        };
        println!("{line}");
    }
}
