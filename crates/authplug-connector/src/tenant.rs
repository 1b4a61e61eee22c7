//! The tenant of an OAuth2 connection (`account_id`), from the manifest's `identity_url` answer
//! or the access token's claims, picked by `tenant_id_expression`: a path into the JSON,
//! written as the manifests do (`{{ hub_id }}`, `user.tenant`, `ctx['tenant']`, `$.items[0].id`).

use serde_json::Value;

/// The value at `expression` in `document`, as text; `None` if the path is not there.
pub fn tenant_from(expression: &str, document: &Value) -> Option<String> {
    let path = expression.trim();
    let path = path.strip_prefix("{{").and_then(|p| p.strip_suffix("}}")).unwrap_or(path).trim();
    let path = path.strip_prefix("$.").unwrap_or(path);
    let mut value = document;
    for step in steps(path)? {
        value = match step {
            Step::Key(key) => value.get(key)?,
            Step::Index(i) => value.get(i)?,
        };
    }
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b['c'][0]` -> `a`, `b`, `c`, `0`; `None` for anything else (a filter, an expression).
fn steps(path: &str) -> Option<Vec<Step<'_>>> {
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
                Some(key) => Step::Key(key),
                None => Step::Index(key.trim().parse().ok()?),
            });
            rest = &inner[close + 1..];
        } else {
            let rest_trimmed = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_trimmed.find(['.', '[']).unwrap_or(rest_trimmed.len());
            let key = &rest_trimmed[..end];
            if key.is_empty() || !key.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
                return None;
            }
            steps.push(Step::Key(key));
            rest = &rest_trimmed[end..];
        }
    }
    Some(steps)
}

/// The claims of a JWT, unverified: only for reading a tenant the provider put there, from a
/// token that just came from the provider over TLS.
pub fn jwt_claims(token: &str) -> Option<Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_forms_manifests_use_all_find_the_tenant() {
        let document =
            json!({"hub_id": 4711, "user": {"tenant": "Cust1"}, "items": [{"id": "t-9"}]});
        assert_eq!(tenant_from("{{ hub_id }}", &document).as_deref(), Some("4711"));
        assert_eq!(tenant_from("user.tenant", &document).as_deref(), Some("Cust1"));
        assert_eq!(tenant_from("user['tenant']", &document).as_deref(), Some("Cust1"));
        assert_eq!(tenant_from("$.items[0].id", &document).as_deref(), Some("t-9"));
        assert_eq!(tenant_from("user.nope", &document), None);
        assert_eq!(tenant_from("hub_id | upper", &document), None, "expressions are not evaluated");
    }

    #[test]
    fn claims_are_read_from_a_jwt() {
        let token = "eyJhbGciOiJub25lIn0.eyJ0aWQiOiJ0ZW5hbnQtMSJ9.";
        assert_eq!(tenant_from("tid", &jwt_claims(token).unwrap()).as_deref(), Some("tenant-1"));
        assert!(jwt_claims("opaque-token").is_none());
    }
}
