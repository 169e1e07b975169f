//! gRPC ingest over loopback, on SQLite and on a real PostgreSQL: acks, idempotent replays,
//! per-item rejections, refused credentials, size limits, and restarts that lose nothing acked.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::*;
use patchwatch_aggregator::config::TokenConfig;
use patchwatch_config::ServerTls;
use patchwatch_proto::ingest_client::IngestClient;
use patchwatch_proto::{Batch, Finding, HealthRequest};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

backend_tests! {
    streams_batches_and_gets_an_ack_for_each => streams_batches_and_gets_an_ack_for_each;
    replayed_batch_changes_nothing => replayed_batch_changes_nothing;
    malformed_items_are_rejected_and_the_rest_survive => malformed_items_are_rejected_and_the_rest_survive;
    bad_token_is_refused => bad_token_is_refused;
    missing_client_certificate_is_refused => missing_client_certificate_is_refused;
    oversized_message_is_refused => oversized_message_is_refused;
    restart_mid_stream_loses_nothing_acked => restart_mid_stream_loses_nothing_acked;
    the_run_update_marks_its_primary_finding => the_run_update_marks_its_primary_finding;
    acks_name_the_window_covering_an_owned_host => acks_name_the_window_covering_an_owned_host;
}

/// An ack names the maintenance window covering the batch's host (`preflight_window`, the
/// collector's cue for a preflight snapshot), also for an empty heartbeat batch, and only to
/// the collector that owns the host.
async fn acks_name_the_window_covering_an_owned_host(backend: Backend) {
    let Some((mut config, dir)) = config(backend).await else {
        return;
    };
    config.grpc.tokens = vec![
        TokenConfig::new(
            "exch01-collector",
            patchwatch_config::Secret::from_file(token_file(dir.path(), "a", "token-a")),
        ),
        TokenConfig::new(
            "other-collector",
            patchwatch_config::Secret::from_file(token_file(dir.path(), "b", "token-b")),
        ),
    ];
    let (agg, shutdown) = start(config).await;
    let channel = Endpoint::from_shared(format!("http://{}", agg.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let stream_of = async |token: &'static str| {
        let mut c =
            IngestClient::with_interceptor(channel.clone(), move |mut req: tonic::Request<()>| {
                req.metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
                Ok(req)
            });
        CollectorStream::open(&mut c).await.unwrap()
    };
    let heartbeat = |sequence: u64| Batch {
        sequence,
        host: Some(host("EXCH01")),
        ..Default::default()
    };
    let mut owner = stream_of("token-a").await;
    // The first batch binds EXCH01 to its collector; no window yet.
    let ack = owner.roundtrip(batch("", 1, "EXCH01", "w", 1)).await;
    assert_eq!(ack.preflight_window, "");

    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/v1/windows", agg.http_addr()))
        .header("content-type", "application/json")
        .body(r#"{"id": "cu15-wave", "name": "CU15", "hosts": ["exch*"], "duration": "2h"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let window: serde_json::Value = resp.json().await.unwrap();
    let starts = time::OffsetDateTime::parse(
        window["starts_at"].as_str().expect("starts_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let ack = owner.roundtrip(heartbeat(2)).await;
    assert_eq!(ack.accepted, 0);
    assert_eq!(
        ack.preflight_window,
        format!("cu15-wave@{}", starts.unix_timestamp())
    );
    // Another collector claiming the host learns nothing of its windows.
    let mut other = stream_of("token-b").await;
    assert_eq!(other.roundtrip(heartbeat(1)).await.preflight_window, "");

    shutdown.cancel();
    agg.wait().await.unwrap();
}

/// The agent sends findings before their run ends (none is primary yet) and then the run
/// update naming the primary cause: the stored finding must read as primary.
async fn the_run_update_marks_its_primary_finding(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let mut client = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    let mut first = batch("c1", 1, "EXCH01", "p", 3);
    first.run_updates.clear();
    stream.send(first).await;
    assert_eq!(stream.next().await.unwrap().unwrap().accepted, 3);
    let mut end = run_update("EXCH01-run-1", "EXCH01", 3, "failed", now_ns());
    end.primary_finding_id = "p-1".into();
    stream
        .send(Batch {
            collector_id: "c1".into(),
            sequence: 2,
            findings: vec![],
            run_updates: vec![end],
            host: Some(host("EXCH01")),
        })
        .await;
    assert_eq!(stream.next().await.unwrap().unwrap().accepted, 1);
    let page = get_json(agg.http_addr(), "/api/v1/findings?run=EXCH01-run-1").await;
    let mut primary: Vec<(String, bool)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_owned(),
                f["primary"].as_bool().unwrap(),
            )
        })
        .collect();
    primary.sort();
    assert_eq!(
        primary,
        [
            ("p-0".into(), false),
            ("p-1".into(), true),
            ("p-2".into(), false)
        ]
    );
    let one = get_json(agg.http_addr(), "/api/v1/findings/p-1").await;
    assert_eq!(one["primary"], true, "{one}");
    shutdown.cancel();
    agg.wait().await.unwrap();
}

async fn streams_batches_and_gets_an_ack_for_each(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let mut client = client(agg.grpc_addr()).await;
    let health = client.health(HealthRequest {}).await.unwrap().into_inner();
    assert!(health.serving);
    assert_eq!(
        health.store,
        if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );

    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    // Pipelined: send five batches before reading any ack.
    for seq in 1..=5 {
        stream
            .send(batch("c1", seq, "EXCH01", &format!("b{seq}"), 10))
            .await;
    }
    let mut acked = BTreeSet::new();
    for _ in 0..5 {
        let ack = stream.next().await.unwrap().unwrap();
        assert_eq!(ack.accepted, 11, "10 findings + 1 run update");
        assert!(ack.rejected.is_empty());
        acked.insert(ack.sequence);
    }
    assert_eq!(acked, (1..=5).collect());

    let ids = all_finding_ids(agg.http_addr()).await;
    assert_eq!(ids.len(), 50);
    let hosts = get_json(agg.http_addr(), "/api/v1/hosts").await;
    let h = &hosts["items"][0];
    assert_eq!(h["hostname"], "EXCH01");
    assert_eq!(h["fqdn"], "exch01.contoso.local");
    assert_eq!(
        h["latest_run"]["phase"], "phase 5",
        "the newest run update wins"
    );
    assert_eq!(h["latest_run"]["outcome"], "in_progress");
    assert_eq!(h["findings_total"], 50);
    assert_eq!(h["findings"]["critical"], 10);

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

async fn replayed_batch_changes_nothing(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let mut client = client(agg.grpc_addr()).await;
    let b = batch("c1", 1, "EXCH01", "r", 20);

    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    let first = stream.roundtrip(b.clone()).await;
    let before = get_json(agg.http_addr(), "/api/v1/findings?limit=100").await;
    let hosts_before = get_json(agg.http_addr(), "/api/v1/hosts").await;

    // The collector lost the ack, reconnects and resends the same batch: same ack, no change.
    drop(stream);
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    let second = stream.roundtrip(b.clone()).await;
    assert_eq!(first, second);
    // And a batch repeating one finding inside itself is fine too.
    let mut doubled = b.clone();
    doubled.sequence = 2;
    doubled.findings.push(b.findings[0].clone());
    assert_eq!(stream.roundtrip(doubled).await.accepted, 22);

    let after = get_json(agg.http_addr(), "/api/v1/findings?limit=100").await;
    assert_eq!(
        before["items"], after["items"],
        "findings, sequence numbers and times unchanged"
    );
    assert_eq!(after["items"].as_array().unwrap().len(), 20);
    let hosts_after = get_json(agg.http_addr(), "/api/v1/hosts").await;
    assert_eq!(
        hosts_before["items"][0]["latest_run"],
        hosts_after["items"][0]["latest_run"]
    );
    assert_eq!(
        hosts_after["items"][0]["findings_total"], 20,
        "counts not doubled"
    );

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

async fn malformed_items_are_rejected_and_the_rest_survive(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let mut client = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut client).await.unwrap();

    let mut b = batch("c1", 1, "EXCH01", "m", 3);
    b.findings.insert(
        1,
        Finding {
            id: String::new(),
            ..finding("x", "EXCH01", "R", 3, "")
        },
    );
    b.findings.push(Finding {
        severity: 9,
        ..finding("bad-sev", "EXCH01", "R", 3, "")
    });
    b.run_updates.push(run_update("", "EXCH01", 1, "p", 1));
    let ack = stream.roundtrip(b).await;
    assert_eq!(ack.accepted, 4, "3 good findings + 1 good run update");
    let reasons: Vec<_> = ack
        .rejected
        .iter()
        .map(|r| (r.index, r.run_update, r.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!((reasons[0].0, reasons[0].1), (1, false));
    assert!(reasons[0].2.contains("finding id is empty"), "{reasons:?}");
    assert_eq!((reasons[1].0, reasons[1].1), (4, false));
    assert!(reasons[1].2.contains("severity 9"), "{reasons:?}");
    assert_eq!((reasons[2].0, reasons[2].1), (1, true));
    assert!(reasons[2].2.contains("run_id is empty"), "{reasons:?}");

    // The stream is still usable, and the good findings were stored.
    let ack = stream.roundtrip(batch("c1", 2, "EXCH01", "n", 2)).await;
    assert_eq!(ack.accepted, 3);
    let ids = all_finding_ids(agg.http_addr()).await;
    assert_eq!(ids, ["m-0", "m-1", "m-2", "n-0", "n-1"]);

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

fn token_file(dir: &std::path::Path, name: &str, value: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path
}

async fn bad_token_is_refused(backend: Backend) {
    let Some((mut config, dir)) = config(backend).await else {
        return;
    };
    config.grpc.tokens = vec![TokenConfig::new(
        "exch01-collector",
        patchwatch_config::Secret::from_file(token_file(dir.path(), "tok", "s3cret-token")),
    )];
    let (agg, shutdown) = start(config).await;
    let channel = Endpoint::from_shared(format!("http://{}", agg.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let with_token = |token: Option<&'static str>| {
        IngestClient::with_interceptor(channel.clone(), move |mut req: tonic::Request<()>| {
            if let Some(t) = token {
                req.metadata_mut()
                    .insert("authorization", t.parse().unwrap());
            }
            Ok(req)
        })
    };
    for (token, expect) in [
        (None, "missing bearer token"),
        (Some("Bearer wrong-token"), "invalid bearer token"),
        (Some("Basic s3cret-token"), "malformed authorization"),
    ] {
        let err = CollectorStream::open(&mut with_token(token))
            .await
            .err()
            .expect("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert!(err.message().contains(expect), "{err:?}");
    }

    // The right token works, and batches take its collector id...
    let mut good = with_token(Some("Bearer s3cret-token"));
    let mut stream = CollectorStream::open(&mut good).await.unwrap();
    let mut b = batch("", 1, "EXCH01", "t", 1);
    assert_eq!(stream.roundtrip(b.clone()).await.accepted, 2);
    let f = get_json(agg.http_addr(), "/api/v1/findings/t-0").await;
    assert_eq!(f["collector_id"], "exch01-collector");
    // ...but may not claim another collector's.
    b.collector_id = "someone-else".into();
    b.sequence = 2;
    stream.send(b).await;
    let err = stream.next().await.expect_err("stream ends with a status");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("someone-else"), "{err:?}");

    shutdown.cancel();
    agg.wait().await.unwrap();
}

/// A CA, a server certificate for `localhost`/127.0.0.1 and a client certificate, as PEM.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn new_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "patchwatch test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["exch01-collector".to_owned()]).unwrap();
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "exch01-collector");
    let client = client_params.signed_by(&client_key, &ca).unwrap();
    Pki {
        ca: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

async fn missing_client_certificate_is_refused(backend: Backend) {
    let Some((mut config, dir)) = config(backend).await else {
        return;
    };
    let pki = new_pki();
    let write = |name: &str, pem: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    config.grpc.tls = Some(ServerTls {
        cert_file: write("server.crt", &pki.server_cert),
        key_file: write("server.key", &pki.server_key),
        client_ca_file: Some(write("ca.crt", &pki.ca)),
    });
    let (agg, shutdown) = start(config).await;
    let endpoint = |identity: Option<Identity>| {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pki.ca))
            .domain_name("localhost");
        if let Some(id) = identity {
            tls = tls.identity(id);
        }
        Endpoint::from_shared(format!("https://{}", agg.grpc_addr()))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
    };

    // With a certificate from the CA: accepted.
    let channel = endpoint(Some(Identity::from_pem(&pki.client_cert, &pki.client_key)))
        .connect()
        .await
        .unwrap();
    let mut client = IngestClient::new(channel);
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    assert_eq!(
        stream
            .roundtrip(batch("c1", 1, "EXCH01", "tls", 1))
            .await
            .accepted,
        2
    );
    drop(stream);
    // The certificate names the collector that owns the host from now on.
    let hosts = get_json(agg.http_addr(), "/api/v1/hosts").await;
    assert_eq!(
        hosts["items"][0]["collector_id"], "exch01-collector",
        "{hosts}"
    );

    // Without one: refused with a clear status before any batch is read.
    let channel = endpoint(None).connect().await.unwrap();
    let err = CollectorStream::open(&mut IngestClient::new(channel))
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(
        err.message().contains("client certificate required"),
        "{err:?}"
    );

    // With a certificate from another CA: the TLS handshake itself fails.
    let other = new_pki();
    let channel = endpoint(Some(Identity::from_pem(
        &other.client_cert,
        &other.client_key,
    )))
    .connect()
    .await;
    if let Ok(channel) = channel {
        let err = IngestClient::new(channel)
            .health(HealthRequest {})
            .await
            .expect_err("refused");
        assert_ne!(err.code(), Code::Ok);
    }

    // Plaintext to the TLS port is refused as well.
    let plain = Endpoint::from_shared(format!("http://{}", agg.grpc_addr()))
        .unwrap()
        .connect()
        .await;
    if let Ok(ch) = plain {
        assert!(IngestClient::new(ch)
            .health(HealthRequest {})
            .await
            .is_err());
    }

    shutdown.cancel();
    agg.wait().await.unwrap();
}

async fn oversized_message_is_refused(backend: Backend) {
    let Some((mut config, _dir)) = config(backend).await else {
        return;
    };
    config.grpc.max_message_bytes = 64 * 1024;
    let (agg, shutdown) = start(config).await;
    let mut client = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    assert_eq!(
        stream
            .roundtrip(batch("c1", 1, "EXCH01", "small", 5))
            .await
            .accepted,
        6
    );

    let mut big = batch("c1", 2, "EXCH01", "big", 1);
    big.findings[0].evidence = vec!["x".repeat(100 * 1024)];
    stream.send(big).await;
    let err = stream
        .next()
        .await
        .expect_err("the stream ends with a status");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("batch too large"), "{err:?}");
    assert!(err.message().contains("65536"), "names the limit: {err:?}");

    // Nothing of the big batch was stored, the small one was, and new streams still work.
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    assert_eq!(
        stream
            .roundtrip(batch("c1", 3, "EXCH01", "after", 1))
            .await
            .accepted,
        2
    );
    let ids = all_finding_ids(agg.http_addr()).await;
    assert!(!ids.iter().any(|i| i.starts_with("big")));
    assert_eq!(ids.len(), 6);

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

/// A collector in miniature: keeps sending batches, remembers which were acked, and when the
/// stream breaks, reconnects to `addr` and resends every batch not yet acked.
async fn deliver_until_status(
    addr: std::net::SocketAddr,
    batches: &[Batch],
    acked: &mut BTreeSet<u64>,
    stop_after_acks: Option<(usize, tokio_util::sync::CancellationToken)>,
) -> Option<tonic::Status> {
    let mut client = client(addr).await;
    let mut stream = CollectorStream::open(&mut client).await.ok()?;
    let pending: Vec<Batch> = batches
        .iter()
        .filter(|b| !acked.contains(&b.sequence))
        .cloned()
        .collect();
    let tx = stream.tx.clone();
    let sender = tokio::spawn(async move {
        for b in pending {
            if tx.send(b).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let mut new_acks = 0;
    let result = loop {
        match stream.next().await {
            Ok(Some(ack)) => {
                assert!(ack.rejected.is_empty());
                acked.insert(ack.sequence);
                new_acks += 1;
                if let Some((n, token)) = &stop_after_acks {
                    if new_acks == *n {
                        token.cancel(); // Stop the aggregator while batches are in flight.
                    }
                }
                if acked.len() == batches.len() {
                    break None;
                }
            }
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    sender.abort();
    result
}

async fn restart_mid_stream_loses_nothing_acked(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let batches: Vec<Batch> = (1..=200)
        .map(|s| batch("c1", s, "EXCH01", &format!("s{s}"), 5))
        .collect();
    let mut acked = BTreeSet::new();

    let (agg, shutdown) = start(config.clone()).await;
    let status = deliver_until_status(
        agg.grpc_addr(),
        &batches,
        &mut acked,
        Some((40, shutdown.clone())),
    )
    .await;
    agg.wait().await.unwrap();
    let status = status.expect("the stream ended with a status when the aggregator stopped");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let acked_before_restart = acked.clone();
    assert!(
        acked_before_restart.len() >= 40 && acked_before_restart.len() < 200,
        "{}",
        acked_before_restart.len()
    );

    // Restart on the same store; everything acked before must be there.
    let (agg, shutdown) = start(config).await;
    let stored: BTreeSet<String> = all_finding_ids(agg.http_addr()).await.into_iter().collect();
    for seq in &acked_before_restart {
        for i in 0..5 {
            assert!(
                stored.contains(&format!("s{seq}-{i}")),
                "acked batch {seq} lost finding {i}"
            );
        }
    }
    // The collector resends what was not acked, and ends with everything stored exactly once.
    let status = deliver_until_status(agg.grpc_addr(), &batches, &mut acked, None).await;
    assert!(status.is_none(), "{status:?}");
    assert_eq!(acked.len(), 200);
    let ids = all_finding_ids(agg.http_addr()).await;
    assert_eq!(ids.len(), 1000);
    shutdown.cancel();
    agg.wait().await.unwrap();
}
