//! `realtime-relay healthcheck`: `GET http://<bind>/healthz` and exit 0 on HTTP 200, 1 otherwise.
//! For container `HEALTHCHECK`s in images without curl. A wildcard bind address (`0.0.0.0`,
//! `[::]`) is reached through loopback.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Why the relay is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{addr}: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("{addr}/healthz answered {status_line:?}")]
    Unhealthy { addr: SocketAddr, status_line: String },
}

/// The address to connect to for a relay bound to `bind`.
pub fn target(bind: SocketAddr) -> SocketAddr {
    let mut addr = bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    addr
}

/// Asks `/healthz`; `Ok` on HTTP 200 within `timeout`.
pub fn check(bind: SocketAddr, timeout: Duration) -> Result<(), HealthError> {
    let addr = target(bind);
    let io = |source| HealthError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(io)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') {
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default().trim().to_string();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(HealthError::Unhealthy { addr, status_line })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_bind_is_checked_through_loopback() {
        let t = |s: &str| target(s.parse().unwrap()).to_string();
        assert_eq!(t("0.0.0.0:4000"), "127.0.0.1:4000");
        assert_eq!(t("[::]:4000"), "[::1]:4000");
        assert_eq!(t("10.1.2.3:80"), "10.1.2.3:80");
    }

    #[test]
    fn closed_port_is_unhealthy() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = check(format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, HealthError::Io { .. }), "{e}");
    }
}
