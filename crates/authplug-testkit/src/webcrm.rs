//! A fake webCRM login, after `providers.md`: `POST /Auth/ApiLogin` with the application token in
//! a header named `authCode` (or as a form field) answers `{"AccessToken", "RefreshToken",
//! "ExpiresIn": 3600, "TokenType": "Bearer", "IsError", "Error", "ErrorDescription", "SystemId"}`.
//! The access token is a JWT whose `exp` says when it lapses. A generic JWT provider answering the
//! standard OAuth names can be imitated too.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

use crate::{FakeServer, Request, Response};

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// Answer `access_token` / `refresh_token` / `expires_in` instead of webCRM's names.
    StandardNames,
    /// Issue tokens that expired already (as an old login's would be).
    Expired,
    /// Every request answers 503.
    Unavailable,
}

#[derive(Debug)]
pub struct WebCrm {
    pub server: FakeServer,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    application_token: String,
    mode: Mode,
    logins: usize,
}

impl WebCrm {
    pub fn start(application_token: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            application_token: application_token.into(),
            mode: Mode::Normal,
            logins: 0,
        }));
        let shared = state.clone();
        let server = FakeServer::start(move |request| handle(&shared, request));
        Self { server, state }
    }

    pub fn login_url(&self) -> String {
        format!("{}/Auth/ApiLogin", self.server.url())
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn logins(&self) -> usize {
        self.state.lock().unwrap().logins
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// An (unsigned-for-our-purposes) JWT with the given `exp`.
pub fn jwt(exp: i64, n: usize) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD
        .encode(json!({"exp": exp, "iat": exp - 3600, "SystemId": 4242, "jti": n}).to_string());
    let signature = URL_SAFE_NO_PAD.encode(format!("signature-{n}"));
    format!("{header}.{claims}.{signature}")
}

fn handle(state: &Mutex<State>, request: &Request) -> Response {
    let mut state = state.lock().unwrap();
    if state.mode == Mode::Unavailable {
        return Response::text(503, "Service Unavailable");
    }
    if (request.method.as_str(), request.path.as_str()) != ("POST", "/Auth/ApiLogin") {
        return Response::json(404, &json!({"IsError": true, "Error": "not_found"}));
    }
    let given = request.header("authCode").map(str::to_owned).or_else(|| request.form("authCode"));
    if given.as_deref() != Some(state.application_token.as_str()) {
        return Response::json(
            401,
            &json!({
                "AccessToken": null, "RefreshToken": null, "ExpiresIn": 0, "TokenType": null,
                "IsError": true, "Error": "invalid_client", "ErrorDescription": "Invalid authentication code", "SystemId": 0,
            }),
        );
    }
    state.logins += 1;
    let exp = if state.mode == Mode::Expired { now() - 60 } else { now() + 3600 };
    let access = jwt(exp, state.logins);
    let refresh = format!("webcrm-refresh-{}", state.logins);
    let body = if state.mode == Mode::StandardNames {
        json!({"access_token": access, "refresh_token": refresh, "expires_in": 3600, "token_type": "Bearer"})
    } else {
        json!({"AccessToken": access, "RefreshToken": refresh, "ExpiresIn": 3600, "TokenType": "Bearer",
               "IsError": false, "Error": null, "ErrorDescription": null, "SystemId": 4242})
    };
    Response::json(200, &body)
}
