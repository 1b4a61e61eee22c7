//! The SuperOffice scheme of the spec page: OAuth2 consent, then a system-user ticket.
//!
//! After `providers.md`:
//! 1. The user consents at `{env}/login/common/oauth/authorize` (the SDK's authorization-code flow,
//!    with state and PKCE); the token answer carries an `id_token`.
//! 2. The `id_token` is verified against `{env}/login/.well-known/jwks` (RS256 only, audience the
//!    client id; the manifest's `oauth2.jwks_uri` overrides the address) and yields the tenant (`.../identity/ctx`) and the system-user token
//!    (`.../identity/system_token`, constant per tenant and application).
//! 3. `system_token + "." + yyyyMMddHHmm` (UTC) is signed with the partner's RSA private key
//!    (RSA-SHA256, base64) and posted to `{env}/Login/api/PartnerSystemUser/Authenticate` with the
//!    application token (the client secret). The answer is a JWT, verified against the same JWKS,
//!    whose `.../identity/ticket` claim is the ticket.
//! 4. `{env}/api/state/{ctx}` names the tenant's endpoint (`https://sod2.superoffice.com/Cust12345`),
//!    whose origin is returned as `base_url`: the connector's `url_pattern`
//!    (`{{@ base_url @}}/{{@ account_id @}}/api/v1/%s`) adds the tenant and the API path itself.
//!
//! `{env}` is the origin of the manifest's `token_url` (`https://sod.superoffice.com` in the
//! connector as shipped; `online` or `qaonline` by changing the manifest). The partner key comes
//! from the operator's configuration (PEM, PKCS#1 or PKCS#8, or the .NET RSA-XML form older
//! tooling used), never from the user.
//!
//! The ticket lives 6 hours, extended by each use; authplug cannot see uses, so it renews the
//! ticket 30 minutes before 6 hours from issue (and the engine renews on a 401). Renewal runs the
//! refresh grant, whose answer carries a fresh `id_token`, and signs a new system-user token.
//! Besides the spec page's `so_ticket` and `SO-Apptoken` it injects the OAuth2 set, because the
//! real templates read the application token from `oauth_client_secret`.

use std::collections::BTreeMap;

use authplug_sdk::oauth::{self, AuthCodeFlow, ClientCredentials, TokenAnswer};
use authplug_sdk::oauth2::{ExtraTokenFields, TokenResponse};
use authplug_sdk::prelude::*;
use authplug_sdk::provider::{self, Failure};
use authplug_sdk::HttpRequest;
use jsonwebtoken::jwk::JwkSet;
use rsa::RsaPrivateKey;
use serde::{Deserialize, Serialize};

mod crypto;

use crypto::{partner_key, sign, verify};

pub const ID: &str = "superoffice";

const CLIENT_ID: &str = "client_id";
const CLIENT_SECRET: &str = "client_secret";
const PARTNER_KEY: &str = "partner_private_key";
const TICKET: &str = "so_ticket";
const APP_TOKEN: &str = "SO-Apptoken";
const ACCESS_TOKEN: &str = "oauth_access_token";
const INJECTED_CLIENT_ID: &str = "oauth_client_id";
const INJECTED_CLIENT_SECRET: &str = "oauth_client_secret";
const REFRESH_TOKEN: &str = "oauth_refresh_token";

/// The ticket's sliding window.
const TICKET_LIFETIME_SECS: i64 = 6 * 3600;

/// The SuperOffice scheme.
#[derive(Debug, Clone, Copy)]
pub struct SuperOffice;

impl Scheme for SuperOffice {
    fn descriptor(&self) -> SchemeDescriptor {
        let copied = |from: &str| Source::Copied { from: from.into() };
        let compat = |name: &str, description: &str, source: Source| {
            InjectedSecret::new(name, description, source).compat()
        };
        SchemeDescriptor {
            id: ID.into(),
            display_name: "SuperOffice authentication".into(),
            serves: vec![AuthPair::new("oauth2", Some("superoffice-ticket"))],
            intro: Some("This is a custom style of authentication used by the SuperOffice connector. It is a regular Oauth2 authentication but injects an additional secret named ``so_ticket`` into the system. It requires the following secrets:".into()),
            required: vec![
                RequiredSecret::new(CLIENT_ID, "Public identifier for the client.").public(),
                RequiredSecret::new(CLIENT_SECRET, "The confidential key assigned to the client application."),
                RequiredSecret::new(PARTNER_KEY, "The partner's RSA private key that signs the system-user token (PEM or .NET RSA-XML).").from_operator(),
            ],
            injected: vec![
                InjectedSecret::new(TICKET, "The ticket used to authenticate the client.", Source::Renewed),
                InjectedSecret::new(APP_TOKEN, "The client secret as provided in the connector configuration.", copied(CLIENT_SECRET)),
                compat(ACCESS_TOKEN, "The OAuth2 access token (obtained during onboarding).", Source::Renewed),
                compat(INJECTED_CLIENT_ID, "The client id as provided in the connector configuration.", copied(CLIENT_ID)),
                compat(INJECTED_CLIENT_SECRET, "The client secret, which SuperOffice's templates send as the application token.", copied(CLIENT_SECRET)),
                compat(REFRESH_TOKEN, "The OAuth2 refresh token (obtained during onboarding).", Source::Renewed),
            ],
            notes: vec![
                "A full connector example with custom Superoffice authentication could be found in `Superoffice connector's playground branch <https://github.com/sesam-io/superoffice-connector/tree/playground>`__ in the `Manifest <https://github.com/sesam-io/superoffice-connector/blob/playground/manifest.json>`__ and `System <https://github.com/sesam-io/superoffice-connector/blob/playground/templates/system.json>`__.".into(),
            ],
            refresh: RefreshPolicy { renews: true, margin_secs: Some(1800) },
            apply_output: ApplyOutput::LongLived,
            manifest_fields: [
                oauth::manifest_fields(),
                vec![ManifestField::defaulted(
                    "oauth2.jwks_uri",
                    "Where the id_token's signing keys are published (the classic tool required it).",
                    "the SuperOffice environment's /login/.well-known/jwks",
                )],
            ]
            .concat(),
            // The tenant's API (at `base_url`, found at onboarding) says whom the ticket is for.
            verify: Some(VerifyRequest::get(
                "{base_url}/{account_id}/api/v1/User/currentPrincipal",
            )),
            ..SchemeDescriptor::default()
        }
    }

    fn onboard(&self, request: OnboardRequest, host: &Host<'_>) -> Result<OnboardStep, Error> {
        let flow = AuthCodeFlow::from_parameters(&request.parameters)?;
        let client = credentials(&request.required)?;
        let Some(resume) = &request.resume else {
            return flow.authorize(client, request.redirect_uri.as_deref());
        };
        let partner_key = partner_key(required_secret(&request.required, PARTNER_KEY)?)?;
        let environment = Environment::of(&flow, &request.parameters)?;
        let answer = flow.exchange::<IdToken>(client, resume, host)?;
        let tenant = expected_tenant(&request.parameters);
        let ticket = environment.ticket(&answer, client, &partner_key, tenant, host)?;
        let base_url = environment.tenant_api(&ticket.tenant, host)?;
        let injected = injected(&request.required, &answer, &ticket, None);
        Ok(OnboardStep::done(injected, Some(ticket.expires_at))
            .with_output("account_id", ticket.tenant)
            .with_output("base_url", base_url))
    }

    fn refresh(&self, request: RefreshRequest, host: &Host<'_>) -> Result<RefreshOutcome, Error> {
        let flow = AuthCodeFlow::from_parameters(&request.parameters)?;
        let client = credentials(&request.required)?;
        let partner_key = partner_key(required_secret(&request.required, PARTNER_KEY)?)?;
        let environment = Environment::of(&flow, &request.parameters)?;
        let current = request.injected.get(REFRESH_TOKEN).map(Secret::expose).unwrap_or_default();
        let answer = match flow.refresh::<IdToken>(client, current, host) {
            Ok(answer) => answer,
            Err(outcome) => return Ok(outcome),
        };
        let tenant = expected_tenant(&request.parameters);
        Ok(match environment.ticket(&answer, client, &partner_key, tenant, host) {
            Ok(ticket) => RefreshOutcome::Renewed {
                injected: injected(&request.required, &answer, &ticket, Some(current)),
                expires_at: Some(ticket.expires_at),
            },
            Err(failure) => failure.into(),
        })
    }

    /// `Authorization: SOTicket <ticket>` and `SO-AppToken: <application token>`.
    fn apply(&self, request: ApplyRequest, _host: &Host<'_>) -> Result<ApplyResponse, Error> {
        let ticket = required_secret(&request.injected, TICKET)?;
        let app_token = required_secret(&request.injected, APP_TOKEN)?;
        Ok(ApplyResponse {
            headers: vec![
                ("Authorization".into(), Secret::new(format!("SOTicket {ticket}"))),
                ("SO-AppToken".into(), Secret::new(app_token)),
            ],
            query: vec![],
        })
    }
}

fn credentials(required: &BTreeMap<String, Secret>) -> Result<ClientCredentials<'_>, Error> {
    Ok(ClientCredentials {
        id: required_secret(required, CLIENT_ID)?,
        secret: required_secret(required, CLIENT_SECRET)?,
    })
}

/// The tenant the connector is configured for (`account_id`, e.g. `Cust12345`), if any.
fn expected_tenant(parameters: &BTreeMap<String, serde_json::Value>) -> Option<&str> {
    parameters.get("account_id").and_then(|v| v.as_str()).filter(|t| !t.is_empty())
}

fn injected(
    required: &BTreeMap<String, Secret>,
    answer: &TokenAnswer<IdToken>,
    ticket: &Ticket,
    previous_refresh: Option<&str>,
) -> BTreeMap<String, Secret> {
    let copy = |name: &str| required.get(name).cloned().unwrap_or_else(|| Secret::new(""));
    BTreeMap::from([
        (TICKET.to_owned(), ticket.ticket.clone()),
        (APP_TOKEN.to_owned(), copy(CLIENT_SECRET)),
        (ACCESS_TOKEN.to_owned(), Secret::new(answer.access_token().secret().clone())),
        (INJECTED_CLIENT_ID.to_owned(), copy(CLIENT_ID)),
        (INJECTED_CLIENT_SECRET.to_owned(), copy(CLIENT_SECRET)),
        (
            REFRESH_TOKEN.to_owned(),
            Secret::new(oauth::next_refresh_token(answer, previous_refresh)),
        ),
    ])
}

/// The `id_token` SuperOffice adds to its token answers.
#[derive(Clone, Serialize, Deserialize)]
struct IdToken {
    id_token: Option<String>,
}

impl std::fmt::Debug for IdToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdToken(..)")
    }
}

impl ExtraTokenFields for IdToken {}

const CLAIM: &str = "http://schemes.superoffice.net/identity/";

#[derive(Deserialize)]
struct IdClaims {
    #[serde(rename = "http://schemes.superoffice.net/identity/ctx")]
    ctx: String,
    #[serde(rename = "http://schemes.superoffice.net/identity/system_token")]
    system_token: String,
}

#[derive(Deserialize)]
struct TicketClaims {
    #[serde(rename = "http://schemes.superoffice.net/identity/ctx")]
    ctx: String,
    #[serde(rename = "http://schemes.superoffice.net/identity/ticket")]
    ticket: String,
    exp: Option<i64>,
}

struct Ticket {
    ticket: Secret,
    tenant: String,
    expires_at: i64,
}

/// One SuperOffice environment (`https://sod.superoffice.com`, ...).
struct Environment {
    origin: String,
    /// The manifest's `oauth2.jwks_uri` if it has one (the classic tool required it); else the
    /// environment's `/login/.well-known/jwks`.
    jwks_uri: String,
}

impl Environment {
    fn of(
        flow: &AuthCodeFlow,
        parameters: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Self, Error> {
        let url = authplug_sdk::oauth2::url::Url::parse(&flow.token_url).map_err(|_| {
            Error::new(ErrorCode::InvalidInput, "the manifest's oauth2 token_url is not a URL")
        })?;
        let origin = url.origin().ascii_serialization();
        let jwks_uri = match parameters.get("jwks_uri").and_then(|v| v.as_str()) {
            Some(uri) => uri.to_owned(),
            None => format!("{origin}/login/.well-known/jwks"),
        };
        Ok(Self { origin, jwks_uri })
    }

    /// Steps 2 and 3: the verified id_token's system-user token, signed, exchanged for a ticket.
    fn ticket(
        &self,
        answer: &TokenAnswer<IdToken>,
        client: ClientCredentials<'_>,
        partner_key: &RsaPrivateKey,
        expected_tenant: Option<&str>,
        host: &Host<'_>,
    ) -> Result<Ticket, Failure> {
        let id_token = answer.extra_fields().id_token.as_deref().ok_or_else(|| {
            Failure::Refused(
                "the token answer carries no id_token: the application must be registered as \
                 server-to-server with the `openid` scope"
                    .into(),
            )
        })?;
        let keys = self.jwks(host)?;
        let identity: IdClaims = verify(id_token, &keys, Some(client.id), "id_token")?;
        if let Some(expected) = expected_tenant.filter(|t| *t != identity.ctx) {
            return Err(Failure::Refused(format!(
                "consent was given for tenant {} but the connector is configured for {expected}",
                identity.ctx
            )));
        }
        let now = authplug_sdk::expiry::now();
        let signed = sign(&identity.system_token, partner_key, now)?;
        let body = serde_json::json!({
            "SignedSystemToken": signed,
            "ApplicationToken": client.secret,
            "ContextIdentifier": identity.ctx,
            "ReturnTokenType": "JWT",
        });
        let answer = self.call(
            "POST",
            &self.url("/Login/api/PartnerSystemUser/Authenticate"),
            "Login/api/PartnerSystemUser",
            Some(&body),
            host,
        )?;
        if answer["IsSuccessful"].as_bool() != Some(true) {
            let message = answer["ErrorMessage"].as_str().unwrap_or("no reason given");
            return Err(Failure::Refused(format!(
                "SuperOffice refused the system-user login for {}: {message}",
                identity.ctx
            )));
        }
        let token = answer["Token"].as_str().ok_or_else(|| {
            Failure::transient("SuperOffice's system-user answer carries no Token")
        })?;
        let claims: TicketClaims = verify(token, &keys, None, "system-user ticket")?;
        if claims.ctx != identity.ctx {
            return Err(Failure::Refused(format!(
                "the system-user ticket is for tenant {}, not {}",
                claims.ctx, identity.ctx
            )));
        }
        let window = now + TICKET_LIFETIME_SECS;
        Ok(Ticket {
            ticket: Secret::new(claims.ticket),
            tenant: identity.ctx,
            expires_at: claims.exp.map_or(window, |exp| exp.min(window)),
        })
    }

    /// Step 4: the tenant's API host, from `/api/state/{ctx}`: its `Endpoint` without the path
    /// (the tenant), as the connector's `url_pattern` wants it.
    fn tenant_api(&self, tenant: &str, host: &Host<'_>) -> Result<String, Failure> {
        let path = format!("/api/state/{tenant}");
        let state = self.call("GET", &self.url(&path), &path[1..], None, host)?;
        if state["IsRunning"].as_bool() == Some(false) {
            let name = state["State"].as_str().unwrap_or("not running");
            return Err(Failure::Refused(format!("tenant {tenant} is {name} at SuperOffice")));
        }
        let endpoint = state["Endpoint"].as_str().ok_or_else(|| {
            Failure::transient(format!("SuperOffice's state of {tenant} names no Endpoint"))
        })?;
        api_origin(endpoint, tenant).ok_or_else(|| {
            Failure::transient(format!(
                "SuperOffice's state of {tenant} names the Endpoint {endpoint:?}, not \
                 https://<host>/{tenant}"
            ))
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    fn jwks(&self, host: &Host<'_>) -> Result<JwkSet, Failure> {
        let keys = self.call("GET", &self.jwks_uri, "JWKS", None, host)?;
        serde_json::from_value(keys)
            .map_err(|_| Failure::transient("SuperOffice's JWKS is not a JSON Web Key Set"))
    }

    /// One JSON request, named `what` in errors, sorted by the SDK's rule.
    fn call(
        &self,
        method: &str,
        url: &str,
        what: &str,
        body: Option<&serde_json::Value>,
        host: &Host<'_>,
    ) -> Result<serde_json::Value, Failure> {
        let mut headers = vec![("Accept".to_owned(), "application/json".to_owned())];
        if body.is_some() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        let request = HttpRequest {
            method: method.into(),
            url: url.to_owned(),
            headers,
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        };
        let provider = format!("SuperOffice's {what}");
        provider::json(&provider::send(host, &request, &provider)?, &provider)
    }
}

/// The origin of a tenant's `Endpoint` (`https://sod2.superoffice.com/Cust12345`): an http(s)
/// URL with a host and the tenant as its whole path, else `None`.
fn api_origin(endpoint: &str, tenant: &str) -> Option<String> {
    let url = authplug_sdk::oauth2::url::Url::parse(endpoint).ok()?;
    let plain = matches!(url.scheme(), "https" | "http")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.query().is_none()
        && url.path().trim_matches('/').eq_ignore_ascii_case(tenant);
    plain.then(|| url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::api_origin;

    #[test]
    fn the_api_origin_is_the_endpoint_without_its_tenant_or_nothing() {
        let t = "Cust12345";
        for (endpoint, origin) in [
            ("https://sod2.superoffice.com/Cust12345", Some("https://sod2.superoffice.com")),
            ("https://sod2.superoffice.com/cust12345/", Some("https://sod2.superoffice.com")),
            ("http://127.0.0.1:8080/Cust12345", Some("http://127.0.0.1:8080")),
            ("sod2.superoffice.com/Cust12345", None),
            ("", None),
            ("https://sod2.superoffice.com/x/Cust12345", None),
            ("https://sod2.superoffice.com/Cust99999", None),
            ("https://u:p@sod2.superoffice.com/Cust12345", None),
            ("https://sod2.superoffice.com/Cust12345?a=b", None),
        ] {
            assert_eq!(api_origin(endpoint, t).as_deref(), origin, "{endpoint}");
        }
    }
}

authplug_sdk::register_scheme!(SuperOffice);
authplug_sdk::export_plugin!();
