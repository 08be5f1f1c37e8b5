//! The AF_PACKET fallback driver, for hosts without AF_XDP: per queue one worker thread, per
//! port one raw packet socket, frames moved in batches with `recvmmsg`/`sendmmsg`.
//!
//! Each worker keeps its frames in one arena; a frame received on port A and forwarded to port B
//! is handed to `sendmmsg` from the same buffer (the kernel copies once in each direction).
//!
//! Sockets use `PACKET_VNET_HDR`, so every frame comes with the kernel's virtio-net header. The
//! driver uses it to finish checksums a local sender left to offload (`CHECKSUM_PARTIAL`), which
//! AF_XDP cannot see, and to drop GSO super-frames (larger than the MTU; turn TSO off on the
//! senders). Several queues share each interface through a `PACKET_FANOUT_HASH` group, so a
//! flow stays on one worker.
//!
//! Unlike AF_XDP, AF_PACKET does not take frames away from the kernel: the kernel's own stack
//! still sees every frame, so IP forwarding must stay off (`net.ipv4.ip_forward=0`) on the
//! router's namespace or the kernel forwards a second copy.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::counters::PortCounters;
use super::sys;
use super::{
    Forwarder, Frame, IdlePolicy, Idleness, IoConfig, IoError, PortId, QueuePort, ReleaseTimer,
    Verdict,
};
use crate::packet::checksum;

/// How long an idle worker sleeps in `poll(2)` before looking at the stop flag again.
const IDLE_SLEEP_MS: i32 = 10;

/// Receive buffer asked for each socket: bursts wait here while the worker is busy.
const SOCKET_RCVBUF: libc::c_int = 4 << 20;

/// `struct virtio_net_hdr` (without `num_buffers`), in host byte order as AF_PACKET writes it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct VirtioNetHdr {
    flags: u8,
    gso_type: u8,
    hdr_len: u16,
    gso_size: u16,
    csum_start: u16,
    csum_offset: u16,
}

const VNET_HDR_LEN: usize = size_of::<VirtioNetHdr>();
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;

/// What the virtio-net header says must happen to a received frame before it can be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Received {
    /// The frame is complete as it is.
    Ready,
    /// A GSO super-frame: several MTU-sized frames' worth that only the kernel can split.
    Segmentable,
    /// The checksum at `start + offset` was left to offload and is not filled in.
    NeedsChecksum { start: usize, offset: usize },
}

impl VirtioNetHdr {
    fn classify(&self) -> Received {
        if self.gso_type != VIRTIO_NET_HDR_GSO_NONE {
            Received::Segmentable
        } else if self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
            Received::NeedsChecksum {
                start: usize::from(self.csum_start),
                offset: usize::from(self.csum_offset),
            }
        } else {
            Received::Ready
        }
    }
}

/// Finishes a checksum left to offload: the field holds the pseudo-header sum, and the checksum
/// covers the field and everything after `start` (RFC 1071 over `frame[start..]`). Returns false,
/// leaving the frame alone, when the header points outside it.
fn finish_partial_checksum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let Some(field) = start.checked_add(offset) else {
        return false;
    };
    if field.checked_add(2).is_none_or(|end| end > frame.len()) {
        return false;
    }
    let Some(covered) = frame.get(start..) else {
        return false;
    };
    let value = match checksum::finish(checksum::data(covered)) {
        // A computed 0 is sent as 0xffff: the same in one's complement, and for UDP 0 would
        // mean "no checksum".
        0 => 0xffff,
        value => value,
    };
    frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
    true
}

/// One port of a worker: its socket and the frames waiting to be sent on it.
struct PacketPort {
    interface: String,
    socket: OwnedFd,
    /// (frame index, length) waiting for `sendmmsg`.
    backlog: VecDeque<(u32, u32)>,
    counters: Arc<PortCounters>,
}

/// Everything one worker thread owns.
pub(crate) struct PacketQueue {
    queue: u32,
    ports: Vec<PacketPort>,
    /// Frame `i` is `arena[i * frame_len..][..frame_len]`.
    arena: Vec<u8>,
    frame_len: usize,
    free: Vec<u32>,
    batch_size: usize,
    backlog_limit: usize,
    idle: IdlePolicy,
}

/// Opens one packet socket per (interface, queue) in the calling thread's network namespace.
pub(crate) fn open(config: &IoConfig) -> Result<Vec<PacketQueue>, IoError> {
    let mut indexes = Vec::with_capacity(config.interfaces.len());
    for name in &config.interfaces {
        let index = sys::if_index(name).map_err(|source| IoError::AfPacket {
            interface: name.clone(),
            source,
        })?;
        indexes.push(index);
    }
    let fanout = config.queues.len() > 1;
    let frame_len = config.frame_size.usable();
    let frames = config.frames_per_queue as usize;
    let mut queues = Vec::with_capacity(config.queues.len());
    for &queue in &config.queues {
        let mut ports = Vec::with_capacity(indexes.len());
        for (name, &index) in config.interfaces.iter().zip(&indexes) {
            let socket = open_socket(index, fanout).map_err(|source| IoError::AfPacket {
                interface: name.clone(),
                source,
            })?;
            ports.push(PacketPort {
                interface: name.clone(),
                socket,
                backlog: VecDeque::with_capacity(config.ring_size as usize),
                counters: Arc::new(PortCounters::default()),
            });
        }
        queues.push(PacketQueue {
            queue,
            ports,
            arena: vec![0u8; frames * frame_len],
            frame_len,
            free: (0..frames as u32).rev().collect(),
            batch_size: config.batch_size as usize,
            backlog_limit: config.ring_size as usize,
            idle: config.idle,
        });
    }
    Ok(queues)
}

fn open_socket(if_index: u32, fanout: bool) -> io::Result<OwnedFd> {
    // Protocol 0: receive nothing until bound to the interface below.
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(
            error.kind(),
            format!("{error}; AF_PACKET needs CAP_NET_RAW (run as root)"),
        ));
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    sys::set_sockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
    // Frames this socket (or anyone) sends on the interface are not received back.
    sys::set_sockopt_int(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
    // Best effort: transmit straight to the device, like AF_XDP does.
    let _ = sys::set_sockopt_int(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1);
    if sys::set_sockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_RCVBUF).is_err() {
        let _ = sys::set_sockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_RCVBUF);
    }
    // SAFETY: sockaddr_ll is plain data, valid when zeroed.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    address.sll_ifindex = libc::c_int::try_from(if_index)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    // SAFETY: passes a valid sockaddr_ll and its size.
    let rc = unsafe {
        libc::bind(
            fd,
            (&address as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if fanout {
        // Group id: unique per interface within this process.
        let group = (std::process::id() as u16) ^ (if_index as u16);
        let value = u32::from(group) | (libc::PACKET_FANOUT_HASH << 16);
        sys::set_sockopt_int(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            value as libc::c_int,
        )?;
    }
    Ok(socket)
}

/// Reusable `recvmmsg`/`sendmmsg` argument arrays of one worker.
struct MessageArrays {
    headers: Vec<VirtioNetHdr>,
    iovecs: Vec<libc::iovec>,
    messages: Vec<libc::mmsghdr>,
    frames: Vec<u32>,
}

impl MessageArrays {
    fn new(batch: usize) -> Self {
        MessageArrays {
            headers: vec![VirtioNetHdr::default(); batch],
            iovecs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                2 * batch
            ],
            // SAFETY: mmsghdr is plain data (pointers and integers), valid when zeroed.
            messages: vec![unsafe { std::mem::zeroed() }; batch],
            frames: Vec::with_capacity(batch),
        }
    }

    /// Points message `i` at header slot `i` and `len` bytes at `data`.
    fn set(&mut self, i: usize, data: *mut u8, len: usize) {
        self.iovecs[2 * i] = libc::iovec {
            iov_base: (&mut self.headers[i] as *mut VirtioNetHdr).cast(),
            iov_len: VNET_HDR_LEN,
        };
        self.iovecs[2 * i + 1] = libc::iovec {
            iov_base: data.cast(),
            iov_len: len,
        };
        let message = &mut self.messages[i];
        // SAFETY: mmsghdr is plain data, valid when zeroed.
        *message = unsafe { std::mem::zeroed() };
        message.msg_hdr.msg_iov = &mut self.iovecs[2 * i];
        message.msg_hdr.msg_iovlen = 2;
    }
}

impl PacketQueue {
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

    /// The worker loop; returns when `stop` is set or a socket fails.
    pub(crate) fn run<F: Forwarder>(
        mut self,
        mut forwarder: F,
        stop: &AtomicBool,
    ) -> Result<(), IoError> {
        let mut arrays = MessageArrays::new(self.batch_size);
        let mut idle = Idleness::new(self.idle);
        let mut release = ReleaseTimer::default();
        while !stop.load(Ordering::Relaxed) {
            let mut work = 0;
            for index in 0..self.ports.len() {
                work += self.receive(index, &mut forwarder, &mut arrays)?;
            }
            if let Some(now) = release.due(work > 0) {
                work += self.release(&mut forwarder, now, &mut release);
            }
            for index in 0..self.ports.len() {
                work += self.transmit(index, &mut arrays);
            }
            if work > 0 {
                idle.worked();
                continue;
            }
            if idle.should_sleep(Instant::now()) {
                // Wake for frames to receive, and for room to send where frames wait.
                let fds: Vec<(RawFd, libc::c_short)> = self
                    .ports
                    .iter()
                    .map(|p| {
                        let events = if p.backlog.is_empty() {
                            libc::POLLIN
                        } else {
                            libc::POLLIN | libc::POLLOUT
                        };
                        (p.socket.as_raw_fd(), events)
                    })
                    .collect();
                let sleep = release.sleep(Duration::from_millis(IDLE_SLEEP_MS as u64));
                sys::poll_for(&fds, sleep).map_err(|e| IoError::Worker {
                    queue: self.queue,
                    why: format!("poll on the packet sockets failed: {e}"),
                })?;
            }
        }
        Ok(())
    }

    /// Copies the frames the forwarder releases (a shaped link's queue) into free frames and
    /// queues them for their ports; keeps a batch of frames back for receiving.
    fn release<F: Forwarder>(
        &mut self,
        forwarder: &mut F,
        now: Instant,
        timer: &mut ReleaseTimer,
    ) -> usize {
        let (reserve, frame_len, limit) = (self.batch_size, self.frame_len, self.backlog_limit);
        let (free, ports, arena) = (&mut self.free, &mut self.ports, &mut self.arena);
        let mut released = 0;
        timer.due = forwarder.poll_release(now, &mut |port, bytes| {
            let Some(p) = ports.get_mut(port.index()) else {
                return true; // no such port: nothing to keep it for
            };
            if p.backlog.len() >= limit || free.len() <= reserve {
                return false;
            }
            if bytes.len() > frame_len {
                PortCounters::add(&p.counters.dropped_tx, 1);
                return true;
            }
            let Some(frame) = free.pop() else {
                return false;
            };
            let start = frame as usize * frame_len;
            if let Some(dst) = arena.get_mut(start..start + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
            p.backlog.push_back((frame, bytes.len() as u32));
            released += 1;
            true
        });
        released
    }

    fn frame_ptr(&mut self, frame: u32) -> *mut u8 {
        let start = frame as usize * self.frame_len;
        self.arena[start..start + self.frame_len].as_mut_ptr()
    }

    /// Receives up to a batch on port `index` and hands each frame to the pipeline.
    fn receive<F: Forwarder>(
        &mut self,
        index: usize,
        forwarder: &mut F,
        arrays: &mut MessageArrays,
    ) -> Result<usize, IoError> {
        let want = self.batch_size.min(self.free.len());
        if want == 0 {
            PortCounters::add(&self.ports[index].counters.fill_starved, 1);
            return Ok(0);
        }
        arrays.frames.clear();
        for i in 0..want {
            let Some(frame) = self.free.pop() else { break };
            arrays.frames.push(frame);
            let data = self.frame_ptr(frame);
            arrays.set(i, data, self.frame_len);
        }
        let fd = self.ports[index].socket.as_raw_fd();
        // SAFETY: `messages[..want]` point at live header slots and at frames of the arena,
        // none of which is referenced elsewhere until the call returns.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                arrays.messages.as_mut_ptr(),
                want as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let received = if got < 0 {
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => 0,
                // The interface went down: nothing to receive until it is back.
                Some(libc::ENETDOWN) => 0,
                _ => {
                    self.free.append(&mut arrays.frames);
                    return Err(IoError::Worker {
                        queue: self.queue,
                        why: format!(
                            "recvmmsg on {} failed: {error}",
                            self.ports[index].interface
                        ),
                    });
                }
            }
        } else {
            got as usize
        };
        // Frames recvmmsg did not fill go back first.
        self.free.extend(arrays.frames.drain(received..));
        if received == 0 {
            PortCounters::add(&self.ports[index].counters.rx_empty_polls, 1);
            return Ok(0);
        }
        let ingress = PortId(index as u16);
        let now = Instant::now();
        let (mut rx_bytes, mut dropped, mut dropped_rx) = (0u64, 0u64, 0u64);
        for i in 0..received {
            let frame_index = arrays.frames[i];
            let message = &arrays.messages[i];
            let len = (message.msg_len as usize).saturating_sub(VNET_HDR_LEN);
            rx_bytes += len as u64;
            let truncated = message.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let start = frame_index as usize * self.frame_len;
            let buf = &mut self.arena[start..start + self.frame_len];
            let usable = !truncated
                && match arrays.headers[i].classify() {
                    Received::Ready => true,
                    Received::Segmentable => false,
                    Received::NeedsChecksum { start, offset } => {
                        let end = len.min(buf.len());
                        finish_partial_checksum(&mut buf[..end], start, offset)
                    }
                };
            let verdict = if usable {
                match Frame::new(buf, len) {
                    Ok(mut frame) => {
                        Some((forwarder.handle(now, ingress, &mut frame), frame.len()))
                    }
                    Err(_) => None,
                }
            } else {
                None
            };
            match verdict {
                Some((Verdict::Forward(egress), new_len)) => {
                    match self.ports.get_mut(egress.index()) {
                        Some(port) if port.backlog.len() < self.backlog_limit => {
                            port.backlog.push_back((frame_index, new_len as u32));
                        }
                        Some(port) => {
                            PortCounters::add(&port.counters.dropped_tx, 1);
                            self.free.push(frame_index);
                        }
                        None => {
                            PortCounters::add(&self.ports[index].counters.dropped_tx, 1);
                            self.free.push(frame_index);
                        }
                    }
                }
                Some((Verdict::Drop, _)) => {
                    dropped += 1;
                    self.free.push(frame_index);
                }
                None => {
                    dropped_rx += 1;
                    self.free.push(frame_index);
                }
            }
        }
        arrays.frames.clear();
        let counters = &self.ports[index].counters;
        PortCounters::add(&counters.rx_packets, received as u64);
        PortCounters::add(&counters.rx_bytes, rx_bytes);
        PortCounters::add(&counters.dropped_by_pipeline, dropped);
        PortCounters::add(&counters.dropped_rx, dropped_rx);
        Ok(received)
    }

    /// Sends port `index`'s backlog with `sendmmsg`, a batch at a time.
    fn transmit(&mut self, index: usize, arrays: &mut MessageArrays) -> usize {
        let mut sent_total = 0;
        while !self.ports[index].backlog.is_empty() {
            let count = self.ports[index].backlog.len().min(self.batch_size);
            for i in 0..count {
                let (frame, len) = self.ports[index].backlog[i];
                let data = self.frame_ptr(frame);
                arrays.headers[i] = VirtioNetHdr::default();
                arrays.set(i, data, len as usize);
            }
            let port = &mut self.ports[index];
            // SAFETY: `messages[..count]` point at live header slots and at frames of the
            // arena that only the backlog refers to.
            let sent = unsafe {
                libc::sendmmsg(
                    port.socket.as_raw_fd(),
                    arrays.messages.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent < 0 {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {
                        PortCounters::add(&port.counters.tx_ring_full, 1);
                    }
                    _ => {
                        // This frame cannot be sent (too large, link down, ...): drop it so
                        // the ones behind it can go.
                        if let Some((frame, _)) = port.backlog.pop_front() {
                            PortCounters::add(&port.counters.dropped_tx, 1);
                            self.free.push(frame);
                        }
                        tracing::debug!(interface = %port.interface, %error, "sendmmsg failed");
                        continue;
                    }
                }
                break;
            }
            let sent = sent as usize;
            let mut bytes = 0u64;
            for _ in 0..sent {
                if let Some((frame, len)) = port.backlog.pop_front() {
                    bytes += u64::from(len);
                    self.free.push(frame);
                }
            }
            PortCounters::add(&port.counters.tx_packets, sent as u64);
            PortCounters::add(&port.counters.tx_bytes, bytes);
            sent_total += sent;
            if sent < count {
                PortCounters::add(&port.counters.tx_ring_full, 1);
                break;
            }
        }
        sent_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Ipv4Packet, UdpDatagram, ip_protocol};
    use core::net::Ipv4Addr;
    use proptest::prelude::*;

    /// A UDP/IPv4 frame as a sender with checksum offload hands it to the kernel: the UDP
    /// checksum field holds only the pseudo-header sum.
    fn partial_udp_frame(payload: &[u8]) -> Vec<u8> {
        let (src, dst) = (Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 2, 2));
        let udp_len = 8 + payload.len();
        let mut frame = vec![0u8; 14 + 20 + udp_len];
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
            ip.set_version_and_header_len(20);
            ip.set_total_len((20 + udp_len) as u16);
            ip.set_ttl(64);
            ip.set_protocol(ip_protocol::UDP);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            ip.fill_checksum();
        }
        let udp = &mut frame[34..];
        udp[0..2].copy_from_slice(&4000u16.to_be_bytes());
        udp[2..4].copy_from_slice(&5000u16.to_be_bytes());
        udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        udp[8..].copy_from_slice(payload);
        let pseudo = checksum::pseudo_header_v4(src, dst, ip_protocol::UDP, udp_len as u32);
        udp[6..8].copy_from_slice(&pseudo.to_be_bytes());
        frame
    }

    #[test]
    fn a_partial_checksum_is_finished_and_verifies() {
        let mut frame = partial_udp_frame(b"signpost");
        let header = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VirtioNetHdr::default()
        };
        let Received::NeedsChecksum { start, offset } = header.classify() else {
            panic!("NEEDS_CSUM must ask for a checksum");
        };
        assert!(finish_partial_checksum(&mut frame, start, offset));
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        let udp = UdpDatagram::new_checked(ip.payload()).unwrap();
        assert!(udp.verify_checksum_v4(ip.src_addr(), ip.dst_addr()));
    }

    #[test]
    fn headers_pointing_outside_the_frame_are_refused() {
        let mut frame = partial_udp_frame(b"x");
        let copy = frame.clone();
        assert!(!finish_partial_checksum(&mut frame, 34, 40));
        assert!(!finish_partial_checksum(&mut frame, 400, 6));
        assert!(!finish_partial_checksum(&mut frame, usize::MAX, 6));
        assert_eq!(frame, copy);
        let gso = VirtioNetHdr {
            gso_type: 1,
            ..VirtioNetHdr::default()
        };
        assert_eq!(gso.classify(), Received::Segmentable);
        assert_eq!(VirtioNetHdr::default().classify(), Received::Ready);
        assert_eq!(VNET_HDR_LEN, 10);
    }

    proptest! {
        #![proptest_config(crate::packet::proptest_config())]

        /// Whatever the kernel's header says, finishing never panics or writes outside the frame.
        #[test]
        fn finishing_never_panics(
            mut frame in proptest::collection::vec(any::<u8>(), 0..200),
            start in any::<u16>(),
            offset in any::<u16>(),
        ) {
            let len = frame.len();
            let done = finish_partial_checksum(&mut frame, start.into(), offset.into());
            prop_assert_eq!(frame.len(), len);
            prop_assert_eq!(done, usize::from(start) + usize::from(offset) + 2 <= len);
        }

        /// Any UDP payload: the finished checksum verifies.
        #[test]
        fn finished_udp_checksums_verify(payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut frame = partial_udp_frame(&payload);
            prop_assert!(finish_partial_checksum(&mut frame, 34, 6));
            let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            let udp = UdpDatagram::new_checked(ip.payload()).unwrap();
            prop_assert!(udp.verify_checksum_v4(ip.src_addr(), ip.dst_addr()));
        }
    }
}
