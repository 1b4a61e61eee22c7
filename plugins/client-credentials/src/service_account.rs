//! `service_account`, the `auth_variant` the connector format documents for `api_key`
//! connectors: the user gives a service-account key file as providers issue them, JSON such as
//!
//! ```json
//! {"type": "service_account", "client_id": "svc-7", "private_key_id": "k1",
//!  "private_key": "-----BEGIN PRIVATE KEY-----\n...", "token_uri": "https://idp.example/token"}
//! ```
//!
//! Its private key signs a client assertion (RFC 7523 §2.2, kid `private_key_id`, issuer
//! `client_id` or else `client_email`) for a client credentials grant at the manifest's
//! `service_account.token_url`, else the key's `token_uri`; the token is renewed before it
//! lapses. This is the
//! form OpenID Connect servers accept (`private_key_jwt`: oidc-provider, Keycloak); the JWT
//! bearer grant of RFC 7523 §2.1 (Google's) is not made here.

use std::collections::BTreeMap;

use authplug_sdk::oauth::client_credentials::{self as grant, ClientAuthentication};
use authplug_sdk::oauth::{ClientCredentialsGrant, OtherFields, TokenAnswer};
use authplug_sdk::oauth2::TokenResponse;
use authplug_sdk::prelude::*;
use serde::Deserialize;

use crate::{access_token, Signer, ACCESS_TOKEN, REFRESH};

pub const ID: &str = "service_account";
const KEY: &str = "service_account_key";

/// The fields of a key file this scheme reads; others (`project_id`, ...) are ignored. Its
/// `Debug` names no key.
#[derive(Deserialize)]
struct KeyFile {
    client_id: Option<String>,
    client_email: Option<String>,
    private_key_id: Option<String>,
    private_key: String,
    token_uri: Option<String>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidInput, message)
}

/// A service-account key signing client assertions.
#[derive(Debug, Clone, Copy)]
pub struct ServiceAccount;

impl ServiceAccount {
    /// The key file's client id, the grant's settings (its token endpoint from the manifest or
    /// the key file) and the key that signs for the client.
    fn client(
        parameters: &BTreeMap<String, serde_json::Value>,
        required: &BTreeMap<String, Secret>,
    ) -> Result<(String, ClientCredentialsGrant, Signer), Error> {
        let key: KeyFile = serde_json::from_str(required_secret(required, KEY)?).map_err(|e| {
            // serde's own message may quote a value: only a missing field's is repeated.
            let what = e.to_string();
            let why = match what.split(" at line").next() {
                Some(missing) if missing.starts_with("missing field") => missing.to_owned(),
                _ => format!("unreadable at line {}, column {}", e.line(), e.column()),
            };
            invalid(format!("{KEY} is not a service-account key file (JSON): {why}"))
        })?;
        let id = key
            .client_id
            .or(key.client_email)
            .ok_or_else(|| invalid(format!("{KEY} has neither `client_id` nor `client_email`")))?;
        let mut parameters = parameters.clone();
        if let Some(uri) = key.token_uri {
            parameters.entry("token_url".to_owned()).or_insert(uri.into());
        }
        if !parameters.contains_key("token_url") {
            return Err(invalid(format!(
                "{KEY} has no `token_uri` and the manifest no `service_account.token_url`"
            )));
        }
        let grant = ClientCredentialsGrant::from_parameters(&parameters, "service_account")?;
        let text = |key: &str| parameters.get(key).and_then(|v| v.as_str());
        let what = format!("{KEY}'s private_key");
        let signer =
            Signer::new(&key.private_key, text("assertion_alg"), key.private_key_id, &what)?;
        Ok((id, grant, signer))
    }

    fn fetch(
        parameters: &BTreeMap<String, serde_json::Value>,
        required: &BTreeMap<String, Secret>,
        host: &Host<'_>,
    ) -> Result<Result<TokenAnswer<OtherFields>, RefreshOutcome>, Error> {
        let (id, grant, signer) = Self::client(parameters, required)?;
        let assertion = signer.assertion(&id, &grant.token_url)?;
        Ok(grant.fetch(ClientAuthentication::Assertion { id: &id, assertion }, &host.http_client()))
    }

    fn injected(answer: &TokenAnswer<OtherFields>) -> BTreeMap<String, Secret> {
        let token = Secret::new(answer.access_token().secret().clone());
        BTreeMap::from([(ACCESS_TOKEN.to_owned(), token)])
    }
}

impl Scheme for ServiceAccount {
    fn descriptor(&self) -> SchemeDescriptor {
        let mut fields = grant::manifest_fields("service_account");
        fields[0] = ManifestField::defaulted(
            "service_account.token_url",
            "The provider's token endpoint.",
            "the key file's `token_uri`",
        );
        fields.push(ManifestField::defaulted(
            "service_account.assertion_alg",
            "The algorithm the assertion is signed with, pinned: RS256, RS384, RS512, PS256, PS384, PS512, ES256 or ES384.",
            "RS256",
        ));
        fields.push(authplug_sdk::oauth::revoke::manifest_field("service_account"));
        SchemeDescriptor {
            id: ID.into(),
            display_name: "Service account".into(),
            serves: vec![AuthPair::new("api_key", Some("service_account"))],
            intro: Some("For connectors that authenticate with a service-account key file (JSON holding a client id and a private key), the following secret is required:".into()),
            required: vec![RequiredSecret::new(
                KEY,
                "The service-account key file as the provider issued it (JSON with ``client_id``, ``private_key_id``, ``private_key`` and ``token_uri``).",
            )],
            injected: vec![access_token("The access token the key's signed assertion was exchanged for, renewed before it expires.")],
            notes: vec!["The key signs a client assertion (RFC 7523, ``private_key_jwt``) for each token request; the private key never leaves authplug.".into()],
            refresh: REFRESH,
            apply_output: ApplyOutput::ShortLived,
            manifest_fields: fields,
            ..SchemeDescriptor::default()
        }
    }

    fn onboard(&self, request: OnboardRequest, host: &Host<'_>) -> Result<OnboardStep, Error> {
        grant::onboarded(Self::fetch(&request.parameters, &request.required, host)?, Self::injected)
    }

    fn refresh(&self, request: RefreshRequest, host: &Host<'_>) -> Result<RefreshOutcome, Error> {
        let fetched = Self::fetch(&request.parameters, &request.required, host)?;
        Ok(grant::renewed(fetched, Self::injected))
    }

    /// RFC 7009 at the manifest's `service_account.revocation_url`, the client authenticated
    /// by an assertion signed with the key for each request.
    fn revoke(&self, request: RevokeRequest, host: &Host<'_>) -> Result<Revoked, Error> {
        if let Some(noted) = crate::without_endpoint(&request, host) {
            return noted;
        }
        let (id, grant, signer) = Self::client(&request.parameters, &request.required)?;
        crate::revoke_access_token(&request, host, &|| {
            let assertion = signer.assertion(&id, &grant.token_url)?;
            Ok(ClientAuthentication::Assertion { id: &id, assertion })
        })
    }

    fn apply(&self, request: ApplyRequest, _host: &Host<'_>) -> Result<ApplyResponse, Error> {
        Ok(authplug_sdk::bearer(required_secret(&request.injected, ACCESS_TOKEN)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn onboard(key: &str, parameters: serde_json::Value) -> Error {
        let no_host = |_: &str, _: &str| -> Result<String, String> { panic!("no request") };
        let request = OnboardRequest {
            required: BTreeMap::from([(KEY.to_owned(), Secret::new(key))]),
            parameters: serde_json::from_value(parameters).unwrap(),
            ..Default::default()
        };
        ServiceAccount.onboard(request, &Host::new(&no_host)).unwrap_err()
    }

    #[test]
    fn without_a_revocation_endpoint_nothing_is_read_and_the_note_says_so() {
        let no_host = |_: &str, _: &str| -> Result<String, String> { panic!("no request") };
        let request = RevokeRequest {
            required: BTreeMap::from([(KEY.to_owned(), Secret::new("no longer a key file"))]),
            ..Default::default()
        };
        let revoked = ServiceAccount.revoke(request, &Host::new(&no_host)).unwrap();
        assert!(revoked.revoked.is_empty());
        assert!(revoked.notes[0].starts_with("nothing revoked: the connector declares no"));
    }

    #[test]
    fn a_bad_key_file_is_refused_by_name_without_quoting_it() {
        let error = onboard(r#"{"client_id": "svc", "private_key": 42}"#, serde_json::json!({}));
        assert_eq!(error.message, "service_account_key is not a service-account key file (JSON): unreadable at line 1, column 38");
        let error = onboard(r#"{"client_id": "svc-secretive"}"#, serde_json::json!({}));
        assert_eq!(error.message, "service_account_key is not a service-account key file (JSON): missing field `private_key`");
        let key = r#"{"client_id": "svc", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n"}"#;
        let error = onboard(key, serde_json::json!({}));
        assert_eq!(error.message, "service_account_key has no `token_uri` and the manifest no `service_account.token_url`");
        let error =
            onboard(key, serde_json::json!({"token_url": "https://idp.example.test/token"}));
        assert_eq!(
            error.message,
            "service_account_key's private_key is not an RSA private key in PEM (for RS256)"
        );
        let error = onboard(r#"{"private_key": "k"}"#, serde_json::json!({}));
        assert_eq!(error.message, "service_account_key has neither `client_id` nor `client_email`");
    }
}
