//! Appends encoded batches to the file (or stdout).

use std::path::PathBuf;

use futures::future::BoxFuture;
use patchwatch_proto::Finding;
use tokio::io::AsyncWriteExt;

use crate::driver::{SendReport, Service};
use crate::encoding::finding_json;
use crate::error::SendError;

pub(super) struct JsonlService {
    path: Option<PathBuf>,
    fsync: bool,
    file: tokio::sync::Mutex<Option<tokio::fs::File>>,
}

impl JsonlService {
    pub(super) fn new(path: Option<PathBuf>, fsync: bool) -> Self {
        JsonlService {
            path,
            fsync,
            file: tokio::sync::Mutex::new(None),
        }
    }
}

/// One JSON document per line; serde_json escapes newlines inside strings, so a line is a record.
pub(super) fn encode(batch: &[Finding]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len() * 512);
    for f in batch {
        serde_json::to_writer(&mut out, &finding_json(f)).expect("JSON values always serialize");
        out.push(b'\n');
    }
    out
}

impl Service for JsonlService {
    fn destination(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "stdout".into(),
        }
    }

    fn send<'a>(&'a self, batch: &'a [Finding]) -> BoxFuture<'a, Result<SendReport, SendError>> {
        Box::pin(async move {
            let bytes = encode(batch);
            let dest = self.destination();
            let Some(path) = &self.path else {
                // tokio's `io-std` feature is not enabled in the workspace; a blocking write to
                // stdout of one batch is short, and stdout output is for debugging and pipes.
                let res = tokio::task::block_in_place(|| {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    out.write_all(&bytes)?;
                    out.flush()
                });
                res.map_err(|e| SendError::retryable(&dest, "io", e))?;
                return Ok(SendReport::default());
            };
            let mut guard = self.file.lock().await;
            if guard.is_none() {
                let f = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|e| SendError::retryable(&dest, "open", e))?;
                *guard = Some(f);
            }
            let file = guard.as_mut().expect("opened above");
            let res = async {
                file.write_all(&bytes).await?;
                file.flush().await?;
                if self.fsync {
                    file.sync_data().await?;
                }
                Ok::<_, std::io::Error>(())
            }
            .await;
            if let Err(e) = res {
                // Reopen next time: the file may have been rotated or its disk remounted.
                *guard = None;
                return Err(SendError::retryable(&dest, "write", e));
            }
            Ok(SendReport::default())
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async move {
            if let Some(path) = &self.path {
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                if !dir.is_dir() {
                    return Err(SendError::fatal(
                        &self.destination(),
                        "no_dir",
                        format!("directory {} does not exist", dir.display()),
                    ));
                }
            }
            Ok(())
        })
    }
}
