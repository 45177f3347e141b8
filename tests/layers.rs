//! The layers of `src/`, enforced: a module may use modules of its own layer
//! or below, never above. From the bottom:
//!
//! 0. `runtime`, `ids`, `limits`, `error`, `format`, `proto`, `tls`: the
//!    seam, names, bounds, encodings' versions, the wire and its encryption;
//! 1. `machine`: the pure replicated state machine;
//! 2. `raft`: openraft's configuration and transport; `wire`: the protobuf
//!    forms of the state machine's public types;
//! 3. `storage`: the Raft log and state machine on disk;
//! 4. `client`: the call path, retries and routing;
//! 5. `server`: the services and the node.
//!
//! The binaries (`src/bin/`) sit on top and use the library as `shoal::`.

mod support;

use std::path::{Path, PathBuf};

/// The layer of each top-level module of `src/`.
const LAYERS: &[(&str, usize)] = &[
    ("runtime", 0),
    ("ids", 0),
    ("limits", 0),
    ("error", 0),
    ("format", 0),
    ("proto", 0),
    ("tls", 0),
    ("machine", 1),
    ("raft", 2),
    ("wire", 2),
    ("storage", 3),
    ("client", 4),
    ("server", 5),
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level module a file of `src/` belongs to (`None`: the crate
/// root or a binary).
fn module_of(path: &Path) -> Option<String> {
    let rest = path.strip_prefix("src").ok()?;
    let first = rest.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "bin" => None,
        file => Some(file.trim_end_matches(".rs").to_string()),
    }
}

/// The top-level modules a file names through `crate::` paths, in use
/// declarations or inline (`crate::runtime::rng()`), braced groups included.
fn crate_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = support::code(line);
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                None => vec![rest],
            };
            for name in names {
                let name: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        }
    }
    found
}

/// Every use of a higher layer: `file: module (layer) uses module (layer)`.
fn backward_imports(files: &[(PathBuf, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        let Some(module) = module_of(path) else {
            continue;
        };
        let own = layer(&module)
            .unwrap_or_else(|| panic!("{}: module {module} has no layer", path.display()));
        for used in crate_paths(text) {
            let Some(theirs) = layer(&used) else {
                continue;
            };
            if theirs > own {
                found.push(format!(
                    "{}: {module} (layer {own}) uses {used} (layer {theirs})",
                    path.display()
                ));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn no_module_uses_a_higher_layer() {
    let files = support::sources(&["src"]);
    assert_eq!(backward_imports(&files), Vec::<String>::new());
}

#[test]
fn every_module_has_a_layer() {
    let files = support::sources(&["src"]);
    for (path, _) in &files {
        if let Some(module) = module_of(path) {
            assert!(
                layer(&module).is_some(),
                "{}: give module {module} a layer in LAYERS",
                path.display()
            );
        }
    }
}

#[test]
fn a_planted_backward_import_is_caught() {
    let planted = vec![
        (
            PathBuf::from("src/machine/kv.rs"),
            "use crate::ids::ShardId;\nuse crate::server::node::run;\n".to_string(),
        ),
        (
            PathBuf::from("src/raft/mod.rs"),
            "use crate::{limits::X, storage::Storage};\n".to_string(),
        ),
        (
            PathBuf::from("src/storage/mod.rs"),
            "fn f() { let _ = crate::client::Client::new; } // crate::server in a comment\n"
                .to_string(),
        ),
        (
            PathBuf::from("src/server/node.rs"),
            "use crate::machine::Applied;\n".to_string(),
        ),
    ];
    assert_eq!(
        backward_imports(&planted),
        vec![
            "src/machine/kv.rs: machine (layer 1) uses server (layer 5)".to_string(),
            "src/raft/mod.rs: raft (layer 2) uses storage (layer 3)".to_string(),
            "src/storage/mod.rs: storage (layer 3) uses client (layer 4)".to_string(),
        ]
    );
}
