//! Packet I/O: the thin drivers that move Ethernet frames between network interfaces and the
//! sans-IO pipeline, and the types they share with it.
//!
//! The pipeline sees one [`Frame`] at a time through [`Forwarder::handle`] (or a receive batch
//! through [`Forwarder::handle_batch`], with the same effect) and answers with a [`Verdict`]; it
//! never touches a socket or a clock. The AF_XDP and in-memory drivers hand over whole batches. The drivers own sockets, buffers and
//! threads:
//!
//! - [`xdp`]: AF_XDP (crate `afxdp`), one socket per (interface, queue), one worker thread per
//!   queue, frames forwarded between ports without a user-space copy;
//! - [`af_packet`]: AF_PACKET with `recvmmsg`/`sendmmsg`, for hosts where AF_XDP is unavailable;
//! - [`memory`]: queues of owned frames, for tests and benchmarks of the pipeline;
//! - [`fastpath`]: not a driver but beside AF_XDP: the router's own XDP program, attached
//!   before the sockets when [`IoConfig::fast_path`] is set, which forwards offloaded sessions
//!   in the kernel and hands everything else to the sockets.
//!
//! [`start`] opens the configured driver (or, with [`DriverChoice::Auto`], AF_XDP and then
//! AF_PACKET, saying why with one `tracing::warn!`) and returns a [`Running`] handle with the
//! per-port [`PortCounters`].
//!
//! Deployment note: AF_XDP (and AF_PACKET) see a frame as the kernel holds it. A frame that a
//! local sender handed to a veth with TX checksum offload on is `CHECKSUM_PARTIAL`: its TCP/UDP
//! checksum is unfinished and nothing in AF_XDP says so, so the forwarded copy is dropped by its
//! receiver (ping works, TCP does not). Turn TX checksum offload off on veths that send into the
//! router (`ethtool -K IF tx off`, which also turns TSO off and so keeps frames at the MTU).
//! The AF_PACKET driver finishes such checksums itself from the kernel's virtio-net header.

pub mod af_packet;
mod counters;
pub mod fastpath;
pub mod l3;
pub mod memory;
pub(crate) mod sys;
pub mod xdp;

use core::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use counters::{PortCounters, PortStats};

/// A port: an index into the driver's interface list ([`IoConfig::interfaces`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

impl PortId {
    /// The port's position in the interface list.
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// What the pipeline decided for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the frame, as the pipeline left it, on this port.
    Forward(PortId),
    /// Release the frame's buffer.
    Drop,
}

/// The pipeline, as the drivers call it: one call per received frame, in arrival order per
/// port. `now` is read once per batch, so every frame of a batch sees the same instant.
pub trait Forwarder {
    fn handle(&mut self, now: Instant, ingress: PortId, frame: &mut Frame<'_>) -> Verdict;

    /// The frames of one receive batch from `ingress`, in arrival order: one verdict per frame
    /// into `verdicts` (cleared first), with the same effect as [`Forwarder::handle`] on each
    /// frame in turn. The default does exactly that; the session pipeline overrides it to start
    /// the batch's session lookups together, so that their cache misses overlap.
    fn handle_batch(
        &mut self,
        now: Instant,
        ingress: PortId,
        frames: &mut [Frame<'_>],
        verdicts: &mut Vec<Verdict>,
    ) {
        verdicts.clear();
        for frame in frames {
            verdicts.push(self.handle(now, ingress, frame));
        }
    }

    /// Frames the forwarder held back and may send now (a shaped WAN link's queue, see
    /// [`crate::qos`]): each goes to `release(port, bytes)`, which copies it into a driver
    /// buffer and returns false when it has none (the forwarder keeps the frame). Returns when
    /// to call again; `None` when nothing waits. Drivers call it after every round that
    /// received frames and when that time has come; the default holds nothing.
    fn poll_release(
        &mut self,
        _now: Instant,
        _release: &mut dyn FnMut(PortId, &[u8]) -> bool,
    ) -> Option<Instant> {
        None
    }
}

impl<F: Forwarder + ?Sized> Forwarder for &mut F {
    fn handle(&mut self, now: Instant, ingress: PortId, frame: &mut Frame<'_>) -> Verdict {
        (**self).handle(now, ingress, frame)
    }

    fn handle_batch(
        &mut self,
        now: Instant,
        ingress: PortId,
        frames: &mut [Frame<'_>],
        verdicts: &mut Vec<Verdict>,
    ) {
        (**self).handle_batch(now, ingress, frames, verdicts)
    }

    fn poll_release(
        &mut self,
        now: Instant,
        release: &mut dyn FnMut(PortId, &[u8]) -> bool,
    ) -> Option<Instant> {
        (**self).poll_release(now, release)
    }
}

/// When a driver asks its forwarder for held frames ([`Forwarder::poll_release`]).
#[derive(Debug, Default)]
struct ReleaseTimer {
    due: Option<Instant>,
}

impl ReleaseTimer {
    /// Should the driver poll now? After a round that received frames (they may have been
    /// held), or once the time the forwarder asked for has come. Reads the clock only while
    /// frames are held.
    fn due(&self, received: bool) -> Option<Instant> {
        match self.due {
            _ if received => Some(Instant::now()),
            Some(at) => {
                let now = Instant::now();
                (now >= at).then_some(now)
            }
            None => None,
        }
    }

    /// How long an idle driver may sleep: `cap`, or less when held frames are due sooner.
    fn sleep(&self, cap: Duration) -> Duration {
        self.due.map_or(cap, |at| {
            at.saturating_duration_since(Instant::now()).min(cap)
        })
    }
}

/// Why a frame could not be resized as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The frame would need more bytes than its buffer holds.
    ExceedsCapacity { needed: usize, capacity: usize },
    /// The range lies (partly) outside the frame's current bytes.
    OutOfBounds {
        offset: usize,
        count: usize,
        len: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::ExceedsCapacity { needed, capacity } => write!(
                f,
                "frame would need {needed} bytes but its buffer holds {capacity}; use 4096-byte \
                 frames or a smaller MTU"
            ),
            FrameError::OutOfBounds { offset, count, len } => write!(
                f,
                "bytes {offset}..{} are outside the frame's {len} bytes",
                offset.saturating_add(count)
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// One Ethernet frame in a driver's buffer: the packet is `buf[..len]`, the rest of the buffer
/// is tailroom the pipeline may grow into (at least 256 bytes behind a 1514-byte frame with
/// every driver's smallest buffer).
#[derive(Debug)]
pub struct Frame<'a> {
    buf: &'a mut [u8],
    /// Invariant: `len <= buf.len()`, so the slicing below cannot panic.
    len: usize,
}

impl<'a> Frame<'a> {
    /// A frame of `len` bytes at the start of `buf`.
    pub fn new(buf: &'a mut [u8], len: usize) -> Result<Self, FrameError> {
        if len > buf.len() {
            return Err(FrameError::ExceedsCapacity {
                needed: len,
                capacity: buf.len(),
            });
        }
        Ok(Frame { buf, len })
    }

    /// The frame's bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the buffer can hold.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the frame can still grow by.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.len
    }

    /// Changes the frame's length. Growing exposes whatever the buffer held there before.
    pub fn set_len(&mut self, len: usize) -> Result<(), FrameError> {
        if len > self.buf.len() {
            return Err(FrameError::ExceedsCapacity {
                needed: len,
                capacity: self.buf.len(),
            });
        }
        self.len = len;
        Ok(())
    }

    /// Opens a gap of `count` bytes at `offset` (`offset <= len`) by moving the bytes behind it
    /// towards the tail, and returns the gap for the caller to fill (its old contents remain).
    /// This is how the pipeline puts metadata between a header and its payload.
    pub fn insert(&mut self, offset: usize, count: usize) -> Result<&mut [u8], FrameError> {
        if offset > self.len {
            return Err(FrameError::OutOfBounds {
                offset,
                count: 0,
                len: self.len,
            });
        }
        let new_len = self
            .len
            .checked_add(count)
            .filter(|&n| n <= self.buf.len())
            .ok_or(FrameError::ExceedsCapacity {
                needed: self.len.saturating_add(count),
                capacity: self.buf.len(),
            })?;
        self.buf.copy_within(offset..self.len, offset + count);
        self.len = new_len;
        Ok(&mut self.buf[offset..offset + count])
    }

    /// Removes `count` bytes at `offset`, moving the bytes behind them forward.
    pub fn remove(&mut self, offset: usize, count: usize) -> Result<(), FrameError> {
        let end = offset
            .checked_add(count)
            .filter(|&end| end <= self.len)
            .ok_or(FrameError::OutOfBounds {
                offset,
                count,
                len: self.len,
            })?;
        self.buf.copy_within(end..self.len, offset);
        self.len -= count;
        Ok(())
    }
}

/// Buffer size of one frame. AF_XDP frames lose 256 bytes to the kernel's XDP headroom, so a
/// 2048-byte frame holds 1792 bytes of packet: a 1514-byte frame plus 278 bytes to grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrameSize {
    #[default]
    B2048,
    B4096,
}

impl FrameSize {
    pub fn bytes(self) -> usize {
        match self {
            FrameSize::B2048 => 2048,
            FrameSize::B4096 => 4096,
        }
    }

    /// Bytes a frame of this size offers the pipeline, whichever driver holds it.
    pub fn usable(self) -> usize {
        self.bytes() - xdp::KERNEL_HEADROOM
    }
}

/// Which driver [`start`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverChoice {
    /// AF_XDP, or AF_PACKET when AF_XDP cannot be opened on every port (logged once).
    #[default]
    Auto,
    Xdp,
    AfPacket,
}

/// Which driver is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    Xdp,
    AfPacket,
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriverKind::Xdp => "AF_XDP",
            DriverKind::AfPacket => "AF_PACKET",
        })
    }
}

/// What the workers do when there is no traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Never sleep: lowest latency, one core per worker always busy.
    BusyPoll,
    /// Keep polling for `spin` after the last frame, then sleep in `poll(2)` until one arrives.
    /// Spinning saves a wake-up per burst but takes the CPU from whoever shares it: on the
    /// 2-core lab, where the senders and receivers share the router's cores, a 50 µs spin cost
    /// 4.4 µs of CPU per forwarded packet, a 1 ms spin 5.0 µs and busy polling 5.5 µs
    /// (`examples/xdp_forward.rs`). Give a router with dedicated cores [`IdlePolicy::BusyPoll`].
    SpinThenSleep { spin: Duration },
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy::SpinThenSleep {
            spin: Duration::from_micros(50),
        }
    }
}

/// A worker's time without work, against its [`IdlePolicy`].
#[derive(Debug)]
struct Idleness {
    policy: IdlePolicy,
    since: Option<Instant>,
}

impl Idleness {
    fn new(policy: IdlePolicy) -> Self {
        Idleness {
            policy,
            since: None,
        }
    }

    /// The round did some work.
    fn worked(&mut self) {
        self.since = None;
    }

    /// The round found nothing to do at `now`; true when the worker should sleep.
    fn should_sleep(&mut self, now: Instant) -> bool {
        match self.policy {
            IdlePolicy::BusyPoll => false,
            IdlePolicy::SpinThenSleep { spin } => {
                now.duration_since(*self.since.get_or_insert(now)) >= spin
            }
        }
    }
}

/// How the AF_XDP driver makes the kernel transmit. On veth and other drivers without zero-copy
/// AF_XDP ("copy mode") the kernel transmits only inside a system call (`sendto` or `poll`), and
/// each call sends at most a budget of frames (32 unless raised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxKick {
    /// Frames one call may send (`XDP_MAX_TX_SKB_BUDGET`, Linux 6.17+; ignored before): `None`
    /// for the whole TX ring, `Some(32)` for the kernel's default.
    pub budget: Option<u32>,
    /// Keep calling while transmitted frames have not come back through the completion ring,
    /// even with nothing new to send. Without it, frames beyond a call's budget wait in the TX
    /// ring for the next frame to be sent: with the default budget and busy polling, TCP through
    /// the router stalls after a burst (see `examples/xdp_forward.rs`).
    pub while_in_flight: bool,
}

impl Default for TxKick {
    fn default() -> Self {
        TxKick {
            budget: None,
            while_in_flight: true,
        }
    }
}

/// Driver settings; [`IoConfig::new`] gives the defaults for a list of interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoConfig {
    /// Interfaces in [`PortId`] order.
    pub interfaces: Vec<String>,
    /// Queue (channel) ids to serve; one worker thread and one socket per interface each.
    pub queues: Vec<u32>,
    pub driver: DriverChoice,
    pub frame_size: FrameSize,
    /// Frames of packet memory per worker (the UMEM, or the AF_PACKET buffer pool).
    pub frames_per_queue: u32,
    /// Entries of each ring (AF_XDP RX, TX, fill, completion): a power of two.
    pub ring_size: u32,
    /// Frames moved per ring operation and per `recvmmsg`/`sendmmsg`.
    pub batch_size: u32,
    pub idle: IdlePolicy,
    pub tx_kick: TxKick,
    /// Attach the in-kernel fast path ([`fastpath`]) before the AF_XDP sockets: AF_XDP only.
    pub fast_path: bool,
}

impl IoConfig {
    pub fn new(interfaces: impl IntoIterator<Item = impl Into<String>>) -> Self {
        IoConfig {
            interfaces: interfaces.into_iter().map(Into::into).collect(),
            queues: vec![0],
            driver: DriverChoice::Auto,
            frame_size: FrameSize::B2048,
            frames_per_queue: 16384,
            ring_size: 2048,
            batch_size: 64,
            idle: IdlePolicy::default(),
            tx_kick: TxKick::default(),
            fast_path: false,
        }
    }

    /// Checks the settings against each other; the error names the setting to change.
    pub fn validate(&self) -> Result<(), IoError> {
        let bad = |what: String| Err(IoError::Config(what));
        if self.fast_path && self.driver == DriverChoice::AfPacket {
            return bad(
                "the fast path needs the AF_XDP driver (its XDP program hands every other \
                 packet to the AF_XDP sockets); use the xdp or auto driver, or turn the fast \
                 path off"
                    .into(),
            );
        }
        if self.interfaces.is_empty() {
            return bad("no interfaces: list at least one".into());
        }
        if self.interfaces.len() > usize::from(u16::MAX) {
            return bad(format!(
                "{} interfaces: at most {} are supported",
                self.interfaces.len(),
                u16::MAX
            ));
        }
        for name in &self.interfaces {
            if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['\0', '/']) {
                return bad(format!(
                    "interface name {name:?} is not a Linux interface name (1 to 15 bytes, no \
                     NUL or '/')"
                ));
            }
        }
        for (i, name) in self.interfaces.iter().enumerate() {
            if self.interfaces[..i].contains(name) {
                return bad(format!("interface {name} is listed twice"));
            }
        }
        if self.queues.is_empty() {
            return bad("no queues: list at least queue 0".into());
        }
        for (i, q) in self.queues.iter().enumerate() {
            if self.queues[..i].contains(q) {
                return bad(format!("queue {q} is listed twice"));
            }
        }
        if !self.ring_size.is_power_of_two() || !(64..=65536).contains(&self.ring_size) {
            return bad(format!(
                "ring_size {} must be a power of two from 64 to 65536",
                self.ring_size
            ));
        }
        if self.batch_size == 0 || self.batch_size > self.ring_size {
            return bad(format!(
                "batch_size {} must be from 1 to ring_size ({})",
                self.batch_size, self.ring_size
            ));
        }
        if let Some(budget) = self.tx_kick.budget
            && !(32..=self.ring_size).contains(&budget)
        {
            return bad(format!(
                "tx_kick.budget {budget} must be from 32 to ring_size ({})",
                self.ring_size
            ));
        }
        let ports = self.interfaces.len() as u64;
        let needed = 2 * ports * u64::from(self.batch_size);
        if u64::from(self.frames_per_queue) < needed.max(256) {
            return bad(format!(
                "frames_per_queue {} is too small for {ports} ports and batches of {}: give at \
                 least {}",
                self.frames_per_queue,
                self.batch_size,
                needed.max(256)
            ));
        }
        if u64::from(self.frames_per_queue) * self.frame_size.bytes() as u64 > 1 << 34 {
            return bad(format!(
                "frames_per_queue {} of {} bytes is more than 16 GiB per queue",
                self.frames_per_queue,
                self.frame_size.bytes()
            ));
        }
        Ok(())
    }
}

/// Why the I/O layer could not start or stopped.
#[derive(Debug)]
pub enum IoError {
    /// A setting is wrong; the text says which and what to change.
    Config(String),
    /// The AF_XDP driver could not be opened; `why` says what to change.
    Xdp { interface: String, why: String },
    /// The AF_PACKET driver could not be opened or failed.
    AfPacket {
        interface: String,
        source: std::io::Error,
    },
    /// A worker thread failed.
    Worker { queue: u32, why: String },
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::Config(what) => write!(f, "I/O configuration: {what}"),
            IoError::Xdp { interface, why } => write!(f, "AF_XDP on {interface}: {why}"),
            IoError::AfPacket { interface, source } => {
                write!(f, "AF_PACKET on {interface}: {source}")
            }
            IoError::Worker { queue, why } => write!(f, "worker of queue {queue}: {why}"),
        }
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IoError::AfPacket { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Counters of one port as served by one queue's worker.
#[derive(Debug, Clone)]
pub struct QueuePort {
    pub queue: u32,
    pub port: PortId,
    pub interface: String,
    pub counters: Arc<PortCounters>,
}

/// Running workers. Dropping it stops them; [`Running::stop`] also reports how they ended.
pub struct Running {
    driver: DriverKind,
    stop: Arc<AtomicBool>,
    workers: Vec<(u32, JoinHandle<Result<(), IoError>>)>,
    counters: Vec<QueuePort>,
    /// Detached when the last holder drops it, after the workers closed their sockets.
    fast_path: Option<Arc<fastpath::FastPath>>,
}

impl Running {
    pub fn driver(&self) -> DriverKind {
        self.driver
    }

    /// The in-kernel fast path, when it was asked for ([`IoConfig::fast_path`]).
    pub fn fast_path(&self) -> Option<&Arc<fastpath::FastPath>> {
        self.fast_path.as_ref()
    }

    /// Every (queue, port) and its counters.
    pub fn counters(&self) -> &[QueuePort] {
        &self.counters
    }

    /// A port's counters summed over the queues.
    pub fn port_stats(&self, port: PortId) -> PortStats {
        self.counters
            .iter()
            .filter(|c| c.port == port)
            .fold(PortStats::default(), |sum, c| sum + c.counters.snapshot())
    }

    /// Stops the workers, waits for them, and reports the first failure.
    pub fn stop(mut self) -> Result<(), IoError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), IoError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut result = Ok(());
        for (queue, worker) in self.workers.drain(..) {
            let outcome = worker.join().unwrap_or_else(|panic| {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panicked".into());
                Err(IoError::Worker { queue, why })
            });
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::error!(%error, "packet I/O worker failed");
        }
    }
}

/// Opens the configured driver on every (interface, queue) of the calling thread's network
/// namespace and starts one worker thread per queue, each with the forwarder `make(queue)`
/// returns. Workers are spawned from the calling thread and so run in its namespace.
pub fn start<F, M>(config: &IoConfig, mut make: M) -> Result<Running, IoError>
where
    F: Forwarder + Send + 'static,
    M: FnMut(u32) -> F,
{
    config.validate()?;
    let stop = Arc::new(AtomicBool::new(false));
    if !config.fast_path {
        // Whatever the driver: a fast path a crashed router left would go on forwarding its
        // sessions in the kernel, unseen by this router's policy and timers.
        for name in &config.interfaces {
            if let Ok(index) = sys::if_index(name) {
                fastpath::clear_stale(name, index);
            }
        }
    }
    let fast_path = if config.fast_path {
        let fast = fastpath::FastPath::attach(&config.interfaces).map_err(|e| IoError::Xdp {
            interface: config.interfaces.join(","),
            why: e.to_string(),
        })?;
        Some(Arc::new(fast))
    } else {
        None
    };
    let use_xdp = match config.driver {
        // The fast path's program sends what it does not forward to AF_XDP sockets only.
        _ if fast_path.is_some() => Some(xdp::open(config)?),
        DriverChoice::AfPacket => None,
        DriverChoice::Xdp => Some(xdp::open(config)?),
        DriverChoice::Auto => match xdp::open(config) {
            Ok(opened) => Some(opened),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "AF_XDP is unavailable, falling back to AF_PACKET (slower: one copy and \
                     one system call per batch in each direction)"
                );
                None
            }
        },
    };
    let mut counters = Vec::new();
    let mut workers = Vec::new();
    let driver;
    match use_xdp {
        Some(opened) => {
            driver = DriverKind::Xdp;
            for queue in opened.queues {
                counters.extend(queue.counters());
                let id = queue.queue_id();
                let forwarder = make(id);
                let stop = stop.clone();
                let handle = spawn(id, driver, move || queue.run(forwarder, &stop))?;
                workers.push((id, handle));
            }
        }
        None => {
            driver = DriverKind::AfPacket;
            let queues = af_packet::open(config)?;
            for queue in queues {
                counters.extend(queue.counters());
                let id = queue.queue_id();
                let forwarder = make(id);
                let stop = stop.clone();
                let handle = spawn(id, driver, move || queue.run(forwarder, &stop))?;
                workers.push((id, handle));
            }
        }
    }
    Ok(Running {
        driver,
        stop,
        workers,
        counters,
        fast_path,
    })
}

fn spawn(
    queue: u32,
    driver: DriverKind,
    work: impl FnOnce() -> Result<(), IoError> + Send + 'static,
) -> Result<JoinHandle<Result<(), IoError>>, IoError> {
    std::thread::Builder::new()
        .name(format!("io-q{queue}"))
        .spawn(work)
        .map_err(|e| IoError::Worker {
            queue,
            why: format!("cannot start the {driver} worker thread: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_fast_path_is_refused_with_af_packet_and_allowed_with_af_xdp() {
        let mut config = IoConfig::new(["wan0"]);
        config.fast_path = true;
        config.driver = DriverChoice::AfPacket;
        let error = config
            .validate()
            .expect_err("AF_PACKET cannot carry the fast path");
        assert!(
            error
                .to_string()
                .contains("fast path needs the AF_XDP driver"),
            "{error}"
        );
        for driver in [DriverChoice::Xdp, DriverChoice::Auto] {
            config.driver = driver;
            assert!(config.validate().is_ok(), "{driver:?}");
        }
    }

    #[test]
    fn frame_rejects_a_length_beyond_its_buffer() {
        let mut buf = [0u8; 8];
        assert_eq!(
            Frame::new(&mut buf, 9).unwrap_err(),
            FrameError::ExceedsCapacity {
                needed: 9,
                capacity: 8
            }
        );
        let mut frame = Frame::new(&mut buf, 4).unwrap();
        assert_eq!((frame.len(), frame.capacity(), frame.tailroom()), (4, 8, 4));
        assert!(frame.set_len(9).is_err());
        assert_eq!(
            frame.len(),
            4,
            "a refused set_len leaves the frame as it was"
        );
        frame.set_len(8).unwrap();
        assert_eq!(frame.data().len(), 8);
    }

    #[test]
    fn insert_opens_a_gap_and_remove_closes_it() {
        let mut buf = [0u8; 16];
        buf[..6].copy_from_slice(b"headXY");
        let mut frame = Frame::new(&mut buf, 6).unwrap();
        frame.insert(4, 3).unwrap().copy_from_slice(b"md!");
        assert_eq!(frame.data(), b"headmd!XY");
        assert_eq!(
            frame.insert(10, 1).unwrap_err(),
            FrameError::OutOfBounds {
                offset: 10,
                count: 0,
                len: 9
            }
        );
        assert_eq!(
            frame.insert(0, 8).unwrap_err(),
            FrameError::ExceedsCapacity {
                needed: 17,
                capacity: 16
            }
        );
        frame.remove(4, 3).unwrap();
        assert_eq!(frame.data(), b"headXY");
        assert!(frame.remove(5, 2).is_err());
        assert!(frame.remove(usize::MAX, 2).is_err());
    }

    #[test]
    fn config_errors_name_the_setting() {
        let mut config = IoConfig::new(["r-a", "r-b"]);
        config.validate().unwrap();
        config.ring_size = 1000;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("ring_size 1000")
        );
        config.ring_size = 2048;
        config.interfaces.push("r-a".into());
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
        config.interfaces = vec!["an-interface-name-too-long".into()];
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("1 to 15 bytes")
        );
        config.interfaces = vec!["r-a".into()];
        config.frames_per_queue = 100;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("frames_per_queue 100")
        );
        config.frames_per_queue = 4096;
        config.batch_size = 0;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("batch_size 0")
        );
    }

    #[test]
    fn idle_workers_sleep_after_the_spin_and_never_when_busy_polling() {
        let t0 = Instant::now();
        let mut idle = Idleness::new(IdlePolicy::SpinThenSleep {
            spin: Duration::from_millis(1),
        });
        assert_eq!(
            IdlePolicy::default(),
            IdlePolicy::SpinThenSleep {
                spin: Duration::from_micros(50)
            }
        );
        assert!(!idle.should_sleep(t0));
        assert!(!idle.should_sleep(t0 + Duration::from_micros(999)));
        assert!(idle.should_sleep(t0 + Duration::from_millis(1)));
        idle.worked();
        assert!(
            !idle.should_sleep(t0 + Duration::from_millis(5)),
            "work restarts the spin"
        );
        let mut busy = Idleness::new(IdlePolicy::BusyPoll);
        assert!(!busy.should_sleep(t0));
        assert!(!busy.should_sleep(t0 + Duration::from_secs(60)));
    }

    #[test]
    fn the_smallest_frame_leaves_256_bytes_behind_a_full_ethernet_frame() {
        assert!(FrameSize::B2048.usable() >= 1514 + 256);
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        /// `insert` then `remove` at the same place restores the frame; the bytes around the gap
        /// keep their order, and nothing ever panics.
        #[test]
        fn insert_remove_round_trip(
            data in proptest::collection::vec(any::<u8>(), 0..64),
            tail in 0usize..64,
            offset in 0usize..80,
            count in 0usize..80,
        ) {
            let mut buf = data.clone();
            buf.resize(data.len() + tail, 0xee);
            let mut frame = Frame::new(&mut buf, data.len()).unwrap();
            match frame.insert(offset, count) {
                Ok(gap) => {
                    prop_assert!(offset <= data.len() && data.len() + count <= data.len() + tail);
                    gap.fill(0xaa);
                    prop_assert_eq!(&frame.data()[..offset], &data[..offset]);
                    prop_assert_eq!(&frame.data()[offset + count..], &data[offset..]);
                    frame.remove(offset, count).unwrap();
                    prop_assert_eq!(frame.data(), &data[..]);
                }
                Err(_) => {
                    prop_assert!(offset > data.len() || count > tail);
                    prop_assert_eq!(frame.data(), &data[..]);
                }
            }
        }
    }
}
