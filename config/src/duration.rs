//! [`Duration`]: a length of time written with its unit, `"30s"`.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration in a config file, written as a string with a unit: `"500ms"`, `"30s"`, `"5m"`,
/// `"1h"`, `"2d"`, or combined, `"1h 30m"` (humantime's syntax). A bare number is refused:
/// the unit is never guessed.
///
/// `Debug` and `Display` print it the same way (`30s`).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

impl Duration {
    /// The zero duration.
    pub const ZERO: Self = Self(std::time::Duration::ZERO);

    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// The standard library duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// True for a zero duration.
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Whole milliseconds, saturating at `u64::MAX`.
    pub fn as_millis_u64(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// Parses `"30s"`, `"500ms"`, `"1h 30m"`.
    ///
    /// # Errors
    /// A message quoting the text and showing the accepted form.
    pub fn parse(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text.trim())
            .map(Self)
            .map_err(|e| {
                format!("invalid duration {text:?}: {e}; write a number and a unit, e.g. \"500ms\", \"30s\", \"5m\", \"1h\", \"2d\"")
            })
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit, e.g. \"500ms\", \"30s\", \"5m\", \"1h\", \"2d\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        Duration::parse(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "a duration needs a unit: write \"{v}s\" or \"{v}ms\", not {v}"
        )))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "a duration needs a unit: write \"{v}s\" or \"{v}ms\", not {v}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct T {
        d: Duration,
    }

    fn parse(v: &str) -> Result<std::time::Duration, String> {
        toml::from_str::<T>(&format!("d = {v}"))
            .map(|t| t.d.get())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_units_from_milliseconds_to_days() {
        use std::time::Duration as D;
        assert_eq!(parse("\"500ms\"").unwrap(), D::from_millis(500));
        assert_eq!(parse("\"30s\"").unwrap(), D::from_secs(30));
        assert_eq!(parse("\"5m\"").unwrap(), D::from_secs(300));
        assert_eq!(parse("\"1h\"").unwrap(), D::from_secs(3600));
        assert_eq!(parse("\"2d\"").unwrap(), D::from_secs(2 * 86_400));
        assert_eq!(parse("\"1h 30m\"").unwrap(), D::from_secs(5400));
        assert_eq!(parse("\"1h30m\"").unwrap(), D::from_secs(5400));
        assert_eq!(parse("\"0s\"").unwrap(), D::ZERO);
    }

    #[test]
    fn bad_values_are_explained() {
        let e = parse("\"5x\"").unwrap_err();
        assert!(
            e.contains("invalid duration \"5x\"") && e.contains("\"30s\""),
            "{e}"
        );
        let e = parse("\"soon\"").unwrap_err();
        assert!(e.contains("invalid duration \"soon\""), "{e}");
        let e = parse("600").unwrap_err();
        assert!(e.contains("needs a unit") && e.contains("\"600s\""), "{e}");
        let e = parse("true").unwrap_err();
        assert!(e.contains("a duration with a unit"), "{e}");
    }

    #[test]
    fn prints_with_its_unit() {
        assert_eq!(Duration::from_millis(500).to_string(), "500ms");
        assert_eq!(format!("{:?}", Duration::from_secs(600)), "10m");
        assert_eq!(Duration::from_secs(90).as_millis_u64(), 90_000);
    }
}
