//! The messages between the host and a plugin's child process: one JSON object per line on the
//! child's stdin and stdout. They carry the plugin boundary's own JSON strings unchanged, so the
//! plugin file is called exactly as in-process; secrets travel only in these pipes.

use serde::{Deserialize, Serialize};

/// From the host to the child.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "to_child", rename_all = "snake_case")]
pub(crate) enum ToChild {
    /// A plugin call: a method of the protocol and its request.
    Call { method: String, request: String },
    /// The host's answer to the child's last [`FromChild::HostCall`].
    HostAnswer { answer: Answer },
}

/// From the child to the host.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "from_child", rename_all = "snake_case")]
pub(crate) enum FromChild {
    /// The file is loaded: its manifest (the `describe` JSON).
    Ready { manifest: String },
    /// The file was refused, and why (one line).
    Refused { reason: String },
    /// The plugin calls back the host (`http`) during a call.
    HostCall { method: String, request: String },
    /// The call's answer.
    Answer { answer: Answer },
}

/// A boundary answer: the JSON of the success or of the `ErrorBody`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Answer {
    Ok(String),
    Err(String),
}

impl From<Result<String, String>> for Answer {
    fn from(result: Result<String, String>) -> Self {
        match result {
            Ok(text) => Answer::Ok(text),
            Err(text) => Answer::Err(text),
        }
    }
}

impl From<Answer> for Result<String, String> {
    fn from(answer: Answer) -> Self {
        match answer {
            Answer::Ok(text) => Ok(text),
            Answer::Err(text) => Err(text),
        }
    }
}

/// One message as its line.
pub(crate) fn line<T: Serialize>(message: &T) -> String {
    let mut text = serde_json::to_string(message).expect("plain messages serialise");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_tagged_line_each() {
        let call = line(&ToChild::Call { method: "apply".into(), request: "{\"a\":\n1}".into() });
        assert_eq!(
            call,
            "{\"to_child\":\"call\",\"method\":\"apply\",\"request\":\"{\\\"a\\\":\\n1}\"}\n"
        );
        let answer: FromChild =
            serde_json::from_str(r#"{"from_child":"answer","answer":{"err":"{}"}}"#).unwrap();
        assert!(matches!(answer, FromChild::Answer { answer: Answer::Err(_) }));
    }
}
