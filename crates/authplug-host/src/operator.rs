//! Secrets from the operator's configuration, per scheme: the values a platform holds for every
//! connection rather than asking each user (SuperOffice's partner key, Tripletex's consumer token
//! in production).
//!
//! The file is a JSON object of objects, `{"<scheme id>": {"<secret name>": "<value>"}}`. When a
//! call reaches a scheme, a required secret the scheme marks `from_operator` takes the operator's
//! value (users do not get to replace a platform key); any other required secret the caller left
//! out or empty is filled from here, so Tripletex users in production give only their employee
//! token.

use std::collections::BTreeMap;
use std::path::Path;

use authplug_protocol::{RequiredSecret, Secret};

/// Operator-held secrets by scheme id and secret name. `Debug` shows names only.
#[derive(Clone, Default)]
pub struct OperatorSecrets {
    by_scheme: BTreeMap<String, BTreeMap<String, Secret>>,
}

impl std::fmt::Debug for OperatorSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: BTreeMap<&str, Vec<&str>> = self
            .by_scheme
            .iter()
            .map(|(scheme, secrets)| {
                (scheme.as_str(), secrets.keys().map(String::as_str).collect())
            })
            .collect();
        f.debug_struct("OperatorSecrets").field("names", &names).finish()
    }
}

impl OperatorSecrets {
    /// From `(scheme, name, value)` triples.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str, Secret)>) -> Self {
        let mut by_scheme: BTreeMap<String, BTreeMap<String, Secret>> = BTreeMap::new();
        for (scheme, name, value) in entries {
            by_scheme.entry(scheme.to_owned()).or_default().insert(name.to_owned(), value);
        }
        Self { by_scheme }
    }

    /// Reads the JSON file. Errors name the file and the place, never a value.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the operator's secrets: {e}", path.display()))?;
        let parsed: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_str(&text)
            .map_err(|e| {
                format!(
                    "{}: line {}: not an object of objects of strings {{\"<scheme>\": {{\"<name>\": \"<value>\"}}}}",
                    path.display(),
                    e.line()
                )
            })?;
        let by_scheme = parsed
            .into_iter()
            .map(|(scheme, secrets)| {
                (scheme, secrets.into_iter().map(|(k, v)| (k, Secret::new(v))).collect())
            })
            .collect();
        Ok(Self { by_scheme })
    }

    /// Whether a value of `scheme`'s secret `name` is held here.
    pub fn holds(&self, scheme: &str, name: &str) -> bool {
        self.by_scheme.get(scheme).is_some_and(|held| held.contains_key(name))
    }

    /// Fills `given` for `scheme` as the module documentation says.
    pub(crate) fn fill(
        &self,
        scheme: &str,
        declared: &[RequiredSecret],
        given: &mut BTreeMap<String, Secret>,
    ) {
        let Some(held) = self.by_scheme.get(scheme) else { return };
        for secret in declared {
            let Some(value) = held.get(&secret.name) else { continue };
            let missing = given.get(&secret.name).is_none_or(|v| v.expose().is_empty());
            if secret.operator || missing {
                given.insert(secret.name.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_keys_win_and_other_secrets_only_fill_gaps() {
        let operator = OperatorSecrets::new([
            ("s", "partner_key", Secret::new("platform-key")),
            ("s", "consumer", Secret::new("platform-consumer")),
        ]);
        let declared = [
            RequiredSecret::new("partner_key", "").from_operator(),
            RequiredSecret::new("consumer", ""),
            RequiredSecret::new("employee", ""),
        ];
        let mut given = BTreeMap::from([
            ("partner_key".to_owned(), Secret::new("user-key")),
            ("consumer".to_owned(), Secret::new("user-consumer")),
            ("employee".to_owned(), Secret::new("e")),
        ]);
        operator.fill("s", &declared, &mut given);
        assert_eq!(given["partner_key"].expose(), "platform-key");
        assert_eq!(given["consumer"].expose(), "user-consumer");
        given.remove("consumer");
        operator.fill("s", &declared, &mut given);
        assert_eq!(given["consumer"].expose(), "platform-consumer");
        operator.fill("other", &declared, &mut given);
        assert!(!format!("{operator:?}").contains("platform"));
    }

    #[test]
    fn a_malformed_file_is_named_without_its_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operator.json");
        std::fs::write(&path, "{\"tripletex\": {\"consumer_token\": 42}}").unwrap();
        let error = OperatorSecrets::from_file(&path).unwrap_err();
        assert!(error.starts_with(&format!("{}: line 1:", path.display())), "{error}");
        std::fs::write(&path, "{\"tripletex\": {\"consumer_token\": \"c-1\"}}").unwrap();
        let read = OperatorSecrets::from_file(&path).unwrap();
        assert_eq!(read.by_scheme["tripletex"]["consumer_token"].expose(), "c-1");
    }
}
