//! `kvault jobs list|show|watch|cancel`: the jobs of a running `kvault serve`, over its HTTP
//! API (URL and token from `--server`/`--token` or `KVAULT_SERVER`/`KVAULT_TOKEN`). Each prints
//! the route's body; `watch` follows a job's progress and exits with its outcome's code.

use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanCount};
use kvault_domain::ErrorCode;
use serde_json::Value;

use super::print_json;
use crate::cli::{JobsAction, JobsArgs, ServerArgs};
use crate::context::Context;
use crate::exit::{self, CliError};
use crate::progress::{rate, Display};

/// How often `watch` prints a line when stderr is not a terminal.
const LINE_INTERVAL: Duration = Duration::from_secs(5);

pub async fn run(context: &Context, args: JobsArgs) -> Result<(), CliError> {
    let server = Server::new(&args.server)?;
    match args.action {
        JobsAction::List(list) => {
            let mut query = Vec::new();
            let fields = [
                ("kind", list.kind),
                ("state", list.state),
                ("cluster_id", list.cluster),
                ("limit", list.limit.map(|l| l.to_string())),
            ];
            for (name, value) in fields {
                if let Some(value) = value {
                    query.push((name, value));
                }
            }
            print_json(&server.get("/api/kafka/jobs", &query).await?)
        }
        JobsAction::Show(job) => print_json(&server.job(&job.job_id).await?),
        JobsAction::Cancel(job) => {
            let path = format!("/api/kafka/jobs/{}/cancel", job.job_id);
            print_json(&server.post(&path).await?)
        }
        JobsAction::Watch(watch) => {
            let interval = Duration::from_millis(watch.interval_ms.max(100));
            let job = follow(&server, &watch.job_id, interval, context.progress).await?;
            print_json(&job)?;
            outcome(&job)
        }
    }
}

/// Asks the job until it is no longer running, showing its progress on stderr.
async fn follow(
    server: &Server,
    id: &str,
    interval: Duration,
    display: Display,
) -> Result<Value, CliError> {
    let mut last_line: Option<Instant> = None;
    loop {
        let job = server.job(id).await?;
        if job["state"] != "running" {
            // The last line shows where the job ended, however short it ran.
            if display != Display::Quiet {
                eprintln!("{}", progress_line(&job));
            }
            return Ok(job);
        }
        let due = last_line.is_none_or(|t| t.elapsed() >= LINE_INTERVAL);
        match display {
            Display::Bar => eprint!("\r\x1b[2K{}", progress_line(&job)),
            Display::Lines if due => {
                eprintln!("{}", progress_line(&job));
                last_line = Some(Instant::now());
            }
            _ => {}
        }
        tokio::time::sleep(interval).await;
        if display == Display::Bar {
            eprint!("\r\x1b[2K");
        }
    }
}

/// `job 1b2c... backup: 1,200 of 10,000 messages (12%), 1.20 MiB, 3,400 msg/s, ETA 3s`.
pub fn progress_line(job: &Value) -> String {
    let p = &job["progress"];
    let count = |v: &Value| HumanCount(v.as_u64().unwrap_or(0)).to_string();
    let mut line = format!(
        "job {} {}: {}",
        job["id"].as_str().unwrap_or("?"),
        job["kind"].as_str().unwrap_or("?"),
        count(&p["messages"])
    );
    if let Some(total) = p["total_messages"].as_u64() {
        line += &format!(" of {}", HumanCount(total));
    }
    line += " messages";
    if let Some(percent) = p["percent"].as_f64() {
        line += &format!(" ({percent:.0}%)");
    }
    line += &format!(
        ", {}, {}",
        HumanBytes(p["bytes"].as_u64().unwrap_or(0)),
        rate(p["messages_per_second"].as_f64().unwrap_or(0.0))
    );
    if let Some(eta) = p["eta_seconds"].as_f64() {
        line += &format!(", ETA {eta:.0}s");
    }
    line
}

/// The exit code a finished job maps to: 0 when it completed (a drain only when drained),
/// else the code the CLI gives the same failure when it runs the operation itself.
fn outcome(job: &Value) -> Result<(), CliError> {
    let id = job["id"].as_str().unwrap_or("?");
    match job["state"].as_str() {
        Some("completed") if job["result"]["status"] == "timeout" => Err(CliError::new(
            exit::EXIT_DRAIN_TIMEOUT,
            format!("job {id}: the drain timed out"),
        )),
        Some("completed") => Ok(()),
        Some("failed") => {
            let error = &job["error"];
            let code = error_code(&error["error"]).map_or(exit::EXIT_FAILED, exit::exit_code);
            let message = error["message"].as_str().unwrap_or("no error message");
            Err(CliError::new(code, format!("job {id} failed: {message}")))
        }
        Some("interrupted") => Err(CliError::new(
            exit::EXIT_UNAVAILABLE,
            format!("job {id} was interrupted (its server stopped): run it again"),
        )),
        other => Err(CliError::internal(format!(
            "job {id} ended {}",
            other.unwrap_or("in an unknown state")
        ))),
    }
}

/// A `kvault serve` to ask.
struct Server {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Server {
    fn new(args: &ServerArgs) -> Result<Self, CliError> {
        let token = args.token.clone().ok_or_else(|| {
            CliError::invalid(
                "--token: the server needs a bearer token: pass --token or set KVAULT_TOKEN \
                 (export KVAULT_TOKEN=$(kvault token --sub me --role operator --ttl 1h))",
            )
        })?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CliError::internal(format!("HTTP client: {e}")))?;
        Ok(Self {
            base: args.server.trim_end_matches('/').to_owned(),
            token,
            client,
        })
    }

    async fn job(&self, id: &str) -> Result<Value, CliError> {
        self.get(&format!("/api/kafka/jobs/{id}"), &[]).await
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        let request = self.client.get(format!("{}{path}", self.base)).query(query);
        self.send(request).await
    }

    async fn post(&self, path: &str) -> Result<Value, CliError> {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&serde_json::json!({}));
        self.send(request).await
    }

    /// Sends with the token; an error body becomes the CLI error with the matching code.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let response = request.bearer_auth(&self.token).send().await.map_err(|e| {
            CliError::new(
                exit::EXIT_UNAVAILABLE,
                format!("cannot reach the kvault server at {}: {e}", self.base),
            )
        })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        // A refused Kafka credential says more than its 502; otherwise the status decides.
        let code = match error_code(&body["error"]) {
            Some(c @ (ErrorCode::KafkaAuthenticationFailed | ErrorCode::KafkaTlsFailed)) => {
                exit::exit_code(c)
            }
            _ => http_exit_code(status.as_u16()),
        };
        let message = body["message"].as_str().unwrap_or("no error body");
        Err(CliError::new(
            code,
            format!("server answered {status}: {message}"),
        ))
    }
}

/// The code in an error body's `error` field, parsed by its stable name.
fn error_code(error: &Value) -> Option<ErrorCode> {
    error.as_str()?;
    serde_json::from_value(error.clone()).ok()
}

/// The exit code for an HTTP error status of the server.
fn http_exit_code(status: u16) -> u8 {
    match status {
        400 => exit::EXIT_INVALID_INPUT,
        404 => exit::EXIT_NOT_FOUND,
        409 => exit::EXIT_CONFLICT,
        503 => exit::EXIT_UNAVAILABLE,
        _ => exit::EXIT_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_shows_total_percent_and_eta() {
        let job = serde_json::json!({
            "id": "j1", "kind": "verify", "state": "running",
            "progress": {"messages": 1200, "bytes": 2048, "messages_per_second": 400.4,
                         "total_messages": 10000, "percent": 12.0, "eta_seconds": 22.0}
        });
        assert_eq!(
            progress_line(&job),
            "job j1 verify: 1,200 of 10,000 messages (12%), 2.00 KiB, 400 msg/s, ETA 22s"
        );
    }

    #[test]
    fn outcomes_map_to_the_cli_exit_codes() {
        let failed = |kind: &str| {
            outcome(&serde_json::json!({"id": "j", "state": "failed",
                "error": {"error": kind, "message": "m"}}))
            .unwrap_err()
            .code
        };
        assert_eq!(failed("CorruptArchive"), exit::EXIT_CORRUPT);
        assert_eq!(failed("KafkaUnavailable"), exit::EXIT_UNAVAILABLE);
        assert_eq!(
            failed("KafkaAuthenticationFailed"),
            exit::EXIT_KAFKA_AUTHENTICATION
        );
        assert_eq!(failed("KafkaTlsFailed"), exit::EXIT_KAFKA_TLS);
        assert_eq!(failed("Whatever"), exit::EXIT_FAILED);
        let completed = serde_json::json!({"id": "j", "state": "completed", "result": {}});
        assert!(outcome(&completed).is_ok());
    }
}
