//! Configuration: the TOML file of DESIGN.md §6 (serde structs whose field names are the
//! contract's keys, `deny_unknown_fields`), embedded defaults, and validation into a
//! [`Config`] that the rest of the crate reads. Errors name the file, the key and the problem.
//!
//! Must not touch: sockets or live runtime objects.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A validated configuration snapshot. Immutable once built; workers share it in an `Arc`.
#[derive(Clone, Debug)]
pub struct Config {
    /// `[server]`
    pub server: Server,
    /// `[tls]`; `None` when the section is absent (no STARTTLS).
    pub tls: Option<Tls>,
    /// `[limits]`
    pub limits: Limits,
    /// `[spam]`
    pub spam: Spam,
    /// `[[tenant]]`, in file order.
    pub tenants: Vec<Tenant>,
    /// `[exchange]`
    pub exchange: Exchange,
}

/// `[server]`
#[derive(Clone, Debug)]
pub struct Server {
    /// `listen`: addresses to accept SMTP on.
    pub listen: Vec<SocketAddr>,
    /// `hostname`: our name in the greeting, EHLO and Received.
    pub hostname: String,
    /// `workers`: event loops; 0 in the file means one per core (resolved here to the count).
    pub workers: usize,
    /// `proxy_protocol`: expect HAProxy PROXY v1/v2 from `proxy_from`.
    pub proxy_protocol: bool,
    /// `proxy_from`: load balancers allowed to send PROXY headers.
    pub proxy_from: Vec<Cidr>,
    /// `metrics`: Prometheus endpoint address, if enabled.
    pub metrics: Option<SocketAddr>,
}

/// `[tls]`
#[derive(Clone, Debug)]
pub struct Tls {
    /// `cert`: PEM full chain.
    pub cert: PathBuf,
    /// `key`: PEM private key.
    pub key: PathBuf,
    /// `require`: refuse MAIL before STARTTLS.
    pub require: bool,
    /// `client_ca`: request and verify client certificates against this CA file.
    pub client_ca: Option<PathBuf>,
}

/// What to do with a bare CR or LF in DATA (`limits.bare_lf`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum BareLf {
    /// Each becomes CRLF (the default).
    #[default]
    Normalize,
    /// Refuse the message with `550 5.6.11`.
    Reject,
    /// Forward unchanged when the next hop takes BDAT; normalised under DATA.
    Accept,
}

/// `[limits]`: every bound the relay enforces.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `max_message_size` in bytes (`552 5.3.4`); advertised in EHLO `SIZE`.
    pub max_message_size: u64,
    /// `max_recipients` per transaction (`452 4.5.3`).
    pub max_recipients: usize,
    /// `max_header_bytes` (`552 5.3.4`, then close).
    pub max_header_bytes: usize,
    /// `max_hops`: Received headers allowed (`554 5.4.6` beyond).
    pub max_hops: usize,
    /// `max_connections_per_ip` (`421 4.7.0`).
    pub max_connections_per_ip: usize,
    /// `max_errors` per session before `421`.
    pub max_errors: u32,
    /// `scan_window`: body bytes held and scanned before the verdict.
    pub scan_window: usize,
    /// `bare_lf`: normalize | reject | accept.
    pub bare_lf: BareLf,
    /// `command_timeout_s`
    pub command_timeout_s: u64,
    /// `data_timeout_s`
    pub data_timeout_s: u64,
}

/// `[spam]`
#[derive(Clone, Debug)]
pub struct Spam {
    /// `threshold`: score at or above which a message is flagged `YES`.
    pub threshold: f64,
    /// `rules`: rule files; empty means the built-in defaults.
    pub rules: Vec<PathBuf>,
}

/// How to use TLS toward a tenant's next hop (`next_hop_tls`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum NextHopTls {
    /// Plain text only.
    None,
    /// STARTTLS when offered, plain otherwise.
    #[default]
    Opportunistic,
    /// STARTTLS required, certificate not verified.
    Require,
    /// STARTTLS required and the certificate verified against the next hop's name.
    Verify,
}

/// One `[[tenant]]`: a customer.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// `name`: the domain used in the loop header.
    pub name: String,
    /// `domains`: exact domains or `*.example.com` patterns, lower-cased.
    pub domains: Vec<String>,
    /// `next_hop`: `host:port`.
    pub next_hop: String,
    /// `next_hop_tls`
    pub next_hop_tls: NextHopTls,
    /// `next_hop_ca`: CA file for `verify` (system store when absent).
    pub next_hop_ca: Option<PathBuf>,
    /// `trusted_networks`: the tenant's Exchange servers.
    pub trusted_networks: Vec<Cidr>,
    /// `trusted_cert_names`: verified client-certificate names that make a client trusted.
    pub trusted_cert_names: Vec<String>,
    /// `client_cert`: PEM chain presented to the next hop.
    pub client_cert: Option<PathBuf>,
    /// `client_key`
    pub client_key: Option<PathBuf>,
    /// `disclaimer`
    pub disclaimer: Option<Disclaimer>,
}

impl Tenant {
    /// The loop header's field name: `X-Conbool-` + name with dots as hyphens.
    pub fn loop_header(&self) -> String {
        format!("X-Conbool-{}", self.name.replace('.', "-"))
    }
}

/// A tenant's footer.
#[derive(Clone, Debug)]
pub struct Disclaimer {
    /// For text/plain parts.
    pub text: String,
    /// For text/html parts.
    pub html: String,
}

/// `[exchange]`
#[derive(Clone, Debug, Default)]
pub struct Exchange {
    /// `public_ips`: the relay's public addresses.
    pub public_ips: Vec<IpAddr>,
}

/// An IPv4 or IPv6 network, `addr/prefix`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cidr {
    /// The network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses match IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let bits = u32::from(self.prefix.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let bits = u32::from(self.prefix.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}
