//! Stream leases in PostgreSQL: table `stream_leases` (migration 2), one row per outbound
//! stream. Times are the database server's clock, so replicas never compare their own.
//!
//! - **Acquire**: a free (never held, or expired) lease is taken with its token increased by
//!   one; the holder's own lease is renewed with its token unchanged; a live lease of another
//!   replica is left alone (`None`).
//! - **Renew**: only under the same holder and token; expired but not taken over still
//!   renews (nobody else can have recorded meanwhile: that needs a newer token).
//! - **Release**: expires it now, so a replica stopping cleanly hands over at once.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::Row;

use super::instant;
use crate::store::{Fence, LeaseInfo, StoreError};

/// A `timestamptz` column as the store's fixed-width UTC text.
fn utc(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS {column}")
}

fn returning() -> String {
    format!(
        "RETURNING destination, holder, token, {}, {}",
        utc("acquired_at"),
        utc("expires_at")
    )
}

fn lease_info(r: &Row) -> Result<LeaseInfo, StoreError> {
    Ok(LeaseInfo {
        destination: r.try_get("destination")?,
        holder: r.try_get("holder")?,
        token: r.try_get("token")?,
        acquired_at: instant(r, "acquired_at")?,
        expires_at: instant(r, "expires_at")?,
    })
}

pub(crate) async fn acquire(
    pool: Pool,
    destination: String,
    holder: String,
    duration: Duration,
) -> Result<Option<LeaseInfo>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO stream_leases AS l
                 (destination, holder, token, acquired_at, renewed_at, expires_at)
             VALUES ($1, $2, 1, now(), now(), now() + make_interval(secs => $3))
             ON CONFLICT (destination) DO UPDATE SET
                 token = CASE WHEN l.holder = excluded.holder THEN l.token ELSE l.token + 1 END,
                 acquired_at = CASE WHEN l.holder = excluded.holder
                                    THEN l.acquired_at ELSE now() END,
                 holder = excluded.holder,
                 renewed_at = now(),
                 expires_at = excluded.expires_at
             WHERE l.holder = excluded.holder OR l.expires_at <= now()
             {}",
            returning()
        ))
        .await?;
    let row = client
        .query_opt(&stmt, &[&destination, &holder, &duration.as_secs_f64()])
        .await?;
    row.as_ref().map(lease_info).transpose()
}

pub(crate) async fn renew(
    pool: Pool,
    fence: Fence,
    duration: Duration,
) -> Result<Option<LeaseInfo>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE stream_leases
             SET renewed_at = now(), expires_at = now() + make_interval(secs => $4)
             WHERE destination = $1 AND holder = $2 AND token = $3
             {}",
            returning()
        ))
        .await?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &fence.destination,
                &fence.holder,
                &fence.token,
                &duration.as_secs_f64(),
            ],
        )
        .await?;
    row.as_ref().map(lease_info).transpose()
}

pub(crate) async fn release(pool: Pool, fence: Fence) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "UPDATE stream_leases SET expires_at = LEAST(expires_at, now())
             WHERE destination = $1 AND holder = $2 AND token = $3",
        )
        .await?;
    client
        .execute(&stmt, &[&fence.destination, &fence.holder, &fence.token])
        .await?;
    Ok(())
}

/// Every stream's lease, live or expired, by destination.
pub(crate) async fn list(pool: Pool) -> Result<Vec<LeaseInfo>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT destination, holder, token, {}, {} FROM stream_leases ORDER BY destination",
            utc("acquired_at"),
            utc("expires_at")
        ))
        .await?;
    let rows = client.query(&stmt, &[]).await?;
    rows.iter().map(lease_info).collect()
}
