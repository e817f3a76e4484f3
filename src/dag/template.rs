//! `$t` templates at load time: their syntax, and the names they read. A template that uses
//! a name Airflow's context does not have fails every run, so `updraft dags validate` says
//! so up front, with the place in the template.
//!
//! The context names are listed here, below the worker that builds the context, so
//! validation and rendering share one list (a worker test holds the context to it).

use std::collections::BTreeSet;

use minijinja::machinery::ast::{self, CallArg, Expr, Stmt};
use minijinja::machinery::{parse, WhitespaceConfig};
use minijinja::syntax::SyntaxConfig;

/// Every name Airflow 3.3's task context has (`RuntimeTaskInstance.get_template_context`),
/// and so updraft's. The `ds`/`ts` family, `logical_date`, `data_interval_*` and
/// `prev_data_interval_*_success` are absent for a run without a logical date.
pub const CONTEXT_NAMES: &[&str] = &[
    "conn",
    "dag",
    "dag_run",
    "data_interval_end",
    "data_interval_start",
    "ds",
    "ds_nodash",
    "inlet_events",
    "inlets",
    "logical_date",
    "macros",
    "map_index_template",
    "outlet_events",
    "outlets",
    "params",
    "partition_date",
    "partition_key",
    "prev_data_interval_end_success",
    "prev_data_interval_start_success",
    "prev_end_date_success",
    "prev_start_date_success",
    "run_id",
    "task",
    "task_instance",
    "task_instance_key_str",
    "task_reschedule_count",
    "task_state_store",
    "ti",
    "triggering_asset_events",
    "ts",
    "ts_nodash",
    "ts_nodash_with_tz",
    "var",
];

/// Globals every template has besides the context (Jinja's, as far as updraft has them).
pub const GLOBAL_NAMES: &[&str] = &["range", "dict", "namespace"];

/// A name a template reads, where it first does (1-based line and column in the template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameUse {
    pub name: String,
    pub line: u32,
    pub column: u32,
}

/// Parses a template as the worker will (the same minijinja syntax).
pub fn parse_template(source: &str) -> Result<Stmt<'_>, minijinja::Error> {
    parse(
        source,
        "<template>",
        SyntaxConfig,
        WhitespaceConfig::default(),
    )
}

/// The names `source` reads that no statement in it assigns (`set`, `for`, `macro`
/// arguments, `with`), in order of first use. Names only tested with `is defined` /
/// `is undefined` or given a `default` are left out: the template copes with their absence.
pub fn free_names(source: &str) -> Result<Vec<NameUse>, minijinja::Error> {
    let ast = parse_template(source)?;
    let mut w = Walker::default();
    w.stmt(&ast);
    let mut seen = BTreeSet::new();
    Ok(w.reads
        .into_iter()
        .filter(|u| {
            !w.bound.contains(&u.name)
                && !w.guarded.contains(&u.name)
                && seen.insert(u.name.clone())
        })
        .collect())
}

/// The free names of `source` that are neither in the context nor globals.
pub fn unknown_names(source: &str) -> Result<Vec<NameUse>, minijinja::Error> {
    Ok(free_names(source)?
        .into_iter()
        .filter(|u| {
            !CONTEXT_NAMES.contains(&u.name.as_str()) && !GLOBAL_NAMES.contains(&u.name.as_str())
        })
        .collect())
}

#[derive(Default)]
struct Walker {
    reads: Vec<NameUse>,
    bound: BTreeSet<String>,
    /// Names the template checks with `is defined` or gives a `default`.
    guarded: BTreeSet<String>,
}

impl Walker {
    fn body(&mut self, stmts: &[Stmt<'_>]) {
        for s in stmts {
            self.stmt(s);
        }
    }

    fn stmt(&mut self, s: &Stmt<'_>) {
        match s {
            Stmt::Template(t) => self.body(&t.children),
            Stmt::EmitExpr(e) => self.expr(&e.expr),
            Stmt::EmitRaw(_) => {}
            Stmt::ForLoop(f) => {
                self.expr(&f.iter);
                self.bind(&f.target);
                self.bound.insert("loop".into());
                if let Some(e) = &f.filter_expr {
                    self.expr(e);
                }
                self.body(&f.body);
                self.body(&f.else_body);
            }
            Stmt::IfCond(i) => {
                self.expr(&i.expr);
                self.body(&i.true_body);
                self.body(&i.false_body);
            }
            Stmt::WithBlock(w) => {
                for (target, value) in &w.assignments {
                    self.expr(value);
                    self.bind(target);
                }
                self.body(&w.body);
            }
            Stmt::Set(s) => {
                self.expr(&s.expr);
                match &s.target {
                    // `{% set ns.x = ... %}` reads `ns`.
                    Expr::GetAttr(a) => self.expr(&a.expr),
                    t => self.bind(t),
                }
            }
            Stmt::SetBlock(s) => {
                self.bind(&s.target);
                if let Some(f) = &s.filter {
                    self.expr(f);
                }
                self.body(&s.body);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled);
                self.body(&a.body);
            }
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter);
                self.body(&f.body);
            }
            Stmt::Macro(m) => self.macro_decl(m),
            Stmt::CallBlock(c) => {
                self.call(&c.call);
                self.macro_decl(&c.macro_decl);
            }
            Stmt::Do(d) => self.call(&d.call),
            Stmt::Block(b) => self.body(&b.body),
            Stmt::Extends(x) => self.expr(&x.name),
            Stmt::Include(x) => self.expr(&x.name),
            Stmt::Import(x) => {
                self.expr(&x.expr);
                self.bind(&x.name);
            }
            Stmt::FromImport(x) => {
                self.expr(&x.expr);
                for (name, alias) in &x.names {
                    self.bind(alias.as_ref().unwrap_or(name));
                }
            }
        }
    }

    fn macro_decl(&mut self, m: &ast::Macro<'_>) {
        self.bound.insert(m.name.to_string());
        for a in &m.args {
            self.bind(a);
        }
        for d in &m.defaults {
            self.expr(d);
        }
        for implicit in ["caller", "varargs", "kwargs"] {
            self.bound.insert(implicit.into());
        }
        self.body(&m.body);
    }

    fn bind(&mut self, target: &Expr<'_>) {
        match target {
            Expr::Var(v) => {
                self.bound.insert(v.id.to_string());
            }
            Expr::List(l) => {
                for i in &l.items {
                    self.bind(i);
                }
            }
            other => self.expr(other),
        }
    }

    fn call(&mut self, c: &ast::Call<'_>) {
        self.expr(&c.expr);
        self.args(&c.args);
    }

    fn args(&mut self, args: &[CallArg<'_>]) {
        for a in args {
            match a {
                CallArg::Pos(e)
                | CallArg::Kwarg(_, e)
                | CallArg::PosSplat(e)
                | CallArg::KwargSplat(e) => self.expr(e),
            }
        }
    }

    fn expr(&mut self, e: &Expr<'_>) {
        match e {
            Expr::Var(v) => {
                let span = v.span();
                self.reads.push(NameUse {
                    name: v.id.to_string(),
                    line: span.start_line as u32,
                    column: span.start_col as u32 + 1,
                });
            }
            Expr::Const(_) => {}
            Expr::Slice(s) => {
                self.expr(&s.expr);
                for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(part);
                }
            }
            Expr::UnaryOp(u) => self.expr(&u.expr),
            Expr::BinOp(b) => {
                self.expr(&b.left);
                self.expr(&b.right);
            }
            Expr::Compare(c) => {
                self.expr(&c.expr);
                for op in &c.ops {
                    self.expr(&op.expr);
                }
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr);
                self.expr(&i.true_expr);
                if let Some(f) = &i.false_expr {
                    self.expr(f);
                }
            }
            Expr::Filter(f) => {
                let tolerant = matches!(f.name, "default" | "d");
                match &f.expr {
                    Some(Expr::Var(v)) if tolerant => {
                        self.guarded.insert(v.id.to_string());
                    }
                    Some(inner) => self.expr(inner),
                    None => {}
                }
                self.args(&f.args);
            }
            Expr::Test(t) => {
                let tolerant = matches!(t.name, "defined" | "undefined");
                match &t.expr {
                    Expr::Var(v) if tolerant => {
                        self.guarded.insert(v.id.to_string());
                    }
                    other => self.expr(other),
                }
                self.args(&t.args);
            }
            Expr::GetAttr(a) => self.expr(&a.expr),
            Expr::GetItem(g) => {
                self.expr(&g.expr);
                self.expr(&g.subscript_expr);
            }
            Expr::Call(c) => self.call(c),
            Expr::List(l) => {
                for i in &l.items {
                    self.expr(i);
                }
            }
            Expr::Map(m) => {
                for (k, v) in m.keys.iter().zip(&m.values) {
                    self.expr(k);
                    self.expr(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(src: &str) -> Vec<String> {
        unknown_names(src)
            .unwrap()
            .into_iter()
            .map(|u| u.name)
            .collect()
    }

    #[test]
    fn finds_names_the_context_lacks() {
        assert!(names("{{ ds }} {{ ti.xcom_pull('x') }} {{ macros.ds_add(ds, 1) }}").is_empty());
        assert_eq!(
            names("{{ execution_date }} {{ next_ds }}"),
            ["execution_date", "next_ds"]
        );
        let u = &unknown_names("a\n  {{ nope }}").unwrap()[0];
        assert_eq!((u.line, u.column), (2, 6));
    }

    #[test]
    fn local_names_and_guarded_names_are_fine() {
        assert!(names("{% set x = 1 %}{{ x }}").is_empty());
        assert!(names(
            "{% for a, b in params.items() %}{{ a }}{{ b }}{{ loop.index }}{% endfor %}"
        )
        .is_empty());
        assert!(
            names("{% macro m(x, y=ds) %}{{ x }}{{ caller }}{% endmacro %}{{ m(1) }}").is_empty()
        );
        assert!(names("{% set n = namespace(c=0) %}{% set n.c = 1 %}{{ range(3) }}").is_empty());
        assert!(
            names("{% if maybe is defined %}{{ maybe }}{% endif %}{{ other | default('x') }}")
                .is_empty()
        );
    }
}
