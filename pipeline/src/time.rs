//! Log timestamps. Logs carry local time with no zone: the scan context says which offset the
//! collector assumes, and both the naive text and the converted instant are kept.

/// A calendar date: year, month, day.
pub(crate) type Date = (i32, u32, u32);
/// A time of day: hours, minutes, seconds, milliseconds.
pub(crate) type Clock = (u32, u32, u32, u32);

/// A naive local date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct NaiveTime {
    pub y: i32,
    pub mo: u32,
    pub d: u32,
    pub h: u32,
    pub mi: u32,
    pub s: u32,
    pub ms: u32,
}

impl NaiveTime {
    /// `YYYY-MM-DDTHH:MM:SS.mmm`.
    pub(crate) fn to_iso(self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}",
            self.y, self.mo, self.d, self.h, self.mi, self.s, self.ms
        )
    }

    /// Seconds since the Unix epoch, treating the time as UTC.
    pub(crate) fn epoch_seconds(self) -> i64 {
        days_from_civil(self.y, self.mo, self.d) * 86_400
            + i64::from(self.h * 3600 + self.mi * 60 + self.s)
    }

    /// The same clock time `days` days later (earlier when negative).
    pub(crate) fn plus_days(self, days: i64) -> NaiveTime {
        if days == 0 {
            return self;
        }
        let (y, mo, d) = civil_from_days(days_from_civil(self.y, self.mo, self.d) + days);
        NaiveTime { y, mo, d, ..self }
    }

    /// Milliseconds since midnight.
    pub(crate) fn ms_of_day(self) -> u32 {
        ((self.h * 60 + self.mi) * 60 + self.s) * 1000 + self.ms
    }

    /// Unix nanoseconds, given the zone's offset from UTC.
    pub(crate) fn unix_nanos(self, utc_offset_seconds: i32) -> i64 {
        (self.epoch_seconds() - i64::from(utc_offset_seconds)) * 1_000_000_000
            + i64::from(self.ms) * 1_000_000
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` days after 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

/// Clock times read from logs that carry only a time of day, on a date that starts as the
/// run header's and moves on a day each time the clock goes back by more than half a day
/// (a run across midnight). Lines are read in file order.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DayClock {
    /// The header's date, once read.
    pub date: Option<(i32, u32, u32)>,
    /// Days passed since the header's date, as of `last_ms`.
    days: i64,
    /// Time of day of the last time recorded, in milliseconds.
    last_ms: Option<u32>,
}

impl DayClock {
    /// A header's date and time: the run's clock starts there.
    pub(crate) fn start(&mut self, date: (i32, u32, u32), time: Option<(u32, u32, u32, u32)>) {
        self.date = Some(date);
        self.days = 0;
        self.last_ms = time.map(|(h, m, s, ms)| ((h * 60 + m) * 60 + s) * 1000 + ms);
    }

    /// The full time of a clock time read on a line (without recording it).
    pub(crate) fn at(&self, (h, mi, s, ms): (u32, u32, u32, u32)) -> Option<NaiveTime> {
        let (y, mo, d) = self.date?;
        let t = NaiveTime {
            y,
            mo,
            d,
            h,
            mi,
            s,
            ms,
        };
        let back = self
            .last_ms
            .is_some_and(|last| t.ms_of_day() + 12 * 3_600_000 < last);
        Some(t.plus_days(self.days + i64::from(back)))
    }

    /// Records `t` (a time returned by [`DayClock::at`]) as the latest time read.
    pub(crate) fn record(&mut self, t: NaiveTime) {
        let Some((y, mo, d)) = self.date else {
            return;
        };
        self.days = days_from_civil(t.y, t.mo, t.d) - days_from_civil(y, mo, d);
        self.last_ms = Some(t.ms_of_day());
    }
}

fn num(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 4 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, &c| n * 10 + u32::from(c - b'0')))
}

fn valid(t: NaiveTime) -> Option<NaiveTime> {
    ((1..=12).contains(&t.mo) && (1..=31).contains(&t.d) && t.h < 24 && t.mi < 60 && t.s < 61)
        .then_some(t)
}

/// `[MM/dd/yyyy HH:mm:ss.ffff]` at the start of an ExchangeSetup.log line.
pub(crate) fn exchange_prefix(line: &[u8]) -> Option<NaiveTime> {
    if line.len() < 26 || line[0] != b'[' || line[25] != b']' {
        return None;
    }
    valid(NaiveTime {
        mo: num(&line[1..3])?,
        d: num(&line[4..6])?,
        y: num(&line[7..11])? as i32,
        h: num(&line[12..14])?,
        mi: num(&line[15..17])?,
        s: num(&line[18..20])?,
        ms: num(&line[21..25])? / 10,
    })
}

/// A clock time `H:MM:SS` or `HH:MM:SS[:mmm|.ffff]` at the start of `b`.
pub(crate) fn clock(b: &[u8]) -> Option<(u32, u32, u32, u32)> {
    let mut parts = b.splitn(4, |&c| c == b':' || c == b'.');
    let h = num(parts.next()?)?;
    let m = num(parts.next()?)?;
    let s_raw = parts.next()?;
    let s = num(&s_raw[..s_raw.len().min(2)])?;
    let ms = parts
        .next()
        .and_then(|f| num(&f[..f.iter().take_while(|c| c.is_ascii_digit()).count().min(3)]))
        .unwrap_or(0);
    (h < 24 && m < 60 && s < 61).then_some((h, m, s, ms))
}

/// A locale-formatted date as Windows Installer and ServiceControl.ps1 write it (`31.01.2022`,
/// `31/10/2023`, `4/25/2015`, `7/7/2026`). Dots mean day first; with slashes a part above 12
/// decides, and month first is assumed when both could be a month.
pub(crate) fn locale_date(b: &[u8]) -> Option<(i32, u32, u32)> {
    let sep = *b.iter().find(|c| !c.is_ascii_digit())?;
    let mut it = b.split(|&c| c == sep);
    let first = it.next()?;
    let a = num(first)?;
    let c = num(it.next()?)?;
    let third = num(it.next()?)?;
    // Year first (`2020/2/10` on Chinese and Japanese systems, ISO `2021-03-13`).
    if first.len() == 4 {
        let (y, mo, d) = (a as i32, c, third);
        return ((1..=12).contains(&mo) && (1..=31).contains(&d) && y > 1900).then_some((y, mo, d));
    }
    let y = third as i32;
    let (mo, d) = if sep == b'.' || sep == b'-' || a > 12 {
        (c, a)
    } else {
        (a, c)
    };
    ((1..=12).contains(&mo) && (1..=31).contains(&d) && y > 1900).then_some((y, mo, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exchange_prefix_and_converts_with_offset() {
        let t = exchange_prefix(b"[03/13/2021 05:01:28.0382] [0] x").unwrap();
        assert_eq!(t.to_iso(), "2021-03-13T05:01:28.038");
        assert_eq!(t.unix_nanos(0), 1_615_611_688_038_000_000);
        assert_eq!(
            t.unix_nanos(3600),
            1_615_611_688_038_000_000 - 3_600_000_000_000
        );
    }

    #[test]
    fn locale_dates() {
        assert_eq!(locale_date(b"31.01.2022"), Some((2022, 1, 31)));
        assert_eq!(locale_date(b"31/10/2023"), Some((2023, 10, 31)));
        assert_eq!(locale_date(b"4/25/2015"), Some((2015, 4, 25)));
        assert_eq!(clock(b"21:24:36:744]"), Some((21, 24, 36, 744)));
        assert_eq!(clock(b"9:12:53"), Some((9, 12, 53, 0)));
        assert_eq!(locale_date(b"2020/2/10"), Some((2020, 2, 10)));
        assert_eq!(locale_date(b"2010/01/12"), Some((2010, 1, 12)));
    }

    #[test]
    fn day_arithmetic_round_trips() {
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2021, 12, 31), (2024, 3, 1)] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
        let t = exchange_prefix(b"[12/31/2021 23:59:59.0000] [0] x").unwrap();
        assert_eq!(t.plus_days(1).to_iso(), "2022-01-01T23:59:59.000");
    }

    #[test]
    fn day_clock_moves_on_at_midnight_only() {
        let mut c = DayClock::default();
        c.start((2021, 12, 31), Some((23, 58, 0, 0)));
        let a = c.at((23, 59, 30, 500)).unwrap();
        c.record(a);
        assert_eq!(a.to_iso(), "2021-12-31T23:59:30.500");
        // A few ms back (another thread) is the same day; past midnight is the next.
        assert_eq!(c.at((23, 59, 30, 100)).unwrap().d, 31);
        let b = c.at((0, 0, 2, 0)).unwrap();
        assert_eq!(b.to_iso(), "2022-01-01T00:00:02.000");
        c.record(b);
        assert_eq!(
            c.at((0, 5, 0, 0)).unwrap().to_iso(),
            "2022-01-01T00:05:00.000"
        );
        assert_eq!(b.epoch_seconds() - a.epoch_seconds(), 32);
    }
}
