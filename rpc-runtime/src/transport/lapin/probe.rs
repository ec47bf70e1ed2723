//! A queue's consumer count, from a passive `queue.declare`.

use super::{AmqpError, link::Link};
pub(crate) use crate::transport::shared::QueueState;
use lapin::{Channel, options::QueueDeclareOptions, types::FieldTable};

/// A channel to ask questions on. A passive declare of a queue that does
/// not exist closes its channel: the next question opens another.
#[derive(Default)]
pub(crate) struct ProbeChannel {
    channel: Option<Channel>,
    /// A question is being asked: if it is still set when the next one
    /// comes, that one was given up half-way, and its answer may still
    /// come. Should it be the broker's `channel.close` (404: the queue does
    /// not exist), it would fail the next question asked on that channel,
    /// about another queue, as if that one did not exist: the next question
    /// gets a new channel.
    asking: bool,
}

impl ProbeChannel {
    /// How many consumers `queue` has, or why it has none to tell.
    pub(crate) async fn consumers(
        &mut self,
        link: &Link,
        queue: &str,
    ) -> Result<QueueState, AmqpError> {
        if std::mem::take(&mut self.asking)
            && let Some(abandoned) = self.channel.take()
        {
            // lapin leaves a channel open when its handles are dropped.
            tokio::spawn(async move {
                let _ = abandoned.close(200, "question given up".into()).await;
            });
        }
        // Kept in place while asking (a clone is a handle): a question given
        // up half-way leaves the channel to be closed, not to a leak.
        let channel = match self.channel.as_ref() {
            Some(open) if open.status().connected() => open.clone(),
            _ => self
                .channel
                .insert(link.amqp.create_channel().await?)
                .clone(),
        };
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        self.asking = true;
        let answer = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await;
        self.asking = false;
        match answer {
            Ok(declared) => Ok(QueueState::Consumers(declared.consumer_count())),
            Err(error) => QueueState::refused(AmqpError::from(error)),
        }
    }

    /// Closes the channel, if one is open.
    pub(crate) async fn close(&mut self) {
        if let Some(channel) = self.channel.take() {
            let _ = channel.close(200, "session over".into()).await;
        }
    }
}
