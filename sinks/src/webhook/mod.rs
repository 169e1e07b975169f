//! JSON webhook: a batch as `{"source":"patchwatch","findings":[...]}`, or, with a template, one
//! `{"<template_field>": "<rendered text>"}` request per finding for chat tools.

mod config;
mod encoder;
mod service;
#[cfg(test)]
mod tests;

pub use config::{build, WebhookConfig};
pub use encoder::Template;
