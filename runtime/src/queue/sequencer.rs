//! The sequencer: delivers one destination's stream, exactly one message in flight.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::{Pin, pin};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::futures::Notified;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Action, MessageInfo, MessageState, Pending, Queue, QueueError, QueueId};
use crate::client::{FailureClass, Outgoing, Transport};
use crate::config::{FailurePolicies, FailurePolicy, SendConfig};
use crate::hl7::{AckCode, Message};
use crate::store::Fence;

/// Exponential backoff: `first`, doubling after each further failure, at most `max`, with
/// "equal jitter": the delay after the n-th failure is drawn from `[b/2, b]` where
/// `b = min(first × 2^(n-1), max)`. So delays never exceed `max`, and the lower bound
/// (`b/2`) never falls from one failure to the next while the upper bound grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The base delay after the first failure.
    pub first: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Backoff {
    /// From milliseconds, as the spec gives them. A `max` below `first` counts as `first`.
    pub fn from_millis(first_ms: u64, max_ms: u64) -> Self {
        Self {
            first: Duration::from_millis(first_ms),
            max: Duration::from_millis(max_ms),
        }
    }

    /// `min(first × 2^(failures-1), max)`; `failures` counts from 1.
    pub fn base(&self, failures: u32) -> Duration {
        let max = self.max.max(self.first);
        let doublings = failures.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let factor = u32::try_from(factor).unwrap_or(u32::MAX);
        self.first.checked_mul(factor).unwrap_or(max).min(max)
    }

    /// The delay after `failures` failures, `unit` (in `[0, 1]`) placing it in `[b/2, b]`.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let base = self.base(failures);
        let half = base / 2;
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // `mul_f64` rounds through an f64, which can land above `base` for delays of
        // millions of years; the bound holds anyway.
        (half + (base - half).mul_f64(unit)).min(base)
    }
}

/// What to do after each failure class, and the backoff for retries.
///
/// `RetryThenHold(n)` allows the first send plus `n` retries: it holds when the message has
/// failed more than `n` times, counting every failed attempt of that message (whatever its
/// class) since it was queued or last released by an operator. `Skip` keeps the message
/// (state `skipped`, with the reason) and moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policies {
    /// What to do after each failure class.
    pub on_failure: FailurePolicies,
    /// Retry delays.
    pub backoff: Backoff,
}

impl Default for Policies {
    /// The defaults of [`crate::config::defaults`]: what a spec that names no policy gets.
    fn default() -> Self {
        use crate::config::defaults as d;
        Self {
            on_failure: FailurePolicies::DEFAULT,
            backoff: Backoff::from_millis(d::BACKOFF_FIRST.as_millis(), d::BACKOFF_MAX.as_millis()),
        }
    }
}

impl Policies {
    /// The spec's policies for an environment.
    pub fn from_config(send: &SendConfig) -> Self {
        Self {
            on_failure: send.on_failure,
            backoff: Backoff::from_millis(send.backoff_first_ms, send.backoff_max_ms),
        }
    }

    /// The policy for a class.
    pub fn for_class(&self, class: FailureClass) -> FailurePolicy {
        let p = &self.on_failure;
        match class {
            FailureClass::Connect => p.on_connect_error,
            FailureClass::Timeout => p.on_timeout,
            FailureClass::Http5xx => p.on_5xx,
            FailureClass::Http4xx => p.on_4xx,
            FailureClass::BadAck => p.on_bad_ack,
            FailureClass::AckError => p.on_ae,
            FailureClass::AckReject => p.on_ar,
        }
    }
}

fn policy_text(policy: FailurePolicy) -> String {
    match policy {
        FailurePolicy::Retry => "retry".to_owned(),
        FailurePolicy::RetryThenHold(n) => format!("retry({n}) then hold"),
        FailurePolicy::Hold => "hold".to_owned(),
        FailurePolicy::Skip => "skip".to_owned(),
    }
}

/// The policy decision for one failure, made inside the store transaction that records it.
struct Decision {
    class: FailureClass,
    policy: FailurePolicy,
    backoff: Backoff,
    jitter: f64,
    outcome: String,
}

impl Decision {
    fn decide(self, failures: u32) -> Action {
        let key = self.class.spec_key();
        let policy = policy_text(self.policy);
        let retry = Action::Retry(self.backoff.delay(failures, self.jitter));
        match self.policy {
            FailurePolicy::Retry => retry,
            FailurePolicy::RetryThenHold(n) if failures <= n => retry,
            FailurePolicy::RetryThenHold(_) => Action::Hold(format!(
                "{failures} attempts failed ({key}: {policy}); last: {}",
                self.outcome
            )),
            FailurePolicy::Hold => Action::Hold(format!("{key}: {policy}; {}", self.outcome)),
            FailurePolicy::Skip => Action::Skip(format!(
                "skipped by policy {key}: {policy}; {}",
                self.outcome
            )),
        }
    }
}

/// What a sequencer reports as it goes (for metrics, logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequencerEvent {
    /// This replica took the stream's lease and delivers it now.
    Leading {
        /// The fencing token it holds.
        token: i64,
    },
    /// Another replica took the lease over (this one was paused or cut off past its
    /// expiry); this one stops delivering and waits for the lease again.
    LeaseLost {
        /// The token it held.
        token: i64,
    },
    /// A message found in flight at start (its ACK may have been lost) is sent again.
    Resumed {
        /// The message.
        id: QueueId,
        /// Its MSH-10, unchanged.
        control_id: String,
    },
    /// An attempt starts.
    Sending {
        /// The message.
        id: QueueId,
        /// Its MSH-10.
        control_id: String,
        /// 1 for the first send.
        attempt: u32,
    },
    /// Accepted; the stream moves on.
    Delivered {
        /// The message.
        id: QueueId,
        /// AA or CA.
        ack_code: Option<AckCode>,
    },
    /// Failed; sent again after `delay`.
    Retrying {
        /// The message.
        id: QueueId,
        /// Why.
        class: FailureClass,
        /// Failures so far (since queued or released).
        failures: u32,
        /// The backoff chosen.
        delay: Duration,
    },
    /// Failed; the stream is held.
    Held {
        /// The message.
        id: QueueId,
        /// Why.
        class: FailureClass,
        /// The reason recorded.
        reason: String,
    },
    /// Failed; skipped by policy, the stream moves on.
    Skipped {
        /// The message.
        id: QueueId,
        /// Why.
        class: FailureClass,
        /// The reason recorded.
        reason: String,
    },
}

/// Small, good-enough randomness for jitter (splitmix64 seeded from the OS via `RandomState`).
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_nanos(),
        );
        Self(h.finish())
    }

    /// In `[0, 1)`.
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 random bits as a fraction.
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A pending backoff: the head `id` with `failures` failures waits until `until`.
struct Wait {
    id: QueueId,
    failures: u32,
    until: Instant,
}

/// Delivers one destination's stream through a [`Transport`]: takes the head, sends it,
/// waits for the outcome, records it, and only then looks at the next message. See the
/// [module docs](super).
///
/// Waiting (idle, held, backing off) ends early when this process's [`Queue`] handle
/// changes the stream (enqueue, retry, skip) and otherwise re-reads the store every
/// [poll interval](Sequencer::with_poll_interval), so operator commands from another
/// process take effect within one interval.
///
/// **One leader per stream**: a sequencer delivers only while it holds the stream's lease
/// in the store ([`crate::store::Fence`]); it renews it every third of its duration, and
/// every call that marks a message in flight or records an outcome carries the fencing
/// token, checked in the same transaction. Sequencers of other replicas on the same
/// PostgreSQL database wait for the lease and take over (resending the message that was in
/// flight, same MSH-10) within one lease duration of the leader's death. With SQLite the one
/// process holds every lease: still run one sequencer per destination and store file.
pub struct Sequencer<T: Transport> {
    queue: Queue,
    destination: String,
    transport: T,
    policies: Policies,
    poll: Duration,
    events: Option<mpsc::UnboundedSender<SequencerEvent>>,
    jitter: Jitter,
    lease: Duration,
    holder: String,
    /// While leading: the fence every recording call carries, and when to renew.
    leading: Option<Leading>,
}

/// The lease this sequencer holds.
struct Leading {
    fence: Fence,
    renew_at: Instant,
    /// Until when the lease surely holds, by this process's clock: the lease's duration from
    /// the moment the last successful renewal was asked for. A process paused past it (SIGSTOP,
    /// a long GC-like stall of the host) finds it passed when it runs again.
    valid_until: Instant,
}

/// Whether the lease still holds before a message goes out.
enum Confirmed {
    Yes,
    Lost,
    Unknown,
}

impl<T: Transport> std::fmt::Debug for Sequencer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("destination", &self.destination)
            .field("policies", &self.policies)
            .field("poll", &self.poll)
            .field("lease", &self.lease)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// The default interval at which a waiting sequencer re-reads the store.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

enum Wake {
    Shutdown,
    Again,
}

/// How a spell of leadership ended.
enum Led {
    Shutdown,
    Lost,
}

impl<T: Transport> Sequencer<T> {
    /// A sequencer for `destination`'s stream in `queue`.
    pub fn new(
        queue: Queue,
        destination: impl Into<String>,
        transport: T,
        policies: Policies,
    ) -> Self {
        Self {
            queue,
            destination: destination.into(),
            transport,
            policies,
            poll: DEFAULT_POLL,
            events: None,
            jitter: Jitter::new(),
            lease: crate::config::defaults::STREAM_LEASE.to_std(),
            holder: crate::store::holder_id(),
            leading: None,
        }
    }

    /// Hold the stream's lease for this long without renewal (default
    /// [`STREAM_LEASE`](crate::config::defaults::STREAM_LEASE)); renewed every third of it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// Name this replica `holder` in the lease (default [`crate::store::holder_id`]).
    pub fn with_holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    fn fence(&self) -> Option<Fence> {
        self.leading.as_ref().map(|l| l.fence.clone())
    }

    /// Re-read the store at least this often while waiting (default 1 s).
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// Report [`SequencerEvent`]s to this channel (a closed channel is ignored).
    pub fn with_events(mut self, events: mpsc::UnboundedSender<SequencerEvent>) -> Self {
        self.events = Some(events);
        self
    }

    /// The transport, for inspection.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    fn emit(&self, event: SequencerEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    /// Logs a store failure that stops the stream, and shows it in the stream's status.
    fn store_trouble(&self, what: String, error: &dyn std::fmt::Display) {
        tracing::error!(destination = %self.destination, "queue: {what}: {error}");
        self.queue.report_stall(
            &self.destination,
            format!("the store failed: {what}: {error}"),
        );
    }

    /// Delivers the stream until `shutdown` completes: takes the stream's lease (waiting
    /// while another replica holds it), delivers while it holds it, and waits for it again
    /// when it is taken over. A message in flight at shutdown stays `in_flight` and is sent
    /// again by the next leader (same bytes, same MSH-10); dropping the future has the same
    /// effect, except that the lease then lapses instead of being released. Store errors
    /// are logged and retried after the poll interval; they never end the loop.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = pin!(shutdown);
        loop {
            if let Wake::Shutdown = self.acquire(shutdown.as_mut()).await {
                return;
            }
            let ended = self.lead(shutdown.as_mut()).await;
            let leading = self.leading.take();
            self.queue.set_leader(&self.destination, None);
            match (ended, leading) {
                (Led::Shutdown, leading) => {
                    // Hand over at once instead of after the lease lapses; bounded, so a
                    // database that is gone does not hold the shutdown.
                    if let Some(leading) = leading {
                        let release = self.queue.store().lease_release(&leading.fence);
                        if let Ok(Err(e)) = tokio::time::timeout(self.poll, release).await {
                            tracing::warn!(destination = %self.destination, "queue: cannot release the stream's lease: {e}");
                        }
                    }
                    return;
                }
                (Led::Lost, leading) => {
                    let token = leading.map_or(0, |l| l.fence.token);
                    tracing::warn!(
                        destination = %self.destination, token,
                        "queue: the stream's lease was taken over, or could not be renewed before it lapsed; this replica stops delivering it until it leads again"
                    );
                    self.emit(SequencerEvent::LeaseLost { token });
                }
            }
        }
    }

    /// Waits until this replica holds the stream's lease (or shutdown).
    async fn acquire(&mut self, mut shutdown: Pin<&mut impl Future<Output = ()>>) -> Wake {
        loop {
            let store = self.queue.store();
            let asked = Instant::now();
            match store
                .lease_acquire(&self.destination, &self.holder, self.lease)
                .await
            {
                Ok(Some(lease)) => {
                    tracing::info!(
                        destination = %self.destination, holder = %self.holder, token = lease.token,
                        "queue: this replica leads the stream"
                    );
                    self.emit(SequencerEvent::Leading { token: lease.token });
                    self.leading = Some(Leading {
                        fence: lease.fence(),
                        renew_at: Instant::now() + self.renew_every(),
                        valid_until: asked + self.lease,
                    });
                    self.queue.set_leader(&self.destination, Some(lease));
                    return Wake::Again;
                }
                // Another replica leads: nothing here stops the stream.
                Ok(None) => self.queue.clear_stall(&self.destination),
                Err(e) => self.store_trouble("cannot take the stream's lease".to_owned(), &e),
            }
            let wait = self.poll.min(self.renew_every());
            if let Wake::Shutdown = pause(None, shutdown.as_mut(), wait).await {
                return Wake::Shutdown;
            }
        }
    }

    /// Renews the lease when due. `Err(())` when it was taken over; a store error is
    /// reported and tried again (the fence keeps a stale leader from recording anyway).
    async fn renew_if_due(&mut self) -> Result<(), ()> {
        let Some(leading) = &self.leading else {
            return Err(());
        };
        if Instant::now() < leading.renew_at {
            return Ok(());
        }
        let fence = leading.fence.clone();
        let asked = Instant::now();
        match self.queue.store().lease_renew(&fence, self.lease).await {
            Ok(Some(lease)) => {
                self.queue.set_leader(&self.destination, Some(lease));
                let next = Instant::now() + self.renew_every();
                let valid_until = asked + self.lease;
                if let Some(leading) = &mut self.leading {
                    leading.renew_at = next;
                    leading.valid_until = valid_until;
                }
                Ok(())
            }
            Ok(None) => Err(()),
            Err(e) => {
                self.store_trouble("cannot renew the stream's lease".to_owned(), &e);
                Ok(())
            }
        }
    }

    /// Right before a message goes out: whether the lease surely still holds. Past the
    /// moment it surely holds until (this process was paused, or renewals failed), it is
    /// renewed first, so a replica that lost its lease does not send out of turn.
    async fn confirm_lease(&mut self) -> Confirmed {
        let Some(leading) = &mut self.leading else {
            return Confirmed::Lost;
        };
        if Instant::now() < leading.valid_until {
            return Confirmed::Yes;
        }
        leading.renew_at = Instant::now();
        let before = leading.valid_until;
        if self.renew_if_due().await.is_err() {
            return Confirmed::Lost;
        }
        match &self.leading {
            Some(leading) if leading.valid_until > before => Confirmed::Yes,
            // The store did not answer: the lease cannot be confirmed now.
            _ => Confirmed::Unknown,
        }
    }

    /// How long a wait may last before the lease needs renewing.
    fn until_renewal(&self, wanted: Duration) -> Duration {
        match &self.leading {
            Some(leading) => wanted.min(
                leading
                    .renew_at
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ),
            None => wanted,
        }
    }

    /// Delivers the stream while this replica holds the lease.
    async fn lead(&mut self, mut shutdown: Pin<&mut impl Future<Output = ()>>) -> Led {
        let wake = self.queue.wake_handle();
        loop {
            if self.renew_if_due().await.is_err() {
                return Led::Lost;
            }
            match self.queue.recover(&self.destination, self.fence()).await {
                Ok(resumed) => {
                    for m in resumed {
                        tracing::warn!(
                            destination = %self.destination, id = m.id, control_id = %m.control_id,
                            "queue: message was in flight at the last stop or takeover; its ACK may be lost; sending it again with the same MSH-10"
                        );
                        self.emit(SequencerEvent::Resumed {
                            id: m.id,
                            control_id: m.control_id,
                        });
                    }
                    break;
                }
                Err(QueueError::LeaseLost { .. }) => return Led::Lost,
                Err(e) => {
                    self.store_trouble("cannot resume the stream".to_owned(), &e);
                    let wait = self.until_renewal(self.poll);
                    if let Wake::Shutdown = pause(None, shutdown.as_mut(), wait).await {
                        return Led::Shutdown;
                    }
                }
            }
        }
        let mut backoff: Option<Wait> = None;
        // The next message, already marked in flight by the commit that recorded the
        // previous one's delivery.
        let mut begun: Option<Pending> = None;
        loop {
            if self.renew_if_due().await.is_err() {
                return Led::Lost;
            }
            let step = if let Some(next) = begun.take() {
                self.send_begun(next.info, next.raw, shutdown.as_mut())
                    .await
            } else {
                // Registered before the store is read, so a change made meanwhile still wakes us.
                let notified = wake.notified();
                let mut notified = pin!(notified);
                notified.as_mut().enable();
                let poll = self.until_renewal(self.poll);
                // The head's row only: a held or backing-off head's bytes are not read while
                // the stream waits; `begin_attempt` loads them when a send is due.
                let head = match self.queue.head_info(&self.destination).await {
                    Ok(head) => head,
                    Err(e) => {
                        self.store_trouble("cannot read the head of the stream".to_owned(), &e);
                        if let Wake::Shutdown =
                            pause(Some(notified.as_mut()), shutdown.as_mut(), poll).await
                        {
                            return Led::Shutdown;
                        }
                        continue;
                    }
                };
                let Some(head) = head else {
                    // Nothing to send: nothing stops the stream.
                    self.queue.clear_stall(&self.destination);
                    if let Wake::Shutdown =
                        pause(Some(notified.as_mut()), shutdown.as_mut(), poll).await
                    {
                        return Led::Shutdown;
                    }
                    continue;
                };
                if head.state == MessageState::Held {
                    self.queue.clear_stall(&self.destination);
                    if let Wake::Shutdown =
                        pause(Some(notified.as_mut()), shutdown.as_mut(), poll).await
                    {
                        return Led::Shutdown;
                    }
                    continue;
                }
                if let Some(wait) = &backoff {
                    // Still the same message with the same failure count (no operator retry)?
                    if wait.id == head.id && wait.failures == head.failures {
                        let now = Instant::now();
                        if now < wait.until {
                            let left = (wait.until - now).min(poll);
                            if let Wake::Shutdown =
                                pause(Some(notified.as_mut()), shutdown.as_mut(), left).await
                            {
                                return Led::Shutdown;
                            }
                            continue;
                        }
                    }
                }
                backoff = None;
                self.attempt(head, shutdown.as_mut()).await
            };
            match step {
                Step::Shutdown => return Led::Shutdown,
                Step::LeaseLost => return Led::Lost,
                Step::Next => self.queue.clear_stall(&self.destination),
                Step::Begun(next) => {
                    self.queue.clear_stall(&self.destination);
                    begun = Some(*next);
                }
                Step::Backoff(wait) => {
                    self.queue.clear_stall(&self.destination);
                    backoff = Some(wait);
                }
                Step::StoreTrouble => {
                    let wait = self.until_renewal(self.poll);
                    if let Wake::Shutdown = pause(None, shutdown.as_mut(), wait).await {
                        return Led::Shutdown;
                    }
                }
            }
        }
    }

    /// Sends `outgoing` while keeping the lease renewed; `None` when the lease was taken
    /// over meanwhile, or could not be renewed before it lapsed (the send is abandoned: its
    /// outcome could not be recorded, and finishing it might overtake the next leader).
    async fn send_leading(&mut self, outgoing: &Outgoing<'_>) -> Option<crate::client::Outcome> {
        let Some(leading) = &self.leading else {
            return None;
        };
        let (store, mut fence, lease, every) = (
            self.queue.store().clone(),
            leading.fence.clone(),
            self.lease,
            self.renew_every(),
        );
        let (mut renew_at, mut valid_until) = (leading.renew_at, leading.valid_until);
        let keep_renewed = async move {
            loop {
                tokio::time::sleep_until(renew_at.min(valid_until)).await;
                let asked = Instant::now();
                match tokio::time::timeout_at(valid_until, store.lease_renew(&fence, lease)).await {
                    Ok(Ok(Some(info))) => {
                        fence = info.fence();
                        valid_until = asked + lease;
                    }
                    Ok(Ok(None)) => return,
                    // The database did not answer in time. Up to `valid_until` the lease
                    // surely holds; past it another replica may have taken the stream over
                    // and sent the next message, so this send is abandoned rather than
                    // finish out of turn (the message stays in flight and is resent, same
                    // MSH-10, by whoever leads next).
                    _ if Instant::now() >= valid_until => return,
                    _ => {}
                }
                renew_at = Instant::now() + every;
            }
        };
        let outcome = tokio::select! {
            outcome = self.transport.send(outgoing) => Some(outcome),
            () = keep_renewed => None,
        };
        if let Some(leading) = &mut self.leading {
            // Renewed during the send, or due now: the main loop renews when due.
            leading.renew_at = leading.renew_at.min(Instant::now() + every);
        }
        outcome
    }

    async fn attempt(
        &mut self,
        info: MessageInfo,
        shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> Step {
        let raw = match self.queue.begin_attempt(info.id, self.fence()).await {
            Ok(Some(raw)) => raw,
            // An operator skipped or held it between the read and now.
            Ok(None) => return Step::Next,
            Err(QueueError::LeaseLost { .. }) => return Step::LeaseLost,
            Err(e) => {
                self.store_trouble(format!("cannot mark message {} in flight", info.id), &e);
                return Step::StoreTrouble;
            }
        };
        self.send_begun(info, raw, shutdown).await
    }

    /// Sends a message already marked in flight and records its outcome; on an accepting
    /// ACK the same commit marks the next queued message in flight ([`Step::Begun`]).
    async fn send_begun(
        &mut self,
        info: MessageInfo,
        raw: Vec<u8>,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> Step {
        let attempt = info.attempts.saturating_add(1);
        self.emit(SequencerEvent::Sending {
            id: info.id,
            control_id: info.control_id.clone(),
            attempt,
        });
        let charset = Message::parse(&raw)
            .map(|m| m.charset())
            .unwrap_or_default();
        let outgoing = Outgoing {
            raw: &raw,
            control_id: &info.control_id,
            charset,
        };
        match self.confirm_lease().await {
            Confirmed::Yes => {}
            // Still in flight in the store: the leader sends it (again, same MSH-10).
            Confirmed::Lost => return Step::LeaseLost,
            Confirmed::Unknown => return Step::StoreTrouble,
        }
        let outcome = tokio::select! {
            biased;
            () = shutdown.as_mut() => return Step::Shutdown,
            outcome = self.send_leading(&outgoing) => match outcome {
                Some(outcome) => outcome,
                None => return Step::LeaseLost,
            },
        };
        let Some(class) = outcome.failure else {
            let ack_code = outcome.ack_code;
            return match self
                .queue
                .record_delivered_then_begin(info.id, &self.destination, outcome, self.fence())
                .await
            {
                Ok((_, next)) => {
                    tracing::debug!(destination = %self.destination, id = info.id, control_id = %info.control_id, attempt, "queue: delivered");
                    self.emit(SequencerEvent::Delivered {
                        id: info.id,
                        ack_code,
                    });
                    next.map_or(Step::Next, |next| Step::Begun(Box::new(next)))
                }
                Err(QueueError::LeaseLost { .. }) => Step::LeaseLost,
                Err(e) => {
                    // Still in flight in the store: sent again, and answered as a duplicate.
                    self.store_trouble(format!("cannot record the ACK of message {}", info.id), &e);
                    Step::StoreTrouble
                }
            };
        };
        let decision = Decision {
            class,
            policy: self.policies.for_class(class),
            backoff: self.policies.backoff,
            jitter: self.jitter.next(),
            outcome: outcome.to_string(),
        };
        let described = outcome.to_string();
        match self
            .queue
            .record_failure(
                info.id,
                outcome,
                move |failures| decision.decide(failures),
                self.fence(),
            )
            .await
        {
            Err(QueueError::LeaseLost { .. }) => Step::LeaseLost,
            Err(e) => {
                self.store_trouble(
                    format!("cannot record the outcome of message {}", info.id),
                    &e,
                );
                Step::StoreTrouble
            }
            // An operator acted meanwhile; their decision stands.
            Ok(None) => Step::Next,
            Ok(Some((failures, Action::Retry(delay)))) => {
                tracing::warn!(
                    destination = %self.destination, id = info.id, control_id = %info.control_id,
                    failures, delay_ms = delay.as_millis() as u64,
                    "queue: attempt failed, retrying: {described}"
                );
                self.emit(SequencerEvent::Retrying {
                    id: info.id,
                    class,
                    failures,
                    delay,
                });
                Step::Backoff(Wait {
                    id: info.id,
                    failures,
                    until: crate::client::deadline_after(delay),
                })
            }
            Ok(Some((_, Action::Hold(reason)))) => {
                tracing::error!(
                    destination = %self.destination, id = info.id, control_id = %info.control_id,
                    "queue: stream held until an operator retries or skips the message: {reason}"
                );
                self.emit(SequencerEvent::Held {
                    id: info.id,
                    class,
                    reason,
                });
                Step::Next
            }
            Ok(Some((_, Action::Skip(reason)))) => {
                tracing::warn!(
                    destination = %self.destination, id = info.id, control_id = %info.control_id,
                    "queue: message skipped: {reason}"
                );
                self.emit(SequencerEvent::Skipped {
                    id: info.id,
                    class,
                    reason,
                });
                Step::Next
            }
        }
    }
}

enum Step {
    Shutdown,
    LeaseLost,
    Next,
    /// Delivered, and the next message is already in flight: send it without reading the
    /// head again.
    Begun(Box<Pending>),
    Backoff(Wait),
    StoreTrouble,
}

/// Waits for a wake-up (when `notified` is given), `for_`, or shutdown.
async fn pause(
    notified: Option<Pin<&mut Notified<'_>>>,
    shutdown: Pin<&mut impl Future<Output = ()>>,
    for_: Duration,
) -> Wake {
    let sleep = tokio::time::sleep(for_);
    match notified {
        Some(notified) => tokio::select! {
            biased;
            () = shutdown => Wake::Shutdown,
            () = notified => Wake::Again,
            () = sleep => Wake::Again,
        },
        None => tokio::select! {
            biased;
            () = shutdown => Wake::Shutdown,
            () = sleep => Wake::Again,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max_with_bounded_jitter() {
        let b = Backoff::from_millis(100, 1000);
        let bases: Vec<u64> = (1..=6).map(|n| b.base(n).as_millis() as u64).collect();
        assert_eq!(bases, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.base(u32::MAX), Duration::from_millis(1000));
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(200));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(b.delay(3, f64::NAN), Duration::from_millis(200));
        let mut j = Jitter::new();
        for n in 1..40 {
            let u = j.next();
            assert!((0.0..1.0).contains(&u));
            let d = b.delay(n, u);
            assert!(d <= Duration::from_millis(1000) && d >= b.base(n) / 2);
        }
        // max below first counts as first
        assert_eq!(
            Backoff::from_millis(500, 10).base(4),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn the_largest_durations_a_spec_can_write_do_not_overflow() {
        let huge = Backoff::from_millis(u64::MAX, u64::MAX);
        for failures in [0, 1, 2, 33, 64, u32::MAX] {
            let base = huge.base(failures);
            assert_eq!(base, Duration::from_millis(u64::MAX));
            assert!(huge.delay(failures, 1.0) <= base);
            assert!(crate::client::deadline_after(huge.delay(failures, 0.5)) > Instant::now());
        }
        let long_max = Backoff::from_millis(1, u64::MAX);
        assert!(long_max.base(u32::MAX) >= Duration::from_millis(1 << 31));
        assert!(crate::client::deadline_after(Duration::ZERO) <= Instant::now());
    }

    #[test]
    fn retry_then_hold_counts_failures() {
        let d = |policy, failures| {
            Decision {
                class: FailureClass::Http5xx,
                policy,
                backoff: Backoff::from_millis(10, 100),
                jitter: 0.5,
                outcome: "http_5xx, HTTP 503".into(),
            }
            .decide(failures)
        };
        assert!(matches!(
            d(FailurePolicy::RetryThenHold(3), 3),
            Action::Retry(_)
        ));
        match d(FailurePolicy::RetryThenHold(3), 4) {
            Action::Hold(reason) => assert!(
                reason.contains("4 attempts failed (on_5xx: retry(3) then hold)"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            d(FailurePolicy::RetryThenHold(0), 1),
            Action::Hold(_)
        ));
        assert!(matches!(d(FailurePolicy::Retry, 1000), Action::Retry(_)));
        assert!(matches!(d(FailurePolicy::Skip, 1), Action::Skip(_)));
        assert!(matches!(d(FailurePolicy::Hold, 1), Action::Hold(_)));
    }
}
