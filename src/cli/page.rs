//! Paged listings: a listing prints one page (never a whole table of a million rows by
//! accident) and says on stderr how to ask for the next.

use clap::Args;

use crate::admin::Page;

/// Rows a page holds unless `--limit` says otherwise.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most one page may hold.
pub const MAX_LIMIT: u32 = 10_000;

#[derive(Debug, Args)]
pub struct PageArgs {
    /// Rows to show (at most 10000).
    #[arg(long, default_value_t = DEFAULT_LIMIT)]
    pub limit: u32,
    /// Show the rows after this one: the cursor the previous page printed.
    #[arg(long, value_name = "CURSOR")]
    pub after: Option<String>,
}

impl PageArgs {
    pub fn page(&self) -> Page {
        Page {
            after: self.after.clone(),
            limit: i64::from(self.limit.clamp(1, MAX_LIMIT)),
        }
    }

    /// See [`hint_next`].
    pub fn hint_next(&self, shown: usize, last: Option<&str>) {
        hint_next(shown, self.page().limit, last);
    }
}

/// After a full page, tells (on stderr, so JSON on stdout stays one document) how to get the
/// next one; `last` is the cursor of the page's last row.
pub fn hint_next(shown: usize, limit: i64, last: Option<&str>) {
    if let Some(last) = last
        && shown as i64 >= limit
    {
        eprintln!("-- {shown} shown; the next page: --after {last}");
    }
}
