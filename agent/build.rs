//! Embeds the eBPF object built by `cargo xtask build-ebpf`, when it exists.
//!
//! The userspace crates must build, test and lint on machines without bpf-linker, so a
//! missing object is not a build error: the agent then compiles without it and reports at
//! run time how to build it.

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let object = env::var_os("RAMPART_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/bpfel-unknown-none/release/rampart-ebpf"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("rampart.bpf.o");
    println!("cargo:rerun-if-env-changed=RAMPART_EBPF_OBJECT");
    println!("cargo:rerun-if-changed={}", object.display());
    println!("cargo::rustc-check-cfg=cfg(rampart_ebpf_embedded)");
    match fs::read(&object) {
        Ok(bytes) => {
            fs::write(&out, bytes).expect("write embedded eBPF object to OUT_DIR");
            println!("cargo:rustc-cfg=rampart_ebpf_embedded");
        }
        Err(_) => {
            println!(
                "cargo:warning=eBPF object {} not found: building the agent without kernel \
                 programs (run `cargo xtask build-ebpf` first to embed them)",
                object.display()
            );
        }
    }
}
