//! The rules over a plugin: each scheme onboarded, renewed under each fault, applied, and judged.

use std::collections::BTreeMap;

use authplug_protocol::{
    method, ApplyRequest, ApplyResponse, ErrorCode, ProtocolVersion, RefreshOutcome,
    RefreshRequest, SchemeDescriptor, Secret,
};

use super::rules::{self, Problem};
use super::subject::Subject;
use super::verify;
use super::wire::{Fault, Wire};
use super::{Exercise, Exercises, Finding, Network, Plugin, Report, Verdict};

pub(crate) struct Findings {
    scheme: String,
    list: Vec<Finding>,
}

impl Findings {
    fn add(&mut self, rule: &'static str, verdict: Verdict) {
        self.list.push(Finding { scheme: self.scheme.clone(), rule, verdict });
    }

    pub(crate) fn check(&mut self, rule: &'static str, problem: Option<Problem>) {
        self.add(
            rule,
            match problem {
                None => Verdict::Pass,
                Some((problem, fix)) => Verdict::Fail { problem, fix },
            },
        );
    }

    pub(crate) fn skip(&mut self, rules: &[&'static str], why: &str) {
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
        // A public input (a client id) may rightly be shown.
        if r.secret {
            secrets.push((r.name.clone(), value.clone()));
        }
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
    let later: Vec<&'static str> = ["onboard.refused", "refresh.renewed", "apply", "verify"]
        .into_iter()
        .chain(REFRESH_RULES.iter().map(|(r, _)| *r))
        .collect();
    match onboarded {
        Err(problem) => {
            out.check("onboard", Some(problem));
            out.skip(&later, "needs a completed onboarding");
        }
        Ok(done) => {
            let injected = done.injected;
            s.remember(&injected);
            out.check("onboard", s.judge_onboarding(&injected, done.expires_at, &done.outputs));
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
            let applied = apply(&mut s, &mut out, &injected);
            verify::rule(&mut s, &mut out, &done.outputs, applied.as_ref());
        }
    }
    let panic = s.panics.first().map(|(call, message)| {
        (
            format!("`{call}` panicked: {}", s.scrub(message)),
            "return an Error instead (an unwrap, expect or index panicked)".to_owned(),
        )
    });
    out.check("no-panic", panic);
    let leak = s.said.iter().find_map(|(what, message)| {
        let (name, _) =
            s.secrets.iter().find(|(_, v)| v.len() >= 8 && message.contains(v.as_str()))?;
        Some((
            format!("{what} holds the value of `{name}`: {}", s.scrub(message)),
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
    let renewal = s.call::<_, RefreshOutcome>(method::REFRESH, &request, &healthy);
    s.heard(&renewal);
    let renewed = match renewal {
        Ok(RefreshOutcome::Renewed { injected, expires_at }) => {
            s.remember(&injected);
            s.judge_onboarding(&injected, expires_at, &BTreeMap::new())
        }
        Ok(other) => Some((
            s.scrub(&format!(
                "a healthy provider's renewal answered {}{}",
                outcome_name(&other),
                healthy.unanswered()
            )),
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
        s.heard(&outcome);
        let want_reauth = matches!(fault, Fault::Status(401 | 403));
        let problem = match outcome {
            Ok(RefreshOutcome::Reauthorize { .. }) if want_reauth => None,
            Ok(RefreshOutcome::Transient { retry_after_secs, .. }) if !want_reauth => {
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

/// The `apply` rule; the answer, when there is one to judge further.
fn apply(
    s: &mut Subject<'_>,
    out: &mut Findings,
    injected: &BTreeMap<String, Secret>,
) -> Option<ApplyResponse> {
    let request = ApplyRequest {
        scheme: s.descriptor.id.clone(),
        injected: injected.clone(),
        parameters: s.exercise.parameters.clone(),
    };
    let wire = Wire::new(s.exercise, s.network, None);
    match s.call::<_, ApplyResponse>(method::APPLY, &request, &wire) {
        Err(error) if error.code == ErrorCode::UnknownMethod => {
            out.skip(&["apply"], "the scheme does not apply credentials");
            None
        }
        Err(error) if error.code == ErrorCode::PluginPanic => {
            out.check("apply", Some(("`apply` panicked".into(), "see no-panic".into())));
            None
        }
        Err(error) => {
            out.check(
                "apply",
                Some((
                    s.scrub(&format!("apply failed: {error}{}", wire.unanswered())),
                    "apply the injected secrets of a completed onboarding".into(),
                )),
            );
            None
        }
        Ok(applied) => {
            let headers = applied.headers.iter().find_map(|(n, v)| rules::header(n, v.expose()));
            let headers = headers.map(|(problem, fix)| (s.scrub(&problem), fix));
            let query = applied.query.iter().any(|(n, _)| n.is_empty()).then(|| {
                (
                    "a query parameter has no name".to_owned(),
                    "name every query parameter".to_owned(),
                )
            });
            let lifetime = rules::short_lived(s.descriptor, &s.required, &applied);
            out.check("apply", headers.or(query).or(lifetime));
            Some(applied)
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
        RefreshOutcome::Unchanged { .. } => "unchanged",
    }
}
