//! The checked-in generated code must be exactly what the .proto files produce.

#[path = "../codegen/mod.rs"]
mod codegen;

#[test]
fn codegen_is_current() {
    let fresh = std::env::temp_dir().join(format!("signpost-protogen-{}", std::process::id()));
    codegen::generate(&fresh).expect("generation succeeds");
    let checked_in = codegen::crate_root().join("src/gen");
    let mut names: Vec<_> = std::fs::read_dir(&fresh)
        .expect("generated dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "generation produced no files");
    for name in names {
        let want = std::fs::read_to_string(fresh.join(&name)).expect("fresh file");
        let have = std::fs::read_to_string(checked_in.join(&name)).unwrap_or_default();
        assert!(
            want == have,
            "proto/src/gen/{} is out of date: run `cargo run -p signpost-proto --example protogen`",
            name.to_string_lossy()
        );
    }
    let _ = std::fs::remove_dir_all(&fresh);
}
