//! The host's side of an isolated plugin: its child process, one call at a time.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
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

/// One plugin file served by a child process.
#[derive(Debug)]
pub(crate) struct Isolated {
    path: PathBuf,
    runner: PathBuf,
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    child: Option<Running>,
    /// Crashes since the last good call; the first restart is at once.
    failures: u32,
    not_before: Option<Instant>,
    restarts: u64,
}

#[derive(Debug)]
struct Running {
    process: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // By its own id; reaped so that no zombie is left.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Isolated {
    /// Starts the child for `path` and returns it with the plugin's manifest (the `describe`
    /// JSON), or why the file was refused.
    pub(crate) fn start(
        path: &Path,
        runner: &Path,
        limits: Limits,
    ) -> Result<(Self, String), String> {
        let isolated = Self {
            path: path.to_owned(),
            runner: runner.to_owned(),
            limits,
            state: Mutex::new(State::default()),
        };
        let (running, manifest) = isolated.spawn()?;
        isolated.state.lock().unwrap_or_else(|p| p.into_inner()).child = Some(running);
        Ok((isolated, manifest))
    }

    /// Whether its process is up (not failed and waiting to be started again).
    pub(crate) fn running(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).child.is_some()
    }

    /// How many times the child was started again after a failure.
    pub(crate) fn restarts(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).restarts
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
            .spawn()
            .map_err(|e| format!("cannot start its process ({}): {e}", self.runner.display()))?;
        let stdin = process.stdin.take().expect("piped");
        let stdout = process.stdout.take().expect("piped");
        let (send, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("plugin-reader".into())
            .spawn(move || {
                for text in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if send.send(text).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start its reader: {e}"))?;
        let mut running = Running { process, stdin, lines };
        match running.lines.recv_timeout(STARTUP).map(|t| serde_json::from_str(&t)) {
            Ok(Ok(FromChild::Ready { manifest })) => Ok((running, manifest)),
            Ok(Ok(FromChild::Refused { reason })) => Err(reason),
            Ok(_) => Err("its process did not start the protocol".into()),
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("its process was not ready within {} s", STARTUP.as_secs()))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(format!("its process ended while loading it ({})", ended(&mut running.process)))
            }
        }
    }

    /// One call, `host` answering the plugin's callbacks, within `deadline` of the plugin's own
    /// time. A failure of the child is the call's `plugin_crashed` or `plugin_timeout` error.
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
                return Err(self.failure(
                    ErrorCode::PluginCrashed,
                    &format!("crashed again; restarted in {wait} ms"),
                ));
            }
            match self.spawn() {
                Ok((running, _)) => {
                    state.restarts += 1;
                    state.child = Some(running);
                }
                Err(reason) => {
                    self.failed(&mut state);
                    return Err(self
                        .failure(ErrorCode::PluginCrashed, &format!("cannot restart: {reason}")));
                }
            }
        }
        let running = state.child.as_mut().expect("started above");
        match exchange(running, method, request, host, deadline) {
            Ok(answer) => {
                state.failures = 0;
                answer
            }
            Err((code, what)) => {
                let what = match code {
                    ErrorCode::PluginCrashed => format!("{what} ({})", ended(&mut running.process)),
                    _ => what,
                };
                state.child = None;
                self.failed(&mut state);
                Err(self.failure(code, &what))
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
) -> Result<Result<String, String>, (ErrorCode, String)> {
    let write = |stdin: &mut ChildStdin, message: &ToChild| {
        stdin.write_all(line(message).as_bytes()).and_then(|()| stdin.flush())
    };
    let crashed = |what: &str| (ErrorCode::PluginCrashed, what.to_owned());
    write(&mut running.stdin, &ToChild::Call { method: method.into(), request: request.into() })
        .map_err(|_| crashed("its process is gone"))?;
    loop {
        // The deadline is the plugin's own time: it starts again after each callback.
        let text = match running.lines.recv_timeout(deadline) {
            Ok(text) => text,
            Err(RecvTimeoutError::Timeout) => {
                let _ = running.process.kill();
                return Err((
                    ErrorCode::PluginTimeout,
                    format!(
                        "no answer to `{method}` within {} s; its process was stopped",
                        deadline.as_secs_f64()
                    ),
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(crashed(&format!("its process ended during `{method}`")))
            }
        };
        match serde_json::from_str::<FromChild>(&text) {
            Ok(FromChild::Answer { answer }) => return Ok(answer.into()),
            Ok(FromChild::HostCall { method, request }) => {
                let answer = Answer::from(host(&method, &request));
                write(&mut running.stdin, &ToChild::HostAnswer { answer })
                    .map_err(|_| crashed("its process is gone"))?;
            }
            Ok(_) | Err(_) => {
                let _ = running.process.kill();
                return Err(crashed(&format!(
                    "its process wrote something that is not the protocol during `{method}`"
                )));
            }
        }
    }
}

/// How a child process ended, once it has: its exit status or the signal that ended it.
fn ended(process: &mut Child) -> String {
    let status = (0..50).find_map(|_| match process.try_wait() {
        Ok(Some(status)) => Some(status),
        _ => {
            std::thread::sleep(Duration::from_millis(2));
            None
        }
    });
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("it exited with status {code}"),
            (None, Some(signal)) => {
                format!("it was killed by signal {signal}{}", signal_name(signal))
            }
            _ => "it ended".into(),
        },
        None => {
            let _ = process.kill();
            "it was stopped".into()
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
