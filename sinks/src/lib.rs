//! patchwatch-sinks (stub, filled in by its issue).
