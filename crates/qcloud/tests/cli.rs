//! The command line's token and device commands against a real database: `qcloud tokens create
//! | list | revoke` with human durations, and the `--output json` shape every list command
//! offers (tables for people, JSON for scripts).

use serde_json::Value;
use sqlx::{Connection, PgConnection};
use std::process::Command;

/// A database of its own, dropped at the end.
struct Db {
    admin_url: String,
    name: String,
    url: String,
}

impl Db {
    async fn create() -> Db {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("qcloud_cli_{}", uuid::Uuid::new_v4().simple());
        let mut c = PgConnection::connect(&admin_url).await.expect("DATABASE_URL answers");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
        let (base, _) = admin_url.split_once('?').map(|(b, _)| (b, ())).unwrap_or((admin_url.as_str(), ()));
        let (base, _) = base.rsplit_once('/').expect("a URL with a database");
        let url = format!("{base}/{name}");
        Db { admin_url, name, url }
    }

    async fn drop_it(self) {
        let mut c = PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut c).await.unwrap();
    }
}

/// Run `qcloud ARGS --database-url URL`; returns (success, stdout, stderr).
fn qcloud(db: &Db, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qcloud"))
        .args(args)
        .args(["--database-url", &db.url, "--log", "warn"])
        .env_remove("QCLOUD_CONFIG")
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("runs qcloud");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Where the column separators of a table line are.
fn bars(line: &str) -> Vec<usize> {
    line.chars().enumerate().filter(|(_, c)| *c == '|').map(|(i, _)| i).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_create_list_revoke_with_durations_and_json() {
    let db = Db::create().await;
    let (ok, out, err) = qcloud(
        &db,
        &["tokens", "create", "--project", "lab", "--user", "alice", "--expires-in", "30d", "--output", "json"],
    );
    assert!(ok, "{err}");
    let made = json(&out);
    assert!(made["token"].as_str().unwrap().starts_with("qc_"), "{made}");
    assert_eq!(
        (made["project"].as_str(), made["user"].as_str(), made["admin"].as_bool()),
        (Some("lab"), Some("alice"), Some(false))
    );
    let created: chrono::DateTime<chrono::Utc> = made["created_at"].as_str().unwrap().parse().unwrap();
    let expires: chrono::DateTime<chrono::Utc> = made["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!((expires - created).num_seconds(), 30 * 86_400, "30d");
    let id = made["id"].as_str().unwrap().to_string();

    let (ok, out, err) = qcloud(&db, &["tokens", "create", "--project", "ops", "--user", "root", "--admin"]);
    assert!(ok, "{err}");
    let admin_token = out.trim().to_string();
    assert!(admin_token.starts_with("qc_") && !admin_token.contains(' '), "the token alone: {out:?}");

    let (ok, out, err) = qcloud(&db, &["tokens", "list", "--output", "json"]);
    assert!(ok, "{err}");
    let list = json(&out);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let keys: Vec<&str> = list[0].as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = ["id", "project", "user", "admin", "state", "created_at", "expires_at", "revoked_at"];
    expected.sort_unstable();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, expected, "the documented fields");
    assert_eq!((list[0]["user"].as_str(), list[0]["admin"].as_bool()), (Some("root"), Some(true)), "newest first");
    assert!(list.iter().all(|t| t["state"] == "active"));
    assert!(!out.contains(&admin_token), "no token in the list");

    let (ok, table, _) = qcloud(&db, &["tokens", "list"]);
    assert!(ok);
    assert!(table.contains(&id) && table.contains("alice") && table.contains("root"), "{table}");
    let lines: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.iter().all(|l| bars(l) == bars(lines[0])), "aligned columns:\n{table}");

    let (ok, out, err) = qcloud(&db, &["tokens", "revoke", &id]);
    assert!(ok, "{err}");
    assert!(out.contains(&id), "{out}");
    let (_, out, _) = qcloud(&db, &["tokens", "list", "--output", "json"]);
    let alice = json(&out).as_array().unwrap().iter().find(|t| t["id"] == id.as_str()).cloned().unwrap();
    assert_eq!(alice["state"], "revoked");
    assert!(alice["revoked_at"].is_string());

    // Mistakes say what is wrong, and change nothing.
    let (ok, _, err) = qcloud(&db, &["tokens", "create", "--project", "lab", "--user", "bob", "--expires-in", "soon"]);
    assert!(!ok && err.contains("--expires-in"), "{err}");
    let (ok, _, err) = qcloud(&db, &["tokens", "create", "--project", "lab", "--user", "bob", "--expires-in", "500ms"]);
    assert!(!ok && err.contains("at least 1 second"), "{err}");
    let (ok, _, err) = qcloud(&db, &["tokens", "revoke", "0190c3c0-0000-7000-8000-000000000000"]);
    assert!(!ok && err.contains("not found"), "{err}");
    let (_, out, _) = qcloud(&db, &["tokens", "list", "--output", "json"]);
    assert_eq!(json(&out).as_array().unwrap().len(), 2);
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_list_as_a_table_and_as_json() {
    let db = Db::create().await;
    let long = "a_device_with_a_name_longer_than_twenty_four";
    let (ok, _, err) = qcloud(&db, &["devices", "add", long, "--driver", "statevector", "--num-qubits", "12"]);
    assert!(ok, "{err}");
    let (ok, _, err) = qcloud(&db, &["devices", "add", "n1", "--num-qubits", "3"]);
    assert!(ok, "{err}");
    let (ok, out, err) = qcloud(&db, &["devices", "list", "--output", "json"]);
    assert!(ok, "{err}");
    let list = json(&out);
    let by_name = |n: &str| list.as_array().unwrap().iter().find(|d| d["name"] == n).cloned().unwrap();
    assert_eq!(
        by_name(long),
        serde_json::json!({"name": long, "kind": "gate", "driver": "statevector", "status": "online",
            "num_qubits": 12, "queue_length": 0, "held_by_session": null})
    );
    assert_eq!(by_name("n1")["driver"], "noop");

    let (ok, table, _) = qcloud(&db, &["devices", "list"]);
    assert!(ok);
    let lines: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4, "header, rule, two devices:\n{table}");
    assert!(lines.iter().all(|l| bars(l) == bars(lines[0])), "aligned columns:\n{table}");
    db.drop_it().await;
}
