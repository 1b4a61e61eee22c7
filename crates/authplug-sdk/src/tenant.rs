//! The tenant of an OAuth2 connection, found where the connector manifest's `oauth2` block says:
//! `tenant_id_expression` names it, `identity_url` (if set) says whom to ask.
//!
//! The expression is a key (`hub_id`), a dotted path written as manifests do (`user.tenant`,
//! `{{ hub_id }}`, `ctx['tenant']`, `$.items[0].id`), or a JSON list of keys
//! (`["user", "tenant"]`, as a list or as its text). It is read:
//!
//! * with `identity_url`, from that endpoint's JSON answer to `GET identity_url + access token`
//!   when the URL ends in `/` or `=` (HubSpot's `.../oauth/v1/access-tokens/`), or else to a
//!   `GET identity_url` with the token as a bearer credential (an OpenID Connect userinfo
//!   endpoint); the bearer header is sent in both cases;
//! * without, from the token answer's fields, then the claims of its `id_token`, then the
//!   access token's claims when it is a JWT.
//!
//! Errors name the expression and where it was looked for, never a token.

use serde_json::Value;

use crate::{Error, ErrorCode, Host, HttpRequest};

/// Where a connection's tenant is, from a scheme's parameters.
#[derive(Debug, Clone)]
pub struct TenantRule {
    /// The expression as written, for messages.
    expression: String,
    path: Vec<Key>,
    identity_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Key {
    Name(String),
    Index(usize),
}

impl TenantRule {
    /// The rule in `parameters` (`tenant_id_expression`, `identity_url`), or `None` when the
    /// connector asks for no tenant.
    pub fn from_parameters(
        parameters: &std::collections::BTreeMap<String, Value>,
    ) -> Result<Option<Self>, Error> {
        let Some(expression) = parameters.get("tenant_id_expression") else { return Ok(None) };
        let unusable = || {
            Error::new(
                ErrorCode::InvalidInput,
                format!(
                    "tenant_id_expression {expression}: use a key, a dotted path or a JSON list of keys"
                ),
            )
        };
        let list = match expression {
            Value::Array(keys) => Some(keys.clone()),
            // A JSON list as text; otherwise a path, which may start with `['key']` too.
            Value::String(text) => serde_json::from_str::<Vec<Value>>(text).ok(),
            _ => return Err(unusable()),
        };
        let path = match list {
            Some(keys) => keys
                .iter()
                .map(|key| match key {
                    Value::String(name) => Some(Key::Name(name.clone())),
                    Value::Number(n) => n.as_u64().map(|i| Key::Index(i as usize)),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .filter(|keys| !keys.is_empty()),
            None => expression.as_str().and_then(parse),
        }
        .ok_or_else(unusable)?;
        let identity_url = match parameters.get("identity_url") {
            None | Some(Value::Null) => None,
            Some(Value::String(url)) if !url.is_empty() => Some(url.clone()),
            Some(_) => {
                return Err(Error::new(ErrorCode::InvalidInput, "identity_url must be a URL"))
            }
        };
        let expression = match expression {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        Ok(Some(Self { expression, path, identity_url }))
    }

    /// The tenant for a token endpoint's `answer` (its JSON, with `access_token`), asking the
    /// identity endpoint through `host` when the manifest names one.
    pub fn find(&self, answer: &Value, host: &Host<'_>) -> Result<String, Error> {
        let token = answer.get("access_token").and_then(Value::as_str).unwrap_or_default();
        if let Some(url) = &self.identity_url {
            let document = identity(url, token, host)?;
            return self
                .read(&document)
                .ok_or_else(|| self.not_found(&format!("the answer of {url}")));
        }
        let id_token = answer.get("id_token").and_then(Value::as_str).and_then(jwt_claims);
        let claims = jwt_claims(token);
        let documents = [Some(answer.clone()), id_token, claims];
        documents.iter().flatten().find_map(|document| self.read(document)).ok_or_else(|| {
            self.not_found("the token answer, its id_token or the access token's claims")
        })
    }

    fn read(&self, document: &Value) -> Option<String> {
        let mut value = document;
        for key in &self.path {
            value = match key {
                Key::Name(name) => value.get(name)?,
                Key::Index(i) => value.get(i)?,
            };
        }
        match value {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn not_found(&self, place: &str) -> Error {
        Error::new(
            ErrorCode::Provider,
            format!(
                "tenant_id_expression {} finds no tenant in {place}: check the manifest's oauth2 block",
                self.expression
            ),
        )
    }
}

/// The identity document for `token`, asked as a provider's answers are everywhere
/// ([`crate::provider`]): a failing identity endpoint is transient, a refusing one a refusal.
fn identity(url: &str, token: &str, host: &Host<'_>) -> Result<Value, Error> {
    let target = if url.ends_with('/') || url.ends_with('=') {
        let escaped: String =
            oauth2::url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        format!("{url}{escaped}")
    } else {
        url.to_owned()
    };
    let request = HttpRequest {
        method: "GET".into(),
        url: target,
        headers: vec![
            ("Authorization".into(), format!("Bearer {token}")),
            ("Accept".into(), "application/json".into()),
        ],
        body: Vec::new(),
    };
    // Named by the manifest's address, which does not hold the token.
    let who = format!("identity_url {url}");
    let answer = crate::provider::send(host, &request, &who)?;
    Ok(crate::provider::json(&answer, &who)?)
}

/// `{{ a.b['c'][0] }}` or `$.a.b` -> `a`, `b`, `c`, `0`; `None` for anything else (a filter,
/// an expression).
fn parse(expression: &str) -> Option<Vec<Key>> {
    let path = expression.trim();
    let path = path.strip_prefix("{{").and_then(|p| p.strip_suffix("}}")).unwrap_or(path).trim();
    let path = path.strip_prefix("$.").unwrap_or(path);
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let close = inner.find(']')?;
            let key = &inner[..close];
            let quoted = key
                .strip_prefix('\'')
                .and_then(|k| k.strip_suffix('\''))
                .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')));
            steps.push(match quoted {
                Some(key) => Key::Name(key.to_owned()),
                None => Key::Index(key.trim().parse().ok()?),
            });
            rest = &inner[close + 1..];
        } else {
            let rest_trimmed = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_trimmed.find(['.', '[']).unwrap_or(rest_trimmed.len());
            let key = &rest_trimmed[..end];
            if key.is_empty() || !key.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
                return None;
            }
            steps.push(Key::Name(key.to_owned()));
            rest = &rest_trimmed[end..];
        }
    }
    (!steps.is_empty()).then_some(steps)
}

/// The claims of a JWT, unverified: only for reading a tenant the provider put there, from a
/// token that just came from the provider over TLS.
pub fn jwt_claims(token: &str) -> Option<Value> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let payload = parts.nth(1)?;
    parts.next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn rule(expression: Value) -> TenantRule {
        let parameters = BTreeMap::from([("tenant_id_expression".to_owned(), expression)]);
        TenantRule::from_parameters(&parameters).unwrap().unwrap()
    }

    #[test]
    fn the_forms_manifests_use_all_find_the_tenant() {
        let document =
            json!({"hub_id": 4711, "user": {"tenant": "Cust1"}, "items": [{"id": "t-9"}]});
        let found = |expression: Value| rule(expression).read(&document);
        assert_eq!(found(json!("{{ hub_id }}")).as_deref(), Some("4711"));
        assert_eq!(found(json!("hub_id")).as_deref(), Some("4711"));
        assert_eq!(found(json!("user.tenant")).as_deref(), Some("Cust1"));
        assert_eq!(found(json!("user['tenant']")).as_deref(), Some("Cust1"));
        assert_eq!(found(json!("$.items[0].id")).as_deref(), Some("t-9"));
        assert_eq!(found(json!(["items", 0, "id"])).as_deref(), Some("t-9"));
        assert_eq!(found(json!(r#"["user", "tenant"]"#)).as_deref(), Some("Cust1"));
        assert_eq!(found(json!("['user'].tenant")).as_deref(), Some("Cust1"));
        assert_eq!(found(json!("user.nope")), None);
    }

    #[test]
    fn what_is_not_a_path_is_refused_by_name() {
        for bad in [json!("hub_id | upper"), json!([]), json!(7), json!("[nope"), json!("[]")] {
            let parameters = BTreeMap::from([("tenant_id_expression".to_owned(), bad)]);
            let error = TenantRule::from_parameters(&parameters).unwrap_err();
            assert!(error.message.starts_with("tenant_id_expression "), "{}", error.message);
        }
        assert!(TenantRule::from_parameters(&BTreeMap::new()).unwrap().is_none());
    }

    #[test]
    fn without_identity_url_the_answer_then_the_id_token_then_the_claims_are_read() {
        let no_host = |_: &str, _: &str| -> Result<String, String> { panic!("no identity_url") };
        let host = Host::new(&no_host);
        // {"tid": "tenant-1"} unsigned.
        let jwt = "eyJhbGciOiJub25lIn0.eyJ0aWQiOiJ0ZW5hbnQtMSJ9.";
        let answer = json!({"access_token": jwt, "portal": 12});
        assert_eq!(rule(json!("portal")).find(&answer, &host).unwrap(), "12");
        assert_eq!(rule(json!("tid")).find(&answer, &host).unwrap(), "tenant-1");
        let answer = json!({"access_token": "opaque", "id_token": jwt});
        assert_eq!(rule(json!("tid")).find(&answer, &host).unwrap(), "tenant-1");
        let error = rule(json!("nope")).find(&answer, &host).unwrap_err();
        assert!(!error.message.contains("opaque") && error.message.contains("nope"));
        assert!(jwt_claims("opaque-token").is_none());
    }
}
