//! Turning the plugin options into a loaded registry.

use std::path::PathBuf;

use authplug_host::{LoadOptions, Registry};

use crate::cli::PluginArgs;
use crate::exit::{Code, Failure};

/// The folders searched when none is given: next to the binary, then the user's data folder.
pub fn default_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(bin_dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(PathBuf::from))
    {
        dirs.push(bin_dir.join("plugins"));
    }
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")));
    if let Some(data_home) = data_home {
        dirs.push(data_home.join("authplug/plugins"));
    }
    dirs
}

/// The folders that will be searched for these options.
pub fn dirs(args: &PluginArgs) -> Vec<PathBuf> {
    if args.dirs.is_empty() {
        default_dirs()
    } else {
        args.dirs.clone()
    }
}

/// Loads the plugins; refusals are warnings, or a failure with `--strict-plugins`.
pub fn load(args: &PluginArgs) -> Result<Registry, Failure> {
    let registry = Registry::load(&LoadOptions::from_dirs(dirs(args)));
    if args.strict_plugins && !registry.refusals().is_empty() {
        let count = registry.refusals().len();
        return Err(Failure::new(
            Code::PluginRefused,
            format!("{count} plugin file(s) refused and --strict-plugins is set (see above)"),
        ));
    }
    Ok(registry)
}
