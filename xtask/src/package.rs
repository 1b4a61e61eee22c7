//! `cargo xtask test`'s last step: the public crates packaged as crates.io would take them.

use std::env;
use std::path::PathBuf;

use crate::{cargo, status, Result};

/// The crates a connector team depends on, packaged as crates.io would take them (verified:
/// each builds from its packaged files, its unpublished siblings from a local registry).
const PUBLIC_CRATES: &[&str] =
    &["authplug-abi", "authplug-protocol", "authplug-sdk", "authplug-testkit"];

pub fn package() -> Result {
    forget_packaged_sources();
    let packaging = || {
        let mut command = cargo();
        command.args(["package", "--allow-dirty"]);
        for krate in PUBLIC_CRATES {
            command.args(["--package", krate]);
        }
        command
    };
    if status(packaging()).is_err() {
        // Cargo takes a registry crate's build for fresh when its name, version and source are
        // unchanged: a crate changed under the same version is verified against its old build.
        // Once more without those builds; a real failure fails again.
        eprintln!("xtask: packaging failed; again without earlier builds of the packaged crates");
        let mut clean = cargo();
        clean.arg("clean");
        for krate in PUBLIC_CRATES {
            clean.args(["-p", krate]);
        }
        status(clean)?;
        status(packaging())?;
    }
    eprintln!("xtask: {} packaged and verified", PUBLIC_CRATES.join(", "));
    Ok(())
}

/// Cargo verifies the packages against a registry of their own tarballs in `target/package`,
/// and keeps what it extracted from it in `$CARGO_HOME/registry/src/<that registry>/`: a crate
/// changed since, under the same version, would be verified against its old source. Those
/// extractions of our crates (never crates.io's) are removed first.
fn forget_packaged_sources() {
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(sources) = home.map(|h| h.join("registry").join("src")) else { return };
    let Ok(registries) = std::fs::read_dir(&sources) else { return };
    for registry in registries.flatten() {
        if registry.file_name().to_string_lossy().starts_with("index.") {
            continue;
        }
        let Ok(crates) = std::fs::read_dir(registry.path()) else { continue };
        for extracted in crates.flatten() {
            let name = extracted.file_name().to_string_lossy().into_owned();
            if PUBLIC_CRATES.iter().any(|k| name.starts_with(&format!("{k}-"))) {
                let _ = std::fs::remove_dir_all(extracted.path());
            }
        }
    }
}
