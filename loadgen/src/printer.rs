//! One simulated printer: a task that owns its MQTT connection and behaves as
//! `agent/src/link.rs` does towards the controller.
//!
//! On every CONNACK: `online: true` (retained, QoS 1; the will says `false`), subscribe to
//! `commands` (QoS 1) and `acks` (QoS 0), publish a status, resend every unacked event in seq
//! order. Then a status every interval at this printer's phase, an event every
//! `--event-every` (kept in a memory outbox until an `ack{applied_seq}` covers it; the oldest
//! are resent when no ack made progress for 5 s, as the agent does), and each new command
//! answered with a `command_result` event. Lost connections are retried with the agent's
//! backoff (0.5 s doubling to 30 s, ±25 %).

use crate::enrol::Enrolled;
use crate::fanout::Fetcher;
use crate::mqtt::{Conn, Login, MqttError};
use crate::settings::EventKind;
use crate::stats::Shared;
use bytes::Bytes;
use farm_protocol::messages::{
    AckMessage, Activity, AgentHealth, Command, Event, Heater, JobAssignment, JobProgress,
    OnlineMessage, Status, StatusMessage,
};
use farm_protocol::{Backoff, Channel, Envelope, PrinterId, Topics};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Packet;
use rustc_hash::FxHashSet;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

/// As the agent: resend the oldest pending events when no ack progressed for this long.
const RESEND_AFTER: Duration = Duration::from_secs(5);
const BURST: usize = 200;
const KEEP_ALIVE: Duration = Duration::from_secs(8);

/// What the run tells every printer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    /// Bumped for each reconnect storm.
    pub storm: u32,
    pub phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Run,
    /// No new events (statuses go on, so printers stay fresh); outstanding events get acked.
    Quiet,
    Stop,
}

/// Everything one printer needs, fixed for the run.
pub struct Spec {
    pub index: usize,
    pub keys: Enrolled,
    pub printer: PrinterId,
    pub topics: Topics,
    pub broker: SocketAddr,
    pub source: Option<IpAddr>,
    pub status_interval: Duration,
    pub status_phase: Duration,
    pub event_every: Option<Duration>,
    pub event_phase: Duration,
    pub event_kind: EventKind,
    pub connect_timeout: Duration,
    /// `--accept-jobs`: report idle, take `assign_job` as the agent does (accept, fetch the
    /// file, verify it, start). Without it a printer always prints and refuses jobs.
    pub jobs: Option<Arc<Fetcher>>,
}

impl Spec {
    fn topic(&self, ch: Channel) -> String {
        self.topics.printer(&self.printer, ch)
    }

    fn seal<B: serde::Serialize>(&self, env: &Envelope<B>) -> Bytes {
        // Our own messages are small and well-formed: sealing cannot fail.
        farm_protocol::seal(env, self.keys.secret.as_bytes())
            .map(Bytes::from)
            .unwrap_or_default()
    }

    fn online(&self, online: bool) -> Bytes {
        self.seal(&Envelope::new(
            self.printer.clone(),
            OnlineMessage::Online { online },
        ))
    }

    /// A printing status of about 560 bytes on the wire; `n` is its `agent.uptime_s`, the
    /// number the stream reader matches the diff to.
    pub fn status(&self, n: u32) -> Bytes {
        self.status_of(n, Some("job-01HQ7ZLOADGEN"))
    }

    /// The status while printing `job`, or idle (no job, heaters cooling) without one.
    fn status_of(&self, n: u32, job: Option<&str>) -> Bytes {
        let p = f64::from(n % 1000) / 1000.0;
        let status = Status {
            state: if job.is_some() {
                Activity::Printing
            } else {
                Activity::Idle
            },
            temps: vec![
                heater("tool0", 214.8, 215.0),
                heater("bed", 59.9, 60.0),
                heater("chamber", 38.2, 0.0),
            ],
            job: job.map(|job_id| JobProgress {
                job_id: job_id.into(),
                progress: p,
                file_pos: (p * 4_096_000.0) as u64,
                file_size: 4_096_000,
                layer: Some(n % 120),
                layer_count: Some(120),
                elapsed_s: f64::from(n),
                eta_s: Some(4575.0),
                extruded_mm: vec![3120.45],
            }),
            message: None,
            agent: AgentHealth {
                version: env!("CARGO_PKG_VERSION").into(),
                backend: "loadgen".into(),
                uptime_s: u64::from(n),
                outbox_pending: 0,
            },
            interval_ms: u32::try_from(self.status_interval.as_millis()).unwrap_or(u32::MAX),
            trays: vec![],
        };
        self.seal(&Envelope::new(
            self.printer.clone(),
            StatusMessage::Status(status),
        ))
    }

    fn event_body(&self, k: u64) -> Event {
        match self.event_kind {
            EventKind::Material => Event::Material {
                job_id: format!("loadgen-{}", self.printer),
                extruded_mm: vec![k as f64 * 12.5],
            },
            EventKind::PrinterReady => Event::PrinterReady {},
            EventKind::FirmwareMessage => Event::FirmwareMessage {
                message: format!("echo:loadgen message {k}"),
            },
        }
    }
}

fn heater(name: &str, actual: f64, target: f64) -> Heater {
    Heater {
        name: name.into(),
        actual,
        target,
    }
}

/// The agent's reconnect schedule (`agent/src/link.rs` `RECONNECT`): 0.5 s doubling to 30 s, ±25 %.
const RECONNECT: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30)).with_jitter(0.25);

fn spread() -> f64 {
    rand::random_range(-1.0..=1.0)
}

/// The memory outbox: events not yet acked, oldest first.
struct Outbox {
    pending: VecDeque<(u64, Event, Bytes)>,
    next_seq: u64,
    made: u64,
    last_progress: Instant,
}

/// Why a connection ended on our side.
enum End {
    Storm,
    Stop,
}

/// Runs a live printer until the run stops.
pub async fn live(
    spec: Spec,
    shared: Arc<Shared>,
    mut ctl: watch::Receiver<Control>,
    first_connect: Arc<Semaphore>,
) {
    let c = &shared.counters;
    let mut out = Outbox {
        pending: VecDeque::new(),
        next_seq: 1,
        made: 0,
        last_progress: Instant::now(),
    };
    let mut executed = FxHashSet::default();
    // Jobs being fetched report here; the job started is what the status then shows.
    let (fetched_tx, mut fetched_rx) = mpsc::unbounded_channel::<(String, Result<(), String>)>();
    let mut printing: Option<String> = spec.jobs.is_none().then(|| "job-01HQ7ZLOADGEN".into());
    let mut n: u32 = 0;
    let mut status_tick =
        tokio::time::interval_at(Instant::now() + spec.status_phase, spec.status_interval);
    status_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let period = spec.event_every.unwrap_or(Duration::from_secs(3600));
    let mut event_tick = tokio::time::interval_at(Instant::now() + spec.event_phase, period);
    event_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
    let mut backoff = RECONNECT;
    let mut permit = Some(first_connect.acquire_owned().await);
    let mut storm_seen = ctl.borrow().storm;
    let (id, token) = (spec.keys.id.clone(), spec.keys.token.clone());
    let will = (spec.topic(Channel::Online), spec.online(false));
    let (status_topic, events_topic) = (spec.topic(Channel::Status), spec.topic(Channel::Events));
    let subs = [
        (spec.topic(Channel::Commands), QoS::AtLeastOnce),
        (spec.topic(Channel::Acks), QoS::AtMostOnce),
    ];

    loop {
        if ctl.borrow().phase == Phase::Stop {
            return;
        }
        let login = Login {
            client_id: &id,
            user: &id,
            pass: &token,
            keep_alive: KEEP_ALIVE,
            clean_session: false,
            will: Some(will.clone()),
        };
        let opened = Conn::open(spec.broker, spec.source, &login, spec.connect_timeout).await;
        permit.take();
        let mut conn = match opened {
            Ok((conn, _)) => conn,
            Err(e) => {
                if c.connect_failures.fetch_add(1, Relaxed) < 5 {
                    eprintln!("{id}: connect failed: {e}");
                }
                tokio::time::sleep(backoff.next(spread())).await;
                continue;
            }
        };
        backoff.reset();
        c.connected.fetch_add(1, Relaxed);
        let end = async {
            conn.publish(&will.0, QoS::AtLeastOnce, true, spec.online(true))
                .await?;
            conn.subscribe(&subs).await?;
            n += 1;
            shared.slots[spec.index].fresh_from.store(n, Relaxed);
            publish_status(&spec, &shared, &mut conn, &status_topic, n, printing.as_deref()).await?;
            out.last_progress = Instant::now();
            let all = out.pending.len();
            resend(&mut conn, &events_topic, &out, all, &shared).await?;
            loop {
                tokio::select! {
                    p = conn.read() => match p? {
                        Packet::Publish(p) => {
                            if p.qos != QoS::AtMostOnce {
                                conn.puback(p.pkid).await?;
                            }
                            let (new, fetch) = on_publish(&spec, &shared, &mut out, &mut executed, &p.topic, &p.payload);
                            if let (Some(a), Some(f)) = (fetch, &spec.jobs) {
                                let (f, tx, token) = (f.clone(), fetched_tx.clone(), token.clone());
                                tokio::spawn(async move {
                                    let r = f.fetch(&a, &token).await;
                                    let _ = tx.send((a.job_id, r));
                                });
                            }
                            for wire in new {
                                conn.publish(&events_topic, QoS::AtLeastOnce, false, wire).await?;
                                c.events_published.fetch_add(1, Relaxed);
                            }
                        }
                        Packet::PubAck(_) => { c.pubacks.fetch_add(1, Relaxed); }
                        _ => {}
                    },
                    _ = status_tick.tick() => {
                        n += 1;
                        publish_status(&spec, &shared, &mut conn, &status_topic, n, printing.as_deref()).await?;
                    }
                    Some((job_id, r)) = fetched_rx.recv() => {
                        // As the agent: a verified file starts printing; a failed fetch fails the job.
                        let body = match r {
                            Ok(()) => {
                                printing = Some(job_id.clone());
                                Event::job_started(job_id)
                            }
                            Err(reason) => Event::JobFinished {
                                job_id,
                                outcome: farm_protocol::messages::Outcome::Failed,
                                reason: Some(reason),
                                extruded_mm: vec![],
                                duration_s: 0.0,
                            },
                        };
                        let wire = push_event(&spec, &shared, &mut out, body);
                        conn.publish(&events_topic, QoS::AtLeastOnce, false, wire).await?;
                        c.events_published.fetch_add(1, Relaxed);
                    }
                    _ = event_tick.tick(), if spec.event_every.is_some() => {
                        if ctl.borrow().phase == Phase::Run {
                            let wire = make_event(&spec, &shared, &mut out);
                            conn.publish(&events_topic, QoS::AtLeastOnce, false, wire).await?;
                            c.events_published.fetch_add(1, Relaxed);
                        }
                    }
                    _ = housekeeping.tick() => {
                        if out.pending.is_empty() {
                            out.last_progress = Instant::now();
                        } else if out.last_progress.elapsed() >= RESEND_AFTER {
                            out.last_progress = Instant::now();
                            let k = out.pending.len().min(BURST);
                            c.events_resent.fetch_add(k as u64, Relaxed);
                            resend(&mut conn, &events_topic, &out, k, &shared).await?;
                        }
                        if spec.status_interval >= KEEP_ALIVE / 2 {
                            conn.ping().await?;
                        }
                    }
                    r = ctl.changed() => {
                        let now = *ctl.borrow_and_update();
                        if r.is_err() || now.phase == Phase::Stop {
                            let _ = conn.publish(&will.0, QoS::AtLeastOnce, true, spec.online(false)).await;
                            let _ = conn.disconnect().await;
                            return Ok::<End, MqttError>(End::Stop);
                        }
                        if now.storm != storm_seen {
                            storm_seen = now.storm;
                            return Ok(End::Storm);
                        }
                    }
                }
            }
        }
        .await;
        c.connected.fetch_sub(1, Relaxed);
        drop(conn);
        match end {
            Ok(End::Stop) => return,
            Ok(End::Storm) => {
                // As after a controller restart: the agent's first backoff, then reconnect.
                shared.slots[spec.index].fresh_from.store(u32::MAX, Relaxed);
                tokio::time::sleep(RECONNECT.delay_after(1, spread())).await;
            }
            Err(e) => {
                if c.live_disconnects.fetch_add(1, Relaxed) < 5 {
                    eprintln!("{id}: live connection lost: {e}");
                }
                tokio::time::sleep(backoff.next(spread())).await;
            }
        }
    }
}

async fn publish_status(
    spec: &Spec,
    shared: &Shared,
    conn: &mut Conn,
    topic: &str,
    n: u32,
    job: Option<&str>,
) -> Result<(), MqttError> {
    let wire = spec.status_of(n, job);
    let c = &shared.counters;
    c.status_bytes.fetch_add(wire.len() as u64, Relaxed);
    shared.published(spec.index, n);
    conn.publish(topic, QoS::AtMostOnce, true, wire).await?;
    c.statuses_sent.fetch_add(1, Relaxed);
    Ok(())
}

fn make_event(spec: &Spec, shared: &Shared, out: &mut Outbox) -> Bytes {
    out.made += 1;
    let body = spec.event_body(out.made);
    push_event(spec, shared, out, body)
}

/// Gives `body` the next seq, keeps it until acked; the wire form to publish.
fn push_event(spec: &Spec, shared: &Shared, out: &mut Outbox, body: Event) -> Bytes {
    let seq = out.next_seq;
    out.next_seq += 1;
    shared.slots[spec.index].made_seq.store(seq, Relaxed);
    let wire = spec.seal(&Envelope::new(spec.printer.clone(), body.clone()).with_seq(seq));
    out.pending.push_back((seq, body, wire.clone()));
    shared.counters.events_created.fetch_add(1, Relaxed);
    shared.counters.events_pending.fetch_add(1, Relaxed);
    wire
}

async fn resend(
    conn: &mut Conn,
    topic: &str,
    out: &Outbox,
    k: usize,
    shared: &Shared,
) -> Result<(), MqttError> {
    for (_, _, wire) in out.pending.iter().take(k) {
        conn.publish(topic, QoS::AtLeastOnce, false, wire.clone())
            .await?;
        shared.counters.events_published.fetch_add(1, Relaxed);
    }
    Ok(())
}

/// Handles an ack or a command; returns events to publish (command results, renumbered
/// events) and a job to fetch.
fn on_publish(
    spec: &Spec,
    shared: &Shared,
    out: &mut Outbox,
    executed: &mut FxHashSet<String>,
    topic: &str,
    payload: &[u8],
) -> (Vec<Bytes>, Option<JobAssignment>) {
    let c = &shared.counters;
    let key = spec.keys.secret.as_bytes();
    match spec.topics.parse(topic) {
        Some((p, Channel::Acks)) if p == spec.printer => {
            let Ok(env) = farm_protocol::open::<AckMessage>(payload, key, &spec.printer) else {
                return (vec![], None);
            };
            let AckMessage::Ack { applied_seq } = env.body;
            let slot = &shared.slots[spec.index];
            if applied_seq < slot.acked_seq.load(Relaxed) {
                c.ack_regressions.fetch_add(1, Relaxed);
            } else {
                slot.acked_seq.store(applied_seq, Relaxed);
            }
            if applied_seq >= out.next_seq {
                // The controller applied beyond anything we made (a reused enrolment file):
                // as the agent's outbox does, give what is pending new seqs after it.
                out.next_seq = applied_seq + 1;
                let mut resealed = Vec::with_capacity(out.pending.len());
                for (seq, body, wire) in out.pending.iter_mut() {
                    *seq = out.next_seq;
                    out.next_seq += 1;
                    *wire = spec
                        .seal(&Envelope::new(spec.printer.clone(), body.clone()).with_seq(*seq));
                    resealed.push(wire.clone());
                }
                slot.made_seq.store(out.next_seq - 1, Relaxed);
                c.events_renumbered
                    .fetch_add(resealed.len() as u64, Relaxed);
                out.last_progress = Instant::now();
                return (resealed, None);
            }
            let mut gone = 0;
            while out
                .pending
                .front()
                .is_some_and(|(s, _, _)| *s <= applied_seq)
            {
                out.pending.pop_front();
                gone += 1;
            }
            if gone > 0 {
                out.last_progress = Instant::now();
                c.events_acked.fetch_add(gone, Relaxed);
                c.events_pending.fetch_sub(gone as i64, Relaxed);
            }
            (vec![], None)
        }
        Some((p, Channel::Commands)) if p == spec.printer => {
            let Ok(env) = farm_protocol::open::<Command>(payload, key, &spec.printer) else {
                return (vec![], None);
            };
            let Some(command_id) = env.command_id else {
                return (vec![], None);
            };
            if !executed.insert(command_id.clone()) {
                return (vec![], None); // a QoS 1 duplicate: at most once
            }
            let (ok, message, fetch) = match env.body {
                Command::AssignJob(a) if spec.jobs.is_some() => {
                    (true, format!("accepted job {}", a.job_id), Some(a))
                }
                Command::AssignJob(_) => (false, "farm-loadgen prints nothing".to_string(), None),
                _ => (true, "done (simulated by farm-loadgen)".to_string(), None),
            };
            c.commands_answered.fetch_add(1, Relaxed);
            let mut wires = vec![push_event(
                spec,
                shared,
                out,
                Event::CommandResult {
                    command_id,
                    ok,
                    message,
                },
            )];
            if let Some(a) = &fetch {
                let accepted = Event::JobAccepted {
                    job_id: a.job_id.clone(),
                };
                wires.push(push_event(spec, shared, out, accepted));
            }
            (wires, fetch)
        }
        _ => (vec![], None),
    }
}

/// Runs a flapping printer: every `period` (from `phase`) connect, say online, publish one
/// status and drop the socket without DISCONNECT, so the broker publishes its will.
pub async fn flapping(
    spec: Spec,
    shared: Arc<Shared>,
    mut ctl: watch::Receiver<Control>,
    period: Duration,
) {
    let c = &shared.counters;
    let mut tick = tokio::time::interval_at(Instant::now() + spec.status_phase, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (id, token) = (spec.keys.id.clone(), spec.keys.token.clone());
    let will = (spec.topic(Channel::Online), spec.online(false));
    let status_topic = spec.topic(Channel::Status);
    let mut n = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = ctl.changed() => {
                if r.is_err() || ctl.borrow_and_update().phase != Phase::Run {
                    return;
                }
                continue;
            }
        }
        let login = Login {
            client_id: &id,
            user: &id,
            pass: &token,
            keep_alive: KEEP_ALIVE,
            clean_session: true,
            will: Some(will.clone()),
        };
        n += 1;
        let cycle = async {
            let (mut conn, _) =
                Conn::open(spec.broker, spec.source, &login, spec.connect_timeout).await?;
            conn.publish(&will.0, QoS::AtLeastOnce, true, spec.online(true))
                .await?;
            // Wait for the PUBACK, so the drop cannot overtake the presence.
            tokio::time::timeout(spec.connect_timeout, async {
                while !matches!(conn.read().await?, Packet::PubAck(_)) {}
                Ok::<_, MqttError>(())
            })
            .await
            .map_err(|_| MqttError::Timeout(spec.connect_timeout))??;
            conn.publish(&status_topic, QoS::AtMostOnce, true, spec.status(n))
                .await?;
            // Dropped here: no DISCONNECT, so the broker publishes the will.
            Ok::<_, MqttError>(())
        };
        match cycle.await {
            Ok(()) => c.flap_cycles.fetch_add(1, Relaxed),
            Err(_) => c.flap_failures.fetch_add(1, Relaxed),
        };
    }
}
