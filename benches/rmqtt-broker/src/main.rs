//! An MQTT broker on rmqtt with the farm's login rules, for `scripts/bench-floor.sh`
//! (BROKER=rmqtt): the controller connects to it as an external broker.
//!
//! Logins come from a plain `user:password` file (the same one the bench writes for
//! Mosquitto), re-read on SIGHUP. Like the embedded broker: the client id must equal the
//! login, one user is the superuser (the controller) and everyone else is a printer that
//! may publish and subscribe only under its own `<root>/v1/printers/<id>/` (a topic ACL,
//! as the embedded broker, now rmqtt too, enforces). Kept to re-run the broker comparison.
//!
//! Usage: rmqtt-bench-broker LISTEN PASSWORD_FILE SUPERUSER [WORKERS]

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::types::{AuthResult, PublishAclResult, SubscribeAclResult};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

// tokio's lock: the hooks run on the runtime's workers.
type Logins = Arc<tokio::sync::RwLock<HashMap<String, String>>>;

fn read_logins(path: &PathBuf) -> Result<HashMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .collect())
}

/// Is `topic` (or filter) under this printer's own `<root>/v1/printers/<id>/`?
fn own_topic(topic: &str, user: &str) -> bool {
    let mut parts = topic.split('/');
    let (_root, v, printers, id) = (parts.next(), parts.next(), parts.next(), parts.next());
    v == Some("v1") && printers == Some("printers") && id == Some(user) && parts.next().is_some()
}

struct Rules {
    logins: Logins,
    superuser: String,
}

#[async_trait]
impl Handler for Rules {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(info) => {
                let user = info.username().map(|u| u.to_string()).unwrap_or_default();
                let pass = info.password().map(|p| p.to_vec()).unwrap_or_default();
                let ok = info.client_id().as_ref() as &str == user || user == self.superuser;
                let ok = ok
                    && self
                        .logins
                        .read()
                        .await
                        .get(&user)
                        .is_some_and(|p| p.as_bytes() == pass);
                let r = if ok {
                    AuthResult::Allow(user == self.superuser, None)
                } else {
                    AuthResult::BadUsernameOrPassword
                };
                (false, Some(HookResult::AuthResult(r)))
            }
            Parameter::MessagePublishCheckAcl(s, p) => {
                let r = if own_topic(&p.topic, &s.id.username_ref()) {
                    PublishAclResult::allow()
                } else {
                    PublishAclResult::rejected(true, None)
                };
                (false, Some(HookResult::PublishAclResult(r)))
            }
            Parameter::ClientSubscribeCheckAcl(s, sub) => {
                let r = if own_topic(&sub.topic_filter, &s.id.username_ref()) {
                    SubscribeAclResult::new_success(sub.opts.qos(), None)
                } else {
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(r)))
            }
            _ => (true, acc),
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        bail!("usage: rmqtt-bench-broker LISTEN PASSWORD_FILE SUPERUSER");
    }
    let listen: SocketAddr = args[1].parse().context("LISTEN, e.g. 127.0.0.1:11883")?;
    let file = PathBuf::from(&args[2]);
    let logins: Logins = Arc::new(tokio::sync::RwLock::new(read_logins(&file)?));
    let reload = (logins.clone(), file.clone());
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match read_logins(&reload.1) {
                Ok(l) => {
                    let n = l.len();
                    *reload.0.write().await = l;
                    eprintln!("reloaded {n} logins");
                }
                Err(e) => eprintln!("could not reload the logins: {e:#}"),
            }
        }
    });

    let scx = ServerContext::new().busy_check_enable(false).build().await;
    let register = scx.extends.hook_mgr().register();
    for t in [
        Type::ClientAuthenticate,
        Type::MessagePublishCheckAcl,
        Type::ClientSubscribeCheckAcl,
    ] {
        register
            .add(
                t,
                Box::new(Rules {
                    logins: logins.clone(),
                    superuser: args[3].clone(),
                }),
            )
            .await;
    }
    register.start().await;

    let listener = Builder::new()
        .name("external/tcp")
        .laddr(listen)
        .backlog(4096)
        .reuseaddr(Some(true))
        .nodelay(true)
        .allow_anonymous(false)
        .max_connections(1_000_000)
        .max_handshaking_limit(20_000)
        .max_packet_size(1 << 20)
        .handshake_timeout(Duration::from_secs(10))
        // The controller's one session takes every printer's status: its queue must hold
        // a few seconds of them (the default 1,000 would drop at 1,000 printers).
        .max_mqueue_len(100_000)
        .bind()?
        .tcp()?;
    MqttServer::new(scx)
        .listener(listener)
        .build()
        .run()
        .await?;
    Ok(())
}
