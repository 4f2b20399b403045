//! The crate's house plan, checked over its sources: the layers `telemetry` → `core` →
//! `host` → `analyze` → `operator` → `bench` → `toolkit` each use only those before them,
//! no two modules use each other (directly or around a circle), and `core`
//! needs neither a Kubernetes client nor HTTP.
//!
//! A module here is a file or folder two levels down (`core::facts`,
//! `operator::lifecycle`), three under `core::crd`; a use is any `crate::` path
//! in its files, doc links included, since a doc link couples a newcomer's
//! reading the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: [&str; 7] = [
    "telemetry",
    "core",
    "host",
    "analyze",
    "operator",
    "bench",
    "toolkit",
];

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The module path of a source file: `core/crd/policy.rs` → `core::crd::policy`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

fn module_of(path: &[String]) -> String {
    let depth =
        if path.first().is_some_and(|p| p == "core") && path.get(1).is_some_and(|p| p == "crd") {
            3
        } else {
            2
        };
    path[..path.len().min(depth)].join("::")
}

fn layer_of(module: &str) -> Option<usize> {
    let top = module.split("::").next()?;
    LAYERS.iter().position(|layer| *layer == top)
}

struct Graph {
    uses: BTreeMap<String, BTreeSet<String>>,
    /// Module → the texts of its files.
    texts: BTreeMap<String, Vec<(PathBuf, String)>>,
}

fn graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let crate_path = regex::Regex::new(r"\bcrate((?:::[a-z_][a-z0-9_]*)+)").unwrap();
    let mut graph = Graph {
        uses: BTreeMap::new(),
        texts: BTreeMap::new(),
    };
    for file in files {
        let relative = file.strip_prefix(&root).unwrap().to_path_buf();
        let path = module_path(&relative);
        if path.is_empty() || path == ["main"] || path == ["lib"] {
            continue;
        }
        let module = module_of(&path);
        let text = std::fs::read_to_string(&file).unwrap();
        let uses = graph.uses.entry(module.clone()).or_default();
        for found in crate_path.captures_iter(&text) {
            let used: Vec<String> = found[1]
                .trim_start_matches("::")
                .split("::")
                .map(str::to_string)
                .collect();
            let used = module_of(&used);
            if used != module {
                uses.insert(used);
            }
        }
        assert!(
            !text.contains("super::super::"),
            "{}: reach other modules through `crate::` paths, which this check reads",
            relative.display()
        );
        graph
            .texts
            .entry(module)
            .or_default()
            .push((relative, text));
    }
    graph
}

#[test]
fn each_layer_uses_only_the_layers_before_it() {
    let graph = graph();
    let mut wrong = Vec::new();
    for (module, uses) in &graph.uses {
        let layer = layer_of(module).unwrap_or_else(|| panic!("{module} is in no layer"));
        for used in uses {
            if layer_of(used).is_some_and(|used_layer| used_layer > layer) {
                wrong.push(format!("{module} uses {used}"));
            }
        }
    }
    assert!(wrong.is_empty(), "uses against the layers: {wrong:#?}");
}

#[test]
fn no_modules_use_each_other_in_a_circle() {
    let graph = graph();
    // Depth-first search; a module met again while on the path closes a circle.
    fn visit<'g>(
        module: &'g str,
        graph: &'g Graph,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
        circles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|on| *on == module) {
            circles.push(format!("{} -> {module}", path[at..].join(" -> ")));
            return;
        }
        if !done.insert(module) {
            return;
        }
        path.push(module);
        for used in graph.uses.get(module).into_iter().flatten() {
            visit(used, graph, path, done, circles);
        }
        path.pop();
    }
    let mut circles = Vec::new();
    let mut done = BTreeSet::new();
    for module in graph.uses.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(circles.is_empty(), "modules in a circle: {circles:#?}");
}

#[test]
fn core_needs_no_kubernetes_client_and_no_http() {
    let graph = graph();
    let forbidden = [
        "kube::Client",
        "kube::Api",
        "kube::api",
        "reqwest",
        "hyper",
        "tokio",
    ];
    let mut found = Vec::new();
    for (module, texts) in &graph.texts {
        if layer_of(module) != Some(0) {
            continue;
        }
        for (file, text) in texts {
            for name in forbidden {
                if text.contains(name) {
                    found.push(format!("{} mentions {name}", file.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}
