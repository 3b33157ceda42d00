//! Health monitors: one task per running workload that declares `health`, probing it every
//! interval (exec inside the workload, an HTTP GET or a TCP connection from the host to its
//! address) with a timeout, feeding [`warren_model::health::HealthTracker`]. Status changes are
//! events (`health`) and show in `list`/`get`; an unhealthy workload is restarted unless
//! `on_unhealthy = "none"`. A monitor ends with the run it watches (the next run gets its own),
//! and a slow probe never delays anything else: each monitor is its own task.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_model::event::EventKind;
use warren_model::health::{HealthCheck, HealthStatus, HealthTracker, OnUnhealthy, Probe};
use warren_model::NetworkMode;

use super::engine::Engine;

/// Starts the monitor of `name`'s current run.
pub fn spawn(
    engine: Arc<Engine>,
    name: String,
    check: HealthCheck,
    network: NetworkMode,
    started_ms: u64,
    mut exited: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut tracker = HealthTracker::new(&check, started_ms);
        engine.set_health(&name, Some(HealthStatus::Starting));
        let interval = Duration::from_secs(check.interval_secs.max(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = exited.wait_for(|v| *v) => break,
            }
            if *exited.borrow() {
                break;
            }
            let timeout = Duration::from_secs(check.timeout_secs.max(1));
            let result =
                match tokio::time::timeout(timeout, probe(&engine, &name, &check.probe, network))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {}s", check.timeout_secs)),
                };
            let now = warren_store::now_ms();
            let Some(status) = tracker.record(result.is_ok(), now) else {
                continue;
            };
            engine.set_health(&name, Some(status));
            let event = EventKind::Health {
                status,
                error: result.err(),
                failures: tracker.failures(),
            };
            let reason = event.to_string();
            engine.event(Some(&name), event);
            if status == HealthStatus::Unhealthy && check.on_unhealthy == OnUnhealthy::Restart {
                if let Err(e) = engine.restart_for(&name, &reason).await {
                    engine.event(
                        Some(&name),
                        EventKind::error(format!("restart after failed health checks: {e:#}")),
                    );
                }
                break;
            }
        }
    });
}

/// One probe.
async fn probe(
    engine: &Arc<Engine>,
    name: &str,
    probe: &Probe,
    network: NetworkMode,
) -> Result<(), String> {
    match probe {
        Probe::Exec(argv) => {
            let cmd = engine
                .runtime
                .exec(
                    &engine.container_id(name),
                    &warren_runtime::ExecRequest::new(argv.clone()),
                )
                .map_err(|e| e.to_string())?;
            let mut cmd = tokio::process::Command::from(cmd);
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            let status = cmd.status().await.map_err(|e| e.to_string())?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("`{}` exited with {status}", argv.join(" ")))
            }
        }
        Probe::Tcp(port) => {
            let addr = target(engine, name, network)?;
            tokio::net::TcpStream::connect((addr, *port))
                .await
                .map(|_| ())
                .map_err(|e| format!("tcp {addr}:{port}: {e}"))
        }
        Probe::Http { path, port } => {
            let addr = target(engine, name, network)?;
            let mut s = tokio::net::TcpStream::connect((addr, *port))
                .await
                .map_err(|e| format!("http {addr}:{port}: {e}"))?;
            let req = format!(
                "GET {path} HTTP/1.0\r\nHost: {name}\r\nUser-Agent: warren-health\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| format!("http {addr}:{port}: {e}"))?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head)
                .await
                .map_err(|e| format!("http {addr}:{port}: {e}"))?;
            let line = String::from_utf8_lossy(&head);
            match line.get(9..12).and_then(|c| c.parse::<u16>().ok()) {
                Some(code) if (200..400).contains(&code) => Ok(()),
                Some(code) => Err(format!("GET {path} answered {code}")),
                None => Err(format!("GET {path}: not an HTTP answer")),
            }
        }
    }
}

/// Where the host reaches the workload: its bridge address, or loopback for host networking.
fn target(engine: &Engine, name: &str, network: NetworkMode) -> Result<std::net::IpAddr, String> {
    match network {
        NetworkMode::Host => Ok(std::net::Ipv4Addr::LOCALHOST.into()),
        NetworkMode::Bridge => engine
            .store
            .addresses()
            .map_err(|e| e.to_string())?
            .get(name)
            .map(|a| (*a).into())
            .ok_or_else(|| "the workload has no address yet".to_string()),
        NetworkMode::None => Err("the workload has no network".into()),
    }
}
