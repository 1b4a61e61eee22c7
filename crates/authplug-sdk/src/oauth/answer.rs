//! A token endpoint's answer, read as RFC 6749 §5.1 has it and leniently where real providers
//! stray from it: `expires_in` sent as a string (`"3600"`) is taken as that many seconds.

use std::time::Duration;

use oauth2::basic::BasicTokenType;
use oauth2::{AccessToken, ExtraTokenFields, RefreshToken, Scope, StandardTokenResponse};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A token endpoint's answer, with the provider's extra fields `EF`
/// ([`oauth2::EmptyExtraTokenFields`] when there are none). Its `Debug` shows no token.
#[derive(Debug, Clone)]
pub struct TokenAnswer<EF: ExtraTokenFields>(StandardTokenResponse<EF, BasicTokenType>);

impl<EF: ExtraTokenFields> TokenAnswer<EF> {
    /// The provider's fields beyond RFC 6749's (an `id_token`, a tenant).
    pub fn extra_fields(&self) -> &EF {
        self.0.extra_fields()
    }
}

impl<'de, EF: ExtraTokenFields> Deserialize<'de> for TokenAnswer<EF> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut answer = serde_json::Value::deserialize(deserializer)?;
        if let Some(field) = answer.get_mut("expires_in") {
            if let serde_json::Value::String(text) = field {
                let seconds: u64 = text.trim().parse().map_err(|_| {
                    D::Error::custom("expires_in is neither a number nor a string of digits")
                })?;
                *field = seconds.into();
            }
        }
        serde_json::from_value(answer).map(Self).map_err(D::Error::custom)
    }
}

impl<EF: ExtraTokenFields> Serialize for TokenAnswer<EF> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<EF: ExtraTokenFields> oauth2::TokenResponse for TokenAnswer<EF> {
    type TokenType = BasicTokenType;

    fn access_token(&self) -> &AccessToken {
        self.0.access_token()
    }
    fn token_type(&self) -> &BasicTokenType {
        self.0.token_type()
    }
    fn expires_in(&self) -> Option<Duration> {
        self.0.expires_in()
    }
    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.0.refresh_token()
    }
    fn scopes(&self) -> Option<&Vec<Scope>> {
        self.0.scopes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth2::{EmptyExtraTokenFields, TokenResponse};

    fn read(json: &str) -> Result<TokenAnswer<EmptyExtraTokenFields>, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn expires_in_is_read_as_a_number_or_a_string_of_digits() {
        let number = read(r#"{"access_token":"a","token_type":"Bearer","expires_in":3600}"#);
        let text = read(r#"{"access_token":"a","token_type":"bearer","expires_in":"3600"}"#);
        for answer in [number.unwrap(), text.unwrap()] {
            assert_eq!(answer.expires_in(), Some(Duration::from_secs(3600)));
            assert_eq!(answer.access_token().secret(), "a");
        }
        let none = read(r#"{"access_token":"a","token_type":"bearer"}"#).unwrap();
        assert_eq!(none.expires_in(), None);
        let bad = read(r#"{"access_token":"a","token_type":"bearer","expires_in":"soon"}"#);
        assert!(bad.unwrap_err().to_string().contains("expires_in"));
    }

    #[test]
    fn its_debug_shows_no_token() {
        let answer = read(
            r#"{"access_token":"at-secret","token_type":"bearer","refresh_token":"rt-secret"}"#,
        )
        .unwrap();
        let shown = format!("{answer:?}");
        assert!(!shown.contains("at-secret") && !shown.contains("rt-secret"), "{shown}");
    }
}
