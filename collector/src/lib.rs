//! patchwatch-collector library.
