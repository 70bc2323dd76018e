//! The API's OpenAPI 3 document, built here and served at `/v1/openapi.json`. The repository
//! keeps a copy in `runtime/openapi.json`; a test fails when the two differ (regenerate with
//! `ORCA_UPDATE_OPENAPI=1 cargo test -p orca-runtime --lib openapi`).

use axum::Json;
use serde_json::{Value, json};

pub(super) async fn serve() -> Json<Value> {
    Json(document())
}

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn ok(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

/// One Server-Sent Event of `GET /v1/executions/{id}/events`.
fn event_schema() -> Value {
    json!({
        "description": "one Server-Sent Event",
        "type": "object",
        "required": ["id", "event", "data"],
        "properties": {
            "id": { "type": "string", "description": "a number that grows with every event" },
            "event": { "type": "string", "enum": ["execution.started", "step.started",
                "step.waiting", "attempt.started", "attempt.ended", "retry.scheduled",
                "step.completed", "step.skipped", "step.failed", "step.cancelled", "step.ended",
                "compensation.started", "compensation.ended", "execution.ended"] },
            "data": { "type": "string", "description": "a JSON object" }
        }
    })
}

fn path_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
}

fn query_param(name: &str, kind: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description,
            "schema": { "type": kind } })
}

/// The one naming rule (Kubernetes' DNS-1123 subdomain) as a schema.
fn name_schema() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 253,
            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" })
}

/// Operations that need a tenant token get the tenant errors, and those that read a query or
/// a body answer 400 when it does not parse.
fn tenant_op(summary: &str, mut op: Value) -> Value {
    op["summary"] = json!(summary);
    op["security"] = json!([{ "bearer": [] }]);
    let takes_input = op.get("requestBody").is_some()
        || op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
    let responses = op["responses"].as_object_mut().expect("responses");
    responses.insert("401".into(), error("missing or unknown token"));
    if takes_input && !responses.contains_key("400") {
        responses.insert("400".into(), error("a query or body that does not parse"));
    }
    op
}

pub fn document() -> Value {
    let no_auth = json!([]);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Orca API",
            "version": "1",
            "description": "Multi-tenant API of `orca serve`: definitions, components and executions. Every /v1 request carries `Authorization: Bearer <token>`; another tenant's objects answer 404."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": {
                    "error": { "type": "string" },
                    "file": { "type": "string" }, "line": { "type": "integer" },
                    "column": { "type": "integer" }, "field": { "type": "string", "nullable": true },
                    "hint": { "type": "string", "nullable": true } } },
                "Definition": { "type": "object", "properties": {
                    "name": { "type": "string" }, "kind": { "type": "string" },
                    "version": { "type": "integer" }, "created_at_ms": { "type": "integer" },
                    "yaml": { "type": "string" } } },
                "Definitions": { "type": "object", "properties": {
                    "items": { "type": "array", "items": { "$ref": "#/components/schemas/Definition" } } } },
                "Applied": { "type": "object", "properties": {
                    "applied": { "type": "array", "items": { "$ref": "#/components/schemas/Definition" } } } },
                "Component": { "type": "object", "properties": {
                    "digest": { "type": "string", "example": "sha256:..." }, "size": { "type": "integer" },
                    "exports_step": { "type": "boolean" }, "exports_condition": { "type": "boolean" },
                    "created_at_ms": { "type": "integer" } } },
                "Components": { "type": "object", "properties": {
                    "items": { "type": "array", "items": { "$ref": "#/components/schemas/Component" } } } },
                "StartRequest": { "type": "object", "required": ["workflow"], "additionalProperties": false, "properties": {
                    "workflow": name_schema(), "input": {}, "version": { "type": "integer", "minimum": 0 },
                    "services": { "type": "object", "description": "service name (the naming rule) -> base URL",
                        "additionalProperties": { "type": "string" } } } },
                "Accepted": { "type": "object", "properties": {
                    "id": { "type": "string" }, "status": { "type": "string" } } },
                "Execution": { "type": "object", "description": "The execution as `orca run` prints it: status, steps with attempts and durations, results, output, error.",
                    "properties": { "id": { "type": "string" }, "workflow": { "type": "string" },
                        "status": { "type": "string" }, "input": {}, "output": {},
                        "error": { "type": "string", "nullable": true },
                        "steps": { "type": "array", "items": { "type": "object" } } } },
                "ExecutionList": { "type": "object", "properties": {
                    "items": { "type": "array", "items": { "type": "object", "properties": {
                        "id": { "type": "string" }, "workflow": { "type": "string" }, "status": { "type": "string" },
                        "created_at_ms": { "type": "integer" }, "updated_at_ms": { "type": "integer" } } } },
                    "next_cursor": { "type": "string", "nullable": true } } },
                "Tenant": { "type": "object", "required": ["name"], "additionalProperties": false, "properties": { "name": name_schema() } },
                "Token": { "type": "object", "properties": {
                    "tenant": { "type": "string" }, "token": { "type": "string", "description": "shown once" } } }
            }
        },
        "paths": {
            "/healthz": { "get": { "summary": "Liveness", "security": no_auth,
                "responses": { "200": { "description": "alive" } } } },
            "/readyz": { "get": { "summary": "Readiness: the stores answer", "security": no_auth,
                "responses": { "200": { "description": "ready" }, "503": error("a store is unreachable") } } },
            "/metrics": { "get": { "summary": "Prometheus metrics (text format), with the metrics or the admin token; on the `--metrics-listen` address instead when the server has one, without a token",
                "security": [{ "bearer": [] }],
                "responses": { "200": { "description": "metrics", "content": { "text/plain": {} } },
                    "401": error("no metrics or admin token"),
                    "404": error("metrics are served on the --metrics-listen address") } } },
            "/v1/openapi.json": { "get": { "summary": "This document", "security": no_auth,
                "responses": { "200": { "description": "OpenAPI 3 document" } } } },
            "/v1/tenants": { "post": { "summary": "Create a tenant (admin token)", "security": [{ "bearer": [] }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Tenant" } } } },
                "responses": { "201": ok("created", "Tenant"), "400": error("bad name"),
                    "401": error("not the admin token"), "409": error("exists") } } },
            "/v1/tenants/{tenant}/tokens": { "post": { "summary": "Issue a tenant token (admin token); shown once, stored hashed",
                "security": [{ "bearer": [] }], "parameters": [path_param("tenant")],
                "responses": { "201": ok("created", "Token"), "401": error("not the admin token"),
                    "404": error("no such tenant") } } },
            "/v1/definitions": {
                "post": tenant_op("Apply multi-document YAML: all documents or none; each is a new version of its name", json!({
                    "requestBody": { "required": true, "content": { "application/yaml": { "schema": { "type": "string" } } } },
                    "responses": { "201": ok("applied", "Applied"),
                        "400": error("a document does not load (file, line, field)"), "413": error("body too large") } })),
                "get": tenant_op("The latest version of each definition", json!({
                    "responses": { "200": ok("definitions", "Definitions") } }))
            },
            "/v1/definitions/{name}": {
                "get": tenant_op("One definition (latest, or ?version=)", json!({
                    "parameters": [path_param("name"), query_param("version", "integer", "a version number")],
                    "responses": { "200": ok("the definition", "Definition"), "404": error("unknown") } })),
                "delete": tenant_op("Delete every version; running executions keep theirs", json!({
                    "parameters": [path_param("name")],
                    "responses": { "204": { "description": "deleted" }, "404": error("unknown") } }))
            },
            "/v1/components": {
                "post": tenant_op("Upload a Wasm component (exports orca:plugin/step or condition)", json!({
                    "requestBody": { "required": true, "content": {
                        "application/wasm": { "schema": { "type": "string", "format": "binary" } },
                        "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
                    "responses": { "201": ok("stored", "Component"), "400": error("not a usable component"),
                        "413": error("too large") } })),
                "get": tenant_op("This tenant's components", json!({
                    "responses": { "200": ok("components", "Components") } }))
            },
            "/v1/components/{digest}": {
                "get": tenant_op("One component", json!({ "parameters": [path_param("digest")],
                    "responses": { "200": ok("the component", "Component"), "404": error("unknown") } })),
                "delete": tenant_op("Forget a component", json!({ "parameters": [path_param("digest")],
                    "responses": { "204": { "description": "deleted" }, "404": error("unknown") } }))
            },
            "/v1/executions": {
                "post": tenant_op("Start an execution; 202 with its id at once, or 200 with the execution if it ended within ?wait=", json!({
                    "parameters": [query_param("wait", "string", "like `5s`; at most 60s")],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/StartRequest" } } } },
                    "responses": { "200": ok("ended within the wait", "Execution"), "202": ok("started", "Accepted"),
                        "400": error("bad request or definition"), "404": error("no such workflow") } })),
                "get": tenant_op("List executions, newest first", json!({
                    "parameters": [query_param("workflow", "string", "workflow name"),
                        query_param("status", "string", "running, completed, failed, ..."),
                        query_param("limit", "integer", "page size (default 50, at most 500)"),
                        query_param("cursor", "string", "next_cursor of the previous page")],
                    "responses": { "200": ok("a page", "ExecutionList") } }))
            },
            "/v1/executions/{id}": {
                "get": tenant_op("One execution; with ?wait=, once it has ended (or as it stands when the wait is over), whichever server drives it", json!({
                    "parameters": [path_param("id"), query_param("wait", "string", "like `5s`; at most 60s")],
                    "responses": { "200": ok("the execution", "Execution"), "400": error("bad wait"), "404": error("unknown") } }))
            },
            "/v1/executions/{id}/events": {
                "get": tenant_op("The execution's events as Server-Sent Events: its history, then each change as it happens; the stream ends after `execution.ended`", json!({
                    "parameters": [path_param("id"),
                        { "name": "Last-Event-ID", "in": "header", "required": false,
                          "description": "resume after this event id (what the last event's `id:` said)",
                          "schema": { "type": "string" } }],
                    "responses": {
                        "200": { "description": "one event per state change: `id:` grows with each, `event:` is one of execution.started, step.started, step.waiting, attempt.started, attempt.ended, retry.scheduled, step.completed, step.skipped, step.failed, step.cancelled, compensation.started, compensation.ended, execution.ended; `data:` is a JSON object",
                                 "content": { "text/event-stream": { "schema": event_schema() } } },
                        "400": error("bad Last-Event-ID"), "404": error("unknown") } }))
            },
            "/v1/executions/{id}/cancel": {
                "post": tenant_op("Cancel: stop and compensate, whichever server drives it", json!({ "parameters": [path_param("id")],
                    "responses": { "202": ok("cancelling", "Accepted"), "404": error("unknown"),
                        "409": error("already final") } }))
            },
            "/v1/executions/{id}/resume": {
                "post": tenant_op("Resume a running execution nobody drives", json!({ "parameters": [path_param("id")],
                    "responses": { "202": ok("resuming", "Accepted"), "404": error("unknown"),
                        "409": error("final, or already driven") } }))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::document;

    const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");

    #[test]
    fn the_repository_copy_matches_the_served_document() {
        let generated = serde_json::to_string_pretty(&document()).unwrap() + "\n";
        if std::env::var_os("ORCA_UPDATE_OPENAPI").is_some() {
            std::fs::write(FILE, &generated).unwrap();
        }
        let kept = std::fs::read_to_string(FILE).unwrap_or_default();
        assert!(
            kept == generated,
            "runtime/openapi.json is out of date: run \
             `ORCA_UPDATE_OPENAPI=1 cargo test -p orca-runtime --lib openapi`"
        );
    }

    /// Every `.route(PATH, METHOD(...)...)` of the router is in the document, with its methods.
    #[test]
    fn every_route_of_the_router_is_documented() {
        let source = include_str!("router.rs");
        let doc = document();
        let mut checked = 0;
        for call in source.split(".route(").skip(1) {
            let path = call.split('"').nth(1).expect("a path literal");
            // The handlers of this route: up to the closing of the `.route(` call.
            let handlers = call.split("\n        )").next().unwrap_or(call);
            let entry = &doc["paths"][path];
            assert!(entry.is_object(), "{path} is not in the OpenAPI document");
            for method in ["get", "post", "delete", "put", "patch"] {
                let routed = handlers.contains(&format!("{method}("))
                    || handlers.contains(&format!(".{method}("));
                if routed {
                    assert!(
                        entry[method].is_object(),
                        "{method} {path} is routed but not documented"
                    );
                    checked += 1;
                }
            }
        }
        assert!(
            checked >= 19,
            "only {checked} operations found in router.rs"
        );
    }
}
