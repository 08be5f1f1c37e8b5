//! The AF_XDP driver, on the `afxdp` crate (libbpf's XSK API underneath): per queue one worker
//! thread, one packet-memory area, and per port one XDP socket with its RX/TX rings and its own
//! fill/completion rings.
//!
//! Zero-copy between ports: `afxdp` 0.4 does not offer `XDP_SHARED_UMEM` (one UMEM bound by
//! several sockets). It offers the other way to the same end, which this driver uses: the
//! worker's one memory area is registered as a UMEM once per socket, so a frame's address is
//! valid on every port of the worker and forwarding from port A to port B moves a descriptor from
//! A's RX ring to B's TX ring without copying the packet. (On veth the kernel still copies once
//! on receive and once on transmit: veth has no zero-copy AF_XDP mode.)
//!
//! Ring discipline, per round of the worker loop and per port: completed TX frames return to the
//! free list; the fill ring is topped up from it; up to a batch of frames is received and run
//! through the pipeline; frames queued for each port are written to its TX ring and the kernel is
//! kicked. Transmission in copy mode happens only inside a system call (`sendto` or `poll`) and
//! one call sends at most 32 frames unless told otherwise, so by default ([`TxKick`]) the worker
//! raises that budget to the ring size (`XDP_MAX_TX_SKB_BUDGET`, Linux 6.17+) and keeps kicking
//! while any transmitted frame has not come back through the completion ring. Without both, the
//! frames beyond a kick's budget wait in the TX ring for the next frame to be sent, and a TCP
//! flow that waits for them stalls.
//!
//! Frame accounting: the kernel counts a frame it had to drop because the fill ring was empty
//! as `kernel_fill_ring_empty`; with the fill ring as large as the RX ring that is also how an
//! overloaded worker shows (the RX ring holds every frame the fill ring had).
//!
//! [`TxKick`]: super::TxKick
//!
//! The XDP program is libbpf's default one (redirect each queue to its socket). When opening
//! attaches it to an interface that had none, the last socket to close detaches it again.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use afxdp::buf::Buf;
use afxdp::buf_mmap::BufMmap;
use afxdp::mmap_area::{MmapArea, MmapAreaOptions};
use afxdp::socket::{Socket, SocketOptions, SocketRx, SocketTx};
use afxdp::umem::{Umem, UmemCompletionQueue, UmemFillQueue};
use arraydeque::{ArrayDeque, Wrapping};

use super::counters::PortCounters;
use super::sys;
use super::{
    Forwarder, Frame, IdlePolicy, Idleness, IoConfig, IoError, PortId, QueuePort, ReleaseTimer,
    Verdict,
};

/// Bytes the kernel keeps in front of every received frame (`XDP_PACKET_HEADROOM`); `afxdp`
/// hides them, so a frame of N bytes offers N - 256 to the packet.
pub const KERNEL_HEADROOM: usize = 256;

/// `setsockopt(SOL_XDP, XDP_MAX_TX_SKB_BUDGET)`: frames one copy-mode `sendto` may transmit.
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// How long an idle worker sleeps in `poll(2)` before looking at the stop flag again.
const IDLE_SLEEP_MS: i32 = 10;

/// How often the worker copies the kernel's socket statistics into the counters.
const KERNEL_STATS_EVERY: Duration = Duration::from_millis(100);

type Buffer = BufMmap<'static, ()>;
/// `afxdp`'s batch queue type; 4096 frames (`afxdp::PENDING_LEN`).
type Batch = ArrayDeque<[Buffer; afxdp::PENDING_LEN], Wrapping>;

/// Opened sockets, one [`XdpQueue`] per configured queue.
pub(crate) struct Opened {
    pub queues: Vec<XdpQueue>,
}

/// Opens AF_XDP sockets for every (interface, queue) of `config` in the calling thread's network
/// namespace. On failure nothing stays open or attached.
pub(crate) fn open(config: &IoConfig) -> Result<Opened, IoError> {
    sys::raise_memlock_limit();
    let mut interfaces = Vec::with_capacity(config.interfaces.len());
    let mut programs = ProgramGuard::default();
    for name in &config.interfaces {
        let fail = |why: String| IoError::Xdp {
            interface: name.clone(),
            why,
        };
        let index = sys::if_index(name).map_err(|e| {
            fail(format!(
                "no such interface in this network namespace ({e}); check the name, and that \
                 the router runs in the namespace that holds it"
            ))
        })?;
        match attached_program(index) {
            Ok(0) => programs.attached_by_us.push(index),
            Ok(_) => {}
            Err(e) => return Err(fail(format!("cannot query its XDP program: {e}"))),
        }
        interfaces.push((name.clone(), index));
    }
    let programs = Arc::new(programs);
    let mut queues = Vec::with_capacity(config.queues.len());
    for &queue in &config.queues {
        queues.push(XdpQueue::open(
            config,
            queue,
            &interfaces,
            programs.clone(),
        )?);
    }
    Ok(Opened { queues })
}

/// The XDP program id attached to interface `index` (0 for none).
fn attached_program(index: u32) -> io::Result<u32> {
    let mut id = 0u32;
    let index = libc::c_int::try_from(index)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    // SAFETY: passes a valid pointer to a u32 the call fills in.
    let rc = unsafe { libbpf_sys::bpf_get_link_xdp_id(index, &mut id, 0) };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(id)
}

/// Interfaces that had no XDP program before the driver opened them. Shared by every socket of
/// every queue and dropped after them, so it detaches libbpf's program once nothing uses it. It
/// is dropped on a thread of the namespace it was created in (the opening thread or a worker it
/// spawned), so interface indexes mean the same interfaces.
#[derive(Default)]
struct ProgramGuard {
    attached_by_us: Vec<u32>,
}

impl Drop for ProgramGuard {
    fn drop(&mut self) {
        for &index in &self.attached_by_us {
            let Ok(c_index) = libc::c_int::try_from(index) else {
                continue;
            };
            // SAFETY: plain netlink request; fd -1 means "detach".
            let rc = unsafe { libbpf_sys::bpf_set_link_xdp_fd(c_index, -1, 0) };
            if rc < 0 {
                tracing::warn!(
                    interface_index = index,
                    error = %io::Error::from_raw_os_error(-rc),
                    "cannot detach the XDP program the router attached; detach it with `ip link \
                     set dev IF xdp off`"
                );
            }
        }
    }
}

/// Turns `afxdp`'s errors (which carry libbpf's negative errno) into advice.
fn explain(what: &str, error: &io::Error) -> String {
    let errno = error.raw_os_error().map(i32::abs);
    let error = errno.map_or_else(
        || error.to_string(),
        |e| io::Error::from_raw_os_error(e).to_string(),
    );
    let advice = match errno {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "run as root, or grant CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_IPC_LOCK"
        }
        Some(libc::EBUSY) => {
            "another AF_XDP socket already serves this queue, or another XDP program is \
             attached to the interface (see `ip link show`)"
        }
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
            "the queue may not exist (see `ethtool -l IF`), or the kernel or driver lacks \
             AF_XDP (needs Linux 5.4+)"
        }
        Some(libc::ENOMEM) | Some(libc::ENOBUFS) => {
            "lower frames_per_queue or raise the locked-memory limit (`ulimit -l`)"
        }
        Some(libc::EAFNOSUPPORT) => "the kernel was built without CONFIG_XDP_SOCKETS",
        _ => "see the kernel log (`dmesg`)",
    };
    format!("{what} failed: {error}; {advice}")
}

/// One port of a queue's worker: its socket and rings, and frames waiting for its TX ring.
struct XdpPort {
    interface: String,
    /// The socket's file descriptor (the UMEM's: libbpf gives a UMEM's first socket its fd).
    fd: RawFd,
    rx: SocketRx<'static, ()>,
    tx: SocketTx<'static, ()>,
    fill: UmemFillQueue<'static, ()>,
    completion: UmemCompletionQueue<'static, ()>,
    /// Fill-ring entries the kernel has consumed and the worker has not yet replaced.
    fill_deficit: usize,
    /// Frames written to the TX ring and not yet back through the completion ring.
    in_flight: usize,
    /// Frames the pipeline sent to this port, waiting for room in the TX ring.
    backlog: Batch,
    counters: Arc<PortCounters>,
    // Kept alive for the rings above; declared last so they are closed after the rings' users.
    _socket: Arc<Socket<'static, ()>>,
    _umem: Arc<Umem<'static, ()>>,
}

/// Everything one worker thread owns.
pub(crate) struct XdpQueue {
    queue: u32,
    ports: Vec<XdpPort>,
    /// Frames neither in a ring nor in a backlog.
    free: Vec<Buffer>,
    received: Batch,
    /// Per received buffer: taken as a frame? Then the pipeline's verdicts and frame lengths.
    usable: Vec<bool>,
    verdicts: Vec<Verdict>,
    lens: Vec<usize>,
    batch_size: usize,
    ring_size: usize,
    idle: IdlePolicy,
    kick_while_in_flight: bool,
    // Dropped after `ports` (their sockets) and `free`/`received` (their buffers point into it).
    _area: Arc<MmapArea<'static, ()>>,
    _programs: Arc<ProgramGuard>,
}

impl XdpQueue {
    fn open(
        config: &IoConfig,
        queue: u32,
        interfaces: &[(String, u32)],
        programs: Arc<ProgramGuard>,
    ) -> Result<XdpQueue, IoError> {
        let first = interfaces.first().map_or("", |(name, _)| name.as_str());
        let frames = config.frames_per_queue as usize;
        let (area, free) = MmapArea::<'static, ()>::new(
            frames,
            config.frame_size.bytes(),
            MmapAreaOptions { huge_tlb: false },
        )
        .map_err(|_| IoError::Xdp {
            interface: first.to_string(),
            why: format!(
                "cannot map {frames} frames of {} bytes for queue {queue}; lower frames_per_queue",
                config.frame_size.bytes()
            ),
        })?;
        let ring = config.ring_size;
        let mut ports = Vec::with_capacity(interfaces.len());
        for (name, _) in interfaces {
            let fail = |why: String| IoError::Xdp {
                interface: name.clone(),
                why,
            };
            let (umem, completion, fill) = Umem::new(area.clone(), ring, ring).map_err(|e| {
                let e = match e {
                    afxdp::umem::UmemNewError::Create(e) => e,
                    other => io::Error::other(other.to_string()),
                };
                fail(explain(
                    &format!("registering the UMEM of queue {queue}"),
                    &e,
                ))
            })?;
            let options = SocketOptions {
                rx_ring_size: ring,
                tx_ring_size: ring,
                ..SocketOptions::default()
            };
            let (socket, rx, tx) =
                Socket::new(umem.clone(), name, queue as usize, ring, ring, options).map_err(
                    |e| {
                        let e = match e {
                            afxdp::socket::SocketNewError::Create(e) => e,
                            other => io::Error::other(other.to_string()),
                        };
                        fail(explain(
                            &format!("creating the XDP socket of queue {queue}"),
                            &e,
                        ))
                    },
                )?;
            // SAFETY: `umem` is a live UMEM; the call only reads its fd.
            let fd = unsafe { libbpf_sys::xsk_umem__fd(umem.get_ptr()) };
            if fd < 0 {
                return Err(fail("libbpf returned no socket descriptor".into()));
            }
            // Best effort: kernels before 6.17 do not know the option and send 32 per kick.
            let budget = config.tx_kick.budget.unwrap_or(ring);
            let _ = sys::set_sockopt_int(fd, libc::SOL_XDP, XDP_MAX_TX_SKB_BUDGET, budget as i32);
            ports.push(XdpPort {
                interface: name.clone(),
                fd,
                rx,
                tx,
                fill,
                completion,
                fill_deficit: ring as usize,
                in_flight: 0,
                backlog: Batch::new(),
                counters: Arc::new(PortCounters::default()),
                _socket: socket,
                _umem: umem,
            });
        }
        let mut queue = XdpQueue {
            queue,
            ports,
            free,
            received: Batch::new(),
            usable: Vec::new(),
            verdicts: Vec::new(),
            lens: Vec::new(),
            batch_size: config.batch_size as usize,
            ring_size: ring as usize,
            idle: config.idle,
            kick_while_in_flight: config.tx_kick.while_in_flight,
            _area: area,
            _programs: programs,
        };
        // Give each fill ring up to half of an equal share of the frames; the rest is for
        // frames in flight (RX ring, backlogs, TX ring).
        let share = (frames / (2 * queue.ports.len().max(1))).min(ring as usize);
        for port in &mut queue.ports {
            let filled = port.fill.fill(&mut queue.free, share).unwrap_or(0);
            port.fill_deficit -= filled;
        }
        Ok(queue)
    }

    pub(crate) fn queue_id(&self) -> u32 {
        self.queue
    }

    pub(crate) fn counters(&self) -> Vec<QueuePort> {
        self.ports
            .iter()
            .enumerate()
            .map(|(index, port)| QueuePort {
                queue: self.queue,
                port: PortId(index as u16),
                interface: port.interface.clone(),
                counters: port.counters.clone(),
            })
            .collect()
    }

    /// The worker loop; returns when `stop` is set.
    pub(crate) fn run<F: Forwarder>(
        mut self,
        mut forwarder: F,
        stop: &AtomicBool,
    ) -> Result<(), IoError> {
        // Waiting for received frames is enough: in copy mode poll(2) also transmits.
        let fds: Vec<(RawFd, libc::c_short)> =
            self.ports.iter().map(|p| (p.fd, libc::POLLIN)).collect();
        let mut idle = Idleness::new(self.idle);
        let mut rounds = 0u32;
        let mut stats_at = Instant::now();
        let mut release = ReleaseTimer::default();
        while !stop.load(Ordering::Relaxed) {
            let (mut work, mut received) = (0, 0);
            for index in 0..self.ports.len() {
                work += self.complete(index);
                self.refill(index);
                received += self.receive(index, &mut forwarder);
            }
            work += received;
            if let Some(now) = release.due(received > 0) {
                work += self.release(&mut forwarder, now, &mut release);
            }
            for index in 0..self.ports.len() {
                work += self.transmit(index);
            }
            rounds = rounds.wrapping_add(1);
            let now = if work > 0 {
                idle.worked();
                // The clock is read once every 1024 busy rounds, for the statistics.
                if !rounds.is_multiple_of(1024) {
                    continue;
                }
                Instant::now()
            } else {
                let now = Instant::now();
                if idle.should_sleep(now) {
                    // Idle for the whole spin, kicks included: frames still in flight are not
                    // coming back soon (link down, peer busy), and poll(2) keeps kicking TX
                    // each time it is called.
                    let sleep = release.sleep(Duration::from_millis(IDLE_SLEEP_MS as u64));
                    sys::poll_for(&fds, sleep).map_err(|e| IoError::Worker {
                        queue: self.queue,
                        why: format!("poll on the XDP sockets failed: {e}"),
                    })?;
                }
                now
            };
            if now.duration_since(stats_at) >= KERNEL_STATS_EVERY {
                stats_at = now;
                self.refresh_kernel_stats();
            }
        }
        self.refresh_kernel_stats();
        Ok(())
    }

    /// Copies the frames the forwarder releases (a shaped link's queue) into free buffers and
    /// queues them for their ports; keeps a batch of buffers back for the fill rings.
    fn release<F: Forwarder>(
        &mut self,
        forwarder: &mut F,
        now: Instant,
        timer: &mut ReleaseTimer,
    ) -> usize {
        let reserve = self.batch_size;
        let (free, ports) = (&mut self.free, &mut self.ports);
        let mut released = 0;
        timer.due = forwarder.poll_release(now, &mut |port, bytes| {
            let Some(p) = ports.get_mut(port.index()) else {
                return true; // no such port: nothing to keep it for
            };
            if p.backlog.is_full() || free.len() <= reserve {
                return false;
            }
            let Some(mut buffer) = free.pop() else {
                return false;
            };
            let data = buffer.get_data_mut();
            let (Some(dst), Ok(len)) = (data.get_mut(..bytes.len()), u16::try_from(bytes.len()))
            else {
                free.push(buffer);
                PortCounters::add(&p.counters.dropped_tx, 1);
                return true;
            };
            dst.copy_from_slice(bytes);
            buffer.set_len(len);
            // Cannot evict: the backlog is not full.
            let _ = p.backlog.push_back(buffer);
            released += 1;
            true
        });
        released
    }

    /// Takes back frames the kernel has transmitted.
    fn complete(&mut self, index: usize) -> usize {
        let port = &mut self.ports[index];
        if port.in_flight == 0 {
            return 0;
        }
        let done = port
            .completion
            .service(&mut self.free, self.ring_size)
            .unwrap_or(0);
        port.in_flight = port.in_flight.saturating_sub(done);
        done
    }

    /// Replaces the fill-ring entries the kernel has used, as far as free frames allow.
    fn refill(&mut self, index: usize) {
        let port = &mut self.ports[index];
        if port.fill_deficit == 0 {
            return;
        }
        if self.free.is_empty() {
            PortCounters::add(&port.counters.fill_starved, 1);
            return;
        }
        let want = port.fill_deficit.min(self.free.len());
        let filled = port.fill.fill(&mut self.free, want).unwrap_or(0);
        port.fill_deficit -= filled;
    }

    /// Receives up to a batch on port `index` and hands each frame to the pipeline.
    fn receive<F: Forwarder>(&mut self, index: usize, forwarder: &mut F) -> usize {
        let port = &mut self.ports[index];
        let received = port
            .rx
            .try_recv(&mut self.received, self.batch_size, ())
            .unwrap_or(0);
        if received == 0 {
            PortCounters::add(&port.counters.rx_empty_polls, 1);
            if port.fill.needs_wakeup() {
                port.rx.wake();
            }
            return 0;
        }
        port.fill_deficit += received;
        let ingress = PortId(index as u16);
        let now = Instant::now();
        let (mut rx_bytes, mut dropped, mut dropped_rx) = (0u64, 0u64, 0u64);
        // The whole batch to the pipeline at once (it overlaps the batch's session lookups);
        // a buffer that cannot be taken as a frame (a length beyond its buffer) is dropped.
        self.usable.clear();
        self.lens.clear();
        {
            let mut frames = Vec::with_capacity(self.received.len());
            for buffer in self.received.iter_mut() {
                let len = usize::from(buffer.get_len());
                rx_bytes += len as u64;
                let frame = Frame::new(buffer.get_data_mut(), len);
                self.usable.push(frame.is_ok());
                frames.extend(frame.ok());
            }
            forwarder.handle_batch(now, ingress, &mut frames, &mut self.verdicts);
            self.lens.extend(frames.iter().map(Frame::len));
        }
        let mut handled = 0;
        let mut usable = 0;
        while let Some(mut buffer) = self.received.pop_front() {
            let outcome = if self.usable.get(usable).copied().unwrap_or(false) {
                let verdict = self.verdicts.get(handled).copied().unwrap_or(Verdict::Drop);
                let len = self.lens.get(handled).copied().unwrap_or(0);
                handled += 1;
                u16::try_from(len).ok().map(|len| (verdict, len))
            } else {
                None
            };
            usable += 1;
            match outcome {
                Some((Verdict::Forward(egress), new_len)) => {
                    buffer.set_len(new_len);
                    self.enqueue(index, egress, buffer);
                }
                Some((Verdict::Drop, _)) => {
                    dropped += 1;
                    self.free.push(buffer);
                }
                None => {
                    dropped_rx += 1;
                    self.free.push(buffer);
                }
            }
        }
        let counters = &self.ports[index].counters;
        PortCounters::add(&counters.rx_packets, received as u64);
        PortCounters::add(&counters.rx_bytes, rx_bytes);
        PortCounters::add(&counters.dropped_by_pipeline, dropped);
        PortCounters::add(&counters.dropped_rx, dropped_rx);
        received
    }

    /// Queues a frame for port `egress`, or frees it when there is no such port or no room.
    fn enqueue(&mut self, ingress: usize, egress: PortId, buffer: Buffer) {
        match self.ports.get_mut(egress.index()) {
            Some(port) if !port.backlog.is_full() => {
                // Cannot evict: the backlog is not full.
                let _ = port.backlog.push_back(buffer);
            }
            Some(port) => {
                PortCounters::add(&port.counters.dropped_tx, 1);
                self.free.push(buffer);
            }
            None => {
                // A verdict naming no port: charged to the port the frame came in on.
                if let Some(port) = self.ports.get(ingress) {
                    PortCounters::add(&port.counters.dropped_tx, 1);
                }
                self.free.push(buffer);
            }
        }
    }

    /// Writes port `index`'s backlog to its TX ring and kicks the kernel.
    fn transmit(&mut self, index: usize) -> usize {
        let batch_size = self.batch_size;
        let kick_while_in_flight = self.kick_while_in_flight;
        let port = &mut self.ports[index];
        let mut sent = 0usize;
        let mut bytes = 0u64;
        while !port.backlog.is_empty() {
            let take = port.backlog.len().min(batch_size);
            // Ring reservations are all or nothing: `try_send` sends `take` frames or none, from
            // the front of the backlog, so their bytes can be counted before.
            let batch_bytes: u64 = port
                .backlog
                .iter()
                .take(take)
                .map(|b| u64::from(b.get_len()))
                .sum();
            // `try_send` kicks the kernel (sendto) after writing, as need_wakeup asks.
            let n = port.tx.try_send(&mut port.backlog, batch_size).unwrap_or(0);
            if n == 0 {
                PortCounters::add(&port.counters.tx_ring_full, 1);
                break;
            }
            bytes += batch_bytes;
            sent += n;
        }
        if sent > 0 {
            port.in_flight += sent;
            PortCounters::add(&port.counters.tx_packets, sent as u64);
            PortCounters::add(&port.counters.tx_bytes, bytes);
        } else if kick_while_in_flight && port.in_flight > 0 && port.tx.needs_wakeup() {
            // Frames may still sit in the TX ring: a kick sends at most a budget of them and
            // stops early when the device is busy, and nothing else will send them.
            kick(port.fd);
        }
        sent
    }

    fn refresh_kernel_stats(&self) {
        for port in &self.ports {
            if let Ok(stats) = kernel_stats(port.fd) {
                let c = &port.counters;
                c.kernel_rx_ring_full
                    .store(stats.rx_ring_full, Ordering::Relaxed);
                c.kernel_fill_ring_empty
                    .store(stats.rx_fill_ring_empty_descs, Ordering::Relaxed);
                c.kernel_rx_dropped
                    .store(stats.rx_dropped, Ordering::Relaxed);
            }
        }
    }
}

/// Asks the kernel to transmit what is in the socket's TX ring. Errors mean "not everything was
/// sent" (EAGAIN, EBUSY, ENOBUFS) or "the link is down" (ENETDOWN, ENXIO); the caller retries
/// while frames are in flight either way.
fn kick(fd: RawFd) {
    // SAFETY: a zero-length send with null buffers is how AF_XDP is told to transmit.
    unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        );
    }
}

/// The kernel's counters of one XDP socket.
fn kernel_stats(fd: RawFd) -> io::Result<libc::xdp_statistics> {
    // SAFETY: xdp_statistics is plain integers, valid when zeroed.
    let mut stats: libc::xdp_statistics = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::xdp_statistics>() as libc::socklen_t;
    // SAFETY: passes a buffer of `len` bytes and its length.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
            (&mut stats as *mut libc::xdp_statistics).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stats)
}
