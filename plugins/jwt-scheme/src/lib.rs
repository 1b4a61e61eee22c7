//! The JWT scheme of the spec page, as webCRM does it: the user supplies an application token as
//! `api_key`; the scheme logs in at the manifest's `jwt.login_url` with that token in a header
//! named by `jwt.jwt_header_key` (default `authCode`, which webCRM's manifest leaves out) and gets
//! an access and a refresh token. Access tokens live an hour; the `exp` of the JWT says when.
//!
//! Refresh: at `jwt.refresh_url` when the manifest gives one (webCRM documents none), else a fresh
//! login with the application token, which the store keeps as a required secret. A refused
//! application token means a human must act; 5xx, timeouts and unreadable answers are transient.

use std::collections::BTreeMap;

use authplug_sdk::prelude::*;
use authplug_sdk::provider::{self, Failure};
use authplug_sdk::{expiry, HttpRequest, HttpResponse};
use serde::Deserialize;

pub const ID: &str = "jwt";
const API_KEY: &str = "api_key";
const ACCESS_TOKEN: &str = "jwt_access_token";
const REFRESH_TOKEN: &str = "jwt_refresh_token";
/// webCRM's header name, for manifests that leave `jwt_header_key` out.
pub const DEFAULT_HEADER_KEY: &str = "authCode";

#[derive(Debug, Clone, Copy)]
pub struct Jwt;

impl Scheme for Jwt {
    fn descriptor(&self) -> SchemeDescriptor {
        SchemeDescriptor {
            id: ID.into(),
            display_name: "JWT authentication".into(),
            serves: vec![AuthPair::new("api_key", Some("jwt"))],
            required: vec![RequiredSecret::new(API_KEY, "The application token used to request the JWT access token. The token includes a set of access rights.")],
            injected: vec![
                InjectedSecret::new(ACCESS_TOKEN, "The JWT token used to authenticate the client (obtained during onboarding).", Source::Renewed),
                InjectedSecret::new(REFRESH_TOKEN, "The token used to refresh the access token (obtained during onboarding).", Source::Renewed),
            ],
            notes: vec![
                "Example of connectors using JWT: webCRM".into(),
                "A full connector example with JWT authentication could be found in `webCRM connector's playground branch <https://github.com/sesam-io/webcrm-connector/tree/playground>`__ in the `Manifest <https://github.com/sesam-io/webcrm-connector/blob/playground/manifest.json>`__ and `System <https://github.com/sesam-io/webcrm-connector/blob/playground/templates/system.json>`__.".into(),
            ],
            refresh: RefreshPolicy { renews: true, margin_secs: Some(300) },
            apply_output: ApplyOutput::ShortLived,
            manifest_fields: vec![
                ManifestField::required("jwt.login_url", "Where the application token is exchanged for the JWT pair."),
                ManifestField::defaulted("jwt.jwt_header_key", "The header that carries the application token at login.", DEFAULT_HEADER_KEY),
                ManifestField::optional("jwt.refresh_url", "Where the refresh token renews the pair (login again when absent)."),
            ],
            ..SchemeDescriptor::default()
        }
    }

    fn onboard(&self, request: OnboardRequest, host: &Host<'_>) -> Result<OnboardStep, Error> {
        let settings = Settings::from(&request.parameters)?;
        let key = api_key(&request.required)?;
        let (injected, expires_at) = login(&settings, key, host)??;
        Ok(OnboardStep::done(injected, expires_at))
    }

    fn refresh(&self, request: RefreshRequest, host: &Host<'_>) -> Result<RefreshOutcome, Error> {
        let settings = Settings::from(&request.parameters)?;
        let key = api_key(&request.required)?;
        let refresh_token = request.injected.get(REFRESH_TOKEN).map(Secret::expose).unwrap_or("");
        let outcome = match (&settings.refresh_url, refresh_token.is_empty()) {
            (Some(url), false) => {
                let body = format!("refresh_token={}", form_escape(refresh_token));
                call(
                    url,
                    vec![("Content-Type".into(), "application/x-www-form-urlencoded".into())],
                    body.into_bytes(),
                    host,
                )?
            }
            _ => login(&settings, key, host)?,
        };
        Ok(match outcome {
            Ok((injected, expires_at)) => RefreshOutcome::Renewed { injected, expires_at },
            Err(failure) => failure.into(),
        })
    }

    fn apply(&self, request: ApplyRequest, _host: &Host<'_>) -> Result<ApplyResponse, Error> {
        Ok(authplug_sdk::bearer(required_secret(&request.injected, ACCESS_TOKEN)?))
    }
}

/// The manifest's `jwt` block.
struct Settings {
    login_url: String,
    header_key: String,
    refresh_url: Option<String>,
}

impl Settings {
    fn from(parameters: &BTreeMap<String, serde_json::Value>) -> Result<Self, Error> {
        let text = |key: &str| parameters.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        Ok(Self {
            login_url: text("login_url").ok_or_else(|| {
                Error::new(ErrorCode::InvalidInput, "the manifest's jwt block lacks `login_url`")
            })?,
            header_key: text("jwt_header_key").unwrap_or_else(|| DEFAULT_HEADER_KEY.into()),
            refresh_url: text("refresh_url"),
        })
    }
}

fn api_key(required: &BTreeMap<String, Secret>) -> Result<&str, Error> {
    required.get(API_KEY).map(Secret::expose).filter(|k| !k.is_empty()).ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidInput,
            "the secret `api_key` (the application token) is missing",
        )
    })
}

type Tokens = (BTreeMap<String, Secret>, Option<i64>);

fn login(
    settings: &Settings,
    key: &str,
    host: &Host<'_>,
) -> Result<Result<Tokens, Failure>, Error> {
    let headers = vec![
        (settings.header_key.clone(), key.to_owned()),
        ("Accept".into(), "application/json".into()),
    ];
    call(&settings.login_url, headers, Vec::new(), host)
}

/// One POST to the provider, and its answer read as tokens. Errors of the transport itself (the
/// host's policy, timeouts) are transient failures, not errors of the call.
fn call(
    url: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    host: &Host<'_>,
) -> Result<Result<Tokens, Failure>, Error> {
    let request = HttpRequest { method: "POST".into(), url: url.to_owned(), headers, body };
    Ok(provider::reach(host, &request, LOGIN).and_then(|response| {
        match provider::classify(&response, LOGIN) {
            Ok(()) => read(&response),
            Err(Failure::Refused(_)) => {
                let answer = serde_json::from_slice(&response.body).ok();
                Err(refused(response.status, answer.as_ref()))
            }
            Err(transient) => Err(transient),
        }
    }))
}

/// The provider, in reasons.
const LOGIN: &str = "the login endpoint";

/// webCRM's names or the standard OAuth ones.
#[derive(Deserialize)]
struct Answer {
    #[serde(alias = "AccessToken")]
    access_token: Option<String>,
    #[serde(alias = "RefreshToken")]
    refresh_token: Option<String>,
    #[serde(alias = "ExpiresIn")]
    expires_in: Option<i64>,
    #[serde(rename = "IsError", default)]
    is_error: bool,
    #[serde(alias = "Error")]
    error: Option<String>,
    #[serde(alias = "ErrorDescription")]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    exp: Option<i64>,
}

/// A 2xx answer as tokens; webCRM also refuses with a 200 that says `IsError`.
fn read(response: &HttpResponse) -> Result<Tokens, Failure> {
    let answer: Answer = provider::json(response, LOGIN)?;
    if answer.is_error {
        return Err(refused(response.status, Some(&answer)));
    }
    let Some(access) = answer.access_token.filter(|t| !t.is_empty()) else {
        return Err(Failure::transient("the login answer carries no access token"));
    };
    let exp =
        jsonwebtoken::dangerous::insecure_decode::<Claims>(&access).ok().and_then(|d| d.claims.exp);
    let expires_at = exp.or(answer.expires_in.map(expiry::after));
    let injected = BTreeMap::from([
        (ACCESS_TOKEN.to_owned(), Secret::new(access)),
        (REFRESH_TOKEN.to_owned(), Secret::new(answer.refresh_token.unwrap_or_default())),
    ]);
    Ok((injected, expires_at))
}

/// A refusal with the provider's error code and description (never a token).
fn refused(status: u16, answer: Option<&Answer>) -> Failure {
    let detail = answer.map(|a| {
        let parts = [a.error.as_deref(), a.error_description.as_deref()];
        parts.into_iter().flatten().collect::<Vec<_>>().join(": ")
    });
    let detail = detail.filter(|d| !d.is_empty()).map(|d| format!(" ({d})")).unwrap_or_default();
    Failure::Refused(format!("the application token was refused: HTTP {status}{detail}"))
}

fn form_escape(text: &str) -> String {
    authplug_sdk::oauth2::url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

authplug_sdk::register_scheme!(Jwt);
authplug_sdk::export_plugin!();
