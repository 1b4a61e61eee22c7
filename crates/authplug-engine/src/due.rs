//! When a credential falls due: the scheme's margin (or the default) before expiry, never more
//! than half its lifetime, so that a short-lived token is not due from the moment it is issued;
//! and, with keep-alive, when an idle one should be refreshed anyway. Pure functions of the
//! stored times.

use std::time::Duration;

use authplug_protocol::SchemeDescriptor;
use authplug_store::SystemSummary;

/// How long before expiry a scheme's secrets are refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Margin(i64);

impl Margin {
    /// What `scheme` declares, or `default`.
    pub(crate) fn of(scheme: &SchemeDescriptor, default: Duration) -> Self {
        let secs = scheme.refresh.margin_secs.unwrap_or(default.as_secs());
        Self(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

impl Margin {
    pub(crate) fn secs(self) -> i64 {
        self.0
    }
}

/// When secrets expiring at `expires_at` and issued at `issued` become due (Unix seconds); never,
/// for secrets that do not expire. The store's formula, which indexes the same moment.
pub(crate) fn due_at(expires_at: Option<i64>, issued: i64, margin: Margin) -> Option<i64> {
    authplug_store::schedule::due_at(expires_at, issued, Some(margin.0))
}

/// Whether the system's secrets are due at `now` (Unix seconds).
pub(crate) fn is_due(summary: &SystemSummary, margin: Margin, now: i64) -> bool {
    due_at(summary.expires_at, summary.issued_at(), margin).is_some_and(|due| now >= due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use authplug_store::State;

    fn summary(
        created_at: i64,
        last_refresh_at: Option<i64>,
        expires_at: Option<i64>,
    ) -> SystemSummary {
        SystemSummary {
            id: "s".into(),
            scheme: "oauth2".into(),
            state: State::Active,
            state_reason: None,
            parameters: Default::default(),
            expires_at,
            version: 1,
            created_at,
            updated_at: created_at,
            last_refresh_at,
            failures: 0,
            secret_names: vec![],
            key_ids: vec![],
            due_at: None,
        }
    }

    #[test]
    fn secrets_fall_due_a_margin_before_expiry() {
        // Issued at 0, an hour to live, a five-minute margin: due at 55 minutes.
        let margin = Margin(300);
        assert_eq!(due_at(Some(3600), 0, margin), Some(3300));
        let s = summary(0, None, Some(3600));
        assert!(!is_due(&s, margin, 3299));
        assert!(is_due(&s, margin, 3300));
        assert!(is_due(&s, margin, 99_999), "expired is due too");
    }

    #[test]
    fn the_margin_is_at_most_half_the_lifetime() {
        // A 60-second token with a five-minute margin would be due the moment it is issued.
        assert_eq!(due_at(Some(1060), 1000, Margin(300)), Some(1030));
        // Issued after its expiry (a clock step): due at expiry, not before.
        assert_eq!(due_at(Some(1000), 2000, Margin(300)), Some(1000));
    }

    #[test]
    fn the_last_refresh_counts_as_issue_time() {
        let s = summary(0, Some(3000), Some(3600));
        // Lifetime 600 s from the refresh: half of it, 300 s, equals the margin.
        assert!(!is_due(&s, Margin(400), 3299));
        assert!(is_due(&s, Margin(400), 3300));
    }

    #[test]
    fn secrets_that_never_expire_are_never_due() {
        assert_eq!(due_at(None, 0, Margin(300)), None);
        assert!(!is_due(&summary(0, None, None), Margin(0), i64::MAX));
    }

    #[test]
    fn a_scheme_margin_overrides_the_default() {
        let mut descriptor = SchemeDescriptor::default();
        assert_eq!(Margin::of(&descriptor, Duration::from_secs(300)), Margin(300));
        descriptor.refresh.margin_secs = Some(60);
        assert_eq!(Margin::of(&descriptor, Duration::from_secs(300)), Margin(60));
    }
}
