//! A fake Tripletex token API, after `providers.md`: `PUT /v2/token/session/:create` with
//! `consumerToken`, `employeeToken` and `expirationDate` (after today) in the query, no
//! authentication; answers `{"value": {"token", "expirationDate"}}`, or a 4xx JSON error for bad
//! tokens. `GET /v2/token/session/>whoAmI` checks a session given as HTTP Basic `0:<token>`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::json;

use crate::{FakeServer, Request, Response};

/// How the fake behaves; change it while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// Every request answers 503.
    Unavailable,
}

/// The fake and its state.
#[derive(Debug)]
pub struct Tripletex {
    pub server: FakeServer,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    consumer: String,
    employee: String,
    mode: Mode,
    /// session token -> expiration date
    sessions: BTreeMap<String, String>,
    created: usize,
}

impl Tripletex {
    /// A fake that accepts exactly this consumer and employee token.
    pub fn start(consumer: &str, employee: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            consumer: consumer.into(),
            employee: employee.into(),
            mode: Mode::Normal,
            sessions: BTreeMap::new(),
            created: 0,
        }));
        let shared = state.clone();
        let server = FakeServer::start(move |request| handle(&shared, request));
        Self { server, state }
    }

    pub fn base_url(&self) -> String {
        self.server.url()
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    /// Expires every session (as midnight of its date would).
    pub fn expire_sessions(&self) {
        self.state.lock().unwrap().sessions.clear();
    }

    /// Sessions created so far.
    pub fn sessions_created(&self) -> usize {
        self.state.lock().unwrap().created
    }
}

fn handle(state: &Mutex<State>, request: &Request) -> Response {
    let mut state = state.lock().unwrap();
    if state.mode == Mode::Unavailable {
        return Response::text(503, "<html>Service Unavailable</html>");
    }
    match (request.method.as_str(), request.path.as_str()) {
        ("PUT", "/v2/token/session/:create") => {
            let (Some(consumer), Some(employee), Some(date)) = (
                request.param("consumerToken"),
                request.param("employeeToken"),
                request.param("expirationDate"),
            ) else {
                return error(400, "Validation failed: consumerToken, employeeToken and expirationDate are required");
            };
            if date.len() != 10 || date.as_bytes()[4] != b'-' {
                return error(422, "expirationDate must be YYYY-MM-DD and after today");
            }
            if consumer != state.consumer || employee != state.employee {
                return error(403, "Invalid consumer or employee token");
            }
            state.created += 1;
            let token = format!("eyJ0b2tlbklkIjo{}{}", state.created, "sessiontoken");
            state.sessions.insert(token.clone(), date.to_owned());
            Response::json(
                200,
                &json!({"value": {"id": state.created, "version": 1, "token": token, "expirationDate": date}}),
            )
        }
        // Clients send `>` percent-encoded.
        ("GET", "/v2/token/session/>whoAmI" | "/v2/token/session/%3EwhoAmI") => {
            let session = request
                .header("authorization")
                .and_then(|h| h.strip_prefix("Basic "))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|t| t.split_once(':').map(|(_, p)| p.to_owned()));
            match session {
                Some(token) if state.sessions.contains_key(&token) => {
                    Response::json(200, &json!({"value": {"employeeId": 1, "companyId": 1}}))
                }
                _ => error(401, "Unauthorized: the session token is invalid or expired"),
            }
        }
        _ => error(404, "Not found"),
    }
}

fn error(status: u16, message: &str) -> Response {
    Response::json(
        status,
        &json!({"status": status, "code": 9000 + status, "message": message, "developerMessage": null, "validationMessages": []}),
    )
}
