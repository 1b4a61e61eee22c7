//! The OAuth2 authorization-code flow shared by every scheme built on OAuth2: the generic `oauth2`
//! scheme and provider variants that need more from the token answer (SuperOffice reads an
//! `id_token` from it).
//!
//! RFC 6749 §4.1 with `state`, PKCE S256 (RFC 7636) unless a connector turns it off, and the
//! refresh grant (§6), all through the host's transport with the `oauth2` crate. The flow reads
//! the connector manifest's `oauth2` block: `login_url`, `token_url`, `scopes`,
//! `optional_scopes` (HubSpot's extension, sent as a query parameter), plus two settings manifests
//! do not carry: `client_auth` (`basic`, RFC 6749's default, or `form` for providers that want the
//! secret in the body) and `pkce` (default true).
//!
//! Errors never quote a token, code or verifier: only the provider's error code and description.

use std::collections::BTreeMap;

use oauth2::basic::{
    BasicErrorResponseType, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardErrorResponse, StandardRevocableToken, TokenResponse,
    TokenUrl,
};
use serde::{Deserialize, Serialize};

use crate::{Error, ErrorCode, Host, ManifestField, OnboardStep, RefreshOutcome, Resume, Secret};

mod answer;
pub mod client_credentials;
#[cfg(test)]
mod quirks_tests;
pub mod revoke;

pub use answer::TokenAnswer;
pub use client_credentials::{ClientAuthentication, ClientCredentialsGrant};

/// The client's credentials: `client_id` and `client_secret` from the user.
#[derive(Clone, Copy)]
pub struct ClientCredentials<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

impl std::fmt::Debug for ClientCredentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials").field("id", &self.id).finish_non_exhaustive()
    }
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (RFC 6749 §2.3.1's default).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Form,
}

/// The flow's settings, read from the connector manifest's `oauth2` block.
#[derive(Debug, Clone)]
pub struct AuthCodeFlow {
    pub login_url: String,
    pub token_url: String,
    pub scopes: Vec<String>,
    pub optional_scopes: Vec<String>,
    pub client_auth: ClientAuth,
    pub pkce: bool,
}

/// What the host keeps between the redirect and the callback. Secret: it holds the PKCE verifier.
#[derive(Serialize, Deserialize)]
struct Continuation {
    state: String,
    verifier: Option<String>,
    redirect_uri: String,
}

type FlowClient<EF> = oauth2::Client<
    StandardErrorResponse<BasicErrorResponseType>,
    TokenAnswer<EF>,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

fn invalid(message: String) -> Error {
    Error::new(ErrorCode::InvalidInput, message)
}

/// The manifest's `oauth2` block as [`AuthCodeFlow::from_parameters`] reads it, for scheme
/// descriptors (`authplug check` holds connectors to it).
pub fn manifest_fields() -> Vec<ManifestField> {
    vec![
        ManifestField::required("oauth2.login_url", "The provider's authorization endpoint."),
        ManifestField::required("oauth2.token_url", "The provider's token endpoint."),
        ManifestField::optional("oauth2.scopes", "The scopes asked for at consent."),
        ManifestField::optional(
            "oauth2.optional_scopes",
            "Scopes asked for too, which the user may decline.",
        ),
        ManifestField::optional(
            "oauth2.client_auth",
            "How the client authenticates at the token endpoint: `basic` (the default) or `form`.",
        ),
        ManifestField::optional(
            "oauth2.pkce",
            "Whether to send a PKCE challenge (S256): true unless the provider rejects one.",
        ),
    ]
}

/// The manifest fields that say where the connection's tenant is ([`crate::tenant`]), for
/// schemes that report it as `outputs.account_id`.
pub fn tenant_fields() -> Vec<ManifestField> {
    vec![
        ManifestField::optional(
            "oauth2.tenant_id_expression",
            "Where the tenant (`account_id`) is: a key, a dotted path or a JSON list of keys.",
        ),
        ManifestField::optional(
            "oauth2.identity_url",
            "The endpoint that names the tenant for the new access token (HubSpot's token metadata).",
        ),
    ]
}

/// Every field of a token answer beyond the standard ones (`id_token`, a provider's tenant),
/// for [`AuthCodeFlow::exchange`]. Its `Debug` lists the names only: values may be secret.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct OtherFields {
    #[serde(flatten)]
    pub fields: BTreeMap<String, serde_json::Value>,
}

impl std::fmt::Debug for OtherFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.fields.keys()).finish()
    }
}

impl ExtraTokenFields for OtherFields {}

impl ClientAuth {
    /// The client authentication this setting makes of `credentials`.
    pub fn with(self, credentials: ClientCredentials<'_>) -> ClientAuthentication<'_> {
        let ClientCredentials { id, secret } = credentials;
        match self {
            ClientAuth::Basic => ClientAuthentication::Basic { id, secret },
            ClientAuth::Form => ClientAuthentication::Form { id, secret },
        }
    }

    /// The manifest's `client_auth`: `basic` (the default) or `form`.
    pub fn from_parameters(
        parameters: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Self, Error> {
        match parameters.get("client_auth").and_then(|v| v.as_str()) {
            None | Some("basic") => Ok(Self::Basic),
            Some("form") => Ok(Self::Form),
            Some(other) => {
                Err(invalid(format!("client_auth {other:?}: use \"basic\" or \"form\"")))
            }
        }
    }
}

/// A list parameter: a JSON list of strings, or one string of space-separated items.
fn list(parameters: &BTreeMap<String, serde_json::Value>, key: &str) -> Vec<String> {
    match parameters.get(key) {
        Some(serde_json::Value::Array(items)) => {
            items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect()
        }
        Some(serde_json::Value::String(text)) => {
            text.split_whitespace().map(str::to_owned).collect()
        }
        _ => Vec::new(),
    }
}

impl AuthCodeFlow {
    /// Reads the settings from the connector's parameters (its manifest's `oauth2` block).
    pub fn from_parameters(
        parameters: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Self, Error> {
        let text = |key: &str| parameters.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let required = |key: &str| {
            text(key).ok_or_else(|| invalid(format!("the manifest's oauth2 block lacks `{key}`")))
        };
        let client_auth = ClientAuth::from_parameters(parameters)?;
        Ok(Self {
            login_url: required("login_url")?,
            token_url: required("token_url")?,
            scopes: list(parameters, "scopes"),
            optional_scopes: list(parameters, "optional_scopes"),
            client_auth,
            pkce: parameters.get("pkce").and_then(|v| v.as_bool()).unwrap_or(true),
        })
    }

    fn client<EF: ExtraTokenFields>(
        &self,
        credentials: ClientCredentials<'_>,
        redirect_uri: Option<&str>,
    ) -> Result<FlowClient<EF>, Error> {
        let url =
            |what: &str, e: oauth2::url::ParseError| invalid(format!("{what} is not a URL ({e})"));
        let mut client: FlowClient<EF> =
            oauth2::Client::new(ClientId::new(credentials.id.to_owned()))
                .set_client_secret(ClientSecret::new(credentials.secret.to_owned()))
                .set_auth_uri(
                    AuthUrl::new(self.login_url.clone()).map_err(|e| url("login_url", e))?,
                )
                .set_token_uri(
                    TokenUrl::new(self.token_url.clone()).map_err(|e| url("token_url", e))?,
                )
                .set_auth_type(match self.client_auth {
                    ClientAuth::Basic => AuthType::BasicAuth,
                    ClientAuth::Form => AuthType::RequestBody,
                });
        if let Some(redirect_uri) = redirect_uri {
            client = client.set_redirect_uri(
                RedirectUrl::new(redirect_uri.to_owned())
                    .map_err(|e| url("the redirect URI", e))?,
            );
        }
        Ok(client)
    }

    /// The first step: send the user to the provider's consent page.
    pub fn authorize(
        &self,
        credentials: ClientCredentials<'_>,
        redirect_uri: Option<&str>,
    ) -> Result<OnboardStep, Error> {
        let redirect_uri = redirect_uri
            .ok_or_else(|| invalid("OAuth2 onboarding needs the host's redirect URI".into()))?;
        let client =
            self.client::<oauth2::EmptyExtraTokenFields>(credentials, Some(redirect_uri))?;
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.scopes.iter().cloned().map(Scope::new));
        if !self.optional_scopes.is_empty() {
            request = request.add_extra_param("optional_scopes", self.optional_scopes.join(" "));
        }
        // OpenID Connect servers may require a nonce with `openid` (glewlwyd does); the generic
        // scheme does not read the id_token, so it is sent and not kept.
        if self.scopes.iter().any(|s| s == "openid") {
            request = request.add_extra_param("nonce", CsrfToken::new_random().secret().clone());
        }
        let verifier = if self.pkce {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            Some(verifier.secret().clone())
        } else {
            None
        };
        let (url, state) = request.url();
        let continuation = Continuation {
            state: state.secret().clone(),
            verifier,
            redirect_uri: redirect_uri.to_owned(),
        };
        Ok(OnboardStep::Redirect {
            url: url.to_string(),
            state: state.secret().clone(),
            continuation: Secret::new(serde_json::to_string(&continuation).expect("serialisable")),
        })
    }

    /// The second step: check the callback's `state` and exchange its code (with the PKCE
    /// verifier) for tokens.
    pub fn exchange<EF: ExtraTokenFields>(
        &self,
        credentials: ClientCredentials<'_>,
        resume: &Resume,
        host: &Host<'_>,
    ) -> Result<TokenAnswer<EF>, Error> {
        let continuation: Continuation = serde_json::from_str(resume.continuation.expose())
            .map_err(|_| invalid("the onboarding continuation is unreadable".into()))?;
        if let Some(error) = resume.callback.get("error") {
            let description =
                resume.callback.get("error_description").map(String::as_str).unwrap_or("");
            return Err(Error::new(
                ErrorCode::Provider,
                format!("the provider refused the authorisation: {error} {description}")
                    .trim_end()
                    .to_owned(),
            ));
        }
        if resume.callback.get("state") != Some(&continuation.state) {
            return Err(invalid("the callback's state does not match the authorisation's".into()));
        }
        let code = resume
            .callback
            .get("code")
            .ok_or_else(|| invalid("the callback carries no authorization code".into()))?;
        let client = self.client::<EF>(credentials, Some(&continuation.redirect_uri))?;
        let mut request = client.exchange_code(AuthorizationCode::new(code.clone()));
        let pkce = continuation.verifier.is_some();
        if let Some(verifier) = continuation.verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier));
        }
        let http = host.http_client();
        request.request(&http).map_err(|error| match classify(error, http.last_answer()) {
            RefreshOutcome::Reauthorize { reason } => {
                // Providers do not say why a code is refused; these are the causes RFC 6749 and
                // 7636 leave, so the user knows where to look.
                let hint = match (reason.starts_with("invalid_grant"), pkce) {
                    (true, true) => {
                        " (the code expired or was used already, the redirect URI differs, or \
                         the PKCE verifier does not match the challenge)"
                    }
                    (true, false) => {
                        " (the code expired or was used already, or the redirect URI differs)"
                    }
                    (false, _) => "",
                };
                Error::new(
                    ErrorCode::Provider,
                    format!("the token endpoint refused the code: {reason}{hint}"),
                )
            }
            other => Error::new(
                ErrorCode::Http,
                format!("the token endpoint failed: {}", outcome_reason(&other)),
            ),
        })
    }

    /// The refresh grant. A failure is already sorted into "authorise again" or "try later";
    /// without a refresh token there is nothing to send, and the answer is
    /// [`RefreshOutcome::Unchanged`].
    pub fn refresh<EF: ExtraTokenFields>(
        &self,
        credentials: ClientCredentials<'_>,
        refresh_token: &str,
        host: &Host<'_>,
    ) -> Result<TokenAnswer<EF>, RefreshOutcome> {
        if refresh_token.is_empty() {
            // An offline token (no `expires_in`, no refresh token) stays as it is; one that
            // expires needs re-authorisation when it does: the host knows which it is.
            return Err(RefreshOutcome::Unchanged {
                reason: "the provider issued no refresh token: nothing to renew".into(),
            });
        }
        let client =
            self.client::<EF>(credentials, None).map_err(|e| RefreshOutcome::Reauthorize {
                reason: format!("the connector's settings: {}", e.message),
            })?;
        let http = host.http_client();
        client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
            .request(&http)
            .map_err(|error| classify(error, http.last_answer()))
    }
}

/// The refresh token to keep after an answer: the new one if the provider rotated it, else the
/// one used (providers that do not rotate omit it).
pub fn next_refresh_token<EF: ExtraTokenFields>(
    answer: &TokenAnswer<EF>,
    previous: Option<&str>,
) -> String {
    answer
        .refresh_token()
        .map(|t| t.secret().clone())
        .or_else(|| previous.map(str::to_owned))
        .unwrap_or_default()
}

/// When the answer's access token lapses (Unix seconds), if it says.
pub fn expires_at<EF: ExtraTokenFields>(answer: &TokenAnswer<EF>) -> Option<i64> {
    answer.expires_in().map(|d| crate::expiry::after(d.as_secs() as i64))
}

fn outcome_reason(outcome: &RefreshOutcome) -> &str {
    match outcome {
        RefreshOutcome::Reauthorize { reason }
        | RefreshOutcome::Transient { reason, .. }
        | RefreshOutcome::Unchanged { reason } => reason,
        RefreshOutcome::Renewed { .. } => "renewed",
    }
}

/// Sorts a failed token request into "authorise again" and "try later", by the answer's status
/// first (429 and 5xx are transient whatever their body says, as [`crate::provider`] has it),
/// then RFC 6749's error code, also when it comes with HTTP 200 (`invalid_grant` and the other
/// refusals: authorise again; `temporarily_unavailable` and `server_error`: try later). A body
/// that is neither a token answer nor an error is "try later"; nothing of it is ever stored.
/// Never quotes a token.
fn classify<E: std::error::Error>(
    error: RequestTokenError<E, StandardErrorResponse<BasicErrorResponseType>>,
    answer: Option<(u16, Option<u64>)>,
) -> RefreshOutcome {
    // A body that is no token answer but an RFC 6749 error is that error, whatever the status:
    // some providers refuse a refresh with HTTP 200 and `{"error": "invalid_grant"}`.
    let error = match error {
        RequestTokenError::Parse(parse, body) => match serde_json::from_slice(&body) {
            Ok(refusal) => RequestTokenError::ServerResponse(refusal),
            Err(_) => RequestTokenError::Parse(parse, body),
        },
        other => other,
    };
    if let Some((status, retry_after_secs)) = answer {
        let reason = format!("the token endpoint answered HTTP {status}");
        if crate::provider::is_transient(status) {
            return RefreshOutcome::Transient { reason, retry_after_secs };
        }
        // A refusal whose body is no RFC 6749 error (an HTML page, or nothing: glewlwyd answers
        // a replayed refresh token with an empty 400) is still a refusal.
        if status >= 300
            && matches!(error, RequestTokenError::Parse(..) | RequestTokenError::Other(_))
        {
            return RefreshOutcome::Reauthorize { reason };
        }
    }
    match error {
        RequestTokenError::ServerResponse(response) => {
            let code = response.error().as_ref().to_owned();
            let description = response.error_description().cloned().unwrap_or_default();
            let reason = format!("{code}: {description}").trim_end_matches([' ', ':']).to_owned();
            match response.error() {
                BasicErrorResponseType::Extension(code)
                    if code == "temporarily_unavailable" || code == "server_error" =>
                {
                    RefreshOutcome::Transient { reason, retry_after_secs: None }
                }
                _ => RefreshOutcome::Reauthorize { reason },
            }
        }
        RequestTokenError::Request(error) => {
            RefreshOutcome::Transient { reason: error.to_string(), retry_after_secs: None }
        }
        RequestTokenError::Parse(_, _) => RefreshOutcome::Transient {
            reason:
                "the token endpoint's answer is not a token response (truncated or an error page)"
                    .into(),
            retry_after_secs: None,
        },
        RequestTokenError::Other(message) => {
            RefreshOutcome::Transient { reason: message, retry_after_secs: None }
        }
    }
}
