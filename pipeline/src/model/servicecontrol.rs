//! ServiceControl.log (and UpdateCas.log): `[HH:mm:ss] text`, `[HH:mm:ss] [Warning] ...`,
//! `[HH:mm:ss] [Error] ...`. A run starts at `* ServiceControl.ps1: <date>` and ends at
//! `Script completed succesfully.` (sic) or `Script completed with one or more errors.`.

use super::{find_ci, s, Boundary, Line, LogModel};
use crate::finding::Outcome;
use crate::time::{clock, locale_date, DayClock, NaiveTime};
use crate::RunSummary;

/// What the ServiceControl model remembers about one run.
#[derive(Debug, Default)]
pub(crate) struct ServiceControlRun {
    /// Date from the run header: the lines carry only a clock time.
    clock: DayClock,
}

impl LogModel for ServiceControlRun {
    fn observe_line(&mut self, anchor: usize, line: &Line, sum: &mut RunSummary) -> Boundary {
        on_line(self, anchor, line, sum)
    }

    fn line_time(&self, line: &[u8]) -> Option<NaiveTime> {
        line_time(line, &self.clock)
    }

    fn saw_time(&mut self, t: NaiveTime) {
        self.clock.record(t);
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
                let mut words = rest.split_whitespace();
                let date = words.next().and_then(|d| locale_date(d.as_bytes()));
                let time = words.next().and_then(|c| clock(c.as_bytes()));
                if let Some(d) = date {
                    run.clock.start(d, time);
                }
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

/// Time of a `[HH:mm:ss] ...` line on the run's header date (moved on past midnight).
fn line_time(line: &[u8], day: &DayClock) -> Option<NaiveTime> {
    if line.first() != Some(&b'[') {
        return None;
    }
    let (h, mi, s, _) = clock(&line[1..])?;
    day.at((h, mi, s, 0))
}
