//! The names kvault gives its objects under a backup's prefix, and the classification of a
//! listed key by them. The sweep and a delete act only on keys this module recognises, so an
//! object kvault did not write is never touched, whatever its age.
//!
//! Under `{id}/`:
//! - `manifest.json`: the commit point of a backup.
//! - `_writing`: the lease of the writer of the id; its body names the writer's attempt.
//! - `_deleting/{32 hex}`: the marker of a delete in progress, listing what it removes.
//! - `attempt-{32 hex}/p{n}/{offset:020}.seg`: a segment written by one write attempt.
//! - `attempt-{32 hex}/_uploads/p{n}~{offset:020}.seg`: an open multipart upload's marker.
//! - `p{n}/{offset:020}.seg` and `_uploads/p{n}~{offset:020}.seg`: the same, as written
//!   before attempts had prefixes of their own (still read and swept).

use kvault_domain::BackupId;

pub(super) use crate::backend::local::MANIFEST_FILE;

/// The lease object of a backup being written.
pub(super) const LEASE: &str = "_writing";
/// The folder of open-upload markers (inside an attempt's folder).
pub(super) const UPLOADS: &str = "_uploads";
/// The folder of delete markers.
pub(super) const DELETING: &str = "_deleting";
/// The start of the objects written to read the server's clock (`.kvault-clock-{hex}`, at
/// the root, deleted right after): never under a backup id.
pub(super) const CLOCK: &str = ".kvault-clock";
const ATTEMPT_PREFIX: &str = "attempt-";

/// A fresh write attempt's folder name: `attempt-{32 hex}`.
pub(super) fn new_attempt() -> String {
    format!("{ATTEMPT_PREFIX}{}", random_hex())
}

/// 32 random lower-case hex digits.
pub(super) fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` is an attempt folder name [`new_attempt`] makes.
pub(super) fn is_attempt(s: &str) -> bool {
    s.strip_prefix(ATTEMPT_PREFIX).is_some_and(is_hex32)
}

fn is_partition_dir(s: &str) -> bool {
    s.strip_prefix('p')
        .is_some_and(|n| !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_segment_name(s: &str) -> bool {
    s.strip_suffix(".seg")
        .is_some_and(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_upload_marker_name(s: &str) -> bool {
    s.split_once('~')
        .is_some_and(|(dir, seg)| is_partition_dir(dir) && is_segment_name(seg))
}

/// What a key under a backup's prefix is, by its name alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    Manifest,
    Lease,
    DeleteMarker,
    /// A segment of the given attempt (`None`: the layout without attempt folders).
    Segment(Option<String>),
    /// An open upload's marker of the given attempt.
    UploadMarker(Option<String>),
}

/// `parts` is a key relative to the root: `[id, rest..]`. `None` for anything kvault does
/// not write: a first part that is no backup id, or a rest that is none of kvault's names.
pub(super) fn classify(parts: &[&str]) -> Option<(String, Entry)> {
    let [id, rest @ ..] = parts else {
        return None;
    };
    BackupId::parse(id).ok()?;
    let (attempt, within) = match rest {
        [first, within @ ..] if is_attempt(first) => (Some((*first).to_owned()), within),
        _ => (None, rest),
    };
    let entry = match (attempt.is_some(), within) {
        (false, [name]) if *name == MANIFEST_FILE => Entry::Manifest,
        (false, [name]) if *name == LEASE => Entry::Lease,
        (false, [dir, name]) if *dir == DELETING && is_hex32(name) => Entry::DeleteMarker,
        (_, [dir, name]) if is_partition_dir(dir) && is_segment_name(name) => {
            Entry::Segment(attempt)
        }
        (_, [dir, name]) if *dir == UPLOADS && is_upload_marker_name(name) => {
            Entry::UploadMarker(attempt)
        }
        _ => return None,
    };
    Some(((*id).to_owned(), entry))
}

/// Whether a manifest's segment `file` names a segment in kvault's layout, so a delete may
/// remove it.
pub(super) fn is_segment_file(file: &str) -> bool {
    let parts: Vec<&str> = std::iter::once("x").chain(file.split('/')).collect();
    matches!(classify(&parts), Some((_, Entry::Segment(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(key: &str) -> Option<Entry> {
        classify(&key.split('/').collect::<Vec<_>>()).map(|(_, e)| e)
    }

    #[test]
    fn only_kvaults_names_are_recognised() {
        let a = new_attempt();
        assert!(is_attempt(&a), "{a}");
        assert_eq!(of("b/manifest.json"), Some(Entry::Manifest));
        assert_eq!(of("b/_writing"), Some(Entry::Lease));
        assert_eq!(
            of(&format!("b/{a}/p3/00000000000000000042.seg")),
            Some(Entry::Segment(Some(a.clone())))
        );
        assert_eq!(
            of("b/p0/00000000000000000000.seg"),
            Some(Entry::Segment(None))
        );
        assert_eq!(
            of(&format!("b/{a}/_uploads/p0~00000000000000000000.seg")),
            Some(Entry::UploadMarker(Some(a.clone())))
        );
        assert_eq!(
            of(&format!("b/_deleting/{}", random_hex())),
            Some(Entry::DeleteMarker)
        );
        for foreign in [
            "readme.txt",
            ".hidden/p0/00000000000000000000.seg",
            "b/report.csv",
            "b/p0/notes.txt",
            "b/p0/0.seg",
            "b/px/00000000000000000000.seg",
            "b/_uploads/list",
            "b/_deleting/x",
            &format!("b/{a}/manifest.json"),
            &format!("b/{a}/_writing"),
            "b/attempt-x/p0/00000000000000000000.seg",
            "b/p0/00000000000000000000.seg/more",
        ] {
            assert_eq!(of(foreign), None, "{foreign}");
        }
        assert!(is_segment_file(&format!("{a}/p0/00000000000000000000.seg")));
        assert!(!is_segment_file("../other/p0/00000000000000000000.seg"));
        assert!(!is_segment_file("manifest.json"));
    }
}
