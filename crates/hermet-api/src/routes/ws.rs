//! `GET /api/v1/ws`: the realtime gateway's WebSocket endpoint (docs/PROTOCOL.md).
//!
//! The access token comes in the `Authorization` header or, for browsers, as the first
//! frame `{"type": "auth", "token": "…"}`. The server answers `ready`, then pushes events
//! as the notifier delivers them (through the node's [`Registry`]) and answers the
//! client's frames: `ping` → `pong`, `send` → `ack` (same rules and idempotency as
//! `POST …/messages`), `read` → `ack`; a bad frame gets an `error` frame naming the
//! problem and the connection stays open.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use hermet_app::Principal;
use hermet_app::gateway::{CloseReason, PROTOCOL_VERSION};
use hermet_app::messages::SendMessage;
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
    },
    #[serde(rename_all = "camelCase")]
    Read { channel_id: ChannelId, seq: i64 },
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

pub async fn upgrade<D: Database>(
    State(st): State<AppState<D>>,
    MaybeBearer(token): MaybeBearer,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| session(st, token, socket))
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

async fn close(socket: &mut WebSocket, reason: CloseReason) {
    let frame = CloseFrame { code: reason.code(), reason: Utf8Bytes::from_static(reason.text()) };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn session<D: Database>(st: AppState<D>, token: Option<String>, mut socket: WebSocket) {
    let registry = st.gateway.clone();
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
    let who = match st.app.authenticate(&token).await {
        Ok(p) => p,
        Err(e) => {
            let _ = socket.send(text(&error_frame(&e, None))).await;
            return close(&mut socket, CloseReason::Unauthenticated).await;
        }
    };
    let mut reg = match registry.register(who.user_id, who.session_id) {
        Ok(r) => r,
        Err(reason) => return close(&mut socket, reason).await,
    };
    let ready = json!({
        "type": "ready",
        "version": PROTOCOL_VERSION,
        "userId": who.user_id.to_string(),
        "sessionId": who.session_id.to_string(),
        "connectionId": reg.id.to_string(),
        "serverTime": now_ms(),
    });
    if socket.send(text(&ready)).await.is_ok() {
        let reason = serve(&st, who, &mut socket, &mut reg, &settings).await;
        if let Some(r) = reason {
            close(&mut socket, r).await;
        }
    }
    registry.unregister(who.user_id, reg.id);
}

/// The connection's loop; `Some(reason)` when the server closes it.
async fn serve<D: Database>(
    st: &AppState<D>,
    who: Principal,
    socket: &mut WebSocket,
    reg: &mut hermet_app::gateway::Registration,
    settings: &hermet_app::gateway::GatewaySettings,
) -> Option<CloseReason> {
    let idle = Duration::from_secs(settings.idle_timeout_secs.max(1));
    loop {
        tokio::select! {
            biased;
            changed = reg.close.changed() => {
                return match changed {
                    Ok(()) => *reg.close.borrow(),
                    Err(_) => Some(CloseReason::ShuttingDown),
                };
            }
            frame = reg.frames.recv() => match frame {
                Some(f) => {
                    if socket.send(Message::Text(Utf8Bytes::from(&*f))).await.is_err() {
                        return None;
                    }
                }
                None => return Some(CloseReason::SlowConsumer),
            },
            incoming = tokio::time::timeout(idle, socket.recv()) => match incoming {
                Err(_) => return Some(CloseReason::IdleTimeout),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return None,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let reply = handle(st, who, t.as_str()).await;
                    if socket.send(text(&reply)).await.is_err() {
                        return None;
                    }
                }
                Ok(Some(Ok(Message::Binary(_)))) => {
                    let e = Error::invalid("frame", "frames are JSON text");
                    if socket.send(text(&error_frame(&e, None))).await.is_err() {
                        return None;
                    }
                }
                Ok(Some(Ok(_))) => {} // WebSocket-level ping/pong: answered by the library
            },
        }
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

/// Answers one client frame.
async fn handle<D: Database>(st: &AppState<D>, who: Principal, raw: &str) -> Value {
    let value: Value = match serde_json::from_str(raw) {
        Ok(v) => v,
        Err(e) => return error_frame(&Error::invalid("frame", format!("not JSON: {e}")), None),
    };
    let reply_to = value.get("clientMsgId").or_else(|| value.get("id")).cloned();
    let frame: ClientFrame = match serde_json::from_value(value) {
        Ok(f) => f,
        Err(e) => {
            return error_frame(
                &Error::invalid("frame", format!("unknown or malformed frame: {e}")),
                reply_to.as_ref(),
            );
        }
    };
    match frame {
        ClientFrame::Auth { .. } => error_frame(&Error::invalid("frame", "already authenticated"), None),
        ClientFrame::Ping { id } => json!({"type": "pong", "id": id, "serverTime": now_ms()}),
        ClientFrame::Send { channel_id, msg_type, content, mentions, client_msg_id } => {
            let req = SendMessage { msg_type, content, mentions: mentions.0, client_msg_id: client_msg_id.clone() };
            match st.app.send_message(who, channel_id, req).await {
                Ok(sent) => json!({
                    "type": "ack",
                    "clientMsgId": client_msg_id,
                    "channelId": channel_id.to_string(),
                    "messageId": sent.message_id.to_string(),
                    "seq": sent.seq,
                    "sentAt": sent.sent_at,
                }),
                Err(e) => error_frame(&e, reply_to.as_ref()),
            }
        }
        ClientFrame::Read { channel_id, seq } => {
            if seq < 0 {
                return error_frame(&Error::invalid("seq", "seq must not be negative"), reply_to.as_ref());
            }
            match st.app.mark_read(who, channel_id, seq).await {
                Ok(row) => {
                    json!({"type": "ack", "channelId": channel_id.to_string(), "conversation": ConversationDto::from(row)})
                }
                Err(e) => error_frame(&e, reply_to.as_ref()),
            }
        }
    }
}
