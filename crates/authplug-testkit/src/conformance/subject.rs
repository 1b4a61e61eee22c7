//! One scheme under test: the calls the rules make, with the kit's sentinels for its secrets,
//! and everything it said kept for the secrets rule.

use std::collections::BTreeMap;

use authplug_protocol::{
    method, ErrorBody, ErrorCode, HttpRequest, OnboardRequest, OnboardStep, Resume,
    SchemeDescriptor, Secret, Source,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::rules::Problem;
use super::wire::Wire;
use super::{Exercise, Network, Plugin};

/// What a completed onboarding gave.
pub(crate) struct Done {
    pub injected: BTreeMap<String, Secret>,
    pub expires_at: Option<i64>,
    pub outputs: BTreeMap<String, serde_json::Value>,
}

/// One scheme under test: its secrets, and everything it said.
pub(crate) struct Subject<'a> {
    pub plugin: &'a dyn Plugin,
    pub descriptor: &'a SchemeDescriptor,
    pub exercise: &'a Exercise,
    pub network: Option<&'a Network<'a>>,
    pub required: BTreeMap<String, Secret>,
    /// `(name, value)` of every secret of the run, for the secrets rule.
    pub secrets: Vec<(String, String)>,
    /// `(call, message)` of every error, reason and panic.
    pub said: Vec<(String, String)>,
    pub panics: Vec<(String, String)>,
}

/// A failed call: its error, as the plugin said it.
pub(crate) type Called<T> = Result<T, ErrorBody>;

impl Subject<'_> {
    pub(crate) fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        method: &str,
        request: &Req,
        wire: &Wire<'_>,
    ) -> Called<Resp> {
        let json = serde_json::to_string(request).expect("a request serialises");
        let host = |m: &str, r: &str| wire.callback(m, r);
        let answer = self.plugin.call(method, &json, &host);
        let outcome = match answer {
            Ok(text) => serde_json::from_str(&text).map_err(|_| {
                ErrorBody::new(
                    ErrorCode::ContractViolation,
                    format!("the `{method}` answer does not parse"),
                )
            }),
            Err(text) => Err(serde_json::from_str(&text)
                .unwrap_or_else(|_| ErrorBody::new(ErrorCode::Other, text))),
        };
        if let Err(error) = &outcome {
            self.said.push((format!("an error from `{method}`"), error.message.clone()));
            if error.code == ErrorCode::PluginPanic {
                self.panics.push((method.to_owned(), error.message.clone()));
            }
        }
        outcome
    }

    /// Keeps a refresh outcome's reason for the secrets rule.
    pub(crate) fn heard(&mut self, outcome: &Called<authplug_protocol::RefreshOutcome>) {
        use authplug_protocol::RefreshOutcome::{Reauthorize, Transient};
        if let Ok(Reauthorize { reason } | Transient { reason, .. }) = outcome {
            self.said.push(("a refresh reason".into(), reason.clone()));
        }
    }

    /// Keeps the injected values for the secrets rule, but copies of public inputs (a client id
    /// may rightly be shown).
    pub(crate) fn remember(&mut self, injected: &BTreeMap<String, Secret>) {
        let public: Vec<&str> = (self.descriptor.required.iter())
            .filter(|r| !r.secret)
            .filter_map(|r| self.required.get(&r.name).map(Secret::expose))
            .collect();
        let kept: Vec<(String, String)> = (injected.iter())
            .filter(|(_, value)| !public.contains(&value.expose()))
            .map(|(name, value)| (name.clone(), value.expose().to_owned()))
            .collect();
        self.secrets.extend(kept);
    }

    /// `text` with every secret value replaced by its name.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.secrets
            .iter()
            .filter(|(_, v)| v.len() >= 8)
            .fold(text.to_owned(), |t, (n, v)| t.replace(v, &format!("[{n}]")))
    }

    pub(crate) fn onboard(&mut self, wire: &Wire<'_>) -> Result<Done, Problem> {
        let mut request = OnboardRequest {
            scheme: self.descriptor.id.clone(),
            required: self.required.clone(),
            parameters: self.exercise.parameters.clone(),
            redirect_uri: Some("http://127.0.0.1:9/callback".into()),
            resume: None,
        };
        for _ in 0..4 {
            match self.call::<_, OnboardStep>(method::ONBOARD, &request, wire) {
                Err(error) => {
                    let problem = format!("onboarding failed: {error}{}", wire.unanswered());
                    return Err((self.scrub(&problem), "describe the provider in the exercise (parameters, exchanges), or fix the scheme".into()));
                }
                Ok(OnboardStep::Done { injected, expires_at, outputs }) => {
                    return Ok(Done { injected, expires_at, outputs })
                }
                Ok(OnboardStep::Redirect { url, state, continuation }) => {
                    self.secrets.push(("continuation".into(), continuation.expose().to_owned()));
                    self.said.push(("the consent address".into(), url.clone()));
                    if state.len() < 16
                        || !(url.starts_with("https://") || url.starts_with("http://"))
                    {
                        return Err(("a consent needs an http(s) address and a state of 16 or more characters".into(), "use authplug_sdk::oauth::AuthCodeFlow, or a random state".into()));
                    }
                    let callback = self.consent(&url, &state)?;
                    request.resume = Some(Resume { continuation, callback });
                }
            }
        }
        Err((
            "onboarding asked for more than 4 consents".into(),
            "finish within a few steps".into(),
        ))
    }

    /// The callback of a consent: made by the kit, or read from the provider's redirect.
    fn consent(&self, url: &str, state: &str) -> Result<BTreeMap<String, String>, Problem> {
        if !self.exercise.follow_consent {
            return Ok(BTreeMap::from([
                ("state".into(), state.into()),
                ("code".into(), "kit-consent-code".into()),
            ]));
        }
        let fail = |why: &str| {
            (
                format!("following the consent: {why}"),
                "make the fake consent at once, with a redirect to redirect_uri".to_owned(),
            )
        };
        let network = self.network.ok_or_else(|| fail("the kit was given no network"))?;
        let request =
            HttpRequest { method: "GET".into(), url: url.into(), headers: vec![], body: vec![] };
        let answer = network(&request).map_err(|e| fail(&e.message))?;
        let location = answer
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("location"))
            .map(|(_, v)| v.clone());
        let location = location.ok_or_else(|| fail("the answer has no Location"))?;
        let back =
            url::Url::parse(&location).map_err(|_| fail("the Location is not an address"))?;
        Ok(back.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    /// The onboarding's result against the contract.
    pub(crate) fn judge_onboarding(
        &self,
        injected: &BTreeMap<String, Secret>,
        expires_at: Option<i64>,
        outputs: &BTreeMap<String, serde_json::Value>,
    ) -> Option<Problem> {
        let declared: Vec<&str> =
            self.descriptor.injected.iter().map(|i| i.name.as_str()).collect();
        if let Some(extra) = injected.keys().find(|k| !declared.contains(&k.as_str())) {
            return Some((
                format!("injected `{extra}` was never declared"),
                "declare it in descriptor().injected, or stop injecting it".into(),
            ));
        }
        if let Some(missing) = declared.iter().find(|d| !injected.contains_key(**d)) {
            return Some((
                format!("declared `{missing}` was not injected"),
                "inject every declared secret".into(),
            ));
        }
        for secret in &self.descriptor.injected {
            if let Source::Copied { from } = &secret.source {
                if injected[&secret.name].expose()
                    != self.required.get(from).map(Secret::expose).unwrap_or_default()
                {
                    return Some((
                        format!(
                            "`{}` is declared a copy of `{from}` but differs from it",
                            secret.name
                        ),
                        "copy the value unchanged, or declare another Source".into(),
                    ));
                }
            }
        }
        if let Some(problem) = expiry(expires_at) {
            return Some(problem);
        }
        let text = serde_json::to_string(outputs).unwrap_or_default();
        let values = self
            .secrets
            .iter()
            .map(|(_, v)| v.as_str())
            .chain(injected.values().map(Secret::expose));
        if values.filter(|v| v.len() >= 8).any(|v| text.contains(v)) {
            return Some((
                "an onboarding output holds a secret value".into(),
                "outputs are shown and stored in the clear: keep secrets in injected".into(),
            ));
        }
        None
    }
}

/// `expires_at` is Unix seconds, and in the future.
pub(crate) fn expiry(expires_at: Option<i64>) -> Option<Problem> {
    let at = expires_at?;
    let now = authplug_sdk::expiry::now();
    if at > 100_000_000_000 {
        return Some((
            format!("expires_at {at} looks like milliseconds"),
            "give Unix seconds (authplug_sdk::expiry)".into(),
        ));
    }
    (at < now - 60).then(|| (format!("expires_at {at} is in the past"), "give when the credential lapses, in Unix seconds (authplug_sdk::expiry::after for expires_in)".into()))
}
