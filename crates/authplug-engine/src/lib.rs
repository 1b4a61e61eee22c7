//! The credential lifecycle engine: keeps every stored credential valid, and never loses or
//! double-uses a refresh token.
//!
//! * **Lifecycle.** A system is `active` (refreshing shows as a held lease with an attempt in
//!   flight) or `needs_reauth` with the provider's reason; re-onboarding makes it active again
//!   ([`Engine::reauthorized`]).
//! * **Proactive refresh.** [`Engine::token`] refreshes when the secrets are within the scheme's
//!   margin of expiry; [`Engine::sweep`] does it for every due system, and for idle ones when
//!   keep-alive is on.
//! * **Single flight.** In one process, a per-system async mutex: concurrent callers wait for
//!   the one refresh and read its result. Across processes and hosts, the store's lease decides
//!   who refreshes; the others poll the store until the version moves.
//! * **Rotation safety.** The attempt is journaled (durably) as its request leaves, and its
//!   result is stored, with the attempt marked finished, in one transaction before anyone gets
//!   the new secrets. A `Reauthorize` answer is checked against the store first: another
//!   instance may have won the race.
//! * **Failures.** Transient ones (timeouts, 5xx, 429 and `Retry-After`, truncated answers) are
//!   retried with capped exponential backoff and jitter, and still-valid secrets stay usable;
//!   permanent ones set `needs_reauth` once and are not retried.
//! * **Events.** Every transition is an [`Event`]: a log line, an audit line, and optionally a
//!   signed webhook ([`webhook`]).

mod cache;
mod config;
mod engine;
mod error;
mod events;
mod holder;
mod journal;
pub mod webhook;

pub use cache::Authorization;
pub use config::{Backoff, EngineConfig};
pub use engine::{Engine, Token};
pub use error::EngineError;
pub use events::{Event, EventKind, Events};
pub use holder::Holder;
pub use webhook::Webhook;
