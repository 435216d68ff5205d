//! The benchmarks' plain PostgreSQL client: a connection to a database of the private
//! cluster, and the check that the cluster commits durably. Both benchmarks include this file
//! (`#[path]`) rather than the library exporting it: `tokio-postgres` is a dev-dependency of
//! this crate, which the library itself does not link.

use hl7gw_tests::postgres::ChildStore;

/// A plain connection to `db`, its connection task spawned on the current runtime.
pub async fn pg_connect(db: &ChildStore) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host={} port={} user={} password={} dbname={}",
            db.host,
            db.port,
            hl7gw_tests::postgres::USER,
            hl7gw_tests::postgres::PASSWORD,
            db.dbname
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to the benchmark's PostgreSQL");
    tokio::spawn(connection);
    client
}

/// The server's `fsync`, `synchronous_commit`, `wal_sync_method` and version, as one line to
/// print; an error when `fsync` or `synchronous_commit` is not `on`, since the figures would
/// then not be durable commits.
pub async fn require_durable(client: &tokio_postgres::Client) -> Result<String, String> {
    let settings = client
        .query_one(
            "SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('wal_sync_method'), version()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let setting = |i: usize| settings.get::<_, String>(i);
    let line = format!(
        "fsync={}, synchronous_commit={}, wal_sync_method={}; {}",
        setting(0),
        setting(1),
        setting(2),
        setting(3)
    );
    if setting(0) != "on" || setting(1) != "on" {
        return Err(format!(
            "the cluster does not commit durably (fsync or synchronous_commit off): {line}"
        ));
    }
    Ok(line)
}
