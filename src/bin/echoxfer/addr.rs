//! `HOST:PORT` as every address flag takes it (`--listen`, `--to`, and
//! `--addr`, their older spelling for echo and UDP): an IP address or a
//! host name, resolved with the system's resolver (`std::net::ToSocketAddrs`) when the arguments are parsed, so a
//! name that does not resolve is refused at once, named, with what to do.
//!
//! What is done with several resolved addresses (in the resolver's order):
//! - connecting over TCP tries each in turn until one answers;
//! - listening binds the first one that can be bound (one listener: give
//!   an IP address, e.g. `[::]:9999` or `0.0.0.0:9999`, to choose);
//! - a UDP client sends to the first (a datagram has no answer to wait for
//!   before trying the next).

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// An address flag's value: what the user typed, and what it resolved to
/// (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    text: String,
    addrs: Vec<SocketAddr>,
}

impl HostPort {
    /// Resolves `text` (`HOST:PORT`, `IPv4:PORT` or `[IPv6]:PORT`); the
    /// error names it and says what to do. For clap's `value_parser`.
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let hint = "give HOST:PORT, e.g. localhost:9999, 192.0.2.7:9999 or [::1]:9999";
        if let Some((ip, port)) = bare_ipv6_with_port(text) {
            return Err(format!(
                "{text:?} is ambiguous: an IPv6 address takes its port after brackets, \
                 [{ip}]:{port} (give {ip} and port {port} so)"
            ));
        }
        if !has_port(text) {
            return Err(format!("{text:?} has no port: {hint}"));
        }
        let addrs: Vec<SocketAddr> = text
            .to_socket_addrs()
            .map_err(|e| {
                format!(
                    "cannot resolve {text}: {e} (check the host name or the network, or {hint})"
                )
            })?
            .collect();
        HostPort::new(text, addrs).ok_or_else(|| {
            format!("{text} resolves to no address (check the host name, or {hint})")
        })
    }

    /// `text` with these resolved addresses, unless there are none.
    pub fn new(text: &str, addrs: Vec<SocketAddr>) -> Option<HostPort> {
        (!addrs.is_empty()).then(|| HostPort {
            text: text.to_string(),
            addrs,
        })
    }

    /// The resolved addresses, in the resolver's order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The first resolved address (the one a UDP client sends to).
    pub fn first(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Whether only this machine can reach it: every resolved address is
    /// loopback (a name that also resolves to an outside address is not).
    pub fn is_loopback(&self) -> bool {
        self.addrs.iter().all(|a| a.ip().is_loopback())
    }

    /// Binds the first address `bind` accepts, in order; the last error
    /// otherwise (each names its address).
    pub fn bind_first<T>(
        &self,
        mut bind: impl FnMut(SocketAddr) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut last = None;
        for &addr in &self.addrs {
            match bind(addr) {
                Ok(bound) => return Ok(bound),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("a HostPort has at least one address"))
    }
}

/// Whether `text` ends in `:PORT` (`::1` alone is an IPv6 address, not a
/// host and a port).
fn has_port(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let bracketed = host.starts_with('[') && host.ends_with(']');
    !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && (bracketed || !host.contains(':'))
}

/// `::1:9999` as an IPv6 address and a port, without the brackets that
/// tell them apart (`[::1]:9999`): the address and the port, if the text
/// before the last colon is an IPv6 address and the rest a port.
fn bare_ipv6_with_port(text: &str) -> Option<(&str, &str)> {
    let (ip, port) = text.rsplit_once(':')?;
    let is_port = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    (is_port && ip.parse::<std::net::Ipv6Addr>().is_ok()).then_some((ip, port))
}

impl From<SocketAddr> for HostPort {
    fn from(addr: SocketAddr) -> HostPort {
        HostPort {
            text: addr.to_string(),
            addrs: vec![addr],
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ip_addresses_and_localhost_resolve() {
        assert_eq!(
            HostPort::parse("127.0.0.1:9").unwrap().addrs(),
            [at("127.0.0.1:9")]
        );
        assert_eq!(HostPort::parse("[::1]:9").unwrap().addrs(), [at("[::1]:9")]);
        let local = HostPort::parse("localhost:9999").unwrap();
        assert!(local.addrs().iter().all(|a| a.port() == 9999));
        assert!(local.is_loopback());
        assert_eq!(local.to_string(), "localhost:9999");
    }

    #[test]
    fn an_address_without_a_port_is_refused_with_the_syntax() {
        for text in ["localhost", "127.0.0.1", "::1", "host:", "host:x"] {
            let e = HostPort::parse(text).unwrap_err();
            assert!(
                e.contains("no port") && e.contains("HOST:PORT"),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn an_ipv6_address_with_a_port_and_no_brackets_is_explained_with_them() {
        let e = HostPort::parse("::1:9999").unwrap_err();
        assert!(e.contains("[::1]:9999") && !e.contains("no port"), "{e}");
        let e = HostPort::parse("fe80::1:443").unwrap_err();
        assert!(e.contains("[fe80::1]:443"), "{e}");
    }

    #[test]
    fn an_unresolvable_name_is_named_with_what_to_do() {
        let e = HostPort::parse("no-such-host.invalid:9999").unwrap_err();
        assert!(
            e.starts_with("cannot resolve no-such-host.invalid:9999"),
            "{e}"
        );
        assert!(e.contains("check the host name"), "{e}");
    }

    #[test]
    fn loopback_only_if_every_resolved_address_is_loopback() {
        let both = HostPort::new("h:1", vec![at("127.0.0.1:1"), at("[::1]:1")]).unwrap();
        assert!(both.is_loopback());
        let mixed = HostPort::new("h:1", vec![at("127.0.0.1:1"), at("192.0.2.7:1")]).unwrap();
        assert!(!mixed.is_loopback());
        assert!(HostPort::new("h:1", vec![]).is_none());
    }

    #[test]
    fn bind_first_takes_the_first_address_that_binds() {
        let hp = HostPort::new("h:1", vec![at("192.0.2.1:1"), at("127.0.0.1:1")]).unwrap();
        let mut tried = Vec::new();
        let got = hp.bind_first(|a| {
            tried.push(a);
            if a.ip().is_loopback() {
                Ok(a)
            } else {
                Err(io::Error::other(format!("cannot listen on {a}")))
            }
        });
        assert_eq!(got.unwrap(), at("127.0.0.1:1"));
        assert_eq!(tried.len(), 2);
        let e = hp
            .bind_first(|a| Err::<(), _>(io::Error::other(format!("cannot listen on {a}"))))
            .unwrap_err();
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    }
}
