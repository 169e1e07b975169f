//! The sinks' integration tests, one binary: a module per area, against real servers over
//! loopback (rsyslog from `.ci/setup-rsyslog.sh`; skipped with a `skipped:` line when its
//! variables are unset). Helpers come from `patchwatch-testkit`.

mod deploy_examples;
mod old_spellings;
mod rsyslog;
