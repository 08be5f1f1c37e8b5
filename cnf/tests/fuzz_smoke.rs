//! The fuzz targets' bodies (`signpost_cnf::fuzzing`) on stable Rust, so CI runs the same
//! oracles without nightly or libFuzzer: every seed of `cnf/fuzz/corpus/`, then thousands of
//! deterministic inputs — random bytes, and seeds mutated the way a fuzzer would (bit flips,
//! byte sets, interesting values, cuts, splices).
//!
//! `SIGNPOST_WRITE_SEEDS=1 cargo test -p signpost-cnf --test fuzz_smoke` rewrites the seed
//! files after the packets or the script format change.

use std::path::PathBuf;
use std::time::Instant;

use signpost_cnf::fuzzing::{self, Seed};
use signpost_cnf::pipeline::DropReason;

type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 6] = [
    ("packet_views", fuzzing::packet_views),
    ("svr_metadata", fuzzing::svr_metadata),
    ("pcap_inspect", fuzzing::pcap_inspect),
    ("pipeline", fuzzing::pipeline),
    ("bfd", fuzzing::bfd),
    ("health", fuzzing::health),
];

/// xorshift64: deterministic, so a failure here replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// One to four fuzzer-style edits of `seed`, `other` a second seed to splice from.
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len());
        match rng.below(7) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.below(8),
            1 if !out.is_empty() => out[at] = rng.next() as u8,
            2 if !out.is_empty() => {
                out[at] = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.below(5)];
            }
            3 => out.truncate(at),
            4 => {
                let n = rng.below(16);
                let noise = rng.bytes(n);
                out.splice(at..at, noise);
            }
            5 if out.len() > 1 => {
                let len = 1 + rng.below((out.len() - at).min(16));
                out.drain(at..(at + len).min(out.len()));
            }
            _ => {
                let from = rng.below(other.len());
                let len = rng.below(64);
                let piece = other
                    .get(from..(from + len).min(other.len()))
                    .unwrap_or(&[]);
                out.splice(at..at, piece.iter().copied());
            }
        }
    }
    out
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target)
}

/// The seeds of `target`, from the module, plus any other files in its corpus directory.
fn inputs(target: &str) -> Vec<Vec<u8>> {
    let mut inputs: Vec<Vec<u8>> = fuzzing::seeds()
        .into_iter()
        .filter(|seed| seed.target == target)
        .map(|seed| seed.bytes)
        .collect();
    if let Ok(dir) = std::fs::read_dir(corpus_dir(target)) {
        for entry in dir.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path())
                && !inputs.contains(&bytes)
            {
                inputs.push(bytes);
            }
        }
    }
    inputs
}

/// Runs `body` on `input`; on a failure, saves the input where `cargo fuzz run` can replay it.
fn run(target: &str, body: Body, input: &[u8]) {
    if std::panic::catch_unwind(|| body(input)).is_err() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz")
            .join("artifacts")
            .join(target);
        let path = dir.join(format!("smoke-{:016x}", fnv(input)));
        let saved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input));
        panic!(
            "{target} failed on the input saved as {} ({saved:?}); replay it with \
             `cargo +nightly fuzz run {target} <file>` in cnf/fuzz",
            path.display()
        );
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn smoke(target: &str, body: Body, random: usize, mutated: usize) {
    let started = Instant::now();
    let seeds = inputs(target);
    assert!(!seeds.is_empty(), "no seeds for {target}");
    for seed in &seeds {
        run(target, body, seed);
    }
    let mut rng = Rng(0x5157_0057_f022_0001 ^ target.len() as u64);
    for _ in 0..random {
        let len = rng.below(160);
        run(target, body, &rng.bytes(len));
    }
    for _ in 0..mutated {
        let seed = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        run(target, body, &mutate(&mut rng, seed, other));
    }
    println!(
        "{target}: {} seeds, {random} random, {mutated} mutated inputs in {:.2} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn packet_views_smoke() {
    smoke("packet_views", fuzzing::packet_views, 5000, 10000);
}

#[test]
fn svr_metadata_smoke() {
    smoke("svr_metadata", fuzzing::svr_metadata, 5000, 20000);
}

#[test]
fn pcap_inspect_smoke() {
    smoke("pcap_inspect", fuzzing::pcap_inspect, 3000, 10000);
}

#[test]
fn pipeline_smoke() {
    smoke("pipeline", fuzzing::pipeline, 3000, 15000);
}

#[test]
fn bfd_smoke() {
    smoke("bfd", fuzzing::bfd, 5000, 20000);
}

#[test]
fn health_smoke() {
    smoke("health", fuzzing::health, 3000, 10000);
}

/// The seed files in `cnf/fuzz/corpus/` are the ones the module builds (other files there,
/// found by fuzzing, are run too but not checked).
#[test]
fn seed_files_are_current() {
    let write = std::env::var_os("SIGNPOST_WRITE_SEEDS").is_some();
    for Seed {
        target,
        name,
        bytes,
    } in fuzzing::seeds()
    {
        assert!(
            TARGETS.iter().any(|(t, _)| *t == target),
            "unknown target {target}"
        );
        let path = corpus_dir(target).join(name);
        if write {
            std::fs::create_dir_all(corpus_dir(target)).expect("corpus directory");
            std::fs::write(&path, &bytes).expect("seed written");
            continue;
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "{} is stale or missing: run SIGNPOST_WRITE_SEEDS=1 cargo test -p signpost-cnf \
             --test fuzz_smoke",
            path.display()
        );
    }
}

fn seed(name: &str) -> Vec<u8> {
    fuzzing::seeds()
        .into_iter()
        .find(|seed| seed.name == name)
        .map(|seed| seed.bytes)
        .unwrap_or_else(|| panic!("no seed {name}"))
}

/// The scripts go as deep as they claim, so the fuzzer starts from sessions that work.
#[test]
fn pipeline_seeds_reach_delivery() {
    for (name, mode) in [
        ("seed-tcp-encrypt-handshake", 2),
        ("seed-tcp-authenticate-handshake", 1),
    ] {
        let outcome = fuzzing::pipeline_outcome(&seed(name));
        assert_eq!(seed(name)[0], mode);
        // SYN, SYN-ACK, request, response, data that begins with the cookie: each through
        // both routers and delivered; then one more response the hub sends alone, and the
        // store's delete-session message.
        assert_eq!(
            (outcome.to_wan, outcome.to_lan, outcome.delivered),
            (6, 5, 5),
            "{name}: {outcome:?}"
        );
        assert_eq!(
            outcome.drops,
            [DropReason::Replayed],
            "{name}: the replay alone is dropped"
        );
        assert_eq!(
            (outcome.control, outcome.consumed),
            (1, 1),
            "{name}: {outcome:?}"
        );
    }
    let udp = fuzzing::pipeline_outcome(&seed("seed-udp-none-path-change"));
    assert_eq!((udp.to_wan, udp.delivered), (7, 6), "{udp:?}");
    assert_eq!((udp.control, udp.consumed), (1, 1), "{udp:?}");
    assert!(udp.drops.is_empty(), "{udp:?}");
    let hub = fuzzing::pipeline_outcome(&seed("seed-hub-wan-metadata"));
    assert_eq!(
        (hub.to_lan, hub.drops.as_slice()),
        (1, &[DropReason::Replayed][..]),
        "{hub:?}"
    );
    let refused = fuzzing::pipeline_outcome(&seed("seed-refused-and-local"));
    assert_eq!(
        refused.drops,
        [
            DropReason::NoPolicy,
            DropReason::TcpNotSyn,
            DropReason::NoTenant,
            DropReason::NotForwarded
        ],
        "{refused:?}"
    );
}

/// The forwarding oracle does fail: on a wrong checksum, a wrong TTL, a wrong direction.
#[test]
fn forwarding_oracle_rejects_bad_packets() {
    use signpost_cnf::pipeline::{Egress, Ingress, Interface};
    let script = seed("seed-tcp-encrypt-handshake");
    // The SYN inside the script: after the mode byte, the op and the two length bytes.
    let len = usize::from(u16::from_be_bytes([script[2], script[3]]));
    let syn = script[4..4 + len].to_vec();
    let lan = Ingress {
        interface: Interface::Lan(0),
        vlan: Some(10),
    };
    let wan = Egress {
        interface: Interface::Wan(0),
        vlan: None,
        next_hop: "192.0.2.1".parse().expect("address"),
        class: 0,
    };
    let mut out = syn.clone();
    out[8] -= 1; // TTL
    out[10..12].copy_from_slice(&[0, 0]);
    let mut fixed = out.clone();
    let sum = !checksum(&fixed[..20]);
    fixed[10..12].copy_from_slice(&sum.to_be_bytes());
    assert!(fuzzing::checksums_verify(&syn));
    assert_eq!(
        fuzzing::check_forwarded_packet(lan, wan, &syn, &fixed),
        Ok(())
    );
    assert!(
        fuzzing::check_forwarded_packet(lan, wan, &syn, &out).is_err(),
        "bad checksum"
    );
    assert!(
        fuzzing::check_forwarded_packet(lan, wan, &syn, &syn).is_err(),
        "TTL kept"
    );
    let to_lan = Egress {
        interface: Interface::Lan(0),
        ..wan
    };
    assert!(
        fuzzing::check_forwarded_packet(lan, to_lan, &syn, &fixed).is_err(),
        "LAN to LAN"
    );
    assert!(
        fuzzing::check_forwarded_packet(lan, wan, &syn, &fixed[..fixed.len() - 1]).is_err(),
        "cut short"
    );
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut acc: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}
