//! What the lab's benchmarks need beyond lab traffic: a small-UDP flood from sender threads in a
//! namespace (AF_PACKET `sendmmsg` with the qdisc bypassed, as trafgen sends; trafgen itself
//! aborts with "Flushing TX_RING failed" when a veth whose peer runs XDP pushes back), iperf3
//! TCP between two namespaces, a namespace's IP counters, and CPU time per thread and process.
//!
//! CPU time comes from `schedstat` (nanoseconds on a CPU, softirq work included: this kernel has
//! no separate IRQ time accounting, so softirq work counts for the thread that raised it, or for
//! `ksoftirqd` when deferred). It is the figure that holds up when other jobs share the cores;
//! packets per second do not.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::in_namespace;

/// The one's complement sum of `data` as big-endian 16-bit words (RFC 1071), not complemented.
fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for pair in data.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        acc += hi | pair.get(1).map_or(0, |&lo| u32::from(lo));
    }
    acc
}

fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// An Ethernet + IPv4 + UDP frame of `frame_len` bytes (at least 42), checksums filled in.
pub fn udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    frame_len: usize,
) -> Vec<u8> {
    let frame_len = frame_len.max(42);
    let mut f = vec![0x53u8; frame_len];
    f[..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (frame_len - 14) as u16;
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = finish(sum16(ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp_len = ip_len - 20;
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    f[40..42].copy_from_slice(&[0, 0]);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    let c = match finish(sum16(&f[34..], sum16(&pseudo, 0))) {
        0 => 0xffff,
        c => c,
    };
    f[40..42].copy_from_slice(&c.to_be_bytes());
    f
}

/// What a flood did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flood {
    /// Frames the senders handed to the device.
    pub sent: u64,
    /// CPU time of the sender threads (with the softirq work they did).
    pub cpu_ns: u64,
}

/// Sends `frames` round and round on `device` in namespace `ns` from `senders` threads for
/// `duration`, retrying when the device pushes back: as fast as they can, 64 frames per
/// `sendmmsg`, or paced to `rate` frames per second in all (16 per call, sleeping between).
pub fn flood(
    ns: &str,
    device: &str,
    frames: &[Vec<u8>],
    senders: u32,
    duration: Duration,
    rate: Option<u64>,
) -> Result<Flood, String> {
    let deadline = Instant::now() + duration;
    let senders = senders.max(1);
    let each = rate.map(|r| r as f64 / f64::from(senders));
    let threads: Vec<_> = (0..senders)
        .map(|_| {
            let (device, frames) = (device.to_string(), frames.to_vec());
            in_namespace(ns, move || send_until(&device, frames, deadline, each))
        })
        .collect();
    let mut total = Flood::default();
    for t in threads {
        let one = t.join().map_err(|_| "a sender thread panicked")??;
        total.sent += one.sent;
        total.cpu_ns += one.cpu_ns;
    }
    Ok(total)
}

fn send_until(
    device: &str,
    mut frames: Vec<Vec<u8>>,
    deadline: Instant,
    rate: Option<f64>,
) -> Result<Flood, String> {
    let cpu_before = thread_cpu_ns();
    let name = CString::new(device).map_err(|e| e.to_string())?;
    // SAFETY: plain libc calls on a socket this function owns and closes; the message array
    // points at `frames` and `iovecs`, which outlive every sendmmsg call.
    let sent = unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!(
                "sender socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut address: libc::sockaddr_ll = std::mem::zeroed();
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as libc::c_int;
        if libc::bind(
            fd,
            (&address as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        ) < 0
        {
            let error = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(format!("sender bind to {device}: {error}"));
        }
        let mut iovecs: Vec<libc::iovec> = frames
            .iter_mut()
            .map(|f| libc::iovec {
                iov_base: f.as_mut_ptr().cast(),
                iov_len: f.len(),
            })
            .collect();
        let mut messages: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                let mut m: libc::mmsghdr = std::mem::zeroed();
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut sent = 0u64;
        let burst = if rate.is_some() { 16 } else { messages.len() };
        let (mut origin, mut at) = (Instant::now(), 0usize);
        while Instant::now() < deadline {
            if let Some(rate) = rate {
                // When the schedule has the next frame leave; behind by more than 10 ms (the
                // thread was not scheduled), the schedule restarts instead of bursting.
                let due = origin + Duration::from_secs_f64(sent as f64 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                } else if now - due > Duration::from_millis(10) {
                    origin = now - Duration::from_secs_f64(sent as f64 / rate);
                }
            }
            let count = burst.min(messages.len() - at);
            let n = libc::sendmmsg(fd, messages.as_mut_ptr().add(at), count as u32, 0);
            if n > 0 {
                sent += n as u64;
                at = (at + n as usize) % messages.len();
                continue;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {
                    std::thread::yield_now()
                }
                _ => {
                    let error = std::io::Error::last_os_error();
                    libc::close(fd);
                    return Err(format!("sendmmsg on {device}: {error}"));
                }
            }
        }
        libc::close(fd);
        sent
    };
    Ok(Flood {
        sent,
        cpu_ns: thread_cpu_ns().saturating_sub(cpu_before),
    })
}

/// The machine's CPU time so far from `/proc/stat`, in clock ticks: (idle and I/O wait, all).
pub fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (idle, fields.iter().sum())
}

/// The first field of a `schedstat` file: nanoseconds the task has run on a CPU.
fn schedstat_ns(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of the calling thread so far.
pub fn thread_cpu_ns() -> u64 {
    schedstat_ns("/proc/thread-self/schedstat")
}

/// CPU time so far of every thread of process `pid` (0 when it is gone).
pub fn process_cpu_ns(pid: u32) -> u64 {
    tasks_cpu_ns(&format!("/proc/{pid}/task"), |_| true)
}

/// CPU time so far of this process's threads whose name starts with `prefix`.
pub fn own_threads_cpu_ns(prefix: &str) -> u64 {
    tasks_cpu_ns("/proc/self/task", |comm| comm.starts_with(prefix))
}

/// CPU time so far of the kernel's `ksoftirqd` threads (softirq work deferred out of the
/// threads that raised it).
pub fn softirq_cpu_ns() -> u64 {
    tasks_cpu_ns("/proc", |comm| comm.starts_with("ksoftirqd/"))
}

fn tasks_cpu_ns(dir: &str, wanted: impl Fn(&str) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if wanted(comm.trim_end()) {
            total += schedstat_ns(&path.join("schedstat").to_string_lossy());
        }
    }
    total
}

/// A counter of the `Ip:` line of `/proc/net/snmp` in namespace `ns` (`InReceives`: datagrams
/// that reached the IP layer, whatever happened to them next).
pub fn ip_counter(ns: &str, name: &str) -> Result<u64, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/snmp"])
        .output()
        .map_err(|e| format!("reading /proc/net/snmp in {ns}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ip = text.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap_or(""), ip.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| format!("no Ip: {name} in /proc/net/snmp of {ns}"))
}

/// What iperf3 reported for a TCP run.
#[derive(Debug, Clone, Copy)]
pub struct Tcp {
    /// Received by the server, bits per second.
    pub bits_per_second: f64,
    pub retransmits: u64,
}

/// `iperf3 -c ADDR -p PORT -t SECONDS` from namespace `client` against a one-off server in
/// `server`; each side is bounded by `timeout` so that a stalled run cannot hang.
pub fn iperf3_tcp(
    client: &str,
    server: &str,
    addr: &str,
    port: u16,
    seconds: u64,
) -> Result<Tcp, String> {
    let limit = (seconds + 30).to_string();
    let port = port.to_string();
    let mut server = Command::new("ip")
        .args([
            "netns", "exec", server, "timeout", &limit, "iperf3", "-s", "-1", "-p", &port,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run iperf3: {e}"))?;
    std::thread::sleep(Duration::from_millis(300));
    let output = Command::new("ip")
        .args([
            "netns", "exec", client, "timeout", &limit, "iperf3", "-c", addr, "-p", &port,
        ])
        .args(["-t", &seconds.to_string(), "-J"])
        .output()
        .map_err(|e| format!("cannot run iperf3: {e}"));
    let _ = server.kill();
    let _ = server.wait();
    let output = output?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("iperf3 printed no JSON report ({e})"))?;
    if let Some(error) = report["error"].as_str() {
        let intervals: Vec<String> = report["intervals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                format!(
                    "{:.1}",
                    i["sum"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6
                )
            })
            .collect();
        return Err(format!(
            "iperf3 to {addr}:{port} failed: {error}; Mbit/s per second before that: {}",
            intervals.join(" ")
        ));
    }
    let end = &report["end"];
    Ok(Tcp {
        bits_per_second: end["sum_received"]["bits_per_second"]
            .as_f64()
            .ok_or("iperf3 JSON has no end.sum_received.bits_per_second")?,
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_valid_checksums() {
        let f = udp_frame(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            (Ipv4Addr::new(10, 1, 10, 5), 1024),
            (Ipv4Addr::new(10, 255, 1, 20), 5140),
            60,
        );
        assert_eq!(f.len(), 60);
        assert_eq!(finish(sum16(&f[14..34], 0)), 0, "IPv4 header checksum");
        let mut pseudo = vec![10, 1, 10, 5, 10, 255, 1, 20, 0, 17];
        pseudo.extend_from_slice(&26u16.to_be_bytes());
        assert_eq!(
            finish(sum16(&f[34..], sum16(&pseudo, 0))),
            0,
            "UDP checksum"
        );
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 46);
    }
}
