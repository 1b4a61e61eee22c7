//! Connector folders as the integration platform knows them: a `manifest.json` naming the
//! authentication scheme and the templates, and `templates/*.json` that reference secrets
//! (`$SECRET(name)`, `secret('name')`), environment variables (`$ENV(name)`) and expansion-time
//! variables (`{{@ name @}}`). See `shared/spec/sesam-connectors.md`.
//!
//! This crate reads folders and judges them; it knows nothing of plugins or stores. The schemes
//! it checks against are plain [`SchemeDescriptor`](authplug_protocol::SchemeDescriptor)s, as
//! the host's registry has them.

mod authconfig;
mod check;
mod error;
mod files;
mod manifest;
mod render;
mod template;
mod verify;

pub use authconfig::{parse_authconfig, read_authconfig, AUTHCONFIG};
pub use check::{check, Finding, Report, Severity, PLATFORM_VARIABLES};
pub use error::ConnectorError;
pub use files::{MAX_MANIFEST_BYTES, MAX_TEMPLATE_BYTES};
pub use manifest::{
    connector_parameter, stored_extras, Connector, ConnectorSecret, Datatype, Manifest,
    CONNECTOR_PARAMETER, MANIFEST,
};
pub use render::{expand, resolve, variables, RenderError, Resolver};
pub use template::{scan, Reference, ReferenceKind};
pub use verify::{parameter_text, verify_url};
