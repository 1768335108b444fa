//! Frame encode and decode of the messages a node exchanges most, side by side in one
//! run with plain bincode (no length prefix, no size checks) as the baseline, and a
//! table of their encoded sizes (printed once to stderr).
//!
//! `cargo bench -p fixit-protocol --bench codec`
//!
//! The frames are the protocol's own types (`fixit_protocol::wire`, `::api`).

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{
    black_box, criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput,
};
use fixit_protocol::codec::{self, decode_frame, encode_frame, read_frame};
use fixit_protocol::geo::{Coord, Nearby};
use fixit_protocol::ids::{CustomerId, JobId, ProviderId, Skill, WalletId};
use fixit_protocol::job::{Job, JobRequest, JobStatus};
use fixit_protocol::ledger::{Balance, EntryKind, LedgerEntry};
use fixit_protocol::push::ProviderPush;
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;

/// Largest request frame body a node accepts by default (`server.frame_bytes_max`).
const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// Largest reply or push frame body (the codec's own limit).
const REPLY_BYTES_MAX: usize = codec::FRAME_BODY_BYTES_LIMIT;
/// Providers in a nearby answer (k of the midnight test).
const NEARBY_PROVIDERS: u64 = 10;
/// Entries in a history page.
const HISTORY_ENTRIES: u64 = 100;

use fixit_protocol::api::{NearbyAnswer, Push, Request, Response};
use fixit_protocol::wire::{ReplyFrame, RequestFrame, StreamFrame};

fn paris() -> Coord {
    Coord::new(48.856_613, 2.352_222).unwrap()
}

fn request(request: Request) -> StreamFrame {
    StreamFrame::Request(RequestFrame {
        request_id: Some("sdk-7f3a-104233".into()),
        request,
    })
}

fn reply(response: Response) -> ReplyFrame {
    ReplyFrame {
        request_id: "local-1-3fa2c901-104233".into(),
        result: Ok(response),
    }
}

fn location_update() -> StreamFrame {
    request(Request::Location {
        provider: 120_431,
        lat: 48.861_204,
        lon: 2.339_871,
    })
}

fn request_job() -> StreamFrame {
    request(Request::RequestJob {
        customer: 8_042,
        key: "book-8042-000017".into(),
        skill: "electrician".into(),
        lat: 48.856_613,
        lon: 2.352_222,
        price: 12_500,
    })
}

fn offer_push() -> Push {
    Push::Provider(ProviderPush::Offer {
        job: JobId(0x0001_0000_0004_2a17),
        skill: Skill::new("electrician").unwrap(),
        location: paris(),
        price: 12_500,
        deadline_ms: 1_795_400_000_000,
    })
}

fn job_reply() -> ReplyFrame {
    let job = Job {
        id: JobId(0x0001_0000_0004_2a17),
        customer: CustomerId(8_042),
        request: JobRequest {
            skill: Skill::new("electrician").unwrap(),
            location: paris(),
            price: 12_500,
        },
        fee: 1_250,
        status: JobStatus::Offered {
            provider: ProviderId(120_431),
            deadline_ms: 1_795_400_000_000,
        },
        tried: vec![ProviderId(120_007), ProviderId(119_880)],
        offers: 3,
        hold_key: "job-request-book-8042-000017".into(),
        wake_at_ms: Some(1_795_400_000_000),
        verified: None,
        created_ms: 1_795_399_985_000,
        zone: None,
    };
    reply(Response::Job(job))
}

fn nearby_reply() -> ReplyFrame {
    let providers = (0..NEARBY_PROVIDERS)
        .map(|n| Nearby {
            provider: ProviderId(120_000 + n * 37),
            distance_m: 180.0 + n as f64 * 97.3,
        })
        .collect();
    reply(Response::Nearby(NearbyAnswer {
        providers,
        unanswered: Vec::new(),
    }))
}

fn history_reply() -> ReplyFrame {
    let entries = (0..HISTORY_ENTRIES)
        .map(|seq| LedgerEntry {
            seq,
            key: format!("job-{}-capture", 0x0001_0000_0004_0000 + seq),
            kind: EntryKind::Payment,
            available_delta: 11_250,
            held_delta: 0,
            balance_after: Balance {
                available: 11_250 * (seq as i64 + 1),
                held: 0,
            },
            counterparty: Some(WalletId(8_000 + seq)),
            at_ms: 1_795_300_000_000 + seq * 60_000,
        })
        .collect();
    reply(Response::History(entries))
}

/// Benches one message: framed encode, framed decode (from a slice and through the
/// async reader), and plain bincode both ways as the baseline.
fn bench_message<T>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    value: &T,
    max: usize,
) where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let frame = encode_frame(value, max).unwrap();
    let body = codec::encode(value).unwrap();
    assert_eq!(&decode_frame::<T>(&frame, max).unwrap(), value);
    group.bench_function(format!("{name}/encode_frame"), |b| {
        b.iter(|| encode_frame(black_box(value), max).unwrap())
    });
    group.bench_function(format!("{name}/decode_frame"), |b| {
        b.iter(|| decode_frame::<T>(black_box(&frame), max).unwrap())
    });
    group.bench_function(format!("{name}/read_frame"), |b| {
        b.iter(|| {
            let mut reader = black_box(&frame[..]);
            futures::executor::block_on(read_frame::<T, _>(&mut reader, max))
                .unwrap()
                .unwrap()
        })
    });
    group.bench_function(format!("{name}/bincode_encode"), |b| {
        b.iter(|| codec::encode(black_box(value)).unwrap())
    });
    group.bench_function(format!("{name}/bincode_decode"), |b| {
        b.iter(|| codec::decode::<T>(black_box(&body)).unwrap())
    });
}

/// Bincode body bytes of `value`, and its frame bytes (body plus the 4-byte prefix).
fn sizes<T: Serialize>(value: &T) -> (usize, usize) {
    let body = codec::encode(value).unwrap().len();
    (body, body + codec::FRAME_HEADER_BYTES)
}

fn print_sizes() {
    let rows = [
        ("location update request", sizes(&location_update())),
        ("request_job request", sizes(&request_job())),
        ("offer push", sizes(&offer_push())),
        ("job reply", sizes(&job_reply())),
        ("nearby reply, 10 providers", sizes(&nearby_reply())),
        ("history reply, 100 entries", sizes(&history_reply())),
        (
            "stored wallet balance",
            sizes(&Balance {
                available: 112_500,
                held: 12_500,
            }),
        ),
    ];
    eprintln!("| message | bincode body bytes | frame bytes |");
    eprintln!("| --- | --- | --- |");
    for (name, (body, frame)) in rows {
        eprintln!("| {name} | {body} | {frame} |");
    }
}

fn codec_benches(c: &mut Criterion) {
    print_sizes();
    let mut group = c.benchmark_group("codec");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(600))
        .sample_size(20)
        .throughput(Throughput::Elements(1));
    bench_message(
        &mut group,
        "location_update",
        &location_update(),
        REQUEST_BYTES_MAX,
    );
    bench_message(&mut group, "request_job", &request_job(), REQUEST_BYTES_MAX);
    bench_message(&mut group, "offer_push", &offer_push(), REPLY_BYTES_MAX);
    bench_message(&mut group, "job_reply", &job_reply(), REPLY_BYTES_MAX);
    bench_message(
        &mut group,
        "nearby_reply_10",
        &nearby_reply(),
        REPLY_BYTES_MAX,
    );
    bench_message(
        &mut group,
        "history_reply_100",
        &history_reply(),
        REPLY_BYTES_MAX,
    );
    group.finish();
}

criterion_group! {
    name = benches;
    // No plots: drawing them takes longer than measuring on a busy two-core machine.
    config = Criterion::default().without_plots();
    targets = codec_benches
}
criterion_main!(benches);
