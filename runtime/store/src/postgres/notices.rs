//! Announcements between processes sharing a PostgreSQL database: `NOTIFY` after a write
//! commits, and one connection per process that `LISTEN`s (see [`crate::Changes`]).
//!
//! The notice goes out after the write has committed, from a task of its own, so a write
//! does not wait for it; PostgreSQL delivers notices in commit order, after the commit, so
//! a listener that reads the record on hearing of it reads what was written.

use std::sync::{Arc, Weak};

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio_postgres::AsyncMessage;

use super::{BACKEND, error_chain, pg_error};
use crate::changes::keep_listening;
use crate::{Changes, PostgresConfig, StoreError};

/// The channel of `topic` (`executions`, `definitions`) for the schema in `config`: processes
/// on other schemas of the same database hear nothing of it. PostgreSQL truncates names to 63
/// bytes.
pub(crate) fn channel(config: &PostgresConfig, topic: &str) -> String {
    let schema = config.schema.as_deref().unwrap_or("public");
    let mut name = format!("orca.{topic}.{schema}");
    name.truncate(63);
    name
}

/// Sends `messages` on `channel` from a task of its own; a lost notice only delays a waiter
/// on another process, so failures are logged, not returned.
pub(crate) fn send(pool: &Pool, channel: &str, messages: Vec<String>) {
    if messages.is_empty() {
        return;
    }
    let pool = pool.clone();
    let channel = channel.to_string();
    tokio::spawn(async move {
        let sent = async {
            let client = pool.get().await.map_err(pg_error)?;
            let statement = client
                .prepare_cached("SELECT pg_notify($1, message) FROM unnest($2::text[]) AS message")
                .await
                .map_err(pg_error)?;
            client
                .execute(&statement, &[&channel, &messages])
                .await
                .map_err(pg_error)
        };
        if let Err(error) = sent.await {
            tracing::warn!(%error, channel, "could not tell other processes of a change");
        }
    });
}

/// A [`Changes`] fed by `LISTEN channel` on a connection of its own, opened when the first
/// watcher registers and kept until the store is dropped.
pub(crate) fn changes(
    config: &PostgresConfig,
    channel: String,
) -> Result<Arc<Changes>, StoreError> {
    let connect = super::connect_config(config)?;
    Ok(Changes::shared(move |changes| {
        let (connect, listened) = (connect.clone(), channel.clone());
        tokio::spawn(keep_listening(changes, channel.clone(), move |changes| {
            let (connect, channel) = (connect.clone(), listened.clone());
            async move { listen_once(&connect, &channel, &changes).await }
        }));
    }))
}

/// Listens until the connection fails; returns why.
async fn listen_once(
    config: &tokio_postgres::Config,
    channel: &str,
    changes: &Weak<Changes>,
) -> StoreError {
    let (client, mut connection) = match config.connect(tokio_postgres::NoTls).await {
        Ok(connected) => connected,
        Err(error) => return StoreError::backend(BACKEND, error_chain(&error)),
    };
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let quoted = channel.replace('"', "\"\"");
    let statement = format!("LISTEN \"{quoted}\"");
    let subscribe = client.batch_execute(&statement);
    // The connection must be polled for the LISTEN to be answered.
    tokio::pin!(subscribe);
    let mut subscribed = false;
    loop {
        tokio::select! {
            listened = &mut subscribe, if !subscribed => {
                subscribed = true;
                if let Err(error) = listened {
                    return pg_error(error);
                }
                // Announcements sent before this connection listened are not heard: the
                // watchers that registered meanwhile read the store again.
                if let Some(changes) = changes.upgrade() {
                    changes.resync();
                }
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(notice))) => {
                    let Some(changes) = changes.upgrade() else {
                        return StoreError::backend(BACKEND, "the store was dropped");
                    };
                    changes.receive(notice.payload());
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return pg_error(error),
                None => return StoreError::backend(BACKEND, "the listening connection closed"),
            }
        }
    }
}
