//! Bearer tokens: the table built from configuration, and checks that do not leak timing.
//!
//! Token values live only here, in memory; they are never logged, and errors name the
//! configuration field, not the value.

use std::sync::Arc;

use crate::config::{ConfigError, Scope, TokenConfig};

/// A token's value, the identity it stands for and its scopes.
type Entry = (Vec<u8>, String, Vec<Scope>);

/// Tokens, the identity each stands for and its scopes. Cheap to clone.
#[derive(Clone, Default)]
pub struct TokenTable {
    entries: Arc<Vec<Entry>>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(_, id, _)| id))
            .finish()
    }
}

impl TokenTable {
    /// Reads every configured token. `field` is the configuration path, e.g. `grpc.tokens`;
    /// a token without `scopes` gets `default_scopes`.
    ///
    /// # Errors
    /// A token source that cannot be read, or the same token given twice.
    pub fn from_config(
        field: &str,
        tokens: &[TokenConfig],
        default_scopes: &[Scope],
    ) -> Result<Self, ConfigError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            let name = format!("{field}[{i}]");
            let value = t.resolve(&name)?.expose().as_bytes().to_vec();
            if entries.iter().any(|(v, _, _)| *v == value) {
                return Err(ConfigError::invalid(
                    name,
                    "the same token is configured twice",
                ));
            }
            let scopes = t.scopes.clone().unwrap_or_else(|| default_scopes.to_vec());
            entries.push((value, t.id.clone(), scopes));
        }
        Ok(Self {
            entries: Arc::new(entries),
        })
    }

    /// True when no token is configured (authentication is off).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity of a presented token. Compares against every entry in constant time per
    /// entry, so response time does not reveal how much of a token was right.
    pub fn lookup(&self, presented: &str) -> Option<&str> {
        self.lookup_scoped(presented).map(|(id, _)| id)
    }

    /// The identity and scopes of a presented token (constant time as [`Self::lookup`]).
    pub fn lookup_scoped(&self, presented: &str) -> Option<(&str, &[Scope])> {
        let mut found = None;
        for (value, id, scopes) in self.entries.iter() {
            if constant_time_eq(value, presented.as_bytes()) {
                found = Some((id.as_str(), scopes.as_slice()));
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TokenTable {
        TokenTable::from_config(
            "grpc.tokens",
            &[
                TokenConfig::new("a", patchwatch_config::Secret::inline("alpha")),
                TokenConfig::new("b", patchwatch_config::Secret::inline("bravo")),
            ],
            &[Scope::Ingest],
        )
        .unwrap()
    }

    #[test]
    fn lookup_finds_exact_tokens_only() {
        let t = table();
        assert_eq!(t.lookup("alpha"), Some("a"));
        assert_eq!(t.lookup("bravo"), Some("b"));
        assert_eq!(t.lookup("alph"), None);
        assert_eq!(t.lookup("alphaa"), None);
        assert_eq!(t.lookup(""), None);
        assert!(!format!("{t:?}").contains("alpha"));
    }

    #[test]
    fn bearer_parses_the_scheme() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn duplicate_tokens_are_refused() {
        let dup = TokenConfig::new("x", patchwatch_config::Secret::inline("same"));
        let err = TokenTable::from_config("grpc.tokens", &[dup.clone(), dup], &[]).unwrap_err();
        assert!(err.to_string().contains("grpc.tokens[1]"), "{err}");
    }
}
