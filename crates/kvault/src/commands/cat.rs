//! `kvault cat`: records read straight out of a backup, one per line on stdout, as JSON
//! (the shape of `GET /api/kafka/backups/{id}/records`) or kcat-like text.

use std::io::Write;
use std::sync::Arc;

use kvault_domain::browse::{read_page, BrowseQuery, Encoding, RecordView, MAX_LIMIT};
use kvault_domain::ports::{RecordFilter, RecordFilters};
use kvault_domain::{BackupId, DomainError};

use crate::cli::{CatArgs, CatFormat};
use crate::context::Context;
use crate::exit::CliError;

pub async fn run(context: &Context, args: CatArgs) -> Result<(), CliError> {
    let id = BackupId::parse(&args.backup_id)?;
    let filter: Option<Arc<dyn RecordFilter>> = match args.filter.as_deref() {
        Some(expr) => Some(Arc::from(
            kvault_kafka::transform::CelFilters
                .compile(expr)
                .map_err(DomainError::from)?,
        )),
        None => None,
    };
    let store = context.existing_store()?;
    let manifest = store.manifest(&id).await?;
    let mut remaining = args.limit.unwrap_or(u64::MAX);
    let mut cursor: Option<String> = None;
    while remaining > 0 {
        let page_limit = remaining.min(MAX_LIMIT as u64) as usize;
        let query = BrowseQuery::new(
            args.partition,
            args.from_offset,
            args.from_time.as_deref(),
            Some(page_limit),
            cursor.as_deref(),
        )?;
        let (store, manifest, id, filter) =
            (store.clone(), manifest.clone(), id.clone(), filter.clone());
        let runtime = tokio::runtime::Handle::current();
        let page = tokio::task::spawn_blocking(move || {
            read_page(&manifest, &query, filter.as_deref(), |p, bounds| {
                runtime.block_on(store.read_partition(&id, p, bounds))
            })
        })
        .await
        .map_err(|e| CliError::internal(format!("record reader failed: {e}")))??;
        remaining -= page.records.len() as u64;
        print(&page.records, args.format)?;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(())
}

fn print(records: &[RecordView], format: CatFormat) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    for r in records {
        let line = match format {
            CatFormat::Json => serde_json::to_string(r)
                .map_err(|e| CliError::internal(format!("cannot encode record: {e}")))?,
            CatFormat::Text => format!(
                "{}:{}\t{}\t{}",
                r.partition,
                r.offset,
                text(r.key.as_deref(), r.key_encoding),
                text(r.value.as_deref(), r.value_encoding)
            ),
        };
        if writeln!(out, "{line}").is_err() {
            // The reader went away (e.g. `| head`): stop quietly.
            return Ok(());
        }
    }
    Ok(())
}

fn text(s: Option<&str>, encoding: Option<Encoding>) -> String {
    match (s, encoding) {
        (None, _) => "null".to_owned(),
        (Some(s), Some(Encoding::Base64)) => format!("base64:{s}"),
        (Some(s), _) => escape_controls(s),
    }
}

/// `s` with control characters (terminal escape sequences, newlines, tabs) written as `\n`,
/// `\t`, `\r` or `\xNN`/`\u{NNNN}`, and `\` as `\\`, so a record prints as one inert line.
fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_output_escapes_control_bytes() {
        let raw = "a\x1b]0;pwned\x07b\tc\nd\\e\u{9b}f é";
        let shown = text(Some(raw), Some(Encoding::Utf8));
        assert_eq!(shown, "a\\x1b]0;pwned\\x07b\\tc\\nd\\\\e\\x9bf é");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
    }
}
