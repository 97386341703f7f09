//! The database the relay talks to: `--database-url` split into what tokio-postgres parses and
//! the `ssl*` parameters it does not know ([`super::tls`]), and connections made with both, with
//! libpq's fallbacks: `allow` retries with TLS when the server refuses a plain connection,
//! `prefer` retries without TLS when the server refuses the encrypted one.
//!
//! Both connection-string forms are accepted: `postgres://user@host/db?sslmode=verify-full&...`
//! and `host=... sslmode=verify-full ...` (values quoted with `'...'` as in libpq).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::{Client, NoTls};

use super::tls::{SslMode, TlsError, TlsParams, TlsSettings};
use super::tls_postgres::PgTls;

/// Why a connection string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbUrlError {
    #[error("{0}")]
    Parse(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A parsed connection string (see the module docs).
#[derive(Debug, Clone)]
pub struct Database {
    /// Everything but TLS; `ssl_mode` is set from [`Self::tls`].
    pub pg: tokio_postgres::Config,
    pub tls: TlsSettings,
}

/// A live connection: the client, the task driving it, and whether it is encrypted.
pub struct Connection {
    pub client: Client,
    pub task: JoinHandle<()>,
    pub tls: bool,
}

impl Database {
    pub fn parse(url: &str) -> Result<Self, DbUrlError> {
        let (rest, params) = split_tls_params(url)?;
        let mut pg: tokio_postgres::Config =
            rest.parse().map_err(|e: tokio_postgres::Error| DbUrlError::Parse(e.to_string()))?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let tls = TlsSettings::from_params(&params, home.as_deref())?;
        let only_sockets =
            !pg.get_hosts().is_empty() && pg.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
        pg.ssl_mode(match tls.mode {
            // libpq never uses TLS on Unix sockets, whatever sslmode says.
            _ if only_sockets => PgSslMode::Disable,
            SslMode::Disable | SslMode::Allow => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        Ok(Database { pg, tls })
    }

    /// Whether connections go over a Unix socket (never encrypted).
    pub fn is_unix_socket(&self) -> bool {
        matches!(self.pg.get_hosts().first(), Some(Host::Unix(_)))
    }

    /// Connects as libpq would with this `sslmode` (see the module docs).
    pub async fn connect(&self) -> Result<Connection, tokio_postgres::Error> {
        let Some(config) = self.tls.client_config().filter(|_| !self.is_unix_socket()) else {
            return plain(&self.pg).await;
        };
        let tls = PgTls::new(config);
        match self.tls.mode {
            SslMode::Allow => match plain(&self.pg).await {
                Err(e) if e.as_db_error().is_some() => {
                    let mut pg = self.pg.clone();
                    pg.ssl_mode(PgSslMode::Require);
                    encrypted(&pg, tls).await
                }
                other => other,
            },
            SslMode::Prefer => match encrypted(&self.pg, tls.clone()).await {
                Err(e) if e.as_db_error().is_some() && tls.used.load(Ordering::Relaxed) => {
                    let mut pg = self.pg.clone();
                    pg.ssl_mode(PgSslMode::Disable);
                    plain(&pg).await
                }
                other => other,
            },
            _ => encrypted(&self.pg, tls).await,
        }
    }

    /// `sslmode=verify-full (the certificate chain (CA file ...) and the host name)`.
    pub fn describe_tls(&self) -> String {
        if self.is_unix_socket() {
            return "Unix socket: never encrypted".into();
        }
        format!("sslmode={}, verifying {}", self.tls.mode.as_str(), self.tls.verification())
    }
}

fn drive<T>(connection: T) -> JoinHandle<()>
where
    T: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection closed");
        }
    })
}

async fn plain(pg: &tokio_postgres::Config) -> Result<Connection, tokio_postgres::Error> {
    let (client, connection) = pg.connect(NoTls).await?;
    Ok(Connection { client, task: drive(connection), tls: false })
}

async fn encrypted(pg: &tokio_postgres::Config, tls: PgTls) -> Result<Connection, tokio_postgres::Error> {
    let used = tls.used.clone();
    let (client, connection) = pg.connect(tls).await?;
    Ok(Connection { client, task: drive(connection), tls: used.load(Ordering::Relaxed) })
}

/// deadpool's hook: every pooled connection is made by [`Database::connect`].
pub struct PoolConnect(pub Arc<Database>);

impl deadpool_postgres::Connect for PoolConnect {
    fn connect(
        &self,
        _pg: &tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        Box::pin(async move {
            let c = self.0.connect().await?;
            Ok((c.client, c.task))
        })
    }
}

const TLS_KEYS: [&str; 6] = ["sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl"];

fn take(params: &mut TlsParams, key: &str, value: String) {
    let slot = match key {
        "sslmode" => &mut params.sslmode,
        "sslrootcert" => &mut params.sslrootcert,
        "sslcert" => &mut params.sslcert,
        "sslkey" => &mut params.sslkey,
        "sslpassword" => &mut params.sslpassword,
        _ => &mut params.sslcrl,
    };
    *slot = Some(value);
}

/// Splits the `ssl*` parameters off a connection string; returns the rest unchanged otherwise.
pub fn split_tls_params(url: &str) -> Result<(String, TlsParams), DbUrlError> {
    let mut params = TlsParams::default();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), params)) };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key)?;
            if TLS_KEYS.contains(&key.as_str()) {
                take(&mut params, &key, percent_decode(value)?);
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        return Ok((rest, params));
    }
    let mut kept = Vec::new();
    for (key, value) in key_values(url)? {
        if TLS_KEYS.contains(&key.as_str()) {
            take(&mut params, &key, value);
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Ok((kept.join(" "), params))
}

fn percent_decode(s: &str) -> Result<String, DbUrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            let byte = byte.ok_or_else(|| DbUrlError::Parse(format!("invalid percent-encoding in '{s}'")))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DbUrlError::Parse(format!("'{s}' is not UTF-8 once decoded")))
}

/// libpq's `key = value` list: values bare (backslash escapes) or in single quotes.
fn key_values(s: &str) -> Result<Vec<(String, String)>, DbUrlError> {
    let bad = |m: &str| DbUrlError::Parse(format!("invalid connection string: {m}"));
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(&format!("'{key}' has no '='")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(bad("unterminated quoted value")),
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or_else(|| bad("trailing backslash"))?),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                match c {
                    '\\' => value.push(chars.next().ok_or_else(|| bad("trailing backslash"))?),
                    c => value.push(c),
                }
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_form_loses_only_its_ssl_parameters() {
        let (rest, p) = split_tls_params(
            "postgres://u:p@db.example:6543/app?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db.example:6543/app?application_name=x");
        assert_eq!(
            (p.sslmode.as_deref(), p.sslrootcert.as_deref()),
            (Some("verify-full"), Some("/etc/ca.pem"))
        );
        let (rest, p) = split_tls_params("postgresql://u@h/d?sslmode=disable").unwrap();
        assert_eq!((rest.as_str(), p.sslmode.as_deref()), ("postgresql://u@h/d", Some("disable")));
        assert_eq!(split_tls_params("postgres://u@h/d").unwrap().0, "postgres://u@h/d");
    }

    #[test]
    fn key_value_form_keeps_quoting_and_escapes() {
        let (rest, p) = split_tls_params(
            r"host=db port = 5433 password='it\'s a \\ pass' sslmode=require sslcert='/a b/c.pem'",
        )
        .unwrap();
        assert_eq!(rest, r"host='db' port='5433' password='it\'s a \\ pass'");
        assert_eq!((p.sslmode.as_deref(), p.sslcert.as_deref()), (Some("require"), Some("/a b/c.pem")));
        let cfg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(cfg.get_password(), Some(&br"it's a \ pass"[..]));
        assert!(split_tls_params("host='db").is_err());
        assert!(split_tls_params("host").is_err());
    }

    #[test]
    fn sslmode_maps_onto_the_driver_and_sockets_never_use_tls() {
        let db = Database::parse("postgres://u@h/d?sslmode=require").unwrap();
        assert_eq!((db.tls.mode, db.pg.get_ssl_mode()), (SslMode::Require, PgSslMode::Require));
        let db = Database::parse("postgres://u@h/d").unwrap();
        assert_eq!((db.tls.mode, db.pg.get_ssl_mode()), (SslMode::Prefer, PgSslMode::Prefer));
        let db = Database::parse("host=/tmp user=u sslmode=require").unwrap();
        assert_eq!(db.pg.get_ssl_mode(), PgSslMode::Disable);
        assert!(db.describe_tls().contains("Unix socket"));
        let e = Database::parse("postgres://u@h/d?sslmode=verify-full").unwrap_err();
        assert!(matches!(e, DbUrlError::Tls(TlsError::NoRoot("verify-full"))), "{e}");
        let e = Database::parse("postgres://u@h/d?sslmode=bogus").unwrap_err();
        assert!(e.to_string().contains("sslmode 'bogus'"), "{e}");
        assert!(Database::parse("postgres://host:notaport/db").is_err());
    }
}
