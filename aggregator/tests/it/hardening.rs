//! Hostile collectors and hostile web pages: host ownership, malformed messages, timestamps
//! out of range, write endpoints refusing cross-site requests, scopes and limits.

use std::time::Duration;

use patchwatch_aggregator::config::TokenConfig;
use patchwatch_proto::ingest_client::IngestClient;
use patchwatch_proto::{Batch, RunUpdate};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::common::*;

const FAILED: i32 = 3;
const SUCCEEDED: i32 = 2;

fn token(id: &str, value: &str, hosts: &[&str]) -> TokenConfig {
    let mut t = TokenConfig::new(id, patchwatch_config::Secret::inline(value));
    t.hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
    t
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap()
}

/// A stream presenting `token`.
async fn stream_as(channel: &Channel, token: &'static str) -> CollectorStream {
    let mut client =
        IngestClient::with_interceptor(channel.clone(), move |mut req: tonic::Request<()>| {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            Ok(req)
        });
    CollectorStream::open(&mut client).await.unwrap()
}

fn run_batch(sequence: u64, run: RunUpdate) -> Batch {
    Batch {
        collector_id: String::new(),
        sequence,
        host: Some(host(&run.host)),
        findings: vec![],
        run_updates: vec![run],
    }
}

async fn host_row(http: std::net::SocketAddr, name: &str) -> serde_json::Value {
    let hosts = get_json(http, "/api/v1/hosts").await;
    hosts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["hostname"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("host {name} listed: {hosts}"))
}

async fn a_collector_writes_only_its_hosts(backend: Backend) {
    let Some((mut config, _dir)) = config(backend).await else {
        return;
    };
    config.grpc.tokens = vec![token("colA", "tok-a", &[]), token("colB", "tok-b", &[])];
    let (agg, shutdown) = start(config).await;
    let ch = channel(agg.grpc_addr()).await;
    let mut b = stream_as(&ch, "tok-b").await;
    let mut a = stream_as(&ch, "tok-a").await;
    let now = now_ns();

    // B reports a failed run of EX-B first: EX-B is bound to B.
    let ack = b
        .roundtrip(run_batch(
            1,
            run_update("ex-b-run", "EX-B", FAILED, "Mailbox", now),
        ))
        .await;
    assert_eq!((ack.accepted, ack.rejected.len()), (1, 0), "{ack:?}");

    // A claims the same run on EX-B as succeeded, in a batch that also carries its own host.
    let mut hostile = run_batch(
        1,
        run_update("ex-b-run", "EX-B", SUCCEEDED, "done", now + 1_000),
    );
    hostile.host = Some(host("EX-A"));
    hostile
        .run_updates
        .push(run_update("ex-a-run", "EX-A", SUCCEEDED, "done", now));
    hostile
        .findings
        .push(finding("fa", "EX-B", "EXCH-001", 4, "ex-b-run"));
    hostile
        .findings
        .push(finding("fb", "EX-A", "EXCH-001", 4, "ex-a-run"));
    let ack = a.roundtrip(hostile).await;
    assert_eq!(ack.accepted, 2, "EX-A's items survive: {ack:?}");
    let refused: Vec<_> = ack
        .rejected
        .iter()
        .map(|r| (r.index, r.run_update))
        .collect();
    assert_eq!(refused, [(0, false), (0, true)], "{ack:?}");
    for r in &ack.rejected {
        assert!(r.reason.contains("PERMISSION_DENIED"), "{r:?}");
        assert!(r.reason.contains("colB"), "{r:?}");
    }

    let ex_b = host_row(agg.http_addr(), "EX-B").await;
    assert_eq!(ex_b["collector_id"], "colB", "{ex_b}");
    assert_eq!(ex_b["latest_run"]["outcome"], "failed", "{ex_b}");
    assert_eq!(
        host_row(agg.http_addr(), "EX-A").await["collector_id"],
        "colA"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", agg.http_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("patchwatch_aggregator_items_rejected_total")
                && l.contains("host_not_owned")
        ),
        "{metrics}"
    );

    // A run id already on EX-B cannot be moved to EX-A by A either.
    let ack = a
        .roundtrip(run_batch(
            2,
            run_update("ex-b-run", "EX-A", SUCCEEDED, "moved", now + 2_000),
        ))
        .await;
    assert_eq!(ack.accepted, 1);
    let runs = get_json(agg.http_addr(), "/api/v1/runs?host=EX-B").await;
    assert_eq!(runs["items"][0]["outcome"], "failed", "{runs}");

    // Once an admin releases EX-B, the next collector to report it owns it.
    let resp = reqwest::Client::new()
        .delete(format!(
            "http://{}/api/v1/hosts/EX-B/binding",
            agg.http_addr()
        ))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let ack = a
        .roundtrip(run_batch(
            3,
            run_update("ex-b-run-2", "EX-B", SUCCEEDED, "x", now),
        ))
        .await;
    assert_eq!((ack.accepted, ack.rejected.len()), (1, 0), "{ack:?}");
    assert_eq!(
        host_row(agg.http_addr(), "EX-B").await["collector_id"],
        "colA"
    );
    let ack = b
        .roundtrip(run_batch(
            2,
            run_update("ex-b-run", "EX-B", FAILED, "y", now + 5_000),
        ))
        .await;
    assert_eq!(ack.rejected.len(), 1, "{ack:?}");

    shutdown.cancel();
    agg.wait().await.unwrap();
}

async fn configured_host_globs_bind_tokens(backend: Backend) {
    let Some((mut config, _dir)) = config(backend).await else {
        return;
    };
    config.grpc.tokens = vec![
        token("colA", "tok-a", &["EX0*", "EXCH-*"]),
        token("colB", "tok-b", &[]),
    ];
    let (agg, shutdown) = start(config).await;
    let ch = channel(agg.grpc_addr()).await;
    let mut a = stream_as(&ch, "tok-a").await;
    let mut b = stream_as(&ch, "tok-b").await;
    let now = now_ns();
    let ack = a
        .roundtrip(run_batch(1, run_update("r1", "ex01", FAILED, "p", now)))
        .await;
    assert_eq!((ack.accepted, ack.rejected.len()), (1, 0), "{ack:?}");
    let ack = a
        .roundtrip(run_batch(2, run_update("r2", "MBX01", FAILED, "p", now)))
        .await;
    assert_eq!(ack.accepted, 0, "{ack:?}");
    assert!(ack.rejected[0].reason.contains("not among"), "{ack:?}");
    // A host matching A's globs cannot be claimed by B, even before A reports it.
    let ack = b
        .roundtrip(run_batch(1, run_update("r3", "EXCH-9", FAILED, "p", now)))
        .await;
    assert_eq!(ack.accepted, 0, "{ack:?}");
    assert!(ack.rejected[0].reason.contains("colA"), "{ack:?}");
    shutdown.cancel();
    agg.wait().await.unwrap();
}

async fn malformed_protobuf_is_invalid_argument(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let mut raw = client_raw(agg.grpc_addr()).await;
    let status = raw.status_of_garbage().await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    shutdown.cancel();
    agg.wait().await.unwrap();
}

/// A gRPC client that sends raw bytes as the request message.
struct RawClient {
    inner: tonic::client::Grpc<Channel>,
}

async fn client_raw(addr: std::net::SocketAddr) -> RawClient {
    RawClient {
        inner: tonic::client::Grpc::new(channel(addr).await),
    }
}

#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;
struct AckDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for AckDecoder {
    type Item = patchwatch_proto::Ack;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<patchwatch_proto::Ack>, tonic::Status> {
        use prost::bytes::Buf as _;
        use prost::Message as _;
        let ack = patchwatch_proto::Ack::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(Some(ack))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = patchwatch_proto::Ack;
    type Encoder = RawEncoder;
    type Decoder = AckDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> AckDecoder {
        AckDecoder
    }
}

impl RawClient {
    async fn status_of_garbage(&mut self) -> tonic::Status {
        self.inner.ready().await.unwrap();
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/patchwatch.v1.Ingest/Ingest");
        // Field 1 (string) claiming 127 bytes, then nothing: not a Batch.
        let garbage = vec![0x0a, 0x7f, 0x01];
        let request = tonic::Request::new(tokio_stream::iter(vec![garbage]));
        match self.inner.streaming(request, path, RawCodec).await {
            Err(s) => s,
            Ok(resp) => {
                let mut acks = resp.into_inner();
                match tokio::time::timeout(WAIT, acks.message()).await {
                    Ok(Err(s)) => s,
                    other => panic!("expected a status, got {other:?}"),
                }
            }
        }
    }
}

async fn timestamps_beyond_the_window_are_rejected(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let mut client = client(agg.grpc_addr()).await;
    let mut s = CollectorStream::open(&mut client).await.unwrap();
    let now = now_ns();
    // Frozen: updated at the end of time.
    let ack = s
        .roundtrip(run_batch(1, run_update("r1", "EX01", 1, "p", i64::MAX)))
        .await;
    assert_eq!(ack.accepted, 0, "{ack:?}");
    assert!(
        ack.rejected[0].reason.contains("updated_unix_nano"),
        "{ack:?}"
    );
    assert!(ack.rejected[0].reason.contains("max_clock_skew"), "{ack:?}");
    // Started in 2096.
    let mut future = run_update("r2", "EX01", 1, "p", now);
    future.started_unix_nano = 3_980_000_000_000_000_000;
    let ack = s.roundtrip(run_batch(2, future)).await;
    assert_eq!(ack.accepted, 0, "{ack:?}");
    assert!(
        ack.rejected[0].reason.contains("started_unix_nano"),
        "{ack:?}"
    );
    // Before 1980.
    let mut f = finding("old", "EX01", "EXCH-001", 4, "r3");
    f.event_time_unix_nano = 1_000_000_000;
    let ack = s.roundtrip(batch_of(3, vec![f])).await;
    assert_eq!(ack.accepted, 0, "{ack:?}");
    assert!(ack.rejected[0].reason.contains("max_item_age"), "{ack:?}");
    // A real failure later is stored.
    let ack = s
        .roundtrip(run_batch(4, run_update("r1", "EX01", FAILED, "p", now)))
        .await;
    assert_eq!((ack.accepted, ack.rejected.len()), (1, 0), "{ack:?}");
    let ex = host_row(agg.http_addr(), "EX01").await;
    assert_eq!(ex["latest_run"]["outcome"], "failed", "{ex}");
    shutdown.cancel();
    agg.wait().await.unwrap();
}

async fn one_collector_is_limited_in_streams_and_bytes(backend: Backend) {
    let Some((mut config, _dir)) = config(backend).await else {
        return;
    };
    config.grpc.tokens = vec![token("colA", "tok-a", &[]), token("colB", "tok-b", &[])];
    config.grpc.max_streams_per_collector = 2;
    // Room for about two of the batches below at once, across all streams.
    config.grpc.max_inflight_bytes = 24 * 1024;
    let (agg, shutdown) = start(config).await;
    let ch = channel(agg.grpc_addr()).await;
    let mut first = stream_as(&ch, "tok-a").await;
    let second = stream_as(&ch, "tok-a").await;
    let mut client = IngestClient::with_interceptor(ch.clone(), |mut req: tonic::Request<()>| {
        req.metadata_mut()
            .insert("authorization", "Bearer tok-a".parse().unwrap());
        Ok(req)
    });
    let err = CollectorStream::open(&mut client)
        .await
        .err()
        .expect("a third stream of colA is refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("max_streams_per_collector"),
        "{err:?}"
    );
    // Another collector is not affected.
    let mut other = stream_as(&ch, "tok-b").await;

    // Under a small byte budget every batch of both streams is still stored and acked.
    let sends = 6u64;
    for seq in 1..=sends {
        first
            .send(batch("", seq, "EXA", &format!("a{seq}"), 8))
            .await;
        other
            .send(batch("", seq, "EXB", &format!("b{seq}"), 8))
            .await;
    }
    for s in [&mut first, &mut other] {
        let mut acked = 0;
        while acked < sends {
            let ack = s.next().await.expect("ack").expect("open");
            assert_eq!(ack.accepted, 9, "{ack:?}");
            acked += 1;
        }
    }

    // A closed stream frees its slot.
    drop(second);
    let _third = eventually(WAIT, "a freed stream slot", async || {
        CollectorStream::open(&mut client.clone()).await.ok()
    })
    .await;
    shutdown.cancel();
    agg.wait().await.unwrap();
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn silence_body(duration: &str) -> String {
    serde_json::json!({"comment": "c", "created_by": "me", "hosts": "*", "duration": duration})
        .to_string()
}

async fn silences_stored(http: std::net::SocketAddr) -> usize {
    get_json(http, "/api/v1/silences").await["items"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_writes_are_refused() {
    let (config, _dir) = config(Backend::Sqlite).await.expect("sqlite");
    let (agg, shutdown) = start(config).await;
    let base = format!("http://{}", agg.http_addr());
    let http = no_redirects();
    let refused = [
        // A form-like simple request from another page: no preflight, text/plain.
        (
            "text/plain",
            Some("http://evil.example"),
            None,
            "/api/v1/silences",
            403,
        ),
        (
            "application/json",
            Some("http://evil.example"),
            None,
            "/api/v1/silences",
            403,
        ),
        (
            "application/json",
            None,
            Some("cross-site"),
            "/api/v1/windows",
            403,
        ),
        ("text/plain", None, None, "/api/v1/windows", 415),
    ];
    for (ct, origin, site, path, want) in refused {
        let mut req = http
            .post(format!("{base}{path}"))
            .header("content-type", ct)
            .body(silence_body("4w"));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{ct} {origin:?} {site:?} {path}");
    }
    // DNS rebinding: the right origin for the wrong name.
    let r = http
        .post(format!("{base}/api/v1/silences"))
        .header("host", "evil.example")
        .header("origin", "http://evil.example")
        .header("content-type", "application/json")
        .body(silence_body("4w"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(silences_stored(agg.http_addr()).await, 0);

    // The dashboard's own origin with JSON is accepted.
    let r = http
        .post(format!("{base}/api/v1/silences"))
        .header("origin", base.as_str())
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/json; charset=utf-8")
        .body(silence_body("1h"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    assert_eq!(silences_stored(agg.http_addr()).await, 1);
    // A bodiless write (as `patchwatch silence expire` sends it) needs no type, but a
    // cross-site one is still refused by its Origin.
    let id = created["id"].as_str().expect("created silence id");
    let expire = format!("{base}/api/v1/silences/{id}/expire");
    let r = http
        .post(&expire)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http.post(&expire).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    // Security headers on pages and API answers alike.
    for path in ["/", "/api/v1/hosts", "/nope"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "same-origin");
    }
    shutdown.cancel();
    agg.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_durations_are_refused_not_a_crash() {
    let (config, _dir) = config(Backend::Sqlite).await.expect("sqlite");
    let (agg, shutdown) = start(config).await;
    let base = format!("http://{}", agg.http_addr());
    for (path, body) in [
        ("/api/v1/silences", silence_body("2147483647w")),
        (
            "/api/v1/windows",
            serde_json::json!({"name": "x", "hosts": "*", "duration": "2147483647w"}).to_string(),
        ),
        ("/api/v1/silences", silence_body("400d")),
    ] {
        let r = no_redirects()
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("an answer, not a dropped connection");
        assert_eq!(r.status(), 400, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap_or("").starts_with("duration:"),
            "{v}"
        );
    }
    shutdown.cancel();
    agg.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_redirects_stay_on_site_and_scopes_hold() {
    let (mut config, _dir) = config(Backend::Sqlite).await.expect("sqlite");
    let mut reader = TokenConfig::new("viewer", patchwatch_config::Secret::inline("read-only"));
    reader.scopes = Some(vec![patchwatch_aggregator::config::Scope::Read]);
    config.http.tokens = vec![
        reader,
        TokenConfig::new("ops", patchwatch_config::Secret::inline("read-write")),
    ];
    let (agg, shutdown) = start(config).await;
    let base = format!("http://{}", agg.http_addr());
    let http = no_redirects();
    let (csrf_cookie, csrf) = sign_in_form(&http, &base).await;
    for next in [
        "/\t/evil.example",
        "/\n/x",
        "/\\evil.example",
        "//evil.example",
    ] {
        let r = http
            .post(format!("{base}/login"))
            .header("cookie", csrf_cookie.as_str())
            .form(&[
                ("token", "read-only"),
                ("next", next),
                ("csrf", csrf.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{next:?}");
        assert_eq!(r.headers()["location"], "/", "{next:?}");
    }
    // Percent-encoded in the query, as in the report.
    let r = http
        .get(format!("{base}/login?next=/%09/evil.example"))
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(!page.contains("evil.example"), "{page}");

    // A read-only token reads but does not write; the default (no scopes) still writes.
    let get = |t: &'static str| {
        http.get(format!("{base}/api/v1/silences"))
            .bearer_auth(t)
            .send()
    };
    assert_eq!(get("read-only").await.unwrap().status(), 200);
    let post = |t: &'static str| {
        http.post(format!("{base}/api/v1/silences"))
            .bearer_auth(t)
            .header("content-type", "application/json")
            .body(silence_body("1h"))
            .send()
    };
    let r = post("read-only").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("write"));
    let r = http
        .delete(format!("{base}/api/v1/hosts/EX01/binding"))
        .bearer_auth("read-only")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(post("read-write").await.unwrap().status(), 201);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

backend_tests! {
    a_collector_writes_only_its_hosts => a_collector_writes_only_its_hosts;
    configured_host_globs_bind_tokens => configured_host_globs_bind_tokens;
    malformed_protobuf_is_invalid_argument => malformed_protobuf_is_invalid_argument;
    timestamps_beyond_the_window_are_rejected => timestamps_beyond_the_window_are_rejected;
    one_collector_is_limited_in_streams_and_bytes => one_collector_is_limited_in_streams_and_bytes;
}
