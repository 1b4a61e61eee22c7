//! `authplug push SYSTEM --node URL`: the system's injected secrets to the integration node's
//! secrets API, and its environment variables merged into the node's, as the classic tool did
//! (see `shared/spec/sesam-connectors.md`). Secrets are refreshed first if they are due.

use std::collections::BTreeMap;

use authplug_protocol::Secret;
use clap::Args;
use serde_json::{json, Value};

use crate::context::{Context, EngineOptions};
use crate::exit::{Code, Failure};
use crate::output::print_json;

/// Parameters that go to the node as environment variables (the classic tool's set).
const ENV_PARAMETERS: &[&str] = &["token_url", "base_url", "account_id", "service_url"];

#[derive(Args)]
pub struct PushArgs {
    /// The stored system.
    pub system: String,

    /// The node's base URL (https://, or http:// to this machine).
    #[arg(long, value_name = "URL", env = "AUTHPLUG_NODE_URL")]
    pub node: String,

    /// The node's JWT. Prefer AUTHPLUG_NODE_JWT: arguments are visible to other users.
    #[arg(long, value_name = "TOKEN")]
    pub jwt: Option<String>,

    /// Show the names that would be pushed, send nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Replace the system's secrets on the node (PUT) instead of adding to them (POST).
    #[arg(long)]
    pub replace: bool,
}

/// Never prints the node's token.
impl std::fmt::Debug for PushArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushArgs")
            .field("system", &self.system)
            .field("node", &self.node)
            .field("node_jwt", &self.jwt.as_ref().map(|_| "********"))
            .field("dry_run", &self.dry_run)
            .field("replace", &self.replace)
            .finish()
    }
}

pub fn run(ctx: &Context<'_>, args: &PushArgs) -> Result<(), Failure> {
    let node = args.node.trim_end_matches('/').to_owned();
    check_node_url(&node)?;
    let jwt = match (&args.jwt, std::env::var("AUTHPLUG_NODE_JWT")) {
        (Some(jwt), _) => Some(jwt.clone()),
        (None, Ok(jwt)) if !jwt.is_empty() => Some(jwt),
        _ => None,
    };
    if jwt.is_none() && !args.dry_run {
        return Err(Failure::new(
            Code::BadInput,
            "the node's token is missing: set AUTHPLUG_NODE_JWT (or give --jwt)",
        ));
    }
    let system = args.system.clone();
    let timeout = std::time::Duration::from_secs(ctx.cli.engine.http_timeout.max(1));
    ctx.with_engine(EngineOptions::default(), async move |engine| {
        let token = engine.token(&system).await?;
        let record = engine
            .store()
            .get(&system)?
            .ok_or_else(|| Failure::new(Code::NotFound, format!("no system `{system}`")))?;
        // The scheme's secrets, then the user's own that the connector reads.
        let mut secrets: BTreeMap<String, Secret> = token.injected.clone();
        let extras = authplug_connector::stored_extras(&token.parameters);
        for (name, value) in &record.required {
            if extras.contains(name) {
                secrets.insert(name.clone(), value.clone());
            }
        }
        let env: BTreeMap<String, String> = ENV_PARAMETERS
            .iter()
            .filter_map(|key| {
                let value = token.parameters.get(*key)?;
                Some((
                    key.to_string(),
                    value.as_str().map_or_else(|| value.to_string(), str::to_owned),
                ))
            })
            .collect();
        let names: Vec<&String> = secrets.keys().collect();
        let env_names: Vec<&String> = env.keys().collect();
        let secrets_url = format!("{node}/api/systems/{system}/secrets");
        let method = if args.replace { "PUT" } else { "POST" };
        if args.dry_run {
            println!("would {method} {secrets_url}: {}", join(&names));
            println!("would merge into {node}/api/env: {}", join(&env_names));
            return Ok(());
        }
        let jwt = jwt.expect("checked above");
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Failure::new(Code::Failure, format!("no HTTP client: {e}")))?;

        let body: BTreeMap<&str, &str> =
            secrets.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        let request =
            if args.replace { client.put(&secrets_url) } else { client.post(&secrets_url) };
        send(with_json(request.bearer_auth(&jwt), &body), &secrets_url).await?;
        eprintln!("pushed {} secret(s) to {secrets_url}: {}", names.len(), join(&names));

        if !env.is_empty() {
            let env_url = format!("{node}/api/env");
            let current = send(client.get(&env_url).bearer_auth(&jwt), &env_url).await?;
            let mut merged: serde_json::Map<String, Value> = serde_json::from_slice::<Value>(&current)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .ok_or_else(|| Failure::new(Code::Failure, format!("GET {env_url}: the node did not answer a JSON object; the environment was left alone")))?;
            let mut changed = Vec::new();
            for (key, value) in &env {
                if merged.get(key).and_then(Value::as_str) != Some(value.as_str()) {
                    merged.insert(key.clone(), Value::from(value.clone()));
                    changed.push(key.clone());
                }
            }
            if changed.is_empty() {
                eprintln!("the node's environment already holds {}", join(&env_names));
            } else {
                send(with_json(client.put(&env_url).bearer_auth(&jwt), &merged), &env_url).await?;
                eprintln!(
                    "set {} in the node's environment (kept the other {})",
                    changed.join(", "),
                    merged.len() - changed.len()
                );
            }
        }
        if ctx.json() {
            print_json(
                &json!({"system": system, "node": node, "secrets": names, "env": env_names}),
            )?;
        }
        Ok(())
    })
}

fn join(names: &[&String]) -> String {
    if names.is_empty() {
        "nothing".into()
    } else {
        names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
    }
}

fn with_json(
    request: reqwest::RequestBuilder,
    body: &impl serde::Serialize,
) -> reqwest::RequestBuilder {
    let body = serde_json::to_vec(body).expect("names and strings serialise");
    request.header("content-type", "application/json").body(body)
}

/// Tokens and secrets go over TLS, except to this machine.
fn check_node_url(node: &str) -> Result<(), Failure> {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|prefix| {
        node.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
    });
    if node.starts_with("https://") || loopback {
        Ok(())
    } else {
        Err(Failure::new(
            Code::BadInput,
            format!("--node {node}: use an https:// address (plain http only to this machine)"),
        ))
    }
}

/// Sends, and turns an unsuccessful answer into one clear line (never the body, which may echo
/// what was sent).
async fn send(request: reqwest::RequestBuilder, url: &str) -> Result<Vec<u8>, Failure> {
    let response = request.send().await.map_err(|e| {
        Failure::new(
            Code::Failure,
            format!("{url}: the node cannot be reached ({})", e.without_url()),
        )
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response.bytes().await.map(|b| b.to_vec()).unwrap_or_default());
    }
    let (code, what) = match status.as_u16() {
        401 | 403 => (Code::BadInput, "refused the node token (check AUTHPLUG_NODE_JWT)"),
        404 => (Code::NotFound, "does not know this address (is the system on the node?)"),
        _ => (Code::Failure, "failed"),
    };
    Err(Failure::new(
        code,
        format!("{url}: the node {what}: HTTP {status}; nothing further was sent"),
    ))
}
