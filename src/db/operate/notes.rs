//! Notes on runs and task instances (Airflow's `note`): free text, Markdown in the UI.

use sqlx::PgPool;

/// Sets (or, with `None`, removes) a run's note.
pub async fn set_run_note(pool: &PgPool, run_pk: i64, note: Option<&str>) -> sqlx::Result<()> {
    sqlx::query("UPDATE dag_runs SET note = $2 WHERE id = $1")
        .bind(run_pk)
        .bind(note)
        .execute(pool)
        .await?;
    Ok(())
}

/// Sets (or removes) the note of these task instances. Their runs are locked first, in the
/// engine's lock order ([`crate::db::tasks`]): a finish of the same run locks several of
/// its rows in its own order, so two multi-row writers without the run lock could deadlock.
pub async fn set_ti_notes(pool: &PgPool, ti_ids: &[i64], note: Option<&str>) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    let runs: Vec<i64> =
        sqlx::query_scalar("SELECT DISTINCT run_pk FROM task_instances WHERE id = ANY($1)")
            .bind(ti_ids)
            .fetch_all(&mut *tx)
            .await?;
    crate::db::tasks::lock_runs(&mut tx, &runs).await?;
    sqlx::query("UPDATE task_instances SET note = $2 WHERE id = ANY($1)")
        .bind(ti_ids)
        .bind(note)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
