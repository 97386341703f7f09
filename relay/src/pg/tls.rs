//! TLS to Postgres with libpq's `sslmode` semantics, on rustls, for every connection the relay
//! makes (the pool, the position writer, the slot claim, `check`, and the replication stream
//! through [`super::tls_postgres`]).
//!
//! | `sslmode` | encrypts | verifies the certificate chain | verifies the host name |
//! |---|---|---|---|
//! | `disable` | never | – | – |
//! | `allow` | only if the server refuses a plain connection | no | no |
//! | `prefer` (default) | when the server offers TLS | no | no |
//! | `require` | always | only when a root certificate is given (then as `verify-ca`) | no |
//! | `verify-ca` | always | yes | no |
//! | `verify-full` | always | yes | yes |
//!
//! Root certificates come from `sslrootcert` (a PEM file), else `~/.postgresql/root.crt` when
//! it exists, as in libpq; `sslrootcert=system` trusts the public web CAs (Mozilla's list,
//! compiled in) and, as in libpq, requires `verify-full`. `sslcert` + `sslkey` give a client
//! certificate. Unix-socket connections never use TLS (libpq ignores `sslmode` there too).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Result<Self, TlsError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(TlsError::BadMode(other.chars().take(40).collect())),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// A connection in this mode never goes unencrypted over TCP.
    pub fn requires_tls(self) -> bool {
        self >= SslMode::Require
    }
}

/// Why the TLS settings of a database URL were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode '{0}' is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    BadMode(String),
    #[error("sslmode={0} needs a root certificate: set sslrootcert=<CA file> (or sslrootcert=system for public CAs)")]
    NoRoot(&'static str),
    #[error("sslrootcert=system needs sslmode=verify-full (it is {0})")]
    SystemRootsNeedVerifyFull(&'static str),
    #[error("cannot read {what} {path}: {reason}")]
    File { what: &'static str, path: String, reason: String },
    #[error("sslcert and sslkey must be given together")]
    HalfClientCert,
    #[error("{0} is not supported; {1}")]
    Unsupported(&'static str, &'static str),
    #[error("TLS configuration refused: {0}")]
    Config(String),
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// No verification (`require` without a root file, `prefer`, `allow`).
    None,
    File(PathBuf),
    /// `sslrootcert=system`: Mozilla's root program, compiled in.
    System,
}

/// The `ssl*` parameters of a connection string, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsParams {
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    pub sslpassword: Option<String>,
    pub sslcrl: Option<String>,
}

/// Validated TLS settings with the rustls configuration they need.
#[derive(Clone)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub roots: Roots,
    pub client_cert: bool,
    /// `None` for `disable`.
    config: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("mode", &self.mode)
            .field("roots", &self.roots)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

/// The crypto provider every relay TLS configuration uses (explicit, so no process default
/// needs installing).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_err(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File { what, path: path.display().to_string(), reason: reason.to_string() }
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let what = "sslrootcert";
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(what, path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(what, path, e))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(read_err(what, path, "no usable certificate in it"));
    }
    Ok(roots)
}

impl TlsSettings {
    /// Validates `params` and loads the files they name. `home` is where libpq's default
    /// `~/.postgresql/root.crt` is looked for.
    pub fn from_params(params: &TlsParams, home: Option<&Path>) -> Result<Self, TlsError> {
        if params.sslpassword.is_some() {
            return Err(TlsError::Unsupported("sslpassword", "give sslkey an unencrypted key file"));
        }
        if params.sslcrl.is_some() {
            return Err(TlsError::Unsupported("sslcrl", "revoke by replacing the server certificate"));
        }
        let mode = params.sslmode.as_deref().map(SslMode::parse).transpose()?;
        let roots = match params.sslrootcert.as_deref() {
            Some("system") => Roots::System,
            Some(path) => Roots::File(PathBuf::from(path)),
            None => match home.map(|h| h.join(".postgresql/root.crt")) {
                Some(p) if p.is_file() && mode.unwrap_or_default() >= SslMode::Require => Roots::File(p),
                _ => Roots::None,
            },
        };
        let mode = match (mode, &roots) {
            (None, Roots::System) => SslMode::VerifyFull,
            (m, _) => m.unwrap_or_default(),
        };
        match (&roots, mode) {
            (Roots::System, SslMode::VerifyFull) => {}
            (Roots::System, m) => return Err(TlsError::SystemRootsNeedVerifyFull(m.as_str())),
            (Roots::None, m @ (SslMode::VerifyCa | SslMode::VerifyFull)) => {
                return Err(TlsError::NoRoot(m.as_str()))
            }
            _ => {}
        }
        let client = match (&params.sslcert, &params.sslkey) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            _ => return Err(TlsError::HalfClientCert),
        };
        // Weaker modes only verify when a root file was named (libpq: require + root = verify-ca).
        let roots = if mode < SslMode::Require { Roots::None } else { roots };
        let config = match mode {
            SslMode::Disable => None,
            _ => Some(Arc::new(client_config(mode, &roots, client.as_ref())?)),
        };
        Ok(TlsSettings { mode, roots, client_cert: client.is_some(), config })
    }

    /// The rustls configuration, `None` for `disable`.
    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        self.config.clone()
    }

    /// How the server is checked, for logs and `check`: "the certificate chain (CA file
    /// /etc/ca.pem) and the host name".
    pub fn verification(&self) -> String {
        let source = match &self.roots {
            Roots::None => return "nothing (the server's certificate is not verified)".into(),
            Roots::File(p) => format!("CA file {}", p.display()),
            Roots::System => "public CAs".into(),
        };
        match self.mode {
            SslMode::VerifyFull => format!("the certificate chain ({source}) and the host name"),
            _ => format!("the certificate chain ({source}), not the host name"),
        }
    }
}

fn client_config(
    mode: SslMode,
    roots: &Roots,
    client: Option<&(PathBuf, PathBuf)>,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let store = match roots {
        Roots::None => None,
        Roots::File(p) => Some(load_roots(p)?),
        Roots::System => Some(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }),
    };
    let verifier: Arc<dyn ServerCertVerifier> = match store {
        None => Arc::new(AnyCertificate(provider.clone())),
        Some(store) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| read_err("sslcert", cert, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| read_err("sslcert", cert, e))?;
            if chain.is_empty() {
                return Err(read_err("sslcert", cert, "no certificate in it"));
            }
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err("sslkey", key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Config(format!("sslcert/sslkey: {e}")))
        }
    }
}

/// `require` / `prefer` / `allow` without roots: any certificate, but the handshake signature
/// must still be made by the key of the certificate presented.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not compared.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the name only after the chain, so a name error means the chain is good.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(mode: Option<&str>, root: Option<&str>) -> TlsParams {
        TlsParams {
            sslmode: mode.map(String::from),
            sslrootcert: root.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn modes_parse_like_libpq_and_prefer_is_the_default() {
        for m in ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] {
            assert_eq!(SslMode::parse(m).unwrap().as_str(), m);
        }
        assert!(matches!(SslMode::parse("strict"), Err(TlsError::BadMode(_))));
        let s = TlsSettings::from_params(&TlsParams::default(), None).unwrap();
        assert_eq!((s.mode, s.roots.clone()), (SslMode::Prefer, Roots::None));
        assert!(s.client_config().is_some(), "prefer may use TLS");
        let s = TlsSettings::from_params(&params(Some("disable"), None), None).unwrap();
        assert!(s.client_config().is_none());
    }

    #[test]
    fn verifying_modes_need_roots_and_system_roots_need_verify_full() {
        let e = TlsSettings::from_params(&params(Some("verify-full"), None), None).unwrap_err();
        assert_eq!(e, TlsError::NoRoot("verify-full"));
        assert!(e.to_string().contains("sslrootcert="), "{e}");
        let s = TlsSettings::from_params(&params(None, Some("system")), None).unwrap();
        assert_eq!((s.mode, s.roots.clone()), (SslMode::VerifyFull, Roots::System));
        let e = TlsSettings::from_params(&params(Some("require"), Some("system")), None).unwrap_err();
        assert_eq!(e, TlsError::SystemRootsNeedVerifyFull("require"));
    }

    #[test]
    fn unreadable_or_empty_root_files_are_named() {
        let e = TlsSettings::from_params(&params(Some("verify-ca"), Some("/nonexistent/ca.pem")), None)
            .unwrap_err();
        assert!(e.to_string().starts_with("cannot read sslrootcert /nonexistent/ca.pem"), "{e}");
        let dir = std::env::temp_dir().join(format!("realtime-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = TlsSettings::from_params(&params(Some("verify-ca"), empty.to_str()), None).unwrap_err();
        assert!(e.to_string().contains("no usable certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_root_file_in_home_upgrades_require_only() {
        let home = std::env::temp_dir().join(format!("realtime-tls-home-{}", std::process::id()));
        std::fs::create_dir_all(home.join(".postgresql")).unwrap();
        std::fs::write(home.join(".postgresql/root.crt"), "garbage").unwrap();
        // prefer ignores it; require would load it (and here fails on its content).
        assert_eq!(TlsSettings::from_params(&params(None, None), Some(&home)).unwrap().roots, Roots::None);
        let e = TlsSettings::from_params(&params(Some("require"), None), Some(&home)).unwrap_err();
        assert!(e.to_string().contains("root.crt"), "{e}");
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn client_certificate_needs_both_files_and_passwords_are_refused() {
        let half = TlsParams { sslcert: Some("/c.pem".into()), ..Default::default() };
        assert_eq!(TlsSettings::from_params(&half, None).unwrap_err(), TlsError::HalfClientCert);
        let pw = TlsParams { sslpassword: Some("x".into()), ..Default::default() };
        assert!(matches!(TlsSettings::from_params(&pw, None), Err(TlsError::Unsupported("sslpassword", _))));
    }
}
