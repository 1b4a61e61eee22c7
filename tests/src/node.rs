//! A fake integration node: the secrets and environment API of `shared/spec/sesam-connectors.md`
//! (PUT replaces a system's secrets, POST adds or overwrites, GET lists names only; the
//! environment is read and replaced whole), behind a bearer token, on a loopback port.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use authplug_testkit::{FakeServer, Response};
use serde_json::{json, Value};

#[derive(Debug, Default)]
pub struct NodeState {
    /// system id -> secret name -> value.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    pub env: BTreeMap<String, String>,
    /// `METHOD path` of every request that passed the token check.
    pub requests: Vec<String>,
    /// Answer every request with this status instead (401, 500, ...).
    pub failing: Option<u16>,
}

#[derive(Debug)]
pub struct FakeNode {
    pub state: Arc<Mutex<NodeState>>,
    server: FakeServer,
}

impl FakeNode {
    pub fn start(jwt: &str, env: &[(&str, &str)]) -> Self {
        let state = Arc::new(Mutex::new(NodeState {
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..NodeState::default()
        }));
        let (shared, expected) = (state.clone(), format!("Bearer {jwt}"));
        let server = FakeServer::start(move |request| {
            let mut state = shared.lock().unwrap();
            if let Some(status) = state.failing {
                return Response::json(status, &json!({"error": "failing on purpose"}));
            }
            if request.header("authorization") != Some(expected.as_str()) {
                return Response::json(401, &json!({"error": "bad token"}));
            }
            state.requests.push(format!("{} {}", request.method, request.path));
            let body = || serde_json::from_slice::<BTreeMap<String, String>>(&request.body);
            let parts: Vec<&str> = request.path.trim_matches('/').split('/').collect();
            match (request.method.as_str(), parts.as_slice()) {
                ("GET", ["api", "env"]) => Response::json(200, &json!(state.env)),
                ("PUT", ["api", "env"]) => match body() {
                    Ok(env) => {
                        state.env = env;
                        Response::json(200, &json!({}))
                    }
                    Err(_) => Response::json(400, &json!({"error": "not an object of strings"})),
                },
                (method, ["api", "systems", system, "secrets"]) => {
                    let stored = state.secrets.entry(system.to_string()).or_default();
                    match method {
                        "GET" => Response::json(200, &json!(stored.keys().collect::<Vec<_>>())),
                        "PUT" | "POST" => match body() {
                            Ok(given) => {
                                if method == "PUT" {
                                    stored.clear();
                                }
                                stored.extend(given);
                                Response::json(200, &json!({}))
                            }
                            Err(_) => {
                                Response::json(400, &json!({"error": "not an object of strings"}))
                            }
                        },
                        _ => Response::json(405, &Value::Null),
                    }
                }
                _ => Response::json(404, &Value::Null),
            }
        });
        Self { state, server }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn secrets_of(&self, system: &str) -> BTreeMap<String, String> {
        self.state.lock().unwrap().secrets.get(system).cloned().unwrap_or_default()
    }
}
