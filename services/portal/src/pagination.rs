//! Keyset pagination of admin lists: `?limit&cursor`, where the cursor is the last id of the
//! previous page and `next_cursor` is null exactly when there is nothing after this page.

use gatehouse_projections::query::{self, AdminView, MAX_LIMIT, MIN_LIMIT};
use gatehouse_store::Db;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::ApiError;

/// The page size when `limit` is absent.
pub const DEFAULT_LIMIT: i64 = 50;

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Admins per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

impl PageParams {
    pub fn limit(&self) -> Result<i64, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if (MIN_LIMIT..=MAX_LIMIT).contains(&limit) {
            Ok(limit)
        } else {
            Err(ApiError::invalid_query(format!(
                "limit must be between {MIN_LIMIT} and {MAX_LIMIT}."
            )))
        }
    }
}

/// One page and the cursor of the next, if there is a next.
#[derive(Debug)]
pub struct Page {
    pub admins: Vec<AdminView>,
    pub next_cursor: Option<Uuid>,
}

/// A list that can be read a page at a time.
pub trait Pages {
    /// Up to `limit` admins after `after`, in id order.
    fn read(
        &mut self,
        after: Option<Uuid>,
        limit: i64,
    ) -> impl Future<Output = anyhow::Result<Vec<AdminView>>> + Send;
}

/// The organisation's admins.
pub struct AllAdmins<'a> {
    pub db: &'a Db,
    pub org: Uuid,
}

impl Pages for AllAdmins<'_> {
    async fn read(&mut self, after: Option<Uuid>, limit: i64) -> anyhow::Result<Vec<AdminView>> {
        query::list_admins(self.db, self.org, after, limit).await
    }
}

/// The organisation's admins without MFA required, and their count (from the first read's
/// snapshot).
pub struct AdminsWithoutMfa<'a> {
    pub db: &'a Db,
    pub org: Uuid,
    pub count: Option<i64>,
}

impl Pages for AdminsWithoutMfa<'_> {
    async fn read(&mut self, after: Option<Uuid>, limit: i64) -> anyhow::Result<Vec<AdminView>> {
        let (count, admins) = query::admins_without_mfa(self.db, self.org, after, limit).await?;
        self.count.get_or_insert(count);
        Ok(admins)
    }
}

/// Reads one page, asking for one row more than the page holds to learn whether another page
/// follows (or, at the largest page size, probing for one row after it).
pub async fn fetch(params: &PageParams, source: &mut impl Pages) -> Result<Page, ApiError> {
    let limit = params.limit()?;
    let page_len = usize::try_from(limit).unwrap_or(usize::MAX);
    let (mut admins, more) = if limit < MAX_LIMIT {
        let rows = source.read(params.cursor, limit + 1).await?;
        let more = rows.len() > page_len;
        (rows, more)
    } else {
        let rows = source.read(params.cursor, limit).await?;
        let more = match rows.last() {
            Some(last) if rows.len() == page_len => {
                !source.read(Some(last.id), 1).await?.is_empty()
            }
            _ => false,
        };
        (rows, more)
    };
    admins.truncate(page_len);
    let next_cursor = if more {
        admins.last().map(|a| a.id)
    } else {
        None
    };
    Ok(Page {
        admins,
        next_cursor,
    })
}
