//! One onboarding path for every front end. `authplug connect` and `POST
//! /v1/systems/{id}/onboard` both:
//!
//! 1. [`Onboarder::plan`]: pick the connector's scheme, gather what the user gives
//!    (`Manifest::onboarding_inputs`, through the front end's [`Inputs`]), and the parameters
//!    (the manifest's scheme block, then the front end's);
//! 2. [`Onboarder::run`]: run the scheme's `onboard` steps; a consent goes through the front
//!    end's [`Consent`] (the CLI waits on a loopback server; the server [`Park`]s the onboarding
//!    sealed in the store until [`Onboarder::resume`] takes it back by its `state`);
//! 3. store the result, with what the scheme learned (its `outputs`, e.g. the tenant as
//!    `account_id`) over the parameters, through [`Engine::onboarded`], which forgets earlier
//!    `authorize` answers and says `recovered` when a system that needed re-authorisation is
//!    active again.
//!
//! The service knows no scheme: a scheme is handed the manifest fields it declares
//! ([`Connector::scheme_parameters`]), then the front end's defaults (the connector's
//! `additional_parameters` values, e.g. from `.authconfig`) where those leave a gap, then the
//! front end's explicit parameters over everything.
//!
//! Plugin calls and the store are synchronous: run these on a blocking thread.

mod consent;
mod error;
mod inputs;
mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;

use authplug_connector::{Connector, CONNECTOR_PARAMETER};
use authplug_engine::{Engine, EngineError};
use authplug_host::LoadedScheme;
use authplug_protocol::{OnboardRequest, OnboardStep, Resume, Secret};
use authplug_store::{NewSystem, Onboarded, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use consent::{Answer, Consent, Park, Parked, Pending};
pub use error::OnboardError;
pub use inputs::{Found, Given, Inputs};
pub use verify::{verify, DeclaredBy, Verdict, Verification, VerifyError};

/// The onboarding service over an engine.
#[derive(Debug, Clone)]
pub struct Onboarder {
    engine: Arc<Engine>,
}

/// What a front end asks to onboard.
#[derive(Debug)]
pub struct Request<'a> {
    pub connector: &'a Connector,
    /// The id to store the system under.
    pub system: String,
    /// Onboard an existing system again; without it, a taken id is [`OnboardError::Exists`].
    pub replace: bool,
    /// Who onboards, for the audit trail.
    pub actor: String,
    /// Where the provider sends the browser back (the front end's callback).
    pub redirect_uri: Option<String>,
    /// Parameters used where the manifest's scheme block has none (the classic `.authconfig`'s
    /// `account_id`, `base_url`).
    pub defaults: BTreeMap<String, Value>,
    /// Parameters over the manifest's (`--param`, the API's `parameters`).
    pub parameters: BTreeMap<String, Value>,
    /// Where the front end sends the browser when done (the server's web page), kept with a
    /// parked onboarding.
    pub return_to: Option<String>,
}

/// An onboarding ready to run: the scheme and everything it will be called with, and what will
/// be stored with its result. Holds secrets: never printed; kept only sealed.
#[derive(Serialize, Deserialize)]
pub struct Plan {
    system: String,
    scheme: String,
    /// The scheme's secrets and parameters.
    request: OnboardRequest,
    /// The connector's own secrets (stored with the scheme's).
    extras: BTreeMap<String, Secret>,
    /// What is recorded of the connector on the system.
    record: Value,
    replace: bool,
    actor: String,
    return_to: Option<String>,
    /// Each input's name and where it came from.
    #[serde(skip)]
    sources: Vec<(String, String)>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("system", &self.system)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// Each input's name and where it came from (`--secret`, `generated`, ...), never a value.
    pub fn sources(&self) -> &[(String, String)] {
        &self.sources
    }
}

/// How far an onboarding got.
#[derive(Debug)]
pub enum Outcome {
    /// Stored.
    Done(Box<Finished>),
    /// Parked until the consent's callback; send the user to `url`.
    AwaitingConsent { url: String },
}

/// A stored onboarding.
#[derive(Debug)]
pub struct Finished {
    pub stored: Onboarded,
    /// The tenant the scheme found (its output `account_id`), if any.
    pub tenant: Option<String>,
    /// What the operator should know (a given `account_id` overruled by the provider's).
    pub notes: Vec<String>,
}

impl Onboarder {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    /// The loaded scheme that serves `connector`.
    pub fn scheme_for(&self, connector: &Connector) -> Result<&LoadedScheme, OnboardError> {
        let manifest = &connector.manifest;
        let name = connector.name();
        let auth =
            manifest.auth.as_deref().ok_or(OnboardError::NoAuth { connector: name.clone() })?;
        self.engine
            .registry()
            .resolve(auth, manifest.auth_variant.as_deref())
            .ok_or(OnboardError::NoScheme { connector: name })
    }

    /// Picks the scheme and gathers the inputs and parameters. Refuses a taken id without
    /// `replace` before anyone is sent to a consent.
    pub fn plan(
        &self,
        request: Request<'_>,
        inputs: &mut dyn Inputs,
    ) -> Result<Plan, OnboardError> {
        let connector = request.connector;
        let scheme = self.scheme_for(connector)?;
        // Before anyone types a secret or is sent to a consent.
        if !request.replace && self.engine.store().version(&request.system)?.is_some() {
            return Err(OnboardError::Exists(request.system));
        }
        let mut wanted = connector.manifest.onboarding_inputs(scheme.descriptor());
        // A scheme secret the operator's configuration holds (an integrator's key) may be left
        // out: the host fills it in every call.
        let services = self.engine.services();
        let mut held = Vec::new();
        for input in wanted.iter_mut().filter(|i| i.for_scheme) {
            if services.operator_holds(scheme.id(), &input.name) {
                input.optional = true;
                held.push(input.name.clone());
            }
        }
        let mut gathered = inputs::gather(&wanted, inputs)?;
        for name in held.into_iter().filter(|n| !gathered.scheme.contains_key(n)) {
            gathered.sources.push((name, "the operator's secrets".into()));
        }
        let mut parameters = connector.scheme_parameters(scheme.descriptor());
        for (key, value) in request.defaults {
            parameters.entry(key).or_insert(value);
        }
        parameters.extend(request.parameters);
        Ok(Plan {
            record: authplug_connector::connector_parameter(connector, gathered.extras.keys()),
            system: request.system,
            scheme: scheme.id().to_owned(),
            request: OnboardRequest {
                required: gathered.scheme,
                parameters,
                redirect_uri: request.redirect_uri,
                ..OnboardRequest::default()
            },
            extras: gathered.extras,
            replace: request.replace,
            actor: request.actor,
            return_to: request.return_to,
            sources: gathered.sources,
        })
    }

    /// Runs the scheme's steps, a consent through `consent`, and stores the result.
    pub fn run(&self, plan: Plan, consent: &mut dyn Consent) -> Result<Outcome, OnboardError> {
        let request = plan.request.clone();
        self.steps(plan, request, consent)
    }

    /// The parked onboarding whose consent's callback carries `state`, taken out of the store
    /// (a state is good once, on any instance).
    pub fn take_pending(&self, state: &str) -> Result<Pending, OnboardError> {
        let bytes = self
            .engine
            .store()
            .take_pending_onboarding(state)?
            .ok_or(OnboardError::UnknownState)?;
        Pending::decode(&bytes)
    }

    /// Resumes a parked onboarding with its callback's query, and stores the result (a scheme
    /// that asks for another consent goes through `consent` again).
    pub fn resume(
        &self,
        pending: Pending,
        state: &str,
        mut callback: BTreeMap<String, String>,
        consent: &mut dyn Consent,
    ) -> Result<Outcome, OnboardError> {
        callback.insert("state".into(), state.to_owned());
        let Pending { plan, continuation } = pending;
        let mut request = plan.request.clone();
        request.resume = Some(resumed(state, continuation, callback)?);
        self.steps(plan, request, consent)
    }

    fn steps(
        &self,
        plan: Plan,
        mut request: OnboardRequest,
        consent: &mut dyn Consent,
    ) -> Result<Outcome, OnboardError> {
        loop {
            let scheme = self.engine.registry().get(&plan.scheme).ok_or_else(|| {
                let name = plan.record.get("name").and_then(Value::as_str);
                OnboardError::NoScheme { connector: name.unwrap_or(&plan.scheme).to_owned() }
            })?;
            let step = scheme
                .onboard(request.clone(), self.engine.services())
                .map_err(OnboardError::Scheme)?;
            match step {
                OnboardStep::Done { injected, expires_at, outputs } => {
                    let finished = self.store(plan, injected, expires_at, outputs)?;
                    return Ok(Outcome::Done(Box::new(finished)));
                }
                OnboardStep::Redirect { url, state, continuation } => {
                    let parked = Parked {
                        store: self.engine.store(),
                        state: &state,
                        plan: &plan,
                        continuation: &continuation,
                    };
                    match consent.redirect(&url, &state, parked)? {
                        Answer::Later => return Ok(Outcome::AwaitingConsent { url }),
                        Answer::Callback(callback) => {
                            request.resume = Some(resumed(&state, continuation, callback)?);
                        }
                    }
                }
            }
        }
    }

    /// Stores the result: the user's secrets (the scheme's and the connector's own), the
    /// injected ones, the parameters with what onboarding learned, the connector's record.
    fn store(
        &self,
        plan: Plan,
        injected: BTreeMap<String, Secret>,
        expires_at: Option<i64>,
        outputs: BTreeMap<String, Value>,
    ) -> Result<Finished, OnboardError> {
        let Plan { system, scheme, request, extras, record, replace, actor, .. } = plan;
        let mut parameters = request.parameters;
        let mut notes = Vec::new();
        let tenant = outputs.get(TENANT).and_then(text);
        if let (Some(tenant), Some(given)) = (&tenant, parameters.get(TENANT).and_then(text)) {
            if given != *tenant {
                notes.push(format!(
                    "the provider names tenant {tenant}, not the {TENANT} given ({given}); keeping {tenant}"
                ));
            }
        }
        parameters.extend(outputs);
        parameters.insert(CONNECTOR_PARAMETER.into(), record);
        let mut required = request.required;
        required.extend(extras);
        let new = NewSystem { id: system, scheme, parameters, required, injected, expires_at };
        let stored = match self.engine.onboarded(new, replace, &actor) {
            Ok(stored) => stored,
            // Taken by another onboarding during the consent.
            Err(EngineError::Store(StoreError::Exists(id))) => {
                return Err(OnboardError::Exists(id))
            }
            Err(other) => return Err(other.into()),
        };
        Ok(Finished { stored, tenant, notes })
    }
}

/// The connector parameter that names the tenant (the platform's convention; a scheme that
/// learns it says so in its `outputs`).
const TENANT: &str = "account_id";

/// A parameter's value as text (a tenant may be a number).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The scheme's continuation with the provider's answer, once it is the consent's own and not
/// a refusal.
fn resumed(
    state: &str,
    continuation: Secret,
    callback: BTreeMap<String, String>,
) -> Result<Resume, OnboardError> {
    // (A resumed onboarding was found by its state: there this holds by construction.)
    if callback.get("state").map(String::as_str) != Some(state) {
        return Err(OnboardError::ForgedCallback);
    }
    if let Some(error) = callback.get("error") {
        return Err(OnboardError::ConsentRefused {
            error: error.clone(),
            description: callback.get("error_description").cloned(),
        });
    }
    Ok(Resume { continuation, callback })
}
