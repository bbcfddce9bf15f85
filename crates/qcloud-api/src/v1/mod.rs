//! The native API, `/v1`: one module per resource, each with its wire types (DTOs, their OpenAPI
//! schemas) and their translation onto the service's typed commands and views.

pub mod devices;
pub mod events;
pub mod jobs;
pub mod sessions;
pub mod tokens;
pub mod webhooks;

use chrono::{DateTime, Utc};
use qcloud_service::list::{Cursor, ListWindow};
use qcloud_service::Result;
use serde::Serialize;
use utoipa::ToSchema;

/// A page of a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The wire form of a service page, each item through `f`.
    pub(crate) fn from_service<S>(p: qcloud_service::list::Page<S>, f: impl FnMut(S) -> T) -> Self {
        Page { items: p.items.into_iter().map(f).collect(), next_cursor: p.next_cursor.map(|c| c.to_string()) }
    }
}

/// The filters every list query shares, as the service's list window (the cursor parsed).
pub(crate) fn window(
    tag: Option<String>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<ListWindow> {
    let cursor = cursor.map(str::parse::<Cursor>).transpose()?;
    Ok(ListWindow { tag, created_after, created_before, cursor, limit })
}

/// Seconds, as the wire shows durations.
pub(crate) fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}
