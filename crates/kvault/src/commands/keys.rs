//! `kvault keys rewrap` and `kvault keys shred`: the changes to an encrypted backup's key
//! record, made on the store directly (they rewrite a manifest, never a segment).

use kvault_domain::BackupId;
use kvault_storage::Store;

use super::print_json;
use crate::cli::{KeysAction, KeysArgs};
use crate::context::Context;
use crate::exit::CliError;

pub async fn run(context: &Context, args: KeysArgs) -> Result<(), CliError> {
    let store = crate::compose::store(&context.settings)?;
    let blocking = tokio::task::spawn_blocking(move || match args.action {
        KeysAction::Rewrap(a) => rewrap(&store, &a.to, a.backup_id),
        KeysAction::Shred(a) => shred(&store, &a.backup_id, a.yes),
    });
    blocking
        .await
        .map_err(|e| CliError::internal(format!("keys: {e}")))?
}

/// Re-wraps the named backups, or every encrypted one that still has its key; one JSON line
/// per backup. Carries on past a failure and reports every failure at the end.
fn rewrap(store: &Store, to: &str, named: Vec<String>) -> Result<(), CliError> {
    let ids: Vec<BackupId> = if named.is_empty() {
        store
            .blocking_list()?
            .into_iter()
            .filter(|m| {
                m.encryption
                    .as_ref()
                    .is_some_and(|e| e.wrapped_key.is_some())
            })
            .filter_map(|m| BackupId::parse(&m.backup_id).ok())
            .collect()
    } else {
        named
            .iter()
            .map(|id| BackupId::parse(id))
            .collect::<Result<_, _>>()?
    };
    let mut failed = Vec::new();
    for id in ids {
        match store.blocking_rewrap(&id, to) {
            Ok(done) => {
                tracing::info!(
                    target: "kvault::audit",
                    backup_id = %id,
                    from = %done.from_key_id,
                    to = %done.to_key_id,
                    changed = done.changed,
                    "backup data key re-wrapped"
                );
                println!("{}", serde_json::to_string(&done).unwrap_or_default());
            }
            Err(e) => {
                eprintln!("{id}: {e}");
                failed.push(e);
            }
        }
    }
    match failed.into_iter().next() {
        Some(first) => Err(first.into()),
        None => Ok(()),
    }
}

fn shred(store: &Store, id: &str, yes: bool) -> Result<(), CliError> {
    if !yes {
        return Err(CliError::usage(
            "shredding destroys the backup's data key for good: pass --yes to confirm",
        ));
    }
    let id = BackupId::parse(id)?;
    let manifest = store.blocking_shred(&id)?;
    tracing::warn!(
        target: "kvault::audit",
        backup_id = %id,
        subject = "cli",
        "backup crypto-shredded: its data key was destroyed"
    );
    print_json(&manifest.encryption)
}
