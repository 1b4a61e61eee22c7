//! What a user gives to onboard a connector: the scheme's user secrets and the connector's own
//! (`Manifest::onboarding_inputs`), each looked up in the front end's sources; a webhook secret
//! nobody gave is made up; an optional one may stay out; an interactive front end may ask last.

use std::collections::BTreeMap;

use authplug_connector::ConnectorSecret;
use authplug_protocol::Secret;

use crate::OnboardError;

/// A value an input source holds, and where it came from (said in progress lines, never the
/// value).
#[derive(Debug)]
pub struct Found {
    pub value: Secret,
    pub source: String,
}

/// A front end's sources of inputs.
pub trait Inputs {
    /// The value of `input` from the front end's own sources, if one holds it.
    fn find(&mut self, input: &ConnectorSecret) -> Result<Option<Found>, OnboardError>;

    /// A last resort for a required input nothing else gave (a prompt on a terminal).
    fn ask(&mut self, input: &ConnectorSecret) -> Result<Option<Found>, OnboardError> {
        let _ = input;
        Ok(None)
    }
}

/// Inputs given all at once (an API request's body).
#[derive(Debug)]
pub struct Given<'a> {
    values: &'a BTreeMap<String, Secret>,
    source: &'static str,
}

impl<'a> Given<'a> {
    pub fn new(values: &'a BTreeMap<String, Secret>, source: &'static str) -> Self {
        Self { values, source }
    }
}

impl Inputs for Given<'_> {
    fn find(&mut self, input: &ConnectorSecret) -> Result<Option<Found>, OnboardError> {
        Ok(self
            .values
            .get(&input.name)
            .map(|value| Found { value: value.clone(), source: self.source.to_owned() }))
    }
}

/// The gathered inputs: the scheme's and the connector's own, and where each came from.
#[derive(Debug, Default)]
pub(crate) struct Gathered {
    pub scheme: BTreeMap<String, Secret>,
    pub extras: BTreeMap<String, Secret>,
    pub sources: Vec<(String, String)>,
}

/// Looks every wanted input up in `inputs`, in order: the front end's sources, a generated
/// value, left out if optional, the front end's last resort; an input none of them gives (or
/// gives empty) is missing.
pub(crate) fn gather(
    wanted: &[ConnectorSecret],
    inputs: &mut dyn Inputs,
) -> Result<Gathered, OnboardError> {
    let mut gathered = Gathered::default();
    let mut missing = Vec::new();
    for input in wanted {
        let found = match inputs.find(input)? {
            Some(found) => Some(found),
            None if input.generated => {
                Some(Found { value: Secret::new(random_hex(32)?), source: "generated".into() })
            }
            None if input.optional => continue,
            None => inputs.ask(input)?,
        };
        match found {
            Some(found) if !found.value.expose().is_empty() => {
                let into =
                    if input.for_scheme { &mut gathered.scheme } else { &mut gathered.extras };
                into.insert(input.name.clone(), found.value);
                gathered.sources.push((input.name.clone(), found.source));
            }
            _ => missing.push(input.name.clone()),
        }
    }
    if missing.is_empty() {
        Ok(gathered)
    } else {
        Err(OnboardError::Missing { names: missing })
    }
}

/// `bytes` random bytes as lower-case hex.
fn random_hex(bytes: usize) -> Result<String, OnboardError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::getrandom(&mut buffer)
        .map_err(|e| OnboardError::Local(format!("no randomness for a generated secret: {e}")))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, for_scheme: bool, generated: bool, optional: bool) -> ConnectorSecret {
        ConnectorSecret {
            name: name.into(),
            description: String::new(),
            generated,
            optional,
            secret: true,
            for_scheme,
        }
    }

    /// Gives what its map holds, and answers the last resort with `asked`.
    struct Prompting(BTreeMap<String, Secret>, Option<&'static str>);

    impl Inputs for Prompting {
        fn find(&mut self, input: &ConnectorSecret) -> Result<Option<Found>, OnboardError> {
            Given::new(&self.0, "the map").find(input)
        }

        fn ask(&mut self, _input: &ConnectorSecret) -> Result<Option<Found>, OnboardError> {
            Ok(self.1.map(|v| Found { value: Secret::new(v), source: "prompt".into() }))
        }
    }

    #[test]
    fn inputs_come_from_sources_then_generated_then_the_last_resort() {
        let wanted = [
            input("client_id", true, false, false),
            input("webhook_secret", false, true, false),
            input("service_jwt", false, false, true),
            input("client_secret", true, false, false),
        ];
        let given = BTreeMap::from([("client_id".to_owned(), Secret::new("app"))]);
        let gathered = gather(&wanted, &mut Prompting(given, Some("typed"))).unwrap();
        assert_eq!(gathered.scheme.keys().collect::<Vec<_>>(), ["client_id", "client_secret"]);
        assert_eq!(
            gathered.extras.keys().collect::<Vec<_>>(),
            ["webhook_secret"],
            "optional left out"
        );
        assert_eq!(gathered.extras["webhook_secret"].expose().len(), 64);
        let sources: Vec<&str> = gathered.sources.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(sources, ["the map", "generated", "prompt"]);
    }

    #[test]
    fn inputs_nothing_gave_or_gave_empty_are_missing_all_named() {
        let wanted = [input("a", true, false, false), input("b", false, false, false)];
        let given = BTreeMap::from([("a".to_owned(), Secret::new(""))]);
        let error = gather(&wanted, &mut Prompting(given, None)).unwrap_err();
        assert!(matches!(&error, OnboardError::Missing { names } if names == &["a", "b"]));
        assert_eq!(error.to_string(), "missing required secrets a, b");
    }
}
