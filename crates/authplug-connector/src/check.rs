//! `authplug check`: does a connector folder hold together with the scheme it names? Every
//! secret its templates read must be one the scheme injects or the manifest declares, every
//! variable one the manifest or the platform provides, and every manifest field the scheme
//! reads must be there (or have a default, which is worth a warning: other tools may not share
//! it). Findings read like a compiler's: `file:line:column: error: message`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::PathBuf;

use authplug_protocol::{AuthPair, SchemeDescriptor};
use serde::Serialize;

use crate::error::ConnectorError;
use crate::manifest::{Connector, MANIFEST};
use crate::template::{Reference, ReferenceKind};

/// Variables the integration platform always provides to templates (besides
/// `<connector>_webhook_dataset`).
pub const PLATFORM_VARIABLES: &[&str] = &[
    "account_id",
    "base_url",
    "connected_ts",
    "datatype",
    "is_fullsync",
    "parent",
    "service_url",
    "system",
    "token_url",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One thing wrong with a connector, at its place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// A stable name for the kind of finding (`unknown-secret`, `missing-manifest-field`, ...).
    pub code: &'static str,
    /// Relative to the connector folder.
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// What `check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub connector: String,
    /// The scheme the manifest's `(auth, auth_variant)` resolved to, if any.
    pub scheme: Option<String>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Error).count()
    }

    pub fn warnings(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Warning).count()
    }
}

/// The findings in order, each once (a set remembers them: a template with many references
/// stays linear).
struct Findings(Vec<Finding>, HashSet<Finding>);

impl Findings {
    fn add(
        &mut self,
        severity: Severity,
        code: &'static str,
        file: &str,
        at: (usize, usize),
        message: String,
    ) {
        let finding = Finding {
            severity,
            code,
            file: PathBuf::from(file),
            line: at.0,
            column: at.1,
            message,
        };
        if self.1.insert(finding.clone()) {
            self.0.push(finding);
        }
    }
}

/// Checks `connector` against the loaded `schemes`.
pub fn check(connector: &Connector, schemes: &[&SchemeDescriptor]) -> Report {
    let manifest = &connector.manifest;
    let mut findings = Findings(Vec::new(), HashSet::new());
    let scheme = resolve(connector, schemes, &mut findings);

    // Manifest fields the scheme reads.
    for (scheme, field) in scheme.iter().flat_map(|s| s.manifest_fields.iter().map(move |f| (s, f)))
    {
        if connector.field(&field.path).is_some() {
            continue;
        }
        let at = connector.locate(&field.path);
        if field.required {
            let message = format!(
                "`{}` is missing: scheme {} needs it ({})",
                field.path,
                scheme.id,
                field.description.trim_end_matches('.')
            );
            findings.add(Severity::Error, "missing-manifest-field", MANIFEST, at, message);
        } else if let Some(default) = &field.default {
            let message = format!(
                "`{}` is missing: authplug uses {default}; other tools may require the field",
                field.path
            );
            findings.add(Severity::Warning, "defaulted-manifest-field", MANIFEST, at, message);
        }
    }

    for (severity, code, path, message) in crate::verify::findings(connector, scheme) {
        findings.add(severity, code, MANIFEST, connector.locate(path), message);
    }

    // Secrets the connector can have: the scheme's, and those the manifest asks for.
    let connector_secrets = manifest.connector_secrets();
    let secrets: BTreeSet<&str> = scheme
        .iter()
        .flat_map(|s| s.injected.iter().map(|i| i.name.as_str()))
        .chain(connector_secrets.iter().map(|s| s.name.as_str()))
        .collect();

    let connector_name = connector.name();
    let webhook_dataset = format!("{connector_name}_webhook_dataset");
    let environment: BTreeSet<&str> = manifest
        .additional_parameters
        .keys()
        .map(String::as_str)
        .chain(PLATFORM_VARIABLES.iter().copied())
        .chain([webhook_dataset.as_str()])
        .collect();

    if manifest.system_template.is_none() {
        let message = "no `system-template`: the connector's system cannot be configured".into();
        findings.add(Severity::Error, "no-system-template", MANIFEST, (1, 1), message);
    }
    for (name, datatype) in &manifest.datatypes {
        if let Some(parent) = &datatype.parent {
            if !manifest.datatypes.contains_key(parent) {
                let at = connector.locate(&format!("datatypes.{name}.parent"));
                let message = format!("datatype `{name}`: its parent `{parent}` is not a datatype");
                findings.add(Severity::Error, "unknown-parent", MANIFEST, at, message);
            }
        }
    }

    // The templates, each in the context of the datatype that uses it; each file read once.
    let mut read: BTreeMap<&str, Option<Vec<Reference>>> = BTreeMap::new();
    for (datatype, template) in connector.templates() {
        let references =
            read.entry(template).or_insert_with(|| match connector.read_template(template) {
                Ok(text) => {
                    let references = crate::template::scan(&text);
                    if let Some((at, reason)) = not_json(&text, &references) {
                        let message = format!("not JSON once `{{{{@ @}}}}` is expanded: {reason}");
                        findings.add(Severity::Error, "not-json", template, at, message);
                    }
                    Some(references)
                }
                Err(error) => {
                    let path = match datatype {
                        Some(d) => format!("datatypes.{d}.template"),
                        None => "system-template".into(),
                    };
                    let reason = match error {
                        ConnectorError::Unreadable { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    let message = format!("template {template} cannot be read: {reason}");
                    let at = connector.locate(&path);
                    findings.add(Severity::Error, "unreadable-template", MANIFEST, at, message);
                    None
                }
            });
        let Some(references) = references.as_ref() else { continue };
        let parameters = datatype.and_then(|d| manifest.datatypes.get(d)).map(|d| &d.parameters);
        for reference in references {
            let at = (reference.line, reference.column);
            match reference.kind {
                ReferenceKind::Secret | ReferenceKind::RuntimeSecret => {
                    // An unresolved scheme was reported once; its secrets are unknown.
                    let unknowable = manifest.auth.is_some() && scheme.is_none();
                    if !unknowable && !secrets.contains(reference.name.as_str()) {
                        let message = unknown_secret(reference, scheme);
                        findings.add(Severity::Error, "unknown-secret", template, at, message);
                    }
                }
                ReferenceKind::Env => {
                    if !environment.contains(reference.name.as_str()) {
                        let message = format!(
                            "{}: no such environment variable: declare `{}` in manifest.json's additional_parameters",
                            reference.display(),
                            reference.name
                        );
                        findings.add(Severity::Error, "unknown-env", template, at, message);
                    }
                }
                ReferenceKind::Variable => {
                    let known = environment.contains(reference.name.as_str())
                        || parameters.is_some_and(|p| p.contains_key(&reference.name));
                    if !known {
                        let context = match datatype {
                            Some(d) => format!(" (expanded for datatype `{d}`)"),
                            None => String::new(),
                        };
                        let message = format!(
                            "{}: no such variable{context}: declare `{}` in manifest.json's additional_parameters{}",
                            reference.display(),
                            reference.name,
                            if datatype.is_some() { " or the datatype's parameters" } else { "" }
                        );
                        findings.add(Severity::Error, "unknown-variable", template, at, message);
                    }
                }
                ReferenceKind::Unclosed => {
                    let message = format!("`{}` is never closed on its line", reference.name);
                    findings.add(Severity::Error, "unclosed", template, at, message);
                }
            }
        }
    }

    let mut findings = findings.0;
    findings.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    Report { connector: connector_name, scheme: scheme.map(|s| s.id.clone()), findings }
}

/// The scheme serving the manifest's `(auth, auth_variant)`, or a finding saying why none does.
fn resolve<'a>(
    connector: &Connector,
    schemes: &[&'a SchemeDescriptor],
    findings: &mut Findings,
) -> Option<&'a SchemeDescriptor> {
    let manifest = &connector.manifest;
    let auth = manifest.auth.as_deref()?;
    let pair = AuthPair::new(auth, manifest.auth_variant.as_deref());
    if let Some(scheme) = schemes.iter().find(|s| s.serves.contains(&pair)) {
        return Some(scheme);
    }
    let loaded: Vec<String> = schemes
        .iter()
        .map(|s| {
            let serves: Vec<String> = s.serves.iter().map(ToString::to_string).collect();
            format!("{} ({})", s.id, serves.join(", "))
        })
        .collect();
    let loaded = if loaded.is_empty() {
        "none (no plugin was found: see --plugin-dir)".into()
    } else {
        loaded.join(", ")
    };
    let (path, what) = match &manifest.auth_variant {
        Some(variant) => ("auth_variant", format!("auth `{auth}` with auth_variant `{variant}`")),
        None => ("auth", format!("auth `{auth}`")),
    };
    let message = format!("no loaded scheme serves {what}; loaded schemes: {loaded}");
    findings.add(Severity::Error, "unknown-scheme", MANIFEST, connector.locate(path), message);
    None
}

/// Where and why `text` is not JSON, with each `{{@ @}}` as a value of its own length (a
/// template may put one where JSON expects a value); nothing for a template with an unclosed
/// opening, reported as that.
fn not_json(text: &str, references: &[Reference]) -> Option<((usize, usize), String)> {
    if references.iter().any(|r| r.kind == ReferenceKind::Unclosed) {
        return None;
    }
    let mut expanded = String::with_capacity(text.len());
    let mut at = 0;
    // Every `{{@ ... @}}` (a variable's or a literal's), each searched for once.
    while let Some(open) = text[at..].find("{{@").map(|i| at + i) {
        let Some(close) = text[open..].find("@}}").map(|i| open + i + 3) else { break };
        expanded.push_str(&text[at..open]);
        expanded.push('0');
        expanded.extend(std::iter::repeat_n(' ', close - open - 1));
        at = close;
    }
    expanded.push_str(&text[at..]);
    let error = serde_json::from_str::<serde::de::IgnoredAny>(&expanded).err()?;
    let reason = error.to_string();
    let reason = reason.rfind(" at line ").map_or(reason.as_str(), |at| &reason[..at]).to_owned();
    Some(((error.line(), error.column()), reason))
}

/// Why a secret is unknown: the scheme injects others, or there is no scheme at all (an
/// unresolved one was reported once, and its secrets are not judged).
fn unknown_secret(reference: &Reference, scheme: Option<&SchemeDescriptor>) -> String {
    let source = match scheme {
        None => "manifest.json names no `auth` scheme to supply it".to_owned(),
        Some(scheme) => {
            let names: Vec<&str> = scheme.injected.iter().map(|i| i.name.as_str()).collect();
            format!("scheme {} injects only {}", scheme.id, names.join(", "))
        }
    };
    format!(
        "{}: no such secret: {source}; if the user supplies it, declare `{}` in manifest.json's extra_secrets",
        reference.display(),
        reference.name
    )
}

#[cfg(test)]
mod tests {
    use authplug_protocol::{InjectedSecret, ManifestField, Source};

    use super::*;

    fn scheme() -> SchemeDescriptor {
        SchemeDescriptor {
            id: "demo".into(),
            serves: vec![AuthPair::new("api_key", Some("demo"))],
            injected: vec![InjectedSecret::new("token", "", Source::Renewed)],
            manifest_fields: vec![
                ManifestField::required("demo.url", "Where to log in."),
                ManifestField::optional("demo.extra", "Nothing much."),
            ],
            ..SchemeDescriptor::default()
        }
    }

    fn run(manifest: &str, templates: &[(&str, &str)]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        for (name, text) in templates {
            std::fs::write(dir.path().join("templates").join(name), text).unwrap();
        }
        let connector = Connector::parse(dir.path(), manifest.to_owned()).unwrap();
        let scheme = scheme();
        let report = check(&connector, &[&scheme]);
        report
            .findings
            .iter()
            .map(|f| {
                format!("{}:{}:{}: {}: {}", f.file.display(), f.line, f.column, f.severity, f.code)
            })
            .collect()
    }

    #[test]
    fn variables_are_judged_in_the_context_of_each_datatype_that_expands_the_template() {
        let manifest = r#"{"auth": "api_key", "auth_variant": "demo", "demo": {"url": "u"},
            "system-template": "templates/system.json",
            "use_webhook_secret": true,
            "datatypes": {
                "a": {"template": "templates/t.json", "parameters": {"page": 1}},
                "b": {"template": "templates/t.json"}
            }}"#;
        let templates = [
            ("system.json", r#"{"t": "$SECRET(token)", "w": "$SECRET(webhook_secret)"}"#),
            ("t.json", "{\"p\": {{@ page @}}, \"s\": \"{{@ system @}}\", \"k\": \"{{ secret('webhook_secret') }}\"}"),
        ];
        assert_eq!(run(manifest, &templates), ["templates/t.json:1:7: error: unknown-variable"]);
    }

    #[test]
    fn a_required_manifest_field_is_an_error_and_an_optional_one_nothing() {
        let manifest = r#"{"auth": "api_key", "auth_variant": "demo", "system-template": "templates/system.json"}"#;
        assert_eq!(
            run(manifest, &[("system.json", "{}")]),
            ["manifest.json:1:1: error: missing-manifest-field"]
        );
    }
}
