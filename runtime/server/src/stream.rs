//! `GET /v1/executions/ID/events`: an execution's history as Server-Sent Events, then each
//! change as it happens, ending after `execution.ended`.
//!
//! Events are derived from the stored record ([`orca_core::events`]), so any server sharing
//! the store can serve any execution's stream, and a client that reconnects with
//! `Last-Event-ID` (browsers do by themselves) gets exactly the events after it, also after a
//! restart. The stream reads the record when the store announces a change to it, never on a
//! timer; a comment every 15 s keeps idle connections open through proxies.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use orca_core::events::{ExecutionEvent, events};
use orca_store::Watch;

use super::App;
use super::auth::Tenant;
use super::error::{ApiError, ApiResult};
use super::executions::owned;

const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(super) async fn events_of(
    Tenant(tenant): Tenant,
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let after = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "Last-Event-ID: not an event id this stream gave (a number)".into(),
                    )
                })?,
        ),
    };
    // Watched before the first read: a change in between wakes the stream.
    let watch = app.executions.changes().watch(&id);
    let record = owned(&app, &tenant, &id).await?;
    let mut follow = Follow {
        app,
        id,
        watch,
        after,
        pending: VecDeque::new(),
        ended: false,
    };
    follow.take(&record.execution);
    let stream = futures_util::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok(sse(&event)), follow))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Where a stream stands.
struct Follow {
    app: App,
    id: String,
    watch: Watch,
    /// The id of the last event sent (or that the client had).
    after: Option<u64>,
    pending: VecDeque<ExecutionEvent>,
    /// `execution.ended` is queued: nothing follows it.
    ended: bool,
}

impl Follow {
    /// Queues the events of `execution` after the last one sent.
    fn take(&mut self, execution: &orca_core::engine::Execution) {
        let after = self.pending.back().map(|e| e.id).or(self.after);
        for event in events(execution) {
            if after.is_none_or(|after| event.id > after) {
                self.ended |= event.kind == "execution.ended";
                self.pending.push_back(event);
            }
        }
    }

    /// The next event; `None` once the execution's end was sent, the server is shutting
    /// down, or the record cannot be read.
    async fn next(&mut self) -> Option<ExecutionEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.after = Some(event.id);
                return Some(event);
            }
            if self.ended {
                return None;
            }
            tokio::select! {
                () = self.watch.changed() => {}
                () = self.app.closed() => return None,
            }
            match self.app.runner.load(&self.id).await {
                Ok(record) => self.take(&record.execution),
                Err(error) => {
                    tracing::warn!(id = %self.id, %error, "event stream: cannot read the execution");
                    return None;
                }
            }
        }
    }
}

fn sse(event: &ExecutionEvent) -> Event {
    Event::default()
        .id(event.id.to_string())
        .event(event.kind)
        .data(event.data.to_string())
}
