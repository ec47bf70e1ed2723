//! A queue's consumer count, from a passive `queue.declare`.

use super::{AmqpError, link::Link};
pub(crate) use crate::transport::shared::QueueState;
use lapin::{Channel, options::QueueDeclareOptions, types::FieldTable};

/// A channel to ask questions on. A passive declare of a queue that does
/// not exist closes its channel: the next question opens another.
#[derive(Default)]
pub(crate) struct ProbeChannel(Option<Channel>);

impl ProbeChannel {
    /// How many consumers `queue` has, or why it has none to tell.
    pub(crate) async fn consumers(
        &mut self,
        link: &Link,
        queue: &str,
    ) -> Result<QueueState, AmqpError> {
        // Kept in place while asking (a clone is a handle): a question given
        // up half-way leaves the channel to the next one, not to a leak.
        let channel = match self.0.as_ref() {
            Some(open) if open.status().connected() => open.clone(),
            _ => self.0.insert(link.amqp.create_channel().await?).clone(),
        };
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
        {
            Ok(declared) => Ok(QueueState::Consumers(declared.consumer_count())),
            Err(error) => QueueState::refused(AmqpError::from(error)),
        }
    }

    /// Closes the channel, if one is open.
    pub(crate) async fn close(&mut self) {
        if let Some(channel) = self.0.take() {
            let _ = channel.close(200, "session over".into()).await;
        }
    }
}
