//! The OAuth2 scheme of the spec page: authorization code with `state` and PKCE (S256), code
//! exchange, and the refresh grant, with the `oauth2` crate over the host's HTTP transport.
//!
//! Serves `auth: oauth2` without a variant (HubSpot, Keap, Shopify, Sage, Zoho, ...). It reads the
//! connector manifest's `oauth2` block as parameters: `login_url` (authorize endpoint),
//! `token_url`, `scopes`, `optional_scopes` (HubSpot's extension, sent as a query parameter),
//! and two settings the manifests do not carry: `client_auth` (`basic`, the RFC 6749 default, or
//! `form` for providers that want the secret in the body, as HubSpot's documentation shows) and
//! `pkce` (default true).
//!
//! Refresh: providers that rotate refresh tokens answer a new one, which is injected; providers
//! that omit it keep the old one. `invalid_grant`, `invalid_client` and `unauthorized_client` mean
//! a human must authorise again; transport failures and unreadable answers are transient.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use authplug_sdk::oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use authplug_sdk::oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardErrorResponse,
    TokenResponse, TokenUrl,
};
use authplug_sdk::prelude::*;
use serde::{Deserialize, Serialize};

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
            ..SchemeDescriptor::default()
        }
    }

    fn onboard(&self, request: OnboardRequest, host: &Host<'_>) -> Result<OnboardStep, Error> {
        let settings = Settings::from(&request.parameters)?;
        let client_id = secret(&request.required, CLIENT_ID)?;
        let client_secret = secret(&request.required, CLIENT_SECRET)?;
        match &request.resume {
            None => {
                let redirect_uri = request.redirect_uri.clone().ok_or_else(|| {
                    invalid("OAuth2 onboarding needs the host's redirect URI".into())
                })?;
                authorize(&settings, client_id, client_secret, &redirect_uri)
            }
            Some(resume) => {
                let token = exchange(&settings, client_id, client_secret, resume, host)?;
                let (injected, expires_at) = injected(&request.required, &token, None);
                Ok(OnboardStep::done(injected, expires_at))
            }
        }
    }

    fn refresh(&self, request: RefreshRequest, host: &Host<'_>) -> Result<RefreshOutcome, Error> {
        let settings = Settings::from(&request.parameters)?;
        let client_id = secret(&request.required, CLIENT_ID)?;
        let client_secret = secret(&request.required, CLIENT_SECRET)?;
        let current = request.injected.get(REFRESH_TOKEN).map(Secret::expose).unwrap_or_default();
        if current.is_empty() {
            return Ok(RefreshOutcome::Reauthorize {
                reason: "the provider issued no refresh token: authorise again".into(),
            });
        }
        let client = client(&settings, client_id, client_secret, None)?;
        let answer = client
            .exchange_refresh_token(&RefreshToken::new(current.to_owned()))
            .request(&host.http_client());
        match answer {
            Ok(token) => {
                let (injected, expires_at) = injected(&request.required, &token, Some(current));
                Ok(RefreshOutcome::Renewed { injected, expires_at })
            }
            Err(error) => Ok(classify(error)),
        }
    }
}

/// The settings read from the connector manifest's `oauth2` block.
#[derive(Debug)]
struct Settings {
    login_url: String,
    token_url: String,
    scopes: Vec<String>,
    optional_scopes: Vec<String>,
    form_auth: bool,
    pkce: bool,
}

impl Settings {
    fn from(parameters: &BTreeMap<String, serde_json::Value>) -> Result<Self, Error> {
        let text = |key: &str| parameters.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let list = |key: &str| match parameters.get(key) {
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect()
            }
            Some(serde_json::Value::String(text)) => {
                text.split_whitespace().map(str::to_owned).collect()
            }
            _ => Vec::new(),
        };
        let required = |key: &str| {
            text(key).ok_or_else(|| invalid(format!("the manifest's oauth2 block lacks `{key}`")))
        };
        let form_auth = match text("client_auth").as_deref() {
            None | Some("basic") => false,
            Some("form") => true,
            Some(other) => {
                return Err(invalid(format!("client_auth {other:?}: use \"basic\" or \"form\"")));
            }
        };
        Ok(Self {
            login_url: required("login_url")?,
            token_url: required("token_url")?,
            scopes: list("scopes"),
            optional_scopes: list("optional_scopes"),
            form_auth,
            pkce: parameters.get("pkce").and_then(|v| v.as_bool()).unwrap_or(true),
        })
    }
}

/// What the host keeps between the redirect and the callback. Secret: it holds the PKCE verifier.
#[derive(Serialize, Deserialize)]
struct Continuation {
    state: String,
    verifier: Option<String>,
    redirect_uri: String,
}

fn invalid(message: String) -> Error {
    Error::new(ErrorCode::InvalidInput, message)
}

fn secret<'a>(secrets: &'a BTreeMap<String, Secret>, name: &str) -> Result<&'a str, Error> {
    secrets
        .get(name)
        .map(Secret::expose)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid(format!("the secret `{name}` is missing or empty")))
}

type Client = authplug_sdk::oauth2::Client<
    StandardErrorResponse<BasicErrorResponseType>,
    BasicTokenResponse,
    authplug_sdk::oauth2::basic::BasicTokenIntrospectionResponse,
    authplug_sdk::oauth2::StandardRevocableToken,
    authplug_sdk::oauth2::basic::BasicRevocationErrorResponse,
    authplug_sdk::oauth2::EndpointSet,
    authplug_sdk::oauth2::EndpointNotSet,
    authplug_sdk::oauth2::EndpointNotSet,
    authplug_sdk::oauth2::EndpointNotSet,
    authplug_sdk::oauth2::EndpointSet,
>;

fn client(
    settings: &Settings,
    id: &str,
    secret: &str,
    redirect_uri: Option<&str>,
) -> Result<Client, Error> {
    let url = |what: &str, e: authplug_sdk::oauth2::url::ParseError| {
        invalid(format!("{what} is not a URL ({e})"))
    };
    let mut client = BasicClient::new(ClientId::new(id.to_owned()))
        .set_client_secret(ClientSecret::new(secret.to_owned()))
        .set_auth_uri(AuthUrl::new(settings.login_url.clone()).map_err(|e| url("login_url", e))?)
        .set_token_uri(TokenUrl::new(settings.token_url.clone()).map_err(|e| url("token_url", e))?)
        .set_auth_type(if settings.form_auth {
            AuthType::RequestBody
        } else {
            AuthType::BasicAuth
        });
    if let Some(redirect_uri) = redirect_uri {
        client = client.set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| url("the redirect URI", e))?,
        );
    }
    Ok(client)
}

fn authorize(
    settings: &Settings,
    id: &str,
    secret: &str,
    redirect_uri: &str,
) -> Result<OnboardStep, Error> {
    let client = client(settings, id, secret, Some(redirect_uri))?;
    let mut request = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(settings.scopes.iter().cloned().map(Scope::new));
    if !settings.optional_scopes.is_empty() {
        request = request.add_extra_param("optional_scopes", settings.optional_scopes.join(" "));
    }
    let verifier = if settings.pkce {
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

fn exchange(
    settings: &Settings,
    id: &str,
    secret: &str,
    resume: &Resume,
    host: &Host<'_>,
) -> Result<BasicTokenResponse, Error> {
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
    let client = client(settings, id, secret, Some(&continuation.redirect_uri))?;
    let mut request = client.exchange_code(AuthorizationCode::new(code.clone()));
    let pkce = continuation.verifier.is_some();
    if let Some(verifier) = continuation.verifier {
        request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier));
    }
    request.request(&host.http_client()).map_err(|error| match classify(error) {
        RefreshOutcome::Reauthorize { reason } => {
            // Providers do not say why a code is refused; these are the causes RFC 6749 and 7636
            // leave, so the user knows where to look.
            let hint = match (reason.starts_with("invalid_grant"), pkce) {
                (true, true) => {
                    " (the code expired or was used already, the redirect URI differs, or the \
                     PKCE verifier does not match the challenge)"
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

fn outcome_reason(outcome: &RefreshOutcome) -> &str {
    match outcome {
        RefreshOutcome::Reauthorize { reason } | RefreshOutcome::Transient { reason, .. } => reason,
        RefreshOutcome::Renewed { .. } => "renewed",
    }
}

/// The injected secrets from a token answer; a missing refresh token keeps `previous`.
fn injected(
    required: &BTreeMap<String, Secret>,
    token: &BasicTokenResponse,
    previous: Option<&str>,
) -> (BTreeMap<String, Secret>, Option<i64>) {
    let refresh = token
        .refresh_token()
        .map(|t| t.secret().clone())
        .or_else(|| previous.map(str::to_owned))
        .unwrap_or_default();
    let copy = |name: &str| required.get(name).cloned().unwrap_or_else(|| Secret::new(""));
    let injected = BTreeMap::from([
        (ACCESS_TOKEN.to_owned(), Secret::new(token.access_token().secret().clone())),
        (INJECTED_CLIENT_ID.to_owned(), copy(CLIENT_ID)),
        (INJECTED_CLIENT_SECRET.to_owned(), copy(CLIENT_SECRET)),
        (REFRESH_TOKEN.to_owned(), Secret::new(refresh)),
    ]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let expires_at = token.expires_in().map(|d| now + d.as_secs() as i64);
    (injected, expires_at)
}

/// Sorts a failed token request into "authorise again" and "try later". Never quotes a token.
fn classify<E: std::error::Error>(
    error: RequestTokenError<E, StandardErrorResponse<BasicErrorResponseType>>,
) -> RefreshOutcome {
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

authplug_sdk::register_scheme!(OAuth2);
authplug_sdk::export_plugin!();
