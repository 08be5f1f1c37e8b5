//! Per-port packet I/O counters: plain atomics a worker adds to once per batch and any thread
//! may read, plus the copy-out [`PortStats`] for reports.

use core::fmt;
use core::ops::Add;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of one port on one queue. Only the queue's worker writes them; readers see each
/// counter exact but not a consistent set (they are read one by one).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct PortCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Receive attempts that found the RX ring (or socket) empty.
    pub rx_empty_polls: AtomicU64,
    /// Transmit attempts that found the TX ring (or socket buffer) full.
    pub tx_ring_full: AtomicU64,
    /// Times the fill ring needed frames and the worker had none free.
    pub fill_starved: AtomicU64,
    /// Frames the pipeline dropped.
    pub dropped_by_pipeline: AtomicU64,
    /// Frames dropped on the way out: egress backlog full, or a verdict naming no port.
    pub dropped_tx: AtomicU64,
    /// Frames dropped on the way in: truncated or too large for a buffer.
    pub dropped_rx: AtomicU64,
    /// The kernel's own AF_XDP counters of this socket (`XDP_STATISTICS`), refreshed by the
    /// worker about every 100 ms: frames it dropped because the RX ring was full, or because
    /// the fill ring was empty, and other drops (frame too large, ...).
    pub kernel_rx_ring_full: AtomicU64,
    pub kernel_fill_ring_empty: AtomicU64,
    pub kernel_rx_dropped: AtomicU64,
}

impl PortCounters {
    #[inline]
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Relaxed);
        }
    }

    pub fn snapshot(&self) -> PortStats {
        PortStats {
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            rx_empty_polls: self.rx_empty_polls.load(Relaxed),
            tx_ring_full: self.tx_ring_full.load(Relaxed),
            fill_starved: self.fill_starved.load(Relaxed),
            dropped_by_pipeline: self.dropped_by_pipeline.load(Relaxed),
            dropped_tx: self.dropped_tx.load(Relaxed),
            dropped_rx: self.dropped_rx.load(Relaxed),
            kernel_rx_ring_full: self.kernel_rx_ring_full.load(Relaxed),
            kernel_fill_ring_empty: self.kernel_fill_ring_empty.load(Relaxed),
            kernel_rx_dropped: self.kernel_rx_dropped.load(Relaxed),
        }
    }
}

/// A copy of [`PortCounters`] at one moment; adds up over queues.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_empty_polls: u64,
    pub tx_ring_full: u64,
    pub fill_starved: u64,
    pub dropped_by_pipeline: u64,
    pub dropped_tx: u64,
    pub dropped_rx: u64,
    pub kernel_rx_ring_full: u64,
    pub kernel_fill_ring_empty: u64,
    pub kernel_rx_dropped: u64,
}

impl Add for PortStats {
    type Output = PortStats;

    fn add(self, o: PortStats) -> PortStats {
        PortStats {
            rx_packets: self.rx_packets + o.rx_packets,
            rx_bytes: self.rx_bytes + o.rx_bytes,
            tx_packets: self.tx_packets + o.tx_packets,
            tx_bytes: self.tx_bytes + o.tx_bytes,
            rx_empty_polls: self.rx_empty_polls + o.rx_empty_polls,
            tx_ring_full: self.tx_ring_full + o.tx_ring_full,
            fill_starved: self.fill_starved + o.fill_starved,
            dropped_by_pipeline: self.dropped_by_pipeline + o.dropped_by_pipeline,
            dropped_tx: self.dropped_tx + o.dropped_tx,
            dropped_rx: self.dropped_rx + o.dropped_rx,
            kernel_rx_ring_full: self.kernel_rx_ring_full + o.kernel_rx_ring_full,
            kernel_fill_ring_empty: self.kernel_fill_ring_empty + o.kernel_fill_ring_empty,
            kernel_rx_dropped: self.kernel_rx_dropped + o.kernel_rx_dropped,
        }
    }
}

impl fmt::Display for PortStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rx {} pkts / {} B, tx {} pkts / {} B, rx empty polls {}, tx ring full {}, fill \
             starved {}, dropped: pipeline {} tx {} rx {}, kernel: rx ring full {} fill ring \
             empty {} rx dropped {}",
            self.rx_packets,
            self.rx_bytes,
            self.tx_packets,
            self.tx_bytes,
            self.rx_empty_polls,
            self.tx_ring_full,
            self.fill_starved,
            self.dropped_by_pipeline,
            self.dropped_tx,
            self.dropped_rx,
            self.kernel_rx_ring_full,
            self.kernel_fill_ring_empty,
            self.kernel_rx_dropped
        )
    }
}
