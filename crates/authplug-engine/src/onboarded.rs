//! Storing an onboarding's result: the lifecycle transition the onboarding service ends with.
//! Synchronous, like the plugin calls around it (the service runs on a blocking thread).

use std::cell::RefCell;

use authplug_store::{NewSystem, Onboarded, State, SystemSummary};

use crate::events::{Event, EventKind};
use crate::{Engine, EngineError};

impl Engine {
    /// Stores a new onboarding of system `new.id` (a new system, or with `replace` the existing
    /// one onboarded again: active, its failures forgotten), forgets earlier `authorize`
    /// answers, and, when the system needed re-authorisation or was failing, says it
    /// `recovered`: an audit line in the transaction that stored it, then the event.
    pub fn onboarded(
        &self,
        new: NewSystem,
        replace: bool,
        actor: &str,
    ) -> Result<Onboarded, EngineError> {
        let (id, scheme, expires_at) = (new.id.clone(), new.scheme.clone(), new.expires_at);
        let (holder, now) = (self.holder.next(), self.clock().now_ms());
        let recovered: RefCell<Option<Event>> = RefCell::new(None);
        let also = |previous: &SystemSummary| {
            if previous.state == State::Active && previous.failures == 0 {
                return None;
            }
            let mut event = Event::new(EventKind::Recovered, &id, &scheme, &holder, now);
            event.expires_at = expires_at;
            event.reason = Some(format!("onboarded again (was {})", previous.state));
            let line = event.audit_line();
            *recovered.borrow_mut() = Some(event);
            Some(line)
        };
        let stored = self.store.onboarded(new, replace, actor, &also);
        // Whatever happened, answers computed before it are not reused.
        self.authorized.forget(&id);
        let stored = stored?;
        if let Some(event) = recovered.into_inner() {
            self.events.emit(event);
        }
        Ok(stored)
    }
}
