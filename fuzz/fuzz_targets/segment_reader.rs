//! Feeds arbitrary bytes to the segment reader: it must return an error or records, never
//! panic, hang or allocate without bound. Run with `cargo fuzz run segment_reader`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kvault_storage::fuzzing::read_segment_bytes(data);
});
