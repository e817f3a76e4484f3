//! Which run ids a user may choose. Airflow's default `[scheduler] allowed_run_id_pattern`,
//! `^[A-Za-z0-9_.~:+-]+$`, no `..` (Airflow refuses it against path traversal) and at most
//! 250 characters (Airflow's `ID_LEN`). A run id appears in URLs, log paths and index keys: a
//! 10,000-character one overflowed the database index, an empty one made a run no URL reaches.

/// Airflow's `ID_LEN`.
pub const MAX_LEN: usize = 250;

/// `Ok` when `run_id` may name a run; otherwise what is wrong, for the user.
pub fn check(run_id: &str) -> Result<(), String> {
    if run_id.is_empty() {
        return Err("a run id must not be empty".into());
    }
    if run_id.chars().count() > MAX_LEN {
        return Err(format!(
            "a run id may have at most {MAX_LEN} characters; this one has {}",
            run_id.chars().count()
        ));
    }
    if let Some(c) = run_id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '~' | ':' | '+' | '-')))
    {
        return Err(format!(
            "a run id may use only letters, digits and `_.~:+-` (Airflow's allowed_run_id_pattern `^[A-Za-z0-9_.~:+-]+$`); it contains {c:?}"
        ));
    }
    if run_id.contains("..") {
        return Err("a run id must not contain `..`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airflows_default_pattern() {
        for ok in [
            "manual__2024-01-01T00:00:00.123456+00:00",
            "my_run.1~x:y+z-w",
            &"a".repeat(250),
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            (&"a".repeat(251) as &str, "at most 250"),
            ("has space", "' '"),
            ("a/b", "'/'"),
            ("nul\0", "'\\0'"),
            ("é", "'é'"),
            ("a..b", "`..`"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
