//! Link flags of the `warren` binary. On Linux with glibc its relative relocations are packed
//! (`-z pack-relative-relocs`, DT_RELR: binutils ≥ 2.38, glibc ≥ 2.36 — Debian 12 has both):
//! the position-independent executable keeps its address randomisation, and every process
//! start (each CLI call, each shim) reads a few kilobytes of relocations instead of 1.5 MB.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=warren=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
