//! Fails fast, in one line, when a cluster cannot be reached: before an operation starts, the
//! bootstrap addresses are probed over TCP (the operating system names the cause: refused,
//! unknown host, timed out), then the cluster must answer a metadata request. librdkafka
//! itself would retry silently for minutes and log every attempt. A cluster that refuses
//! kvault's credentials or TLS handshake is not unreachable: that error keeps its own exit
//! code (9 authentication, 10 TLS).

use std::time::Duration;

use kvault_domain::error::DomainResult;
use kvault_domain::{ClusterConfig, ClusterId, ErrorKind, KafkaFailure};
use tokio::net::TcpStream;

use crate::exit::{CliError, EXIT_UNAVAILABLE};

/// How long one TCP connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Succeeds when `cluster` (defined by `config`) accepts a TCP connection on one of its
/// bootstrap addresses and then answers `ping` (a metadata request); otherwise one error
/// naming the addresses and the cause, exit code 7.
pub async fn check(
    cluster: &ClusterId,
    config: &ClusterConfig,
    ping: impl std::future::Future<Output = DomainResult<()>>,
) -> Result<(), CliError> {
    let bootstrap = config.bootstrap_servers.trim();
    let mut causes = Vec::new();
    let mut connected = false;
    for address in bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match probe(address).await {
            Ok(()) => {
                connected = true;
                break;
            }
            Err(cause) => causes.push(format!("{address}: {cause}")),
        }
    }
    if !connected {
        return Err(unreachable(cluster, bootstrap, &causes.join("; ")));
    }
    ping.await.map_err(|e| match e.kind() {
        // The cluster answered and said no: the cause is the settings, not the network.
        ErrorKind::Kafka(KafkaFailure::Authentication | KafkaFailure::Tls) => CliError::from(e),
        _ => unreachable(cluster, bootstrap, &format!("no Kafka answer ({e})")),
    })
}

/// One TCP connection to `address` (`host:port`, a scheme prefix such as `PLAINTEXT://` is
/// ignored), or why it failed.
async fn probe(address: &str) -> Result<(), String> {
    let address = address.rsplit("://").next().unwrap_or(address);
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
    }
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        _ => e.to_string(),
    }
}

fn unreachable(cluster: &ClusterId, bootstrap: &str, cause: &str) -> CliError {
    CliError::new(
        EXIT_UNAVAILABLE,
        format!(
            "cannot reach Kafka cluster '{cluster}' at {bootstrap}: {cause} (is the broker \
             running? the address comes from clusters.{cluster}.bootstrap_servers or -b)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_refused_and_named() {
        // Bind then drop: the port is free and nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cause = probe(&format!("127.0.0.1:{port}")).await.unwrap_err();
        assert_eq!(cause, "connection refused");
        assert!(probe("no-such-host.invalid:9092").await.is_err());
    }
}
