//! `authplug systems ...` and `authplug store ...`: the credential store from the command line.

use std::io::Write as _;
use std::path::Path;

use authplug_store::{Keyring, Location, Store, StoreError, SystemSummary};
use serde_json::json;

use crate::cli::{StoreArgs, StoreCommand, SystemsCommand};
use crate::exit::{Code, Failure};

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        let code = match &error {
            StoreError::NotFound(_) => Code::NotFound,
            StoreError::VersionConflict { .. } => Code::Conflict,
            StoreError::Exists(_) | StoreError::Bundle(_) => Code::BadInput,
            _ => Code::Store,
        };
        Failure::new(code, error.to_string())
    }
}

/// Opens the store the options name, with the master key from the environment or the key file.
pub fn open(args: &StoreArgs) -> Result<Store, Failure> {
    let location = match &args.location {
        Some(text) => Location::parse(text),
        None => Location::default_sqlite(),
    };
    let key_file =
        args.key_file.clone().unwrap_or_else(|| authplug_store::config_dir().join("master.key"));
    let keys = Keyring::from_env_or_file(&key_file)?;
    tracing::debug!(store = %location, "opening the credential store");
    Ok(Store::open(&location, keys)?)
}

/// Who is acting, for the audit trail.
pub fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

pub fn systems(
    args: &StoreArgs,
    command: Option<&SystemsCommand>,
    json: bool,
) -> Result<(), Failure> {
    let store = open(args)?;
    match command {
        None => list(&store, json),
        Some(SystemsCommand::Show { id, reveal, json }) => show(&store, id, *reveal, *json),
        Some(SystemsCommand::Delete { id, yes }) => {
            if !yes {
                return Err(Failure::new(
                    Code::BadInput,
                    format!("deleting `{id}` cannot be undone: run again with --yes to confirm"),
                ));
            }
            if store.delete(id, &actor())? {
                eprintln!("deleted system `{id}`");
                Ok(())
            } else {
                Err(StoreError::NotFound(id.clone()).into())
            }
        }
        Some(SystemsCommand::Audit { id, json }) => {
            let trail = store.audit(id)?;
            if trail.is_empty() {
                return Err(StoreError::NotFound(id.clone()).into());
            }
            if *json {
                return print_json(&trail);
            }
            for entry in trail {
                println!(
                    "{}  {:<16} {:<10} {}",
                    time(Some(entry.at)),
                    entry.actor,
                    entry.action,
                    entry.detail
                );
            }
            Ok(())
        }
    }
}

fn list(store: &Store, json: bool) -> Result<(), Failure> {
    let systems = store.list()?;
    if json {
        return print_json(&systems);
    }
    if systems.is_empty() {
        eprintln!("no systems in {}", store.location());
        return Ok(());
    }
    let header = ["ID", "SCHEME", "STATE", "EXPIRES", "VERSION", "UPDATED"].map(String::from);
    let rows: Vec<[String; 6]> = systems
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                s.scheme.clone(),
                s.state.to_string(),
                time(s.expires_at),
                s.version.to_string(),
                time(Some(s.updated_at)),
            ]
        })
        .collect();
    crate::schemes::print_table(&header, &rows);
    Ok(())
}

fn show(store: &Store, id: &str, reveal: bool, json: bool) -> Result<(), Failure> {
    let record = store.get(id)?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    if reveal {
        // Audited before anything is printed.
        store.record_event(
            id,
            &actor(),
            "revealed",
            json!({"secrets": record.summary.secret_names}),
        )?;
    }
    let value = |secret: &authplug_protocol::Secret| {
        if reveal {
            secret.expose().to_owned()
        } else {
            "********".to_owned()
        }
    };
    if json {
        let mut out = serde_json::to_value(&record.summary).expect("summaries serialise");
        if reveal {
            let values = |set: &std::collections::BTreeMap<String, authplug_protocol::Secret>| {
                set.iter()
                    .map(|(k, v)| (k.clone(), json!(v.expose())))
                    .collect::<serde_json::Map<_, _>>()
            };
            out["required"] = json!(values(&record.required));
            out["injected"] = json!(values(&record.injected));
        }
        return print_json(&out);
    }
    let s: &SystemSummary = &record.summary;
    println!("{} ({})", s.id, s.scheme);
    println!(
        "  state:        {}{}",
        s.state,
        s.state_reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
    );
    println!("  expires:      {}", time(s.expires_at));
    println!("  version:      {}", s.version);
    println!("  created:      {}", time(Some(s.created_at)));
    println!("  updated:      {}", time(Some(s.updated_at)));
    println!("  last refresh: {}", time(s.last_refresh_at));
    println!("  failures:     {}", s.failures);
    println!("  sealed under: {}", s.key_ids.join(", "));
    if !s.parameters.is_empty() {
        println!("  parameters:");
        for (name, value) in &s.parameters {
            println!("    {name} = {value}");
        }
    }
    for (kind, set) in [("required", &record.required), ("injected", &record.injected)] {
        println!("  {kind}:");
        for (name, secret) in set {
            println!("    {name} = {}", value(secret));
        }
    }
    if !reveal {
        eprintln!("(values hidden; --reveal shows them and records it in the audit trail)");
    }
    Ok(())
}

pub fn store(args: &StoreArgs, command: &StoreCommand) -> Result<(), Failure> {
    let store = open(args)?;
    match command {
        StoreCommand::RotateKey { json } => {
            let mut progress = |done: usize, total: usize| {
                eprint!("\rre-encrypting: {done}/{total} systems");
                if done == total {
                    eprintln!();
                }
            };
            let rotation = store.rotate_key(&mut progress)?;
            if *json {
                return print_json(&rotation);
            }
            let verb =
                if rotation.resumed { "finished an interrupted rotation" } else { "rotated" };
            println!(
                "{verb}: {} systems now sealed under {}{}",
                rotation.systems_rekeyed,
                rotation.current_key,
                if rotation.retired_keys.is_empty() {
                    String::new()
                } else {
                    format!("; retired {}", rotation.retired_keys.join(", "))
                }
            );
            Ok(())
        }
        StoreCommand::Export { output } => {
            let bundle = store.export()?;
            write_private(output, &bundle)?;
            eprintln!(
                "wrote {} (sealed under {})",
                output.display(),
                store.keyring().current().id()
            );
            Ok(())
        }
        StoreCommand::Import { file, replace } => {
            let bytes = std::fs::read(file).map_err(|e| {
                Failure::new(Code::BadInput, format!("cannot read {}: {e}", file.display()))
            })?;
            let report = store.import(&bytes, &actor(), *replace).map_err(|e| {
                let failure = Failure::from(e);
                Failure::new(failure.code, format!("{}: {}", file.display(), failure.message))
            })?;
            println!(
                "imported {}: {} created, {} replaced, {} skipped (exist; --replace overwrites)",
                file.display(),
                report.created.len(),
                report.replaced.len(),
                report.skipped.len()
            );
            Ok(())
        }
    }
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| {
        Failure::new(Code::Failure, format!("cannot write {}: {e}", path.display()))
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// Unix seconds as UTC `YYYY-MM-DD HH:MM:SS`, or `-`.
pub(crate) fn time(at: Option<i64>) -> String {
    at.and_then(|at| chrono::DateTime::from_timestamp(at, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    crate::schemes::print_json(value)
}

#[cfg(test)]
mod tests {
    use super::time;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(time(Some(1_900_000_000)), "2030-03-17 17:46:40");
        assert_eq!(time(Some(951_782_400)), "2000-02-29 00:00:00");
        assert_eq!(time(None), "-");
    }
}
