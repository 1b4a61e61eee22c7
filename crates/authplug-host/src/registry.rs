//! The registry of loaded schemes: by id and by the `(auth, auth_variant)` pairs they serve.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use authplug_protocol::{
    method, AuthPair, ErrorBody, ErrorCode, OnboardRequest, OnboardStep, ProtocolVersion,
    RefreshOutcome, RefreshRequest, SchemeDescriptor, Secret,
};
use authplug_sdk::{Host, Scheme};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::call::{CallError, HostServices};
use crate::loader::{self, LoadOptions, Refusal};
use crate::redact::scrub;

#[path = "apply.rs"]
mod apply;
#[path = "revoke.rs"]
mod revoke;

/// Where a scheme came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A plugin file loaded at startup: in this process, or served by a child process.
    Plugin {
        path: PathBuf,
        name: String,
        version: String,
        protocol: ProtocolVersion,
        /// Served by a child process.
        isolated: bool,
        /// The file's SHA-256, in hex.
        sha256: String,
    },
    /// A scheme crate linked into this binary.
    Static { crate_name: &'static str, crate_version: &'static str },
}

impl Origin {
    /// The file, or a marker for a statically linked crate; used to name conflicts.
    pub fn source(&self) -> PathBuf {
        match self {
            Origin::Plugin { path, .. } => path.clone(),
            Origin::Static { crate_name, .. } => PathBuf::from(format!("(linked) {crate_name}")),
        }
    }

    pub fn package(&self) -> (&str, &str) {
        match self {
            Origin::Plugin { name, version, .. } => (name, version),
            Origin::Static { crate_name, crate_version } => (crate_name, crate_version),
        }
    }

    /// The protocol the scheme speaks: the plugin's, or this host's own when linked statically.
    pub fn protocol(&self) -> ProtocolVersion {
        match self {
            Origin::Plugin { protocol, .. } => *protocol,
            Origin::Static { .. } => ProtocolVersion::current(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source().display().to_string())
    }
}

#[derive(Clone)]
pub(crate) enum Provider {
    Plugin(authplug_abi::Plugin),
    Isolated(std::sync::Arc<crate::isolate::Isolated>),
    Static(&'static dyn Scheme),
}

/// One scheme the host can use.
#[derive(Clone)]
pub struct LoadedScheme {
    descriptor: SchemeDescriptor,
    origin: Origin,
    provider: Provider,
    /// The deadlines of calls to an isolated plugin.
    limits: crate::Limits,
    stats: std::sync::Arc<crate::stats::CallStats>,
}

impl fmt::Debug for LoadedScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedScheme")
            .field("id", &self.descriptor.id)
            .field("origin", &self.origin)
            .finish()
    }
}

/// All schemes loaded at startup, plus what was refused. Plugins are never unloaded.
#[derive(Debug, Default)]
pub struct Registry {
    schemes: BTreeMap<String, LoadedScheme>,
    pairs: BTreeMap<AuthPair, String>,
    refusals: Vec<Refusal>,
    warnings: Vec<String>,
}

impl Registry {
    /// Loads every plugin file of `options.dirs` (and the statically linked schemes if asked).
    /// Never fails as a whole: a bad file becomes a [`Refusal`] and the good ones still load. The
    /// caller reports the refusals (a warning line each, or a failure when it is strict).
    pub fn load(options: &LoadOptions) -> Self {
        let mut refusals = Vec::new();
        let mut candidates = Vec::new();
        if options.include_static {
            for registration in authplug_sdk::registered() {
                let origin = Origin::Static {
                    crate_name: registration.crate_name,
                    crate_version: registration.crate_version,
                };
                let descriptor = registration.scheme.descriptor();
                match loader::validate(&descriptor) {
                    Ok(()) => candidates.push(LoadedScheme {
                        descriptor,
                        origin,
                        provider: Provider::Static(registration.scheme),
                        limits: options.isolation.limits,
                        stats: Default::default(),
                    }),
                    Err(reason) => refusals.push(Refusal { files: vec![origin.source()], reason }),
                }
            }
        }
        let mut warnings = Vec::new();
        for path in loader::discover(&options.dirs, &mut refusals) {
            match loader::open(&path, options) {
                Ok(file) => {
                    if let Some(warning) = &file.warning {
                        warnings.push(format!("plugin {}: {warning}", path.display()));
                    }
                    if !file.isolated && !options.isolation.shipped(&path) {
                        warnings.push(format!(
                            "plugin {} runs in-process, unisolated, as configured: a crash in it stops authplug, and it can read every secret authplug holds",
                            path.display()
                        ));
                    }
                    for descriptor in file.manifest.schemes {
                        candidates.push(LoadedScheme {
                            descriptor,
                            origin: Origin::Plugin {
                                path: path.clone(),
                                name: file.manifest.plugin.name.clone(),
                                version: file.manifest.plugin.version.clone(),
                                protocol: file.protocol,
                                isolated: file.isolated,
                                sha256: file.sha256.clone(),
                            },
                            provider: file.provider.clone(),
                            limits: options.isolation.limits,
                            stats: Default::default(),
                        });
                    }
                }
                Err(reason) => refusals.push(Refusal { files: vec![path], reason }),
            }
        }
        let mut registry = Self::from_candidates(candidates, refusals);
        registry.warnings = warnings;
        for scheme in registry.schemes.values() {
            tracing::debug!(scheme = %scheme.descriptor.id, origin = %scheme.origin, "scheme loaded");
        }
        registry
    }

    /// Keeps the candidates that conflict with nobody. A scheme id or an `(auth, auth_variant)`
    /// pair claimed twice is ambiguous: which one wins must not depend on file names, so neither
    /// is loaded and the refusal names both sources.
    fn from_candidates(candidates: Vec<LoadedScheme>, mut refusals: Vec<Refusal>) -> Self {
        let mut by_id: BTreeMap<String, Vec<LoadedScheme>> = BTreeMap::new();
        for candidate in candidates {
            by_id.entry(candidate.descriptor.id.clone()).or_default().push(candidate);
        }
        let mut schemes = BTreeMap::new();
        for (id, claims) in by_id {
            if claims.len() == 1 {
                schemes.insert(id, claims.into_iter().next().expect("one claim"));
            } else {
                refusals.push(Refusal {
                    files: claims.iter().map(|c| c.origin.source()).collect(),
                    reason: format!("both claim the scheme id `{id}`; neither is loaded"),
                });
            }
        }
        let mut claimants: BTreeMap<AuthPair, Vec<String>> = BTreeMap::new();
        for scheme in schemes.values() {
            let unique: BTreeSet<&AuthPair> = scheme.descriptor.serves.iter().collect();
            for pair in unique {
                claimants.entry(pair.clone()).or_default().push(scheme.descriptor.id.clone());
            }
        }
        let mut conflicted = BTreeSet::new();
        for (pair, ids) in &claimants {
            if ids.len() > 1 {
                refusals.push(Refusal {
                    files: ids.iter().map(|id| schemes[id].origin.source()).collect(),
                    reason: format!(
                        "schemes {} all serve auth `{pair}`; none of them is loaded",
                        ids.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ")
                    ),
                });
                conflicted.extend(ids.iter().cloned());
            }
        }
        schemes.retain(|id, _| !conflicted.contains(id));
        let pairs = claimants
            .into_iter()
            .filter(|(_, ids)| ids.len() == 1 && schemes.contains_key(&ids[0]))
            .map(|(pair, mut ids)| (pair, ids.remove(0)))
            .collect();
        Self { schemes, pairs, refusals, warnings: Vec::new() }
    }

    /// Every loaded scheme, by id.
    pub fn schemes(&self) -> impl Iterator<Item = &LoadedScheme> {
        self.schemes.values()
    }

    pub fn get(&self, id: &str) -> Option<&LoadedScheme> {
        self.schemes.get(id)
    }

    /// The scheme serving a connector manifest's `auth` / `auth_variant`.
    pub fn resolve(&self, auth: &str, auth_variant: Option<&str>) -> Option<&LoadedScheme> {
        let id = self.pairs.get(&AuthPair::new(auth, auth_variant))?;
        self.schemes.get(id)
    }

    /// Files and schemes that were not loaded, one line each.
    pub fn refusals(&self) -> &[Refusal] {
        &self.refusals
    }

    /// What the operator should know about files that did load (one runs unisolated), one line
    /// each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

impl LoadedScheme {
    pub fn descriptor(&self) -> &SchemeDescriptor {
        &self.descriptor
    }

    pub fn id(&self) -> &str {
        &self.descriptor.id
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The scheme's calls, failures and latency since startup.
    pub fn counts(&self) -> crate::Counts {
        self.stats.read()
    }

    /// An isolated plugin whose process is down (it failed and is not started again yet).
    pub fn degraded(&self) -> bool {
        matches!(&self.provider, Provider::Isolated(child) if !child.running())
    }

    /// How many times an isolated plugin's process was started again after a failure (`None`
    /// for a scheme that runs in this process).
    pub fn restarts(&self) -> Option<u64> {
        match &self.provider {
            Provider::Isolated(child) => Some(child.restarts()),
            Provider::Plugin(_) | Provider::Static(_) => None,
        }
    }

    /// Runs onboarding. The required secrets must be exactly the declared ones; the answer must
    /// inject exactly the declared secrets (the contract), or the call fails.
    pub fn onboard(
        &self,
        mut request: OnboardRequest,
        host: &HostServices,
    ) -> Result<OnboardStep, CallError> {
        request.scheme = self.descriptor.id.clone();
        host.operator().fill(self.id(), &self.descriptor.required, &mut request.required);
        let declared: Vec<&str> =
            self.descriptor.required.iter().map(|s| s.name.as_str()).collect();
        self.check_names("required secret", &declared, request.required.keys(), true)?;
        let secrets: Vec<Secret> = request.required.values().cloned().collect();
        let step: OnboardStep =
            self.invoke(method::ONBOARD, &request, host, &secrets, |s, h| {
                s.onboard(request.clone(), h)
            })?;
        match &step {
            OnboardStep::Done { injected, .. } => self.check_injected(injected)?,
            OnboardStep::Redirect { url, state, .. } => {
                // The host checks `state` on the callback: an empty one would check nothing.
                if state.len() < 16 {
                    return Err(
                        self.violation("a redirect step needs a state of 16 or more characters")
                    );
                }
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(self.violation("a redirect step needs an http(s) URL"));
                }
            }
        }
        Ok(step)
    }

    /// Renews a stored credential. A renewal must inject exactly the declared secrets.
    pub fn refresh(
        &self,
        mut request: RefreshRequest,
        host: &HostServices,
    ) -> Result<RefreshOutcome, CallError> {
        request.scheme = self.descriptor.id.clone();
        host.operator().fill(self.id(), &self.descriptor.required, &mut request.required);
        let secrets: Vec<Secret> =
            request.required.values().chain(request.injected.values()).cloned().collect();
        let mut outcome: RefreshOutcome =
            self.invoke(method::REFRESH, &request, host, &secrets, |s, h| {
                s.refresh(request.clone(), h)
            })?;
        match &mut outcome {
            RefreshOutcome::Renewed { injected, .. } => self.check_injected(injected)?,
            // The reason reaches operators and logs: scrub what the call carried.
            RefreshOutcome::Reauthorize { reason }
            | RefreshOutcome::Transient { reason, .. }
            | RefreshOutcome::Unchanged { reason } => {
                *reason = scrub(reason, secrets.iter());
            }
        }
        Ok(outcome)
    }

    fn check_injected(
        &self,
        injected: &std::collections::BTreeMap<String, Secret>,
    ) -> Result<(), CallError> {
        let declared: Vec<&str> =
            self.descriptor.injected.iter().map(|s| s.name.as_str()).collect();
        self.check_names("injected secret", &declared, injected.keys(), false)
    }

    fn violation(&self, message: &str) -> CallError {
        CallError::new(self.id(), ErrorCode::ContractViolation, message)
    }

    /// Checks `given` names against `declared`: none missing, none extra. `input` tells whether
    /// the caller (bad input) or the scheme (contract violation) is at fault.
    fn check_names<'a>(
        &self,
        what: &str,
        declared: &[&str],
        given: impl Iterator<Item = &'a String>,
        input: bool,
    ) -> Result<(), CallError> {
        let given: BTreeSet<&str> = given.map(String::as_str).collect();
        let declared_set: BTreeSet<&str> = declared.iter().copied().collect();
        let code = if input { ErrorCode::InvalidInput } else { ErrorCode::ContractViolation };
        let (missing_verb, extra_verb) = if input {
            ("is missing", "is not one this scheme takes")
        } else {
            ("was declared but not injected", "was injected but never declared")
        };
        if let Some(name) = declared_set.difference(&given).next() {
            return Err(CallError::new(self.id(), code, format!("{what} `{name}` {missing_verb}")));
        }
        if let Some(name) = given.difference(&declared_set).next() {
            let expected = declared.join(", ");
            return Err(CallError::new(
                self.id(),
                code,
                format!("{what} `{name}` {extra_verb} (declared: {expected})"),
            ));
        }
        Ok(())
    }

    /// One call, counted (method, failure code, latency).
    fn invoke<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        request: &Req,
        host: &HostServices,
        secrets: &[Secret],
        direct: impl FnOnce(&dyn Scheme, &Host<'_>) -> Result<Resp, ErrorBody>,
    ) -> Result<Resp, CallError> {
        let started = std::time::Instant::now();
        let result = self.call(method, request, host, secrets, direct);
        let failure = result.as_ref().err().map(|e| &e.code);
        if !crate::call::unblocking::was_refused() {
            self.stats.record(method, started.elapsed(), failure);
        }
        result
    }

    /// One call, through the boundary for a plugin (in this process or its child's) or directly
    /// for a linked scheme. Whatever the scheme says in an error is scrubbed of `secrets`.
    fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        request: &Req,
        host: &HostServices,
        secrets: &[Secret],
        direct: impl FnOnce(&dyn Scheme, &Host<'_>) -> Result<Resp, ErrorBody>,
    ) -> Result<Resp, CallError> {
        let host_fn = |m: &str, r: &str| host.handle(m, r);
        let fail = |body: ErrorBody| {
            CallError::new(self.id(), body.code, scrub(&body.message, secrets.iter()))
        };
        let deadline =
            if method == method::ONBOARD { self.limits.onboard } else { self.limits.call };
        let answer = match &self.provider {
            Provider::Static(scheme) => {
                let host = Host::new(&host_fn);
                return match catch_unwind(AssertUnwindSafe(|| direct(*scheme, &host))) {
                    Ok(outcome) => outcome.map_err(fail),
                    Err(payload) => Err(fail(ErrorBody::new(
                        ErrorCode::PluginPanic,
                        format!("scheme panicked: {}", authplug_abi::panic_message(&payload)),
                    ))),
                };
            }
            Provider::Plugin(_) | Provider::Isolated(_) => {
                let protocol = self.origin.protocol();
                if let Some(since) = method::since(method).filter(|s| !protocol.has(*s)) {
                    return Err(CallError::new(
                        self.id(),
                        ErrorCode::UnknownMethod,
                        format!(
                            "`{method}` needs protocol {}.{}, but {} was built for {protocol}",
                            since.0, since.1, self.origin
                        ),
                    ));
                }
                let json = serde_json::to_string(request).map_err(|_| {
                    CallError::new(self.id(), ErrorCode::Internal, "unserialisable request")
                })?;
                match &self.provider {
                    Provider::Isolated(child) => child.call(method, &json, &host_fn, deadline),
                    Provider::Plugin(plugin) => plugin.call(method, &json, &host_fn),
                    Provider::Static(_) => Err(String::new()),
                }
            }
        };
        match answer {
            Ok(answer) => serde_json::from_str(&answer).map_err(|e| {
                CallError::new(
                    self.id(),
                    ErrorCode::ContractViolation,
                    format!("unreadable `{method}` answer ({:?} error)", e.classify()),
                )
            }),
            Err(error) => Err(fail(serde_json::from_str(&error).unwrap_or_else(|_| {
                ErrorBody::new(ErrorCode::Other, error.chars().take(200).collect::<String>())
            }))),
        }
    }
}
