//! What every provider scheme repeats: calling the provider through the host, sorting its
//! answer into "worked", "authorise again" and "try later", and reading its JSON.
//!
//! ```
//! use authplug_sdk::provider::{self, Failure};
//! use authplug_sdk::{HttpRequest, HttpResponse};
//!
//! let answer = |status: u16| HttpResponse { status, headers: vec![], body: vec![] };
//! assert!(provider::classify(&answer(200), "MemberCare").is_ok());
//! assert!(matches!(provider::classify(&answer(401), "MemberCare"), Err(Failure::Refused(_))));
//! let busy = HttpResponse { headers: vec![("Retry-After".into(), "30".into())], ..answer(429) };
//! assert_eq!(
//!     provider::classify(&busy, "MemberCare"),
//!     Err(Failure::Transient { reason: "MemberCare answered HTTP 429".into(), retry_after_secs: Some(30) })
//! );
//! ```
//!
//! The rule, the same for every scheme (and what `authplug schemes test` holds a scheme to):
//!
//! | answer | [`Failure`] | onboarding shows | refresh reports |
//! |---|---|---|---|
//! | 2xx | none | | |
//! | 408, 425, 429, 5xx | `Transient`, with `Retry-After` | `http` error | `transient` |
//! | any other (401, 403, 400, 404, a redirect) | `Refused` | `provider` error | `reauthorize` |
//! | no answer (timeout, refused connection) | `Transient` | `http` error | `transient` |
//! | an answer that does not parse (truncated, an error page) | `Transient` | `http` error | `transient` |
//!
//! Reasons name the provider and the status, never a body or a URL: a provider's message may
//! echo a credential, and an address may carry one in its query.

use serde::de::DeserializeOwned;

use crate::{Error, ErrorCode, Host, HttpRequest, HttpResponse, RefreshOutcome};

/// A provider call that did not give what the scheme wanted, sorted by what should happen next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The provider refused the credentials: a human must authorise again.
    Refused(String),
    /// Try again later, after `retry_after_secs` if the provider said.
    Transient { reason: String, retry_after_secs: Option<u64> },
}

impl Failure {
    /// A transient failure without a retry hint.
    pub fn transient(reason: impl Into<String>) -> Self {
        Failure::Transient { reason: reason.into(), retry_after_secs: None }
    }

    /// The same failure with `hint` (what the user should check) after a refusal's reason.
    pub fn hint(self, hint: &str) -> Self {
        match self {
            Failure::Refused(reason) => Failure::Refused(format!("{reason}; {hint}")),
            transient => transient,
        }
    }
}

/// Onboarding's error: a refusal is the provider's (`provider`), the rest the way there
/// (`http`).
impl From<Failure> for Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Refused(reason) => Error::new(ErrorCode::Provider, reason),
            Failure::Transient { reason, .. } => Error::new(ErrorCode::Http, reason),
        }
    }
}

/// Refresh's outcome.
impl From<Failure> for RefreshOutcome {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Refused(reason) => RefreshOutcome::Reauthorize { reason },
            Failure::Transient { reason, retry_after_secs } => {
                RefreshOutcome::Transient { reason, retry_after_secs }
            }
        }
    }
}

/// Sorts an answer of `provider` (its name, for reasons) by the rule above.
pub fn classify(response: &HttpResponse, provider: &str) -> Result<(), Failure> {
    let status = response.status;
    if (200..300).contains(&status) {
        Ok(())
    } else if is_transient(status) {
        let reason = format!("{provider} answered HTTP {status}");
        Err(Failure::Transient { reason, retry_after_secs: retry_after(response) })
    } else {
        Err(Failure::Refused(format!("{provider} refused the credentials (HTTP {status})")))
    }
}

/// Whether an answer with `status` says "try later": 408, 425, 429 and 5xx.
pub fn is_transient(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500..=599)
}

/// One request to `provider` through the host, its answer sorted by [`classify`]. A request
/// that got no answer is transient; the host's reason never carries the address.
pub fn send(
    host: &Host<'_>,
    request: &HttpRequest,
    provider: &str,
) -> Result<HttpResponse, Failure> {
    let response = reach(host, request, provider)?;
    classify(&response, provider)?;
    Ok(response)
}

/// One request to `provider` through the host, whatever its answer's status (for schemes that
/// read a refusal's body). A request that got no answer (`http`: a timeout, a refused
/// connection, the host's policy) is transient; one the host could not make of the scheme's
/// request is refused. The host's reason names method and host, never the address's path or
/// query, and is kept.
pub fn reach(
    host: &Host<'_>,
    request: &HttpRequest,
    provider: &str,
) -> Result<HttpResponse, Failure> {
    host.http(request).map_err(|error| match error.code {
        ErrorCode::Http => Failure::transient(format!("{provider}: {}", error.message)),
        _ => {
            Failure::Refused(format!("{provider}: the host refused the request: {}", error.message))
        }
    })
}

/// The answer's body as `T`; one that does not parse (truncated, an HTML error page) is
/// transient.
pub fn json<T: DeserializeOwned>(response: &HttpResponse, provider: &str) -> Result<T, Failure> {
    serde_json::from_slice(&response.body).map_err(|_| {
        Failure::transient(format!(
            "{provider}'s answer is not readable (truncated or not the expected JSON)"
        ))
    })
}

/// `base` (a provider's address, e.g. the `base_url` parameter) with the path `segments` added,
/// each percent-encoded as one segment (an `account_id` holding `/` or `?` stays one), and
/// `query` percent-encoded. The error names `base` only: query values may be credentials.
///
/// ```
/// use authplug_sdk::provider::url;
/// let address = url("https://api.example/v2/", &["accounts", "a/b", "session"], &[("key", "a&b c")]);
/// assert_eq!(address.unwrap(), "https://api.example/v2/accounts/a%2Fb/session?key=a%26b+c");
/// assert!(url("https://api.example/?x=1", &["session"], &[]).is_err());
/// ```
pub fn url(base: &str, segments: &[&str], query: &[(&str, &str)]) -> Result<String, Error> {
    let invalid = |why: &str| {
        Error::new(ErrorCode::InvalidInput, format!("{base:?} is not a base address ({why})"))
    };
    let mut url = oauth2::url::Url::parse(base).map_err(|e| invalid(&e.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it has a query or a fragment"));
    }
    url.path_segments_mut()
        .map_err(|()| invalid("it cannot have a path"))?
        .pop_if_empty()
        .extend(segments);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url.into())
}

/// `Retry-After` in seconds: delta-seconds, or an HTTP date (RFC 9110 §10.2.3) from now.
pub fn retry_after(response: &HttpResponse) -> Option<u64> {
    let value = response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
        .map(|(_, value)| value.trim())?;
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    // IMF-fixdate (RFC 2822's form), or the obsolete RFC 850 and asctime forms, all in GMT.
    let dated = chrono::DateTime::parse_from_rfc2822(value).map(|t| t.timestamp()).ok();
    let at = dated.or_else(|| {
        ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(value, f).ok())
            .map(|t| t.and_utc().timestamp())
    })?;
    Some(at.saturating_sub(crate::expiry::now()).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> HttpResponse {
        let headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        HttpResponse { status, headers, body: b"{\"message\": \"token abc is wrong\"}".to_vec() }
    }

    #[test]
    fn every_status_is_sorted_by_the_rule_and_no_body_is_quoted() {
        for status in [200, 201, 204] {
            assert_eq!(classify(&answer(status, &[]), "P"), Ok(()));
        }
        for status in [400, 401, 403, 404, 302] {
            let failure = classify(&answer(status, &[]), "P").unwrap_err();
            assert!(matches!(&failure, Failure::Refused(r) if !r.contains("abc")), "{status}");
            assert!(matches!(RefreshOutcome::from(failure), RefreshOutcome::Reauthorize { .. }));
        }
        for status in [408, 425, 429, 500, 502, 503, 504] {
            let failure = classify(&answer(status, &[]), "P").unwrap_err();
            assert!(
                matches!(failure, Failure::Transient { retry_after_secs: None, .. }),
                "{status}"
            );
            assert_eq!(Error::from(failure).code, ErrorCode::Http);
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_as_a_date() {
        let busy = answer(503, &[("retry-after", "120")]);
        assert_eq!(retry_after(&busy), Some(120));
        let later = chrono::DateTime::from_timestamp(crate::expiry::now() + 600, 0).unwrap();
        let dated = answer(429, &[("Retry-After", &later.to_rfc2822())]);
        assert!((595..=600).contains(&retry_after(&dated).unwrap()));
        assert_eq!(retry_after(&answer(429, &[("Retry-After", "soon")])), None);
        let past = [("Retry-After", "Sunday, 06-Nov-94 08:49:37 GMT")];
        assert_eq!(retry_after(&answer(503, &past)), Some(0));
        let asctime = [("Retry-After", "Sun Nov  6 08:49:37 1994")];
        assert_eq!(retry_after(&answer(503, &asctime)), Some(0));
    }

    #[test]
    fn a_truncated_answer_is_transient_and_a_hint_follows_a_refusal_only() {
        let truncated = HttpResponse { status: 200, headers: vec![], body: b"{\"tok".to_vec() };
        let failure = json::<serde_json::Value>(&truncated, "P").unwrap_err();
        assert!(matches!(failure, Failure::Transient { .. }));
        assert_eq!(failure.clone().hint("check X"), failure);
        let refused = Failure::Refused("P refused".into()).hint("check X");
        assert_eq!(refused, Failure::Refused("P refused; check X".into()));
    }
}
