//! patchwatch-aggregator (stub, filled in by its issue).
