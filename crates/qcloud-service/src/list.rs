//! What every listing shares: a tag, a creation range, a keyset [`Cursor`] and a page size, and
//! the [`Page`] it returns (newest first, by creation time then id).

use crate::error::{Result, ServiceError};
use crate::validate;
use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Where the next page starts: rows strictly older than (created_at, id). Opaque to clients; its
/// text form is `<created_at in microseconds since 1970>_<id, hyphenated>`, [`CURSOR_PATTERN`]:
/// every string of that pattern is a cursor this parser takes (a page boundary need not be one
/// the server issued), and no other is, so the API's schema can state the rule exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// The text form of a [`Cursor`]: up to 16 digits of microseconds (until the year 2286), `_`,
/// a hyphenated UUID.
pub const CURSOR_PATTERN: &str =
    "^[0-9]{1,16}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.created_at.timestamp_micros(), self.id.hyphenated())
    }
}

impl FromStr for Cursor {
    type Err = ServiceError;
    fn from_str(c: &str) -> Result<Self> {
        let bad = || ServiceError::invalid("invalid_cursor", "cursor is not one this server issued");
        let (micros, id) = c.split_once('_').ok_or_else(bad)?;
        if micros.is_empty() || micros.len() > 16 || !micros.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        // Only the hyphenated form (the uuid parser also takes braced, URN and simple forms).
        let hyphens = id.len() == 36
            && id
                .char_indices()
                .all(|(i, ch)| if [8, 13, 18, 23].contains(&i) { ch == '-' } else { ch.is_ascii_hexdigit() });
        if !hyphens {
            return Err(bad());
        }
        let created_at = micros.parse().ok().and_then(DateTime::<Utc>::from_timestamp_micros).ok_or_else(bad)?;
        Ok(Cursor { created_at, id: id.parse().map_err(|_| bad())? })
    }
}

/// The filters every listing takes.
#[derive(Debug, Clone, Default)]
pub struct ListWindow {
    pub tag: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub cursor: Option<Cursor>,
    /// Page size, 1 to [`validate::MAX_PAGE`] (default [`validate::DEFAULT_PAGE`]).
    pub limit: Option<i64>,
}

impl ListWindow {
    /// The store's window, fetching one row more than the page so that [`next_page`] can tell
    /// whether another page follows; also returns the page size.
    pub(crate) fn to_store(&self) -> Result<(qcloud_store::Window, i64)> {
        validate::opt_text("tag", self.tag.as_deref())?;
        let limit = validate::page_limit(self.limit)?;
        let window = qcloud_store::Window {
            tag: self.tag.clone(),
            created_after: self.created_after,
            created_before: self.created_before,
            cursor: self.cursor.map(|c| (c.created_at, c.id)),
            limit: limit + 1,
        };
        Ok((window, limit))
    }
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// Keyset pagination: `rows` were fetched with `limit + 1`; keep `limit` of them and return the
/// cursor of the next page when there is one.
pub(crate) fn next_page<R>(rows: &mut Vec<R>, limit: i64, key: impl Fn(&R) -> (DateTime<Utc>, Uuid)) -> Option<Cursor> {
    if rows.len() as i64 <= limit {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(|r| {
        let (created_at, id) = key(r);
        Cursor { created_at, id }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_page_keeps_limit_rows_and_points_past_the_last() {
        let t = Utc::now();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let mut rows = ids.clone();
        let cursor = next_page(&mut rows, 2, |id| (t, *id)).unwrap();
        assert_eq!(rows, ids[..2]);
        assert_eq!(cursor.to_string().parse::<Cursor>().unwrap().id, ids[1]);
        let mut rows = ids.clone();
        assert_eq!(next_page(&mut rows, 3, |id| (t, *id)), None);
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let t = Utc::now();
        let id = Uuid::now_v7();
        let c: Cursor = Cursor { created_at: t, id }.to_string().parse().unwrap();
        assert_eq!(c.id, id);
        assert_eq!(c.created_at.timestamp_micros(), t.timestamp_micros());
        assert!("nonsense".parse::<Cursor>().is_err());
        assert!("2020-01-01T00:00:00Z_notauuid".parse::<Cursor>().is_err());
    }

    /// Every string of `CURSOR_PATTERN` parses and none else does: a schema-valid cursor is never
    /// refused (the RFC 3339 form let `9999-99-99T...` match any pattern the schema could give
    /// and still be refused), and a schema-invalid one never taken.
    #[test]
    fn cursors_parse_exactly_the_pattern() {
        let id = "0190c3c0-0000-7000-8000-00000000000A";
        for ok in [format!("0_{id}"), format!("9999999999999999_{id}"), format!("0001_{}", id.to_lowercase())] {
            let c: Cursor = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(c.id, id.parse::<Uuid>().unwrap());
        }
        assert_eq!(
            format!("1700000000000001_{id}").parse::<Cursor>().unwrap().created_at.timestamp_micros(),
            1700000000000001
        );
        let simple = id.replace('-', "");
        for bad in [
            format!("_{id}"),
            format!("+1_{id}"),
            format!("-1_{id}"),
            format!("10000000000000000_{id}"),
            format!("1 _{id}"),
            format!("1_{simple}"),
            format!("1_{{{id}}}"),
            format!("1_urn:uuid:{id}"),
            format!("1_{id}_"),
            format!("1-{id}"),
            "1_".to_string(),
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad} parsed");
        }
    }
}
