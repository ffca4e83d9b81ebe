//! `GET /openapi.json`: an OpenAPI 3.1 document of a service's calls, one
//! path per endpoint (`POST /Type.Method`, which the server serves as it
//! serves `POST /` with `Micro-Endpoint`), with the JSON Schemas its types
//! derive. Streams are WebSocket upgrades, which OpenAPI cannot describe:
//! they are listed under `x-micro-streams`.

use serde_json::{Map, Value, json};

use crate::registry::Endpoint;

/// Where the schemas' own `$defs` go in the document.
const COMPONENTS: &str = "#/components/schemas/";

/// The error JSON every endpoint may answer with (docs/wire.md).
fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "micro's error JSON",
        "properties": {
            "id": { "type": "string", "description": "the service that answered" },
            "code": { "type": "integer", "description": "the HTTP status code" },
            "detail": { "type": "string", "description": "what went wrong" },
            "status": { "type": "string", "description": "the status's reason phrase" }
        },
        "required": ["code", "detail"]
    })
}

/// `schema` with its `$defs` moved into `components` and its references
/// rewritten to point there.
fn hoist(mut schema: Value, components: &mut Map<String, Value>) -> Value {
    if let Some(Value::Object(defs)) = schema.as_object_mut().and_then(|o| o.remove("$defs")) {
        for (name, def) in defs {
            let def = hoist(def, components);
            components.insert(name, def);
        }
    }
    if let Some(o) = schema.as_object_mut() {
        o.remove("$schema");
    }
    rewrite(&mut schema);
    schema
}

fn rewrite(value: &mut Value) {
    match value {
        Value::Object(o) => {
            for (k, v) in o.iter_mut() {
                if k == "$ref"
                    && let Some(r) = v.as_str().and_then(|r| r.strip_prefix("#/$defs/"))
                {
                    *v = Value::String(format!("{COMPONENTS}{r}"));
                } else {
                    rewrite(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite),
        _ => {}
    }
}

/// The document of the service `name` at `version` serving `endpoints`.
pub(crate) fn document(name: &str, version: &str, endpoints: &[Endpoint]) -> Value {
    let mut components = Map::new();
    components.insert("Error".into(), error_schema());
    let mut paths = Map::new();
    let mut streams = Vec::new();
    let body = |schema: Option<&Value>, components: &mut Map<String, Value>| {
        let schema = schema.map_or_else(|| json!({}), |s| hoist(s.clone(), components));
        json!({ "application/json": { "schema": schema } })
    };
    for e in endpoints {
        if e.metadata.contains_key("stream") {
            streams.push(json!({
                "endpoint": e.name,
                "kind": e.metadata.get("stream.kind"),
                "request": e.request,
                "response": e.response,
            }));
            continue;
        }
        let request = body(e.request_schema.as_ref(), &mut components);
        let response = body(e.response_schema.as_ref(), &mut components);
        let mut operation = json!({
            "operationId": e.name,
            "summary": format!("{} ({} → {})", e.name, e.request, e.response),
            "requestBody": { "required": true, "content": request },
            "responses": {
                "200": { "description": e.response, "content": response },
                "default": {
                    "description": "an error",
                    "content": { "application/json": { "schema": { "$ref": format!("{COMPONENTS}Error") } } }
                }
            }
        });
        if let Some(description) = e.metadata.get("description") {
            operation["description"] = json!(description);
        }
        if e.metadata.get("auth").map(String::as_str) != Some("public")
            && let Some(scopes) = e.metadata.get("scopes")
        {
            operation["x-micro-scopes"] = json!(scopes.split(',').collect::<Vec<_>>());
        }
        paths.insert(format!("/{}", e.name), json!({ "post": operation }));
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": { "title": name, "version": version },
        "paths": paths,
        "components": { "schemas": components },
    });
    if !streams.is_empty() {
        doc["x-micro-streams"] = Value::Array(streams);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defs_move_to_components_and_references_follow() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": { "a": { "$ref": "#/$defs/A" } },
            "$defs": { "A": { "type": "object", "properties": { "b": { "$ref": "#/$defs/B" } } }, "B": { "type": "string" } }
        });
        let e = Endpoint::new("S.M", "Req", "Rsp").with_schemas(Some(schema), None);
        let streamed = Endpoint::new("S.Talk", "M", "M")
            .with_metadata("stream", "true")
            .with_metadata("stream.kind", "bidirectional");
        let doc = document("s", "latest", &[e, streamed]);
        let op = &doc["paths"]["/S.M"]["post"];
        let request = &op["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(request["properties"]["a"]["$ref"], "#/components/schemas/A");
        assert!(request.get("$defs").is_none() && request.get("$schema").is_none());
        let a = &doc["components"]["schemas"]["A"];
        assert_eq!(a["properties"]["b"]["$ref"], "#/components/schemas/B");
        assert_eq!(doc["components"]["schemas"]["B"]["type"], "string");
        assert!(doc["paths"].get("/S.Talk").is_none());
        assert_eq!(doc["x-micro-streams"][0]["endpoint"], "S.Talk");
    }
}
