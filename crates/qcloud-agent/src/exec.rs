//! `--exec CMD`: run CMD (through `sh -c`) once per job, with the job's JSON ([`wire::AgentJob`])
//! on stdin; its stdout is the result JSON, its stderr the job's log. A non-zero exit fails the
//! job with the last line of stderr (or the exit status); a stop sends SIGTERM, then SIGKILL
//! after a grace period. A lab wraps its control software in any language this way.

use crate::engine::{BoxFuture, Engine, RunError, RunOutput};
use qcloud_wire as wire;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Longest output kept of a program (stdout: the result; stderr: the log's tail is kept anyway).
const MAX_STDOUT: u64 = 1 << 30;
const MAX_STDERR: u64 = 4 << 20;
/// How long a program gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

pub struct Exec {
    pub command: String,
    /// What the agent reports of the device (`--report FILE`), else just online.
    pub report: Option<wire::DeviceReport>,
}

impl Engine for Exec {
    fn programs(&self) -> Option<&'static [&'static str]> {
        None
    }

    fn report(&self) -> wire::DeviceReport {
        self.report.clone().unwrap_or(wire::DeviceReport {
            status: wire::AgentStatus::Online,
            message: None,
            target: None,
            pulser_device: None,
            calibration: None,
        })
    }

    fn run<'a>(
        &'a self,
        job: &'a wire::AgentJob,
        stop: CancellationToken,
    ) -> BoxFuture<'a, Result<RunOutput, RunError>> {
        Box::pin(async move {
            let input = serde_json::to_vec(job).map_err(|e| RunError::failed(format!("job to JSON: {e}")))?;
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(&self.command)
                .env("QCLOUD_JOB_ID", job.id.to_string())
                .env("QCLOUD_JOB_PROGRAM", &job.program)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                // Its own process group, so that a stop reaches what `sh` started too.
                .process_group(0)
                .spawn()
                .map_err(|e| RunError::failed(format!("could not start '{}': {e}", self.command)))?;
            let mut stdin = child.stdin.take();
            let stdout = child.stdout.take();
            let stderr = child.stderr.take();
            let feed = async move {
                if let Some(mut s) = stdin.take() {
                    // A program that does not read its input is fine.
                    let _ = s.write_all(&input).await;
                    let _ = s.shutdown().await;
                }
            };
            let read_out = async move {
                let mut buf = Vec::new();
                if let Some(s) = stdout {
                    let _ = s.take(MAX_STDOUT).read_to_end(&mut buf).await;
                }
                buf
            };
            let read_err = async move {
                let mut buf = Vec::new();
                if let Some(s) = stderr {
                    let _ = s.take(MAX_STDERR).read_to_end(&mut buf).await;
                }
                buf
            };
            let io = async { tokio::join!(feed, read_out, read_err) };
            tokio::pin!(io);
            let pid = child.id();
            let (out, err, status) = tokio::select! {
                ((), out, err) = &mut io => {
                    let status = child.wait().await;
                    (out, err, status)
                }
                _ = stop.cancelled() => {
                    terminate(&mut child, pid).await;
                    let ((), _, err) = io.await;
                    let log = String::from_utf8_lossy(&err).into_owned();
                    return Err(RunError::Stopped { log: Some(log).filter(|l| !l.is_empty()) });
                }
            };
            let log = Some(String::from_utf8_lossy(&err).into_owned()).filter(|l| !l.is_empty());
            let status = status
                .map_err(|e| RunError::Failed { reason: format!("waiting for the program: {e}"), log: log.clone() })?;
            if !status.success() {
                let last = log.as_deref().and_then(|l| l.lines().rev().find(|x| !x.trim().is_empty())).map(str::trim);
                let reason = match (last, status.code()) {
                    (Some(line), _) => line.to_string(),
                    (None, Some(code)) => format!("the program exited with status {code}"),
                    (None, None) => "the program was killed by a signal".to_string(),
                };
                return Err(RunError::Failed { reason, log });
            }
            match serde_json::from_slice(&out) {
                Ok(result) => Ok(RunOutput { result, log }),
                Err(e) => Err(RunError::Failed { reason: format!("the program's output is not JSON: {e}"), log }),
            }
        })
    }
}

/// SIGTERM to the program's process group, then SIGKILL if it does not exit within
/// [`TERM_GRACE`].
async fn terminate(child: &mut tokio::process::Child, pid: Option<u32>) {
    use nix::sys::signal::{killpg, Signal};
    let group = pid.and_then(|p| i32::try_from(p).ok()).map(nix::unistd::Pid::from_raw);
    if let Some(g) = group {
        let _ = killpg(g, Signal::SIGTERM);
    }
    if tokio::time::timeout(TERM_GRACE, child.wait()).await.is_err() {
        if let Some(g) = group {
            let _ = killpg(g, Signal::SIGKILL);
        }
        let _ = child.kill().await;
    }
}
