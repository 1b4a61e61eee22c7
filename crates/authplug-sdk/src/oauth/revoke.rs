//! Token revocation (RFC 7009): the tokens of a connection revoked at the provider before it is
//! deleted, the refresh token first (at most providers that revokes the grant and its access
//! tokens too), then the access token.
//!
//! The answers, as RFC 7009 §2.2 has them: 200 is revoked (also for a token the provider no
//! longer knows), unless its body is an error; `unsupported_token_type` for an access token is
//! a provider that does not revoke them (self-contained JWTs, which lapse at their expiry): a
//! note, not a failure; for a refresh token it is a refusal, since the grant stays alive; 429,
//! 5xx and no answer are a failure to try again (`http`); any other refusal (`invalid_client`)
//! is a `provider` error. A failure stops at once: the host then keeps the system.

use oauth2::url::form_urlencoded;

use super::client_credentials::ASSERTION_TYPE;
use super::{invalid, ClientAuth, ClientAuthentication, ClientCredentials};
use crate::{Error, ErrorCode, Host, HttpRequest, ManifestField, Revoked};

/// The manifest field that names the revocation endpoint, under `block`.
pub fn manifest_field(block: &str) -> ManifestField {
    ManifestField::optional(
        &format!("{block}.revocation_url"),
        "The provider's token revocation endpoint (RFC 7009): tokens are revoked there when a system is deleted with revocation.",
    )
}

/// One token to revoke: the injected secret's `name`, and whether it is a refresh token.
#[derive(Clone, Copy)]
pub struct Token<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub refresh: bool,
}

impl std::fmt::Debug for Token<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Revokes `tokens` (empty values skipped) at `url`, the client authenticated as `auth` says.
/// `url` `None`: nothing is revoked, and a note says why.
pub fn revoke(
    url: Option<&str>,
    credentials: ClientCredentials<'_>,
    auth: ClientAuth,
    tokens: &[Token<'_>],
    host: &Host<'_>,
) -> Result<Revoked, Error> {
    revoke_as(url, &|| Ok(auth.with(credentials)), tokens, host)
}

/// [`revoke`], the client authenticated by `client` for each request: a client assertion
/// (RFC 7523 §2.2, `private_key_jwt`) must be signed afresh for each.
pub fn revoke_as<'a>(
    url: Option<&str>,
    client: &dyn Fn() -> Result<ClientAuthentication<'a>, Error>,
    tokens: &[Token<'_>],
    host: &Host<'_>,
) -> Result<Revoked, Error> {
    let mut answer = Revoked::default();
    let Some(url) = url else {
        answer.notes.push(
            "nothing revoked: the connector declares no revocation endpoint (`revocation_url`)"
                .into(),
        );
        return Ok(answer);
    };
    oauth2::url::Url::parse(url)
        .map_err(|e| invalid(format!("revocation_url is not a URL ({e})")))?;
    for token in tokens.iter().filter(|t| !t.value.is_empty()) {
        let response = host
            .http(&request(url, client()?, token))
            .map_err(|e| failed(token.name, e.message))?;
        if crate::provider::is_transient(response.status) {
            return Err(failed(token.name, format!("HTTP {}", response.status)));
        }
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
        let code = body.get("error").and_then(|v| v.as_str());
        // A 2xx is revoked, unless its body is an error (some providers answer errors with 200).
        if (200..300).contains(&response.status) && code.is_none() {
            answer.revoked.push(token.name.to_owned());
            continue;
        }
        // Only an access token lapses by itself: a refresh token left alive keeps the grant.
        if code == Some("unsupported_token_type") && !token.refresh {
            answer.notes.push(format!(
                "{} not revoked: the provider does not revoke this kind of token (it lapses at its expiry)",
                token.name
            ));
            continue;
        }
        let reason = match code {
            Some(code) => {
                let description = body.get("error_description").and_then(|v| v.as_str());
                format!("{code}: {}", description.unwrap_or(""))
                    .trim_end_matches([' ', ':'])
                    .to_owned()
            }
            None => format!("HTTP {}", response.status),
        };
        return Err(Error::new(
            ErrorCode::Provider,
            format!("the revocation endpoint refused {}: {reason}", token.name),
        ));
    }
    Ok(answer)
}

/// RFC 7009 §2.1: the token and its type hint as a form, the client authenticated as for the
/// token endpoint (RFC 6749 §2.3.1: HTTP Basic of the form-encoded id and secret, or both in the
/// body; RFC 7523 §2.2: the id with a client assertion).
fn request(url: &str, client: ClientAuthentication<'_>, token: &Token<'_>) -> HttpRequest {
    let hint = if token.refresh { "refresh_token" } else { "access_token" };
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", token.value).append_pair("token_type_hint", hint);
    let mut headers = vec![
        ("Content-Type".to_owned(), "application/x-www-form-urlencoded".to_owned()),
        ("Accept".to_owned(), "application/json".to_owned()),
    ];
    match client {
        ClientAuthentication::Basic { id, secret } => {
            let encode =
                |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(id), encode(secret));
            let basic = crate::protocol::base64_encode(pair.as_bytes());
            headers.push(("Authorization".to_owned(), format!("Basic {basic}")));
        }
        ClientAuthentication::Form { id, secret } => {
            form.append_pair("client_id", id).append_pair("client_secret", secret);
        }
        ClientAuthentication::Assertion { id, assertion } => {
            form.append_pair("client_id", id)
                .append_pair("client_assertion_type", ASSERTION_TYPE)
                .append_pair("client_assertion", &assertion);
        }
    }
    HttpRequest {
        method: "POST".into(),
        url: url.to_owned(),
        headers,
        body: form.finish().into_bytes(),
    }
}

/// The endpoint could not be reached or failed for now (`http`): try again later.
fn failed(name: &str, reason: String) -> Error {
    Error::new(ErrorCode::Http, format!("the revocation endpoint failed for {name}: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HttpRequest, HttpResponse};

    /// Revokes a refresh and an access token against an endpoint answering `answers` in turn.
    fn revoke_with(answers: Vec<(u16, &'static str)>) -> (Vec<String>, Result<Revoked, Error>) {
        let sent = std::cell::RefCell::new(Vec::new());
        let answers = std::cell::RefCell::new(answers.into_iter());
        let endpoint = |_: &str, request: &str| -> Result<String, String> {
            let request: HttpRequest = serde_json::from_str(request).unwrap();
            sent.borrow_mut().push(String::from_utf8(request.body).unwrap());
            let (status, body) = answers.borrow_mut().next().expect("an answer");
            let headers = vec![("content-type".into(), "application/json".into())];
            let answer = HttpResponse { status, headers, body: body.as_bytes().to_vec() };
            Ok(serde_json::to_string(&answer).unwrap())
        };
        let host = Host::new(&endpoint);
        let tokens = [
            Token { name: "oauth_refresh_token", value: "rt-1", refresh: true },
            Token { name: "oauth_access_token", value: "at-1", refresh: false },
        ];
        let credentials = ClientCredentials { id: "app", secret: "app-secret" };
        let url = Some("https://idp.example.test/revoke");
        let answer = revoke(url, credentials, ClientAuth::Basic, &tokens, &host);
        (sent.into_inner(), answer)
    }

    #[test]
    fn a_client_assertion_is_signed_afresh_for_each_token() {
        let sent = std::cell::RefCell::new(Vec::new());
        let endpoint = |_: &str, request: &str| -> Result<String, String> {
            let request: HttpRequest = serde_json::from_str(request).unwrap();
            sent.borrow_mut().push(String::from_utf8(request.body).unwrap());
            let answer = HttpResponse { status: 200, headers: vec![], body: vec![] };
            Ok(serde_json::to_string(&answer).unwrap())
        };
        let host = Host::new(&endpoint);
        let signed = std::cell::Cell::new(0);
        let client = || {
            signed.set(signed.get() + 1);
            Ok(ClientAuthentication::Assertion {
                id: "app",
                assertion: format!("jwt-{}", signed.get()),
            })
        };
        let tokens = [
            Token { name: "oauth_refresh_token", value: "rt-1", refresh: true },
            Token { name: "oauth_access_token", value: "at-1", refresh: false },
        ];
        let answer = revoke_as(Some("https://idp.example.test/revoke"), &client, &tokens, &host);
        assert_eq!(answer.unwrap().revoked.len(), 2);
        let kind = "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
        assert_eq!(
            sent.into_inner(),
            [
                format!("token=rt-1&token_type_hint=refresh_token&client_id=app&{kind}&client_assertion=jwt-1"),
                format!("token=at-1&token_type_hint=access_token&client_id=app&{kind}&client_assertion=jwt-2"),
            ]
        );
    }

    #[test]
    fn the_refresh_token_goes_first_and_an_unsupported_type_is_a_note() {
        let unsupported = r#"{"error":"unsupported_token_type"}"#;
        let (sent, answer) = revoke_with(vec![(200, ""), (400, unsupported)]);
        assert_eq!(
            sent,
            ["token=rt-1&token_type_hint=refresh_token", "token=at-1&token_type_hint=access_token"]
        );
        let answer = answer.unwrap();
        assert_eq!(answer.revoked, ["oauth_refresh_token"]);
        assert!(answer.notes[0].starts_with("oauth_access_token not revoked"), "{answer:?}");
    }

    #[test]
    fn a_refusal_or_an_outage_stops_and_names_the_token_never_its_value() {
        let (sent, answer) = revoke_with(vec![(401, r#"{"error":"invalid_client"}"#)]);
        assert_eq!(sent.len(), 1, "stops at the first failure");
        let error = answer.unwrap_err();
        assert_eq!(
            (error.code, error.message.as_str()),
            (
                ErrorCode::Provider,
                "the revocation endpoint refused oauth_refresh_token: invalid_client"
            )
        );
        let (_, answer) = revoke_with(vec![(503, "")]);
        let error = answer.unwrap_err();
        assert_eq!(error.code, ErrorCode::Http);
        assert!(!error.message.contains("rt-1"), "{error:?}");
    }

    #[test]
    fn a_refresh_token_the_provider_will_not_revoke_and_an_error_sent_with_200_are_refusals() {
        let (_, answer) = revoke_with(vec![(400, r#"{"error":"unsupported_token_type"}"#)]);
        let error = answer.unwrap_err();
        assert_eq!(error.code, ErrorCode::Provider);
        assert!(error.message.contains("oauth_refresh_token: unsupported_token_type"), "{error:?}");
        let (_, answer) = revoke_with(vec![(200, r#"{"error":"invalid_client"}"#)]);
        assert_eq!(answer.unwrap_err().code, ErrorCode::Provider);
    }

    #[test]
    fn without_an_endpoint_nothing_is_sent_and_a_note_says_so() {
        let no_host = |_: &str, _: &str| -> Result<String, String> { panic!("nothing is sent") };
        let credentials = ClientCredentials { id: "app", secret: "s" };
        let token = Token { name: "t", value: "v", refresh: true };
        let answer = revoke(None, credentials, ClientAuth::Basic, &[token], &Host::new(&no_host));
        let answer = answer.unwrap();
        assert!(answer.revoked.is_empty());
        assert!(answer.notes[0].contains("no revocation endpoint"), "{answer:?}");
    }
}
