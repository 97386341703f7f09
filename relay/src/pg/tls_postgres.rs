//! Our rustls configuration ([`super::tls`]) on the two Postgres clients the relay uses.
//!
//! * tokio-postgres: [`PgTls`] is its `MakeTlsConnect`; the driver sends the `SSLRequest` and
//!   hands us the socket. Channel binding is not offered (SCRAM runs without it, as it does
//!   over a plain connection).
//! * pgwire-replication (the replication stream): see [`super::tls_bridge`].

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

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
