//! `kvault serve`: the HTTP API on the configured address, until Ctrl-C or SIGTERM.

use kvault_api::startup::Application;

use crate::context::Context;
use crate::exit::CliError;

pub async fn run(context: Context) -> Result<(), CliError> {
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
