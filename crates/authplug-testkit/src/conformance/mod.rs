//! The conformance kit: what every scheme must do, checked against a plugin, one line per rule.
//!
//! A connector team runs it in its crate's tests (against the rlib, [`Linked`]), and
//! `authplug schemes test FILE` runs it against a built file. The kit answers the scheme's HTTP
//! itself, from an [`Exercise`]: recorded answers of the provider, or a running fake. It plants
//! sentinel values for the secrets, then checks:
//!
//! | rule | what must hold |
//! |---|---|
//! | `protocol` | the plugin's protocol version loads in this host |
//! | `descriptor` | ids, names and descriptions; every `Source::Copied` names a required secret; `serves` pairs well formed; manifest fields unique as parameters |
//! | `docs` | the reference page renders every secret, each cell on one line |
//! | `onboard` | onboarding completes (following a consent) and injects exactly the declared secrets, copies as declared, `expires_at` in Unix seconds, no secret among the outputs |
//! | `onboard.refused` | a provider answering 401 fails the onboarding |
//! | `refresh.renewed` | a renewal injects exactly the declared secrets |
//! | `refresh.401`, `refresh.403` | `reauthorize` |
//! | `refresh.429` | `transient`, with the answer's `Retry-After` |
//! | `refresh.500`, `refresh.503`, `refresh.timeout`, `refresh.truncated` | `transient` |
//! | `apply` | header names are HTTP tokens, values single lines; an output declared `ShortLived` carries no secret the user gave |
//! | `verify` | a declared verification request (GET or HEAD, its placeholders filled from the exercise's parameters, onboarding's outputs and its defaults), sent with what `apply` gave, answers 2xx |
//! | `no-panic` | no call panics |
//! | `secrets` | no error, reason or panic message of the whole run holds a secret value |
//!
//! ```no_run
//! use authplug_testkit::conformance::{Exercise, Kit, Linked};
//! use serde_json::json;
//!
//! let provider = Exercise::new()
//!     .parameter("base_url", "https://members.example")
//!     .answer("POST", "/api/session", 200, json!({"token": "s-1", "expires_in": 3600}));
//! Kit::new(&Linked::new("demo-session", "0.1.0")).exercise("demo_session", provider).run().assert_passes();
//! ```

mod exercise;
mod rules;
mod run;
mod subject;
mod verify;
mod wire;

use std::panic::{catch_unwind, AssertUnwindSafe};

use authplug_protocol::{ErrorBody, ErrorCode, HttpRequest, HttpResponse, PluginManifest};
use authplug_sdk::Host;

pub use exercise::{Exchange, Exercise, Exercises};

/// A plugin as the kit calls it: its manifest, and raw calls whose HTTP callbacks `host`
/// answers.
pub trait Plugin {
    fn manifest(&self) -> Result<PluginManifest, String>;
    fn call(
        &self,
        method: &str,
        request: &str,
        host: &dyn Fn(&str, &str) -> Result<String, String>,
    ) -> Result<String, String>;
}

/// The schemes linked into this test binary (a scheme crate's own tests: `use my_scheme as _;`
/// so that its registrations are linked), named as the plugin `name` `version`.
#[derive(Debug, Clone)]
pub struct Linked {
    name: String,
    version: String,
}

impl Linked {
    pub fn new(name: &str, version: &str) -> Self {
        Self { name: name.to_owned(), version: version.to_owned() }
    }
}

impl Plugin for Linked {
    fn manifest(&self) -> Result<PluginManifest, String> {
        Ok(authplug_sdk::manifest(&self.name, &self.version))
    }

    fn call(
        &self,
        method: &str,
        request: &str,
        host: &dyn Fn(&str, &str) -> Result<String, String>,
    ) -> Result<String, String> {
        wire::quiet_panics(|| {
            catch_unwind(AssertUnwindSafe(|| {
                authplug_sdk::dispatch(method, request, &Host::new(&host))
            }))
            .unwrap_or_else(|payload| {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let body =
                    ErrorBody::new(ErrorCode::PluginPanic, format!("scheme panicked: {message}"));
                Err(body.to_json())
            })
        })
    }
}

/// Where requests an exercise forwards go: a running fake provider.
pub type Network<'a> = dyn Fn(&HttpRequest) -> Result<HttpResponse, ErrorBody> + 'a;

/// The kit over one plugin.
pub struct Kit<'a> {
    plugin: &'a dyn Plugin,
    exercises: Exercises,
    network: Option<&'a Network<'a>>,
}

impl std::fmt::Debug for Kit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kit").field("exercises", &self.exercises.schemes.keys()).finish()
    }
}

impl<'a> Kit<'a> {
    pub fn new(plugin: &'a dyn Plugin) -> Self {
        Self { plugin, exercises: Exercises::default(), network: None }
    }

    /// How to exercise the scheme `id` (without one, a scheme gets no parameters and a provider
    /// that answers 404).
    pub fn exercise(mut self, id: &str, exercise: Exercise) -> Self {
        self.exercises.schemes.insert(id.to_owned(), exercise);
        self
    }

    /// Every exercise of an `--exercise` file.
    pub fn exercises(mut self, exercises: Exercises) -> Self {
        self.exercises.schemes.extend(exercises.schemes);
        self
    }

    /// The network for exercises that forward or follow consents.
    pub fn network(mut self, network: &'a Network<'a>) -> Self {
        self.network = Some(network);
        self
    }

    /// Runs every rule over every scheme of the plugin.
    pub fn run(&self) -> Report {
        run::run(self.plugin, &self.exercises, self.network)
    }
}

/// What one rule found for one scheme.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    Skip(String),
    Fail { problem: String, fix: String },
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub scheme: String,
    pub rule: &'static str,
    pub verdict: Verdict,
}

/// The kit's findings, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn failures(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| matches!(f.verdict, Verdict::Fail { .. }))
    }

    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// `ok   scheme rule`, `skip scheme rule: why`, `FAIL scheme rule: problem (fix: ...)`.
    pub fn lines(&self) -> Vec<String> {
        let line = |f: &Finding| match &f.verdict {
            Verdict::Pass => format!("ok   {} {}", f.scheme, f.rule),
            Verdict::Skip(why) => format!("skip {} {}: {why}", f.scheme, f.rule),
            Verdict::Fail { problem, fix } => {
                format!("FAIL {} {}: {problem} (fix: {fix})", f.scheme, f.rule)
            }
        };
        self.findings.iter().map(line).collect()
    }

    /// Panics with the failing lines, for `cargo test`.
    pub fn assert_passes(&self) {
        let failed: Vec<String> =
            self.lines().into_iter().filter(|l| l.starts_with("FAIL")).collect();
        assert!(
            failed.is_empty(),
            "{} conformance rule(s) failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
}
