//! `authplug schemes` and `authplug schemes show ID`: the loaded schemes, where each came from,
//! and any refused plugin file.

use authplug_host::{LoadedScheme, Origin, Registry};
use authplug_protocol::{ApplyOutput, SchemeDescriptor, Source};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::context::{plugin_dirs, Context};
use crate::exit::{Code, Failure};
use crate::output::{print_json, print_table};

#[derive(Debug, Args)]
pub struct SchemesArgs {
    #[command(subcommand)]
    pub command: Option<SchemesCommand>,
}

#[derive(Debug, Subcommand)]
pub enum SchemesCommand {
    /// Show one scheme's contract: what it serves, requires and injects.
    Show {
        /// The scheme id, e.g. api_key.
        id: String,
    },
    /// Check a built plugin file against the conformance rules (descriptor, docs, onboarding's
    /// injected set, refresh classification, apply's headers, no panics, no secret in any
    /// error), one line per rule; exit code 9 when one fails.
    Test(super::conformance::TestArgs),
    /// Write a new scheme crate (Cargo.toml, src/lib.rs, a conformance test, a sample
    /// connector, a README) that builds, tests and loads with no edit.
    New(super::scaffold::NewArgs),
}

pub fn run(ctx: &Context<'_>, args: &SchemesArgs) -> Result<(), Failure> {
    match &args.command {
        None => list(ctx, &*ctx.registry()?),
        Some(SchemesCommand::Show { id }) => show(ctx, &*ctx.registry()?, id),
        Some(SchemesCommand::Test(test)) => super::conformance::run(ctx, test),
        Some(SchemesCommand::New(new)) => super::scaffold::run(ctx, new),
    }
}

fn list(ctx: &Context<'_>, registry: &Registry) -> Result<(), Failure> {
    if ctx.json() {
        let schemes: Vec<_> = registry.schemes().map(scheme_json).collect();
        let refused: Vec<_> = registry
            .refusals()
            .iter()
            .map(|r| json!({"files": r.files, "reason": r.reason}))
            .collect();
        return print_json(&json!({"schemes": schemes, "refused": refused}));
    }
    if registry.schemes().next().is_none() {
        let dirs: Vec<String> =
            plugin_dirs(&ctx.cli.plugins).iter().map(|d| d.display().to_string()).collect();
        eprintln!(
            "no schemes loaded; searched {} (build plugins with `cargo xtask plugins`, or pass \
             --plugin-dir)",
            dirs.join(", ")
        );
        return Ok(());
    }
    let rows: Vec<[String; 8]> = registry
        .schemes()
        .map(|s| {
            let (package, version) = s.origin().package();
            [
                s.id().to_owned(),
                s.descriptor().display_name.clone(),
                serves(s.descriptor()),
                package.to_owned(),
                version.to_owned(),
                s.origin().protocol().to_string(),
                isolation(s.origin()).to_owned(),
                s.origin().to_string(),
            ]
        })
        .collect();
    let head = ["ID", "NAME", "SERVES", "PLUGIN", "VERSION", "PROTOCOL", "RUNS", "SOURCE"];
    print_table(&head, &rows);
    Ok(())
}

fn show(ctx: &Context<'_>, registry: &Registry, id: &str) -> Result<(), Failure> {
    let scheme = find(registry, id)?;
    if ctx.json() {
        return print_json(&scheme_json(scheme));
    }
    let d = scheme.descriptor();
    let (package, version) = scheme.origin().package();
    println!("{} ({})", d.id, d.display_name);
    println!("  source:    {}", scheme.origin());
    println!("  plugin:    {package} {version}, protocol {}", scheme.origin().protocol());
    println!("  runs:      {}", isolation(scheme.origin()));
    if let Origin::Plugin { sha256, .. } = scheme.origin() {
        println!("  sha256:    {sha256}");
    }
    println!("  serves:    {}", serves(d));
    println!("  requires:");
    for s in &d.required {
        let kind = match (s.secret, s.operator) {
            (true, true) => "secret, from the operator's configuration",
            (true, false) => "secret",
            (false, _) => "not secret",
        };
        println!("    {:<22} {} [{kind}]", s.name, s.description);
    }
    println!("  injects:");
    for s in &d.injected {
        let source = match &s.source {
            Source::Unspecified => "source not declared".to_owned(),
            Source::Copied { from } => format!("copied from {from}"),
            Source::Onboarding => "obtained during onboarding".to_owned(),
            Source::Renewed => "obtained during onboarding, renewed".to_owned(),
        };
        let compat = if s.compat { ", for existing templates" } else { "" };
        let kind = s.value_type.to_string();
        println!("    {:<22} {kind:<10}  {} [{source}{compat}]", s.name, s.description);
    }
    let renews = match (d.refresh.renews, d.refresh.margin_secs) {
        (false, _) => "no (the injected secrets do not expire)".to_owned(),
        (true, Some(margin)) => format!("yes, {margin} s before expiry"),
        (true, None) => "yes, with the host's default margin".to_owned(),
    };
    println!("  renews:    {renews}");
    let applies = match d.apply_output {
        ApplyOutput::ShortLived => "a short-lived credential (authorize: tokens receive it)",
        ApplyOutput::LongLived => "the long-lived secret (authorize needs long-lived: too)",
        ApplyOutput::Unspecified => "not declared (treated as the long-lived secret)",
    };
    println!("  applies:   {applies}");
    let verifies = match &d.verify {
        Some(request) => format!("{} {}", request.method, request.url),
        None => "nothing declared (a connector may declare its own \"verify\")".to_owned(),
    };
    println!("  verifies:  {verifies}");
    Ok(())
}

/// The scheme `id`, or a failure listing the loaded ones.
pub fn find<'r>(registry: &'r Registry, id: &str) -> Result<&'r LoadedScheme, Failure> {
    registry.get(id).ok_or_else(|| {
        let loaded: Vec<&str> = registry.schemes().map(LoadedScheme::id).collect();
        let loaded = if loaded.is_empty() { "none".to_owned() } else { loaded.join(", ") };
        Failure::new(Code::NotFound, format!("unknown scheme `{id}`; loaded schemes: {loaded}"))
    })
}

fn serves(d: &SchemeDescriptor) -> String {
    d.serves.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn scheme_json(scheme: &LoadedScheme) -> serde_json::Value {
    let (package, version) = scheme.origin().package();
    let source = match scheme.origin() {
        Origin::Plugin { path, sha256, .. } => {
            json!({"kind": "plugin", "file": path, "sha256": sha256})
        }
        Origin::Static { .. } => json!({"kind": "static"}),
    };
    json!({
        "id": scheme.id(),
        "descriptor": scheme.descriptor(),
        "source": source,
        "plugin": {"name": package, "version": version},
        "protocol": scheme.origin().protocol().to_string(),
        "isolation": isolation(scheme.origin()),
    })
}

/// Where a scheme runs: `process` (its own child), `in-process`, or `linked` (into this binary).
fn isolation(origin: &Origin) -> &'static str {
    match origin {
        Origin::Plugin { isolated: true, .. } => "process",
        Origin::Plugin { isolated: false, .. } => "in-process",
        Origin::Static { .. } => "linked",
    }
}
