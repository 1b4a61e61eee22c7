//! Who holds a refresh lease: `host/pid/scope/nonce#n`. `scope` names the boot and the PID
//! namespace the process runs in, and `nonce` the process itself (one per process, whatever the
//! number of engines in it). The engine tells that a holder is dead, and takes its lease at once
//! instead of waiting for it to lapse, only when it can see that holder's process table: same
//! host, same boot, same PID namespace, and a nonce that is not its own process's. Containers
//! that share a hostname but not a PID namespace, or replicas that are all PID 1, are never
//! judged dead; their leases lapse.
//!
//! Within this process the engine knows exactly: a holder of its own is alive while the
//! [`Named`] handed out for it lives (the refresh that took the lease is still running). A lease
//! left behind by a refresh of this process that ended without giving it back (the database
//! went away between taking the lease and releasing it, or the commit landed but its answer was
//! lost) is taken over at once, as a dead process's is, instead of blocking every later refresh
//! of that system until it lapses.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// This process's identity as a lease holder.
#[derive(Debug)]
pub struct Holder {
    identity: &'static Identity,
    next: AtomicU64,
}

#[derive(Debug)]
struct Identity {
    host: String,
    pid: u32,
    /// Boot id and PID namespace, hashed short; empty where /proc does not say.
    scope: String,
    nonce: String,
}

fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        let clean = |text: String| text.trim().replace(['/', '#'], "_");
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(clean)
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".into());
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let pid_ns = std::fs::read_link("/proc/self/ns/pid")
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let scope = if boot.is_empty() || pid_ns.is_empty() {
            String::new()
        } else {
            clean(format!(
                "{}{}",
                boot.trim().get(..8).unwrap_or(""),
                pid_ns.trim_start_matches("pid:")
            ))
        };
        Identity {
            host,
            pid: std::process::id(),
            scope,
            nonce: format!("{:08x}", rand::random::<u32>()),
        }
    })
}

/// The holder names of this process whose refresh is still running (every engine's).
fn live() -> std::sync::MutexGuard<'static, HashSet<String>> {
    static LIVE: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    LIVE.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// A holder name in use: alive for [`Holder::is_dead`] until dropped.
#[derive(Debug)]
pub struct Named(String);

impl std::ops::Deref for Named {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        live().remove(&self.0);
    }
}

impl Holder {
    pub fn new() -> Self {
        Self { identity: identity(), next: AtomicU64::new(1) }
    }

    /// A fresh holder name for one refresh, so two refreshes never share a lease; alive until
    /// the returned name is dropped.
    pub fn next(&self) -> Named {
        let id = self.identity;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // The engine's address tells two engines of one process apart.
        let name = format!(
            "{}/{}/{}/{}#{:x}.{n}",
            id.host, id.pid, id.scope, id.nonce, self as *const _ as usize
        );
        live().insert(name.clone());
        Named(name)
    }

    /// Whether `other` is a holder whose process is visibly gone: same host, boot and PID
    /// namespace, and its pid absent (or a zombie), or its pid ours but from another process.
    pub fn is_dead(&self, other: &str) -> bool {
        let id = self.identity;
        let mut parts = other.splitn(4, '/');
        let (Some(host), Some(pid), Some(scope), Some(rest)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(pid) = pid.parse::<u32>() else { return false };
        if host != id.host || scope != id.scope || id.scope.is_empty() {
            return false;
        }
        if pid == id.pid {
            // Our own pid: with our nonce, a holder of this process, alive while its refresh
            // runs; with another nonce, a dead process whose pid we now have.
            return !rest.starts_with(&format!("{}#", id.nonce)) || !live().contains(other);
        }
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            // The state follows the parenthesised command name: Z (zombie) or X (dead).
            Ok(stat) => matches!(
                stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()),
                Some('Z' | 'X')
            ),
        }
    }
}

impl Default for Holder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_knows_live_and_dead_processes_in_its_namespace() {
        let holder = Holder::new();
        let mine = holder.next();
        assert_ne!(*mine, *holder.next(), "each refresh has its own name");
        assert!(!holder.is_dead(&mine));
        assert!(!Holder::new().is_dead(&mine), "another engine of this process is alive");
        let name = mine.to_string();
        drop(mine);
        let id = identity();
        assert_eq!(
            holder.is_dead(&name),
            !id.scope.is_empty(),
            "a holder of this process whose refresh ended is dead (where /proc says who we are)"
        );
        if id.scope.is_empty() {
            return; // no /proc here: nothing is ever judged dead
        }
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let (host, scope) = (&id.host, &id.scope);
        assert!(holder.is_dead(&format!("{host}/{pid}/{scope}/0000#1.1")), "an exited process");
        assert!(holder.is_dead(&format!("{host}/{}/{scope}/ffffffff#1.1", id.pid)), "a reused pid");
        assert!(!holder.is_dead(&format!("other-host/{pid}/{scope}/0000#1.1")), "another host's");
        assert!(
            !holder.is_dead(&format!("{host}/{pid}/another-namespace/0000#1.1")),
            "a process in another PID namespace is not visible, so not judged"
        );
        assert!(!holder.is_dead("garbage"));
    }
}
