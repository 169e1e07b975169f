//! A fresh database per test on the PostgreSQL of `.ci/setup-postgres.sh` (`PATCHWATCH_PG_URL`).

/// The URL of a new, empty database, or `None` (skipped) without `PATCHWATCH_PG_URL`.
pub async fn database() -> Option<String> {
    let url = crate::env_or_skip("PATCHWATCH_PG_URL", "setup-postgres.sh")?;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PATCHWATCH_PG_URL: {e}"));
    tokio::spawn(conn);
    let name = format!("pw_test_{}_{}", std::process::id(), rand::random::<u32>());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    Some(format!("{base}/{name}"))
}
