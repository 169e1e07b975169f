//! patchwatch's own diagnostics: stderr for people and log collectors (`--log-format`), a
//! size-rotated file (`--log-file`, and always for the Windows service), and on Windows the
//! Event Log once the agent runs as a service.
//!
//! The file and the Event Log are layers that stay silent until they are started, so that
//! service mode can switch them on after the Service Control Manager has started the process.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The `--log-format` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only on a terminal and when `NO_COLOR` is unset.
    Text,
    /// One JSON object per line with `timestamp`, `level`, `target` and `fields`.
    Json,
}

/// A log file is cut at this size ...
const FILE_BYTES: usize = 10 * 1024 * 1024;
/// ... and this many cut files are kept beside it (`patchwatch.log.1` is the newest).
const FILE_KEEP: usize = 5;

/// Stable Event Log ids, for alert rules and `Get-WinEvent -FilterHashtable @{Id=...}`.
// Only the Windows build reports them; elsewhere they tag the log lines.
#[cfg_attr(not(windows), allow(dead_code))]
pub mod event_id {
    /// The agent started (information).
    pub const STARTED: u32 = 1;
    /// The agent stopped (information).
    pub const STOPPED: u32 = 2;
    /// The configuration or a rule file is invalid; the service did not start (error).
    pub const CONFIG_ERROR: u32 = 3;
    /// Findings could not be delivered to the aggregator or a sink (warning).
    pub const DELIVERY: u32 = 4;
    /// The configuration was reloaded (information).
    pub const RELOADED: u32 = 5;
    /// A reload was refused; the running configuration stays (error).
    pub const RELOAD_REFUSED: u32 = 6;
    /// The service was installed (information).
    pub const INSTALLED: u32 = 7;
    /// Any other warning.
    pub const WARNING: u32 = 100;
    /// Any other error.
    pub const ERROR: u32 = 101;
}

/// The log file, once started.
static FILE: OnceLock<Mutex<FileRotate<AppendCount>>> = OnceLock::new();

/// Writes to the log file when it has been started, and nowhere before.
struct FileWriter;

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match FILE.get() {
            // A poisoned lock only means another thread panicked mid-line; keep logging.
            Some(f) => f.lock().unwrap_or_else(|p| p.into_inner()).write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match FILE.get() {
            Some(f) => f.lock().unwrap_or_else(|p| p.into_inner()).flush(),
            None => Ok(()),
        }
    }
}

/// A size-rotated file at `path`: cut at `bytes`, `keep` cut files kept.
fn rotating(path: &Path, bytes: usize, keep: usize) -> FileRotate<AppendCount> {
    FileRotate::new(
        path,
        AppendCount::new(keep),
        ContentLimit::BytesSurpassed(bytes),
        Compression::None,
        // Unix file mode: the umask's.
        None,
    )
}

/// Starts writing diagnostics to `path` as well (its folder is created); the first call wins.
pub fn start_file(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // FileRotate opens lazily and swallows that error: open once here, so that an unwritable
    // path is an error the caller can report.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let _ = FILE.set(Mutex::new(rotating(path, FILE_BYTES, FILE_KEEP)));
    Ok(())
}

/// How the process logs, from the global options.
pub struct Options<'a> {
    /// `--log`: an `EnvFilter` for stderr.
    pub filter: &'a str,
    /// `--log-format`.
    pub format: LogFormat,
    /// `--log-file`.
    pub file: Option<PathBuf>,
}

/// The filter of the file and the Event Log: the `--log` filter, but at least the info lines
/// of patchwatch's own crates (start, stop, reloads), which an admin reads there afterwards.
fn service_filter(filter: &str) -> EnvFilter {
    EnvFilter::try_new(format!("{filter},patchwatch=info"))
        .unwrap_or_else(|_| EnvFilter::new("warn,patchwatch=info"))
}

/// One formatted layer writing to `writer`, in the chosen shape (`ansi` for text only).
fn fmt_layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => layer.with_ansi(ansi).boxed(),
        LogFormat::Json => layer.json().with_current_span(false).boxed(),
    }
}

/// Installs the global subscriber. An unwritable `--log-file` is reported on stderr and
/// logging goes on without it.
pub fn init(opts: Options<'_>) {
    use std::io::IsTerminal;
    let stderr_filter = EnvFilter::try_new(opts.filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    // https://no-color.org: any non-empty NO_COLOR turns colour off; escapes in a file or a
    // service's captured output are noise.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = io::stderr().is_terminal() && !no_color;
    let stderr = fmt_layer(opts.format, io::stderr, ansi);
    let file = fmt_layer(opts.format, || FileWriter, false);
    let quiet = file
        .and_then(eventlog::Layer)
        .with_filter(service_filter(opts.filter));
    tracing_subscriber::registry()
        .with(stderr.with_filter(stderr_filter))
        .with(quiet)
        .init();
    if let Some(path) = &opts.file {
        if let Err(error) = start_file(path) {
            tracing::error!(message = "Cannot write the log file; logging to stderr only.", path = %path.display(), %error);
        }
    }
}

/// The Windows Event Log (source `patchwatch`, the Application log), once started: warnings,
/// errors, and information events that carry an `event_id`.
pub mod eventlog {
    use tracing::field::{Field, Visit};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::layer::Context;

    use super::event_id;

    /// The layer; silent until [`start`].
    pub struct Layer;

    /// An event's id, its text, and whether it goes to the Event Log at all.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) fn describe(event: &Event<'_>) -> Option<(Level, u32, String)> {
        #[derive(Default)]
        struct Text {
            id: Option<u32>,
            message: String,
            fields: String,
        }
        impl Visit for Text {
            fn record_u64(&mut self, field: &Field, value: u64) {
                if field.name() == "event_id" {
                    self.id = u32::try_from(value).ok();
                } else {
                    self.record_debug(field, &value);
                }
            }
            fn record_i64(&mut self, field: &Field, value: i64) {
                if field.name() == "event_id" {
                    self.id = u32::try_from(value).ok();
                } else {
                    self.record_debug(field, &value);
                }
            }
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "message" {
                    self.message = value.to_owned();
                } else {
                    self.fields
                        .push_str(&format!("\r\n{}: {value}", field.name()));
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.message = format!("{value:?}");
                } else {
                    self.fields
                        .push_str(&format!("\r\n{}: {value:?}", field.name()));
                }
            }
        }
        let meta = event.metadata();
        let level = *meta.level();
        let mut text = Text::default();
        event.record(&mut text);
        let delivery = meta.target().starts_with("patchwatch_collector::delivery")
            || meta.target().starts_with("patchwatch_sinks");
        let id = match (text.id, level) {
            (Some(id), _) => id,
            (None, Level::ERROR) => event_id::ERROR,
            (None, Level::WARN) if delivery => event_id::DELIVERY,
            (None, Level::WARN) => event_id::WARNING,
            // Information goes to the Event Log only when it is one of the stable events.
            (None, _) => return None,
        };
        Some((level, id, format!("{}{}", text.message, text.fields)))
    }

    #[cfg(windows)]
    mod sys {
        use std::sync::OnceLock;

        use windows_sys::Win32::System::EventLog::{
            RegisterEventSourceW, ReportEventW, EVENTLOG_ERROR_TYPE, EVENTLOG_INFORMATION_TYPE,
            EVENTLOG_WARNING_TYPE,
        };

        /// The event source handle, as an integer so that it can live in a static.
        static SOURCE: OnceLock<usize> = OnceLock::new();

        pub fn start() -> std::io::Result<()> {
            let name: Vec<u16> = "patchwatch\0".encode_utf16().collect();
            // SAFETY: a null server name means this machine; `name` is NUL-terminated.
            let h = unsafe { RegisterEventSourceW(std::ptr::null(), name.as_ptr()) };
            if h.is_null() {
                return Err(std::io::Error::last_os_error());
            }
            let _ = SOURCE.set(h as usize);
            Ok(())
        }

        pub fn report(level: tracing::Level, id: u32, text: &str) {
            let Some(&h) = SOURCE.get() else { return };
            let kind = match level {
                tracing::Level::ERROR => EVENTLOG_ERROR_TYPE,
                tracing::Level::WARN => EVENTLOG_WARNING_TYPE,
                _ => EVENTLOG_INFORMATION_TYPE,
            };
            let wide: Vec<u16> = text.encode_utf16().chain(Some(0)).collect();
            let strings = [wide.as_ptr()];
            // SAFETY: `h` came from RegisterEventSourceW and is never closed; one
            // NUL-terminated string, no SID, no raw data.
            unsafe {
                ReportEventW(
                    h as _,
                    kind,
                    0,
                    id,
                    std::ptr::null_mut(),
                    1,
                    0,
                    strings.as_ptr(),
                    std::ptr::null(),
                );
            }
        }
    }

    /// Starts reporting to the Event Log.
    #[cfg(windows)]
    pub fn start() -> std::io::Result<()> {
        sys::start()
    }

    impl<S: Subscriber> tracing_subscriber::Layer<S> for Layer {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            #[cfg(windows)]
            if let Some((level, id, text)) = describe(event) {
                sys::report(level, id, &text);
            }
            #[cfg(not(windows))]
            let _ = event;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_cut_at_its_size_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("patchwatch.log");
        let mut f = rotating(&path, 100, 2);
        for i in 0..30 {
            writeln!(f, "line {i:02} of the agent's own log").unwrap();
        }
        f.flush().unwrap();
        let names: Vec<String> = {
            let mut v: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names,
            ["patchwatch.log", "patchwatch.log.1", "patchwatch.log.2"]
        );
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.contains("line 29"), "{current}");
        for name in &names {
            let size = std::fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(size <= 100 + 40, "{name}: {size} bytes");
        }
        let older = std::fs::read_to_string(dir.path().join("patchwatch.log.2")).unwrap();
        assert!(
            !older.contains("line 00"),
            "the oldest are dropped: {older}"
        );
    }

    #[test]
    fn event_ids_follow_level_target_and_field() {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        struct Probe(std::sync::Arc<Mutex<Vec<(tracing::Level, u32, String)>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Probe {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _ctx: tracing_subscriber::layer::Context<'_, S>,
            ) {
                if let Some(d) = eventlog::describe(event) {
                    self.0.lock().unwrap().push(d);
                }
            }
        }
        let subscriber = tracing_subscriber::registry().with(Probe(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::callsite::rebuild_interest_cache();
            tracing::info!(
                event_id = event_id::STARTED,
                message = "Agent started.",
                host = "EX01"
            );
            tracing::info!(message = "not for the Event Log");
            tracing::warn!(message = "disk is slow");
            tracing::error!(message = "bad", error = "boom");
            tracing::warn!(target: "patchwatch_collector::delivery::stream", message = "Delivery failed; reconnecting.");
        });
        let seen = seen.lock().unwrap();
        let ids: Vec<u32> = seen.iter().map(|s| s.1).collect();
        assert_eq!(
            ids,
            [
                event_id::STARTED,
                event_id::WARNING,
                event_id::ERROR,
                event_id::DELIVERY
            ]
        );
        assert_eq!(seen[0].2, "Agent started.\r\nhost: EX01");
        assert_eq!(seen[2].2, "bad\r\nerror: boom");
    }
}
