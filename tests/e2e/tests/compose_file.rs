//! The deployment files, checked without a Docker engine: docker-compose.yml parses and wires postgres + qcloud with
//! health checks, the qcloud service builds this repository's Dockerfile as `qcloud:local`, and the Dockerfile's
//! runtime stage ships the binary and the migrations (which exist).

use std::path::{Path, PathBuf};

use serde_yaml::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn compose() -> Value {
    serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is not valid YAML")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose
        .get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// A service's environment as (name, value) pairs, from either the map or the `NAME=value` list form.
fn environment(service: &Value) -> Vec<(String, String)> {
    match service.get("environment") {
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
                };
                (k.as_str().unwrap_or_default().to_string(), value)
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (item.to_string(), String::new()),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn env_var(service: &Value, name: &str) -> Option<String> {
    environment(service).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn assert_healthcheck(service: &Value, name: &str) {
    let test = service
        .get("healthcheck")
        .and_then(|h| h.get("test"))
        .unwrap_or_else(|| panic!("service `{name}` has no healthcheck.test"));
    let non_empty = match test {
        Value::String(s) => !s.trim().is_empty(),
        Value::Sequence(items) => items.len() >= 2,
        _ => false,
    };
    assert!(non_empty, "service `{name}` has an empty healthcheck: {test:?}");
}

#[test]
fn compose_has_postgres_and_qcloud_with_health_checks() {
    let compose = compose();
    let postgres = service(&compose, "postgres");
    let qcloud = service(&compose, "qcloud");

    let pg_image = str_at(postgres, "image").expect("postgres service needs an image");
    assert!(pg_image.starts_with("postgres:"), "postgres image is {pg_image}");
    assert_healthcheck(postgres, "postgres");
    assert_healthcheck(qcloud, "qcloud");

    let condition = qcloud.get("depends_on").and_then(|d| d.get("postgres")).and_then(|p| str_at(p, "condition"));
    assert_eq!(condition, Some("service_healthy"), "qcloud must wait for a healthy postgres");

    let database_url = env_var(qcloud, "DATABASE_URL").expect("qcloud needs DATABASE_URL");
    assert!(
        database_url.contains("@postgres:5432/"),
        "DATABASE_URL should point at the postgres service: {database_url}"
    );
    assert_eq!(env_var(qcloud, "QCLOUD_LISTEN").as_deref(), Some("0.0.0.0:8080"));
    assert!(env_var(qcloud, "QCLOUD_ADMIN_TOKEN").is_some(), "qcloud needs QCLOUD_ADMIN_TOKEN");

    let healthcheck = serde_yaml::to_string(&qcloud["healthcheck"]["test"]).expect("yaml");
    assert!(healthcheck.contains("/readyz"), "qcloud healthcheck should probe /readyz");
}

#[test]
fn qcloud_service_builds_this_repos_dockerfile_as_qcloud_local() {
    let compose = compose();
    let qcloud = service(&compose, "qcloud");
    assert_eq!(str_at(qcloud, "image"), Some("qcloud:local"));

    let build = qcloud.get("build").expect("qcloud service must build the image");
    let (context, dockerfile) = match build {
        Value::String(context) => (context.as_str(), "Dockerfile"),
        other => (str_at(other, "context").unwrap_or("."), str_at(other, "dockerfile").unwrap_or("Dockerfile")),
    };
    let dockerfile_path = repo_root().join(context).join(dockerfile);
    assert!(
        dockerfile_path.canonicalize().ok() == repo_root().join("Dockerfile").canonicalize().ok(),
        "qcloud should build the repository's Dockerfile, not {}",
        dockerfile_path.display()
    );
}

/// The Dockerfile's stages, each as its lines (comments dropped, continuations joined).
fn dockerfile_stages() -> Vec<Vec<String>> {
    let text = read("Dockerfile").replace("\\\n", " ");
    let mut stages: Vec<Vec<String>> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.to_ascii_uppercase().starts_with("FROM ") {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push(line.to_string());
        }
    }
    stages
}

#[test]
fn dockerfile_is_multi_stage_and_ships_binary_and_migrations() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "the Dockerfile should be multi-stage");
    let builder = stages[..stages.len() - 1].concat().join("\n");
    assert!(
        builder.contains("cargo build") && builder.contains("--release") && builder.contains("-p qcloud"),
        "a build stage should run `cargo build --release -p qcloud`"
    );

    let runtime = &stages[stages.len() - 1];
    let has = |prefix: &str, needle: &str| {
        runtime.iter().any(|l| l.to_ascii_uppercase().starts_with(prefix) && l.contains(needle))
    };
    let copies_migrations = runtime.iter().any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        if !words.first().is_some_and(|w| w.eq_ignore_ascii_case("COPY")) {
            return false;
        }
        let args: Vec<&str> = words[1..].iter().copied().filter(|w| !w.starts_with("--")).collect();
        // Every argument but the last is a source.
        args.len() >= 2
            && args[..args.len() - 1]
                .iter()
                .any(|src| src.trim_start_matches("./").trim_end_matches('/') == "migrations")
    });
    assert!(copies_migrations, "the runtime stage must copy migrations/ from the build context");
    assert!(has("COPY ", "--from="), "the runtime stage must copy the binary from the build stage");
    assert!(has("RUN ", "curl"), "the runtime stage needs curl for the health check");
    assert!(has("USER ", ""), "the runtime stage should not run as root");
    assert!(has("EXPOSE ", "8080"));
    assert!(has("ENTRYPOINT ", "qcloud"));
}

#[test]
fn migrations_folder_holds_sql_files() {
    let dir = repo_root().join("migrations");
    let sql: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|ext| ext == "sql"))
        .collect();
    assert!(!sql.is_empty(), "migrations/ holds no .sql files");
}

#[test]
fn dockerignore_keeps_build_outputs_out_of_the_context() {
    let ignore = read(".dockerignore");
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    assert!(lines.contains(&"target"), ".dockerignore should exclude target");
    assert!(lines.iter().any(|l| l.contains(".venv")), ".dockerignore should exclude venvs");
}

#[test]
fn docker_e2e_script_brings_the_stack_up_and_down() {
    let script = read("tests/docker/e2e.sh");
    assert!(script.starts_with("#!"), "e2e.sh needs a shebang");
    assert!(script.contains("up -d --build --wait"));
    assert!(script.contains("down -v"));
    assert!(script.contains("QCLOUD_E2E_URL") && script.contains("QCLOUD_E2E_TOKEN"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(repo_root().join("tests/docker/e2e.sh")).expect("stat e2e.sh").permissions().mode();
        assert!(mode & 0o111 != 0, "tests/docker/e2e.sh should be executable");
    }
}

#[test]
fn the_observability_profile_starts_prometheus_and_grafana_on_the_shipped_files() {
    let compose = compose();
    for name in ["prometheus", "grafana"] {
        let s = service(&compose, name);
        let profiles: Vec<&str> =
            s.get("profiles").and_then(Value::as_sequence).into_iter().flatten().filter_map(Value::as_str).collect();
        assert_eq!(profiles, ["observability"], "{name} runs only with --profile observability");
        for v in s.get("volumes").and_then(Value::as_sequence).into_iter().flatten().filter_map(Value::as_str) {
            let host = v.split(':').next().unwrap();
            assert!(repo_root().join(host).exists(), "{name} mounts {host}, which does not exist");
        }
    }
    let prom: Value = serde_yaml::from_str(&read("deploy/prometheus.yml")).expect("deploy/prometheus.yml is YAML");
    let jobs = prom.get("scrape_configs").and_then(Value::as_sequence).expect("scrape_configs");
    assert!(jobs.iter().any(|j| str_at(j, "metrics_path") == Some("/metrics")));
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/qcloud.json")).expect("the dashboard is JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    for m in ["qcloud_queue_depth", "qcloud_jobs_total", "qcloud_job_queue_seconds", "qcloud_webhook_deliveries_total"]
    {
        assert!(exprs.iter().any(|e| e.contains(m)), "the dashboard shows no {m}");
    }
}
