//! Storing an onboarding's result: the lifecycle transition the onboarding service ends with.
//! Synchronous, like the plugin calls around it (the service runs on a blocking thread).

use authplug_store::{NewSystem, Onboarded, State};

use crate::events::{Event, EventKind};
use crate::{Engine, EngineError};

impl Engine {
    /// Stores a new onboarding of system `new.id` (a new system, or with `replace` the existing
    /// one onboarded again: active, its failures forgotten), forgets earlier `authorize`
    /// answers, and, when the system needed re-authorisation or was failing, says it
    /// `recovered` (an event and an audit line).
    pub fn onboarded(
        &self,
        new: NewSystem,
        replace: bool,
        actor: &str,
    ) -> Result<Onboarded, EngineError> {
        let id = new.id.clone();
        let stored = self.store.onboarded(new, replace, actor);
        // Whatever happened, answers computed before it are not reused.
        self.authorized.forget(&id);
        let stored = stored?;
        if let Some(previous) = &stored.previous {
            if previous.state != State::Active || previous.failures > 0 {
                let summary = &stored.record.summary;
                let now = self.clock().now_ms();
                let mut event = Event::new(
                    EventKind::Recovered,
                    &id,
                    &summary.scheme,
                    &self.holder.next(),
                    now,
                );
                event.expires_at = summary.expires_at;
                event.reason = Some(format!("onboarded again (was {})", previous.state));
                let (action, detail) = event.audit_line();
                self.store.record_event(&id, actor, &action, detail)?;
                self.events.emit(event);
            }
        }
        Ok(stored)
    }
}
