//! Which collector may write which host.
//!
//! A collector token with a `hosts` list owns the hosts its globs match, and only those. A
//! token without one owns the hosts it reported first: the binding is the host row's
//! `collector_id`, loaded at start and claimed in memory on first sight, until an admin
//! releases it (`DELETE /api/v1/hosts/{host}/binding`). A host matched by some token's globs
//! cannot be claimed by another collector.
//!
//! Ownership applies to authenticated callers (a token or a client certificate); without
//! authentication the collector id is only a claim and nothing is bound.
//!
//! Several aggregators on one PostgreSQL database each keep their own claims in memory: two
//! collectors reporting a brand-new host to two aggregators in the same instant can both be
//! accepted once; the host row then names the last writer, which owns it after a restart.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use globset::GlobMatcher;

use crate::config::{ConfigError, TokenConfig};
use crate::store::{Store, StoreError};

/// Host ownership for the ingest service and the admin API. Cheap to clone.
#[derive(Clone, Default)]
pub struct HostOwnership {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Collector id → its configured host globs (only tokens that have some). Looked up for
    /// every item of every batch: a list searched by id cost 10,000 string comparisons per
    /// item with 10,000 tokens.
    configured: HashMap<String, Vec<GlobMatcher>>,
    /// The same in configuration order: the first token whose globs match a host claims it.
    claims: Vec<(String, Vec<GlobMatcher>)>,
    /// Host → the collector whose globs claim it (`None`: no token's), each host matched
    /// against every token's globs once; the configuration does not change while running.
    claimed: Mutex<HashMap<String, Option<String>>>,
    /// Host → the collector bound to it.
    bound: Mutex<HashMap<String, String>>,
    /// (collector, host) pairs already logged as refused.
    warned: Mutex<HashSet<(String, String)>>,
}

impl std::fmt::Debug for HostOwnership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostOwnership").finish_non_exhaustive()
    }
}

impl HostOwnership {
    /// Ownership from the collector tokens' `hosts` lists (compiled; validated with the
    /// config) and the bindings stored in `store`.
    ///
    /// # Errors
    /// A glob that does not compile, or a store that cannot be read.
    pub async fn load(tokens: &[TokenConfig], store: &dyn Store) -> Result<Self, LoadError> {
        let mut claims = Vec::new();
        for (i, t) in tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.hosts.is_empty())
        {
            let globs = t
                .hosts
                .iter()
                .map(|p| {
                    crate::routing::host_glob(p).map_err(|e| {
                        ConfigError::invalid(
                            format!("grpc.tokens[{i}].hosts"),
                            format!("`{p}`: {}", e.kind()),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            claims.push((t.id.clone(), globs));
        }
        let mut configured = HashMap::new();
        for (id, globs) in &claims {
            // A collector id given twice keeps the first token's hosts, as before.
            configured
                .entry(id.clone())
                .or_insert_with(|| globs.clone());
        }
        let bound = store
            .hosts(None)
            .await?
            .into_iter()
            .filter(|h| !h.collector_id.is_empty())
            .map(|h| (h.hostname, h.collector_id))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                configured,
                claims,
                claimed: Mutex::default(),
                bound: Mutex::new(bound),
                warned: Mutex::default(),
            }),
        })
    }

    /// Whether `collector` may write `host`; claims an unbound host for it. The error is the
    /// rejection reason sent back in the ack. Refusals are counted and logged once per
    /// collector and host.
    pub fn check(&self, collector: &str, host: &str) -> Result<(), String> {
        let verdict = self.decide(collector, host);
        if let Err(reason) = &verdict {
            metrics::counter!("patchwatch_aggregator_items_rejected_total", "reason" => "host_not_owned")
                .increment(1);
            let first = self
                .inner
                .warned
                .lock()
                .expect("the warned set is never left poisoned")
                .insert((collector.to_owned(), host.to_owned()));
            if first {
                tracing::warn!(
                    message = "Refused items for a host this collector does not own.",
                    collector,
                    host,
                    reason = reason.as_str()
                );
            }
        }
        verdict
    }

    fn decide(&self, collector: &str, host: &str) -> Result<(), String> {
        if let Some(globs) = self.inner.configured.get(collector) {
            return if globs.iter().any(|g| g.is_match(host)) {
                Ok(())
            } else {
                Err(format!(
                    "PERMISSION_DENIED: host {host:?} is not among collector {collector:?}'s \
                     hosts (grpc.tokens hosts)"
                ))
            };
        }
        if let Some(other) = self.claimed_by(host) {
            return Err(format!(
                "PERMISSION_DENIED: host {host:?} belongs to collector {other:?} (grpc.tokens hosts)"
            ));
        }
        let mut bound = self
            .inner
            .bound
            .lock()
            .expect("the binding map is never left poisoned");
        match bound.get(host) {
            Some(owner) if owner != collector => Err(format!(
                "PERMISSION_DENIED: host {host:?} is bound to collector {owner:?}; an admin can \
                 release it with DELETE /api/v1/hosts/{host}/binding"
            )),
            Some(_) => Ok(()),
            None => {
                bound.insert(host.to_owned(), collector.to_owned());
                Ok(())
            }
        }
    }

    /// The collector whose configured globs claim `host`, if any.
    fn claimed_by(&self, host: &str) -> Option<String> {
        if self.inner.claims.is_empty() {
            return None;
        }
        let mut claimed = self
            .inner
            .claimed
            .lock()
            .expect("the claims cache is never left poisoned");
        if let Some(owner) = claimed.get(host) {
            return owner.clone();
        }
        let owner = self
            .inner
            .claims
            .iter()
            .find(|(_, globs)| globs.iter().any(|g| g.is_match(host)))
            .map(|(id, _)| id.clone());
        claimed.insert(host.to_owned(), owner.clone());
        owner
    }

    /// Releases `host`'s binding, so the next collector to report it owns it. Returns the
    /// collector it was bound to, if any.
    ///
    /// # Errors
    /// The store could not record the release.
    pub async fn release(
        &self,
        store: &dyn Store,
        host: &str,
    ) -> Result<Option<String>, StoreError> {
        store.release_host(host.to_owned()).await?;
        let previous = self
            .inner
            .bound
            .lock()
            .expect("the binding map is never left poisoned")
            .remove(host);
        self.inner
            .warned
            .lock()
            .expect("the warned set is never left poisoned")
            .retain(|(_, h)| h != host);
        Ok(previous)
    }
}

/// Why ownership could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A host glob is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The stored bindings could not be read.
    #[error("reading host bindings: {0}")]
    Store(#[from] StoreError),
}
