//! How much of the machine one environment's gateway may take: connections, TLS handshakes,
//! memory held by request bodies, MLLP connections and how long an idle one stays open.
//! Every key has a default ([`super::defaults`]), so a spec names only what it changes.

use serde::{Deserialize, Serialize};

use super::defaults;
use super::units::{ByteSize, Duration};

/// An environment's resource limits (the spec's `limits:`); every key defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Connections served at once by the receiver, and by each EMS-facing listener (counted
    /// apart); past it new connections are closed before TLS.
    #[serde(default = "connections")]
    #[cfg_attr(feature = "schema", schemars(description = format!(
        "Connections served at once by the receiver, and by each EMS-facing listener (counted\n\
         apart); past it new connections are closed before TLS. Default {}.",
        defaults::CONNECTIONS
    )))]
    pub connections: u32,
    /// Connections from one source address at once, on the receiver and on each EMS-facing
    /// listener: less than `connections` and `handshakes`, so one address always leaves room
    /// for another.
    #[serde(default = "connections_per_ip")]
    #[cfg_attr(feature = "schema", schemars(description = format!(
        "Connections from one source address at once, on the receiver and on each EMS-facing\n\
         listener; less than `connections` and `handshakes`, so one address always leaves room\n\
         for another. Default {}.",
        defaults::CONNECTIONS_PER_IP
    )))]
    pub connections_per_ip: u32,
    /// Connections still in the TLS handshake at once, on the receiver and on each EMS-facing
    /// listener.
    #[serde(default = "handshakes")]
    #[cfg_attr(feature = "schema", schemars(description = format!(
        "Connections still in the TLS handshake at once, on the receiver and on each EMS-facing\n\
         listener. Default {}.",
        defaults::HANDSHAKES
    )))]
    pub handshakes: u32,
    /// Bytes of request bodies held in memory at once, across every connection; when spent
    /// the receiver answers 503 with Retry-After. At least `receive.max_body`.
    #[serde(default = "body_memory")]
    #[cfg_attr(feature = "schema", schemars(description = format!(
        "Bytes of request bodies held in memory at once, across every connection; when spent\n\
         the receiver answers 503 with Retry-After. At least `receive.max_body`. Default {}.",
        defaults::BODY_MEMORY
    )))]
    pub body_memory: ByteSize,
    /// Intake MLLP sessions open at once, counted once the client is authenticated; past it
    /// new ones are closed.
    #[serde(default = "mllp_connections")]
    #[cfg_attr(feature = "schema", schemars(description = format!(
        "Intake MLLP sessions open at once, counted once the client is authenticated; past it\n\
         new ones are closed. Default {}.",
        defaults::MLLP_CONNECTIONS
    )))]
    pub mllp_connections: u32,
    /// An intake MLLP connection that sends no byte for this long is closed.
    #[serde(default = "mllp_idle_timeout")]
    #[cfg_attr(feature = "schema", schemars(description = format!(
        "An intake MLLP connection that sends no byte for this long is closed. Default {}.",
        defaults::MLLP_IDLE_TIMEOUT
    )))]
    pub mllp_idle_timeout: Duration,
}

impl Limits {
    /// Every limit at its default.
    pub const DEFAULT: Self = Self {
        connections: defaults::CONNECTIONS,
        connections_per_ip: defaults::CONNECTIONS_PER_IP,
        handshakes: defaults::HANDSHAKES,
        body_memory: defaults::BODY_MEMORY,
        mllp_connections: defaults::MLLP_CONNECTIONS,
        mllp_idle_timeout: defaults::MLLP_IDLE_TIMEOUT,
    };

    /// What is wrong with these limits given the largest body (`None` when the environment
    /// receives nothing): each as the key it concerns and a sentence. `hl7gw validate`
    /// reports them at the key; the gateway refuses to start with them.
    pub fn problems(&self, max_body: Option<u64>) -> Vec<LimitProblem> {
        let mut found = Vec::new();
        let counts = [
            ("connections", self.connections),
            ("connections_per_ip", self.connections_per_ip),
            ("handshakes", self.handshakes),
            ("mllp_connections", self.mllp_connections),
        ];
        for (key, value) in counts {
            if value == 0 {
                found.push(LimitProblem::new(
                    key,
                    format!("limits.{key} is zero: nothing could ever connect"),
                ));
            }
        }
        if self.mllp_idle_timeout.as_millis() == 0 {
            found.push(LimitProblem::new(
                "mllp_idle_timeout",
                "limits.mllp_idle_timeout is zero: every MLLP connection would be closed at once",
            ));
        }
        if self.connections_per_ip >= self.connections || self.connections_per_ip >= self.handshakes
        {
            found.push(LimitProblem::new(
                "connections_per_ip",
                format!(
                    "limits.connections_per_ip ({}) must be less than limits.connections ({}) and limits.handshakes ({}): otherwise one address can take every slot and lock the others out",
                    self.connections_per_ip, self.connections, self.handshakes
                ),
            ));
        }
        if let Some(max_body) = max_body
            && self.body_memory.bytes() < max_body
        {
            found.push(LimitProblem::new(
                "body_memory",
                format!(
                    "limits.body_memory ({}) is less than receive.max_body ({}): a message of the largest size would always be refused with 503",
                    self.body_memory,
                    ByteSize::from_bytes(max_body)
                ),
            ));
        }
        found
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One thing wrong with a [`Limits`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LimitProblem {
    /// The key under `limits:`.
    pub key: &'static str,
    /// What is wrong, as a sentence.
    pub message: String,
}

impl LimitProblem {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
        }
    }
}

fn connections() -> u32 {
    defaults::CONNECTIONS
}
fn connections_per_ip() -> u32 {
    defaults::CONNECTIONS_PER_IP
}
fn handshakes() -> u32 {
    defaults::HANDSHAKES
}
fn body_memory() -> ByteSize {
    defaults::BODY_MEMORY
}
fn mllp_connections() -> u32 {
    defaults::MLLP_CONNECTIONS
}
fn mllp_idle_timeout() -> Duration {
    defaults::MLLP_IDLE_TIMEOUT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_names_only_what_it_changes() {
        let limits: Limits = serde_json::from_str(r#"{"connections_per_ip": 8}"#).unwrap();
        assert_eq!(limits.connections_per_ip, 8);
        assert_eq!(limits.connections, defaults::CONNECTIONS);
        assert_eq!(limits.mllp_idle_timeout, defaults::MLLP_IDLE_TIMEOUT);
        assert!(serde_json::from_str::<Limits>(r#"{"conections": 8}"#).is_err());
        assert_eq!(
            Limits::DEFAULT.problems(Some(defaults::MAX_BODY.bytes())),
            []
        );
    }

    #[test]
    fn limits_that_cannot_work_are_named() {
        let limits = Limits {
            connections: 0,
            connections_per_ip: 64,
            body_memory: ByteSize::from_bytes(1 << 20),
            mllp_idle_timeout: Duration::from_millis(0),
            ..Limits::DEFAULT
        };
        let keys: Vec<_> = limits
            .problems(Some(2 << 20))
            .iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(
            keys,
            [
                "connections",
                "mllp_idle_timeout",
                "connections_per_ip",
                "body_memory"
            ]
        );
        // Without a receiving side the body budget is not judged.
        assert_eq!(limits.problems(None).len(), 3);
    }
}
