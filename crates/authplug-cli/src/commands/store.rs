//! `authplug store rotate-key|export|import`: the credential store itself.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use crate::context::Context;
use crate::exit::Failure;
use crate::output::{print_json, write_private};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Re-encrypt every value under a new master key, without stopping other instances. With a
    /// key file, the new key is added to it first and the old one removed at the end; with
    /// AUTHPLUG_MASTER_KEY, put the new key first (new,old) and run this. Safe to interrupt: run
    /// it again to finish.
    RotateKey,
    /// Write an encrypted backup bundle of every system (sealed under the current master key).
    Export {
        /// The bundle file to write (mode 0600).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Restore systems from a backup bundle; existing systems are kept unless --replace.
    Import {
        /// The bundle file.
        file: PathBuf,

        /// Overwrite systems that already exist.
        #[arg(long)]
        replace: bool,
    },
}

pub fn run(ctx: &Context<'_>, command: &StoreCommand) -> Result<(), Failure> {
    let store = ctx.store()?;
    match command {
        StoreCommand::RotateKey => {
            let mut progress = |done: usize, total: usize| {
                eprint!("\rre-encrypting: {done}/{total} systems");
                if done == total {
                    eprintln!();
                }
            };
            let rotation = store.rotate_key(&mut progress)?;
            if ctx.json() {
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
            let key = store.keyring().current().id().to_owned();
            if ctx.json() {
                return print_json(&json!({"file": output, "key": key}));
            }
            eprintln!("wrote {} (sealed under {key})", output.display());
            Ok(())
        }
        StoreCommand::Import { file, replace } => {
            let bytes = std::fs::read(file)
                .map_err(|e| Failure::bad_input(format!("cannot read {}: {e}", file.display())))?;
            let report = store.import(&bytes, &ctx.actor(), *replace).map_err(|e| {
                let failure = Failure::from(e);
                Failure::new(failure.code, format!("{}: {}", file.display(), failure.message))
            })?;
            if ctx.json() {
                return print_json(&report);
            }
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
