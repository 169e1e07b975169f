//! ServiceControl.log (and UpdateCas.log): `[HH:mm:ss] text`, `[HH:mm:ss] [Warning] ...`,
//! `[HH:mm:ss] [Error] ...`. A run starts at `* ServiceControl.ps1: <date>` and ends at
//! `Script completed succesfully.` (sic) or `Script completed with one or more errors.`.

use super::{find_ci, s, Boundary, Line, LogModel};
use crate::finding::Outcome;
use crate::time::{clock, locale_date, NaiveTime};
use crate::RunSummary;

/// What the ServiceControl model remembers about one run.
#[derive(Debug, Default)]
pub(crate) struct ServiceControlRun {
    /// Date from the run header: the lines carry only a clock time.
    date: Option<(i32, u32, u32)>,
}

impl LogModel for ServiceControlRun {
    fn observe_line(&mut self, anchor: usize, line: &Line, sum: &mut RunSummary) -> Boundary {
        on_line(self, anchor, line, sum)
    }

    fn line_time(&self, line: &[u8]) -> Option<NaiveTime> {
        line_time(line, self.date)
    }
}

fn on_line(
    run: &mut ServiceControlRun,
    anchor: usize,
    line: &Line,
    sum: &mut RunSummary,
) -> Boundary {
    let t = line.text;
    match anchor {
        s::SC_HEADER => {
            if let Some(i) = find_ci(t, "ServiceControl.ps1") {
                let rest = t[i + "ServiceControl.ps1".len()..].trim_start_matches([':', ' ']);
                run.date = rest
                    .split_whitespace()
                    .next()
                    .and_then(|d| locale_date(d.as_bytes()))
                    .or(run.date);
                if let Some(arg) = rest.split_whitespace().nth(2) {
                    sum.mode = Some(arg.to_string());
                }
                sum.product = Some("ServiceControl.ps1".into());
                return Boundary::Start;
            }
        }
        s::SC_COMPLETED => {
            return if find_ci(t, "one or more errors").is_some() {
                Boundary::End(Outcome::Failed)
            } else {
                Boundary::End(Outcome::Succeeded)
            };
        }
        _ => {}
    }
    Boundary::None
}

/// Time of a `[HH:mm:ss] ...` line on the run's header date.
fn line_time(line: &[u8], date: Option<(i32, u32, u32)>) -> Option<NaiveTime> {
    let (y, mo, d) = date?;
    if line.first() != Some(&b'[') {
        return None;
    }
    let (h, mi, s, _) = clock(&line[1..])?;
    Some(NaiveTime {
        y,
        mo,
        d,
        h,
        mi,
        s,
        ms: 0,
    })
}
