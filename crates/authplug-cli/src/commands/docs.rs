//! `authplug docs`: the scheme reference page, in the spec page's reStructuredText shape, from
//! the loaded plugins.

use std::path::PathBuf;

use authplug_host::{docs, LoadedScheme};
use authplug_protocol::SchemeDescriptor;
use clap::Args;

use crate::context::Context;
use crate::exit::{Code, Failure};

#[derive(Debug, Args)]
pub struct DocsArgs {
    /// Write to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Only these schemes (ids), in this order; default: every loaded scheme.
    #[arg(value_name = "SCHEME")]
    pub schemes: Vec<String>,
}

pub fn run(ctx: &Context<'_>, args: &DocsArgs) -> Result<(), Failure> {
    if ctx.json() {
        return Err(Failure::no_json("docs", "it writes a reStructuredText page"));
    }
    let registry = ctx.registry()?;
    let chosen: Vec<&SchemeDescriptor> = if args.schemes.is_empty() {
        registry.schemes().map(LoadedScheme::descriptor).collect()
    } else {
        args.schemes
            .iter()
            .map(|id| super::schemes::find(&registry, id).map(LoadedScheme::descriptor))
            .collect::<Result<_, _>>()?
    };
    let page = docs::reference_page(chosen);
    match &args.output {
        None => {
            print!("{page}");
            Ok(())
        }
        Some(path) => std::fs::write(path, page).map_err(|e| {
            Failure::new(Code::Failure, format!("cannot write {}: {e}", path.display()))
        }),
    }
}
