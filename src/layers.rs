//! Holds the code to the layer order in `lib.rs`: every `crate::` path in a module must name
//! a module on a lower layer (or its own), and sibling files inside a module must not import
//! each other in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/`: `src/db/tasks.rs` → `["db", "tasks"]`,
/// `src/db/mod.rs` → `["db"]`, `src/lib.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// `text` without its comments (everything after `//` on a line): doc links are not imports.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::a::b` path in the code of `text`, as its segments.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let text = &code_only(text);
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        if text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` in a macro, `mycrate::`
        }
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c}`: each item's first segment
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(vec![name]);
                }
            }
            continue;
        }
        let mut segs = Vec::new();
        let mut rest = rest;
        loop {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() {
                break;
            }
            rest = &rest[name.len()..];
            segs.push(name);
            match rest.strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

fn layer_of(module: &str) -> Option<usize> {
    crate::LAYERS.iter().position(|l| l.contains(&module))
}

fn sources() -> (PathBuf, Vec<(PathBuf, String)>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let texts = files
        .into_iter()
        .map(|f| {
            let t = std::fs::read_to_string(&f).unwrap();
            (f, t)
        })
        .collect();
    (src, texts)
}

#[test]
fn imports_point_down() {
    let (src, files) = sources();
    let mut wrong = Vec::new();
    for (file, text) in &files {
        let module = module_of(&src, file);
        let Some(top) = module.first() else { continue };
        if top == "layers" {
            continue;
        }
        let Some(mine) = layer_of(top) else {
            wrong.push(format!(
                "{}: module `{top}` is not in lib.rs's LAYERS",
                file.display()
            ));
            continue;
        };
        for path in crate_paths(text) {
            let target = &path[0];
            if target == top || target == "LAYERS" {
                continue;
            }
            match layer_of(target) {
                Some(theirs) if theirs > mine => {}
                Some(_) => wrong.push(format!(
                    "{}: `{top}` (layer {}) uses `crate::{}`, which is not on a lower layer",
                    file.display(),
                    mine + 1,
                    path.join("::")
                )),
                None => wrong.push(format!(
                    "{}: `crate::{}` is not a module in LAYERS",
                    file.display(),
                    path.join("::")
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer order:\n{}",
        wrong.join("\n")
    );
}

/// Every path a file names, made absolute: `crate::a::b` as is, `super::x` from where the
/// file sits.
fn absolute_paths(me: &[String], text: &str) -> Vec<Vec<String>> {
    let mut out = crate_paths(text);
    let code = code_only(text);
    for (i, _) in code.match_indices("super::") {
        if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            continue; // the second `super::` of `super::super::`, or `x::super::`
        }
        let mut base = me[..me.len().saturating_sub(1)].to_vec();
        let mut rest = &code[i + "super::".len()..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            base.push(name);
            out.push(base);
        }
    }
    out
}

/// Sibling parts of one module (`dag/validate.rs`, `dag/task.rs`; `web/auth.rs`, the
/// `web/pages/` folder) must not import each other in a circle: shared pieces go down into a
/// part both use. A file deep in a folder counts for the folder at every level.
#[test]
fn siblings_form_no_cycles() {
    let (src, files) = sources();
    let known: BTreeSet<Vec<String>> = files.iter().map(|(f, _)| module_of(&src, f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (file, text) in &files {
        let me = module_of(&src, file);
        let paths = absolute_paths(&me, text);
        for depth in 2..=me.len() {
            let node = me[..depth].to_vec();
            let parent = &me[..depth - 1];
            for path in &paths {
                if path.len() >= depth && path[..depth - 1] == *parent {
                    let target = path[..depth].to_vec();
                    if target != node && known.contains(&target) {
                        edges.entry(node.clone()).or_default().insert(target);
                    }
                }
            }
        }
    }
    // Depth-first search for a cycle.
    fn visit(
        n: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            return Some(stack[at..].to_vec());
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.clone());
        None
    }
    let mut done = BTreeSet::new();
    let mut cycles = Vec::new();
    for n in edges.keys() {
        if let Some(cycle) = visit(n, &edges, &mut Vec::new(), &mut done) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            cycles.push(names.join(" → "));
        }
    }
    assert!(
        cycles.is_empty(),
        "sibling modules import each other in a circle:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_checks_see_paths() {
    assert_eq!(
        crate_paths("use crate::db::tasks::{a, b}; $crate::x; crate::core // crate::bench\ncrate::{dag, web::x}"),
        vec![
            vec!["db".to_string(), "tasks".to_string()],
            vec!["core".to_string()],
            vec!["dag".to_string()],
            vec!["web".to_string()],
        ]
    );
}
