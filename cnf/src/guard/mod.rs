//! The stateful firewall and DoS guard: which packets may create state, how fast, and how much.
//!
//! What passes. Only packets of a session the pipeline holds are forwarded, and a session
//! exists only where an access rule allows its tenant × service (deny by default). What may
//! *open* one:
//!
//! - from a LAN: a TCP SYN (no ACK, no RST), a UDP datagram or an ICMP echo *request* whose
//!   source is in a tenant, whose destination, protocol and port are a service, and for which
//!   a policy allows that tenant to reach that service in that direction. A TCP segment other
//!   than a SYN (`tcp_not_syn`), an ICMP echo reply (`icmp_not_request`), other ICMP
//!   (`icmp_not_echo`) and other protocols (`unsupported_protocol`) never open a session;
//! - from a WAN: only a packet to a waypoint port of this router carrying SVR metadata that
//!   authenticates with a peer's key and names a tenant × service this router's own policy
//!   allows. A WAN packet to a waypoint port without metadata that matches no session is
//!   dropped (`no_session`); anything else addressed to the router is for its host (answered
//!   only if it is an ICMP echo), and packets for other addresses are not routed.
//!
//! How fast ([`Guard::admit`], before any path, waypoint or table work is spent):
//!
//! - per source address and access rule, the policy's `rateLimit.newSessionsPerSecond`
//!   (burst: one second's worth), in a bounded table ([`sources`]);
//! - per tenant, `limits.newSessionsPerSecondPerTenant` (burst: one second's worth).
//!
//! How much (the session table's limits, [`crate::session::TableLimits`]): sessions in total
//! (`limits.maxSessions`), per tenant (`maxSessionsPerTenant`), half-open TCP sessions in total
//! (`maxHalfOpen`, default 1/8 of the table) and **per tenant** (`maxHalfOpenPerTenant`,
//! default half of `maxHalfOpen`), so that a SYN flood from one tenant cannot use up the
//! half-open budget of another. Half-open sessions expire after 5 s without a reply
//! (`tcpHalfOpenTimeoutSeconds`); a retransmitted SYN refreshes its own session.
//!
//! SYN cookies are not used: they let an *endpoint* answer a SYN without keeping state, and
//! this router is not the endpoint — it forwards the SYN and must hold the session to NAT the
//! SYN-ACK. What it can do is bound the state a flood takes (the limits above) and drop the
//! excess early and cheaply, which it does.
//!
//! Every refusal is a counted [`DropReason`]; the guard also counts them per tenant, exported
//! as `signpost_guard_drops_total{reason,tenant}`.

pub mod sources;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use signpost_proto::v1::RouterConfig;

use crate::classify::{RuleId, TenantId};
use crate::pipeline::DropReason;
use crate::qos::{TokenBucket, nanos_since};
use sources::SourceLimiter;

/// What a config says about admission: per rule, per tenant.
#[derive(Clone, Debug, Default)]
pub struct GuardConfig {
    /// By rule id: new sessions per second per source (0: unlimited).
    rule_source_rate: Vec<u32>,
    /// New sessions per second per tenant (0: unlimited).
    tenant_rate: u32,
    tenants: usize,
}

impl GuardConfig {
    pub fn new(config: &RouterConfig) -> Self {
        GuardConfig {
            rule_source_rate: config
                .access
                .iter()
                .map(|r| r.rate_limit.map_or(0, |l| l.new_sessions_per_second))
                .collect(),
            tenant_rate: config
                .limits
                .map_or(0, |l| l.new_sessions_per_second_per_tenant),
            tenants: config.tenants.len(),
        }
    }

    /// New sessions per second per source that rule `rule` allows (0: unlimited).
    pub fn source_rate(&self, rule: RuleId) -> u32 {
        self.rule_source_rate
            .get(usize::from(rule.0))
            .copied()
            .unwrap_or(0)
    }

    pub fn tenant_rate(&self) -> u32 {
        self.tenant_rate
    }
}

fn per_second(rate: u32) -> Option<TokenBucket> {
    (rate > 0).then(|| TokenBucket::new(u64::from(rate), u64::from(rate)))
}

/// Drops per reason, for one tenant.
type Tally = [u64; DropReason::COUNT];

/// The guard's state in one pipeline. See the module docs.
#[derive(Clone, Debug)]
pub struct Guard {
    base: Instant,
    /// By rule id: the per-source bucket's parameters.
    source_template: Vec<Option<TokenBucket>>,
    sources: SourceLimiter,
    /// By tenant id.
    tenant_buckets: Vec<Option<TokenBucket>>,
    /// By tenant id.
    drops: Vec<Tally>,
    /// Tenant names of the config the counts in `drops` belong to.
    names: Vec<String>,
    /// Counts of tenants from earlier configs, by name.
    retired: BTreeMap<String, Tally>,
}

impl Guard {
    pub fn new(base: Instant, config: &GuardConfig, names: Vec<String>, seed: u64) -> Self {
        let mut g = Guard {
            base,
            source_template: Vec::new(),
            sources: SourceLimiter::new(sources::DEFAULT_ENTRIES, seed ^ 0x6775_6172_6400),
            tenant_buckets: Vec::new(),
            drops: Vec::new(),
            names: Vec::new(),
            retired: BTreeMap::new(),
        };
        g.configure(config, names);
        g
    }

    /// Takes a new config: rates are re-read, per-tenant counts are kept by tenant name. The
    /// per-source table is kept (its rule ids may now name other rules: a source's bucket
    /// carries over to whatever rule took the id, which errs towards admitting).
    pub fn configure(&mut self, config: &GuardConfig, names: Vec<String>) {
        for (name, tally) in self.names.iter().zip(&self.drops) {
            let into = self
                .retired
                .entry(name.clone())
                .or_insert([0; DropReason::COUNT]);
            for (a, b) in into.iter_mut().zip(tally) {
                *a += b;
            }
        }
        self.source_template = config
            .rule_source_rate
            .iter()
            .map(|&r| per_second(r))
            .collect();
        self.tenant_buckets = vec![per_second(config.tenant_rate); config.tenants];
        self.drops = vec![[0; DropReason::COUNT]; names.len()];
        self.names = names;
    }

    /// May `src` (in `tenant`, under `rule`) open a session at `now`? Checks the source's rate,
    /// then the tenant's, so that one flooding source does not spend its tenant's budget.
    #[inline]
    pub fn admit(
        &mut self,
        now: Instant,
        tenant: TenantId,
        rule: RuleId,
        src: IpAddr,
    ) -> Result<(), DropReason> {
        let t = nanos_since(self.base, now);
        if let Some(Some(template)) = self.source_template.get(usize::from(rule.0))
            && !self.sources.admit(t, src, rule.0, template)
        {
            return Err(self.refuse(tenant, DropReason::SourceSessionRate));
        }
        if let Some(Some(bucket)) = self.tenant_buckets.get_mut(usize::from(tenant.0))
            && !bucket.try_take(t, 1)
        {
            return Err(self.refuse(tenant, DropReason::TenantSessionRate));
        }
        Ok(())
    }

    /// Counts a refusal against `tenant` and hands the reason back (for `map_err`).
    #[inline]
    pub fn refuse(&mut self, tenant: TenantId, reason: DropReason) -> DropReason {
        if let Some(n) = self
            .drops
            .get_mut(usize::from(tenant.0))
            .and_then(|t| t.get_mut(reason as usize))
        {
            *n += 1;
        }
        reason
    }

    /// Drops counted against each tenant, by (tenant name, reason); zero counts left out.
    pub fn tenant_drops(&self) -> BTreeMap<(String, DropReason), u64> {
        let mut out = BTreeMap::new();
        let current = self.names.iter().zip(&self.drops);
        for (name, tally) in self.retired.iter().chain(current) {
            for (reason, &n) in DropReason::ALL.iter().zip(tally.iter()) {
                if n > 0 {
                    *out.entry((name.clone(), *reason)).or_insert(0) += n;
                }
            }
        }
        out
    }

    pub fn sources(&self) -> &SourceLimiter {
        &self.sources
    }
}

/// May this packet open a session at all, whatever the policy? Only a TCP SYN or an ICMP echo
/// *request* may (UDP always can). `data` is the IP packet `p` was parsed from.
#[inline]
pub fn may_open(data: &[u8], p: &crate::pipeline::ip::Parsed) -> Result<(), DropReason> {
    use crate::packet::ip_protocol;
    match p.protocol {
        ip_protocol::TCP if !p.tcp.is_some_and(|s| s.opens()) => Err(DropReason::TcpNotSyn),
        // Echo request: type 8 (ICMPv4), 128 (ICMPv6).
        ip_protocol::ICMP if data.get(p.l4) != Some(&8) => Err(DropReason::IcmpNotRequest),
        ip_protocol::ICMPV6 if data.get(p.l4) != Some(&128) => Err(DropReason::IcmpNotRequest),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
