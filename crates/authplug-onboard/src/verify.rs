//! Verification: does a stored credential work? One cheap request (what n8n calls a credential
//! test), declared by the system's connector (`"verify"` in its manifest) or else by its scheme
//! (`SchemeDescriptor::verify`), sent with the credentials the scheme's `apply` gives, through
//! the host's transport (its SSRF guard, timeouts and size cap), and judged by the status alone:
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx | `verified` |
//! | 401, 403 | `refused`: the provider does not take the credential |
//! | anything else (3xx, 404, 429, 5xx) | `failed`: the request says nothing of the credential |
//! | no answer | `unreachable` |
//!
//! Verifying changes nothing of its own: a refused verification does not mark the system for
//! re-authorisation (a wrong URL in a manifest must not lock a customer out); the refresh
//! lifecycle alone does that. The credentials come from `Engine::authorize`, so one that is due
//! is refreshed first, as for any request: what is verified is what a connector would be given.
//! Each verification is one `verified` line in the audit trail. The answer's body is never read
//! into the report: it may be the customer's data.
//!
//! A connector's request goes only to the scheme, host and port of its system template's
//! `url_pattern` (`authplug_connector::verify_url`); a scheme's is the plugin's own, to its
//! provider. Either is sent only with a safe method (GET or HEAD).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use authplug_connector::{parameter_text, verify_url, Connector, CONNECTOR_PARAMETER};
use authplug_engine::{Engine, EngineError};
use authplug_protocol::{HttpRequest, Unfilled, VerifyRequest};
use serde::Serialize;
use serde_json::{json, Value};

/// Who declared the verification request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeclaredBy {
    Connector,
    Scheme,
}

/// What the verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// 2xx: the credential works.
    Verified,
    /// 401 or 403: the provider does not take the credential.
    Refused,
    /// Another status: the request tells nothing of the credential (a wrong URL, an outage).
    Failed,
    /// No answer: the provider could not be reached (or the transport refused the URL).
    Unreachable,
    /// Neither the connector nor the scheme declares a request this system can send.
    Undeclared,
}

impl Verdict {
    /// Whether the credential is known to be bad or unknown: everything but verified and
    /// undeclared.
    pub fn is_failure(self) -> bool {
        !matches!(self, Verdict::Verified | Verdict::Undeclared)
    }
}

/// One verification's report: no secret in it (the URL is the declared one, before `apply`
/// adds query parameters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub system: String,
    pub outcome: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_by: Option<DeclaredBy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// One line for a human.
    pub detail: String,
}

/// Why a verification could not be attempted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No such system, or its credentials cannot be used (needs re-authorisation, ...).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The connector or the scheme declares a request this system cannot send (a parameter it
    /// lacks, a template without `url_pattern`, a URL elsewhere, the connector's folder gone).
    /// `by` is `connector NAME` or `scheme ID`.
    #[error("system {system}: {by}: {reason}")]
    Declaration { system: String, by: String, reason: String },
}

/// The request to send: who declared it, its method and URL (as declared and filled, and
/// parsed).
struct Target {
    by: DeclaredBy,
    method: String,
    url: String,
    parsed: url::Url,
}

/// Verifies the stored system `id`; `actor` is named in the audit trail.
pub async fn verify(
    engine: &Arc<Engine>,
    id: &str,
    actor: &str,
) -> Result<Verification, VerifyError> {
    // The store and the connector's folder are read on a blocking thread.
    let (reader, system) = (engine.clone(), id.to_owned());
    let target = tokio::task::spawn_blocking(move || {
        let summary = reader
            .store()
            .get(&system)
            .map_err(EngineError::from)?
            .ok_or_else(|| EngineError::NotFound(system.clone()))?
            .summary;
        let scheme = reader.registry().get(&summary.scheme).map(|s| s.descriptor().clone());
        let declared = scheme.as_ref().and_then(|s| s.verify.as_ref());
        target(&system, &summary.scheme, &summary.parameters, declared)
    })
    .await
    .map_err(|_| EngineError::Aborted { what: "a verify thread" })??;
    let target = match target {
        Ok(target) => target,
        Err(detail) => {
            let report = undeclared(id, detail);
            record(engine, id, actor, &report).await?;
            return Ok(report);
        }
    };
    let authorization = engine.authorize(id).await?;
    let applied = &authorization.applied;
    let mut url = target.parsed.clone();
    for (name, value) in &applied.query {
        url.query_pairs_mut().append_pair(name, value.expose());
    }
    let request = HttpRequest {
        method: target.method.clone(),
        url: url.into(),
        headers: applied.headers.iter().map(|(k, v)| (k.clone(), v.expose().to_owned())).collect(),
        body: Vec::new(),
    };
    let started = Instant::now();
    let sender = engine.clone();
    let answer = tokio::task::spawn_blocking(move || sender.services().http(request))
        .await
        .map_err(|_| EngineError::Aborted { what: "a verify thread" })?;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (outcome, status, detail) = match answer {
        Ok(response) => {
            let status = response.status;
            let (outcome, detail) = judge(status);
            (outcome, Some(status), detail)
        }
        // The transport's message names the method and host only.
        Err(error) => (Verdict::Unreachable, None, error.message),
    };
    let report = Verification {
        system: id.to_owned(),
        outcome,
        declared_by: Some(target.by),
        method: Some(target.method),
        url: Some(target.url),
        status,
        elapsed_ms: Some(elapsed_ms),
        detail,
    };
    record(engine, id, actor, &report).await?;
    Ok(report)
}

/// What a status says of the credential.
fn judge(status: u16) -> (Verdict, String) {
    match status {
        200..=299 => (
            Verdict::Verified,
            format!("the provider answered HTTP {status}: the credential works"),
        ),
        401 | 403 => (
            Verdict::Refused,
            format!("the provider answered HTTP {status}: it does not take the credential"),
        ),
        _ => (
            Verdict::Failed,
            format!(
                "the provider answered HTTP {status}, which says nothing of the credential (a \
                 wrong verify URL, or an outage)"
            ),
        ),
    }
}

fn undeclared(id: &str, detail: String) -> Verification {
    Verification {
        system: id.to_owned(),
        outcome: Verdict::Undeclared,
        declared_by: None,
        method: None,
        url: None,
        status: None,
        elapsed_ms: None,
        detail,
    }
}

fn declaration(id: &str, parameters: &BTreeMap<String, Value>, reason: String) -> VerifyError {
    let connector = parameters.get(CONNECTOR_PARAMETER).and_then(|c| c.get("name"));
    let connector = connector.and_then(Value::as_str).unwrap_or("?");
    VerifyError::Declaration { system: id.to_owned(), by: format!("connector {connector}"), reason }
}

/// `url` parsed, or the declaration error naming who declared it.
fn parsed(url: &str, by: impl FnOnce(String) -> VerifyError) -> Result<url::Url, VerifyError> {
    url::Url::parse(url).map_err(|e| by(format!("verify.url {url:?} is not a URL ({e})")))
}

/// The connector's request if it declares one, else the scheme's; `Ok(Err(detail))` when there
/// is none this system can send (the scheme's needs a parameter the system lacks: not an error).
fn target(
    id: &str,
    scheme_id: &str,
    parameters: &BTreeMap<String, Value>,
    scheme: Option<&VerifyRequest>,
) -> Result<Result<Target, String>, VerifyError> {
    let dir =
        parameters.get(CONNECTOR_PARAMETER).and_then(|c| c.get("dir")).and_then(Value::as_str);
    if let Some(dir) = dir {
        // The reason names no path: this may go to an API caller.
        let connector = Connector::load(std::path::Path::new(dir)).map_err(|_| {
            let reason = "its folder cannot be read (`authplug check` on it says why)";
            declaration(id, parameters, reason.into())
        })?;
        if let Some(request) = &connector.manifest.verify {
            let url = verify_url(&connector, request, id, parameters)
                .map_err(|reason| declaration(id, parameters, reason))?;
            let parsed = parsed(&url, |reason| declaration(id, parameters, reason))?;
            let method = request.method.clone();
            return Ok(Ok(Target { by: DeclaredBy::Connector, method, url, parsed }));
        }
    }
    let Some(request) = scheme else {
        return Ok(Err(
            "neither the connector nor the scheme declares a verification request".into()
        ));
    };
    let by_scheme = |reason| VerifyError::Declaration {
        system: id.to_owned(),
        by: format!("scheme {scheme_id}"),
        reason,
    };
    if !request.is_safe() {
        // The host refuses such a descriptor at load; a plugin file cannot get past that.
        return Err(by_scheme(format!("verify.method {:?} is not GET or HEAD", request.method)));
    }
    Ok(match request.fill(|name| parameter_text(parameters, name)) {
        Ok(url) => {
            let parsed = parsed(&url, by_scheme)?;
            Ok(Target { by: DeclaredBy::Scheme, method: request.method.clone(), url, parsed })
        }
        Err(Unfilled::Missing(name)) => {
            Err(format!("the scheme verifies at {}, and this system has no {name}", request.url))
        }
        Err(Unfilled::Malformed(why)) => {
            Err(format!("the scheme's verification request is malformed: {why}"))
        }
    })
}

/// The audit line: the outcome and where, never a value.
async fn record(
    engine: &Arc<Engine>,
    id: &str,
    actor: &str,
    report: &Verification,
) -> Result<(), EngineError> {
    let host = report
        .url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned));
    let details = json!({
        "outcome": report.outcome,
        "declared_by": report.declared_by,
        "method": report.method,
        "host": host,
        "status": report.status,
    });
    let (store, system, actor) = (engine.clone(), id.to_owned(), actor.to_owned());
    tokio::task::spawn_blocking(move || {
        store.store().record_event(&system, &actor, "verified", details)
    })
    .await
    .map_err(|_| EngineError::Aborted { what: "a verify thread" })?
    .map_err(EngineError::from)
}
