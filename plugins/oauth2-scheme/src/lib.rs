//! The OAuth2 scheme of the spec page: authorization code with `state` and PKCE (S256), code
//! exchange, and the refresh grant, with the `oauth2` crate over the host's HTTP transport.
//!
//! Serves `auth: oauth2` without a variant (HubSpot, Keap, Shopify, Sage, Zoho, ...). The flow
//! itself, and the manifest settings it reads, live in the SDK's [`authplug_sdk::oauth`] so that
//! provider variants share it; this crate decides what is injected.
//!
//! The tenant: a manifest with `tenant_id_expression` (and perhaps `identity_url`) gets the
//! connection's tenant as the onboarding output `account_id` ([`authplug_sdk::tenant`]).
//!
//! Refresh: providers that rotate refresh tokens answer a new one, which is injected; providers
//! that omit it keep the old one. `invalid_grant`, `invalid_client` and `unauthorized_client` mean
//! a human must authorise again; transport failures and unreadable answers are transient.
//!
//! Revocation (a system deleted with revocation): RFC 7009 at the manifest's
//! `oauth2.revocation_url`, the refresh token first.

use std::collections::BTreeMap;

use authplug_sdk::oauth::{
    self, revoke, AuthCodeFlow, ClientAuth, ClientCredentials, OtherFields, TokenAnswer,
};
use authplug_sdk::oauth2::{ExtraTokenFields, TokenResponse};
use authplug_sdk::prelude::*;
use authplug_sdk::tenant::TenantRule;

pub const ID: &str = "oauth2";

const CLIENT_ID: &str = "client_id";
const CLIENT_SECRET: &str = "client_secret";
const ACCESS_TOKEN: &str = "oauth_access_token";
const INJECTED_CLIENT_ID: &str = "oauth_client_id";
const INJECTED_CLIENT_SECRET: &str = "oauth_client_secret";
const REFRESH_TOKEN: &str = "oauth_refresh_token";

/// The OAuth2 scheme.
#[derive(Debug, Clone, Copy)]
pub struct OAuth2;

impl Scheme for OAuth2 {
    fn descriptor(&self) -> SchemeDescriptor {
        let injected = InjectedSecret::new;
        let copied = |from: &str| Source::Copied { from: from.into() };
        SchemeDescriptor {
            id: ID.into(),
            display_name: "OAuth2".into(),
            serves: vec![AuthPair::new("oauth2", None)],
            required: vec![
                RequiredSecret::new(CLIENT_ID, "Public identifier for the client.").public(),
                RequiredSecret::new(
                    CLIENT_SECRET,
                    "The confidential key assigned to the client application.",
                ),
            ],
            injected: vec![
                injected(ACCESS_TOKEN, "The initial token used to authenticate the client (obtained during onboarding).", Source::Renewed),
                injected(INJECTED_CLIENT_ID, "The client id as provided in the connector configuration.", copied(CLIENT_ID)),
                injected(INJECTED_CLIENT_SECRET, "The client secret as provided in the connector configuration.", copied(CLIENT_SECRET)),
                injected(REFRESH_TOKEN, "The token used to refresh the access token (obtained during onboarding).", Source::Renewed),
            ],
            notes: vec![
                "Example of connectors using OAuth2: Hubspot, Keap, Shopify, Sage, ZohoCRM, Wave, BusinessCentral, Asana".into(),
                "A full connector example with Oauth2 authentication could be found in `Hubspot connector's playground branch <https://github.com/sesam-io/hubspot-connector/blob/playground>`__ in the `Manifest <https://github.com/sesam-io/hubspot-connector/blob/playground/manifest.json>`__ and `System <https://github.com/sesam-io/hubspot-connector/blob/playground/templates/system.json>`__.".into(),
            ],
            refresh: RefreshPolicy { renews: true, margin_secs: Some(60) },
            apply_output: ApplyOutput::ShortLived,
            manifest_fields: [
                oauth::manifest_fields(),
                oauth::tenant_fields(),
                vec![oauth::revoke::manifest_field("oauth2")],
            ]
            .concat(),
            ..SchemeDescriptor::default()
        }
    }

    fn onboard(&self, request: OnboardRequest, host: &Host<'_>) -> Result<OnboardStep, Error> {
        let flow = AuthCodeFlow::from_parameters(&request.parameters)?;
        let tenant = TenantRule::from_parameters(&request.parameters)?;
        let client = credentials(&request.required)?;
        let Some(resume) = &request.resume else {
            return flow.authorize(client, request.redirect_uri.as_deref());
        };
        let answer = flow.exchange::<OtherFields>(client, resume, host)?;
        let done = OnboardStep::done(
            injected(&request.required, &answer, None),
            oauth::expires_at(&answer),
        );
        Ok(match tenant {
            None => done,
            Some(rule) => {
                let fields = serde_json::to_value(&answer).unwrap_or_default();
                done.with_output("account_id", rule.find(&fields, host)?)
            }
        })
    }

    fn refresh(&self, request: RefreshRequest, host: &Host<'_>) -> Result<RefreshOutcome, Error> {
        let flow = AuthCodeFlow::from_parameters(&request.parameters)?;
        let client = credentials(&request.required)?;
        let current = request.injected.get(REFRESH_TOKEN).map(Secret::expose).unwrap_or_default();
        Ok(match flow.refresh::<OtherFields>(client, current, host) {
            Ok(answer) => RefreshOutcome::Renewed {
                injected: injected(&request.required, &answer, Some(current)),
                expires_at: oauth::expires_at(&answer),
            },
            Err(outcome) => outcome,
        })
    }

    /// RFC 7009 at the manifest's `revocation_url`: the refresh token (which revokes the grant
    /// at most providers), then the access token.
    fn revoke(&self, request: RevokeRequest, host: &Host<'_>) -> Result<Revoked, Error> {
        let client = credentials(&request.required)?;
        let auth = ClientAuth::from_parameters(&request.parameters)?;
        let url = request.parameters.get("revocation_url").and_then(|v| v.as_str());
        let value = |name: &str| request.injected.get(name).map(Secret::expose).unwrap_or("");
        let tokens = [
            revoke::Token { name: REFRESH_TOKEN, value: value(REFRESH_TOKEN), refresh: true },
            revoke::Token { name: ACCESS_TOKEN, value: value(ACCESS_TOKEN), refresh: false },
        ];
        revoke::revoke(url, client, auth, &tokens, host)
    }

    /// RFC 6750: the access token as a bearer credential in the `Authorization` header.
    fn apply(&self, request: ApplyRequest, _host: &Host<'_>) -> Result<ApplyResponse, Error> {
        Ok(authplug_sdk::bearer(required_secret(&request.injected, ACCESS_TOKEN)?))
    }
}

fn credentials(required: &BTreeMap<String, Secret>) -> Result<ClientCredentials<'_>, Error> {
    Ok(ClientCredentials {
        id: required_secret(required, CLIENT_ID)?,
        secret: required_secret(required, CLIENT_SECRET)?,
    })
}

/// The injected secrets from a token answer; a missing refresh token keeps `previous`.
fn injected<EF: ExtraTokenFields>(
    required: &BTreeMap<String, Secret>,
    answer: &TokenAnswer<EF>,
    previous: Option<&str>,
) -> BTreeMap<String, Secret> {
    let copy = |name: &str| required.get(name).cloned().unwrap_or_else(|| Secret::new(""));
    BTreeMap::from([
        (ACCESS_TOKEN.to_owned(), Secret::new(answer.access_token().secret().clone())),
        (INJECTED_CLIENT_ID.to_owned(), copy(CLIENT_ID)),
        (INJECTED_CLIENT_SECRET.to_owned(), copy(CLIENT_SECRET)),
        (REFRESH_TOKEN.to_owned(), Secret::new(oauth::next_refresh_token(answer, previous))),
    ])
}

authplug_sdk::register_scheme!(OAuth2);
authplug_sdk::export_plugin!();

#[cfg(test)]
mod tests {
    use super::*;

    fn no_host(_: &str, _: &str) -> Result<String, String> {
        panic!("applying a token never calls the host")
    }

    #[test]
    fn the_access_token_is_applied_as_a_bearer_credential() {
        let host = Host::new(&no_host);
        let injected = BTreeMap::from([(ACCESS_TOKEN.to_owned(), Secret::new("at-1"))]);
        let applied = OAuth2
            .apply(ApplyRequest { scheme: ID.into(), injected, parameters: BTreeMap::new() }, &host)
            .unwrap();
        assert_eq!(applied.headers.len(), 1);
        assert_eq!(applied.headers[0].0, "Authorization");
        assert_eq!(applied.headers[0].1.expose(), "Bearer at-1");
        let missing = ApplyRequest {
            scheme: ID.into(),
            injected: BTreeMap::new(),
            parameters: BTreeMap::new(),
        };
        assert_eq!(OAuth2.apply(missing, &host).unwrap_err().code, ErrorCode::InvalidInput);
    }
}
