//! docs/api.md's reference section is the served OpenAPI document rendered as Markdown: every
//! route with its parameters, body and responses, every schema with every field. The test fails
//! when the two drift; `KVAULT_BLESS_DOCS=1 cargo test -p kvault-api --test api reference`
//! rewrites the section.

use serde_json::Value;
use utoipa::OpenApi;

const BEGIN: &str = "<!-- reference:begin";
const END: &str = "<!-- reference:end -->";

#[test]
fn docs_api_md_reference_matches_the_openapi_document() {
    let doc = serde_json::to_value(kvault_api::routes::openapi::ApiDoc::openapi()).unwrap();
    let rendered = render(&doc);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md");
    let text = std::fs::read_to_string(path).unwrap();
    let (start, end) = (
        text.find(BEGIN)
            .expect("docs/api.md has no reference section"),
        text.find(END)
            .expect("docs/api.md's reference section has no end"),
    );
    let current = &text[start..end + END.len()];
    if std::env::var_os("KVAULT_BLESS_DOCS").is_some() {
        std::fs::write(path, text.replace(current, &rendered)).unwrap();
        return;
    }
    assert!(
        current == rendered,
        "docs/api.md's reference is out of date: run KVAULT_BLESS_DOCS=1 cargo test -p \
         kvault-api --test api reference"
    );
}

fn render(doc: &Value) -> String {
    let mut out = format!(
        "{BEGIN} (generated from the OpenAPI document by the `reference` test in \
         kvault-api: KVAULT_BLESS_DOCS=1 cargo test -p kvault-api --test api reference) -->\n\n"
    );
    out += "### Routes\n\n";
    let empty = serde_json::Map::new();
    let paths = doc["paths"].as_object().unwrap_or(&empty);
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if let Some(op) = item.get(method) {
                route(&mut out, method, path, op);
            }
        }
    }
    out += "### Schemas\n\n";
    let schemas = doc["components"]["schemas"].as_object().unwrap_or(&empty);
    for (name, schema) in schemas {
        schema_section(&mut out, name, schema);
    }
    out + END
}

fn route(out: &mut String, method: &str, path: &str, op: &Value) {
    *out += &format!("#### `{} {path}`\n\n", method.to_uppercase());
    let summary = text(&op["summary"]);
    let description = text(&op["description"]);
    for line in [summary, description] {
        if !line.is_empty() {
            *out += &format!("{line}\n\n");
        }
    }
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        let shown: Vec<String> = params
            .iter()
            .map(|p| {
                let required = if p["required"] == true {
                    ", required"
                } else {
                    ""
                };
                let meaning = text(&p["description"]);
                let meaning = if meaning.is_empty() {
                    String::new()
                } else {
                    format!(": {meaning}")
                };
                format!(
                    "`{}` ({}, {}{required}){meaning}",
                    p["name"].as_str().unwrap_or("?"),
                    p["in"].as_str().unwrap_or("?"),
                    type_of(&p["schema"])
                )
            })
            .collect();
        *out += &format!("Parameters: {}.\n\n", shown.join("; "));
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (media, body) in content {
            *out += &format!("Body ({media}): {}.\n\n", type_of(&body["schema"]));
        }
    }
    if let Some(responses) = op["responses"].as_object() {
        let shown: Vec<String> = responses
            .iter()
            .map(|(status, r)| {
                let schema = r["content"]
                    .as_object()
                    .and_then(|c| c.values().next())
                    .map(|c| format!(" {}", type_of(&c["schema"])))
                    .unwrap_or_default();
                let meaning = text(&r["description"]);
                let meaning = if meaning.is_empty() {
                    String::new()
                } else {
                    format!(" ({meaning})")
                };
                format!("{status}{schema}{meaning}")
            })
            .collect();
        *out += &format!("Responses: {}.\n\n", shown.join("; "));
    }
}

fn schema_section(out: &mut String, name: &str, schema: &Value) {
    *out += &format!("#### {name}\n\n");
    let description = text(&schema["description"]);
    if !description.is_empty() {
        *out += &format!("{description}\n\n");
    }
    let Some(properties) = schema["properties"].as_object() else {
        *out += &format!("{}\n\n", type_of(schema));
        return;
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    *out += "| field | type | required | meaning |\n|---|---|---|---|\n";
    for (field, prop) in properties {
        *out += &format!(
            "| `{field}` | {} | {} | {} |\n",
            type_of(prop).replace('|', "\\|"),
            if required.contains(&field.as_str()) {
                "yes"
            } else {
                ""
            },
            text(&prop["description"]).replace('|', "\\|")
        );
    }
    *out += "\n";
}

/// A schema's type in a few words: `string`, `[BackupSummary]`, `"a" | "b"`, ...
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("`{name}`");
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[key].as_array() {
            let joiner = if key == "allOf" { " & " } else { " | " };
            return options.iter().map(type_of).collect::<Vec<_>>().join(joiner);
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        return values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let base = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_owned(),
    };
    let base = if base.starts_with("array") {
        base.replacen("array", &format!("[{}]", type_of(&schema["items"])), 1)
    } else if base.starts_with("object") && schema["additionalProperties"].is_object() {
        base.replacen(
            "object",
            &format!("map of {}", type_of(&schema["additionalProperties"])),
            1,
        )
    } else {
        base
    };
    match schema["format"].as_str() {
        Some(format) => format!("{base} ({format})"),
        None => base,
    }
}

/// A description on one line.
fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
