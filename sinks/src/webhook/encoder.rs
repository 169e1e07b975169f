//! A minimal `{{placeholder}}` template for chat messages.

use patchwatch_proto::Finding;

use crate::encoding::{host_name, severity_name};

/// A parsed template: literal text and placeholders, checked when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

const FIELDS: &[&str] = &[
    "id",
    "title",
    "host",
    "rule_id",
    "severity",
    "category",
    "source_path",
    "line_number",
    "run_id",
    "remediation",
    "evidence",
];

impl Template {
    /// Parses `text`.
    ///
    /// # Errors
    /// A message naming an unknown placeholder or an unclosed `{{`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| {
                format!(
                    "unclosed `{{{{` at byte {}",
                    text.len() - rest.len() + start
                )
            })?;
            let name = after[..end].trim();
            let known = FIELDS.contains(&name)
                || name.strip_prefix("labels.").is_some_and(|k| !k.is_empty())
                || name.strip_prefix("fields.").is_some_and(|k| !k.is_empty());
            if !known {
                return Err(format!(
                    "unknown placeholder `{{{{{name}}}}}`; known: {}, labels.<key>, fields.<key>",
                    FIELDS.join(", ")
                ));
            }
            parts.push(Part::Field(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Renders the template for one finding; absent values render as empty text.
    pub fn render(&self, f: &Finding) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(name) => out.push_str(&value(f, name)),
            }
        }
        out
    }
}

fn value(f: &Finding, name: &str) -> String {
    if let Some(k) = name.strip_prefix("labels.") {
        return f.labels.get(k).cloned().unwrap_or_default();
    }
    if let Some(k) = name.strip_prefix("fields.") {
        return f.fields.get(k).cloned().unwrap_or_default();
    }
    match name {
        "id" => f.id.clone(),
        "title" => f.title.clone(),
        "host" => host_name(f).to_string(),
        "rule_id" => f.rule_id.clone(),
        "severity" => severity_name(f.severity()).to_string(),
        "category" => f.category.clone(),
        "source_path" => f.source_path.clone(),
        "line_number" => f.line_number.to_string(),
        "run_id" => f.run_id.clone(),
        "remediation" => f
            .remediation
            .as_ref()
            .map(|r| r.summary.clone())
            .unwrap_or_default(),
        "evidence" => f.evidence.first().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}
