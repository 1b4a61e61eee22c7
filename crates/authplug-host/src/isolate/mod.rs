//! Plugin files served from child processes: the `authplug` binary in its plugin-runner mode
//! dlopens one file and speaks the boundary's JSON over a pipe, the host's callbacks (`http`)
//! travelling back the same way. A plugin that crashes, aborts, exits, hangs, exhausts its memory
//! or breaks the pipe's protocol fails its call with `plugin_crashed` or `plugin_timeout`; its
//! process is killed (by its own id) and started again for the next call, with backoff; nothing
//! else in the host notices. The child runs with an empty environment, without core dumps, under
//! an address-space and an open-files limit, and sees only the requests it serves.

mod child;
pub mod runner;
mod wire;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use child::Isolated;

/// How plugin files run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Files shipped with the host (in a trusted folder) in-process, every other file isolated.
    #[default]
    Auto,
    /// Every file in its own process.
    Process,
    /// Every file in the host's process, as the operator asked (warned about at startup).
    InProcess,
}

/// The isolation of a registry's plugin files.
#[derive(Debug, Clone, Default)]
pub struct IsolationPolicy {
    pub mode: Isolation,
    /// The program that serves one file in a child (`authplug`, run as `authplug plugin-runner
    /// FILE`). Without one, files run in-process whatever the mode.
    pub runner: Option<PathBuf>,
    /// Folders whose files shipped with the host (`plugins/` beside the binary).
    pub trusted_dirs: Vec<PathBuf>,
    /// File names the operator lets run in-process whatever the mode.
    pub in_process: Vec<String>,
    pub limits: Limits,
}

impl IsolationPolicy {
    /// Whether `path` runs in a child process.
    pub fn isolates(&self, path: &Path) -> bool {
        let named = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if self.runner.is_none() || self.in_process.iter().any(|n| n == named) {
            return false;
        }
        match self.mode {
            Isolation::Process => true,
            Isolation::InProcess => false,
            Isolation::Auto => {
                let dir = path.parent().and_then(|d| d.canonicalize().ok());
                !self.trusted_dirs.iter().any(|t| t.canonicalize().ok() == dir && dir.is_some())
            }
        }
    }

    /// Whether `path` is one of the host's own files (a trusted folder's).
    pub fn shipped(&self, path: &Path) -> bool {
        let dir = path.parent().and_then(|d| d.canonicalize().ok());
        dir.is_some() && self.trusted_dirs.iter().any(|t| t.canonicalize().ok() == dir)
    }
}

/// What an isolated plugin may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The deadline of an onboarding step (the plugin's own time between host callbacks).
    pub onboard: Duration,
    /// The deadline of a refresh or an apply.
    pub call: Duration,
    /// The child's address space, in bytes.
    pub memory_bytes: u64,
    /// The child's open files.
    pub open_files: u64,
    /// How long a side waiting for the other's next line polls the pipe before it sleeps: a
    /// sleeping thread's wake-up (on a virtual machine, an idle virtual CPU's) costs tens of
    /// microseconds twice per call; a short poll costs at most this much CPU per wait. Zero
    /// never polls.
    pub spin: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            onboard: Duration::from_secs(30),
            call: Duration::from_secs(10),
            memory_bytes: 1 << 30,
            open_files: 256,
            spin: Duration::from_micros(50),
        }
    }
}

impl Limits {
    /// Sets this process's limits (the child's, before it loads the file), and no core dumps
    /// (they would hold the secrets of the call).
    pub fn apply(&self) -> Result<(), String> {
        use rustix::process::{setrlimit, Resource, Rlimit};
        let set = |resource, value: u64, what: &str| {
            setrlimit(resource, Rlimit { current: Some(value), maximum: Some(value) })
                .map_err(|e| format!("cannot limit {what}: {e}"))
        };
        set(Resource::Core, 0, "core dumps")?;
        set(Resource::As, self.memory_bytes, "the address space")?;
        set(Resource::Nofile, self.open_files, "open files")
    }

    /// The runner's arguments that carry these limits.
    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            "--memory-bytes".into(),
            self.memory_bytes.to_string(),
            "--open-files".into(),
            self.open_files.to_string(),
            "--spin-micros".into(),
            self.spin.as_micros().to_string(),
        ]
    }
}

/// Waits until `fd` can be read or `wait` has passed, polling it without sleeping for the first
/// `spin` of the wait; whether it can be read (or has closed).
pub(crate) fn readable(
    fd: std::os::fd::BorrowedFd<'_>,
    wait: Duration,
    spin: Duration,
) -> std::io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let started = std::time::Instant::now();
    let ask = |timeout: Duration| -> std::io::Result<bool> {
        // A wait of more than a day is a wait without end.
        let timeout = (timeout.as_secs() < 86_400).then(|| Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        });
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        loop {
            match poll(&mut fds, timeout.as_ref()) {
                Ok(n) => return Ok(n > 0),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let spin = spin.min(wait);
    while started.elapsed() < spin {
        if ask(Duration::ZERO)? {
            return Ok(true);
        }
        // The other side may be waiting for this core.
        std::thread::yield_now();
    }
    ask(wait.saturating_sub(started.elapsed()))
}
