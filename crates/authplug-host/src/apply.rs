//! `apply`: what one outbound request needs, through the boundary or, on a thread that must not
//! block, here and now (`apply_now`).

use authplug_protocol::{method, ApplyRequest, ApplyResponse, ErrorCode};

use super::{LoadedScheme, Provider};
use crate::call::{CallError, HostServices};
use crate::redact::scrub;

impl LoadedScheme {
    /// The headers and query parameters one outbound request needs.
    pub fn apply(
        &self,
        mut request: ApplyRequest,
        host: &HostServices,
    ) -> Result<ApplyResponse, CallError> {
        request.scheme = self.descriptor.id.clone();
        self.apply_named(&request, host)
    }

    /// [`LoadedScheme::apply`] of a request that names this scheme.
    fn apply_named(
        &self,
        request: &ApplyRequest,
        host: &HostServices,
    ) -> Result<ApplyResponse, CallError> {
        // An error is scrubbed of the request's own values below: apply is a hot path, and
        // copying every secret for each call is not free.
        let answer =
            self.invoke(method::APPLY, request, host, &[], |s, h| s.apply(request.clone(), h));
        let answer = answer.map_err(|mut error| {
            error.message = scrub(&error.message, request.injected.values());
            error
        })?;
        match crate::headers::unsendable(&answer) {
            Some(why) => Err(CallError::new(self.id(), ErrorCode::InvalidInput, why)),
            None => Ok(answer),
        }
    }

    /// [`LoadedScheme::apply`] made here and now, on a thread that must not block (an async
    /// worker): `None` when the scheme runs in another process, or when its apply asked for a
    /// host callback (refused before anything was sent): then call [`LoadedScheme::apply`] on a
    /// blocking thread. An in-process apply that needs nothing of the host (an API key's header,
    /// a token's `Authorization`) takes microseconds, less than a hop to another thread.
    ///
    /// The request is borrowed, so that the caller still has it for the blocking thread.
    pub fn apply_now(
        &self,
        request: &ApplyRequest,
        host: &HostServices,
    ) -> Option<Result<ApplyResponse, CallError>> {
        if matches!(self.provider, Provider::Isolated(_)) {
            return None;
        }
        let _unblocking = crate::call::unblocking::Unblocking::enter();
        let answer = match request.scheme == self.descriptor.id {
            true => self.apply_named(request, host),
            false => self.apply(request.clone(), host),
        };
        (!crate::call::unblocking::was_refused()).then_some(answer)
    }
}
