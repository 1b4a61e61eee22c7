//! The child's side: `authplug plugin-runner FILE` loads one plugin file (with startup's checks)
//! under resource limits, then serves the host's calls over stdin and stdout until stdin closes.
//! The plugin's own writes to stdout break the protocol, and the host treats them as a crash.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd as _;
use std::path::Path;
use std::time::Duration;

use super::wire::{line, Answer, FromChild, ToChild};
use super::Limits;
use crate::PluginFile;

/// Serves `file` until the host closes stdin; the process's exit code.
pub fn serve(file: &Path, limits: &Limits) -> u8 {
    let stdout = std::io::stdout();
    let say = |message: &FromChild| {
        let mut out = stdout.lock();
        out.write_all(line(message).as_bytes()).and_then(|()| out.flush()).is_ok()
    };
    // Dies with the host, whatever the host dies of.
    let death =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if let Err(reason) =
        limits.apply().and(death.map_err(|e| format!("cannot tie it to the host: {e}")))
    {
        say(&FromChild::Refused { reason });
        return 3;
    }
    let plugin = match PluginFile::open(file) {
        Ok(plugin) => plugin,
        Err(reason) => {
            say(&FromChild::Refused { reason });
            return 3;
        }
    };
    let manifest = serde_json::to_string(plugin.manifest()).expect("a manifest serialises");
    if !say(&FromChild::Ready { manifest }) {
        return 1;
    }
    // Its own buffer over stdin, so that an empty buffer means nothing has been read ahead.
    let Ok(stdin) = std::io::stdin().as_fd().try_clone_to_owned() else { return 1 };
    let input = RefCell::new(BufReader::new(std::fs::File::from(stdin)));
    let next = || -> Option<ToChild> {
        let mut input = input.borrow_mut();
        if input.buffer().is_empty() {
            // The host's next line is often a few microseconds away: polled, not slept for.
            let _ = super::readable(input.get_ref().as_fd(), Duration::MAX, limits.spin);
        }
        let mut text = String::new();
        match input.read_line(&mut text) {
            Ok(0) | Err(_) => None,
            Ok(_) => serde_json::from_str(&text).ok(),
        }
    };
    while let Some(message) = next() {
        let ToChild::Call { method, request } = message else { return 2 };
        // The plugin's callbacks go to the host and wait for its answer on the same pipe.
        let host = |method: &str, request: &str| -> Result<String, String> {
            let asked = FromChild::HostCall { method: method.into(), request: request.into() };
            match (say(&asked), next()) {
                (true, Some(ToChild::HostAnswer { answer })) => answer.into(),
                _ => Err(r#"{"code":"internal","message":"the host went away"}"#.into()),
            }
        };
        let answer = plugin.call(&method, &request, &host);
        if !say(&FromChild::Answer { answer: Answer::from(answer) }) {
            return 1;
        }
    }
    0
}
