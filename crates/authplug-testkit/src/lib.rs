//! Fakes of the providers that have no open-source peer to run offline (PowerOffice Go,
//! SuperOffice, Tripletex, webCRM), written from
//! `shared/spec/providers.md`, and the small HTTP server they run on. They listen on 127.0.0.1,
//! count what they serve, and can be switched into failure modes (wrong token, expiry, 5xx).
//!
//! And the conformance kit ([`conformance`]): the rules every scheme must keep, checked against
//! a linked scheme or a built plugin file.

pub mod conformance;
pub mod poweroffice;
pub mod proxy;
pub mod server;
pub mod superoffice;
pub mod tripletex;
pub mod webcrm;

pub use proxy::{Fault, FaultProxy};
pub use server::{FakeServer, Request, Response};

/// This testkit's version, for tools that write a dependency on it (`authplug schemes new`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A field of this process's `/proc/self/status` in KiB (`VmRSS:`, `VmHWM:`), for benchmarks'
/// memory figures; 0 where there is no such file.
pub fn process_memory_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
