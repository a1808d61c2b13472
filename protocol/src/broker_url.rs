//! The one reader of MQTT broker URLs, for the agent's `broker_url` and the controller's
//! `--broker`: `mqtt://[user[:password]@]host[:port]` (port 1883) or `mqtts://…` (port 8883),
//! `host` a name, an IPv4 address or a bracketed IPv6 literal (`[::1]`). `tcp://` and `ssl://`
//! are accepted as the older spellings of the two schemes.
//!
//! Hand-written rather than through the `url` crate: for a non-special scheme such as `mqtt`
//! `url` leaves the host opaque (unchecked) and knows no default port, so the checks here
//! would remain, and the grammar is five parts.

use std::fmt;
use std::net::Ipv6Addr;

/// A parsed broker URL. `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// A name or address; an IPv6 address without its brackets (`::1`), as sockets want it.
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS to the broker.
    pub tls: bool,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// Why a broker URL was refused; the message says how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} {problem}; write it as mqtt://host:1883 or mqtts://host:8883")]
pub struct BrokerUrlError {
    pub url: String,
    pub problem: &'static str,
}

impl BrokerUrl {
    pub const PORT: u16 = 1883;
    pub const TLS_PORT: u16 = 8883;

    /// Parses a broker URL (see the module doc).
    pub fn parse(url: &str) -> Result<Self, BrokerUrlError> {
        let bad = |problem| BrokerUrlError {
            url: url.to_string(),
            problem,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or(bad("has no mqtt:// or mqtts:// scheme"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            _ => return Err(bad("is not an mqtt:// or mqtts:// URL")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(bad("must be only scheme, host and port (no path)"));
        }
        // The last '@' ends the user info: a password may contain '@', a host may not.
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((a, b)) => (a, Some(b.to_string())),
                    None => (u, None),
                };
                if user.is_empty() {
                    return Err(bad("has an empty user name before '@'"));
                }
                (Some(user.to_string()), pass)
            }
        };
        // `[v6]:port`, `[v6]`, `host:port`, `host`.
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or(bad("has an unclosed '['"))?;
            if h.parse::<Ipv6Addr>().is_err() {
                return Err(bad("has no IPv6 address between '[' and ']'"));
            }
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(bad("has junk after the IPv6 address")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        if !hostport.starts_with('[')
            && host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "[]:@".contains(c))
        {
            return Err(bad(
                "has a host that is neither a name nor an address (IPv6 goes in brackets: [::1])",
            ));
        }
        let port = match port {
            None => {
                if tls {
                    Self::TLS_PORT
                } else {
                    Self::PORT
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad("has a port that is not 1-65535")),
            },
        };
        Ok(Self {
            host: host.to_string(),
            port,
            tls,
            user,
            password,
        })
    }

    /// `host:port` as a socket address string (`[::1]:1883` for IPv6).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The URL without the password: `mqtt://user@host:1883`.
impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let user = match (&self.user, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (Some(u), None) => format!("{u}@"),
            _ => String::new(),
        };
        write!(f, "{scheme}://{user}{}", self.authority())
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> BrokerUrl {
        BrokerUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn schemes_and_default_ports() {
        let a = ok("mqtt://broker.lan");
        assert_eq!(
            (a.host.as_str(), a.port, a.tls),
            ("broker.lan", 1883, false)
        );
        let b = ok("mqtts://broker.lan");
        assert_eq!((b.port, b.tls), (8883, true));
        assert_eq!(ok("mqtt://h:1884/").port, 1884);
        assert!(!ok("tcp://h").tls);
        assert_eq!(ok("ssl://h").port, 8883);
        assert_eq!(ok("MQTT://10.0.0.2:7").host, "10.0.0.2");
    }

    #[test]
    fn ipv6_literals() {
        let a = ok("mqtt://[::1]:7");
        assert_eq!((a.host.as_str(), a.port), ("::1", 7));
        assert_eq!(ok("mqtts://[fe80::1]").port, 8883);
        assert_eq!(a.authority(), "[::1]:7");
        assert_eq!(a.to_string(), "mqtt://[::1]:7");
        assert_eq!(ok("mqtt://u:p@[::1]").user.as_deref(), Some("u"));
    }

    #[test]
    fn user_and_password() {
        let a = ok("mqtt://u:p@ss@broker.lan:1884");
        assert_eq!(
            (a.user.as_deref(), a.password.as_deref(), a.host.as_str()),
            (Some("u"), Some("p@ss"), "broker.lan")
        );
        assert_eq!(ok("mqtt://u@h").password, None);
        assert!(!format!("{a:?}").contains("p@ss") && !a.to_string().contains("p@ss"));
        assert_eq!(a.to_string(), "mqtt://u:***@broker.lan:1884");
    }

    #[test]
    fn refusals_say_how_to_write_it() {
        for bad in [
            "h:1883",
            "http://h",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:65536",
            "mqtt://h:notaport",
            "mqtt://::1",
            "mqtt://[::1",
            "mqtt://[nope]:1",
            "mqtt://[::1]x",
            "mqtt://h/topic",
            "mqtt://@h",
            "mqtt://a b",
        ] {
            let e = BrokerUrl::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("mqtt://host:1883"), "{e}");
        }
    }
}
