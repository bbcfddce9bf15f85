//! The embedded-Postgres default (docs/architecture.md): which database `qcloud serve` uses when none is configured.
//!
//! In order: an explicit URL (`DATABASE_URL` / `--database-url`) is used verbatim; otherwise the local Postgres
//! server, if one answers as user `postgres` without a password, gets a `qcloud` database; otherwise a private
//! Postgres is started from the machine's installed binaries (`initdb`, `pg_ctl`) in a data folder of its own and
//! stopped again when the returned [`PrivatePostgres`] is dropped.
//!
//! Postgres refuses to run as root, so when qcloud runs as root the private server runs as the `postgres` system
//! user (through `runuser`, or `su` where there is no `runuser`).
//!
//! Environment knobs (for tests and unusual machines):
//! - `QCLOUD_LOCAL_PG_PROBE`: comma-separated URLs probed for a local server instead of the defaults; empty or
//!   `none` skips the probe and goes straight to the private server.
//! - `QCLOUD_PG_BIN_DIR`: the folder holding `initdb` and `pg_ctl`, instead of searching for it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use sqlx::{Connection, PgConnection};

/// URLs probed for a local Postgres server, in order, when `QCLOUD_LOCAL_PG_PROBE` is not set.
pub const DEFAULT_PROBES: [&str; 2] =
    ["postgres://postgres@127.0.0.1:5432/postgres", "postgres:///postgres?host=/var/run/postgresql&user=postgres"];

/// Suggested data folder of the private server, relative to the working directory (`.qcloud/` is git-ignored).
#[allow(dead_code)]
pub const DEFAULT_DATA_DIR: &str = ".qcloud/postgres";

/// Name of the database qcloud creates and uses on a local or private server.
pub const DATABASE_NAME: &str = "qcloud";

/// How long a probe of the local server may take before it counts as "not answering".
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Unix socket paths are limited to ~107 bytes; beyond this the private server listens on TCP only.
const MAX_SOCKET_DIR_LEN: usize = 90;

const PGDATA: &str = "pgdata";
const PORT_FILE: &str = "postgres.port";
const LOG_FILE: &str = "postgres.log";
const PG_USER: &str = "postgres";

/// The database `qcloud serve` should use.
#[derive(Debug)]
pub struct LocalDb {
    /// Connection URL for sqlx.
    pub url: String,
    /// The private server, when one was started or reused; keep it alive as long as the database is in use.
    pub private: Option<PrivatePostgres>,
}

/// A private Postgres server in a data folder of qcloud's own. Dropping it stops the server (`pg_ctl stop -m fast`)
/// if this process started it; a server reused from an earlier start is left running for whoever started it.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    run_as_postgres: bool,
    owned: bool,
    stopped: bool,
}

// Accessors for the binary's start-up report and for tests; not every build uses each one.
#[allow(dead_code)]
impl PrivatePostgres {
    /// TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder holding the cluster (`pgdata`), its log and port file.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether this process started the server (and so stops it on drop).
    pub fn is_owned(&self) -> bool {
        self.owned
    }

    /// Stops the server now if this process started it; idempotent. Errors are logged, not returned: this runs at
    /// shutdown, when nothing better can be done about them.
    pub fn stop(&mut self) {
        if self.stopped || !self.owned {
            return;
        }
        self.stopped = true;
        let pgdata = self.data_dir.join(PGDATA);
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let args: Vec<OsString> =
            vec!["-D".into(), pgdata.into_os_string(), "-m".into(), "fast".into(), "-w".into(), "stop".into()];
        let mut cmd = pg_command(&pg_ctl, &args, self.run_as_postgres);
        cmd.current_dir(&self.data_dir);
        match cmd.output() {
            Ok(out) if out.status.success() => {
                tracing::info!(data_dir = %self.data_dir.display(), "private Postgres stopped");
            }
            Ok(out) => tracing::warn!(
                data_dir = %self.data_dir.display(),
                "pg_ctl stop failed: {}",
                output_text(&out)
            ),
            Err(err) => {
                tracing::warn!(data_dir = %self.data_dir.display(), "could not run pg_ctl stop: {err}")
            }
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Decides which database to use: `explicit` verbatim if given, else the local server, else a private server in
/// `data_dir` (a folder dedicated to it; created if missing).
pub async fn resolve(explicit: Option<String>, data_dir: &Path) -> anyhow::Result<LocalDb> {
    resolve_with_probes(explicit, data_dir, &probes_from_env()).await
}

/// [`resolve`] with the local-server probe URLs given (an empty list skips the probe).
pub async fn resolve_with_probes(
    explicit: Option<String>,
    data_dir: &Path,
    probes: &[String],
) -> anyhow::Result<LocalDb> {
    if let Some(url) = explicit {
        return Ok(LocalDb { url, private: None });
    }
    for probe in probes {
        match probe_and_prepare(probe).await {
            Ok(Some(url)) => {
                tracing::info!(url = %redact(&url), "using the local Postgres server");
                return Ok(LocalDb { url, private: None });
            }
            Ok(None) => {}
            Err(err) => tracing::warn!("local Postgres at {} answered but: {err:#}", redact(probe)),
        }
    }
    tracing::info!(
        data_dir = %data_dir.display(),
        "no local Postgres answered; starting a private one"
    );
    let private = start_private(data_dir).await?;
    let url = format!("postgres://{PG_USER}@127.0.0.1:{}/{DATABASE_NAME}", private.port);
    Ok(LocalDb { url, private: Some(private) })
}

/// The probe URLs from `QCLOUD_LOCAL_PG_PROBE`, or [`DEFAULT_PROBES`].
pub fn probes_from_env() -> Vec<String> {
    match std::env::var("QCLOUD_LOCAL_PG_PROBE") {
        Ok(value) => parse_probe_list(&value),
        Err(_) => DEFAULT_PROBES.iter().map(|s| s.to_string()).collect(),
    }
}

fn parse_probe_list(value: &str) -> Vec<String> {
    if value.trim().eq_ignore_ascii_case("none") {
        return Vec::new();
    }
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Connects to `probe`; if it answers, makes sure database `qcloud` exists and returns its URL. `Ok(None)` when
/// nothing answers (or refuses us) within the timeout.
async fn probe_and_prepare(probe: &str) -> anyhow::Result<Option<String>> {
    let mut conn = match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect(probe)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => {
            tracing::debug!("no local Postgres at {}: {err}", redact(probe));
            return Ok(None);
        }
        Err(_) => {
            tracing::debug!("no local Postgres at {}: timed out", redact(probe));
            return Ok(None);
        }
    };
    ensure_database(&mut conn, DATABASE_NAME).await?;
    let _ = conn.close().await;
    Ok(Some(with_database(probe, DATABASE_NAME)))
}

/// `CREATE DATABASE name` unless it exists; a concurrent creator (another replica) is not an error.
async fn ensure_database(conn: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .context("could not list databases")?;
    if exists.is_some() {
        return Ok(());
    }
    let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match sqlx::raw_sql(&sql).execute(&mut *conn).await {
        Ok(_) => {
            tracing::info!("created database {name}");
            Ok(())
        }
        Err(sqlx::Error::Database(db)) if matches!(db.code().as_deref(), Some("42P04") | Some("23505")) => Ok(()),
        Err(err) => Err(err).with_context(|| format!("could not create database {name}")),
    }
}

/// Replaces the database name (the path) of a `postgres://` URL, keeping authority and query.
fn with_database(url: &str, db: &str) -> String {
    let (head, query) = match url.find('?') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let authority_start = head.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match head[authority_start..].find('/') {
        Some(i) => &head[..authority_start + i],
        None => head,
    };
    format!("{base}/{db}{query}")
}

/// Hides a password in a URL for logs.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            format!("{}{}:***{}", &url[..scheme_end], &authority[..colon], &rest[at..])
        }
        _ => url.to_string(),
    }
}

async fn start_private(data_dir: &Path) -> anyhow::Result<PrivatePostgres> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("could not create the Postgres data folder {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize().with_context(|| format!("could not resolve {}", data_dir.display()))?;
    let bin_dir =
        find_bin_dir(std::env::var_os("QCLOUD_PG_BIN_DIR"), std::env::var_os("PATH"), Path::new("/usr/lib/postgresql"))
            .ok_or_else(|| {
                anyhow!(
            "no database configured, no local Postgres answered, and no Postgres binaries (initdb, pg_ctl) were \
             found on PATH or under /usr/lib/postgresql/*/bin. Install Postgres (e.g. `apt-get install postgresql`), \
             set QCLOUD_PG_BIN_DIR, or set DATABASE_URL / --database-url"
        )
            })?;
    let run_as_postgres = effective_uid_is_root();
    if run_as_postgres {
        prepare_for_postgres_user(&data_dir).await?;
    }

    if let Some(port) = running_private_port(&data_dir).await {
        tracing::info!(port, data_dir = %data_dir.display(), "reusing the private Postgres already running");
        let mut private = PrivatePostgres { bin_dir, data_dir, port, run_as_postgres, owned: false, stopped: false };
        create_private_database(&mut private).await?;
        return Ok(private);
    }

    let pgdata = data_dir.join(PGDATA);
    if !pgdata.join("PG_VERSION").exists() {
        let args: Vec<OsString> = vec![
            "-D".into(),
            pgdata.clone().into_os_string(),
            "-U".into(),
            PG_USER.into(),
            "--auth=trust".into(),
            "-E".into(),
            "UTF8".into(),
            "--no-instructions".into(),
        ];
        tracing::info!(pgdata = %pgdata.display(), "initdb");
        run_checked(&bin_dir.join("initdb"), &args, run_as_postgres, &data_dir)
            .await
            .with_context(|| format!("initdb of {} failed", pgdata.display()))?;
    }

    let port = free_port().context("could not find a free TCP port for the private Postgres")?;
    let socket_dir = data_dir.to_string_lossy().to_string();
    let socket_opt = if socket_dir.len() <= MAX_SOCKET_DIR_LEN { shell_quote(&socket_dir) } else { "''".to_string() };
    let server_opts = format!("-p {port} -k {socket_opt} -c listen_addresses=127.0.0.1");
    let log = data_dir.join(LOG_FILE);
    let args: Vec<OsString> = vec![
        "-D".into(),
        pgdata.clone().into_os_string(),
        "-o".into(),
        server_opts.into(),
        "-l".into(),
        log.clone().into_os_string(),
        "-w".into(),
        "-t".into(),
        "60".into(),
        "start".into(),
    ];
    tracing::info!(port, pgdata = %pgdata.display(), "starting private Postgres");
    if let Err(err) = run_checked(&bin_dir.join("pg_ctl"), &args, run_as_postgres, &data_dir).await {
        let tail = log_tail(&log, 20);
        bail!(
            "could not start the private Postgres in {}: {err:#}\n--- last lines of {} ---\n{tail}",
            pgdata.display(),
            log.display()
        );
    }
    let mut private =
        PrivatePostgres { bin_dir, data_dir: data_dir.clone(), port, run_as_postgres, owned: true, stopped: false };
    // From here on, dropping `private` (also on error) stops the server again.
    std::fs::write(data_dir.join(PORT_FILE), format!("{port}\n"))
        .with_context(|| format!("could not write {}", data_dir.join(PORT_FILE).display()))?;
    create_private_database(&mut private).await?;
    tracing::info!(port, "private Postgres is up");
    Ok(private)
}

async fn create_private_database(private: &mut PrivatePostgres) -> anyhow::Result<()> {
    let url = format!("postgres://{PG_USER}@127.0.0.1:{}/postgres", private.port);
    let mut conn = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&url))
        .await
        .map_err(|_| anyhow!("timed out connecting to the private Postgres at {url}"))?
        .with_context(|| format!("could not connect to the private Postgres at {url}"))?;
    ensure_database(&mut conn, DATABASE_NAME).await?;
    let _ = conn.close().await;
    Ok(())
}

/// The port of a private server left running in `data_dir` by an earlier start, if it still answers.
async fn running_private_port(data_dir: &Path) -> Option<u16> {
    let pid_file = std::fs::read_to_string(data_dir.join(PGDATA).join("postmaster.pid")).ok()?;
    let pid: u32 = pid_file.lines().next()?.trim().parse().ok()?;
    if !process_alive(pid) {
        return None;
    }
    let port: u16 = std::fs::read_to_string(data_dir.join(PORT_FILE)).ok()?.trim().parse().ok()?;
    let url = format!("postgres://{PG_USER}@127.0.0.1:{port}/postgres");
    match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect(&url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Some(port)
        }
        _ => None,
    }
}

fn process_alive(pid: u32) -> bool {
    let proc_root = Path::new("/proc");
    if proc_root.join("self").exists() {
        return proc_root.join(pid.to_string()).exists();
    }
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The folder with `initdb` and `pg_ctl`: `override_dir` if given, else the first PATH entry holding both, else
/// the highest version under `versions_root` (`/usr/lib/postgresql/<version>/bin`).
fn find_bin_dir(override_dir: Option<OsString>, path: Option<OsString>, versions_root: &Path) -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = override_dir {
        let dir = PathBuf::from(dir);
        return has_both(&dir).then_some(dir);
    }
    if let Some(path) = path {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d)) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(versions_root)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            let version = parse_version(&name)?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn parse_version(name: &str) -> Option<Vec<u64>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// A TCP port on 127.0.0.1 that is free right now.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether this process runs with effective uid 0 (Linux: /proc/self/status; elsewhere: `id -u`).
fn effective_uid_is_root() -> bool {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(euid) = parse_effective_uid(&status) {
            return euid == 0;
        }
    }
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|s| s.trim() == "0")
}

/// The effective uid from the `Uid:` line of /proc/<pid>/status (real, effective, saved, fs).
fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Running as root: the `postgres` user must exist, own the data folder and be able to reach it.
async fn prepare_for_postgres_user(data_dir: &Path) -> anyhow::Result<()> {
    let user_exists = tokio::process::Command::new("id")
        .args(["-u", PG_USER])
        .output()
        .await
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !user_exists {
        bail!(
            "qcloud runs as root and Postgres refuses to run as root, but there is no `{PG_USER}` system user to run \
             the private Postgres as. Create one (`useradd --system --home-dir /var/lib/postgresql {PG_USER}`), run \
             qcloud as a normal user, or set DATABASE_URL / --database-url"
        );
    }
    let out = tokio::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{PG_USER}:"))
        .arg(data_dir)
        .output()
        .await
        .context("could not run chown")?;
    if !out.status.success() {
        bail!("could not hand {} to the `{PG_USER}` user: {}", data_dir.display(), output_text(&out));
    }
    let probe: Vec<OsString> = vec!["-w".into(), data_dir.as_os_str().to_owned()];
    let writable = pg_command(Path::new("test"), &probe, true).output().map(|o| o.status.success()).unwrap_or(false);
    if !writable {
        bail!(
            "qcloud runs as root, so the private Postgres runs as the `{PG_USER}` user, but that user cannot reach \
             {} (a parent folder is closed to it, e.g. /root). Use a data folder it can reach (e.g. under /tmp or \
             /var/lib), run qcloud as a normal user, or set DATABASE_URL / --database-url",
            data_dir.display()
        );
    }
    Ok(())
}

/// `program args...`, run as the `postgres` user when `as_postgres` (runuser, else su).
fn pg_command(program: &Path, args: &[OsString], as_postgres: bool) -> std::process::Command {
    if !as_postgres {
        let mut cmd = std::process::Command::new(program);
        cmd.args(args);
        return cmd;
    }
    if let Some(runuser) =
        ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"].iter().map(Path::new).find(|p| p.is_file())
    {
        let mut cmd = std::process::Command::new(runuser);
        cmd.args(["-u", PG_USER, "--"]).arg(program).args(args);
        return cmd;
    }
    let mut line = shell_quote(&program.to_string_lossy());
    for arg in args {
        line.push(' ');
        line.push_str(&shell_quote(&arg.to_string_lossy()));
    }
    let mut cmd = std::process::Command::new("su");
    cmd.args([PG_USER, "-s", "/bin/sh", "-c"]).arg(line);
    cmd
}

async fn run_checked(program: &Path, args: &[OsString], as_postgres: bool, cwd: &Path) -> anyhow::Result<()> {
    let mut cmd = tokio::process::Command::from(pg_command(program, args, as_postgres));
    cmd.current_dir(cwd).stdin(std::process::Stdio::null());
    let out = cmd.output().await.with_context(|| format!("could not run {}", program.display()))?;
    if !out.status.success() {
        bail!("{} exited with {}: {}", program.display(), out.status, output_text(&out));
    }
    Ok(())
}

fn output_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stdout.trim());
    }
    text
}

fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(could not read the log: {err})"),
    }
}

/// Single-quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(tag: &str) -> PathBuf {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("qcloud-pg-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    fn fake_bin(dir: &Path) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join("initdb"), "").expect("write initdb");
        std::fs::write(dir.join("pg_ctl"), "").expect("write pg_ctl");
    }

    #[test]
    fn bin_dir_prefers_path_then_highest_version() {
        let root = scratch_dir("bins");
        let versions = root.join("versions");
        fake_bin(&versions.join("9.6/bin"));
        fake_bin(&versions.join("15/bin"));
        fake_bin(&versions.join("16/bin"));
        std::fs::create_dir_all(versions.join("17/bin")).expect("mkdir"); // no binaries: skipped
        std::fs::create_dir_all(versions.join("notes")).expect("mkdir");

        assert_eq!(find_bin_dir(None, None, &versions), Some(versions.join("16/bin")));

        let on_path = root.join("path-bin");
        fake_bin(&on_path);
        let path = std::env::join_paths([root.join("empty"), on_path.clone()]).expect("join");
        assert_eq!(find_bin_dir(None, Some(path), &versions), Some(on_path.clone()));

        // The override wins, and a bad override is "not found" rather than a silent fallback.
        assert_eq!(find_bin_dir(Some(versions.join("15/bin").into()), None, &versions), Some(versions.join("15/bin")));
        assert_eq!(find_bin_dir(Some(root.join("nope").into()), None, &versions), None);
        assert_eq!(find_bin_dir(None, None, &root.join("missing")), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn version_ordering_is_numeric() {
        let mut v = [parse_version("9.6"), parse_version("10"), parse_version("16")];
        v.sort();
        assert_eq!(v[2], Some(vec![16]));
        assert_eq!(v[0], Some(vec![9, 6]));
        assert_eq!(parse_version("notes"), None);
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().expect("free port");
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("port should be free");
    }

    #[test]
    fn effective_uid_parsing() {
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\t1\t1\t1\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Name: x\n"), None);
    }

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "qcloud"),
            "postgres://postgres@127.0.0.1:5432/qcloud"
        );
        assert_eq!(
            with_database("postgres:///postgres?host=/var/run/postgresql&user=postgres", "qcloud"),
            "postgres:///qcloud?host=/var/run/postgresql&user=postgres"
        );
        assert_eq!(with_database("postgres://u:p@h:1", "qcloud"), "postgres://u:p@h:1/qcloud");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h:5432/db"), "postgres://u@h:5432/db");
        assert_eq!(redact("postgres:///db?host=/tmp"), "postgres:///db?host=/tmp");
    }

    #[test]
    fn probe_list_parsing() {
        assert!(parse_probe_list("none").is_empty());
        assert!(parse_probe_list("").is_empty());
        assert_eq!(parse_probe_list(" a , b ,"), vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/a b"), "'/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[tokio::test]
    async fn explicit_url_is_used_verbatim() {
        let dir = std::env::temp_dir().join("qcloud-pg-never-created");
        let db = resolve(Some("postgres://x:y@example.invalid:1/z".into()), &dir).await.expect("resolve");
        assert_eq!(db.url, "postgres://x:y@example.invalid:1/z");
        assert!(db.private.is_none());
        assert!(!dir.exists(), "an explicit URL must not touch the data folder");
    }

    /// Forces the private path (the probe points at a port nothing listens on), starts a real server from the
    /// installed binaries, connects to its `qcloud` database, reuses it, and stops it.
    #[tokio::test]
    async fn private_server_starts_answers_and_stops() {
        let root = scratch_dir("private");
        let data_dir = root.join("pg");
        let dead_port = free_port().expect("free port");
        let probes = vec![format!("postgres://postgres@127.0.0.1:{dead_port}/postgres")];

        let mut db = resolve_with_probes(None, &data_dir, &probes)
            .await
            .expect("private Postgres should start (needs initdb and pg_ctl installed)");
        let port = db.private.as_ref().expect("a private server").port();
        assert_eq!(db.url, format!("postgres://postgres@127.0.0.1:{port}/qcloud"));

        let mut conn = PgConnection::connect(&db.url).await.expect("connect to qcloud db");
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await.expect("query");
        assert_eq!(one, 1);
        conn.close().await.expect("close");

        // A second resolve in the same folder reuses the running server and does not own it.
        let again = resolve_with_probes(None, &data_dir, &probes).await.expect("reuse");
        let reused = again.private.as_ref().expect("private");
        assert_eq!(reused.port(), port);
        assert!(!reused.is_owned());
        drop(again); // must not stop the server
        let conn = PgConnection::connect(&db.url).await.expect("still up after reuse dropped");
        conn.close().await.expect("close");

        db.private.as_mut().expect("private").stop();
        let after = tokio::time::timeout(Duration::from_secs(3), PgConnection::connect(&db.url)).await;
        assert!(!matches!(after, Ok(Ok(_))), "server should be stopped");
        drop(db);

        // A restart of a stopped, initialised cluster works too (no second initdb).
        let db = resolve_with_probes(None, &data_dir, &probes).await.expect("restart");
        let conn = PgConnection::connect(&db.url).await.expect("connect after restart");
        conn.close().await.expect("close");
        drop(db); // stops on drop
        assert!(!data_dir.join(PGDATA).join("postmaster.pid").exists(), "stopped on drop");
        let _ = std::fs::remove_dir_all(&root);
    }
}
