//! `authplug schemes`, `authplug schemes show` and `authplug docs`.

use std::path::Path;

use authplug_host::{docs, LoadedScheme, Origin, Registry};
use authplug_protocol::{SchemeDescriptor, Source};
use serde::Serialize;
use serde_json::json;

use crate::cli::PluginArgs;
use crate::exit::{Code, Failure};

/// Prints refusals as warnings on stderr; called before any listing.
pub fn warn_refusals(registry: &Registry) {
    for refusal in registry.refusals() {
        eprintln!("warning: {refusal}");
    }
}

pub fn list(registry: &Registry, args: &PluginArgs, json: bool) -> Result<(), Failure> {
    warn_refusals(registry);
    if json {
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
            crate::plugins::dirs(args).iter().map(|d| d.display().to_string()).collect();
        eprintln!(
            "no schemes loaded; searched {} (build plugins with `cargo xtask plugins`, or pass \
             --plugin-dir)",
            dirs.join(", ")
        );
        return Ok(());
    }
    let header =
        ["ID", "NAME", "SERVES", "PLUGIN", "VERSION", "PROTOCOL", "SOURCE"].map(String::from);
    let rows: Vec<[String; 7]> = registry
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
                s.origin().to_string(),
            ]
        })
        .collect();
    print_table(&header, &rows);
    Ok(())
}

pub fn show(registry: &Registry, id: &str, json: bool) -> Result<(), Failure> {
    warn_refusals(registry);
    let scheme = find(registry, id)?;
    if json {
        return print_json(&scheme_json(scheme));
    }
    let d = scheme.descriptor();
    let (package, version) = scheme.origin().package();
    println!("{} ({})", d.id, d.display_name);
    println!("  source:    {}", scheme.origin());
    println!("  plugin:    {package} {version}, protocol {}", scheme.origin().protocol());
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
    Ok(())
}

pub fn docs(registry: &Registry, output: Option<&Path>, ids: &[String]) -> Result<(), Failure> {
    warn_refusals(registry);
    let chosen: Vec<&SchemeDescriptor> = if ids.is_empty() {
        registry.schemes().map(LoadedScheme::descriptor).collect()
    } else {
        ids.iter()
            .map(|id| find(registry, id).map(LoadedScheme::descriptor))
            .collect::<Result<_, _>>()?
    };
    let page = docs::reference_page(chosen);
    match output {
        None => {
            print!("{page}");
            Ok(())
        }
        Some(path) => std::fs::write(path, page).map_err(|e| {
            Failure::new(Code::Failure, format!("cannot write {}: {e}", path.display()))
        }),
    }
}

fn find<'r>(registry: &'r Registry, id: &str) -> Result<&'r LoadedScheme, Failure> {
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
        Origin::Plugin { path, .. } => json!({"kind": "plugin", "file": path}),
        Origin::Static { .. } => json!({"kind": "static"}),
    };
    json!({
        "id": scheme.id(),
        "descriptor": scheme.descriptor(),
        "source": source,
        "plugin": {"name": package, "version": version},
        "protocol": scheme.origin().protocol().to_string(),
    })
}

pub fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new(Code::Failure, format!("cannot print JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

pub fn print_table<const N: usize>(header: &[String; N], rows: &[[String; N]]) {
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> =
            row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
}
