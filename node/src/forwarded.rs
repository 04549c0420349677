//! Who the client is, as an address: the TCP peer, unless the peer is one of
//! `node.trusted_proxies`, in which case its `X-Forwarded-For` says.
//!
//! Pure and free of actix types, like the decisions in `phases.rs`. The `ip` rate
//! limit scope and the token endpoint's failed-login limit key on this address, so
//! it must not be something a client can choose: an untrusted peer's
//! `X-Forwarded-For` is ignored here (and replaced before the request goes
//! upstream, see `proxy.rs`), and a trusted proxy's list is read from the right,
//! where each proxy appended the address it saw, skipping the trusted hops: the
//! first address that is not a trusted proxy is the client. What a client wrote
//! further left is never reached.

use crate::phases::HeaderLookup;
use cluster_config::TrustedProxies;
use std::net::IpAddr;

pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The client address of a request from `peer` with `headers`; `None` only when the
/// server knows no peer (never for a TCP connection).
///
/// With an untrusted (or no) peer, the peer. With a trusted one, the rightmost
/// `X-Forwarded-For` entry (over every `X-Forwarded-For` line, in order) that is
/// not itself a trusted proxy; when every entry is trusted, the leftmost one; an
/// entry that is not an address stops the walk at the last trusted hop before it
/// (the proxy that passed it on is the nearest address known to be true).
pub fn client_addr(
    peer: Option<IpAddr>,
    headers: &dyn HeaderLookup,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let lines = headers.get_all_str(X_FORWARDED_FOR);
    let mut nearest = peer;
    for entry in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        match parse_entry(entry) {
            Some(addr) if trusted.contains(addr) => nearest = addr,
            Some(addr) => return Some(addr),
            None => return Some(nearest),
        }
    }
    Some(nearest)
}

/// One `X-Forwarded-For` entry: an address, an IPv4 address with a port, or an
/// IPv6 address in brackets with or without a port (some proxies add ports).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(addr) = entry.parse::<IpAddr>() {
        return Some(addr.to_canonical());
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|a| IpAddr::V6(a).to_canonical());
    }
    let (host, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Headers(HashMap<&'static str, Vec<&'static str>>);

    impl HeaderLookup for Headers {
        fn get_str(&self, name: &str) -> Option<&str> {
            self.0.get(name).and_then(|v| v.first().copied())
        }

        fn get_all_str(&self, name: &str) -> Vec<&str> {
            self.0.get(name).cloned().unwrap_or_default()
        }
    }

    fn xff(lines: &[&'static str]) -> Headers {
        Headers(HashMap::from([(X_FORWARDED_FOR, lines.to_vec())]))
    }

    fn trusted(blocks: &[&str]) -> TrustedProxies {
        blocks
            .iter()
            .map(|b| TrustedProxies::parse_block(b).expect("block"))
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn client(peer: &str, lines: &[&'static str], blocks: &[&str]) -> Option<IpAddr> {
        client_addr(Some(ip(peer)), &xff(lines), &trusted(blocks))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(
            client("198.51.100.7", &["203.0.113.1"], &[]),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            client("198.51.100.7", &["203.0.113.1"], &["10.0.0.0/8"]),
            Some(ip("198.51.100.7"))
        );
        // A dual-stack listener's view of an IPv4 peer is the IPv4 address.
        assert_eq!(
            client("::ffff:198.51.100.7", &[], &[]),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(client_addr(None, &xff(&[]), &trusted(&[])), None);
    }

    #[test]
    fn a_trusted_peer_forwards_the_rightmost_untrusted_address() {
        let lb = ["10.0.0.0/8"];
        assert_eq!(
            client("10.0.0.2", &["203.0.113.1"], &lb),
            Some(ip("203.0.113.1"))
        );
        // A client's own entry on the left is never reached.
        assert_eq!(
            client("10.0.0.2", &["1.2.3.4, 203.0.113.1"], &lb),
            Some(ip("203.0.113.1"))
        );
        // Trusted hops on the right are skipped, over several header lines.
        assert_eq!(
            client(
                "10.0.0.2",
                &["1.2.3.4, 203.0.113.1", "10.9.9.9 , 10.0.0.3"],
                &lb
            ),
            Some(ip("203.0.113.1"))
        );
        // Every entry trusted: the leftmost (the farthest hop).
        assert_eq!(
            client("10.0.0.2", &["10.1.1.1, 10.0.0.3"], &lb),
            Some(ip("10.1.1.1"))
        );
        // No header: the proxy itself.
        assert_eq!(client("10.0.0.2", &[], &lb), Some(ip("10.0.0.2")));
        // Garbage stops the walk at the last trusted hop before it.
        assert_eq!(
            client("10.0.0.2", &["203.0.113.1, unknown, 10.0.0.9"], &lb),
            Some(ip("10.0.0.9"))
        );
        assert_eq!(client("10.0.0.2", &["nope"], &lb), Some(ip("10.0.0.2")));
    }

    #[test]
    fn entries_with_ports_and_brackets() {
        let lb = ["10.0.0.0/8", "::1"];
        for (entry, want) in [
            ("203.0.113.1:4711", "203.0.113.1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("::ffff:203.0.113.1", "203.0.113.1"),
        ] {
            let lines: &'static [&'static str] = Box::leak(Box::new([entry]));
            assert_eq!(client("::1", lines, &lb), Some(ip(want)), "{entry}");
        }
    }
}
