//! Announcements between processes sharing a Redis prefix: `PUBLISH` after a write, and one
//! pub/sub connection per process that listens (see [`crate::Changes`]).

use std::sync::{Arc, Weak};

use ::redis::aio::ConnectionManager;
use futures_util::StreamExt;

use super::{BACKEND, client, redis_error};
use crate::changes::keep_listening;
use crate::{Changes, RedisConfig, StoreError};

/// The channel of the processes sharing `config`'s prefix.
pub(crate) fn channel(config: &RedisConfig) -> String {
    format!("{}changes", config.prefix)
}

/// Publishes `messages` from a task of its own; a lost message only delays a waiter on
/// another process, so failures are logged, not returned.
pub(crate) fn send(conn: &ConnectionManager, channel: &str, messages: Vec<String>) {
    if messages.is_empty() {
        return;
    }
    let mut conn = conn.clone();
    let channel = channel.to_string();
    tokio::spawn(async move {
        let mut pipe = ::redis::pipe();
        for message in &messages {
            pipe.publish(&channel, message).ignore();
        }
        if let Err(error) = pipe.query_async::<()>(&mut conn).await {
            tracing::warn!(%error, channel, "could not tell other processes of a change");
        }
    });
}

/// A [`Changes`] fed by a subscription to `channel`, opened when the first watcher registers
/// and kept until the store is dropped.
pub(crate) fn changes(config: &RedisConfig, channel: String) -> Result<Arc<Changes>, StoreError> {
    let client = client(config)?;
    Ok(Changes::shared(move |changes| {
        let (client, listened) = (client.clone(), channel.clone());
        tokio::spawn(keep_listening(changes, channel.clone(), move |changes| {
            let (client, channel) = (client.clone(), listened.clone());
            async move { listen_once(&client, &channel, &changes).await }
        }));
    }))
}

/// Listens until the connection fails; returns why.
async fn listen_once(
    client: &::redis::Client,
    channel: &str,
    changes: &Weak<Changes>,
) -> StoreError {
    let mut pubsub = match client.get_async_pubsub().await {
        Ok(pubsub) => pubsub,
        Err(error) => return redis_error(error),
    };
    if let Err(error) = pubsub.subscribe(channel).await {
        return redis_error(error);
    }
    // Messages published before the subscription are not heard: the watchers that
    // registered meanwhile read the store again.
    match changes.upgrade() {
        Some(changes) => changes.resync(),
        None => return StoreError::backend(BACKEND, "the store was dropped"),
    }
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let Some(changes) = changes.upgrade() else {
            return StoreError::backend(BACKEND, "the store was dropped");
        };
        if let Ok(text) = message.get_payload::<String>() {
            changes.receive(&text);
        }
    }
    StoreError::backend(BACKEND, "the subscription ended")
}
