//! How each library's errors map to a [`Reason`], in one place so the operators that share a
//! library (fetch and http share reqwest; publish and sink share rdkafka) agree, and the
//! tables below can be read and tested on their own.
//!
//! The rule everywhere: permanent when the same request would fail the same way (the
//! request, the credentials or the data are wrong), transient when the other side or the
//! network is having a moment. When a library does not say, transient: retrying something
//! that could not work only costs time, while failing something that would have worked
//! costs a person's attention.

use std::fmt;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use reqwest::StatusCode;
use scylla::errors::{
    ConnectionError, ConnectionPoolError, ConnectionSetupRequestErrorKind, DbError, ExecutionError,
    MetadataError, NewSessionError, PrepareError, RequestAttemptError,
};

use super::{chain, OperatorError, Reason};

/// A response status that is not a success: 408 and 429 and 5xx may pass, other 4xx (and a
/// 3xx reqwest did not follow) will not.
pub fn http_status(status: StatusCode) -> Reason {
    match status {
        StatusCode::REQUEST_TIMEOUT => Reason::Timeout,
        StatusCode::TOO_MANY_REQUESTS => Reason::RateLimited,
        s if s.is_server_error() => Reason::ServerError,
        _ => Reason::Rejected,
    }
}

/// A reqwest error: a request that cannot be built or a redirect loop will not change; a
/// timeout, a refused or reset connection or a failed DNS lookup may.
pub fn reqwest(e: &reqwest::Error) -> Reason {
    if e.is_builder() {
        Reason::BadConfig
    } else if e.is_timeout() {
        Reason::Timeout
    } else if e.is_redirect() {
        Reason::Rejected
    } else if let Some(status) = e.status() {
        http_status(status)
    } else if e.is_decode() {
        Reason::Malformed
    } else {
        // Connect (refused, DNS), request and body errors (reset mid-way).
        Reason::Connection
    }
}

/// `what: could not connect: <causes>`. reqwest's own message names the URL, which may carry
/// credentials, so only its sources are kept.
pub fn reqwest_error(what: impl fmt::Display, e: &reqwest::Error) -> OperatorError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_builder() {
        "the request cannot be built"
    } else if e.is_redirect() {
        "too many redirects"
    } else if e.is_decode() {
        "the response cannot be decoded"
    } else {
        "transport error"
    };
    let mut message = format!("{what}: {kind}");
    if let Some(source) = std::error::Error::source(e) {
        message.push_str(&format!(": {}", chain(source)));
    }
    OperatorError::new(reqwest(e), message)
}

/// A librdkafka error code. Permanent: configuration, authentication and authorization,
/// and messages the brokers will never take. Everything else (transport, leaders moving,
/// coordinators loading, brokers down) is Kafka's normal weather.
pub fn kafka_code(code: RDKafkaErrorCode) -> Reason {
    use RDKafkaErrorCode as C;
    match code {
        C::InvalidArgument
        | C::InvalidType
        | C::NotConfigured
        | C::NotImplemented
        | C::UnsupportedFeature
        | C::UnknownProtocol
        | C::SSL
        | C::Authentication
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::UnacceptableCredential
        | C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::SecurityDisabled
        | C::InvalidConfig
        | C::InvalidTopic
        | C::InvalidGroupId
        | C::InvalidSessionTimeout
        | C::InvalidRequiredAcks
        | C::InvalidPartitions
        | C::InvalidReplicationFactor
        | C::InvalidReplicaAssignment
        | C::PolicyViolation
        | C::UnsupportedVersion
        | C::UnsupportedCompressionType => Reason::BadConfig,
        C::BadMessage
        | C::InvalidMessage
        | C::InvalidMessageSize
        | C::MessageSizeTooLarge
        | C::MessageBatchTooLarge
        | C::InvalidRecord
        | C::InvalidTimestamp
        | C::OffsetMetadataTooLarge
        | C::UnsupportedForMessageFormat
        | C::KeySerialization
        | C::ValueSerialization
        | C::InvalidRequest => Reason::Rejected,
        C::MessageTimedOut | C::OperationTimedOut | C::RequestTimedOut | C::TimedOutQueue => {
            Reason::Timeout
        }
        _ => Reason::BrokerUnavailable,
    }
}

/// A rust-rdkafka error: by its code when it has one, else by what failed.
pub fn kafka(e: &KafkaError) -> Reason {
    match e {
        KafkaError::ClientConfig(..)
        | KafkaError::ClientCreation(_)
        | KafkaError::AdminOpCreation(_)
        | KafkaError::Subscription(_)
        | KafkaError::Seek(_)
        | KafkaError::PauseResume(_)
        | KafkaError::Nul(_) => Reason::BadConfig,
        KafkaError::Canceled => Reason::Cancelled,
        KafkaError::AdminOp(code) => kafka_code(*code),
        other => other
            .rdkafka_error_code()
            .map(kafka_code)
            .unwrap_or(Reason::BrokerUnavailable),
    }
}

/// `what: <the Kafka error>`, classified.
pub fn kafka_error(what: impl fmt::Display, e: &KafkaError) -> OperatorError {
    OperatorError::caused(kafka(e), what, e)
}

/// A Postgres SQLSTATE: the class (first two characters) says whose fault it is.
pub fn sqlstate(code: &str) -> Reason {
    match code.get(..2).unwrap_or_default() {
        // Connection exception, insufficient resources, operator intervention (shutdown,
        // cancel), system error, transaction rollback (deadlock, serialization), internal.
        "08" | "53" | "57" | "58" | "40" | "XX" => Reason::Database,
        // Lock not available.
        "55" if code == "55P03" => Reason::Database,
        // Invalid authorization, unknown database, unsupported feature.
        "28" | "3D" | "0A" => Reason::BadConfig,
        // Insufficient privilege (within the access-rule class).
        "42" if code == "42501" => Reason::Rejected,
        // Syntax and access rules (unknown table or column, wrong type), data exceptions,
        // integrity constraints, unknown schema: the table is not the shape the rows need.
        "42" | "22" | "23" | "3F" => Reason::Schema,
        _ => Reason::Database,
    }
}

/// A sqlx error.
pub fn sqlx(e: &sqlx::Error) -> Reason {
    match e {
        sqlx::Error::Configuration(_) | sqlx::Error::InvalidArgument(_) => Reason::BadConfig,
        // A certificate or a server without TLS where TLS is required: settings, not luck.
        sqlx::Error::Tls(_) => Reason::BadConfig,
        sqlx::Error::Database(db) => db.code().map_or(Reason::Database, |c| sqlstate(&c)),
        sqlx::Error::Io(_) => Reason::Connection,
        sqlx::Error::PoolTimedOut => Reason::Timeout,
        sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Encode(_)
        | sqlx::Error::Decode(_) => Reason::Schema,
        _ => Reason::Database,
    }
}

/// `what: <the sqlx error and its causes>`, classified.
pub fn sqlx_error(what: impl fmt::Display, e: &sqlx::Error) -> OperatorError {
    OperatorError::caused(sqlx(e), what, e)
}

/// A Cassandra server error: a bad statement, schema or credentials will stay bad; an
/// unavailable, overloaded or slow cluster will not.
pub fn cql_db(e: &DbError) -> Reason {
    match e {
        DbError::SyntaxError
        | DbError::Invalid
        | DbError::AlreadyExists { .. }
        | DbError::FunctionFailure { .. } => Reason::Schema,
        DbError::AuthenticationError | DbError::ConfigError | DbError::ProtocolError => {
            Reason::BadConfig
        }
        DbError::Unauthorized => Reason::Rejected,
        DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => Reason::Timeout,
        _ => Reason::Database,
    }
}

fn cql_attempt(e: &RequestAttemptError) -> Reason {
    match e {
        RequestAttemptError::DbError(db, _) => cql_db(db),
        RequestAttemptError::SerializationError(_)
        | RequestAttemptError::CqlRequestSerialization(_) => Reason::Schema,
        _ => Reason::Database,
    }
}

fn cql_pool(e: &ConnectionPoolError) -> Reason {
    match e {
        ConnectionPoolError::Broken {
            last_connection_error,
        } => cql_connection(last_connection_error),
        _ => Reason::Database,
    }
}

fn cql_connection(e: &ConnectionError) -> Reason {
    match e {
        ConnectionError::ConnectTimeout => Reason::Timeout,
        ConnectionError::ConnectionSetupRequestError(setup) => match setup.get_error() {
            ConnectionSetupRequestErrorKind::DbError(db, _) => cql_db(db),
            ConnectionSetupRequestErrorKind::MissingAuthentication
            | ConnectionSetupRequestErrorKind::StartAuthSessionError(_)
            | ConnectionSetupRequestErrorKind::AuthChallengeEvaluationError(_)
            | ConnectionSetupRequestErrorKind::AuthFinishError(_) => Reason::BadConfig,
            _ => Reason::Database,
        },
        _ => Reason::Connection,
    }
}

/// A scylla session that could not be built.
pub fn cql_session(e: &NewSessionError) -> Reason {
    match e {
        NewSessionError::FailedToResolveAnyHostname(_) => Reason::Connection,
        NewSessionError::EmptyKnownNodesList | NewSessionError::IllegalConfig(_) => {
            Reason::BadConfig
        }
        NewSessionError::MetadataError(MetadataError::ConnectionPoolError(p)) => cql_pool(p),
        _ => Reason::Database,
    }
}

/// A statement that could not be prepared.
pub fn cql_prepare(e: &PrepareError) -> Reason {
    match e {
        PrepareError::AllAttemptsFailed { first_attempt } => cql_attempt(first_attempt),
        PrepareError::ConnectionPoolError(p) => cql_pool(p),
        _ => Reason::Database,
    }
}

/// A statement that could not be executed.
pub fn cql_execution(e: &ExecutionError) -> Reason {
    match e {
        ExecutionError::BadQuery(_) => Reason::Schema,
        ExecutionError::EmptyPlan => Reason::BadConfig,
        ExecutionError::PrepareError(p) => cql_prepare(p),
        ExecutionError::ConnectionPoolError(p) => cql_pool(p),
        ExecutionError::LastAttemptError(a) => cql_attempt(a),
        ExecutionError::RequestTimeout(_) => Reason::Timeout,
        _ => Reason::Database,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::ErrorKind;

    #[test]
    fn http_statuses() {
        assert_eq!(http_status(StatusCode::NOT_FOUND), Reason::Rejected);
        assert_eq!(http_status(StatusCode::UNAUTHORIZED), Reason::Rejected);
        assert_eq!(
            http_status(StatusCode::BAD_REQUEST).kind(),
            ErrorKind::Permanent
        );
        assert_eq!(http_status(StatusCode::REQUEST_TIMEOUT), Reason::Timeout);
        assert_eq!(
            http_status(StatusCode::TOO_MANY_REQUESTS),
            Reason::RateLimited
        );
        assert_eq!(
            http_status(StatusCode::SERVICE_UNAVAILABLE),
            Reason::ServerError
        );
        assert_eq!(
            http_status(StatusCode::INTERNAL_SERVER_ERROR).kind(),
            ErrorKind::Transient
        );
    }

    #[test]
    fn kafka_codes_and_errors() {
        use RDKafkaErrorCode as C;
        for transient in [
            C::BrokerTransportFailure,
            C::AllBrokersDown,
            C::Resolve,
            C::LeaderNotAvailable,
            C::NotLeaderForPartition,
            C::CoordinatorNotAvailable,
            C::RebalanceInProgress,
            C::NotEnoughReplicas,
            C::InvalidCommitOffsetSize,
        ] {
            assert_eq!(
                kafka_code(transient),
                Reason::BrokerUnavailable,
                "{transient:?}"
            );
        }
        assert_eq!(kafka_code(C::MessageTimedOut), Reason::Timeout);
        assert_eq!(kafka_code(C::TopicAuthorizationFailed), Reason::BadConfig);
        assert_eq!(kafka_code(C::SaslAuthenticationFailed), Reason::BadConfig);
        assert_eq!(kafka_code(C::MessageSizeTooLarge), Reason::Rejected);
        assert_eq!(
            kafka(&KafkaError::MetadataFetch(C::BrokerTransportFailure)),
            Reason::BrokerUnavailable
        );
        assert_eq!(
            kafka(&KafkaError::ClientCreation("bad property".into())),
            Reason::BadConfig
        );
        assert_eq!(
            kafka(&KafkaError::AdminOp(C::TopicAuthorizationFailed)),
            Reason::BadConfig
        );
        let e = kafka_error(
            "could not reach Kafka",
            &KafkaError::MessageProduction(C::MessageTimedOut),
        );
        assert!(
            e.is_transient() && e.to_string().contains("timed out"),
            "{e}"
        );
    }

    #[test]
    fn postgres_errors() {
        assert_eq!(sqlstate("08006"), Reason::Database);
        assert_eq!(sqlstate("57P01"), Reason::Database);
        assert_eq!(sqlstate("40P01"), Reason::Database);
        assert_eq!(sqlstate("55P03"), Reason::Database);
        assert_eq!(sqlstate("28P01"), Reason::BadConfig);
        assert_eq!(sqlstate("3D000"), Reason::BadConfig);
        assert_eq!(sqlstate("42P01"), Reason::Schema);
        assert_eq!(sqlstate("42703"), Reason::Schema);
        assert_eq!(sqlstate("42501"), Reason::Rejected);
        assert_eq!(sqlstate("22P02"), Reason::Schema);
        assert_eq!(sqx_kind(sqlx::Error::PoolTimedOut), ErrorKind::Transient);
        assert_eq!(
            sqx_kind(sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused
            ))),
            ErrorKind::Transient
        );
        assert_eq!(
            sqx_kind(sqlx::Error::Configuration("bad url".into())),
            ErrorKind::Permanent
        );
    }

    fn sqx_kind(e: sqlx::Error) -> ErrorKind {
        sqlx(&e).kind()
    }

    #[test]
    fn cassandra_errors() {
        assert_eq!(cql_db(&DbError::Invalid), Reason::Schema);
        assert_eq!(cql_db(&DbError::AuthenticationError), Reason::BadConfig);
        assert_eq!(cql_db(&DbError::Overloaded), Reason::Database);
        assert_eq!(
            cql_db(&DbError::IsBootstrapping).kind(),
            ErrorKind::Transient
        );
        assert_eq!(
            cql_execution(&ExecutionError::LastAttemptError(
                RequestAttemptError::DbError(DbError::SyntaxError, "line 1".into())
            )),
            Reason::Schema
        );
        assert_eq!(
            cql_execution(&ExecutionError::RequestTimeout(
                std::time::Duration::from_secs(1)
            )),
            Reason::Timeout
        );
        assert_eq!(
            cql_session(&NewSessionError::EmptyKnownNodesList),
            Reason::BadConfig
        );
        assert_eq!(
            cql_session(&NewSessionError::FailedToResolveAnyHostname(vec![
                "x".into()
            ])),
            Reason::Connection
        );
    }
}
