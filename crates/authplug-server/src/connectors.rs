//! The connectors users may onboard (`--connectors`): read from a folder of connector folders,
//! and listed with the inputs each onboarding wants.

use std::collections::BTreeMap;
use std::sync::Arc;

use authplug_connector::Connector;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use crate::access::permitted;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// The connector folders under `dir` (each with a manifest.json), by folder name.
pub fn load_connectors(dir: &std::path::Path) -> Result<BTreeMap<String, Connector>, String> {
    let mut connectors = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.join("manifest.json").is_file() {
            let connector = Connector::load(&path).map_err(|e| e.to_string())?;
            connectors.insert(connector.name(), connector);
        }
    }
    Ok(connectors)
}

/// `GET /v1/connectors`: each connector with the inputs its onboarding wants (the scheme's
/// user secrets, then the connector's own). What the web page builds its form from; no value,
/// only names and descriptions.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    permitted(&state, &headers, Caller::is_admin, || "list connectors".to_owned())?;
    let onboarder = state.onboarder();
    let listed: Vec<Value> = state
        .connectors()
        .iter()
        .map(|(name, connector)| {
            let manifest = &connector.manifest;
            let scheme = onboarder.scheme_for(connector).ok();
            let wanted = match scheme {
                Some(scheme) => manifest.onboarding_inputs(scheme.descriptor()),
                None => manifest.connector_secrets(),
            };
            let inputs: Vec<Value> = wanted
                .into_iter()
                .map(|input| {
                    json!({
                        "name": input.name,
                        "description": input.description,
                        "secret": input.secret,
                        "optional": input.optional,
                        "generated": input.generated,
                    })
                })
                .collect();
            json!({
                "name": name,
                "display_name": manifest.system.clone().unwrap_or_else(|| name.clone()),
                "auth": manifest.auth,
                "auth_variant": manifest.auth_variant,
                "scheme": scheme.map(|s| s.id()),
                "inputs": inputs,
            })
        })
        .collect();
    Ok(Json(json!({"connectors": listed})))
}
