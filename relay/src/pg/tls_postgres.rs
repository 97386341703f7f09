//! Our rustls configuration ([`super::tls`]) on the two Postgres clients the relay uses.
//!
//! * tokio-postgres: [`PgTls`] is its `MakeTlsConnect`; the driver sends the `SSLRequest` and
//!   hands us the socket. Channel binding is not offered (SCRAM runs without it, as it does
//!   over a plain connection).
//! * pgwire-replication (the replication stream) has TLS of its own, but with no way to give
//!   it a verifier, and its `verify-ca` refuses certificates whose name differs (it misses
//!   rustls' `NotValidForNameContext`). So the relay makes the encrypted connection itself and
//!   lends it to the stream through a [`bridge`]: a Unix socket in a fresh directory only the
//!   relay's user may enter, accepted once and removed at once, copied to the TLS stream.
//!   Plain connections (`disable`, or a server without TLS under `prefer`) need no bridge.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixListener};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use super::db::Database;

/// tokio-postgres' TLS hook. `used` turns true once a handshake was attempted (the server
/// accepted the `SSLRequest`), which tells `prefer` connections apart.
#[derive(Clone)]
pub struct PgTls {
    config: Arc<ClientConfig>,
    pub used: Arc<AtomicBool>,
}

impl PgTls {
    pub fn new(config: Arc<ClientConfig>) -> Self {
        PgTls { config, used: Arc::new(AtomicBool::new(false)) }
    }
}

/// One connection's handshake: the configuration and the name to verify.
pub struct PgTlsConnect {
    config: Arc<ClientConfig>,
    name: Option<ServerName<'static>>,
    used: Arc<AtomicBool>,
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<PgTlsConnect> {
        // Empty for Unix sockets, which never get this far (see `Database::parse`).
        let name = ServerName::try_from(domain.to_string()).ok();
        Ok(PgTlsConnect { config: self.config.clone(), name, used: self.used.clone() })
    }
}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            self.used.store(true, Ordering::Relaxed);
            let name = self.name.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no host name to check the server certificate against",
                )
            })?;
            let tls = tokio_rustls::TlsConnector::from(self.config).connect(name, stream).await?;
            Ok(TlsStream(tls))
        })
    }
}

/// An encrypted connection as tokio-postgres sees it.
pub struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// The port in the bridge's socket name (`<dir>/.s.PGSQL.<port>`, as Postgres names sockets).
pub const BRIDGE_PORT: u16 = 5432;
/// How long the bridge waits for the replication client to connect.
const ACCEPT_WAIT: Duration = Duration::from_secs(30);
/// Copy buffer per direction: the stream carries whole transactions.
const COPY_BUFFER: usize = 64 * 1024;

/// An encrypted connection waiting on a Unix socket in `dir` (see the module docs).
#[derive(Debug)]
pub struct Bridge {
    pub dir: PathBuf,
}

/// Opens an encrypted connection to `db`'s first TCP host and a private Unix socket that
/// leads to it, for exactly one client.
pub async fn bridge(db: &Database) -> io::Result<Bridge> {
    let config = db.tls.client_config().ok_or_else(|| io::Error::other("sslmode=disable has no TLS"))?;
    let host = match db.pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => return Err(io::Error::other("TLS needs a TCP host")),
    };
    let port = db.pg.get_ports().first().copied().unwrap_or(5432);
    let name = ServerName::try_from(host.clone()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("'{host}' is not a valid host name"))
    })?;
    let mut tcp = TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    // SSLRequest: length 8, code 80877103.
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await?;
    if tcp.read_u8().await? != b'S' {
        return Err(io::Error::other("the server does not offer TLS"));
    }
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake with {host}:{port} failed: {e}")))?;

    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "realtime-relay-{}-{}-{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    ));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    }
    let socket = dir.join(format!(".s.PGSQL.{BRIDGE_PORT}"));
    let listener = match UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let cleanup = dir.clone();
    tokio::spawn(async move {
        let accepted = tokio::time::timeout(ACCEPT_WAIT, listener.accept()).await;
        drop(listener);
        let _ = std::fs::remove_dir_all(&cleanup);
        let (mut local, mut remote) = match accepted {
            Ok(Ok((local, _))) => (local, tls),
            _ => return,
        };
        let copied =
            tokio::io::copy_bidirectional_with_sizes(&mut local, &mut remote, COPY_BUFFER, COPY_BUFFER).await;
        if let Err(e) = copied {
            tracing::debug!(error = %e, "replication TLS bridge closed");
        }
    });
    Ok(Bridge { dir })
}
