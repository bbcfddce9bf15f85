//! What the list commands print: an aligned table for people (`comfy-table`), or with
//! `--output json` one JSON array for scripts. The JSON shapes are stable: the fields of
//! [`DeviceLine`] and [`TokenLine`], in that order, timestamps in RFC 3339 (UTC), absent
//! values `null`.

use crate::DeviceLine;
use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::{presets, CellAlignment, Table};
use qcloud_service::auth::TokenView;
use serde::Serialize;
use uuid::Uuid;

/// How a list command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned table.
    #[default]
    Table,
    /// A JSON array, one object per line of the table.
    Json,
}

/// A token as `qcloud tokens list` shows it (never the token nor its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenLine {
    pub id: Uuid,
    pub project: String,
    pub user: String,
    pub admin: bool,
    /// `active`, `expired` or `revoked`, at the time of listing.
    pub state: &'static str,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TokenLine {
    pub fn new(t: TokenView, now: DateTime<Utc>) -> TokenLine {
        let state = if t.revoked_at.is_some() {
            "revoked"
        } else if t.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        TokenLine {
            id: t.id,
            project: t.project,
            user: t.user,
            admin: t.admin,
            state,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_MARKDOWN).set_header(header.iter().copied());
    t
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)).unwrap_or_else(|| "-".into())
}

/// The devices as a table.
pub fn devices_table(devices: &[DeviceLine]) -> String {
    let mut t = table(&["name", "kind", "driver", "status", "qubits", "queue", "held by"]);
    for d in devices {
        t.add_row([
            d.name.clone(),
            d.kind.clone(),
            d.driver.clone(),
            d.status.clone(),
            d.num_qubits.to_string(),
            d.queue_length.to_string(),
            d.held_by_session.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        ]);
    }
    // Numbers right-aligned.
    for i in [4, 5] {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.to_string()
}

/// The tokens as a table.
pub fn tokens_table(tokens: &[TokenLine]) -> String {
    let mut t = table(&["id", "project", "user", "admin", "state", "created", "expires", "revoked"]);
    for k in tokens {
        t.add_row([
            k.id.to_string(),
            k.project.clone(),
            k.user.clone(),
            if k.admin { "yes" } else { "no" }.to_string(),
            k.state.to_string(),
            time(Some(k.created_at)),
            time(k.expires_at),
            time(k.revoked_at),
        ]);
    }
    t.to_string()
}

/// Any list as a pretty JSON array.
pub fn json<T: Serialize>(items: &[T]) -> String {
    serde_json::to_string_pretty(items).unwrap_or_else(|e| format!("\"could not render JSON: {e}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, driver: &str, qubits: i32, queue: i64, held: Option<Uuid>) -> DeviceLine {
        DeviceLine {
            name: name.into(),
            kind: "gate".into(),
            driver: driver.into(),
            status: "online".into(),
            num_qubits: qubits,
            queue_length: queue,
            held_by_session: held,
        }
    }

    /// Where the column separators of a line are, in characters.
    fn bars(line: &str) -> Vec<usize> {
        line.chars().enumerate().filter(|(_, c)| *c == '|').map(|(i, _)| i).collect()
    }

    #[test]
    fn device_columns_line_up_whatever_the_lengths() {
        // Names longer than the old fixed 24 columns, and numbers of every width.
        let devices = [
            device("noop_1", "noop", 32, 0, None),
            device("a_device_with_a_rather_long_name_indeed_42", "statevector", 28, 12345, Some(Uuid::nil())),
            device("x", "agent", 5, 7, None),
        ];
        let text = devices_table(&devices);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + devices.len(), "header, rule, one line per device:\n{text}");
        let first = bars(lines[0]);
        assert_eq!(first.len(), 8, "seven columns:\n{text}");
        for l in &lines {
            assert_eq!(bars(l), first, "misaligned line {l:?} in\n{text}");
        }
        assert!(lines[3].contains("a_device_with_a_rather_long_name_indeed_42"));
        assert!(lines[3].contains(&Uuid::nil().to_string()));
        assert!(lines[2].contains(" - "), "no session: '-'");
    }

    #[test]
    fn token_lines_say_their_state_and_line_up() {
        let now = Utc::now();
        let view = |expires: Option<i64>, revoked: bool| TokenView {
            id: Uuid::now_v7(),
            project: "lab".into(),
            user: "alice".into(),
            admin: false,
            created_at: now - chrono::Duration::days(1),
            expires_at: expires.map(|s| now + chrono::Duration::seconds(s)),
            revoked_at: revoked.then_some(now),
        };
        let lines = [
            TokenLine::new(view(None, false), now),
            TokenLine::new(view(Some(-5), false), now),
            TokenLine::new(view(Some(3600), true), now),
        ];
        assert_eq!(lines.iter().map(|l| l.state).collect::<Vec<_>>(), ["active", "expired", "revoked"]);
        let text = tokens_table(&lines);
        let rows: Vec<&str> = text.lines().collect();
        for l in &rows {
            assert_eq!(bars(l), bars(rows[0]), "misaligned line {l:?} in\n{text}");
        }
    }

    #[test]
    fn json_shapes_are_the_documented_fields() {
        let now = "2026-01-02T03:04:05Z".parse::<DateTime<Utc>>().unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&json(&[device("noop_1", "noop", 32, 2, None)])).expect("valid JSON");
        assert_eq!(
            v,
            serde_json::json!([{"name": "noop_1", "kind": "gate", "driver": "noop", "status": "online",
                "num_qubits": 32, "queue_length": 2, "held_by_session": null}])
        );
        let t = TokenLine::new(
            TokenView {
                id: Uuid::nil(),
                project: "lab".into(),
                user: "alice".into(),
                admin: true,
                created_at: now,
                expires_at: None,
                revoked_at: None,
            },
            now,
        );
        let v: serde_json::Value = serde_json::from_str(&json(&[t])).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"id": Uuid::nil(), "project": "lab", "user": "alice", "admin": true, "state": "active",
                "created_at": "2026-01-02T03:04:05Z", "expires_at": null, "revoked_at": null}])
        );
    }
}
