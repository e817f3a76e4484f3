//! Testing a connection (`updraft connections test`, `POST /api/v2/connections/test`): a real
//! round trip with the client the operators use, for the types they use: `http`/`https` (a GET
//! of the base URL), `kafka` (cluster metadata), `postgres` (`SELECT 1`) and `cassandra`
//! (`system.local`). Messages never contain the password.

use std::time::Duration;

use crate::core::log::mask_uri;
use crate::settings::Connection;

/// How long a test may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Tests `conn`: `Ok(message)` when it answered, `Err(message)` saying why not.
pub async fn test_connection(conn: &Connection) -> Result<String, String> {
    let secrets = crate::core::Secrets::new(conn.secrets());
    let masked = |m: String| secrets.mask(&m).into_owned();
    match conn.conn_type.to_ascii_lowercase().as_str() {
        "http" | "https" => http(conn).await,
        "kafka" => kafka(conn).await,
        "postgres" | "postgresql" => postgres(conn).await,
        "cassandra" | "scylla" => cassandra(conn).await,
        other => Err(format!(
            "testing `{other}` connections is not supported; updraft tests http, https, kafka, postgres and cassandra connections"
        )),
    }
    .map(masked)
    .map_err(masked)
}

async fn http(conn: &Connection) -> Result<String, String> {
    let base = super::http::base_url(conn);
    let (url, auth) = super::http::build_url(&base, "").map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let mut req = client.get(url.clone());
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("GET {url} failed: {}", e.without_url()))?;
    let status = resp.status();
    if status.is_success() || status.is_redirection() {
        Ok(format!("GET {url} answered HTTP {status}"))
    } else {
        Err(format!("GET {url} answered HTTP {status}"))
    }
}

async fn kafka(conn: &Connection) -> Result<String, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let servers = super::kafka::servers_of(conn).map_err(|e| e.to_string())?;
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", &servers)
        .set("socket.connection.setup.timeout.ms", "10000")
        .set("log_level", "3");
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    let shown = servers.clone();
    let metadata = tokio::task::spawn_blocking(move || consumer.fetch_metadata(None, TIMEOUT))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("could not reach Kafka at {shown}: {e}"))?;
    Ok(format!(
        "Kafka at {servers} answered: {} broker(s), {} topic(s)",
        metadata.brokers().len(),
        metadata.topics().len()
    ))
}

async fn postgres(conn: &Connection) -> Result<String, String> {
    use sqlx::Connection as _;
    let super::sink::Target::Postgres { url } =
        super::sink::Target::from_conn(conn).map_err(|e| e.to_string())?
    else {
        return Err("not a Postgres connection".into());
    };
    let shown = mask_uri(&url);
    let attempt = async {
        let mut c = sqlx::PgConnection::connect(&url).await?;
        let v: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(&mut c)
            .await?;
        c.close().await?;
        Ok::<_, sqlx::Error>(v)
    };
    match tokio::time::timeout(TIMEOUT, attempt).await {
        Ok(Ok(v)) => Ok(format!("Postgres at {shown} answered: {v}")),
        Ok(Err(e)) => Err(format!("could not connect to Postgres at {shown}: {e}")),
        Err(_) => Err(format!(
            "Postgres at {shown} did not answer within {TIMEOUT:?}"
        )),
    }
}

async fn cassandra(conn: &Connection) -> Result<String, String> {
    use scylla::client::session_builder::SessionBuilder;
    let super::sink::Target::Cassandra {
        contact_points,
        user,
    } = super::sink::Target::from_conn(conn).map_err(|e| e.to_string())?
    else {
        return Err("not a Cassandra connection".into());
    };
    let shown = contact_points.join(",");
    let mut builder = SessionBuilder::new()
        .known_nodes(&contact_points)
        .connection_timeout(TIMEOUT);
    if let Some((u, p)) = &user {
        builder = builder.user(u, p);
    }
    let attempt = async {
        let session = builder.build().await.map_err(|e| e.to_string())?;
        session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    match tokio::time::timeout(TIMEOUT, attempt).await {
        Ok(Ok(())) => Ok(format!("Cassandra at {shown} answered")),
        Ok(Err(e)) => Err(format!("could not connect to Cassandra at {shown}: {e}")),
        Err(_) => Err(format!(
            "Cassandra at {shown} did not answer within {TIMEOUT:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unsupported_types_and_unreachable_hosts_say_why() {
        let c = Connection::from_uri("x", "mysql://u:hunter22@h/db").unwrap();
        assert!(test_connection(&c)
            .await
            .unwrap_err()
            .contains("not supported"));
        let c = Connection::from_uri("x", "http://u:hunter22@127.0.0.1:9/").unwrap();
        let e = test_connection(&c).await.unwrap_err();
        assert!(e.contains("failed") && !e.contains("hunter22"), "{e}");
    }
}
