//! What the engine's newer tests share: a system of the linked OAuth2 scheme at a fake token
//! endpoint, and an engine over a store with the statically linked schemes.

use std::collections::BTreeMap;
use std::sync::Arc;

use authplug_engine::{Engine, EngineConfig, Events};
use authplug_host::{HostServices, LoadOptions, Registry, Transport, TransportConfig};
use authplug_protocol::Secret;
use authplug_store::{NewSystem, Store};

/// System `id` of the OAuth2 scheme whose tokens come from `token_url` (plus `parameters`),
/// holding the access token `at-0` and the refresh token `refresh` (empty: none issued).
pub fn oauth2_system(
    id: &str,
    token_url: &str,
    parameters: &[(&str, String)],
    refresh: &str,
    expires_at: Option<i64>,
) -> NewSystem {
    let secret = Secret::new;
    let mut given = BTreeMap::from([
        ("token_url".to_owned(), token_url.into()),
        ("login_url".to_owned(), "https://login.example/authorize".into()),
    ]);
    given.extend(parameters.iter().map(|(k, v)| (k.to_string(), v.as_str().into())));
    NewSystem {
        id: id.into(),
        scheme: "oauth2".into(),
        parameters: given,
        required: BTreeMap::from([
            ("client_id".into(), secret("app")),
            ("client_secret".into(), secret("app-secret")),
        ]),
        injected: BTreeMap::from([
            ("oauth_access_token".into(), secret("at-0")),
            ("oauth_refresh_token".into(), secret(refresh)),
            ("oauth_client_id".into(), secret("app")),
            ("oauth_client_secret".into(), secret("app-secret")),
        ]),
        expires_at,
    }
}

/// An engine over `store` with the schemes linked into the test (loopback HTTP allowed). Call
/// inside a tokio runtime.
pub fn engine(store: Arc<Store>, config: EngineConfig) -> Arc<Engine> {
    let registry =
        Registry::load(&LoadOptions { dirs: vec![], include_static: true, ..Default::default() });
    let transport = TransportConfig { allow_loopback_http: true, ..TransportConfig::default() };
    let transport =
        Transport::new(transport, tokio::runtime::Handle::current()).map(Arc::new).unwrap();
    Arc::new(Engine::new(
        store,
        Arc::new(registry),
        HostServices::new(transport),
        config,
        Events::default(),
    ))
}
