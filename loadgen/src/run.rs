//! One run: enrol, open the stream, connect every printer, measure a window (with the storm),
//! drain the events, report.

use crate::enrol;
use crate::fanout::{self, Fetcher};
use crate::orders;
use crate::printer::{self, Control, Phase, Spec};
use crate::procstat::{self, Process, Sample};
use crate::report::{Events, ProcessFigures, Report};
use crate::settings::Settings;
use crate::stats::Shared;
use crate::stream::{Note, Reader};
use anyhow::{Context, Result, anyhow};
use farm_protocol::{PrinterId, Topics};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

/// Loopback source addresses to spread `connections` over. Each address has ~28,000 ephemeral
/// ports, and every dropped connection holds its port in TIME_WAIT for 60 s.
fn source_ips(s: &Settings, broker: &SocketAddr) -> Vec<IpAddr> {
    if !broker.ip().is_loopback() || !broker.is_ipv4() {
        return vec![];
    }
    let flaps_per_min = s.flapping as f64 * 60.0 / s.flap_period.as_secs_f64().max(0.1);
    let wanted = if s.source_ips > 0 {
        usize::from(s.source_ips)
    } else {
        // Room for every live connection twice (a storm) plus a minute of flapping.
        ((s.printers * 2) as f64 + flaps_per_min).div_euclid(10_000.0) as usize + 1
    };
    (1..=wanted.min(250))
        .map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, k as u8)))
        .collect()
}

fn figures(a: &Sample, b: &Sample) -> ProcessFigures {
    ProcessFigures {
        cpu_percent: procstat::cpu_percent(a, b),
        rss_mb: b.rss_kb as f64 / 1024.0,
        peak_rss_mb: b.peak_rss_kb as f64 / 1024.0,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs the load described by `s` and returns its figures.
pub async fn run(s: Settings) -> Result<Report> {
    run_with(s, None).await
}

/// [`run`], handing `probe` the run's shared counters and per-printer marks as soon as they
/// exist, so a test can act on what the printers see (e.g. kill the controller after so many
/// acks) while the run goes on.
pub async fn run_with(s: Settings, probe: Option<oneshot::Sender<Arc<Shared>>>) -> Result<Report> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let total = s.printers + s.flapping;
    // Two descriptors per printer leave room for a storm's overlap, plus HTTP and spare.
    let want = (total as u64) * 2 + 1024;
    let got = rlimit::increase_nofile_limit(want)
        .context("cannot raise the open-files limit (RLIMIT_NOFILE)")?;
    if got < want {
        eprintln!(
            "warning: open files limited to {got} (wanted {want}); raise the hard limit (ulimit -Hn) for this many printers"
        );
    }
    let token = s.token()?;
    let broker: SocketAddr = s.broker.parse().map_err(|_| {
        anyhow!(
            "--broker {:?}: give an IP address and port, e.g. 127.0.0.1:1883",
            s.broker
        )
    })?;
    let topics = Topics::new(&s.topic_root).map_err(|e| anyhow!("--topic-root: {e}"))?;
    let controller = s.controller.trim_end_matches('/').to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let loadavg_start = loadavg();

    let ids: Vec<String> = (1..=s.printers)
        .map(|i| format!("{}-{i:05}", s.id_prefix))
        .chain((1..=s.flapping).map(|i| format!("{}-f{i:05}", s.id_prefix)))
        .collect();
    let t = Instant::now();
    let keys = enrol::ensure(
        &http,
        &controller,
        &token,
        &ids,
        s.enrolment.as_deref(),
        s.enrol_concurrency,
    )
    .await?;
    let enrol_s = t.elapsed().as_secs_f64();
    if s.enrol_only {
        return Ok(Report {
            printers: s.printers,
            flapping: s.flapping,
            enrol_s,
            ..Report::default()
        });
    }

    let shared = Arc::new(Shared::new(total));
    for slot in &shared.slots {
        slot.fresh_from.store(u32::MAX, Relaxed);
    }
    if let Some(p) = probe {
        let _ = p.send(shared.clone());
    }
    let jobs = (s.accept_jobs || s.fanout_mb.is_some())
        .then(Fetcher::new)
        .transpose()?
        .map(Arc::new);
    let order_file = if s.orders_per_s > 0.0 {
        let shop = s.shop()?;
        let sha = orders::upload_file(&http, &controller, &shop).await?;
        Some((shop, sha))
    } else {
        None
    };
    let (notes, notes_rx) = mpsc::unbounded_channel();
    let (ready_tx, ready) = oneshot::channel();
    let (done, done_rx) = oneshot::channel();
    let reader = Reader::new(shared.clone(), &ids, s.printers);
    // No overall timeout here: the stream is one response that lasts the whole run.
    let stream_http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let stream = tokio::spawn(reader.run(
        stream_http,
        controller.clone(),
        token.clone(),
        notes_rx,
        ready_tx,
        done_rx,
    ));
    if ready.await.is_err() {
        return Err(match stream.await {
            Ok(Err(e)) => e,
            _ => anyhow!("the stream reader stopped"),
        });
    }

    let controller_proc = s.controller_pid.map(Process::pid);
    let me = Process::me();
    let sources = source_ips(&s, &broker);
    let (ctl, ctl_rx) = watch::channel(Control {
        storm: 0,
        phase: Phase::Run,
    });
    let first_connect = Arc::new(Semaphore::new(s.connect_concurrency.max(1)));
    let spec = |i: usize, phase_of: usize, of: usize| -> Result<Spec> {
        let k = &keys[i];
        let frac = |d: Duration| d.mul_f64(phase_of as f64 / of.max(1) as f64);
        Ok(Spec {
            index: i,
            printer: PrinterId::new(&k.id).map_err(|e| anyhow!("{}: {e}", k.id))?,
            keys: k.clone(),
            topics: topics.clone(),
            broker,
            source: (!sources.is_empty()).then(|| sources[i % sources.len()]),
            status_interval: s.status_interval,
            status_phase: frac(s.status_interval),
            event_every: (!s.event_every.is_zero()).then_some(s.event_every),
            // Half a slot after the statuses, so an event never rides on a status tick.
            event_phase: frac(s.event_every) + s.event_every.mul_f64(0.5 / of.max(1) as f64),
            event_kind: s.event_kind,
            connect_timeout: s.connect_timeout,
            jobs: jobs.clone(),
        })
    };

    let t_connect = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..s.printers {
        tasks.push(tokio::spawn(printer::live(
            spec(i, i, s.printers)?,
            shared.clone(),
            ctl_rx.clone(),
            first_connect.clone(),
        )));
    }
    let c = &shared.counters;
    let connect_limit = s.connect_timeout * 3 + Duration::from_secs(s.printers as u64 / 50);
    let mut connect_all_s = None;
    while t_connect.elapsed() < connect_limit {
        if c.connected.load(Relaxed) >= s.printers as u64 {
            connect_all_s = Some(t_connect.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for j in 0..s.flapping {
        tasks.push(tokio::spawn(printer::flapping(
            spec(s.printers + j, j, s.flapping)?,
            shared.clone(),
            ctl_rx.clone(),
            s.flap_period,
        )));
    }

    // The measured window.
    let c0 = controller_proc.as_ref().and_then(Process::sample);
    let m0 = me.sample();
    let acked0 = c.events_acked.load(Relaxed);
    let window = Instant::now();
    let _ = notes.send(Note::WindowStarted);
    let order_run = order_file.map(|(shop, sha)| {
        tokio::spawn(orders::drive(
            controller.clone(),
            shop,
            sha,
            s.orders_per_s,
            s.order_concurrency,
            s.duration,
            Duration::from_secs(10),
        ))
    });
    let dashboard_run = (s.dashboards > 0).then(|| {
        let (controller, token, shared, ids) = (
            controller.clone(),
            token.clone(),
            shared.clone(),
            ids.clone(),
        );
        let (n, live, window) = (s.dashboards, s.printers, s.duration);
        tokio::spawn(async move {
            crate::dashboards::run(n, &controller, &token, shared, &ids, live, window).await
        })
    });
    let fanout_run = s.fanout_mb.map(|mb| {
        let (http, controller, token, notes) = (
            http.clone(),
            controller.clone(),
            token.clone(),
            notes.clone(),
        );
        let copies = s.printers;
        tokio::spawn(async move {
            let t = Instant::now();
            let (_, size) =
                fanout::queue_jobs(&http, &controller, &token, fanout::job_file(mb), copies)
                    .await?;
            let _ = notes.send(Note::JobsQueued(copies));
            Ok::<_, anyhow::Error>((t.elapsed().as_secs_f64(), Instant::now(), size, copies))
        })
    });
    if let Some(at) = s.storm_at.filter(|at| *at < s.duration) {
        tokio::time::sleep(at).await;
        for slot in &shared.slots[..s.printers] {
            slot.fresh_from.store(u32::MAX, Relaxed);
        }
        let _ = notes.send(Note::StormStarted);
        ctl.send_modify(|c| c.storm += 1);
    }
    tokio::time::sleep_until(window + s.duration).await;
    let window_s = window.elapsed().as_secs_f64();
    let acks_per_s = (c.events_acked.load(Relaxed) - acked0) as f64 / window_s;
    let c1 = controller_proc.as_ref().and_then(Process::sample);
    let m1 = me.sample();
    let dashboards = match dashboard_run {
        Some(t) => Some(t.await.context("the dashboards panicked")?),
        None => None,
    };
    let orders = match order_run {
        Some(t) => Some(t.await.context("the order driver panicked")??),
        None => None,
    };
    let fanout_queued = match fanout_run {
        Some(t) => Some(t.await.context("the fan-out upload panicked")??),
        None => None,
    };

    // Drain and settle: no new events; wait for the acks of those still pending and (up to
    // --settle) for every live printer to show online and fresh.
    ctl.send_modify(|c| c.phase = Phase::Quiet);
    let drain = Instant::now();
    let census = async || {
        let (tx, rx) = oneshot::channel();
        let _ = notes.send(Note::Census(tx));
        rx.await.unwrap_or(0)
    };
    let mut online_at_end = census().await;
    loop {
        let drained = c.events_pending.load(Relaxed) <= 0 || drain.elapsed() >= s.drain;
        let settled = online_at_end >= s.printers || drain.elapsed() >= s.settle;
        if drained && settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        online_at_end = census().await;
    }
    ctl.send_modify(|c| c.phase = Phase::Stop);
    // Let the last statuses reach the stream before counting what it saw.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = done.send(());
    let seen = stream.await.context("the stream reader panicked")??;
    // Printers sleeping in a backoff see the stop when they wake; don't wait for them.
    let deadline = Instant::now() + Duration::from_secs(5);
    for t in tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            abort.abort();
        }
    }

    let sent = c.statuses_sent.load(Relaxed);
    let fanout = fanout_queued
        .zip(jobs)
        .map(|((upload_s, queued, size, copies), f)| {
            let mut x = f.figures(queued.into_std(), upload_s, copies as u64, size);
            x.all_printing_s = seen.all_printing_s;
            x
        });
    Ok(Report {
        printers: s.printers,
        flapping: s.flapping,
        window_s,
        enrol_s,
        connect_all_s,
        connect_failures: c.connect_failures.load(Relaxed),
        live_disconnects: c.live_disconnects.load(Relaxed),
        statuses_sent: sent,
        statuses_missing: sent as i64 - seen.statuses_seen as i64,
        mean_status_bytes: c.status_bytes.load(Relaxed) / sent.max(1),
        online_at_end,
        events: Events {
            created: c.events_created.load(Relaxed),
            published: c.events_published.load(Relaxed),
            resent: c.events_resent.load(Relaxed),
            acked: c.events_acked.load(Relaxed),
            unacked: c.events_pending.load(Relaxed),
            renumbered: c.events_renumbered.load(Relaxed),
            ack_regressions: c.ack_regressions.load(Relaxed),
            acks_per_s,
            commands_answered: c.commands_answered.load(Relaxed),
        },
        stream: seen,
        flap_cycles: c.flap_cycles.load(Relaxed),
        flap_failures: c.flap_failures.load(Relaxed),
        controller: c0.zip(c1).map(|(a, b)| figures(&a, &b)),
        loadgen: m0.zip(m1).map(|(a, b)| figures(&a, &b)).unwrap_or_default(),
        orders,
        dashboards,
        fanout,
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg: (loadavg_start, loadavg()),
    })
}
