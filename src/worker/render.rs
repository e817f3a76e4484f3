//! Resolving a task's `with:` at run time: `$t` templates are rendered with minijinja and
//! Airflow's context names, `$x` markers read upstream XComs. The result is plain JSON that
//! the operator's config deserializes.

use std::collections::HashMap;

use minijinja::{context, Environment, Value};

use crate::dag::Arg;
use crate::operators::TaskContext;

/// The Jinja context Airflow gives templates, as far as updraft has it.
pub fn template_context(ctx: &TaskContext) -> Value {
    let ds = ctx.logical_date.format("%Y-%m-%d").to_string();
    let ts = ctx
        .logical_date
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let (var, conn) = super::vars::accessors(&ctx.env);
    let dag_run = serde_json::json!({
        "dag_id": ctx.dag_id,
        "run_id": ctx.run_id,
        "conf": ctx.conf,
        "logical_date": ts,
    });
    let ti = serde_json::json!({
        "dag_id": ctx.dag_id,
        "task_id": ctx.task_id,
        "run_id": ctx.run_id,
        "try_number": ctx.try_number,
    });
    context! {
        ds => ds,
        ds_nodash => ds.replace('-', ""),
        ts => ts,
        ts_nodash => ctx.logical_date.format("%Y%m%dT%H%M%S").to_string(),
        logical_date => ts,
        data_interval_start => ctx.data_interval_start.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        data_interval_end => ctx.data_interval_end.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        run_id => ctx.run_id,
        dag_run => Value::from_serialize(&dag_run),
        params => Value::from_serialize(&ctx.params),
        var => var,
        conn => conn,
        ti => Value::from_serialize(&ti),
        task_instance => Value::from_serialize(&ti),
        macros => context! { ds_add => Value::from_function(ds_add) },
    }
}

/// `macros.ds_add('2024-01-01', 5)` → `'2024-01-06'`, as in Airflow.
fn ds_add(ds: String, days: i64) -> Result<String, minijinja::Error> {
    let d = chrono::NaiveDate::parse_from_str(&ds, "%Y-%m-%d").map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("ds_add: `{ds}` is not a date: {e}"),
        )
    })?;
    Ok((d + chrono::Duration::days(days))
        .format("%Y-%m-%d")
        .to_string())
}

/// XCom values available to this task: (task_id, key) → value.
pub type XComs = HashMap<(String, String), serde_json::Value>;

/// Resolves every marker below `arg`. Template errors name the template.
pub fn resolve(arg: &Arg, jinja: &Value, xcoms: &XComs) -> anyhow::Result<serde_json::Value> {
    Ok(match arg {
        Arg::Value(v) => v.clone(),
        Arg::List(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|a| resolve(a, jinja, xcoms))
                .collect::<anyhow::Result<_>>()?,
        ),
        Arg::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, a)| Ok((k.clone(), resolve(a, jinja, xcoms)?)))
                .collect::<anyhow::Result<_>>()?,
        ),
        Arg::Template(source) => serde_json::Value::String(render(source, jinja)?),
        Arg::XCom { task, key } => {
            // Like Airflow, a missing XCom (e.g. the upstream was skipped) is null.
            xcoms
                .get(&(task.to_string(), key.clone()))
                .cloned()
                .unwrap_or(serde_json::Value::Null)
        }
    })
}

pub fn render(source: &str, jinja: &Value) -> anyhow::Result<String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    super::vars::reset(jinja);
    env.render_str(source, jinja)
        .map_err(|e| match super::vars::lookup_error(jinja) {
            Some(missing) => anyhow::anyhow!("template `{source}` failed to render: {missing}"),
            None => anyhow::anyhow!("template `{source}` failed to render: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::TaskId;
    use crate::operators::OperatorEnv;

    #[test]
    fn renders_airflow_context_and_reads_xcom() {
        let mut env = OperatorEnv::default();
        env.env_variables.insert("region".into(), "eu".into());
        let (mut ctx, _log) = TaskContext::for_test(env);
        ctx.params.insert("n".into(), 3.into());
        ctx.conf = serde_json::json!({"who": "me"});
        let jinja = template_context(&ctx);
        let arg = Arg::Map(vec![
            (
                "a".into(),
                Arg::Template(
                    "{{ ds }} {{ ds_nodash }} {{ params.n }} {{ dag_run.conf.who }}".into(),
                ),
            ),
            (
                "b".into(),
                Arg::Template(
                    "{{ var.value.region }} {{ macros.ds_add(ds, 1) }} {{ ti.try_number }}".into(),
                ),
            ),
            (
                "c".into(),
                Arg::XCom {
                    task: TaskId::parse("up").unwrap(),
                    key: "return_value".into(),
                },
            ),
            (
                "d".into(),
                Arg::XCom {
                    task: TaskId::parse("gone").unwrap(),
                    key: "return_value".into(),
                },
            ),
        ]);
        let mut xcoms = XComs::new();
        xcoms.insert(
            ("up".into(), "return_value".into()),
            serde_json::json!([1, 2]),
        );
        let out = resolve(&arg, &jinja, &xcoms).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"a": "2024-01-01 20240101 3 me", "b": "eu 2024-01-02 1", "c": [1, 2], "d": null})
        );
    }

    #[test]
    fn undefined_names_are_errors() {
        let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
        let err = render("{{ nope }}", &template_context(&ctx))
            .unwrap_err()
            .to_string();
        assert!(err.contains("{{ nope }}"), "{err}");
    }
}
