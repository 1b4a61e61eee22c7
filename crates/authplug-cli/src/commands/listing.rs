//! The paging and filter flags `authplug systems` and `authplug status` share, and the walk
//! through the store's pages they drive.

use authplug_store::{Cursor, Filter, State, StoreError};
use clap::{Args, ValueEnum};

use crate::exit::Failure;

/// Which systems to list, and how many at a time.
#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    /// Print one page of at most N systems (1 to 1000), then the cursor of the next page on
    /// stderr (with --json, as "next_cursor"). Without it, every system is listed.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,

    /// Go on from the page before (the cursor it printed).
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,

    /// Only systems in this state.
    #[arg(long, value_enum)]
    pub state: Option<ListedState>,

    /// Only systems of this scheme id (e.g. oauth2).
    #[arg(long, value_name = "SCHEME")]
    pub scheme: Option<String>,

    /// Only systems onboarded from the connector of this name.
    #[arg(long, value_name = "NAME")]
    pub connector: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListedState {
    Active,
    NeedsReauth,
}

impl ListArgs {
    pub fn filter(&self) -> Filter {
        Filter {
            state: self.state.map(|s| match s {
                ListedState::Active => State::Active,
                ListedState::NeedsReauth => State::NeedsReauth,
            }),
            scheme: self.scheme.clone(),
            connector: self.connector.clone(),
        }
    }

    pub fn cursor(&self) -> Result<Option<Cursor>, Failure> {
        self.cursor
            .as_deref()
            .map(|text| {
                Cursor::decode(text)
                    .map_err(|e: StoreError| Failure::bad_input(format!("--cursor: {e}")))
            })
            .transpose()
    }

    /// Every page from the cursor on (all of them without --limit, one with it), read by
    /// `page`; answers the items and the next page's cursor.
    pub fn walk<T>(
        &self,
        mut page: impl FnMut(Option<&Cursor>, usize) -> Result<(Vec<T>, Option<Cursor>), Failure>,
    ) -> Result<(Vec<T>, Option<Cursor>), Failure> {
        let mut cursor = self.cursor()?;
        let Some(limit) = self.limit else {
            let mut all = Vec::new();
            loop {
                let (items, next) = page(cursor.as_ref(), authplug_store::MAX_PAGE)?;
                all.extend(items);
                match next {
                    Some(next) => cursor = Some(next),
                    None => return Ok((all, None)),
                }
            }
        };
        page(cursor.as_ref(), limit as usize)
    }
}

/// Tells where the next page starts, on stderr.
pub fn say_next(next: &Option<Cursor>) {
    if let Some(next) = next {
        eprintln!("more: run again with --cursor {}", next.encode());
    }
}
