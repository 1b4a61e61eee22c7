//! A secret value in a message: serialised as a plain string (it has to cross the boundary), but
//! never printed by `Debug` or `Display`, and wiped from memory when dropped.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A confidential string. Read it with [`Secret::expose`], on purpose and as late as possible.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The value itself. Callers must not log or return it unless explicitly asked to.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("hunter2-value");
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
        assert!(!format!("{:?}", Some(&secret)).contains("hunter2"));
    }

    #[test]
    fn serialises_as_a_plain_string() {
        let secret = Secret::new("v");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"v\"");
        let back: Secret = serde_json::from_str("\"v\"").unwrap();
        assert_eq!(back.expose(), "v");
    }
}
