//! `warren repl`: the client of the daemon's live Scheme image; a line editor with history on
//! a terminal, form-by-form evaluation of piped input.

use super::Exit;
use crate::client::{routes, Client};
use crate::wire::*;
use anyhow::Result;

pub(super) async fn repl(client: &Client) -> Result<Exit> {
    use std::io::{BufRead, IsTerminal};
    let eval = |expr: String| async move {
        let r: ReplResponse = client
            .post(&routes::REPL.call(), &serde_json::json!({ "expr": expr }))
            .await?;
        Ok::<_, anyhow::Error>(r)
    };
    let interactive = std::io::stdin().is_terminal();
    let mut failed = false;
    let mut pending = String::new();
    let stdin = std::io::stdin();
    // On a terminal: a line editor with history kept in ~/.config/warren/repl_history.
    let mut editor = if interactive {
        eprintln!("warren Scheme REPL: (workloads), (workload \"web\"), (start! \"web\"), (on \"web\" 'crash (lambda (w ev) ...)); Ctrl-D leaves");
        let mut ed = rustyline::DefaultEditor::new()?;
        let _ = ed.load_history(&crate::contexts::config_dir()?.join("repl_history"));
        Some(ed)
    } else {
        None
    };
    // Piped input only: on a terminal the line editor reads stdin itself (on a dumb terminal,
    // such as an Emacs buffer's, through `stdin().lock()`, which a lock held here would
    // deadlock).
    let mut lines = editor.is_none().then(|| stdin.lock().lines());
    loop {
        let line = match editor.as_mut() {
            Some(ed) => {
                let prompt = if pending.is_empty() {
                    "warren> "
                } else {
                    "   ...> "
                };
                match ed.readline(prompt) {
                    Ok(l) => {
                        if !l.trim().is_empty() {
                            let _ = ed.add_history_entry(l.as_str());
                        }
                        l
                    }
                    Err(rustyline::error::ReadlineError::Interrupted) => {
                        pending.clear();
                        continue;
                    }
                    Err(_) => break,
                }
            }
            None => match lines.as_mut().and_then(|l| l.next()) {
                Some(l) => l?,
                None => break,
            },
        };
        pending.push_str(&line);
        pending.push('\n');
        let (forms, rest) = crate::scheme::forms(&pending);
        pending = rest;
        for form in forms {
            let r = eval(form).await?;
            match (r.value, r.error) {
                (_, Some(e)) => {
                    failed = true;
                    eprintln!("error: {e}");
                }
                (Some(v), None) if !v.is_empty() => println!("{v}"),
                _ => {}
            }
        }
    }
    if let Some(ed) = editor.as_mut() {
        let path = crate::contexts::config_dir()?.join("repl_history");
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = ed.save_history(&path);
    }
    if !pending.trim().is_empty() {
        eprintln!(
            "error: unfinished expression at the end of the input: {}",
            pending.trim()
        );
        failed = true;
    }
    Ok(if failed && !interactive {
        Exit::Failure
    } else {
        Exit::Success
    })
}
