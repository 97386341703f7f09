//! Which webhook URLs the relay may call: `http`/`https` only, and — unless the relay runs with
//! `--webhook-allow-private` — never an address that is not globally reachable (loopback,
//! private, link-local, CGNAT, documentation, benchmarking, reserved, multicast, IPv6
//! unique-local, 6to4, and the rest of the IANA special-purpose registries: [`V4_BLOCKS`],
//! [`V6_BLOCKS`]), so a channel owner cannot make the relay probe its own network.
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

/// IPv4 blocks that are not globally reachable, from the IANA IPv4 Special-Purpose Address
/// Registry ("Globally Reachable: False", and the deprecated 6to4 relay anycast), plus
/// multicast: `(network, prefix length, kind)`. The standard library's `is_global` is still
/// unstable, and the small crates that copy it lag behind the registry, so the registry is
/// spelled out here, one row per entry, each covered by a test.
const V4_BLOCKS: &[(u32, u8, &str)] = &[
    (0x0000_0000, 8, "unspecified"),               // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8, "private"),                   // 10.0.0.0/8
    (0x6440_0000, 10, "CGNAT (shared)"),           // 100.64.0.0/10
    (0x7f00_0000, 8, "loopback"),                  // 127.0.0.0/8
    (0xa9fe_0000, 16, "link-local"),               // 169.254.0.0/16
    (0xac10_0000, 12, "private"),                  // 172.16.0.0/12
    (0xc000_0000, 24, "IETF protocol assignment"), // 192.0.0.0/24
    (0xc000_0200, 24, "documentation"),            // 192.0.2.0/24 TEST-NET-1
    (0xc058_6300, 24, "deprecated 6to4 relay"),    // 192.88.99.0/24
    (0xc0a8_0000, 16, "private"),                  // 192.168.0.0/16
    (0xc612_0000, 15, "benchmarking"),             // 198.18.0.0/15
    (0xc633_6400, 24, "documentation"),            // 198.51.100.0/24 TEST-NET-2
    (0xcb00_7100, 24, "documentation"),            // 203.0.113.0/24 TEST-NET-3
    (0xe000_0000, 4, "broadcast/multicast"),       // 224.0.0.0/4 multicast
    (0xf000_0000, 4, "reserved"),                  // 240.0.0.0/4 (255.255.255.255 included)
];

/// IPv6 blocks that are not globally reachable, from the IANA IPv6 Special-Purpose Address
/// Registry, plus multicast and the deprecated site-local block. Forms that carry an IPv4
/// address (IPv4-mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96`) are judged by that address
/// instead, in [`private_kind`].
const V6_BLOCKS: &[(u128, u8, &str)] = &[
    (0, 128, "unspecified"),                           // ::/128
    (1, 128, "loopback"),                              // ::1/128
    (0, 96, "IPv4-compatible (deprecated)"),           // ::/96
    (0x0064_ff9b_0001 << 80, 48, "local-use NAT64"),   // 64:ff9b:1::/48
    (0x0100 << 112, 64, "discard-only"),               // 100::/64
    (0x0100_0000_0000_0001 << 64, 64, "dummy prefix"), // 100:0:0:1::/64
    (0x2001 << 112, 23, "IETF protocol assignment"),   // 2001::/23 (Teredo, benchmarking, ORCHID)
    (0x2001_0db8 << 96, 32, "documentation"),          // 2001:db8::/32
    (0x2002 << 112, 16, "6to4"),                       // 2002::/16
    (0x3fff << 112, 20, "documentation"),              // 3fff::/20
    (0x5f00 << 112, 16, "segment routing (SRv6) SID"), // 5f00::/16
    (0xfc00 << 112, 7, "unique-local"),                // fc00::/7
    (0xfe80 << 112, 10, "link-local"),                 // fe80::/10
    (0xfec0 << 112, 10, "site-local (deprecated)"),    // fec0::/10
    (0xff00 << 112, 8, "multicast"),                   // ff00::/8
];

/// NAT64 well-known prefix `64:ff9b::/96`: the last 32 bits are the IPv4 address reached.
const NAT64: u128 = 0x0064_ff9b << 96;

fn in_block<T>(addr: T, net: T, len: u8, bits: u8) -> bool
where
    T: Copy + std::ops::Shr<u32, Output = T> + PartialEq,
{
    let shift = u32::from(bits - len);
    len == 0 || (shift < u32::from(bits) && addr >> shift == net >> shift)
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
    let a = u32::from(ip);
    V4_BLOCKS.iter().find(|(net, len, _)| in_block(a, *net, *len, 32)).map(|(_, _, kind)| *kind)
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let a = u128::from(ip);
    if a >> 32 == NAT64 >> 32 {
        return v4_kind(Ipv4Addr::from(a as u32));
    }
    V6_BLOCKS.iter().find(|(net, len, _)| in_block(a, *net, *len, 128)).map(|(_, _, kind)| *kind)
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
            ("192.0.0.8", "IETF protocol assignment"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "deprecated 6to4 relay"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "broadcast/multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "reserved"),
            ("::7f00:1", "IPv4-compatible (deprecated)"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::a00:1", "private"),
            ("64:ff9b:1::1", "local-use NAT64"),
            ("100::1", "discard-only"),
            ("100:0:0:1::1", "dummy prefix"),
            ("2001::1", "IETF protocol assignment"),
            ("2001:2::1", "IETF protocol assignment"),
            ("2001:db8::1", "documentation"),
            ("2002:7f00:1::1", "6to4"),
            ("2002:808:808::1", "6to4"),
            ("3fff::1", "documentation"),
            ("5f00::1", "segment routing (SRv6) SID"),
            ("fec0::1", "site-local (deprecated)"),
            ("ff02::1", "multicast"),
        ] {
            assert_eq!(private_kind(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "1.1.1.1",
            "192.0.3.1",
            "198.20.0.1",
            "198.17.255.255",
            "223.255.255.255",
            "64:ff9b::808:808",
            "2001:200::1",
            "2400:cb00::1",
        ] {
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
