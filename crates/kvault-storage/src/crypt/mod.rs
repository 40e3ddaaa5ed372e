//! Envelope encryption of archives: each archive has its own random data key, wrapped in its
//! manifest by a key-encryption key ([`keys`]); each block's compressed bytes and each
//! segment's trailer are sealed with AES-256-GCM under that data key, with the block's place
//! (archive, segment, block index, header) as associated data. `docs/archive-format.md`,
//! "Encrypted archives", gives the byte layout and why the nonces never repeat.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use zeroize::Zeroizing;

pub mod keys;

pub use keys::{Kek, KeyError, KeyProvider, LocalKeys};

/// The cipher suite recorded in the manifest.
pub const SCHEME: &str = "aes-256-gcm";
/// Bytes of a data key and of a key-encryption key.
pub const KEY_LEN: usize = 32;
/// Bytes of an AES-GCM authentication tag.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a block's data and to a trailer: the nonce before, the tag after.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

const BLOCK_LABEL: &[u8] = b"kvault block v1";
const TRAILER_LABEL: &[u8] = b"kvault trailer v1";
const WRAP_LABEL: &[u8] = b"kvault data key v1";

/// `N` bytes from the operating system's random source.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], ()> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| ())?;
    Ok(b)
}

/// An archive's data key. Redacted in `Debug`, wiped on drop.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A fresh random key.
    // The only failure is the OS random source refusing; callers name it in their own error.
    #[allow(clippy::result_unit_err)]
    pub fn generate() -> Result<Self, ()> {
        Ok(Self(Zeroizing::new(random()?)))
    }

    /// The key in `b`, if it is 32 bytes.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        if b.len() != KEY_LEN {
            return None;
        }
        k.copy_from_slice(b);
        Some(Self(k))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0[..]
    }
}

/// What a wrapped data key is bound to: the archive's uid and the wrapping key's id, so a
/// wrapped key copied into another archive's manifest (or relabelled) does not unwrap.
pub(crate) fn wrap_context(archive_uid: &str, key_id: &str) -> Vec<u8> {
    let mut ad = WRAP_LABEL.to_vec();
    put_str(&mut ad, archive_uid);
    put_str(&mut ad, key_id);
    ad
}

fn put_str(ad: &mut Vec<u8>, s: &str) {
    ad.extend_from_slice(&(s.len() as u32).to_le_bytes());
    ad.extend_from_slice(s.as_bytes());
}

/// One archive's unwrapped data key, ready to seal and open its segments.
#[derive(Clone)]
pub(crate) struct ArchiveKey {
    aead: Arc<LessSafeKey>,
    uid: String,
    key_id: String,
}

impl fmt::Debug for ArchiveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveKey")
            .field("uid", &self.uid)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ArchiveKey {
    pub(crate) fn new(key: &DataKey, uid: &str, key_id: &str) -> Self {
        // Only fails for a key of the wrong length, which `DataKey` rules out.
        let unbound = UnboundKey::new(&AES_256_GCM, key.bytes()).expect("32-byte AES key");
        Self {
            aead: Arc::new(LessSafeKey::new(unbound)),
            uid: uid.to_owned(),
            key_id: key_id.to_owned(),
        }
    }

    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key of segment `file` (relative to the backup, attempt folder included or not):
    /// bound to its partition directory and file name, the part every copy of it shares.
    pub(crate) fn segment(&self, file: &str) -> SegmentKey {
        let mut parts = file.rsplit('/');
        let name = parts.next().unwrap_or_default();
        let dir = parts.next().unwrap_or_default();
        SegmentKey {
            key: self.clone(),
            name: format!("{dir}/{name}"),
        }
    }
}

/// Seals and opens the blocks and trailer of one segment.
#[derive(Debug, Clone)]
pub(crate) struct SegmentKey {
    key: ArchiveKey,
    name: String,
}

impl SegmentKey {
    pub(crate) fn key_id(&self) -> &str {
        self.key.key_id()
    }

    fn aad(&self, label: &[u8], index: Option<u64>, fields: &[u8]) -> Vec<u8> {
        let mut ad = Vec::with_capacity(label.len() + self.key.uid.len() + self.name.len() + 72);
        ad.extend_from_slice(label);
        put_str(&mut ad, &self.key.uid);
        put_str(&mut ad, &self.name);
        if let Some(i) = index {
            ad.extend_from_slice(&i.to_le_bytes());
        }
        ad.extend_from_slice(fields);
        ad
    }

    /// Appends `nonce | AES-256-GCM(plain) | tag` to `out` (cleared first) for block `index`
    /// whose header bytes 4..48 are `fields`.
    pub(crate) fn seal_block(
        &self,
        index: u64,
        fields: &[u8],
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ()> {
        out.clear();
        self.seal_into(&self.aad(BLOCK_LABEL, Some(index), fields), plain, out)
    }

    /// Authenticates and decrypts block `index`'s data in place; the plaintext's range in `data`.
    pub(crate) fn open_block(
        &self,
        index: u64,
        fields: &[u8],
        data: &mut [u8],
    ) -> Result<Range<usize>, ()> {
        self.open(&self.aad(BLOCK_LABEL, Some(index), fields), data)
    }

    /// The seal after a trailer (whose first 28 bytes are `fields`): nonce and tag over no
    /// plaintext, so a segment cut after a whole block cannot be given a forged trailer.
    pub(crate) fn seal_trailer(&self, fields: &[u8]) -> Result<Vec<u8>, ()> {
        let mut out = Vec::with_capacity(SEAL_OVERHEAD);
        self.seal_into(&self.aad(TRAILER_LABEL, None, fields), &[], &mut out)?;
        Ok(out)
    }

    pub(crate) fn open_trailer(&self, fields: &[u8], seal: &mut [u8]) -> Result<(), ()> {
        self.open(&self.aad(TRAILER_LABEL, None, fields), seal)
            .map(|_| ())
    }

    fn seal_into(&self, ad: &[u8], plain: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
        let nonce: [u8; NONCE_LEN] = random()?;
        out.reserve(SEAL_OVERHEAD + plain.len());
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(ad),
                &mut out[start..],
            )
            .map_err(|_| ())?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    fn open(&self, ad: &[u8], data: &mut [u8]) -> Result<Range<usize>, ()> {
        if data.len() < SEAL_OVERHEAD {
            return Err(());
        }
        let (nonce, sealed) = data.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| ())?;
        let plain = self
            .key
            .aead
            .open_in_place(nonce, Aad::from(ad), sealed)
            .map_err(|_| ())?;
        Ok(NONCE_LEN..NONCE_LEN + plain.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uid: &str) -> ArchiveKey {
        ArchiveKey::new(&DataKey::generate().expect("random"), uid, "k1")
    }

    #[test]
    fn a_sealed_block_opens_only_in_its_place() {
        let k = key("uid-1");
        let seg = k.segment("attempt-ab/p0/00000000000000000000.seg");
        let mut sealed = Vec::new();
        seg.seal_block(3, b"fields", b"secret records", &mut sealed)
            .expect("seal");
        assert_eq!(sealed.len(), b"secret records".len() + SEAL_OVERHEAD);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        // The same segment under another attempt folder opens: copies share the name.
        let copy = k.segment("p0/00000000000000000000.seg");
        let mut data = sealed.clone();
        let range = copy.open_block(3, b"fields", &mut data).expect("open");
        assert_eq!(&data[range], b"secret records");
        // Another index, header, segment, archive or a flipped byte: refused.
        let other_seg = k.segment("p0/00000000000000000001.seg");
        let other_archive = key("uid-1").segment("p0/00000000000000000000.seg");
        let mut flipped = sealed.clone();
        flipped[15] ^= 1;
        let refused = [
            copy.open_block(4, b"fields", &mut sealed.clone()),
            copy.open_block(3, b"fieldz", &mut sealed.clone()),
            other_seg.open_block(3, b"fields", &mut sealed.clone()),
            other_archive.open_block(3, b"fields", &mut sealed.clone()),
            copy.open_block(3, b"fields", &mut flipped),
            copy.open_block(3, b"fields", &mut sealed[..10].to_vec()),
        ];
        assert!(refused.iter().all(Result::is_err));
    }

    #[test]
    fn local_keys_wrap_for_one_archive_and_hide_their_bytes() {
        let kek = Kek::parse(&"ab".repeat(32)).expect("hex key");
        let other = Kek::parse("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=").expect("base64");
        assert!(Kek::parse("abcd").is_err());
        assert!(!Kek::parse("not a key !").unwrap_err().contains("not a key"));
        let keys = LocalKeys::new([("k1".to_owned(), kek)].into(), Some("k1")).expect("keys");
        assert_eq!(format!("{keys:?}").matches("abab").count(), 0);
        let dk = DataKey::generate().expect("random");
        let ctx = wrap_context("uid-1", "k1");
        let wrapped = keys.wrap("k1", &dk, &ctx).expect("wrap");
        let back = keys.unwrap("k1", &wrapped, &ctx).expect("unwrap");
        assert_eq!(back.bytes(), dk.bytes());
        let wrong = LocalKeys::new([("k1".to_owned(), other)].into(), Some("k1")).expect("keys");
        assert_eq!(
            wrong.unwrap("k1", &wrapped, &ctx).unwrap_err(),
            KeyError::Rejected("k1".into())
        );
        let elsewhere = wrap_context("uid-2", "k1");
        assert!(keys.unwrap("k1", &wrapped, &elsewhere).is_err());
        assert_eq!(
            keys.unwrap("k9", &wrapped, &ctx).unwrap_err(),
            KeyError::Unknown("k9".into())
        );
        assert!(LocalKeys::new(BTreeMap::new(), Some("k1")).is_err());
    }

    use std::collections::BTreeMap;
}
