//! The API key scheme, as the spec page describes it: the user supplies `api_key`, and the same
//! value is injected into the system unchanged. Nothing is contacted and nothing expires.
//!
//! Serves `auth: api_key` without a variant (PowerOffice Go, WooCommerce, Wix).

use std::collections::BTreeMap;

use authplug_sdk::prelude::*;

/// The scheme's id and the one secret it both requires and injects.
pub const ID: &str = "api_key";
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
            required: vec![RequiredSecret {
                name: API_KEY.into(),
                description: "The key used to authenticate the client.".into(),
                secret: true,
            }],
            injected: vec![InjectedSecret {
                name: API_KEY.into(),
                description: "The api key as provided in the connector configuration.".into(),
                value_type: ValueType::String,
            }],
        }
    }

    fn onboard(&self, request: OnboardRequest, _host: &Host<'_>) -> Result<OnboardStep, Error> {
        let key = request.required.get(API_KEY).filter(|k| !k.expose().trim().is_empty());
        let key = key.ok_or_else(|| {
            Error::new(ErrorCode::InvalidInput, "the required secret `api_key` is missing or empty")
        })?;
        Ok(OnboardStep::Done {
            injected: BTreeMap::from([(API_KEY.to_owned(), key.clone())]),
            expires_at: None,
        })
    }
}

authplug_sdk::register_scheme!(ApiKey);
authplug_sdk::export_plugin!();

#[cfg(test)]
mod tests {
    use super::*;

    fn no_host(_: &str, _: &str) -> Result<String, String> {
        panic!("the API key scheme never calls the host")
    }

    fn onboard(required: &[(&str, &str)]) -> Result<OnboardStep, Error> {
        let request = OnboardRequest {
            scheme: ID.into(),
            required: required.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect(),
            parameters: BTreeMap::new(),
        };
        ApiKey.onboard(request, &Host::new(&no_host))
    }

    #[test]
    fn injects_the_supplied_key_unchanged() {
        let OnboardStep::Done { injected, expires_at } = onboard(&[("api_key", "k-123")]).unwrap();
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
