//! Kafka's default partitioner for keyed records (murmur2, as the Java client computes it), so
//! a restore into a different partition count places keys where Kafka producers would.

use std::sync::atomic::{AtomicU32, Ordering};

/// Kafka's `Utils.murmur2`: seed `0x9747b28c`, little-endian 4-byte blocks.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len() as u32;
    let mut h: u32 = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a key: `toPositive(murmur2) % n`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    let positive = murmur2(key) & 0x7fff_ffff;
    positive % partitions.max(1)
}

/// Places records on a topic with `partitions` partitions: keyed records by murmur2, null
/// keys round-robin (shared by every task of one restore).
#[derive(Debug)]
pub struct KeyPartitioner {
    partitions: i32,
    next: AtomicU32,
}

impl KeyPartitioner {
    pub fn new(partitions: i32) -> Self {
        Self {
            partitions: partitions.max(1),
            next: AtomicU32::new(0),
        }
    }

    pub fn partition(&self, key: Option<&[u8]>) -> i32 {
        match key {
            Some(key) => partition_for_key(key, self.partitions),
            None => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                (n % self.partitions as u32) as i32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's own `UtilsTest.testMurmur2`.
    #[test]
    fn matches_the_java_client() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn null_keys_round_robin_and_keys_are_stable() {
        let p = KeyPartitioner::new(3);
        let spread: Vec<i32> = (0..6).map(|_| p.partition(None)).collect();
        assert_eq!(spread, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(p.partition(Some(b"k")), p.partition(Some(b"k")));
        for i in 0..1000u32 {
            let part = partition_for_key(&i.to_be_bytes(), 7);
            assert!((0..7).contains(&part));
        }
    }
}
