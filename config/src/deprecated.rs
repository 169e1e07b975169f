//! Deprecated keys: old spellings rewritten to new ones before deserializing.
//!
//! One table, [`DEPRECATED_KEYS`], says for each old key what it became and how its value
//! changes (`linger_ms = 50` → `linger = "50ms"`, `token_env = "X"` → `token = { env = "X" }`).
//! [`from_toml`] applies it to the parsed document, wherever the key appears, so each config
//! struct only declares the new spelling and keeps `deny_unknown_fields`. The rewritten
//! entries keep the spans of what was written, so an error in them still points at the line
//! in the file.

use std::borrow::Cow;
use std::fmt;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// How an old key's value becomes the new key's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Same value, new name (`cert` → `cert_file`).
    Rename,
    /// An integer of milliseconds becomes a duration (`500` → `"500ms"`).
    Millis,
    /// An integer of seconds becomes a duration (`600` → `"600s"`).
    Secs,
    /// A variable name becomes a secret read from it (`"X"` → `{ env = "X" }`).
    SecretEnv,
    /// A path becomes a secret read from it (`"/p"` → `{ file = "/p" }`).
    SecretFile,
    /// Same value, moved into the sub-table named here (`ca_file` → `tls.ca_file`).
    IntoTable(&'static str),
}

/// One deprecated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The old key.
    pub old: &'static str,
    /// The key that replaces it.
    pub new: &'static str,
    /// How the value changes.
    pub rewrite: Rewrite,
    /// Only in a table whose own key is this (`Some("tls")` for `[grpc.tls]`,
    /// `[aggregator.tls]`, ...), for old keys too generic to rewrite anywhere (`key`).
    pub only_in: Option<&'static str>,
    /// Never in a table whose own key is this.
    pub not_in: Option<&'static str>,
}

const fn rule(old: &'static str, new: &'static str, rewrite: Rewrite) -> Rule {
    Rule {
        old,
        new,
        rewrite,
        only_in: None,
        not_in: None,
    }
}

const fn tls(old: &'static str, new: &'static str) -> Rule {
    Rule {
        only_in: Some("tls"),
        ..rule(old, new, Rewrite::Rename)
    }
}

/// Every deprecated key of the agent, aggregator, sink and routing configs.
pub const DEPRECATED_KEYS: &[Rule] = &[
    // Agent.
    rule("stall_threshold_secs", "stall_threshold", Rewrite::Secs),
    rule("poll_interval_ms", "poll_interval", Rewrite::Millis),
    rule("rescan_interval_ms", "rescan_interval", Rewrite::Millis),
    rule("idle_close_secs", "idle_close", Rewrite::Secs),
    rule("connect_timeout_secs", "connect_timeout", Rewrite::Secs),
    rule("backoff_initial_ms", "initial_backoff", Rewrite::Millis),
    rule("backoff_max_ms", "max_backoff", Rewrite::Millis),
    rule("linger_ms", "linger", Rewrite::Millis),
    // Sinks (`[retry]` also in routing receivers) and the aggregator's `[forwarding]`. A rule
    // rewrites its key wherever it appears, so every struct using a key takes the new one.
    rule("ack_poll_interval_ms", "ack_poll_interval", Rewrite::Millis),
    rule("ack_timeout_ms", "ack_timeout", Rewrite::Millis),
    rule("initial_backoff_ms", "initial_backoff", Rewrite::Millis),
    rule("max_backoff_ms", "max_backoff", Rewrite::Millis),
    rule("request_timeout_ms", "request_timeout", Rewrite::Millis),
    Rule {
        only_in: Some("batch"),
        ..rule("timeout_ms", "timeout", Rewrite::Millis)
    },
    rule(
        "cursor_write_interval_ms",
        "cursor_write_interval",
        Rewrite::Millis,
    ),
    // Aggregator.
    rule("shutdown_grace_seconds", "shutdown_grace", Rewrite::Secs),
    // Secrets.
    rule("token_env", "token", Rewrite::SecretEnv),
    rule("token_file", "token", Rewrite::SecretFile),
    rule("password_env", "password", Rewrite::SecretEnv),
    rule("password_file", "password", Rewrite::SecretFile),
    rule("api_key_env", "api_key", Rewrite::SecretEnv),
    rule("api_key_file", "api_key", Rewrite::SecretFile),
    Rule {
        only_in: Some("postgres"),
        ..rule("url_env", "url", Rewrite::SecretEnv)
    },
    // TLS: one client shape, one server shape.
    tls("cert", "cert_file"),
    tls("key", "key_file"),
    tls("client_ca", "client_ca_file"),
    tls("domain_name", "server_name"),
    Rule {
        not_in: Some("tls"),
        ..rule("ca_file", "ca_file", Rewrite::IntoTable("tls"))
    },
];

/// Tables whose keys are the user's own (HTTP headers, labels): never rewritten.
const FREE_FORM: &[&str] = &["headers", "labels", "fields"];

/// One deprecated key that was found and rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    /// Dotted path of the old key as written, e.g. `aggregator.token_file`.
    pub old_path: String,
    /// Dotted path of the key that replaces it, e.g. `aggregator.token`.
    pub new_path: String,
    /// The new key with its value, as it should be written, e.g. `token = { file = "/t" }`.
    pub replacement: String,
    /// 1-based line of the old key.
    pub line: usize,
}

impl fmt::Display for Deprecation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is deprecated; use `{}`",
            self.old_path, self.replacement
        )
    }
}

/// A parsed config and the deprecated keys it used.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    /// The config.
    pub value: T,
    /// Deprecated keys found (each already logged as a warning), in the order rewritten.
    pub deprecations: Vec<Deprecation>,
}

/// A config text that cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// TOML syntax, unknown key, wrong type or bad value; the message shows line and key.
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    /// A deprecated key and its replacement are both set, or a deprecated value is unusable.
    #[error("line {line}: `{key}`: {message}")]
    Key {
        /// 1-based line.
        line: usize,
        /// Dotted path of the key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses `text` into `T` after rewriting deprecated keys ([`DEPRECATED_KEYS`]) and expanding
/// `${VAR}` and `${VAR:-default}` in every string value (`$${` is a literal `${`); logs one
/// `warn` per deprecated key naming its replacement.
///
/// # Errors
/// [`ParseError::Toml`] for a syntax error, unknown key or bad value (with line and column),
/// [`ParseError::Key`] when an old key and its replacement are both given, or a string names
/// an unset variable without a default.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<Loaded<T>, ParseError> {
    let mut root = DeTable::parse(text)?;
    let mut deprecations = Vec::new();
    let mut cx = Walk {
        text,
        out: &mut deprecations,
    };
    cx.table(root.get_mut(), "", None, false)?;
    for d in &deprecations {
        tracing::warn!(message = %d, key = %d.old_path, replacement = %d.new_path, line = d.line);
    }
    let value = T::deserialize(toml::de::Deserializer::from(root)).map_err(|mut e| {
        e.set_input(Some(text));
        ParseError::Toml(e)
    })?;
    Ok(Loaded {
        value,
        deprecations,
    })
}

struct Walk<'a> {
    text: &'a str,
    out: &'a mut Vec<Deprecation>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Walk<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// Rewrites deprecated keys (unless `free_form`: the user's own keys), then expands
    /// `${VAR}` in every string value below.
    fn table<'i>(
        &mut self,
        table: &mut DeTable<'i>,
        path: &str,
        own_key: Option<&str>,
        free_form: bool,
    ) -> Result<(), ParseError> {
        if !free_form {
            for rule in DEPRECATED_KEYS {
                if rule.only_in.is_some_and(|k| own_key != Some(k))
                    || rule.not_in.is_some_and(|k| own_key == Some(k))
                {
                    continue;
                }
                if let Some((key, value)) = table.remove_entry(rule.old) {
                    self.rewrite(table, rule, key, value, path)?;
                }
            }
        }
        for (key, value) in table.iter_mut() {
            let key: &str = key.get_ref();
            let free = free_form || FREE_FORM.contains(&key);
            self.value(value, &join(path, key), key, free)?;
        }
        Ok(())
    }

    fn value<'i>(
        &mut self,
        value: &mut Spanned<DeValue<'i>>,
        path: &str,
        own_key: &str,
        free_form: bool,
    ) -> Result<(), ParseError> {
        // The line is counted from the start of the text, so only for an error: counted for
        // every value it made loading 10,000 collector tokens take 23 s.
        let start = value.span().start;
        match value.get_mut() {
            DeValue::String(s) if s.contains('$') => {
                let expanded =
                    crate::expand::expand(s, |var| std::env::var(var).ok()).map_err(|message| {
                        ParseError::Key {
                            line: self.line(start),
                            key: path.to_owned(),
                            message,
                        }
                    })?;
                *s = Cow::Owned(expanded);
            }
            DeValue::Table(t) => self.table(t, path, Some(own_key), free_form)?,
            DeValue::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.value(item, &format!("{path}[{i}]"), own_key, free_form)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn rewrite<'i>(
        &mut self,
        table: &mut DeTable<'i>,
        rule: &Rule,
        key: Spanned<Cow<'i, str>>,
        value: Spanned<DeValue<'i>>,
        path: &str,
    ) -> Result<(), ParseError> {
        let line = self.line(key.span().start);
        let old_path = join(path, rule.old);
        let bad = |message: String| ParseError::Key {
            line,
            key: old_path.clone(),
            message,
        };
        let span = value.span();
        let (new_value, shown) = match rule.rewrite {
            Rewrite::Rename | Rewrite::IntoTable(_) => {
                let shown = show(value.get_ref());
                (value.into_inner(), shown)
            }
            Rewrite::Millis | Rewrite::Secs => {
                let n = match value.get_ref() {
                    DeValue::Integer(i) => {
                        u64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
                    }
                    _ => None,
                }
                .ok_or_else(|| bad("expected a whole number (not negative)".into()))?;
                let unit = if rule.rewrite == Rewrite::Millis {
                    "ms"
                } else {
                    "s"
                };
                let text = format!("{n}{unit}");
                let shown = format!("{text:?}");
                (DeValue::String(Cow::Owned(text)), shown)
            }
            Rewrite::SecretEnv | Rewrite::SecretFile => {
                let DeValue::String(s) = value.get_ref() else {
                    return Err(bad("expected a string".into()));
                };
                let inner = if rule.rewrite == Rewrite::SecretEnv {
                    "env"
                } else {
                    "file"
                };
                let shown = format!("{{ {inner} = {s:?} }}");
                let mut t = DeTable::new();
                t.insert(
                    Spanned::new(key.span(), Cow::Borrowed(inner)),
                    Spanned::new(span.clone(), DeValue::String(s.clone())),
                );
                (DeValue::Table(t), shown)
            }
        };
        let (target, new_path, replacement) = match rule.rewrite {
            Rewrite::IntoTable(sub) => {
                let entry = table
                    .entry(Spanned::new(key.span(), Cow::Borrowed(sub)))
                    .or_insert_with(|| Spanned::new(key.span(), DeValue::Table(DeTable::new())));
                let DeValue::Table(t) = entry.get_mut() else {
                    return Err(bad(format!("`{sub}` is not a table")));
                };
                let new_path = join(&join(path, sub), rule.new);
                let replacement = format!("{new_path} = {shown}");
                (t, new_path, replacement)
            }
            _ => {
                let new_path = join(path, rule.new);
                let replacement = format!("{new_path} = {shown}");
                (table, new_path, replacement)
            }
        };
        if target.contains_key(rule.new) {
            return Err(bad(format!(
                "`{new_path}` is set too; keep only `{new_path}`"
            )));
        }
        target.insert(
            Spanned::new(key.span(), Cow::Borrowed(rule.new)),
            Spanned::new(span, new_value),
        );
        self.out.push(Deprecation {
            old_path,
            new_path,
            replacement,
            line,
        });
        Ok(())
    }
}

/// A value as it would be written in TOML, for the suggestion in a warning.
fn show(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("{s:?}"),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(_) => "[...]".into(),
        DeValue::Table(_) => "{ ... }".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::{ClientTls, Duration, Secret, ServerTls};

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Agent {
        stall_threshold: Duration,
        aggregator: Aggregator,
        #[serde(default)]
        sinks: BTreeMap<String, Sink>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Aggregator {
        token: Option<Secret>,
        initial_backoff: Duration,
        tls: Option<ClientTls>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sink {
        #[serde(default)]
        headers: BTreeMap<String, String>,
        password: Option<Secret>,
        tls: Option<ClientTls>,
        #[serde(default)]
        key: Option<String>,
    }

    const OLD: &str = r#"stall_threshold_secs = 600
[aggregator]
token_file = "/etc/patchwatch/token"
backoff_initial_ms = 500
[aggregator.tls]
domain_name = "agg.example"
[sinks.es]
password_env = "PW_ES"
ca_file = "/etc/ca.pem"
key = "not a tls key"
headers = { token_env = "kept as a header", cert = "x" }
"#;

    const NEW: &str = r#"stall_threshold = "600s"
[aggregator]
token = { file = "/etc/patchwatch/token" }
initial_backoff = "500ms"
[aggregator.tls]
server_name = "agg.example"
[sinks.es]
password = { env = "PW_ES" }
tls = { ca_file = "/etc/ca.pem" }
key = "not a tls key"
headers = { token_env = "kept as a header", cert = "x" }
"#;

    #[test]
    fn old_keys_give_the_same_config_and_one_deprecation_each() {
        let old = from_toml::<Agent>(OLD).unwrap();
        let new = from_toml::<Agent>(NEW).unwrap();
        assert_eq!(old.value, new.value);
        assert!(new.deprecations.is_empty());
        let said: Vec<String> = old.deprecations.iter().map(ToString::to_string).collect();
        assert_eq!(
            said,
            [
                "`stall_threshold_secs` is deprecated; use `stall_threshold = \"600s\"`",
                "`aggregator.backoff_initial_ms` is deprecated; use `aggregator.initial_backoff = \"500ms\"`",
                "`aggregator.token_file` is deprecated; use `aggregator.token = { file = \"/etc/patchwatch/token\" }`",
                "`aggregator.tls.domain_name` is deprecated; use `aggregator.tls.server_name = \"agg.example\"`",
                "`sinks.es.password_env` is deprecated; use `sinks.es.password = { env = \"PW_ES\" }`",
                "`sinks.es.ca_file` is deprecated; use `sinks.es.tls.ca_file = \"/etc/ca.pem\"`",
            ]
        );
        let lines: Vec<usize> = old.deprecations.iter().map(|d| d.line).collect();
        assert_eq!(lines, [1, 4, 3, 6, 8, 9]);
        // Headers are the user's own keys, and `key` is only renamed inside a TLS table.
        let es = &old.value.sinks["es"];
        assert_eq!(es.headers["token_env"], "kept as a header");
        assert_eq!(es.key.as_deref(), Some("not a tls key"));
    }

    #[test]
    fn server_tls_keys_and_postgres_url_env() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Root {
            grpc: Grpc,
            postgres: Pg,
        }
        #[derive(Debug, Deserialize)]
        struct Grpc {
            tls: ServerTls,
            shutdown_grace: Duration,
        }
        #[derive(Debug, Deserialize)]
        struct Pg {
            url: Secret,
        }
        let loaded = from_toml::<Root>(
            "[grpc]\nshutdown_grace_seconds = 10\n[grpc.tls]\ncert = \"/c\"\nkey = \"/k\"\n\
             client_ca = \"/ca\"\n[postgres]\nurl_env = \"PW_PG\"\n",
        )
        .unwrap();
        let v = loaded.value;
        assert_eq!(v.grpc.tls.cert_file.to_str(), Some("/c"));
        assert_eq!(v.grpc.tls.key_file.to_str(), Some("/k"));
        assert_eq!(v.grpc.tls.client_ca_file.unwrap().to_str(), Some("/ca"));
        assert_eq!(v.grpc.shutdown_grace, Duration::from_secs(10));
        assert_eq!(v.postgres.url.env_var(), Some("PW_PG"));
        assert_eq!(loaded.deprecations.len(), 5);
    }

    #[test]
    fn old_and_new_key_together_is_an_error_naming_both() {
        let e = from_toml::<Agent>(
            "stall_threshold = \"1s\"\n\nstall_threshold_secs = 2\n[aggregator]\ninitial_backoff = \"1s\"\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "line 3: `stall_threshold_secs`: `stall_threshold` is set too; keep only `stall_threshold`"
        );
        let e = from_toml::<Aggregator>(
            "token_env = \"A\"\ntoken_file = \"/b\"\ninitial_backoff = \"1s\"",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`token_file`") && e.contains("`token` is set too"),
            "{e}"
        );
    }

    #[test]
    fn bad_old_values_and_errors_after_rewriting_point_at_the_line() {
        let e = from_toml::<Aggregator>("backoff_initial_ms = \"fast\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "line 1: `backoff_initial_ms`: expected a whole number (not negative)"
        );
        // An unknown key next to rewritten ones is still reported with its line.
        let e = from_toml::<Aggregator>("backoff_initial_ms = 500\n\ntokn = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("unknown field `tokn`"),
            "{e}"
        );
        let e = from_toml::<Agent>(
            "stall_threshold = \"10 fortnights\"\n[aggregator]\ninitial_backoff = \"1s\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 1") && e.contains("invalid duration"),
            "{e}"
        );
    }

    #[test]
    fn each_deprecation_names_its_replacement() {
        // That each one is also logged is checked against the binary's stderr
        // (patchwatch's check tests): a log capture here would race with the parallel tests
        // over tracing's per-callsite interest cache.
        let loaded = from_toml::<Agent>(OLD).unwrap();
        assert_eq!(loaded.deprecations.len(), 6);
        assert_eq!(
            loaded.deprecations[0].to_string(),
            "`stall_threshold_secs` is deprecated; use `stall_threshold = \"600s\"`"
        );
    }

    #[test]
    fn variables_are_expanded_in_every_string_value() {
        std::env::set_var("PW_CONFIG_TEST_EXPAND_HOST", "agg.example");
        let loaded = from_toml::<Agent>(
            "stall_threshold = \"${PW_CONFIG_TEST_EXPAND_UNSET:-10m}\"\n[aggregator]\n\
             token_file = \"/etc/${PW_CONFIG_TEST_EXPAND_HOST}/token\"\n\
             initial_backoff = \"500ms\"\n[aggregator.tls]\nserver_name = \"${PW_CONFIG_TEST_EXPAND_HOST}\"\n\
             [sinks.es]\nheaders = { host = \"${PW_CONFIG_TEST_EXPAND_HOST}\" }\n",
        )
        .unwrap();
        let v = loaded.value;
        assert_eq!(v.stall_threshold, Duration::from_secs(600));
        assert_eq!(
            v.aggregator.token,
            Some(Secret::from_file("/etc/agg.example/token"))
        );
        let tls = v.aggregator.tls.unwrap();
        assert_eq!(tls.server_name.as_deref(), Some("agg.example"));
        assert_eq!(v.sinks["es"].headers["host"], "agg.example");
        // The warning shows what was written, not the expanded value.
        assert_eq!(
            loaded.deprecations[0].replacement,
            "aggregator.token = { file = \"/etc/${PW_CONFIG_TEST_EXPAND_HOST}/token\" }"
        );

        let e = from_toml::<Agent>(
            "stall_threshold = \"1s\"\n[aggregator]\ninitial_backoff = \"1s\"\n\
             [aggregator.tls]\nserver_name = \"${PW_CONFIG_TEST_EXPAND_UNSET}\"\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "line 5: `aggregator.tls.server_name`: environment variable \
             `PW_CONFIG_TEST_EXPAND_UNSET` is not set (write \
             `${PW_CONFIG_TEST_EXPAND_UNSET:-default}` for a default)"
        );
    }

    #[test]
    fn every_rule_names_a_different_key_or_place() {
        for (i, a) in DEPRECATED_KEYS.iter().enumerate() {
            for b in &DEPRECATED_KEYS[i + 1..] {
                assert!(
                    a.old != b.old || a.only_in != b.only_in,
                    "{} is listed twice",
                    a.old
                );
            }
        }
    }
}
