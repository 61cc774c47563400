//! The bridge from HTTP writes to `apimachinery`: schema admission of custom resources
//! (unknown-field checks, pruning, defaulting, validation) and server-side apply, mapped to
//! the `Status` errors a real server answers with.

use super::server::Target;
use super::status::{ApiError, ApiResult, Cause};
use super::store::now_rfc3339;
use crate::apimachinery::KindKey;
use crate::apimachinery::apply::{self, ApplyError, ApplyRequest, Structure, WriteScope};
use crate::apimachinery::schema::{CompiledSchema, strict_decoding_message};
use serde_json::Value;

/// Admits a custom object in the real server's order: unknown fields (400 when strict,
/// warnings when warn), pruning, defaulting, validation (422 naming each field).
pub fn admit_with_schema(
    schema: &CompiledSchema,
    mut object: Value,
    strict: bool,
    warn: bool,
) -> ApiResult<(Value, Vec<String>)> {
    let mut warnings = Vec::new();
    if strict || warn {
        let unknown = schema.unknown_fields(&object);
        if !unknown.is_empty() {
            if strict {
                return Err(ApiError::bad_request(strict_decoding_message(&unknown)));
            }
            warnings.extend(unknown.iter().map(|f| format!("unknown field {f:?}")));
        }
    }
    schema.prune(&mut object);
    schema.apply_defaults(&mut object);
    schema.validate(&object).map_err(|invalid| {
        let causes = invalid
            .errors
            .iter()
            .map(|e| Cause {
                reason: e.reason.to_owned(),
                message: e.detail.clone(),
                field: e.field.clone(),
            })
            .collect();
        let mut err = ApiError::invalid(
            &schema.kind().kind,
            &schema.kind().group,
            &invalid.name,
            causes,
        );
        err.message = invalid.to_string();
        err
    })?;
    Ok((object, warnings))
}

fn with_structure<T>(target: &Target, run: impl FnOnce(Structure<'_>) -> T) -> T {
    let kind = KindKey::new(target.def.group.clone(), target.def.kind.clone());
    if target.def.is_custom() {
        match target
            .def
            .version(&target.version)
            .and_then(|v| v.compiled.clone())
        {
            Some(schema) => run(Structure::Schema(&schema)),
            None => run(Structure::Unknown),
        }
    } else {
        run(Structure::BuiltIn(&kind))
    }
}

fn scope(target: &Target, subresource: Option<&str>) -> WriteScope {
    let has_status = target
        .def
        .version(&target.version)
        .is_some_and(|v| v.status);
    match subresource {
        Some("status") => WriteScope::Status,
        _ if has_status => WriteScope::Main,
        _ => WriteScope::Whole,
    }
}

/// Server-side apply of `patch` by `manager` onto `current` (`None` creates).
pub fn server_side_apply(
    target: &Target,
    current: Option<&Value>,
    patch: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
) -> ApiResult<Value> {
    let api_version = target.api_version();
    let now = now_rfc3339();
    let request = ApplyRequest {
        field_manager: manager,
        force,
        api_version: &api_version,
        now: &now,
        scope: scope(target, subresource),
    };
    with_structure(target, |structure| {
        apply::server_side_apply(structure, current, patch, &request)
    })
    .map_err(|err| {
        let mut status = ApiError::new(err.status_code(), err.reason(), err.to_string());
        if let ApplyError::Conflict(conflicts) = &err {
            status.causes = conflicts
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict".into(),
                    message: c.cause_message(),
                    field: c.field.clone(),
                })
                .collect();
        }
        status
    })
}

/// Records field ownership for a non-apply write, as a real server does for every write.
pub fn record_write(
    target: &Target,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
) {
    let api_version = target.api_version();
    let now = now_rfc3339();
    let scope = scope(target, subresource);
    with_structure(target, |structure| {
        apply::record_update(structure, old, new, manager, &api_version, &now, scope)
    });
}
