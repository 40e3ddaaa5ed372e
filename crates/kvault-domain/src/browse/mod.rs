//! Reading records straight out of a backup: the JSON shape of a record ([`view`]) and the
//! query, cursor and paging over a backup's partitions ([`page`]). Shared by
//! `GET /api/kafka/backups/{id}/records` and `kvault cat`.

pub mod page;
pub mod view;

pub use page::{
    read_page, stream_page, BrowseQuery, Cursor, PageEnd, PageSink, Pushed, RecordPage,
    TruncatedBy, DEFAULT_LIMIT, DEFAULT_PAGE_BYTES, DEFAULT_VALUE_CAP, MAX_LIMIT, MAX_SCANNED,
};
pub use view::{Encoding, HeaderView, RecordView};
