//! The host's EMS-facing side: one inbox API, one intake API and one intake MLLP listener
//! for every customer of the host, instead of three ports per customer.
//!
//! - **HTTP** (the inbox and intake APIs): the customer is the first segment of the path,
//!   its code: `GET /demo/inbox?after=0` is demo's `GET /inbox?after=0`,
//!   `POST /northwest/outbound` northwest's `POST /outbound`. The rest of the request is the
//!   customer's own API, unchanged ([`crate::sink::inbox::InboxApi`],
//!   [`crate::intake::IntakeApi`]). A code no customer has is `404`; a customer without
//!   that API (no inbox sink, or no sending side) is `404` naming why; a customer whose
//!   gateway is stopping, stopped or did not start is `503`. A request with an `Origin`, or
//!   on plain loopback with a `Host` that is not loopback, is `403` before any of these.
//!   Each customer's intake refuses a message whose MSH-6.1 is another customer's facility.
//! - **MLLP** carries no path or name of its own, so each message is routed by its
//!   receiving facility (MSH-6.1) to the one customer whose `send.receiving_facility` it
//!   is, as integration engines route on MSH-6. A facility no customer names is answered
//!   `AR` (error 103, table value not found) and queued nowhere; a customer that names none
//!   is reachable over HTTP only. Each message of a connection is routed on its own and
//!   answered before the next is read, so order within a connection is kept.
//!
//! Who may connect is one rule for the whole host: every customer that runs an EMS-facing
//! API must have the same `ems` (plain loopback, or mutual TLS with the same certificate,
//! key, client CA, CRLs, allowed subjects and address; [`super::serve`] refuses to start
//! otherwise), because EMS is one application with one client certificate. The host loads
//! that material for its doors itself (reloaded on SIGHUP). The doors count their
//! connections and refusals on their own (`customer="host"` in `/metrics`), on the default
//! limits; the accept loops are [`crate::ems_listener`]'s, as a gateway's own.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::ems::EmsAuth;
use crate::hl7::{Message, ParseOptions};
use crate::intake::IntakeApi;
use crate::listeners::Role;
use crate::sink::inbox::{InboxApi, Reply, error};

use super::HostView;

/// One customer's EMS-facing APIs.
#[derive(Debug, Clone)]
pub(super) struct EmsCustomer {
    /// Its code: the first path segment.
    pub(super) code: String,
    /// The receiving facility that routes MLLP messages to it (empty: none).
    pub(super) facility: String,
    /// Its inbox API, when its sink is the inbox.
    pub(super) inbox: Option<InboxApi>,
    /// Its intake, when it sends.
    pub(super) intake: Option<IntakeApi>,
    /// Turns true when its gateway begins to stop (`None`: it did not start).
    pub(super) stopping: Option<watch::Receiver<bool>>,
}

impl EmsCustomer {
    /// Whether its gateway is not running: stopping, stopped, or never started.
    fn down(&self, view: &HostView) -> bool {
        self.stopping.as_ref().is_none_or(|s| *s.borrow())
            || view.stopped_reason(&self.code).is_some()
    }
}

/// Which customer a request or an MLLP message is for.
pub(super) struct EmsRoutes {
    customers: Vec<EmsCustomer>,
    /// MSH-6.1 → index into `customers`.
    facilities: Vec<(String, usize)>,
    view: Arc<HostView>,
    /// Plain loopback: a request's `Host` must be a loopback address (DNS rebinding),
    /// checked before anything about the customers is answered.
    local_host_only: bool,
}

impl EmsRoutes {
    /// The routes to `customers`; an MLLP message goes by the receiving facility its
    /// customer's intake writes (the first component of `send.receiving_facility`). No two
    /// customers name one: [`super::serve`] refuses that before anything starts.
    pub(super) fn new(
        customers: Vec<EmsCustomer>,
        view: Arc<HostView>,
        local_host_only: bool,
    ) -> Self {
        let facilities = customers
            .iter()
            .enumerate()
            .filter(|(_, customer)| !customer.facility.is_empty())
            .map(|(index, customer)| (customer.facility.clone(), index))
            .collect();
        // Each customer's intake refuses a message naming another customer's facility, so
        // one posted under the wrong path is not queued for the wrong Trust.
        for customer in &customers {
            if let Some(intake) = &customer.intake {
                intake.refuse_facilities_of(
                    customers
                        .iter()
                        .filter(|other| other.code != customer.code && !other.facility.is_empty())
                        .map(|other| (other.facility.clone(), other.code.clone()))
                        .collect(),
                );
            }
        }
        Self {
            customers,
            facilities,
            view,
            local_host_only,
        }
    }

    /// The receiving facility routed to each customer (`None`: reachable over HTTP only).
    pub(super) fn facility_of(&self, code: &str) -> Option<&str> {
        let index = self.customers.iter().position(|c| c.code == code)?;
        self.facilities
            .iter()
            .find(|(_, i)| *i == index)
            .map(|(f, _)| f.as_str())
    }

    /// The answer to an HTTP request on the host's `role` listener (inbox or intake).
    async fn answer(&self, role: Role, request: Request<Incoming>, peer: SocketAddr) -> Reply {
        // A web page's request, or one by a name that is not loopback on plain loopback,
        // learns nothing about the customers.
        if request.headers().contains_key(hyper::header::ORIGIN) {
            return error(StatusCode::FORBIDDEN, "requests from web pages are refused");
        }
        if self.local_host_only && !crate::sink::inbox::host_is_local(&request) {
            return error(StatusCode::FORBIDDEN, "Host must be a loopback address");
        }
        let path = request.uri().path().to_owned();
        let (code, rest) = split_customer(&path);
        let Some(customer) = self.customers.iter().find(|c| c.code == code) else {
            tracing::info!(peer = %peer, path = %crate::inbound::shown(&path), listener = role.label(), "host EMS API: no such customer");
            return error(
                StatusCode::NOT_FOUND,
                &format!(
                    "no customer {:?} on this host: the path starts with the customer's code ({})",
                    crate::inbound::shown(code),
                    self.codes()
                ),
            );
        };
        if customer.down(&self.view) {
            // Why is in the host's log and /healthz, not for EMS.
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("customer {code}'s gateway is not running"),
            );
        }
        match role {
            Role::Inbox => match &customer.inbox {
                Some(api) => api.answer(request, rest).await,
                None => error(
                    StatusCode::NOT_FOUND,
                    &format!("customer {code} has no inbox: its sink is not the inbox"),
                ),
            },
            _ => match &customer.intake {
                Some(api) => api.answer(request, rest, peer).await,
                None => error(
                    StatusCode::NOT_FOUND,
                    &format!("customer {code} has no intake: its environment does not send"),
                ),
            },
        }
    }

    /// The commit ACK for one MLLP message, from the customer whose receiving facility
    /// its MSH-6.1 names; `None` when it is not HL7 (the connection is closed).
    async fn answer_mllp(&self, peer: SocketAddr, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let facility = match Message::parse_with(&bytes, &ParseOptions::lenient()) {
            Ok(message) => message.header_text(6, 1).into_owned(),
            Err(_) => {
                tracing::info!(peer = %peer, reason = "not_hl7", "host intake MLLP: message refused, not HL7; connection closed");
                return None;
            }
        };
        let found = self
            .facilities
            .iter()
            .find(|(f, _)| *f == facility)
            .and_then(|(_, i)| self.customers.get(*i));
        let Some(customer) = found else {
            tracing::info!(peer = %peer, facility = %crate::inbound::shown(&facility), reason = "unknown_facility", "host intake MLLP: message refused, no customer receives as its MSH-6");
            return crate::intake::host_refusal(
                &bytes,
                crate::hl7::AckCode::ApplicationReject,
                crate::hl7::ack::error_code::TABLE_VALUE_NOT_FOUND,
                format!(
                    "MSH-6 {:?} is no customer's receiving facility on this host",
                    crate::inbound::shown(&facility)
                ),
            );
        };
        match &customer.intake {
            Some(api) if !customer.down(&self.view) => api.answer_mllp(peer, &bytes).await,
            // Not running (or never started, so no intake): AE, try again later.
            _ => crate::intake::host_refusal(
                &bytes,
                crate::hl7::AckCode::ApplicationError,
                crate::hl7::ack::error_code::APPLICATION_INTERNAL_ERROR,
                format!("customer {}'s gateway is not running", customer.code),
            ),
        }
    }

    fn codes(&self) -> String {
        let codes: Vec<&str> = self.customers.iter().map(|c| c.code.as_str()).collect();
        codes.join(", ")
    }
}

/// The first component of a receiving facility as the spec writes it (`NWCH^1.2^ISO` →
/// `NWCH`): what routes an MLLP message on the host.
pub(super) fn facility_key(facility: &str) -> String {
    facility.split('^').next().unwrap_or_default().to_owned()
}

/// `/demo/inbox/5` → (`demo`, `/inbox/5`); `/demo` → (`demo`, ``).
fn split_customer(path: &str) -> (&str, &str) {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    match trimmed.find('/') {
        Some(slash) => (&trimmed[..slash], &trimmed[slash..]),
        None => (trimmed, ""),
    }
}

/// The host's three EMS-facing sockets, bound.
pub(super) struct EmsFront {
    pub(super) inbox: TcpListener,
    pub(super) intake: TcpListener,
    pub(super) mllp: TcpListener,
    pub(super) routes: Arc<EmsRoutes>,
    pub(super) auth: EmsAuth,
}

impl EmsFront {
    /// The inbox, intake and MLLP addresses bound.
    pub(super) fn addrs(&self) -> Result<(SocketAddr, SocketAddr, SocketAddr), super::HostError> {
        let addr = |listener: &TcpListener| {
            listener.local_addr().map_err(|source| {
                super::HostError::Server(crate::server::ServerError::Bind {
                    addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                    source,
                })
            })
        };
        Ok((addr(&self.inbox)?, addr(&self.intake)?, addr(&self.mllp)?))
    }

    /// Serves the three listeners until `shutdown` completes.
    pub(super) async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let relay = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let Self {
            inbox,
            intake,
            mllp,
            routes,
            auth,
        } = self;
        let http = |listener, role: Role| {
            let routes = routes.clone();
            crate::ems_listener::serve_http(
                listener,
                auth.door(role),
                stop_rx.clone(),
                move |request, peer| {
                    let routes = routes.clone();
                    async move { routes.answer(role, request, peer).await }
                },
            )
        };
        let mllp_routes = routes.clone();
        let mllp = crate::ems_listener::serve_mllp(
            mllp,
            auth.door(Role::IntakeMllp),
            crate::mllp::ListenerLimits::default(),
            stop_rx.clone(),
            move |message, peer| {
                let routes = mllp_routes.clone();
                async move { routes.answer_mllp(peer, message).await }
            },
        );
        tokio::join!(http(inbox, Role::Inbox), http(intake, Role::Intake), mllp);
        relay.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_customer_is_the_first_path_segment() {
        assert_eq!(
            split_customer("/demo/inbox/5/ack"),
            ("demo", "/inbox/5/ack")
        );
        assert_eq!(split_customer("/demo/inbox"), ("demo", "/inbox"));
        assert_eq!(split_customer("/demo"), ("demo", ""));
        assert_eq!(split_customer("/"), ("", ""));
        assert_eq!(split_customer(""), ("", ""));
    }

    #[test]
    fn a_facility_is_routed_on_its_first_component() {
        assert_eq!(facility_key("NWCH^1.2.826^ISO"), "NWCH");
        assert_eq!(facility_key("DEMO-TRUST"), "DEMO-TRUST");
        assert_eq!(facility_key(""), "");
    }
}
