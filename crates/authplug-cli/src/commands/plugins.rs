//! `authplug plugins lock` and `authplug plugins verify`: pinning the plugin files an operator
//! approved (by name and SHA-256), and checking a folder against the pins without running any
//! of its code. `--plugins-lock FILE` makes every command refuse the files a lock does not admit.

use std::collections::BTreeMap;
use std::path::PathBuf;

use authplug_host::{file_sha256, plugin_files, LockedPlugin, Origin, PluginLock, LOCK_VERSION};
use clap::Subcommand;
use serde_json::json;

use crate::context::{plugin_dirs, Context};
use crate::exit::{Code, Failure};
use crate::output::print_json;

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Write a lock file pinning every plugin file that loads from the plugin folders: its name,
    /// SHA-256, size, plugin name and version, protocol and scheme ids. Give it to the host with
    /// --plugins-lock (or AUTHPLUG_PLUGINS_LOCK) and any other file, or a changed one, is refused.
    Lock {
        /// Where to write the lock.
        #[arg(long, short, value_name = "FILE", default_value = "authplug-plugins.lock")]
        output: PathBuf,
    },
    /// Check the plugin folders against a lock file without loading any plugin: every file must
    /// be in it with the same SHA-256. Exit code 3 names each that is not (and locked files that
    /// are missing).
    Verify {
        /// The lock file.
        #[arg(value_name = "LOCK")]
        lock: PathBuf,
    },
}

pub fn run(ctx: &Context<'_>, command: &PluginsCommand) -> Result<(), Failure> {
    match command {
        PluginsCommand::Lock { output } => lock(ctx, output),
        PluginsCommand::Verify { lock } => verify(ctx, lock),
    }
}

fn lock(ctx: &Context<'_>, output: &PathBuf) -> Result<(), Failure> {
    let registry = ctx.registry()?;
    let mut plugins: BTreeMap<String, LockedPlugin> = BTreeMap::new();
    for scheme in registry.schemes() {
        let Origin::Plugin { path, name, version, protocol, sha256, .. } = scheme.origin() else {
            continue;
        };
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or_default();
        let entry = plugins.entry(file).or_insert_with(|| LockedPlugin {
            sha256: sha256.clone(),
            size,
            plugin: name.clone(),
            plugin_version: version.clone(),
            protocol: protocol.to_string(),
            schemes: Vec::new(),
        });
        entry.schemes.push(scheme.id().to_owned());
    }
    let lock = PluginLock { version: LOCK_VERSION, plugins };
    let text = serde_json::to_string_pretty(&lock).expect("a lock serialises") + "\n";
    std::fs::write(output, text)
        .map_err(|e| Failure::new(Code::Failure, format!("{}: {e}", output.display())))?;
    if ctx.json() {
        return print_json(
            &json!({"lock": output, "files": lock.plugins.keys().collect::<Vec<_>>()}),
        );
    }
    eprintln!("locked {} plugin file(s) in {}", lock.plugins.len(), output.display());
    Ok(())
}

fn verify(ctx: &Context<'_>, path: &PathBuf) -> Result<(), Failure> {
    let lock = PluginLock::read(path).map_err(Failure::bad_input)?;
    let (files, unreadable) = plugin_files(&plugin_dirs(&ctx.cli.plugins));
    let mut problems: Vec<(String, String)> =
        unreadable.iter().map(|r| (r.files[0].display().to_string(), r.reason.clone())).collect();
    let mut seen = Vec::new();
    for file in &files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let judged = authplug_host::permissions(file)
            .and_then(|_| file_sha256(file))
            .and_then(|hash| lock.admits(file, &hash));
        if let Err(reason) = judged {
            problems.push((file.display().to_string(), reason));
        }
        seen.push(name);
    }
    for name in lock.plugins.keys().filter(|n| !seen.contains(n)) {
        problems.push((name.clone(), "locked but not in the plugin folders".into()));
    }
    if ctx.json() {
        let listed: Vec<_> =
            problems.iter().map(|(file, reason)| json!({"file": file, "reason": reason})).collect();
        print_json(&json!({"lock": path, "ok": problems.is_empty(), "problems": listed}))?;
    } else {
        for (file, reason) in &problems {
            println!("{file}: {reason}");
        }
    }
    if problems.is_empty() {
        eprintln!("{} plugin file(s) match {}", files.len(), path.display());
        return Ok(());
    }
    Err(Failure::new(
        Code::PluginRefused,
        format!("{} plugin file(s) do not match {}", problems.len(), path.display()),
    ))
}
