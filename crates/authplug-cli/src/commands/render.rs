//! `authplug render DIR --system ID`: the connector's templates as the platform would run them
//! for this system, for a local run. Secret values are masked unless --reveal (which is
//! audited).

use std::collections::BTreeMap;
use std::path::PathBuf;

use authplug_connector::{expand, resolve, variables, Connector, Resolver, PLATFORM_VARIABLES};
use authplug_store::StoreError;
use clap::Args;
use serde_json::{json, Value};

use crate::context::Context;
use crate::exit::{Code, Failure};
use crate::output::{private_dir, write_private};

const MASK: &str = "********";

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The connector folder.
    #[arg(value_name = "CONNECTOR_DIR")]
    pub dir: PathBuf,

    /// The stored system whose secrets and parameters fill the templates.
    #[arg(long, value_name = "ID")]
    pub system: String,

    /// Write secret values instead of ******** (recorded in the audit trail; files 0600).
    #[arg(long)]
    pub reveal: bool,

    /// Write system.json and <datatype>.json here instead of printing system.json.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// A value for $ENV(KEY), over the stored one; repeat for several.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
}

pub fn run(ctx: &Context<'_>, args: &RenderArgs) -> Result<(), Failure> {
    if ctx.json() {
        return Err(Failure::no_json("render", "the rendered system.json is JSON already"));
    }
    let bad = |message: String| Failure::new(Code::BadInput, message);
    let connector = Connector::load(&args.dir).map_err(|e| bad(e.to_string()))?;
    let store = ctx.store()?;
    let record =
        store.get(&args.system)?.ok_or_else(|| StoreError::NotFound(args.system.clone()))?;
    if args.reveal {
        // Audited before anything is printed.
        let names = &record.summary.secret_names;
        store.record_event(
            &args.system,
            &ctx.actor(),
            "revealed",
            json!({"secrets": names, "by": "render"}),
        )?;
    }

    // The system's secrets (injected, and the user's own such as webhook_secret), and its
    // environment: stored parameters the connector may read as $ENV, then --env.
    let secrets: BTreeMap<&str, &str> = record
        .required
        .iter()
        .chain(&record.injected)
        .map(|(name, secret)| (name.as_str(), secret.expose()))
        .collect();
    let manifest = &connector.manifest;
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in &record.summary.parameters {
        let wanted = manifest.additional_parameters.contains_key(key)
            || PLATFORM_VARIABLES.contains(&key.as_str());
        if wanted {
            env.insert(
                key.clone(),
                value.as_str().map_or_else(|| value.to_string(), str::to_owned),
            );
        }
    }
    for pair in &args.env {
        let (key, value) =
            pair.split_once('=').ok_or_else(|| bad(format!("--env {pair}: expected KEY=VALUE")))?;
        env.insert(key.to_owned(), value.to_owned());
    }
    let secret = |name: &str| {
        secrets
            .get(name)
            .map(|value| if args.reveal { (*value).to_owned() } else { MASK.to_owned() })
    };
    let env_value = |name: &str| env.get(name).cloned();
    let resolver = Resolver { secret: &secret, env: &env_value };

    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut unresolved: Vec<String> = Vec::new();
    for (datatype, template) in connector.templates() {
        let datatype_entry = datatype
            .and_then(|d| manifest.datatypes.get_key_value(d))
            .map(|(k, v)| (k.as_str(), v));
        let text = connector.read_template(template).map_err(|e| bad(e.to_string()))?;
        let place = args.dir.join(template).display().to_string();
        let vars = variables(&connector, &args.system, datatype_entry);
        let expanded = expand(&place, &text, &vars).map_err(|e| bad(e.to_string()))?;
        let (resolved, missing) =
            resolve(&place, &expanded, &resolver).map_err(|e| bad(e.to_string()))?;
        if let Err(e) = serde_json::from_str::<Value>(&resolved) {
            return Err(bad(format!("{place}: the rendered template is not JSON ({e})")));
        }
        unresolved.extend(missing);
        let name = datatype.map_or_else(|| "system.json".to_owned(), |d| format!("{d}.json"));
        outputs.push((name, resolved));
    }
    unresolved.sort();
    unresolved.dedup();
    if !unresolved.is_empty() {
        let first = &unresolved[0];
        eprintln!(
            "warning: left {} as written: the system has no value for {} (give --env {first}=...)",
            unresolved.iter().map(|n| format!("$ENV({n})")).collect::<Vec<_>>().join(", "),
            if unresolved.len() == 1 { "it" } else { "them" }
        );
    }
    if !args.reveal {
        eprintln!("(secret values masked; --reveal writes them and records it in the audit trail)");
    }
    match &args.output {
        None => {
            let (_, system) =
                outputs.first().filter(|(n, _)| n == "system.json").ok_or_else(|| {
                    bad(format!(
                        "{}: the manifest has no system-template",
                        args.dir.join("manifest.json").display()
                    ))
                })?;
            print!("{system}");
            if !system.ends_with('\n') {
                println!();
            }
        }
        Some(out) => {
            private_dir(out)?;
            for (name, text) in &outputs {
                // Every rendered file is written readable by its owner only (mode 0600). Names
                // are `system.json` and datatypes' names, which the manifest's load restricted
                // to file names: each resolves inside `out`.
                write_private(&out.join(name), text.as_bytes())?;
            }
            eprintln!("wrote {} file(s) to {}", outputs.len(), out.display());
        }
    }
    Ok(())
}
