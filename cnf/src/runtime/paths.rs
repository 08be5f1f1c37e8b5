//! The path monitor's driver: one thread per router that owns the [`PathMonitor`] (behind a
//! mutex the admin API and metrics read), receives the BFD packets the workers hand over,
//! sleeps until the monitor's next deadline, sends what the monitor builds through the first
//! worker (which frames it and resolves the next hop with its ARP table, then sends it through
//! [`super::raw::RawSenders`]), and pushes the monitor's [`crate::path::book::PathReport`] to
//! every worker's pipeline: at once when a path's liveness changed, else every
//! [`REPORT_EVERY`].
//!
//! Why a thread of its own and not the housekeeping thread's 10 ms tick: a Final must answer a
//! Poll at once (the peer measures its round trips with it; a 10 ms tick would add up to 10 ms
//! to every sample) and transmit times must hold to the millisecond at 50 ms intervals. This
//! thread waits on its packet queue with the monitor's next deadline as timeout, so it wakes
//! for a packet or a timer, not on a tick; [`Timing`] records how late its timer wake-ups are
//! (exported as metrics).
//!
//! The same thread drives the router's service-location health ([`ServiceHealth`]): its probes
//! go out through the first worker like BFD, the answers come back on the same queue (the
//! workers hand over LAN packets that may answer a probe), peers' health messages arrive on
//! BFD's ports and are told apart by [`PathMonitor::peer_message`], and the locations peers
//! report down ride in the same [`crate::path::book::PathReport`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::ConfigSlot;
use super::worker::Worker;
use crate::health::{ServiceHealth, WallClock};
use crate::path::monitor::PathMonitor;
use crate::pipeline::Interface;

/// How often path health goes to the pipelines when nothing changed (SLA re-evaluation and
/// hold-down timers run on it).
pub const REPORT_EVERY: Duration = Duration::from_millis(100);
/// BFD packets that may wait for the monitor thread; more are dropped and counted.
pub const QUEUE: usize = 4096;
/// The longest the thread sleeps (config changes and stop are noticed this fast).
const IDLE: Duration = Duration::from_millis(10);

/// A packet for the monitor thread (BFD or a health message from a WAN, a probe's answer
/// from a LAN): the IP packet, the interface it came on, when it came.
#[derive(Debug)]
pub struct BfdPacket {
    pub at: Instant,
    pub interface: Interface,
    pub packet: Vec<u8>,
}

/// How punctual the monitor thread's timer wake-ups are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    pub wakeups: u64,
    pub late_total_us: u64,
    pub late_max_us: u64,
}

/// What the runtime keeps to reach the monitor.
#[derive(Clone, Default)]
pub struct MonitorShared {
    pub(super) monitor: Arc<Mutex<Option<PathMonitor>>>,
    /// Locked after `monitor` when both are needed.
    pub(super) health: Arc<Mutex<Option<ServiceHealth>>>,
    pub(super) timing: Arc<Mutex<Timing>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The sending half workers hold.
pub type BfdSender = SyncSender<BfdPacket>;

pub(super) fn run(
    slot: &ConfigSlot,
    workers: &[Arc<Mutex<Worker>>],
    stop: &AtomicBool,
    packets: &Receiver<BfdPacket>,
    shared: &MonitorShared,
    seed: u64,
) {
    let mut generation = 0;
    let mut next_report = Instant::now();
    let mut out = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let deadline = {
            let mut m = lock(&shared.monitor);
            let mut h = lock(&shared.health);
            let g = slot.generation();
            if g != generation
                && let Some(tables) = slot.current()
            {
                match m.as_mut() {
                    Some(m) => m.set_tables(now, Arc::clone(&tables)),
                    None => *m = Some(PathMonitor::new(now, Arc::clone(&tables), seed)),
                }
                match h.as_mut() {
                    Some(h) => h.set_tables(now, tables),
                    None => {
                        *h = Some(ServiceHealth::new(
                            now,
                            tables,
                            WallClock::system(now),
                            seed.rotate_left(17),
                        ))
                    }
                }
                generation = g;
            }
            let health = h.as_ref().and_then(|h| h.poll_timeout(now));
            m.as_ref()
                .and_then(PathMonitor::poll_timeout)
                .into_iter()
                .chain(health)
                .min()
        };
        let wake = deadline
            .unwrap_or(now + IDLE)
            .min(next_report)
            .min(now + IDLE);
        match packets.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(first) => {
                let mut m = lock(&shared.monitor);
                let mut h = lock(&shared.health);
                if let (Some(m), Some(h)) = (m.as_mut(), h.as_mut()) {
                    receive(m, h, &first);
                    while let Ok(p) = packets.try_recv() {
                        receive(m, h, &p);
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some(d) = deadline.filter(|d| *d <= wake) {
                    let late = Instant::now().saturating_duration_since(d).as_micros() as u64;
                    let mut t = lock(&shared.timing);
                    t.wakeups += 1;
                    t.late_total_us += late;
                    t.late_max_us = t.late_max_us.max(late);
                }
            }
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(IDLE),
        }
        let now = Instant::now();
        let report = {
            let mut m = lock(&shared.monitor);
            let mut h = lock(&shared.health);
            let (Some(m), Some(h)) = (m.as_mut(), h.as_mut()) else {
                continue;
            };
            m.handle_timeout(now);
            m.transmit(now, &mut out);
            h.handle_timeout(now);
            h.transmit(now, m, &mut out);
            for e in h.take_events() {
                tracing::info!(
                    service = %e.service,
                    router = %e.router,
                    address = ?e.address,
                    up = e.up,
                    "location health"
                );
            }
            for t in m.take_transitions() {
                tracing::info!(
                    peer = %t.peer,
                    path = %t.path,
                    from = %t.from,
                    to = %t.to,
                    diagnostic = ?t.diagnostic,
                    "path state"
                );
            }
            let changed = m.take_changed() | h.take_changed();
            (changed || now >= next_report).then(|| {
                next_report = now + REPORT_EVERY;
                let mut report = m.report(now);
                if Arc::ptr_eq(h.tables(), m.tables()) {
                    report.locations_down = h.down().to_vec();
                }
                report
            })
        };
        if !out.is_empty()
            && let Some(w) = workers.first()
        {
            let mut w = lock(w);
            for (egress, packet) in out.drain(..) {
                w.originate(now, egress, &packet);
            }
        }
        if let Some(report) = report {
            for w in workers {
                let mut w = lock(w);
                if let Some(p) = w.pipeline.as_mut() {
                    p.set_path_health(now, &report);
                }
                // A session on a path that is no longer its target leaves the kernel now.
                w.sync_fast_path(now);
            }
        }
    }
}

/// One packet from the queue: BFD to the monitor, a health message or probe answer to health.
fn receive(m: &mut PathMonitor, h: &mut ServiceHealth, p: &BfdPacket) {
    match p.interface {
        Interface::Wan(wan) => match m.peer_message(wan, &p.packet) {
            Some((peer, payload)) => {
                let _ = h.handle_message(p.at, peer, payload);
            }
            None => {
                let _ = m.handle(p.at, wan, &p.packet);
            }
        },
        Interface::Lan(_) => {
            h.handle_probe_answer(p.at, &p.packet);
        }
    }
}
