//! Tokens over the native API and across replicas (issue 7): admins list, create and revoke
//! tokens; a revoked or expired token is 401 at once on every replica, cache or no cache; one
//! admin token is made on a database's first start and none on later starts, even with
//! replicas starting together; rate limits per caller answer 429 with `Retry-After`.

use qcloud_e2e::{create_token, Client, Server, TestDb, ADMIN_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

async fn count_admin_tokens(db: &TestDb) -> i64 {
    let mut conn = db.connect().await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM tokens WHERE is_admin").fetch_one(&mut conn).await.unwrap()
}

#[tokio::test]
async fn admins_list_create_and_revoke_tokens_and_others_may_not() {
    let db = TestDb::create().await.unwrap();
    let server = Server::start(&db, &[]).await.unwrap();
    let admin = server.client(ADMIN_TOKEN);

    let (s, made) = admin.post("/v1/tokens", json!({"project": "lab", "user": "alice"})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let token = made["token"].as_str().expect("the token, shown once").to_string();
    assert!(token.starts_with("qc_"), "{made}");
    assert_eq!(
        (made["project"].as_str(), made["user"].as_str(), made["admin"].as_bool()),
        (Some("lab"), Some("alice"), Some(false))
    );
    assert!(made["expires_at"].is_null() && made["revoked_at"].is_null(), "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    let alice = server.client(&token);
    assert_eq!(alice.get("/v1/devices").await.unwrap().0, StatusCode::OK, "the new token works");

    let (s, with_expiry) = admin
        .post("/v1/tokens", json!({"project": "lab", "user": "bob", "admin": true, "expires_in_seconds": 3600}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{with_expiry}");
    let expires: chrono::DateTime<chrono::Utc> = with_expiry["expires_at"].as_str().unwrap().parse().unwrap();
    let created: chrono::DateTime<chrono::Utc> = with_expiry["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!((expires - created).num_seconds(), 3600, "{with_expiry}");

    // The list: every token, never a token or its hash.
    let (s, list) = admin.get("/v1/tokens").await.unwrap();
    assert_eq!(s, StatusCode::OK, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "the harness's admin token, alice's and bob's: {list:?}");
    let fields: BTreeSet<&str> = list[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, BTreeSet::from(["id", "project", "user", "admin", "created_at", "expires_at", "revoked_at"]));
    let text = serde_json::to_string(list).unwrap();
    assert!(!text.contains(&token), "the list shows no token");
    assert!(!text.contains(&hex(&qcloud_service::auth::hash_token(&token))), "nor its hash");

    // Bad requests name what is wrong.
    for (body, what) in [
        (json!({"project": "lab"}), "user"),
        (json!({"project": "lab", "user": "x", "expires_in_seconds": 0}), "at least 1 second"),
        (json!({"project": "lab", "user": "x", "scopes": []}), "scopes"),
        (json!({"project": "", "user": "x"}), "project"),
    ] {
        let (s, v) = admin.post("/v1/tokens", body.clone()).await.unwrap();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(what), "{body}: {v}");
    }

    // Not for non-admins: 403 (as POST /v1/devices).
    for (method, path, body) in [
        (Method::GET, "/v1/tokens".to_string(), None),
        (Method::POST, "/v1/tokens".to_string(), Some(json!({"project": "lab", "user": "eve", "admin": true}))),
        (Method::DELETE, format!("/v1/tokens/{id}"), None),
    ] {
        let (s, v) = alice.call(method.clone(), &path, body).await.unwrap();
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "forbidden");
    }

    // Revoke: 204, again 204; unknown or malformed id 404; the token is refused.
    let (s, _) = admin.call(Method::DELETE, &format!("/v1/tokens/{id}"), None).await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = alice.get("/v1/devices").await.unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, _) = admin.call(Method::DELETE, &format!("/v1/tokens/{id}"), None).await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT, "revoking twice is harmless");
    for path in ["/v1/tokens/0190c3c0-0000-7000-8000-000000000000", "/v1/tokens/not-a-uuid"] {
        let (s, v) = admin.call(Method::DELETE, path, None).await.unwrap();
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
        assert_eq!(v["error"]["code"], "not_found");
    }
    let (_, list) = admin.get("/v1/tokens").await.unwrap();
    let revoked = list.as_array().unwrap().iter().find(|t| t["id"] == id.as_str()).unwrap();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Two replicas on one database, each with its token cache warm: a revocation through one is
/// refused by the other on the very next request (before: served from the other's cache for
/// 30 s).
#[tokio::test]
async fn a_revoked_token_is_refused_at_once_by_every_replica() {
    let db = TestDb::create().await.unwrap();
    let (a, b) = (Server::start(&db, &[]).await.unwrap(), Server::start(&db, &[]).await.unwrap());
    for round in 0..3 {
        let token = create_token(&db, "lab", &format!("user{round}")).unwrap();
        let id = token_id(&a.client(ADMIN_TOKEN), &format!("user{round}")).await;
        // Warm both caches.
        for server in [&a, &b] {
            for _ in 0..3 {
                assert_eq!(server.client(&token).get("/v1/devices").await.unwrap().0, StatusCode::OK);
            }
        }
        // Revoke through one replica (alternating), try the other at once.
        let (by, other) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (s, _) = by.client(ADMIN_TOKEN).call(Method::DELETE, &format!("/v1/tokens/{id}"), None).await.unwrap();
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, v) = other.client(&token).get("/v1/devices").await.unwrap();
        assert_eq!(s, StatusCode::UNAUTHORIZED, "round {round}: the other replica still took the revoked token: {v}");
        assert_eq!(v["error"]["code"], "unauthenticated");
        let (s, _) = by.client(&token).get("/v1/devices").await.unwrap();
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
}

async fn token_id(admin: &Client, user: &str) -> String {
    let (s, list) = admin.get("/v1/tokens").await.unwrap();
    assert_eq!(s, StatusCode::OK);
    list.as_array().unwrap().iter().find(|t| t["user"] == user).unwrap()["id"].as_str().unwrap().to_string()
}

/// A token that expires while cached is refused at its expiry (the cache checks the expiry on
/// every hit), on every replica.
#[tokio::test]
async fn an_expired_token_is_refused_even_when_cached() {
    let db = TestDb::create().await.unwrap();
    let (a, b) = (Server::start(&db, &[]).await.unwrap(), Server::start(&db, &[]).await.unwrap());
    let (s, made) = a
        .client(ADMIN_TOKEN)
        .post("/v1/tokens", json!({"project": "lab", "user": "brief", "expires_in_seconds": 1}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let token = made["token"].as_str().unwrap();
    let expires: chrono::DateTime<chrono::Utc> = made["expires_at"].as_str().unwrap().parse().unwrap();
    for server in [&a, &b] {
        let (s, v) = server.client(token).get("/v1/devices").await.unwrap();
        if chrono::Utc::now() < expires {
            assert_eq!(s, StatusCode::OK, "valid until {expires}: {v}");
        }
    }
    // Wait out the expiry (the caches keep entries for 30 s).
    let left = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(50)).await;
    for server in [&a, &b] {
        let (s, v) = server.client(token).get("/v1/devices").await.unwrap();
        assert_eq!(s, StatusCode::UNAUTHORIZED, "expired at {expires}: {v}");
    }
    let (_, list) = a.client(ADMIN_TOKEN).get("/v1/tokens").await.unwrap();
    assert!(list.as_array().unwrap().iter().any(|t| t["user"] == "brief" && t["revoked_at"].is_null()));
}

/// Starts `qcloud::launch` with no configured admin token (what a new user does), in the data
/// folder `data_dir`.
async fn launch_plain(db: &TestDb, data_dir: &std::path::Path) -> qcloud::Server {
    let dir = data_dir.display().to_string();
    let config = qcloud::Config::from_flags([
        "--database-url",
        db.url.as_str(),
        "--db-max-connections",
        "4",
        "--data-dir",
        dir.as_str(),
        "--no-seed",
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    qcloud::launch(config, listener, std::future::pending()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_makes_one_admin_token_and_later_starts_none() {
    let db = TestDb::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let first = launch_plain(&db, data.path()).await;
    let token = first.admin_token().expect("the first start makes an admin token").to_string();
    assert!(first.admin_token_is_new());
    // Written to the data folder, readable by its owner only.
    let file = first.admin_token_file().expect("written to the data folder").to_path_buf();
    assert_eq!(file, data.path().join(qcloud::ADMIN_TOKEN_FILE));
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // It is an admin token, stored as a hash only.
    let (s, v) = Client::new(&first.url(), &token).get("/v1/tokens").await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut conn = db.connect().await.unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens WHERE token_hash = $1")
        .bind(qcloud_service::auth::hash_token(&token).to_vec())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    first.shutdown().await.unwrap();
    std::fs::remove_file(&file).unwrap();

    // Later starts (two at once, and one more) make none.
    let (b, c) = tokio::join!(launch_plain(&db, data.path()), launch_plain(&db, data.path()));
    for s in [&b, &c] {
        assert_eq!(s.admin_token(), None, "a later start shows no token");
        assert!(s.admin_token_file().is_none());
    }
    assert!(!file.exists(), "and writes none");
    assert_eq!(count_admin_tokens(&db).await, 1);
    b.shutdown().await.unwrap();
    c.shutdown().await.unwrap();
    let d = launch_plain(&db, data.path()).await;
    assert_eq!(d.admin_token(), None);
    assert_eq!(count_admin_tokens(&db).await, 1);
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_a_new_database_make_one_admin_token() {
    let db = TestDb::create().await.unwrap();
    let (d1, d2, d3) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, c) =
        tokio::join!(launch_plain(&db, d1.path()), launch_plain(&db, d2.path()), launch_plain(&db, d3.path()));
    let made: Vec<&str> = [&a, &b, &c].iter().filter_map(|s| s.admin_token()).collect();
    assert_eq!(made.len(), 1, "exactly one replica made (and shows) the admin token");
    assert_eq!(count_admin_tokens(&db).await, 1);
    for s in [a, b, c] {
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_admin_token_is_registered_once_and_no_other_is_made() {
    let db = TestDb::create().await.unwrap();
    for _ in 0..2 {
        let server = Server::start(&db, &["--no-seed"]).await.unwrap();
        assert_eq!(server.client(ADMIN_TOKEN).get("/v1/tokens").await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(count_admin_tokens(&db).await, 1, "QCLOUD_ADMIN_TOKEN is the only admin token");
}

async fn get_raw(server: &Server, token: &str) -> reqwest::Response {
    reqwest::Client::new().get(format!("{}/v1/devices", server.url)).bearer_auth(token).send().await.unwrap()
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after_and_admins_are_not_limited() {
    let db = TestDb::create().await.unwrap();
    // One request per 100 s after a burst of 2: the third request within the test is over.
    let server = Server::start(&db, &["--rate-limit-per-second", "0.01", "--rate-limit-burst", "2"]).await.unwrap();
    let (alice, bob) = (create_token(&db, "lab", "alice").unwrap(), create_token(&db, "lab", "bob").unwrap());
    for _ in 0..2 {
        assert_eq!(get_raw(&server, &alice).await.status(), StatusCode::OK);
    }
    let r = get_raw(&server, &alice).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().expect("Retry-After in seconds");
    assert!((1..=100).contains(&retry), "Retry-After {retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert_eq!(v["error"]["details"]["retry_after_seconds"], retry, "{v}");
    assert_eq!(get_raw(&server, &bob).await.status(), StatusCode::OK, "each caller has its own budget");
    for _ in 0..10 {
        assert_eq!(get_raw(&server, ADMIN_TOKEN).await.status(), StatusCode::OK, "admins are not limited");
    }
    // A bad token is 401, not 429 (authentication comes first, and costs no one's budget).
    assert_eq!(get_raw(&server, "qc_no-such-token-at-all").await.status(), StatusCode::UNAUTHORIZED);
    drop(server);

    let server =
        Server::start(&db, &["--rate-limit-per-second", "0.01", "--rate-limit-burst", "1", "--rate-limit-admins"])
            .await
            .unwrap();
    assert_eq!(get_raw(&server, ADMIN_TOKEN).await.status(), StatusCode::OK);
    assert_eq!(get_raw(&server, ADMIN_TOKEN).await.status(), StatusCode::TOO_MANY_REQUESTS, "--rate-limit-admins");
}
