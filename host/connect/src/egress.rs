//! Where a connection may connect. An EHR reached by name can be re-pointed by
//! its DNS (rebinding, or a poisoned record) at the gateway's own loopback, a
//! link-local address or a cloud metadata service, and a discovered token
//! endpoint can name one directly. So every address a host name resolves to is
//! checked before the connection is made (the HTTP client resolves through
//! [`GuardedResolver`]), and so is a URL whose host is an IP literal.
//!
//! Refused: loopback (`127.0.0.0/8`, `::1`), link-local (`169.254.0.0/16`, where
//! cloud metadata lives, and `fe80::/10`), the AWS IPv6 metadata address
//! `fd00:ec2::254`, Azure's `168.63.129.16` and Alibaba's `100.100.100.200`,
//! unspecified, broadcast and multicast addresses, also when written as IPv4-mapped,
//! IPv4-compatible or NAT64 (`64:ff9b::/96`) IPv6. The HTTP client uses no proxy
//! (a proxy would resolve names itself, past this check). Private ranges (`10/8`, `172.16/12`,
//! `192.168/16`, `fc00::/7`) are where hospital EHRs live: allowed.
//!
//! Allowed all the same: an address or `localhost` written in the connection's
//! own `base_url` / `token_url` (that is the operator's choice), and everything
//! when the connection sets `allow_internal = true`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why an address is refused, or `None` when it may be reached.
pub fn internal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => internal_v4(a),
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form (::a.b.c.d)
            // carry an IPv4 address in their last 32 bits.
            let s = a.segments();
            if (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[..6] == [0; 6] && !a.is_loopback() && !a.is_unspecified()))
                && let Some(kind) = internal_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
            {
                return Some(kind);
            }
            if a.is_loopback() {
                Some("loopback")
            } else if a.is_unspecified() {
                Some("unspecified")
            } else if a.is_multicast() {
                Some("multicast")
            } else if a.segments()[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if a == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some("cloud metadata")
            } else {
                None
            }
        }
    }
}

fn internal_v4(a: Ipv4Addr) -> Option<&'static str> {
    if a.is_loopback() {
        Some("loopback")
    } else if [Ipv4Addr::new(169, 254, 169, 254), Ipv4Addr::new(168, 63, 129, 16), Ipv4Addr::new(100, 100, 100, 200)].contains(&a) {
        // AWS, GCP, Azure (169.254.169.254 and its wire server), Alibaba Cloud.
        Some("cloud metadata")
    } else if a.is_link_local() {
        Some("link-local")
    } else if a.is_unspecified() {
        Some("unspecified")
    } else if a.is_broadcast() {
        Some("broadcast")
    } else if a.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// A connection's egress rule.
#[derive(Debug, Clone)]
pub struct Egress {
    connection: String,
    allow_internal: bool,
    /// IP literals written in the connection's config.
    configured: Vec<IpAddr>,
    /// Host names written in the connection's config that name this machine
    /// (`localhost`): their loopback answers are the operator's choice.
    configured_local: Vec<String>,
}

/// The error a refused address gives (recognised in the HTTP client's error
/// chain, so that it is reported as a denial and not retried).
#[derive(Debug)]
pub struct EgressRefused(pub String);

impl std::fmt::Display for EgressRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EgressRefused {}

impl Egress {
    /// The rule for `connection`, whose config names `urls` (base and token URL).
    pub fn new(connection: &str, allow_internal: bool, urls: &[&str]) -> Egress {
        let mut configured = Vec::new();
        let mut configured_local = Vec::new();
        for u in urls {
            match url::Url::parse(u).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
                Some(url::Host::Ipv4(a)) => configured.push(IpAddr::V4(a)),
                Some(url::Host::Ipv6(a)) => configured.push(IpAddr::V6(a)),
                Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost") => {
                    configured_local.push(d.to_ascii_lowercase())
                }
                _ => {}
            }
        }
        Egress { connection: connection.to_string(), allow_internal, configured, configured_local }
    }

    /// May `ip` (reached as `host`) be connected to?
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), EgressRefused> {
        if self.allow_internal || self.configured.contains(&ip) || self.configured_local.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Ok(());
        }
        match internal(ip) {
            None => Ok(()),
            Some(kind) => Err(EgressRefused(format!(
                "connection `{}`: {host} is {ip}, a {kind} address; refused (an EHR's name must not lead to the gateway's own \
                 or the cloud's internal addresses; write the address in base_url, or set allow_internal = true, if it is meant)",
                self.connection
            ))),
        }
    }

    /// A URL whose host is an IP literal is checked here (no resolution happens).
    pub fn check_url(&self, url: &str) -> Result<(), EgressRefused> {
        let Ok(u) = url::Url::parse(url) else { return Ok(()) };
        match u.host() {
            Some(url::Host::Ipv4(a)) => self.check(&a.to_string(), IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => self.check(&a.to_string(), IpAddr::V6(a)),
            _ => Ok(()),
        }
    }

    /// Find an [`EgressRefused`] in an error's chain.
    pub fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(x) = cur {
            if let Some(r) = x.downcast_ref::<EgressRefused>() {
                return Some(r.0.clone());
            }
            cur = x.source();
        }
        None
    }
}

/// The HTTP client's resolver: the system's answers, without the refused ones.
/// When every answer is refused the connection fails with the reason.
pub struct GuardedResolver(pub Arc<Egress>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match egress.check(&host, a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.get_or_insert(e);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(e)) => Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_named_and_hospital_networks_are_not() {
        let kind = |s: &str| internal(s.parse().unwrap());
        assert_eq!(kind("127.0.0.1"), Some("loopback"));
        assert_eq!(kind("127.9.9.9"), Some("loopback"));
        assert_eq!(kind("169.254.169.254"), Some("cloud metadata"));
        assert_eq!(kind("169.254.1.1"), Some("link-local"));
        assert_eq!(kind("0.0.0.0"), Some("unspecified"));
        assert_eq!(kind("255.255.255.255"), Some("broadcast"));
        assert_eq!(kind("224.0.0.1"), Some("multicast"));
        assert_eq!(kind("::1"), Some("loopback"));
        assert_eq!(kind("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(kind("::ffff:169.254.169.254"), Some("cloud metadata"));
        assert_eq!(kind("fe80::1"), Some("link-local"));
        assert_eq!(kind("fd00:ec2::254"), Some("cloud metadata"));
        assert_eq!(kind("168.63.129.16"), Some("cloud metadata"));
        assert_eq!(kind("100.100.100.200"), Some("cloud metadata"));
        assert_eq!(kind("64:ff9b::7f00:1"), Some("loopback"), "NAT64 of 127.0.0.1");
        assert_eq!(kind("64:ff9b::a9fe:a9fe"), Some("cloud metadata"));
        assert_eq!(kind("::a9fe:a9fe"), Some("cloud metadata"), "IPv4-compatible 169.254.169.254");
        assert_eq!(kind("64:ff9b::808:808"), None);
        for ok in ["10.1.2.3", "172.16.0.9", "192.168.1.1", "8.8.8.8", "fc00::1", "2001:db8::1"] {
            assert_eq!(kind(ok), None, "{ok}");
        }
    }

    #[test]
    fn what_the_config_names_is_allowed_and_nothing_else_internal() {
        let e = Egress::new("ehr", false, &["http://127.0.0.1:8080/fhir", "https://auth.example/token"]);
        assert!(e.check("127.0.0.1", "127.0.0.1".parse().unwrap()).is_ok());
        assert!(e.check("ehr.example", "10.0.0.5".parse().unwrap()).is_ok());
        let err = e.check("ehr.example", "127.0.0.2".parse().unwrap()).unwrap_err().0;
        assert!(err.contains("connection `ehr`") && err.contains("loopback"), "{err}");
        assert!(e.check_url("http://169.254.169.254/latest/meta-data").unwrap_err().0.contains("cloud metadata"));
        assert!(e.check_url("http://[::1]:80/").is_err());
        assert!(e.check_url("https://auth.example/token").is_ok(), "names are checked when resolved");

        let local = Egress::new("dev", false, &["http://localhost:8080/fhir"]);
        assert!(local.check("localhost", "127.0.0.1".parse().unwrap()).is_ok());
        assert!(local.check("evil.example", "127.0.0.1".parse().unwrap()).is_err());
        let open = Egress::new("lab", true, &["https://lab.example"]);
        assert!(open.check("lab.example", "169.254.169.254".parse().unwrap()).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_answers_and_fails_when_none_is_left() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let guarded = GuardedResolver(Arc::new(Egress::new("ehr", false, &["https://ehr.example"])));
        // `localhost` resolves to loopback only: refused for a connection that
        // does not name it.
        let err = match guarded.resolve(reqwest::dns::Name::from_str("localhost").unwrap()).await {
            Ok(_) => panic!("localhost was resolved for a connection that does not name it"),
            Err(e) => e,
        };
        assert_eq!(Egress::refusal(err.as_ref()).map(|m| m.contains("loopback")), Some(true), "{err}");
        let named = GuardedResolver(Arc::new(Egress::new("dev", false, &["http://localhost:1/"])));
        let addrs: Vec<SocketAddr> = named.resolve(reqwest::dns::Name::from_str("localhost").unwrap()).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
