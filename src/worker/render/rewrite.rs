//! The syntax-tree rewrite that gives templates Python's semantics (see `compile`): every
//! arithmetic operator, comparison, attribute and item lookup and tuple literal becomes a
//! call of a `__py_*` function; assignment targets and method callees stay as they are;
//! spans are kept, so errors point at the template the user wrote.

use minijinja::machinery::ast::{self, CallArg, Expr, Spanned, Stmt};
use minijinja::machinery::Span;
use minijinja::Value;

/// The name of the variable an expression is, for "'x' is undefined".
fn var_name(e: &Expr<'_>) -> Value {
    match e {
        Expr::Var(v) => Value::from(v.id),
        _ => Value::from(()),
    }
}

/// The syntax-tree rewrite described in the module docs.
pub struct Rewrite<'s> {
    pub source: &'s str,
}

fn call<'a>(name: &'a str, args: Vec<Expr<'a>>, span: Span) -> Expr<'a> {
    Expr::Call(Spanned::new(
        ast::Call {
            expr: Expr::Var(Spanned::new(ast::Var { id: name }, span)),
            args: args.into_iter().map(CallArg::Pos).collect(),
        },
        span,
    ))
}

fn constant<'a>(v: Value, span: Span) -> Expr<'a> {
    Expr::Const(Spanned::new(ast::Const { value: v }, span))
}

impl<'s> Rewrite<'s> {
    fn stmts(&self, s: &[Stmt<'s>]) -> Vec<Stmt<'s>> {
        s.iter().map(|x| self.stmt(x)).collect()
    }

    pub fn stmt(&self, s: &Stmt<'s>) -> Stmt<'s> {
        match s {
            Stmt::Template(t) => Stmt::Template(Spanned::new(
                ast::Template {
                    children: self.stmts(&t.children),
                },
                t.span(),
            )),
            Stmt::EmitExpr(e) => Stmt::EmitExpr(Spanned::new(
                ast::EmitExpr {
                    expr: self.expr(&e.expr),
                },
                e.span(),
            )),
            Stmt::EmitRaw(r) => Stmt::EmitRaw(Spanned::new(ast::EmitRaw { raw: r.raw }, r.span())),
            Stmt::ForLoop(f) => Stmt::ForLoop(Spanned::new(
                ast::ForLoop {
                    target: target(&f.target),
                    iter: self.expr(&f.iter),
                    filter_expr: f.filter_expr.as_ref().map(|e| self.expr(e)),
                    recursive: f.recursive,
                    body: self.stmts(&f.body),
                    else_body: self.stmts(&f.else_body),
                },
                f.span(),
            )),
            Stmt::IfCond(i) => Stmt::IfCond(Spanned::new(
                ast::IfCond {
                    expr: self.expr(&i.expr),
                    true_body: self.stmts(&i.true_body),
                    false_body: self.stmts(&i.false_body),
                },
                i.span(),
            )),
            Stmt::WithBlock(w) => Stmt::WithBlock(Spanned::new(
                ast::WithBlock {
                    assignments: w
                        .assignments
                        .iter()
                        .map(|(t, e)| (target(t), self.expr(e)))
                        .collect(),
                    body: self.stmts(&w.body),
                },
                w.span(),
            )),
            Stmt::Set(x) => Stmt::Set(Spanned::new(
                ast::Set {
                    target: target(&x.target),
                    expr: self.expr(&x.expr),
                },
                x.span(),
            )),
            Stmt::SetBlock(x) => Stmt::SetBlock(Spanned::new(
                ast::SetBlock {
                    target: target(&x.target),
                    filter: x.filter.as_ref().map(|f| self.expr(f)),
                    body: self.stmts(&x.body),
                },
                x.span(),
            )),
            Stmt::AutoEscape(a) => Stmt::AutoEscape(Spanned::new(
                ast::AutoEscape {
                    enabled: self.expr(&a.enabled),
                    body: self.stmts(&a.body),
                },
                a.span(),
            )),
            Stmt::FilterBlock(f) => Stmt::FilterBlock(Spanned::new(
                ast::FilterBlock {
                    filter: self.expr(&f.filter),
                    body: self.stmts(&f.body),
                },
                f.span(),
            )),
            Stmt::Macro(m) => Stmt::Macro(self.macro_decl(m)),
            Stmt::CallBlock(c) => Stmt::CallBlock(Spanned::new(
                ast::CallBlock {
                    call: self.call_node(&c.call),
                    macro_decl: self.macro_decl(&c.macro_decl),
                },
                c.span(),
            )),
            Stmt::Block(b) => Stmt::Block(Spanned::new(
                ast::Block {
                    name: b.name,
                    required: b.required,
                    body: self.stmts(&b.body),
                },
                b.span(),
            )),
            Stmt::Extends(x) => Stmt::Extends(Spanned::new(
                ast::Extends {
                    name: self.expr(&x.name),
                },
                x.span(),
            )),
            Stmt::Include(x) => Stmt::Include(Spanned::new(
                ast::Include {
                    name: self.expr(&x.name),
                    ignore_missing: x.ignore_missing,
                },
                x.span(),
            )),
            Stmt::Import(x) => Stmt::Import(Spanned::new(
                ast::Import {
                    expr: self.expr(&x.expr),
                    name: target(&x.name),
                },
                x.span(),
            )),
            Stmt::FromImport(x) => Stmt::FromImport(Spanned::new(
                ast::FromImport {
                    expr: self.expr(&x.expr),
                    names: x
                        .names
                        .iter()
                        .map(|(a, b)| (target(a), b.as_ref().map(target)))
                        .collect(),
                },
                x.span(),
            )),
            Stmt::Do(d) => Stmt::Do(Spanned::new(
                ast::Do {
                    call: self.call_node(&d.call),
                },
                d.span(),
            )),
        }
    }

    fn macro_decl(&self, m: &Spanned<ast::Macro<'s>>) -> Spanned<ast::Macro<'s>> {
        Spanned::new(
            ast::Macro {
                name: m.name,
                args: m.args.iter().map(target).collect(),
                defaults: m.defaults.iter().map(|d| self.expr(d)).collect(),
                body: self.stmts(&m.body),
            },
            m.span(),
        )
    }

    fn call_node(&self, c: &Spanned<ast::Call<'s>>) -> Spanned<ast::Call<'s>> {
        Spanned::new(self.call_parts(c), c.span())
    }

    /// A call keeps `obj.method` as its callee (minijinja calls methods by name), with the
    /// object and the arguments rewritten.
    fn call_parts(&self, c: &ast::Call<'s>) -> ast::Call<'s> {
        let callee = match &c.expr {
            Expr::GetAttr(a) => Expr::GetAttr(Spanned::new(
                ast::GetAttr {
                    expr: self.expr(&a.expr),
                    name: a.name,
                },
                a.span(),
            )),
            Expr::Var(v) => Expr::Var(Spanned::new(ast::Var { id: v.id }, v.span())),
            other => self.expr(other),
        };
        ast::Call {
            expr: callee,
            args: self.args(&c.args),
        }
    }

    fn args(&self, args: &[CallArg<'s>]) -> Vec<CallArg<'s>> {
        args.iter()
            .map(|a| match a {
                CallArg::Pos(e) => CallArg::Pos(self.expr(e)),
                CallArg::Kwarg(n, e) => CallArg::Kwarg(n, self.expr(e)),
                CallArg::PosSplat(e) => CallArg::PosSplat(self.expr(e)),
                CallArg::KwargSplat(e) => CallArg::KwargSplat(self.expr(e)),
            })
            .collect()
    }

    fn expr(&self, e: &Expr<'s>) -> Expr<'s> {
        match e {
            Expr::Var(v) => Expr::Var(Spanned::new(ast::Var { id: v.id }, v.span())),
            Expr::Const(c) => constant(c.value.clone(), c.span()),
            Expr::Slice(s) => Expr::Slice(Spanned::new(
                ast::Slice {
                    expr: self.expr(&s.expr),
                    start: s.start.as_ref().map(|x| self.expr(x)),
                    stop: s.stop.as_ref().map(|x| self.expr(x)),
                    step: s.step.as_ref().map(|x| self.expr(x)),
                },
                s.span(),
            )),
            Expr::UnaryOp(u) => Expr::UnaryOp(Spanned::new(
                ast::UnaryOp {
                    op: match u.op {
                        ast::UnaryOpKind::Not => ast::UnaryOpKind::Not,
                        ast::UnaryOpKind::Neg => ast::UnaryOpKind::Neg,
                    },
                    expr: self.expr(&u.expr),
                },
                u.span(),
            )),
            Expr::BinOp(b) => self.binop(b),
            Expr::Compare(c) => self.compare(c),
            Expr::IfExpr(i) => Expr::IfExpr(Spanned::new(
                ast::IfExpr {
                    test_expr: self.expr(&i.test_expr),
                    true_expr: self.expr(&i.true_expr),
                    // Jinja prints nothing for an inline `if` that is false and has no
                    // `else`, even with StrictUndefined.
                    false_expr: Some(match &i.false_expr {
                        Some(x) => self.expr(x),
                        None => constant(Value::from(""), i.span()),
                    }),
                },
                i.span(),
            )),
            Expr::Filter(f) => Expr::Filter(Spanned::new(
                ast::Filter {
                    name: f.name,
                    expr: f.expr.as_ref().map(|x| self.expr(x)),
                    args: self.args(&f.args),
                },
                f.span(),
            )),
            Expr::Test(t) => Expr::Test(Spanned::new(
                ast::Test {
                    name: t.name,
                    expr: self.expr(&t.expr),
                    args: self.args(&t.args),
                },
                t.span(),
            )),
            Expr::GetAttr(a) => {
                let span = a.span();
                call(
                    "__py_getattr",
                    vec![
                        self.expr(&a.expr),
                        constant(Value::from(a.name), span),
                        constant(Value::from(span.start_offset), span),
                        constant(var_name(&a.expr), span),
                    ],
                    span,
                )
            }
            Expr::GetItem(g) => {
                let span = g.span();
                call(
                    "__py_getitem",
                    vec![
                        self.expr(&g.expr),
                        self.expr(&g.subscript_expr),
                        constant(Value::from(span.start_offset), span),
                        constant(var_name(&g.expr), span),
                    ],
                    span,
                )
            }
            Expr::Call(c) => Expr::Call(Spanned::new(self.call_parts(c), c.span())),
            Expr::List(l) => {
                let span = l.span();
                let items: Vec<Expr<'s>> = l.items.iter().map(|x| self.expr(x)).collect();
                let is_tuple = self
                    .source
                    .as_bytes()
                    .get(span.start_offset as usize)
                    .is_some_and(|b| *b == b'(');
                if is_tuple {
                    call("__py_tuple", items, span)
                } else {
                    Expr::List(Spanned::new(ast::List { items }, span))
                }
            }
            Expr::Map(m) => Expr::Map(Spanned::new(
                ast::Map {
                    keys: m.keys.iter().map(|x| self.expr(x)).collect(),
                    values: m.values.iter().map(|x| self.expr(x)).collect(),
                },
                m.span(),
            )),
        }
    }

    fn binop(&self, b: &Spanned<ast::BinOp<'s>>) -> Expr<'s> {
        use ast::BinOpKind as K;
        let span = b.span();
        let (l, r) = (self.expr(&b.left), self.expr(&b.right));
        let f = match b.op {
            K::Add => "__py_add",
            K::Sub => "__py_sub",
            K::Mul => "__py_mul",
            K::Div => "__py_truediv",
            K::FloorDiv => "__py_floordiv",
            K::Rem => "__py_mod",
            K::Pow => "__py_pow",
            K::Concat => "__py_concat",
            K::Eq | K::Ne | K::Lt | K::Lte | K::Gt | K::Gte => {
                let op = match b.op {
                    K::Eq => "==",
                    K::Ne => "!=",
                    K::Lt => "<",
                    K::Lte => "<=",
                    K::Gt => ">",
                    _ => ">=",
                };
                return call(
                    "__py_cmp",
                    vec![constant(Value::from(op), span), l, r],
                    span,
                );
            }
            K::ScAnd | K::ScOr | K::In => {
                return Expr::BinOp(Spanned::new(
                    ast::BinOp {
                        op: b.op,
                        left: l,
                        right: r,
                    },
                    span,
                ))
            }
        };
        call(f, vec![l, r], span)
    }

    /// `a < b < c` becomes `a < b and b < c` (Python's chained comparison).
    fn compare(&self, c: &Spanned<ast::Compare<'s>>) -> Expr<'s> {
        use ast::CompareOpKind as K;
        let span = c.span();
        let mut left_src = &c.expr;
        let mut out: Option<Expr<'s>> = None;
        for op in &c.ops {
            let (l, r) = (self.expr(left_src), self.expr(&op.expr));
            let piece = match op.op {
                K::In | K::NotIn => Expr::Compare(Spanned::new(
                    ast::Compare {
                        expr: l,
                        ops: vec![ast::CompareOp { op: op.op, expr: r }],
                    },
                    span,
                )),
                k => {
                    let sym = match k {
                        K::Eq => "==",
                        K::Ne => "!=",
                        K::Lt => "<",
                        K::Lte => "<=",
                        K::Gt => ">",
                        _ => ">=",
                    };
                    call(
                        "__py_cmp",
                        vec![constant(Value::from(sym), span), l, r],
                        span,
                    )
                }
            };
            out = Some(match out {
                None => piece,
                Some(prev) => Expr::BinOp(Spanned::new(
                    ast::BinOp {
                        op: ast::BinOpKind::ScAnd,
                        left: prev,
                        right: piece,
                    },
                    span,
                )),
            });
            left_src = &op.expr;
        }
        out.unwrap_or_else(|| self.expr(&c.expr))
    }
}

/// An assignment target, copied as is (`{% set ns.x = ... %}` must stay an attribute).
fn target<'s>(e: &Expr<'s>) -> Expr<'s> {
    match e {
        Expr::Var(v) => Expr::Var(Spanned::new(ast::Var { id: v.id }, v.span())),
        Expr::List(l) => Expr::List(Spanned::new(
            ast::List {
                items: l.items.iter().map(target).collect(),
            },
            l.span(),
        )),
        Expr::GetAttr(a) => Expr::GetAttr(Spanned::new(
            ast::GetAttr {
                expr: target(&a.expr),
                name: a.name,
            },
            a.span(),
        )),
        Expr::Const(c) => constant(c.value.clone(), c.span()),
        other => Rewrite { source: "" }.expr(other),
    }
}
