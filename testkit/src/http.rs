//! A scripted loopback HTTP server, for tests of anything that posts over HTTP (sinks,
//! Alertmanager receivers): it records every request and answers from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body as received (not decompressed).
    pub body: Bytes,
}

impl Recorded {
    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type Responder = Box<dyn Fn(&Recorded) -> Option<(u16, String)> + Send + Sync>;

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    script: VecDeque<(u16, String)>,
    responder: Option<Responder>,
}

/// Answers from `script` in order, then from the responder, then `200 {}`.
#[derive(Clone)]
pub struct MockHttp {
    inner: Arc<Mutex<Inner>>,
    /// Base URL, `http://127.0.0.1:<port>`.
    pub url: String,
}

impl MockHttp {
    /// Binds a loopback port and serves on a task of the current runtime until it ends.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MockHttp {
            inner,
            url: format!("http://{addr}"),
        }
    }

    /// Queues one scripted answer.
    pub fn push(&self, status: u16, body: impl Into<String>) {
        self.inner
            .lock()
            .unwrap()
            .script
            .push_back((status, body.into()));
    }

    /// Answers requests the script does not cover with `f` (`None`: `200 {}`).
    pub fn respond_with(
        &self,
        f: impl Fn(&Recorded) -> Option<(u16, String)> + Send + Sync + 'static,
    ) {
        self.inner.lock().unwrap().responder = Some(Box::new(f));
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// The requests received so far for `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let rec = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers,
        body,
    };
    let mut g = inner.lock().unwrap();
    let answer = g
        .script
        .pop_front()
        .or_else(|| g.responder.as_ref().and_then(|f| f(&rec)))
        .unwrap_or((200, "{}".into()));
    g.requests.push(rec);
    (StatusCode::from_u16(answer.0).unwrap(), answer.1)
}
