//! The `warren` binary: CLI, daemon and per-workload shim in one executable.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The shim path stays tiny: no async runtime, no argument parser.
    if args.get(1).map(|a| a == "shim").unwrap_or(false) {
        let dir = args.get(2).expect("usage: warren shim RUN_DIR");
        warren_runtime::shim::main(std::path::Path::new(dir));
    }
    println!("warren");
}
