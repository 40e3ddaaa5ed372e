//! Writes `docs/postman_collection.json` from the code's OpenAPI document (the document itself
//! is served at `/api/openapi.json`): `cargo run -p kvault-api --example export_docs`.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    std::fs::create_dir_all(&docs)?;
    let postman = serde_json::to_string_pretty(&kvault_api::routes::openapi::postman_collection())?;
    std::fs::write(docs.join("postman_collection.json"), postman + "\n")?;
    println!("wrote {}", docs.display());
    Ok(())
}
