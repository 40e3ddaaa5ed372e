//! Encode and decode throughput of a segment per codec, on realistic records: ~500-byte
//! JSON-like values, short keys and two headers. Throughput counts record payload bytes
//! (key + value + headers). Also prints each codec's compressed-size ratio.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kvault_domain::{Compression, CompressionType, Header, Record, TimestampType};
use kvault_storage::fuzzing::{encode_segment, read_segment_bytes};

const RECORDS: i64 = 8_000;
const BLOCK_SIZE: usize = 1 << 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn records() -> Vec<Record> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let events = [
        "page_view",
        "add_to_cart",
        "checkout",
        "login",
        "search",
        "logout",
    ];
    let countries = ["DE", "FR", "US", "JP", "BR", "IN", "NG", "SE"];
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
    ];
    (0..RECORDS)
        .map(|offset| {
            let user = rng.next() % 50_000;
            let value = format!(
                concat!(
                    "{{\"event_id\":\"{:016x}{:016x}\",\"type\":\"{}\",\"user_id\":\"u-{}\",",
                    "\"session\":\"{:012x}\",\"ts\":{},\"country\":\"{}\",",
                    "\"url\":\"/products/{}?ref=campaign-{}&utm_source=newsletter\",",
                    "\"user_agent\":\"{}\",\"cart\":{{\"items\":{},\"total_cents\":{},",
                    "\"currency\":\"EUR\"}},\"experiment\":{{\"name\":\"checkout-v{}\",",
                    "\"bucket\":{}}},\"ip\":\"10.{}.{}.{}\",\"consent\":true}}"
                ),
                rng.next(),
                rng.next(),
                rng.pick(&events),
                user,
                rng.next() & 0xffff_ffff_ffff,
                1_700_000_000_000 + offset * 37,
                rng.pick(&countries),
                rng.next() % 100_000,
                rng.next() % 40,
                rng.pick(&agents),
                rng.next() % 12,
                rng.next() % 100_000,
                rng.next() % 5,
                rng.next() % 2,
                rng.next() % 256,
                rng.next() % 256,
                rng.next() % 256,
            );
            Record {
                offset,
                timestamp: 1_700_000_000_000 + offset * 37,
                timestamp_type: TimestampType::CreateTime,
                key: Some(format!("u-{user}").into_bytes()),
                value: Some(value.into_bytes()),
                headers: vec![
                    Header {
                        key: "traceparent".into(),
                        value: Some(
                            format!(
                                "00-{:016x}{:016x}-{:016x}-01",
                                rng.next(),
                                rng.next(),
                                rng.next()
                            )
                            .into_bytes(),
                        ),
                    },
                    Header {
                        key: "content-type".into(),
                        value: Some(b"application/json".to_vec()),
                    },
                ],
            }
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    let records = records();
    let payload: u64 = records.iter().map(Record::payload_len).sum();
    let none = encode_segment(
        &records,
        Compression::new(CompressionType::None, None).unwrap(),
        BLOCK_SIZE,
    )
    .unwrap();
    eprintln!(
        "{} records, {} payload bytes ({} per value on average), segment without compression {} bytes",
        records.len(),
        payload,
        records.iter().map(|r| r.value.as_ref().map_or(0, Vec::len)).sum::<usize>() / records.len(),
        none.len()
    );
    for codec in CompressionType::ALL {
        let comp = Compression::new(codec, None).unwrap();
        let bytes = encode_segment(&records, comp, BLOCK_SIZE).unwrap();
        eprintln!(
            "ratio {codec}: {} bytes = {:.3} of uncompressed segment",
            bytes.len(),
            bytes.len() as f64 / none.len() as f64
        );
    }

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Bytes(payload));
    for codec in CompressionType::ALL {
        let comp = Compression::new(codec, None).unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(codec), &comp, |b, comp| {
            b.iter(|| encode_segment(&records, *comp, BLOCK_SIZE).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(payload));
    for codec in CompressionType::ALL {
        let bytes =
            encode_segment(&records, Compression::new(codec, None).unwrap(), BLOCK_SIZE).unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(codec), &bytes, |b, bytes| {
            b.iter(|| read_segment_bytes(bytes).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
