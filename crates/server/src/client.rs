//! The client's address, decided once per request for the API and the pages alike.
//!
//! The connection's peer is the client, unless the peer is a trusted proxy
//! (`http.trusted_proxies`, e.g. the load balancer `crescendo up` starts): then the client is
//! the right-most address of `X-Forwarded-For` that is not itself trusted. Each proxy
//! appends the address it got the request from, so everything right of that address was
//! written by trusted proxies, and everything left of it by the client, who may write
//! anything.

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use crescendo_app::ClientAddr;
use crescendo_config::IpBlock;
use http::HeaderMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Puts the request's [`ClientAddr`] in its extensions, for handlers to take.
pub(crate) async fn remember(trusted: Arc<[IpBlock]>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(peer) = peer {
        let client = client_of(peer, req.headers(), &trusted);
        req.extensions_mut().insert(ClientAddr(client));
    }
    next.run(req).await
}

/// The client of a request from `peer` with `headers`.
fn client_of(peer: IpAddr, headers: &HeaderMap, trusted: &[IpBlock]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|b| b.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    // every X-Forwarded-For line, in order, as one list
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip.to_canonical();
                if !is_trusted(client) {
                    break;
                }
            }
            // not an address: nothing left of here can be believed, so the last trusted
            // hop stands for the client
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", l.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses_count_only_from_a_trusted_peer() {
        let trusted: Vec<IpBlock> = vec!["127.0.0.1".parse().unwrap()];
        let h = headers(&["198.51.100.9"]);
        assert_eq!(
            client_of(ip("192.0.2.1"), &h, &trusted),
            ip("192.0.2.1"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(client_of(ip("127.0.0.1"), &h, &trusted), ip("198.51.100.9"));
        assert_eq!(client_of(ip("127.0.0.1"), &h, &[]), ip("127.0.0.1"));
        assert_eq!(
            client_of(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1"),
            "no header: the proxy itself"
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted: Vec<IpBlock> =
            vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        // the client wrote a fake first hop; the edge proxy (10.1.1.1) appended the real one
        let h = headers(&["6.6.6.6, 203.0.113.5", "10.1.1.1"]);
        assert_eq!(client_of(ip("127.0.0.1"), &h, &trusted), ip("203.0.113.5"));
        let h = headers(&["garbage, 10.1.1.1"]);
        assert_eq!(client_of(ip("127.0.0.1"), &h, &trusted), ip("10.1.1.1"));
        let h = headers(&["::ffff:203.0.113.5"]);
        assert_eq!(client_of(ip("127.0.0.1"), &h, &trusted), ip("203.0.113.5"));
    }
}
