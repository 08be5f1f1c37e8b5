//! Runs the lab's router: a thread that enters namespace `r`, reads its tables, and starts the
//! packet I/O drivers with the L3 forwarder (their worker threads inherit the namespace).

#![allow(dead_code)]

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use signpost_cnf::io::l3::{L3Forwarder, Tables};
use signpost_cnf::io::{self, DriverKind, IoConfig, PortId, PortStats, QueuePort};

use super::netns::{Lab, ROUTER_PORTS, enter};

/// A running router; [`RouterThread::stop`] stops it and returns its per-port counters.
pub struct RouterThread {
    pub driver: DriverKind,
    counters: Vec<QueuePort>,
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<Result<Vec<PortStats>, String>>>,
}

/// Starts the router in `lab`'s namespace `r` with `config` (its interfaces are replaced by the
/// lab's router ports).
pub fn start(lab: &Lab, mut config: IoConfig) -> Result<RouterThread, String> {
    config.interfaces = ROUTER_PORTS.iter().map(|s| s.to_string()).collect();
    let ns = lab.r.clone();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(DriverKind, Vec<QueuePort>), String>>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        let started = (|| {
            enter(&ns)?;
            let tables = Tables::read_namespace(&config.interfaces).map_err(|e| e.to_string())?;
            let forwarder = L3Forwarder::new(tables);
            io::start(&config, move |_queue| forwarder.clone()).map_err(|e| e.to_string())
        })();
        let running = match started {
            Ok(running) => {
                let _ = ready_tx.send(Ok((running.driver(), running.counters().to_vec())));
                running
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e.clone()));
                return Err(e);
            }
        };
        // Runs until told to stop, or until the test holding the sender is gone.
        let _ = stop_rx.recv();
        let stats = (0..ROUTER_PORTS.len())
            .map(|p| running.port_stats(PortId(p as u16)))
            .collect();
        running.stop().map_err(|e| e.to_string())?;
        Ok(stats)
    });
    let (driver, counters) = ready_rx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|_| "the router thread ended or did not start within 20 s".to_string())??;
    Ok(RouterThread {
        driver,
        counters,
        stop: Some(stop_tx),
        handle: Some(handle),
    })
}

impl RouterThread {
    /// (queue, interface, counters) of every socket, as they are now.
    pub fn queue_stats(&self) -> Vec<(u32, String, PortStats)> {
        self.counters
            .iter()
            .map(|c| (c.queue, c.interface.clone(), c.counters.snapshot()))
            .collect()
    }

    /// Stops the router; returns each port's counters.
    pub fn stop(mut self) -> Result<Vec<PortStats>, String> {
        self.stop.take();
        match self.handle.take() {
            Some(handle) => handle
                .join()
                .map_err(|_| "the router thread panicked".to_string())?,
            None => Err("already stopped".into()),
        }
    }
}

impl Drop for RouterThread {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
