//! The client credentials grant (RFC 6749 §4.4): a token for the client itself, with no user and
//! no refresh token, fetched again when it lapses. The client authenticates with HTTP Basic, in
//! the form body, or with a signed assertion (RFC 7523 §2.2, `private_key_jwt`; the scheme signs
//! it, see [`ASSERTION_TYPE`]).
//!
//! Settings come from a manifest block (`oauth2` for OAuth2 connectors): `token_url`, `scopes`,
//! and the two ways providers name the API a token is for, `audience` (Auth0, Okta) and
//! `resource` (RFC 8707). A failure is sorted as a refresh's is: a refused client (`invalid_client`,
//! `unauthorized_client`, an HTTP 401) means someone must fix the credentials; 429, 5xx and no
//! answer mean try later.

use std::collections::BTreeMap;

use oauth2::basic::{
    BasicErrorResponseType, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ExtraTokenFields, Scope,
    StandardErrorResponse, StandardRevocableToken, TokenUrl,
};

use super::{invalid, outcome_reason, TokenAnswer};
use crate::{Error, ErrorCode, HostHttp, ManifestField, OnboardStep, RefreshOutcome, Secret};

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the client proves who it is at the token endpoint.
pub enum ClientAuthentication<'a> {
    /// HTTP Basic with the id and secret (RFC 6749 §2.3.1's default).
    Basic { id: &'a str, secret: &'a str },
    /// `client_id` and `client_secret` in the form body.
    Form { id: &'a str, secret: &'a str },
    /// `client_id` with a signed JWT `assertion` (RFC 7523 §2.2), made for this one request.
    Assertion { id: &'a str, assertion: String },
}

impl std::fmt::Debug for ClientAuthentication<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, id) = match self {
            Self::Basic { id, .. } => ("Basic", id),
            Self::Form { id, .. } => ("Form", id),
            Self::Assertion { id, .. } => ("Assertion", id),
        };
        f.debug_struct(kind).field("id", id).finish_non_exhaustive()
    }
}

/// The grant's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentialsGrant {
    pub token_url: String,
    pub scopes: Vec<String>,
    /// Sent as `audience` (the API the token is for, as Auth0 and Okta name it).
    pub audience: Option<String>,
    /// Sent as `resource` (RFC 8707's resource indicator).
    pub resource: Option<String>,
}

type GrantClient<EF> = oauth2::Client<
    StandardErrorResponse<BasicErrorResponseType>,
    TokenAnswer<EF>,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The manifest fields [`ClientCredentialsGrant::from_parameters`] reads, under `block`.
pub fn manifest_fields(block: &str) -> Vec<ManifestField> {
    let field = |name: &str| format!("{block}.{name}");
    vec![
        ManifestField::required(&field("token_url"), "The provider's token endpoint."),
        ManifestField::optional(&field("scopes"), "The scopes asked for."),
        ManifestField::optional(
            &field("audience"),
            "The API the token is for, sent as `audience` (Auth0, Okta).",
        ),
        ManifestField::optional(
            &field("resource"),
            "The API the token is for, sent as `resource` (RFC 8707).",
        ),
    ]
}

impl ClientCredentialsGrant {
    /// Reads the settings from the connector's parameters (its manifest's `block`, named in
    /// errors).
    pub fn from_parameters(
        parameters: &BTreeMap<String, serde_json::Value>,
        block: &str,
    ) -> Result<Self, Error> {
        let text = |key: &str| parameters.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let token_url = text("token_url")
            .ok_or_else(|| invalid(format!("the manifest's {block} block lacks `token_url`")))?;
        TokenUrl::new(token_url.clone())
            .map_err(|e| invalid(format!("{block}.token_url is not a URL ({e})")))?;
        Ok(Self {
            token_url,
            scopes: super::list(parameters, "scopes"),
            audience: text("audience"),
            resource: text("resource"),
        })
    }

    /// Asks the token endpoint for a token through `http` (the host's client, perhaps with a
    /// gateway header). A failure is already sorted into "fix the credentials" (`Reauthorize`)
    /// and "try later" (`Transient`).
    pub fn fetch<EF: ExtraTokenFields>(
        &self,
        client: ClientAuthentication<'_>,
        http: &HostHttp<'_>,
    ) -> Result<TokenAnswer<EF>, RefreshOutcome> {
        let token_url = TokenUrl::new(self.token_url.clone()).map_err(|e| {
            RefreshOutcome::Reauthorize { reason: format!("token_url is not a URL ({e})") }
        })?;
        let (id, secret, auth_type, assertion) = match client {
            ClientAuthentication::Basic { id, secret } => {
                (id, Some(secret), AuthType::BasicAuth, None)
            }
            ClientAuthentication::Form { id, secret } => {
                (id, Some(secret), AuthType::RequestBody, None)
            }
            ClientAuthentication::Assertion { id, assertion } => {
                (id, None, AuthType::RequestBody, Some(assertion))
            }
        };
        let mut oauth: GrantClient<EF> = oauth2::Client::new(ClientId::new(id.to_owned()))
            .set_token_uri(token_url)
            .set_auth_type(auth_type);
        if let Some(secret) = secret {
            oauth = oauth.set_client_secret(ClientSecret::new(secret.to_owned()));
        }
        let mut request = oauth
            .exchange_client_credentials()
            .add_scopes(self.scopes.iter().cloned().map(Scope::new));
        if let Some(audience) = &self.audience {
            request = request.add_extra_param("audience", audience.clone());
        }
        if let Some(resource) = &self.resource {
            request = request.add_extra_param("resource", resource.clone());
        }
        if let Some(assertion) = assertion {
            request = request
                .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion);
        }
        request.request(http).map_err(|error| super::classify(error, http.last_answer()))
    }
}

/// Onboarding's answer from one fetch: the secrets `injected` makes of the token, expiring when
/// it does; a failed fetch as [`onboarding_error`].
pub fn onboarded<EF: ExtraTokenFields>(
    fetched: Result<TokenAnswer<EF>, RefreshOutcome>,
    injected: impl FnOnce(&TokenAnswer<EF>) -> BTreeMap<String, Secret>,
) -> Result<OnboardStep, Error> {
    let answer = fetched.map_err(onboarding_error)?;
    Ok(OnboardStep::done(injected(&answer), super::expires_at(&answer)))
}

/// A refresh's answer from one fetch: `Renewed` with what `injected` makes of the token, or the
/// failure as the fetch sorted it.
pub fn renewed<EF: ExtraTokenFields>(
    fetched: Result<TokenAnswer<EF>, RefreshOutcome>,
    injected: impl FnOnce(&TokenAnswer<EF>) -> BTreeMap<String, Secret>,
) -> RefreshOutcome {
    match fetched {
        Ok(answer) => RefreshOutcome::Renewed {
            injected: injected(&answer),
            expires_at: super::expires_at(&answer),
        },
        Err(outcome) => outcome,
    }
}

/// A failed fetch during onboarding as the user's one-line error: a refused client names the
/// provider's error code (`invalid_client`: the id, secret or key is wrong), anything else says
/// the endpoint failed.
pub fn onboarding_error(outcome: RefreshOutcome) -> Error {
    match outcome {
        RefreshOutcome::Reauthorize { reason } => Error::new(
            ErrorCode::Provider,
            format!("the token endpoint refused the client credentials: {reason}"),
        ),
        other => Error::new(
            ErrorCode::Http,
            format!("the token endpoint failed: {}", outcome_reason(&other)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Host, HttpRequest, HttpResponse};
    use oauth2::{EmptyExtraTokenFields, TokenResponse};

    /// One grant answered by `status` and `body`; returns the request the endpoint saw too.
    fn fetch(
        client: ClientAuthentication<'_>,
        status: u16,
        body: &str,
    ) -> (HttpRequest, Result<TokenAnswer<EmptyExtraTokenFields>, RefreshOutcome>) {
        let seen = std::cell::RefCell::new(None);
        let endpoint = |_: &str, request: &str| -> Result<String, String> {
            *seen.borrow_mut() = Some(serde_json::from_str::<HttpRequest>(request).unwrap());
            let headers = vec![("content-type".into(), "application/json".into())];
            let answer = HttpResponse { status, headers, body: body.as_bytes().to_vec() };
            Ok(serde_json::to_string(&answer).unwrap())
        };
        let host = Host::new(&endpoint);
        let parameters = BTreeMap::from([
            ("token_url".to_owned(), "https://idp.example.test/token".into()),
            ("scopes".to_owned(), serde_json::json!(["api.read", "api.write"])),
            ("audience".to_owned(), "https://api.example.test".into()),
        ]);
        let grant = ClientCredentialsGrant::from_parameters(&parameters, "oauth2").unwrap();
        let answer = grant.fetch(client, &host.http_client().with_header("X-Gateway", "gw-key"));
        (seen.into_inner().unwrap(), answer)
    }

    fn form(request: &HttpRequest) -> BTreeMap<String, String> {
        oauth2::url::form_urlencoded::parse(&request.body).into_owned().collect()
    }

    fn header<'r>(request: &'r HttpRequest, name: &str) -> Option<&'r str> {
        request.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    const TOKEN: &str = r#"{"access_token":"at-1","token_type":"Bearer","expires_in":300}"#;

    #[test]
    fn each_client_authentication_reaches_the_endpoint_as_its_rfc_has_it() {
        let (basic, answer) =
            fetch(ClientAuthentication::Basic { id: "app", secret: "s3" }, 200, TOKEN);
        assert_eq!(answer.unwrap().access_token().secret(), "at-1");
        assert_eq!(header(&basic, "authorization"), Some("Basic YXBwOnMz"));
        assert_eq!(header(&basic, "x-gateway"), Some("gw-key"));
        let fields = form(&basic);
        assert_eq!(fields["grant_type"], "client_credentials");
        assert_eq!(fields["scope"], "api.read api.write");
        assert_eq!(fields["audience"], "https://api.example.test");
        assert!(!fields.contains_key("client_secret"));

        let (posted, _) = fetch(ClientAuthentication::Form { id: "app", secret: "s3" }, 200, TOKEN);
        assert_eq!(header(&posted, "authorization"), None);
        assert_eq!(
            (form(&posted)["client_id"].as_str(), form(&posted)["client_secret"].as_str()),
            ("app", "s3")
        );

        let signed = ClientAuthentication::Assertion { id: "app", assertion: "e.y.j".into() };
        let (asserted, _) = fetch(signed, 200, TOKEN);
        let fields = form(&asserted);
        assert_eq!(header(&asserted, "authorization"), None);
        assert_eq!(fields["client_assertion_type"], ASSERTION_TYPE);
        assert_eq!(fields["client_assertion"], "e.y.j");
        assert!(!fields.contains_key("client_secret"));
    }

    #[test]
    fn a_refused_client_is_a_clear_error_and_an_outage_is_transient() {
        let refused =
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#;
        let (_, answer) =
            fetch(ClientAuthentication::Basic { id: "app", secret: "wrong" }, 401, refused);
        let error = onboarding_error(answer.unwrap_err());
        assert_eq!(error.code, ErrorCode::Provider);
        assert_eq!(
            error.message,
            "the token endpoint refused the client credentials: invalid_client: client authentication failed"
        );
        assert!(!error.message.contains("wrong"));
        let (_, answer) = fetch(ClientAuthentication::Basic { id: "app", secret: "s" }, 503, "");
        assert!(matches!(answer.unwrap_err(), RefreshOutcome::Transient { .. }));
    }

    #[test]
    fn a_missing_or_bad_token_url_names_the_field() {
        let error =
            ClientCredentialsGrant::from_parameters(&BTreeMap::new(), "oauth2").unwrap_err();
        assert_eq!(error.message, "the manifest's oauth2 block lacks `token_url`");
        let bad = BTreeMap::from([("token_url".to_owned(), "not a url".into())]);
        let error = ClientCredentialsGrant::from_parameters(&bad, "service_account").unwrap_err();
        assert!(error.message.starts_with("service_account.token_url is not a URL"), "{error:?}");
    }
}
