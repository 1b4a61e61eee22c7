//! How the kit exercises a scheme: the parameters and secrets it is given, and the provider it
//! talks to (recorded answers, or a running fake reached through the network the kit is given).
//! The same shape is the `--exercise` file of `authplug schemes test`.

use std::collections::BTreeMap;

use authplug_protocol::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One scheme's exercise. Unknown fields are refused: a misspelt one would test nothing. Its
/// `Debug` names the secrets, never their values.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exercise {
    /// The parameters onboarding, refresh and apply receive (the manifest fields the scheme
    /// declares, under their last segment, and what the user gives), e.g. `base_url`.
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    /// Values for required secrets that must have a form (a PEM key). The others get the kit's
    /// sentinels, which must never show in an error.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// The provider's answers: a request gets the first whose method and path match.
    #[serde(default)]
    pub exchanges: Vec<Exchange>,
    /// Send requests no exchange answers to the network the kit was given (a fake provider
    /// running on loopback), instead of answering 404.
    #[serde(default)]
    pub forward: bool,
    /// Complete a consent (a redirect step) by fetching its address through the network and
    /// reading the callback from the answer's `Location` (a fake that consents at once). By
    /// default the kit makes the callback itself, with `state` and the code `kit-consent-code`.
    #[serde(default)]
    pub follow_consent: bool,
}

/// One recorded answer of the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    pub method: String,
    /// The request's path, without host or query, e.g. `/oauth/token`.
    pub path: String,
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body: JSON, or a JSON string sent as plain text.
    #[serde(default)]
    pub body: Value,
}

impl std::fmt::Debug for Exercise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exercise")
            .field("parameters", &self.parameters)
            .field("secrets", &self.secrets.keys())
            .field("exchanges", &self.exchanges.len())
            .field("forward", &self.forward)
            .field("follow_consent", &self.follow_consent)
            .finish()
    }
}

fn ok() -> u16 {
    200
}

impl Exercise {
    pub fn new() -> Self {
        Self::default()
    }

    /// A parameter the scheme receives.
    pub fn parameter(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.parameters.insert(name.to_owned(), value.into());
        self
    }

    /// A required secret's value, instead of a sentinel.
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The provider answers `method path` with `status` and the JSON `body`.
    pub fn answer(mut self, method: &str, path: &str, status: u16, body: Value) -> Self {
        self.exchanges.push(Exchange {
            method: method.to_owned(),
            path: path.to_owned(),
            status,
            headers: Vec::new(),
            body,
        });
        self
    }

    /// The recorded answer to `request`, if one matches.
    pub(crate) fn recorded(&self, request: &HttpRequest) -> Option<HttpResponse> {
        let path = url::Url::parse(&request.url).ok()?.path().to_owned();
        let exchange = self
            .exchanges
            .iter()
            .find(|e| e.method.eq_ignore_ascii_case(&request.method) && e.path == path)?;
        let (body, kind) = match &exchange.body {
            Value::String(text) => (text.clone().into_bytes(), "text/plain"),
            Value::Null => (Vec::new(), "text/plain"),
            json => (json.to_string().into_bytes(), "application/json"),
        };
        let mut headers = exchange.headers.clone();
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
            headers.push(("Content-Type".into(), kind.into()));
        }
        Some(HttpResponse { status: exchange.status, headers, body })
    }
}

/// The `--exercise` file: an exercise per scheme id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exercises {
    pub schemes: BTreeMap<String, Exercise>,
}
