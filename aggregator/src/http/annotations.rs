//! `/api/v1/annotations`: triage notes on findings and runs (acknowledge, assign, note),
//! stored with who and when and shown to everyone on the finding, run and findings pages.
//!
//! A note is a write like a window: the same token and cross-site rules apply. Who wrote it is
//! the `by` field, else the id of the token the request presented. Errors name the field.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::api::error;
use super::writes::{bad, new_body, refuse, store_error, Refusal};
use super::AppState;
use crate::model::{AnnotationRecord, FindingFilter, RunFilter};

/// Longest note value, in characters.
const MAX_VALUE: usize = 2000;

/// The actions a note may record.
pub(crate) const ACTIONS: [&str; 3] = ["ack", "assign", "note"];

/// The body of `POST /api/v1/annotations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAnnotation {
    /// `finding` or `run`.
    target: Option<String>,
    /// Its id.
    id: Option<String>,
    /// `ack`, `assign` or `note`.
    action: Option<String>,
    /// Assignee, note text, or a remark on an acknowledgement.
    value: Option<String>,
    /// Who; defaults to the presented token's id.
    by: Option<String>,
}

/// The query of `GET /api/v1/annotations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnnotationQuery {
    target: String,
    /// One id, or several separated by commas.
    id: String,
}

fn build(req: NewAnnotation, token_id: Option<String>) -> Result<AnnotationRecord, Refusal> {
    let target = req.target.unwrap_or_default().trim().to_ascii_lowercase();
    if target != "finding" && target != "run" {
        return Err(bad(
            "target",
            format!("{target:?} is not one of finding, run"),
        ));
    }
    let id = req.id.unwrap_or_default().trim().to_owned();
    if id.is_empty() {
        return Err(bad("id", "required"));
    }
    let action = req.action.unwrap_or_default().trim().to_ascii_lowercase();
    if !ACTIONS.contains(&action.as_str()) {
        return Err(bad(
            "action",
            format!("{action:?} is not one of ack, assign, note"),
        ));
    }
    let value = req.value.unwrap_or_default().trim().to_owned();
    if value.is_empty() && action != "ack" {
        return Err(bad(
            "value",
            if action == "assign" {
                "required: who it is assigned to"
            } else {
                "required: the note"
            },
        ));
    }
    if value.chars().count() > MAX_VALUE {
        return Err(bad("value", format!("longer than {MAX_VALUE} characters")));
    }
    let by = req
        .by
        .map(|b| b.trim().to_owned())
        .filter(|b| !b.is_empty())
        .or(token_id)
        .ok_or_else(|| bad("by", "required (or send a token: its id is used)"))?;
    if by.chars().count() > 200 {
        return Err(bad("by", "longer than 200 characters"));
    }
    Ok(AnnotationRecord {
        seq: 0,
        target,
        id,
        action,
        value,
        by,
        at: None,
    })
}

/// Whether the finding or run a note names exists.
async fn exists(st: &AppState, target: &str, id: &str) -> Result<bool, crate::store::StoreError> {
    if target == "finding" {
        return Ok(st.store.finding(id.to_owned()).await?.is_some());
    }
    let runs = st
        .store
        .runs(RunFilter {
            run: Some(id.to_owned()),
            limit: 1,
            ..RunFilter::default()
        })
        .await?;
    if !runs.is_empty() {
        return Ok(true);
    }
    // A run known only from its findings (no run update yet) can be noted too.
    let page = st
        .store
        .findings(FindingFilter {
            run: Some(id.to_owned()),
            limit: 1,
            ..FindingFilter::default()
        })
        .await?;
    Ok(!page.items.is_empty())
}

pub(crate) async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req: NewAnnotation = match new_body(&st, &body) {
        Ok(r) => r,
        Err(r) => return refuse(r),
    };
    let token_id =
        super::presented_token(&headers).and_then(|t| st.tokens.lookup(&t).map(str::to_owned));
    let note = match build(req, token_id) {
        Ok(n) => n,
        Err(r) => return refuse(r),
    };
    match exists(&st, &note.target, &note.id).await {
        Ok(true) => {}
        Ok(false) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("id: no {} with id {:?}", note.target, note.id),
            )
        }
        Err(e) => return store_error(e),
    }
    match st.store.annotate(note).await {
        Ok(stored) => {
            tracing::info!(message = "Triage note stored.", target = %stored.target, id = %stored.id, action = %stored.action, by = %stored.by);
            (StatusCode::CREATED, Json(stored)).into_response()
        }
        Err(e) => store_error(e),
    }
}

pub(crate) async fn list(
    State(st): State<AppState>,
    q: Result<Query<AnnotationQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(r) => return error(StatusCode::BAD_REQUEST, r.body_text()),
    };
    if q.target != "finding" && q.target != "run" {
        return error(
            StatusCode::BAD_REQUEST,
            format!("target: {:?} is not one of finding, run", q.target),
        );
    }
    let ids: Vec<String> =
        q.id.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .take(st.max_page_size as usize)
            .collect();
    match st.store.annotations(q.target, ids).await {
        Ok(items) => Json(serde_json::json!({ "items": items })).into_response(),
        Err(e) => store_error(e),
    }
}

/// The triage card of a finding or run page: its notes and a form to add one.
pub(crate) fn card(target: &str, id: &str, notes: &[AnnotationRecord]) -> String {
    use super::dashboard::{esc, full_time_cell};
    let mut items = String::new();
    for n in notes {
        let what = match n.action.as_str() {
            "ack" => "acknowledged".to_owned(),
            "assign" => format!("assigned to <strong>{}</strong>", esc(&n.value)),
            _ => "noted".to_owned(),
        };
        let text = if n.action == "assign" || n.value.is_empty() {
            String::new()
        } else {
            format!(r#": <span class="note-text">{}</span>"#, esc(&n.value))
        };
        items.push_str(&format!(
            r#"<li data-action="{action}"><strong>{by}</strong> {what}{text} <small class="muted">{at}</small></li>"#,
            action = esc(&n.action),
            by = esc(&n.by),
            at = full_time_cell(n.at.as_deref()),
        ));
    }
    let list = if items.is_empty() {
        r#"<p class="muted" id="no-notes">Nobody has acknowledged, assigned or noted this yet.</p>"#
            .to_owned()
    } else {
        format!(r#"<ul class="notes" id="notes">{items}</ul>"#)
    };
    format!(
        r#"<section class="card triage"><h2>Triage</h2>{list}
<form class="note" data-api="/api/v1/annotations" id="note-form">
<input type="hidden" name="target" value="{target}"><input type="hidden" name="id" value="{id}">
<div><label for="note-action">Action</label><select id="note-action" name="action"><option value="ack">Acknowledge</option><option value="assign">Assign to</option><option value="note">Note</option></select></div>
<div><label for="note-value">Assignee or note</label><input id="note-value" name="value" type="text" maxlength="{MAX_VALUE}"></div>
<div><label for="note-by">Who</label><input id="note-by" name="by" type="text" placeholder="your name"></div>
<div><button type="submit">Save</button></div>
<p class="form-error" role="alert" hidden></p>
</form></section>"#,
        target = esc(target),
        id = esc(id),
    )
}

/// The current state of a target's notes for a list: acknowledged by whom, assigned to whom.
pub(crate) fn summary(notes: &[&AnnotationRecord]) -> String {
    use super::dashboard::esc;
    let mut out = String::new();
    if let Some(a) = notes.iter().rev().find(|n| n.action == "ack") {
        out.push_str(&format!(
            r#" <span class="badge outcome-succeeded" title="acknowledged">ack · {}</span>"#,
            esc(&a.by)
        ));
    }
    if let Some(a) = notes.iter().rev().find(|n| n.action == "assign") {
        out.push_str(&format!(
            r#" <span class="badge outcome-in_progress" title="assigned">→ {}</span>"#,
            esc(&a.value)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, action: &str, value: &str, by: &str) -> NewAnnotation {
        NewAnnotation {
            target: Some(target.into()),
            id: Some("f1".into()),
            action: Some(action.into()),
            value: Some(value.into()),
            by: Some(by.into()),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let field = |r: Result<AnnotationRecord, Refusal>| {
            r.unwrap_err().1.split(':').next().unwrap().to_owned()
        };
        assert_eq!(field(build(req("host", "ack", "", "a"), None)), "target");
        assert_eq!(
            field(build(req("finding", "close", "", "a"), None)),
            "action"
        );
        assert_eq!(
            field(build(req("finding", "assign", "", "a"), None)),
            "value"
        );
        assert_eq!(field(build(req("finding", "ack", "", ""), None)), "by");
        let ok = build(req("finding", "ack", "", ""), Some("ops".into())).unwrap();
        assert_eq!((ok.by.as_str(), ok.action.as_str()), ("ops", "ack"));
    }
}
