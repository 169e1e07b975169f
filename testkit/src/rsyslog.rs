//! Real rsyslog from Debian (`.ci/setup-rsyslog.sh`): the long-running shared daemon, and a
//! private daemon a test can stop and restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The shared rsyslog's TCP address (`PATCHWATCH_RSYSLOG_TCP`) and output file
/// (`PATCHWATCH_RSYSLOG_OUTPUT`); `None` (skipped) without them, a panic under CI.
pub fn shared() -> Option<(String, PathBuf)> {
    let tcp = crate::env_or_skip("PATCHWATCH_RSYSLOG_TCP", "setup-rsyslog.sh")?;
    let out = std::env::var("PATCHWATCH_RSYSLOG_OUTPUT")
        .expect("PATCHWATCH_RSYSLOG_OUTPUT is set with PATCHWATCH_RSYSLOG_TCP");
    Some((tcp, out.into()))
}

/// Finding ids of `host` that rsyslog wrote after byte `from` of its output file (RFC 5424,
/// `finding@<pen>` element with `id`). The shared daemon and its file outlive a test run, so
/// callers read from where the file stood when they started.
pub fn ids_since(out: &Path, from: u64, host: &str) -> Vec<String> {
    let host = format!(" {host} patchwatch ");
    let bytes = std::fs::read(out).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[from..])
        .lines()
        .filter(|l| l.contains(&host))
        .filter_map(|l| {
            let sd = &l[l.find("[finding@")?..];
            let start = sd.find(" id=\"")? + 5;
            let end = start + sd[start..].find('"')?;
            Some(sd[start..end].to_string())
        })
        .collect()
}

/// A private rsyslogd (`PATCHWATCH_RSYSLOGD`, the Debian binary) listening on TCP `port` and
/// writing every message to `out`, which a test can stop and start again.
pub struct Rsyslogd {
    bin: String,
    conf: PathBuf,
    pid: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Rsyslogd {
    /// Writes its configuration under `dir`; not started yet.
    pub fn new(bin: String, dir: &Path, port: u16, out: &Path) -> Self {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).expect("rsyslog work folder");
        let conf = dir.join("rsyslog.conf");
        // Synchronous, flushed writes: tests read the file as soon as a sink reports delivery.
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{}\")\nmodule(load=\"imtcp\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"t\")\n\
                 ruleset(name=\"t\") {{ action(type=\"omfile\" file=\"{}\" \
                 template=\"RSYSLOG_SyslogProtocol23Format\" flushOnTXEnd=\"on\" asyncWriting=\"off\") }}\n",
                work.display(),
                out.display()
            ),
        )
        .expect("rsyslog.conf");
        Rsyslogd {
            bin,
            conf,
            pid: dir.join("rsyslogd.pid"),
            port,
            child: None,
        }
    }

    /// Starts the daemon and waits until it accepts connections.
    pub async fn start(&mut self) {
        let _ = std::fs::remove_file(&self.pid);
        let child = Command::new(&self.bin)
            .args(["-n", "-f"])
            .arg(&self.conf)
            .arg("-i")
            .arg(&self.pid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd starts");
        self.child = Some(child);
        let port = self.port;
        crate::eventually(Duration::from_secs(10), "rsyslogd to listen", async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    }

    /// Graceful stop (SIGTERM to our own child, by pid), waiting for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
