//! `updraft users create`.

use crate::cli::{pool_for, UsersCommand};
use crate::runtime::standalone;
use crate::settings::Settings;

pub async fn run(settings: &Settings, cmd: UsersCommand) -> anyhow::Result<i32> {
    let UsersCommand::Create {
        username,
        password,
        role,
    } = cmd;
    let pool = pool_for(settings).await?;
    let password = match password {
        Some(p) => p,
        None => {
            eprintln!("Password for {username} (then Enter):");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    let current = crate::db::users::credentials(&pool, &username).await?;
    let role = role
        .or_else(|| current.as_ref().map(|(u, _)| u.role.clone()))
        .unwrap_or_else(|| "admin".into());
    let created = crate::web::create_user(&pool, &username, &password, &role).await?;
    let event = if created {
        "user_create"
    } else {
        "user_update"
    };
    let extra = serde_json::json!({"username": username, "role": role});
    super::operate::record(&pool, event, (None, None, None), extra).await;
    let what = if created {
        "created"
    } else {
        "updated; its sessions and tokens were ended"
    };
    println!("User {username} ({role}) {what}");
    // standalone's password file must not keep a password that no longer works.
    let file = standalone::password_file(&settings.core.home);
    if username == "admin" && file.exists() {
        let body = serde_json::to_string_pretty(&serde_json::json!({ "admin": password }))?;
        standalone::write_private(&file, &body)?;
        println!("Updated {}", file.display());
    }
    Ok(0)
}
