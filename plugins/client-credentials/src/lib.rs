//! OAuth2 client credentials (RFC 6749 §4.4): connectors that act as themselves, not for a user.
//! There is no consent and no refresh token: onboarding fetches a token to prove the credentials
//! work, and every refresh fetches a new one before the old one lapses (60 s ahead, or half the
//! lifetime of a shorter token). A refused client (`invalid_client`: the secret or key is wrong
//! or was revoked) means someone must onboard again; 429, 5xx and no answer mean try later.
//!
//! Three schemes, one per way the client proves who it is (each needs other secrets):
//!
//! - `oauth2_client_credentials` (`auth: oauth2`, `auth_variant: client_credentials`): client id
//!   and secret, by HTTP Basic or in the form body (`oauth2.client_auth`);
//! - `oauth2_private_key_jwt` (`auth_variant: private_key_jwt`): client id and a private key that
//!   signs a client assertion (RFC 7523 §2.2) for each request, the algorithm pinned by the
//!   manifest;
//! - `service_account` (`auth: api_key`, `auth_variant: service_account`): a service-account key
//!   file as providers issue them (JSON with the client id, the private key and its id), used
//!   the same way ([`service_account`]).
//!
//! All read `token_url`, `scopes`, `audience` and `resource` from the manifest (the SDK's
//! [`ClientCredentialsGrant`]), and apply the token as a bearer credential (RFC 6750).

use std::collections::BTreeMap;

use authplug_sdk::oauth::client_credentials::{self as grant, ClientAuthentication};
use authplug_sdk::oauth::{self, ClientAuth, ClientCredentialsGrant, OtherFields, TokenAnswer};
use authplug_sdk::oauth2::TokenResponse;
use authplug_sdk::prelude::*;

mod assertion;
pub mod service_account;

pub use assertion::Signer;

pub const CLIENT_SECRET_ID: &str = "oauth2_client_credentials";
pub const PRIVATE_KEY_JWT_ID: &str = "oauth2_private_key_jwt";

const CLIENT_ID: &str = "client_id";
const CLIENT_SECRET: &str = "client_secret";
const PRIVATE_KEY: &str = "private_key";
const ACCESS_TOKEN: &str = "oauth_access_token";
const INJECTED_CLIENT_ID: &str = "oauth_client_id";
const INJECTED_CLIENT_SECRET: &str = "oauth_client_secret";

/// Refresh 60 s before a token lapses (the engine caps it at half a shorter lifetime).
const REFRESH: RefreshPolicy = RefreshPolicy { renews: true, margin_secs: Some(60) };

fn access_token(description: &str) -> InjectedSecret {
    InjectedSecret::new(ACCESS_TOKEN, description, Source::Renewed)
}

fn copied(name: &str, description: &str, from: &str) -> InjectedSecret {
    InjectedSecret::new(name, description, Source::Copied { from: from.into() })
}

/// The client id and secret, by HTTP Basic (the default) or in the form body.
#[derive(Debug, Clone, Copy)]
pub struct ClientSecretScheme;

impl ClientSecretScheme {
    fn fetch(
        request_parameters: &BTreeMap<String, serde_json::Value>,
        required: &BTreeMap<String, Secret>,
        host: &Host<'_>,
    ) -> Result<Result<TokenAnswer<OtherFields>, RefreshOutcome>, Error> {
        let grant = ClientCredentialsGrant::from_parameters(request_parameters, "oauth2")?;
        let credentials = oauth::ClientCredentials {
            id: required_secret(required, CLIENT_ID)?,
            secret: required_secret(required, CLIENT_SECRET)?,
        };
        let client = ClientAuth::from_parameters(request_parameters)?.with(credentials);
        Ok(grant.fetch(client, &host.http_client()))
    }

    fn injected(
        required: &BTreeMap<String, Secret>,
        answer: &TokenAnswer<OtherFields>,
    ) -> BTreeMap<String, Secret> {
        BTreeMap::from([
            (ACCESS_TOKEN.to_owned(), Secret::new(answer.access_token().secret().clone())),
            (INJECTED_CLIENT_ID.to_owned(), required[CLIENT_ID].clone()),
            (INJECTED_CLIENT_SECRET.to_owned(), required[CLIENT_SECRET].clone()),
        ])
    }
}

impl Scheme for ClientSecretScheme {
    fn descriptor(&self) -> SchemeDescriptor {
        let mut fields = grant::manifest_fields("oauth2");
        fields.push(oauth::revoke::manifest_field("oauth2"));
        fields.push(ManifestField::defaulted(
            "oauth2.client_auth",
            "How the client authenticates: `basic` (HTTP Basic) or `form` (in the body).",
            "basic",
        ));
        SchemeDescriptor {
            id: CLIENT_SECRET_ID.into(),
            display_name: "OAuth2 client credentials".into(),
            serves: vec![AuthPair::new("oauth2", Some("client_credentials"))],
            intro: Some("For connectors that authenticate as the client application itself (the OAuth2 client credentials grant, with no user consent), the following secrets are required:".into()),
            required: vec![
                RequiredSecret::new(CLIENT_ID, "Public identifier for the client.").public(),
                RequiredSecret::new(CLIENT_SECRET, "The confidential key assigned to the client application."),
            ],
            injected: vec![
                access_token("The access token, fetched at onboarding and again before it expires."),
                copied(INJECTED_CLIENT_ID, "The client id as provided in the connector configuration.", CLIENT_ID),
                copied(INJECTED_CLIENT_SECRET, "The client secret as provided in the connector configuration.", CLIENT_SECRET),
            ],
            notes: vec!["There is no refresh token: each renewal is a new client credentials grant. A refused client (``invalid_client``) marks the system for re-authorisation.".into()],
            refresh: REFRESH,
            apply_output: ApplyOutput::ShortLived,
            manifest_fields: fields,
            ..SchemeDescriptor::default()
        }
    }

    fn onboard(&self, request: OnboardRequest, host: &Host<'_>) -> Result<OnboardStep, Error> {
        let fetched = Self::fetch(&request.parameters, &request.required, host)?;
        grant::onboarded(fetched, |answer| Self::injected(&request.required, answer))
    }

    fn refresh(&self, request: RefreshRequest, host: &Host<'_>) -> Result<RefreshOutcome, Error> {
        let fetched = Self::fetch(&request.parameters, &request.required, host)?;
        Ok(grant::renewed(fetched, |answer| Self::injected(&request.required, answer)))
    }

    /// RFC 7009 at the manifest's `revocation_url`: the access token (there is no refresh
    /// token; a provider whose tokens are self-contained JWTs says it does not revoke them).
    fn revoke(&self, request: RevokeRequest, host: &Host<'_>) -> Result<Revoked, Error> {
        let credentials = oauth::ClientCredentials {
            id: required_secret(&request.required, CLIENT_ID)?,
            secret: required_secret(&request.required, CLIENT_SECRET)?,
        };
        let auth = ClientAuth::from_parameters(&request.parameters)?;
        revoke_access_token(&request, host, &|| Ok(auth.with(credentials)))
    }

    fn apply(&self, request: ApplyRequest, _host: &Host<'_>) -> Result<ApplyResponse, Error> {
        Ok(authplug_sdk::bearer(required_secret(&request.injected, ACCESS_TOKEN)?))
    }
}

/// The client id and a private key signing a fresh client assertion for each request.
#[derive(Debug, Clone, Copy)]
pub struct PrivateKeyJwtScheme;

impl PrivateKeyJwtScheme {
    /// The grant's settings and the key that signs for `client_id`.
    fn client(
        parameters: &BTreeMap<String, serde_json::Value>,
        required: &BTreeMap<String, Secret>,
    ) -> Result<(ClientCredentialsGrant, Signer), Error> {
        let grant = ClientCredentialsGrant::from_parameters(parameters, "oauth2")?;
        let text = |key: &str| parameters.get(key).and_then(|v| v.as_str());
        let signer = Signer::new(
            required_secret(required, PRIVATE_KEY)?,
            text("assertion_alg"),
            text("key_id").map(str::to_owned),
            PRIVATE_KEY,
        )?;
        Ok((grant, signer))
    }

    fn fetch(
        parameters: &BTreeMap<String, serde_json::Value>,
        required: &BTreeMap<String, Secret>,
        host: &Host<'_>,
    ) -> Result<Result<TokenAnswer<OtherFields>, RefreshOutcome>, Error> {
        let (grant, signer) = Self::client(parameters, required)?;
        let id = required_secret(required, CLIENT_ID)?;
        let assertion = signer.assertion(id, &grant.token_url)?;
        Ok(grant.fetch(ClientAuthentication::Assertion { id, assertion }, &host.http_client()))
    }

    fn injected(
        required: &BTreeMap<String, Secret>,
        answer: &TokenAnswer<OtherFields>,
    ) -> BTreeMap<String, Secret> {
        BTreeMap::from([
            (ACCESS_TOKEN.to_owned(), Secret::new(answer.access_token().secret().clone())),
            (INJECTED_CLIENT_ID.to_owned(), required[CLIENT_ID].clone()),
        ])
    }
}

impl Scheme for PrivateKeyJwtScheme {
    fn descriptor(&self) -> SchemeDescriptor {
        let mut fields = grant::manifest_fields("oauth2");
        fields.push(ManifestField::defaulted(
            "oauth2.assertion_alg",
            "The algorithm the client assertion is signed with, pinned: RS256, RS384, RS512, PS256, PS384, PS512, ES256 or ES384.",
            "RS256",
        ));
        fields.push(ManifestField::optional(
            "oauth2.key_id",
            "The key's id at the provider, sent as the assertion's `kid`.",
        ));
        fields.push(oauth::revoke::manifest_field("oauth2"));
        SchemeDescriptor {
            id: PRIVATE_KEY_JWT_ID.into(),
            display_name: "OAuth2 client credentials with a private key".into(),
            serves: vec![AuthPair::new("oauth2", Some("private_key_jwt"))],
            intro: Some("For connectors that authenticate as the client application with a private key instead of a secret (``private_key_jwt``, RFC 7523), the following secrets are required:".into()),
            required: vec![
                RequiredSecret::new(CLIENT_ID, "Public identifier for the client.").public(),
                RequiredSecret::new(PRIVATE_KEY, "The client's private key (PEM) whose public key the provider holds."),
            ],
            injected: vec![
                access_token("The access token, fetched at onboarding and again before it expires."),
                copied(INJECTED_CLIENT_ID, "The client id as provided in the connector configuration.", CLIENT_ID),
            ],
            notes: vec!["The private key never leaves authplug: each token request carries a new assertion signed with it, valid for one minute.".into()],
            refresh: REFRESH,
            apply_output: ApplyOutput::ShortLived,
            manifest_fields: fields,
            ..SchemeDescriptor::default()
        }
    }

    fn onboard(&self, request: OnboardRequest, host: &Host<'_>) -> Result<OnboardStep, Error> {
        let fetched = Self::fetch(&request.parameters, &request.required, host)?;
        grant::onboarded(fetched, |answer| Self::injected(&request.required, answer))
    }

    fn refresh(&self, request: RefreshRequest, host: &Host<'_>) -> Result<RefreshOutcome, Error> {
        let fetched = Self::fetch(&request.parameters, &request.required, host)?;
        Ok(grant::renewed(fetched, |answer| Self::injected(&request.required, answer)))
    }

    /// RFC 7009 at the manifest's `revocation_url`, the client authenticated by an assertion
    /// signed for each request (its audience the token endpoint, as for a token request).
    fn revoke(&self, request: RevokeRequest, host: &Host<'_>) -> Result<Revoked, Error> {
        if let Some(noted) = without_endpoint(&request, host) {
            return noted;
        }
        let (grant, signer) = Self::client(&request.parameters, &request.required)?;
        let id = required_secret(&request.required, CLIENT_ID)?;
        revoke_access_token(&request, host, &|| {
            Ok(ClientAuthentication::Assertion {
                id,
                assertion: signer.assertion(id, &grant.token_url)?,
            })
        })
    }

    fn apply(&self, request: ApplyRequest, _host: &Host<'_>) -> Result<ApplyResponse, Error> {
        Ok(authplug_sdk::bearer(required_secret(&request.injected, ACCESS_TOKEN)?))
    }
}

/// With no `revocation_url`, the SDK's note that nothing was revoked, before any key is read
/// (a key that no longer reads must not keep a system from being deleted).
fn without_endpoint(request: &RevokeRequest, host: &Host<'_>) -> Option<Result<Revoked, Error>> {
    if request.parameters.contains_key("revocation_url") {
        return None;
    }
    let never = || Err(Error::new(ErrorCode::InvalidInput, "no revocation endpoint"));
    Some(oauth::revoke::revoke_as(None, &never, &[], host))
}

/// The access token revoked at the manifest's `revocation_url` (there is no refresh token; a
/// provider whose tokens are self-contained JWTs says it does not revoke them: a note).
fn revoke_access_token<'a>(
    request: &RevokeRequest,
    host: &Host<'_>,
    client: &dyn Fn() -> Result<ClientAuthentication<'a>, Error>,
) -> Result<Revoked, Error> {
    let url = request.parameters.get("revocation_url").and_then(|v| v.as_str());
    let value = request.injected.get(ACCESS_TOKEN).map(Secret::expose).unwrap_or("");
    let token = oauth::revoke::Token { name: ACCESS_TOKEN, value, refresh: false };
    oauth::revoke::revoke_as(url, client, &[token], host)
}

authplug_sdk::register_scheme!(ClientSecretScheme);
authplug_sdk::register_scheme!(PrivateKeyJwtScheme);
authplug_sdk::register_scheme!(service_account::ServiceAccount);
authplug_sdk::export_plugin!();
