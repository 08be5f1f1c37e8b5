#![allow(dead_code)] // each includer (example, tests) uses a different part
//! Code generation from `proto/signpost/v1/*.proto`, shared by the `protogen` example (which
//! writes `src/gen/`) and the drift test (which checks that `src/gen/` is what it would write).
//! It uses `protox` to parse, so no `protoc` binary is needed.

use std::path::{Path, PathBuf};

/// The .proto files of the contract, relative to the crate root.
pub const PROTOS: &[&str] = &[
    "signpost/v1/config.proto",
    "signpost/v1/distribution.proto",
    "signpost/v1/admin.proto",
];

pub fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parses the contract into a descriptor set.
pub fn descriptors() -> Result<prost_types::FileDescriptorSet, String> {
    let root = crate_root();
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    protox::compile(&files, [&root]).map_err(|e| format!("parsing the .proto files: {e:?}"))
}

/// Generates the Rust code into `out_dir`, one file per protobuf package.
pub fn generate(out_dir: &Path) -> Result<(), String> {
    let fds = descriptors()?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("creating {}: {e}", out_dir.display()))?;
    tonic_prost_build::configure()
        .out_dir(out_dir)
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)
        .map_err(|e| format!("generating Rust code: {e}"))
}

/// One line per published field and enum value, `signpost.v1.Message.field = 3 TYPE`, sorted.
/// `proto/compat/v1.lock` holds the lines ever published; the compat test checks that each is
/// still present, or that its number and name are reserved.
pub fn field_lines(fds: &prost_types::FileDescriptorSet) -> Vec<String> {
    fn walk(prefix: &str, msg: &prost_types::DescriptorProto, out: &mut Vec<String>) {
        let name = format!("{prefix}.{}", msg.name());
        for f in &msg.field {
            let ty = match f.type_name() {
                "" => format!("{:?}", f.r#type()),
                t => t.to_string(),
            };
            out.push(format!(
                "{name}.{} = {} {:?} {ty}",
                f.name(),
                f.number(),
                f.label()
            ));
        }
        for e in &msg.enum_type {
            enum_lines(&name, e, out);
        }
        for nested in &msg.nested_type {
            walk(&name, nested, out);
        }
    }
    fn enum_lines(prefix: &str, e: &prost_types::EnumDescriptorProto, out: &mut Vec<String>) {
        for v in &e.value {
            out.push(format!(
                "{prefix}.{}.{} = {}",
                e.name(),
                v.name(),
                v.number()
            ));
        }
    }
    let mut out = Vec::new();
    for file in &fds.file {
        let pkg = file.package();
        for msg in &file.message_type {
            walk(pkg, msg, &mut out);
        }
        for e in &file.enum_type {
            enum_lines(pkg, e, &mut out);
        }
    }
    out.sort();
    out
}

/// Whether `line` (from the lock) is still satisfied: present as is, or its field retired with
/// both number and name reserved.
pub fn still_compatible(
    fds: &prost_types::FileDescriptorSet,
    current: &[String],
    line: &str,
) -> bool {
    if current.iter().any(|l| l == line) {
        return true;
    }
    // "pkg.Message.field = N ..." -> look for reserved N and "field" in pkg.Message.
    let Some((path, rest)) = line.split_once(" = ") else {
        return false;
    };
    let Some(number) = rest.split(' ').next().and_then(|n| n.parse::<i32>().ok()) else {
        return false;
    };
    let Some((msg_path, field)) = path.rsplit_once('.') else {
        return false;
    };
    fds.file.iter().any(|file| {
        let mut stack: Vec<(String, &prost_types::DescriptorProto)> = file
            .message_type
            .iter()
            .map(|m| (format!("{}.{}", file.package(), m.name()), m))
            .collect();
        while let Some((name, msg)) = stack.pop() {
            if name == msg_path {
                let number_reserved = msg
                    .reserved_range
                    .iter()
                    .any(|r| r.start() <= number && number < r.end());
                let name_reserved = msg.reserved_name.iter().any(|n| n == field);
                return number_reserved && name_reserved;
            }
            stack.extend(
                msg.nested_type
                    .iter()
                    .map(|n| (format!("{name}.{}", n.name()), n)),
            );
        }
        false
    })
}

/// Adds the current fields to the lock file (never removes a line).
pub fn update_lock(path: &Path) -> Result<(), String> {
    let fds = descriptors()?;
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    lines.extend(field_lines(&fds));
    lines.sort();
    lines.dedup();
    let body = format!(
        "# Every field and enum value ever published in signpost.v1. Lines are only ever added\n\
         # (by `cargo run -p signpost-proto --example protogen`); see config.proto.\n{}\n",
        lines.join("\n")
    );
    std::fs::write(path, body).map_err(|e| format!("writing {}: {e}", path.display()))
}
