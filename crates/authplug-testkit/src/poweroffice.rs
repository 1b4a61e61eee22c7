//! A fake PowerOffice Go, after `providers.md` and PowerOffice's API documentation:
//!
//! - `POST {base}/OAuth/Token`: the client credentials grant (`grant_type=client_credentials`),
//!   the client authenticated by HTTP Basic with the application key as user and the client key
//!   as password, and the API gateway's `Ocp-Apim-Subscription-Key` header. Answers
//!   `{"access_token", "token_type": "bearer", "expires_in": 1200}` (20-minute tokens). A wrong
//!   application or client key answers 400 `{"error": "invalid_client"}`; a missing or wrong
//!   subscription key answers the gateway's 401 before the token service sees the request.
//! - `GET {base}/v2/{resource}`: needs `Authorization: Bearer <token>` with a token it issued
//!   and that has not lapsed, and the subscription key; answers `[]`-shaped pages. 401 otherwise.
//!
//! `base` is the server's URL plus an optional path (PowerOffice's demo environment lives under
//! `/Demo`). It counts tokens issued and keeps the headers of the last API call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;

use crate::{FakeServer, Request, Response};

/// How long the fake's tokens live, in seconds (PowerOffice's: 20 minutes).
pub const TOKEN_SECS: i64 = 1200;

#[derive(Debug)]
pub struct PowerOffice {
    pub server: FakeServer,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    application_key: String,
    client_key: String,
    subscription_key: String,
    lifetime_secs: i64,
    /// token -> when it lapses
    tokens: BTreeMap<String, i64>,
    issued: usize,
    last_call: Vec<(String, String)>,
}

impl PowerOffice {
    /// A PowerOffice that knows one integration (`application_key`, `subscription_key`) installed
    /// by one customer (`client_key`).
    pub fn start(application_key: &str, client_key: &str, subscription_key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            application_key: application_key.into(),
            client_key: client_key.into(),
            subscription_key: subscription_key.into(),
            lifetime_secs: TOKEN_SECS,
            tokens: BTreeMap::new(),
            issued: 0,
            last_call: Vec::new(),
        }));
        let shared = state.clone();
        let server = FakeServer::start(move |request| handle(&shared, request));
        Self { server, state }
    }

    /// What the connector's `base_url` is for this fake.
    pub fn base_url(&self) -> String {
        self.server.url()
    }

    /// Issue tokens that live `secs` from now on (a test of renewal cannot wait 20 minutes).
    pub fn set_token_lifetime(&self, secs: i64) {
        self.state.lock().unwrap().lifetime_secs = secs;
    }

    /// The customer revokes the integration's client key (a new one was made).
    pub fn set_client_key(&self, client_key: &str) {
        self.state.lock().unwrap().client_key = client_key.into();
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.state.lock().unwrap().issued
    }

    /// The headers of the last accepted API call, names in lower case.
    pub fn last_call_headers(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().last_call.clone()
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The gateway's refusal (Azure API Management's words).
fn no_subscription() -> Response {
    Response::json(
        401,
        &json!({"statusCode": 401, "message": "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."}),
    )
}

fn handle(state: &Mutex<State>, request: &Request) -> Response {
    let mut state = state.lock().unwrap();
    if request.header("Ocp-Apim-Subscription-Key") != Some(state.subscription_key.as_str()) {
        return no_subscription();
    }
    let path = request.path.as_str();
    if request.method == "POST" && path.ends_with("/OAuth/Token") {
        let expected = STANDARD.encode(format!("{}:{}", state.application_key, state.client_key));
        if request.form("grant_type").as_deref() != Some("client_credentials") {
            return Response::json(400, &json!({"error": "unsupported_grant_type"}));
        }
        if request.header("Authorization") != Some(format!("Basic {expected}").as_str()) {
            return Response::json(400, &json!({"error": "invalid_client"}));
        }
        state.issued += 1;
        let token = format!("po-access-{}-{}", state.issued, now());
        let lifetime = state.lifetime_secs;
        state.tokens.insert(token.clone(), now() + lifetime);
        return Response::json(
            200,
            &json!({"access_token": token, "token_type": "bearer", "expires_in": lifetime}),
        );
    }
    if request.method == "GET" && path.contains("/v2/") {
        let bearer = request.header("Authorization").and_then(|v| v.strip_prefix("Bearer "));
        match bearer.and_then(|token| state.tokens.get(token)) {
            Some(lapses) if *lapses > now() => {
                state.last_call = request
                    .headers
                    .iter()
                    .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
                    .collect();
                return Response::json(200, &json!([]));
            }
            _ => return Response::json(401, &json!({"message": "Unauthorized"})),
        }
    }
    Response::json(404, &json!({"message": "Resource not found"}))
}
