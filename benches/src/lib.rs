//! Bench corpora generators.
