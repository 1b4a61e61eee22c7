//! Verification (since 1.6): a cheap request that tells whether a stored credential works, what
//! n8n calls a credential test. A scheme declares one in its descriptor
//! ([`crate::SchemeDescriptor::verify`]); a connector may declare its own in its manifest, which
//! wins. The host sends it with the system's credentials applied by the scheme's `apply`, and
//! judges the answer by its status alone: 2xx verified, 401 or 403 refused, anything else failed.
//! No plugin is called to verify: this is plain data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A verification request. `{name}` in [`url`](Self::url) is a placeholder for the system's
/// parameter `name` (a manifest field under its last segment, such as `base_url`, or an
/// onboarding output, such as `account_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// The HTTP method; `GET` when absent. Only [`SAFE_METHODS`] are sent: a verification must
    /// change nothing at the provider.
    #[serde(default = "get")]
    pub method: String,
    /// The URL, e.g. `{base_url}/v2/token/session/>whoAmI`. A scheme's is absolute once its
    /// placeholders are filled; a connector's may be relative, to its system template's
    /// `url_pattern` (as the template's operations are).
    pub url: String,
    /// A placeholder's value when the system has no such parameter (the scheme's own default,
    /// e.g. PowerOffice's production `base_url`). A placeholder with neither makes the
    /// verification unavailable for that system, said as such.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defaults: BTreeMap<String, String>,
}

/// The methods a verification may use (RFC 9110's safe methods that carry no body).
pub const SAFE_METHODS: &[&str] = &["GET", "HEAD"];

fn get() -> String {
    "GET".to_owned()
}

impl VerifyRequest {
    /// `GET url`.
    pub fn get(url: &str) -> Self {
        Self { method: get(), url: url.to_owned(), defaults: BTreeMap::new() }
    }

    /// The same request, with `value` for the placeholder `name` when the system has none.
    pub fn with_default(mut self, name: &str, value: &str) -> Self {
        self.defaults.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The placeholders of the URL, in order; an unclosed `{` or an empty or nested name is an
    /// error naming it.
    pub fn placeholders(&self) -> Result<Vec<&str>, String> {
        let mut names = Vec::new();
        let mut rest = self.url.as_str();
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(format!("a '}}' without its '{{' in {:?}", self.url));
            }
            let after = &rest[open + 1..];
            let close =
                after.find('}').ok_or_else(|| format!("an unclosed '{{' in {:?}", self.url))?;
            let name = &after[..close];
            let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
            if name.is_empty() || !name.chars().all(plain) {
                return Err(format!("{{{name}}} in {:?} is not a parameter name", self.url));
            }
            names.push(name);
            rest = &after[close + 1..];
        }
        Ok(names)
    }

    /// Whether the method is one of [`SAFE_METHODS`].
    pub fn is_safe(&self) -> bool {
        SAFE_METHODS.contains(&self.method.as_str())
    }

    /// The URL with each placeholder replaced by `lookup(name)` as written, else by its default,
    /// in one pass (a value is never read for placeholders of its own); a value ending in `/`
    /// before a `/` of the URL gives one slash. `Err(Unfilled)` names the first placeholder that
    /// has neither (or the malformed URL).
    pub fn fill(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<String, Unfilled> {
        self.placeholders().map_err(Unfilled::Malformed)?;
        let mut url = String::with_capacity(self.url.len());
        let mut rest = self.url.as_str();
        while let Some(open) = rest.find('{') {
            url.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            // placeholders() has checked that every '{' closes.
            let close = after.find('}').unwrap_or(after.len());
            let name = &after[..close];
            let value = lookup(name)
                .or_else(|| self.defaults.get(name).cloned())
                .ok_or_else(|| Unfilled::Missing(name.to_owned()))?;
            rest = after.get(close + 1..).unwrap_or("");
            let value = match rest.starts_with('/') {
                true => value.trim_end_matches('/'),
                false => value.as_str(),
            };
            url.push_str(value);
        }
        url.push_str(rest);
        Ok(url)
    }
}

/// A system parameter as a placeholder's text: a string as written, a number or boolean as
/// JSON; anything else (an object, a list, null) is no value.
pub fn parameter_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

/// Why [`VerifyRequest::fill`] could not fill a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfilled {
    /// The system has no parameter of this name, and the request no default for it.
    Missing(String),
    /// The URL's placeholders are malformed: the reason.
    Malformed(String),
}
