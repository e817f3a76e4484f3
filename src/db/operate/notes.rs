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

/// Sets (or removes) the note of these task instances.
pub async fn set_ti_notes(pool: &PgPool, ti_ids: &[i64], note: Option<&str>) -> sqlx::Result<()> {
    sqlx::query("UPDATE task_instances SET note = $2 WHERE id = ANY($1)")
        .bind(ti_ids)
        .bind(note)
        .execute(pool)
        .await?;
    Ok(())
}
