//! Route choice and trust (DESIGN.md §4): which tenant a client is trusted for, and which
//! tenant's next hop a recipient goes to.

use core::net::IpAddr;

use crate::config::{Config, Tenant};
use crate::smtp::command::Mailbox;
use crate::smtp::error::SessionError;

/// Index of a tenant in `Config::tenants`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TenantId(pub usize);

/// Who the client is, as far as routing is concerned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Trust {
    /// Trusted for this tenant (its IP is in `trusted_networks`, or it presented a verified
    /// certificate with one of `trusted_cert_names`): outbound mail going back to the tenant.
    Trusted(TenantId),
    /// Anyone else: only mail for a tenant's own domains is accepted.
    Untrusted,
}

/// The tenant a client is trusted for, by address or by verified certificate names.
pub fn trust_for(config: &Config, ip: IpAddr, cert_names: &[String]) -> Trust {
    for (i, t) in config.tenants.iter().enumerate() {
        let by_ip = t.trusted_networks.iter().any(|n| n.contains(ip));
        let by_cert = cert_names.iter().any(|name| {
            t.trusted_cert_names
                .iter()
                .any(|want| want.eq_ignore_ascii_case(name))
        });
        if by_ip || by_cert {
            return Trust::Trusted(TenantId(i));
        }
    }
    Trust::Untrusted
}

/// The tenant that owns `domain` (lower-cased), if any: exact names first, then the longest
/// matching `*.suffix` pattern.
pub fn owner_of(config: &Config, domain: &str) -> Option<TenantId> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if let Some(i) = config
        .tenants
        .iter()
        .position(|t| t.domains.contains(&domain))
    {
        return Some(TenantId(i));
    }
    let mut best: Option<(usize, TenantId)> = None;
    for (i, t) in config.tenants.iter().enumerate() {
        for pattern in &t.domains {
            if let Some(suffix) = pattern.strip_prefix("*.") {
                let matches = domain.len() > suffix.len() + 1
                    && domain.ends_with(suffix)
                    && domain.as_bytes()[domain.len() - suffix.len() - 1] == b'.';
                if matches && best.map_or(true, |(len, _)| suffix.len() > len) {
                    best = Some((suffix.len(), TenantId(i)));
                }
            }
        }
    }
    best.map(|(_, id)| id)
}

/// The route for one recipient, given the client's trust and the route the transaction has
/// already chosen (all recipients of one transaction share one route).
pub fn route_rcpt(
    config: &Config,
    trust: Trust,
    current: Option<TenantId>,
    rcpt: &Mailbox,
) -> Result<TenantId, SessionError> {
    let wanted = match trust {
        Trust::Trusted(t) => t,
        Trust::Untrusted => {
            // Postmaster without a domain (RFC 5321 §4.5.1) and address literals are owned by
            // nobody here: relaying them would make us an open relay.
            if rcpt.domain.is_empty() || rcpt.domain.starts_with('[') {
                return Err(SessionError::RelayDenied);
            }
            owner_of(config, &rcpt.domain).ok_or(SessionError::RelayDenied)?
        }
    };
    match current {
        Some(c) if c != wanted => Err(SessionError::OtherRoute),
        _ => Ok(wanted),
    }
}

/// The tenant behind an id.
pub fn tenant(config: &Config, id: TenantId) -> &Tenant {
    &config.tenants[id.0]
}
