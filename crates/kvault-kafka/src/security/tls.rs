//! Why a broker's certificate was refused. librdkafka (OpenSSL) says only "certificate verify
//! failed"; this module repeats the handshake with rustls against the same trusted CAs and host
//! name, and words the verdict: unknown CA, a certificate for another host, expired, not yet
//! valid. Only run after librdkafka failed, so it costs nothing on a healthy cluster.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore};

use crate::client::{base_config, ClusterConfig};

/// How long the diagnosing connection may take, connect and handshake each.
const STEP_TIMEOUT: Duration = Duration::from_secs(3);
/// Where OpenSSL (and so librdkafka) finds the system's CAs when no `ssl.ca.*` is set.
const SYSTEM_BUNDLES: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// What was wrong with the first bootstrap broker's certificate, in words; `None` when the
/// handshake could not tell (unreachable, accepted after all, a CA directory).
pub(super) fn diagnose(cluster: &ClusterConfig) -> Option<String> {
    let config = base_config(cluster).ok()?;
    let (roots, trusted) = trusted_roots(config.get("ssl.ca.pem"), config.get("ssl.ca.location"))?;
    let address = first_address(&cluster.bootstrap_servers)?;
    let host = host_of(&address);
    let check_name = !config
        .get("ssl.endpoint.identification.algorithm")
        .is_some_and(|a| a.eq_ignore_ascii_case("none"));
    let error = handshake(roots, &address, host)?;
    match error {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            if !check_name =>
        {
            None
        }
        error => Some(describe(&error, host, &trusted)),
    }
}

/// The CAs librdkafka would trust, and how to name them in a message.
fn trusted_roots(pem: Option<&str>, location: Option<&str>) -> Option<(RootCertStore, String)> {
    let (certs, trusted): (Vec<CertificateDer<'static>>, String) = match (pem, location) {
        (Some(pem), _) => (
            CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .ok()?,
            "ssl.ca.pem".to_owned(),
        ),
        (None, Some(path)) => (
            CertificateDer::pem_file_iter(path)
                .ok()?
                .collect::<Result<_, _>>()
                .ok()?,
            format!("ssl.ca.location {path}"),
        ),
        (None, None) => {
            let bundle = SYSTEM_BUNDLES
                .iter()
                .find(|p| std::path::Path::new(p).is_file())?;
            (
                CertificateDer::pem_file_iter(bundle)
                    .ok()?
                    .collect::<Result<_, _>>()
                    .ok()?,
                format!("the system CAs ({bundle}; no ssl.ca.location is set)"),
            )
        }
    };
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    Some((roots, trusted))
}

/// `host:port` of the first bootstrap server, without a `SSL://`-style prefix.
fn first_address(bootstrap: &str) -> Option<String> {
    let first = bootstrap
        .split(',')
        .map(str::trim)
        .find(|a| !a.is_empty())?;
    Some(first.rsplit("://").next().unwrap_or(first).to_owned())
}

/// The host part of `host:port` (`[::1]:9093` gives `::1`).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The certificate error of a TLS handshake with `address`, or `None` when there was none.
fn handshake(roots: RootCertStore, address: &str, host: &str) -> Option<CertificateError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).ok()?;
    let mut connection = ClientConnection::new(Arc::new(config), name).ok()?;
    let socket_address = address.to_socket_addrs().ok()?.next()?;
    let mut socket = TcpStream::connect_timeout(&socket_address, STEP_TIMEOUT).ok()?;
    socket.set_read_timeout(Some(STEP_TIMEOUT)).ok()?;
    socket.set_write_timeout(Some(STEP_TIMEOUT)).ok()?;
    while connection.is_handshaking() {
        if let Err(e) = connection.complete_io(&mut socket) {
            return certificate_error(&e);
        }
    }
    None
}

fn certificate_error(error: &io::Error) -> Option<CertificateError> {
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(e) => Some(e.clone()),
        _ => None,
    }
}

/// The verdict in words.
fn describe(error: &CertificateError, host: &str, trusted: &str) -> String {
    match error {
        CertificateError::UnknownIssuer => format!(
            "the broker's certificate is not signed by a CA kvault trusts (unknown CA; trusted: \
             {trusted})"
        ),
        CertificateError::NotValidForName => {
            format!("hostname mismatch: the broker's certificate is not valid for {host}")
        }
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "hostname mismatch: the broker's certificate is not valid for {host} (it names {})",
            presented
                .iter()
                .map(|name| plain_name(name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        CertificateError::Expired => "the broker's certificate has expired".to_owned(),
        CertificateError::ExpiredContext { not_after, .. } => format!(
            "the broker's certificate has expired (valid until {})",
            when(not_after)
        ),
        CertificateError::NotValidYet => "the broker's certificate is not valid yet".to_owned(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "the broker's certificate is not valid yet (valid from {})",
            when(not_before)
        ),
        other => format!("the broker's certificate was refused: {other}"),
    }
}

/// `DnsName("b.example")` (how rustls shows a presented name) as `b.example`.
fn plain_name(name: &str) -> &str {
    name.split_once("(\"")
        .and_then(|(_, rest)| rest.strip_suffix("\")"))
        .unwrap_or(name)
}

fn when(time: &UnixTime) -> String {
    chrono::DateTime::from_timestamp(time.as_secs() as i64, 0)
        .map_or_else(|| time.as_secs().to_string(), |t| t.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_hosts() {
        assert_eq!(
            first_address(" SSL://b1:9093, b2:9093").as_deref(),
            Some("b1:9093")
        );
        assert_eq!(host_of("b1:9093"), "b1");
        assert_eq!(host_of("[::1]:9093"), "::1");
    }

    #[test]
    fn verdicts_name_the_cause() {
        let name = describe(
            &CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("127.0.0.1").unwrap(),
                presented: vec!["DnsName(\"wrong.example\")".into()],
            },
            "127.0.0.1",
            "ssl.ca.location /ca.pem",
        );
        assert!(name.starts_with("hostname mismatch"), "{name}");
        assert!(name.ends_with("(it names wrong.example)"), "{name}");
        let ca = describe(
            &CertificateError::UnknownIssuer,
            "h",
            "ssl.ca.location /ca.pem",
        );
        assert!(ca.contains("unknown CA") && ca.contains("/ca.pem"), "{ca}");
        let expired = describe(
            &CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(Duration::from_secs(2_000_000_000)),
                not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
            },
            "h",
            "",
        );
        assert!(
            expired.contains("expired") && expired.contains("2023-11-14"),
            "{expired}"
        );
    }
}
