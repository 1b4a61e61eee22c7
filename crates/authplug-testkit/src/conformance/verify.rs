//! The `verify` rule: a scheme's declared verification request (`SchemeDescriptor::verify`),
//! sent as the host sends it (placeholders filled from the system's parameters, else the
//! request's defaults; the credentials `apply` gave), must answer 2xx from a healthy provider.

use std::collections::BTreeMap;

use authplug_protocol::{parameter_text, ApplyResponse, HttpRequest, Unfilled, VerifyRequest};
use serde_json::Value;

use super::run::Findings;
use super::subject::Subject;
use super::wire::Wire;

/// The rule; `applied` is `apply`'s answer, `None` when it gave none to judge.
pub(crate) fn rule(
    s: &mut Subject<'_>,
    out: &mut Findings,
    outputs: &BTreeMap<String, Value>,
    applied: Option<&ApplyResponse>,
) {
    let Some(request) = &s.descriptor.verify else {
        return out.skip(&["verify"], "the scheme declares no verification request");
    };
    let Some(applied) = applied else {
        return out.skip(&["verify"], "needs a successful apply");
    };
    let problem = judge(s, request, outputs, applied);
    // Every problem scrubbed in one place: a URL filled from outputs may hold anything.
    out.check("verify", problem.map(|(problem, fix)| (s.scrub(&problem), fix)));
}

/// What is wrong with the verification, if anything: `(problem, fix)`.
fn judge(
    s: &Subject<'_>,
    request: &VerifyRequest,
    outputs: &BTreeMap<String, Value>,
    applied: &ApplyResponse,
) -> Option<(String, String)> {
    if !request.is_safe() {
        let problem = format!("the verification's method {:?} is not GET or HEAD", request.method);
        return Some((problem, "verify with a request that changes nothing".into()));
    }
    // The system's parameters: what was given, with onboarding's outputs over it.
    let lookup = |name: &str| {
        outputs.get(name).or_else(|| s.exercise.parameters.get(name)).and_then(parameter_text)
    };
    let url = match request.fill(lookup) {
        Ok(url) => url,
        Err(Unfilled::Missing(name)) => {
            let problem = format!(
                "the verification URL {} needs `{name}`, which neither the parameters nor \
                 onboarding's outputs give",
                request.url
            );
            let fix = "give it in the exercise's parameters, or a default \
                       (VerifyRequest::with_default), or declare the manifest field, or output \
                       it from onboarding";
            return Some((problem, fix.into()));
        }
        Err(Unfilled::Malformed(why)) => return Some((why, "write placeholders as {name}".into())),
    };
    let mut parsed = match url::Url::parse(&url) {
        Ok(parsed) => parsed,
        Err(e) => {
            let problem = format!("the verification URL {url:?} is not a URL ({e})");
            return Some((problem, "make it absolute: {base_url}/...".into()));
        }
    };
    for (name, value) in &applied.query {
        parsed.query_pairs_mut().append_pair(name, value.expose());
    }
    let sent = HttpRequest {
        method: request.method.clone(),
        url: parsed.into(),
        headers: applied.headers.iter().map(|(n, v)| (n.clone(), v.expose().to_owned())).collect(),
        body: Vec::new(),
    };
    let wire = Wire::new(s.exercise, s.network, None);
    match wire.http(&sent) {
        Ok(answer) if (200..300).contains(&answer.status) => None,
        Ok(answer) => Some((
            format!(
                "{} {url} answered HTTP {}{}",
                request.method,
                answer.status,
                wire.unanswered()
            ),
            "record the provider's answer to it in the exercise, or fix its URL".into(),
        )),
        Err(error) => Some((
            format!("{} {url} failed: {}", request.method, error.message),
            "record the provider's answer to it in the exercise".into(),
        )),
    }
}
