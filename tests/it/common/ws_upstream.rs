//! A real WebSocket upstream (tokio-tungstenite): echoes every message, records each handshake's
//! headers and every message that reached it, and selects the `chat` protocol when it is
//! offered.

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

#[derive(Clone)]
pub struct WsUpstream {
    pub url: String,
    handshakes: Arc<Mutex<Vec<HeaderMap>>>,
    messages: Arc<Mutex<Vec<String>>>,
}

impl WsUpstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = WsUpstream {
            url: format!("http://{}", listener.local_addr().unwrap()),
            handshakes: Arc::default(),
            messages: Arc::default(),
        };
        let recorded = Arc::clone(&upstream.handshakes);
        let messages = Arc::clone(&upstream.messages);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let recorded = Arc::clone(&recorded);
                let messages = Arc::clone(&messages);
                tokio::spawn(async move {
                    // The error type is tungstenite's, large by its choice.
                    #[allow(clippy::result_large_err)]
                    let callback = |request: &Request, mut response: Response| {
                        recorded.lock().unwrap().push(request.headers().clone());
                        let offered = request.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
                        if offered.is_some_and(|p| p.split(',').any(|entry| entry.trim() == "chat")) {
                            response.headers_mut().insert("sec-websocket-protocol", "chat".parse().unwrap());
                        }
                        Ok(response)
                    };
                    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
                    while let Some(Ok(message)) = socket.next().await {
                        if let Message::Text(text) = &message {
                            messages.lock().unwrap().push(text.to_string());
                        }
                        if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        upstream
    }

    /// The text messages that reached it, in order.
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// The headers of every handshake that reached it.
    pub fn handshakes(&self) -> Vec<HeaderMap> {
        self.handshakes.lock().unwrap().clone()
    }
}
