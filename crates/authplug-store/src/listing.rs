//! Listing systems a page at a time: filters by state, scheme and connector, an opaque cursor
//! (keyset paging by id: a system that exists for a whole walk is handed out exactly once,
//! whatever is inserted or deleted meanwhile), and counts from aggregate queries. No listing
//! holds more than one page in memory.

use std::collections::HashMap;

use crate::journal::{Attempt, Lease};
use crate::model::State;
use crate::{Result, Store, StoreError, SystemSummary};

/// The largest page [`Store::page`] hands out.
pub const MAX_PAGE: usize = 1000;

/// Which systems a listing holds; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub state: Option<State>,
    pub scheme: Option<String>,
    /// The connector's name, as onboarding recorded it.
    pub connector: Option<String>,
}

impl Filter {
    /// The `WHERE` conditions after `id > ?`, in parameter order, and their values.
    pub(crate) fn conditions(&self) -> (String, Vec<&str>) {
        let mut sql = String::new();
        let mut values = Vec::new();
        let columns = [
            ("state", self.state.map(State::as_str)),
            ("scheme", self.scheme.as_deref()),
            ("connector", self.connector.as_deref()),
        ];
        for (column, value) in columns {
            if let Some(value) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                values.push(value);
            }
        }
        (sql, values)
    }
}

/// Where a listing goes on from: the last id of the page before, opaque to callers (hex, so
/// that it travels in a URL as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    /// The cursor after the system `id`.
    pub fn after(id: &str) -> Self {
        Self(id.to_owned())
    }

    /// Parses a cursor [`Cursor::encode`] gave out; any other text is refused.
    pub fn decode(text: &str) -> Result<Self> {
        let bad = || StoreError::BadCursor;
        if text.is_empty() || text.len() % 2 != 0 || text.len() > 2 * crate::MAX_SYSTEM_ID {
            return Err(bad());
        }
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
            .collect();
        String::from_utf8(bytes.ok_or_else(bad)?).map(Self).map_err(|_| bad())
    }

    pub fn encode(&self) -> String {
        self.0.bytes().map(|b| format!("{b:02x}")).collect()
    }
}

/// One page of a listing, and the cursor of the next (none after the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub systems: Vec<SystemSummary>,
    pub next: Option<Cursor>,
}

impl Store {
    /// Up to `limit` systems (at most [`MAX_PAGE`]) matching `filter`, by id, after `cursor`.
    /// No value is decrypted.
    pub fn page(&self, filter: &Filter, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        let limit = limit.clamp(1, MAX_PAGE);
        let after = cursor.map_or("", |c| c.0.as_str());
        // One more than asked tells whether another page follows.
        let mut systems =
            self.summaries(|tx| tx.page(filter, after, i64::try_from(limit + 1).unwrap_or(1)))?;
        let next = if systems.len() > limit {
            systems.truncate(limit);
            systems.last().map(|s| Cursor::after(&s.id))
        } else {
            None
        };
        Ok(Page { systems, next })
    }

    /// How many systems match `filter`, counted by the database.
    pub fn count(&self, filter: &Filter) -> Result<u64> {
        self.tx(false, |tx| tx.count(filter))
    }

    /// The newest attempt and the lease of each of `ids` that has one (one query each, for a
    /// page's status).
    pub fn journal_of(
        &self,
        ids: &[String],
    ) -> Result<(HashMap<String, Attempt>, HashMap<String, Lease>)> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        self.tx(false, |tx| {
            let attempts = tx.latest_attempts_of(ids)?;
            let leases = tx.leases_of(ids)?;
            Ok((
                attempts.into_iter().map(|a| (a.system_id.clone(), a)).collect(),
                leases.into_iter().collect(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_travels_as_hex_and_only_ours_are_taken() {
        let cursor = Cursor::after("crm/é 1");
        assert!(cursor.encode().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        for bad in ["", "abc", "zz", "ff", &"61".repeat(crate::MAX_SYSTEM_ID + 1)] {
            assert!(matches!(Cursor::decode(bad), Err(StoreError::BadCursor)), "{bad}");
        }
    }

    #[test]
    fn filters_become_conditions_in_parameter_order() {
        let filter = Filter {
            state: Some(State::NeedsReauth),
            connector: Some("hubspot".into()),
            ..Default::default()
        };
        let (sql, values) = filter.conditions();
        assert_eq!(sql, " AND state = ? AND connector = ?");
        assert_eq!(values, ["needs_reauth", "hubspot"]);
    }
}
