//! Secrets (tokens, passwords) read from the config, an environment variable or a file.
//!
//! A [`Secret`] never appears in `Debug` output or logs: its `Debug` impl prints `"***"`.

use serde::Deserialize;

/// A secret value. `Debug` redacts it; read it with [`Secret::expose`].
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret text. Call only where it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Where a secret comes from; at most one of the three may be set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretSource {
    /// Inline value (discouraged: config files get copied around).
    pub value: Option<Secret>,
    /// Name of an environment variable holding the value.
    pub env: Option<String>,
    /// Path of a file holding the value; surrounding whitespace is trimmed.
    pub file: Option<std::path::PathBuf>,
}

impl SecretSource {
    /// Resolves the secret. `Ok(None)` when no source is configured.
    ///
    /// # Errors
    /// A message naming the field (`<prefix>_env`, `<prefix>_file`) when several sources are set,
    /// the variable is unset or empty, or the file is unreadable. The message never contains the
    /// secret itself.
    pub fn resolve(&self, prefix: &str) -> Result<Option<Secret>, (String, String)> {
        let set = [
            self.value.is_some(),
            self.env.is_some(),
            self.file.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set > 1 {
            return Err((
                prefix.to_string(),
                format!("set only one of `{prefix}`, `{prefix}_env`, `{prefix}_file`"),
            ));
        }
        if let Some(v) = &self.value {
            return Ok(Some(v.clone()));
        }
        if let Some(var) = &self.env {
            return match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(Secret(v.trim().to_string()))),
                Ok(_) => Err((
                    format!("{prefix}_env"),
                    format!("environment variable `{var}` is empty"),
                )),
                Err(_) => Err((
                    format!("{prefix}_env"),
                    format!("environment variable `{var}` is not set"),
                )),
            };
        }
        if let Some(path) = &self.file {
            return match std::fs::read_to_string(path) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(Secret(v.trim().to_string()))),
                Ok(_) => Err((
                    format!("{prefix}_file"),
                    format!("{} is empty", path.display()),
                )),
                Err(e) => Err((format!("{prefix}_file"), format!("{}: {e}", path.display()))),
            };
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"***\"");
        let src = SecretSource {
            value: Some(s),
            ..Default::default()
        };
        assert!(!format!("{src:?}").contains("hunter2"));
    }

    #[test]
    fn resolves_env_and_file_and_rejects_two_sources() {
        std::env::set_var("PATCHWATCH_TEST_SECRET_X", " abc \n");
        let src = SecretSource {
            env: Some("PATCHWATCH_TEST_SECRET_X".into()),
            ..Default::default()
        };
        assert_eq!(src.resolve("token").unwrap().unwrap().expose(), "abc");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "filetoken\n").unwrap();
        let src = SecretSource {
            file: Some(p.clone()),
            ..Default::default()
        };
        assert_eq!(src.resolve("token").unwrap().unwrap().expose(), "filetoken");
        let src = SecretSource {
            file: Some(p),
            env: Some("X".into()),
            ..Default::default()
        };
        assert!(src.resolve("token").unwrap_err().1.contains("only one"));
        let src = SecretSource {
            env: Some("PATCHWATCH_TEST_SECRET_UNSET_Y".into()),
            ..Default::default()
        };
        let (field, msg) = src.resolve("token").unwrap_err();
        assert_eq!(field, "token_env");
        assert!(msg.contains("not set"));
    }
}
