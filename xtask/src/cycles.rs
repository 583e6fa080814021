//! `cargo xtask cycles`: no two source files of a crate may import each other, directly or
//! through others. A layered tree reads top-down; a cycle means two files are one concern
//! split in two, or a helper sits in the wrong place.
//!
//! The check is lexical, on purpose small: it reads `use` trees and `crate::`/`super::`/
//! `self::` paths (and, in a module's own file, paths through its child modules), resolves
//! each to the deepest module file that exists, and looks for strongly connected
//! components in the resulting file graph. Declaring a module (`mod x;`) is not an import.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

/// The crates whose files are checked, relative to the workspace root.
const CRATES: &[&str] = &[
    "agent/src",
    "common/src",
    "ebpf/src",
    "vm-tests/src",
    "xtask/src",
];

/// One source file: its module path (`["daemon", "swap"]`) and text.
struct Source {
    module: Vec<String>,
    text: String,
}

/// Module path of a file relative to its crate's `src/`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs").to_owned();
        if !matches!(stem.as_str(), "mod" | "lib" | "main") {
            parts.push(stem);
        }
    }
    parts
}

/// Removes comments and string literals, so neither contributes paths.
fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Expands a `use` tree (`a::{b, c::{d as e}, f::*}`) into its paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    fn split_top(s: &str) -> Vec<&str> {
        let (mut depth, mut start, mut out) = (0, 0, Vec::new());
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.push(&s[start..]);
        out
    }
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let prefix: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let inner = tree[open + 1..].trim_end().trim_end_matches('}');
        let mut out = Vec::new();
        for part in split_top(inner) {
            for rest in expand(part) {
                let mut p = prefix.clone();
                p.extend(rest.into_iter().filter(|s| s != "self"));
                out.push(p);
            }
        }
        return out;
    }
    let path = tree.split(" as ").next().unwrap_or("");
    let segs: Vec<String> = path
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "*")
        .map(str::to_owned)
        .collect();
    if segs.is_empty() {
        Vec::new()
    } else {
        vec![segs]
    }
}

/// The paths a file refers to, each as (segments, line).
fn paths_in(text: &str) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    // `use` declarations, possibly over several lines.
    let mut rest = 0;
    while let Some(found) = text[rest..].find("use ") {
        let at = rest + found;
        rest = at + 4;
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = text[at..].find(';') else {
            break;
        };
        for p in expand(&text[at + 4..at + end]) {
            out.push((p, line_of(at)));
        }
        rest = at + end;
    }
    // Paths in code: `crate::a::b`, `super::a`, `self::a`, `name::x`.
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if is_ident(bytes[i]) && (i == 0 || !(is_ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            let start = i;
            let mut segs = Vec::new();
            let mut j = i;
            loop {
                let s = j;
                while j < bytes.len() && is_ident(bytes[j]) {
                    j += 1;
                }
                segs.push(text[s..j].to_owned());
                if text[j..].starts_with("::") && j + 2 < bytes.len() && is_ident(bytes[j + 2]) {
                    j += 2;
                } else {
                    break;
                }
            }
            if segs.len() > 1 {
                out.push((segs, line_of(start)));
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// The file of the deepest existing module along `segs`, starting at module `base`.
fn resolve(
    files: &BTreeMap<Vec<String>, PathBuf>,
    base: &[String],
    segs: &[String],
) -> Option<PathBuf> {
    let mut module = base.to_vec();
    let mut found = files.get(&module).cloned();
    for s in segs {
        module.push(s.clone());
        match files.get(&module) {
            Some(f) => found = Some(f.clone()),
            None => break,
        }
    }
    found
}

/// The file-level import graph of one crate: (importer, imported) -> first line.
fn graph(src: &Path) -> Result<BTreeMap<(PathBuf, PathBuf), usize>> {
    let mut sources = BTreeMap::new();
    let mut files = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src)?.to_path_buf();
                let module = module_of(&rel);
                let text = strip(&std::fs::read_to_string(&path)?);
                // main.rs and lib.rs are both the crate root; prefer lib.rs for `crate::`.
                if !(rel == Path::new("main.rs") && files.contains_key(&module)) {
                    files.insert(module.clone(), rel.clone());
                }
                sources.insert(rel, Source { module, text });
            }
        }
    }
    let mut edges = BTreeMap::new();
    for (rel, source) in &sources {
        let me = &source.module;
        // An inline module (`mod tests { ... }`) ends the file in this code base: paths
        // after it are relative to that inline module, which is part of this file.
        let inline_at = source
            .text
            .lines()
            .position(|l| {
                let l = l.trim_start().trim_start_matches("pub ");
                l.starts_with("mod ") && l.trim_end().ends_with('{')
            })
            .map(|n| n + 1);
        for (segs, line) in paths_in(&source.text) {
            let inside_inline = inline_at.is_some_and(|at| line > at);
            let mut base: Vec<String> = if inside_inline {
                let mut m = me.clone();
                m.push("(inline)".into());
                m
            } else {
                me.clone()
            };
            let mut rest = segs.as_slice();
            match rest.first().map(String::as_str) {
                Some("crate") => {
                    base.clear();
                    rest = &rest[1..];
                }
                Some("self") => rest = &rest[1..],
                Some("super") => {
                    while rest.first().map(String::as_str) == Some("super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                }
                Some(first) => {
                    // Relative to this module only if it names a child module.
                    let mut child = me.clone();
                    child.push(first.to_owned());
                    if !files.contains_key(&child) {
                        continue;
                    }
                    base = me.clone();
                }
                None => continue,
            }
            if base.last().map(String::as_str) == Some("(inline)") {
                base.pop();
            }
            if let Some(target) = resolve(&files, &base, rest) {
                if &target != rel {
                    edges.entry((rel.clone(), target)).or_insert(line);
                }
            }
        }
    }
    Ok(edges)
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(edges: &BTreeMap<(PathBuf, PathBuf), usize>) -> Vec<Vec<PathBuf>> {
    struct State<'a> {
        adj: BTreeMap<&'a PathBuf, Vec<&'a PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on: BTreeSet<&'a PathBuf>,
        next: usize,
        out: Vec<Vec<PathBuf>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a PathBuf) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        for w in s.adj.get(v).cloned().unwrap_or_default() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut state = State {
        adj: BTreeMap::new(),
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for (a, b) in edges.keys() {
        state.adj.entry(a).or_default().push(b);
        state.adj.entry(b).or_default();
    }
    let nodes: Vec<&PathBuf> = state.adj.keys().copied().collect();
    for v in nodes {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.out
}

/// Fails, naming each cycle and the imports that make it, if any crate has one.
pub fn check(root: &Path) -> Result<()> {
    let mut found = Vec::new();
    for krate in CRATES {
        let src = root.join(krate);
        let edges = graph(&src)?;
        for comp in cycles(&edges) {
            let within: Vec<String> = edges
                .iter()
                .filter(|((a, b), _)| comp.contains(a) && comp.contains(b))
                .map(|((a, b), line)| format!("    {}:{line} -> {}", a.display(), b.display()))
                .collect();
            found.push(format!(
                "{krate}: a cycle among {} files:\n{}",
                comp.len(),
                within.join("\n")
            ));
        }
    }
    if !found.is_empty() {
        bail!(
            "import cycles (move what both sides need into a leaf module):\n{}",
            found.join("\n")
        );
    }
    eprintln!("no import cycle among the files of {}", CRATES.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_trees_expand_to_every_path() {
        let got = expand("super::{a::{B, c::D as E}, self, f::*}");
        assert_eq!(
            got,
            vec![
                vec!["super", "a", "B"],
                vec!["super", "a", "c", "D"],
                vec!["super"],
                vec!["super", "f"],
            ]
        );
    }

    #[test]
    fn a_cycle_through_a_parent_module_is_found() {
        let dir = std::env::temp_dir().join(format!("xtask-cycles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("m")).expect("dir");
        let write = |p: &str, t: &str| std::fs::write(dir.join(p), t).expect("write");
        write("lib.rs", "pub mod m;\npub mod leaf;\n");
        write("leaf.rs", "pub fn f() {}\n");
        write(
            "m/mod.rs",
            "pub mod a;\npub use a::A;\npub struct Shared;\n",
        );
        // a.rs takes Shared from its parent, which re-exports a.rs: a cycle.
        write(
            "m/a.rs",
            "use super::Shared;\nuse crate::leaf::f;\npub struct A;\n",
        );
        let edges = graph(&dir).expect("graph");
        let found = cycles(&edges);
        assert_eq!(
            found,
            vec![vec![PathBuf::from("m/a.rs"), PathBuf::from("m/mod.rs")]]
        );
        // Moving Shared into a leaf breaks it.
        write("m/mod.rs", "pub mod a;\npub mod shared;\npub use a::A;\n");
        write("m/shared.rs", "pub struct Shared;\n");
        write(
            "m/a.rs",
            "use super::shared::Shared;\n// super::Shared in a comment\npub struct A;\n",
        );
        assert!(cycles(&graph(&dir).expect("graph")).is_empty());
    }
}
