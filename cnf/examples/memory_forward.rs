//! The in-memory driver and the L3 lab forwarder on one thread, no kernel involved: what one
//! core spends per 64-byte frame on the driver's bookkeeping (copy in, batch, verdict, queue,
//! release) plus an IPv4 forwarding decision. An upper bound for the socket drivers, and the
//! harness a pipeline benchmark plugs into.
//!
//! ```text
//! cargo run --release -p signpost-cnf --example memory_forward [-- --frames 20000000]
//! ```

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use signpost_cnf::io::l3::{L3Forwarder, Neighbor, PortAddresses, Route, Tables};
use signpost_cnf::io::memory::MemoryPorts;
use signpost_cnf::io::{FrameSize, PortId};
use signpost_cnf::packet::MacAddress;

const R_A: [u8; 6] = [2, 0, 0, 0x71, 1, 1];
const R_B: [u8; 6] = [2, 0, 0, 0x71, 2, 1];
const HOST_A: [u8; 6] = [2, 0, 0, 0x71, 1, 2];
const HOST_B: [u8; 6] = [2, 0, 0, 0x71, 2, 2];

fn tables() -> Tables {
    let route = |prefix: [u8; 4], port| Route {
        prefix: Ipv4Addr::from(prefix),
        len: 24,
        port: PortId(port),
        gateway: None,
    };
    Tables {
        ports: vec![
            PortAddresses {
                mac: MacAddress(R_A),
                addresses: vec![Ipv4Addr::new(10, 71, 1, 1)],
            },
            PortAddresses {
                mac: MacAddress(R_B),
                addresses: vec![Ipv4Addr::new(10, 71, 2, 1)],
            },
        ],
        routes: vec![route([10, 71, 1, 0], 0), route([10, 71, 2, 0], 1)],
        neighbors: vec![
            Neighbor {
                address: Ipv4Addr::new(10, 71, 1, 2),
                port: PortId(0),
                mac: MacAddress(HOST_A),
            },
            Neighbor {
                address: Ipv4Addr::new(10, 71, 2, 2),
                port: PortId(1),
                mac: MacAddress(HOST_B),
            },
        ],
    }
}

fn main() {
    let mut total: u64 = 20_000_000;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next().map(|v| v.parse::<u64>())) {
            ("--frames", Some(Ok(n))) => total = n.max(1),
            _ => {
                eprintln!("usage: memory_forward [--frames N]");
                std::process::exit(2);
            }
        }
    }
    let builder = etherparse::PacketBuilder::ethernet2(HOST_A, R_A)
        .ipv4([10, 71, 1, 2], [10, 71, 2, 2], 64)
        .udp(1024, 9);
    let mut frame = Vec::new();
    if let Err(e) = builder.write(&mut frame, &[0x53; 18]) {
        eprintln!("cannot build the test frame: {e}");
        std::process::exit(1);
    }
    let batch = 64;
    let mut ports = MemoryPorts::new(2, FrameSize::B2048.usable())
        .with_batch_size(batch)
        .with_pool(batch);
    let mut router = L3Forwarder::new(tables());
    let started = Instant::now();
    let mut forwarded = 0u64;
    let mut done = 0u64;
    while done < total {
        for _ in 0..batch {
            if ports.receive(PortId(0), &frame).is_err() {
                eprintln!("the in-memory driver refused a frame");
                std::process::exit(1);
            }
        }
        done += ports.poll(&mut router, Instant::now()) as u64;
        while let Some(out) = ports.transmitted(PortId(1)) {
            black_box(out.data());
            forwarded += 1;
            ports.release(out);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "in-memory driver + L3 forwarder, 64-byte frames, batches of {batch}, 1 thread \
         ({cores} cores on the machine): {forwarded} of {done} frames forwarded in {seconds:.2} \
         s = {:.2} Mpps, {:.1} ns per frame",
        done as f64 / seconds / 1e6,
        seconds * 1e9 / done as f64
    );
    if forwarded != done {
        eprintln!(
            "the router dropped {} frames: {:?}",
            done - forwarded,
            router.drops()
        );
        std::process::exit(1);
    }
}
