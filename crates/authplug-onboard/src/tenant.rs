//! The tenant an onboarding lands in, by the manifest's `oauth2.tenant_id_expression`: read
//! from the answer of its `identity_url` (called with the new access token), or else from the
//! access token's claims. What it finds goes into `account_id`.

use std::collections::BTreeMap;

use authplug_connector::Connector;
use authplug_host::HostServices;
use authplug_protocol::{HttpRequest, Secret};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::OnboardError;

/// Where the tenant is read from, as the manifest says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TenantRule {
    expression: String,
    identity_url: Option<String>,
}

impl TenantRule {
    /// The connector's rule, if it has one.
    pub(crate) fn of(connector: &Connector) -> Option<Self> {
        let text = |path: &str| connector.field(path).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            expression: text("oauth2.tenant_id_expression")?,
            identity_url: text("oauth2.identity_url"),
        })
    }

    /// The tenant for the `injected` secrets, and notes for the operator (what could not be
    /// found). A provider that refuses to say fails the onboarding.
    pub(crate) fn resolve(
        &self,
        injected: &BTreeMap<String, Secret>,
        services: &HostServices,
        notes: &mut Vec<String>,
    ) -> Result<Option<String>, OnboardError> {
        let Some(token) = injected.get("oauth_access_token") else { return Ok(None) };
        let (document, source) = match &self.identity_url {
            Some(url) => (identity(url, token, services)?, format!("the answer of {url}")),
            None => match authplug_connector::jwt_claims(token.expose()) {
                Some(claims) => (claims, "the access token's claims".to_owned()),
                None => {
                    notes.push(
                        "tenant_id_expression without identity_url, and the access token is not \
                         a JWT: account_id not set"
                            .into(),
                    );
                    return Ok(None);
                }
            },
        };
        let tenant = authplug_connector::tenant_from(&self.expression, &document);
        if tenant.is_none() {
            notes.push(format!(
                "tenant_id_expression `{}` finds nothing in {source}: account_id not set",
                self.expression
            ));
        }
        Ok(tenant)
    }
}

/// The identity document at `url`, asked with the new access token.
fn identity(url: &str, token: &Secret, services: &HostServices) -> Result<Value, OnboardError> {
    let request = HttpRequest {
        method: "GET".into(),
        url: url.to_owned(),
        headers: vec![
            ("Authorization".into(), format!("Bearer {}", token.expose())),
            ("Accept".into(), "application/json".into()),
        ],
        body: Vec::new(),
    };
    let answer = services
        .http(request)
        .map_err(|e| OnboardError::Tenant(format!("identity_url {url}: {}", e.message)))?;
    if !(200..300).contains(&answer.status) {
        return Err(OnboardError::Tenant(format!(
            "identity_url {url} answered HTTP {}: the tenant is unknown",
            answer.status
        )));
    }
    serde_json::from_slice(&answer.body)
        .map_err(|_| OnboardError::Tenant(format!("identity_url {url} did not answer JSON")))
}
