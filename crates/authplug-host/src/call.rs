//! Calls into schemes: the host callbacks a scheme may make, and the errors a call can end in.

use std::fmt;
use std::sync::Arc;

use authplug_protocol::{host_method, ErrorBody, ErrorCode, HttpRequest, HttpResponse};

use crate::operator::OperatorSecrets;
use crate::transport::Transport;

/// Watches the HTTP exchanges of the calls made with one [`HostServices`]. The refresh engine
/// uses it to journal, durably, the moment a refresh request leaves, and to read `Retry-After`
/// from answers a scheme does not pass on. Observers see requests and answers, so they must not
/// log them.
pub trait HttpObserver: Send + Sync + fmt::Debug {
    /// Called just before a request is handed to the transport. An error stops the request: the
    /// scheme gets an `http` error with this text instead.
    fn sending(&self, request: &HttpRequest) -> Result<(), String>;
    /// Called with what came back, before the scheme sees it.
    fn answered(&self, response: &Result<HttpResponse, ErrorBody>);
}

/// What the host offers a scheme during a call. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HostServices {
    transport: Option<Arc<Transport>>,
    operator: Arc<OperatorSecrets>,
    observer: Option<Arc<dyn HttpObserver>>,
}

impl HostServices {
    /// A host whose schemes may make HTTP requests through `transport`.
    pub fn new(transport: Arc<Transport>) -> Self {
        Self { transport: Some(transport), operator: Arc::default(), observer: None }
    }

    /// The same host, with `observer` watching every HTTP exchange of its calls.
    pub fn with_observer(mut self, observer: Arc<dyn HttpObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The same host, completing calls with the operator's secrets (see [`OperatorSecrets`]).
    pub fn with_operator_secrets(mut self, operator: OperatorSecrets) -> Self {
        self.operator = Arc::new(operator);
        self
    }

    /// Whether the operator's configuration holds `scheme`'s secret `name` (so a user may leave
    /// it out).
    pub fn operator_holds(&self, scheme: &str, name: &str) -> bool {
        self.operator.holds(scheme, name)
    }

    pub(crate) fn operator(&self) -> &OperatorSecrets {
        &self.operator
    }

    /// A host without network access: a scheme that asks for HTTP gets an `http` error. Enough
    /// for describing and for schemes that never call out (API key).
    pub fn offline() -> Self {
        Self { transport: None, operator: Arc::default(), observer: None }
    }

    /// Answers one callback from a scheme: `(method, request json) -> json | json error`.
    pub fn handle(&self, method: &str, request: &str) -> Result<String, String> {
        self.dispatch(method, request).map_err(|e| e.to_json())
    }

    /// One HTTP exchange on the host's transport (timeouts, SSRF guard, size cap), seen by the
    /// observer: what a scheme's `http` callback runs, and what the host uses for its own calls
    /// around a scheme (an onboarding's tenant lookup). Blocks: call it on a blocking thread.
    pub fn http(&self, request: HttpRequest) -> Result<HttpResponse, ErrorBody> {
        if unblocking::refuse() {
            return Err(ErrorBody::new(ErrorCode::Http, unblocking::REFUSED));
        }
        let transport = self
            .transport
            .as_ref()
            .ok_or_else(|| ErrorBody::new(ErrorCode::Http, "this host offers no network access"))?;
        if let Some(observer) = &self.observer {
            observer.sending(&request).map_err(|e| ErrorBody::new(ErrorCode::Http, e))?;
        }
        let response = transport.execute_blocking(request);
        if let Some(observer) = &self.observer {
            observer.answered(&response);
        }
        response
    }

    fn dispatch(&self, method: &str, request: &str) -> Result<String, ErrorBody> {
        match method {
            host_method::HTTP => {
                let request: HttpRequest = serde_json::from_str(request).map_err(|e| {
                    ErrorBody::new(
                        ErrorCode::InvalidInput,
                        format!(
                            "malformed http request from the scheme ({:?} error)",
                            e.classify()
                        ),
                    )
                })?;
                let response = self.http(request)?;
                serde_json::to_string(&response)
                    .map_err(|_| ErrorBody::new(ErrorCode::Internal, "unserialisable response"))
            }
            other => Err(ErrorBody::new(
                ErrorCode::UnknownMethod,
                format!("the host has no callback {other:?}"),
            )),
        }
    }
}

/// Calls made where nothing may block (an async worker thread): while a [`Unblocking`] guard
/// is held on a thread, every HTTP callback made on that thread is refused before anything is
/// sent, and the guard remembers that one was, so that its caller makes the call again where it
/// may block. Only in-process calls use it: their callbacks run on the calling thread.
pub(crate) mod unblocking {
    use std::cell::Cell;

    /// What a refused callback tells the scheme (nobody else sees it: the answer is dropped).
    pub(crate) const REFUSED: &str = "no network on this thread: the call is made again elsewhere";

    thread_local! {
        /// Whether callbacks are refused here, and whether one was.
        static HERE: Cell<(bool, bool)> = const { Cell::new((false, false)) };
    }

    /// Callbacks on this thread are refused until it is dropped (even by a panic).
    pub(crate) struct Unblocking {
        before: (bool, bool),
    }

    impl Unblocking {
        pub(crate) fn enter() -> Self {
            Self { before: HERE.with(|here| here.replace((true, false))) }
        }
    }

    impl Drop for Unblocking {
        fn drop(&mut self) {
            HERE.with(|here| here.set(self.before));
        }
    }

    /// Whether a callback was refused on this thread since the guard held now was entered
    /// (such a call's answer is dropped, and not counted either).
    pub(crate) fn was_refused() -> bool {
        HERE.with(|here| here.get() == (true, true))
    }

    /// Whether a callback made now must be refused (and notes that one was).
    pub(super) fn refuse() -> bool {
        HERE.with(|here| {
            let (on, _) = here.get();
            if on {
                here.set((true, true));
            }
            on
        })
    }
}

/// A failed call into a scheme. The message never contains a secret value: the host scrubs the
/// values of the call from anything the plugin said.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    pub scheme: String,
    pub code: ErrorCode,
    pub message: String,
}

impl CallError {
    pub(crate) fn new(scheme: &str, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { scheme: scheme.to_owned(), code, message: message.into() }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scheme `{}`: {}: {}", self.scheme, self.code, self.message)
    }
}

impl std::error::Error for CallError {}
