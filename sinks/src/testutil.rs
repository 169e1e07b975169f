//! A scripted loopback HTTP server for sink tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

/// One request the server received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    #[allow(dead_code)]
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Recorded {
    pub(crate) fn text(&self) -> String {
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
pub(crate) struct MockHttp {
    inner: Arc<Mutex<Inner>>,
    pub(crate) url: String,
}

impl MockHttp {
    pub(crate) async fn start() -> Self {
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

    pub(crate) fn push(&self, status: u16, body: impl Into<String>) {
        self.inner
            .lock()
            .unwrap()
            .script
            .push_back((status, body.into()));
    }

    pub(crate) fn respond_with(
        &self,
        f: impl Fn(&Recorded) -> Option<(u16, String)> + Send + Sync + 'static,
    ) {
        self.inner.lock().unwrap().responder = Some(Box::new(f));
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub(crate) fn requests_to(&self, path: &str) -> Vec<Recorded> {
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

/// Fast retries for tests.
pub(crate) fn fast_retry() -> crate::RetryConfig {
    crate::RetryConfig {
        initial_backoff_ms: 5,
        max_backoff_ms: 20,
        max_retries: Some(20),
        request_timeout_ms: 5_000,
    }
}

/// Small, quick batches for tests.
pub(crate) fn quick_batch(max_events: usize) -> crate::BatchConfig {
    crate::BatchConfig {
        max_events,
        timeout_ms: 20,
        queue_capacity: 1000,
    }
}
