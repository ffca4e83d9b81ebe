//! The chat service of the streaming example: one room, and a
//! bidirectional stream per member.

use micro::{Context, Result, Stream, Streaming, handler, service};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// What a member says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Say {
    /// The text.
    pub text: String,
}

/// What the room hears: who said what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Said {
    /// The member's name: the `x-user` metadata of their stream.
    pub user: String,
    /// The text.
    pub text: String,
}

/// One chat room.
#[derive(Debug)]
pub struct Chat {
    room: broadcast::Sender<Said>,
}

impl Default for Chat {
    fn default() -> Self {
        Self::new()
    }
}

impl Chat {
    /// An empty room.
    pub fn new() -> Self {
        Self {
            room: broadcast::channel(1024).0,
        }
    }
}

#[service]
impl Chat {
    /// `Chat.Talk`: what the member sends goes to everyone in the room,
    /// and the member hears everyone, themselves included, until they
    /// half-close.
    #[handler]
    async fn talk(&self, ctx: Context, stream: Stream<Say, Said>) -> Result<()> {
        let user = ctx
            .metadata()
            .get("x-user")
            .unwrap_or("anonymous")
            .to_owned();
        let (mut replies, mut says) = stream.split();
        let mut room = self.room.subscribe();
        loop {
            tokio::select! {
                // The room is closing: end each member's stream cleanly.
                () = ctx.stopping() => return Ok(()),
                said = room.recv() => match said {
                    Ok(said) => replies.send(said).await?,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let text = format!("{missed} messages were missed");
                        replies.send(Said { user: "room".into(), text }).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                say = says.recv() => match say? {
                    Some(say) => {
                        // No one listening is not an error.
                        let _ = self.room.send(Said { user: user.clone(), text: say.text });
                    }
                    None => return Ok(()),
                },
            }
        }
    }

    /// `Chat.Members`: how many members are in the room now, then once a
    /// second while the stream is open.
    #[handler]
    async fn members(&self) -> Result<Streaming<usize>> {
        let room = self.room.clone();
        let ticks = tokio::time::interval(std::time::Duration::from_secs(1));
        Ok(Streaming::new(futures_util::stream::unfold(
            ticks,
            move |mut ticks| {
                let room = room.clone();
                async move {
                    ticks.tick().await;
                    Some((Ok(room.receiver_count()), ticks))
                }
            },
        )))
    }
}
