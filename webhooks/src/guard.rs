//! The SSRF guard: webhook URLs must not reach this machine or its private
//! network (loopback, private, link-local, multicast, unspecified; v4 and
//! v6, IPv4-mapped v6 included; 169.254.169.254, the cloud metadata
//! service, is link-local). Checked when a subscription is saved, and again
//! at delivery through the HTTP client's resolver, so a DNS answer that
//! changed in between is caught where it is used. `allow_private` lifts it
//! for local development and tests.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use crate::Error;

/// Whether webhooks may reach private addresses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Guard {
    pub allow_private: bool,
}

impl Guard {
    /// Parses and checks a subscription URL: `http(s)`, a host, no
    /// credentials, and (unless allowed) only public addresses.
    pub async fn check(&self, url: &str) -> Result<Url, Error> {
        let parsed = syntax(url)?;
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addrs = self.resolve(&host, port).await?;
        if addrs.is_empty() {
            return Err(Error::Forbidden(format!("{host} resolves to no address")));
        }
        Ok(parsed)
    }

    /// The addresses of `host` that webhooks may reach; an error if it
    /// resolves only to forbidden ones.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                let lookup = tokio::net::lookup_host((bare, port));
                let resolved = tokio::time::timeout(std::time::Duration::from_secs(5), lookup)
                    .await
                    .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 5 s")));
                resolved
                    .map_err(|source| Error::Resolve {
                        host: host.to_owned(),
                        source,
                    })?
                    .collect()
            }
        };
        if self.allow_private {
            return Ok(addrs);
        }
        match addrs.iter().find(|a| forbidden(a.ip())) {
            Some(bad) => Err(Error::Forbidden(format!(
                "{host} resolves to {}, a loopback, private, link-local, multicast or unspecified address; \
                 set NODAI_WEBHOOK_ALLOW_PRIVATE=1 to allow it in development",
                bad.ip()
            ))),
            None => Ok(addrs),
        }
    }
}

/// The URL's shape alone.
pub fn syntax(url: &str) -> Result<Url, Error> {
    let parsed = Url::parse(url).map_err(|e| Error::InvalidUrl(format!("url is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::InvalidUrl("url must be http:// or https://".into()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Error::InvalidUrl("url needs a host".into()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::InvalidUrl("url may not hold credentials".into()));
    }
    if url.len() > 2048 {
        return Err(Error::InvalidUrl("url is longer than 2048 characters".into()));
    }
    Ok(parsed)
}

/// True for addresses a webhook must not reach.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254.0.0/16, the metadata service included
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking networks
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let first = s[0];
    // IPv4 carried inside IPv6: NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(embedded(s[6], s[7]));
    }
    if first == 0x2002 {
        return forbidden_v4(embedded(s[1], s[2]));
    }
    (first == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 (64:ff9b:1::/48)
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still private)
        || ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local (private)
        || (first & 0xffc0) == 0xfe80 // link-local
        || ip.to_ipv4().is_some_and(|v4| ip.segments()[..6] == [0; 6] && forbidden_v4(v4))
    // IPv4-compatible
}

/// The delivery client's resolver: the guard applied to every connection.
pub(crate) struct GuardedResolver(pub Guard);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0;
        Box::pin(async move {
            let addrs = guard
                .resolve(name.as_str(), 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

impl GuardedResolver {
    pub(crate) fn shared(guard: Guard) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver(guard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:5",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:a00:5::",
            "2002:a9fe:a9fe::1",
            "fec0::1",
            "198.18.0.1",
            "192.0.0.8",
        ] {
            assert!(forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_by_shape_and_address() {
        let guard = Guard::default();
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://[::1]/hook",
            "http://[::ffff:169.254.169.254]/latest",
            "http://169.254.169.254/latest/meta-data",
            "https://10.0.0.5/",
        ] {
            assert!(matches!(guard.check(url).await, Err(Error::Forbidden(_))), "{url}");
        }
        for url in [
            "ftp://example.com/",
            "not a url",
            "http://user:pw@example.com/",
            "file:///etc/passwd",
        ] {
            assert!(matches!(guard.check(url).await, Err(Error::InvalidUrl(_))), "{url}");
        }
        let open = Guard { allow_private: true };
        assert!(open.check("http://127.0.0.1:8080/hook").await.is_ok());
        assert!(open.check("http://localhost:1/hook").await.is_ok());
    }
}
