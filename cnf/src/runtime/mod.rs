//! The router runtime: the session pipeline on real interfaces.
//!
//! ```text
//!  operator ──mTLS──▶ ControlClient ──▶ ConfigSlot ──(generation)──▶ housekeeping thread
//!                                                                        │ install, timers,
//!  NIC queue ──AF_XDP/AF_PACKET──▶ SessionForwarder ─lock─▶ Worker ◀─────┘ control messages
//!                                      (per frame)         (Pipeline, neighbours, counters)
//! ```
//!
//! - [`ConfigSlot`] is the [`ConfigSink`] the control client applies configs to: it builds the
//!   pipeline [`Tables`] (which validates the config), checks that every interface the config
//!   names is one this router runs on, and publishes them with a new generation. A refused
//!   config leaves the previous one in force and its error goes back to the operator as a Nack.
//! - One [`worker::Worker`] per driver queue holds that queue's [`Pipeline`] (sessions are per
//!   worker), the neighbour table and the runtime's own counters. The worker thread locks it
//!   per frame; the housekeeping thread locks it every [`HOUSEKEEPING`] to install a new
//!   config generation (so a config is swapped between two frames, never during one), expire
//!   sessions, send the pipeline's control messages and expire held packets; the admin API
//!   and metrics lock it to read.
//! - Ethernet is the runtime's business, not the pipeline's: [`worker`] strips and writes
//!   Ethernet/802.1Q headers, answers ARP for the router's addresses, resolves next hops with
//!   its own ARP ([`neighbor`]), and answers ICMP echo to the router. Router-originated frames
//!   leave through [`raw::RawSenders`].
//! - With the fast path on ([`io::IoConfig::fast_path`]), each worker also keeps the kernel's
//!   session map in line with its pipeline ([`offload`]): the housekeeping thread and the path
//!   monitor call [`worker::Worker::sync_fast_path`], the worker thread
//!   [`worker::Worker::sync_noted`] after its batches.
//!
//! Deployment notes. The router's devices should carry no kernel IP addresses (the config
//! holds them): with AF_XDP the kernel never sees the traffic anyway, and with the AF_PACKET
//! fallback a kernel address would make the kernel answer too (RSTs, ICMP unreachable). Turn
//! TX checksum offload off on veths that send into the router (see [`crate::io`]). With more
//! than one queue, each queue has its own sessions, so both directions of a flow must hash to
//! the same queue index on every interface; one queue (the default) is always correct.

pub mod admin;
pub mod metrics;
pub mod neighbor;
pub mod offload;
pub mod paths;
pub mod raw;
pub mod worker;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use signpost_proto::v1::RouterConfig;

use crate::control::ConfigSink;
use crate::io::{self, IoConfig, PortId, PortStats};
use crate::packet::MacAddress;
use crate::path::monitor::{BfdCounters, MonitorView};
use crate::pipeline::{Counters, DropReason, Options, PathView, SessionView, Tables};
use raw::RawSenders;
use worker::{SessionForwarder, Worker};

/// How often the housekeeping thread visits each worker.
pub const HOUSEKEEPING: Duration = Duration::from_millis(10);
/// Session table slots the housekeeping thread examines per worker per visit.
const SWEEP_BUDGET: usize = 4096;

/// One interface the router runs on, as the operating system describes it.
#[derive(Clone, Debug)]
pub struct Port {
    pub device: String,
    pub mac: MacAddress,
    /// IPv4 addresses the kernel has on it (usually none: the config carries them).
    pub os_v4: Vec<Ipv4Addr>,
    /// Complete ARP entries the kernel had for it at start.
    pub static_neighbors: Vec<(Ipv4Addr, MacAddress)>,
}

macro_rules! runtime_counters {
    ($($field:ident => $name:literal: $help:literal,)*) => {
        /// What the runtime did with frames around the pipeline (the pipeline counts its own).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct RuntimeCounters { $(pub $field: u64,)* }

        impl RuntimeCounters {
            /// (metric name, help, value) for each counter.
            pub fn named(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$(($name, $help, self.$field),)*]
            }

            fn add(&mut self, o: &RuntimeCounters) {
                $(self.$field += o.$field;)*
            }
        }
    };
}

runtime_counters! {
    malformed => "malformed": "frames too short for their Ethernet or ARP header",
    not_for_us => "not-for-us": "frames for another link-layer address",
    other_ethertype => "other-ethertype": "frames neither IPv4, IPv6 nor ARP",
    unknown_port => "unknown-port": "frames from a port the runtime does not know",
    unconfigured_port => "unconfigured-port": "frames on (or for) an interface the config does not name",
    no_config => "no-config": "IP packets before any config was applied",
    no_room => "no-room": "packets that no longer fit their buffer",
    neighbor_ipv6_unsupported => "neighbor-ipv6-unsupported": "packets for an IPv6 next hop (no neighbour discovery yet)",
    neighbor_held => "neighbor-held": "packets held while their next hop was resolved",
    neighbor_queue_full => "neighbor-queue-full": "packets dropped: too many held for one next hop",
    neighbor_expired => "neighbor-expired": "held packets dropped: their next hop never answered",
    neighbor_released => "neighbor-released": "held packets sent once their next hop answered",
    arp_seen => "arp-seen": "ARP packets learned from and not answered",
    arp_replies => "arp-replies": "ARP requests for the router's addresses answered",
    arp_requests => "arp-requests": "ARP requests the router sent",
    no_source_address => "no-source-address": "ARP requests not sent: no IPv4 address on the port",
    echo_replies => "echo-replies": "ICMP echo requests to the router answered",
    local_dropped => "local-dropped": "other packets for the router itself, dropped",
    raw_send_errors => "raw-send-errors": "router-originated frames the kernel refused",
    originated => "originated": "router-originated packets sent (SVR control messages, BFD)",
    bfd_received => "bfd-received": "packets handed to the path monitor (BFD, health messages and probe answers)",
    bfd_queue_full => "bfd-queue-full": "packets for the path monitor dropped: its queue was full",
}

/// The device names a config's interfaces use, WANs first.
pub fn config_devices(tables: &Tables) -> Vec<String> {
    let mut devices: Vec<String> = tables.wans.iter().map(|w| w.device.clone()).collect();
    devices.extend(tables.lans.iter().map(|l| l.device.clone()));
    devices
}

/// The config in force, as the control client applied it; see the module docs.
#[derive(Default)]
pub struct ConfigSlot {
    current: ArcSwapOption<Tables>,
    generation: AtomicU64,
    /// Set once the runtime has opened its interfaces: later configs must stay within them.
    devices: OnceLock<Vec<String>>,
}

impl ConfigSlot {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn current(&self) -> Option<Arc<Tables>> {
        self.current.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn check_devices(&self, tables: &Tables) -> Result<(), String> {
        let Some(open) = self.devices.get() else {
            return Ok(());
        };
        for (kind, name, device) in tables
            .wans
            .iter()
            .map(|w| ("WAN", &w.name, &w.device))
            .chain(tables.lans.iter().map(|l| ("LAN", &l.name, &l.device)))
        {
            if !open.contains(device) {
                return Err(format!(
                    "{kind} interface `{name}` is on device `{device}`, which this router did not \
                     open at start (it runs on {}); restart the router to change its devices",
                    open.join(", ")
                ));
            }
        }
        Ok(())
    }
}

impl ConfigSink for ConfigSlot {
    fn apply(&self, config: RouterConfig, version: &str) -> Result<(), String> {
        let tables = Tables::new(&config, version).map_err(|e| e.to_string())?;
        self.check_devices(&tables)?;
        self.current.store(Some(Arc::new(tables)));
        self.generation.fetch_add(1, Ordering::AcqRel);
        tracing::info!(version, "config applied");
        Ok(())
    }
}

/// Settings of the runtime that are not in the config.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    pub io: IoConfig,
    pub pipeline: Options,
}

/// Counters of every worker, added up.
#[derive(Clone, Debug, Default)]
pub struct CounterSnapshot {
    pub pipeline: Counters,
    pub runtime: RuntimeCounters,
    pub sessions: u64,
    /// Live sessions per (tenant, service).
    pub sessions_by: BTreeMap<(String, String), u64>,
    pub session_table_bytes: u64,
    /// Version of the config in force ("" before the first).
    pub config_version: String,
    /// Guard refusals per (tenant, reason).
    pub guard_drops: BTreeMap<(String, DropReason), u64>,
    /// Per-source limiter entries in use and evictions that lost state (`crate::guard`).
    pub guard_sources: u64,
    pub guard_source_evictions: u64,
    /// Per (WAN interface, class): the shaped links' counters (`crate::qos`).
    pub qos: BTreeMap<(String, &'static str), crate::qos::ClassStats>,
}

fn add_counters(into: &mut Counters, from: &Counters) {
    for (a, b) in into.drops.iter_mut().zip(from.drops.iter()) {
        *a += b;
    }
    into.to_wan += from.to_wan;
    into.to_lan += from.to_lan;
    into.sessions_created += from.sessions_created;
    into.sessions_expired += from.sessions_expired;
    into.sessions_closed_by_peer += from.sessions_closed_by_peer;
    into.sessions_rebound += from.sessions_rebound;
    into.sessions_sla_fallback += from.sessions_sla_fallback;
    into.sessions_relocated += from.sessions_relocated;
    into.sessions_reset += from.sessions_reset;
    into.metadata_sent += from.metadata_sent;
    into.metadata_received += from.metadata_received;
    into.local += from.local;
    into.fast_path += from.fast_path;
}

/// The running data plane. Dropping it stops the workers.
pub struct Runtime {
    slot: Arc<ConfigSlot>,
    ports: Arc<[Port]>,
    workers: Vec<Arc<Mutex<Worker>>>,
    io: Option<io::Running>,
    stop: Arc<AtomicBool>,
    housekeeping: Option<JoinHandle<()>>,
    path_monitor: paths::MonitorShared,
    monitor_thread: Option<JoinHandle<()>>,
}

fn lock(worker: &Mutex<Worker>) -> std::sync::MutexGuard<'_, Worker> {
    worker.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Runtime {
    /// Reads the interfaces of `options.io` in the calling thread's network namespace, opens
    /// the packet driver on them and starts the workers with the config in `slot` (if any; a
    /// later config is installed when it arrives). Fails with the reason when an interface is
    /// missing or the config in force names a device not in the list.
    pub fn start(slot: Arc<ConfigSlot>, options: RuntimeOptions) -> Result<Runtime, String> {
        let devices = options.io.interfaces.clone();
        let read = io::l3::Tables::read_namespace(&devices).map_err(|e| e.to_string())?;
        let ports: Arc<[Port]> = devices
            .iter()
            .zip(read.ports)
            .enumerate()
            .map(|(i, (device, p))| Port {
                device: device.clone(),
                mac: p.mac,
                os_v4: p.addresses,
                static_neighbors: read
                    .neighbors
                    .iter()
                    .filter(|n| n.port.index() == i)
                    .map(|n| (n.address, n.mac))
                    .collect(),
            })
            .collect();
        if slot.devices.set(devices.clone()).is_err() {
            return Err("this config slot already serves a running router".into());
        }
        if let Some(tables) = slot.current() {
            slot.check_devices(&tables)?;
        }
        let raw = Arc::new(RawSenders::open(&devices).map_err(|e| e.to_string())?);
        let now = Instant::now();
        let mut workers = Vec::new();
        let (bfd_tx, bfd_rx) = std::sync::mpsc::sync_channel(paths::QUEUE);
        let running = io::start(&options.io, |_queue| {
            let mut worker = Worker::new(ports.clone(), raw.clone(), now);
            worker.link_share = options.io.queues.len().max(1) as u32;
            worker.set_path_monitor(bfd_tx.clone());
            if let Some(tables) = slot.current() {
                worker.install(now, tables, slot.generation(), options.pipeline);
            }
            let worker = Arc::new(Mutex::new(worker));
            workers.push(worker.clone());
            SessionForwarder { worker }
        })
        .map_err(|e| e.to_string())?;
        if let Some(fast) = running.fast_path() {
            for (i, w) in workers.iter().enumerate() {
                let mut w = lock(w);
                w.offloaded = Some(offload::Offloaded::new(fast.clone(), i as u32));
                if let Some(p) = w.pipeline.as_mut() {
                    p.set_offload(true);
                }
            }
        }
        tracing::info!(
            driver = ?running.driver(),
            fast_path = running.fast_path().is_some(),
            interfaces = %devices.join(","),
            queues = workers.len(),
            "packet I/O started"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let housekeeping = {
            let (slot, workers, stop) = (slot.clone(), workers.clone(), stop.clone());
            let pipeline_options = options.pipeline;
            std::thread::Builder::new()
                .name("housekeeping".into())
                .spawn(move || housekeeping(&slot, &workers, &stop, pipeline_options))
                .map_err(|e| format!("cannot start the housekeeping thread: {e}"))?
        };
        drop(bfd_tx);
        let path_monitor = paths::MonitorShared::default();
        let monitor_thread = {
            let (slot, workers, stop, shared) = (
                slot.clone(),
                workers.clone(),
                stop.clone(),
                path_monitor.clone(),
            );
            let seed = options.pipeline.hash_seed ^ 0x6266_6473;
            std::thread::Builder::new()
                .name("path-monitor".into())
                .spawn(move || paths::run(&slot, &workers, &stop, &bfd_rx, &shared, seed))
                .map_err(|e| format!("cannot start the path monitor thread: {e}"))?
        };
        Ok(Runtime {
            slot,
            ports,
            workers,
            io: Some(running),
            stop,
            housekeeping: Some(housekeeping),
            path_monitor,
            monitor_thread: Some(monitor_thread),
        })
    }

    pub fn driver(&self) -> Option<io::DriverKind> {
        self.io.as_ref().map(io::Running::driver)
    }

    /// The fast path's counters and the runtime's side of it, over all workers, when it runs.
    pub fn fast_path(&self) -> Option<FastPathView> {
        let fast = self.io.as_ref()?.fast_path()?;
        let mut view = FastPathView {
            stats: fast.stats(),
            ..FastPathView::default()
        };
        for w in &self.workers {
            if let Some(o) = lock(w).offloaded.as_ref() {
                view.sessions += o.sessions() as u64;
                view.installs += o.installs;
                view.insert_errors += o.insert_errors;
            }
        }
        Some(view)
    }

    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    /// Per port (device name), the driver's counters over all queues.
    pub fn port_stats(&self) -> Vec<(String, PortStats)> {
        let Some(io) = &self.io else {
            return Vec::new();
        };
        let fast = io.fast_path();
        self.ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut stats = io.port_stats(PortId(i as u16));
                // Frames the kernel fast path forwarded never reached the driver.
                if let Some(c) = fast.and_then(|f| f.port_counters.get(i)) {
                    let read = |n: usize| c[n].load(Ordering::Relaxed);
                    stats.rx_packets += read(0);
                    stats.rx_bytes += read(1);
                    stats.tx_packets += read(2);
                    stats.tx_bytes += read(3);
                }
                (p.device.clone(), stats)
            })
            .collect()
    }

    pub fn sessions(&self, now: Instant) -> Vec<SessionView> {
        let mut out = Vec::new();
        for w in &self.workers {
            if let Some(p) = &lock(w).pipeline {
                out.extend(p.session_views(now));
            }
        }
        out
    }

    /// Paths as the first worker sees them, with session counts of all workers.
    pub fn paths(&self) -> Vec<PathView> {
        let mut out: Vec<PathView> = Vec::new();
        for w in &self.workers {
            let Some(p) = &lock(w).pipeline else { continue };
            let views = p.path_views();
            if out.is_empty() {
                out = views;
            } else {
                for (a, b) in out.iter_mut().zip(views) {
                    a.sessions += b.sessions;
                }
            }
        }
        out
    }

    /// The path monitor's view of every path (BFD state, discriminators, quality), and its
    /// counters; empty before the first config.
    pub fn path_monitor(&self, now: Instant) -> (Vec<MonitorView>, BfdCounters) {
        let m = self
            .path_monitor
            .monitor
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match m.as_ref() {
            Some(m) => (m.views(now), *m.counters()),
            None => (Vec::new(), BfdCounters::default()),
        }
    }

    /// Service-location health: this router's probed addresses and its peers' reports, and
    /// the probe and message counters; empty before the first config.
    pub fn service_health(
        &self,
        now: Instant,
    ) -> (
        Vec<crate::health::LocationView>,
        crate::health::ProbeCounters,
        crate::health::MessageCounters,
    ) {
        let h = self
            .path_monitor
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match h.as_ref() {
            Some(h) => (h.views(now), *h.probe_counters(), *h.message_counters()),
            None => Default::default(),
        }
    }

    /// Where the first worker would send a new session of `service` under `rule` now, as
    /// (peer, path) indexes of `tables` and whether it misses the SLA; `None` when no path is
    /// up (or the worker runs other tables).
    pub fn path_choice(
        &self,
        tables: &Arc<Tables>,
        service: crate::classify::ServiceId,
        rule: crate::classify::RuleId,
    ) -> Option<(u16, u16, bool)> {
        let w = lock(self.workers.first()?);
        let p = w.pipeline.as_ref()?;
        if !Arc::ptr_eq(p.tables(), tables) {
            return None;
        }
        p.path_choice(service, rule)
    }

    /// How punctual the path monitor thread's timers are.
    pub fn path_monitor_timing(&self) -> paths::Timing {
        *self
            .path_monitor
            .timing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn counters(&self) -> CounterSnapshot {
        let mut snap = CounterSnapshot {
            config_version: self
                .slot
                .current()
                .map(|t| t.version.clone())
                .unwrap_or_default(),
            ..Default::default()
        };
        for w in &self.workers {
            let w = lock(w);
            snap.runtime.add(&w.counters);
            for (key, stats) in w.wan_queues.stats() {
                snap.qos.entry(key).or_default().add(&stats);
            }
            if let Some(p) = &w.pipeline {
                add_counters(&mut snap.pipeline, p.counters());
                snap.sessions += p.sessions().len() as u64;
                snap.session_table_bytes += p.sessions().memory_bytes() as u64;
                for (key, n) in p.session_counts() {
                    *snap.sessions_by.entry(key).or_default() += n;
                }
                for (key, n) in p.guard().tenant_drops() {
                    *snap.guard_drops.entry(key).or_default() += n;
                }
                snap.guard_sources += p.guard().sources().len() as u64;
                snap.guard_source_evictions += p.guard().sources().evictions();
            }
        }
        snap
    }

    /// Stops the workers and the housekeeping thread; reports a worker's failure.
    pub fn stop(mut self) -> Result<(), String> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.housekeeping.take() {
            let _ = h.join();
        }
        if let Some(h) = self.monitor_thread.take() {
            let _ = h.join();
        }
        match self.io.take() {
            Some(io) => io.stop().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

/// What [`Runtime::fast_path`] reports.
#[derive(Clone, Debug, Default)]
pub struct FastPathView {
    /// The program's counters, in [`io::fastpath::Stat`] order.
    pub stats: Vec<u64>,
    /// Sessions with entries in the kernel now.
    pub sessions: u64,
    /// Times a session's entries were installed (a replacement counts again).
    pub installs: u64,
    /// Installs the kernel refused (its map full, most likely).
    pub insert_errors: u64,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::error!(%error, "packet I/O stopped with an error");
        }
    }
}

fn housekeeping(
    slot: &ConfigSlot,
    workers: &[Arc<Mutex<Worker>>],
    stop: &AtomicBool,
    options: Options,
) {
    let mut buf = vec![0u8; 2048];
    let mut control = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let generation = slot.generation();
        for w in workers {
            let mut w = lock(w);
            if w.generation != generation
                && let Some(tables) = slot.current()
            {
                w.install(now, tables, generation, options);
            }
            // Before the sweep: the kernel's counts keep busy offloaded sessions alive.
            w.sync_fast_path(now);
            if let Some(p) = w.pipeline.as_mut() {
                p.poll_timers(now, SWEEP_BUDGET);
                while let Some((egress, len)) = p.poll_transmit(&mut buf) {
                    if let Some(packet) = buf.get(..len) {
                        control.push((egress, packet.to_vec()));
                    }
                }
            }
            for (egress, packet) in control.drain(..) {
                w.originate(now, egress, &packet);
            }
            let expired = w.neighbors.expire(now);
            w.counters.neighbor_expired += expired;
        }
        std::thread::sleep(HOUSEKEEPING);
    }
}

/// The drop reasons the pipeline counts, with their metric names, for exporters.
pub fn drop_reasons() -> &'static [DropReason] {
    DropReason::ALL
}

/// Random seeds for the session hash and UUIDs (per process, so they cannot be predicted).
pub fn random_options(mtu: u16) -> Options {
    let mut bytes = [0u8; 24];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    Options {
        mtu,
        hash_seed: word(0),
        uuid_seed: [word(1), word(2)],
    }
}
