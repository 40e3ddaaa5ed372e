//! Flags of the commands that talk to a running `kvault serve` (`kvault jobs ...`) and of the
//! ones that read a cluster (`kvault topics`, `kvault groups`).

use clap::{Args, Subcommand};

/// Where the server is and who is asking.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The server's base URL (http://host:port).
    #[arg(
        long,
        global = true,
        env = "KVAULT_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// A bearer token (`kvault token` mints one); never printed.
    #[arg(long, global = true, env = "KVAULT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub action: JobsAction,
}

#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// Jobs, newest first: `GET /api/kafka/jobs`'s body.
    List(JobsListArgs),
    /// One job with its progress (total, percent, ETA), result or error.
    Show(JobIdArg),
    /// Follows a job until it ends, progress on stderr; prints the finished job and exits
    /// with the code its outcome maps to (0 completed).
    Watch(JobWatchArgs),
    /// Asks a running job to stop.
    Cancel(JobIdArg),
}

#[derive(Debug, Args)]
pub struct JobsListArgs {
    /// backup, restore, migrate, drain or verify.
    #[arg(long)]
    pub kind: Option<String>,
    /// running, completed, failed, cancelled or interrupted.
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long, alias = "cluster_id", alias = "cluster-id")]
    pub cluster: Option<String>,
    /// At most this many jobs (1-1000).
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct JobIdArg {
    #[arg(long, alias = "job_id")]
    pub job_id: String,
}

#[derive(Debug, Args)]
pub struct JobWatchArgs {
    #[arg(long, alias = "job_id")]
    pub job_id: String,
    /// Milliseconds between two looks at the job.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
}

#[derive(Debug, Args)]
pub struct ClusterArg {
    #[arg(long, alias = "cluster_id", alias = "cluster-id")]
    pub cluster: Option<String>,
}
