//! The credential lifecycle engine: keeps every stored credential valid, and never loses or
//! double-uses a refresh token.
//!
//! * **Lifecycle.** A system is `active` (refreshing shows as a held lease with an attempt in
//!   flight, [`status`]) or `needs_reauth` with the provider's reason; onboarding it again makes
//!   it active, and says it `recovered` ([`Engine::onboarded`]).
//! * **Proactive refresh.** [`Engine::token`] refreshes when the secrets are within the scheme's
//!   margin of expiry (`due`); [`Engine::sweep`] does it for every due system, and for idle ones
//!   when keep-alive is on.
//! * **Single flight** (`flight`). In one process, a per-system async mutex: concurrent callers
//!   wait for the one refresh and read its result. Across processes and hosts, the store's lease
//!   decides who refreshes; the others poll the store until the version moves.
//! * **Rotation safety** (`attempt`, `journal`). The attempt is journaled (durably) as its
//!   request leaves, and its result is stored, with the attempt marked finished, in one
//!   transaction before anyone gets the new secrets. A `Reauthorize` answer is checked against
//!   the store first: another instance may have won the race.
//! * **Failures** (`outcome`, a pure step). Transient ones (timeouts, 5xx, 429 and
//!   `Retry-After`, truncated answers) are retried with capped exponential backoff and jitter,
//!   and still-valid secrets stay usable; permanent ones set `needs_reauth` once and are not
//!   retried.
//! * **Events.** Every transition is an [`Event`]: a log line, an audit line, and optionally a
//!   signed webhook ([`webhook`]).
//!
//! Time comes from the store's [`Clock`](authplug_store::Clock), so tests can put due times and
//! backoffs where they want them.

mod attempt;
mod authorize;
mod cache;
mod config;
mod delete;
mod due;
mod engine;
mod error;
mod events;
mod flight;
mod holder;
mod journal;
mod onboarded;
mod outcome;
pub mod status;
mod sweep;
pub mod webhook;

pub use cache::Authorization;
pub use config::{Backoff, EngineConfig};
pub use delete::{Deleted, Revocation};
pub use engine::{Engine, Token};
pub use error::EngineError;
pub use events::{Event, EventKind, Events};
pub use holder::Holder;
pub use status::{status, status_page, SystemStatus};
pub use sweep::SweepResults;
pub use webhook::Webhook;
