//! Per-packet cost of SVR session security, in ns per operation.
//!
//!     cargo bench -p signpost-cnf --bench security
//!
//! - `metadata`: seal / open a packet with a 120-byte metadata block and a 60-byte payload
//!   (HMAC-SHA256 with the peer key).
//! - `session_key`: `SessionKey::derive` (HKDF-SHA256), once per session and router.
//! - `payload`: seal / open of 64- and 1400-byte payloads in ENCRYPT and AUTHENTICATE, with the
//!   per-packet AEAD key setup included.
//! - `aead_key_setup` and `aead_raw`: the choice of AEAD — ring's key setup alone, and, with a
//!   key already set up, a seal and a tag over associated data only (AUTHENTICATE's
//!   construction), for AES-256-GCM and ChaCha20-Poly1305.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ring::aead;
use signpost_cnf::security::{
    Direction, PeerKey, SessionKey, TRAILER_LEN, open_metadata_packet, open_payload,
    seal_metadata_packet, seal_payload,
};
use signpost_cnf::svr::{Metadata, Section, UnknownTlv};
use signpost_proto::v1::SecurityMode;

const METADATA_LEN: usize = 120;
const UUID: [u8; 16] = *b"bench-session-01";

/// A real metadata block of exactly 120 bytes: a typical first packet's TLVs, padded with an
/// unknown payload TLV.
fn metadata_block() -> Vec<u8> {
    let mut metadata = Metadata {
        security_id: Some(7),
        session_uuid: Some(UUID),
        tenant: Some("pos.store-0042".into()),
        service: Some("payments".into()),
        source_router: Some("store-0042".into()),
        destination_router: Some("hub-east".into()),
        ..Metadata::default()
    };
    let pad = METADATA_LEN
        .checked_sub(metadata.buffer_len() + 4)
        .expect("the typical TLVs leave room for padding");
    metadata.unknown.push(UnknownTlv {
        section: Section::Payload,
        tlv_type: 999,
        value: vec![0; pad],
    });
    let mut block = vec![0u8; metadata.buffer_len()];
    let written = metadata
        .emit(&mut block)
        .expect("the bench's metadata fits");
    assert_eq!(written, METADATA_LEN);
    block
}

fn metadata(c: &mut Criterion) {
    let key = PeerKey::new(7, 7, &[0x5a; 32]);
    let mut buf = metadata_block();
    buf.extend_from_slice(&[0x17; 60]);
    let len = buf.len();
    buf.resize(len + TRAILER_LEN, 0);
    let mut group = c.benchmark_group("metadata");
    group.throughput(Throughput::Elements(1));
    let mut seq = 0u64;
    group.bench_function("seal_metadata_packet/120+60", |b| {
        b.iter(|| {
            seq += 1;
            seal_metadata_packet(
                &key,
                Direction::Forward,
                seq,
                black_box(&mut buf),
                len,
                METADATA_LEN,
            )
        })
    });
    let mut sealed = buf.clone();
    seal_metadata_packet(&key, Direction::Forward, 1, &mut sealed, len, METADATA_LEN)
        .expect("room for the trailer");
    assert!(open_metadata_packet(&key, Direction::Forward, &sealed, METADATA_LEN).is_ok());
    group.bench_function("open_metadata_packet/120+60", |b| {
        b.iter(|| open_metadata_packet(&key, Direction::Forward, black_box(&sealed), METADATA_LEN))
    });
    group.finish();
}

fn session_key(c: &mut Criterion) {
    let key = PeerKey::new(7, 7, &[0x5a; 32]);
    let mut group = c.benchmark_group("session_key");
    group.throughput(Throughput::Elements(1));
    group.bench_function("derive", |b| {
        b.iter(|| SessionKey::derive(black_box(&key), black_box(&UUID)))
    });
    group.finish();
}

fn payload(c: &mut Criterion) {
    let session = SessionKey::derive(&PeerKey::new(7, 7, &[0x5a; 32]), &UUID);
    let mut group = c.benchmark_group("payload");
    for (mode, name) in [
        (SecurityMode::Encrypt, "encrypt"),
        (SecurityMode::Authenticate, "authenticate"),
    ] {
        for size in [64usize, 1400] {
            group.throughput(Throughput::Bytes(size as u64));
            let mut buf = vec![0x42u8; size + TRAILER_LEN];
            let mut seq = 0u64;
            group.bench_function(format!("seal_{name}/{size}"), |b| {
                b.iter(|| {
                    seq += 1;
                    seal_payload(
                        &session,
                        mode,
                        Direction::Forward,
                        seq,
                        black_box(&mut buf),
                        0,
                        size,
                    )
                })
            });
            // Open a fresh copy each time (ENCRYPT decrypts in place); the copy is timed too,
            // and is a small part of the cost.
            let mut sealed = vec![0x42u8; size + TRAILER_LEN];
            seal_payload(&session, mode, Direction::Forward, 1, &mut sealed, 0, size)
                .expect("room for the trailer");
            let mut scratch = sealed.clone();
            group.bench_function(format!("open_{name}/{size}"), |b| {
                b.iter(|| {
                    scratch.copy_from_slice(&sealed);
                    let opened = open_payload(
                        &session,
                        mode,
                        Direction::Forward,
                        black_box(&mut scratch),
                        0,
                        size + TRAILER_LEN,
                    );
                    assert!(opened.is_ok());
                    opened
                })
            });
        }
    }
    group.finish();
}

fn aead_choice(c: &mut Criterion) {
    let algorithms: [(&'static aead::Algorithm, &str); 2] = [
        (&aead::AES_256_GCM, "aes_256_gcm"),
        (&aead::CHACHA20_POLY1305, "chacha20_poly1305"),
    ];
    let key_bytes = [0x5au8; 32];
    let mut group = c.benchmark_group("aead_key_setup");
    group.throughput(Throughput::Elements(1));
    for (algorithm, name) in algorithms {
        group.bench_function(name, |b| {
            b.iter(|| {
                aead::UnboundKey::new(algorithm, black_box(&key_bytes)).map(aead::LessSafeKey::new)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("aead_raw");
    for (algorithm, name) in algorithms {
        let key = aead::LessSafeKey::new(
            aead::UnboundKey::new(algorithm, &key_bytes).expect("32-byte key"),
        );
        for size in [64usize, 1400] {
            group.throughput(Throughput::Bytes(size as u64));
            let mut buf = vec![0x42u8; size];
            let mut seq = 0u64;
            group.bench_function(format!("{name}/seal/{size}"), |b| {
                b.iter(|| {
                    seq += 1;
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&seq.to_be_bytes());
                    key.seal_in_place_separate_tag(
                        aead::Nonce::assume_unique_for_key(nonce),
                        aead::Aad::empty(),
                        black_box(&mut buf),
                    )
                })
            });
            // AUTHENTICATE's construction: the payload as associated data, no plaintext.
            group.bench_function(format!("{name}/tag_of_aad/{size}"), |b| {
                b.iter(|| {
                    seq += 1;
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&seq.to_be_bytes());
                    key.seal_in_place_separate_tag(
                        aead::Nonce::assume_unique_for_key(nonce),
                        aead::Aad::from(black_box(&buf[..])),
                        &mut [],
                    )
                })
            });
        }
    }
    group.finish();
}

fn config() -> Criterion {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("signpost security bench: ns per operation, {cores} cores available, one thread");
    println!(
        "a set-up ring AEAD key (LessSafeKey) takes {} bytes; a SessionKey takes {}",
        size_of::<aead::LessSafeKey>(),
        size_of::<SessionKey>()
    );
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = metadata, session_key, payload, aead_choice
}
criterion_main!(benches);
