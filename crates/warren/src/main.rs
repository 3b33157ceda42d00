//! The `warren` binary: CLI, daemon and per-workload shim in one executable.
//!
//! `warren shim RUN_DIR` is dispatched before anything else is set up, so the supervisor that
//! stays resident next to every workload runs without an async runtime or argument parser (a
//! run directory holding `vm.json` gets the VM shim). `warren vm-exec CTL ...` is the command
//! the VM runtime hands out for an exec into a VM (as `runc exec` is a container's).
//! `warren generate-man DIR` (not in `--help`) writes the man pages of the whole command tree
//! into DIR: packages run it at build time (`cargo xtask dist`), so the pages always match
//! the binary they ship with.

mod cli;
mod client;
mod contexts;
mod daemon;
mod ndjson;
mod output;
mod scheme;
mod wire;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).map(|a| a == "shim").unwrap_or(false) {
        let Some(dir) = args.get(2) else {
            eprintln!("usage: warren shim RUN_DIR");
            std::process::exit(cli::Exit::Usage.code());
        };
        let dir = std::path::Path::new(dir);
        if dir.join(warren_vm::shim::CONFIG_FILE).exists() {
            warren_vm::shim::main(dir);
        }
        warren_runtime::shim::main(dir);
    }
    if args.get(1).map(|a| a == "vm-exec").unwrap_or(false) {
        std::process::exit(vm_exec(&args[2..]));
    }
    if args.get(1).map(|a| a == "generate-man").unwrap_or(false) {
        std::process::exit(generate_man(&args[2..]));
    }
    std::process::exit(cli::main());
}

/// `warren vm-exec CTL [--tty] [--env K=V]... [--cwd DIR] -- ARGV...`: an exec session
/// through a VM shim's control socket; exits with the command's status.
fn vm_exec(args: &[std::ffi::OsString]) -> i32 {
    let usage = || {
        eprintln!("usage: warren vm-exec CTL [--tty] [--env K=V]... [--cwd DIR] -- ARGV...");
        cli::Exit::Usage.code()
    };
    let Some((ctl, rest)) = args.split_first() else {
        return usage();
    };
    let mut spec = warren_vm::agent::ExecSpec {
        argv: Vec::new(),
        env: Vec::new(),
        cwd: None,
        tty: false,
        rows: 0,
        cols: 0,
    };
    let mut it = rest.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        match a.as_str() {
            "--tty" => spec.tty = true,
            "--env" => match it.next() {
                Some(v) => spec.env.push(v),
                None => return usage(),
            },
            "--cwd" => spec.cwd = it.next(),
            "--" => {
                spec.argv = it.by_ref().collect();
                break;
            }
            _ => return usage(),
        }
    }
    if spec.argv.is_empty() {
        return usage();
    }
    match warren_vm::shim::client::exec(std::path::Path::new(ctl), spec) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            126
        }
    }
}

/// `warren generate-man DIR`: `warren.1` and one page per subcommand (`warren-apply.1`,
/// `warren-snapshot-rm.1`, ...), rendered from the same clap definitions the CLI parses with.
fn generate_man(args: &[std::ffi::OsString]) -> i32 {
    use clap::CommandFactory;
    let [dir] = args else {
        eprintln!("usage: warren generate-man DIR");
        return cli::Exit::Usage.code();
    };
    let dir = std::path::Path::new(dir);
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        clap_mangen::generate_to(
            cli::Cli::command().name("warren").display_name("warren"),
            dir,
        )
    });
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: writing man pages into {}: {e}", dir.display());
            1
        }
    }
}
