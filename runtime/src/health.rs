//! What `/healthz` answers: 200 only when the gateway can do its work now, otherwise 503
//! with a JSON body naming each thing that is wrong.
//!
//! Three questions, asked on every request:
//!
//! - **store**: it takes a write. One row of the `health` table is rewritten and committed
//!   (fsynced like every write): a full disk, a read-only file or a lock held by another
//!   process fails it. The write is bounded by [`STORE_CHECK_TIMEOUT`], and only one runs at
//!   a time (a check still waiting for the store is itself the answer).
//! - **tasks**: every supervised background task (the sequencer of each stream, the intake,
//!   retention, the gauges) is running: see [`crate::supervise`].
//! - **certificates**: no certificate the gateway loaded (its own and the CAs it trusts)
//!   expires within [`EXPIRY_WARNING_DAYS`] days, the window `hl7gw validate` warns about.
//!
//! The body is `{"status": "ok", "problems": []}` or `{"status": "unavailable", "problems":
//! [{"check": "store" | "task" | "certificate", "subject": …, "detail": …}]}`.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::store::Store;
use crate::supervise::TaskBoard;
use crate::tls::{TlsError, certificates_from_pem};

/// A certificate expiring within this many days makes the gateway unhealthy (and is a
/// warning in `hl7gw validate`).
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// How long the store's write check may take before it counts as failed.
pub const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One thing that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `store`, `task` or `certificate`.
    pub check: &'static str,
    /// What it concerns: the task's name, the certificate's file and subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// What is wrong.
    pub detail: String,
}

/// The answer to one health check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthReport {
    /// Empty when healthy.
    pub problems: Vec<Problem>,
}

impl HealthReport {
    /// True when nothing is wrong.
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }

    /// The response body.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "status": if self.healthy() { "ok" } else { "unavailable" },
            "problems": self.problems,
        })
    }
}

/// Something the operations port can ask for a [`HealthReport`].
pub trait HealthSource: Send + Sync + 'static {
    /// Checks now.
    fn report(&self) -> impl Future<Output = HealthReport> + Send;
}

/// A plain yes/no check (tests, tools): `false` is one problem.
impl<F> HealthSource for F
where
    F: Fn() -> bool + Send + Sync + 'static,
{
    async fn report(&self) -> HealthReport {
        if self() {
            HealthReport::default()
        } else {
            HealthReport {
                problems: vec![Problem {
                    check: "health",
                    subject: None,
                    detail: "the health check failed".to_owned(),
                }],
            }
        }
    }
}

/// A certificate's end of validity, read when the gateway started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// Which file (the spec key and path) and whose certificate (its subject).
    pub subject: String,
    /// The end of its validity.
    pub not_after: OffsetDateTime,
}

/// The end of validity of every certificate in a PEM file; `what` names the file's role
/// (`receive.tls.cert`).
pub fn expiries(what: &'static str, path: &Path) -> Result<Vec<Expiry>, TlsError> {
    let pem = crate::tls::read(what, path)?;
    let mut found = Vec::new();
    for der in certificates_from_pem(what, &pem)? {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| TlsError::Pem {
                what,
                message: e.to_string(),
            })?;
        found.push(Expiry {
            subject: format!("{what} {} ({})", path.display(), cert.subject()),
            not_after: cert.validity().not_after.to_datetime(),
        });
    }
    Ok(found)
}

/// The gateway's health check: the store, the supervised tasks, the certificates.
#[derive(Clone)]
pub struct HealthCheck {
    store: Store,
    tasks: TaskBoard,
    /// Replaced after a certificate reload ([`HealthCheck::expiries`]).
    certificates: Arc<std::sync::RwLock<Vec<Expiry>>>,
    store_timeout: Duration,
    /// Held by the store check in progress (it may outlive a timed-out request).
    store_probe: Arc<tokio::sync::Mutex<()>>,
}

impl HealthCheck {
    /// Checks `store`, the tasks on `tasks` and the expiry of `certificates`.
    pub fn new(store: Store, tasks: TaskBoard, certificates: Vec<Expiry>) -> Self {
        Self {
            store,
            tasks,
            certificates: Arc::new(std::sync::RwLock::new(certificates)),
            store_timeout: STORE_CHECK_TIMEOUT,
            store_probe: Arc::default(),
        }
    }

    /// The certificate expiry dates this check reads: the gateway replaces them after a
    /// reload, so a renewed certificate clears the warning without a restart.
    pub fn expiries(&self) -> Arc<std::sync::RwLock<Vec<Expiry>>> {
        self.certificates.clone()
    }

    /// Wait this long for the store's write (default [`STORE_CHECK_TIMEOUT`]).
    pub fn with_store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Checks everything now.
    pub async fn check(&self) -> HealthReport {
        let mut problems = Vec::new();
        if let Some(detail) = self.store_problem().await {
            problems.push(Problem {
                check: "store",
                subject: Some(self.store.path().display().to_string()),
                detail,
            });
        }
        for (task, why) in self.tasks.down() {
            problems.push(Problem {
                check: "task",
                subject: Some(task),
                detail: format!("not running: {why}"),
            });
        }
        let certificates = match self.certificates.read() {
            Ok(list) => list.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        problems.extend(expiring(&certificates, OffsetDateTime::now_utc()));
        HealthReport { problems }
    }

    async fn store_problem(&self) -> Option<String> {
        let Ok(probe) = self.store_probe.clone().try_lock_owned() else {
            return Some(format!(
                "the previous write check has not finished (more than {} s)",
                self.store_timeout.as_secs_f64()
            ));
        };
        let store = self.store.clone();
        let write = tokio::spawn(async move {
            let _probe = probe;
            store.check_writable().await
        });
        match tokio::time::timeout(self.store_timeout, write).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) => Some(format!("does not take writes: {e}")),
            Ok(Err(_)) => Some("the write check failed".to_owned()),
            Err(_) => Some(format!(
                "a write did not finish within {} s",
                self.store_timeout.as_secs_f64()
            )),
        }
    }
}

impl HealthSource for HealthCheck {
    async fn report(&self) -> HealthReport {
        self.check().await
    }
}

/// The certificates that expire within the warning window of `now`, or have expired.
fn expiring(certificates: &[Expiry], now: OffsetDateTime) -> Vec<Problem> {
    let window = time::Duration::days(EXPIRY_WARNING_DAYS);
    certificates
        .iter()
        .filter(|c| c.not_after - now <= window)
        .map(|c| {
            let date = c.not_after.date();
            let detail = if c.not_after <= now {
                format!("expired on {date}")
            } else {
                format!(
                    "expires on {date}, within {EXPIRY_WARNING_DAYS} days: install its replacement"
                )
            };
            Problem {
                check: "certificate",
                subject: Some(c.subject.clone()),
                detail,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_near_their_end_are_named() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1000);
        let cert = |name: &str, days: i64| Expiry {
            subject: name.to_owned(),
            not_after: now + time::Duration::days(days),
        };
        let found = expiring(&[cert("fine", 31), cert("soon", 29), cert("gone", -1)], now);
        let named: Vec<_> = found
            .iter()
            .map(|p| {
                (
                    p.subject.as_deref().unwrap_or(""),
                    p.detail.starts_with("expired"),
                )
            })
            .collect();
        assert_eq!(named, [("soon", false), ("gone", true)]);
    }

    #[test]
    fn the_body_says_ok_or_names_the_problems() {
        assert_eq!(
            HealthReport::default().to_json(),
            serde_json::json!({"status": "ok", "problems": []})
        );
        let report = HealthReport {
            problems: vec![Problem {
                check: "store",
                subject: None,
                detail: "disk full".into(),
            }],
        };
        assert_eq!(
            report.to_json(),
            serde_json::json!({"status": "unavailable", "problems": [{"check": "store", "detail": "disk full"}]})
        );
    }
}
