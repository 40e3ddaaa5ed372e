//! `kvault token`: mints a JWT from the configured secret (or RS256 private key) so local users
//! and CI pipelines can call the API without an identity provider.

use crate::cli::TokenArgs;
use crate::context::Context;
use crate::exit::CliError;

pub fn run(context: &Context, args: TokenArgs) -> Result<(), CliError> {
    let role = args
        .role
        .parse()
        .map_err(|e| CliError::invalid(format!("role: {e}")))?;
    let token = kvault_api::auth::mint_token_with_data(
        &context.settings.auth,
        &args.sub,
        role,
        args.ttl,
        args.clusters,
        args.data,
    )
    .map_err(|e| CliError::invalid(format!("cannot mint a token: {e}")))?;
    println!("{token}");
    Ok(())
}
