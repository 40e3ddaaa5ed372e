//! Stored key lists for `exclude_keys: [{"list": NAME}]` (the keys of erasure requests, say):
//! the file format, parsed here so that every engine reads a list the same way. One key per
//! line, its UTF-8 text; a line `base64:...` is a key that is not text (or one that contains a
//! line break or starts with `base64:`). Empty lines are skipped, so no key is empty, and
//! nothing else is special: a `#` is part of a key.

use std::collections::BTreeSet;

use base64::Engine as _;

/// Most keys one list may hold (a set of this many short keys stays within tens of megabytes).
pub const MAX_LISTED_KEYS: usize = 5_000_000;

const BASE64_PREFIX: &[u8] = b"base64:";

/// The keys of a list file's `content`, or what is wrong with it (with its line number).
pub fn parse_key_list(content: &[u8]) -> Result<BTreeSet<Vec<u8>>, String> {
    let mut keys = BTreeSet::new();
    for (n, line) in content.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let key = match line.strip_prefix(BASE64_PREFIX) {
            Some(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("line {}: not standard base64 after 'base64:': {e}", n + 1))?,
            None => line.to_vec(),
        };
        keys.insert(key);
        if keys.len() > MAX_LISTED_KEYS {
            return Err(format!("more than {MAX_LISTED_KEYS} keys"));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_keys_and_base64_lines_are_bytes() {
        let keys = parse_key_list(
            b"alice@example.com\r\n\n#not-a-comment\nbase64:AAH/\nalice@example.com",
        )
        .unwrap();
        let expected: BTreeSet<Vec<u8>> = [
            b"alice@example.com".to_vec(),
            b"#not-a-comment".to_vec(),
            vec![0, 1, 255],
        ]
        .into();
        assert_eq!(keys, expected);
    }

    #[test]
    fn a_bad_base64_line_names_its_line() {
        let err = parse_key_list(b"a\nb\nbase64:***").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
    }
}
