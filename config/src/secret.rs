//! [`Secret`]: a token or password given inline, in an environment variable or in a file.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// Where a secret comes from, as written in the config:
///
/// ```toml
/// token = "s3cret"                        # inline (discouraged: config files get copied)
/// token = { env = "PATCHWATCH_TOKEN" }    # an environment variable
/// token = { file = "/etc/patchwatch/t" }  # a file; surrounding whitespace is trimmed
/// ```
///
/// `Debug` and `Display` print `[redacted]` whatever the source, so a config struct holding
/// one can derive `Debug` and be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Source);

#[derive(Clone, PartialEq, Eq)]
enum Source {
    Inline(String),
    Env(String),
    File(PathBuf),
}

impl Secret {
    /// A secret given inline.
    pub fn inline(value: impl Into<String>) -> Self {
        Self(Source::Inline(value.into()))
    }

    /// A secret read from the environment variable `var`.
    pub fn from_env(var: impl Into<String>) -> Self {
        Self(Source::Env(var.into()))
    }

    /// A secret read from the file `path`.
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self(Source::File(path.into()))
    }

    /// The environment variable it is read from, if that is its source.
    pub fn env_var(&self) -> Option<&str> {
        match &self.0 {
            Source::Env(v) => Some(v),
            _ => None,
        }
    }

    /// The file it is read from, if that is its source.
    pub fn file(&self) -> Option<&Path> {
        match &self.0 {
            Source::File(p) => Some(p),
            _ => None,
        }
    }

    /// Reads the value: the inline text, the variable or the file's contents, trimmed of
    /// surrounding whitespace (a trailing newline in a token file is not part of the token).
    /// `field` is the dotted config key (`aggregator.token`) that errors name.
    ///
    /// # Errors
    /// [`SecretError`] naming `field` and the variable or file when the variable is not set,
    /// the file cannot be read, or the value is empty. The message never holds the value.
    pub fn resolve(&self, field: &str) -> Result<SecretValue, SecretError> {
        let field = field.to_owned();
        let value = match &self.0 {
            Source::Inline(v) => v.trim().to_owned(),
            Source::Env(var) => match std::env::var(var) {
                Ok(v) => v.trim().to_owned(),
                Err(_) => {
                    return Err(SecretError::EnvUnset {
                        field,
                        var: var.clone(),
                    })
                }
            },
            Source::File(path) => match std::fs::read_to_string(path) {
                Ok(v) => v.trim().to_owned(),
                Err(source) => {
                    return Err(SecretError::File {
                        field,
                        path: path.clone(),
                        source,
                    })
                }
            },
        };
        if value.is_empty() {
            return Err(SecretError::Empty {
                field,
                source_name: self.describe(),
            });
        }
        Ok(SecretValue(value))
    }

    /// Where the value comes from, for messages: never the value itself.
    fn describe(&self) -> String {
        match &self.0 {
            Source::Inline(_) => "the inline value".to_owned(),
            Source::Env(var) => format!("environment variable `{var}`"),
            Source::File(path) => format!("file {}", path.display()),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

const EXPECTED: &str = "a string, { env = \"VAR\" } or { file = \"/path\" }";

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::inline(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
        let mut found: Option<Secret> = None;
        while let Some(key) = map.next_key::<String>()? {
            let next = match key.as_str() {
                "env" => Secret::from_env(map.next_value::<String>()?),
                "file" => Secret::from_file(map.next_value::<PathBuf>()?),
                other => return Err(de::Error::unknown_field(other, &["env", "file"])),
            };
            if found.is_some() {
                return Err(de::Error::custom("give one of `env` and `file`, not both"));
            }
            found = Some(next);
        }
        found.ok_or_else(|| de::Error::custom(format!("expected {EXPECTED}, found an empty table")))
    }
}

/// A resolved secret. `Debug` and `Display` print `[redacted]`; [`SecretValue::expose`] gives
/// the text, to be called only where it goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value obtained elsewhere (tests, command-line flags).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a [`Secret`] could not be read. Every variant names the config field; none holds the
/// value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The environment variable is not set (or not Unicode).
    #[error("{field}: environment variable `{var}` is not set")]
    EnvUnset {
        /// Dotted config key.
        field: String,
        /// The variable.
        var: String,
    },
    /// The file cannot be read.
    #[error("{field}: cannot read {}: {source}", path.display())]
    File {
        /// Dotted config key.
        field: String,
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The value is empty or only whitespace.
    #[error("{field}: {source_name} is empty")]
    Empty {
        /// Dotted config key.
        field: String,
        /// The inline value, the variable or the file, described.
        source_name: String,
    },
}

impl SecretError {
    /// The dotted config key the error is about.
    pub fn field(&self) -> &str {
        match self {
            Self::EnvUnset { field, .. } | Self::File { field, .. } | Self::Empty { field, .. } => {
                field
            }
        }
    }

    /// What is wrong, without the field (for callers that name the field themselves).
    pub fn reason(&self) -> String {
        let text = self.to_string();
        let prefix = format!("{}: ", self.field());
        text.strip_prefix(&prefix).unwrap_or(&text).to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        token: Secret,
    }

    fn parse(text: &str) -> Result<Secret, String> {
        toml::from_str::<T>(text)
            .map(|t| t.token)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_inline_env_and_file_forms() {
        assert_eq!(parse("token = \"abc\"").unwrap(), Secret::inline("abc"));
        assert_eq!(
            parse("token = { env = \"PW_X\" }").unwrap(),
            Secret::from_env("PW_X")
        );
        assert_eq!(
            parse("token = { file = \"/etc/t\" }").unwrap(),
            Secret::from_file("/etc/t")
        );
        assert_eq!(
            parse("[token]\nenv = \"PW_Y\"").unwrap().env_var(),
            Some("PW_Y")
        );
    }

    #[test]
    fn rejects_other_shapes_with_the_accepted_forms() {
        let e = parse("token = { path = \"/x\" }").unwrap_err();
        assert!(
            e.contains("unknown field `path`") && e.contains("env"),
            "{e}"
        );
        let e = parse("token = { env = \"A\", file = \"/b\" }").unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = parse("token = 42").unwrap_err();
        assert!(
            e.contains("{ env = \\\"VAR\\\" }") || e.contains("env ="),
            "{e}"
        );
        let e = parse("token = {}").unwrap_err();
        assert!(e.contains("empty table"), "{e}");
    }

    #[test]
    fn resolves_each_source_trimmed() {
        assert_eq!(Secret::inline(" a ").resolve("t").unwrap().expose(), "a");
        std::env::set_var("PW_CONFIG_TEST_SECRET_SET", " from-env \n");
        let v = Secret::from_env("PW_CONFIG_TEST_SECRET_SET")
            .resolve("t")
            .unwrap();
        assert_eq!(v.expose(), "from-env");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").unwrap();
        assert_eq!(
            Secret::from_file(&path).resolve("t").unwrap().expose(),
            "from-file"
        );
    }

    #[test]
    fn errors_name_field_variable_and_file() {
        let e = Secret::from_env("PW_CONFIG_TEST_SECRET_UNSET")
            .resolve("aggregator.token")
            .unwrap_err();
        assert_eq!(e.field(), "aggregator.token");
        assert_eq!(
            e.reason(),
            "environment variable `PW_CONFIG_TEST_SECRET_UNSET` is not set"
        );
        assert_eq!(
            e.to_string(),
            "aggregator.token: environment variable `PW_CONFIG_TEST_SECRET_UNSET` is not set"
        );
        let e = Secret::from_file("/nonexistent/pw-token")
            .resolve("sinks.splunk.token")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sinks.splunk.token: cannot read /nonexistent/pw-token: "),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, " \n").unwrap();
        let e = Secret::from_file(&path)
            .resolve("x.token")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.token") && e.contains("is empty"), "{e}");
        let e = Secret::inline("")
            .resolve("x.password")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "x.password: the inline value is empty");
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let t = parse("token = \"hunter2\"").unwrap();
        assert_eq!(format!("{t:?}"), "[redacted]");
        assert_eq!(t.to_string(), "[redacted]");
        let holder = T { token: t.clone() };
        assert!(!format!("{holder:?}").contains("hunter2"));
        let v = t.resolve("token").unwrap();
        assert_eq!(format!("{v:?} {v}"), "[redacted] [redacted]");
        assert_eq!(v.expose(), "hunter2");
    }
}
