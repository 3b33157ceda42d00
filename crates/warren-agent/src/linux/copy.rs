//! The agent's copy mode: `warren-agent copy-out|copy-in SPEC_JSON`, a process the agent
//! spawns for the host's `CopyOut` and `CopyIn` (as `/proc/self/exe`, so it is this binary
//! whatever the guest's root holds), with the tar stream on stdout or stdin. The path is
//! resolved inside the guest's root and archives are checked by `warren_image::copy`, the
//! same code the host uses for containers: links and `..` never leave the root, and archives
//! with `..`, absolute names, links leading outside or device nodes are refused with nothing
//! written. Problems go to stderr (the host shows them) with exit status 1.

use warren_image::copy::{CopyPath, PutOptions, Shape, Tree};
use warren_vm::agent::CopySpec;

/// The argument that selects copy-out mode.
pub const COPY_OUT: &str = "copy-out";
/// The argument that selects copy-in mode.
pub const COPY_IN: &str = "copy-in";

/// The argv of the copy process for `spec`.
pub fn argv(out: bool, spec: &CopySpec) -> Vec<String> {
    vec![
        "/proc/self/exe".to_string(),
        if out { COPY_OUT } else { COPY_IN }.to_string(),
        serde_json::to_string(spec).expect("a copy spec serializes"),
    ]
}

/// Runs copy mode when `args` ask for it (never as PID 1); returns otherwise.
pub fn run_if_asked(args: &[String]) {
    let (Some(mode), Some(json)) = (args.get(1), args.get(2)) else {
        return;
    };
    if std::process::id() == 1 || (mode != COPY_OUT && mode != COPY_IN) {
        return;
    }
    let r = serde_json::from_str::<CopySpec>(json)
        .map_err(|e| format!("bad copy request: {e}"))
        .and_then(|spec| copy(mode == COPY_OUT, &spec));
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

fn copy(out: bool, spec: &CopySpec) -> Result<(), String> {
    let path = CopyPath::parse(&spec.path).map_err(|e| e.to_string())?;
    let root = Tree::root("/");
    if out {
        let stdout = std::io::stdout().lock();
        warren_image::copy::get(
            &root,
            &path,
            None,
            std::io::BufWriter::with_capacity(256 * 1024, stdout),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    } else {
        let opts = PutOptions {
            shape: if spec.contents || spec.directory {
                Shape::Contents
            } else {
                Shape::Entry
            },
            require_dir: spec.directory,
            keep_owners: spec.keep_owners,
            ids: None,
            owner: (!spec.keep_owners).then_some((0, 0)),
            max_bytes: None,
        };
        warren_image::copy::put(&root, &path, std::io::stdin().lock(), &opts)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
