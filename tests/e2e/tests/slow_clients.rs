//! Slow and idle clients (issue 7): a connection that sends half a request head, sits idle on
//! keep-alive, or stops sending its body is cut, and the connection limit holds new connections
//! back until one closes. Over raw TCP, against a server started with short limits.
//!
//! The limits are short (0.5–3 s) and every wait below is bounded generously: the assertions are
//! about what happens (closed or answered), not about how fast.

use qcloud_e2e::{Target, ADMIN_TOKEN};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for something that must happen.
const PATIENCE: Duration = Duration::from_secs(20);

async fn server(extra: &[&str]) -> Target {
    let t = Target::from_env_or_start(extra).await.expect("a qcloud server");
    assert!(!t.is_external(), "these tests need the harness's own server (they set its limits)");
    t
}

async fn connect(t: &Target) -> TcpStream {
    let addr = t.url.trim_start_matches("http://").trim_end_matches('/').to_string();
    TcpStream::connect(addr).await.expect("connect")
}

/// Read until the server closes the connection; returns what it sent. Panics after PATIENCE.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let t0 = Instant::now();
    loop {
        let left = PATIENCE.saturating_sub(t0.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open for {PATIENCE:?}; it sent {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// Read one response (head and a Content-Length body) from a keep-alive connection.
async fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf)).await.expect("a response in time").expect("read");
        assert!(n > 0, "connection closed before a whole response: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>()))
                .and_then(Result::ok)
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: qcloud\r\n\r\n";

#[tokio::test]
async fn half_a_request_line_is_cut_after_the_header_read_timeout() {
    let t = server(&["--header-read-timeout", "0.5", "--idle-timeout", "30"]).await;
    let mut s = connect(&t).await;
    s.write_all(b"GET /healthz HT").await.unwrap();
    let t0 = Instant::now();
    let got = read_until_closed(&mut s).await;
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "cut long before the 30 s idle timeout, by the 0.5 s header timeout ({:?})",
        t0.elapsed()
    );
    // hyper answers a header timeout with nothing or a 408; never a 2xx.
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains(" 200 "), "{text}");
    // A connection that sends nothing at all is cut too.
    let mut silent = connect(&t).await;
    read_until_closed(&mut silent).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_cut_after_the_idle_timeout_not_before_its_request() {
    let t = server(&["--header-read-timeout", "30", "--idle-timeout", "1"]).await;
    let mut s = connect(&t).await;
    s.write_all(HEALTH).await.unwrap();
    let first = read_response(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let t0 = Instant::now();
    read_until_closed(&mut s).await;
    assert!(t0.elapsed() < Duration::from_secs(15), "cut by the 1 s idle timeout, not the 30 s header timeout");

    // A connection in use is not idle: back-to-back requests on one connection all get answers.
    let mut busy = connect(&t).await;
    for _ in 0..5 {
        busy.write_all(HEALTH).await.unwrap();
        let r = read_response(&mut busy).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408() {
    let t = server(&["--body-timeout", "0.5"]).await;
    let mut s = connect(&t).await;
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: qcloud\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"device\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let got = read_response(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"request_timeout\""), "a JSON error body: {got}");
}

#[tokio::test]
async fn the_connection_limit_holds_new_connections_until_one_closes() {
    let t = server(&["--max-connections", "2", "--idle-timeout", "60", "--header-read-timeout", "60"]).await;
    // Two keep-alive connections take both slots.
    let mut a = connect(&t).await;
    a.write_all(HEALTH).await.unwrap();
    read_response(&mut a).await;
    let mut b = connect(&t).await;
    b.write_all(HEALTH).await.unwrap();
    read_response(&mut b).await;
    // A third one is accepted by the kernel but not served...
    let mut c = connect(&t).await;
    c.write_all(HEALTH).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), c.read(&mut buf)).await;
    assert!(early.is_err(), "the third connection was served while two were open: {early:?}");
    // ...until one of the others closes.
    drop(a);
    let r = read_response(&mut c).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    drop(b);
}
