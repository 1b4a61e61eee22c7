//! The host's side of an isolated plugin: its child process, one call at a time.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use authplug_abi::HostFn;
use authplug_protocol::{ErrorBody, ErrorCode};

use super::wire::{line, Answer, FromChild, ToChild};
use super::Limits;

/// How long a child may take to load its file and say it is ready.
const STARTUP: Duration = Duration::from_secs(10);
/// The first wait before a child that crashed again is restarted; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest line the host reads from a child (a callback may carry an HTTP body of the
/// transport's size cap, as base64): a longer one is not the protocol.
const MAX_LINE: u64 = 16 << 20;
/// However many callbacks a call makes, it ends within this many deadlines.
const CALL_CAP: u32 = 6;

/// One plugin file served by a child process.
#[derive(Debug)]
pub(crate) struct Isolated {
    path: PathBuf,
    /// The SHA-256 the file had when it was loaded (and admitted by a lock): a restart runs the
    /// same bytes or nothing.
    sha256: String,
    runner: PathBuf,
    limits: Limits,
    /// One call at a time. Probes read the two atomics, never this.
    state: Mutex<State>,
    up: AtomicBool,
    restarts: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    child: Option<Running>,
    /// Crashes since the last good call; the first restart is at once.
    failures: u32,
    not_before: Option<Instant>,
}

#[derive(Debug)]
struct Running {
    process: Child,
    stdin: ChildStdin,
    /// Read by the calling thread only, while a call waits for it: a child that writes more than
    /// it is asked fills the pipe and blocks itself.
    stdout: ChildStdout,
    /// Bytes read past the last whole line.
    pending: Vec<u8>,
    /// What one read fills, allocated once.
    chunk: Box<[u8]>,
}

/// Why no line came.
enum NoLine {
    /// Nothing within the wait.
    Timeout,
    /// The pipe closed: the process ended (or closed its output).
    Ended,
    /// Longer than [`MAX_LINE`] or not UTF-8: not the protocol.
    Garbage,
}

impl Running {
    /// The next line the child writes within `wait`, read in the calling thread (no reader
    /// thread to hop through: `poll` waits on the pipe itself).
    fn line(&mut self, wait: Duration, spin: Duration) -> Result<String, NoLine> {
        use std::os::fd::AsFd as _;
        let until = Instant::now() + wait;
        // Only the bytes not yet searched are searched: a long line costs its length once.
        let mut from = 0;
        loop {
            if let Some(at) = self.pending[from..].iter().position(|b| *b == b'\n') {
                let rest = self.pending.split_off(from + at + 1);
                let line = std::mem::replace(&mut self.pending, rest);
                return String::from_utf8(line).map_err(|_| NoLine::Garbage);
            }
            if self.pending.len() as u64 > MAX_LINE {
                return Err(NoLine::Garbage);
            }
            let left = until.saturating_duration_since(Instant::now());
            match super::readable(self.stdout.as_fd(), left, spin) {
                Ok(false) => return Err(NoLine::Timeout),
                Ok(true) => {}
                Err(_) => return Err(NoLine::Ended),
            }
            from = self.pending.len();
            match self.stdout.read(&mut self.chunk) {
                Ok(0) | Err(_) => return Err(NoLine::Ended),
                Ok(n) => self.pending.extend_from_slice(&self.chunk[..n]),
            }
        }
    }

    /// Whether the child wrote anything while no call was waiting (not the protocol), or
    /// closed its output.
    fn idle(&mut self) -> Result<(), NoLine> {
        match self.pending.is_empty() {
            true => match self.line(Duration::ZERO, Duration::ZERO) {
                Err(NoLine::Timeout) => Ok(()),
                Err(other) => Err(other),
                Ok(_) => Err(NoLine::Garbage),
            },
            false => Err(NoLine::Garbage),
        }
    }

    /// Kills its process group (the child and whatever it started), by the child's own id.
    fn kill(&mut self) {
        let group = rustix::process::Pid::from_child(&self.process);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.process.kill();
    }

    /// How its process ended by itself: its exit status or the signal. The pipe closes as it
    /// exits; it is given a moment to become waitable, then stopped.
    fn ended(&mut self) -> String {
        use std::os::unix::process::ExitStatusExt as _;
        let deadline = Instant::now() + Duration::from_millis(200);
        let status = loop {
            match self.process.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                _ => break None,
            }
        };
        match status.map(|s| (s.code(), s.signal())) {
            Some((Some(code), _)) => format!("it exited with status {code}"),
            Some((None, Some(signal))) => {
                format!("it was killed by signal {signal}{}", signal_name(signal))
            }
            Some(_) => "it ended".into(),
            None => {
                self.kill();
                "it closed its output and was stopped".into()
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Reaped so that no zombie is left.
        self.kill();
        let _ = self.process.wait();
    }
}

/// A call that failed for the child's sake.
struct Failed {
    code: ErrorCode,
    what: String,
    /// It ended by itself (say how), rather than being stopped by the host.
    ended: bool,
}

impl Isolated {
    /// Starts the child for `path` (whose bytes hash to `sha256`) and returns it with the
    /// plugin's manifest (the `describe` JSON), or why the file was refused.
    pub(crate) fn start(
        path: &Path,
        sha256: &str,
        runner: &Path,
        limits: Limits,
    ) -> Result<(Self, String), String> {
        let isolated = Self {
            path: path.to_owned(),
            sha256: sha256.to_owned(),
            runner: runner.to_owned(),
            limits,
            state: Mutex::new(State::default()),
            up: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
        };
        let (running, manifest) = isolated.spawn()?;
        isolated.state.lock().unwrap_or_else(|p| p.into_inner()).child = Some(running);
        isolated.up.store(true, Ordering::SeqCst);
        Ok((isolated, manifest))
    }

    /// Whether its process is up (not failed and waiting to be started again).
    pub(crate) fn running(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// How many times the child was started again after a failure.
    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::SeqCst)
    }

    fn spawn(&self) -> Result<(Running, String), String> {
        let mut process = Command::new(&self.runner)
            .arg("plugin-runner")
            .arg(&self.path)
            .args(self.limits.args())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group, so that what it starts dies with it.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start its process ({}): {e}", self.runner.display()))?;
        let stdin = process.stdin.take().expect("piped");
        let stdout = process.stdout.take().expect("piped");
        let chunk = vec![0; 64 << 10].into_boxed_slice();
        let mut running = Running { process, stdin, stdout, pending: Vec::new(), chunk };
        match running.line(STARTUP, Duration::ZERO).map(|t| serde_json::from_str(&t)) {
            Ok(Ok(FromChild::Ready { manifest })) => Ok((running, manifest)),
            Ok(Ok(FromChild::Refused { reason })) => Err(reason),
            Ok(_) | Err(NoLine::Garbage) => Err("its process did not start the protocol".into()),
            Err(NoLine::Timeout) => {
                Err(format!("its process was not ready within {} s", STARTUP.as_secs()))
            }
            Err(NoLine::Ended) => {
                Err(format!("its process ended while loading it ({})", running.ended()))
            }
        }
    }

    /// A new child for the same bytes: a file changed since it was loaded (and admitted) is not
    /// run.
    fn restart(&self) -> Result<Running, String> {
        if crate::loader::sha256_of(&self.path)? != self.sha256 {
            return Err("the file changed since it was loaded; restart authplug to load it".into());
        }
        self.spawn().map(|(running, _)| running)
    }

    /// One call, `host` answering the plugin's callbacks, within `deadline` of the plugin's own
    /// time (and [`CALL_CAP`] deadlines in all). A failure of the child is the call's
    /// `plugin_crashed` or `plugin_timeout` error.
    pub(crate) fn call(
        &self,
        method: &str,
        request: &str,
        host: &HostFn<'_>,
        deadline: Duration,
    ) -> Result<String, String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.child.is_none() {
            if let Some(at) = state.not_before.filter(|at| *at > Instant::now()) {
                let wait = at.duration_since(Instant::now()).as_millis();
                let what = format!("crashed again; started again in {wait} ms");
                return Err(self.failure(ErrorCode::PluginCrashed, &what));
            }
            match self.restart() {
                Ok(running) => {
                    self.restarts.fetch_add(1, Ordering::SeqCst);
                    self.up.store(true, Ordering::SeqCst);
                    state.child = Some(running);
                }
                Err(reason) => {
                    self.failed(&mut state);
                    let what = format!("cannot start it again: {reason}");
                    return Err(self.failure(ErrorCode::PluginCrashed, &what));
                }
            }
        }
        let Some(running) = state.child.as_mut() else {
            return Err(self.failure(ErrorCode::PluginCrashed, "its process is gone"));
        };
        match exchange(running, method, request, host, deadline, self.limits.spin) {
            Ok(answer) => {
                state.failures = 0;
                answer
            }
            Err(failed) => {
                let what = match failed.ended {
                    true => format!("{} ({})", failed.what, running.ended()),
                    false => failed.what,
                };
                state.child = None;
                self.up.store(false, Ordering::SeqCst);
                self.failed(&mut state);
                Err(self.failure(failed.code, &what))
            }
        }
    }

    fn failed(&self, state: &mut State) {
        let backoff = match state.failures {
            0 => Duration::ZERO,
            n => FIRST_BACKOFF.saturating_mul(1 << (n - 1).min(7)).min(MAX_BACKOFF),
        };
        state.failures += 1;
        state.not_before = Some(Instant::now() + backoff);
    }

    fn failure(&self, code: ErrorCode, what: &str) -> String {
        let file = self.path.file_name().unwrap_or_default().to_string_lossy();
        ErrorBody::new(code, format!("plugin file {file}: {what}")).to_json()
    }
}

/// Writes the call and answers the plugin's callbacks until its answer.
fn exchange(
    running: &mut Running,
    method: &str,
    request: &str,
    host: &HostFn<'_>,
    deadline: Duration,
    spin: Duration,
) -> Result<Result<String, String>, Failed> {
    let write = |stdin: &mut ChildStdin, message: &ToChild| {
        stdin.write_all(line(message).as_bytes()).and_then(|()| stdin.flush())
    };
    let ended = |what: String| Failed { code: ErrorCode::PluginCrashed, what, ended: true };
    let garbage = |running: &mut Running, when: &str| {
        running.kill();
        let what = format!("its process wrote something that is not the protocol {when}");
        Failed { code: ErrorCode::PluginCrashed, what, ended: false }
    };
    // Nothing may be waiting: a line written between calls is not the protocol.
    match running.idle() {
        Ok(()) => {}
        Err(NoLine::Ended) => return Err(ended("its process ended between calls".into())),
        Err(_) => return Err(garbage(running, "between calls")),
    }
    write(&mut running.stdin, &ToChild::Call { method: method.into(), request: request.into() })
        .map_err(|_| ended("its process is gone".into()))?;
    let cap = Instant::now() + deadline * CALL_CAP;
    loop {
        // The deadline is the plugin's own time: it starts again after each callback, up to
        // the cap.
        let wait = deadline.min(cap.saturating_duration_since(Instant::now()));
        let text = match running.line(wait, spin) {
            Ok(text) => text,
            Err(NoLine::Garbage) => return Err(garbage(running, &format!("during `{method}`"))),
            Err(NoLine::Timeout) => {
                running.kill();
                let what = format!(
                    "no answer to `{method}` within {} s; its process was stopped",
                    wait.as_secs_f64()
                );
                return Err(Failed { code: ErrorCode::PluginTimeout, what, ended: false });
            }
            Err(NoLine::Ended) => {
                return Err(ended(format!("its process ended during `{method}`")))
            }
        };
        match serde_json::from_str::<FromChild>(&text) {
            Ok(FromChild::Answer { answer }) => return Ok(answer.into()),
            Ok(FromChild::HostCall { method, request }) => {
                let answer = Answer::from(host(&method, &request));
                write(&mut running.stdin, &ToChild::HostAnswer { answer })
                    .map_err(|_| ended("its process is gone".into()))?;
            }
            Ok(_) | Err(_) => return Err(garbage(running, &format!("during `{method}`"))),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that writes `output`, then waits for its stdin to close.
    fn writer(output: &str) -> Running {
        let mut process = Command::new("sh")
            .args(["-c", &format!("printf '{output}'; cat >/dev/null")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("sh runs");
        let stdin = process.stdin.take().unwrap();
        let stdout = process.stdout.take().unwrap();
        let chunk = vec![0; 16].into_boxed_slice();
        Running { process, stdin, stdout, pending: Vec::new(), chunk }
    }

    #[test]
    fn lines_are_read_whole_across_reads_and_a_partial_line_is_kept() {
        // Longer than one read (16 bytes here), two lines, then half a line.
        let mut child = writer("a line longer than one read\\nsecond\\nhalf");
        let wait = Duration::from_secs(5);
        assert_eq!(
            child.line(wait, Duration::from_micros(50)).ok().as_deref(),
            Some("a line longer than one read\n")
        );
        assert_eq!(child.line(wait, Duration::ZERO).ok().as_deref(), Some("second\n"));
        assert!(matches!(
            child.line(Duration::from_millis(50), Duration::ZERO),
            Err(NoLine::Timeout)
        ));
        // What was left between calls is not the protocol.
        assert!(matches!(child.idle(), Err(NoLine::Garbage)));
    }

    #[test]
    fn a_quiet_child_is_idle_and_a_closed_pipe_is_its_end() {
        let mut quiet = writer("");
        assert!(quiet.idle().is_ok());
        let mut gone =
            Command::new("true").stdout(Stdio::piped()).stdin(Stdio::piped()).spawn().unwrap();
        let stdout = gone.stdout.take().unwrap();
        let stdin = gone.stdin.take().unwrap();
        let chunk = vec![0; 16].into_boxed_slice();
        let mut gone = Running { process: gone, stdin, stdout, pending: Vec::new(), chunk };
        assert!(matches!(gone.line(Duration::from_secs(5), Duration::ZERO), Err(NoLine::Ended)));
    }
}
