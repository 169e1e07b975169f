//! The paged fleet on SQLite and PostgreSQL: the store counts hosts by state and reads one page
//! of them worst first (then by name, in byte order), filtered by state and by a search in the
//! name, with the state kept on ingest (a host moves when its runs change, an old maintenance's
//! failure stops counting); and the fleet page over HTTP: the range, previous and next links
//! that keep the filters, counts that link to their state, a clear note when nothing matches,
//! and 400 naming the parameter for a query that makes no sense; and `/api/v1/hosts`, whole
//! without parameters and paged with the same filters with them.

use std::net::SocketAddr;

use crate::common::*;
use patchwatch_aggregator::model::{
    FleetPage, FleetQuery, HostInfoRecord, NewHost, NewRun, StateCounts, ValidBatch,
};
use patchwatch_aggregator::store::Store;

backend_tests! {
    the_store_pages_the_fleet_worst_first_with_its_filters => store_pages;
    a_hosts_place_follows_its_runs => state_follows_runs;
    the_fleet_page_pages_filters_and_refuses_bad_queries => http_pages;
    the_hosts_api_pages_with_the_same_filters => api_pages;
}

const HOUR: i64 = 3_600_000_000_000;

/// Host `name` with one run per `(file, outcome, updated_ns)`.
fn host_batch(name: &str, runs: &[(&str, i32, i64)]) -> ValidBatch {
    ValidBatch {
        collector_id: format!("{name}-collector"),
        received_ns: 1,
        hosts: vec![NewHost {
            info: HostInfoRecord {
                hostname: name.into(),
                fqdn: format!("{}.contoso.local", name.to_lowercase()),
                ..HostInfoRecord::default()
            },
        }],
        findings: Vec::new(),
        runs: runs
            .iter()
            .map(|(file, outcome, at)| NewRun {
                run_id: format!("{name}-{file}"),
                host: name.into(),
                source_path: (*file).into(),
                log_kind: 1,
                outcome: *outcome,
                phase: "Mailbox role".into(),
                updated_ns: *at,
                last_line_ns: *at,
                ..NewRun::default()
            })
            .collect(),
    }
}

/// The outcome of host `i` of [`fill`]: every 7th failed, every 11th stalled, every 5th in
/// progress, the rest succeeded.
fn outcome(i: usize) -> i32 {
    if i.is_multiple_of(7) {
        3
    } else if i.is_multiple_of(11) {
        4
    } else if i.is_multiple_of(5) {
        1
    } else {
        2
    }
}

/// `n` hosts `H000`.. with a setup run each (outcome by [`outcome`]) and a succeeded
/// ServiceControl run; returns the expected counts.
async fn fill(store: &dyn Store, n: usize) -> StateCounts {
    let mut counts = StateCounts::default();
    for i in 0..n {
        let name = format!("H{i:03}");
        let o = outcome(i);
        store
            .write_batch(host_batch(
                &name,
                &[
                    ("ExchangeSetup.log", o, 10 * HOUR),
                    ("ServiceControl.log", 2, 10 * HOUR + 1),
                ],
            ))
            .await
            .unwrap();
        counts.add(
            patchwatch_aggregator::model::state_rank(patchwatch_aggregator::model::outcome_name(o)),
            1,
        );
    }
    counts
}

fn names(p: &FleetPage) -> Vec<&str> {
    p.hosts.iter().map(|h| h.hostname.as_str()).collect()
}

fn query(state: Option<u8>, text: Option<&str>, page: u64, per_page: u32) -> FleetQuery {
    FleetQuery {
        state,
        text: text.map(str::to_owned),
        page,
        per_page,
    }
}

async fn store_pages(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let store = agg.store();
    let expected = fill(store.as_ref(), 250).await;
    // A host that has only sent its identity: no state, counted among the hosts, listed last.
    store.write_batch(host_batch("zz-new", &[])).await.unwrap();

    // Worst first, then by name; the whole fleet's counts on every page.
    let mut all = Vec::new();
    for page in 1..=6 {
        let p = store.fleet(query(None, None, page, 50)).await.unwrap();
        assert_eq!(p.page, page);
        assert_eq!(p.matched, 251);
        assert_eq!(p.counts.failed, expected.failed);
        assert_eq!(p.counts.other, 1);
        assert_eq!(p.counts.total(), 251);
        assert!(p.hosts.len() <= 50);
        all.extend(p.hosts.into_iter().map(|h| (h.state, h.hostname)));
    }
    assert_eq!(all.len(), 251, "every host once");
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| {
        patchwatch_aggregator::model::state_rank(&a.0)
            .cmp(&patchwatch_aggregator::model::state_rank(&b.0))
            .then_with(|| a.1.cmp(&b.1))
    });
    assert_eq!(all, sorted, "worst first, then by name");
    assert_eq!(all[0], ("failed".to_owned(), "H000".to_owned()));
    assert_eq!(all[250], ("unspecified".to_owned(), "zz-new".to_owned()));
    assert_eq!(
        expected,
        StateCounts {
            other: 0,
            ..store.fleet(query(None, None, 1, 1)).await.unwrap().counts
        }
    );

    // One state: only its hosts, on pages of their own; the counts stay the fleet's.
    let failed = store.fleet(query(Some(0), None, 1, 10)).await.unwrap();
    assert_eq!(failed.matched, expected.failed);
    assert_eq!(names(&failed)[..3], ["H000", "H007", "H014"]);
    assert!(failed.hosts.iter().all(|h| h.state == "failed"));
    let second = store.fleet(query(Some(0), None, 2, 10)).await.unwrap();
    assert_eq!(names(&second)[0], "H070");
    assert_eq!(second.counts, failed.counts);
    let stalled = store.fleet(query(Some(1), None, 1, 100)).await.unwrap();
    assert_eq!(stalled.matched, expected.stalled);
    assert!(stalled.hosts.iter().all(|h| h.state == "stalled"));

    // A search: a substring of the name or the FQDN, any case, with or without a state.
    let found = store.fleet(query(None, Some("h01"), 1, 100)).await.unwrap();
    assert_eq!(found.matched, 10, "H010..H019");
    assert_eq!(names(&found)[0], "H014", "the failed one first");
    let by_fqdn = store
        .fleet(query(None, Some("H123.CONTOSO"), 1, 100))
        .await
        .unwrap();
    assert_eq!(names(&by_fqdn), ["H123"]);
    let both = store
        .fleet(query(Some(0), Some("h01"), 1, 100))
        .await
        .unwrap();
    assert_eq!(names(&both), ["H014"]);
    // LIKE's wildcards are text here.
    let literal = store.fleet(query(None, Some("h_1"), 1, 100)).await.unwrap();
    assert_eq!(literal.matched, 0);
    assert!(literal.hosts.is_empty());
    assert_eq!(literal.page, 1);

    // A page past the last is the last; so is one far past it.
    let last = store.fleet(query(None, None, 99, 100)).await.unwrap();
    assert_eq!((last.page, last.hosts.len()), (3, 51));
    let huge = store.fleet(query(None, None, u64::MAX, 100)).await.unwrap();
    assert_eq!((huge.page, names(&huge)), (3, names(&last)));

    shutdown.cancel();
    agg.wait().await.unwrap();
}

async fn state_follows_runs(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let store = agg.store();
    let failed = || query(Some(0), None, 1, 100);
    store
        .write_batch(host_batch("EX01", &[("ExchangeSetup.log", 1, 10 * HOUR)]))
        .await
        .unwrap();
    store
        .write_batch(host_batch("EX02", &[("ExchangeSetup.log", 2, 10 * HOUR)]))
        .await
        .unwrap();
    assert!(store.fleet(failed()).await.unwrap().hosts.is_empty());

    // A Windows Installer log fails: the host is failed, whatever its other logs say.
    store
        .write_batch(host_batch("EX02", &[("MSI1.LOG", 3, 11 * HOUR)]))
        .await
        .unwrap();
    let p = store.fleet(failed()).await.unwrap();
    assert_eq!(names(&p), ["EX02"]);
    assert_eq!((p.counts.failed, p.counts.in_progress), (1, 1));

    // A run update without the host's identity (a delta) moves it too.
    let mut delta = host_batch("EX01", &[("ExchangeSetup.log", 4, 12 * HOUR)]);
    delta.hosts.clear();
    store.write_batch(delta).await.unwrap();
    let stalled = store.fleet(query(Some(1), None, 1, 100)).await.unwrap();
    assert_eq!(names(&stalled), ["EX01"]);
    // An older update of the run changes nothing.
    store
        .write_batch(host_batch("EX01", &[("ExchangeSetup.log", 2, 11 * HOUR)]))
        .await
        .unwrap();
    assert_eq!(
        names(&store.fleet(query(Some(1), None, 1, 100)).await.unwrap()),
        ["EX01"]
    );

    // The next maintenance, weeks later: the old failure no longer counts.
    store
        .write_batch(host_batch(
            "EX02",
            &[("ExchangeSetup.log", 2, 30 * 24 * HOUR)],
        ))
        .await
        .unwrap();
    let p = store.fleet(query(None, None, 1, 100)).await.unwrap();
    assert_eq!(p.counts.failed, 0);
    assert_eq!(names(&p), ["EX01", "EX02"]);
    assert_eq!(p.hosts[1].state, "succeeded");

    // A preflight's prediction is not the host's state.
    store
        .write_batch(host_batch("EX03", &[("preflight", 3, 10 * HOUR)]))
        .await
        .unwrap();
    let p = store
        .fleet(query(None, Some("ex03"), 1, 100))
        .await
        .unwrap();
    assert_eq!(p.hosts[0].state, "unspecified");
    assert_eq!(p.counts.other, 1);

    shutdown.cancel();
    agg.wait().await.unwrap();
}

async fn get(http: SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{http}{path}")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// The `data-host` of each fleet row in `html`, in order.
fn rows(html: &str) -> Vec<String> {
    html.split(r#"<tr data-host=""#)
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

async fn http_pages(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let (_, empty) = get(http, "/").await;
    assert!(empty.contains("No hosts have reported yet."), "{empty}");
    let expected = fill(agg.store().as_ref(), 150).await;

    // Page 1 of 2: 100 rows, the range, a next link and no previous one.
    let (status, page) = get(http, "/").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&page).len(), 100);
    assert_eq!(rows(&page)[0], "H000");
    assert!(
        page.contains(r#"<p id="fleet-range" class="muted">Hosts 1–100 of 150</p>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<a id="fleet-next" rel="next" href="/?page=2">"#),
        "{page}"
    );
    assert!(!page.contains(r#"id="fleet-prev""#));
    assert!(page.contains(&format!(
        r#"<span class="value" id="stat-failed">{}</span>"#,
        expected.failed
    )));
    assert!(
        page.contains(r#"<a class="stat" href="/?state=failed" data-state="failed">"#),
        "{page}"
    );
    assert!(page.contains(r#"id="fleet-empty" class="empty" hidden"#));

    // Page 2: the other 50, a previous link.
    let (_, two) = get(http, "/?page=2").await;
    assert_eq!(rows(&two).len(), 50);
    assert!(two.contains("Hosts 101–150 of 150"), "{two}");
    assert!(
        two.contains(r#"<a id="fleet-prev" rel="prev" href="/">"#),
        "{two}"
    );
    assert!(!two.contains(r#"id="fleet-next""#));
    let mut seen: Vec<String> = rows(&page).into_iter().chain(rows(&two)).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 150, "each host on one page");

    // A state and a search, kept by the links; the count of the state is the current one.
    let (_, failed) = get(http, "/?state=failed&q=h1").await;
    let hosts = rows(&failed);
    assert!(!hosts.is_empty());
    assert!(hosts.iter().all(|h| h.starts_with("H1")), "{hosts:?}");
    assert!(
        failed.contains(r#"data-state="failed" aria-current="page""#),
        "{failed}"
    );
    assert!(failed.contains("(failed, name contains “h1”)"), "{failed}");
    assert!(failed.contains(r#"<input type="hidden" name="state" value="failed">"#));
    assert!(failed.contains(r#"name="q" type="search" value="h1""#));
    let (_, stalled) = get(http, "/?state=stalled").await;
    assert_eq!(rows(&stalled).len() as u64, expected.stalled);

    // Nothing matches: said so, with the way back.
    let (status, none) = get(http, "/?q=nosuchhost").await;
    assert_eq!(status, 200);
    assert!(rows(&none).is_empty());
    assert!(
        none.contains(r#"<p id="fleet-empty" class="empty">No host matches these filters (name contains “nosuchhost”). <a href="/">Show all 150 hosts</a></p>"#),
        "{none}"
    );

    // A page past the last shows the last.
    let (status, past) = get(http, "/?page=99999999999999999999999").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&past), rows(&two));

    // Queries that make no sense: 400, naming the parameter.
    let long = format!("q={}", "x".repeat(300));
    for (q, says) in [
        ("page=two", "page: &quot;two&quot; is not a page number"),
        ("page=0", "page: &quot;0&quot; is not a page number"),
        ("page=-3", "page: &quot;-3&quot; is not a page number"),
        (
            "state=broken",
            "state: &quot;broken&quot; is not one of failed, stalled",
        ),
        (long.as_str(), "q: a host name is at most 253 characters"),
    ] {
        let (status, body) = get(http, &format!("/?{q}")).await;
        assert_eq!(status, 400, "{q}");
        assert!(body.contains(says), "{q}: {body}");
        let (status, body) = get(http, &format!("/fleet/rows?{q}")).await;
        assert_eq!(status, 400, "{q}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            json["error"]
                .as_str()
                .unwrap()
                .starts_with(q.split('=').next().unwrap()),
            "{body}"
        );
    }

    // The live view's fragment is the page's live parts for the same query.
    let (status, fragment) = get(http, "/fleet/rows?page=2").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&fragment), rows(&two));
    for part in [
        r#"id="fleet-summary""#,
        r#"id="fleet-range""#,
        r#"id="fleet-pager""#,
        r#"id="fleet-empty""#,
    ] {
        assert!(fragment.contains(part), "{part}");
    }
    let (_, fragment) = get(http, "/fleet/rows?state=failed&q=h1").await;
    assert_eq!(rows(&fragment), hosts);
    assert!(!fragment.contains("<html"));

    shutdown.cancel();
    agg.wait().await.unwrap();
}

async fn get_json(http: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = get(http, path).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, json)
}

fn hostnames(json: &serde_json::Value) -> Vec<String> {
    json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["hostname"].as_str().unwrap().to_owned())
        .collect()
}

async fn api_pages(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let expected = fill(agg.store().as_ref(), 150).await;

    // No parameter: every host, as before paging existed.
    let (status, all) = get_json(http, "/api/v1/hosts").await;
    assert_eq!(status, 200);
    assert_eq!(hostnames(&all).len(), 150);
    assert!(all.get("next_page").is_none());

    // Pages of 60, worst first like the fleet view, each host once.
    let (_, html) = get(http, "/").await;
    let mut seen = Vec::new();
    let mut page = Some(1u64);
    while let Some(n) = page {
        let (status, json) = get_json(http, &format!("/api/v1/hosts?limit=60&page={n}")).await;
        assert_eq!(status, 200);
        assert_eq!(json["matched"], 150);
        assert_eq!(json["page"], n);
        assert_eq!(json["counts"]["failed"], expected.failed);
        seen.extend(hostnames(&json));
        page = json["next_page"].as_u64();
        assert!(page.is_none_or(|p| p == n + 1), "{json}");
    }
    assert_eq!(seen.len(), 150);
    assert_eq!(seen[..100], rows(&html)[..], "same order as the fleet view");

    // Filters as on the fleet view.
    let (_, failed) = get_json(http, "/api/v1/hosts?state=failed&q=h1").await;
    let names = hostnames(&failed);
    assert!(!names.is_empty());
    assert!(names.iter().all(|h| h.starts_with("H1")), "{names:?}");
    assert_eq!(failed["matched"].as_u64().unwrap(), names.len() as u64);

    // Bad values: 400 naming the parameter.
    for (q, says) in [
        ("state=broken", "state: \"broken\" is not one of"),
        ("page=0", "page: \"0\" is not a page number"),
        ("limit=0", "limit must be at least 1"),
        ("limit=100000", "above the maximum page size"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = get_json(http, &format!("/api/v1/hosts?{q}")).await;
        assert_eq!(status, 400, "{q}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{q}: {body}");
    }

    shutdown.cancel();
    agg.wait().await.unwrap();
}
