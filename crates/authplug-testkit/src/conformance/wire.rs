//! The host side of the kit's calls: the provider's answers from the exercise (or a forwarded
//! fake), each call's fault, and what went unanswered.

use std::cell::{Cell, RefCell};
use std::sync::Once;

use authplug_protocol::{host_method, ErrorBody, ErrorCode, HttpRequest, HttpResponse};

use super::{Exercise, Network};

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread's panics kept off stderr (a panic message may hold a secret).
pub(crate) fn quiet_panics<T>(f: impl FnOnce() -> T) -> T {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let out = f();
    QUIET.with(|q| q.set(false));
    out
}

/// How the provider misbehaves for one call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    Status(u16),
    Timeout,
    Truncated,
}

/// The host side of one call: the provider's answers, and what went unanswered.
pub(crate) struct Wire<'a> {
    exercise: &'a Exercise,
    network: Option<&'a Network<'a>>,
    fault: Option<Fault>,
    /// How many requests the call made.
    pub(crate) requests: Cell<usize>,
    unanswered: RefCell<Vec<String>>,
}

impl<'a> Wire<'a> {
    pub(crate) fn new(
        exercise: &'a Exercise,
        network: Option<&'a Network<'a>>,
        fault: Option<Fault>,
    ) -> Self {
        Self { exercise, network, fault, requests: Cell::new(0), unanswered: RefCell::default() }
    }

    pub(crate) fn http(&self, request: &HttpRequest) -> Result<HttpResponse, ErrorBody> {
        self.requests.set(self.requests.get() + 1);
        match self.fault {
            Some(Fault::Status(status)) => {
                let headers =
                    if status == 429 { vec![("Retry-After".into(), "7".into())] } else { vec![] };
                let body = br#"{"error":"kit_fault","error_description":"answered by the conformance kit"}"#;
                return Ok(HttpResponse { status, headers, body: body.to_vec() });
            }
            Some(Fault::Timeout) => {
                return Err(ErrorBody::new(
                    ErrorCode::Http,
                    "the request timed out (the conformance kit)",
                ))
            }
            _ => {}
        }
        let mut answer = self.healthy(request)?;
        if let Some(Fault::Truncated) = self.fault {
            answer.body.truncate(answer.body.len() / 2);
        }
        Ok(answer)
    }

    fn healthy(&self, request: &HttpRequest) -> Result<HttpResponse, ErrorBody> {
        if let Some(answer) = self.exercise.recorded(request) {
            return Ok(answer);
        }
        if let (true, Some(network)) = (self.exercise.forward, self.network) {
            return network(request);
        }
        let path = url::Url::parse(&request.url).map(|u| u.path().to_owned()).unwrap_or_default();
        self.unanswered.borrow_mut().push(format!("{} {path}", request.method));
        Ok(HttpResponse { status: 404, headers: vec![], body: Vec::new() })
    }

    pub(crate) fn callback(&self, method: &str, request: &str) -> Result<String, String> {
        if method != host_method::HTTP {
            return Err(ErrorBody::new(ErrorCode::UnknownMethod, "no such host callback").to_json());
        }
        let request: HttpRequest = serde_json::from_str(request).map_err(|_| {
            ErrorBody::new(ErrorCode::InvalidInput, "malformed http request").to_json()
        })?;
        let answer = self.http(&request).map_err(|e| e.to_json())?;
        serde_json::to_string(&answer).map_err(|_| String::from("unserialisable"))
    }

    pub(crate) fn unanswered(&self) -> String {
        let list = self.unanswered.borrow();
        if list.is_empty() {
            String::new()
        } else {
            format!(" (no exchange answers {})", list.join(", "))
        }
    }
}
