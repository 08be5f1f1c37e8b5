//! Quality of service on the WAN side: traffic classes, a scheduler per WAN link, rate limits
//! per tenant × service, DSCP marking.
//!
//! - **Classes** ([`class`]): the config's `QosClass`es, or the defaults (critical: strict
//!   priority, EF, capped at 50% of the link; high / normal / low: weighted 60 / 30 / 10, AF41 /
//!   AF21 / CS1). A session's class comes from its policy's priority, fixed when the session is
//!   created (a policy without a priority is `normal`).
//! - **Rate limits** ([`Policer`]): a policy's `rateLimit.bandwidth` is a token bucket per
//!   access rule (tenant × service) on each router, over the IP bytes each router sends into
//!   the WAN for it — the store polices uploads, the hub the replies. Packets above the rate
//!   are dropped and counted (`rate_limited`, per tenant): a policer, so that a tenant over
//!   its contract cannot fill the shaped link's queues for the others.
//! - **DSCP** ([`dscp`]): every packet a session sends into the WAN carries its class's code
//!   point (IPv4 header checksum updated incrementally; IPv6 traffic class), so that a WAN that
//!   honours DSCP (MPLS) schedules it as the router does.
//! - **Scheduler** ([`scheduler`]): on a WAN interface with a `capacity`, frames leave through a
//!   shaper at that rate, so the queue forms in the router, where strict priority and weighted
//!   fair queueing (deficit round robin over bytes) decide who waits, instead of in the modem's
//!   FIFO. Queues are bounded; what they refuse is dropped and counted per class. A WAN without
//!   a capacity is not shaped (classes still mark DSCP).
//!
//! Who holds the frames. The packet drivers lend a frame for one call; a frame that must wait
//! is *copied* into the link's preallocated arena (one memcpy of the frame in, one out into a
//! fresh driver buffer when it leaves) and released by the runtime when the shaper allows
//! ([`crate::io::Forwarder::poll_release`]). The copy is paid only while the link is
//! congested; an uncongested link sends the driver's frame as it is, after a few comparisons.
//! With several worker queues each worker shapes to an equal share of the capacity.
//!
//! Everything here is sans-IO: time is nanoseconds since an instant the owner chose.

pub mod bucket;
pub mod class;
pub mod dscp;
pub mod scheduler;
pub mod wan;

use std::time::Instant;

use signpost_proto::v1::{Priority, RouterConfig};

pub use bucket::{TokenBucket, nanos_since};
pub use class::{ClassSpec, Classes, default_classes, priority_name};
pub use scheduler::{ClassStats, LinkScheduler, Offer};
pub use wan::{LinkSpec, WanQueues};

/// Smallest policer burst: two full-size frames, so a rate limit never refuses every packet.
const MIN_BURST: u64 = 3000;

/// What a config says about QoS, per class, per WAN link and per access rule.
#[derive(Clone, Debug)]
pub struct QosConfig {
    pub classes: Classes,
    /// By WAN interface index: capacity in bits per second (0: not shaped).
    pub wan_capacity: Vec<u64>,
    /// By rule id: (class, DSCP).
    rule_class: Vec<(u8, u8)>,
    /// By rule id: bytes per second and burst, when the policy limits bandwidth.
    rule_rate: Vec<Option<(u64, u64)>>,
}

impl QosConfig {
    pub fn new(config: &RouterConfig) -> Result<QosConfig, String> {
        let classes = Classes::new(&config.qos_classes)?;
        let rule_class = config
            .access
            .iter()
            .map(|r| {
                let class =
                    classes.for_priority(Priority::try_from(r.priority).unwrap_or_default());
                (class, classes.get(class).map_or(0, |s| s.dscp))
            })
            .collect();
        let rule_rate = config
            .access
            .iter()
            .map(|r| {
                let l = r.rate_limit.unwrap_or_default();
                (l.bits_per_second > 0).then(|| {
                    let rate = (l.bits_per_second / 8).max(1);
                    // Unset: 100 ms of the rate, as the compiler sets it.
                    let burst = if l.burst_bytes == 0 {
                        rate / 10
                    } else {
                        l.burst_bytes
                    };
                    (rate, burst.max(MIN_BURST))
                })
            })
            .collect();
        Ok(QosConfig {
            classes,
            wan_capacity: config
                .wan_interfaces
                .iter()
                .map(|w| w.capacity_bps)
                .collect(),
            rule_class,
            rule_rate,
        })
    }

    /// The class and DSCP of sessions under rule `rule`.
    #[inline]
    pub fn rule_class(&self, rule: usize) -> (u8, u8) {
        self.rule_class.get(rule).copied().unwrap_or((0, 0))
    }

    /// Bytes per second and burst of rule `rule`'s rate limit, if it has one.
    pub fn rule_rate(&self, rule: usize) -> Option<(u64, u64)> {
        self.rule_rate.get(rule).copied().flatten()
    }
}

/// The rate limits of one pipeline: a token bucket per access rule that has one.
#[derive(Clone, Debug)]
pub struct Policer {
    base: Instant,
    buckets: Vec<Option<TokenBucket>>,
    /// Does any rule have a limit? (Most routers have none: one comparison per packet.)
    any: bool,
}

impl Policer {
    pub fn new(base: Instant, qos: &QosConfig) -> Self {
        let buckets: Vec<Option<TokenBucket>> = (0..qos.rule_rate.len())
            .map(|r| {
                qos.rule_rate(r)
                    .map(|(rate, burst)| TokenBucket::new(rate, burst))
            })
            .collect();
        Policer {
            base,
            any: buckets.iter().any(Option::is_some),
            buckets,
        }
    }

    /// Does a packet of `bytes` under rule `rule` fit its rate limit at `now`? (Takes the tokens
    /// when it does.) Rules without a limit always fit.
    #[inline]
    pub fn admit(&mut self, now: Instant, rule: usize, bytes: usize) -> bool {
        if !self.any {
            return true;
        }
        match self.buckets.get_mut(rule) {
            Some(Some(b)) => b.try_take(nanos_since(self.base, now), bytes as u64),
            _ => true,
        }
    }
}
