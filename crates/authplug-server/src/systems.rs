//! `/v1/systems`: the systems (metadata, the engine's reading of their lifecycle), one system's
//! secrets for workers whose token allows them, and `authorize` for those that may only see one
//! request's headers. Every secret read is audited.

use std::collections::BTreeMap;
use std::sync::Arc;

use authplug_engine::{Revocation, SystemStatus};
use authplug_protocol::Source;
use authplug_store::{Cursor, Filter, State as StoredState, SystemSummary, MAX_PAGE};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::access::permitted;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::front::SystemId;
use crate::AppState;

fn summary_json(summary: &SystemSummary) -> Value {
    json!({
        "id": summary.id,
        "scheme": summary.scheme,
        "connector": summary
            .parameters
            .get(authplug_connector::CONNECTOR_PARAMETER)
            .and_then(|c| c.get("name")),
        "state": summary.state.as_str(),
        "state_reason": summary.state_reason,
        "expires_at": summary.expires_at,
        "last_refresh_at": summary.last_refresh_at,
        "failures": summary.failures,
        "version": summary.version,
        "secret_names": summary.secret_names,
    })
}

/// A listed system: its summary, and what the lease and the journal say (as `authplug status`).
fn status_json(status: &SystemStatus) -> Value {
    let mut value = summary_json(&status.summary);
    value["refreshing"] = status.refreshing.into();
    value["next_attempt_at_ms"] = status.next_attempt_at_ms.into();
    value["interrupted_in_flight"] = status.interrupted_in_flight.into();
    value
}

/// The default page of `GET /v1/systems`.
const DEFAULT_PAGE: usize = 100;

/// `GET /v1/systems`'s query: a page size, where to go on from, and filters. Values are taken
/// as text and checked here, so that a bad one gets a message naming it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    state: Option<String>,
    scheme: Option<String>,
    connector: Option<String>,
}

impl ListQuery {
    fn parse(self) -> Result<(Filter, Option<Cursor>, usize), ApiError> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_PAGE,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "limit must be a whole number from 1 to {MAX_PAGE}, not {text:?}"
                    )))
                }
            },
        };
        let cursor = self.cursor.as_deref().map(Cursor::decode).transpose()?;
        let state = match self.state.as_deref() {
            None => None,
            Some("active") => Some(StoredState::Active),
            Some("needs_reauth") => Some(StoredState::NeedsReauth),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "state must be active or needs_reauth, not {other:?}"
                )))
            }
        };
        Ok((Filter { state, scheme: self.scheme, connector: self.connector }, cursor, limit))
    }
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    permitted(&state, &headers, Caller::is_admin, || "list systems".to_owned())?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (filter, cursor, limit) = query.parse()?;
    let (systems, next) = state.engine.status_page(filter, cursor, limit).await?;
    Ok(Json(json!({
        "systems": systems.iter().map(status_json).collect::<Vec<_>>(),
        "next_cursor": next.map(|c| c.encode()),
    })))
}

pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    SystemId(id): SystemId,
) -> Result<Json<Value>, ApiError> {
    permitted(&state, &headers, |c| c.may_see(&id), || format!("see system {id}"))?;
    let found = id.clone();
    let summary = state
        .with_store(move |store| store.get(&found).map(|r| r.map(|r| r.summary)))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no system {id}")))?;
    Ok(Json(summary_json(&summary)))
}

/// `DELETE /v1/systems/{id}`'s options: `revoke=true` revokes the tokens at the provider first
/// (and keeps the system if that fails), `force=true` deletes even then.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteQuery {
    #[serde(default)]
    revoke: bool,
    #[serde(default)]
    force: bool,
}

pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    SystemId(id): SystemId,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let caller = permitted(&state, &headers, Caller::is_admin, || "delete systems".to_owned())?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if query.force && !query.revoke {
        return Err(ApiError::bad_request("force=true only goes with revoke=true"));
    }
    let actor = format!("api:{}", caller.name);
    let revocation = match (query.revoke, query.force) {
        (false, _) => Revocation::Skip,
        (true, false) => Revocation::Revoke,
        (true, true) => Revocation::RevokeOrForce,
    };
    let deleted = state.engine.delete(&id, &actor, revocation).await?;
    if revocation == Revocation::Skip {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(json!({"deleted": id, "revoked": deleted.revoked, "notes": deleted.notes}))
        .into_response())
}

/// `POST /v1/systems/{id}/verify`: the verification request sent with the system's credentials
/// applied; the outcome (verified, refused, failed, unreachable, undeclared) is the answer's,
/// with 200, since the verification itself ran. Nothing stored changes.
pub(crate) async fn verify(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    SystemId(id): SystemId,
) -> Result<Json<authplug_onboard::Verification>, ApiError> {
    let caller = permitted(&state, &headers, |c| c.may_see(&id), || format!("verify {id}"))?;
    let actor = format!("api:{}", caller.name);
    Ok(Json(authplug_onboard::verify(&state.engine, &id, &actor).await?))
}

/// Secrets that outlive an access token: refresh tokens, and copies of the user's confidential
/// inputs (client secrets, API keys, consumer tokens). Only `long-lived:` scopes read them; a
/// worker that needs them for a call asks `authorize` instead.
fn long_lived(state: &AppState, scheme: &str, name: &str) -> bool {
    if name.contains("refresh_token") {
        return true;
    }
    state.engine.registry().get(scheme).is_some_and(|s| {
        let descriptor = s.descriptor();
        descriptor.injected.iter().any(|i| {
            i.name == name
                && matches!(&i.source, Source::Copied { from }
                    if descriptor.required.iter().any(|r| r.name == *from && r.secret))
        })
    })
}

pub(crate) async fn secrets(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    SystemId(id): SystemId,
) -> Result<Json<Value>, ApiError> {
    let caller =
        permitted(&state, &headers, |c| c.may_read(&id), || format!("read the secrets of {id}"))?;
    let token = state.engine.token(&id).await?;
    let full = caller.may_read_long_lived(&id);
    let mut given: BTreeMap<&str, &str> = BTreeMap::new();
    let mut withheld = Vec::new();
    for (name, value) in &token.injected {
        if full || !long_lived(&state, &token.scheme, name) {
            given.insert(name, value.expose());
        } else {
            withheld.push(name.as_str());
        }
    }
    // Every secret read is audited: who, which names.
    let (system, actor) = (id.clone(), format!("api:{}", caller.name));
    let names: Vec<String> = given.keys().map(|n| n.to_string()).collect();
    state
        .with_store(move |store| {
            store.record_event(&system, &actor, "secrets_read", json!({"secrets": names}))
        })
        .await?;
    Ok(Json(json!({
        "system": id,
        "scheme": token.scheme,
        "expires_at": token.expires_at,
        "refreshed": token.refreshed,
        "secrets": given,
        "withheld": withheld,
    })))
}

pub(crate) async fn authorize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    SystemId(id): SystemId,
) -> Result<Response, ApiError> {
    let caller = permitted(
        &state,
        &headers,
        |c| c.may_authorize(&id),
        || format!("authorize requests of {id}"),
    )?;
    let authorization = match state.engine.authorize(&id).await {
        Ok(authorization) => authorization,
        Err(error) => {
            state.authorize_audit.count(&caller.name, &id, false);
            return Err(error.into());
        }
    };
    // What apply adds is the long-lived secret itself unless the scheme says otherwise: then
    // only a token that may read long-lived secrets receives it.
    let scheme = &authorization.scheme;
    let output = state.engine.registry().get(scheme).map(|s| s.descriptor().apply_output);
    if !output.is_some_and(|o| o.is_short_lived()) && !caller.may_read_long_lived(&id) {
        state.authorize_audit.count(&caller.name, &id, false);
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "long_lived",
            format!(
                "the {scheme} scheme's request credentials are its long-lived secret (an API key, a password), not a short-lived token: authorize for {id} needs a token with long-lived:{id} as well"
            ),
        ));
    }
    state.authorize_audit.count(&caller.name, &id, true);
    // Made once per answer: one reused from memory is not serialised again.
    let body = authorization.rendered.get_or_init(|| {
        let answer = Authorized {
            system: &authorization.system,
            expires_at: authorization.expires_at,
            headers: Pairs(&authorization.applied.headers),
            query: Pairs(&authorization.applied.query),
        };
        serde_json::to_vec(&answer).expect("the answer serialises").into_boxed_slice()
    });
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    Ok((json, body.to_vec()).into_response())
}

/// `authorize`'s answer, written straight from the authorization (no JSON tree built first:
/// with reuse off, every call renders one).
#[derive(serde::Serialize)]
struct Authorized<'a> {
    system: &'a str,
    expires_at: Option<i64>,
    headers: Pairs<'a>,
    query: Pairs<'a>,
}

/// Name and value pairs, as `[["name", "value"], ...]`.
struct Pairs<'a>(&'a [(String, authplug_protocol::Secret)]);

impl serde::Serialize for Pairs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(name, value)| (name, value.expose())))
    }
}
