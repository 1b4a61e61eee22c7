//! A connector's own verification request (`"verify"` in `manifest.json`, authplug's
//! extension): where it goes for a stored system, and what `check` says of it.
//!
//! ```json
//! "verify": {"method": "GET", "url": "account-info/v3/details"}
//! ```
//!
//! A relative `url` is joined on the system template's `url_pattern`, as the template's
//! operations are; an absolute one must have the same scheme, host and port (the credentials go
//! where the connector's requests go, nowhere else). `{name}` placeholders are the system's
//! parameters (see [`VerifyRequest`](authplug_protocol::VerifyRequest)); the method is GET or
//! HEAD.

use std::collections::{BTreeMap, BTreeSet};

use authplug_protocol::{SchemeDescriptor, Unfilled, VerifyRequest};
use serde_json::Value;

use crate::check::{Severity, PLATFORM_VARIABLES};
use crate::manifest::Connector;
use crate::render::{expand, resolve, variables, Resolver};

/// The system's parameter `name` as a placeholder's text
/// ([`authplug_protocol::parameter_text`]).
pub fn parameter_text(parameters: &BTreeMap<String, Value>, name: &str) -> Option<String> {
    parameters.get(name).and_then(authplug_protocol::parameter_text)
}

/// The URL of `request` for the system `system`, whose parameters are `parameters`: its
/// placeholders filled, a relative one joined on the rendered `url_pattern` of the system
/// template. The URL must have the scheme, host and port of that `url_pattern`: the credentials
/// go where the connector's own requests go, nowhere else. The error is one line naming what
/// is wrong.
pub fn verify_url(
    connector: &Connector,
    request: &VerifyRequest,
    system: &str,
    parameters: &BTreeMap<String, Value>,
) -> Result<String, String> {
    if !request.is_safe() {
        return Err(unsafe_method(&request.method));
    }
    let filled = request.fill(|name| parameter_text(parameters, name)).map_err(|e| match e {
        Unfilled::Missing(name) => format!("verify.url: the system has no parameter {name}"),
        Unfilled::Malformed(why) => format!("verify.url: {why}"),
    })?;
    let pattern = url_pattern(connector, system, parameters)?;
    let url = if filled.starts_with("https://") || filled.starts_with("http://") {
        filled
    } else {
        pattern.replacen("%s", filled.trim_start_matches('/'), 1)
    };
    let origin = |text: &str, what: &str| {
        url::Url::parse(text)
            .map(|u| u.origin())
            .map_err(|e| format!("verify.url: {what} {text:?} is not a URL ({e})"))
    };
    let expected = origin(&pattern.replacen("%s", "", 1), "the url_pattern")?;
    if origin(&url, "the verification URL")? != expected {
        return Err(format!(
            "verify.url: {url:?} is not at the url_pattern's {}: a verification is sent only \
             where the connector's requests go",
            expected.ascii_serialization()
        ));
    }
    Ok(url)
}

fn unsafe_method(method: &str) -> String {
    format!(
        "verify.method {method:?} is not one a verification may send ({}): it must change \
         nothing at the provider",
        authplug_protocol::SAFE_METHODS.join(" or ")
    )
}

/// The system template's `url_pattern` for this system, its `{{@ @}}` and `$ENV` resolved
/// from the system's parameters.
fn url_pattern(
    connector: &Connector,
    system: &str,
    parameters: &BTreeMap<String, Value>,
) -> Result<String, String> {
    let template = connector.manifest.system_template.as_deref().ok_or_else(|| {
        "verify: the manifest has no system-template, whose url_pattern says where the \
         verification may go"
            .to_owned()
    })?;
    let text = connector.read_template(template).map_err(|e| e.to_string())?;
    let expanded =
        expand(template, &text, &variables(connector, system, None)).map_err(|e| e.to_string())?;
    // Only `url_pattern` is read, and no pattern holds a secret: secrets resolve to nothing.
    let secret = |_: &str| Some(String::new());
    let env = |name: &str| parameter_text(parameters, name);
    let resolver = Resolver { secret: &secret, env: &env };
    let (resolved, missing) = resolve(template, &expanded, &resolver).map_err(|e| e.to_string())?;
    let value: Value = serde_json::from_str(&resolved)
        .map_err(|e| format!("{template}: the rendered template is not JSON ({e})"))?;
    let pattern = value.get("url_pattern").and_then(Value::as_str).ok_or_else(|| {
        format!("verify: {template} has no url_pattern, which says where the verification may go")
    })?;
    if let Some(name) = missing.iter().find(|name| pattern.contains(&format!("$ENV({name})"))) {
        return Err(format!(
            "{template}: url_pattern needs {name}, which the system has no value for"
        ));
    }
    if !pattern.contains("%s") {
        return Err(format!("{template}: url_pattern {pattern:?} has no %s to put verify.url in"));
    }
    Ok(pattern.to_owned())
}

/// What `check` finds wrong with the manifest's `verify`: `(severity, code, dotted path,
/// message)`.
pub(crate) fn findings(
    connector: &Connector,
    scheme: Option<&SchemeDescriptor>,
) -> Vec<(Severity, &'static str, &'static str, String)> {
    let Some(request) = &connector.manifest.verify else { return Vec::new() };
    let mut found = Vec::new();
    let mut say = |severity, path, message| found.push((severity, "bad-verify", path, message));
    if !request.is_safe() {
        say(Severity::Error, "verify.method", unsafe_method(&request.method));
    }
    let names = match request.placeholders() {
        Ok(names) => names,
        Err(why) => {
            say(Severity::Error, "verify.url", format!("verify.url: {why}"));
            return found;
        }
    };
    let known: BTreeSet<&str> = connector
        .manifest
        .additional_parameters
        .keys()
        .map(String::as_str)
        .chain(PLATFORM_VARIABLES.iter().copied())
        .chain(scheme.iter().flat_map(|s| s.manifest_fields.iter().map(|f| f.parameter())))
        .chain(request.defaults.keys().map(String::as_str))
        .collect();
    // A scheme's onboarding outputs (a tenant's account_id) are parameters too, and no
    // descriptor lists them: an unknown name is a warning.
    for name in names.into_iter().filter(|name| !known.contains(name)) {
        say(
            Severity::Warning,
            "verify.url",
            format!(
                "verify.url: {{{name}}} is no parameter the manifest declares: unless the \
                 scheme's onboarding gives it, declare `{name}` in additional_parameters or give \
                 it in verify.defaults"
            ),
        );
    }
    if connector.manifest.system_template.is_none() {
        say(
            Severity::Error,
            "verify",
            "verify needs a system-template, whose url_pattern says where the verification may go"
                .into(),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(dir: &std::path::Path, verify: &str) -> Connector {
        std::fs::create_dir_all(dir.join("templates")).unwrap();
        let system = r#"{"_id": "{{@ system @}}", "url_pattern": "{{@ base_url @}}/v2/%s",
            "headers": {"Authorization": "$SECRET(token)"}}"#;
        std::fs::write(dir.join("templates/system.json"), system).unwrap();
        let manifest = format!(
            r#"{{"auth": "api_key", "system-template": "templates/system.json",
                "additional_parameters": {{"base_url": {{}}}}, "verify": {verify}}}"#
        );
        Connector::parse(dir, manifest).unwrap()
    }

    fn parameters(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn a_relative_url_is_joined_on_the_rendered_url_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let connector = connector(dir.path(), r#"{"url": "token/session/>whoAmI?fields={field}"}"#);
        let request = connector.manifest.verify.clone().unwrap();
        assert_eq!(request.method, "GET");
        let given = parameters(&[("base_url", "https://t.example".into()), ("field", 7.into())]);
        assert_eq!(
            verify_url(&connector, &request, "acme", &given).unwrap(),
            "https://t.example/v2/token/session/>whoAmI?fields=7"
        );
        let no_field = parameters(&[("base_url", "https://t.example".into())]);
        let error = verify_url(&connector, &request, "acme", &no_field).unwrap_err();
        assert_eq!(error, "verify.url: the system has no parameter field");
        let no_base = parameters(&[("field", 7.into())]);
        let error = verify_url(&connector, &request, "acme", &no_base).unwrap_err();
        assert!(error.contains("url_pattern needs base_url"), "{error}");
    }

    #[test]
    fn an_absolute_url_must_be_where_the_connectors_requests_go() {
        let dir = tempfile::tempdir().unwrap();
        let given = parameters(&[
            ("base_url", "https://t.example".into()),
            ("region_url", "https://eu.example".into()),
        ]);
        let at = |verify: &str| {
            let connector = connector(dir.path(), verify);
            let request = connector.manifest.verify.clone().unwrap();
            verify_url(&connector, &request, "acme", &given)
        };
        assert_eq!(at(r#"{"url": "{base_url}/v3/me"}"#).unwrap(), "https://t.example/v3/me");
        for elsewhere in [r#"{"url": "{region_url}/me"}"#, r#"{"url": "https://t.example:8443/"}"#]
        {
            let error = at(elsewhere).unwrap_err();
            assert!(error.contains("is not at the url_pattern's https://t.example"), "{error}");
        }
        let error = at(r#"{"url": "me", "method": "DELETE"}"#).unwrap_err();
        assert!(error.starts_with("verify.method \"DELETE\" is not one"), "{error}");
    }

    #[test]
    fn check_refuses_unsafe_methods_and_warns_of_unknown_placeholders() {
        let dir = tempfile::tempdir().unwrap();
        let connector = connector(dir.path(), r#"{"url": "{region_url}/me", "method": "get"}"#);
        let found = findings(&connector, None);
        let said: Vec<(Severity, &str)> = found.iter().map(|f| (f.0, f.3.as_str())).collect();
        assert_eq!(found.len(), 2, "{said:?}");
        assert_eq!(said[0].0, Severity::Error);
        assert!(said[0].1.contains("\"get\" is not one a verification may send"), "{said:?}");
        assert_eq!(said[1].0, Severity::Warning);
        assert!(said[1].1.contains("{region_url} is no parameter"), "{said:?}");
        let declared = SchemeDescriptor {
            manifest_fields: vec![authplug_protocol::ManifestField::optional(
                "x.region_url",
                "Where.",
            )],
            ..SchemeDescriptor::default()
        };
        assert_eq!(
            findings(&connector, Some(&declared)).len(),
            1,
            "a scheme's field is a parameter"
        );
    }
}
