//! The relay's layering, checked on its source: no import cycle between the files of
//! `relay/src`, and imports pointing one way (transport → protocol → service → hub → core;
//! pg → core). A new cycle or a new edge against the layers fails this test with the files
//! involved. (Test code — `tests.rs` files and `#[cfg(test)] mod tests { .. }` blocks — is
//! left out: tests may reach anywhere.)
//!
//! What counts as an import: every `crate::`, `super::` and `self::` path in a `use` item or
//! in code, resolved to the file that defines it (a re-export in a `mod.rs` is followed to
//! the file it re-exports from). Comments and `mod x;` declarations are not imports.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Module path (segments after `crate`) of a source file.
fn module_of(rel: &Path) -> Vec<String> {
    let mut segs: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    let last = segs.pop().unwrap();
    match last.as_str() {
        "mod.rs" | "lib.rs" | "main.rs" => {}
        other => segs.push(other.trim_end_matches(".rs").to_string()),
    }
    segs
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") && p.file_name().unwrap() != "tests.rs" {
            out.push(p);
        }
    }
}

/// The file's code without comments and without its test module.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines.peek().is_some_and(|n| n.trim_start().starts_with("mod tests {"))
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        let line = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into full paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_string()];
    };
    let prefix = tree[..open].trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| {
            expand(p)
                .into_iter()
                .map(|s| if s == "self" { prefix.to_string() } else { format!("{prefix}::{s}") })
        })
        .collect()
}

/// Every path the code names that starts with `crate`, `super` or `self`, and the `pub use`
/// re-exports (name → path) it makes.
fn paths(code: &str) -> (Vec<String>, Vec<(String, String)>) {
    let mut found = Vec::new();
    let mut reexports = Vec::new();
    let mut rest = String::new();
    let mut lines = code.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let (public, item) = match t.split_once("use ") {
            Some(("", _)) => (false, t),
            Some((vis, _)) if vis.trim() == "pub" || vis.trim().starts_with("pub(") => (true, t),
            _ => {
                rest.push_str(line);
                rest.push('\n');
                continue;
            }
        };
        let mut item = item[item.find("use ").unwrap() + 4..].to_string();
        while !item.contains(';') {
            let Some(next) = lines.next() else { break };
            item.push_str(next);
        }
        for p in expand(item.split(';').next().unwrap()) {
            if public {
                reexports.push((p.rsplit("::").next().unwrap().to_string(), p.clone()));
            }
            found.push(p);
        }
    }
    let code = rest.as_str();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            let ok = at == 0 || !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
            let end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            if ok {
                found.push(code[at..end].trim_end_matches(':').to_string());
            }
            from = end.max(at + start.len());
        }
    }
    (found, reexports)
}

struct Tree {
    /// module path → file
    modules: HashMap<Vec<String>, PathBuf>,
    /// file → its `pub use` re-exports (name → path as written)
    reexports: HashMap<PathBuf, Vec<(String, String)>>,
}

impl Tree {
    /// Absolute module path of `path` as written in the module `here` (None for a path into
    /// another crate).
    fn absolute(&self, here: &[String], path: &str) -> Option<Vec<String>> {
        let mut segs: Vec<&str> = path.split("::").collect();
        let mut base: Vec<String> = match segs.first()? {
            &"crate" => Vec::new(),
            &"self" | &"super" => here.to_vec(),
            child => {
                // `use child::Item` names a child module of `here`.
                let mut m = here.to_vec();
                m.push(child.to_string());
                if !self.modules.contains_key(&m) {
                    return None;
                }
                here.to_vec()
            }
        };
        if segs[0] == "crate" || segs[0] == "self" {
            segs.remove(0);
        }
        while segs.first() == Some(&"super") {
            segs.remove(0);
            base.pop()?;
        }
        base.extend(segs.iter().map(|s| s.to_string()));
        Some(base)
    }

    /// The file that defines the item or module at `abs`, following re-exports.
    fn resolve(&self, abs: &[String], depth: usize) -> Option<PathBuf> {
        for n in (0..=abs.len()).rev() {
            let Some(file) = self.modules.get(&abs[..n]) else { continue };
            if depth < 8 && n < abs.len() {
                if let Some((_, target)) =
                    self.reexports.get(file).and_then(|r| r.iter().find(|(name, _)| *name == abs[n]))
                {
                    if let Some(t) = self.absolute(&abs[..n], target) {
                        if let Some(f) = self.resolve(&t, depth + 1) {
                            return Some(f);
                        }
                    }
                }
            }
            return Some(file.clone());
        }
        None
    }
}

/// Directed file graph of `relay/src`, file names relative to it.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(SRC);
    let mut all = Vec::new();
    files(src, &mut all);
    let mut tree = Tree { modules: HashMap::new(), reexports: HashMap::new() };
    let mut found = Vec::new();
    for f in &all {
        let rel = f.strip_prefix(src).unwrap().to_path_buf();
        let module = module_of(&rel);
        let (paths, reexports) = paths(&code(&std::fs::read_to_string(f).unwrap()));
        tree.modules.entry(module.clone()).or_insert_with(|| rel.clone());
        tree.reexports.insert(rel.clone(), reexports);
        found.push((rel, module, paths));
    }
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, module, paths) in found {
        let name = rel.to_string_lossy().into_owned();
        let edges = g.entry(name.clone()).or_default();
        for p in paths {
            let Some(abs) = tree.absolute(&module, &p) else { continue };
            if let Some(target) = tree.resolve(&abs, 0) {
                let t = target.to_string_lossy().into_owned();
                if t != name && t != "lib.rs" {
                    edges.insert(t);
                }
            }
        }
    }
    g
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// The top-level part of the relay a file belongs to (`hub`, `pg`, `main.rs`, ...).
fn part(file: &str) -> &str {
    file.split('/').next().unwrap().trim_end_matches(".rs")
}

/// Parts each part must never import.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "core",
        &[
            "app",
            "config",
            "hub",
            "metrics",
            "ops",
            "pg",
            "protocol",
            "server",
            "service",
            "transport",
            "webhook",
        ],
    ),
    (
        "metrics",
        &["app", "config", "hub", "ops", "pg", "protocol", "server", "service", "transport", "webhook"],
    ),
    (
        "pg",
        &["app", "config", "hub", "metrics", "ops", "protocol", "server", "service", "transport", "webhook"],
    ),
    ("hub", &["app", "config", "ops", "pg", "protocol", "server", "service", "transport", "webhook"]),
    ("webhook", &["app", "config", "hub", "ops", "protocol", "server", "service", "transport"]),
    ("app", &["ops", "protocol", "server", "service", "transport"]),
    ("service", &["ops", "protocol", "server", "transport"]),
    ("protocol", &["ops", "server", "transport"]),
    ("transport", &["ops", "server"]),
];

#[test]
fn relay_files_have_no_import_cycle() {
    let g = graph();
    assert!(g.len() > 40, "the source walk found only {} files", g.len());
    let found = cycles(&g);
    assert!(found.is_empty(), "import cycles between files of relay/src:\n{found:#?}");
}

#[test]
fn imports_point_down_the_layers() {
    let g = graph();
    let mut wrong = Vec::new();
    for (file, edges) in &g {
        let Some((_, banned)) = FORBIDDEN.iter().find(|(p, _)| *p == part(file)) else { continue };
        for target in edges {
            if banned.contains(&part(target)) {
                wrong.push(format!("{file} → {target}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_cycles_and_re_exports() {
    // The parser itself: use trees, relative paths and inline paths.
    let (p, r) = paths("pub use self::a::{b, c::{d as e, self}};\nfn f() { crate::x::y(); super::z::W }\n");
    assert_eq!(p, ["self::a::b", "self::a::c::d", "self::a::c", "crate::x::y", "super::z::W"]);
    assert_eq!(r.len(), 3);
    let mut tree = Tree { modules: HashMap::new(), reexports: HashMap::new() };
    tree.modules.insert(vec!["a".into(), "k".into()], "a/k.rs".into());
    let ab = ["a".to_string(), "b".to_string()];
    assert_eq!(tree.absolute(&ab, "super::c::D"), Some(vec!["a".into(), "c".into(), "D".into()]));
    assert_eq!(tree.absolute(&["a".into()], "k::E"), Some(vec!["a".into(), "k".into(), "E".into()]));
    assert_eq!(tree.absolute(&["a".into()], "serde::Serialize"), None);
    let mut g = BTreeMap::new();
    g.insert("a.rs".to_string(), BTreeSet::from(["b.rs".to_string()]));
    g.insert("b.rs".to_string(), BTreeSet::from(["a.rs".to_string()]));
    g.insert("c.rs".to_string(), BTreeSet::from(["a.rs".to_string()]));
    assert_eq!(cycles(&g), vec![vec!["a.rs".to_string(), "b.rs".to_string()]]);
}
