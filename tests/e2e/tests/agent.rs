//! The agent driver (issue 12) against a real server and real agents: the protocol's fencing and
//! device tokens driven by hand over HTTP, and the reference agent (`qcloud-agent`, a real
//! process) with each engine and with `--exec`: jobs and a dedicated session, SIGKILL mid-job
//! and restart, cancel within a heartbeat, a maximum-execution-time overrun, a device going
//! offline without its agent and back, two agents on one device. Nothing asserts on time beyond
//! generous limits.

use qcloud_e2e::{create_token, unique, Client, Server, TestDb, ADMIN_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);
const FLAGS: &[&str] = &["--no-seed", "--lease-ms", "1200", "--tick-ms", "100", "--agent-offline-after", "2"];

const BELL: &str =
    "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n";

fn agent_bin() -> PathBuf {
    if let Ok(p) = std::env::var("QCLOUD_AGENT_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    target.join("debug").join("qcloud-agent")
}

struct Env {
    _db: TestDb,
    server: Server,
    admin: Client,
    user: Client,
}

async fn env(extra: &[&str]) -> Env {
    env_with(FLAGS, extra).await
}

async fn env_with(base: &[&str], extra: &[&str]) -> Env {
    let db = TestDb::create().await.unwrap();
    let mut flags: Vec<&str> = base.to_vec();
    flags.extend_from_slice(extra);
    let server = Server::start(&db, &flags).await.unwrap();
    let admin = server.client(ADMIN_TOKEN);
    let token = create_token(&db, "lab", "alice").unwrap();
    let user = server.client(&token);
    Env { _db: db, server, admin, user }
}

/// An agent device and a device token for it.
async fn agent_device(e: &Env, kind: &str, qubits: u32, config: Value) -> (String, String) {
    let name = unique("qpu");
    let (s, v) = e
        .admin
        .post(
            "/v1/devices",
            json!({"name": name, "kind": kind, "driver": "agent", "num_qubits": qubits, "config": config}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = e.admin.post(&format!("/v1/devices/{name}/tokens"), json!({})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (name, v["token"].as_str().unwrap().to_string())
}

async fn submit(c: &Client, body: Value) -> String {
    let (s, v) = c.post("/v1/jobs", body).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// A job's row fields, polled until `pred` holds.
async fn wait_job_until(c: &Client, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let (_, j) = c.get(&format!("/v1/jobs/{id}")).await.unwrap();
        if pred(&j) {
            return j;
        }
        assert!(t0.elapsed() < LIMIT, "job {id} never reached the expected state: {j}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn device_status(c: &Client, name: &str) -> String {
    let (s, v) = c.get(&format!("/v1/devices/{name}")).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    v["status"].as_str().unwrap().to_string()
}

async fn wait_status(c: &Client, name: &str, want: &str) {
    let t0 = Instant::now();
    while device_status(c, name).await != want {
        assert!(t0.elapsed() < LIMIT, "device {name} never became {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A reference agent process.
struct Agent {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(server: &str, device: &str, token: &str, backend: &[&str]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(agent_bin())
            .args(["--server", server, "--device", device, "--wait", "5"])
            .args(backend)
            .env("QCLOUD_AGENT_TOKEN", token)
            .env("QCLOUD_AGENT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {}: {e} (build it: cargo build -p qcloud-agent)", agent_bin().display())
            });
        Agent { child, log, _dir: dir }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn agent_client(e: &Env, token: &str) -> Client {
    e.server.client(token)
}

/// gzip `body` at `level`.
fn gzip(body: &[u8], level: flate2::Compression) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), level);
    std::io::Write::write_all(&mut gz, body).unwrap();
    gz.finish().unwrap()
}

/// `POST /v1/agent/jobs/{job}/complete` with a raw body labelled `Content-Encoding: gzip` (whether
/// or not it is).
async fn complete_labelled_gzip(e: &Env, token: &str, job: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/agent/jobs/{job}/complete", e.server.url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn device_tokens_are_scoped_to_the_agent_routes_of_one_device() {
    let e = env(&[]).await;
    let (dev, token) = agent_device(&e, "gate", 2, json!({})).await;
    let (other, other_token) = agent_device(&e, "gate", 2, json!({})).await;
    let agent = agent_client(&e, &token);

    // A user token cannot use the agent routes; a device token cannot use user or admin routes.
    let (s, v) = e.user.post("/v1/agent/claim", json!({"wait_seconds": 0})).await.unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = e.admin.get("/v1/agent/device").await.unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    for path in ["/v1/jobs", "/v1/devices", &format!("/v1/devices/{dev}"), "/v1/sessions", "/v1/tokens"] {
        let (s, v) = agent.get(path).await.unwrap();
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("agent routes"), "{v}");
    }
    let (s, _) = agent.post("/v1/jobs", json!({"device": dev, "program": "x", "payload": {}})).await.unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A device token is only for agent devices.
    let (s, _) = e
        .admin
        .post("/v1/devices", json!({"name": unique("sv"), "driver": "statevector", "num_qubits": 2}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED);

    // The agent sees its own device only.
    let (s, v) = agent.get("/v1/agent/device").await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["name"], dev.as_str());

    // A job on the other device: this agent can neither claim nor touch it.
    let (s, v) = agent_client(&e, &other_token)
        .call(Method::PUT, "/v1/agent/device", Some(json!({"status": "online"})))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    let job = submit(&e.user, json!({"device": other, "program": "anything", "payload": {"x": 1}})).await;
    wait_job_until(&e.user, &job, |j| j["status"] == "running").await;
    let (s, _) = agent.post("/v1/agent/claim", json!({"wait_seconds": 0})).await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT, "nothing for this device");
    let (s, v) =
        agent.post(&format!("/v1/agent/jobs/{job}/complete"), json!({"epoch": 1, "result": {}})).await.unwrap();
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = agent.post(&format!("/v1/agent/jobs/{job}/heartbeat"), json!({"epoch": 1})).await.unwrap();
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    // Revoked: refused at once.
    let (_, tokens) = e.admin.get(&format!("/v1/devices/{dev}/tokens")).await.unwrap();
    let id = tokens[0]["id"].as_str().unwrap().to_string();
    let (s, _) = e.admin.call(Method::DELETE, &format!("/v1/tokens/{id}"), None).await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = agent.get("/v1/agent/device").await.unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Bad input is a 4xx with a reason.
    let other_agent = agent_client(&e, &other_token);
    let (s, v) = other_agent.post("/v1/agent/claim", json!({"wait_seconds": 99})).await.unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = other_agent.call(Method::PUT, "/v1/agent/device", Some(json!({"status": "broken"}))).await.unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let bad_target = json!({"status": "online", "target": {"num_qubits": 2, "coupling_map": [[0, 5]], "operations": [{"name": "x", "num_qubits": 1}]}});
    let (s, v) = other_agent.call(Method::PUT, "/v1/agent/device", Some(bad_target)).await.unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn the_protocol_fences_by_epoch_and_a_stale_agent_is_refused() {
    let e = env(&[]).await;
    let (dev, token) = agent_device(&e, "gate", 2, json!({})).await;
    let agent = agent_client(&e, &token);
    let target = json!({"num_qubits": 2, "coupling_map": [[0, 1], [1, 0]],
        "operations": [{"name": "rz", "num_qubits": 1, "duration": 0.0, "error": 0.0},
                       {"name": "sx", "num_qubits": 1, "duration": 3.5e-8, "error": 0.0003},
                       {"name": "cz", "num_qubits": 2, "duration": 6.8e-8, "error": 0.006},
                       {"name": "measure", "num_qubits": 1}]});
    let (s, v) = agent
        .call(
            Method::PUT,
            "/v1/agent/device",
            Some(json!({"status": "online", "target": target, "calibration": {"date": "today"}})),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "online");

    // The report feeds the IBM facade's configuration.
    let (_, d) = e.user.get(&format!("/v1/devices/{dev}")).await.unwrap();
    assert_eq!(d["config"]["target"]["basis_gates"], json!(["rz", "sx", "cz"]), "{d}");
    assert_eq!(d["agent"]["connected"], true);
    assert_eq!(d["agent"]["calibration"]["date"], "today");

    let job =
        submit(&e.user, json!({"device": dev, "program": "sampler", "payload": {"pubs": [[BELL]]}, "shots": 10})).await;
    let (s, c) = agent.post("/v1/agent/claim", json!({"wait_seconds": 10})).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["job"]["id"], job.as_str());
    assert_eq!(c["job"]["shots"], 10);
    let epoch = c["lease"]["epoch"].as_i64().unwrap();
    let (s, h) = agent.post(&format!("/v1/agent/jobs/{job}/heartbeat"), json!({"epoch": epoch})).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["stop"], Value::Null);
    let (s, _) = agent
        .post(
            &format!("/v1/agent/jobs/{job}/progress"),
            json!({"epoch": epoch, "message": "calibrating", "fraction": 0.25}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, j) = e.user.get(&format!("/v1/jobs/{job}")).await.unwrap();
    assert_eq!(j["progress"], json!({"message": "calibrating", "fraction": 0.25}));
    let (s, _) =
        agent.post(&format!("/v1/agent/jobs/{job}/progress"), json!({"epoch": epoch, "fraction": 1.5})).await.unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Stop heartbeating: the lease runs out, the leader queues the job again, and it is
    // claimed once more (epoch + 1, attempt 2). The stale agent's answer changes nothing.
    let t0 = Instant::now();
    let c2 = loop {
        let (s, c2) = agent.post("/v1/agent/claim", json!({"wait_seconds": 5})).await.unwrap();
        if s == StatusCode::OK {
            break c2;
        }
        assert!(t0.elapsed() < LIMIT, "the job was never offered again");
    };
    assert_eq!(c2["job"]["id"], job.as_str());
    assert_eq!(c2["job"]["attempt"], 2);
    let epoch2 = c2["lease"]["epoch"].as_i64().unwrap();
    assert!(epoch2 > epoch);
    let (s, v) = agent
        .post(&format!("/v1/agent/jobs/{job}/complete"), json!({"epoch": epoch, "result": {"stale": true}}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "lease_lost");
    let (_, j) = e.user.get(&format!("/v1/jobs/{job}")).await.unwrap();
    assert_eq!(j["status"], "running");
    let (s, v) = agent
        .post(
            &format!("/v1/agent/jobs/{job}/complete"),
            json!({"epoch": epoch2, "result": {"fresh": true}, "log": "ok\n"}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");
    let (s, _) = agent
        .post(&format!("/v1/agent/jobs/{job}/complete"), json!({"epoch": epoch2, "result": {"twice": true}}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CONFLICT, "never completed twice");
    let (_, r) = e.user.get(&format!("/v1/jobs/{job}/result")).await.unwrap();
    assert_eq!(r["result"], json!({"fresh": true}));
    let (_, j) = e.user.get(&format!("/v1/jobs/{job}")).await.unwrap();
    assert_eq!(j["attempt"], 2);
    assert_eq!(j["log"], "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_are_accepted_gzip_compressed() {
    // Reading 20 MB of JSON in a debug build on a loaded machine can outlast a short lease.
    let e =
        env_with(&["--no-seed", "--lease-ms", "15000", "--tick-ms", "100", "--agent-offline-after", "30"], &[]).await;
    let (dev, token) = agent_device(&e, "gate", 2, json!({})).await;
    let agent = agent_client(&e, &token);
    agent.call(Method::PUT, "/v1/agent/device", Some(json!({"status": "online"}))).await.unwrap();
    let job = submit(&e.user, json!({"device": dev, "program": "raw", "payload": {}})).await;
    let (_, c) = agent.post("/v1/agent/claim", json!({"wait_seconds": 10})).await.unwrap();
    let epoch = c["lease"]["epoch"].as_i64().unwrap();
    // The upload may outlast the lease on a loaded machine: keep it alive meanwhile.
    let beat = {
        let (agent, job) = (agent.clone(), job.clone());
        tokio::spawn(async move {
            loop {
                let _ = agent.post(&format!("/v1/agent/jobs/{job}/heartbeat"), json!({"epoch": epoch})).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    // 20 MB of JSON, above the 16 MiB request limit of the other routes.
    let big = "x".repeat(20 << 20);
    let body = serde_json::to_vec(&json!({"epoch": epoch, "result": {"blob": big}})).unwrap();
    let resp = complete_labelled_gzip(&e, &token, &job, gzip(&body, flate2::Compression::fast())).await;
    beat.abort();
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
    let (_, r) = e.user.get(&format!("/v1/jobs/{job}/result")).await.unwrap();
    assert_eq!(r["result"]["blob"].as_str().map(str::len), Some(20 << 20));
}

#[tokio::test]
async fn a_result_over_the_configured_maximum_is_413_after_decompression_and_changes_nothing() {
    let e = env(&["--agent-max-result-bytes", "1048576"]).await;
    let (dev, token) = agent_device(&e, "gate", 2, json!({})).await;
    let agent = agent_client(&e, &token);
    agent.call(Method::PUT, "/v1/agent/device", Some(json!({"status": "online"}))).await.unwrap();
    let job = submit(&e.user, json!({"device": dev, "program": "raw", "payload": {}})).await;
    let (_, c) = agent.post("/v1/agent/claim", json!({"wait_seconds": 10})).await.unwrap();
    let epoch = c["lease"]["epoch"].as_i64().unwrap();
    // 2 MiB of JSON that gzips to a few KiB: the limit counts what it decompresses to.
    let body = serde_json::to_vec(&json!({"epoch": epoch, "result": {"blob": "0".repeat(2 << 20)}})).unwrap();
    let zipped = gzip(&body, flate2::Compression::best());
    assert!(zipped.len() < 64 << 10);
    let resp = complete_labelled_gzip(&e, &token, &job, zipped).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
    let (_, j) = e.user.get(&format!("/v1/jobs/{job}")).await.unwrap();
    assert_eq!(j["status"], "running", "{j}");
    // A body that is not gzip although it says so: a 4xx, not a 500.
    let not_gzip = json!({"epoch": epoch, "result": {"not": "gzip"}}).to_string().into_bytes();
    let resp = complete_labelled_gzip(&e, &token, &job, not_gzip).await;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let (_, j) = e.user.get(&format!("/v1/jobs/{job}")).await.unwrap();
    assert_eq!(j["status"], "running", "{j}");
    // Under the limit it is taken.
    let (s, v) = agent
        .post(&format!("/v1/agent/jobs/{job}/complete"), json!({"epoch": epoch, "result": {"small": true}}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_device_goes_offline_without_its_agent_and_comes_back_with_it() {
    let e = env(&[]).await;
    let (dev, token) = agent_device(&e, "gate", 2, json!({})).await;
    let agent = agent_client(&e, &token);
    assert_eq!(device_status(&e.user, &dev).await, "offline", "no agent yet");
    agent.call(Method::PUT, "/v1/agent/device", Some(json!({"status": "online"}))).await.unwrap();
    assert_eq!(device_status(&e.user, &dev).await, "online");
    // Not heard from for agent_offline_after (2 s): offline, and queued work waits.
    wait_status(&e.user, &dev, "offline").await;
    let job = submit(&e.user, json!({"device": dev, "program": "raw", "payload": {}})).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, j) = e.user.get(&format!("/v1/jobs/{job}")).await.unwrap();
    assert_eq!(j["status"], "queued", "no assignment while the agent is gone: {j}");
    // The agent calls again: online, and the job starts and is claimed.
    let (s, c) = agent.post("/v1/agent/claim", json!({"wait_seconds": 10})).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["job"]["id"], job.as_str());
    assert_eq!(device_status(&e.user, &dev).await, "online");
    // Paused for calibration: no new assignment; the running job finishes.
    agent
        .call(Method::PUT, "/v1/agent/device", Some(json!({"status": "paused", "message": "calibrating"})))
        .await
        .unwrap();
    assert_eq!(device_status(&e.user, &dev).await, "paused");
    let next = submit(&e.user, json!({"device": dev, "program": "raw", "payload": {}})).await;
    let epoch = c["lease"]["epoch"].as_i64().unwrap();
    let (s, _) =
        agent.post(&format!("/v1/agent/jobs/{job}/complete"), json!({"epoch": epoch, "result": {}})).await.unwrap();
    assert_eq!(s, StatusCode::OK);
    let (s, _) = agent.post("/v1/agent/claim", json!({"wait_seconds": 1})).await.unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT, "paused: nothing assigned");
    agent.call(Method::PUT, "/v1/agent/device", Some(json!({"status": "online"}))).await.unwrap();
    let (s, c) = agent.post("/v1/agent/claim", json!({"wait_seconds": 10})).await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c["job"]["id"], next.as_str());
}

#[tokio::test]
async fn the_statevector_engine_runs_jobs_and_a_dedicated_session() {
    let e = env(&[]).await;
    let (dev, token) = agent_device(&e, "gate", 4, json!({"programs": ["sampler", "estimator"]})).await;
    let _agent = Agent::start(&e.server.url, &dev, &token, &["--engine", "statevector"]);
    wait_status(&e.user, &dev, "online").await;
    // The device lists programs: others are refused at submit.
    let (s, v) = e.user.post("/v1/jobs", json!({"device": dev, "program": "pulser", "payload": {}})).await.unwrap();
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (done, result) = e
        .user
        .run_job(
            json!({"device": dev, "program": "sampler", "payload": {"pubs": [[BELL, null, 200]], "seed": 3}}),
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    let counts = result["pub_results"][0]["data"]["c"]["counts"].as_object().unwrap().clone();
    assert!(counts.keys().all(|k| k == "00" || k == "11"), "{counts:?}");
    assert_eq!(counts.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 200);

    let (s, sess) = e.user.post("/v1/sessions", json!({"device": dev, "mode": "dedicated"})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{sess}");
    let sid = sess["id"].as_str().unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            submit(&e.user, json!({"session_id": sid, "program": "sampler", "payload": {"pubs": [[BELL, null, 50]]}}))
                .await,
        );
    }
    let est = json!({"pubs": [["OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[1];\nx q[0];\n", "Z"]]});
    ids.push(submit(&e.user, json!({"session_id": sid, "program": "estimator", "payload": est})).await);
    for id in &ids {
        let j = e.user.wait_job(id, LIMIT).await.unwrap();
        assert_eq!(j["status"], "completed", "{j}");
    }
    let (_, r) = e.user.get(&format!("/v1/jobs/{}/result", ids[3])).await.unwrap();
    assert_eq!(r["result"]["pub_results"][0]["evs"], json!(-1.0), "{r}");
    let (_, sv) = e.user.get(&format!("/v1/sessions/{sid}")).await.unwrap();
    assert_ne!(sv["state"], "closed", "the session keeps the device: {sv}");
    // A program the engine does not run fails with a clear reason (not refused: the agent
    // device lists no programs here).
    let (dev2, token2) = agent_device(&e, "gate", 2, json!({})).await;
    let _agent2 = Agent::start(&e.server.url, &dev2, &token2, &["--engine", "statevector"]);
    wait_status(&e.user, &dev2, "online").await;
    let (done, _) = e.user.run_job(json!({"device": dev2, "program": "pulser", "payload": {}}), LIMIT).await.unwrap();
    assert_eq!(done["status"], "failed");
    assert!(done["reason"].as_str().unwrap().contains("'sampler'"), "{done}");
}

#[tokio::test]
async fn the_analog_engine_runs_pulser_sequences_and_serves_its_spec() {
    let e = env(&[]).await;
    let (dev, token) = agent_device(&e, "analog", 10, json!({})).await;
    let _agent = Agent::start(&e.server.url, &dev, &token, &["--engine", "analog"]);
    wait_status(&e.user, &dev, "online").await;
    let (_, d) = e.user.get(&format!("/v1/devices/{dev}")).await.unwrap();
    assert!(d["config"]["pulser_device"].is_object(), "the reported Pulser spec feeds the views: {d}");
    let path = format!(
        "{}/../../crates/qcloud-analog/tests/fixtures/afm_chain5_interpolated.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let seq: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (done, result) = e
        .user
        .run_job(
            json!({"device": dev, "program": "pulser", "payload": {"sequence": seq, "runs": 50, "seed": 1}}),
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    let total: u64 = result["counter"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 50, "{result}");
}

/// A `--exec` program in shell: records its start and a SIGTERM, sleeps as asked, echoes a result.
fn exec_script(dir: &std::path::Path) -> String {
    let script = dir.join("job.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\ninput=$(cat)\nid=$(echo \"$input\" | sed 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/')\n\
             echo \"$id\" >> {dir}/started\ntrap 'echo \"$id\" >> {dir}/terminated; exit 143' TERM\n\
             secs=$(echo \"$input\" | sed -n 's/.*\"sleep\":\\([0-9.]*\\).*/\\1/p')\n\
             if echo \"$input\" | grep -q '\"fail\":true'; then echo 'the fridge is warm' >&2; exit 3; fi\n\
             echo \"working on $id\" >&2\nsleep ${{secs:-0}} & wait $!\necho \"$id\" >> {dir}/finished\n\
             echo '{{\"ok\": true}}'\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    format!("sh {}", script.display())
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn exec_runs_every_program_fails_with_stderr_and_is_stopped_on_cancel_and_overrun() {
    let e = env(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = exec_script(dir.path());
    let (dev, token) = agent_device(&e, "gate", 2, json!({})).await;
    let agent = Agent::start(&e.server.url, &dev, &token, &["--exec", &cmd]);
    wait_status(&e.user, &dev, "online").await;

    let (done, result) = e
        .user
        .run_job(json!({"device": dev, "program": "my_calibration", "payload": {"sleep": 0}}), LIMIT)
        .await
        .unwrap();
    assert_eq!(done["status"], "completed", "{done} {}", agent.log_text());
    assert_eq!(result, json!({"ok": true}));
    assert!(done["log"].as_str().unwrap().contains("working on"), "stderr is the log: {done}");

    let (done, _) =
        e.user.run_job(json!({"device": dev, "program": "x", "payload": {"fail": true}}), LIMIT).await.unwrap();
    assert_eq!(done["status"], "failed");
    assert_eq!(done["reason"], "the fridge is warm");
    assert_eq!(done["reason_code"], "agent_failed");

    // Cancel reaches the running program (SIGTERM) within a heartbeat (400 ms here).
    let id = submit(&e.user, json!({"device": dev, "program": "x", "payload": {"sleep": 30}})).await;
    let t0 = Instant::now();
    while !lines(&dir.path().join("started")).contains(&id) {
        assert!(t0.elapsed() < LIMIT, "never started: {}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, _) = e.user.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await.unwrap();
    assert_eq!(s, StatusCode::OK);
    let done = e.user.wait_job(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(done["status"], "canceled", "{done}");
    assert!(lines(&dir.path().join("terminated")).contains(&id), "the program got SIGTERM: {}", agent.log_text());

    // A maximum-execution-time overrun is stopped and fails the job.
    let id = submit(&e.user, json!({"device": dev, "program": "x", "payload": {"sleep": 30}, "max_execution_time": 1}))
        .await;
    let done = e.user.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["reason_code"], "max_execution_time");
    let t0 = Instant::now();
    while !lines(&dir.path().join("terminated")).contains(&id) {
        assert!(t0.elapsed() < Duration::from_secs(20), "the overrun program was not stopped: {}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!lines(&dir.path().join("finished")).contains(&id));
}

#[tokio::test]
async fn a_jobs_maximum_execution_time_counts_from_the_agents_claim_not_from_its_start() {
    let e = env(&[]).await;
    let (dev, token) = agent_device(&e, "gate", 2, json!({})).await;
    let agent = agent_client(&e, &token);
    agent.call(Method::PUT, "/v1/agent/device", Some(json!({"status": "online"}))).await.unwrap();
    // Started while the agent still counts as connected, then no agent calls for more than the
    // job's maximum (2 s) after it started: the device goes offline (agent_offline_after: 2 s).
    let job = submit(&e.user, json!({"device": dev, "program": "raw", "payload": {}, "max_execution_time": 2})).await;
    wait_job_until(&e.user, &job, |j| j["status"] == "running").await;
    let started = Instant::now();
    wait_status(&e.user, &dev, "offline").await;
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(started.elapsed())).await;
    let (_, j) = e.user.get(&format!("/v1/jobs/{job}")).await.unwrap();
    assert_eq!(j["status"], "running", "not timed out before any agent had it: {j}");
    // The agent returns and claims it: its time starts now.
    let (s, c) = agent.post("/v1/agent/claim", json!({"wait_seconds": 10})).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["job"]["id"], job.as_str());
    let epoch = c["lease"]["epoch"].as_i64().unwrap();
    let (s, h) = agent.post(&format!("/v1/agent/jobs/{job}/heartbeat"), json!({"epoch": epoch})).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["stop"], Value::Null, "{h}");
    let (s, v) =
        agent.post(&format!("/v1/agent/jobs/{job}/complete"), json!({"epoch": epoch, "result": {}})).await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");
}

#[tokio::test]
async fn an_agent_killed_mid_job_loses_the_job_which_runs_again_once_after_a_restart() {
    let e = env(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = exec_script(dir.path());
    let (dev, token) = agent_device(&e, "gate", 2, json!({})).await;
    let (s, sess) = e.user.post("/v1/sessions", json!({"device": dev, "mode": "dedicated"})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{sess}");
    let sid = sess["id"].as_str().unwrap().to_string();
    let mut agent = Agent::start(&e.server.url, &dev, &token, &["--exec", &cmd]);
    let id = submit(&e.user, json!({"session_id": sid, "program": "x", "payload": {"sleep": 3}})).await;
    let t0 = Instant::now();
    while !lines(&dir.path().join("started")).contains(&id) {
        assert!(t0.elapsed() < LIMIT, "never started: {}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.kill(); // SIGKILL
                  // The lease runs out; the leader queues the job again (and may start it again at once,
                  // unowned, while the device still counts as connected); the session keeps its hold.
    let mut conn = e._db.connect().await.unwrap();
    let t0 = Instant::now();
    loop {
        let (status, owner): (String, Option<uuid::Uuid>) =
            sqlx::query_as("SELECT status, lease_owner FROM jobs WHERE id = $1::uuid")
                .bind(&id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_ne!(status, "completed");
        if owner.is_none() {
            break;
        }
        assert!(t0.elapsed() < LIMIT, "the dead agent's lease never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, sv) = e.user.get(&format!("/v1/sessions/{sid}")).await.unwrap();
    assert!(sv["state"] == "active" || sv["state"] == "pending", "{sv}");
    let _agent = Agent::start(&e.server.url, &dev, &token, &["--exec", &cmd]);
    let done = e.user.wait_job(&id, LIMIT).await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempt"], 2, "run again once: {done}");
    let started = lines(&dir.path().join("started")).iter().filter(|l| **l == id).count();
    assert_eq!(started, 2);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM job_results WHERE job_id = $1::uuid")
        .bind(&id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1, "completed once");
    let (_, sv) = e.user.get(&format!("/v1/sessions/{sid}")).await.unwrap();
    assert_ne!(sv["state"], "closed", "{sv}");
}

#[tokio::test]
async fn two_agents_on_one_device_never_run_two_jobs_at_once() {
    let e = env(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let cmd = exec_script(dir.path());
    let (dev, token) = agent_device(&e, "gate", 2, json!({})).await;
    let a = Agent::start(&e.server.url, &dev, &token, &["--exec", &cmd]);
    let b = Agent::start(&e.server.url, &dev, &token, &["--exec", &cmd]);
    wait_status(&e.user, &dev, "online").await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(submit(&e.user, json!({"device": dev, "program": "x", "payload": {"sleep": 0.1}})).await);
    }
    for id in &ids {
        let j = e.user.wait_job(id, LIMIT).await.unwrap();
        assert_eq!(j["status"], "completed", "{j}");
    }
    let mut conn = e._db.connect().await.unwrap();
    let rows: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT claimed_at, finished_at FROM jobs WHERE device = $1 ORDER BY claimed_at")
            .bind(&dev)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows.len(), 10);
    for w in rows.windows(2) {
        assert!(w[0].1 <= w[1].0, "two jobs overlapped on the device: {w:?}");
    }
    // Both agents took part (not asserted: which one wins a claim is up to the database).
    let served = [a.log_text(), b.log_text()].iter().filter(|l| l.contains("finished")).count();
    println!("agents that ran jobs: {served} of 2");
}

#[tokio::test]
async fn the_agent_reaches_an_https_server_trusting_its_private_ca_and_refuses_it_otherwise() {
    let e = env(&[]).await;
    let upstream = e.server.url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let (port, ca_pem) = qcloud_e2e::tls_terminator(upstream).await;
    let https = format!("https://localhost:{port}");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let (dev, token) = agent_device(&e, "gate", 2, json!({})).await;

    // Without the CA: the agent stops at once with a certificate error (it does not retry).
    let mut untrusting = Agent::start(&https, &dev, &token, &["--engine", "statevector"]);
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = untrusting.child.try_wait().unwrap() {
            break status;
        }
        assert!(t0.elapsed() < LIMIT, "the agent kept going without trusting the server: {}", untrusting.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = untrusting.log_text();
    assert!(!status.success(), "{log}");
    assert!(log.contains("TLS certificate was refused") && log.contains("--ca-cert"), "{log}");
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert_eq!(device_status(&e.user, &dev).await, "offline", "it never got through");

    // With --ca-cert: it reports the device and runs a job over https.
    let agent =
        Agent::start(&https, &dev, &token, &["--engine", "statevector", "--ca-cert", ca_file.to_str().unwrap()]);
    wait_status(&e.user, &dev, "online").await;
    let (done, result) = e
        .user
        .run_job(json!({"device": dev, "program": "sampler", "payload": {"pubs": [[BELL, null, 100]]}}), LIMIT)
        .await
        .unwrap();
    assert_eq!(done["status"], "completed", "{done} {}", agent.log_text());
    let counts = result["pub_results"][0]["data"]["c"]["counts"].as_object().unwrap().clone();
    assert!(counts.keys().all(|k| k == "00" || k == "11"), "{counts:?}");
    assert_eq!(counts.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 100);

    // A file with no certificate in it is refused at start, with the file named.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let mut bad =
        Agent::start(&https, &dev, &token, &["--engine", "statevector", "--ca-cert", empty.to_str().unwrap()]);
    let status = bad.child.wait().unwrap();
    assert!(!status.success());
    assert!(bad.log_text().contains("empty.pem"), "{}", bad.log_text());
}
