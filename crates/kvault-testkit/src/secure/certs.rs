//! Certificates made at test time with `rcgen`: a CA, a broker certificate it signs (valid for
//! `localhost` and `127.0.0.1`, or only for another host, or expired), and an unrelated CA a
//! client may wrongly trust. Written as PEM files into a temporary directory.

use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, Utc};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// What the broker's certificate is like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCert {
    /// Signed by the test CA, valid now, for `localhost` and `127.0.0.1`.
    Valid,
    /// Signed by the test CA, valid now, but only for `wrong.example`.
    WrongHost,
    /// Signed by the test CA, for the right names, expired since 2020.
    Expired,
}

/// PEM files of one test's certificates.
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// A fresh CA, a broker certificate of kind `cert` signed by it, and an unrelated CA.
    pub fn new(cert: ServerCert) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let (ca_pem, issuer) = new_ca("kvault test CA")?;
        let (other_pem, _) = new_ca("some other CA")?;
        let (server_pem, key_pem) = server_certificate(cert, &issuer)?;
        let (client_pem, client_key) = client_certificate(&issuer)?;
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).map_err(|e| format!("write {name}: {e}"))
        };
        write("ca.pem", &ca_pem)?;
        write("other-ca.pem", &other_pem)?;
        write("server.pem", &server_pem)?;
        write("server.key", &key_pem)?;
        write("client.pem", &client_pem)?;
        write("client.key", &client_key)?;
        Ok(Self { dir })
    }

    /// The CA that signed the broker's certificate (`ssl.ca.location`).
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A CA that did not sign the broker's certificate.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    /// The broker's certificate chain and key (`nisshi broker --cert --key`).
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (self.path("server.pem"), self.path("server.key"))
    }

    /// A client certificate and key signed by the CA (for mutual TLS settings).
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.path("client.pem"), self.path("client.key"))
    }

    /// The directory holding the files (for tests that write more, e.g. secret files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn new_ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>), String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let ((y0, m0, d0), (y1, m1, d1)) = (ymd(-1), ymd(30));
    params.not_before = date_time_ymd(y0, m0, d0);
    params.not_after = date_time_ymd(y1, m1, d1);
    let key = KeyPair::generate().map_err(|e| format!("CA key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("CA certificate: {e}"))?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

fn server_certificate(
    kind: ServerCert,
    issuer: &Issuer<'static, KeyPair>,
) -> Result<(String, String), String> {
    let names: Vec<String> = match kind {
        ServerCert::WrongHost => vec!["wrong.example".into()],
        ServerCert::Valid | ServerCert::Expired => vec!["localhost".into(), "127.0.0.1".into()],
    };
    let mut params = CertificateParams::new(names).map_err(|e| e.to_string())?;
    if kind != ServerCert::WrongHost {
        // Also as a DNS name: an OpenSSL older than 3.0 checks an IP literal against DNS
        // names only.
        let ip_as_dns = "127.0.0.1".try_into().map_err(|e| format!("{e}"))?;
        params.subject_alt_names.push(SanType::DnsName(ip_as_dns));
    }
    params
        .distinguished_name
        .push(DnType::CommonName, "kvault test broker");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let ((y0, m0, d0), (y1, m1, d1)) = match kind {
        ServerCert::Expired => ((2020, 1, 1), (2020, 1, 2)),
        _ => (ymd(-1), ymd(30)),
    };
    params.not_before = date_time_ymd(y0, m0, d0);
    params.not_after = date_time_ymd(y1, m1, d1);
    let key = KeyPair::generate().map_err(|e| format!("broker key: {e}"))?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| format!("broker certificate: {e}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn client_certificate(issuer: &Issuer<'static, KeyPair>) -> Result<(String, String), String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name.push(DnType::CommonName, "kvault");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let ((y0, m0, d0), (y1, m1, d1)) = (ymd(-1), ymd(30));
    params.not_before = date_time_ymd(y0, m0, d0);
    params.not_after = date_time_ymd(y1, m1, d1);
    let key = KeyPair::generate().map_err(|e| format!("client key: {e}"))?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| format!("client certificate: {e}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Year, month and day `days` days from today (UTC).
fn ymd(days: i64) -> (i32, u8, u8) {
    let day = (Utc::now() + Duration::days(days)).date_naive();
    (day.year(), day.month() as u8, day.day() as u8)
}
