//! Wire compatibility of signpost.v1: routers and operators of different versions meet in the
//! field, so a published field may be added to but never renumbered, retyped or silently dropped.

#[path = "../codegen/mod.rs"]
mod codegen;

#[test]
fn published_fields_are_kept_or_reserved() {
    let fds = codegen::descriptors().expect("the .proto files parse");
    let current = codegen::field_lines(&fds);
    let lock = std::fs::read_to_string(codegen::crate_root().join("compat/v1.lock"))
        .expect("proto/compat/v1.lock exists");
    let published: Vec<&str> = lock
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        published.len() > 100,
        "the lock lists the published contract"
    );
    let broken: Vec<&str> = published
        .iter()
        .copied()
        .filter(|line| !codegen::still_compatible(&fds, &current, line))
        .collect();
    assert!(
        broken.is_empty(),
        "these published fields changed or vanished without `reserved` (number and name):\n{}",
        broken.join("\n")
    );
}

#[test]
fn new_fields_are_in_the_lock() {
    let fds = codegen::descriptors().expect("the .proto files parse");
    let lock = std::fs::read_to_string(codegen::crate_root().join("compat/v1.lock"))
        .expect("proto/compat/v1.lock exists");
    let missing: Vec<String> = codegen::field_lines(&fds)
        .into_iter()
        .filter(|l| !lock.lines().any(|p| p == l))
        .collect();
    assert!(
        missing.is_empty(),
        "run `cargo run -p signpost-proto --example protogen` to publish:\n{}",
        missing.join("\n")
    );
}

#[test]
fn a_renumbered_field_is_detected() {
    let fds = codegen::descriptors().expect("the .proto files parse");
    let current = codegen::field_lines(&fds);
    let line = current
        .iter()
        .find(|l| l.starts_with("signpost.v1.RouterConfig.router = "))
        .expect("RouterConfig.router exists");
    let renumbered = line.replacen("= 1 ", "= 99 ", 1);
    assert!(codegen::still_compatible(&fds, &current, line));
    assert!(!codegen::still_compatible(&fds, &current, &renumbered));
}
