//! Builds the XDP fast path (`bpf/fastpath.c`) into an eBPF object in `OUT_DIR`, which
//! `src/io/fastpath.rs` embeds. clang (a required package, see `scripts/debian-packages`) is the
//! only tool needed: the program includes no system headers.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "bpf/fastpath.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("fastpath.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let status = Command::new(&clang)
        .args([
            "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c", source, "-o",
        ])
        .arg(&object)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`{clang}` could not compile {source} into an eBPF object ({s}); see its messages above"
        ),
        Err(e) => panic!(
            "cannot run `{clang}` ({e}): clang is required to build the router's XDP fast path \
             ({source}); install it (`apt-get install clang`, listed in scripts/debian-packages) \
             or name it with CLANG=/path/to/clang"
        ),
    }
}
