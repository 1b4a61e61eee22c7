//! The API key scheme, as the spec page describes it: the user supplies `api_key`, and the same
//! value is injected into the system unchanged. Nothing is contacted and nothing expires.
//!
//! Serves `auth: api_key` without a variant (PowerOffice Go, WooCommerce, Wix). Real templates
//! send the key in many shapes, so `apply` takes a `style` parameter (see [`Style`]).

use std::collections::BTreeMap;

use authplug_sdk::prelude::*;
use authplug_sdk::protocol::base64_encode;

/// The scheme's id.
pub const ID: &str = "api_key";
/// The one secret it both requires and injects.
const API_KEY: &str = "api_key";

/// The API key scheme.
#[derive(Debug, Clone, Copy)]
pub struct ApiKey;

impl Scheme for ApiKey {
    fn descriptor(&self) -> SchemeDescriptor {
        SchemeDescriptor {
            id: ID.into(),
            display_name: "API key".into(),
            serves: vec![AuthPair::new("api_key", None)],
            required: vec![RequiredSecret::new(
                API_KEY,
                "The key used to authenticate the client.",
            )],
            injected: vec![InjectedSecret::new(
                API_KEY,
                "The api key as provided in the connector configuration.",
                Source::Copied { from: API_KEY.into() },
            )],
            notes: vec![
                "Api key is generally less secure than OAuth2, as it is a simple key that can be \
                 easily compromised. It is recommended to use OAuth2 whenever possible (some \
                 connectors support both schemes)."
                    .into(),
                "Example of connectors using API key: PowerofficeGo, WooCommerce, Wix".into(),
            ],
            // The key itself goes on every request: no authorize-only worker may hold it.
            apply_output: ApplyOutput::LongLived,
            ..SchemeDescriptor::default()
        }
    }

    fn onboard(&self, request: OnboardRequest, _host: &Host<'_>) -> Result<OnboardStep, Error> {
        let key = the_key(&request.required)?;
        Ok(OnboardStep::done(BTreeMap::from([(API_KEY.to_owned(), key.clone())]), None))
    }

    fn apply(&self, request: ApplyRequest, _host: &Host<'_>) -> Result<ApplyResponse, Error> {
        let key = the_key(&request.injected)?.expose();
        let style = Style::from_parameters(&request.parameters)?;
        let mut response = ApplyResponse::default();
        match style {
            Style::Header { name } => response.headers.push((name, Secret::new(key))),
            Style::Bearer => {
                response.headers.push(("Authorization".into(), format!("Bearer {key}").into()))
            }
            Style::BasicUser => {
                let value = format!("Basic {}", base64_encode(format!("{key}:").as_bytes()));
                response.headers.push(("Authorization".into(), value.into()));
            }
            Style::BasicPassword { user } => {
                let value = format!("Basic {}", base64_encode(format!("{user}:{key}").as_bytes()));
                response.headers.push(("Authorization".into(), value.into()));
            }
            Style::Query { name } => response.query.push((name, Secret::new(key))),
        }
        Ok(response)
    }
}

fn the_key(secrets: &BTreeMap<String, Secret>) -> Result<&Secret, Error> {
    secrets.get(API_KEY).filter(|k| !k.expose().trim().is_empty()).ok_or_else(|| {
        Error::new(ErrorCode::InvalidInput, "the secret `api_key` is missing or empty")
    })
}

/// Where the key goes in an outbound request, from the `style` parameter of `apply`.
#[derive(Debug, Clone, PartialEq)]
pub enum Style {
    /// `style: "header"`: the raw key in header `name` (default `Authorization`, as Wix does).
    Header { name: String },
    /// `style: "bearer"`: `Authorization: Bearer <key>`.
    Bearer,
    /// `style: "basic_user"`: HTTP Basic with the key as user and an empty password.
    BasicUser,
    /// `style: "basic_password"`: HTTP Basic with parameter `user` as user, the key as password.
    BasicPassword { user: String },
    /// `style: "query"`: query parameter `name` (default `api_key`).
    Query { name: String },
}

impl Style {
    fn from_parameters(parameters: &BTreeMap<String, serde_json::Value>) -> Result<Self, Error> {
        let text = |key: &str| parameters.get(key).and_then(|v| v.as_str());
        let name = |default: &str| text("name").unwrap_or(default).to_owned();
        match text("style").unwrap_or("header") {
            "header" => Ok(Style::Header { name: name("Authorization") }),
            "bearer" => Ok(Style::Bearer),
            "basic_user" => Ok(Style::BasicUser),
            "basic_password" => match text("user") {
                Some(user) => Ok(Style::BasicPassword { user: user.to_owned() }),
                None => Err(Error::new(
                    ErrorCode::InvalidInput,
                    "style `basic_password` needs the parameter `user`",
                )),
            },
            "query" => Ok(Style::Query { name: name(API_KEY) }),
            other => Err(Error::new(
                ErrorCode::InvalidInput,
                format!(
                    "unknown style {other:?}: use header, bearer, basic_user, basic_password or query"
                ),
            )),
        }
    }
}

authplug_sdk::register_scheme!(ApiKey);
authplug_sdk::export_plugin!();

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_host(_: &str, _: &str) -> Result<String, String> {
        panic!("the API key scheme never calls the host")
    }

    fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
        pairs.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect()
    }

    fn onboard(required: &[(&str, &str)]) -> Result<OnboardStep, Error> {
        let request =
            OnboardRequest { scheme: ID.into(), required: secrets(required), ..Default::default() };
        ApiKey.onboard(request, &Host::new(&no_host))
    }

    fn apply(parameters: serde_json::Value) -> Result<ApplyResponse, Error> {
        let request = ApplyRequest {
            scheme: ID.into(),
            injected: secrets(&[("api_key", "k-1")]),
            parameters: serde_json::from_value(parameters).unwrap(),
        };
        ApiKey.apply(request, &Host::new(&no_host))
    }

    fn exposed(pairs: &[(String, Secret)]) -> Vec<(&str, &str)> {
        pairs.iter().map(|(k, v)| (k.as_str(), v.expose())).collect()
    }

    #[test]
    fn injects_the_supplied_key_unchanged() {
        let OnboardStep::Done { injected, expires_at, .. } =
            onboard(&[("api_key", "k-123")]).unwrap()
        else {
            panic!("one step")
        };
        assert_eq!(injected.len(), 1);
        assert_eq!(injected["api_key"].expose(), "k-123");
        assert_eq!(expires_at, None);
    }

    #[test]
    fn a_missing_or_blank_key_is_a_clear_error() {
        for required in [&[][..], &[("api_key", "  ")][..]] {
            let error = onboard(required).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidInput);
            assert!(error.message.contains("`api_key`"), "{}", error.message);
        }
    }

    #[test]
    fn applies_the_shapes_real_templates_use() {
        let headers = |p| {
            exposed(&apply(p).unwrap().headers)
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(headers(json!({})), ["Authorization: k-1"]);
        assert_eq!(headers(json!({"style": "header", "name": "tb-key"})), ["tb-key: k-1"]);
        assert_eq!(headers(json!({"style": "bearer"})), ["Authorization: Bearer k-1"]);
        // base64("k-1:") and base64("ck_user:k-1")
        assert_eq!(headers(json!({"style": "basic_user"})), ["Authorization: Basic ay0xOg=="]);
        assert_eq!(
            headers(json!({"style": "basic_password", "user": "ck_user"})),
            ["Authorization: Basic Y2tfdXNlcjprLTE="]
        );
        let query = apply(json!({"style": "query", "name": "key"})).unwrap();
        assert_eq!(exposed(&query.query), [("key", "k-1")]);
    }

    #[test]
    fn an_unknown_style_or_missing_user_is_a_clear_error() {
        assert!(apply(json!({"style": "cookie"})).unwrap_err().message.contains("unknown style"));
        let error = apply(json!({"style": "basic_password"})).unwrap_err();
        assert!(error.message.contains("`user`"));
    }

    #[test]
    fn is_registered_for_static_linking() {
        assert!(authplug_sdk::registered().any(|r| r.scheme.descriptor().id == ID));
    }

    #[test]
    fn dispatch_serves_it_through_the_protocol() {
        let request = r#"{"scheme":"api_key","required":{"api_key":"v"}}"#;
        let answer = authplug_sdk::dispatch("onboard", request, &Host::new(&no_host)).unwrap();
        assert_eq!(answer, r#"{"step":"done","injected":{"api_key":"v"}}"#);
        let error = authplug_sdk::dispatch("nope", "{}", &Host::new(&no_host)).unwrap_err();
        assert!(error.contains("unknown_method"));
    }
}
