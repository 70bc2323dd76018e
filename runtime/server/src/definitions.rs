//! Definitions: apply multi-document YAML (all or nothing, each document a new version of its
//! name), list, get and delete.

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use super::{App, names, now_ms, quotas};
use orca_core::definition::{DefinitionSet, Document, LoadError, Source, split_documents};
use orca_core::plan;
use orca_store::tenants::{NewDefinition, StoredDefinition};

/// The name an applied body carries in error messages.
const BODY: &str = "request";

/// The source name of a stored document, as it appears in messages and execution records.
pub(super) fn source_of(d: &StoredDefinition) -> Source {
    Source {
        name: format!("{}@v{}", d.name, d.version),
        text: d.yaml.clone(),
    }
}

pub(super) async fn apply(
    Tenant(tenant): Tenant,
    State(app): State<App>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Json_>)> {
    let body = body?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8 YAML".into()))?;
    let new = DefinitionSet::load(vec![Source {
        name: BODY.into(),
        text: text.clone(),
    }])?;
    if new.documents.is_empty() {
        return Err(ApiError::BadRequest("the body holds no documents".into()));
    }
    let mut names = BTreeSet::new();
    for doc in &new.documents {
        if !names.insert(doc.name.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "two documents are named `{}`: on the server a name identifies one definition of \
                 any kind",
                doc.name
            )));
        }
        check_document(&app, &tenant, doc).await?;
    }
    // Validate the tenant's definitions as they will be: what is stored, with this body's
    // documents replacing those of the same names.
    let mut sources: Vec<Source> = app
        .tenants
        .definitions(&tenant)
        .await?
        .iter()
        .filter(|d| !names.contains(d.name.as_str()))
        .map(source_of)
        .collect();
    sources.push(Source {
        name: BODY.into(),
        text: text.clone(),
    });
    for plan in plan::validate(&DefinitionSet::load(sources)?)? {
        quotas::check(&app.config, &plan)?;
    }

    let pieces = split_documents(&text);
    if pieces.len() != new.documents.len() {
        return Err(ApiError::internal("document split and parse disagree"));
    }
    let documents = new
        .documents
        .iter()
        .zip(pieces)
        .map(|(doc, (_, yaml))| NewDefinition {
            name: doc.name.clone(),
            kind: doc.kind.as_str().to_string(),
            yaml: yaml.to_string(),
        })
        .collect();
    let stored = app.tenants.apply(&tenant, documents, now_ms()).await?;
    let applied: Vec<Json_> = stored.iter().map(summary).collect();
    Ok((StatusCode::CREATED, Json(json!({ "applied": applied }))))
}

/// Server-only rules: no file paths, no process settings, only this tenant's components.
async fn check_document(
    app: &App,
    tenant: &str,
    doc: &orca_core::definition::LoadedDocument,
) -> ApiResult<()> {
    let pos = &doc.position;
    match &doc.document {
        Document::StateStore(_) => Err(ApiError::Definition(Box::new(LoadError {
            file: pos.file.clone(),
            line: pos.line_offset + 1,
            column: 1,
            field: Some("kind".into()),
            message: "a StateStore configures a process, not a tenant".into(),
            hint: Some("the server's store is chosen with `orca serve --store`".into()),
        }))),
        Document::Component(m) => {
            if let Some(source) = &m.spec.source {
                return Err(pos
                    .error_at(
                        source,
                        "spec.source",
                        "the server cannot read files".to_string(),
                    )
                    .with_hint(
                        "upload the component (POST /v1/components or `orca components push`) \
                         and name it with `digest: sha256:...`",
                    )
                    .into());
            }
            if let Some(digest) = &m.spec.digest
                && app
                    .tenants
                    .component(tenant, &digest.value)
                    .await?
                    .is_none()
            {
                return Err(pos
                    .error_at(
                        digest,
                        "spec.digest",
                        format!("no component `{}` was uploaded", digest.value),
                    )
                    .with_hint("upload it first with POST /v1/components")
                    .into());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn summary(d: &StoredDefinition) -> Json_ {
    json!({
        "name": d.name,
        "kind": d.kind,
        "version": d.version,
        "created_at_ms": d.created_at_ms,
    })
}

pub(super) async fn list(Tenant(tenant): Tenant, State(app): State<App>) -> ApiResult<Json<Json_>> {
    let items: Vec<Json_> = app
        .tenants
        .definitions(&tenant)
        .await?
        .iter()
        .map(summary)
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VersionQuery {
    version: Option<u32>,
}

pub(super) async fn get(
    Tenant(tenant): Tenant,
    State(app): State<App>,
    Path(name): Path<String>,
    query: Result<Query<VersionQuery>, QueryRejection>,
) -> ApiResult<Json<Json_>> {
    let Query(query) = query?;
    let name = names::in_path("definition", &name)?;
    let found = app
        .tenants
        .definition(&tenant, name, query.version)
        .await?
        .ok_or_else(|| not_found(name, query.version))?;
    let mut body = summary(&found);
    body["yaml"] = json!(found.yaml);
    Ok(Json(body))
}

pub(super) async fn delete(
    Tenant(tenant): Tenant,
    State(app): State<App>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let name = names::in_path("definition", &name)?;
    if app.tenants.delete_definition(&tenant, name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(name, None))
    }
}

fn not_found(name: &str, version: Option<u32>) -> ApiError {
    match version {
        Some(v) => ApiError::NotFound(format!("no definition `{name}` version {v}")),
        None => ApiError::NotFound(format!("no definition `{name}`")),
    }
}
