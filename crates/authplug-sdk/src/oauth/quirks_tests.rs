//! Refresh answers as real providers send them, through the host callback a plugin sees: each
//! test scripts the token endpoint's one answer and reads how the SDK sorts it.

use std::time::Duration;

use authplug_protocol::{HttpRequest, HttpResponse};
use oauth2::{EmptyExtraTokenFields, TokenResponse};

use super::*;

fn flow() -> AuthCodeFlow {
    AuthCodeFlow {
        login_url: "https://idp.example.test/authorize".into(),
        token_url: "https://idp.example.test/token".into(),
        scopes: vec![],
        optional_scopes: vec![],
        client_auth: ClientAuth::Basic,
        pkce: true,
    }
}

/// One refresh grant answered by `status` and `body` (JSON), as a provider's token endpoint.
fn refresh(status: u16, body: &str) -> Result<TokenAnswer<EmptyExtraTokenFields>, RefreshOutcome> {
    let body = body.as_bytes().to_vec();
    let endpoint = move |method: &str, request: &str| -> Result<String, String> {
        assert_eq!(method, "http");
        let request: HttpRequest = serde_json::from_str(request).unwrap();
        let form = String::from_utf8(request.body).unwrap();
        assert!(form.contains("grant_type=refresh_token"), "{form}");
        let content_type = ("content-type".into(), "application/json".into());
        let answer = HttpResponse { status, headers: vec![content_type], body: body.clone() };
        Ok(serde_json::to_string(&answer).unwrap())
    };
    let host = Host::new(&endpoint);
    let credentials = ClientCredentials { id: "app", secret: "app-secret" };
    flow().refresh(credentials, "rt-1", &host)
}

fn reason(outcome: RefreshOutcome) -> (bool, String) {
    match outcome {
        RefreshOutcome::Reauthorize { reason } => (true, reason),
        RefreshOutcome::Transient { reason, .. } => (false, reason),
        RefreshOutcome::Renewed { .. } | RefreshOutcome::Unchanged { .. } => {
            panic!("not a failure")
        }
    }
}

#[test]
fn an_oauth2_error_sent_with_http_200_is_that_error_and_never_a_token() {
    let refused = refresh(200, r#"{"error":"invalid_grant","error_description":"revoked"}"#);
    assert_eq!(reason(refused.unwrap_err()), (true, "invalid_grant: revoked".into()));
    let busy = refresh(200, r#"{"error":"temporarily_unavailable"}"#);
    assert_eq!(reason(busy.unwrap_err()), (false, "temporarily_unavailable".into()));
    // Neither a token nor an error: try later, and the body is not quoted.
    let odd = refresh(200, r#"{"status":"ok","detail":"rt-secret-looking"}"#);
    let (reauthorise, said) = reason(odd.unwrap_err());
    assert!(!reauthorise && said.contains("not a token response"), "{said}");
    assert!(!said.contains("rt-secret-looking"), "{said}");
}

#[test]
fn expires_in_as_a_string_is_read_as_seconds() {
    let answer = refresh(
        200,
        r#"{"access_token":"at-2","token_type":"Bearer","expires_in":"1200","refresh_token":"rt-2"}"#,
    )
    .unwrap();
    assert_eq!(answer.expires_in(), Some(Duration::from_secs(1200)));
    assert_eq!(next_refresh_token(&answer, Some("rt-1")), "rt-2");
}

#[test]
fn an_answer_without_a_new_refresh_token_keeps_the_one_used() {
    let answer =
        refresh(200, r#"{"access_token":"at-2","token_type":"bearer","expires_in":600}"#).unwrap();
    assert_eq!(next_refresh_token(&answer, Some("rt-1")), "rt-1");
}

#[test]
fn without_a_refresh_token_nothing_is_sent_and_nothing_changes() {
    let endpoint = |_: &str, _: &str| -> Result<String, String> {
        panic!("an offline token is never sent anywhere")
    };
    let host = Host::new(&endpoint);
    let credentials = ClientCredentials { id: "app", secret: "app-secret" };
    let outcome = flow().refresh::<EmptyExtraTokenFields>(credentials, "", &host).unwrap_err();
    assert!(matches!(outcome, RefreshOutcome::Unchanged { .. }), "{outcome:?}");
}

#[test]
fn a_refusal_with_an_empty_body_is_a_refusal_not_an_outage() {
    // glewlwyd answers a replayed one-use refresh token with HTTP 400 and no body at all.
    let (reauthorise, said) = reason(refresh(400, "").unwrap_err());
    assert!(reauthorise, "{said}");
    assert_eq!(said, "the token endpoint answered HTTP 400");
    let (reauthorise, _) = reason(refresh(503, "").unwrap_err());
    assert!(!reauthorise, "503 stays transient");
}
