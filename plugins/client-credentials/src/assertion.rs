//! Client assertions (RFC 7523 §2.2, OpenID Connect's `private_key_jwt`): a JWT the client signs
//! with its private key, made fresh for each token request.
//!
//! The algorithm is pinned by the connector (`assertion_alg`, RS256 unless it says otherwise),
//! never read from the key or the provider; a key that does not fit it is refused by name. The
//! claims are the ones RFC 7523 §3 requires: `iss` and `sub` the client id, `aud` the token
//! endpoint, `exp` one minute ahead, `iat`, and a random `jti` (providers refuse a replay).

use authplug_sdk::oauth2::CsrfToken;
use authplug_sdk::prelude::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// How long an assertion is good for, in seconds.
const LIFETIME_SECS: i64 = 60;

/// The algorithms a connector may pin: RSA (PKCS#1 v1.5 and PSS) and ECDSA. HMAC is
/// `client_secret_jwt`, another method, and `none` is never one.
const ALGORITHMS: &[&str] =
    &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"];

/// A private key ready to sign assertions.
pub struct Signer {
    algorithm: Algorithm,
    key: EncodingKey,
    key_id: Option<String>,
    /// The secret the key came from, for errors.
    what: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorCode::InvalidInput, message)
}

impl Signer {
    /// Reads `pem` (the secret named `what`) as a private key for `algorithm` (`None`: RS256).
    /// Errors name the secret and the algorithm, never the key.
    pub fn new(
        pem: &str,
        algorithm: Option<&str>,
        key_id: Option<String>,
        what: &str,
    ) -> Result<Self, Error> {
        let name = algorithm.unwrap_or("RS256");
        if !ALGORITHMS.contains(&name) {
            return Err(invalid(format!(
                "assertion_alg {name:?} is not one of {}",
                ALGORITHMS.join(", ")
            )));
        }
        let algorithm: Algorithm = name.parse().expect("a listed algorithm");
        let (key, family) = if name.starts_with("ES") {
            (EncodingKey::from_ec_pem(pem.as_bytes()), "an EC private key in PKCS#8 PEM")
        } else {
            (EncodingKey::from_rsa_pem(pem.as_bytes()), "an RSA private key in PEM")
        };
        let key = key.map_err(|_| invalid(format!("{what} is not {family} (for {name})")))?;
        Ok(Self { algorithm, key, key_id, what: what.to_owned() })
    }

    /// A fresh assertion by `client_id` for the token endpoint `audience`. A key of the wrong
    /// curve or a damaged one parses but fails here, before anything is sent.
    pub fn assertion(&self, client_id: &str, audience: &str) -> Result<String, Error> {
        let now = authplug_sdk::expiry::now();
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "exp": now + LIFETIME_SECS,
            "jti": CsrfToken::new_random().secret(),
        });
        let mut header = Header::new(self.algorithm);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|_| {
            invalid(format!(
                "{} cannot sign with {:?} (another curve or size?)",
                self.what, self.algorithm
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-256 key made for this test only (`openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256`); it guards nothing.
    pub const TEST_EC_KEY: &str = include_str!("../conformance-key.pem");

    #[test]
    fn an_assertion_carries_the_claims_rfc_7523_requires() {
        let signer =
            Signer::new(TEST_EC_KEY, Some("ES256"), Some("k1".into()), "private_key").unwrap();
        let jwt = signer.assertion("app", "https://idp.example.test/token").unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::ES256, Some("k1")));
        let payload = jwt.split('.').nth(1).unwrap();
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(claims["iss"], "app");
        assert_eq!(claims["sub"], "app");
        assert_eq!(claims["aud"], "https://idp.example.test/token");
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 60);
        let again = signer.assertion("app", "https://idp.example.test/token").unwrap();
        assert_ne!(jwt, again, "a fresh jti each time");
    }

    #[test]
    fn a_key_that_does_not_fit_the_pinned_algorithm_is_refused_by_name() {
        let error = Signer::new(TEST_EC_KEY, None, None, "private_key").unwrap_err();
        assert_eq!(error.message, "private_key is not an RSA private key in PEM (for RS256)");
        let error = Signer::new("not a key", Some("ES256"), None, "private_key").unwrap_err();
        assert!(error.message.starts_with("private_key is not an EC private key"), "{error:?}");
        let error = Signer::new(TEST_EC_KEY, Some("HS256"), None, "private_key").unwrap_err();
        assert!(error.message.starts_with("assertion_alg \"HS256\" is not one of RS256"));
        let signer = Signer::new(TEST_EC_KEY, Some("ES384"), None, "private_key").unwrap();
        let error = signer.assertion("app", "https://idp.example.test/token").unwrap_err();
        assert!(error.message.contains("cannot sign with ES384"), "{error:?}");
        assert!(!format!("{error:?}").contains("PRIVATE KEY"));
    }
}
