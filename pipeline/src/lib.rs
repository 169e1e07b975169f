//! patchwatch-pipeline (stub, filled in by its issue).
