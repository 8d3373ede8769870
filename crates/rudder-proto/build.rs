//! Generates `fields.rs`: for every protobuf message of the Kubernetes API, its fields (tag,
//! Rust field name, wire kind, repeated/map, message type). Read from the source of the
//! `k8s-pb` crate (prost's output for the upstream .proto files), located with
//! `cargo metadata`; nothing upstream-derived is committed to this repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn k8s_pb_src() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.toml");
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--filter-platform"])
        .arg(std::env::var("TARGET").unwrap())
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let pkg = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "k8s-pb")
        .expect("k8s-pb in the dependency graph");
    Path::new(pkg["manifest_path"].as_str().unwrap()).parent().unwrap().join("src")
}

struct Field {
    tag: u32,
    name: String,
    kind: String,
    repeated: bool,
    map_value: Option<String>,
    message: String,
}

fn resolve(module: &[String], ty: &str) -> String {
    let mut path: Vec<String> = module.to_vec();
    let mut rest = ty;
    while let Some(r) = rest.strip_prefix("super::") {
        path.pop();
        rest = r;
    }
    let segments: Vec<&str> = rest.split("::").collect();
    let (name, dirs) = segments.split_last().unwrap();
    path.extend(dirs.iter().map(|s| s.to_string()));
    format!("k8s.io.{}.{}", path.join("."), name)
}

/// The last type argument's path: `Option<Vec<super::X>>` -> `super::X`.
fn inner_type(ty: &str) -> String {
    let ty: String = ty.split_whitespace().collect::<Vec<_>>().join("");
    let ty = ty.trim_end_matches(',');
    let mut inner = ty;
    for wrapper in
        ["::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"]
    {
        while let Some(r) = inner.strip_prefix(wrapper) {
            inner = r.strip_suffix('>').unwrap_or(r);
        }
    }
    if let Some(r) = inner.strip_prefix("::prost::alloc::collections::BTreeMap<") {
        let r = r.strip_suffix('>').unwrap_or(r);
        return r.trim_end_matches(',').rsplit(',').next().unwrap().trim().to_owned();
    }
    inner.trim().to_owned()
}

fn parse_file(path: &Path, module: &[String], out: &mut BTreeMap<String, Vec<Field>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut current: Option<String> = None;
    let mut depth_mod = 0usize;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.starts_with("pub mod ") && line.ends_with('{') {
            depth_mod += 1;
        } else if depth_mod > 0 && lines[i].starts_with('}') {
            depth_mod -= 1;
        } else if depth_mod == 0 && line.starts_with("pub struct ") && line.ends_with('{') {
            let name = line["pub struct ".len()..line.len() - 1].trim().to_owned();
            current = Some(format!("k8s.io.{}.{}", module.join("."), name));
            out.entry(current.clone().unwrap()).or_default();
        } else if depth_mod == 0 && lines[i].starts_with('}') {
            current = None;
        } else if let (Some(msg), true) = (&current, line.starts_with("#[prost(")) {
            let attr = &line["#[prost(".len()..line.len() - 2];
            let mut decl = String::new();
            let mut j = i + 1;
            let mut open_angles = 0i32;
            while j < lines.len() {
                let l = lines[j].trim();
                if !l.starts_with("///") && !l.starts_with("#[") {
                    decl.push_str(l);
                    decl.push(' ');
                    open_angles += l.matches('<').count() as i32 - l.matches('>').count() as i32;
                    if l.ends_with(',') && open_angles <= 0 {
                        break;
                    }
                }
                j += 1;
            }
            i = j;
            let decl = decl.trim().strip_prefix("pub ").unwrap_or(decl.trim());
            let (name, ty) = decl.split_once(':').unwrap();
            let tag: u32 = attr
                .split("tag = \"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|t| t.parse().ok())
                .expect("tag");
            let repeated = attr.contains("repeated");
            let (kind, map_value) = if let Some(r) = attr.strip_prefix("btree_map = \"") {
                let spec = r.split('"').next().unwrap();
                let value = spec.split(',').nth(1).unwrap().trim().to_owned();
                ("map".to_owned(), Some(value))
            } else {
                (attr.split([',', ' ']).next().unwrap().to_owned(), None)
            };
            let message = if kind == "message" || map_value.as_deref() == Some("message") {
                resolve(module, &inner_type(ty))
            } else {
                String::new()
            };
            out.get_mut(msg).unwrap().push(Field {
                tag,
                name: name.trim().trim_start_matches("r#").to_owned(),
                kind,
                repeated,
                map_value,
                message,
            });
        }
        i += 1;
    }
}

fn walk(dir: &Path, module: &mut Vec<String>, out: &mut BTreeMap<String, Vec<Field>>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            module.push(p.file_name().unwrap().to_string_lossy().into_owned());
            walk(&p, module, out);
            module.pop();
        } else if p.file_name().is_some_and(|n| n == "mod.rs") && !module.is_empty() {
            parse_file(&p, module, out);
        }
    }
}

fn main() {
    let src = k8s_pb_src();
    println!("cargo:rerun-if-changed=build.rs");
    let mut messages = BTreeMap::new();
    for top in ["api", "apimachinery"] {
        let mut module = vec![top.to_owned()];
        walk(&src.join(top), &mut module, &mut messages);
    }
    assert!(messages.contains_key("k8s.io.api.core.v1.Pod"), "k8s-pb layout not understood");
    let mut code = String::from("// Generated by build.rs from the k8s-pb crate. Do not edit.\n");
    code.push_str("pub(crate) static MESSAGES: &[(&str, &[FieldInfo])] = &[\n");
    for (name, fields) in &messages {
        code.push_str(&format!("    ({name:?}, &["));
        for f in fields {
            code.push_str(&format!(
                "FieldInfo {{ tag: {}, name: {:?}, kind: {:?}, repeated: {}, map_value: {:?}, message: {:?} }}, ",
                f.tag, f.name, f.kind, f.repeated, f.map_value.as_deref().unwrap_or(""), f.message
            ));
        }
        code.push_str("]),\n");
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("fields.rs");
    std::fs::write(out, code).unwrap();
}
