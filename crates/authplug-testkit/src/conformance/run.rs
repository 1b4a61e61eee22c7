//! The calls behind the rules: a scheme onboarded, renewed under each fault, applied, with its
//! HTTP answered from the exercise and every message it says kept for the secrets rule.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Once;

use authplug_protocol::{
    host_method, method, ApplyRequest, ApplyResponse, ErrorBody, ErrorCode, HttpRequest,
    HttpResponse, OnboardRequest, OnboardStep, ProtocolVersion, RefreshOutcome, RefreshRequest,
    Resume, SchemeDescriptor, Secret, Source,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::rules::{self, Problem};
use super::{Exercise, Exercises, Finding, Network, Plugin, Report, Verdict};

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread's panics kept off stderr (a panic message may hold a secret).
pub(crate) fn quiet_panics<T>(f: impl FnOnce() -> T) -> T {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let out = f();
    QUIET.with(|q| q.set(false));
    out
}

/// How the provider misbehaves for one call.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Status(u16),
    Timeout,
    Truncated,
}

/// The host side of one call: the provider's answers, and what went unanswered.
struct Wire<'a> {
    exercise: &'a Exercise,
    network: Option<&'a Network<'a>>,
    fault: Option<Fault>,
    requests: Cell<usize>,
    unanswered: RefCell<Vec<String>>,
}

impl<'a> Wire<'a> {
    fn new(exercise: &'a Exercise, network: Option<&'a Network<'a>>, fault: Option<Fault>) -> Self {
        Self { exercise, network, fault, requests: Cell::new(0), unanswered: RefCell::default() }
    }

    fn http(&self, request: &HttpRequest) -> Result<HttpResponse, ErrorBody> {
        self.requests.set(self.requests.get() + 1);
        match self.fault {
            Some(Fault::Status(status)) => {
                let headers =
                    if status == 429 { vec![("Retry-After".into(), "7".into())] } else { vec![] };
                let body = br#"{"error":"kit_fault","error_description":"answered by the conformance kit"}"#;
                return Ok(HttpResponse { status, headers, body: body.to_vec() });
            }
            Some(Fault::Timeout) => {
                return Err(ErrorBody::new(
                    ErrorCode::Http,
                    "the request timed out (the conformance kit)",
                ))
            }
            _ => {}
        }
        let mut answer = self.healthy(request)?;
        if let Some(Fault::Truncated) = self.fault {
            answer.body.truncate(answer.body.len() / 2);
        }
        Ok(answer)
    }

    fn healthy(&self, request: &HttpRequest) -> Result<HttpResponse, ErrorBody> {
        if let Some(answer) = self.exercise.recorded(request) {
            return Ok(answer);
        }
        if let (true, Some(network)) = (self.exercise.forward, self.network) {
            return network(request);
        }
        let path = url::Url::parse(&request.url).map(|u| u.path().to_owned()).unwrap_or_default();
        self.unanswered.borrow_mut().push(format!("{} {path}", request.method));
        Ok(HttpResponse { status: 404, headers: vec![], body: Vec::new() })
    }

    fn callback(&self, method: &str, request: &str) -> Result<String, String> {
        if method != host_method::HTTP {
            return Err(ErrorBody::new(ErrorCode::UnknownMethod, "no such host callback").to_json());
        }
        let request: HttpRequest = serde_json::from_str(request).map_err(|_| {
            ErrorBody::new(ErrorCode::InvalidInput, "malformed http request").to_json()
        })?;
        let answer = self.http(&request).map_err(|e| e.to_json())?;
        serde_json::to_string(&answer).map_err(|_| String::from("unserialisable"))
    }

    fn unanswered(&self) -> String {
        let list = self.unanswered.borrow();
        if list.is_empty() {
            String::new()
        } else {
            format!(" (no exchange answers {})", list.join(", "))
        }
    }
}

/// One scheme under test: its secrets, and everything it said.
struct Subject<'a> {
    plugin: &'a dyn Plugin,
    descriptor: &'a SchemeDescriptor,
    exercise: &'a Exercise,
    network: Option<&'a Network<'a>>,
    required: BTreeMap<String, Secret>,
    /// `(name, value)` of every secret of the run, for the secrets rule.
    secrets: Vec<(String, String)>,
    /// `(call, message)` of every error, reason and panic.
    said: Vec<(String, String)>,
    panics: Vec<(String, String)>,
}

/// A failed call: its error, as the plugin said it.
type Called<T> = Result<T, ErrorBody>;

impl Subject<'_> {
    fn call<Req: Serialize, Resp: DeserializeOwned>(
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
            self.said.push((method.to_owned(), error.message.clone()));
            if error.code == ErrorCode::PluginPanic {
                self.panics.push((method.to_owned(), error.message.clone()));
            }
        }
        outcome
    }

    fn remember(&mut self, injected: &BTreeMap<String, Secret>) {
        for (name, value) in injected {
            self.secrets.push((name.clone(), value.expose().to_owned()));
        }
    }

    /// `text` with every secret value replaced by its name.
    fn scrub(&self, text: &str) -> String {
        self.secrets
            .iter()
            .filter(|(_, v)| v.len() >= 8)
            .fold(text.to_owned(), |t, (n, v)| t.replace(v, &format!("[{n}]")))
    }

    fn onboard(
        &mut self,
        wire: &Wire<'_>,
    ) -> Result<(BTreeMap<String, Secret>, Option<i64>, BTreeMap<String, serde_json::Value>), Problem>
    {
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
                    return Ok((injected, expires_at, outputs))
                }
                Ok(OnboardStep::Redirect { url, state, continuation }) => {
                    self.secrets.push(("continuation".into(), continuation.expose().to_owned()));
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
    fn judge_onboarding(
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
fn expiry(expires_at: Option<i64>) -> Option<Problem> {
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

struct Findings {
    scheme: String,
    list: Vec<Finding>,
}

impl Findings {
    fn add(&mut self, rule: &'static str, verdict: Verdict) {
        self.list.push(Finding { scheme: self.scheme.clone(), rule, verdict });
    }

    fn check(&mut self, rule: &'static str, problem: Option<Problem>) {
        self.add(
            rule,
            match problem {
                None => Verdict::Pass,
                Some((problem, fix)) => Verdict::Fail { problem, fix },
            },
        );
    }

    fn skip(&mut self, rules: &[&'static str], why: &str) {
        for rule in rules {
            self.add(rule, Verdict::Skip(why.to_owned()));
        }
    }
}

const REFRESH_RULES: &[(&str, Fault)] = &[
    ("refresh.401", Fault::Status(401)),
    ("refresh.403", Fault::Status(403)),
    ("refresh.429", Fault::Status(429)),
    ("refresh.500", Fault::Status(500)),
    ("refresh.503", Fault::Status(503)),
    ("refresh.timeout", Fault::Timeout),
    ("refresh.truncated", Fault::Truncated),
];

pub(crate) fn run(
    plugin: &dyn Plugin,
    exercises: &Exercises,
    network: Option<&Network<'_>>,
) -> Report {
    let manifest = match plugin.manifest() {
        Ok(manifest) => manifest,
        Err(why) => {
            let verdict = Verdict::Fail {
                problem: format!("the plugin does not describe itself: {why}"),
                fix: "call authplug_sdk::export_plugin!() once".into(),
            };
            return Report {
                findings: vec![Finding { scheme: "plugin".into(), rule: "protocol", verdict }],
            };
        }
    };
    let mut report = Findings { scheme: manifest.plugin.name.clone(), list: Vec::new() };
    let accepted = ProtocolVersion::parse(&manifest.protocol)
        .map_err(|e| e.to_string())
        .and_then(|v| ProtocolVersion::current().accepts(v).map_err(|e| e.to_string()));
    report.check(
        "protocol",
        accepted
            .err()
            .map(|why| (why, "build against an authplug-sdk of this host's protocol major".into())),
    );
    if manifest.schemes.is_empty() {
        report.check(
            "descriptor",
            Some((
                "the plugin registers no scheme".into(),
                "call authplug_sdk::register_scheme!".into(),
            )),
        );
    }
    for id in exercises.schemes.keys().filter(|id| !manifest.schemes.iter().any(|d| &d.id == *id)) {
        report.check(
            "descriptor",
            Some((
                format!("the exercise names scheme {id:?}, which the plugin lacks"),
                "name a scheme the plugin registers".into(),
            )),
        );
    }
    let none = Exercise::default();
    for descriptor in &manifest.schemes {
        let exercise = exercises.schemes.get(&descriptor.id).unwrap_or(&none);
        report.list.extend(scheme(plugin, descriptor, exercise, network));
    }
    Report { findings: report.list }
}

fn scheme(
    plugin: &dyn Plugin,
    d: &SchemeDescriptor,
    exercise: &Exercise,
    network: Option<&Network<'_>>,
) -> Vec<Finding> {
    let mut out = Findings { scheme: d.id.clone(), list: Vec::new() };
    out.check("descriptor", rules::descriptor(d));
    out.check("docs", rules::docs(d));
    let mut required = BTreeMap::new();
    let mut secrets = Vec::new();
    for r in &d.required {
        let value =
            exercise.secrets.get(&r.name).cloned().unwrap_or_else(|| {
                format!("kit-sentinel-{}-{:08x}", r.name, rand::random::<u32>())
            });
        secrets.push((r.name.clone(), value.clone()));
        required.insert(r.name.clone(), Secret::new(value));
    }
    let mut s = Subject {
        plugin,
        descriptor: d,
        exercise,
        network,
        required,
        secrets,
        said: Vec::new(),
        panics: Vec::new(),
    };

    let healthy = Wire::new(exercise, network, None);
    let onboarded = s.onboard(&healthy);
    let later: Vec<&'static str> = ["onboard.refused", "refresh.renewed", "apply"]
        .into_iter()
        .chain(REFRESH_RULES.iter().map(|(r, _)| *r))
        .collect();
    match onboarded {
        Err(problem) => {
            out.check("onboard", Some(problem));
            out.skip(&later, "needs a completed onboarding");
        }
        Ok((injected, expires_at, outputs)) => {
            s.remember(&injected);
            out.check("onboard", s.judge_onboarding(&injected, expires_at, &outputs));
            if healthy.requests.get() == 0 {
                out.skip(&["onboard.refused"], "onboarding asks no provider");
            } else {
                let refused = Wire::new(exercise, network, Some(Fault::Status(401)));
                let problem = s.onboard(&refused).is_ok().then(|| {
                    (
                        "onboarding succeeded although the provider answered HTTP 401".to_owned(),
                        "check the provider's answer before injecting anything".to_owned(),
                    )
                });
                out.check("onboard.refused", problem);
            }
            refresh(&mut s, &mut out, &injected);
            apply(&mut s, &mut out, &injected);
        }
    }
    let panic = s.panics.first().map(|(call, message)| {
        (
            format!("`{call}` panicked: {}", s.scrub(message)),
            "return an Error instead (an unwrap, expect or index panicked)".to_owned(),
        )
    });
    out.check("no-panic", panic);
    let leak = s.said.iter().find_map(|(call, message)| {
        let (name, _) =
            s.secrets.iter().find(|(_, v)| v.len() >= 8 && message.contains(v.as_str()))?;
        Some((
            format!("an error from `{call}` holds the value of `{name}`: {}", s.scrub(message)),
            "never put a secret, a token or an address that carries one in an error".to_owned(),
        ))
    });
    out.check("secrets", leak);
    out.list
}

fn refresh(s: &mut Subject<'_>, out: &mut Findings, injected: &BTreeMap<String, Secret>) {
    let rules: Vec<&'static str> =
        std::iter::once("refresh.renewed").chain(REFRESH_RULES.iter().map(|(r, _)| *r)).collect();
    if !s.descriptor.refresh.renews {
        return out.skip(&rules, "the scheme does not renew");
    }
    let request = RefreshRequest {
        scheme: s.descriptor.id.clone(),
        required: s.required.clone(),
        injected: injected.clone(),
        parameters: s.exercise.parameters.clone(),
    };
    let healthy = Wire::new(s.exercise, s.network, None);
    let renewed = match s.call::<_, RefreshOutcome>(method::REFRESH, &request, &healthy) {
        Ok(RefreshOutcome::Renewed { injected, expires_at }) => {
            s.remember(&injected);
            s.judge_onboarding(&injected, expires_at, &BTreeMap::new())
        }
        Ok(other) => Some((
            format!(
                "a healthy provider's renewal answered {}{}",
                outcome_name(&other),
                healthy.unanswered()
            ),
            "describe the provider's renewal in the exercise, or fix the scheme".into(),
        )),
        Err(error) => Some((
            s.scrub(&format!("the renewal failed: {error}{}", healthy.unanswered())),
            "answer a RefreshOutcome for what the provider says".into(),
        )),
    };
    out.check("refresh.renewed", renewed);
    if healthy.requests.get() == 0 {
        return out.skip(&rules[1..], "the renewal asks no provider");
    }
    for (rule, fault) in REFRESH_RULES {
        let wire = Wire::new(s.exercise, s.network, Some(*fault));
        let outcome = s.call::<_, RefreshOutcome>(method::REFRESH, &request, &wire);
        let want_reauth = matches!(fault, Fault::Status(401 | 403));
        let problem = match outcome {
            Ok(RefreshOutcome::Reauthorize { reason }) if want_reauth => {
                s.said.push(("refresh".into(), reason));
                None
            }
            Ok(RefreshOutcome::Transient { reason, retry_after_secs }) if !want_reauth => {
                s.said.push(("refresh".into(), reason));
                match (fault, retry_after_secs) {
                    (Fault::Status(429), secs) if secs != Some(7) => Some((
                        "HTTP 429 with Retry-After: 7 gave no retry_after_secs of 7".into(),
                        "read Retry-After (authplug_sdk::provider::classify does)".into(),
                    )),
                    _ => None,
                }
            }
            Ok(other) => {
                let expected = if want_reauth { "reauthorize" } else { "transient" };
                Some((format!("{} classified as {}, not {expected}", describe(fault), outcome_name(&other)), "sort answers with authplug_sdk::provider::classify (401/403 reauthorize; 429, 5xx, timeouts, unreadable answers transient)".into()))
            }
            Err(error) => Some((
                s.scrub(&format!(
                    "{} gave an error instead of an outcome: {error}",
                    describe(fault)
                )),
                "turn provider failures into RefreshOutcome (Failure::into)".into(),
            )),
        };
        out.check(rule, problem);
    }
}

fn apply(s: &mut Subject<'_>, out: &mut Findings, injected: &BTreeMap<String, Secret>) {
    let request = ApplyRequest {
        scheme: s.descriptor.id.clone(),
        injected: injected.clone(),
        parameters: s.exercise.parameters.clone(),
    };
    let wire = Wire::new(s.exercise, s.network, None);
    match s.call::<_, ApplyResponse>(method::APPLY, &request, &wire) {
        Err(error) if error.code == ErrorCode::UnknownMethod => {
            out.skip(&["apply"], "the scheme does not apply credentials")
        }
        Err(error) if error.code == ErrorCode::PluginPanic => {
            out.check("apply", Some(("`apply` panicked".into(), "see no-panic".into())))
        }
        Err(error) => out.check(
            "apply",
            Some((
                s.scrub(&format!("apply failed: {error}{}", wire.unanswered())),
                "apply the injected secrets of a completed onboarding".into(),
            )),
        ),
        Ok(applied) => {
            let headers = applied.headers.iter().find_map(|(n, v)| rules::header(n, v.expose()));
            let query = applied.query.iter().any(|(n, _)| n.is_empty()).then(|| {
                (
                    "a query parameter has no name".to_owned(),
                    "name every query parameter".to_owned(),
                )
            });
            out.check("apply", headers.or(query));
        }
    }
}

fn describe(fault: &Fault) -> String {
    match fault {
        Fault::Status(status) => format!("HTTP {status}"),
        Fault::Timeout => "a timeout".into(),
        Fault::Truncated => "a truncated answer".into(),
    }
}

fn outcome_name(outcome: &RefreshOutcome) -> &'static str {
    match outcome {
        RefreshOutcome::Renewed { .. } => "renewed",
        RefreshOutcome::Reauthorize { .. } => "reauthorize",
        RefreshOutcome::Transient { .. } => "transient",
    }
}
