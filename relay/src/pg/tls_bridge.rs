//! The replication stream's encrypted connection. pgwire-replication has TLS of its own, but
//! with no way to give it a verifier, and its `verify-ca` refuses certificates whose name
//! differs (it misses rustls' `NotValidForNameContext`). So the relay makes the encrypted
//! connection itself, with the same rustls configuration as every other connection
//! ([`super::tls`]), and lends it to the stream through a [`bridge`]: a Unix socket in a fresh
//! directory only the relay's user may enter, accepted once and removed at once, copied to the
//! TLS stream. Plain connections (`disable`, or a server without TLS under `prefer`) need no
//! bridge.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener};
use tokio_postgres::config::Host;

use super::db::Database;

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
