//! The host's operations port: `/healthz` and `/metrics` for every customer at once.
//!
//! `/metrics` is every customer's registry with a leading `customer` label
//! ([`crate::metrics::render_labelled`]) followed by the host's own `hl7gw_host_*` series;
//! `/healthz` is 200 only when every customer is healthy, each problem's `subject` starting
//! with its customer's code.
//!
//! The same port serves the operator console for every customer × environment of the host
//! ([`crate::console`]), built from each customer's [`HostedParts`]`::console` in
//! [`super::serve`]; [`HostView::customers`] hands out those parts.

use std::sync::{Arc, RwLock};

use crate::app::HostedParts;
use crate::config::EnvName;
use crate::health::{HealthReport, HealthSource, Problem};
use crate::server::MetricsSource;

use super::sni::HostCounters;

/// One customer's environment as the host runs it.
#[derive(Clone)]
pub struct HostedCustomer {
    /// The customer's code.
    pub code: String,
    /// The environment.
    pub env: EnvName,
    /// Its store, metrics, health check and route.
    pub parts: HostedParts,
}

/// Every customer the host runs, for its operations port.
pub struct HostView {
    customers: RwLock<Vec<(HostedCustomer, Option<String>)>>,
    /// Customers whose gateway did not start, with why.
    unstarted: RwLock<Vec<(String, String)>>,
    counters: Arc<HostCounters>,
    /// The shared EMS-facing listeners' own registry (`customer="host"`).
    ems_metrics: Arc<crate::metrics::Metrics>,
}

impl HostView {
    pub(super) fn new(counters: Arc<HostCounters>) -> Self {
        Self {
            customers: RwLock::new(Vec::new()),
            unstarted: RwLock::new(Vec::new()),
            counters,
            ems_metrics: Arc::new(crate::metrics::Metrics::new()),
        }
    }

    /// Where the shared EMS-facing listeners count their connections and refusals.
    pub(super) fn ems_metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.ems_metrics.clone()
    }

    pub(super) fn add(&self, customer: HostedCustomer) {
        self.write().push((customer, None));
    }

    /// Records that `code`'s gateway did not start, with why.
    pub(super) fn not_started(&self, code: &str, why: String) {
        self.unstarted
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((code.to_owned(), why));
    }

    /// Marks `code`'s gateway stopped, with why.
    pub(super) fn stopped(&self, code: &str, why: String) {
        for (customer, stopped) in self.write().iter_mut() {
            if customer.code == code {
                *stopped = Some(why.clone());
            }
        }
    }

    /// The customers whose gateway did not start, with why.
    fn unstarted(&self) -> Vec<(String, String)> {
        self.unstarted
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why `code`'s gateway stopped (or did not start), when it has.
    pub(super) fn stopped_reason(&self, code: &str) -> Option<String> {
        let stopped = self
            .read()
            .iter()
            .find(|(customer, _)| customer.code == code)
            .and_then(|(_, stopped)| stopped.clone());
        stopped.or_else(|| {
            self.unstarted
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|(c, _)| c == code)
                .map(|(_, why)| format!("it did not start: {why}"))
        })
    }

    /// Every customer the host runs, in the order of its specs: the per-customer parts the
    /// operations port mounts its pages on.
    pub fn customers(&self) -> Vec<HostedCustomer> {
        self.read().iter().map(|(c, _)| c.clone()).collect()
    }

    /// The host's own counters.
    pub fn counters(&self) -> &HostCounters {
        &self.counters
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(HostedCustomer, Option<String>)>> {
        self.customers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<(HostedCustomer, Option<String>)>> {
        self.customers.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl MetricsSource for HostView {
    fn render(&self) -> String {
        let customers = self.read();
        // The host's own EMS doors under `customer="host"` (no customer may be called
        // that: `hl7gw validate` refuses the code).
        let parts: Vec<(&str, &crate::metrics::Metrics)> =
            std::iter::once(("host", &*self.ems_metrics))
                .chain(
                    customers
                        .iter()
                        .map(|(c, _)| (c.code.as_str(), &*c.parts.metrics)),
                )
                .collect();
        let mut text = crate::metrics::render_labelled("customer", &parts);
        text.push_str(&self.counters.render());
        text
    }
}

/// The host's `/healthz`: every customer's check, run at once.
pub(super) struct HostHealth(pub(super) Arc<HostView>);

impl HealthSource for HostHealth {
    async fn report(&self) -> HealthReport {
        let customers: Vec<(HostedCustomer, Option<String>)> = self.0.read().clone();
        let mut checks = tokio::task::JoinSet::new();
        let mut problems: Vec<Problem> = self
            .0
            .unstarted()
            .into_iter()
            .map(|(code, why)| Problem {
                check: "task",
                subject: Some(format!("{code}: gateway")),
                detail: format!("did not start: {why}"),
            })
            .collect();
        for (customer, stopped) in customers {
            if let Some(why) = stopped {
                problems.push(Problem {
                    check: "task",
                    subject: Some(format!("{}: gateway", customer.code)),
                    detail: why,
                });
                continue;
            }
            checks.spawn(async move {
                let report = customer.parts.health.report().await;
                (customer.code, report)
            });
        }
        let mut found = Vec::new();
        while let Some(done) = checks.join_next().await {
            if let Ok(one) = done {
                found.push(one);
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        for (code, report) in found {
            problems.extend(report.problems.into_iter().map(|p| Problem {
                subject: Some(match p.subject {
                    Some(subject) => format!("{code}: {subject}"),
                    None => code.clone(),
                }),
                ..p
            }));
        }
        HealthReport { problems }
    }
}
