//! The `warren` binary: CLI, daemon and per-workload shim in one executable.
//!
//! `warren shim RUN_DIR` is dispatched before anything else is set up, so the supervisor that
//! stays resident next to every workload runs without an async runtime or argument parser.

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
        warren_runtime::shim::main(std::path::Path::new(dir));
    }
    std::process::exit(cli::main());
}
