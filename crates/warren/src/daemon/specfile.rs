//! The live spec file (`warren daemon --spec FILE`): every saved change of the file is applied
//! through the same validation and planner as `warren apply --prune` (the file is the whole
//! desired state); a save that does not validate changes nothing and raises an `error` event
//! naming file:line:column. Changes made live (CLI, API) are written back: when the desired
//! state no longer matches the file, the file is rewritten from it (`spec export`'s form), so
//! file and running state stay the same. A file whose last save did not validate is never
//! overwritten, so an operator's unfinished edit is not lost.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warren_model::event::EventKind;

use sha2::Digest;
use warren_model::SpecFile;

use super::engine::Engine;

/// The desired state (without warren's own routing workload) as a spec file.
pub fn live_spec(engine: &Engine) -> anyhow::Result<SpecFile> {
    Ok(SpecFile {
        workloads: engine
            .store
            .desired()?
            .into_iter()
            .map(|(n, d)| (n, d.spec))
            .collect(),
        volumes: engine.store.volumes()?,
        host: super::vmcheck::stored_reserve(&engine.store)?,
    })
}

/// The export text of the live desired state.
pub fn export(engine: &Engine) -> anyhow::Result<String> {
    Ok(warren_model::render::to_toml(
        &live_spec(engine)?,
        "warren desired state (warren spec export); applying it again changes nothing",
    ))
}

fn digest(b: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(b).into()
}

/// Watches `path` until the daemon stops.
pub fn start(engine: Arc<Engine>, path: PathBuf) {
    tokio::spawn(async move {
        let name = path.display().to_string();
        let mut seen: Option<[u8; 32]> = None;
        let mut valid = false;
        let mut reported_missing = false;
        loop {
            let text = match tokio::fs::read_to_string(&path).await {
                Ok(t) => {
                    reported_missing = false;
                    t
                }
                Err(e) => {
                    if !reported_missing {
                        engine.event(None, EventKind::error(format!("spec file {name}: {e}")));
                        reported_missing = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let d = digest(text.as_bytes());
            if seen != Some(d) {
                seen = Some(d);
                let req = crate::wire::ApplyRequest {
                    file: name.clone(),
                    text: text.clone(),
                    prune: true,
                    dry_run: false,
                };
                match super::apply::plan_or_apply(engine.clone(), req, true).await {
                    Ok(resp) => {
                        valid = true;
                        let changed = resp.changes.len();
                        if changed > 0 {
                            engine.event(
                                None,
                                EventKind::SpecFileApplied {
                                    file: name.clone(),
                                    changes: changed,
                                },
                            );
                        }
                    }
                    Err(err) => {
                        valid = false;
                        let detail = if err.body.diagnostics.is_empty() {
                            err.body.error.clone()
                        } else {
                            err.body
                                .diagnostics
                                .iter()
                                .map(|d| d.to_string())
                                .collect::<Vec<_>>()
                                .join("; ")
                        };
                        engine.event(
                            None,
                            EventKind::error(format!(
                                "{name} not applied, nothing changed: {detail}"
                            )),
                        );
                    }
                }
            } else if valid {
                // Write back live changes.
                let from_file = warren_model::parse_spec(&text, &name).map(|p| p.spec);
                match live_spec(&engine) {
                    Ok(live) if from_file.as_ref().ok() != Some(&live) => match export(&engine) {
                        Ok(out) => {
                            let tmp = path.with_extension("warren-tmp");
                            let written = tokio::fs::write(&tmp, &out)
                                .await
                                .and(tokio::fs::rename(&tmp, &path).await);
                            match written {
                                Ok(()) => {
                                    seen = Some(digest(out.as_bytes()));
                                    engine.event(
                                        None,
                                        EventKind::SpecFileWritten { file: name.clone() },
                                    );
                                }
                                Err(e) => engine.event(
                                    None,
                                    EventKind::error(format!(
                                        "writing live changes back to {name}: {e}"
                                    )),
                                ),
                            }
                        }
                        Err(e) => tracing::warn!("spec export: {e:#}"),
                    },
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}
