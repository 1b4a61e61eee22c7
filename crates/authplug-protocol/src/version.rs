//! The protocol's semver and the host's compatibility rule.

use std::fmt;

/// `major.minor.patch` of the protocol a plugin was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProtocolVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

/// Why a plugin's protocol version is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionError {
    Malformed(String),
    OtherMajor { plugin: ProtocolVersion, host: ProtocolVersion },
    NewerMinor { plugin: ProtocolVersion, host: ProtocolVersion },
}

impl ProtocolVersion {
    /// The version this crate defines.
    pub fn current() -> Self {
        Self::parse(crate::PROTOCOL_VERSION).expect("PROTOCOL_VERSION is a valid semver")
    }

    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let malformed = || VersionError::Malformed(text.chars().take(40).collect());
        let mut parts = text.trim().split('.').map(|p| p.parse::<u64>().map_err(|_| malformed()));
        let (major, minor, patch) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(major), Some(minor), Some(patch), None) => (major?, minor?, patch?),
            _ => return Err(malformed()),
        };
        Ok(Self { major, minor, patch })
    }

    /// Whether a host speaking `self` can load a plugin built against `plugin`: the same major, and
    /// a minor no newer than the host's (a newer plugin may rely on callbacks this host lacks).
    pub fn accepts(self, plugin: ProtocolVersion) -> Result<(), VersionError> {
        if plugin.major != self.major {
            Err(VersionError::OtherMajor { plugin, host: self })
        } else if plugin.minor > self.minor {
            Err(VersionError::NewerMinor { plugin, host: self })
        } else {
            Ok(())
        }
    }

    /// Whether this version has everything that `major.minor` introduced.
    pub fn has(self, (major, minor): (u64, u64)) -> bool {
        self.major == major && self.minor >= minor
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionError::Malformed(text) => write!(f, "malformed protocol version {text:?}"),
            VersionError::OtherMajor { plugin, host } => write!(
                f,
                "incompatible protocol: plugin speaks {plugin}, this host speaks {host} (major differs)"
            ),
            VersionError::NewerMinor { plugin, host } => write!(
                f,
                "plugin needs protocol {plugin}, this host speaks {host}: upgrade authplug"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> ProtocolVersion {
        ProtocolVersion::parse(text).unwrap()
    }

    #[test]
    fn same_major_older_or_equal_minor_is_accepted() {
        assert!(v("1.3.0").accepts(v("1.0.7")).is_ok());
        assert!(v("1.3.0").accepts(v("1.3.9")).is_ok());
    }

    #[test]
    fn other_major_or_newer_minor_is_refused() {
        assert!(matches!(v("1.3.0").accepts(v("2.0.0")), Err(VersionError::OtherMajor { .. })));
        assert!(matches!(v("2.0.0").accepts(v("1.9.0")), Err(VersionError::OtherMajor { .. })));
        assert!(matches!(v("1.3.0").accepts(v("1.4.0")), Err(VersionError::NewerMinor { .. })));
    }

    #[test]
    fn malformed_versions_are_errors() {
        for text in ["", "1", "1.2", "1.2.3.4", "a.b.c", "1.-2.0"] {
            assert!(ProtocolVersion::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn current_parses() {
        assert_eq!(ProtocolVersion::current().to_string(), crate::PROTOCOL_VERSION);
    }
}
