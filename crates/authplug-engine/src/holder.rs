//! Who holds a refresh lease: `host/pid/nonce#n`. The engine can tell that a holder on its own
//! host is dead (its process is gone) and take its lease at once instead of waiting for it to
//! lapse; holders on other hosts are trusted until their lease expires.

use std::sync::atomic::{AtomicU64, Ordering};

/// This process's identity as a lease holder.
#[derive(Debug)]
pub struct Holder {
    host: String,
    pid: u32,
    base: String,
    next: AtomicU64,
}

impl Holder {
    pub fn new() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().replace(['/', '#'], "_"))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".into());
        let pid = std::process::id();
        let nonce: u32 = rand::random();
        let base = format!("{host}/{pid}/{nonce:08x}");
        Self { host, pid, base, next: AtomicU64::new(1) }
    }

    /// A fresh holder name for one refresh, so two refreshes in this process never share a lease.
    pub fn next(&self) -> String {
        format!("{}#{}", self.base, self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether `other` is a holder on this host whose process no longer runs (or is a zombie).
    pub fn is_dead(&self, other: &str) -> bool {
        let mut parts = other.splitn(3, '/');
        let (Some(host), Some(pid), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let Ok(pid) = pid.parse::<u32>() else { return false };
        if host != self.host || !std::path::Path::new("/proc/self").exists() {
            return false;
        }
        if pid == self.pid {
            // Our own pid: ours unless the nonce differs (a dead process whose pid we reuse).
            return !rest.starts_with(self.base.rsplit('/').next().unwrap_or(""));
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
    fn a_holder_knows_live_and_dead_processes_on_its_host() {
        let holder = Holder::new();
        let mine = holder.next();
        assert_ne!(mine, holder.next(), "each refresh has its own name");
        assert!(!holder.is_dead(&mine));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let host = &holder.host;
        assert!(holder.is_dead(&format!("{host}/{pid}/0000#1")), "an exited process");
        assert!(holder.is_dead(&format!("{host}/{}/ffffffff#1", holder.pid)), "a reused pid");
        assert!(!holder.is_dead(&format!("other-host/{pid}/0000#1")), "another host's");
        assert!(!holder.is_dead("garbage"));
    }
}
