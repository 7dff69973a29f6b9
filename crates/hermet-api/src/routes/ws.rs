//! `GET /api/v1/ws`: the realtime gateway's WebSocket endpoint (docs/PROTOCOL.md).
//!
//! The access token comes in the `Authorization` header or, for browsers, as the first
//! frame `{"type": "auth", "token": "…"}`. The server answers `ready`, then pushes events
//! as the notifier delivers them (through the node's [`Registry`]) and answers the
//! client's frames: `ping` → `pong`, `send` → `ack` (same rules and idempotency as
//! `POST …/messages`), `read` → `ack`, `sync` → catch-up then `sync.done`; a bad frame
//! gets an `error` frame naming the problem and the connection stays open.
//!
//! Delivery: every event frame carries the user's cursor (but a large group's `message.new`,
//! which its members order by the channel's seq). The connection remembers the
//! last cursor it sent and never sends one twice or out of order: a pushed frame at or
//! behind it is skipped, and one that would leave a gap (a push lost between nodes, a
//! notifier that died after committing) is preceded by the missing entries, read from the
//! user's inbox. A `ping` also checks the user's latest cursor, so a lost push is caught
//! up within one ping interval even when no later push reveals it.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use hermet_app::Principal;
use hermet_app::gateway::{CloseReason, GatewaySettings, MAX_CLIENT_FRAME, PROTOCOL_VERSION, Registration};
use hermet_app::messages::SendMessage;
use hermet_app::push::{EventFrame, Frame};
use hermet_domain::Error;
use hermet_domain::id::ChannelId;
use hermet_domain::message::MessageType;
use hermet_domain::time::now_ms;
use hermet_store::Database;
use serde::Deserialize;
use serde_json::{Value, json};

use super::channels::MentionsDto;
use super::conversations::ConversationDto;
use crate::AppState;
use crate::error::detail;
use crate::extract::bearer;

/// A client → server frame.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum ClientFrame {
    /// First frame of a browser (no headers on a WebSocket from JavaScript).
    Auth { token: String },
    Ping {
        #[serde(default)]
        id: Option<Value>,
    },
    /// `msgType` here is the body's `type` of `POST …/messages`.
    #[serde(rename_all = "camelCase")]
    Send {
        channel_id: ChannelId,
        msg_type: MessageType,
        content: Value,
        #[serde(default)]
        mentions: MentionsDto,
        client_msg_id: Option<String>,
        /// A reply: the message of the channel it answers.
        reply_to: Option<hermet_domain::id::MessageId>,
    },
    #[serde(rename_all = "camelCase")]
    Read { channel_id: ChannelId, seq: i64 },
    /// Catch up from `cursor` (the last cursor the client processed).
    Sync { cursor: i64 },
    /// I am typing in `channelId` (forwarded to its other members online; no answer).
    #[serde(rename_all = "camelCase")]
    Typing { channel_id: ChannelId },
}

/// The token in the upgrade request's headers, if any (checked once upgraded, so a bad
/// one is answered with an `error` frame and a close code the client can act on).
pub struct MaybeBearer(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeBearer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeBearer(bearer(parts).filter(|t| !t.is_empty()).map(str::to_owned)))
    }
}

const READ_BUFFER: usize = 1024;

pub async fn upgrade<D: Database>(
    State(st): State<AppState<D>>,
    MaybeBearer(token): MaybeBearer,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // A browser page of another origin may not open a socket unless allowed
    // (`http.allowed_origins`); clients that are not browsers send no Origin.
    if !st.origins.allows_upgrade(&headers) {
        return crate::error::ApiError(Error::forbidden("this origin may not open a WebSocket (http.allowed_origins)"))
            .into_response();
    }
    // Small buffers: an idle connection should cost kilobytes, not tungstenite's default
    // 128 KiB read buffer. Client frames are small (a `send` carries at most 64 KiB of
    // content), so larger frames are refused.
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| session(st, token, socket))
}

/// Whether reading failed because the client's frame was over [`MAX_CLIENT_FRAME`].
fn too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        let text = s.to_string();
        if text.contains("Space limit exceeded") || text.contains("too long") || text.contains("too big") {
            return true;
        }
        source = s.source();
    }
    false
}

fn text(v: &Value) -> Message {
    Message::Text(Utf8Bytes::from(v.to_string()))
}

fn error_frame(e: &Error, reply_to: Option<&Value>) -> Value {
    if let Error::Internal(cause) = e {
        tracing::error!(error = format!("{cause:#}"), "internal error");
    }
    let mut v = json!({"type": "error", "error": detail(e)});
    if let Some(r) = reply_to {
        v["replyTo"] = r.clone();
    }
    v
}

/// Sends the close frame (a client that does not read gets 5 s, then the socket drops).
async fn close(socket: &mut WebSocket, reason: CloseReason) {
    let frame = CloseFrame { code: reason.code(), reason: Utf8Bytes::from_static(reason.text()) };
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.send(Message::Close(Some(frame)))).await;
}

async fn session<D: Database>(st: AppState<D>, token: Option<String>, mut socket: WebSocket) {
    let registry = st.cluster.registry().clone();
    let settings = registry.settings().clone();
    let token = match token {
        Some(t) => t,
        None => match first_frame_token(&mut socket, Duration::from_secs(settings.auth_timeout_secs)).await {
            Some(t) => t,
            None => {
                let _ = socket.send(text(&error_frame(&Error::invalid_token(), None))).await;
                return close(&mut socket, CloseReason::Unauthenticated).await;
            }
        },
    };
    // The heavy futures (database work) are boxed: the connection's task then keeps only
    // a small state while it waits, which is what 10,000 idle connections cost.
    let who = match Box::pin(st.app.authenticate(&token)).await {
        Ok(p) => p,
        Err(e) => {
            let _ = socket.send(text(&error_frame(&e, None))).await;
            return close(&mut socket, CloseReason::Unauthenticated).await;
        }
    };
    let reg = match registry.register(who.user_id, who.session_id) {
        Ok(r) => r,
        Err(reason) => return close(&mut socket, reason).await,
    };
    st.cluster.connected(who.user_id).await;
    // Registered first, cursor read second: a push committed in between is queued and
    // either skipped (at or behind the cursor) or sent.
    let mut conn = Connection { st: &st, who, socket, reg, settings, sent: 0 };
    let reason = match Box::pin(st.app.db.inbox_head(who.user_id)).await {
        Ok(head) => {
            conn.sent = head;
            let ready = json!({
                "type": "ready",
                "version": PROTOCOL_VERSION,
                "userId": who.user_id.to_string(),
                "sessionId": who.session_id.to_string(),
                "connectionId": conn.reg.id.to_string(),
                "serverTime": now_ms(),
                "cursor": head,
            });
            // `ready` is dropped before serving: it would otherwise live as long as the
            // connection (half a kilobyte each, 10,000 times).
            let sent = conn.send(&ready).await.is_ok();
            drop(ready);
            if sent { Box::pin(conn.serve()).await } else { None }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the user's cursor; closing the socket");
            Some(CloseReason::ShuttingDown)
        }
    };
    if let Some(r) = reason {
        close(&mut conn.socket, r).await;
    }
    registry.unregister(who.user_id, conn.reg.id);
    st.cluster.disconnected(who.user_id).await;
}

/// One authenticated connection.
struct Connection<'a, D: Database> {
    st: &'a AppState<D>,
    who: Principal,
    socket: WebSocket,
    reg: Registration,
    settings: GatewaySettings,
    /// The last cursor sent on this connection.
    sent: i64,
}

/// The socket is gone.
struct Gone;

impl<D: Database> Connection<'_, D> {
    async fn send(&mut self, v: &Value) -> Result<(), Gone> {
        self.write(text(v)).await
    }

    /// Writes one frame, within `write_timeout_secs`.
    async fn write(&mut self, m: Message) -> Result<(), Gone> {
        let limit = Duration::from_secs(self.settings.write_timeout_secs.max(1));
        match tokio::time::timeout(limit, self.socket.send(m)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Gone),
            Err(_) => {
                metrics::counter!("gateway_slow_consumers_total").increment(1);
                Err(Gone)
            }
        }
    }

    /// The connection's loop; `Some(reason)` when the server closes it.
    async fn serve(&mut self) -> Option<CloseReason> {
        let idle = Duration::from_secs(self.settings.idle_timeout_secs.max(1));
        let every = match self.settings.session_check_secs {
            0 => Duration::from_secs(365 * 24 * 3600),
            s => Duration::from_secs(s),
        };
        let mut session_check = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                biased;
                changed = self.reg.close.changed() => {
                    return match changed {
                        Ok(()) => *self.reg.close.borrow(),
                        Err(_) => Some(CloseReason::ShuttingDown),
                    };
                }
                frame = self.reg.frames.recv() => match frame {
                    Some(f) => {
                        if Box::pin(self.push(f)).await.is_err() {
                            return None;
                        }
                    }
                    None => return Some(CloseReason::SlowConsumer),
                },
                incoming = tokio::time::timeout(idle, self.socket.recv()) => match incoming {
                    Err(_) => return Some(CloseReason::IdleTimeout),
                    // tungstenite refuses a frame over the limit with a capacity error;
                    // the socket can still say why (1009) before it closes
                    Ok(Some(Err(e))) if too_large(&e) => return Some(CloseReason::FrameTooLarge),
                    Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return None,
                    Ok(Some(Ok(Message::Text(t)))) => {
                        if Box::pin(self.answer(t.as_str())).await.is_err() {
                            return None;
                        }
                    }
                    Ok(Some(Ok(Message::Binary(_)))) => {
                        let e = Error::invalid("frame", "frames are JSON text");
                        if self.send(&error_frame(&e, None)).await.is_err() {
                            return None;
                        }
                    }
                    Ok(Some(Ok(_))) => {} // WebSocket-level ping/pong: answered by the library
                },
                _ = session_check.tick() => {
                    // A revocation normally closes the socket at once (also across nodes);
                    // this catches one whose broadcast was lost. The database away: keep.
                    if matches!(self.st.app.session_is_live(self.who).await, Ok(false)) {
                        return Some(CloseReason::Revoked);
                    }
                }
            }
        }
    }

    /// Sends a pushed frame in cursor order: skipped if already sent, preceded by the
    /// missing inbox entries if it would leave a gap.
    async fn push(&mut self, f: Frame) -> Result<(), Gone> {
        if f.cursor != 0 {
            if f.cursor <= self.sent {
                return Ok(());
            }
            if f.cursor > self.sent + 1 {
                self.catch_up(Some(f.cursor - 1)).await?;
                if f.cursor <= self.sent {
                    return Ok(()); // a reset moved past it
                }
            }
            self.sent = f.cursor;
        }
        self.write(Message::Text(Utf8Bytes::from(f.text()))).await
    }

    /// Sends the inbox entries after `sent` (up to `until`, else to the end), in order,
    /// read in pages. If entries are missing (beyond the retention), sends `sync.reset`
    /// and moves to the latest cursor. Returns the oldest event time sent, if any.
    async fn catch_up(&mut self, until: Option<i64>) -> Result<Option<i64>, Gone> {
        let user = self.who.user_id;
        let page = self.settings.sync_page_size.max(1);
        let mut oldest = None;
        loop {
            let entries = match self.st.app.db.inbox_after(user, self.sent, page).await {
                Ok(e) => e,
                Err(e) => {
                    // The pushes keep flowing; the next gap or ping retries.
                    tracing::warn!(error = %e, "cannot read the inbox to catch up");
                    return Ok(oldest);
                }
            };
            let full = entries.len() == page as usize;
            for e in entries {
                if until.is_some_and(|u| e.seq > u) {
                    return Ok(oldest);
                }
                if e.seq != self.sent + 1 {
                    return self.reset().await.map(|_| oldest);
                }
                oldest.get_or_insert(e.occurred_at);
                self.sent = e.seq;
                if let Some(body) = EventFrame::body(&e.event_type, e.event_id, e.occurred_at, &e.payload) {
                    let frame = Frame { cursor: e.seq, body };
                    self.write(Message::Text(Utf8Bytes::from(frame.text()))).await?;
                }
            }
            if !full {
                break;
            }
        }
        // Entries the inbox no longer holds, up to a known cursor: beyond retention.
        if let Some(u) = until
            && self.sent < u
        {
            self.reset().await?;
        }
        Ok(oldest)
    }

    /// The inbox no longer holds what the client missed: it must refetch its lists.
    async fn reset(&mut self) -> Result<(), Gone> {
        let head = self.st.app.db.inbox_head(self.who.user_id).await.unwrap_or(self.sent);
        self.sent = self.sent.max(head);
        metrics::counter!("gateway_sync_resets_total").increment(1);
        let frame = json!({
            "type": "sync.reset",
            "cursor": self.sent,
            "reason": "the events after your cursor are no longer kept: refetch conversations and contacts over HTTP",
        });
        self.send(&frame).await
    }

    /// Answers one client frame.
    async fn answer(&mut self, raw: &str) -> Result<(), Gone> {
        let value: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                let reply = error_frame(&Error::invalid("frame", format!("not JSON: {e}")), None);
                return self.send(&reply).await;
            }
        };
        let reply_to = value.get("clientMsgId").or_else(|| value.get("id")).cloned();
        let frame: ClientFrame = match serde_json::from_value(value) {
            Ok(f) => f,
            Err(e) => {
                let e = Error::invalid("frame", format!("unknown or malformed frame: {e}"));
                let reply = error_frame(&e, reply_to.as_ref());
                return self.send(&reply).await;
            }
        };
        let reply = match frame {
            ClientFrame::Sync { cursor } => self.sync(cursor, reply_to.as_ref()).await?,
            ClientFrame::Ping { id } => {
                // A push lost on its way (between nodes) shows here at the latest.
                if let Ok(head) = self.st.app.db.inbox_head(self.who.user_id).await
                    && head > self.sent
                {
                    self.catch_up(Some(head)).await?;
                }
                json!({"type": "pong", "id": id, "serverTime": now_ms(), "cursor": self.sent})
            }
            ClientFrame::Auth { .. } => error_frame(&Error::invalid("frame", "already authenticated"), None),
            ClientFrame::Send { channel_id, msg_type, content, mentions, client_msg_id, reply_to: answers } => {
                let req = SendMessage { msg_type, content, mentions: mentions.0, client_msg_id, reply_to: answers };
                send_message(self.st, self.who, channel_id, req, reply_to.as_ref()).await
            }
            ClientFrame::Read { channel_id, seq } => read(self.st, self.who, channel_id, seq, reply_to.as_ref()).await,
            ClientFrame::Typing { channel_id } => match self.st.app.typing(self.who, channel_id).await {
                Ok(()) => return Ok(()),
                Err(e) => error_frame(&e, reply_to.as_ref()),
            },
        };
        self.send(&reply).await
    }

    /// `sync {cursor}`: everything after `cursor`, then `sync.done` with the latest cursor
    /// and the conversation rows that changed meanwhile.
    async fn sync(&mut self, cursor: i64, reply_to: Option<&Value>) -> Result<Value, Gone> {
        let head = match self.st.app.db.inbox_head(self.who.user_id).await {
            Ok(h) => h,
            Err(e) => return Ok(error_frame(&Error::from(e), reply_to)),
        };
        if cursor < 0 || cursor > head {
            let e = Error::invalid("cursor", format!("must be between 0 and your latest cursor {head}"));
            return Ok(error_frame(&e, reply_to));
        }
        self.sent = cursor;
        let oldest = self.catch_up(None).await?;
        // Rows change in the same transaction as their events (dual-write) or shortly
        // after (async); a second of slack covers clock skew between nodes. With no
        // event missed, only the large groups' rows (always included: their messages are
        // not in the inbox) can have changed.
        let since = oldest.map_or(i64::MAX, |t| t - 1_000);
        let conversations: Vec<ConversationDto> =
            match self.st.app.db.conversations_changed(self.who.user_id, since, 1_000).await {
                Ok(rows) => rows.into_iter().map(ConversationDto::from).collect(),
                Err(e) => return Ok(error_frame(&Error::from(e), reply_to)),
            };
        Ok(json!({"type": "sync.done", "cursor": self.sent, "conversations": conversations}))
    }
}

/// Waits for `{"type": "auth", "token": …}` as the first frame.
async fn first_frame_token(socket: &mut WebSocket, wait: Duration) -> Option<String> {
    let msg = tokio::time::timeout(wait, socket.recv()).await.ok()??.ok()?;
    let Message::Text(t) = msg else { return None };
    match serde_json::from_str::<ClientFrame>(t.as_str()).ok()? {
        ClientFrame::Auth { token } => Some(token),
        _ => None,
    }
}

/// `send`: the rules and idempotency of `POST …/messages`, answered with `ack`.
async fn send_message<D: Database>(
    st: &AppState<D>,
    who: Principal,
    channel_id: ChannelId,
    req: SendMessage,
    reply_to: Option<&Value>,
) -> Value {
    let client_msg_id = req.client_msg_id.clone();
    match st.app.send_message(who, channel_id, req).await {
        Ok(sent) => json!({
            "type": "ack",
            "clientMsgId": client_msg_id,
            "channelId": channel_id.to_string(),
            "messageId": sent.message_id.to_string(),
            "seq": sent.seq,
            "sentAt": sent.sent_at,
        }),
        Err(e) => error_frame(&e, reply_to),
    }
}

/// `read`: marks the channel read up to `seq`, answered with `ack` and the row.
async fn read<D: Database>(
    st: &AppState<D>,
    who: Principal,
    channel_id: ChannelId,
    seq: i64,
    reply_to: Option<&Value>,
) -> Value {
    if seq < 0 {
        return error_frame(&Error::invalid("seq", "seq must not be negative"), reply_to);
    }
    match st.app.mark_read(who, channel_id, seq).await {
        Ok(row) => {
            json!({"type": "ack", "channelId": channel_id.to_string(), "conversation": ConversationDto::from(row)})
        }
        Err(e) => error_frame(&e, reply_to),
    }
}
