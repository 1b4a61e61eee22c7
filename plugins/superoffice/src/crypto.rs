//! The cryptography of SuperOffice's system-user flow: JWTs verified against the environment's
//! JWKS (RS256 pinned), the system-user token signed with the partner key, and the partner key
//! read from PEM or .NET RSA-XML.

use authplug_sdk::prelude::*;
use authplug_sdk::provider::Failure;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::{CLAIM, PARTNER_KEY};

/// Verifies a JWT's RS256 signature against the JWKS (the algorithm is pinned: a token claiming
/// any other is refused before any key is tried) and returns its claims.
pub(crate) fn verify<T: DeserializeOwned>(
    token: &str,
    keys: &JwkSet,
    audience: Option<&str>,
    what: &str,
) -> Result<T, Failure> {
    let refused = |why: &str| Failure::Refused(format!("the {what} {why}"));
    let header = jsonwebtoken::decode_header(token).map_err(|_| refused("is not a JWT"))?;
    if header.alg != Algorithm::RS256 {
        return Err(refused(&format!("is signed with {:?}, not RS256", header.alg)));
    }
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or_else(|| refused("is signed by a key the environment's JWKS does not publish"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| refused("names an unusable JWKS key"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 60;
    validation.required_spec_claims.clear();
    match audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    jsonwebtoken::decode::<T>(token, &key, &validation).map(|data| data.claims).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => refused("is not signed by the environment's key"),
            ErrorKind::ExpiredSignature => refused("has expired"),
            ErrorKind::InvalidAudience => refused("was issued to another client"),
            ErrorKind::Json(_) => refused(&format!("lacks the {CLAIM}... claims it must carry")),
            _ => refused("does not verify"),
        }
    })
}

/// `SignedSystemToken`: `system_token.yyyyMMddHHmm.base64(RSA-SHA256(system_token.yyyyMMddHHmm))`.
pub(crate) fn sign(system_token: &str, key: &RsaPrivateKey, now: i64) -> Result<String, Failure> {
    let time = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default().format("%Y%m%d%H%M");
    let data = format!("{system_token}.{time}");
    let signature = key
        .sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(data.as_bytes()))
        .map_err(|_| Failure::Refused("the partner key could not sign".into()))?;
    Ok(format!("{data}.{}", STANDARD.encode(signature)))
}

/// The partner key: PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`) or .NET RSA-XML.
pub(crate) fn partner_key(text: &str) -> Result<RsaPrivateKey, Error> {
    let invalid = |why: String| {
        Error::new(ErrorCode::InvalidInput, format!("the secret `{PARTNER_KEY}` {why}"))
    };
    let text = text.trim();
    let key = if text.starts_with("<RSAKeyValue>") {
        dotnet_xml_key(text).map_err(invalid)?
    } else if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs1_pem(text)
            .map_err(|_| invalid("is not a readable PKCS#1 PEM RSA key".into()))?
    } else if text.contains("-----BEGIN PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs8_pem(text)
            .map_err(|_| invalid("is not a readable PKCS#8 PEM RSA key".into()))?
    } else {
        return Err(invalid(
            "is neither a PEM private key nor .NET RSA-XML (<RSAKeyValue>)".into(),
        ));
    };
    key.validate().map_err(|_| invalid("is not a consistent RSA key".into()))?;
    Ok(key)
}

/// `<RSAKeyValue><Modulus>..</Modulus><Exponent>..</Exponent><P>..</P><Q>..</Q>..<D>..</D>`,
/// each element big-endian base64, as .NET's `RSA.ToXmlString(true)` writes it.
fn dotnet_xml_key(xml: &str) -> Result<RsaPrivateKey, String> {
    let number = |tag: &str| -> Result<BigUint, String> {
        let open = format!("<{tag}>");
        let start = xml.find(&open).ok_or_else(|| format!("lacks the <{tag}> element"))?;
        let rest = &xml[start + open.len()..];
        let end = rest.find(&format!("</{tag}>")).ok_or_else(|| format!("never closes <{tag}>"))?;
        let text: String = rest[..end].chars().filter(|c| !c.is_whitespace()).collect();
        let bytes =
            STANDARD.decode(text).map_err(|_| format!("has a <{tag}> that is not base64"))?;
        Ok(BigUint::from_bytes_be(&bytes))
    };
    RsaPrivateKey::from_components(
        number("Modulus")?,
        number("Exponent")?,
        number("D")?,
        vec![number("P")?, number("Q")?],
    )
    .map_err(|_| "is not a consistent RSA key".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RsaPrivateKey {
        RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap()
    }

    #[test]
    fn signs_the_system_token_with_the_minute_in_utc() {
        let key = key();
        // 2026-11-28 10:42:59 UTC.
        let signed = sign("SYS-TOKEN", &key, 1_795_862_579).unwrap_or_else(|_| panic!("signs"));
        let (data, signature) = signed.rsplit_once('.').unwrap();
        assert_eq!(data, "SYS-TOKEN.202611281042");
        let signature = STANDARD.decode(signature).unwrap();
        key.to_public_key()
            .verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(data.as_bytes()), &signature)
            .unwrap();
    }

    #[test]
    fn reads_pem_and_dotnet_xml_keys_alike() {
        use rsa::pkcs8::EncodePrivateKey;
        use rsa::traits::{PrivateKeyParts, PublicKeyParts};
        let key = key();
        let pem = key.to_pkcs8_pem(Default::default()).unwrap();
        assert_eq!(partner_key(&pem).unwrap(), key);
        let b64 = |n: &BigUint| STANDARD.encode(n.to_bytes_be());
        let xml = format!(
            "<RSAKeyValue><Modulus>{}</Modulus><Exponent>{}</Exponent><P>{}</P><Q>{}</Q>\
             <DP>x</DP><DQ>y</DQ><InverseQ>z</InverseQ><D>{}</D></RSAKeyValue>",
            b64(key.n()),
            b64(key.e()),
            b64(&key.primes()[0]),
            b64(&key.primes()[1]),
            b64(key.d()),
        );
        assert_eq!(partner_key(&xml).unwrap(), key);
    }

    #[test]
    fn only_rs256_tokens_are_considered() {
        let header = jsonwebtoken::Header::new(Algorithm::HS256);
        let key = jsonwebtoken::EncodingKey::from_secret(b"a shared secret");
        let token = jsonwebtoken::encode(&header, &serde_json::json!({"exp": 1}), &key).unwrap();
        let keys = JwkSet { keys: vec![] };
        let Err(Failure::Refused(reason)) =
            verify::<serde_json::Value>(&token, &keys, None, "id_token")
        else {
            panic!("refused")
        };
        assert_eq!(reason, "the id_token is signed with HS256, not RS256");
    }

    #[test]
    fn unreadable_keys_are_named_without_their_content() {
        for (text, why) in [
            ("not a key at all", "neither a PEM"),
            ("-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----", "PKCS#1"),
            ("<RSAKeyValue><Modulus>AQAB</Modulus></RSAKeyValue>", "lacks the <Exponent>"),
        ] {
            let error = partner_key(text).unwrap_err();
            assert!(error.message.contains(PARTNER_KEY) && error.message.contains(why), "{error}");
            assert!(!error.message.contains("c2VjcmV0"));
        }
    }
}
