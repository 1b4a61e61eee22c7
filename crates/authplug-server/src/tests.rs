//! The router without a socket (`tower::ServiceExt::oneshot`): the route table against the
//! OpenAPI document, who may call what, and onboardings through the API. A temporary SQLite
//! store, the API key and OAuth2 schemes linked statically, and for OAuth2 a loopback fake
//! provider (the only network).

use std::collections::BTreeMap;
use std::sync::Arc;

use authplug_engine::{Engine, EngineConfig, Events};
use authplug_host::{HostServices, LoadOptions, Registry};
use authplug_store::{Keyring, Location, MasterKey, Store};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::{AppState, Connectors, Scope, Tokens};

// The schemes the tests onboard, linked into this binary.
use api_key as _;
use oauth2_scheme as _;

pub(crate) const ADMIN: &str = "admin-token-0123456789";
const WORKER: &str = "worker-token-0123456789";
const STRANGER: &str = "stranger-token-0123456789";

pub(crate) struct Lab {
    _dir: tempfile::TempDir,
    pub(crate) state: Arc<AppState>,
}

impl Lab {
    pub(crate) fn new() -> Self {
        Self::with(HostServices::offline(), &[])
    }

    /// A lab whose schemes reach the network through `services`, with these connectors
    /// (`(name, manifest)`, each with a system template) besides `shop`.
    fn with(services: HostServices, more: &[(&str, Value)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Sqlite(dir.path().join("store.sqlite3"));
        let store =
            Store::open(&location, Keyring::fixed(vec![MasterKey::generate().unwrap()])).unwrap();
        let registry = Registry::load(&LoadOptions {
            dirs: vec![],
            include_static: true,
            ..Default::default()
        });
        let engine = Arc::new(Engine::new(
            Arc::new(store),
            Arc::new(registry),
            services,
            EngineConfig::default(),
            Events::default(),
        ));
        let connector_dir = dir.path().join("shop");
        std::fs::create_dir_all(connector_dir.join("templates")).unwrap();
        std::fs::write(
            connector_dir.join("manifest.json"),
            r#"{"auth": "api_key", "system-template": "templates/system.json"}"#,
        )
        .unwrap();
        std::fs::write(
            connector_dir.join("templates/system.json"),
            r#"{"headers": {"X-Key": "$SECRET(api_key)"}}"#,
        )
        .unwrap();
        let connector = authplug_connector::Connector::load(&connector_dir).unwrap();
        let mut connectors: Connectors = BTreeMap::from([("shop".to_owned(), connector)]);
        for (name, manifest) in more {
            let folder = dir.path().join(name);
            std::fs::create_dir_all(folder.join("templates")).unwrap();
            std::fs::write(folder.join("manifest.json"), manifest.to_string()).unwrap();
            std::fs::write(folder.join("templates/system.json"), "{}").unwrap();
            let connector = authplug_connector::Connector::load(&folder).unwrap();
            connectors.insert(name.to_string(), connector);
        }
        let tokens = Tokens::default()
            .with_plain("admin", ADMIN, vec![Scope::Admin])
            .with_plain("worker", WORKER, vec![Scope::Secrets("*".into())])
            .with_plain("stranger", STRANGER, vec![Scope::Authorize("elsewhere".into())]);
        let state =
            Arc::new(AppState::new(engine, tokens, connectors, "http://127.0.0.1:9/", true));
        Self { _dir: dir, state }
    }

    fn router(&self) -> crate::App {
        crate::router(self.state.clone())
    }

    /// One request through a fresh router: its status, headers and body.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(value) => Body::from(value.to_string()),
            None => Body::empty(),
        };
        let response = self.router().oneshot(request.body(body).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (parts.status, parts.headers, value)
    }

    async fn onboard(&self, system: &str, body: Value) -> (StatusCode, Value) {
        let path = format!("/v1/systems/{system}/onboard");
        let (status, _, answer) = self.call(Method::POST, &path, Some(ADMIN), Some(body)).await;
        (status, answer)
    }
}

/// The (method, path) pairs the OpenAPI document describes.
fn described() -> Vec<(Method, String)> {
    let document: Value = serde_json::from_str(crate::OPENAPI).unwrap();
    let mut pairs = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            if item.get(method.as_str().to_lowercase()).is_some() {
                pairs.push((method, path.clone()));
            }
        }
    }
    pairs.sort_by(|a, b| (&a.1, a.0.as_str()).cmp(&(&b.1, b.0.as_str())));
    pairs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_exactly_the_routes_the_router_serves() {
    let lab = Lab::new();
    let mut table: Vec<(Method, String)> =
        crate::routes::api().into_iter().map(|r| (r.method, r.path.to_owned())).collect();
    table.sort_by(|a, b| (&a.1, a.0.as_str()).cmp(&(&b.1, b.0.as_str())));
    assert_eq!(described(), table, "the document and the route table");
    for (method, path) in described() {
        // Served by the router: neither the fallback (404 "no such route") nor 405.
        let concrete = path.replace("{id}", "no-such-system");
        let (status, _, body) = lab.call(method.clone(), &concrete, None, None).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(body["message"], "no such route", "{method} {path}");
        // And nothing else on that path: every other method is 405.
        for other in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
            if !described().contains(&(other.clone(), path.clone())) {
                let (status, _, _) = lab.call(other.clone(), &concrete, None, None).await;
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{other} {path}");
            }
        }
    }
    let (status, _, body) = lab.call(Method::GET, "/v1/nothing-here", Some(ADMIN), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_but_the_probes_wants_a_token_of_the_right_scope() {
    let lab = Lab::new();
    let open = ["/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/v1/onboarding/callback"];
    for (method, path) in described() {
        if open.contains(&path.as_str()) {
            continue;
        }
        let concrete = path.replace("{id}", "crm");
        let (status, headers, body) = lab.call(method.clone(), &concrete, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        let (status, _, _) = lab.call(method.clone(), &concrete, Some("wrong"), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let (status, _, body) = lab.call(method.clone(), &concrete, Some(STRANGER), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert!(body["message"].as_str().unwrap().starts_with("this token may not"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_says_no_store_and_the_probes_answer_without_a_token() {
    let lab = Lab::new();
    for path in ["/healthz", "/readyz", "/v1/systems", "/nowhere", "/"] {
        let (_, headers, _) = lab.call(Method::GET, path, None, None).await;
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{path}");
    }
    let (status, _, body) = lab.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["schemes"], json!(["api_key", "oauth2"]), "the statically linked schemes");
    let (_, headers, _) = lab.call(Method::GET, "/", None, None).await;
    assert!(headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_is_onboarded_through_the_api_once_unless_replaced() {
    let lab = Lab::new();
    let (status, answer) = lab.onboard("shop-1", json!({"connector": "shop"})).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing required secret(s): api_key"))
    );
    let body = json!({"connector": "shop", "secrets": {"api_key": "key-value-1"}});
    let (status, answer) = lab.onboard("shop-1", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"step": "done", "system": "shop-1", "state": "created"}));
    let (status, answer) = lab.onboard("shop-1", body.clone()).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::CONFLICT, Some("exists")));
    let mut again = body;
    again["replace"] = true.into();
    let (_, answer) = lab.onboard("shop-1", again).await;
    assert_eq!(answer["state"], "replaced");
    let (status, answer) = lab.onboard("shop-2", json!({"connector": "nope"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // Listed with its lifecycle, and its key readable by a worker only as its scope allows.
    let (_, _, listed) = lab.call(Method::GET, "/v1/systems", Some(ADMIN), None).await;
    let system = &listed["systems"][0];
    assert_eq!(
        (system["id"].as_str(), system["connector"].as_str()),
        (Some("shop-1"), Some("shop"))
    );
    assert_eq!((system["state"].as_str(), &system["refreshing"]), (Some("active"), &json!(false)));
    let (status, _, secrets) =
        lab.call(Method::GET, "/v1/systems/shop-1/secrets", Some(WORKER), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        secrets["withheld"],
        json!(["api_key"]),
        "a copied confidential input is long-lived"
    );
    let audit = lab.state.engine.store().audit("shop-1").unwrap();
    assert_eq!(audit.last().unwrap().action, "secrets_read", "every read is audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_for_no_pending_onboarding_is_refused_with_a_page() {
    let lab = Lab::new();
    let path = "/v1/onboarding/callback?state=abcdefghijklmnopqrstu&code=x";
    let (status, headers, body) = lab.call(Method::GET, path, None, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    assert!(body.as_str().unwrap().contains("unknown, expired or already used state"), "{body}");
    let (status, _, _) = lab.call(Method::GET, "/v1/onboarding/callback", None, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A provider on loopback: `/token` answers a token (with a `tenant` object, as some providers
/// do), `/oauth/v1/access-tokens/{token}` names the portal like HubSpot's token metadata.
fn provider() -> authplug_testkit::FakeServer {
    authplug_testkit::FakeServer::start(|request| match request.path.as_str() {
        "/token" if request.form("code").as_deref() == Some("the-code") => {
            authplug_testkit::Response::json(
                200,
                &json!({"access_token": "at-1", "token_type": "bearer", "expires_in": 3600,
                        "refresh_token": "rt-1", "tenant": {"id": "t-9"}}),
            )
        }
        "/oauth/v1/access-tokens/at-1" => {
            authplug_testkit::Response::json(200, &json!({"hub_id": 4711}))
        }
        _ => authplug_testkit::Response::json(400, &json!({"error": "invalid_request"})),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_onboarding_sets_the_tenant_the_oauth2_scheme_finds() {
    let fake = provider();
    let config = authplug_host::TransportConfig { allow_loopback_http: true, ..Default::default() };
    let transport =
        authplug_host::Transport::new(config, tokio::runtime::Handle::current()).unwrap();
    let block = |extra: Value| {
        let mut block = json!({"login_url": format!("{}/authorize", fake.url()),
                               "token_url": format!("{}/token", fake.url())});
        block.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"auth": "oauth2", "oauth2": block, "system-template": "templates/system.json",
               "additional_parameters": {"account_id": {}}})
    };
    let listed = block(json!({"tenant_id_expression": ["tenant", "id"]}));
    let dotted = block(json!({"tenant_id_expression": "{{ tenant.id }}"}));
    let metadata = block(json!({"tenant_id_expression": "hub_id",
        "identity_url": format!("{}/oauth/v1/access-tokens/", fake.url())}));
    let lab = Lab::with(
        HostServices::new(Arc::new(transport)),
        &[("listed", listed), ("dotted", dotted), ("metadata", metadata)],
    );
    let cases =
        [("listed", None, "t-9"), ("dotted", None, "t-9"), ("metadata", Some("999"), "4711")];
    for (connector, given, expected) in cases {
        let mut body = json!({"connector": connector,
                              "secrets": {"client_id": "c", "client_secret": "s"}});
        if let Some(given) = given {
            body["parameters"] = json!({"account_id": given});
        }
        let (status, answer) = lab.onboard(connector, body).await;
        assert_eq!((status, answer["step"].as_str()), (StatusCode::OK, Some("redirect")));
        let consent = url::Url::parse(answer["url"].as_str().unwrap()).unwrap();
        let state = consent.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
        let path = format!("/v1/onboarding/callback?state={state}&code=the-code");
        let (status, _, page) = lab.call(Method::GET, &path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let store = lab.state.engine.store();
        let record = store.get(connector).unwrap().expect("stored");
        assert_eq!(record.summary.parameters["account_id"], expected, "{connector}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_http_details_of_issue_16_item_15() {
    let lab = Lab::new();
    // `bearer` in any case is the same scheme.
    let request = |value: &str| {
        let request = Request::builder().uri("/v1/systems").header(header::AUTHORIZATION, value);
        request.body(Body::empty()).unwrap()
    };
    for value in [format!("bearer {ADMIN}"), format!("BEARER {ADMIN}")] {
        let response = lab.router().oneshot(request(&value)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{value}");
    }
    // A 403 does not name the token.
    let (_, _, body) = lab.call(Method::GET, "/v1/systems", Some(STRANGER), None).await;
    assert!(!body["message"].as_str().unwrap().contains("stranger"), "{body}");
    // A framework's rejection is JSON like every other error.
    let (status, headers, body) = lab.call(Method::GET, "/v1/systems/%FF", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{body}");
    assert_eq!(body["error"], "bad_request");
    // The consent callback's page has a policy.
    let (_, headers, body) =
        lab.call(Method::GET, "/v1/onboarding/callback?state=forged&code=x", None, None).await;
    let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.contains("default-src 'none'"), "{body}");
}
