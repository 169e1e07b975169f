//! `${VAR}` and `${VAR:-default}` in string values, expanded by [`crate::from_toml`].
//!
//! Only string values are expanded, never keys. A variable that is set but empty counts as
//! unset when a default is given (as in the shell). `$${` writes a literal `${`; any other `$`
//! is kept as it is.

/// Expands `text`, reading variables through `lookup`.
///
/// # Errors
/// A message naming the variable when it is unset and has no default, or when `${` is not
/// closed or holds no valid name.
pub(crate) fn expand(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(inner_start) = rest.strip_prefix("${") else {
            out.push('$');
            rest = &rest[1..];
            continue;
        };
        let Some(end) = inner_start.find('}') else {
            return Err(format!(
                "`${{` is not closed by `}}` in {text:?} (write `$${{` for a literal `${{`)"
            ));
        };
        let inner = &inner_start[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{inner}}}` does not name an environment variable \
                 (letters, digits and `_`; `${{VAR:-default}}` for a default)"
            ));
        }
        match (lookup(name), default) {
            (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable `{name}` is not set (write `${{{name}:-default}}` \
                     for a default)"
                ))
            }
        }
        rest = &inner_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        match var {
            "HOST" => Some("db.example".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn set_unset_with_default_and_literals() {
        assert_eq!(
            expand("pg://${HOST}:5432", env).unwrap(),
            "pg://db.example:5432"
        );
        assert_eq!(expand("${PORT:-5432}", env).unwrap(), "5432");
        assert_eq!(
            expand("${HOST:-x}/${EMPTY:-y}", env).unwrap(),
            "db.example/y"
        );
        assert_eq!(expand("${EMPTY}", env).unwrap(), "");
        assert_eq!(expand("${PORT:-}", env).unwrap(), "");
        assert_eq!(
            expand("cost $5 $${HOST} $", env).unwrap(),
            "cost $5 ${HOST} $"
        );
        assert_eq!(expand("no variables", env).unwrap(), "no variables");
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(
            expand("${PORT}", env).unwrap_err(),
            "environment variable `PORT` is not set (write `${PORT:-default}` for a default)"
        );
        assert!(expand("${HOST", env).unwrap_err().contains("not closed"));
        assert!(expand("${a b}", env).unwrap_err().contains("`${a b}`"));
        assert!(expand("${}", env).unwrap_err().contains("does not name"));
    }
}
