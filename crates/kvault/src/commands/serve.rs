//! `kvault serve`: the HTTP API on the configured address, until Ctrl-C or SIGTERM.

use kvault_api::startup::Application;

use crate::context::Context;
use crate::exit::CliError;

pub async fn run(context: Context) -> Result<(), CliError> {
    warn_about_secret_files(&context);
    let adapters = crate::compose::adapters(&context.settings)?;
    let application = Application::build(context.settings, adapters)
        .await
        .map_err(|e| CliError::internal(format!("cannot start the server: {e}")))?;
    tracing::info!(port = application.port(), "kvault API listening");
    application
        .run_until_stopped()
        .await
        .map_err(|e| CliError::internal(format!("server stopped with an error: {e}")))
}

/// A secret file that cannot be read now fails every operation on its cluster later
/// (`KafkaAuthenticationFailed`); the server still starts (a secret store may mount it late),
/// but says so at once. Only the property and path are logged, never a value.
fn warn_about_secret_files(context: &Context) {
    for (id, cluster) in &context.settings.clusters {
        for (property, path) in cluster.file_properties() {
            if let Err(e) = std::fs::metadata(path).and_then(|m| {
                if m.is_file() {
                    std::fs::File::open(path).map(drop)
                } else {
                    Err(std::io::Error::other("not a file"))
                }
            }) {
                tracing::warn!(
                    cluster = %id,
                    "{property}_file {path} cannot be read ({e}): operations on this cluster \
                     will fail until it can"
                );
            }
        }
    }
}
