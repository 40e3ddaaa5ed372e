//! Property tests: any records, over arbitrary bytes, survive a segment round trip with every
//! codec and any block size; and the fuzz entry point never panics on mutated segments.

mod common;

use kvault_domain::{Compression, CompressionType, Header, Record, TimestampType};
use kvault_storage::fuzzing::{encode_segment, read_segment_bytes};
use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200))
}

/// Records with strictly increasing (possibly gappy, possibly negative) offsets.
fn records() -> impl Strategy<Value = Vec<Record>> {
    proptest::collection::vec(
        (
            1..1000i64,
            any::<i64>(),
            0..3u8,
            bytes(),
            bytes(),
            proptest::collection::vec((any::<String>(), bytes()), 0..4),
        ),
        0..40,
    )
    .prop_flat_map(|items| {
        (-1000..1000i64).prop_map(move |start| {
            let mut offset = start;
            items
                .iter()
                .cloned()
                .map(|(gap, timestamp, t, key, value, headers)| {
                    offset += gap;
                    Record {
                        offset,
                        timestamp,
                        timestamp_type: match t {
                            0 => TimestampType::NotAvailable,
                            1 => TimestampType::CreateTime,
                            _ => TimestampType::LogAppendTime,
                        },
                        key,
                        value,
                        headers: headers
                            .into_iter()
                            .map(|(key, value)| Header { key, value })
                            .collect(),
                    }
                })
                .collect()
        })
    })
}

fn codec() -> impl Strategy<Value = Compression> {
    (0..5usize, 0..3i32).prop_map(|(i, l)| {
        let codec = CompressionType::ALL[i];
        let level = codec
            .level_range()
            .map(|(lo, hi)| [lo, hi, codec.default_level().unwrap()][l as usize]);
        Compression::new(codec, level).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn segments_round_trip(records in records(), compression in codec(), block_size in 1..4096usize) {
        let bytes = encode_segment(&records, compression, block_size).unwrap();
        let back = read_segment_bytes(&bytes).unwrap();
        prop_assert_eq!(back.codec, compression.codec);
        prop_assert_eq!(&back.records, &records);
        if block_size == 1 {
            prop_assert_eq!(back.blocks, records.len() as u64);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_segment_bytes(&data);
    }
}

#[test]
fn every_codec_round_trips_realistic_records_and_a_large_value() {
    let mut records: Vec<Record> = (0..2_000).map(common::record).collect();
    // One record far larger than the block size.
    let mut big = common::record(5_000);
    big.value = Some((0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect());
    records.push(big);
    for codec in CompressionType::ALL {
        let c = Compression::new(codec, None).unwrap();
        let bytes = encode_segment(&records, c, 64 << 10).unwrap();
        let back = read_segment_bytes(&bytes).unwrap();
        assert_eq!(back.records, records, "{codec}");
        assert!(
            back.blocks > 2,
            "{codec}: expected several blocks, got {}",
            back.blocks
        );
    }
}

/// Runs the fuzz entry point over thousands of deterministic mutations of valid segments
/// (flips, byte sets, truncations, extensions, splices) so CI exercises the fuzz path.
#[test]
fn mutated_segments_never_panic_and_mostly_fail() {
    let records: Vec<Record> = (0..60).map(common::record).collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64*: deterministic, no dependency.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut rejected = 0;
    let mut total = 0;
    for codec in CompressionType::ALL {
        let valid = encode_segment(&records, Compression::new(codec, None).unwrap(), 512).unwrap();
        for _ in 0..800 {
            let mut m = valid.clone();
            let len = m.len();
            match next() % 5 {
                0 => {
                    let i = (next() as usize) % len;
                    m[i] ^= 1 << (next() % 8);
                }
                1 => {
                    let i = (next() as usize) % len;
                    m[i] = next() as u8;
                }
                2 => m.truncate((next() as usize) % len),
                3 => m.extend((0..1 + next() % 64).map(|_| next() as u8)),
                _ => {
                    let i = (next() as usize) % len;
                    let n = ((next() as usize) % 16).min(len - i);
                    for b in &mut m[i..i + n] {
                        *b = next() as u8;
                    }
                }
            }
            total += 1;
            match read_segment_bytes(&m) {
                Err(_) => rejected += 1,
                // A mutation that changes nothing (e.g. setting a byte to itself) is fine.
                Ok(c) => assert_eq!(
                    c.records, records,
                    "{codec}: a mutation produced different records without an error"
                ),
            }
        }
    }
    assert!(
        rejected * 100 >= total * 95,
        "only {rejected}/{total} mutations rejected"
    );
}

/// A block declaring more headers than a record may carry is refused,
/// and the fuzz seed `fuzz/seeds/seed-many-headers.seg` is exactly such a segment.
#[test]
fn a_record_with_too_many_headers_is_refused_and_kept_as_a_fuzz_seed() {
    use kvault_storage::format::MAX_HEADERS_PER_RECORD;

    let empty = Header {
        key: String::new(),
        value: None,
    };
    let record = Record {
        offset: 0,
        timestamp: 0,
        timestamp_type: TimestampType::CreateTime,
        key: None,
        value: None,
        headers: vec![empty; MAX_HEADERS_PER_RECORD + 1],
    };
    let compression = Compression::new(CompressionType::Zstd, None).expect("zstd");
    let bytes = encode_segment(&[record], compression, 1 << 20).expect("encode");
    let err = read_segment_bytes(&bytes).expect_err("too many headers must be refused");
    assert!(err.to_string().contains("exceeds the limit"), "{err}");

    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds/seed-many-headers.seg");
    if std::env::var_os("KVAULT_WRITE_SEEDS").is_some() {
        std::fs::write(&seed, &bytes).expect("write seed");
    }
    let stored = std::fs::read(&seed).expect("seed file (regenerate with KVAULT_WRITE_SEEDS=1)");
    let err = read_segment_bytes(&stored).expect_err("the seed must be refused");
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
}

/// The real segments in `fuzz/seeds/` (one per codec, written by `kvault backup` before the
/// gzip backend moved from miniz_oxide to zlib-rs) still decode, 300 messages each.
#[test]
fn the_recorded_seed_segments_of_every_codec_still_decode() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    for codec in CompressionType::ALL {
        let bytes = std::fs::read(seeds.join(format!("seed-{codec}.seg"))).expect("seed");
        let contents = read_segment_bytes(&bytes).expect("decodes");
        assert_eq!(contents.codec, codec);
        assert_eq!(contents.records.len(), 300, "{codec}");
    }
}
