//! The WAN queues of one runtime worker: a [`LinkScheduler`] per shaped WAN interface of the
//! config in force, with the port its frames leave by, and the counters of links and classes
//! that earlier configs had.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::bucket::nanos_since;
use super::class::Classes;
use super::scheduler::{ClassStats, LinkScheduler, Offer};
use crate::io::PortId;

#[derive(Debug)]
struct Link {
    name: String,
    port: PortId,
    scheduler: LinkScheduler,
}

/// See the module docs.
#[derive(Debug)]
pub struct WanQueues {
    base: Instant,
    /// By WAN interface index; `None` for links that are not shaped.
    links: Vec<Option<Link>>,
    /// Queued frames of all links (so that an idle worker answers in one comparison).
    pending: bool,
    /// Counters of links (and classes) a later config replaced, by (WAN name, class name).
    retired: BTreeMap<(String, &'static str), ClassStats>,
}

/// One shaped WAN interface as the config and the ports describe it.
#[derive(Clone, Debug)]
pub struct LinkSpec {
    pub name: String,
    pub port: PortId,
    pub capacity_bps: u64,
}

impl WanQueues {
    pub fn new(base: Instant) -> Self {
        WanQueues {
            base,
            links: Vec::new(),
            pending: false,
            retired: BTreeMap::new(),
        }
    }

    /// Takes a new config's links (by WAN index; `None` where a WAN is not shaped or has no
    /// port). A link whose name, port, capacity and classes are unchanged keeps its queue;
    /// the others start empty (frames still queued on a replaced link are dropped and counted
    /// for it). `share` divides each capacity between the workers that serve the link.
    pub fn configure(
        &mut self,
        specs: &[Option<LinkSpec>],
        classes: &Classes,
        share: u32,
        slot_len: usize,
    ) {
        let mut old: Vec<Option<Link>> = std::mem::take(&mut self.links);
        for spec in specs {
            let capacity = spec
                .as_ref()
                .map(|s| s.capacity_bps / u64::from(share.max(1)))
                .filter(|c| *c > 0);
            let keep = old.iter_mut().find_map(|l| {
                let l2 = l.as_ref()?;
                let s = spec.as_ref()?;
                (l2.name == s.name
                    && l2.port == s.port
                    && Some(l2.scheduler.capacity_bps()) == capacity
                    && l2.scheduler.classes_match(classes))
                .then(|| l.take())
                .flatten()
            });
            let link = match (keep, spec, capacity) {
                (Some(link), _, _) => Some(link),
                (None, Some(s), Some(capacity)) => Some(Link {
                    name: s.name.clone(),
                    port: s.port,
                    scheduler: LinkScheduler::new(capacity, classes, slot_len),
                }),
                _ => None,
            };
            self.links.push(link);
        }
        for link in old.into_iter().flatten() {
            self.retire(link);
        }
        self.pending = self
            .links
            .iter()
            .flatten()
            .any(|l| l.scheduler.queued() > 0);
    }

    fn retire(&mut self, mut link: Link) {
        link.scheduler.drop_queued();
        for (spec, stats) in link.scheduler.stats() {
            self.retired
                .entry((link.name.clone(), spec.name()))
                .or_default()
                .add(&stats);
        }
    }

    /// A frame of a session of `class` leaves by WAN `wan` at `now`. Unshaped links: `Send`.
    #[inline]
    pub fn offer(&mut self, now: Instant, wan: u8, class: u8, frame: &[u8]) -> Offer {
        let Some(Some(link)) = self.links.get_mut(usize::from(wan)) else {
            return Offer::Send;
        };
        let offer = link
            .scheduler
            .offer(nanos_since(self.base, now), class, frame);
        if offer == Offer::Queued {
            self.pending = true;
        }
        offer
    }

    /// Sends what the shapers allow through `send` (false: no room, keep it); returns when to
    /// call again.
    pub fn release(
        &mut self,
        now: Instant,
        send: &mut dyn FnMut(PortId, &[u8]) -> bool,
    ) -> Option<Instant> {
        if !self.pending {
            return None;
        }
        let t = nanos_since(self.base, now);
        let mut next: Option<u64> = None;
        for link in self.links.iter_mut().flatten() {
            let port = link.port;
            if let Some(at) = link.scheduler.release(t, |bytes| send(port, bytes)) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.pending = next.is_some();
        next.map(|at| self.base + Duration::from_nanos(at))
    }

    /// Counters per (WAN name, class name): the links in force and those replaced before.
    pub fn stats(&self) -> BTreeMap<(String, &'static str), ClassStats> {
        let mut out = self.retired.clone();
        for link in self.links.iter().flatten() {
            for (spec, stats) in link.scheduler.stats() {
                out.entry((link.name.clone(), spec.name()))
                    .or_default()
                    .add(&stats);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Classes {
        Classes::new(&[]).expect("defaults")
    }

    #[test]
    fn unshaped_links_send_everything_and_hold_nothing() {
        let now = Instant::now();
        let mut q = WanQueues::new(now);
        q.configure(&[None], &classes(), 1, 1536);
        for _ in 0..1000 {
            assert_eq!(q.offer(now, 0, 2, &[0u8; 1500]), Offer::Send);
        }
        assert_eq!(q.offer(now, 7, 2, &[0u8; 1500]), Offer::Send, "no such WAN");
        assert_eq!(q.release(now, &mut |_, _| true), None);
    }

    #[test]
    fn held_frames_leave_by_their_port_at_the_shaped_rate_and_survive_an_equal_config() {
        let start = Instant::now();
        let mut q = WanQueues::new(start);
        let spec = LinkSpec {
            name: "broadband".into(),
            port: PortId(3),
            capacity_bps: 8_000_000,
        };
        let c = classes();
        q.configure(&[Some(spec.clone())], &c, 1, 1536);
        let normal = c.for_priority(signpost_proto::v1::Priority::Normal);
        let mut queued = 0;
        for _ in 0..50 {
            if q.offer(start, 0, normal, &[0u8; 1000]) == Offer::Queued {
                queued += 1;
            }
        }
        assert!(queued > 40);
        q.configure(&[Some(spec)], &c, 1, 1536);
        // 1 MB/s: 1,000-byte frames leave every millisecond.
        let mut sent = 0;
        let mut now = start;
        let mut next = q.release(now, &mut |port, b| {
            assert_eq!((port, b.len()), (PortId(3), 1000));
            sent += 1;
            true
        });
        while let Some(at) = next {
            assert!(at > now, "the next release is in the future");
            now = at;
            next = q.release(now, &mut |_, _| {
                sent += 1;
                true
            });
        }
        assert_eq!(
            sent, queued,
            "kept across an unchanged config and all released"
        );
        let elapsed = now - start;
        assert!(
            elapsed.as_millis().abs_diff(queued as u128) <= 2,
            "{elapsed:?} for {queued} frames at 1 MB/s"
        );
        let stats = q.stats();
        let st = stats[&("broadband".to_string(), "normal")];
        assert_eq!(st.sent_packets, 50);
        assert_eq!(st.queued_packets, queued);
    }
}
