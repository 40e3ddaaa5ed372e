//! The flags of `kvault keys`: re-wrapping encrypted backups' data keys under another
//! key-encryption key, and crypto-shredding one backup.

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Re-wrap the data keys of encrypted backups under key `--to` (one of
    /// `encryption.keys`), rewriting only their manifests; the key that wraps each now must
    /// be configured too. Prints one line of JSON per backup; backups already under `--to`
    /// are left as they are. After it, the old key can be removed from the configuration.
    Rewrap(RewrapArgs),
    /// Crypto-shred a backup: destroy its wrapped data key, so nobody can read its data
    /// again, wherever copies of its segments survive. Cannot be undone. Prints the manifest's
    /// key record.
    Shred(ShredArgs),
}

#[derive(Debug, Args)]
pub struct RewrapArgs {
    /// The key-encryption key to wrap the data keys under.
    #[arg(long)]
    pub to: String,
    /// Only these backups (repeat for more); default: every encrypted backup.
    #[arg(long, alias = "backup_id")]
    pub backup_id: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ShredArgs {
    #[arg(long, alias = "backup_id")]
    pub backup_id: String,
    /// Confirms the shred (it cannot be undone).
    #[arg(long)]
    pub yes: bool,
}
