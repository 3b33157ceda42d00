//! shim (being written)

/// Entry point of `warren shim RUN_DIR` (being written).
pub fn main(_run_dir: &std::path::Path) -> ! {
    std::process::exit(1)
}
