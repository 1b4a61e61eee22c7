//! Rendering templates for a local run: `{{@ name @}}` expanded as the platform does when it
//! installs a connector (`system` the system id, every `additional_parameters` key the literal
//! `$ENV(key)`, a datatype's `parameters`, `datatype` and `parent`), then `$SECRET(name)` and
//! `$ENV(name)` resolved as the platform does at run time. Runtime Jinja (`{{ }}`) and
//! `secret('name')` are left for the runtime.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::manifest::{Connector, Datatype};
use crate::template::{scan, ReferenceKind};

/// Why a template cannot be rendered: the reference and its place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{template}:{line}:{column}: {message}")]
pub struct RenderError {
    pub template: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The expansion-time variables of a template: for the system template (`datatype` None) or a
/// datatype's.
pub fn variables(
    connector: &Connector,
    system: &str,
    datatype: Option<(&str, &Datatype)>,
) -> BTreeMap<String, Value> {
    let mut variables = BTreeMap::new();
    // The variables the platform provides (those `check` accepts) are environment variables
    // too, like every `additional_parameters` key: each expands to its `$ENV(name)`.
    let webhook_dataset = format!("{}_webhook_dataset", connector.name());
    let provided = crate::check::PLATFORM_VARIABLES.iter().copied().filter(|v| *v != "system");
    let keys = connector.manifest.additional_parameters.keys().map(String::as_str);
    for key in provided.chain([webhook_dataset.as_str()]).chain(keys) {
        variables.insert(key.to_owned(), Value::from(format!("$ENV({key})")));
    }
    if let Some((name, datatype)) = datatype {
        variables.insert("datatype".into(), Value::from(name));
        if let Some(parent) = &datatype.parent {
            variables.insert("parent".into(), Value::from(parent.as_str()));
        }
        variables.extend(datatype.parameters.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    variables.insert("system".into(), Value::from(system));
    variables
}

/// Expands every `{{@ name @}}` of `text` (a string value as its text, anything else as JSON).
pub fn expand(
    template: &str,
    text: &str,
    variables: &BTreeMap<String, Value>,
) -> Result<String, RenderError> {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for reference in scan(text) {
        let fail = |message: String| RenderError {
            template: template.to_owned(),
            line: reference.line,
            column: reference.column,
            message,
        };
        match reference.kind {
            ReferenceKind::Variable => {
                let expression = text[reference.start + 3..reference.end - 3].trim();
                if expression != reference.name {
                    return Err(fail(format!(
                        "`{{{{@ {expression} @}}}}`: only plain variables are expanded here"
                    )));
                }
                let value = variables.get(&reference.name).ok_or_else(|| {
                    fail(format!(
                        "{}: no such variable (see `authplug check`)",
                        reference.display()
                    ))
                })?;
                out.push_str(&text[at..reference.start]);
                match value {
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                }
                at = reference.end;
            }
            ReferenceKind::Unclosed => {
                return Err(fail(format!("`{}` is never closed on its line", reference.name)));
            }
            _ => {}
        }
    }
    out.push_str(&text[at..]);
    Ok(out)
}

/// What a resolved `$SECRET`/`$ENV` becomes: a value, or `None` to leave the reference as it is.
pub struct Resolver<'a> {
    pub secret: &'a dyn Fn(&str) -> Option<String>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl std::fmt::Debug for Resolver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver") // it hands out secrets: nothing of it is printed
    }
}

/// Resolves `$SECRET(name)` (an unknown secret is an error) and `$ENV(name)` (an unknown one is
/// left as written, and listed) in expanded text. Values are escaped for the JSON string they
/// sit in.
pub fn resolve(
    template: &str,
    text: &str,
    resolver: &Resolver<'_>,
) -> Result<(String, Vec<String>), RenderError> {
    let mut out = String::with_capacity(text.len());
    let mut unresolved = Vec::new();
    let mut at = 0;
    for reference in scan(text) {
        let value = match reference.kind {
            ReferenceKind::Secret => match (resolver.secret)(&reference.name) {
                Some(value) => value,
                None => {
                    return Err(RenderError {
                        template: template.to_owned(),
                        line: reference.line,
                        column: reference.column,
                        message: format!("{}: the system has no such secret", reference.display()),
                    });
                }
            },
            ReferenceKind::Env => match (resolver.env)(&reference.name) {
                Some(value) => value,
                None => {
                    unresolved.push(reference.name.clone());
                    continue;
                }
            },
            _ => continue,
        };
        out.push_str(&text[at..reference.start]);
        let quoted = Value::from(value).to_string();
        out.push_str(&quoted[1..quoted.len() - 1]);
        at = reference.end;
    }
    out.push_str(&text[at..]);
    Ok((out, unresolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_expand_and_runtime_jinja_stays() {
        let variables = BTreeMap::from([
            ("system".to_owned(), Value::from("crm")),
            ("token_url".to_owned(), Value::from("$ENV(token_url)")),
            ("page".to_owned(), Value::from(50)),
        ]);
        let text = r#"{"_id": "{{@ system @}}", "t": "{{@ token_url @}}", "n": {{@ page @}}, "u": "{{ entity.id }}"}"#;
        assert_eq!(
            expand("t.json", text, &variables).unwrap(),
            r#"{"_id": "crm", "t": "$ENV(token_url)", "n": 50, "u": "{{ entity.id }}"}"#
        );
        let error = expand("t.json", "{{@ nope @}}", &variables).unwrap_err();
        assert_eq!(
            error.to_string(),
            "t.json:1:1: {{@ nope @}}: no such variable (see `authplug check`)"
        );
    }

    #[test]
    fn secrets_and_env_resolve_escaped_for_json() {
        let resolver = Resolver {
            secret: &|name| (name == "k").then(|| "a\"b\\c".to_owned()),
            env: &|name| (name == "base").then(|| "https://x".to_owned()),
        };
        let (text, unresolved) = resolve(
            "s.json",
            r#"{"h": "Bearer $SECRET(k)", "u": "$ENV(base)/v1", "s": "$ENV(service_url)"}"#,
            &resolver,
        )
        .unwrap();
        assert_eq!(
            text,
            r#"{"h": "Bearer a\"b\\c", "u": "https://x/v1", "s": "$ENV(service_url)"}"#
        );
        assert_eq!(unresolved, ["service_url"]);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["h"], "Bearer a\"b\\c");
        let error = resolve("s.json", "\n \"$SECRET(other)\"", &resolver).unwrap_err();
        assert_eq!(error.to_string(), "s.json:2:3: $SECRET(other): the system has no such secret");
    }
}
