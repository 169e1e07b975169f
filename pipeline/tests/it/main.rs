//! The pipeline's integration tests, in one binary: one link step instead of one per file, and
//! the helpers of `common` compiled once.

mod common;
mod corpus;
mod durations;
mod evidence;
mod fuzz;
mod localized;
mod msi_codes;
mod real;
mod rules;
mod streaming;
mod templates;
