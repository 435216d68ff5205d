//! Who gets a connection slot on a listener that faces the network (the receiver, and each
//! EMS-facing listener: [`crate::ems`]): at most `limits.connections_per_ip` connections
//! from one source address, and at most `limits.handshakes` connections in the TLS handshake
//! at once. With the per-address cap below both, idle raw TCP connections from one address
//! (a scanner, a broken engine) fill only their own share and another address still gets
//! through. Each listener has its own [`Admission`], so a flood on one takes nothing from
//! another.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::reject;

/// The connection slots of one listener.
pub(crate) struct Admission {
    per_ip_limit: usize,
    open_per_ip: Mutex<HashMap<IpAddr, usize>>,
    handshakes: Arc<Semaphore>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its address already has its share of connections.
    PerIp,
    /// Too many connections are in the TLS handshake.
    Handshakes,
}

impl Refused {
    /// The `hl7gw_connections_rejected_total` reason.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::PerIp => reject::PER_IP,
            Self::Handshakes => reject::HANDSHAKES,
        }
    }
}

/// An admitted connection's slot for its address, given back when dropped.
pub(crate) struct AddressSlot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

/// An admitted connection's place in the handshake budget; drop it once the handshake ends.
pub(crate) struct HandshakeSlot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Admission {
    pub(crate) fn new(per_ip_limit: usize, handshakes: usize) -> Arc<Self> {
        Arc::new(Self {
            per_ip_limit,
            open_per_ip: Mutex::new(HashMap::new()),
            handshakes: Arc::new(Semaphore::new(handshakes.min(Semaphore::MAX_PERMITS))),
        })
    }

    /// A poisoned lock still guards a consistent map: every update is one statement.
    fn open(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open_per_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Slots for a new connection from `ip`, or why there are none.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
    ) -> Result<(AddressSlot, HandshakeSlot), Refused> {
        let mut open = self.open();
        let count = open.get(&ip).copied().unwrap_or(0);
        if count >= self.per_ip_limit {
            return Err(Refused::PerIp);
        }
        let handshake = self
            .handshakes
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Handshakes)?;
        // Only an admitted address gets an entry, so refusals leave nothing behind.
        open.insert(ip, count + 1);
        Ok((
            AddressSlot {
                admission: self.clone(),
                ip,
            },
            HandshakeSlot(handshake),
        ))
    }

    /// Connections open from `ip`.
    #[cfg(test)]
    fn open_from(&self, ip: IpAddr) -> usize {
        self.open().get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.admission.open();
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_fills_only_its_share() {
        let admission = Admission::new(2, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Refused::PerIp));
        // The handshake budget has room left for another address.
        let other = admission.admit(b).unwrap();
        // ... and is then spent, whoever asks.
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(admission.admit(c).err(), Some(Refused::Handshakes));
        assert_eq!(admission.open_from(c), 0);
        assert!(
            admission.open().get(&c).is_none(),
            "a refusal leaves no entry"
        );
        // A finished handshake gives its place back; the address slot stays until close.
        drop(first.1);
        let third = admission.admit(c).unwrap();
        assert_eq!(admission.open_from(a), 2);
        drop(first.0);
        drop(second);
        assert_eq!(admission.open_from(a), 0);
        assert!(admission.open().get(&a).is_none(), "no entry left behind");
        drop((other, third));
    }
}
