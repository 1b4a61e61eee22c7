//! The authplug host: finds and loads scheme plugins at startup, keeps the registry of schemes,
//! enforces each scheme's contract, and provides the capabilities plugins may use (HTTP).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use authplug_host::{LoadOptions, Registry};
//! let registry = Registry::load(&LoadOptions::from_dirs(["/usr/lib/authplug/plugins"]));
//! for refusal in registry.refusals() {
//!     eprintln!("warning: {refusal}");
//! }
//! let scheme = registry.resolve("api_key", None).expect("api_key is installed");
//! # Ok(()) }
//! ```
//!
//! Plugins are called synchronously. A call may block on the host's HTTP transport, so call them
//! from blocking threads (`tokio::task::spawn_blocking`), never on an async worker thread.

mod call;
mod file;
mod headers;
pub mod isolate;
mod loader;
mod lock;
mod operator;
mod redact;
mod registry;
mod stats;
pub mod transport;

/// The scheme reference page (in the SDK, so that a scheme's author and the conformance kit
/// render it as the host does).
pub use authplug_sdk::docs;
pub use call::{CallError, HostServices, HttpObserver};
pub use file::PluginFile;
pub use isolate::{Isolation, IsolationPolicy, Limits};
pub use loader::{LoadOptions, Refusal};
pub use lock::{file_sha256, permissions, plugin_files, LockedPlugin, PluginLock, LOCK_VERSION};
pub use operator::OperatorSecrets;
pub use registry::{LoadedScheme, Origin, Registry};
pub use stats::{Counts, BUCKETS as CALL_BUCKETS};
pub use transport::{Transport, TransportConfig};

/// The platform's file name suffix for shared libraries (`so`, `dylib`, `dll`).
pub const PLUGIN_SUFFIX: &str = std::env::consts::DLL_EXTENSION;
