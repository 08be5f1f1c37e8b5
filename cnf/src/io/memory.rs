//! The in-memory driver: ports are queues of owned frames, so tests and benchmarks can run the
//! pipeline exactly as the real drivers do (same [`Frame`], same batching of `now`, same
//! verdict handling) without sockets or privileges.
//!
//! Buffers are recycled: [`MemoryPorts::release`] returns a transmitted frame's buffer to the
//! pool that [`MemoryPorts::receive`] draws from, so a steady-state benchmark does not allocate.

use core::fmt;
use std::collections::VecDeque;
use std::time::Instant;

use super::counters::PortCounters;
use super::{Forwarder, Frame, PortId, PortStats, Verdict};

/// A frame the in-memory driver owns: a buffer and how much of it is packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFrame {
    buf: Box<[u8]>,
    /// Invariant: `len <= buf.len()`.
    len: usize,
}

impl OwnedFrame {
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

/// Why the in-memory driver refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryError {
    UnknownPort { port: PortId, ports: u16 },
    TooLong { len: usize, capacity: usize },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemoryError::UnknownPort { port, ports } => {
                write!(f, "{port} does not exist: the driver has {ports} ports")
            }
            MemoryError::TooLong { len, capacity } => write!(
                f,
                "a {len}-byte frame does not fit the driver's {capacity}-byte buffers"
            ),
        }
    }
}

impl std::error::Error for MemoryError {}

/// Ports backed by memory.
#[derive(Debug)]
pub struct MemoryPorts {
    frame_capacity: usize,
    batch_size: usize,
    free: Vec<Box<[u8]>>,
    rx: Vec<VecDeque<OwnedFrame>>,
    tx: Vec<VecDeque<OwnedFrame>>,
    counters: Vec<PortCounters>,
    /// Frames and bytes sent per port in the current batch: counters are updated once per
    /// batch, as the socket drivers do, not with two atomic additions per frame.
    tx_tally: Vec<(u64, u64)>,
    /// The forwarder's verdicts on the current batch.
    verdicts: Vec<Verdict>,
}

impl MemoryPorts {
    /// `ports` ports whose buffers hold `frame_capacity` bytes each (use
    /// [`FrameSize::usable`](super::FrameSize::usable) to match the other drivers).
    pub fn new(ports: u16, frame_capacity: usize) -> Self {
        MemoryPorts {
            frame_capacity,
            batch_size: 64,
            free: Vec::new(),
            rx: (0..ports).map(|_| VecDeque::new()).collect(),
            tx: (0..ports).map(|_| VecDeque::new()).collect(),
            counters: (0..ports).map(|_| PortCounters::default()).collect(),
            tx_tally: vec![(0, 0); usize::from(ports)],
            verdicts: Vec::new(),
        }
    }

    /// Frames handed to the pipeline per batch (one `now` per batch); at least 1.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Allocates `frames` buffers up front, so that `receive` does not allocate.
    pub fn with_pool(mut self, frames: usize) -> Self {
        self.free
            .extend((0..frames).map(|_| vec![0u8; self.frame_capacity].into_boxed_slice()));
        self
    }

    pub fn ports(&self) -> u16 {
        self.rx.len() as u16
    }

    fn check_port(&self, port: PortId) -> Result<usize, MemoryError> {
        if port.index() < self.rx.len() {
            Ok(port.index())
        } else {
            Err(MemoryError::UnknownPort {
                port,
                ports: self.ports(),
            })
        }
    }

    /// A frame arrives on `port`: its bytes are copied into a buffer, as a NIC would.
    pub fn receive(&mut self, port: PortId, bytes: &[u8]) -> Result<(), MemoryError> {
        let index = self.check_port(port)?;
        if bytes.len() > self.frame_capacity {
            return Err(MemoryError::TooLong {
                len: bytes.len(),
                capacity: self.frame_capacity,
            });
        }
        let mut buf = self
            .free
            .pop()
            .unwrap_or_else(|| vec![0u8; self.frame_capacity].into_boxed_slice());
        buf[..bytes.len()].copy_from_slice(bytes);
        self.rx[index].push_back(OwnedFrame {
            buf,
            len: bytes.len(),
        });
        Ok(())
    }

    /// Frames waiting on `port` for the pipeline.
    pub fn pending(&self, port: PortId) -> usize {
        self.rx.get(port.index()).map_or(0, VecDeque::len)
    }

    /// Runs every waiting frame of every port through `forwarder`, in batches of
    /// `batch_size` frames per port that share one `now`. Returns how many frames it handled.
    pub fn poll(&mut self, forwarder: &mut impl Forwarder, now: Instant) -> usize {
        let mut handled = 0;
        loop {
            let mut round = 0;
            for index in 0..self.rx.len() {
                let ingress = PortId(index as u16);
                let take = self.rx[index].len().min(self.batch_size);
                let (mut dropped, mut misrouted) = (0, 0);
                let mut batch: Vec<OwnedFrame> = self.rx[index].drain(..take).collect();
                let rx_bytes: u64 = batch.iter().map(|owned| owned.len as u64).sum();
                let lens: Vec<usize> = {
                    let mut frames: Vec<Frame<'_>> = batch
                        .iter_mut()
                        .map(|owned| Frame {
                            buf: &mut owned.buf,
                            len: owned.len,
                        })
                        .collect();
                    forwarder.handle_batch(now, ingress, &mut frames, &mut self.verdicts);
                    frames.iter().map(Frame::len).collect()
                };
                for (owned, len) in batch.iter_mut().zip(lens) {
                    owned.len = len;
                }
                for (i, owned) in batch.into_iter().enumerate() {
                    // A forwarder that gave no verdict for a frame dropped it.
                    match self.verdicts.get(i).copied().unwrap_or(Verdict::Drop) {
                        Verdict::Forward(egress) if egress.index() < self.tx.len() => {
                            let tally = &mut self.tx_tally[egress.index()];
                            tally.0 += 1;
                            tally.1 += owned.len as u64;
                            self.tx[egress.index()].push_back(owned);
                        }
                        Verdict::Forward(_) => {
                            misrouted += 1;
                            self.free.push(owned.buf);
                        }
                        Verdict::Drop => {
                            dropped += 1;
                            self.free.push(owned.buf);
                        }
                    }
                }
                for (counters, tally) in self.counters.iter().zip(&mut self.tx_tally) {
                    PortCounters::add(&counters.tx_packets, tally.0);
                    PortCounters::add(&counters.tx_bytes, tally.1);
                    *tally = (0, 0);
                }
                let counters = &self.counters[index];
                PortCounters::add(&counters.rx_packets, take as u64);
                PortCounters::add(&counters.rx_bytes, rx_bytes);
                PortCounters::add(&counters.dropped_by_pipeline, dropped);
                PortCounters::add(&counters.dropped_tx, misrouted);
                round += take;
            }
            if round == 0 {
                return handled;
            }
            handled += round;
        }
    }

    /// Asks `forwarder` for the frames it held back ([`Forwarder::poll_release`]) and queues
    /// them for transmission as if sent; returns when to ask again.
    pub fn poll_release(
        &mut self,
        forwarder: &mut impl Forwarder,
        now: Instant,
    ) -> Option<Instant> {
        let (free, tx, counters, capacity) = (
            &mut self.free,
            &mut self.tx,
            &self.counters,
            self.frame_capacity,
        );
        forwarder.poll_release(now, &mut |port, bytes| {
            let (Some(queue), Some(c)) = (tx.get_mut(port.index()), counters.get(port.index()))
            else {
                return true;
            };
            if bytes.len() > capacity {
                PortCounters::add(&c.dropped_tx, 1);
                return true;
            }
            let mut buf = free
                .pop()
                .unwrap_or_else(|| vec![0u8; capacity].into_boxed_slice());
            buf[..bytes.len()].copy_from_slice(bytes);
            queue.push_back(OwnedFrame {
                buf,
                len: bytes.len(),
            });
            PortCounters::add(&c.tx_packets, 1);
            PortCounters::add(&c.tx_bytes, bytes.len() as u64);
            true
        })
    }

    /// The oldest frame transmitted on `port`, if any.
    pub fn transmitted(&mut self, port: PortId) -> Option<OwnedFrame> {
        self.tx.get_mut(port.index())?.pop_front()
    }

    /// Frames waiting in `port`'s transmit queue.
    pub fn transmitted_len(&self, port: PortId) -> usize {
        self.tx.get(port.index()).map_or(0, VecDeque::len)
    }

    /// Returns a frame's buffer to the pool.
    pub fn release(&mut self, frame: OwnedFrame) {
        if frame.buf.len() == self.frame_capacity {
            self.free.push(frame.buf);
        }
    }

    /// Releases every transmitted frame of every port; returns how many.
    pub fn release_all_transmitted(&mut self) -> usize {
        let mut released = 0;
        for queue in &mut self.tx {
            released += queue.len();
            self.free.extend(queue.drain(..).map(|frame| frame.buf));
        }
        released
    }

    /// Buffers in the pool.
    pub fn free_buffers(&self) -> usize {
        self.free.len()
    }

    pub fn stats(&self, port: PortId) -> PortStats {
        self.counters
            .get(port.index())
            .map(PortCounters::snapshot)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Forwards port 0 to port 1 after appending a trailer, drops the rest.
    struct AppendAndForward;

    impl Forwarder for AppendAndForward {
        fn handle(&mut self, _now: Instant, ingress: PortId, frame: &mut Frame<'_>) -> Verdict {
            if ingress != PortId(0) {
                return Verdict::Drop;
            }
            let len = frame.len();
            match frame.insert(len, 2) {
                Ok(gap) => {
                    gap.copy_from_slice(b"ok");
                    Verdict::Forward(PortId(1))
                }
                Err(_) => Verdict::Drop,
            }
        }
    }

    #[test]
    fn frames_go_through_the_pipeline_and_come_out_changed() {
        let mut ports = MemoryPorts::new(2, 64);
        ports.receive(PortId(0), b"hello").unwrap();
        ports.receive(PortId(1), b"dropped").unwrap();
        assert_eq!(
            ports.receive(PortId(2), b"x").unwrap_err(),
            MemoryError::UnknownPort {
                port: PortId(2),
                ports: 2
            }
        );
        assert!(matches!(
            ports.receive(PortId(0), &[0; 65]),
            Err(MemoryError::TooLong { len: 65, .. })
        ));
        assert_eq!(ports.poll(&mut AppendAndForward, Instant::now()), 2);
        let out = ports.transmitted(PortId(1)).unwrap();
        assert_eq!(out.data(), b"hellook");
        assert!(ports.transmitted(PortId(1)).is_none());
        let stats = ports.stats(PortId(1));
        assert_eq!((stats.rx_packets, stats.dropped_by_pipeline), (1, 1));
        assert_eq!((stats.tx_packets, stats.tx_bytes), (1, 7));
        ports.release(out);
        assert_eq!(ports.free_buffers(), 2, "both buffers are back in the pool");
    }

    #[test]
    fn a_verdict_naming_no_port_counts_as_a_tx_drop() {
        struct Nowhere;
        impl Forwarder for Nowhere {
            fn handle(&mut self, _: Instant, _: PortId, _: &mut Frame<'_>) -> Verdict {
                Verdict::Forward(PortId(9))
            }
        }
        let mut ports = MemoryPorts::new(1, 64);
        ports.receive(PortId(0), b"x").unwrap();
        ports.poll(&mut Nowhere, Instant::now());
        assert_eq!(ports.stats(PortId(0)).dropped_tx, 1);
        assert_eq!(ports.free_buffers(), 1);
    }

    #[test]
    fn frames_a_forwarder_held_back_leave_when_it_releases_them() {
        /// Holds every frame (as a shaped link's queue would) and releases one per poll.
        #[derive(Default)]
        struct Holding(Vec<Vec<u8>>);
        impl Forwarder for Holding {
            fn handle(&mut self, _: Instant, _: PortId, frame: &mut Frame<'_>) -> Verdict {
                self.0.push(frame.data().to_vec());
                Verdict::Drop
            }
            fn poll_release(
                &mut self,
                now: Instant,
                release: &mut dyn FnMut(PortId, &[u8]) -> bool,
            ) -> Option<Instant> {
                if !self.0.is_empty() && release(PortId(1), &self.0[0]) {
                    self.0.remove(0);
                }
                (!self.0.is_empty()).then_some(now)
            }
        }
        let mut ports = MemoryPorts::new(2, 64);
        let mut f = Holding::default();
        ports.receive(PortId(0), b"first").unwrap();
        ports.receive(PortId(0), b"second").unwrap();
        let now = Instant::now();
        ports.poll(&mut f, now);
        assert_eq!(ports.transmitted_len(PortId(1)), 0);
        assert_eq!(ports.poll_release(&mut f, now), Some(now), "one still held");
        assert_eq!(ports.poll_release(&mut f, now), None);
        assert_eq!(ports.transmitted(PortId(1)).unwrap().data(), b"first");
        assert_eq!(ports.transmitted(PortId(1)).unwrap().data(), b"second");
        assert_eq!(ports.stats(PortId(1)).tx_packets, 2);
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        /// No buffer is lost or invented: every received frame is either transmitted or back in
        /// the pool, whatever the verdicts, batch size and arrival order.
        #[test]
        fn buffers_are_conserved(
            arrivals in proptest::collection::vec((0u16..3, 1usize..40), 0..200),
            batch in 1usize..16,
        ) {
            let mut ports = MemoryPorts::new(3, 48).with_batch_size(batch);
            for &(port, len) in &arrivals {
                ports.receive(PortId(port), &vec![port as u8; len]).unwrap();
            }
            let handled = ports.poll(&mut AppendAndForward, Instant::now());
            prop_assert_eq!(handled, arrivals.len());
            let forwarded = ports.transmitted_len(PortId(1));
            let expected = arrivals.iter().filter(|&&(p, len)| p == 0 && len + 2 <= 48).count();
            prop_assert_eq!(forwarded, expected);
            ports.release_all_transmitted();
            prop_assert_eq!(ports.free_buffers(), arrivals.len());
        }
    }
}
