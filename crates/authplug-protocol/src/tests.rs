//! Wire messages as they cross the boundary, and the rules for unknown fields.
use super::*;

#[test]
fn unknown_fields_and_codes_are_tolerated() {
    let body: ErrorBody =
        serde_json::from_str(r#"{"code":"brand_new","message":"m","extra":1}"#).unwrap();
    assert_eq!(body.code, ErrorCode::Other);
    let pair: AuthPair = serde_json::from_str(r#"{"auth":"api_key","future":true}"#).unwrap();
    assert_eq!(pair.to_string(), "api_key");
}

#[test]
fn onboard_step_is_tagged() {
    let step = OnboardStep::done(BTreeMap::new(), None);
    assert_eq!(serde_json::to_string(&step).unwrap(), r#"{"step":"done","injected":{}}"#);
}

#[test]
fn http_bodies_round_trip_any_bytes() {
    let req = HttpRequest {
        method: "POST".into(),
        url: "https://example.test/".into(),
        headers: vec![],
        body: vec![0, 255, 10],
    };
    let back: HttpRequest = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
    assert_eq!(back, req);
}

/// The refresh outcomes as they cross the boundary: changing one breaks every plugin.
#[test]
fn refresh_outcomes_are_tagged_golden_messages() {
    let golden = [
        (
            RefreshOutcome::Renewed {
                injected: BTreeMap::from([("token".to_owned(), Secret::new("t"))]),
                expires_at: Some(1_900_000_000),
            },
            r#"{"outcome":"renewed","injected":{"token":"t"},"expires_at":1900000000}"#,
        ),
        (
            RefreshOutcome::Reauthorize { reason: "invalid_grant".into() },
            r#"{"outcome":"reauthorize","reason":"invalid_grant"}"#,
        ),
        (
            RefreshOutcome::Transient { reason: "503".into(), retry_after_secs: Some(30) },
            r#"{"outcome":"transient","reason":"503","retry_after_secs":30}"#,
        ),
        (
            RefreshOutcome::Unchanged { reason: "no refresh token".into() },
            r#"{"outcome":"unchanged","reason":"no refresh token"}"#,
        ),
    ];
    for (outcome, wire) in golden {
        assert_eq!(serde_json::to_string(&outcome).unwrap(), wire);
        assert_eq!(serde_json::from_str::<RefreshOutcome>(wire).unwrap(), outcome);
    }
}

#[test]
fn error_codes_display_as_their_wire_name() {
    assert_eq!(ErrorCode::PluginPanic.to_string(), "plugin_panic");
}

#[test]
fn a_revocation_answer_is_plain_data() {
    let answer = Revoked { revoked: vec!["oauth_refresh_token".into()], notes: vec![] };
    let wire = r#"{"revoked":["oauth_refresh_token"]}"#;
    assert_eq!(serde_json::to_string(&answer).unwrap(), wire);
    assert_eq!(serde_json::from_str::<Revoked>(wire).unwrap(), answer);
    assert_eq!(method::since(method::REVOKE), Some((1, 5)));
}

/// A scheme's verification request as it crosses the boundary (since 1.6), and its placeholders.
#[test]
fn verify_requests_are_golden_messages_and_fill_their_placeholders() {
    let request = VerifyRequest::get("{base_url}/v2/{resource}")
        .with_default("base_url", "https://api.example");
    let wire = r#"{"method":"GET","url":"{base_url}/v2/{resource}","defaults":{"base_url":"https://api.example"}}"#;
    assert_eq!(serde_json::to_string(&request).unwrap(), wire);
    assert_eq!(serde_json::from_str::<VerifyRequest>(wire).unwrap(), request);
    let bare: VerifyRequest = serde_json::from_str(r#"{"url":"https://a/me"}"#).unwrap();
    assert_eq!(bare, VerifyRequest::get("https://a/me"), "GET when the method is absent");
    let descriptor: SchemeDescriptor = serde_json::from_str(
        r#"{"id":"x","display_name":"X","serves":[],"required":[],"injected":[]}"#,
    )
    .unwrap();
    assert_eq!(descriptor.verify, None, "a 1.5 descriptor declares none");

    assert_eq!(request.placeholders().unwrap(), ["base_url", "resource"]);
    let given = |name: &str| (name == "resource").then(|| "me".to_owned());
    assert_eq!(request.fill(given).unwrap(), "https://api.example/v2/me", "a default fills a gap");
    let overridden = |name: &str| Some(format!("<{name}>"));
    assert_eq!(request.fill(overridden).unwrap(), "<base_url>/v2/<resource>");
    assert_eq!(request.fill(|_| None), Err(Unfilled::Missing("resource".into())));
    // One pass: a value is not read for placeholders; a trailing slash before one is dropped.
    let sneaky = |name: &str| Some(if name == "base_url" { "https://a/{resource}/" } else { "x" });
    let sneaky = |name: &str| sneaky(name).map(str::to_owned);
    assert_eq!(request.fill(sneaky).unwrap(), "https://a/{resource}/v2/x");
    assert!(request.is_safe() && !VerifyRequest { method: "DELETE".into(), ..request }.is_safe());
    for bad in ["{base_url/me", "https://a/}", "https://a/{}", "https://a/{a b}"] {
        let error = VerifyRequest::get(bad).fill(|_| Some(String::new())).unwrap_err();
        assert!(matches!(&error, Unfilled::Malformed(m) if m.contains(bad)), "{bad}: {error:?}");
    }
}
