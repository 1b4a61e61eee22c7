//! `manifest.json`: every field the format documents, typed, and every other field kept as it
//! was (real manifests carry fields no document names).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use authplug_protocol::SchemeDescriptor;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ConnectorError;
use crate::files;
use crate::template::{scan, Reference};

/// A connector's `manifest.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `oauth2` or `api_key`; absent for connectors of public APIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// Refines `auth`: `superoffice-ticket`, `jwt`, `tripletex`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_variant: Option<String>,
    /// The system template's path. The manifests spell it `system-template`, the documentation
    /// `system_template`: both are read.
    #[serde(
        default,
        rename = "system-template",
        alias = "system_template",
        skip_serializing_if = "Option::is_none"
    )]
    pub system_template: Option<String>,
    #[serde(default)]
    pub datatypes: BTreeMap<String, Datatype>,
    /// Keys that become environment variables (`$ENV(key)`) when the templates are expanded.
    #[serde(default)]
    pub additional_parameters: BTreeMap<String, Value>,
    /// The connector expects a secret `webhook_secret`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_webhook_secret: bool,
    /// The connector expects a secret `service_jwt` and an environment variable `service_url`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requires_service_api_access: bool,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// authplug's extension: secrets the user supplies beyond what the scheme injects, by name,
    /// each `{"description": ...}` (e.g. PowerOffice Go's `application_key`). Other tools ignore
    /// it like any unknown field.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_secrets: BTreeMap<String, Value>,
    /// authplug's extension: the connector's own verification request (`authplug verify`), over
    /// its scheme's; a relative `url` is joined on the system template's `url_pattern`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<authplug_protocol::VerifyRequest>,
    /// Every field not named above, kept as it was.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One entry of `datatypes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Datatype {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Variables of this datatype's template expansion.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_frequency: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_interval: Option<Value>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// A secret the user gives when onboarding the connector: one its scheme requires, or one the
/// connector itself asks for beyond its scheme's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorSecret {
    pub name: String,
    pub description: String,
    /// Made up (random) when the user gives none: `webhook_secret`.
    pub generated: bool,
    /// May be left out: `service_jwt`, which only pushing to a node needs.
    pub optional: bool,
    /// Confidential: hidden as it is typed.
    pub secret: bool,
    /// The scheme requires it (it goes to the scheme's onboarding); otherwise the connector's own
    /// (stored with them, for the templates).
    pub for_scheme: bool,
}

impl Manifest {
    /// The secrets the manifest asks for: `webhook_secret` (`use_webhook_secret`),
    /// `service_jwt` (`requires_service_api_access`) and every `extra_secrets` entry.
    pub fn connector_secrets(&self) -> Vec<ConnectorSecret> {
        let own =
            |name: &str, description: &str, generated: bool, optional: bool| ConnectorSecret {
                name: name.into(),
                description: description.into(),
                generated,
                optional,
                secret: true,
                for_scheme: false,
            };
        let mut secrets = Vec::new();
        if self.use_webhook_secret {
            let about = "The secret webhook senders sign with (use_webhook_secret)";
            secrets.push(own("webhook_secret", about, true, false));
        }
        if self.requires_service_api_access {
            let about = "The node's service token (requires_service_api_access)";
            secrets.push(own("service_jwt", about, false, true));
        }
        for (name, spec) in &self.extra_secrets {
            let about = spec.get("description").and_then(Value::as_str);
            let about = about.unwrap_or("declared in the manifest's extra_secrets");
            secrets.push(own(name, about, false, false));
        }
        secrets
    }

    /// Everything a user gives to onboard this connector with `scheme`: the scheme's required
    /// secrets (but the operator's), then the connector's own. `connect`, the server's
    /// onboarding and the web page's form all ask for exactly these.
    pub fn onboarding_inputs(&self, scheme: &SchemeDescriptor) -> Vec<ConnectorSecret> {
        let mut inputs: Vec<ConnectorSecret> = scheme
            .required
            .iter()
            .filter(|r| !r.operator)
            .map(|r| ConnectorSecret {
                name: r.name.clone(),
                description: r.description.clone(),
                generated: false,
                optional: false,
                secret: r.secret,
                for_scheme: true,
            })
            .collect();
        inputs.extend(self.connector_secrets());
        inputs
    }
}

/// Where a stored system remembers its connector (plugins ignore the key).
pub const CONNECTOR_PARAMETER: &str = "connector";

/// The `connector` parameter of a system onboarded from `connector`, whose user gave `extras`
/// (secrets beyond the scheme's, stored with the required ones).
pub fn connector_parameter<'a>(
    connector: &Connector,
    extras: impl IntoIterator<Item = &'a String>,
) -> Value {
    let dir = connector.dir.canonicalize().unwrap_or_else(|_| connector.dir.clone());
    let extras: Vec<&String> = extras.into_iter().collect();
    serde_json::json!({"name": connector.name(), "dir": dir, "extra_secrets": extras})
}

/// The names of the user's extra secrets recorded by [`connector_parameter`].
pub fn stored_extras(parameters: &BTreeMap<String, Value>) -> Vec<String> {
    let names = parameters.get(CONNECTOR_PARAMETER).and_then(|c| c.get("extra_secrets"));
    names
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// A connector folder, read.
#[derive(Debug, Clone)]
pub struct Connector {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The manifest as JSON, for dotted-path lookups (`oauth2.token_url`).
    pub raw: Value,
    text: String,
}

/// The file name of a connector's manifest.
pub const MANIFEST: &str = "manifest.json";

impl Connector {
    /// Reads `dir/manifest.json`. Malformed JSON and fields of the wrong type are named with
    /// their line and column.
    pub fn load(dir: &Path) -> Result<Self, ConnectorError> {
        let path = dir.join(MANIFEST);
        let text = files::read_limited(&path, files::MAX_MANIFEST_BYTES).map_err(|reason| {
            ConnectorError::Unreadable {
                path: path.clone(),
                reason: match reason.as_str() {
                    "not found" => "not found: a connector folder holds a manifest.json".into(),
                    _ => reason,
                },
            }
        })?;
        Self::parse(dir, text)
    }

    /// Reads a manifest given as text, for a connector in `dir`.
    pub fn parse(dir: &Path, text: String) -> Result<Self, ConnectorError> {
        let path = dir.join(MANIFEST);
        let malformed = |e: serde_json::Error| ConnectorError::Malformed {
            path: path.clone(),
            line: e.line(),
            column: e.column(),
            reason: describe(&e),
        };
        let raw: Value = serde_json::from_str(&text).map_err(malformed)?;
        if !raw.is_object() {
            return Err(ConnectorError::Malformed {
                path,
                line: 1,
                column: 1,
                reason: "a manifest is a JSON object".into(),
            });
        }
        let manifest: Manifest = serde_json::from_str(&text).map_err(malformed)?;
        let connector = Self { dir: dir.to_owned(), manifest, raw, text };
        connector.safe()?;
        Ok(connector)
    }

    /// Refuses datatype names that would not stay file names, and template paths that would
    /// leave the folder, at their place in the manifest.
    fn safe(&self) -> Result<(), ConnectorError> {
        let refuse = |key: &str, reason: String| {
            let (line, column) = self.locate(key);
            let path = self.dir.join(MANIFEST);
            Err(ConnectorError::Malformed { path, line, column, reason })
        };
        for name in self.manifest.datatypes.keys() {
            if let Some(why) = files::unsafe_name(name) {
                return refuse(&format!("datatypes.{name}"), format!("datatype {name:?}: {why}"));
            }
        }
        for (datatype, template) in self.templates() {
            if let Some(why) = files::unsafe_template_path(template) {
                let key = match datatype {
                    Some(d) => format!("datatypes.{d}.template"),
                    None => "system-template".into(),
                };
                return refuse(&key, format!("template {template:?}: {why}"));
            }
        }
        Ok(())
    }

    /// A template's text: a path inside the folder (a link out of it is refused), a file of at
    /// most [`files::MAX_TEMPLATE_BYTES`].
    pub fn read_template(&self, template: &str) -> Result<String, ConnectorError> {
        files::read_inside(&self.dir, template, files::MAX_TEMPLATE_BYTES)
    }

    /// The connector's name: its folder's name.
    pub fn name(&self) -> String {
        let name = self.dir.canonicalize().ok().and_then(|d| d.file_name().map(|n| n.to_owned()));
        name.or_else(|| self.dir.file_name().map(|n| n.to_owned()))
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The value at a dotted path of the manifest (`oauth2.token_url`), if present.
    pub fn field(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(&self.raw, |value, key| value.get(key))
    }

    /// Where a dotted path's key is written in `manifest.json` (line, column), or for a missing
    /// one, the nearest enclosing key that is there; `(1, 1)` at worst.
    pub fn locate(&self, path: &str) -> (usize, usize) {
        let mut from = 0;
        let mut found = (1, 1);
        'keys: for key in path.split('.') {
            let needle = format!("\"{key}\"");
            // The first occurrence written as a key (followed by `:`), not as a value.
            let mut search = from;
            while let Some(at) = self.text[search..].find(&needle).map(|i| i + search) {
                search = at + needle.len();
                if self.text[search..].trim_start().starts_with(':') {
                    found = line_column(&self.text, at);
                    from = search;
                    continue 'keys;
                }
            }
            break;
        }
        found
    }

    /// The templates the platform expands: the system template (datatype `None`) and each
    /// datatype's, as `(datatype, path relative to the folder)`.
    pub fn templates(&self) -> Vec<(Option<&str>, &str)> {
        let system = self.manifest.system_template.as_deref().map(|t| (None, t));
        let datatypes = self
            .manifest
            .datatypes
            .iter()
            .filter_map(|(name, d)| d.template.as_deref().map(|t| (Some(name.as_str()), t)));
        system.into_iter().chain(datatypes).collect()
    }

    /// Reads a template and lists its references.
    pub fn references(&self, template: &str) -> Result<Vec<Reference>, ConnectorError> {
        Ok(scan(&self.read_template(template)?))
    }

    /// What `scheme` is handed of this manifest: each field it declares in `manifest_fields`
    /// that the manifest has, under the path's last segment (`membercare.base_url` arrives as
    /// `base_url`). A scheme older than protocol 1.3 declares none and gets, as it always did,
    /// the entries of the blocks named like the manifest's `auth` and `auth_variant`.
    pub fn scheme_parameters(&self, scheme: &SchemeDescriptor) -> BTreeMap<String, Value> {
        if scheme.manifest_fields.is_empty() {
            let named = [&self.manifest.auth, &self.manifest.auth_variant];
            let blocks = named.into_iter().flatten().filter_map(|name| self.raw.get(name));
            let entries = blocks.filter_map(Value::as_object).flatten();
            return entries.map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        let fields = scheme.manifest_fields.iter();
        let found = fields.filter_map(|f| Some((f.parameter(), self.field(&f.path)?)));
        found.map(|(name, value)| (name.to_owned(), value.clone())).collect()
    }
}

/// serde's message without its trailing " at line L column C" (the place is said once, in front).
fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Connector, ConnectorError> {
        Connector::parse(Path::new("conn"), text.to_owned())
    }

    #[test]
    fn a_scheme_is_handed_the_fields_it_declares_and_an_older_one_its_block() {
        let connector = parse(
            r#"{"auth": "api_key", "auth_variant": "member",
                "member": {"base_url": "https://m.example", "ignored": 1},
                "other": {"region": "eu", "unread": 2}}"#,
        )
        .unwrap();
        let declared = SchemeDescriptor {
            manifest_fields: vec![
                authplug_protocol::ManifestField::required("member.base_url", "Where."),
                authplug_protocol::ManifestField::optional("other.region", "Which."),
                authplug_protocol::ManifestField::optional("other.absent", "Not there."),
            ],
            ..SchemeDescriptor::default()
        };
        let given = connector.scheme_parameters(&declared);
        let expected = serde_json::json!({"base_url": "https://m.example", "region": "eu"});
        assert_eq!(serde_json::to_value(&given).unwrap(), expected);
        let older = connector.scheme_parameters(&SchemeDescriptor::default());
        let expected = serde_json::json!({"base_url": "https://m.example", "ignored": 1});
        assert_eq!(serde_json::to_value(&older).unwrap(), expected);
    }

    #[test]
    fn documented_fields_are_typed_and_unknown_ones_kept() {
        let connector = parse(
            r#"{"auth": "oauth2", "oauth2": {"token_url": "https://t"}, "system_template": "templates/system.json",
                "datatypes": {"a": {"template": "templates/a.json", "parameters": {"p": 1}, "color": "red"}},
                "future_field": [1, 2]}"#,
        )
        .unwrap();
        let manifest = &connector.manifest;
        assert_eq!(manifest.auth.as_deref(), Some("oauth2"));
        assert_eq!(manifest.system_template.as_deref(), Some("templates/system.json"));
        assert_eq!(manifest.other["future_field"], serde_json::json!([1, 2]));
        assert_eq!(manifest.datatypes["a"].other["color"], "red");
        assert_eq!(connector.field("oauth2.token_url"), Some(&Value::from("https://t")));
        assert_eq!(connector.field("oauth2.login_url"), None);
        // Written back, nothing is lost and the manifest's own spelling is used.
        let written = serde_json::to_value(manifest).unwrap();
        assert_eq!(written["future_field"], serde_json::json!([1, 2]));
        assert_eq!(written["system-template"], "templates/system.json");
    }

    #[test]
    fn malformed_json_is_named_with_its_place() {
        let error = parse("{\n  \"auth\": \"oauth2\",\n  \"datatypes\": {,}\n}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "conn/manifest.json:3:17: key must be a string",
            "the file, line and column of the fault, once"
        );
        let error = parse("{\"datatypes\": []}").unwrap_err();
        assert!(error.to_string().starts_with("conn/manifest.json:1:"), "{error}");
        assert!(error.to_string().contains("invalid type"), "{error}");
        assert!(parse("[1]").unwrap_err().to_string().contains("a manifest is a JSON object"));
    }

    #[test]
    fn keys_are_located_or_their_nearest_parent() {
        let connector = parse(
            "{\n  \"auth_variant\": \"jwt\",\n  \"jwt\": {\n    \"login_url\": \"x\"\n  }\n}",
        )
        .unwrap();
        assert_eq!(connector.locate("jwt.login_url"), (4, 5));
        assert_eq!(connector.locate("jwt.jwt_header_key"), (3, 3));
        assert_eq!(connector.locate("oauth2.token_url"), (1, 1));
    }
}
