//! `LoadedScheme::revoke`: a stored credential revoked at the provider before it is deleted.

use authplug_protocol::{method, ErrorCode, RevokeRequest, Revoked, Secret};

use super::LoadedScheme;
use crate::call::{CallError, HostServices};
use crate::redact::scrub;

impl LoadedScheme {
    /// Revokes a stored credential at the provider. A scheme that does not revoke (a plugin
    /// older than protocol 1.5, or one without the method) answers `unknown_method`; what it
    /// says it revoked must be among its declared injected secrets, and its notes are scrubbed
    /// of the call's values.
    pub fn revoke(
        &self,
        mut request: RevokeRequest,
        host: &HostServices,
    ) -> Result<Revoked, CallError> {
        request.scheme = self.descriptor.id.clone();
        host.operator().fill(self.id(), &self.descriptor.required, &mut request.required);
        let secrets: Vec<Secret> =
            request.required.values().chain(request.injected.values()).cloned().collect();
        let mut answer: Revoked =
            self.invoke(method::REVOKE, &request, host, &secrets, |s, h| {
                s.revoke(request.clone(), h)
            })?;
        if let Some(name) = answer
            .revoked
            .iter()
            .find(|name| !self.descriptor.injected.iter().any(|i| &i.name == *name))
        {
            return Err(CallError::new(
                self.id(),
                ErrorCode::ContractViolation,
                format!("revoked `{name}`, which is no injected secret of the scheme"),
            ));
        }
        for note in &mut answer.notes {
            *note = scrub(note, secrets.iter());
        }
        Ok(answer)
    }
}
