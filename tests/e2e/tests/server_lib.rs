//! The server as a library and its start-up data: `qcloud::launch` in-process with a devices
//! file (seeded once, never overwritten; a bad file stops the start with the device and field
//! named), the built-in default devices, a graceful in-process shutdown, and the real binary
//! started with `--config` and a devices file named in it.

use qcloud_e2e::{Process, Server, TestDb, ADMIN_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

const TWO_DEVICES: &str = r#"
[[device]]
name = "file_sim"
kind = "gate"
driver = "statevector"
num_qubits = 12
timing = { setup_ms = 5, per_shot_ms = 0.25 }

[[device]]
name = "file_noop"
kind = "gate"
driver = "noop"
num_qubits = 3
status = "paused"
config = { note = "from the file" }
"#;

fn config(db: &TestDb, extra: &[&str]) -> qcloud::Config {
    let mut flags = vec!["--database-url", &db.url, "--admin-token", ADMIN_TOKEN, "--db-max-connections", "4"];
    flags.extend_from_slice(extra);
    qcloud::Config::from_flags(flags).unwrap()
}

/// The devices a server lists, by name.
async fn devices(server: &Server) -> BTreeMap<String, Value> {
    let (s, v) = server.client(ADMIN_TOKEN).get("/v1/devices").await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    let list = v.as_array().cloned().or_else(|| v["devices"].as_array().cloned()).expect("a device list");
    list.into_iter().map(|d| (d["name"].as_str().unwrap().to_string(), d)).collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[tokio::test]
async fn devices_file_is_seeded_once_and_never_overwritten() {
    let db = TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "devices.toml", TWO_DEVICES);
    let server = Server::launch(config(&db, &["--devices", &file])).await.unwrap();
    let seen = devices(&server).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["file_noop", "file_sim"], "the file's devices, no defaults");
    let sim = &seen["file_sim"];
    assert_eq!(
        (sim["driver"].as_str(), sim["num_qubits"].as_i64(), sim["status"].as_str()),
        (Some("statevector"), Some(12), Some("online"))
    );
    assert_eq!(sim["timing"], json!({"setup_ms": 5.0, "per_shot_ms": 0.25}));
    let noop = &seen["file_noop"];
    assert_eq!(noop["status"], "paused");
    assert_eq!(noop["config"], json!({"note": "from the file"}));

    // An admin changes a seeded device; a restart with the same file leaves it as it is.
    let (s, v) = server
        .client(ADMIN_TOKEN)
        .call(Method::PATCH, "/v1/devices/file_noop", Some(json!({"status": "online", "timing": {"setup_ms": 1}})))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    drop(server);
    let more = format!(
        "{TWO_DEVICES}\n[[device]]\nname = \"file_third\"\nkind = \"analog\"\ndriver = \"noop\"\nnum_qubits = 1\n"
    );
    let file = write(dir.path(), "devices.toml", &more);
    let server = Server::launch(config(&db, &["--devices", &file])).await.unwrap();
    let again = devices(&server).await;
    assert_eq!(again.keys().collect::<Vec<_>>(), ["file_noop", "file_sim", "file_third"], "one new device, no copies");
    assert_eq!(again["file_noop"]["status"], "online", "the admin's change is kept");
    assert_eq!(again["file_noop"]["timing"]["setup_ms"], 1.0);
    assert_eq!(again["file_sim"], seen["file_sim"], "an untouched device is untouched");
    assert_eq!(again["file_third"]["kind"], "analog");
}

#[tokio::test]
async fn a_bad_devices_file_stops_the_start() {
    let db = TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = TWO_DEVICES.replace("driver = \"noop\"", "driver = \"warp\"");
    let file = write(dir.path(), "devices.toml", &bad);
    let e = match Server::launch(config(&db, &["--devices", &file])).await {
        Ok(_) => panic!("a server started with a bad devices file"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("device `file_noop`: driver: unknown variant `warp`"), "{e}");
    assert!(e.contains(&file), "names the file: {e}");
    // Nothing was seeded: the file is checked before the database is touched.
    let mut conn = db.connect().await.unwrap();
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'devices'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(tables, 0, "no migration ran");
}

#[tokio::test]
async fn an_empty_database_without_a_file_gets_the_default_devices() {
    let db = TestDb::create().await.unwrap();
    let server = Server::launch(config(&db, &[])).await.unwrap();
    let seen = devices(&server).await;
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["EMU_FREE", "EMU_SV", "FRESNEL", "heavyhex_127", "noop_1", "noop_2", "noop_3", "noop_4", "sim_statevector"]
    );
    let hh = &seen["heavyhex_127"];
    assert_eq!((hh["driver"].as_str(), hh["num_qubits"].as_i64()), (Some("statevector"), Some(127)), "{hh}");
    assert_eq!(hh["config"]["target"]["coupling_map"].as_array().map(Vec::len), Some(288), "{hh}");
    assert_eq!(hh["config"]["target"]["basis_gates"], serde_json::json!(["ecr", "id", "rz", "sx", "x"]));
    assert_eq!(hh["timing"]["prep_ms"], 150.0, "{hh}");
    // A circuit laid out on 3 of its 127 qubits, in its basis, runs; one outside its basis fails.
    let admin = server.client(ADMIN_TOKEN);
    let isa = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\ngate ecr _gate_q_0, _gate_q_1 {\n  s _gate_q_0;\n  \
               sx _gate_q_1;\n  cx _gate_q_0, _gate_q_1;\n  x _gate_q_0;\n}\nbit[3] c;\nx $126;\necr $14, $0;\n\
               c[0] = measure $0;\nc[1] = measure $14;\nc[2] = measure $126;\n";
    let job =
        |src: &str| json!({"device": "heavyhex_127", "program": "sampler", "payload": {"pubs": [[src, null, 100]]}});
    let (done, result) = admin.run_job(job(isa), Duration::from_secs(60)).await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    let counts = result["pub_results"][0]["data"]["c"]["counts"].as_object().unwrap().clone();
    assert!(counts.keys().all(|k| k.starts_with('1')) && counts.values().filter_map(Value::as_u64).sum::<u64>() == 100);
    let not_isa = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\nbit[1] c;\nh $0;\nc[0] = measure $0;\n";
    // Refused at submit (issue 7), naming the gate.
    let (s, body) = admin.post("/v1/jobs", job(not_isa)).await.unwrap();
    assert_eq!(s, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("gate 'h' on qubit(s) [0]"), "{body}");
    assert_eq!(seen["EMU_FREE"]["driver"], "analog");
    assert_eq!(seen["sim_statevector"]["num_qubits"], 28);
    assert_eq!(seen["noop_1"]["num_qubits"], 127);
    // --no-seed on another empty database: nothing.
    let db2 = TestDb::create().await.unwrap();
    let bare = Server::launch(config(&db2, &["--no-seed"])).await.unwrap();
    assert!(devices(&bare).await.is_empty());
}

/// `Server::terminate` of an in-process server: it stops taking work, hands its running job back
/// after the grace period, and leaves no lease behind.
#[tokio::test]
async fn in_process_shutdown_hands_running_jobs_back() {
    let db = TestDb::create().await.unwrap();
    let mut server =
        Server::launch(config(&db, &["--no-seed", "--shutdown-grace", "0.3", "--tick-ms", "100"])).await.unwrap();
    let admin = server.client(ADMIN_TOKEN);
    let (s, v) =
        admin.post("/v1/devices", json!({"name": "long_dev", "driver": "noop", "num_qubits": 1})).await.unwrap();
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, job) = admin
        .post("/v1/jobs", json!({"device": "long_dev", "program": "noop", "payload": {"duration_ms": 30000}}))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED, "{job}");
    let id: Uuid = job["id"].as_str().unwrap().parse().unwrap();
    let mut conn = db.connect().await.unwrap();
    let t0 = Instant::now();
    loop {
        let owner: Option<Uuid> =
            sqlx::query_scalar("SELECT lease_owner FROM jobs WHERE id = $1 AND status = 'running'")
                .bind(id)
                .fetch_optional(&mut conn)
                .await
                .unwrap()
                .flatten();
        if owner.is_some() {
            assert_eq!(owner, Some(server.replica_id), "the job runs on this replica");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = server.url.clone();
    server.terminate();
    let (status, owner): (String, Option<Uuid>) = sqlx::query_as("SELECT status, lease_owner FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(status, "queued", "handed back, not failed nor left running");
    assert_eq!(owner, None);
    assert!(reqwest::get(format!("{url}/healthz")).await.is_err(), "HTTP is stopped");
}

/// The binary with `--config`: the settings file names a devices file relative to itself.
#[tokio::test]
async fn binary_serves_with_a_settings_file_and_its_devices_file() {
    let db = TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    write(&etc, "qcloud.toml", "devices_file = \"lab-devices.toml\"\ntick_ms = 100\nworkers = 4\n");
    write(&etc, "lab-devices.toml", TWO_DEVICES);
    let p = Process::start_in(&db, &["--config", "etc/qcloud.toml"], Some(dir.path())).await.unwrap();
    let (s, v) = p.client(ADMIN_TOKEN).get("/v1/devices").await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut names: Vec<&str> = v.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["file_noop", "file_sim"], "log: {}", p.log_text());

    // A settings file with an unknown key: the binary exits and says which key.
    write(&etc, "qcloud.toml", "devices_fil = \"lab-devices.toml\"\n");
    let e = match Process::start_in(&db, &["--config", "etc/qcloud.toml"], Some(dir.path())).await {
        Ok(_) => panic!("started with an unknown key"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("devices_fil"), "{e}");
}
