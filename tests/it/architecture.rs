//! The shape of `src/`: no file imports one that imports it back, however far round (issue
//! "Architecture"). Read from the source as text: every `crate::…` and `super::…` path, in `use`
//! declarations and inline, is resolved to the file that defines it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[test]
fn no_module_of_src_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    let graph: BTreeMap<String, BTreeSet<String>> = files
        .iter()
        .map(|file| {
            let module = module_of(&src, file);
            let text = std::fs::read_to_string(file).unwrap();
            let targets = imported_paths(&text, &module)
                .into_iter()
                .filter_map(|path| defining_file(&src, &path))
                .filter(|target| *target != relative(&src, file))
                .collect();
            (relative(&src, file), targets)
        })
        .collect();
    assert!(graph.len() > 30, "read {} files of src/", graph.len());
    assert!(graph.values().any(|targets| !targets.is_empty()), "found no imports at all");
    let circles = circles(&graph);
    assert!(circles.is_empty(), "import circles in src/: {circles:#?}");
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files
}

fn relative(src: &Path, file: &Path) -> String {
    file.strip_prefix(src).unwrap().to_string_lossy().into_owned()
}

/// `src/gateway/websocket/open.rs` → `["gateway", "websocket", "open"]`; `mod.rs` is its folder.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = relative(src, file);
    let mut segments: Vec<String> = relative.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if matches!(segments.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        segments.pop();
    }
    segments
}

/// Every path the file names from its own crate, as module segments from the crate's root.
/// A file's own unit tests (`#[cfg(test)] mod tests`) are left out: they import the file itself.
fn imported_paths(text: &str, module: &[String]) -> Vec<Vec<String>> {
    let code: String = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let code_outside_use: String =
        code.split(';').filter(|statement| !statement.lines().any(|line| is_use(line.trim_start()))).collect();
    let mut paths = Vec::new();
    for statement in code.split(';') {
        // A `use` declaration starts a line; what comes before it in this piece is other code.
        let declaration = statement.lines().map(str::trim_start).position(is_use);
        let (code, tree) = match declaration {
            Some(line) => {
                let lines: Vec<&str> = statement.lines().collect();
                let tree = lines[line..].join("\n");
                let (visibility, tree) = tree.trim_start().split_once("use ").unwrap_or_default();
                (lines[..line].join("\n"), Some((!visibility.is_empty(), tree.to_owned())))
            }
            None => (statement.to_owned(), None),
        };
        paths.extend(inline_paths(&code).into_iter().filter_map(|path| from_root(&path, module)));
        if let Some((public, tree)) = tree {
            for path in expand(&tree).into_iter().filter_map(|path| from_root(&path, module)) {
                // A module re-exporting its own child (`pub use sql::SqlStore` in `store/mod.rs`)
                // shows what it contains; it does not use it.
                // Unless the file's own code uses what it re-exports.
                let own_child = path.len() > module.len() + 1 && path.starts_with(module);
                let used = path.last().is_some_and(|name| uses_name(&code_outside_use, name));
                if !(public && own_child) || used {
                    paths.push(path);
                }
            }
        }
    }
    paths
}

fn is_use(line: &str) -> bool {
    ["use ", "pub use ", "pub(crate) use "].iter().any(|start| line.starts_with(start))
}

/// Whether `name` stands in `code` as a word of its own.
fn uses_name(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(at, _)| {
        let word = |c: char| c.is_alphanumeric() || c == '_';
        !code[..at].chars().next_back().is_some_and(word) && !code[at + name.len()..].chars().next().is_some_and(word)
    })
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let mut tree = tree.replace(['\n', '\t'], " ");
    // `path as name`: the name is this file's, the path is what counts.
    while let Some(at) = tree.find(" as ") {
        let end = tree[at + 4..].find(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(tree.len(), |n| at + 4 + n);
        tree.replace_range(at..end, "");
    }
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree.split("::").map(str::to_owned).filter(|s| !s.is_empty()).collect()];
    };
    let prefix: Vec<String> = tree[..open].split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (at, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|part| !part.is_empty())
        .flat_map(expand)
        .map(|rest| prefix.iter().cloned().chain(rest.into_iter().filter(|s| s != "self")).collect())
        .collect()
}

/// `crate::a::b` and `super::c` written in code, outside `use`.
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for start in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(at) = rest.find(start) {
            let before = rest[..at].chars().next_back();
            let path: String =
                rest[at..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            rest = &rest[at + start.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            paths.push(path.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect());
        }
    }
    paths
}

/// The path from the crate's root, or `None` for another crate's.
fn from_root(path: &[String], module: &[String]) -> Option<Vec<String>> {
    match path.first()?.as_str() {
        "crate" | "keygate" => Some(path[1..].to_vec()),
        "super" => {
            let mut base = module.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            Some(base.into_iter().chain(rest.iter().cloned()).collect())
        }
        "self" => Some(module.iter().chain(&path[1..]).cloned().collect()),
        // A child module (`use open::OpenSockets` in `websocket/mod.rs`), or another crate's
        // path, which then resolves to this very file and is dropped.
        _ => Some(module.iter().chain(path).cloned().collect()),
    }
}

/// The file that defines the longest leading part of `path`.
fn defining_file(src: &Path, path: &[String]) -> Option<String> {
    (1..=path.len()).rev().find_map(|length| {
        let module = path[..length].join("/");
        [format!("{module}.rs"), format!("{module}/mod.rs")].into_iter().find(|file| src.join(file).is_file())
    })
}

/// The strongly connected groups of more than one file (Tarjan's algorithm).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        circles: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a str) {
            let at = self.index.len();
            self.index.insert(node, at);
            self.low.insert(node, at);
            self.stack.push(node);
            for next in self.graph.get(node).into_iter().flatten() {
                if !self.index.contains_key(next.as_str()) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next.as_str()]);
                    self.low.insert(node, low);
                } else if self.stack.contains(&next.as_str()) {
                    let low = self.low[node].min(self.index[next.as_str()]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let start = self.stack.iter().rposition(|n| *n == node).unwrap();
                let group: Vec<String> = self.stack.drain(start..).map(str::to_owned).collect();
                if group.len() > 1 {
                    self.circles.push(group);
                }
            }
        }
    }
    let mut walk = Walk { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), circles: Vec::new() };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.circles
}
