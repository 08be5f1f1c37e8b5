//! Lab traffic: servers that answer on a service host's ports and clients that measure, every one
//! bounded in time and count and run inside a namespace the lab created.
//!
//! One small protocol on every TCP port, so any service host can serve any flow:
//!
//! | client sends | server answers |
//! |---|---|
//! | `0x01` + u32 length + that many bytes | the same bytes (request/response, echo) |
//! | `0x02` + u32 length + that many bytes | a u64 of the bytes received so far, after every 64 KiB and at the end (bulk upload; the acks measure what arrived) |
//! | `GET /N HTTP/1.1` … blank line | an HTTP/1.1 200 with an N-byte body (browsing) |
//!
//! UDP: every datagram is echoed. [`udp_stream`] sends datagrams carrying a sequence number and
//! a send timestamp at a fixed rate and measures loss, round-trip latency and the longest gap
//! between echoes (the failover gap seen by the application).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::in_namespace;

const ECHO: u8 = 1;
const SINK: u8 = 2;
const ACK_EVERY: u64 = 64 * 1024;
/// Datagram header of [`udp_stream`]: sequence (u64) and send time (u64 µs since the stream began).
const UDP_HEADER: usize = 16;

/// Servers answering in one namespace until [`Servers::stop`] (or drop).
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    /// Listens on `tcp` and `udp` ports (all addresses) inside namespace `ns`.
    pub fn start(ns: &str, tcp: &[u16], udp: &[u16]) -> Result<Servers, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tcp, udp, flag) = (tcp.to_vec(), udp.to_vec(), stop.clone());
        let threads = in_namespace(ns, move || {
            let mut threads = Vec::new();
            for port in tcp {
                let l = TcpListener::bind(("0.0.0.0", port))
                    .map_err(|e| format!("tcp port {port}: {e}"))?;
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                let stop = flag.clone();
                threads.push(std::thread::spawn(move || accept_loop(l, stop)));
            }
            for port in udp {
                let s = UdpSocket::bind(("0.0.0.0", port))
                    .map_err(|e| format!("udp port {port}: {e}"))?;
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .map_err(|e| e.to_string())?;
                let stop = flag.clone();
                threads.push(std::thread::spawn(move || udp_echo(s, stop)));
            }
            Ok(threads)
        })
        .join()
        .map_err(|_| "server thread panicked".to_string())??;
        Ok(Servers { stop, threads })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, stop: Arc<AtomicBool>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => {
                let stop = stop.clone();
                conns.retain(|c| !c.is_finished());
                conns.push(std::thread::spawn(move || {
                    let _ = serve_tcp(s, &stop);
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

fn serve_tcp(stream: TcpStream, stop: &AtomicBool) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let _ = stream.set_nodelay(true);
    let mut out = stream.try_clone()?;
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let op = match read_retrying(&mut r, 1, stop)? {
            Some(b) => b[0],
            None => return Ok(()),
        };
        if op == b'G' {
            let mut line = vec![b'G'];
            r.read_until(b'\n', &mut line)?;
            let size = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|p| p.trim_start_matches('/').parse::<usize>().ok())
                .unwrap_or(0)
                .min(16 << 20);
            // Headers until the blank line.
            loop {
                let mut h = Vec::new();
                if r.read_until(b'\n', &mut h)? == 0 || h == b"\r\n" || h == b"\n" {
                    break;
                }
            }
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {size}\r\n\r\n"
            )?;
            let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
            out.write_all(&body)?;
            continue;
        }
        let Some(len) = read_retrying(&mut r, 4, stop)? else {
            return Ok(());
        };
        let mut left = u64::from(u32::from_be_bytes([len[0], len[1], len[2], len[3]]));
        let (mut total, mut acked) = (0u64, 0u64);
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match r.read(&mut buf[..want]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if is_timeout(&e) => {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            left -= n as u64;
            total += n as u64;
            match op {
                ECHO => out.write_all(&buf[..n])?,
                SINK if total - acked >= ACK_EVERY || left == 0 => {
                    out.write_all(&total.to_be_bytes())?;
                    acked = total;
                }
                SINK => {}
                _ => return Ok(()), // not our protocol: hang up
            }
        }
    }
}

/// Reads exactly `n` bytes, riding out read timeouts until `stop`; `None` on a clean EOF.
fn read_retrying(
    r: &mut impl Read,
    n: usize,
    stop: &AtomicBool,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut out[got..]) {
            Ok(0) => return Ok(None),
            Ok(k) => got += k,
            Err(e) if is_timeout(&e) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(out))
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn udp_echo(s: UdpSocket, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    }
}

/// Bytes per time bucket since a flow began: the throughput-over-time series.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub bucket: Duration,
    pub bytes: Vec<u64>,
}

impl Timeline {
    pub fn new(bucket: Duration) -> Self {
        Timeline {
            bucket,
            bytes: Vec::new(),
        }
    }

    pub fn add(&mut self, since_start: Duration, bytes: u64) {
        let i = (since_start.as_micros() / self.bucket.as_micros().max(1)) as usize;
        if self.bytes.len() <= i {
            self.bytes.resize(i + 1, 0);
        }
        self.bytes[i] += bytes;
    }

    /// Megabits per second in bucket `i`.
    pub fn mbps(&self, i: usize) -> f64 {
        let b = self.bytes.get(i).copied().unwrap_or(0) as f64;
        b * 8.0 / self.bucket.as_secs_f64() / 1e6
    }
}

/// What a run of request/response exchanges did.
#[derive(Clone, Debug, Default)]
pub struct Requests {
    pub ok: u32,
    pub failed: u32,
    /// Completion latency of each successful exchange.
    pub latencies: Vec<Duration>,
    /// Response bytes received over time.
    pub timeline: Timeline,
    /// The longest time between two completed exchanges, and when it began.
    pub max_gap: Duration,
    pub max_gap_at: Duration,
    last_ok: Option<Duration>,
    /// The first error, to tell the user why.
    pub first_error: Option<String>,
}

impl Requests {
    fn new() -> Self {
        Requests {
            timeline: Timeline::new(Duration::from_millis(100)),
            ..Requests::default()
        }
    }

    fn ok(&mut self, at: Duration, latency: Duration, bytes: usize) {
        self.ok += 1;
        self.latencies.push(latency);
        self.timeline.add(at, bytes as u64);
        if let Some(prev) = self.last_ok
            && at - prev > self.max_gap
        {
            self.max_gap = at - prev;
            self.max_gap_at = prev;
        }
        self.last_ok = Some(at);
    }

    fn failed(&mut self, error: String) {
        self.failed += 1;
        self.first_error.get_or_insert(error);
    }
}

/// Read and write timeouts, no Nagle delay.
fn tune(s: &TcpStream, timeout: Duration) -> Result<(), String> {
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    Ok(())
}

/// An echo request of `size` bytes (op, length, data) and the data it must bring back.
fn echo_request(size: usize) -> (Vec<u8>, Vec<u8>) {
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let mut msg = vec![ECHO];
    msg.extend_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_be_bytes());
    msg.extend_from_slice(&data);
    (msg, data)
}

/// One echo exchange of `size` bytes on a new connection: connect, send, read back, compare.
pub fn tcp_exchange(to: SocketAddr, size: usize, timeout: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("connect: {e}"))?;
    tune(&s, timeout)?;
    let (msg, data) = echo_request(size);
    // Write on a second thread: a large request is echoed while it is still being sent.
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut back = vec![0u8; size];
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || w.write_all(&msg));
        let read = s.read_exact(&mut back);
        match writer.join() {
            Ok(Err(e)) => Err(format!("send: {e}")),
            Err(_) => Err("writer panicked".to_string()),
            Ok(Ok(())) => read.map_err(|e| format!("reading the echo: {e}")),
        }
    })?;
    if back != data {
        return Err("the echo differs from what was sent".into());
    }
    Ok(start.elapsed())
}

/// `rate` echo exchanges per second of `size` bytes, each on a new connection (a POS terminal
/// opens a session per payment), for `duration`, inside `ns`.
pub fn tcp_requests(
    ns: &str,
    to: SocketAddr,
    size: usize,
    rate: f64,
    duration: Duration,
    timeout: Duration,
) -> JoinHandle<Result<Requests, String>> {
    repeat(ns, size, rate, duration, move || {
        tcp_exchange(to, size, timeout)
    })
}

/// Runs `exchange` (which moves `size` bytes) `rate` times per second for `duration`, inside
/// `ns`, recording each outcome.
fn repeat(
    ns: &str,
    size: usize,
    rate: f64,
    duration: Duration,
    exchange: impl Fn() -> Result<Duration, String> + Send + 'static,
) -> JoinHandle<Result<Requests, String>> {
    in_namespace(ns, move || {
        let start = Instant::now();
        let mut out = Requests::new();
        let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
        let mut next = start;
        while start.elapsed() < duration {
            match exchange() {
                Ok(latency) => out.ok(start.elapsed(), latency, size),
                Err(e) => out.failed(e),
            }
            next = pace(next, interval);
        }
        Ok(out)
    })
}

/// `rate` echo exchanges per second of `size` bytes on one long-lived connection (a session
/// that must survive a path change) for `duration`, inside `ns`. An exchange that does not
/// complete within `timeout` ends the run: the session was reset or lost.
pub fn tcp_session(
    ns: &str,
    to: SocketAddr,
    size: usize,
    rate: f64,
    duration: Duration,
    timeout: Duration,
) -> JoinHandle<Result<Requests, String>> {
    in_namespace(ns, move || {
        let start = Instant::now();
        let mut out = Requests::new();
        let mut s = match TcpStream::connect_timeout(&to, timeout) {
            Ok(s) => s,
            Err(e) => {
                out.failed(format!("connect: {e}"));
                return Ok(out);
            }
        };
        tune(&s, timeout)?;
        let (msg, data) = echo_request(size);
        let mut back = vec![0u8; size];
        let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
        let mut next = start;
        while start.elapsed() < duration {
            let sent = Instant::now();
            let r = s.write_all(&msg).and_then(|()| s.read_exact(&mut back));
            match r {
                Ok(()) if back == data => out.ok(start.elapsed(), sent.elapsed(), size),
                Ok(()) => {
                    out.failed("the echo differs from what was sent".into());
                    break;
                }
                Err(e) => {
                    out.failed(format!("the session broke: {e}"));
                    break;
                }
            }
            next = pace(next, interval);
        }
        Ok(out)
    })
}

/// One HTTP/1.1 GET of an `size`-byte body on a new connection; the body length is checked.
pub fn http_get(to: SocketAddr, size: usize, timeout: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /{size} HTTP/1.1\r\nHost: {to}\r\nUser-Agent: signpost-lab\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status)
        .map_err(|e| format!("reading the status line: {e}"))?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("unexpected status line `{}`", status.trim()));
    }
    let mut length = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).map_err(|e| e.to_string())? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0u8; length.unwrap_or(0)];
    r.read_exact(&mut body)
        .map_err(|e| format!("reading the body: {e}"))?;
    if body.len() != size {
        return Err(format!("body of {} bytes, asked {size}", body.len()));
    }
    Ok(start.elapsed())
}

/// `rate` GETs per second of `size`-byte pages for `duration`, inside `ns`.
pub fn http_browse(
    ns: &str,
    to: SocketAddr,
    size: usize,
    rate: f64,
    duration: Duration,
    timeout: Duration,
) -> JoinHandle<Result<Requests, String>> {
    repeat(ns, size, rate, duration, move || {
        http_get(to, size, timeout)
    })
}

/// What a bulk upload did.
#[derive(Clone, Debug, Default)]
pub struct Bulk {
    /// Bytes the server acknowledged having received.
    pub acked: u64,
    pub elapsed: Duration,
    /// Acknowledged bytes over time.
    pub timeline: Timeline,
    pub error: Option<String>,
}

impl Bulk {
    pub fn mbps(&self) -> f64 {
        self.acked as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// Uploads on one connection for `duration` (at most `rate_bps` bits per second when given),
/// inside `ns`; the server's acknowledgements measure what arrived. A stall longer than `stall`
/// (the path is gone) is noted in `error` and the upload keeps trying until `duration`.
pub fn tcp_bulk(
    ns: &str,
    to: SocketAddr,
    rate_bps: Option<u64>,
    duration: Duration,
    stall: Duration,
) -> JoinHandle<Result<Bulk, String>> {
    in_namespace(ns, move || {
        let start = Instant::now();
        let mut s = TcpStream::connect_timeout(&to, stall).map_err(|e| format!("connect: {e}"))?;
        s.set_write_timeout(Some(stall))
            .map_err(|e| e.to_string())?;
        let mut msg = vec![SINK];
        msg.extend_from_slice(&u32::MAX.to_be_bytes());
        s.write_all(&msg).map_err(|e| format!("send: {e}"))?;
        let reader = s.try_clone().map_err(|e| e.to_string())?;
        let acks = Arc::new(Mutex::new(Bulk {
            timeline: Timeline::new(Duration::from_millis(100)),
            ..Bulk::default()
        }));
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (acks, done) = (acks.clone(), done.clone());
            std::thread::spawn(move || read_acks(reader, start, &acks, &done, stall))
        };
        let chunk = vec![0x5au8; 16 * 1024];
        let (mut sent, mut skipped) = (0u64, 0u64);
        let mut error = None;
        while start.elapsed() < duration {
            if let Some(bps) = rate_bps {
                // A token bucket of 256 KiB: after a stall the upload resumes at its pace
                // instead of sending everything it missed at once.
                let allowed = (start.elapsed().as_secs_f64() * bps as f64 / 8.0) as u64;
                let burst = 256 * 1024;
                if allowed > sent + skipped + burst {
                    skipped = allowed - sent - burst;
                }
                if sent + skipped >= allowed {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
            }
            match s.write_all(&chunk) {
                Ok(()) => sent += chunk.len() as u64,
                // A full send buffer while the path is gone: TCP retransmits; keep waiting.
                Err(e) if is_timeout(&e) => {}
                Err(e) => {
                    error = Some(format!("send: {e}"));
                    break;
                }
            }
        }
        // Let the last acks come in, then hang up.
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, Ordering::Relaxed);
        let _ = s.shutdown(std::net::Shutdown::Both);
        let _ = reader.join();
        let mut out = acks.lock().map(|b| b.clone()).unwrap_or_default();
        out.elapsed = duration.min(start.elapsed());
        out.error = error.or(out.error);
        Ok(out)
    })
}

fn read_acks(
    mut s: TcpStream,
    start: Instant,
    acks: &Mutex<Bulk>,
    done: &AtomicBool,
    stall: Duration,
) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut last_progress = Instant::now();
    let mut buf = [0u8; 8];
    let mut got = 0;
    while !done.load(Ordering::Relaxed) {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if got == 8 {
                    got = 0;
                    let total = u64::from_be_bytes(buf);
                    if let Ok(mut b) = acks.lock() {
                        let new = total.saturating_sub(b.acked);
                        b.acked = total;
                        b.timeline.add(start.elapsed(), new);
                    }
                    last_progress = Instant::now();
                }
            }
            Err(e) if is_timeout(&e) => {
                if last_progress.elapsed() > stall {
                    if let Ok(mut b) = acks.lock() {
                        b.error
                            .get_or_insert_with(|| format!("no progress for {stall:?}"));
                    }
                    last_progress = Instant::now();
                }
            }
            Err(e) => {
                if let Ok(mut b) = acks.lock() {
                    b.error.get_or_insert_with(|| format!("reading acks: {e}"));
                }
                break;
            }
        }
    }
}

/// What a UDP stream measured.
#[derive(Clone, Debug, Default)]
pub struct Stream {
    pub sent: u64,
    pub received: u64,
    /// Round-trip time of every echo.
    pub rtts: Vec<Duration>,
    /// The longest time without an echo between the first and the last (the outage a
    /// listener hears), and when it began relative to the start.
    pub max_gap: Duration,
    pub max_gap_at: Duration,
    pub timeline: Timeline,
}

impl Stream {
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - self.received as f64 / self.sent as f64
    }
}

/// `pps` datagrams per second of `size` bytes (at least the 16-byte header) for `duration`,
/// inside `ns`, each carrying its sequence number and send time; the echoes measure loss,
/// round-trip time and the longest gap.
pub fn udp_stream(
    ns: &str,
    to: SocketAddr,
    size: usize,
    pps: u32,
    duration: Duration,
) -> JoinHandle<Result<Stream, String>> {
    in_namespace(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        s.connect(to).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        let rx = s.try_clone().map_err(|e| e.to_string())?;
        let start = Instant::now();
        let done = Arc::new(AtomicBool::new(false));
        let receiver = {
            let done = done.clone();
            std::thread::spawn(move || receive_stream(rx, start, &done))
        };
        let size = size.max(UDP_HEADER);
        let mut msg = vec![0u8; size];
        let interval = Duration::from_secs_f64(1.0 / f64::from(pps.max(1)));
        let mut sent = 0u64;
        let mut next = start;
        while start.elapsed() < duration {
            msg[..8].copy_from_slice(&sent.to_be_bytes());
            let at = start.elapsed().as_micros() as u64;
            msg[8..16].copy_from_slice(&at.to_be_bytes());
            // A send error (no route for a moment) is a lost packet, not the end.
            let _ = s.send(&msg);
            sent += 1;
            next = pace(next, interval);
        }
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, Ordering::Relaxed);
        let mut out = receiver
            .join()
            .map_err(|_| "receiver panicked".to_string())?;
        out.sent = sent;
        Ok(out)
    })
}

fn receive_stream(s: UdpSocket, start: Instant, done: &AtomicBool) -> Stream {
    let mut out = Stream {
        timeline: Timeline::new(Duration::from_millis(100)),
        ..Stream::default()
    };
    let mut seen = std::collections::HashSet::new();
    let mut last: Option<Duration> = None;
    let mut buf = [0u8; 2048];
    while !done.load(Ordering::Relaxed) {
        let Ok(n) = s.recv(&mut buf) else { continue };
        if n < UDP_HEADER {
            continue;
        }
        let now = start.elapsed();
        let seq = u64::from_be_bytes(buf[..8].try_into().unwrap_or_default());
        let sent_at = u64::from_be_bytes(buf[8..16].try_into().unwrap_or_default());
        if !seen.insert(seq) {
            continue; // a duplicate is not a second delivery
        }
        out.received += 1;
        out.rtts
            .push(now.saturating_sub(Duration::from_micros(sent_at)));
        out.timeline.add(now, n as u64);
        if let Some(prev) = last
            && now - prev > out.max_gap
        {
            out.max_gap = now - prev;
            out.max_gap_at = prev;
        }
        last = Some(now);
    }
    out
}

/// Sleeps until `next + interval` and returns it; a sender that fell behind (an exchange
/// waited for a lost path) starts again from now instead of catching up in a burst.
fn pace(next: Instant, interval: Duration) -> Instant {
    let now = Instant::now();
    let next = (next + interval).max(now);
    std::thread::sleep(next - now);
    next
}

/// Whether a TCP connection to `to` opens within `timeout` (a denied flow never does).
pub fn tcp_opens(to: SocketAddr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&to, timeout).is_ok()
}

/// Whether a UDP datagram to `to` is echoed within `timeout` (one retry).
pub fn udp_echoes(to: SocketAddr, timeout: Duration) -> Result<bool, String> {
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout / 2))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    for attempt in 0..2u8 {
        let msg = [b'p', b'r', b'o', b'b', b'e', attempt];
        let _ = s.send_to(&msg, to);
        if let Ok((n, _)) = s.recv_from(&mut buf)
            && buf[..n] == msg
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The `q` quantile (0..=1) of `values`, or zero when empty.
pub fn quantile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut v = values.to_vec();
    v.sort();
    let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    v[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_buckets_bytes_and_converts_to_megabits() {
        let mut t = Timeline::new(Duration::from_millis(100));
        t.add(Duration::from_millis(50), 125_000);
        t.add(Duration::from_millis(250), 10);
        assert_eq!(t.bytes, [125_000, 0, 10]);
        assert!((t.mbps(0) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn quantiles_pick_from_the_sorted_values() {
        let v: Vec<_> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
