//! Requests that carry no valid token, counted per client address.
//!
//! Token holders are rate-limited per subject (`limits.requests_per_minute`). The routes open
//! to anyone (`/health`, `/ready`, `/metrics` unless `server.metrics_auth`) and requests whose
//! token is missing or refused have no subject, so they are counted per client address
//! instead (`limits.anonymous_requests_per_minute`): one client cannot flood the server with
//! scrapes or with forged tokens that each cost a signature check. Behind a reverse proxy
//! every client shares the proxy's address unless `server.trust_forwarded_for` takes the
//! client from `Forwarded`/`X-Forwarded-For` (only when the proxy sets them: a client could
//! otherwise pick any address to be counted under). An IPv6 client is counted by its /64: one
//! host usually holds a whole /64 and could otherwise rotate through its addresses.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;

use actix_web::HttpRequest;

use crate::error::ApiError;
use crate::http::rate_limit::KeyedQuota;

/// Per-address quota for requests without a valid token.
pub struct AddressLimiter {
    quota: KeyedQuota<IpAddr>,
    trust_forwarded_for: bool,
}

impl AddressLimiter {
    pub fn new(per_minute: NonZeroU32, trust_forwarded_for: bool) -> Self {
        Self {
            quota: KeyedQuota::per_minute(per_minute),
            trust_forwarded_for,
        }
    }

    /// Counts every request this limiter refuses in `counter`.
    pub fn counting_refusals(mut self, counter: prometheus::IntCounter) -> Self {
        self.quota = self.quota.counting_refusals(counter);
        self
    }

    /// Counts one request from `req`'s client; 429 with the wait when its quota is spent. A
    /// request whose address is unknown (not over TCP) is not counted.
    pub fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(address) = self.client_address(req).map(client_key) else {
            return Ok(());
        };
        self.quota.check(
            &address,
            "request rate limit reached for this client address (requests without a valid token)",
        )
    }

    /// Drops the state of addresses that have been idle, so memory stays bounded.
    pub fn forget_idle(&self) {
        self.quota.forget_idle();
    }

    fn client_address(&self, req: &HttpRequest) -> Option<IpAddr> {
        if self.trust_forwarded_for {
            let info = req.connection_info();
            if let Some(ip) = info.realip_remote_addr().and_then(parse_address) {
                return Some(ip);
            }
        }
        req.peer_addr().map(|a| a.ip())
    }
}

/// What one client is counted under: an IPv4 address (also when written IPv4-mapped), or the
/// /64 network of an IPv6 address.
fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !0u128 << 64)),
        },
    }
}

/// `1.2.3.4`, `1.2.3.4:567`, `[::1]:80` or `::1`.
fn parse_address(raw: &str) -> Option<IpAddr> {
    raw.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| raw.trim_matches(['[', ']']).parse::<IpAddr>())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn from(ip: &str) -> HttpRequest {
        TestRequest::default()
            .peer_addr(format!("{ip}:40000").parse().unwrap())
            .insert_header(("X-Forwarded-For", "203.0.113.9"))
            .to_http_request()
    }

    #[test]
    fn each_address_has_its_own_quota() {
        let limiter = AddressLimiter::new(NonZeroU32::new(2).unwrap(), false);
        let a = from("10.0.0.1");
        limiter.check(&a).unwrap();
        limiter.check(&a).unwrap();
        let refused = limiter.check(&a).unwrap_err();
        assert_eq!(refused.status.as_u16(), 429);
        limiter.check(&from("10.0.0.2")).unwrap();
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let limiter = AddressLimiter::new(NonZeroU32::new(2).unwrap(), false);
        let v6 = |ip: &str| {
            TestRequest::default()
                .peer_addr(format!("[{ip}]:40000").parse().unwrap())
                .to_http_request()
        };
        limiter.check(&v6("2001:db8:1:2::1")).unwrap();
        limiter.check(&v6("2001:db8:1:2:ffff::9")).unwrap();
        // A third address in the same /64: the same client, over its quota.
        assert!(limiter.check(&v6("2001:db8:1:2:abcd::7")).is_err());
        limiter.check(&v6("2001:db8:1:3::1")).unwrap();
        assert_eq!(
            client_key("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_for_counts_only_when_trusted() {
        let untrusted = AddressLimiter::new(NonZeroU32::new(1).unwrap(), false);
        untrusted.check(&from("10.0.0.1")).unwrap();
        // Another peer, the same forged header: its own quota.
        untrusted.check(&from("10.0.0.2")).unwrap();
        let trusted = AddressLimiter::new(NonZeroU32::new(1).unwrap(), true);
        trusted.check(&from("10.0.0.1")).unwrap();
        // Both carry X-Forwarded-For 203.0.113.9: one client behind the proxy.
        assert!(trusted.check(&from("10.0.0.2")).is_err());
    }

    #[test]
    fn addresses_parse_with_or_without_a_port() {
        for raw in ["1.2.3.4", "1.2.3.4:567", "[::1]:80", "::1"] {
            assert!(parse_address(raw).is_some(), "{raw}");
        }
        assert!(parse_address("unknown").is_none());
    }
}
