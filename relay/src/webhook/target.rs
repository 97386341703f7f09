//! Which webhook URLs the relay may call: `http`/`https` only, and — unless the relay runs with
//! `--webhook-allow-private` — never a loopback, private, link-local, unspecified, CGNAT,
//! multicast/broadcast or IPv6 unique-local/link-local address, so a channel owner cannot make
//! the relay probe its own network.
//!
//! The check is on the addresses actually connected to: an IP literal is checked before the
//! request ([`check_url`]); a host name is resolved by [`PolicyResolver`], which hands the HTTP
//! client only the addresses that passed, so a DNS answer that changes between a check and the
//! connect (rebinding) cannot reach a refused address. Proxies are disabled for the same reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Why a target was refused. Delivered as the delivery's `last_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "refused: {host} is a {kind} address ({ip}); the relay calls such addresses only when started with --webhook-allow-private"
    )]
    Private { host: String, ip: IpAddr, kind: &'static str },
    #[error("refused: '{0}' is not a valid URL")]
    BadUrl(String),
    #[error("refused: URL scheme must be http or https, not '{0}'")]
    Scheme(String),
    #[error("refused: URL has no host")]
    NoHost,
}

/// The kind of non-public address `ip` is, or `None` when it is public.
pub fn private_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_kind(v4),
            None => v6_kind(v6),
        },
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("CGNAT (shared)")
    } else if ip.is_broadcast() || ip.is_multicast() {
        Some("broadcast/multicast")
    } else {
        None
    }
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// Parses `url` and checks its scheme and, when the host is an IP literal, its address.
pub fn check_url(url: &str, allow_private: bool) -> Result<Url, Refusal> {
    let parsed = Url::parse(url).map_err(|_| Refusal::BadUrl(url.chars().take(200).collect()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Refusal::Scheme(parsed.scheme().to_string()));
    }
    let ip = match parsed.host() {
        None => return Err(Refusal::NoHost),
        Some(url::Host::Domain(_)) => None,
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
    };
    if let (Some(ip), false) = (ip, allow_private) {
        if let Some(kind) = private_kind(ip) {
            return Err(Refusal::Private { host: ip.to_string(), ip, kind });
        }
    }
    Ok(parsed)
}

/// Keeps the addresses the policy allows; refuses when none is left.
pub fn filter_addrs(
    host: &str,
    addrs: Vec<SocketAddr>,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Refusal> {
    if allow_private {
        return Ok(addrs);
    }
    let mut refused = None;
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match private_kind(a.ip()) {
            Some(kind) => {
                refused.get_or_insert((a.ip(), kind));
                false
            }
            None => true,
        })
        .collect();
    match (allowed.is_empty(), refused) {
        (true, Some((ip, kind))) => Err(Refusal::Private { host: host.to_string(), ip, kind }),
        _ => Ok(allowed),
    }
}

/// The HTTP client's DNS resolver: system resolution, then [`filter_addrs`].
#[derive(Debug, Clone, Copy)]
pub struct PolicyResolver {
    pub allow_private: bool,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = filter_addrs(&host, addrs, allow_private)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The [`Refusal`] somewhere in an error's source chain, if any.
pub fn find_refusal(error: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<Refusal>() {
            return Some(r.clone());
        }
        // io::Error::source() skips a custom inner error: look at it directly.
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            if let Some(r) = find_refusal(inner) {
                return Some(r);
            }
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_recognised() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("100.64.0.1", "CGNAT (shared)"),
            ("100.127.255.255", "CGNAT (shared)"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "unique-local"),
            ("fc00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
        ] {
            assert_eq!(private_kind(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for ip in ["8.8.8.8", "100.128.0.1", "172.32.0.1", "2606:4700::1111", "1.1.1.1"] {
            assert_eq!(private_kind(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn ip_literal_urls_are_checked_unless_allowed() {
        let e = check_url("http://127.0.0.1:9/hook", false).unwrap_err();
        assert!(e.to_string().contains("--webhook-allow-private"), "{e}");
        assert!(check_url("http://[::1]:9/hook", false).is_err());
        assert!(check_url("http://127.0.0.1:9/hook", true).is_ok());
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert!(check_url("https://93.184.215.14/hook", false).is_ok());
    }

    #[test]
    fn bad_urls_and_schemes_are_refused() {
        assert!(matches!(check_url("not a url", true), Err(Refusal::BadUrl(_))));
        assert!(matches!(check_url("ftp://example.com/x", true), Err(Refusal::Scheme(s)) if s == "ftp"));
        assert!(matches!(check_url("file:///etc/passwd", true), Err(Refusal::Scheme(_))));
    }

    #[test]
    fn resolved_addresses_keep_only_public_ones_and_refuse_when_none() {
        let public: SocketAddr = "93.184.215.14:0".parse().unwrap();
        let private: SocketAddr = "10.0.0.1:0".parse().unwrap();
        assert_eq!(filter_addrs("h", vec![private, public], false).unwrap(), vec![public]);
        let e = filter_addrs("h", vec![private], false).unwrap_err();
        assert!(matches!(e, Refusal::Private { kind: "private", .. }));
        assert_eq!(filter_addrs("h", vec![private], true).unwrap(), vec![private]);
    }

    #[test]
    fn refusal_is_found_in_a_source_chain() {
        let inner = Refusal::NoHost;
        let outer = std::io::Error::other(inner.clone());
        assert_eq!(find_refusal(&outer), Some(inner));
    }
}
