//! The HTTP messages of the host's `http` callback: what a scheme asks the host to send, and what
//! came back. Bodies travel as base64 so that any bytes survive JSON.

use serde::{Deserialize, Serialize};

/// Input of the [`host_method::HTTP`](crate::host_method::HTTP) callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, with = "base64_bytes")]
    pub body: Vec<u8>,
}

/// Output of the [`host_method::HTTP`](crate::host_method::HTTP) callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, with = "base64_bytes")]
    pub body: Vec<u8>,
}

/// Standard base64 with padding, for schemes that build HTTP Basic credentials.
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Bodies travel as base64 so that any bytes survive JSON.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
