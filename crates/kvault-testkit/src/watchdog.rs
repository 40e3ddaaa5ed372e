//! Test servers (the S3 and Azure Blob emulators) started under a small `sh` watchdog that
//! kills them as soon as the test process that started them is gone, or at once on TERM, so
//! no server outlives its tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Starts `program args...` under the watchdog, its output going to a log file named after
/// `name`, this process and `port`. Returns the watchdog and the log's path.
pub(crate) fn spawn_watched(
    name: &str,
    port: u16,
    program: &Path,
    args: &[String],
) -> Result<(Child, PathBuf), String> {
    let log = std::env::temp_dir().join(format!("kvault-{name}-{}-{port}.log", std::process::id()));
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("open {}: {e}", log.display()))?;
    let watchdog = r#"
"$@" &
server=$!
trap 'kill -9 $server 2>/dev/null; wait $server; exit 0' TERM INT
while kill -0 "$OWNER" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 0.5; done
kill -9 $server 2>/dev/null
wait $server
"#;
    let child = Command::new("sh")
        .arg("-c")
        .arg(watchdog)
        .arg("watchdog")
        .arg(program)
        .args(args)
        .env("OWNER", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("spawn sh for {}: {e}", program.display()))?;
    Ok((child, log))
}

/// Stops a watched server: TERM to the watchdog, which kills the server and waits for it.
pub(crate) fn stop(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}
