//! The sockets a gateway environment binds, planned before anything binds.
//!
//! A gateway listens on its receive address (from the spec) and, unless the operator moves
//! them, on four ports derived from it: operations (`/healthz`, `/metrics`) on receive
//! port + 1, the inbox API on + 2 (inbox sink only), the intake API on + 3 and the intake MLLP
//! listener on + 4 (sending environments only), all on 127.0.0.1, except that the EMS-facing
//! three bind the spec's `ems.address` when EMS authenticates with mutual TLS. The gateway's start-up and
//! `hl7gw validate` both plan through [`plan`], so a collision between two environments'
//! ports (TEST and PROD on one host) or a receive port too close to 65535 is reported at
//! go-live rather than found as "address in use" at 3 a.m.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// What a listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// HL7 over HTTPS from the Trust's engine.
    Receive,
    /// `/healthz` and `/metrics`.
    Operations,
    /// The inbox API EMS pulls records from.
    Inbox,
    /// The intake API EMS posts outbound messages to.
    Intake,
    /// The intake's MLLP listener.
    IntakeMllp,
}

impl Role {
    /// The `listener` label of its metrics (`hl7gw_tls_failures_total`,
    /// `hl7gw_connections_rejected_total`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Receive => "receive",
            Self::Operations => "operations",
            Self::Inbox => "inbox",
            Self::Intake => "intake",
            Self::IntakeMllp => "intake_mllp",
        }
    }

    /// The listeners that accept connections from outside and so are guarded by an
    /// admission and a TLS accept path (`crate::accept`).
    pub const GUARDED: [Role; 4] = [Self::Receive, Self::Inbox, Self::Intake, Self::IntakeMllp];

    /// Whether EMS is its client (the inbox API, the intake API and the intake MLLP
    /// listener).
    pub fn faces_ems(self) -> bool {
        matches!(self, Self::Inbox | Self::Intake | Self::IntakeMllp)
    }

    /// The offset from the receive port of a derived listener.
    fn offset(self) -> u16 {
        match self {
            Self::Receive => 0,
            Self::Operations => 1,
            Self::Inbox => 2,
            Self::Intake => 3,
            Self::IntakeMllp => 4,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Receive => "receive (HL7 over HTTPS)",
            Self::Operations => "operations (/healthz, /metrics)",
            Self::Inbox => "inbox API",
            Self::Intake => "intake API",
            Self::IntakeMllp => "intake MLLP",
        })
    }
}

/// One planned socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// What it is for.
    pub role: Role,
    /// Where it binds.
    pub addr: SocketAddr,
}

/// Which optional listeners an environment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sides {
    /// The inbox sink: EMS pulls records over the inbox API.
    pub inbox: bool,
    /// A `send:` side: the intake API and MLLP listener.
    pub send: bool,
    /// The address the EMS-facing listeners (inbox, intake, intake MLLP) bind when EMS
    /// authenticates with mutual TLS (`ems.tls`); 127.0.0.1 when `None`.
    pub ems_ip: Option<IpAddr>,
}

/// A receive port whose derived ports do not fit below 65536.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "receive port {port} leaves no room for the {role} port (receive port + {offset}); use a port at most {max}"
)]
pub struct PortRangeError {
    /// The receive port.
    pub port: u16,
    /// The listener that does not fit.
    pub role: Role,
    /// Its offset.
    pub offset: u16,
    /// The largest receive port that fits.
    pub max: u16,
}

/// The listeners of one environment with default local ports, receive first. Port 0 (an
/// ephemeral port, for tests) gives port 0 everywhere.
pub fn plan(receive: SocketAddr, sides: Sides) -> Result<Vec<Listener>, PortRangeError> {
    let mut roles = vec![Role::Receive, Role::Operations];
    if sides.inbox {
        roles.push(Role::Inbox);
    }
    if sides.send {
        roles.extend([Role::Intake, Role::IntakeMllp]);
    }
    let last = roles.iter().map(|r| r.offset()).max().unwrap_or(0);
    roles
        .into_iter()
        .map(|role| {
            if role == Role::Receive {
                return Ok(Listener {
                    role,
                    addr: receive,
                });
            }
            let port = match receive.port() {
                0 => 0,
                p => p.checked_add(role.offset()).ok_or(PortRangeError {
                    port: p,
                    role,
                    offset: role.offset(),
                    max: u16::MAX - last,
                })?,
            };
            let addr = match (role, sides.ems_ip) {
                (Role::Inbox | Role::Intake | Role::IntakeMllp, Some(ip)) => {
                    SocketAddr::new(ip, port)
                }
                _ => derived(port),
            };
            Ok(Listener { role, addr })
        })
        .collect()
}

/// A derived listener's address: local only.
pub fn derived(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// Whether two sockets cannot both be bound on one host: the same port (not 0) and the same
/// address, or either address the wildcard of the same family (`0.0.0.0` takes the port on
/// every IPv4 address, `[::]` on every IPv6 one and, by default on Linux, IPv4 too).
pub fn collide(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || a.port() != b.port() {
        return false;
    }
    let (x, y) = (a.ip(), b.ip());
    x == y
        || (x.is_unspecified() && (x.is_ipv6() || y.is_ipv4()))
        || (y.is_unspecified() && (y.is_ipv6() || x.is_ipv4()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn derived_ports_follow_the_receive_port() -> Result<(), PortRangeError> {
        let all = plan(
            addr("0.0.0.0:443"),
            Sides {
                inbox: true,
                send: true,
                ems_ip: None,
            },
        )?;
        let got: Vec<(Role, String)> = all.iter().map(|l| (l.role, l.addr.to_string())).collect();
        assert_eq!(
            got,
            [
                (Role::Receive, "0.0.0.0:443".into()),
                (Role::Operations, "127.0.0.1:444".into()),
                (Role::Inbox, "127.0.0.1:445".into()),
                (Role::Intake, "127.0.0.1:446".into()),
                (Role::IntakeMllp, "127.0.0.1:447".into()),
            ]
        );
        let bare = plan(addr("127.0.0.1:8443"), Sides::default())?;
        assert_eq!(bare.len(), 2);
        let ems = plan(
            addr("0.0.0.0:443"),
            Sides {
                inbox: true,
                send: true,
                ems_ip: Some(
                    "10.0.0.5"
                        .parse()
                        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                ),
            },
        )?;
        let got: Vec<String> = ems.iter().map(|l| l.addr.to_string()).collect();
        assert_eq!(
            got,
            [
                "0.0.0.0:443",
                "127.0.0.1:444",
                "10.0.0.5:445",
                "10.0.0.5:446",
                "10.0.0.5:447"
            ],
            "the EMS-facing listeners bind the EMS address; operations stays local"
        );
        let ephemeral = plan(
            addr("127.0.0.1:0"),
            Sides {
                inbox: true,
                send: true,
                ems_ip: None,
            },
        )?;
        assert!(ephemeral.iter().all(|l| l.addr.port() == 0));
        Ok(())
    }

    #[test]
    fn a_receive_port_near_the_top_is_refused() {
        let err = plan(
            addr("0.0.0.0:65533"),
            Sides {
                inbox: false,
                send: true,
                ems_ip: None,
            },
        )
        .err();
        assert_eq!(
            err,
            Some(PortRangeError {
                port: 65533,
                role: Role::Intake,
                offset: 3,
                max: 65531,
            })
        );
        assert!(plan(addr("0.0.0.0:65534"), Sides::default()).is_ok());
        assert!(plan(addr("0.0.0.0:65535"), Sides::default()).is_err());
    }

    #[test]
    fn collisions() {
        assert!(collide(addr("127.0.0.1:444"), addr("127.0.0.1:444")));
        assert!(collide(addr("0.0.0.0:444"), addr("127.0.0.1:444")));
        assert!(collide(addr("127.0.0.1:444"), addr("[::]:444")));
        assert!(!collide(addr("127.0.0.1:444"), addr("127.0.0.2:444")));
        assert!(!collide(addr("127.0.0.1:444"), addr("127.0.0.1:445")));
        assert!(!collide(addr("[::1]:444"), addr("0.0.0.0:444")));
        assert!(!collide(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
    }
}
