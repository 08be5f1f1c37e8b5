//! Regenerates `proto/src/gen/` from the .proto files and adds new fields to
//! `proto/compat/v1.lock`:
//!
//!     cargo run -p signpost-proto --example protogen
//!
//! The `codegen_is_current` test fails when the checked-in code differs from what this writes.

#[path = "../codegen/mod.rs"]
mod codegen;

fn main() {
    let out = codegen::crate_root().join("src/gen");
    if let Err(e) = codegen::generate(&out) {
        eprintln!("protogen: {e}");
        std::process::exit(1);
    }
    let lock = codegen::crate_root().join("compat/v1.lock");
    if let Err(e) = codegen::update_lock(&lock) {
        eprintln!("protogen: {e}");
        std::process::exit(1);
    }
    println!("wrote {} and {}", out.display(), lock.display());
}
